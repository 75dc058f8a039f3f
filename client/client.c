/* SPDX-License-Identifier: MIT */
/*
 * libgtrace-client (contract in client/include/gtrace/client.h; the wire
 * protocol in docs/protocol.md).
 *
 * A connection's life:
 *
 *   connect() ──▶ HELLO sent ──▶ WELCOME read ──▶ ready ──▶ close()
 *                                    │              │  ▲
 *                                 ERROR           REQUEST / REPLY
 *                                    ▼              ▼  │
 *                                  failed        broken (any I/O or framing error:
 *                                                every later request fails fast)
 *
 * Requests are strictly one at a time: the daemon answers in order and
 * reads the next request only after answering, so there is never more than
 * one reply in flight.  Every read waits with poll() against one deadline
 * per request, so a daemon that hangs costs the caller the timeout, never
 * more.  Replies are checked against their maximum size before anything is
 * allocated for them.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gtrace/client.h"
#include "proto/wire.h"

#define CLIENT_SOFTWARE "libgtrace-client " GTRACE_CLIENT_VERSION_STRING

struct gtrace_client {
        int fd;
        int broken; /* an I/O or framing error happened: the stream is out of sync */
        int timeout_ms;
        char path[GTRACE_CLIENT_PATH_MAX + 1];
        char daemon_software[PROTO_MAX_SOFTWARE + 1];
};

/* ---- errors ---- */

static int __attribute__((format(printf, 3, 4)))
fail(struct gtrace_client_error *e, int code, const char *fmt, ...)
{
        if (e) {
                va_list ap;
                e->code = code;
                va_start(ap, fmt);
                (void)vsnprintf(e->message, sizeof(e->message), fmt, ap);
                va_end(ap);
        }
        return code;
}

static const struct {
        int code;
        const char *name;
} errno_names[] = {
        {EPERM, "EPERM"},
        {ENOENT, "ENOENT"},
        {ESRCH, "ESRCH"},
        {EINTR, "EINTR"},
        {EIO, "EIO"},
        {EBADF, "EBADF"},
        {EAGAIN, "EAGAIN"},
        {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},
        {EEXIST, "EEXIST"},
        {ENOTDIR, "ENOTDIR"},
        {EISDIR, "EISDIR"},
        {EINVAL, "EINVAL"},
        {EMFILE, "EMFILE"},
        {EFBIG, "EFBIG"},
        {ENOSPC, "ENOSPC"},
        {EROFS, "EROFS"},
        {EPIPE, "EPIPE"},
        {ERANGE, "ERANGE"},
        {ENAMETOOLONG, "ENAMETOOLONG"},
        {ENODATA, "ENODATA"},
        {EPROTO, "EPROTO"},
        {EBADMSG, "EBADMSG"},
        {EMSGSIZE, "EMSGSIZE"},
        {EPROTONOSUPPORT, "EPROTONOSUPPORT"},
        {EUSERS, "EUSERS"},
        {ECONNREFUSED, "ECONNREFUSED"},
        {ECONNRESET, "ECONNRESET"},
        {ETIMEDOUT, "ETIMEDOUT"},
        {EBUSY, "EBUSY"},
        {EDQUOT, "EDQUOT"},
        {ENOTCONN, "ENOTCONN"},
        {ECANCELED, "ECANCELED"},
        {ENOTSUP, "ENOTSUP"},
        {ENXIO, "ENXIO"},
        {ENOTSOCK, "ENOTSOCK"},
};

const char *gtrace_client_errno_name(int code)
{
        if (code < 0)
                code = -code;
        for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
                if (errno_names[i].code == code)
                        return errno_names[i].name;
        return NULL;
}

static int errno_from_name(const char *name)
{
        for (size_t i = 0; name && i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
                if (!strcmp(errno_names[i].name, name))
                        return errno_names[i].code;
        return 0;
}

void gtrace_client_free(void *p)
{
        free(p);
}

/* ---- the socket path ---- */

int gtrace_client_socket_path(const char *explicit_path, char *buf, size_t len,
                              struct gtrace_client_error *ret_err)
{
        const char *env = getenv("GTRACED_SOCKET");
        int n;

        if (explicit_path && *explicit_path)
                n = snprintf(buf, len, "%s", explicit_path);
        else if (env && *env)
                n = snprintf(buf, len, "%s", env);
        else if (geteuid() == 0)
                n = snprintf(buf, len, "/run/gtraced/gtraced.sock");
        else {
                const char *xdg = getenv("XDG_RUNTIME_DIR");
                if (!xdg || !*xdg)
                        return fail(ret_err, -ENOENT,
                                    "cannot tell where gtraced listens: XDG_RUNTIME_DIR is not "
                                    "set; pass --socket PATH or set GTRACED_SOCKET");
                n = snprintf(buf, len, "%s/gtraced/gtraced.sock", xdg);
        }
        if (n < 0 || (size_t)n >= len)
                return fail(ret_err, -ENAMETOOLONG, "the gtraced socket path is too long");
        return 0;
}

/* ---- framed I/O with a deadline ---- */

static int64_t now_ms(void)
{
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = events};
                int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

static int read_exact(int fd, void *buf, size_t n, int64_t deadline)
{
        uint8_t *p = buf;
        while (n) {
                int r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
                if (k == 0)
                        return -ECONNRESET;
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Sends buf; the first byte goes with fd as SCM_RIGHTS when fd >= 0. */
static int send_all(int sock, const uint8_t *buf, size_t n, int fd, int64_t deadline)
{
        if (fd >= 0 && n) {
                union {
                        char buf[CMSG_SPACE(sizeof(int))];
                        struct cmsghdr align;
                } u;
                struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = n};
                struct msghdr msg = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf),
                };
                memset(u.buf, 0, sizeof(u.buf));
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &fd, sizeof(int));
                for (;;) {
                        int r = wait_fd(sock, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        ssize_t k = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (k < 0) {
                                if (errno == EINTR || errno == EAGAIN)
                                        continue;
                                return -errno;
                        }
                        buf += k;
                        n -= (size_t)k;
                        break;
                }
        }
        while (n) {
                int r = wait_fd(sock, POLLOUT, deadline);
                if (r < 0)
                        return r;
                ssize_t k = send(sock, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                buf += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Reads one frame.  *ret_payload is malloc'ed with a NUL after it. */
static int read_frame(struct gtrace_client *c, int64_t deadline, struct proto_header *ret_hdr,
                      char **ret_payload, struct gtrace_client_error *e)
{
        uint8_t head[PROTO_HEADER_BYTES];
        int r = read_exact(c->fd, head, sizeof(head), deadline);
        if (r == -ECONNRESET)
                return fail(e, r, "gtraced at %s closed the connection", c->path);
        if (r == -ETIMEDOUT)
                return fail(e, r, "gtraced at %s did not answer within %d ms", c->path,
                            c->timeout_ms);
        if (r < 0)
                return fail(e, r, "reading from gtraced at %s: %s", c->path, strerror(-r));
        r = proto_header_get(head, ret_hdr);
        if (r < 0)
                return fail(e, r, "gtraced at %s sent a bad frame (type %u, %u bytes): %s", c->path,
                            ret_hdr->type, ret_hdr->length, strerror(-r));
        char *payload = malloc((size_t)ret_hdr->length + 1);
        if (!payload)
                return fail(e, -ENOMEM, "out of memory for a %u-byte reply", ret_hdr->length);
        r = read_exact(c->fd, payload, ret_hdr->length, deadline);
        if (r < 0) {
                free(payload);
                return fail(e, r, "reading a reply from gtraced at %s: %s", c->path,
                            r == -ECONNRESET ? "connection closed" : strerror(-r));
        }
        payload[ret_hdr->length] = '\0';
        *ret_payload = payload;
        return 0;
}

/*
 * The library's error contract (client.h) names conditions, not the daemon's
 * wire codes: "no such traced process" is -ENOENT to callers, whatever
 * errno name gtraced puts in its reply (ESRCH, docs/protocol.md).
 */
static int caller_code(int code)
{
        return code == ESRCH ? ENOENT : code;
}

/* The daemon sent ERROR and is closing: turn it into our error. */
static int daemon_error(struct gtrace_client *c, const char *payload, uint32_t len,
                        struct gtrace_client_error *e)
{
        struct proto_error pe;
        if (proto_decode_error((const uint8_t *)payload, len, &pe) < 0 || pe.code == 0 ||
            pe.code > 4095)
                return fail(e, -EPROTO, "gtraced at %s sent a malformed ERROR frame", c->path);
        return fail(e, -(int)pe.code, "gtraced refused: %s", pe.message);
}

/* ---- connection ---- */

static int connect_error(const char *path, int err, struct gtrace_client_error *e)
{
        switch (err) {
        case ENOENT:
                return fail(e, -ECONNREFUSED,
                            "gtraced is not running at %s (no such socket): start it with "
                            "systemctl start gtraced, or pass --socket PATH",
                            path);
        case ECONNREFUSED:
                return fail(e, -ECONNREFUSED,
                            "gtraced is not running at %s (connection refused): start it with "
                            "systemctl start gtraced",
                            path);
        case EACCES:
        case EPERM:
                return fail(e, -EACCES,
                            "not allowed to connect to gtraced at %s: run as a user with access "
                            "to the socket (see docs/systemd.md), or as root",
                            path);
        case EAGAIN:
                return fail(e, -EAGAIN,
                            "gtraced at %s is not accepting connections (its backlog is full): "
                            "it may be overloaded or hung; check its log",
                            path);
        case ENOTDIR:
                return fail(e, -ECONNREFUSED,
                            "gtraced is not running at %s (a path component is not "
                            "a directory): check --socket or GTRACED_SOCKET",
                            path);
        default: return fail(e, -err, "cannot connect to gtraced at %s: %s", path, strerror(err));
        }
}

int gtrace_client_connect(const char *socket_path, struct gtrace_client **ret,
                          struct gtrace_client_error *ret_err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct gtrace_client *c;
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        struct proto_header hdr;
        char *payload = NULL;
        int r;

        if (ret_err)
                memset(ret_err, 0, sizeof(*ret_err));
        c = calloc(1, sizeof(*c));
        if (!c)
                return fail(ret_err, -ENOMEM, "out of memory");
        c->fd = -1;
        c->timeout_ms = GTRACE_CLIENT_DEFAULT_TIMEOUT_MS;
        r = gtrace_client_socket_path(socket_path, c->path, sizeof(c->path), ret_err);
        if (r < 0)
                goto fail_free;
        if (strlen(c->path) >= sizeof(sa.sun_path)) {
                r = fail(ret_err, -ENAMETOOLONG,
                         "the gtraced socket path %s is longer than a unix socket allows (%zu "
                         "bytes)",
                         c->path, sizeof(sa.sun_path) - 1);
                goto fail_free;
        }
        memcpy(sa.sun_path, c->path, strlen(c->path) + 1);

        /* Non-blocking from the start: a daemon that is hung with a full
         * backlog must not hang connect() (unix sockets then fail with
         * EAGAIN instead of waiting). */
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
                r = fail(ret_err, -errno, "cannot create a unix socket: %s", strerror(errno));
                goto fail_free;
        }
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = connect_error(c->path, errno, ret_err);
                goto fail_free;
        }

        struct proto_hello hello = {.version = PROTO_WIRE_VERSION, .role = PROTO_ROLE_CONTROL};
        (void)snprintf(hello.software, sizeof(hello.software), "%s", CLIENT_SOFTWARE);
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &hello);
        if (n < 0) {
                r = fail(ret_err, (int)n, "cannot encode HELLO: %s", strerror((int)-n));
                goto fail_free;
        }
        int64_t deadline = now_ms() + c->timeout_ms;
        r = send_all(c->fd, frame, (size_t)n, -1, deadline);
        if (r < 0) {
                r = fail(ret_err, r, "sending HELLO to gtraced at %s: %s", c->path, strerror(-r));
                goto fail_free;
        }
        r = read_frame(c, deadline, &hdr, &payload, ret_err);
        if (r < 0)
                goto fail_free;
        if (hdr.type == PROTO_MSG_ERROR) {
                r = daemon_error(c, payload, hdr.length, ret_err);
                goto fail_free;
        }
        struct proto_welcome welcome;
        if (hdr.type != PROTO_MSG_WELCOME ||
            proto_decode_welcome((const uint8_t *)payload, hdr.length, &welcome) < 0) {
                r = fail(ret_err, -EPROTO,
                         "%s did not answer like gtraced (got %s instead of WELCOME)", c->path,
                         proto_msg_name(hdr.type));
                goto fail_free;
        }
        if (welcome.version != PROTO_WIRE_VERSION) {
                r = fail(ret_err, -EPROTONOSUPPORT,
                         "gtraced at %s speaks protocol %u, this client %u: use a matching "
                         "gtracectl",
                         c->path, welcome.version, PROTO_WIRE_VERSION);
                goto fail_free;
        }
        (void)snprintf(c->daemon_software, sizeof(c->daemon_software), "%s", welcome.software);
        free(payload);
        *ret = c;
        return 0;

fail_free:
        free(payload);
        gtrace_client_close(c);
        return r;
}

void gtrace_client_close(struct gtrace_client *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                (void)close(c->fd);
        free(c);
}

int gtrace_client_set_timeout(struct gtrace_client *c, int timeout_ms)
{
        if (!c || timeout_ms <= 0)
                return -EINVAL;
        c->timeout_ms = timeout_ms;
        return 0;
}

const char *gtrace_client_path(const struct gtrace_client *c)
{
        return c->path;
}

const char *gtrace_client_daemon_software(const struct gtrace_client *c)
{
        return c->daemon_software;
}

/* ---- requests ---- */

int gtrace_client_request(struct gtrace_client *c, const char *json, int fd, char **ret_reply,
                          struct gtrace_client_error *ret_err)
{
        size_t len = strlen(json);
        struct proto_header hdr;
        char *payload = NULL;
        uint8_t *frame;
        int r;

        if (ret_err)
                memset(ret_err, 0, sizeof(*ret_err));
        if (c->broken)
                return fail(ret_err, -ENOTCONN,
                            "the connection to gtraced at %s failed earlier: reconnect", c->path);
        if (len > PROTO_MAX_REQUEST_BYTES)
                return fail(ret_err, -EMSGSIZE, "request of %zu bytes is above the limit (%u)", len,
                            PROTO_MAX_REQUEST_BYTES);
        frame = malloc(PROTO_HEADER_BYTES + len);
        if (!frame)
                return fail(ret_err, -ENOMEM, "out of memory");
        proto_header_put(frame, PROTO_MSG_REQUEST, (uint32_t)len);
        memcpy(frame + PROTO_HEADER_BYTES, json, len);

        int64_t deadline = now_ms() + c->timeout_ms;
        r = send_all(c->fd, frame, PROTO_HEADER_BYTES + len, fd, deadline);
        free(frame);
        if (r < 0) {
                c->broken = 1;
                if (r == -EPIPE || r == -ECONNRESET)
                        return fail(ret_err, r, "gtraced at %s closed the connection", c->path);
                return fail(ret_err, r, "sending a request to gtraced at %s: %s", c->path,
                            strerror(-r));
        }
        r = read_frame(c, deadline, &hdr, &payload, ret_err);
        if (r < 0) {
                c->broken = 1;
                return r;
        }
        if (hdr.type == PROTO_MSG_ERROR) {
                c->broken = 1;
                r = daemon_error(c, payload, hdr.length, ret_err);
                free(payload);
                return r;
        }
        if (hdr.type != PROTO_MSG_REPLY) {
                c->broken = 1;
                free(payload);
                return fail(ret_err, -EPROTO, "gtraced at %s sent %s where a REPLY was due",
                            c->path, proto_msg_name(hdr.type));
        }
        *ret_reply = payload;
        return 0;
}

/* Sends a request object and parses the reply; a reply with ok:false
 * becomes its -errno and message.  *ret_reply owned by the caller. */
static int call(struct gtrace_client *c, json_t *req, int fd, json_t **ret_reply,
                struct gtrace_client_error *e)
{
        char *text = json_dumps(req, JSON_COMPACT);
        char *reply_text = NULL;
        json_error_t jerr;
        int r;

        if (!text)
                return fail(e, -ENOMEM, "out of memory");
        r = gtrace_client_request(c, text, fd, &reply_text, e);
        free(text);
        if (r < 0)
                return r;
        json_t *reply = json_loads(reply_text, 0, &jerr);
        free(reply_text);
        if (!json_is_object(reply)) {
                json_decref(reply);
                return fail(e, -EBADMSG, "gtraced at %s sent a reply that is not a JSON object",
                            c->path);
        }
        json_t *ok = json_object_get(reply, "ok");
        if (!json_is_boolean(ok)) {
                json_decref(reply);
                return fail(e, -EBADMSG, "gtraced at %s sent a reply without \"ok\"", c->path);
        }
        if (json_is_false(ok) && !json_is_array(json_object_get(reply, "dumps"))) {
                int code = (int)json_integer_value(json_object_get(reply, "code"));
                if (code <= 0 || code > 4095)
                        code = errno_from_name(json_string_value(json_object_get(reply, "errno")));
                if (code <= 0)
                        code = EPROTO;
                code = caller_code(code);
                const char *msg = json_string_value(json_object_get(reply, "error"));
                r = fail(e, -code, "%s", msg ? msg : strerror(code));
                json_decref(reply);
                return r;
        }
        *ret_reply = reply;
        return 0;
}

static uint64_t get_u64(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);
        if (json_is_integer(v) && json_integer_value(v) >= 0)
                return (uint64_t)json_integer_value(v);
        return 0;
}

static void get_str(json_t *o, const char *key, char *buf, size_t len)
{
        const char *s = json_string_value(json_object_get(o, key));
        (void)snprintf(buf, len, "%s", s ? s : "");
}

int gtrace_client_status(struct gtrace_client *c, struct gtrace_client_status *ret,
                         struct gtrace_client_error *ret_err)
{
        json_t *req = json_pack("{s:s}", "command", "status");
        json_t *reply = NULL;
        if (!req)
                return fail(ret_err, -ENOMEM, "out of memory");
        int r = call(c, req, -1, &reply, ret_err);
        json_decref(req);
        if (r < 0)
                return r;
        struct gtrace_client_status s;
        memset(&s, 0, sizeof(s));
        get_str(reply, "version", s.version, sizeof(s.version));
        s.protocol = get_u64(reply, "protocol");
        s.pid = get_u64(reply, "pid");
        s.uptime_ms = get_u64(reply, "uptime_ms");
        s.processes = get_u64(reply, "processes");
        s.live = get_u64(reply, "live");
        s.exited = get_u64(reply, "exited");
        s.crashed = get_u64(reply, "crashed");
        s.generations = get_u64(reply, "generations");
        s.bytes = get_u64(reply, "bytes");
        s.dumps_written = get_u64(reply, "dumps_written");
        s.dumps_failed = get_u64(reply, "dumps_failed");
        get_str(reply, "socket", s.socket, sizeof(s.socket));
        get_str(reply, "dump_dir", s.dump_dir, sizeof(s.dump_dir));
        json_t *lim = json_object_get(reply, "limits");
        s.limits.generations = get_u64(lim, "generations");
        s.limits.max_process_bytes = get_u64(lim, "max_process_bytes");
        s.limits.max_total_bytes = get_u64(lim, "max_total_bytes");
        s.limits.max_generation_bytes = get_u64(lim, "max_generation_bytes");
        s.limits.retain_exited_s = get_u64(lim, "retain_exited_s");
        s.limits.flush_timeout_ms = get_u64(lim, "flush_timeout_ms");
        s.limits.max_connections = get_u64(lim, "max_connections");
        s.limits.max_processes = get_u64(lim, "max_processes");
        json_decref(reply);
        *ret = s;
        return 0;
}

static void fill_process(json_t *o, struct gtrace_client_process *p)
{
        memset(p, 0, sizeof(*p));
        p->pid = get_u64(o, "pid");
        p->start_time_ns = get_u64(o, "start_time_ns");
        p->uid = get_u64(o, "uid");
        get_str(o, "command", p->command, sizeof(p->command));
        get_str(o, "executable", p->executable, sizeof(p->executable));
        get_str(o, "software", p->software, sizeof(p->software));
        get_str(o, "state", p->state, sizeof(p->state));
        p->signal = get_u64(o, "signal");
        get_str(o, "signal_name", p->signal_name, sizeof(p->signal_name));
        p->generations = get_u64(o, "generations");
        p->bytes = get_u64(o, "bytes");
        p->first_ns = get_u64(o, "first_ns");
        p->last_ns = get_u64(o, "last_ns");
        p->span_ns = get_u64(o, "span_ns");
        p->events_lost = get_u64(o, "events_lost");
        p->generations_lost = get_u64(o, "generations_lost");
        p->generations_evicted = get_u64(o, "generations_evicted");
        p->connected_ns = get_u64(o, "connected_ns");
        p->ended_ns = get_u64(o, "ended_ns");
        json_t *exp = json_object_get(o, "expires_ms");
        p->expires_ms = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : -1;
}

int gtrace_client_list(struct gtrace_client *c, struct gtrace_client_process **ret, size_t *ret_n,
                       struct gtrace_client_error *ret_err)
{
        json_t *req = json_pack("{s:s}", "command", "list");
        json_t *reply = NULL;
        if (!req)
                return fail(ret_err, -ENOMEM, "out of memory");
        int r = call(c, req, -1, &reply, ret_err);
        json_decref(req);
        if (r < 0)
                return r;
        json_t *arr = json_object_get(reply, "processes");
        if (!json_is_array(arr)) {
                json_decref(reply);
                return fail(ret_err, -EBADMSG, "gtraced's list reply has no \"processes\" array");
        }
        size_t n = json_array_size(arr);
        struct gtrace_client_process *v = NULL;
        if (n) {
                v = calloc(n, sizeof(*v));
                if (!v) {
                        json_decref(reply);
                        return fail(ret_err, -ENOMEM, "out of memory for %zu processes", n);
                }
                for (size_t i = 0; i < n; i++)
                        fill_process(json_array_get(arr, i), &v[i]);
        }
        json_decref(reply);
        *ret = v;
        *ret_n = n;
        return 0;
}

static void fill_dump(json_t *o, struct gtrace_client_dump *d)
{
        memset(d, 0, sizeof(*d));
        d->pid = get_u64(o, "pid");
        get_str(o, "command", d->command, sizeof(d->command));
        if (json_is_true(json_object_get(o, "ok"))) {
                get_str(o, "path", d->path, sizeof(d->path));
                d->flushed = json_is_true(json_object_get(o, "flushed"));
                d->generations = get_u64(o, "generations");
                d->bytes = get_u64(o, "bytes");
                return;
        }
        int code = (int)get_u64(o, "code");
        if (code <= 0 || code > 4095)
                code = errno_from_name(json_string_value(json_object_get(o, "errno")));
        d->result = -(code > 0 ? caller_code(code) : EPROTO);
        get_str(o, "error", d->error, sizeof(d->error));
}

static json_t *snapshot_request(const char *reason)
{
        json_t *req = json_pack("{s:s}", "command", "snapshot");
        if (req && reason && json_object_set_new(req, "reason", json_string(reason)) < 0) {
                json_decref(req);
                return NULL;
        }
        return req;
}

int gtrace_client_snapshot(struct gtrace_client *c, uint64_t pid, const char *reason, int fd,
                           struct gtrace_client_dump *ret, struct gtrace_client_error *ret_err)
{
        json_t *reply = NULL;
        int r;

        if (pid == 0 || pid > INT64_MAX)
                return fail(ret_err, -EINVAL, "%llu is not a process id", (unsigned long long)pid);
        if (reason && strlen(reason) > PROTO_MAX_REASON)
                return fail(ret_err, -EINVAL, "the reason is longer than %u bytes",
                            PROTO_MAX_REASON);
        json_t *req = snapshot_request(reason);
        if (!req || json_object_set_new(req, "pid", json_integer((json_int_t)pid)) < 0 ||
            (fd >= 0 && json_object_set_new(req, "fd", json_true()) < 0)) {
                json_decref(req);
                return fail(ret_err, -ENOMEM, "out of memory");
        }
        r = call(c, req, fd, &reply, ret_err);
        json_decref(req);
        if (r < 0) {
                if (ret) {
                        memset(ret, 0, sizeof(*ret));
                        ret->result = r;
                        ret->pid = pid;
                        (void)snprintf(ret->error, sizeof(ret->error), "%s",
                                       ret_err ? ret_err->message : "");
                }
                return r;
        }
        json_t *dumps = json_object_get(reply, "dumps");
        struct gtrace_client_dump d;
        if (json_is_array(dumps) && json_array_size(dumps) == 1)
                fill_dump(json_array_get(dumps, 0), &d);
        else
                fill_dump(reply, &d); /* the top level repeats the element */
        if (!d.pid)
                d.pid = pid;
        json_decref(reply);
        if (ret)
                *ret = d;
        if (d.result < 0)
                return fail(ret_err, d.result, "%s", d.error[0] ? d.error : strerror(-d.result));
        return 0;
}

int gtrace_client_snapshot_all(struct gtrace_client *c, const char *reason,
                               struct gtrace_client_dump **ret, size_t *ret_n,
                               struct gtrace_client_error *ret_err)
{
        json_t *reply = NULL;
        int r;

        if (reason && strlen(reason) > PROTO_MAX_REASON)
                return fail(ret_err, -EINVAL, "the reason is longer than %u bytes",
                            PROTO_MAX_REASON);
        json_t *req = snapshot_request(reason);
        if (!req || json_object_set_new(req, "all", json_true()) < 0) {
                json_decref(req);
                return fail(ret_err, -ENOMEM, "out of memory");
        }
        r = call(c, req, -1, &reply, ret_err);
        json_decref(req);
        if (r < 0)
                return r;
        json_t *arr = json_object_get(reply, "dumps");
        if (!json_is_array(arr)) {
                json_decref(reply);
                return fail(ret_err, -EBADMSG, "gtraced's snapshot reply has no \"dumps\" array");
        }
        size_t n = json_array_size(arr);
        struct gtrace_client_dump *v = NULL;
        if (n) {
                v = calloc(n, sizeof(*v));
                if (!v) {
                        json_decref(reply);
                        return fail(ret_err, -ENOMEM, "out of memory");
                }
        }
        r = 0;
        for (size_t i = 0; i < n; i++) {
                fill_dump(json_array_get(arr, i), &v[i]);
                if (v[i].result < 0 && r == 0)
                        r = fail(ret_err, v[i].result, "pid %llu: %s", (unsigned long long)v[i].pid,
                                 v[i].error);
        }
        json_decref(reply);
        *ret = v;
        *ret_n = n;
        return r;
}

int gtrace_client_snapshot_pid(const char *socket_path, uint64_t pid, const char *reason,
                               char *path, size_t path_len, struct gtrace_client_error *ret_err)
{
        struct gtrace_client *c;
        struct gtrace_client_dump d;
        int r = gtrace_client_connect(socket_path, &c, ret_err);
        if (r < 0)
                return r;
        r = gtrace_client_snapshot(c, pid, reason, -1, &d, ret_err);
        gtrace_client_close(c);
        if (r == 0 && path && path_len) {
                if (strlen(d.path) >= path_len)
                        return fail(ret_err, -ENAMETOOLONG, "the dump path %s does not fit",
                                    d.path);
                memcpy(path, d.path, strlen(d.path) + 1);
        }
        return r;
}
