/* SPDX-License-Identifier: MIT */
/*
 * Clock source choice and calibration.
 *
 * The cycle counter is only used where it ticks at a constant rate across
 * frequency changes and deep sleep states, on every CPU (Linux reports this
 * as constant_tsc + nonstop_tsc).  Its frequency is not trusted from any
 * table: it is measured against CLOCK_MONOTONIC from the moment tracing
 * started to each generation boundary.  Each reading brackets the counter
 * read between two clock_gettime calls and keeps the tightest of a few tries,
 * so one reading's error is a few tens of nanoseconds; over a baseline of one
 * second or more the frequency error is below 1e-7.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

struct gt_clock gt_clock;

uint64_t gt_mono_ns_slow(void)
{
        return gt_mono_ns();
}

#if defined(__x86_64__)
static int cpu_has_invariant_tsc(void)
{
        FILE *f = fopen("/proc/cpuinfo", "re");
        char line[4096];
        int constant = 0, nonstop = 0;

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                if (strncmp(line, "flags", 5) != 0)
                        continue;
                constant = strstr(line, " constant_tsc") != NULL;
                nonstop = strstr(line, " nonstop_tsc") != NULL;
                break;
        }
        fclose(f);
        return constant && nonstop;
}
#endif

static uint64_t raw_counter(void)
{
#if defined(__x86_64__)
        if (gt_clock.source == GT_CLOCK_TSC)
                return __rdtsc();
#elif defined(__aarch64__)
        if (gt_clock.source == GT_CLOCK_CNTVCT) {
                uint64_t v;
                __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
                return v;
        }
#endif
        return gt_mono_ns();
}

/* Counter and CLOCK_MONOTONIC read together: the counter sits between two
 * clock reads, and the pair with the narrowest bracket of five wins. */
static void paired_read(uint64_t *ret_raw, uint64_t *ret_mono)
{
        uint64_t best = UINT64_MAX;
        for (int i = 0; i < 5; i++) {
                uint64_t a = gt_mono_ns();
                uint64_t r = raw_counter();
                uint64_t b = gt_mono_ns();
                if (b - a < best) {
                        best = b - a;
                        *ret_raw = r;
                        *ret_mono = a + (b - a) / 2;
                }
        }
}

void gt_clock_init(void)
{
        const char *force = getenv("GTRACE_CLOCK");
        int want_monotonic = force && strcmp(force, "monotonic") == 0;

        gt_clock.source = GT_CLOCK_MONOTONIC;
        gt_clock.shift = 0;
#if defined(__x86_64__)
        if (!want_monotonic && cpu_has_invariant_tsc())
                gt_clock.source = GT_CLOCK_TSC;
#elif defined(__aarch64__)
        if (!want_monotonic)
                gt_clock.source = GT_CLOCK_CNTVCT;
#endif
        if (gt_clock.source != GT_CLOCK_MONOTONIC) {
                /* A first rough frequency over ~2 ms picks the shift: one clock
                 * unit should stay at or below ~32 ns.  Deltas up to 128 units
                 * take one byte, so events up to ~4 us apart cost one byte of
                 * time (the Go tracer makes the same trade at 64 ns). */
                uint64_t r0, m0, r1, m1;
                paired_read(&r0, &m0);
                do
                        paired_read(&r1, &m1);
                while (m1 - m0 < 2000000);
                double hz = (double)(r1 - r0) * 1e9 / (double)(m1 - m0);
                unsigned shift = 0;
                while (shift < 16 && (double)(1u << (shift + 1)) / hz <= 32e-9)
                        shift++;
                gt_clock.shift = shift;
        }
        uint64_t raw, mono;
        paired_read(&raw, &mono);
        gt_clock.base_units = raw >> gt_clock.shift;
        gt_clock.base_mono_ns = mono;
}

void gt_clock_reference(struct gt_clock_ref *ret)
{
        uint64_t raw, mono;
        struct timespec w;

        paired_read(&raw, &mono);
        clock_gettime(CLOCK_REALTIME, &w);
        /* Wall clock read just after: shift it back by the time since mono. */
        uint64_t wall = (uint64_t)w.tv_sec * 1000000000u + (uint64_t)w.tv_nsec;
        uint64_t after = gt_mono_ns();
        wall -= after > mono ? after - mono : 0;

        ret->units = raw >> gt_clock.shift;
        ret->mono_ns = mono;
        ret->wall_ns = wall;
        if (gt_clock.source == GT_CLOCK_MONOTONIC) {
                ret->freq = 1000000000u;
                return;
        }
        uint64_t dn = mono - gt_clock.base_mono_ns;
        uint64_t du = ret->units - gt_clock.base_units;
        if (dn < 1000000) {
                /* Too short a baseline (a generation cut right after start):
                 * measure over a millisecond now rather than publish noise. */
                uint64_t r2, m2;
                do
                        paired_read(&r2, &m2);
                while (m2 - gt_clock.base_mono_ns < 1000000);
                dn = m2 - gt_clock.base_mono_ns;
                du = (r2 >> gt_clock.shift) - gt_clock.base_units;
        }
        ret->freq = (uint64_t)((double)du * 1e9 / (double)dn + 0.5);
}
