/* SPDX-License-Identifier: MIT */
/*
 * Frame and message codec for the gtraced socket (docs/protocol.md).
 *
 * The codec never allocates and never trusts a length: the header is checked
 * against the type's maximum first, then every field against its own limit
 * and against the bytes that remain.  It is used from the runtime's crash
 * handler, so it must stay async-signal-safe: no malloc, no stdio, no locks.
 */
#include <errno.h>
#include <string.h>

#include "proto/dumpfile.h"
#include "proto/varint.h"
#include "proto/wire.h"

/* Worst-case encodings must fit the declared maxima. */
#define TEXT_MAX_(n) (PROTO_VARINT_MAX + (n))
_Static_assert(2 * PROTO_VARINT_MAX + TEXT_MAX_(PROTO_MAX_SOFTWARE) + 4 * PROTO_VARINT_MAX +
                               TEXT_MAX_(PROTO_MAX_COMMAND) + TEXT_MAX_(PROTO_MAX_PATH) <=
                       PROTO_MAX_HELLO_BYTES,
               "HELLO limit too small");
_Static_assert(2 * PROTO_VARINT_MAX + TEXT_MAX_(PROTO_MAX_SOFTWARE) <= PROTO_MAX_WELCOME_BYTES,
               "WELCOME limit too small");
_Static_assert(PROTO_VARINT_MAX + TEXT_MAX_(PROTO_MAX_ERROR_TEXT) <= PROTO_MAX_ERROR_BYTES,
               "ERROR limit too small");
_Static_assert(PROTO_VARINT_MAX + TEXT_MAX_(PROTO_MAX_REASON) <= PROTO_MAX_DUMP_REQUEST_BYTES,
               "DUMP_REQUEST limit too small");
_Static_assert(2 * PROTO_VARINT_MAX + TEXT_MAX_(PROTO_MAX_PATH) <= PROTO_MAX_DUMP_REPLY_BYTES,
               "DUMP_REPLY limit too small");
_Static_assert(2 * PROTO_VARINT_MAX <= PROTO_MAX_SMALL_BYTES, "small limit too small");
_Static_assert(PROTO_MAX_GENERATION_BYTES <= UINT32_MAX, "frame length is 32 bits");

uint32_t proto_msg_max(uint16_t type)
{
        switch (type) {
        case PROTO_MSG_HELLO: return PROTO_MAX_HELLO_BYTES;
        case PROTO_MSG_WELCOME: return PROTO_MAX_WELCOME_BYTES;
        case PROTO_MSG_ERROR: return PROTO_MAX_ERROR_BYTES;
        case PROTO_MSG_GENERATION: return PROTO_MAX_GENERATION_BYTES;
        case PROTO_MSG_FLUSH_DONE: return PROTO_MAX_SMALL_BYTES;
        case PROTO_MSG_DUMP_REQUEST: return PROTO_MAX_DUMP_REQUEST_BYTES;
        case PROTO_MSG_CRASH: return PROTO_MAX_SMALL_BYTES;
        case PROTO_MSG_GOODBYE: return 0;
        case PROTO_MSG_FLUSH: return PROTO_MAX_SMALL_BYTES;
        case PROTO_MSG_DUMP_REPLY: return PROTO_MAX_DUMP_REPLY_BYTES;
        case PROTO_MSG_REQUEST: return PROTO_MAX_REQUEST_BYTES;
        case PROTO_MSG_REPLY: return PROTO_MAX_REPLY_BYTES;
        default: return 0;
        }
}

const char *proto_msg_name(uint16_t type)
{
        switch (type) {
        case PROTO_MSG_HELLO: return "HELLO";
        case PROTO_MSG_WELCOME: return "WELCOME";
        case PROTO_MSG_ERROR: return "ERROR";
        case PROTO_MSG_GENERATION: return "GENERATION";
        case PROTO_MSG_FLUSH_DONE: return "FLUSH_DONE";
        case PROTO_MSG_DUMP_REQUEST: return "DUMP_REQUEST";
        case PROTO_MSG_CRASH: return "CRASH";
        case PROTO_MSG_GOODBYE: return "GOODBYE";
        case PROTO_MSG_FLUSH: return "FLUSH";
        case PROTO_MSG_DUMP_REPLY: return "DUMP_REPLY";
        case PROTO_MSG_REQUEST: return "REQUEST";
        case PROTO_MSG_REPLY: return "REPLY";
        default: return "unknown";
        }
}

int proto_msg_known(uint16_t type)
{
        return type == PROTO_MSG_GOODBYE || proto_msg_max(type) != 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

void proto_header_put(uint8_t *out, uint16_t type, uint32_t length)
{
        put_le32(out, length);
        out[4] = (uint8_t)type;
        out[5] = (uint8_t)(type >> 8);
        out[6] = 0;
        out[7] = 0;
}

int proto_header_get(const uint8_t *in, struct proto_header *ret)
{
        ret->length = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
                      (uint32_t)in[3] << 24;
        ret->type = (uint16_t)(in[4] | in[5] << 8);
        if (in[6] || in[7])
                return -EBADMSG;
        if (!proto_msg_known(ret->type))
                return -EPROTO;
        if (ret->length > proto_msg_max(ret->type))
                return -EMSGSIZE;
        return 0;
}

ssize_t proto_frame_split(const uint8_t *buf, size_t len, struct proto_header *ret_hdr,
                          const uint8_t **ret_payload)
{
        if (len < PROTO_HEADER_BYTES)
                return 0;
        int r = proto_header_get(buf, ret_hdr);
        if (r < 0)
                return r;
        if (len - PROTO_HEADER_BYTES < ret_hdr->length)
                return 0;
        *ret_payload = buf + PROTO_HEADER_BYTES;
        return (ssize_t)(PROTO_HEADER_BYTES + ret_hdr->length);
}

/* ---- encoding ------------------------------------------------------------ */

/* A bounded writer: once it overflows it stays overflowed and writes nothing. */
struct wbuf {
        uint8_t *p;
        uint8_t *end;
        int overflow;
};

static void w_uvarint(struct wbuf *w, uint64_t v)
{
        if (w->overflow || (size_t)(w->end - w->p) < proto_uvarint_len(v)) {
                w->overflow = 1;
                return;
        }
        w->p = proto_put_uvarint(w->p, v);
}

/* Length of s cut to at most max bytes, never splitting a UTF-8 sequence. */
static size_t text_len(const char *s, size_t max)
{
        size_t n = s ? strnlen(s, max + 1) : 0;
        if (n <= max)
                return n;
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                n--;
        return n;
}

static void w_text(struct wbuf *w, const char *s, size_t max)
{
        size_t n = text_len(s, max);
        w_uvarint(w, n);
        if (w->overflow || (size_t)(w->end - w->p) < n) {
                w->overflow = 1;
                return;
        }
        if (n)
                memcpy(w->p, s, n);
        w->p += n;
}

static struct wbuf w_begin(uint8_t *buf, size_t cap)
{
        if (cap < PROTO_HEADER_BYTES)
                return (struct wbuf){.p = buf, .end = buf, .overflow = 1};
        return (struct wbuf){.p = buf + PROTO_HEADER_BYTES, .end = buf + cap};
}

static ssize_t w_finish(struct wbuf *w, uint8_t *buf, uint16_t type)
{
        if (w->overflow)
                return -ENOBUFS;
        size_t payload = (size_t)(w->p - buf) - PROTO_HEADER_BYTES;
        proto_header_put(buf, type, (uint32_t)payload);
        return (ssize_t)(PROTO_HEADER_BYTES + payload);
}

ssize_t proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->version);
        w_uvarint(&w, m->role);
        w_text(&w, m->software, PROTO_MAX_SOFTWARE);
        if (m->role == PROTO_ROLE_PRODUCER) {
                w_uvarint(&w, m->pid);
                w_uvarint(&w, m->uid);
                w_uvarint(&w, m->start_time_ns);
                w_uvarint(&w, m->clock_freq);
                w_text(&w, m->command, PROTO_MAX_COMMAND);
                w_text(&w, m->executable, PROTO_MAX_PATH);
        }
        return w_finish(&w, buf, PROTO_MSG_HELLO);
}

ssize_t proto_encode_welcome(uint8_t *buf, size_t cap, const struct proto_welcome *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->version);
        w_uvarint(&w, m->max_generation);
        w_text(&w, m->software, PROTO_MAX_SOFTWARE);
        return w_finish(&w, buf, PROTO_MSG_WELCOME);
}

ssize_t proto_encode_error(uint8_t *buf, size_t cap, const struct proto_error *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->code);
        w_text(&w, m->message, PROTO_MAX_ERROR_TEXT);
        return w_finish(&w, buf, PROTO_MSG_ERROR);
}

ssize_t proto_encode_flush(uint8_t *buf, size_t cap, const struct proto_flush *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->id);
        return w_finish(&w, buf, PROTO_MSG_FLUSH);
}

ssize_t proto_encode_flush_done(uint8_t *buf, size_t cap, const struct proto_flush_done *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->id);
        w_uvarint(&w, m->gen);
        return w_finish(&w, buf, PROTO_MSG_FLUSH_DONE);
}

ssize_t proto_encode_dump_request(uint8_t *buf, size_t cap, const struct proto_dump_request *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->id);
        w_text(&w, m->reason, PROTO_MAX_REASON);
        return w_finish(&w, buf, PROTO_MSG_DUMP_REQUEST);
}

ssize_t proto_encode_dump_reply(uint8_t *buf, size_t cap, const struct proto_dump_reply *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->id);
        w_uvarint(&w, proto_zigzag(m->result));
        w_text(&w, m->text, PROTO_MAX_PATH);
        return w_finish(&w, buf, PROTO_MSG_DUMP_REPLY);
}

ssize_t proto_encode_crash(uint8_t *buf, size_t cap, const struct proto_crash *m)
{
        struct wbuf w = w_begin(buf, cap);
        w_uvarint(&w, m->signo);
        return w_finish(&w, buf, PROTO_MSG_CRASH);
}

ssize_t proto_encode_goodbye(uint8_t *buf, size_t cap)
{
        struct wbuf w = w_begin(buf, cap);
        return w_finish(&w, buf, PROTO_MSG_GOODBYE);
}

/* ---- decoding ------------------------------------------------------------ */

struct rbuf {
        const uint8_t *p;
        const uint8_t *end;
        int bad;
};

static uint64_t r_uvarint(struct rbuf *r)
{
        uint64_t v = 0;
        if (!r->bad && proto_get_uvarint(&r->p, r->end, &v) < 0)
                r->bad = 1;
        return r->bad ? 0 : v;
}

static uint32_t r_u32(struct rbuf *r)
{
        uint64_t v = r_uvarint(r);
        if (v > UINT32_MAX)
                r->bad = 1;
        return r->bad ? 0 : (uint32_t)v;
}

/* Copies a text field into out[max + 1], NUL-terminated. */
static void r_text(struct rbuf *r, char *out, size_t max)
{
        out[0] = '\0';
        uint64_t n = r_uvarint(r);
        if (r->bad)
                return;
        if (n > max || n > (uint64_t)(r->end - r->p) || memchr(r->p, 0, (size_t)n)) {
                r->bad = 1;
                return;
        }
        memcpy(out, r->p, (size_t)n);
        out[n] = '\0';
        r->p += n;
}

static int r_finish(const struct rbuf *r)
{
        return r->bad || r->p != r->end ? -EBADMSG : 0;
}

int proto_decode_hello(const uint8_t *p, size_t len, struct proto_hello *ret)
{
        struct rbuf r = {p, p + len, 0};
        *ret = (struct proto_hello){0};
        ret->version = r_u32(&r);
        if (r.bad)
                return -EBADMSG;
        if (ret->version != PROTO_WIRE_VERSION)
                return -EPROTONOSUPPORT;
        ret->role = r_u32(&r);
        r_text(&r, ret->software, PROTO_MAX_SOFTWARE);
        if (r.bad)
                return -EBADMSG;
        if (ret->role == PROTO_ROLE_PRODUCER) {
                ret->pid = r_uvarint(&r);
                ret->uid = r_uvarint(&r);
                ret->start_time_ns = r_uvarint(&r);
                ret->clock_freq = r_uvarint(&r);
                r_text(&r, ret->command, PROTO_MAX_COMMAND);
                r_text(&r, ret->executable, PROTO_MAX_PATH);
        } else if (ret->role != PROTO_ROLE_CONTROL) {
                return -EPROTO;
        }
        return r_finish(&r);
}

int proto_decode_welcome(const uint8_t *p, size_t len, struct proto_welcome *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->version = r_u32(&r);
        ret->max_generation = r_uvarint(&r);
        r_text(&r, ret->software, PROTO_MAX_SOFTWARE);
        return r_finish(&r);
}

int proto_decode_error(const uint8_t *p, size_t len, struct proto_error *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->code = r_u32(&r);
        r_text(&r, ret->message, PROTO_MAX_ERROR_TEXT);
        return r_finish(&r);
}

int proto_decode_flush(const uint8_t *p, size_t len, struct proto_flush *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->id = r_uvarint(&r);
        return r_finish(&r);
}

int proto_decode_flush_done(const uint8_t *p, size_t len, struct proto_flush_done *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->id = r_uvarint(&r);
        ret->gen = r_uvarint(&r);
        return r_finish(&r);
}

int proto_decode_dump_request(const uint8_t *p, size_t len, struct proto_dump_request *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->id = r_uvarint(&r);
        r_text(&r, ret->reason, PROTO_MAX_REASON);
        return r_finish(&r);
}

int proto_decode_dump_reply(const uint8_t *p, size_t len, struct proto_dump_reply *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->id = r_uvarint(&r);
        int64_t v = proto_unzigzag(r_uvarint(&r));
        if (v > 0 || v < -4095) /* 0 or -errno */
                r.bad = 1;
        ret->result = (int32_t)v;
        r_text(&r, ret->text, PROTO_MAX_PATH);
        return r_finish(&r);
}

int proto_decode_crash(const uint8_t *p, size_t len, struct proto_crash *ret)
{
        struct rbuf r = {p, p + len, 0};
        ret->signo = r_u32(&r);
        if (ret->signo == 0 || ret->signo > 64)
                r.bad = 1;
        return r_finish(&r);
}
