/* SPDX-License-Identifier: MIT */
/*
 * Whole-daemon fuzz target: a real gtraced server object on a libuv loop,
 * with up to three connections made of socketpairs, fed arbitrary bytes in
 * small pieces.  Every frame goes through the real connection state
 * machine (conn.c), the producer and control handlers, the rings, the
 * flush/dump machinery and the dump writer threads; the debug-build state
 * checks (conn_assert_state) are compiled in.  At the end of each input
 * every connection is closed, the server is stopped and torn down, and the
 * loop must close cleanly (no handle or request left behind).
 *
 * Input layout:
 *   byte 0           number of connections - 1 (mod 3)
 *   then chunks of   ctl:u8 len:u8 bytes[len]
 *     ctl & 0x03     connection (mod the number of connections)
 *     ctl & 0x04     send a descriptor with the chunk (SCM_RIGHTS):
 *     ctl & 0x08       a writable regular file (memfd), else /dev/null
 *     ctl & 0x10     shut that connection's write side down after the chunk
 *     ctl & 0x20     let the loop run until it is idle before the next chunk
 * The 7 bytes "@PID@@@" anywhere in a chunk become this process's pid,
 * right-aligned with spaces ("  12345"): JSON whitespace, so a seed's
 * {"command":"snapshot","pid":@PID@@@} names the process its own producer
 * connections belong to (they all share our pid: SO_PEERCRED).
 *
 * Replayer: tests/fuzz-daemon-replay tests/fuzz/corpus/fuzz-daemon
 * libFuzzer: build-fuzz/tests/fuzz-daemon CORPUS
 * FUZZ_DAEMON_LOG=1 shows the daemon's log (debug level).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtraced.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_CONNS   3
#define FUZZ_PID_TAG     "@PID@@@"
#define FUZZ_PID_TAG_LEN 7

static char dump_dir[64];
static struct gd_config cfg;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        if (ftw->level > 0)
                (void)remove(path);
        return 0;
}

static void remove_dump_dir(void)
{
        nftw(dump_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        (void)rmdir(dump_dir);
}

static void setup_once(void)
{
        if (dump_dir[0])
                return;
        snprintf(dump_dir, sizeof(dump_dir), "/tmp/gtrace-fuzz-daemon-XXXXXX");
        if (!mkdtemp(dump_dir))
                abort();
        atexit(remove_dump_dir);
        log_setup(getenv("FUZZ_DAEMON_LOG") ? LOG_DEBUG : -1);
        /* Small limits, so the fuzzer reaches every bound; timers long
         * enough never to fire inside one input (flush waits end when the
         * producer answers or its connections close). */
        cfg = (struct gd_config){
                .socket_path = NULL,
                .dump_dir = dump_dir,
                .generations = 3,
                .max_process_bytes = 16384,
                .max_total_bytes = 32768,
                .retain_exited_s = 600,
                .flush_timeout_ms = 60000,
                .max_connections = FUZZ_MAX_CONNS,
                .max_processes = 4,
                .hello_timeout_ms = 600000,
                .max_uid_bytes = 24576,
                .max_uid_processes = 4,
                .log_level = LOG_DEBUG,
        };
}

/* Reads and discards whatever the daemon sent, so its queues drain. */
static void drain(const int *cli, int n)
{
        uint8_t buf[4096];
        for (int i = 0; i < n; i++)
                while (cli[i] >= 0 && recv(cli[i], buf, sizeof(buf), MSG_DONTWAIT) > 0)
                        ;
}

static void run_idle(uv_loop_t *loop, const int *cli, int n)
{
        for (int i = 0; i < 16; i++) {
                drain(cli, n);
                if (uv_run(loop, UV_RUN_NOWAIT) == 0)
                        break;
        }
        drain(cli, n);
}

static void send_chunk(uv_loop_t *loop, int *cli, int n, int k, const uint8_t *p, size_t len,
                       int with_fd, int good_fd)
{
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        int pass = -1;
        if (with_fd) {
                pass = good_fd ? memfd_create("fuzz-dump", MFD_CLOEXEC)
                               : open("/dev/null", O_WRONLY | O_CLOEXEC);
        }
        size_t off = 0;
        for (int tries = 0; off < len && tries < 64; tries++) {
                struct iovec iov = {(void *)(uintptr_t)(p + off), len - off};
                struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
                if (pass >= 0 && off == 0) {
                        msg.msg_control = &cbuf;
                        msg.msg_controllen = sizeof(cbuf);
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                        cm->cmsg_level = SOL_SOCKET;
                        cm->cmsg_type = SCM_RIGHTS;
                        cm->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(cm), &pass, sizeof(int));
                }
                ssize_t w = sendmsg(cli[k], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w > 0) {
                        off += (size_t)w;
                        continue;
                }
                if (w < 0 && errno != EAGAIN && errno != EINTR)
                        break; /* the daemon closed it */
                run_idle(loop, cli, n);
        }
        if (pass >= 0)
                close(pass);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        setup_once();
        if (size < 1 || size > (1u << 16))
                return 0;
        int n = 1 + data[0] % FUZZ_MAX_CONNS;
        char pid_text[FUZZ_PID_TAG_LEN + 1];
        snprintf(pid_text, sizeof(pid_text), "%*d", FUZZ_PID_TAG_LEN, (int)getpid());

        uv_loop_t loop;
        struct gd_server srv;
        if (uv_loop_init(&loop) < 0)
                abort();
        if (gd_server_init(&srv, &loop, &cfg) < 0)
                abort();
        int cli[FUZZ_MAX_CONNS];
        for (int i = 0; i < n; i++) {
                int sv[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                        abort();
                cli[i] = sv[0];
                if (gd_conn_new(&srv, sv[1]) < 0)
                        abort();
        }

        uint8_t chunk[256];
        size_t off = 1;
        while (off + 2 <= size) {
                uint8_t ctl = data[off], len = data[off + 1];
                off += 2;
                if (len > size - off)
                        len = (uint8_t)(size - off);
                memcpy(chunk, data + off, len);
                off += len;
                for (size_t i = 0; i + FUZZ_PID_TAG_LEN <= len; i++)
                        if (memcmp(chunk + i, FUZZ_PID_TAG, FUZZ_PID_TAG_LEN) == 0)
                                memcpy(chunk + i, pid_text, FUZZ_PID_TAG_LEN);
                int k = (ctl & 0x03) % n;
                if (cli[k] < 0)
                        continue;
                send_chunk(&loop, cli, n, k, chunk, len, ctl & 0x04, ctl & 0x08);
                if (ctl & 0x10)
                        (void)shutdown(cli[k], SHUT_WR);
                if (ctl & 0x20)
                        run_idle(&loop, cli, n);
                else
                        (void)uv_run(&loop, UV_RUN_NOWAIT);
        }
        run_idle(&loop, cli, n);

        /* Tear down as the daemon does at SIGTERM, then everything must be
         * gone: uv_loop_close() fails on any handle or request left. */
        for (int i = 0; i < n; i++)
                close(cli[i]);
        run_idle(&loop, cli, 0);
        gd_server_stop(&srv);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        if (srv.nconns != 0 || srv.ndumps_writing != 0)
                abort();
        gd_server_done(&srv);
        if (uv_loop_close(&loop) != 0)
                abort();
        nftw(dump_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        return 0;
}
