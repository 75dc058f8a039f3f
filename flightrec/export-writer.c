/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <unistd.h>

#include "export-writer.h"

void xw_init(struct xw *w, int fd)
{
        w->fd = fd;
        w->err = 0;
        w->len = 0;
        w->flushed = 0;
        w->us_high_len = 0;
}

int xw_flush(struct xw *w)
{
        size_t off = 0;
        while (!w->err && off < w->len) {
                ssize_t n = write(w->fd, w->buf + off, w->len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        w->err = -errno;
                        break;
                }
                off += (size_t)n;
        }
        w->flushed += w->len;
        w->len = 0;
        return w->err;
}

void xw_raw_slow(struct xw *w, const char *s, size_t n)
{
        while (n) {
                if (w->len == XW_BUFFER_BYTES && xw_flush(w) < 0)
                        return;
                size_t room = XW_BUFFER_BYTES - w->len;
                size_t k = n < room ? n : room;
                memcpy(w->buf + w->len, s, k);
                w->len += k;
                s += k;
                n -= k;
        }
}

/* See export-writer.h: the digits of 0..999 and how many count. */
#define D3(i)                                                                                      \
        {                                                                                          \
                (char)('0' + (i) / 100), (char)('0' + (i) / 10 % 10), (char)('0' + (i) % 10),      \
                        (char)((i) >= 100  ? 3                                                     \
                               : (i) >= 10 ? 2                                                     \
                                           : 1)                                                    \
        }
#define D3_10(i)                                                                                   \
        D3(i), D3(i + 1), D3(i + 2), D3(i + 3), D3(i + 4), D3(i + 5), D3(i + 6), D3(i + 7),        \
                D3(i + 8), D3(i + 9)
#define D3_100(i)                                                                                  \
        D3_10(i), D3_10(i + 10), D3_10(i + 20), D3_10(i + 30), D3_10(i + 40), D3_10(i + 50),       \
                D3_10(i + 60), D3_10(i + 70), D3_10(i + 80), D3_10(i + 90)
const char xw_digits3[1000][4] = {D3_100(0),   D3_100(100), D3_100(200), D3_100(300), D3_100(400),
                                  D3_100(500), D3_100(600), D3_100(700), D3_100(800), D3_100(900)};
#undef D3
#undef D3_10
#undef D3_100

size_t xw_fmt_u64(char *buf, uint64_t v)
{
        return (size_t)(xw_put_u64(buf, v) - buf);
}

void xw_u64(struct xw *w, uint64_t v)
{
        xw_end(w, xw_put_u64(xw_begin(w, 24), v));
}

void xw_i64(struct xw *w, int64_t v)
{
        xw_end(w, xw_put_i64(xw_begin(w, 32), v));
}

void xw_us(struct xw *w, int64_t ns)
{
        char *p = xw_begin(w, 48);
        xw_end(w, xw_put_us(w, p, ns));
}

void xw_hex_str(struct xw *w, uint64_t v)
{
        xw_end(w, xw_put_hex_str(xw_begin(w, 24), v));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid.
 * Rejects overlong forms, surrogates and values above U+10FFFF, like every
 * strict JSON parser does. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
        uint8_t c = s[0];
        size_t len;
        uint32_t cp, min;
        if (c < 0xc2)
                return 0; /* continuation byte or overlong 2-byte lead */
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
        return len;
}

void xw_str(struct xw *w, const char *str, size_t n)
{
        xw_lit(w, "\"");
        xw_str_body(w, str, n);
        xw_lit(w, "\"");
}

void xw_str_body(struct xw *w, const char *str, size_t n)
{
        static const char hex[] = "0123456789abcdef";
        const uint8_t *s = (const uint8_t *)str;
        size_t i = 0;

        while (i < n) {
                /* Copy the longest run that needs no escaping in one go. */
                size_t j = i;
                while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
                        j++;
                if (j > i) {
                        xw_raw(w, (const char *)s + i, j - i);
                        i = j;
                        continue;
                }
                uint8_t c = s[i];
                if (c == '"' || c == '\\') {
                        char e[2] = {'\\', (char)c};
                        xw_raw(w, e, 2);
                        i++;
                } else if (c < 0x20) {
                        switch (c) {
                        case '\n': xw_lit(w, "\\n"); break;
                        case '\t': xw_lit(w, "\\t"); break;
                        case '\r': xw_lit(w, "\\r"); break;
                        default: {
                                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                                xw_raw(w, e, 6);
                        }
                        }
                        i++;
                } else {
                        size_t len = utf8_seq(s + i, n - i);
                        if (len) {
                                xw_raw(w, (const char *)s + i, len);
                                i += len;
                        } else {
                                xw_lit(w, "\\ufffd");
                                i++;
                        }
                }
        }
}

void xw_cstr(struct xw *w, const char *s)
{
        xw_str(w, s ? s : "", s ? strlen(s) : 0);
}
