/* SPDX-License-Identifier: MIT */
/*
 * Writing a .gtrace dump file (layout: proto/dumpfile.h, docs/format.md).
 *
 * The crash handler calls this from a fatal-signal handler, so everything
 * here is async-signal-safe by construction: no malloc, no stdio, no locale,
 * no errno-dependent library calls other than write(2).  Output goes through
 * a small stack buffer so that the many tiny pieces (record headers, varints,
 * META fields) cost a handful of system calls; large payloads (generation
 * blobs, long texts) are written straight from the caller's memory.
 *
 * Sizes are computed before anything is written: a record's length prefix
 * comes first, so the META payload length must be known up front, and a
 * generation too large for any reader is refused (-EMSGSIZE) before the file
 * is touched rather than producing a dump nobody can open.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "proto/dumpfile.h"
#include "proto/varint.h"

#define DW_BUF_BYTES 1024

struct dw {
        int fd;
        int err; /* first error, sticky: later writes are skipped */
        size_t n;
        uint8_t buf[DW_BUF_BYTES];
};

/* write(2) until done, retrying on EINTR and short writes. */
static int dw_write_all(int fd, const uint8_t *p, size_t len)
{
        while (len > 0) {
                ssize_t w = write(fd, p, len);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (w == 0)
                        return -EIO; /* a regular file or pipe never does this; do not spin */
                p += w;
                len -= (size_t)w;
        }
        return 0;
}

static void dw_flush(struct dw *w)
{
        if (w->err == 0 && w->n > 0)
                w->err = dw_write_all(w->fd, w->buf, w->n);
        w->n = 0;
}

static void dw_bytes(struct dw *w, const void *p, size_t len)
{
        if (w->err || len == 0)
                return;
        if (len > sizeof(w->buf) - w->n) {
                dw_flush(w);
                if (len > sizeof(w->buf) / 2) {
                        /* Big piece: skip the copy. */
                        if (w->err == 0)
                                w->err = dw_write_all(w->fd, p, len);
                        return;
                }
        }
        memcpy(w->buf + w->n, p, len);
        w->n += len;
}

static void dw_u8(struct dw *w, uint8_t b)
{
        dw_bytes(w, &b, 1);
}

static void dw_uvarint(struct dw *w, uint64_t v)
{
        uint8_t tmp[PROTO_VARINT_MAX];
        dw_bytes(w, tmp, (size_t)(proto_put_uvarint(tmp, v) - tmp));
}

/*
 * Length of a META text, capped at PROTO_MAX_TEXT_BYTES.  A cut never splits
 * a UTF-8 sequence: it backs off over continuation bytes so the kept prefix
 * stays valid text.
 */
static size_t dw_text_len(const char *s)
{
        size_t n = 0;
        while (n < PROTO_MAX_TEXT_BYTES && s[n] != '\0')
                n++;
        if (n == PROTO_MAX_TEXT_BYTES && s[n] != '\0') {
                while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80)
                        n--;
        }
        return n;
}

/* The META fields, as (key, integer) or (key, text) pairs. */
struct dw_field {
        uint8_t key;
        const char *text; /* NULL: integer field */
        uint64_t value;   /* integer, or the text's length */
};

static size_t dw_fields(const struct proto_dump_meta *m, struct dw_field *f)
{
        size_t n = 0;
#define INT_(k, v) f[n++] = (struct dw_field){(k), NULL, (v)}
#define TEXT_(k, s)                                                                                \
        do {                                                                                       \
                if (s)                                                                             \
                        f[n++] = (struct dw_field){(k), (s), dw_text_len(s)};                      \
        } while (0)
        INT_(PROTO_META_VERSION, PROTO_DUMP_VERSION);
        if (m) {
                INT_(PROTO_META_PID, m->pid);
                INT_(PROTO_META_UID, m->uid);
                INT_(PROTO_META_DUMP_TIME, m->dump_time_ns);
                if (m->start_time_ns)
                        INT_(PROTO_META_START_TIME, m->start_time_ns);
                INT_(PROTO_META_GENS_DROPPED, m->gens_dropped);
                if (m->signal)
                        INT_(PROTO_META_SIGNAL, m->signal);
                INT_(PROTO_META_FLUSHED, m->flushed ? 1 : 0);
                TEXT_(PROTO_META_COMMAND, m->command);
                TEXT_(PROTO_META_EXECUTABLE, m->executable);
                TEXT_(PROTO_META_HOST, m->host);
                TEXT_(PROTO_META_REASON, m->reason);
                TEXT_(PROTO_META_ORIGIN, m->origin);
                TEXT_(PROTO_META_PRODUCER, m->producer);
        }
#undef INT_
#undef TEXT_
        return n;
}

#define DW_MAX_FIELDS 16

/* The META payload's length; -EMSGSIZE when over the format's limit (at
 * most 6 texts of 4 KiB plus small integers: it never is). */
static int64_t dw_meta_len(const struct dw_field *f, size_t nf)
{
        uint64_t len = 0;
        for (size_t i = 0; i < nf; i++) {
                uint64_t vlen = f[i].text ? f[i].value : proto_uvarint_len(f[i].value);
                len += 1 + proto_uvarint_len(vlen) + vlen;
        }
        return len > PROTO_MAX_META_BYTES ? -EMSGSIZE : (int64_t)len;
}

int64_t proto_dump_size(const struct proto_dump_meta *meta, const struct iovec *gens,
                        size_t ngens)
{
        struct dw_field f[DW_MAX_FIELDS];
        int64_t meta_len = dw_meta_len(f, dw_fields(meta, f));
        if (meta_len < 0)
                return meta_len;
        uint64_t size = PROTO_DUMP_MAGIC_LEN + 1 + proto_uvarint_len((uint64_t)meta_len) +
                        (uint64_t)meta_len;
        for (size_t i = 0; i < ngens; i++)
                size += 1 + proto_uvarint_len(gens[i].iov_len) + gens[i].iov_len;
        size += 1 + proto_uvarint_len(proto_uvarint_len(ngens)) + proto_uvarint_len(ngens);
        return (int64_t)size;
}

int proto_dump_write(int fd, const struct proto_dump_meta *meta, const struct iovec *gens,
                     size_t ngens)
{
        struct dw w = {.fd = fd};
        struct dw_field f[DW_MAX_FIELDS];
        size_t nf = dw_fields(meta, f);
        int64_t meta_len = dw_meta_len(f, nf);

        if (fd < 0 || (ngens > 0 && !gens))
                return -EINVAL;
        for (size_t i = 0; i < ngens; i++) {
                if (!gens[i].iov_base && gens[i].iov_len)
                        return -EINVAL;
                if (gens[i].iov_len > PROTO_MAX_GENERATION_BYTES)
                        return -EMSGSIZE;
        }

        if (meta_len < 0)
                return (int)meta_len;

        dw_bytes(&w, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);

        dw_u8(&w, PROTO_DUMP_META);
        dw_uvarint(&w, (uint64_t)meta_len);
        for (size_t i = 0; i < nf; i++) {
                dw_u8(&w, f[i].key);
                if (f[i].text) {
                        dw_uvarint(&w, f[i].value);
                        dw_bytes(&w, f[i].text, (size_t)f[i].value);
                } else {
                        dw_uvarint(&w, proto_uvarint_len(f[i].value));
                        dw_uvarint(&w, f[i].value);
                }
        }

        for (size_t i = 0; i < ngens; i++) {
                dw_u8(&w, PROTO_DUMP_GENERATION);
                dw_uvarint(&w, gens[i].iov_len);
                dw_bytes(&w, gens[i].iov_base, gens[i].iov_len);
        }

        dw_u8(&w, PROTO_DUMP_END);
        dw_uvarint(&w, proto_uvarint_len(ngens));
        dw_uvarint(&w, ngens);
        dw_flush(&w);
        return w.err;
}
