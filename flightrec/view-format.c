/* SPDX-License-Identifier: MIT */
/*
 * Human units for the text tools: durations, sizes, wall-clock times, and
 * the duration syntax of --since/--until.  Durations keep three significant
 * digits, which is what a reader compares at a glance; exact values are in
 * the --json output and in `view`'s nanosecond timestamps.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
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
                {"ns", 1},   {"us", 1e3},   {"ms", 1e6}, {"s", 1e9},
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

/* Length of the valid UTF-8 sequence at s, 0 if invalid (overlong forms,
 * surrogates and values above U+10FFFF are invalid); *ret_cp the value. */
static size_t utf8_len(const uint8_t *s, size_t n, uint32_t *ret_cp)
{
        uint8_t c = s[0];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
                *ret_cp = c;
                return 1;
        }
        if (c < 0xc2)
                return 0;
        if (c < 0xe0) {
                len = 2;
                cp = c & 0x1f;
                min = 0x80;
        } else if (c < 0xf0) {
                len = 3;
                cp = c & 0x0f;
                min = 0x800;
        } else if (c < 0xf5) {
                len = 4;
                cp = c & 0x07;
                min = 0x10000;
        } else {
                return 0;
        }
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return len;
}

int fr_fmt_safe(FILE *out, const char *str, size_t n, int quoted)
{
        const uint8_t *s = (const uint8_t *)str;
        size_t i = 0;
        while (i < n) {
                uint32_t cp = 0;
                size_t len = utf8_len(s + i, n - i, &cp);
                if (len == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
                        const char *esc = NULL;
                        if (quoted && len == 1 && cp == '\n')
                                esc = "\\n";
                        else if (quoted && len == 1 && cp == '\t')
                                esc = "\\t";
                        else if (quoted && len == 1 && cp == '\r')
                                esc = "\\r";
                        if (esc) {
                                fputs(esc, out);
                        } else {
                                /* Every byte of the offending sequence. */
                                size_t k = len ? len : 1;
                                for (size_t j = 0; j < k; j++)
                                        fprintf(out, "\\x%02x", s[i + j]);
                        }
                        i += len ? len : 1;
                        continue;
                }
                if (quoted && (cp == '"' || cp == '\\'))
                        fputc('\\', out);
                fwrite(s + i, 1, len, out);
                i += len;
        }
        return ferror(out) ? -EIO : 0;
}

/* ---- clock conversion ---- */

void fr_clockconv_init(struct fr_clockconv *cv, const struct fr_clock *c)
{
        cv->c = *c;
        cv->mult = 0;
        cv->dmax = 0;
        cv->inl = 0;
        if (c->freq == 0)
                return;
        cv->mult = ((unsigned __int128)1000000000u << 64) / c->freq;
        /* d * mult must fit 128 bits, which also keeps the quotient below 2^64. */
        unsigned __int128 lim = ~(unsigned __int128)0 / (cv->mult ? cv->mult : 1);
        cv->dmax = lim > ((unsigned __int128)1 << 62) ? (uint64_t)1 << 62 : (uint64_t)lim;
        /* fr_clockconv_mono_inline's 64-bit correction: (q + 1) * freq and
         * d * 1e9 must not overflow. */
        uint64_t inl = (UINT64_MAX - c->freq) / 1000000000u;
        cv->inl = inl < cv->dmax ? inl : cv->dmax;
}

static int64_t conv(const struct fr_clockconv *cv, uint64_t anchor, uint64_t t, int wall)
{
        const struct fr_clock *c = &cv->c;
        if (c->freq == 0)
                return (int64_t)anchor;
        uint64_t d = t >= c->ref ? t - c->ref : c->ref - t;
        if (d >= cv->dmax) /* far from the anchor: the exact slow path */
                return wall ? fr_clock_wall_ns(c, t) : fr_clock_mono_ns(c, t);
        /* mult is at most 1 short of the true reciprocal, so the product is
         * at most 1 short of the exact floor(d * 1e9 / freq): fix it up. */
        uint64_t q = (uint64_t)(((unsigned __int128)d * cv->mult) >> 64);
        if ((unsigned __int128)(q + 1) * c->freq <= (unsigned __int128)d * 1000000000u)
                q++;
        /* As the reader: (t - ref) * 1e9 / freq truncates toward zero. */
        __int128 ns = t >= c->ref ? (__int128)anchor + q : (__int128)anchor - q;
        if (ns > INT64_MAX)
                return INT64_MAX;
        if (ns < INT64_MIN)
                return INT64_MIN;
        return (int64_t)ns;
}

int64_t fr_clockconv_mono(const struct fr_clockconv *cv, uint64_t t)
{
        return conv(cv, cv->c.mono_ns, t, 0);
}

int64_t fr_clockconv_wall(const struct fr_clockconv *cv, uint64_t t)
{
        return conv(cv, cv->c.wall_ns, t, 1);
}
