/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

uint64_t bench_mono_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_ticks_per_ns(void)
{
        uint64_t m0 = bench_mono_ns();
        uint64_t t0 = bench_ticks();
        uint64_t m1, t1;
        do {
                m1 = bench_mono_ns();
                t1 = bench_ticks();
        } while (m1 - m0 < 100000000u);
        return (double)(t1 - t0) / (double)(m1 - m0);
}

int bench_pin(int cpu)
{
        if (cpu < 0)
                return 0;
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int bench_ncpus(void)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return 1;
        return CPU_COUNT(&set);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Linear interpolation between closest ranks. */
static double quantile(const double *v, size_t n, double q)
{
        double pos = q * (double)(n - 1);
        size_t i = (size_t)pos;
        if (i + 1 >= n)
                return v[n - 1];
        return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

void bench_stat(double *v, size_t n, struct bench_stat *ret)
{
        memset(ret, 0, sizeof(*ret));
        if (!n)
                return;
        qsort(v, n, sizeof(*v), cmp_double);
        ret->n = n;
        ret->min = v[0];
        ret->max = v[n - 1];
        ret->median = quantile(v, n, 0.5);
        ret->p25 = quantile(v, n, 0.25);
        ret->p75 = quantile(v, n, 0.75);
}

void bench_fmt_stat(char *buf, size_t len, const struct bench_stat *s, const char *unit,
                    int decimals)
{
        snprintf(buf, len, "%.*f%s%s [%.*f–%.*f]", decimals, s->median, *unit ? " " : "", unit,
                 decimals, s->p25, decimals, s->p75);
}

void bench_row(const char *what, const char *result, const char *compared, const char *target,
               const char *met)
{
        printf("| %s | %s | %s | %s | %s |\n", what, result, compared ? compared : "",
               target ? target : "", met ? met : "");
        fflush(stdout);
}

int bench_parse_size(const char *s, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        unsigned shift = 0;
        switch (*end) {
        case '\0': break;
        case 'K': case 'k': shift = 10; end++; break;
        case 'M': case 'm': shift = 20; end++; break;
        case 'G': case 'g': shift = 30; end++; break;
        default: return -EINVAL;
        }
        if (*end || (shift && v > (~0ull >> shift)))
                return -EINVAL;
        *ret = (uint64_t)v << shift;
        return 0;
}

int64_t bench_task_cpu_ns(long pid, long tid)
{
        char path[96];
        unsigned long long ns;
        snprintf(path, sizeof(path), "/proc/%ld/task/%ld/schedstat", pid, tid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        int ok = fscanf(f, "%llu", &ns) == 1;
        fclose(f);
        return ok ? (int64_t)ns : -1;
}
