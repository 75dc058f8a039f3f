/* SPDX-License-Identifier: MIT */
/*
 * Human units for the text tools: durations, sizes, wall-clock times, and
 * the duration syntax of --since/--until.  Durations keep three significant
 * digits, which is what a reader compares at a glance; exact values are in
 * the --json output and in `view`'s nanosecond timestamps.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flightrec/view.h"

/* v / div with d decimals, three significant digits for v/div in [1, 1000). */
static void fmt_3sig(char *buf, size_t len, const char *sign, double v, const char *unit)
{
        int decimals = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
        (void)snprintf(buf, len, "%s%.*f %s", sign, decimals, v, unit);
}

char *fr_fmt_duration(char *buf, size_t len, int64_t ns)
{
        const char *sign = ns < 0 ? "-" : "";
        /* Magnitude without overflow for INT64_MIN. */
        uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;

        if (a < 1000)
                (void)snprintf(buf, len, "%s%llu ns", sign, (unsigned long long)a);
        else if (a < 999500)
                fmt_3sig(buf, len, sign, (double)a / 1e3, "us");
        else if (a < 999500000)
                fmt_3sig(buf, len, sign, (double)a / 1e6, "ms");
        else if (a < 59995000000ull)
                fmt_3sig(buf, len, sign, (double)a / 1e9, "s");
        else if (a < 3600000000000ull) {
                uint64_t s = (a + 500000000) / 1000000000;
                (void)snprintf(buf, len, "%s%llum%02llus", sign, (unsigned long long)(s / 60),
                               (unsigned long long)(s % 60));
        } else {
                uint64_t m = (a + 30000000000ull) / 60000000000ull;
                (void)snprintf(buf, len, "%s%lluh%02llum", sign, (unsigned long long)(m / 60),
                               (unsigned long long)(m % 60));
        }
        return buf;
}

char *fr_fmt_size(char *buf, size_t len, uint64_t bytes)
{
        static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
        if (bytes < 1024) {
                (void)snprintf(buf, len, "%llu B", (unsigned long long)bytes);
                return buf;
        }
        double v = (double)bytes / 1024;
        size_t u = 0;
        while (v >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        (void)snprintf(buf, len, "%.1f %s", v, units[u]);
        return buf;
}

int fr_parse_duration(const char *s, int64_t *ret_ns)
{
        static const struct {
                const char *suffix;
                double ns;
        } units[] = {
                {"ns", 1},   {"us", 1e3}, {"ms", 1e6},     {"s", 1e9},
                {"m", 60e9}, {"h", 3600e9}, {"", 1e9}, /* plain number: seconds */
        };
        char *end;

        if (!s || !*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || !isfinite(v) || v < 0)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcmp(end, units[i].suffix) != 0)
                        continue;
                double ns = v * units[i].ns;
                if (ns > 9.2e18)
                        return -ERANGE;
                *ret_ns = (int64_t)(ns + 0.5);
                return 0;
        }
        return -EINVAL;
}

char *fr_fmt_wall(char *buf, size_t len, int64_t wall_ns, int with_date)
{
        int64_t secs = wall_ns / 1000000000;
        int64_t frac = wall_ns % 1000000000;
        if (frac < 0) {
                frac += 1000000000;
                secs--;
        }
        time_t tt = (time_t)secs;
        struct tm tm;
        char head[64];
        if (!localtime_r(&tt, &tm) ||
            !strftime(head, sizeof(head), with_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm)) {
                (void)snprintf(buf, len, "?");
                return buf;
        }
        (void)snprintf(buf, len, "%s.%09lld", head, (long long)frac);
        return buf;
}
