/* SPDX-License-Identifier: MIT */
/*
 * Reading .gtrace dump files (layout: proto/dumpfile.h, docs/format.md).
 *
 * A dump is read as a stream: the header and META when it is opened, then
 * one GENERATION record at a time, so a file of any length needs memory for
 * one generation blob plus a small read buffer.  The file may be a regular
 * file, a pipe or a socket; nothing here seeks.
 *
 * Lengths in the file are untrusted.  Each is checked against the limit for
 * its record type before anything is allocated, and a generation's buffer
 * grows with the bytes actually read rather than with the length the record
 * claims, so a file that claims 200 MiB and holds 10 bytes costs 64 KiB.
 * A file that ends before its END record is truncated: the generations read
 * until then are still handed out, and the next call reports where the file
 * stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flightrec/reader.h"
#include "flightrec/view.h"
#include "event-kinds.h"
#include "fralloc.h"
#include "proto/varint.h"

#define DR_BUF_BYTES (64u << 10)
#define DR_BLOB_MIN (64u << 10) /* first allocation for a generation blob */
#define DR_END_MAX 16u          /* END payload: one uvarint */

struct fr_dump {
        int fd;
        uint64_t off;  /* file offset of buf[rpos] */
        size_t rpos, rend;
        int eof;
        int done;      /* END read */
        int error;     /* sticky: the file cannot be read further */
        struct fr_error err;
        uint64_t ngens;
        uint8_t *blob;
        size_t cblob;
        struct fr_parser *parser;
        struct fr_parser *parser2; /* fr_dump_parse_threaded's second slot */
        struct fr_dump_meta meta;
        uint8_t buf[DR_BUF_BYTES];
};

__attribute__((format(printf, 4, 5))) static int dr_fail(struct fr_dump *d, int code,
                                                        uint64_t off, const char *fmt, ...)
{
        va_list ap;

        d->err.code = code;
        d->err.offset = off;
        va_start(ap, fmt);
        vsnprintf(d->err.msg, sizeof(d->err.msg), fmt, ap);
        va_end(ap);
        d->error = code;
        return code;
}

/* Reads up to len bytes; fewer only at end of file.  Returns the count or -errno. */
static ssize_t dr_read(struct fr_dump *d, uint8_t *dst, size_t len)
{
        size_t got = 0;

        while (got < len) {
                size_t avail = d->rend - d->rpos;
                ssize_t n;

                if (avail > 0) {
                        size_t take = avail < len - got ? avail : len - got;
                        memcpy(dst + got, d->buf + d->rpos, take);
                        d->rpos += take;
                        d->off += take;
                        got += take;
                        continue;
                }
                if (d->eof)
                        break;
                if (len - got >= sizeof(d->buf)) {
                        /* Large read: straight into the caller's memory. */
                        n = read(d->fd, dst + got, len - got);
                        if (n > 0) {
                                got += (size_t)n;
                                d->off += (uint64_t)n;
                        }
                } else {
                        n = read(d->fd, d->buf, sizeof(d->buf));
                        if (n > 0) {
                                d->rpos = 0;
                                d->rend = (size_t)n;
                        }
                }
                if (n == 0)
                        d->eof = 1;
                else if (n < 0 && errno != EINTR)
                        return -errno;
        }
        return (ssize_t)got;
}

/* 1: a byte; 0: end of file; -errno. */
static int dr_byte(struct fr_dump *d, uint8_t *ret)
{
        if (d->rpos < d->rend) {
                *ret = d->buf[d->rpos++];
                d->off++;
                return 1;
        }
        return (int)dr_read(d, ret, 1);
}

/* 0 ok, 1 end of file before the first byte, -EBADMSG truncated/malformed, -errno. */
static int dr_uvarint(struct fr_dump *d, uint64_t *ret)
{
        uint8_t tmp[PROTO_VARINT_MAX];
        const uint8_t *p = tmp;

        for (size_t i = 0; i < sizeof(tmp); i++) {
                int r = dr_byte(d, &tmp[i]);
                if (r < 0)
                        return r;
                if (r == 0)
                        return i == 0 ? 1 : -EBADMSG;
                if (!(tmp[i] & 0x80))
                        return proto_get_uvarint(&p, tmp + i + 1, ret);
        }
        return -EBADMSG;
}

static int dr_skip(struct fr_dump *d, uint64_t len)
{
        uint8_t tmp[4096];

        while (len > 0) {
                size_t step = len < sizeof(tmp) ? (size_t)len : sizeof(tmp);
                ssize_t n = dr_read(d, tmp, step);
                if (n < 0)
                        return (int)n;
                if ((size_t)n < step)
                        return -EBADMSG;
                len -= step;
        }
        return 0;
}

/* The payload buffer; never NULL, so that `+ 0` on it is defined. */
static const uint8_t *dr_data(const struct fr_dump *d)
{
        static const uint8_t empty[1];
        return d->blob ? d->blob : empty;
}

/*
 * Reads a payload of len bytes into d->blob.  The buffer grows with what the
 * file really holds, never straight to the claimed length.
 */
static int dr_read_payload(struct fr_dump *d, size_t len)
{
        size_t have = 0;

        while (have < len) {
                ssize_t n;

                if (have == d->cblob) {
                        size_t nc = d->cblob ? d->cblob * 2 : DR_BLOB_MIN;
                        uint8_t *q;
                        if (nc > len)
                                nc = len;
                        q = fr_realloc(d->blob, nc);
                        if (!q)
                                return -ENOMEM;
                        d->blob = q;
                        d->cblob = nc;
                }
                n = dr_read(d, d->blob + have, (len < d->cblob ? len : d->cblob) - have);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return -EBADMSG;
                have += (size_t)n;
        }
        return 0;
}

static void dr_text(char *dst, size_t size, const uint8_t *src, uint64_t len)
{
        size_t n = len < size - 1 ? (size_t)len : size - 1;

        /* Keep a cut text valid UTF-8: do not end inside a sequence. */
        if (n < len)
                while (n > 0 && (src[n] & 0xc0) == 0x80)
                        n--;
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static int dr_meta(struct fr_dump *d, const uint8_t *p, const uint8_t *end, uint64_t rec_off)
{
        struct fr_dump_meta *m = &d->meta;
        const uint8_t *start = p;

        while (p < end) {
                uint64_t field_off = rec_off + (uint64_t)(p - start);
                uint8_t key = *p++;
                uint64_t len, v = 0;
                const uint8_t *val;

                if (proto_get_uvarint(&p, end, &len) < 0 || len > (uint64_t)(end - p))
                        return dr_fail(d, -EBADMSG, field_off, "META field 0x%02x is truncated",
                                       key);
                val = p;
                p += len;
                switch (key) {
                case PROTO_META_VERSION:
                case PROTO_META_PID:
                case PROTO_META_DUMP_TIME:
                case PROTO_META_FLUSHED:
                case PROTO_META_START_TIME:
                case PROTO_META_GENS_DROPPED:
                case PROTO_META_UID:
                case PROTO_META_SIGNAL: {
                        const uint8_t *q = val;
                        if (proto_get_uvarint(&q, val + len, &v) < 0 || q != val + len)
                                return dr_fail(d, -EBADMSG, field_off,
                                               "META field 0x%02x is not one integer", key);
                        break;
                }
                default:
                        if (len > PROTO_MAX_TEXT_BYTES)
                                return dr_fail(d, -EBADMSG, field_off,
                                               "META field 0x%02x of %llu bytes exceeds the "
                                               "%u byte limit",
                                               key, (unsigned long long)len,
                                               PROTO_MAX_TEXT_BYTES);
                        break;
                }
                switch (key) {
                case PROTO_META_VERSION: m->version = v; break;
                case PROTO_META_PID: m->pid = v; break;
                case PROTO_META_DUMP_TIME: m->dump_time_ns = v; break;
                case PROTO_META_FLUSHED: m->flushed = v != 0; break;
                case PROTO_META_START_TIME: m->start_time_ns = v; break;
                case PROTO_META_GENS_DROPPED: m->gens_dropped = v; break;
                case PROTO_META_UID: m->uid = v; break;
                case PROTO_META_SIGNAL: m->signal = v; break;
#define TEXT_(k, f)                                                                                \
        case k: dr_text(m->f, sizeof(m->f), val, len); break
                        TEXT_(PROTO_META_COMMAND, command);
                        TEXT_(PROTO_META_EXECUTABLE, executable);
                        TEXT_(PROTO_META_HOST, host);
                        TEXT_(PROTO_META_REASON, reason);
                        TEXT_(PROTO_META_ORIGIN, origin);
                        TEXT_(PROTO_META_PRODUCER, producer);
#undef TEXT_
                default: break; /* a later version's key */
                }
        }
        if (m->version == 0)
                return dr_fail(d, -EBADMSG, rec_off, "META has no format version");
        if (m->version > PROTO_DUMP_VERSION)
                return dr_fail(d, -EPROTONOSUPPORT, rec_off,
                               "dump format version %llu (this reader knows %u)",
                               (unsigned long long)m->version, PROTO_DUMP_VERSION);
        return 0;
}

static void dr_copy_err(const struct fr_dump *d, struct fr_error *ret_err)
{
        if (ret_err)
                *ret_err = d->err;
}

static int dr_header(struct fr_dump *d)
{
        uint8_t magic[PROTO_DUMP_MAGIC_LEN], type = 0;
        uint64_t len, rec_off;
        ssize_t n;
        int r;

        n = dr_read(d, magic, sizeof(magic));
        if (n < 0)
                return dr_fail(d, (int)n, 0, "cannot read: %s", strerror((int)-n));
        if ((size_t)n < sizeof(magic) || memcmp(magic, PROTO_DUMP_MAGIC, sizeof(magic)) != 0)
                return dr_fail(d, -EBADMSG, 0, "not a gtrace dump file (bad magic)");

        rec_off = d->off;
        r = dr_byte(d, &type);
        if (r == 1)
                r = dr_uvarint(d, &len);
        else if (r == 0)
                r = 1;
        if (r < 0 && r != -EBADMSG)
                return dr_fail(d, r, rec_off, "cannot read: %s", strerror(-r));
        if (r != 0)
                return dr_fail(d, -EBADMSG, rec_off, "truncated dump file: no META record");
        if (type != PROTO_DUMP_META)
                return dr_fail(d, -EBADMSG, rec_off, "first record is 0x%02x, not META", type);
        if (len > PROTO_MAX_META_BYTES)
                return dr_fail(d, -EBADMSG, rec_off,
                               "META of %llu bytes exceeds the %u byte limit",
                               (unsigned long long)len, PROTO_MAX_META_BYTES);
        r = dr_read_payload(d, (size_t)len);
        if (r == -EBADMSG)
                return dr_fail(d, r, rec_off, "truncated dump file: META record is cut short");
        if (r < 0)
                return dr_fail(d, r, rec_off, "cannot read META: %s", strerror(-r));
        return dr_meta(d, dr_data(d), dr_data(d) + len, rec_off);
}

int fr_dump_open_fd(int fd, struct fr_dump **ret, struct fr_error *ret_err)
{
        struct fr_dump *d;
        int r;

        if (fd < 0 || !ret)
                return -EINVAL;
        d = fr_calloc(1, sizeof(*d));
        if (!d) {
                if (ret_err)
                        *ret_err = (struct fr_error){.code = -ENOMEM, .msg = "out of memory"};
                close(fd);
                return -ENOMEM;
        }
        d->fd = fd;
        r = dr_header(d);
        if (r < 0) {
                dr_copy_err(d, ret_err);
                fr_dump_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

int fr_dump_open(const char *path, struct fr_dump **ret, struct fr_error *ret_err)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

        if (fd < 0) {
                int r = -errno;
                if (ret_err) {
                        *ret_err = (struct fr_error){.code = r};
                        snprintf(ret_err->msg, sizeof(ret_err->msg), "cannot open %s: %s", path,
                                 strerror(-r));
                }
                return r;
        }
        return fr_dump_open_fd(fd, ret, ret_err);
}

void fr_dump_free(struct fr_dump *d)
{
        if (!d)
                return;
        if (d->fd >= 0)
                close(d->fd);
        fr_parser_free(d->parser);
        fr_parser_free(d->parser2);
        fr_free(d->blob);
        fr_free(d);
}

const struct fr_dump_meta *fr_dump_meta(const struct fr_dump *d)
{
        return &d->meta;
}

static int dr_next(struct fr_dump *d, size_t *ret_len, uint64_t *ret_offset)
{
        for (;;) {
                uint64_t rec_off = d->off, len;
                uint8_t type = 0;
                int r = dr_byte(d, &type);

                if (r == 0)
                        return dr_fail(d, -EBADMSG, rec_off,
                                       "truncated dump file: no END record after %llu "
                                       "generations",
                                       (unsigned long long)d->ngens);
                if (r > 0)
                        r = dr_uvarint(d, &len);
                if (r == 1 || r == -EBADMSG)
                        return dr_fail(d, -EBADMSG, rec_off,
                                       "truncated dump file: record header is cut short");
                if (r < 0)
                        return dr_fail(d, r, rec_off, "cannot read: %s", strerror(-r));

                switch (type) {
                case PROTO_DUMP_GENERATION:
                        if (len > PROTO_MAX_GENERATION_BYTES)
                                return dr_fail(d, -EBADMSG, rec_off,
                                               "GENERATION record of %llu bytes exceeds the %u "
                                               "byte limit",
                                               (unsigned long long)len,
                                               PROTO_MAX_GENERATION_BYTES);
                        *ret_offset = d->off;
                        r = dr_read_payload(d, (size_t)len);
                        if (r == -EBADMSG)
                                return dr_fail(d, r, rec_off,
                                               "truncated dump file: GENERATION record %llu is "
                                               "cut short (%llu bytes announced)",
                                               (unsigned long long)d->ngens + 1,
                                               (unsigned long long)len);
                        if (r < 0)
                                return dr_fail(d, r, rec_off, "cannot read: %s", strerror(-r));
                        d->ngens++;
                        *ret_len = (size_t)len;
                        return 1;
                case PROTO_DUMP_END: {
                        uint64_t count;
                        const uint8_t *p;
                        uint8_t extra;

                        if (len > DR_END_MAX)
                                return dr_fail(d, -EBADMSG, rec_off, "END record of %llu bytes",
                                               (unsigned long long)len);
                        r = dr_read_payload(d, (size_t)len);
                        if (r < 0)
                                return dr_fail(d, r, rec_off,
                                               "truncated dump file: END record is cut short");
                        p = dr_data(d);
                        if (proto_get_uvarint(&p, dr_data(d) + len, &count) < 0)
                                return dr_fail(d, -EBADMSG, rec_off, "malformed END record");
                        if (count != d->ngens)
                                return dr_fail(d, -EBADMSG, rec_off,
                                               "END counts %llu generations, the file holds %llu",
                                               (unsigned long long)count,
                                               (unsigned long long)d->ngens);
                        r = dr_byte(d, &extra);
                        if (r != 0)
                                return dr_fail(d, r < 0 ? r : -EBADMSG, d->off,
                                               "data after the END record");
                        d->done = 1;
                        return 0;
                }
                case PROTO_DUMP_META:
                        return dr_fail(d, -EBADMSG, rec_off, "second META record");
                default:
                        /* A later version's record: skip it. */
                        r = dr_skip(d, len);
                        if (r == -EBADMSG)
                                return dr_fail(d, r, rec_off,
                                               "truncated dump file: record 0x%02x is cut short",
                                               type);
                        if (r < 0)
                                return dr_fail(d, r, rec_off, "cannot read: %s", strerror(-r));
                        break;
                }
        }
}

int fr_dump_next(struct fr_dump *d, const uint8_t **ret_blob, size_t *ret_len,
                 uint64_t *ret_offset, struct fr_error *ret_err)
{
        size_t len = 0;
        uint64_t off = 0;
        int r;

        if (d->error) {
                dr_copy_err(d, ret_err);
                return d->error;
        }
        if (d->done)
                return 0;
        r = dr_next(d, &len, &off);
        if (r < 0) {
                dr_copy_err(d, ret_err);
                return r;
        }
        if (r == 1) {
                *ret_blob = dr_data(d);
                *ret_len = len;
                if (ret_offset)
                        *ret_offset = off;
        }
        return r;
}

int fr_dump_parse(struct fr_dump *d, const struct fr_callbacks *cb, void *ctx,
                  struct fr_error *ret_err)
{
        if (!d->parser) {
                d->parser = fr_parser_new();
                if (!d->parser) {
                        if (ret_err)
                                *ret_err = (struct fr_error){.code = -ENOMEM,
                                                             .offset = d->off,
                                                             .msg = "out of memory"};
                        return -ENOMEM;
                }
        }
        for (;;) {
                const uint8_t *blob = NULL;
                size_t len = 0;
                uint64_t off = 0;
                int r = fr_dump_next(d, &blob, &len, &off, ret_err);

                if (r <= 0)
                        return r;
                r = fr_parser_parse(d->parser, blob, len, off, cb, ctx, ret_err);
                if (r)
                        return r;
        }
}

/* ---- two threads: fr_dump_parse_threaded() ------------------------------- */

/*
 * The reading thread ("reader" below) runs fr_dump_next() and
 * fr_parser_parse() exactly as fr_dump_parse() does, but its callbacks only
 * record what they are given into a queue; the calling thread ("consumer")
 * takes the queue in order and makes the real callbacks.  So the user's
 * callbacks run on the calling thread, in the same order, with the same
 * arguments, while the next events are being read, checked and merged on
 * the other CPU.
 *
 * What a recorded event points to must outlive its recording: strings,
 * stacks and thread names live in the parser, log messages in the
 * generation blob.  So there are two of each (slots): generation N uses
 * slot N % 2, and the reader takes a slot for generation N + 2 only once the
 * consumer has finished generation N with it (its END record).  The reader
 * is thus at most one generation ahead, and at most two generations (blob
 * and tables) are in memory, plus the queue.
 *
 * The queue is a FIFO of chunks of records, at most DR_PIPE_MAX_CHUNKS of
 * them: the reader makes events in bursts (a generation's merge) with
 * pauses (reading and checking the next one), so it should hold a good part
 * of a generation for the consumer to stay busy through the pauses.  A full
 * queue makes the reader wait.  One mutex guards the queue's state; a chunk
 * is handed over whole, so the lock is taken once per chunk, not per event.
 * Before it waits for anything the reader hands over the chunk it is
 * filling (the consumer may need what is in it to release a slot).
 *
 * A callback that returns non-zero on the consumer stops everything: the
 * reader is told (cancel), stops at its next record or wait, and is joined.
 */
#define DR_PIPE_CHUNK (64u << 10)   /* bytes per chunk of records */
#define DR_PIPE_MAX_CHUNKS 256      /* queue bound: 16 MiB */
#define DR_PIPE_CANCELLED INT32_MIN /* the reader's callbacks, once cancelled */

enum { PR_BEGIN = 1, PR_EVENT, PR_END, PR_ERROR, PR_DONE };

/*
 * Records are sequences of 64-bit words; the first is a head, kind |
 * type << 8 | pos << 32.  An event record is
 *   [0] head: PR_EVENT, its type, pos: its offset - the generation's
 *   [1] tid   [2] time   [3] time on CLOCK_MONOTONIC (converted here, on the
 *   reading thread: the consumer has the more work)   then arguments
 *   1..nargs-1, then the pointers of its string arguments and of its bytes
 *   arguments, in argument order;
 * the rest are a struct pr_gen (PR_BEGIN, PR_END, with the slot in pos) or
 * a struct pr_error (PR_ERROR, PR_DONE).  Each side switches on the type
 * to code that copies exactly that type's words (pr_pack, pr_unpack, with
 * the type's argument kinds from event-kinds.h): on the consumer, the
 * export's bottleneck, 45 instructions per event with the loop and the
 * call, against 83 for a copy driven by a per-type table at run time
 * (callgrind, bench-export's 8 MB dump); about 53 bytes per event in the
 * queue.
 * (Queueing the struct fr_event itself, 240 bytes, costs the reader more in
 * cache misses than it saves the consumer in instructions.)
 */
/* The most an event writes: the four words, then each argument but the
 * first, and a pointer for each but the first at most. */
#define PR_EVENT_WORDS (4 + 2 * (PROTO_MAX_ARGS - 1))
#define PR_EVENT_BYTES (PR_EVENT_WORDS * sizeof(uint64_t))

static inline uint64_t pr_head(unsigned kind, unsigned type, uint32_t pos)
{
        return kind | (uint64_t)type << 8 | (uint64_t)pos << 32;
}

struct pr_gen {
        uint64_t head;
        const struct fr_generation *g;
};

struct pr_error {
        uint64_t head;
        int code;
        struct fr_error err;
};

#define PR_MAX (sizeof(struct pr_error) > PR_EVENT_BYTES ? sizeof(struct pr_error) : PR_EVENT_BYTES)

struct dr_chunk {
        struct dr_chunk *next; /* in the free list or the queue */
        size_t len;
        _Alignas(8) uint8_t data[DR_PIPE_CHUNK];
};

struct dr_slot {
        struct fr_parser *parser;
        uint8_t *blob;
        size_t cblob;
        int busy; /* its generation is not finished by the consumer */
};

struct dr_pipe {
        /* The consumer's own (see pr_unpack). */
        struct fr_event evs[256];
        pthread_mutex_t lock;
        pthread_cond_t reader_cond;   /* a chunk came back, a slot was freed, cancel */
        pthread_cond_t consumer_cond; /* a chunk was queued */
        struct dr_chunk *queue, **queue_tail, *free;
        unsigned nchunks;             /* allocated */
        int cancel;                   /* the consumer stopped */
        int exited;                   /* the reader returned */
        struct dr_slot slots[2];
        struct fr_dump *d;
        /* the reader's own */
        struct fr_clockconv conv; /* the current generation's clock */
        struct dr_chunk *cur;
        unsigned cur_slot;
        struct fr_error err;
};

/* Queues the chunk being filled, if it holds anything.  Under no lock. */
static void pipe_publish(struct dr_pipe *pp)
{
        struct dr_chunk *c = pp->cur;

        if (!c || !c->len)
                return;
        pp->cur = NULL;
        c->next = NULL;
        pthread_mutex_lock(&pp->lock);
        *pp->queue_tail = c;
        pp->queue_tail = &c->next;
        pthread_cond_signal(&pp->consumer_cond);
        pthread_mutex_unlock(&pp->lock);
}

/* Room for n bytes of records; NULL when cancelled or out of memory
 * (*ret_code says which). */
static uint8_t *pipe_room(struct dr_pipe *pp, size_t n, int *ret_code)
{
        struct dr_chunk *c = pp->cur;

        if (c && DR_PIPE_CHUNK - c->len >= n)
                return c->data + c->len;
        pipe_publish(pp);
        pthread_mutex_lock(&pp->lock);
        for (;;) {
                if (pp->cancel) {
                        pthread_mutex_unlock(&pp->lock);
                        *ret_code = DR_PIPE_CANCELLED;
                        return NULL;
                }
                if (pp->free) {
                        c = pp->free;
                        pp->free = c->next;
                        c->next = NULL;
                        break;
                }
                if (pp->nchunks < DR_PIPE_MAX_CHUNKS) {
                        pp->nchunks++;
                        pthread_mutex_unlock(&pp->lock);
                        c = fr_malloc(sizeof(*c));
                        if (!c) {
                                pthread_mutex_lock(&pp->lock);
                                pp->nchunks--;
                                pthread_mutex_unlock(&pp->lock);
                                *ret_code = -ENOMEM;
                                return NULL;
                        }
                        c->next = NULL;
                        pthread_mutex_lock(&pp->lock);
                        break;
                }
                pthread_cond_wait(&pp->reader_cond, &pp->lock);
        }
        pthread_mutex_unlock(&pp->lock);
        c->len = 0;
        pp->cur = c;
        return c->data;
}

/* A generation boundary (PR_BEGIN or PR_END) for the consumer. */
static int pr_put_gen(struct dr_pipe *pp, unsigned kind, const struct fr_generation *g)
{
        int code = 0;
        struct pr_gen *r = (struct pr_gen *)(void *)pipe_room(pp, sizeof(*r), &code);

        if (!r)
                return code;
        *r = (struct pr_gen){pr_head(kind, 0, pp->cur_slot), g};
        pp->cur->len += sizeof(*r);
        return 0;
}

static int pr_on_begin(void *ctx, const struct fr_generation *g)
{
        struct dr_pipe *pp = ctx;
        fr_clockconv_init(&pp->conv, &g->clock);
        return pr_put_gen(pp, PR_BEGIN, g);
}

static int pr_on_end(void *ctx, const struct fr_generation *g)
{
        return pr_put_gen(ctx, PR_END, g);
}

/* An event's record, exactly its type's words; returns how many.  Always
 * inlined: with a constant type, straight-line code for that type. */
static inline __attribute__((always_inline)) size_t pr_pack(uint64_t *w, const struct fr_event *ev,
                                                            int64_t mono, const uint8_t type)
{
        const struct fr_kinds *k = &fr_kinds[type];
        size_t n = 4;

        w[1] = ev->tid;
        w[2] = ev->time;
        w[3] = (uint64_t)mono;
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                w[n++] = ev->args[i];
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                if (k->kind[i] == PA_STR)
                        w[n++] = (uint64_t)(uintptr_t)ev->str[i];
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                if (k->kind[i] == PA_BYTES)
                        w[n++] = (uint64_t)(uintptr_t)ev->bytes[i];
        return n;
}

#define PR_PACK_CASE_(name, code, where, doc, ...)                                                 \
        case code:                                                                                 \
                n = pr_pack(w, ev, mono, code);                                                    \
                break;
#define PR_NOARG_(kind, name)

static inline __attribute__((always_inline)) void
pr_put_event(struct dr_pipe *pp, const struct fr_generation *g, const struct fr_event *ev)
{
        struct dr_chunk *c = pp->cur;
        uint64_t *w = (uint64_t *)(void *)(c->data + c->len);
        size_t n;

        int64_t mono = fr_clockconv_mono_inline(&pp->conv, ev->time);

        w[0] = pr_head(PR_EVENT, ev->type, (uint32_t)(ev->offset - g->offset));
        switch (ev->type) {
                PROTO_EVENTS(PR_PACK_CASE_, PR_NOARG_)
        default: n = pr_pack(w, ev, mono, ev->type); break; /* none: the parser rejects them */
        }
        c->len += n * sizeof(uint64_t);
}
#undef PR_PACK_CASE_

static __attribute__((noinline)) int pr_on_event_slow(struct dr_pipe *pp,
                                                      const struct fr_generation *g,
                                                      const struct fr_event *ev)
{
        int code = 0;

        if (!pipe_room(pp, PR_EVENT_BYTES, &code))
                return code;
        pr_put_event(pp, g, ev);
        return 0;
}

static int pr_on_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct dr_pipe *pp = ctx;
        const struct dr_chunk *c = pp->cur;

        if (__builtin_expect(!c || DR_PIPE_CHUNK < c->len + PR_EVENT_BYTES, 0))
                return pr_on_event_slow(pp, g, ev);
        pr_put_event(pp, g, ev);
        return 0;
}

/* The reader's last record: an error (code != 0) or the clean end. */
static void pipe_finish(struct dr_pipe *pp, int code, const struct fr_error *err)
{
        int ignored = 0;
        struct pr_error *r = (struct pr_error *)(void *)pipe_room(pp, sizeof(*r), &ignored);

        /* No room only when cancelled or out of memory: the consumer then
         * learns it from the reader's exit (see pipe_next). */
        if (r) {
                memset(r, 0, sizeof(*r));
                r->head = pr_head(code ? PR_ERROR : PR_DONE, 0, 0);
                r->code = code;
                if (err)
                        r->err = *err;
                pp->cur->len += sizeof(*r);
        }
        pipe_publish(pp);
}

/* Swaps the dump's blob buffer with a slot's (each generation in flight
 * keeps its own bytes). */
static void pipe_swap_blob(struct fr_dump *d, struct dr_slot *s)
{
        uint8_t *b = d->blob;
        size_t c = d->cblob;

        d->blob = s->blob;
        d->cblob = s->cblob;
        s->blob = b;
        s->cblob = c;
}

static void *pipe_reader(void *arg)
{
        struct dr_pipe *pp = arg;
        const struct fr_callbacks cb = {
                .generation_begin = pr_on_begin,
                .event = pr_on_event,
                .generation_end = pr_on_end,
        };
        unsigned slot = 0;

        for (;;) {
                struct dr_slot *s = &pp->slots[slot];
                const uint8_t *blob = NULL;
                size_t len = 0;
                uint64_t off = 0;
                int r;

                /* The slot's last generation must be finished. */
                pipe_publish(pp);
                pthread_mutex_lock(&pp->lock);
                while (s->busy && !pp->cancel)
                        pthread_cond_wait(&pp->reader_cond, &pp->lock);
                r = pp->cancel;
                s->busy = 1;
                pthread_mutex_unlock(&pp->lock);
                if (r)
                        break;

                pipe_swap_blob(pp->d, s);
                r = fr_dump_next(pp->d, &blob, &len, &off, &pp->err);
                pipe_swap_blob(pp->d, s);
                if (r <= 0) {
                        pipe_finish(pp, r, &pp->err);
                        break;
                }
                pp->cur_slot = slot;
                r = fr_parser_parse(s->parser, blob, len, off, &cb, pp, &pp->err);
                if (r == DR_PIPE_CANCELLED)
                        break;
                if (r) {
                        /* -ENOMEM from the queue itself has no message yet. */
                        if (r == -ENOMEM && !pp->err.msg[0])
                                pp->err = (struct fr_error){
                                        .code = -ENOMEM, .offset = off, .msg = "out of memory"};
                        pipe_finish(pp, r, &pp->err);
                        break;
                }
                slot ^= 1;
        }
        pipe_publish(pp);
        pthread_mutex_lock(&pp->lock);
        pp->exited = 1;
        pthread_cond_signal(&pp->consumer_cond);
        pthread_mutex_unlock(&pp->lock);
        return NULL;
}

/*
 * Rebuilds an event from its record (as pr_pack, always inlined).  The
 * consumer keeps one struct fr_event per type (evs), so only what changes
 * from one event of a type to the next is written: the slots a type does
 * not use stay 0 for good.
 */
static inline __attribute__((always_inline)) const struct fr_event *
pr_unpack(struct dr_pipe *pp, const uint8_t **pp_p, const struct fr_generation *g,
          const uint8_t type)
{
        const struct fr_kinds *k = &fr_kinds[type];
        const uint64_t *w = (const uint64_t *)(const void *)*pp_p;
        struct fr_event *ev = &pp->evs[type];
        size_t n = 4;

        ev->offset = g->offset + (w[0] >> 32);
        ev->tid = w[1];
        ev->time = ev->args[0] = w[2];
        ev->mono_ns = (int64_t)w[3];
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                ev->args[i] = w[n++];
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                if (k->kind[i] == PA_STR)
                        ev->str[i] = (const char *)(uintptr_t)w[n++];
#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++)
                if (k->kind[i] == PA_BYTES)
                        ev->bytes[i] = (const uint8_t *)(uintptr_t)w[n++];
        *pp_p += n * sizeof(uint64_t);
        return ev;
}

#define PR_UNPACK_CASE_(name, code, where, doc, ...)                                               \
        case code: ev = pr_unpack(pp, &p, g, code); break;

/* The consumer's side: the next chunk, or NULL once the reader has exited
 * without a last record (it had no memory for it). */
static struct dr_chunk *pipe_next(struct dr_pipe *pp)
{
        struct dr_chunk *c;

        pthread_mutex_lock(&pp->lock);
        while (!pp->queue && !pp->exited)
                pthread_cond_wait(&pp->consumer_cond, &pp->lock);
        c = pp->queue;
        if (c) {
                pp->queue = c->next;
                if (!pp->queue)
                        pp->queue_tail = &pp->queue;
        }
        pthread_mutex_unlock(&pp->lock);
        return c;
}

static void pipe_recycle(struct dr_pipe *pp, struct dr_chunk *c)
{
        pthread_mutex_lock(&pp->lock);
        c->next = pp->free;
        pp->free = c;
        pthread_cond_signal(&pp->reader_cond);
        pthread_mutex_unlock(&pp->lock);
}

/* Runs the callbacks for everything the reader queues, up to its last
 * record; returns what fr_dump_parse() would have returned. */
static int pipe_consume(struct dr_pipe *pp, const struct fr_callbacks *cb, void *ctx,
                        struct fr_error *ret_err)
{
        const struct fr_generation *g = NULL;
        const struct fr_event *ev;
        /* Loaded once: the callbacks could change *cb, as far as the
         * compiler knows, and the loop would reload it for every event. */
        int (*const on_begin)(void *, const struct fr_generation *) = cb ? cb->generation_begin : NULL;
        int (*const on_event)(void *, const struct fr_generation *, const struct fr_event *) =
                cb ? cb->event : NULL;
        int (*const on_end)(void *, const struct fr_generation *) = cb ? cb->generation_end : NULL;

        for (;;) {
                struct dr_chunk *c = pipe_next(pp);
                const uint8_t *p, *end;
                int rc = 0, done = 0;

                if (!c) {
                        /* The reader could not even say why. */
                        if (ret_err)
                                *ret_err = (struct fr_error){.code = -ENOMEM,
                                                             .msg = "out of memory"};
                        return -ENOMEM;
                }
                p = c->data;
                end = c->data + c->len;
                while (p < end && !rc) {
                        uint64_t head;
                        memcpy(&head, p, sizeof(head));
                        switch (head & 0xff) {
                        case PR_EVENT:
                                switch ((uint8_t)(head >> 8)) {
                                        PROTO_EVENTS(PR_UNPACK_CASE_, PR_NOARG_)
                                default: ev = pr_unpack(pp, &p, g, (uint8_t)(head >> 8)); break;
                                }
                                if (on_event)
                                        rc = on_event(ctx, g, ev);
                                break;
                        case PR_BEGIN:
                                g = ((const struct pr_gen *)(const void *)p)->g;
                                p += sizeof(struct pr_gen);
                                if (on_begin)
                                        rc = on_begin(ctx, g);
                                break;
                        case PR_END:
                                p += sizeof(struct pr_gen);
                                if (on_end)
                                        rc = on_end(ctx, g);
                                /* Done with its slot: the reader may reuse it. */
                                pthread_mutex_lock(&pp->lock);
                                pp->slots[(head >> 32) & 1].busy = 0;
                                pthread_cond_signal(&pp->reader_cond);
                                pthread_mutex_unlock(&pp->lock);
                                break;
                        default: {
                                const struct pr_error *e = (const struct pr_error *)(const void *)p;
                                done = 1;
                                rc = (head & 0xff) == PR_DONE ? 0 : e->code;
                                if ((head & 0xff) == PR_ERROR && ret_err)
                                        *ret_err = e->err;
                                p = end;
                                break;
                        }
                        }
                }
                pipe_recycle(pp, c);
                if (rc || done)
                        return rc;
        }
}

#undef PR_UNPACK_CASE_
#undef PR_NOARG_

static void pipe_free_chunks(struct dr_chunk *c)
{
        while (c) {
                struct dr_chunk *next = c->next;
                fr_free(c);
                c = next;
        }
}

int fr_dump_parse_threaded(struct fr_dump *d, uint64_t min_bytes, const struct fr_callbacks *cb,
                           void *ctx, struct fr_error *ret_err)
{
        struct dr_pipe *pp;
        struct stat st;
        pthread_t reader;
        int r;

        /* Small regular files: a thread costs more than it saves. */
        if (d->error || d->done ||
            (fstat(d->fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < min_bytes))
                return fr_dump_parse(d, cb, ctx, ret_err);
        pp = fr_calloc(1, sizeof(*pp));
        if (!pp)
                return fr_dump_parse(d, cb, ctx, ret_err);
        pp->d = d;
        pp->queue_tail = &pp->queue;
        for (unsigned c = 0; c < 256; c++) {
                pp->evs[c].type = (uint8_t)c;
                pp->evs[c].spec = proto_event_spec((uint8_t)c);
                pp->evs[c].mono_ok = 1;
        }
        if (!d->parser)
                d->parser = fr_parser_new();
        if (!d->parser2)
                d->parser2 = fr_parser_new();
        pp->slots[0].parser = d->parser;
        pp->slots[1].parser = d->parser2;
        if (!d->parser || !d->parser2 || pthread_mutex_init(&pp->lock, NULL) != 0) {
                fr_free(pp);
                return fr_dump_parse(d, cb, ctx, ret_err);
        }
        pthread_cond_init(&pp->reader_cond, NULL);
        pthread_cond_init(&pp->consumer_cond, NULL);
        /* Slot 0 starts with the dump's own buffer. */
        pipe_swap_blob(d, &pp->slots[0]);
        if (pthread_create(&reader, NULL, pipe_reader, pp) != 0) {
                pipe_swap_blob(d, &pp->slots[0]);
                r = fr_dump_parse(d, cb, ctx, ret_err);
                goto out;
        }
        r = pipe_consume(pp, cb, ctx, ret_err);
        pthread_mutex_lock(&pp->lock);
        pp->cancel = 1;
        pthread_cond_signal(&pp->reader_cond);
        pthread_mutex_unlock(&pp->lock);
        pthread_join(reader, NULL);
        /* The dump keeps one buffer; the other slot's goes. */
        pipe_swap_blob(d, &pp->slots[0]);
        fr_free(pp->slots[1].blob);
out:
        pipe_free_chunks(pp->cur);
        pipe_free_chunks(pp->queue);
        pipe_free_chunks(pp->free);
        pthread_cond_destroy(&pp->reader_cond);
        pthread_cond_destroy(&pp->consumer_cond);
        pthread_mutex_destroy(&pp->lock);
        fr_free(pp);
        return r;
}
