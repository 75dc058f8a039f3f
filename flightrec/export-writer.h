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

/*
 * Numbers are most of what an export writes, so they are written three
 * digits at a time from a table (4 KiB, it stays in cache): one division by
 * 1000 per group, and no loop over digit pairs whose length a branch
 * predictor cannot guess.  xw_digits3[v] holds the three digits of v
 * (0..999), zero-padded, and in its fourth byte how many of them are
 * significant (1 for 0..9).  Each group is copied with a fixed 4-byte
 * move: the writers below may store one byte past the end they return.
 */
extern const char xw_digits3[1000][4];

/* v < 1000 without leading zeros at p; returns the end. */
static inline char *xw_put_d3(char *p, uint32_t v)
{
        const char *e = xw_digits3[v];
        unsigned n = (unsigned char)e[3];
        /* Below 100 this reads into the next entry, never past the table. */
        memcpy(p, e + 3 - n, 4);
        return p + n;
}

/* v < 1000 as exactly three digits at p; returns the end. */
static inline char *xw_put_3(char *p, uint32_t v)
{
        memcpy(p, xw_digits3[v], 4);
        return p + 3;
}

/* v (below 2^32) in decimal at p (room for 12 bytes); returns the end. */
static inline char *xw_put_u32(char *p, uint32_t v)
{
        uint32_t h, m;

        if (v < 1000)
                return xw_put_d3(p, v);
        if (v < 1000000) {
                h = v / 1000;
                return xw_put_3(xw_put_d3(p, h), v - h * 1000);
        }
        h = v / 1000000;
        m = v / 1000 - h * 1000;
        if (h >= 1000) { /* ten digits */
                uint32_t g = h / 1000;
                p = xw_put_3(xw_put_d3(p, g), h - g * 1000);
        } else {
                p = xw_put_d3(p, h);
        }
        return xw_put_3(xw_put_3(p, m), v - v / 1000 * 1000);
}

/* v in decimal at p (room for 24 bytes); returns the end. */
static inline char *xw_put_u64(char *p, uint64_t v)
{
        if (v <= UINT32_MAX)
                return xw_put_u32(p, (uint32_t)v);
        /* Nine digits at a time from the bottom; at most three groups. */
        uint64_t h = v / 1000000000u;
        uint32_t l = (uint32_t)(v - h * 1000000000u), m = l / 1000000, k = l / 1000 - m * 1000;
        if (h <= UINT32_MAX) {
                p = xw_put_u32(p, (uint32_t)h);
        } else {
                uint64_t hh = h / 1000000000u; /* at most 18 */
                uint32_t hl = (uint32_t)(h - hh * 1000000000u), hm = hl / 1000000,
                         hk = hl / 1000 - hm * 1000;
                p = xw_put_d3(p, (uint32_t)hh);
                p = xw_put_3(xw_put_3(xw_put_3(p, hm), hk), hl - hl / 1000 * 1000);
        }
        return xw_put_3(xw_put_3(xw_put_3(p, m), k), l - l / 1000 * 1000);
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
 * below the second go in three groups; those above (the seconds, shared by
 * neighbouring events) are kept formatted in w. */
static inline char *xw_put_us(struct xw *w, char *p, int64_t ns)
{
        uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
        uint32_t x, us, hi;

        if (ns < 0)
                *p++ = '-';
        if (a < 1000000000u) {
                x = (uint32_t)a;
                us = x / 1000;
                if (us < 1000) {
                        p = xw_put_d3(p, us);
                } else {
                        hi = us / 1000;
                        p = xw_put_3(xw_put_d3(p, hi), us - hi * 1000);
                }
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
                hi = us / 1000;
                p = xw_put_3(xw_put_3(p, hi), us - hi * 1000);
        }
        *p = '.';
        memcpy(p + 1, xw_digits3[x - us * 1000], 4);
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
