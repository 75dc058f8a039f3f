/* SPDX-License-Identifier: MIT */
/*
 * LEB128 varints and zig-zag.  The encoders are inline because the runtime's
 * event fast path uses them; the decoder is bounded and never reads past end.
 */
#ifndef PROTO_VARINT_H
#define PROTO_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VARINT_MAX 10 /* bytes of a 64-bit LEB128 value */

static inline uint64_t proto_zigzag(int64_t v)
{
        return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t proto_unzigzag(uint64_t v)
{
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Writes v at p, which must have PROTO_VARINT_MAX bytes of room; returns the end. */
static inline uint8_t *proto_put_uvarint(uint8_t *p, uint64_t v)
{
        while (v >= 0x80) {
                *p++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *p++ = (uint8_t)v;
        return p;
}

static inline size_t proto_uvarint_len(uint64_t v)
{
        size_t n = 1;
        while (v >= 0x80) {
                v >>= 7;
                n++;
        }
        return n;
}

/*
 * Reads one varint from [*pp, end).  On success advances *pp, stores the value
 * in *ret and returns 0.  Returns -EBADMSG for a truncated varint, one longer
 * than 10 bytes or one that overflows 64 bits; *pp and *ret are untouched then.
 */
int proto_get_uvarint(const uint8_t **pp, const uint8_t *end, uint64_t *ret);

#endif
