/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "proto/varint.h"

int proto_get_uvarint(const uint8_t **pp, const uint8_t *end, uint64_t *ret)
{
        const uint8_t *p = *pp;
        uint64_t v = 0;
        unsigned shift = 0;

        for (int i = 0; i < PROTO_VARINT_MAX; i++) {
                if (p >= end)
                        return -EBADMSG;
                uint8_t b = *p++;
                /* The tenth byte may only carry the 64th bit. */
                if (i == PROTO_VARINT_MAX - 1 && b > 1)
                        return -EBADMSG;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *pp = p;
                        *ret = v;
                        return 0;
                }
                shift += 7;
        }
        return -EBADMSG;
}
