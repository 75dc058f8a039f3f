/* SPDX-License-Identifier: MIT */
/*
 * Each event type's argument kinds, from the event table, as a constant the
 * compiler can see: code always inlined with a constant type (the reader's
 * decoder, the threaded reader's pack and unpack) reads fr_kinds[type] and
 * unrolls into straight-line code for that type, every test on a kind
 * folded away.  Static: each file that includes it has its own copy of the
 * table (a few hundred bytes, most of it never touched).
 */
#ifndef FLIGHTREC_EVENT_KINDS_H
#define FLIGHTREC_EVENT_KINDS_H

#include <stdint.h>

#include "proto/event.h"

struct fr_kinds {
        uint8_t nargs;
        uint8_t kind[PROTO_MAX_ARGS];
};

#define FR_KIND_A_(kind, name) kind,
#define FR_KIND_X_(name, code, where, doc, ...)                                                    \
        [code] = {sizeof((const uint8_t[]){__VA_ARGS__}), {__VA_ARGS__}},
static const struct fr_kinds fr_kinds[256] = {PROTO_EVENTS(FR_KIND_X_, FR_KIND_A_)};
#undef FR_KIND_X_
#undef FR_KIND_A_

#endif
