/* SPDX-License-Identifier: MIT */
/*
 * One client connection: reading and splitting frames, the state machine
 * (drawn in gtraced.h), and the output queue.
 *
 * Input goes into a small staging buffer; a frame whose payload does not
 * fit there (every GENERATION, large REQUESTs) is read in place: the header
 * is checked against the type's limit, a buffer of exactly the payload size
 * is allocated (for GENERATION, the reference-counted generation buffer the
 * ring will keep, so ingest never copies twice), and reads go straight into
 * it.  The read callback only splits frames and dispatches; the handlers in
 * producer.c and control.c do the work and the state transitions.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gtraced.h"

static uint64_t next_conn_id = 1;

/* Checks the state machine drawn in gtraced.h against the fields (debug builds). */
#ifndef NDEBUG
#include <assert.h>
static void conn_assert_state(const struct gd_conn *c)
{
        switch (c->state) {
        case GD_CONN_HELLO:
                assert(!c->proc && gd_list_empty(&c->snaps));
                break;
        case GD_CONN_PRODUCER:
        case GD_CONN_GOODBYE:
                assert(c->proc && c->proc->nconns > 0);
                assert(c->pending_fd < 0);
                break;
        case GD_CONN_CONTROL:
                assert(!c->proc && !c->big_gen);
                break;
        case GD_CONN_CONTROL_BUSY:
                /* A snapshot is outstanding and answers through this connection. */
                assert(!c->proc && !gd_list_empty(&c->snaps));
                break;
        case GD_CONN_CLOSED:
                assert(!c->proc && !c->big && gd_list_empty(&c->outq));
                break;
        }
        assert(!c->big_gen || c->big == c->big_gen->data);
        assert(!c->big || c->big_fill <= c->big_hdr.length);
        assert(c->rlen <= sizeof(c->rbuf));
}
#else
static void conn_assert_state(const struct gd_conn *c)
{
        (void)c;
}
#endif

static void conn_update_poll(struct gd_conn *c);
static void on_conn_poll(uv_poll_t *h, int status, int events);
static void conn_process_frames(struct gd_conn *c);

const char *gd_conn_name(const struct gd_conn *c, char *buf, size_t len)
{
        if (c->proc)
                snprintf(buf, len, "pid %" PRIu64 " (%.64s)", c->proc->pid, c->proc->command);
        else
                snprintf(buf, len, "connection %" PRIu64 " (pid %d, uid %u)", c->id,
                         (int)c->cred.pid, (unsigned)c->cred.uid);
        return buf;
}

static void on_conn_closed(uv_handle_t *h)
{
        struct gd_conn *c = h->data;
        close(c->fd);
        free(c);
}

static void big_release(struct gd_conn *c)
{
        if (c->big_gen)
                fr_genbuf_unref(c->big_gen);
        else
                free(c->big);
        c->big_gen = NULL;
        c->big = NULL;
        c->big_fill = 0;
}

void gd_conn_close(struct gd_conn *c)
{
        if (c->state == GD_CONN_CLOSED)
                return;
        if (c->proc)
                producer_detach(c);
        gd_snap_conn_gone(c);
        c->state = GD_CONN_CLOSED;
        big_release(c);
        if (c->pending_fd >= 0)
                close(c->pending_fd);
        c->pending_fd = -1;
        while (!gd_list_empty(&c->outq)) {
                struct gd_outchunk *ch = gd_container_of(c->outq.next, struct gd_outchunk, link);
                gd_list_remove(&ch->link);
                free(ch->data);
                free(ch);
        }
        c->outq_bytes = 0;
        gd_list_remove(&c->link);
        c->srv->nconns--;
        gd_server_status_changed(c->srv);
        uv_poll_stop(&c->poll);
        uv_close((uv_handle_t *)&c->poll, on_conn_closed);
}

/* Sends as much queued output as the socket takes.  0, or -errno (closed). */
static int conn_flush(struct gd_conn *c)
{
        while (!gd_list_empty(&c->outq)) {
                struct gd_outchunk *ch = gd_container_of(c->outq.next, struct gd_outchunk, link);
                ssize_t n = send(c->fd, ch->data + ch->off, ch->len - ch->off,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                ch->off += (size_t)n;
                c->outq_bytes -= (size_t)n;
                if (ch->off < ch->len)
                        break;
                gd_list_remove(&ch->link);
                free(ch->data);
                free(ch);
        }
        return 0;
}

static int conn_queue(struct gd_conn *c, uint8_t *data, size_t len)
{
        if (c->state == GD_CONN_CLOSED) {
                free(data);
                return -ENOTCONN;
        }
        if (c->outq_bytes + len > GD_CONN_MAX_OUTQ) {
                char name[128];
                free(data);
                log_peer_warning("Dropping %s: it does not read its replies",
                                 gd_conn_name(c, name, sizeof(name)));
                gd_conn_close(c);
                return -ENOBUFS;
        }
        struct gd_outchunk *ch = malloc(sizeof(*ch));
        if (!ch) {
                free(data);
                gd_conn_close(c);
                return -ENOMEM;
        }
        *ch = (struct gd_outchunk){.len = len, .data = data};
        gd_list_append(&c->outq, &ch->link);
        c->outq_bytes += len;
        int r = conn_flush(c);
        if (r < 0) {
                char name[128];
                log_debug_errno(r, "Send to %s failed: %m", gd_conn_name(c, name, sizeof(name)));
                gd_conn_close(c);
                return r;
        }
        conn_update_poll(c);
        return 0;
}

int gd_conn_send(struct gd_conn *c, const void *data, size_t len)
{
        uint8_t *copy = malloc(len);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, data, len);
        return conn_queue(c, copy, len);
}

int gd_conn_send_owned(struct gd_conn *c, uint16_t type, uint8_t *payload, size_t len)
{
        /* One chunk with the header in front: a copy of the payload, which is
         * small next to the JSON encoding that produced it. */
        uint8_t *frame = malloc(PROTO_HEADER_BYTES + len);
        if (!frame) {
                free(payload);
                return -ENOMEM;
        }
        proto_header_put(frame, type, (uint32_t)len);
        memcpy(frame + PROTO_HEADER_BYTES, payload, len);
        free(payload);
        return conn_queue(c, frame, PROTO_HEADER_BYTES + len);
}

void gd_conn_fail(struct gd_conn *c, int code, const char *fmt, ...)
{
        if (c->state == GD_CONN_CLOSED)
                return;
        struct proto_error e = {.code = (uint32_t)(code < 0 ? -code : code)};
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e.message, sizeof(e.message), fmt, ap);
        va_end(ap);
        char name[128];
        log_peer_warning("Dropping %s: %s", gd_conn_name(c, name, sizeof(name)), e.message);
        uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_ERROR_BYTES];
        ssize_t n = proto_encode_error(frame, sizeof(frame), &e);
        /* Best effort: whatever is queued goes first, then the ERROR; a peer
         * that does not read loses it, we do not wait. */
        if (n > 0 && conn_flush(c) == 0 && gd_list_empty(&c->outq))
                (void)send(c->fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        gd_conn_close(c);
}

static int conn_reading(const struct gd_conn *c)
{
        return c->state == GD_CONN_HELLO || c->state == GD_CONN_PRODUCER ||
               c->state == GD_CONN_GOODBYE || c->state == GD_CONN_CONTROL;
}

static void conn_update_poll(struct gd_conn *c)
{
        if (c->state == GD_CONN_CLOSED)
                return;
        int ev = (conn_reading(c) ? UV_READABLE : 0) |
                 (gd_list_empty(&c->outq) ? 0 : UV_WRITABLE);
        if (ev == c->poll_events)
                return;
        c->poll_events = ev;
        if (ev)
                uv_poll_start(&c->poll, ev, on_conn_poll);
        else
                uv_poll_stop(&c->poll);
}

/* Which frame types each state accepts (the rest are protocol errors). */
static int frame_allowed(enum gd_conn_state st, uint16_t type)
{
        switch (st) {
        case GD_CONN_HELLO: return type == PROTO_MSG_HELLO;
        case GD_CONN_PRODUCER:
                return type == PROTO_MSG_GENERATION || type == PROTO_MSG_FLUSH_DONE ||
                       type == PROTO_MSG_DUMP_REQUEST || type == PROTO_MSG_CRASH ||
                       type == PROTO_MSG_GOODBYE;
        case GD_CONN_CONTROL: return type == PROTO_MSG_REQUEST;
        default: return 0;
        }
}

static void conn_hello(struct gd_conn *c, const uint8_t *p, size_t len)
{
        struct proto_hello h;
        int r = proto_decode_hello(p, len, &h);
        if (r == -EPROTONOSUPPORT) {
                gd_conn_fail(c, r, "protocol version %u not supported; this daemon speaks %u",
                             h.version, PROTO_WIRE_VERSION);
                return;
        }
        if (r == -EPROTO) {
                gd_conn_fail(c, r, "unknown role %u in HELLO", h.role);
                return;
        }
        if (r < 0) {
                gd_conn_fail(c, r, "malformed HELLO");
                return;
        }
        if (h.role == PROTO_ROLE_PRODUCER) {
                (void)producer_hello(c, &h);
                return;
        }
        struct proto_welcome w = {.version = PROTO_WIRE_VERSION};
        snprintf(w.software, sizeof(w.software), "gtraced %s", GTRACED_VERSION);
        uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_WELCOME_BYTES];
        ssize_t n = proto_encode_welcome(frame, sizeof(frame), &w);
        c->state = GD_CONN_CONTROL;
        if (n > 0)
                (void)gd_conn_send(c, frame, (size_t)n);
}

/* Checks a header as it arrives: from it alone, before any payload. */
static int conn_check_header(struct gd_conn *c, const uint8_t *hdr, struct proto_header *h)
{
        int r = proto_header_get(hdr, h);
        if (r == -EBADMSG) {
                gd_conn_fail(c, r, "malformed frame header (reserved bits set)");
                return r;
        }
        if (r == -EPROTO) {
                gd_conn_fail(c, r, "unknown message type 0x%x", h->type);
                return r;
        }
        if (r == -EMSGSIZE) {
                gd_conn_fail(c, r, "%s frame of %" PRIu32 " bytes exceeds the limit of %" PRIu32,
                             proto_msg_name(h->type), h->length, proto_msg_max(h->type));
                return r;
        }
        if (!frame_allowed(c->state, h->type)) {
                gd_conn_fail(c, -EPROTO, "%s not allowed %s", proto_msg_name(h->type),
                             c->state == GD_CONN_HELLO      ? "before HELLO"
                             : c->state == GD_CONN_GOODBYE ? "after GOODBYE"
                                                            : "in this role");
                return -EPROTO;
        }
        if (h->type == PROTO_MSG_GENERATION && h->length > c->srv->max_generation) {
                gd_conn_fail(c, -EMSGSIZE,
                             "GENERATION of %" PRIu32 " bytes exceeds this daemon's limit of "
                             "%" PRIu64,
                             h->length, c->srv->max_generation);
                return -EMSGSIZE;
        }
        return 0;
}

/* One whole frame whose payload is in memory (staging buffer or in place). */
static void conn_dispatch(struct gd_conn *c, const struct proto_header *h, const uint8_t *p)
{
        switch (c->state) {
        case GD_CONN_HELLO: conn_hello(c, p, h->length); break;
        case GD_CONN_PRODUCER: (void)producer_frame(c, h, p); break;
        case GD_CONN_CONTROL: (void)control_request(c, p, h->length); break;
        default: break;
        }
}

/* Splits and dispatches the frames in the staging buffer.  A handler may
 * answer at once and resume the connection (gd_conn_resume()); the loop
 * here then simply goes on, it is never re-entered. */
static void conn_process(struct gd_conn *c)
{
        c->dispatching++;
        conn_process_frames(c);
        c->dispatching--;
}

static void conn_process_frames(struct gd_conn *c)
{
        size_t off = 0;
        while (conn_reading(c) && c->rlen - off >= PROTO_HEADER_BYTES) {
                struct proto_header h;
                if (conn_check_header(c, c->rbuf + off, &h) < 0)
                        return; /* closed */
                size_t avail = c->rlen - off - PROTO_HEADER_BYTES;
                const uint8_t *payload = c->rbuf + off + PROTO_HEADER_BYTES;
                if (h.type == PROTO_MSG_GENERATION) {
                        struct fr_genbuf *b = fr_genbuf_new(h.length);
                        if (!b) {
                                gd_conn_fail(c, -ENOMEM, "out of memory for a generation of "
                                                         "%" PRIu32 " bytes",
                                             h.length);
                                return;
                        }
                        size_t take = avail < h.length ? avail : h.length;
                        memcpy(b->data, payload, take);
                        off += PROTO_HEADER_BYTES + take;
                        if (take == h.length) {
                                (void)producer_generation(c, b);
                                continue;
                        }
                        c->big_hdr = h;
                        c->big_gen = b;
                        c->big = b->data;
                        c->big_fill = take;
                        break;
                }
                if (avail >= h.length) {
                        off += PROTO_HEADER_BYTES + h.length;
                        conn_dispatch(c, &h, payload);
                        if (c->state == GD_CONN_CLOSED)
                                return;
                        continue;
                }
                if (PROTO_HEADER_BYTES + h.length <= sizeof(c->rbuf))
                        break; /* it will fit: wait for the rest */
                c->big = malloc(h.length);
                if (!c->big) {
                        gd_conn_fail(c, -ENOMEM, "out of memory for a frame");
                        return;
                }
                memcpy(c->big, payload, avail);
                c->big_hdr = h;
                c->big_fill = avail;
                off = c->rlen;
                break;
        }
        if (c->state == GD_CONN_CLOSED)
                return;
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
}

/* The in-place frame is complete. */
static void conn_big_done(struct gd_conn *c)
{
        struct proto_header h = c->big_hdr;
        if (c->big_gen) {
                struct fr_genbuf *b = c->big_gen;
                c->big_gen = NULL;
                c->big = NULL;
                c->big_fill = 0;
                (void)producer_generation(c, b);
                return;
        }
        uint8_t *p = c->big;
        c->big = NULL;
        c->big_fill = 0;
        conn_dispatch(c, &h, p);
        free(p);
}

/* Keeps the one descriptor a control request may carry; closes the rest. */
static void conn_take_fds(struct gd_conn *c, struct msghdr *msg)
{
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *fds = (int *)CMSG_DATA(cm);
                for (size_t i = 0; i < n; i++) {
                        int fd;
                        memcpy(&fd, &fds[i], sizeof(fd));
                        if (c->pending_fd < 0 && c->state == GD_CONN_CONTROL)
                                c->pending_fd = fd;
                        else
                                close(fd);
                }
        }
}

static void conn_read(struct gd_conn *c)
{
        size_t budget = GD_CONN_READ_BUDGET;
        while (conn_reading(c) && budget > 0) {
                ssize_t n;
                if (c->big) {
                        size_t want = c->big_hdr.length - c->big_fill;
                        if (want > budget)
                                want = budget;
                        n = recv(c->fd, c->big + c->big_fill, want, MSG_DONTWAIT);
                } else {
                        union {
                                struct cmsghdr h;
                                uint8_t buf[CMSG_SPACE(4 * sizeof(int))];
                        } cbuf;
                        struct iovec iov = {c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen};
                        struct msghdr msg = {.msg_iov = &iov,
                                             .msg_iovlen = 1,
                                             .msg_control = &cbuf,
                                             .msg_controllen = sizeof(cbuf)};
                        n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                        if (n >= 0 && msg.msg_controllen > 0)
                                conn_take_fds(c, &msg);
                }
                if (n == 0) {
                        char name[128];
                        if (c->rlen || c->big)
                                log_peer_warning("%s ended in the middle of a frame",
                                                 gd_conn_name(c, name, sizeof(name)));
                        gd_conn_close(c);
                        return;
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        char name[128];
                        log_debug_errno(-errno, "Read from %s failed: %m",
                                        gd_conn_name(c, name, sizeof(name)));
                        gd_conn_close(c);
                        return;
                }
                budget -= (size_t)n < budget ? (size_t)n : budget;
                if (c->big) {
                        c->big_fill += (size_t)n;
                        if (c->big_fill == c->big_hdr.length)
                                conn_big_done(c);
                        continue;
                }
                c->rlen += (size_t)n;
                conn_process(c);
        }
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
        struct gd_conn *c = h->data;
        if (status < 0) {
                gd_conn_close(c);
                return;
        }
        if (events & UV_WRITABLE) {
                int r = conn_flush(c);
                if (r < 0) {
                        gd_conn_close(c);
                        return;
                }
        }
        if ((events & (UV_READABLE | UV_DISCONNECT)) && conn_reading(c))
                conn_read(c);
        conn_assert_state(c);
        if (c->state != GD_CONN_CLOSED)
                conn_update_poll(c);
}

void gd_conn_resume(struct gd_conn *c)
{
        if (c->state != GD_CONN_CONTROL_BUSY)
                return;
        c->state = GD_CONN_CONTROL;
        if (c->dispatching)
                return; /* the frame loop that dispatched the request goes on */
        conn_process(c);
        if (c->state != GD_CONN_CLOSED)
                conn_update_poll(c);
}

static void on_hello_timer(uv_timer_t *t)
{
        gd_conn_hello_sweep(t->data);
}

void gd_conn_hello_sweep(struct gd_server *s)
{
        uint64_t now = gd_now_mono_ms();
        int waiting = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->conns)
        {
                struct gd_conn *c = gd_container_of(l, struct gd_conn, link);
                if (c->state != GD_CONN_HELLO)
                        continue;
                if (now - c->accepted_ms >= s->cfg->hello_timeout_ms)
                        gd_conn_fail(c, -ETIMEDOUT, "no HELLO within %u ms",
                                     s->cfg->hello_timeout_ms);
                else
                        waiting = 1;
        }
        if (!waiting)
                uv_timer_stop(&s->hello_timer);
}

int gd_conn_new(struct gd_server *s, int fd)
{
        struct gd_conn *c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->srv = s;
        c->fd = fd;
        c->pending_fd = -1;
        c->id = next_conn_id++;
        c->state = GD_CONN_HELLO;
        gd_list_init(&c->outq);
        gd_list_init(&c->snaps);
        gd_list_init(&c->proc_link);
        socklen_t len = sizeof(c->cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                int r = -errno;
                close(fd);
                free(c);
                return r;
        }
        int r = uv_poll_init(s->loop, &c->poll, fd);
        if (r < 0) {
                close(fd);
                free(c);
                return r;
        }
        c->poll.data = c;
        gd_list_append(&s->conns, &c->link);
        s->nconns++;
        c->poll_events = UV_READABLE;
        uv_poll_start(&c->poll, UV_READABLE, on_conn_poll);
        c->accepted_ms = gd_now_mono_ms();
        if (!uv_is_active((uv_handle_t *)&s->hello_timer)) {
                /* Checked at a quarter of the timeout: dropped within 1.25x of it. */
                uint64_t every = s->cfg->hello_timeout_ms / 4 ? s->cfg->hello_timeout_ms / 4 : 1;
                uv_timer_start(&s->hello_timer, on_hello_timer, every, every);
        }
        log_debug("Connection %" PRIu64 " from pid %d uid %u", c->id, (int)c->cred.pid,
                  (unsigned)c->cred.uid);
        return 0;
}
