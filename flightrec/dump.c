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
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "flightrec/reader.h"
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
