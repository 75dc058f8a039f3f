/* SPDX-License-Identifier: MIT */
/*
 * Minimal hand-built generation blobs for the daemon's tests: GENERATION,
 * CLOCK, one STRING record padding the blob to the size asked for, and
 * END_OF_GENERATION.  Structurally valid per docs/format.md (no batches).
 */
#ifndef TESTS_DAEMON_BLOB_H
#define TESTS_DAEMON_BLOB_H

#include <stdint.h>
#include <string.h>

#include "proto/event.h"
#include "proto/varint.h"

#define DAEMON_BLOB_MIN 64u /* every blob is at least this big */

/*
 * Writes a blob of exactly len bytes (len >= DAEMON_BLOB_MIN) into out.
 * Its clock runs at 1e9 units per second; the generation spans
 * [wall_ns, wall_ns + 1000) in wall time.
 */
static inline void daemon_blob_fill(uint8_t *out, size_t len, uint64_t gen, uint64_t pid,
                                    uint64_t wall_ns)
{
        uint8_t head[96], tail[48];
        uint8_t *p = head;
        *p++ = PROTO_EV_GENERATION;
        p = proto_put_uvarint(p, gen);
        p = proto_put_uvarint(p, pid);
        p = proto_put_uvarint(p, PROTO_FORMAT_VERSION);
        *p++ = PROTO_EV_CLOCK;
        p = proto_put_uvarint(p, 1000000000u); /* freq */
        p = proto_put_uvarint(p, 1000);        /* ref */
        p = proto_put_uvarint(p, 1000);        /* mono_ns */
        p = proto_put_uvarint(p, wall_ns);     /* wall_ns */
        p = proto_put_uvarint(p, 1000);        /* start */
        p = proto_put_uvarint(p, 2000);        /* end */
        size_t head_len = (size_t)(p - head);

        uint8_t *q = tail;
        *q++ = PROTO_EV_END_OF_GENERATION;
        q = proto_put_uvarint(q, gen);
        q = proto_put_uvarint(q, 0);
        q = proto_put_uvarint(q, 0);
        q = proto_put_uvarint(q, 0);
        size_t tail_len = (size_t)(q - tail);

        /* Two STRING records fill what is left: id 1 takes the bulk, id 2
         * (0..126 bytes) absorbs the sizes a varint length cannot hit. */
        size_t room = len - head_len - tail_len, n1 = 0, n2 = 0;
        for (n2 = 0; n2 <= 126; n2++) {
                size_t want = room - 3 - n2 - 2; /* n1 + len(n1) */
                size_t vl;
                for (vl = 1; vl <= 10; vl++)
                        if (want >= vl && proto_uvarint_len(want - vl) == vl)
                                break;
                if (vl <= 10) {
                        n1 = want - vl;
                        break;
                }
        }

        memcpy(out, head, head_len);
        uint8_t *o = out + head_len;
        *o++ = PROTO_EV_STRING;
        *o++ = 1;
        o = proto_put_uvarint(o, n1);
        memset(o, 'x', n1);
        o += n1;
        *o++ = PROTO_EV_STRING;
        *o++ = 2;
        *o++ = (uint8_t)n2;
        memset(o, 'y', n2);
        o += n2;
        memcpy(o, tail, tail_len);
}

#endif
