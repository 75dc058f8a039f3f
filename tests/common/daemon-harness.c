/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-blob.h"
#include "daemon-harness.h"
#include "test-files.h"
#include "flightrec/ring.h"
#include "proto/dumpfile.h"
#include "proto/varint.h"
#include "proto/wire.h"

uint64_t dh_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int dh_wait_until(int (*cond)(void *ctx), void *ctx, int timeout_ms)
{
        uint64_t deadline = dh_now_ms() + (uint64_t)timeout_ms;
        for (;;) {
                int r = cond(ctx);
                if (r || dh_now_ms() >= deadline)
                        return r;
                /* A short poll interval, bounded by the deadline: this waits
                 * for a condition, it does not guess a duration. */
                struct timespec ts = {0, 5 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}

const char *dh_binary(const char *rel)
{
        static char buf[4][512];
        static int i;
        const char *base = getenv("GTRACE_TEST_BINARY_DIR");
        char *b = buf[i++ % 4];
        snprintf(b, sizeof(buf[0]), "%s/%s", base ? base : ".", rel);
        return b;
}

int dh_prepare(struct dh_daemon *d)
{
        memset(d, 0, sizeof(*d));
        snprintf(d->dir, sizeof(d->dir), "/tmp/gtd-test-XXXXXX");
        if (!mkdtemp(d->dir))
                return -errno;
        chmod(d->dir, 0755); /* other uids connect in the authorization tests */
        if (strlen(d->dir) + sizeof("/gtraced.sock") > sizeof(d->sock))
                return -ENAMETOOLONG;
        memcpy(d->sock, d->dir, strlen(d->dir));
        memcpy(d->sock + strlen(d->dir), "/gtraced.sock", sizeof("/gtraced.sock"));
        snprintf(d->dumps, sizeof(d->dumps), "%s/dumps", d->dir);
        snprintf(d->log, sizeof(d->log), "%s/gtraced.log", d->dir);
        return 0;
}

int dh_can_connect(const char *sock)
{
        int fd = dh_connect_sock(sock);
        if (fd < 0)
                return 0;
        close(fd);
        return 1;
}

static int can_connect(void *ctx)
{
        const struct dh_daemon *d = ctx;
        return dh_can_connect(d->sock) || !dh_alive(d);
}

int dh_alive(const struct dh_daemon *d)
{
        return d->pid > 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

int dh_start(struct dh_daemon *d, const char *const *extra, const struct dh_opts *o)
{
        if (!d->dir[0]) {
                int r = dh_prepare(d);
                if (r < 0)
                        return r;
        }
        const char *argv[64];
        int n = 0;
        argv[n++] = dh_binary("daemon/gtraced");
        argv[n++] = "--config";
        argv[n++] = "/dev/null";
        argv[n++] = "--socket";
        argv[n++] = d->sock;
        argv[n++] = "--dump-dir";
        argv[n++] = d->dumps;
        for (int i = 0; extra && extra[i] && n < 62; i++)
                argv[n++] = extra[i];
        argv[n] = NULL;

        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (logfd >= 0)
                        dup2(logfd, STDERR_FILENO);
                if (o && o->rlimit_fsize) {
                        struct rlimit rl = {o->rlimit_fsize, o->rlimit_fsize};
                        setrlimit(RLIMIT_FSIZE, &rl);
                }
                if (o && o->notify_socket)
                        setenv("NOTIFY_SOCKET", o->notify_socket, 1);
                else
                        unsetenv("NOTIFY_SOCKET");
                if (o && o->watchdog_usec)
                        setenv("WATCHDOG_USEC", o->watchdog_usec, 1);
                unsetenv("LISTEN_FDS");
                unsetenv("LISTEN_PID");
                execv(argv[0], dh_mut(argv));
                _exit(127);
        }
        d->pid = pid;
        if (o && o->no_wait)
                return 0;
        dh_wait_until(can_connect, d, 10000);
        return dh_alive(d) ? 0 : -ECHILD;
}

int dh_stop(struct dh_daemon *d)
{
        if (d->pid <= 0)
                return -1;
        kill(d->pid, SIGTERM);
        uint64_t deadline = dh_now_ms() + 10000;
        int st;
        for (;;) {
                pid_t r = waitpid(d->pid, &st, WNOHANG);
                if (r == d->pid)
                        break;
                if (dh_now_ms() >= deadline) {
                        kill(d->pid, SIGKILL);
                        waitpid(d->pid, &st, 0);
                        d->pid = 0;
                        return -1;
                }
                struct timespec ts = {0, 5 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        d->pid = 0;
        if (WIFEXITED(st))
                return WEXITSTATUS(st);
        return 128 + WTERMSIG(st);
}

void dh_cleanup(struct dh_daemon *d)
{
        if (d->pid > 0)
                (void)dh_stop(d);
        if (d->dir[0] && !test_keep())
                dh_rmtree(d->dir);
        d->dir[0] = '\0'; /* a later dh_start makes a fresh one */
}

void dh_start_ok(struct dh_daemon *d, const char *const *extra)
{
        int r = dh_start(d, extra, NULL);
        ck_assert_msg(r == 0, "gtraced did not start: %s (its log: %s)", strerror(-r), d->log);
}

void dh_finish(struct dh_daemon *d)
{
        int st = dh_stop(d);
        ck_assert_msg(st == 0, "gtraced did not stop cleanly: status %d (its log: %s)", st,
                      d->log);
        dh_cleanup(d);
}

/* ---- instrumented programs ------------------------------------------------------ */

int dh_prog_spawn(struct dh_prog *p, const char *binary, const char *sock,
                  const char *const *env, const char *const *args)
{
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(out, O_CLOEXEC) < 0) {
                close(in[0]);
                close(in[1]);
                return -errno;
        }
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                close(in[0]);
                close(in[1]);
                close(out[0]);
                close(out[1]);
                return r;
        }
        if (pid == 0) {
                dup2(in[0], STDIN_FILENO);
                dup2(out[1], STDOUT_FILENO);
                setenv("GTRACED_SOCKET", sock, 1);
                unsetenv("GTRACE_NO_DAEMON");
                /* Sanitizer builds: leave SIGSEGV to gtrace's crash handler. */
                const char *vars[] = {"ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS"};
                for (size_t i = 0; i < 3; i++) {
                        char v[1024];
                        const char *old = getenv(vars[i]);
                        snprintf(v, sizeof(v), "%s%shandle_segv=0", old ? old : "",
                                 old && *old ? ":" : "");
                        setenv(vars[i], v, 1);
                }
                for (int i = 0; env && env[i]; i++)
                        putenv(dh_mut(env[i]));
                const char *argv[16] = {dh_binary(binary)};
                int n = 1;
                for (int i = 0; args[i] && n < 15; i++)
                        argv[n++] = args[i];
                argv[n] = NULL;
                execv(argv[0], dh_mut(argv));
                _exit(127);
        }
        close(in[0]);
        close(out[1]);
        p->pid = pid;
        p->in = in[1];
        p->out = out[0];
        return 0;
}

int dh_prog_line(struct dh_prog *p, char *buf, size_t cap, int timeout_ms)
{
        size_t got = 0;
        uint64_t deadline = dh_now_ms() + (uint64_t)timeout_ms;
        while (got + 1 < cap) {
                uint64_t now = dh_now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = p->out, .events = POLLIN};
                if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
                        continue;
                ssize_t n = read(p->out, buf + got, 1);
                if (n <= 0)
                        return -EPIPE;
                if (buf[got] == '\n')
                        break;
                got++;
        }
        buf[got] = 0;
        return 0;
}

int dh_prog_close(struct dh_prog *p)
{
        int st = -1;
        if (p->in >= 0)
                close(p->in);
        p->in = -1;
        waitpid(p->pid, &st, 0);
        if (p->out >= 0)
                close(p->out);
        p->out = -1;
        return st;
}

/* ---- frames ----------------------------------------------------------------- */

int dh_send_all(int fd, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        while (len) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int dh_send_frame(int fd, uint16_t type, const void *payload, size_t len)
{
        uint8_t hdr[PROTO_HEADER_BYTES];
        proto_header_put(hdr, type, (uint32_t)len);
        int r = dh_send_all(fd, hdr, sizeof(hdr));
        return r < 0 || !len ? r : dh_send_all(fd, payload, len);
}

static int read_full(int fd, void *buf, size_t len, uint64_t deadline)
{
        uint8_t *p = buf;
        while (len) {
                uint64_t now = dh_now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
                        continue;
                ssize_t n = recv(fd, p, len, 0);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int dh_recv_frame(int fd, int timeout_ms, uint16_t *ret_type, uint8_t **ret_payload,
                  size_t *ret_len)
{
        uint64_t deadline = dh_now_ms() + (uint64_t)timeout_ms;
        uint8_t hdr[PROTO_HEADER_BYTES];
        int r = read_full(fd, hdr, sizeof(hdr), deadline);
        if (r < 0)
                return r;
        struct proto_header h;
        r = proto_header_get(hdr, &h);
        if (r < 0)
                return r;
        uint8_t *p = malloc((size_t)h.length + 1);
        if (!p)
                return -ENOMEM;
        r = read_full(fd, p, h.length, deadline);
        if (r < 0) {
                free(p);
                return r;
        }
        p[h.length] = 0;
        *ret_type = h.type;
        *ret_len = h.length;
        if (ret_payload)
                *ret_payload = p;
        else
                free(p);
        return 0;
}

int dh_wait_closed(int fd, int timeout_ms)
{
        uint64_t deadline = dh_now_ms() + (uint64_t)timeout_ms;
        uint8_t buf[4096];
        for (;;) {
                uint64_t now = dh_now_ms();
                if (now >= deadline)
                        return 0;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
                        continue;
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        return 1;
        }
}

int dh_connect_sock(const char *sock)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sock) >= sizeof(sa.sun_path)) {
                close(fd);
                return -ENAMETOOLONG;
        }
        memcpy(sa.sun_path, sock, strlen(sock) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int dh_connect_raw(const char *sock)
{
        int fd = dh_connect_sock(sock);
        if (fd < 0)
                return fd;
        struct proto_hello h = {.version = PROTO_WIRE_VERSION, .role = PROTO_ROLE_CONTROL};
        snprintf(h.software, sizeof(h.software), "test");
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        uint16_t type;
        size_t len;
        if (n < 0 || dh_send_all(fd, frame, (size_t)n) < 0 ||
            dh_recv_frame(fd, 5000, &type, NULL, &len) < 0 || type != PROTO_MSG_WELCOME) {
                close(fd);
                return -EPROTO;
        }
        return fd;
}

json_t *dh_request(const char *sock, int pass_fd, const char *json_text)
{
        int fd = dh_connect_raw(sock);
        if (fd < 0)
                return NULL;
        size_t len = strlen(json_text);
        uint8_t hdr[PROTO_HEADER_BYTES];
        proto_header_put(hdr, PROTO_MSG_REQUEST, (uint32_t)len);
        struct iovec iov[2] = {{hdr, sizeof(hdr)}, {dh_mut(json_text), len}};
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } cbuf;
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        if (pass_fd >= 0) {
                msg.msg_control = &cbuf;
                msg.msg_controllen = sizeof(cbuf);
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
        }
        json_t *reply = NULL;
        if (sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)(sizeof(hdr) + len)) {
                uint16_t type;
                uint8_t *p;
                size_t plen;
                if (dh_recv_frame(fd, 20000, &type, &p, &plen) == 0) {
                        if (type == PROTO_MSG_REPLY)
                                reply = json_loadb((const char *)p, plen, 0, NULL);
                        free(p);
                }
        }
        close(fd);
        return reply;
}

json_t *dh_find_proc(json_t *list, pid_t pid)
{
        json_t *arr = json_object_get(list, "processes");
        for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *p = json_array_get(arr, i);
                if (json_integer_value(json_object_get(p, "pid")) == pid)
                        return p;
        }
        return NULL;
}

long long dh_int(json_t *o, const char *key)
{
        return (long long)json_integer_value(json_object_get(o, key));
}

const char *dh_str(json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));
        return s ? s : "";
}

int dh_proc_is(void *ctx)
{
        const struct dh_proc_want *w = ctx;
        json_t *l = dh_request(w->sock, -1, "{\"command\":\"list\"}");
        json_t *p = l ? dh_find_proc(l, w->pid) : NULL;
        int ok = p && (!w->state || strcmp(dh_str(p, "state"), w->state) == 0);
        if (ok && w->how == DH_GENS_EXACTLY)
                ok = dh_int(p, "generations") == w->gens;
        else if (ok && w->how == DH_GENS_AT_LEAST)
                ok = dh_int(p, "generations") >= w->gens;
        json_decref(l);
        return ok;
}

void dh_expect_proc(const char *sock, pid_t pid, const char *state, enum dh_gens how,
                    long long gens, int timeout_ms)
{
        struct dh_proc_want w = {sock, pid, state, how, gens};
        static const char *const hows[] = {"any number of", "exactly", "at least"};
        ck_assert_msg(dh_wait_until(dh_proc_is, &w, timeout_ms),
                      "pid %d never became %s with %s %lld generations in %d ms", (int)pid,
                      state ? state : "(any state)", hows[how], how == DH_GENS_ANY ? 0 : gens,
                      timeout_ms);
}

json_t *dh_snapshot(const char *sock, pid_t pid)
{
        char req[128];
        snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"pid\":%d}", (int)pid);
        json_t *r = dh_request(sock, -1, req);
        ck_assert_msg(r != NULL, "no reply to a snapshot of pid %d", (int)pid);
        return r;
}

json_t *dh_snapshot_ok(const char *sock, pid_t pid)
{
        json_t *r = dh_snapshot(sock, pid);
        ck_assert_msg(json_is_true(json_object_get(r, "ok")), "snapshot of pid %d: %s", (int)pid,
                      dh_str(r, "error"));
        return r;
}

/* ---- raw producers ------------------------------------------------------------- */

static void child_send_gen(int fd, uint64_t gen, uint32_t size)
{
        if (size < DAEMON_BLOB_MIN)
                size = DAEMON_BLOB_MIN;
        uint8_t *b = malloc(size);
        if (!b)
                _exit(4);
        daemon_blob_fill(b, size, gen, (uint64_t)getpid(), 1700000000000000000ull + gen * 1000);
        if (dh_send_frame(fd, PROTO_MSG_GENERATION, b, size) < 0)
                _exit(5);
        free(b);
}

static void child_main(int ctl, const char *sock, const char *command, int flags)
{
        int fd = dh_connect_sock(sock);
        if (fd < 0)
                _exit(2);
        static struct proto_hello h;
        h.version = PROTO_WIRE_VERSION;
        h.role = PROTO_ROLE_PRODUCER;
        h.pid = (uint64_t)getpid();
        h.uid = getuid();
        h.clock_freq = 1000000000u;
        snprintf(h.software, sizeof(h.software), "raw-test");
        snprintf(h.command, sizeof(h.command), "%s", command);
        snprintf(h.executable, sizeof(h.executable), "/test/%s", command);
        static uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        uint16_t type;
        size_t len;
        uint8_t *p;
        if (n < 0 || dh_send_all(fd, frame, (size_t)n) < 0 ||
            dh_recv_frame(fd, 5000, &type, NULL, &len) < 0 || type != PROTO_MSG_WELCOME)
                _exit(3);
        uint8_t ok = 0;
        (void)!write(ctl, &ok, 1); /* connected */
        uint64_t gen = 1;
        for (;;) {
                struct pollfd pfd[2] = {{.fd = ctl, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
                if (poll(pfd, 2, -1) < 0)
                        continue;
                if (pfd[1].revents) {
                        if (dh_recv_frame(fd, 5000, &type, &p, &len) < 0)
                                _exit(6);
                        if (type == PROTO_MSG_FLUSH && (flags & DH_ANSWER_FLUSH)) {
                                struct proto_flush f;
                                if (proto_decode_flush(p, len, &f) == 0) {
                                        child_send_gen(fd, gen, 256);
                                        struct proto_flush_done fdn = {.id = f.id, .gen = gen};
                                        gen++;
                                        n = proto_encode_flush_done(frame, sizeof(frame), &fdn);
                                        (void)dh_send_all(fd, frame, (size_t)n);
                                }
                        }
                        free(p);
                }
                if (!pfd[0].revents)
                        continue;
                struct {
                        char cmd;
                        uint32_t arg;
                } c;
                if (read(ctl, &c, sizeof(c)) != (ssize_t)sizeof(c))
                        _exit(0);
                char reply[4200] = {0};
                uint8_t status = 0;
                switch (c.cmd) {
                case 'g': child_send_gen(fd, gen++, c.arg); break;
                case 'q':
                        n = proto_encode_goodbye(frame, sizeof(frame));
                        (void)dh_send_all(fd, frame, (size_t)n);
                        (void)!write(ctl, &status, 1);
                        close(fd);
                        _exit(0);
                case 'c': {
                        struct proto_crash cr = {.signo = c.arg};
                        n = proto_encode_crash(frame, sizeof(frame), &cr);
                        (void)dh_send_all(fd, frame, (size_t)n);
                        (void)!write(ctl, &status, 1);
                        close(fd);
                        _exit(0);
                }
                case 'k': { /* CRASH, and the connection stays open */
                        struct proto_crash cr = {.signo = c.arg};
                        n = proto_encode_crash(frame, sizeof(frame), &cr);
                        status = dh_send_all(fd, frame, (size_t)n) < 0;
                        break;
                }
                case 'x': (void)!write(ctl, &status, 1); _exit(0);
                case 'd': {
                        static struct proto_dump_request dr;
                        dr.id = 7;
                        snprintf(dr.reason, sizeof(dr.reason), "raw dump");
                        n = proto_encode_dump_request(frame, sizeof(frame), &dr);
                        (void)dh_send_all(fd, frame, (size_t)n);
                        for (;;) {
                                if (dh_recv_frame(fd, 10000, &type, &p, &len) < 0)
                                        _exit(7);
                                if (type == PROTO_MSG_DUMP_REPLY) {
                                        static struct proto_dump_reply rp;
                                        if (proto_decode_dump_reply(p, len, &rp) == 0) {
                                                status = (uint8_t)-rp.result;
                                                snprintf(reply, sizeof(reply), "%s", rp.text);
                                        }
                                        free(p);
                                        break;
                                }
                                free(p);
                        }
                        break;
                }
                default: status = 255; break;
                }
                (void)!write(ctl, &status, 1);
                if (c.cmd == 'd')
                        (void)!write(ctl, reply, sizeof(reply));
        }
}

int dh_producer_spawn(struct dh_producer *p, const char *sock, const char *command, int flags)
{
        return dh_producer_spawn_as(p, sock, command, flags, (uid_t)-1);
}

int dh_producer_spawn_as(struct dh_producer *p, const char *sock, const char *command,
                         int flags, uid_t uid)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                close(sv[0]);
                if (uid != (uid_t)-1 && (setgid((gid_t)uid) < 0 || setuid(uid) < 0))
                        _exit(9);
                child_main(sv[1], sock, command, flags);
                _exit(0);
        }
        close(sv[1]);
        p->pid = pid;
        p->ctl = sv[0];
        uint8_t ok;
        struct pollfd pfd = {.fd = p->ctl, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1 || read(p->ctl, &ok, 1) != 1) {
                /* Refused (or failed): reap the child so callers need not. */
                close(p->ctl);
                waitpid(pid, NULL, 0);
                return -ECONNREFUSED;
        }
        return 0;
}

int dh_producer_cmd(struct dh_producer *p, char cmd, uint32_t arg, char *reply, size_t cap)
{
        struct {
                char cmd;
                uint32_t arg;
        } c;
        memset(&c, 0, sizeof(c));
        c.cmd = cmd;
        c.arg = arg;
        if (write(p->ctl, &c, sizeof(c)) != (ssize_t)sizeof(c))
                return -EPIPE;
        uint8_t st;
        struct pollfd pfd = {.fd = p->ctl, .events = POLLIN};
        if (poll(&pfd, 1, 15000) != 1 || read(p->ctl, &st, 1) != 1)
                return -ETIMEDOUT;
        if (cmd == 'd') {
                char buf[4200];
                size_t got = 0;
                while (got < sizeof(buf)) {
                        ssize_t n = read(p->ctl, buf + got, sizeof(buf) - got);
                        if (n <= 0)
                                break;
                        got += (size_t)n;
                }
                if (reply && cap)
                        snprintf(reply, cap, "%s", buf);
        }
        return st;
}

int dh_producer_wait(struct dh_producer *p)
{
        int st = 0;
        close(p->ctl);
        waitpid(p->pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- dump files ------------------------------------------------------------------- */

char *dh_read_file(const char *path, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        size_t len = 0, cap = 4096;
        char *b = malloc(cap);
        for (;;) {
                if (!b)
                        break;
                if (len + 1 == cap) {
                        char *nb = realloc(b, cap * 2);
                        if (!nb) {
                                free(b);
                                b = NULL;
                                errno = ENOMEM;
                                break;
                        }
                        b = nb;
                        cap *= 2;
                }
                ssize_t n = read(fd, b + len, cap - 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        free(b);
                        b = NULL;
                        errno = e;
                        break;
                }
                if (n == 0) {
                        b[len] = '\0';
                        if (ret_len)
                                *ret_len = len;
                        break;
                }
                len += (size_t)n;
        }
        close(fd);
        return b;
}

static uint8_t *slurp(const char *path, size_t *ret_len)
{
        return (uint8_t *)dh_read_file(path, ret_len);
}

int dh_dump_check(const char *path, unsigned *ret_gens, int *ret_flushed)
{
        size_t len;
        uint8_t *b = slurp(path, &len);
        if (!b)
                return -errno;
        int r = -EBADMSG;
        unsigned gens = 0;
        int flushed = -1, ended = 0;
        const uint8_t *p = b + PROTO_DUMP_MAGIC_LEN, *end = b + len;
        if (len < PROTO_DUMP_MAGIC_LEN || memcmp(b, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN))
                goto out;
        while (p < end && !ended) {
                uint8_t type = *p++;
                uint64_t n;
                if (proto_get_uvarint(&p, end, &n) < 0 || n > (uint64_t)(end - p))
                        goto out;
                if (type == PROTO_DUMP_META) {
                        const uint8_t *q = p, *qe = p + n;
                        while (q < qe) {
                                uint8_t key = *q++;
                                uint64_t fl, v;
                                if (proto_get_uvarint(&q, qe, &fl) < 0 ||
                                    fl > (uint64_t)(qe - q))
                                        goto out;
                                const uint8_t *vq = q;
                                if (key == PROTO_META_FLUSHED &&
                                    proto_get_uvarint(&vq, q + fl, &v) == 0)
                                        flushed = (int)v;
                                q += fl;
                        }
                } else if (type == PROTO_DUMP_GENERATION) {
                        struct fr_genbuf *g = fr_genbuf_new((size_t)n);
                        memcpy(g->data, p, (size_t)n);
                        int s = fr_genbuf_scan(g, NULL, 0);
                        fr_genbuf_unref(g);
                        if (s < 0)
                                goto out;
                        gens++;
                } else if (type == PROTO_DUMP_END) {
                        ended = 1;
                }
                p += n;
        }
        if (ended && p == end)
                r = 0;
out:
        free(b);
        if (ret_gens)
                *ret_gens = gens;
        if (ret_flushed)
                *ret_flushed = flushed;
        return r;
}

int dh_file_contains(const char *path, const char *needle)
{
        size_t len;
        uint8_t *b = slurp(path, &len);
        if (!b)
                return 0;
        int found = memmem(b, len, needle, strlen(needle)) != NULL;
        free(b);
        return found;
}

void dh_rmtree(const char *path)
{
        test_rmtree(path);
}

int dh_count_entries(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d)
                return -errno;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

const char *dh_only_entry(const char *dir, char *buf, size_t cap)
{
        DIR *d = opendir(dir);
        if (!d)
                return NULL;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                if (n++ == 0)
                        snprintf(buf, cap, "%s", e->d_name);
        }
        closedir(d);
        return n == 1 ? buf : NULL;
}

int dh_foreach_file(const char *dir, int (*fn)(const char *path, void *ctx), void *ctx)
{
        DIR *d = opendir(dir);
        if (!d)
                return -errno;
        int r = 0;
        struct dirent *e;
        while (!r && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                char path[1024];
                int n = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                r = n < 0 || (size_t)n >= sizeof(path) ? -ENAMETOOLONG : fn(path, ctx);
        }
        closedir(d);
        return r;
}

struct find_dump {
        char pat[32];
        char *buf;
        size_t cap;
};

static int match_dump(const char *path, void *ctx)
{
        struct find_dump *f = ctx;
        const char *name = strrchr(path, '/') + 1;
        if (!strstr(name, f->pat))
                return 0;
        int n = snprintf(f->buf, f->cap, "%s", path);
        return n >= 0 && (size_t)n < f->cap ? 1 : -ENAMETOOLONG;
}

const char *dh_find_dump(const char *dir, pid_t pid, char *buf, size_t cap)
{
        struct find_dump f = {.buf = buf, .cap = cap};
        snprintf(f.pat, sizeof(f.pat), "-%d-", (int)pid);
        return dh_foreach_file(dir, match_dump, &f) == 1 ? buf : NULL;
}

int dh_count_dumps(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d)
                return 0;
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t l = strlen(e->d_name);
                if (l > 7 && strcmp(e->d_name + l - 7, ".gtrace") == 0 && e->d_name[0] != '.')
                        n++;
        }
        closedir(d);
        return n;
}
