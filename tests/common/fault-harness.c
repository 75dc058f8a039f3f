/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-blob.h"
#include "daemon-harness.h"
#include "fault-harness.h"
#include "proto/wire.h"

int fh_prog_start(struct dh_prog *p, const char *sock, const char *const *env,
                  const char *const *args)
{
        int r = dh_prog_spawn(p, "tests/test-fault-prog", sock, env, args);
        if (r < 0)
                return r;
        char line[64];
        r = dh_prog_line(p, line, sizeof(line), 15000);
        if (r < 0)
                return r;
        return strcmp(line, "ready") == 0 ? 0 : -EPROTO;
}

int fh_prog_state(struct dh_prog *p, struct fh_state *ret)
{
        if (write(p->in, "s", 1) != 1)
                return -EPIPE;
        char line[512];
        int r = dh_prog_line(p, line, sizeof(line), 10000);
        if (r < 0)
                return r;
        struct fh_state s;
        if (sscanf(line,
                   "iters=%llu gap_us=%llu events=%llu events_lost=%llu gens=%llu "
                   "gens_lost=%llu gens_sent=%llu buffered=%llu ring_bytes=%llu "
                   "ring_gens=%llu connected=%llu rss_kb=%llu",
                   &s.iters, &s.gap_us, &s.events, &s.events_lost, &s.gens, &s.gens_lost,
                   &s.gens_sent, &s.buffered, &s.ring_bytes, &s.ring_gens, &s.connected,
                   &s.rss_kb) != 12)
                return -EBADMSG;
        *ret = s;
        return 0;
}

int fh_prog_end(struct dh_prog *p)
{
        int st = -1;
        if (p->in >= 0) {
                (void)!write(p->in, "q", 1);
                close(p->in);
        }
        p->in = -1;
        waitpid(p->pid, &st, 0);
        close(p->out);
        p->out = -1;
        return st;
}

unsigned long long fh_rss_kb(pid_t pid)
{
        char path[64], line[256];
        unsigned long long kb = 0;
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

int fh_have_gtracectl(void)
{
        return access(dh_binary("client/gtracectl"), X_OK) == 0;
}

int fh_gtracectl(const char *const *args, char *out, size_t cap)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                const char *argv[16] = {dh_binary("client/gtracectl")};
                int n = 1;
                for (int i = 0; args[i] && n < 15; i++)
                        argv[n++] = args[i];
                argv[n] = NULL;
                dup2(pfd[1], STDOUT_FILENO);
                int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (devnull >= 0)
                        dup2(devnull, STDERR_FILENO);
                execv(argv[0], dh_mut(argv));
                _exit(127);
        }
        close(pfd[1]);
        size_t got = 0;
        char sink[4096];
        for (;;) {
                char *dst = out && got + 1 < cap ? out + got : sink;
                size_t room = out && got + 1 < cap ? cap - 1 - got : sizeof(sink);
                ssize_t n = read(pfd[0], dst, room);
                if (n <= 0)
                        break;
                if (dst != sink)
                        got += (size_t)n;
        }
        if (out && cap)
                out[got] = 0;
        close(pfd[0]);
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
                return -1;
        return WEXITSTATUS(st);
}

int fh_validate(const char *path)
{
        const char *args[] = {"validate", path, NULL};
        return fh_gtracectl(args, NULL, 0);
}

void fh_check_valid(const char *path)
{
        ck_assert_msg(dh_dump_check(path, NULL, NULL) == 0, "%s is not a whole dump", path);
        if (fh_have_gtracectl())
                ck_assert_msg(fh_validate(path) == 0, "gtracectl validate %s failed", path);
}

json_t *fh_dump_stats(const char *path)
{
        static char out[1 << 16];
        const char *args[] = {"--json", "stats", path, NULL};
        if (fh_gtracectl(args, out, sizeof(out)) != 0)
                return NULL;
        return json_loads(out, 0, NULL);
}

int fh_raw_producer(const char *sock, uint64_t claim_pid, uint64_t claim_uid, const char *command)
{
        int fd = dh_connect_sock(sock);
        if (fd < 0)
                return fd;
        static struct proto_hello h;
        memset(&h, 0, sizeof(h));
        h.version = PROTO_WIRE_VERSION;
        h.role = PROTO_ROLE_PRODUCER;
        h.pid = claim_pid;
        h.uid = claim_uid;
        h.start_time_ns = 1;
        h.clock_freq = 1000000000u;
        snprintf(h.software, sizeof(h.software), "fault-test");
        snprintf(h.command, sizeof(h.command), "%s", command);
        static uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        uint16_t type;
        size_t len;
        if (n < 0 || dh_send_all(fd, frame, (size_t)n) < 0 ||
            dh_recv_frame(fd, 5000, &type, NULL, &len) < 0) {
                close(fd);
                return -EPROTO;
        }
        if (type != PROTO_MSG_WELCOME) {
                close(fd);
                return -ECONNREFUSED;
        }
        return fd;
}

int fh_send_gen(int fd, uint64_t gen, uint32_t len)
{
        if (len < DAEMON_BLOB_MIN)
                len = DAEMON_BLOB_MIN;
        uint8_t *b = malloc(len);
        if (!b)
                return -ENOMEM;
        daemon_blob_fill(b, len, gen, (uint64_t)getpid(), 1700000000000000000ull + gen * 1000);
        int r = dh_send_frame(fd, PROTO_MSG_GENERATION, b, len);
        free(b);
        return r;
}

int fh_run_as(uid_t uid, int (*fn)(void *arg), void *arg)
{
        pid_t pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 && errno != EPERM)
                        _exit(120);
                if (setgid((gid_t)uid) < 0 || setuid(uid) < 0)
                        _exit(121);
                _exit(fn(arg));
        }
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
                return -1;
        return WEXITSTATUS(st);
}

int fh_wait_stopped(pid_t pid, int timeout_ms)
{
        char dir[64];
        snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
        uint64_t deadline = dh_now_ms() + (uint64_t)timeout_ms;
        for (;;) {
                DIR *d = opendir(dir);
                if (!d)
                        return -errno;
                struct dirent *e;
                int running = 0;
                while ((e = readdir(d))) {
                        if (e->d_name[0] == '.')
                                continue;
                        char path[384], buf[512];
                        snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
                        FILE *f = fopen(path, "re");
                        if (!f)
                                continue;
                        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                        fclose(f);
                        buf[n] = '\0';
                        const char *paren = strrchr(buf, ')');
                        if (paren && paren[1] == ' ' && paren[2] != 'T' && paren[2] != 't')
                                running++;
                }
                closedir(d);
                if (!running)
                        return 0;
                if (dh_now_ms() >= deadline)
                        return -ETIMEDOUT;
                /* Polling /proc: there is nothing to wait on. */
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
        }
}
