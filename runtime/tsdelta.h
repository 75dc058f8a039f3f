/* SPDX-License-Identifier: MIT */
/*
 * An event's time delta against its thread's last event (trace.c), in a
 * header of its own so that tests/unit/test-runtime-delta.c checks the very
 * code the fast path runs.
 */
#ifndef GT_TSDELTA_H
#define GT_TSDELTA_H

#include <stdint.h>

/*
 * Deltas are unsigned: a thread moved to a CPU whose counter reads a hair
 * behind gets a zero delta instead of a negative one, and *last stays where
 * it was, so a batch's times never go back.  No branch: at one clock unit
 * (about 13 ns) per event, "same unit as the last event or not" goes either
 * way, and a mispredicted branch right after the counter read cost a third
 * of an event (region end 21.6 -> 15 ns on the 2-CPU VM).
 */
static inline uint64_t gt_ts_delta(uint64_t *last, uint64_t now)
{
        uint64_t prev = *last, next = now > prev ? now : prev;
        *last = next;
        return next - prev;
}

#endif
