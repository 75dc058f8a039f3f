/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the benchmark programs: the cycle counter and its rate,
 * CPU pinning, order statistics, and the one output format bench/run reads.
 *
 * Every program prints its results as rows of one markdown table:
 *   | measurement | result | compared with | target | met |
 * bench/run concatenates the rows of all programs under one header.
 * Ratios are the headline (A and B measured in the same process, samples
 * interleaved); absolute times are context.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <x86intrin.h>
static inline uint64_t bench_ticks(void)
{
        return __rdtsc();
}
#elif defined(__aarch64__)
static inline uint64_t bench_ticks(void)
{
        uint64_t v;
        __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
        return v;
}
#else
#error "bench: x86-64 or arm64 only"
#endif

/* CLOCK_MONOTONIC in ns. */
uint64_t bench_mono_ns(void);

/* Ticks of bench_ticks() per ns, measured against CLOCK_MONOTONIC over
 * about 100 ms (busy, no sleep: a sleeping CPU may change frequency). */
double bench_ticks_per_ns(void);

/* Pins the calling thread to one CPU; returns 0 or -errno (ignored by
 * callers: an unpinned run is noisier, not wrong).  cpu < 0: no-op. */
int bench_pin(int cpu);

/* Number of CPUs this process may run on. */
int bench_ncpus(void);

/* Order statistics of n samples (the array is sorted in place). */
struct bench_stat {
        double median, p25, p75, min, max;
        size_t n;
};
void bench_stat(double *v, size_t n, struct bench_stat *ret);

/* "12.3 ns [12.1–12.6]": median and interquartile range. */
void bench_fmt_stat(char *buf, size_t len, const struct bench_stat *s, const char *unit,
                    int decimals);

/* Writes a table row: | what | result | compared | target | met |. */
void bench_row(const char *what, const char *result, const char *compared, const char *target,
               const char *met);

/* CPU time in ns of thread tid of process pid so far (the first field of
 * /proc/PID/task/TID/schedstat), or -1 when unreadable (it ended). */
int64_t bench_task_cpu_ns(long pid, long tid);

/* Parses "123", "64K", "8M", "1G" (binary multiples).  Returns 0 or -EINVAL. */
int bench_parse_size(const char *s, uint64_t *ret);

#endif
