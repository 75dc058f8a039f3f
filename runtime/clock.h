/* SPDX-License-Identifier: MIT */
/*
 * The trace clock (docs/format.md, "Clock").  gt_clock_now() is on every
 * event's fast path: one predictable branch, then rdtsc (x86-64 with an
 * invariant TSC), cntvct_el0 (arm64), or clock_gettime(CLOCK_MONOTONIC).
 */
#ifndef GT_CLOCK_H
#define GT_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

enum gt_clock_source {
        GT_CLOCK_MONOTONIC = 0,
        GT_CLOCK_TSC = 1,     /* x86-64 rdtsc, invariant TSC only */
        GT_CLOCK_CNTVCT = 2,  /* arm64 virtual counter */
};

struct gt_clock {
        int source;           /* enum gt_clock_source */
        unsigned shift;       /* clock units = raw counter >> shift */
        /* Calibration baseline, taken at gt_clock_init(). */
        uint64_t base_units;
        uint64_t base_mono_ns;
};

/* Read-mostly; written only by gt_clock_init() before tracing starts. */
extern struct gt_clock gt_clock;

static inline uint64_t gt_mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until *flag reads 0 (seq_cst, so with acquire), for at most max_ms:
 * true if it did.  Async-signal-safe: the crash handler's waits (crash.c,
 * ring.c). */
static inline bool gt_wait_clear(atomic_int *flag, unsigned max_ms)
{
        uint64_t deadline = gt_mono_ns() + (uint64_t)max_ms * 1000000u;
        while (atomic_load_explicit(flag, memory_order_seq_cst))
                if (gt_mono_ns() >= deadline)
                        return false;
        return true;
}

/* The fallback read, out of line: it keeps struct timespec (and with it a
 * stack-protector canary) off every event's fast path. */
uint64_t gt_mono_ns_slow(void);

/* Is the clock the cycle counter, which gt_clock_counter() reads? */
static inline bool gt_clock_is_counter(void)
{
#if defined(__x86_64__)
        return __builtin_expect(gt_clock.source == GT_CLOCK_TSC, 1);
#elif defined(__aarch64__)
        return __builtin_expect(gt_clock.source == GT_CLOCK_CNTVCT, 1);
#else
        return false;
#endif
}

/* The counter itself, unshifted, where gt_clock_is_counter() holds. */
static inline uint64_t gt_clock_raw(void)
{
#if defined(__x86_64__)
        return __rdtsc();
#elif defined(__aarch64__)
        uint64_t v;
        __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
        return v;
#else
        return gt_mono_ns_slow();
#endif
}

/* The clock, where gt_clock_is_counter() holds.  (The fast paths know it
 * from their slot check, and shift by their thread's copy of the shift, in
 * the page of its state they touch anyway: counter_now in trace.c.) */
static inline uint64_t gt_clock_counter(void)
{
        return gt_clock_raw() >> gt_clock.shift;
}

static inline uint64_t gt_clock_now(void)
{
        if (gt_clock_is_counter())
                return gt_clock_counter();
        return gt_mono_ns_slow();
}

/* Chooses the source (GTRACE_CLOCK=monotonic forces the fallback) and takes
 * the calibration baseline.  Called by gtrace_start(). */
void gt_clock_init(void);

/* A calibrated reading: clock units, CLOCK_MONOTONIC and CLOCK_REALTIME taken
 * as close together as the machine allows, and the frequency (units per
 * second) measured from the baseline to this reading. */
struct gt_clock_ref {
        uint64_t units;
        uint64_t mono_ns;
        uint64_t wall_ns;
        uint64_t freq;
};
void gt_clock_reference(struct gt_clock_ref *ret);

#endif
