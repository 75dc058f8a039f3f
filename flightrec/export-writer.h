/* SPDX-License-Identifier: MIT */
/*
 * A buffered JSON text writer for the exporters (private to flightrec/).
 *
 * The exporters write hundreds of megabytes of JSON; building a jansson tree
 * would need memory proportional to the trace and printf would dominate the
 * profile.  This appends to a fixed buffer with hand-written number
 * formatting and string escaping, and hands full buffers to write(2).  The
 * first write error sticks: later calls do nothing and xw_finish() reports it.
 */
#ifndef FLIGHTREC_EXPORT_WRITER_H
#define FLIGHTREC_EXPORT_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define XW_BUFFER_BYTES (256u << 10)

struct xw {
        int fd;
        int err; /* first -errno from write(2), sticky */
        size_t len;
        uint64_t total; /* bytes handed to write(2) or buffered */
        /* Timestamps of neighbouring events share their leading digits: the
         * digits above the last six of the microseconds are kept formatted. */
        uint64_t us_high;
        unsigned us_high_len; /* 0: nothing cached */
        char us_high_str[24];
        char buf[XW_BUFFER_BYTES];
};

void xw_init(struct xw *w, int fd);
/* Writes out what is buffered.  0 or the sticky error. */
int xw_flush(struct xw *w);

void xw_raw_slow(struct xw *w, const char *s, size_t n);

/* Room for n bytes written straight into the buffer (n <= 64), then
 * xw_commit() with the end of what was written: numbers are formatted in
 * place instead of through a temporary. */
static inline char *xw_reserve(struct xw *w, size_t n)
{
        if (XW_BUFFER_BYTES - w->len < n)
                (void)xw_flush(w);
        return w->buf + w->len;
}

static inline void xw_commit(struct xw *w, char *end)
{
        size_t n = (size_t)(end - (w->buf + w->len));
        w->len += n;
        w->total += n;
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
                w->total += n;
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
