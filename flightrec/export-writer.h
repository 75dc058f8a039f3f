/* SPDX-License-Identifier: MIT */
/*
 * A buffered JSON text writer for the exporters (private to flightrec/).
 *
 * The exporters write hundreds of megabytes of JSON; building a jansson tree
 * would need memory proportional to the trace and printf would dominate the
 * profile.  This appends to a fixed buffer with hand-written number
 * formatting and string escaping, and hands full buffers to write(2).  The
 * first write error sticks: later calls do nothing and xw_flush() reports it.
 *
 * Two ways to write.  The xw_*() calls check for room on every piece: for
 * anything of unknown length.  The hot paths instead take room for a whole
 * event at once (xw_begin(): at most XW_ROOM_MAX bytes), write its pieces
 * straight into the buffer with the xw_put_*() helpers, which check
 * nothing, and give back the end (xw_end()).  Most of an export is numbers
 * and short literals, and one room check per event instead of twenty is a
 * good part of its speed.
 */
#ifndef FLIGHTREC_EXPORT_WRITER_H
#define FLIGHTREC_EXPORT_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XW_BUFFER_BYTES (256u << 10)
#define XW_ROOM_MAX     4096u /* the most xw_begin() may be asked for */

struct xw {
        int fd;
        int err; /* first -errno from write(2), sticky */
        size_t len;
        uint64_t flushed; /* bytes handed to write(2) */
        /* Timestamps of neighbouring events share their leading digits: the
         * digits above the last six of the microseconds are kept formatted. */
        uint64_t us_high;
        unsigned us_high_len; /* 0: nothing cached */
        char us_high_str[32]; /* read 16 bytes at a time */
        char buf[XW_BUFFER_BYTES];
};

void xw_init(struct xw *w, int fd);
/* Writes out what is buffered.  0 or the sticky error. */
int xw_flush(struct xw *w);

/* Bytes written so far, buffered or not. */
static inline uint64_t xw_total(const struct xw *w)
{
        return w->flushed + w->len;
}

void xw_raw_slow(struct xw *w, const char *s, size_t n);

/* Room for n <= XW_ROOM_MAX bytes, written in place and then given back with
 * xw_end(w, end of what was written). */
static inline char *xw_begin(struct xw *w, size_t n)
{
        if (XW_BUFFER_BYTES - w->len < n)
                (void)xw_flush(w);
        return w->buf + w->len;
}

static inline void xw_end(struct xw *w, char *end)
{
        w->len = (size_t)(end - w->buf);
}

/* A string literal at p; returns the end. */
#define XW_PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

extern const char xw_digit_pairs[201];

/* Decimal digits of v (1 for 0). */
static inline unsigned xw_ndigits(uint64_t v)
{
        static const uint64_t pow10[20] = {
                1ull,
                10ull,
                100ull,
                1000ull,
                10000ull,
                100000ull,
                1000000ull,
                10000000ull,
                100000000ull,
                1000000000ull,
                10000000000ull,
                100000000000ull,
                1000000000000ull,
                10000000000000ull,
                100000000000000ull,
                1000000000000000ull,
                10000000000000000ull,
                100000000000000000ull,
                1000000000000000000ull,
                10000000000000000000ull,
        };
        /* floor(log10) from floor(log2): 1233 / 4096 ~ log10(2). */
        unsigned t = (unsigned)(64 - __builtin_clzll(v | 1)) * 1233 >> 12;
        return t + ((v | 1) >= pow10[t]);
}

/* v (below 2^32) in decimal at p (room for 10 bytes); returns the end.
 * 32-bit arithmetic: most numbers in a trace (ids, durations, the low
 * digits of timestamps) fit, and its divisions by constants are cheaper. */
static inline char *xw_put_u32(char *p, uint32_t v)
{
        char *end = p + xw_ndigits(v), *q = end;
        while (v >= 100) {
                uint32_t d = v / 100;
                q -= 2;
                memcpy(q, &xw_digit_pairs[(v - d * 100) * 2], 2);
                v = d;
        }
        if (v >= 10)
                memcpy(q - 2, &xw_digit_pairs[v * 2], 2);
        else
                q[-1] = (char)('0' + v);
        return end;
}

/* v in decimal at p (room for 20 bytes); returns the end. */
static inline char *xw_put_u64(char *p, uint64_t v)
{
        if (v <= UINT32_MAX)
                return xw_put_u32(p, (uint32_t)v);
        char *end = p + xw_ndigits(v), *q = end;
        while (v > UINT32_MAX) {
                uint64_t d = v / 100;
                q -= 2;
                memcpy(q, &xw_digit_pairs[(v - d * 100) * 2], 2);
                v = d;
        }
        uint32_t u = (uint32_t)v;
        while (u >= 100) {
                uint32_t d = u / 100;
                q -= 2;
                memcpy(q, &xw_digit_pairs[(u - d * 100) * 2], 2);
                u = d;
        }
        if (u >= 10)
                memcpy(q - 2, &xw_digit_pairs[u * 2], 2);
        else
                q[-1] = (char)('0' + u);
        return end;
}

static inline char *xw_put_i64(char *p, int64_t v)
{
        if (v < 0) {
                *p++ = '-';
                return xw_put_u64(p, (uint64_t)0 - (uint64_t)v);
        }
        return xw_put_u64(p, (uint64_t)v);
}

/* Nanoseconds as microseconds with exactly three decimals (1234567 ->
 * 1234.567) at p (room for 32 bytes); returns the end.  The nine digits
 * below the second are formatted in 32-bit arithmetic; those above (the
 * seconds, shared by neighbouring events) are kept formatted in w. */
static inline char *xw_put_us(struct xw *w, char *p, int64_t ns)
{
        uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
        uint32_t x, us, frac;

        if (ns < 0)
                *p++ = '-';
        if (a < 1000000000u) {
                x = (uint32_t)a;
                us = x / 1000;
                p = xw_put_u32(p, us);
        } else {
                uint64_t high = a / 1000000000u;
                x = (uint32_t)(a - high * 1000000000u);
                us = x / 1000;
                if (high != w->us_high || !w->us_high_len) {
                        w->us_high = high;
                        w->us_high_len =
                                (unsigned)(xw_put_u64(w->us_high_str, high) - w->us_high_str);
                }
                memcpy(p, w->us_high_str, 16); /* at most 14 digits: copy a fixed 16 */
                p += w->us_high_len;
                /* The low six digits of the microseconds, leading zeros included. */
                uint32_t hi2 = us / 10000, lo4 = us - hi2 * 10000;
                uint32_t mid2 = lo4 / 100;
                memcpy(p, &xw_digit_pairs[hi2 * 2], 2);
                memcpy(p + 2, &xw_digit_pairs[mid2 * 2], 2);
                memcpy(p + 4, &xw_digit_pairs[(lo4 - mid2 * 100) * 2], 2);
                p += 6;
        }
        frac = x - us * 1000;
        uint32_t f1 = frac / 100;
        p[0] = '.';
        p[1] = (char)('0' + f1);
        memcpy(p + 2, &xw_digit_pairs[(frac - f1 * 100) * 2], 2);
        return p + 4;
}

/* "0x1f" as a JSON string at p (room for 24 bytes); returns the end. */
static inline char *xw_put_hex_str(char *p, uint64_t v)
{
        static const char digits[] = "0123456789abcdef";
        unsigned n = v ? (unsigned)(67 - __builtin_clzll(v)) / 4 : 1;
        p[0] = '"';
        p[1] = '0';
        p[2] = 'x';
        for (unsigned i = n; i > 0; i--) {
                p[2 + i] = digits[v & 15];
                v >>= 4;
        }
        p[3 + n] = '"';
        return p + 4 + n;
}

static inline __attribute__((always_inline)) void xw_raw(struct xw *w, const char *s, size_t n)
{
        if (n <= XW_BUFFER_BYTES - w->len) {
                char *d = w->buf + w->len;
                /* Most pieces are a few bytes: copy them inline with two
                 * overlapping fixed-size moves rather than calling memcpy. */
                if (n >= 8 && n <= 16) {
                        memcpy(d, s, 8);
                        memcpy(d + n - 8, s + n - 8, 8);
                } else if (n >= 4 && n < 8) {
                        memcpy(d, s, 4);
                        memcpy(d + n - 4, s + n - 4, 4);
                } else if (n < 4) {
                        for (size_t i = 0; i < n; i++)
                                d[i] = s[i];
                } else {
                        memcpy(d, s, n);
                }
                w->len += n;
        } else {
                xw_raw_slow(w, s, n);
        }
}

#define xw_lit(w, s) xw_raw((w), (s), sizeof(s) - 1)

void xw_u64(struct xw *w, uint64_t v);
/* v in decimal into buf (at least 20 bytes, no NUL); returns the length. */
size_t xw_fmt_u64(char *buf, uint64_t v);
void xw_i64(struct xw *w, int64_t v);
/* Nanoseconds as microseconds with exactly three decimals: 1234567 -> 1234.567 */
void xw_us(struct xw *w, int64_t ns);
/* A JSON string literal (quotes included) from n bytes: control characters
 * escaped, invalid UTF-8 replaced by U+FFFD, so the output always parses. */
void xw_str(struct xw *w, const char *s, size_t n);
/* The same without the quotes, to build one string from pieces. */
void xw_str_body(struct xw *w, const char *s, size_t n);
void xw_cstr(struct xw *w, const char *s); /* NULL writes "" */
/* "0x1f" as a JSON string. */
void xw_hex_str(struct xw *w, uint64_t v);

#endif
