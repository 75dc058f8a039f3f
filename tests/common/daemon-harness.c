/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

static int can_connect(void *ctx)
{
        const struct dh_daemon *d = ctx;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        return ok || !dh_alive(d);
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

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

void dh_cleanup(struct dh_daemon *d)
{
        if (d->pid > 0)
                (void)dh_stop(d);
        if (d->dir[0] && !getenv("GTRACE_TEST_KEEP"))
                nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- frames ----------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
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
        int r = write_all(fd, hdr, sizeof(hdr));
        return r < 0 || !len ? r : write_all(fd, payload, len);
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

static int connect_sock(const char *sock)
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
        int fd = connect_sock(sock);
        if (fd < 0)
                return fd;
        struct proto_hello h = {.version = PROTO_WIRE_VERSION, .role = PROTO_ROLE_CONTROL};
        snprintf(h.software, sizeof(h.software), "test");
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        uint16_t type;
        size_t len;
        if (n < 0 || write_all(fd, frame, (size_t)n) < 0 ||
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
        int fd = connect_sock(sock);
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
        if (n < 0 || write_all(fd, frame, (size_t)n) < 0 ||
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
                                        (void)write_all(fd, frame, (size_t)n);
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
                        (void)write_all(fd, frame, (size_t)n);
                        (void)!write(ctl, &status, 1);
                        close(fd);
                        _exit(0);
                case 'c': {
                        struct proto_crash cr = {.signo = c.arg};
                        n = proto_encode_crash(frame, sizeof(frame), &cr);
                        (void)write_all(fd, frame, (size_t)n);
                        (void)!write(ctl, &status, 1);
                        close(fd);
                        _exit(0);
                }
                case 'x': (void)!write(ctl, &status, 1); _exit(0);
                case 'd': {
                        static struct proto_dump_request dr;
                        dr.id = 7;
                        snprintf(dr.reason, sizeof(dr.reason), "raw dump");
                        n = proto_encode_dump_request(frame, sizeof(frame), &dr);
                        (void)write_all(fd, frame, (size_t)n);
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

static uint8_t *slurp(const char *path, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                close(fd);
                return NULL;
        }
        uint8_t *b = malloc((size_t)st.st_size + 1);
        size_t got = 0;
        while (b && got < (size_t)st.st_size) {
                ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        *ret_len = got;
        return b;
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
