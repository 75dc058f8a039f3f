/* SPDX-License-Identifier: MIT */
/*
 * The runtime's connection to gtraced (contract: daemon.h; wire format:
 * docs/protocol.md).
 *
 * Everything here runs on the advance thread, on a non-blocking socket:
 * a send that would block leaves the rest for the next service round (the
 * advance thread polls for POLLOUT), so the application never waits on the
 * daemon (invariant 7).  What cannot be sent stays in the in-process ring,
 * which bounds the memory; the ring, not this file, decides what is dropped.
 *
 * Connection states:
 *
 *     DOWN ──connect ok──▶ HELLO ──WELCOME──▶ UP
 *       ▲                    │                 │
 *       └── EOF, error, ERROR, bad frame ──────┘   (reconnect after backoff)
 *
 * Output order on one connection matters: FLUSH_DONE must follow the
 * generation it names, and DUMP_REQUEST the generation cut for it.  Small
 * frames therefore wait in a queue, each behind a generation number, and
 * go out only once every ring entry up to that generation has been sent.
 *
 * The crash path (gt_daemon_crash) never touches the regular connection: a
 * thread of the dying process might be in the middle of writing a frame on
 * it.  It opens a connection of its own and speaks the whole exchange there;
 * gtraced attributes both connections to the same process.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "gtrace/gtrace.h"
#include "proto/dumpfile.h"
#include "proto/wire.h"

#define DAEMON_BACKOFF_MIN_MS 50     /* first reconnect delay */
#define DAEMON_BACKOFF_MAX_MS 2000   /* reconnect delays double up to this */
#define DAEMON_SNDBUF (4 << 20)      /* asked for; the kernel may cap it */
#define DAEMON_SMALLQ 16             /* queued FLUSH_DONE / DUMP_REQUEST / GOODBYE */
#define DAEMON_MAX_FLUSH_IDS 16      /* FLUSH requests answered by one generation */
#define DAEMON_FREE_WAIT_MS 500      /* gt_daemon_close(): bound on pushing the rest */
#define DAEMON_RBUF 8192             /* > the largest daemon -> producer frame */
#define DAEMON_SMALL_MAX (PROTO_HEADER_BYTES + PROTO_MAX_DUMP_REQUEST_BYTES)

_Static_assert(DAEMON_RBUF >= PROTO_HEADER_BYTES + PROTO_MAX_DUMP_REPLY_BYTES,
               "receive buffer must hold any frame the daemon sends");

enum { ST_DOWN, ST_HELLO, ST_UP };

struct small_frame {
        uint64_t after_gen; /* sendable once no unsent ring entry has gen <= this */
        bool unresolved;    /* after_gen is taken from the ring at the next service */
        size_t len;
        uint8_t buf[DAEMON_SMALL_MAX];
};

struct gt_daemon {
        struct sockaddr_un addr;
        struct gt_proc_info info;
        uint8_t hello[PROTO_MAX_SMALL_FRAME]; /* encoded once; the crash path sends it too */
        size_t hello_len;

        int fd;
        _Atomic int state; /* also read by gtrace_get_stats() and the crash handler */
        uint64_t next_attempt_ns;
        uint32_t backoff_ms;
        uint64_t max_generation;  /* from WELCOME; read (racily, harmlessly) by the crash path */

        /* The frame being sent: a small frame (copied) or a blob (referenced). */
        uint8_t cur_small[DAEMON_SMALL_MAX];
        uint8_t cur_hdr[PROTO_HEADER_BYTES];
        struct gt_blob *cur_blob;
        size_t cur_len; /* whole frame */
        size_t cur_off; /* sent so far */
        bool cur_active;

        struct small_frame q[DAEMON_SMALLQ];
        unsigned qhead, qcount;

        uint64_t flush_ids[DAEMON_MAX_FLUSH_IDS];
        unsigned nflush;

        uint8_t rbuf[DAEMON_RBUF];
        size_t rlen;
        bool stalled; /* a reply is parked in rbuf for the next round */
};

static uint64_t mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct gt_daemon *gt_daemon_new(const char *socket_path, const struct gt_proc_info *info)
{
        if (!socket_path || strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return NULL;
        struct gt_daemon *d = calloc(1, sizeof(*d));
        if (!d)
                return NULL;
        d->addr.sun_family = AF_UNIX;
        memcpy(d->addr.sun_path, socket_path, strlen(socket_path) + 1);
        d->info = *info;
        d->fd = -1;
        d->state = ST_DOWN;
        d->backoff_ms = DAEMON_BACKOFF_MIN_MS;

        struct proto_hello *h = calloc(1, sizeof(*h));
        if (!h) {
                free(d);
                return NULL;
        }
        h->version = PROTO_WIRE_VERSION;
        h->role = PROTO_ROLE_PRODUCER;
        h->pid = (uint64_t)info->pid;
        h->uid = (uint64_t)info->uid;
        h->start_time_ns = info->start_time_ns;
        h->clock_freq = info->clock_freq;
        memcpy(h->software, "libgtrace " GTRACE_VERSION_STRING,
               sizeof("libgtrace " GTRACE_VERSION_STRING));
        memcpy(h->command, info->command, strnlen(info->command, sizeof(info->command) - 1));
        memcpy(h->executable, info->executable,
               strnlen(info->executable, sizeof(info->executable) - 1));
        ssize_t n = proto_encode_hello(d->hello, sizeof(d->hello), h);
        free(h);
        if (n < 0) {
                free(d);
                return NULL;
        }
        d->hello_len = (size_t)n;
        return d;
}

int gt_daemon_connected(const struct gt_daemon *d)
{
        return d && d->state == ST_UP;
}

struct gt_blob *gt_daemon_partial(const struct gt_daemon *d)
{
        if (!d || d->state != ST_UP || !d->cur_active || !d->cur_blob || d->cur_off >= d->cur_len)
                return NULL;
        return d->cur_blob;
}

/* ---- connection lifecycle --------------------------------------------------- */

static void cur_release(struct gt_daemon *d)
{
        gt_blob_unref(d->cur_blob);
        d->cur_blob = NULL;
        d->cur_active = false;
        d->cur_len = d->cur_off = 0;
}

static void disconnect(struct gt_daemon *d, struct gt_ring *ring)
{
        if (d->fd >= 0)
                close(d->fd);
        d->fd = -1;
        /* A generation cut off mid-frame was never received: if the ring
         * still holds it just before the unsent ones, send it again later. */
        if (d->cur_blob && ring && ring->count > ring->unsent &&
            gt_ring_at(ring, (uint32_t)(ring->count - ring->unsent - 1)) == d->cur_blob) {
                ring->unsent++;
                if (ring->sent_total)
                        ring->sent_total--;
        }
        cur_release(d);
        /* FLUSH_DONE and DUMP_REQUEST mean nothing to the next connection. */
        d->qhead = d->qcount = 0;
        d->nflush = 0;
        d->rlen = 0;
        d->stalled = false;
        d->state = ST_DOWN;
        d->next_attempt_ns = mono_ns() + (uint64_t)d->backoff_ms * 1000000ull;
        d->backoff_ms = d->backoff_ms * 2 > DAEMON_BACKOFF_MAX_MS ? DAEMON_BACKOFF_MAX_MS
                                                                 : d->backoff_ms * 2;
}

static void try_connect(struct gt_daemon *d)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                goto fail;
        /* An AF_UNIX connect completes at once or fails (EAGAIN: backlog full). */
        if (connect(fd, (const struct sockaddr *)&d->addr, sizeof(d->addr)) < 0) {
                close(fd);
                goto fail;
        }
        int sz = DAEMON_SNDBUF;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        d->fd = fd;
        d->state = ST_HELLO;
        memcpy(d->cur_small, d->hello, d->hello_len);
        d->cur_len = d->hello_len;
        d->cur_off = 0;
        d->cur_active = true;
        return;
fail:
        d->next_attempt_ns = mono_ns() + (uint64_t)d->backoff_ms * 1000000ull;
        d->backoff_ms = d->backoff_ms * 2 > DAEMON_BACKOFF_MAX_MS ? DAEMON_BACKOFF_MAX_MS
                                                                 : d->backoff_ms * 2;
}

/* ---- output ------------------------------------------------------------------ */

static bool queue_small(struct gt_daemon *d, const uint8_t *frame, size_t len, uint64_t after_gen,
                        bool unresolved)
{
        if (d->qcount == DAEMON_SMALLQ || len > DAEMON_SMALL_MAX)
                return false;
        struct small_frame *f = &d->q[(d->qhead + d->qcount) % DAEMON_SMALLQ];
        memcpy(f->buf, frame, len);
        f->len = len;
        f->after_gen = after_gen;
        f->unresolved = unresolved;
        d->qcount++;
        return true;
}

static void resolve_small(struct gt_daemon *d, const struct gt_ring *ring)
{
        const struct gt_blob *newest = ring && ring->count ? gt_ring_at(ring, ring->count - 1) : NULL;
        uint64_t after = ring && ring->unsent && newest ? newest->gen : 0;
        for (unsigned i = 0; i < d->qcount; i++) {
                struct small_frame *f = &d->q[(d->qhead + i) % DAEMON_SMALLQ];
                if (f->unresolved) {
                        f->after_gen = after;
                        f->unresolved = false;
                }
        }
}

/* Picks the next frame to send; false when there is nothing (or nothing yet). */
static bool next_frame(struct gt_daemon *d, struct gt_ring *ring)
{
        for (;;) {
                struct gt_blob *b = ring ? gt_ring_first_unsent(ring) : NULL;
                if (d->qcount) {
                        struct small_frame *f = &d->q[d->qhead];
                        if (!f->unresolved && (!b || b->gen > f->after_gen)) {
                                memcpy(d->cur_small, f->buf, f->len);
                                d->cur_len = f->len;
                                d->cur_off = 0;
                                d->cur_active = true;
                                d->qhead = (d->qhead + 1) % DAEMON_SMALLQ;
                                d->qcount--;
                                return true;
                        }
                }
                if (!b)
                        return false;
                /* Taken off the unsent list now: if the ring evicts it while we
                 * send, that is not a loss (our reference keeps it alive). */
                gt_ring_mark_sent(ring);
                if (b->len > d->max_generation || b->len > UINT32_MAX)
                        continue; /* the daemon would refuse it and drop us */
                d->cur_blob = gt_blob_ref(b);
                proto_header_put(d->cur_hdr, PROTO_MSG_GENERATION, (uint32_t)b->len);
                d->cur_len = PROTO_HEADER_BYTES + b->len;
                d->cur_off = 0;
                d->cur_active = true;
                return true;
        }
}

/* Sends the current frame as far as the socket takes: 1 done, 0 blocked, -errno. */
static int send_cur(struct gt_daemon *d)
{
        while (d->cur_off < d->cur_len) {
                struct iovec iov[2];
                int n = 0;
                if (d->cur_blob) {
                        if (d->cur_off < PROTO_HEADER_BYTES)
                                iov[n++] = (struct iovec){d->cur_hdr + d->cur_off,
                                                          PROTO_HEADER_BYTES - d->cur_off};
                        size_t boff = d->cur_off > PROTO_HEADER_BYTES
                                              ? d->cur_off - PROTO_HEADER_BYTES
                                              : 0;
                        iov[n++] = (struct iovec){d->cur_blob->data + boff,
                                                  d->cur_blob->len - boff};
                } else {
                        iov[n++] = (struct iovec){d->cur_small + d->cur_off,
                                                  d->cur_len - d->cur_off};
                }
                struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
                ssize_t w = sendmsg(d->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                d->cur_off += (size_t)w;
        }
        cur_release(d);
        return 1;
}

/* Sends what it can.  -errno when the connection broke. */
static int pump_out(struct gt_daemon *d, struct gt_ring *ring)
{
        for (;;) {
                if (!d->cur_active) {
                        if (d->state != ST_UP || !next_frame(d, ring))
                                return 0;
                }
                int r = send_cur(d);
                if (r <= 0)
                        return r;
        }
}

/* ---- input --------------------------------------------------------------------- */

/* Handles the frames in rbuf.  -errno: protocol error, disconnect. */
static int parse_in(struct gt_daemon *d, struct gt_daemon_events *ret)
{
        size_t off = 0;
        int r = 0;
        d->stalled = false;
        for (;;) {
                struct proto_header h;
                const uint8_t *p;
                ssize_t n = proto_frame_split(d->rbuf + off, d->rlen - off, &h, &p);
                if (n < 0) {
                        r = (int)n;
                        break;
                }
                if (n == 0)
                        break;
                if (h.type == PROTO_MSG_WELCOME && d->state == ST_HELLO) {
                        struct proto_welcome w;
                        r = proto_decode_welcome(p, h.length, &w);
                        if (r < 0)
                                break;
                        d->max_generation = w.max_generation;
                        d->state = ST_UP;
                        d->backoff_ms = DAEMON_BACKOFF_MIN_MS;
                } else if (h.type == PROTO_MSG_FLUSH && d->state == ST_UP) {
                        struct proto_flush f;
                        r = proto_decode_flush(p, h.length, &f);
                        if (r < 0)
                                break;
                        if (d->nflush < DAEMON_MAX_FLUSH_IDS)
                                d->flush_ids[d->nflush++] = f.id;
                        if (ret) {
                                ret->flush_requested = 1;
                                ret->flush_id = f.id;
                        }
                } else if (h.type == PROTO_MSG_DUMP_REPLY && d->state == ST_UP) {
                        if (ret && ret->dump_done) {
                                /* One reply per round: keep this one for the next. */
                                d->stalled = true;
                                break;
                        }
                        struct proto_dump_reply *m = malloc(sizeof(*m));
                        if (!m) {
                                d->stalled = true;
                                break;
                        }
                        r = proto_decode_dump_reply(p, h.length, m);
                        if (r == 0 && ret) {
                                ret->dump_done = 1;
                                ret->dump_id = m->id;
                                ret->dump_result = m->result;
                                size_t len = strnlen(m->text, sizeof(ret->dump_path) - 1);
                                memcpy(ret->dump_path, m->text, len);
                                ret->dump_path[len] = '\0';
                        }
                        free(m);
                        if (r < 0)
                                break;
                } else {
                        /* ERROR (the daemon closes next), or a frame out of place. */
                        r = h.type == PROTO_MSG_ERROR ? -ECONNREFUSED : -EPROTO;
                        break;
                }
                off += (size_t)n;
        }
        memmove(d->rbuf, d->rbuf + off, d->rlen - off);
        d->rlen -= off;
        return r;
}

static int pump_in(struct gt_daemon *d, struct gt_daemon_events *ret, bool may_read)
{
        for (;;) {
                if (d->stalled || d->rlen == sizeof(d->rbuf)) {
                        int r = parse_in(d, ret);
                        if (r < 0)
                                return r;
                        if (d->stalled || d->rlen == sizeof(d->rbuf))
                                return 0;
                }
                if (!may_read)
                        return 0;
                ssize_t n = recv(d->fd, d->rbuf + d->rlen, sizeof(d->rbuf) - d->rlen,
                                 MSG_DONTWAIT);
                if (n == 0)
                        return -ECONNRESET;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                d->rlen += (size_t)n;
                int r = parse_in(d, ret);
                if (r < 0)
                        return r;
        }
}

/* ---- the advance thread's entry points ---------------------------------------------- */

int gt_daemon_pollfd(struct gt_daemon *d, short *ret_events, int *ret_timeout_ms)
{
        if (d->fd < 0) {
                uint64_t now = mono_ns();
                *ret_events = 0;
                *ret_timeout_ms = d->next_attempt_ns > now
                                          ? (int)((d->next_attempt_ns - now + 999999) / 1000000)
                                          : 0;
                return -1;
        }
        short ev = POLLIN;
        if (d->cur_active || d->qcount)
                ev |= POLLOUT;
        *ret_events = ev;
        *ret_timeout_ms = d->stalled ? 0 : -1;
        return d->fd;
}

void gt_daemon_service(struct gt_daemon *d, struct gt_ring *ring, struct gt_daemon_events *ret,
                       bool may_read)
{
        if (d->fd < 0) {
                if (mono_ns() < d->next_attempt_ns)
                        return;
                try_connect(d);
                if (d->fd < 0)
                        return;
        }
        int r = pump_in(d, ret, may_read);
        if (r == 0) {
                resolve_small(d, ring);
                r = pump_out(d, ring);
        }
        if (r < 0)
                disconnect(d, ring);
}

void gt_daemon_flush_done(struct gt_daemon *d, uint64_t flush_id, uint64_t gen)
{
        if (d->state != ST_UP)
                return;
        bool listed = false;
        for (unsigned i = 0; i < d->nflush; i++)
                listed |= d->flush_ids[i] == flush_id;
        if (!listed && d->nflush < DAEMON_MAX_FLUSH_IDS)
                d->flush_ids[d->nflush++] = flush_id;
        /* One generation answers every FLUSH that arrived before it was cut. */
        for (unsigned i = 0; i < d->nflush; i++) {
                uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_SMALL_BYTES];
                struct proto_flush_done m = {.id = d->flush_ids[i], .gen = gen};
                ssize_t n = proto_encode_flush_done(frame, sizeof(frame), &m);
                if (n > 0)
                        (void)queue_small(d, frame, (size_t)n, gen, false);
        }
        d->nflush = 0;
}

int gt_daemon_request_dump(struct gt_daemon *d, uint64_t id, const char *reason)
{
        if (d->state != ST_UP)
                return -ENOTCONN;
        struct proto_dump_request *m = calloc(1, sizeof(*m));
        uint8_t frame[DAEMON_SMALL_MAX];
        if (!m)
                return -ENOMEM;
        m->id = id;
        if (reason)
                memcpy(m->reason, reason, strnlen(reason, PROTO_MAX_REASON));
        ssize_t n = proto_encode_dump_request(frame, sizeof(frame), m);
        free(m);
        if (n < 0)
                return (int)n;
        /* Behind whatever generation is unsent now: the one cut for this dump. */
        return queue_small(d, frame, (size_t)n, 0, true) ? 0 : -ENOBUFS;
}

void gt_daemon_close(struct gt_daemon *d, struct gt_ring *ring)
{
        if (!d)
                return;
        if (d->fd >= 0) {
                uint8_t frame[PROTO_HEADER_BYTES];
                ssize_t n = proto_encode_goodbye(frame, sizeof(frame));
                bool queued = n > 0 && queue_small(d, frame, (size_t)n, 0, true);
                uint64_t deadline = mono_ns() + DAEMON_FREE_WAIT_MS * 1000000ull;
                while (d->fd >= 0 && queued) {
                        int r = pump_in(d, NULL, true);
                        if (r == 0) {
                                resolve_small(d, ring);
                                r = pump_out(d, ring);
                        }
                        if (r < 0)
                                break;
                        if (d->state == ST_UP && !d->cur_active && !d->qcount)
                                break; /* GOODBYE is out */
                        uint64_t now = mono_ns();
                        if (now >= deadline)
                                break;
                        struct pollfd pfd = {.fd = d->fd,
                                             .events = (short)(POLLIN |
                                                               (d->cur_active ? POLLOUT : 0))};
                        (void)poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
                }
                close(d->fd);
                d->fd = -1;
        }
        cur_release(d);
        d->state = ST_DOWN;
}

void gt_daemon_free(struct gt_daemon *d)
{
        if (!d)
                return;
        cur_release(d);
        free(d);
}

/* ---- the crash path: async-signal-safe ---------------------------------------------- */

/* Sends all of buf before the deadline; false if it could not. */
static bool crash_send(int fd, const void *buf, size_t len, uint64_t deadline)
{
        const uint8_t *p = buf;
        while (len) {
                ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                        p += w;
                        len -= (size_t)w;
                        continue;
                }
                if (w < 0 && errno != EAGAIN && errno != EINTR)
                        return false;
                uint64_t now = mono_ns();
                if (now >= deadline)
                        return false;
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                (void)poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
        }
        return true;
}

/* One GENERATION frame; false when it cannot be sent in time. */
static bool crash_send_gen(int fd, const struct iovec *g, uint64_t max, uint64_t deadline)
{
        if (!g->iov_len || g->iov_len > max)
                return true; /* gtraced would refuse it: skip */
        uint8_t hdr[PROTO_HEADER_BYTES];
        proto_header_put(hdr, PROTO_MSG_GENERATION, (uint32_t)g->iov_len);
        return crash_send(fd, hdr, sizeof(hdr), deadline) &&
               crash_send(fd, g->iov_base, g->iov_len, deadline);
}

int gt_daemon_crash(struct gt_daemon *d, int signo, const struct iovec *sealed,
                    const struct iovec *backlog, size_t nbacklog, int timeout_ms)
{
        int ret = -ENOTCONN;
        if (!d)
                return ret;
        int saved = errno;
        uint64_t deadline = mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                goto out;
        if (connect(fd, (const struct sockaddr *)&d->addr, sizeof(d->addr)) < 0)
                goto out_close;
        if (!crash_send(fd, d->hello, d->hello_len, deadline))
                goto out_close;
        /* Wait for WELCOME: once gtraced has attached this connection to the
         * process, the old connection ending (when we die) cannot make the
         * process look finished before our CRASH is read. */
        uint8_t in[PROTO_HEADER_BYTES + PROTO_MAX_WELCOME_BYTES];
        size_t got = 0;
        for (;;) {
                struct proto_header h;
                const uint8_t *p;
                ssize_t n = proto_frame_split(in, got, &h, &p);
                if (n < 0)
                        goto out_close;
                if (n > 0) {
                        if (h.type != PROTO_MSG_WELCOME)
                                goto out_close;
                        break;
                }
                if (got == sizeof(in))
                        goto out_close;
                ssize_t r = recv(fd, in + got, sizeof(in) - got, MSG_DONTWAIT);
                if (r > 0) {
                        got += (size_t)r;
                        continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR))
                        goto out_close;
                uint64_t now = mono_ns();
                if (now >= deadline)
                        goto out_close;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                (void)poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
        }
        uint64_t max = d->max_generation ? d->max_generation : PROTO_MAX_GENERATION_BYTES;
        if (!crash_send_gen(fd, sealed, max, deadline))
                goto out_close;
        uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_SMALL_BYTES];
        struct proto_crash c = {.signo = (uint32_t)signo};
        ssize_t n = proto_encode_crash(frame, sizeof(frame), &c);
        if (n <= 0 || !crash_send(fd, frame, (size_t)n, deadline))
                goto out_close;
        ret = 0;
        for (size_t i = 0; i < nbacklog; i++)
                if (!crash_send_gen(fd, &backlog[i], max, deadline))
                        break;
out_close:
        close(fd);
out:
        errno = saved;
        return ret;
}
