/* SPDX-License-Identifier: MIT */
/*
 * Frame-pointer unwinding.  Cheap (a load pair per frame) and safe: every
 * frame pointer is checked to lie inside the thread's own stack, to be
 * aligned and to move towards the stack's base before it is dereferenced,
 * so a frame built without frame pointers ends the walk instead of faulting.
 * Code compiled with -fomit-frame-pointer (the default at -O2 on x86-64)
 * shows up as a short or empty stack; build with -fno-omit-frame-pointer to
 * get full stacks (docs/runtime.md).
 */
#include "internal.h"

/* Frames of our own to skip: gt_unwind's caller (stack_capture in trace.c)
 * and the public gtrace_* function that called it. */
#define OWN_FRAMES 2

__attribute__((noinline)) uint32_t gt_unwind(uint64_t *pcs, uint32_t max, uintptr_t lo,
                                             uintptr_t hi)
{
        uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
        uint32_t n = 0;
        int skip = OWN_FRAMES;

        if (!lo || !hi)
                return 0;
        while (n < max) {
                if (fp < lo || fp + 2 * sizeof(uintptr_t) > hi || (fp & (sizeof(uintptr_t) - 1)))
                        break;
                const uintptr_t *frame = (const uintptr_t *)fp;
                uintptr_t next = frame[0];
                uintptr_t ret = frame[1];
                if (!ret)
                        break;
                if (skip > 0)
                        skip--;
                else
                        pcs[n++] = ret;
                if (next <= fp)
                        break;
                fp = next;
        }
        return n;
}
