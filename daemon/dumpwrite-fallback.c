/* SPDX-License-Identifier: MIT */
/*
 * A weak stand-in for proto_dump_write() (protocol/dumpwrite.c), so gtraced
 * links while that file is not in the tree.  The real definition, when
 * linked, wins; this one writes the same container (proto/dumpfile.h) in
 * the simplest way.  Remove once protocol/dumpwrite.c is always built.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proto/dumpfile.h"
#include "proto/varint.h"

static int fb_write(int fd, const void *p, size_t len)
{
        const uint8_t *b = p;
        while (len) {
                ssize_t n = write(fd, b, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                b += n;
                len -= (size_t)n;
        }
        return 0;
}

static size_t fb_int(uint8_t *o, uint8_t key, uint64_t v)
{
        uint8_t *p = o;
        *p++ = key;
        p = proto_put_uvarint(p, proto_uvarint_len(v));
        p = proto_put_uvarint(p, v);
        return (size_t)(p - o);
}

static size_t fb_text(uint8_t *o, uint8_t key, const char *s)
{
        if (!s)
                return 0;
        size_t n = strnlen(s, PROTO_MAX_TEXT_BYTES);
        uint8_t *p = o;
        *p++ = key;
        p = proto_put_uvarint(p, n);
        memcpy(p, s, n);
        return (size_t)(p - o) + n;
}

__attribute__((weak)) int proto_dump_write(int fd, const struct proto_dump_meta *m,
                                           const struct iovec *gens, size_t ngens)
{
        static __thread uint8_t meta[6 * (PROTO_MAX_TEXT_BYTES + 16) + 256];
        uint8_t hdr[1 + PROTO_VARINT_MAX];
        size_t n = 0;
        n += fb_int(meta + n, PROTO_META_VERSION, PROTO_DUMP_VERSION);
        n += fb_int(meta + n, PROTO_META_PID, m->pid);
        n += fb_int(meta + n, PROTO_META_UID, m->uid);
        n += fb_int(meta + n, PROTO_META_DUMP_TIME, m->dump_time_ns);
        if (m->start_time_ns)
                n += fb_int(meta + n, PROTO_META_START_TIME, m->start_time_ns);
        n += fb_int(meta + n, PROTO_META_GENS_DROPPED, m->gens_dropped);
        if (m->signal)
                n += fb_int(meta + n, PROTO_META_SIGNAL, m->signal);
        n += fb_int(meta + n, PROTO_META_FLUSHED, m->flushed ? 1 : 0);
        n += fb_text(meta + n, PROTO_META_COMMAND, m->command);
        n += fb_text(meta + n, PROTO_META_EXECUTABLE, m->executable);
        n += fb_text(meta + n, PROTO_META_HOST, m->host);
        n += fb_text(meta + n, PROTO_META_REASON, m->reason);
        n += fb_text(meta + n, PROTO_META_ORIGIN, m->origin);
        n += fb_text(meta + n, PROTO_META_PRODUCER, m->producer);

        int r = fb_write(fd, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);
        hdr[0] = PROTO_DUMP_META;
        size_t h = (size_t)(proto_put_uvarint(hdr + 1, n) - hdr);
        if (r == 0)
                r = fb_write(fd, hdr, h);
        if (r == 0)
                r = fb_write(fd, meta, n);
        for (size_t i = 0; r == 0 && i < ngens; i++) {
                hdr[0] = PROTO_DUMP_GENERATION;
                h = (size_t)(proto_put_uvarint(hdr + 1, gens[i].iov_len) - hdr);
                r = fb_write(fd, hdr, h);
                if (r == 0)
                        r = fb_write(fd, gens[i].iov_base, gens[i].iov_len);
        }
        uint8_t end[2 + 2 * PROTO_VARINT_MAX];
        end[0] = PROTO_DUMP_END;
        uint8_t *e = proto_put_uvarint(end + 1, proto_uvarint_len(ngens));
        e = proto_put_uvarint(e, ngens);
        if (r == 0)
                r = fb_write(fd, end, (size_t)(e - end));
        return r;
}
