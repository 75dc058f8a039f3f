/* SPDX-License-Identifier: MIT */
/* The wire codec: round trips, limits, and rejection of malformed frames. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dumpfile.h"
#include "proto/varint.h"
#include "proto/wire.h"

static uint8_t buf[PROTO_MAX_SMALL_FRAME];

/* Encodes, splits and returns the payload of the one frame in buf. */
static const uint8_t *split_one(ssize_t n, uint16_t type, size_t *ret_len)
{
        struct proto_header h;
        const uint8_t *payload = NULL;
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(proto_frame_split(buf, (size_t)n, &h, &payload), n);
        ck_assert_uint_eq(h.type, type);
        ck_assert_uint_eq(h.length + PROTO_HEADER_BYTES, (size_t)n);
        /* Any shorter prefix asks for more bytes. */
        for (ssize_t i = 0; i < n; i += 1 + n / 7)
                ck_assert_int_eq(proto_frame_split(buf, (size_t)i, &h, &payload), 0);
        *ret_len = h.length;
        return payload;
}

START_TEST(test_hello_producer_roundtrip)
{
        struct proto_hello in = {.version = PROTO_WIRE_VERSION,
                                 .role = PROTO_ROLE_PRODUCER,
                                 .pid = 4242,
                                 .uid = 1000,
                                 .start_time_ns = 1700000000123456789ull,
                                 .clock_freq = 2400000000ull};
        snprintf(in.software, sizeof(in.software), "%s", "libgtrace 0.1.0");
        snprintf(in.command, sizeof(in.command), "%s", "server");
        snprintf(in.executable, sizeof(in.executable), "%s", "/usr/bin/server");
        size_t len;
        const uint8_t *p = split_one(proto_encode_hello(buf, sizeof(buf), &in), PROTO_MSG_HELLO,
                                     &len);
        struct proto_hello out;
        ck_assert_int_eq(proto_decode_hello(p, len, &out), 0);
        ck_assert_uint_eq(out.pid, 4242);
        ck_assert_uint_eq(out.uid, 1000);
        ck_assert_uint_eq(out.start_time_ns, in.start_time_ns);
        ck_assert_uint_eq(out.clock_freq, in.clock_freq);
        ck_assert_str_eq(out.command, "server");
        ck_assert_str_eq(out.executable, "/usr/bin/server");
        ck_assert_str_eq(out.software, "libgtrace 0.1.0");
        /* Every truncation of the payload is rejected, never read past. */
        for (size_t i = 0; i < len; i++)
                ck_assert_int_lt(proto_decode_hello(p, i, &out), 0);
}
END_TEST

START_TEST(test_hello_control_and_version)
{
        struct proto_hello in = {.version = PROTO_WIRE_VERSION, .role = PROTO_ROLE_CONTROL};
        snprintf(in.software, sizeof(in.software), "%s", "gtracectl");
        size_t len;
        const uint8_t *p =
                split_one(proto_encode_hello(buf, sizeof(buf), &in), PROTO_MSG_HELLO, &len);
        struct proto_hello out;
        ck_assert_int_eq(proto_decode_hello(p, len, &out), 0);
        ck_assert_uint_eq(out.role, PROTO_ROLE_CONTROL);

        in.version = 7;
        p = split_one(proto_encode_hello(buf, sizeof(buf), &in), PROTO_MSG_HELLO, &len);
        ck_assert_int_eq(proto_decode_hello(p, len, &out), -EPROTONOSUPPORT);
        ck_assert_uint_eq(out.version, 7);

        in.version = PROTO_WIRE_VERSION;
        in.role = 9;
        p = split_one(proto_encode_hello(buf, sizeof(buf), &in), PROTO_MSG_HELLO, &len);
        ck_assert_int_eq(proto_decode_hello(p, len, &out), -EPROTO);
}
END_TEST

START_TEST(test_small_messages_roundtrip)
{
        size_t len;
        const uint8_t *p;

        struct proto_welcome w = {.version = 1, .max_generation = 1u << 20}, w2;
        snprintf(w.software, sizeof(w.software), "%s", "gtraced 0.1.0");
        p = split_one(proto_encode_welcome(buf, sizeof(buf), &w), PROTO_MSG_WELCOME, &len);
        ck_assert_int_eq(proto_decode_welcome(p, len, &w2), 0);
        ck_assert_uint_eq(w2.max_generation, 1u << 20);
        ck_assert_str_eq(w2.software, "gtraced 0.1.0");

        struct proto_error e = {.code = EPROTO}, e2;
        snprintf(e.message, sizeof(e.message), "%s", "unknown message type 0x77");
        p = split_one(proto_encode_error(buf, sizeof(buf), &e), PROTO_MSG_ERROR, &len);
        ck_assert_int_eq(proto_decode_error(p, len, &e2), 0);
        ck_assert_uint_eq(e2.code, EPROTO);
        ck_assert_str_eq(e2.message, e.message);

        struct proto_flush f = {.id = UINT64_MAX}, f2;
        p = split_one(proto_encode_flush(buf, sizeof(buf), &f), PROTO_MSG_FLUSH, &len);
        ck_assert_int_eq(proto_decode_flush(p, len, &f2), 0);
        ck_assert_uint_eq(f2.id, UINT64_MAX);

        struct proto_flush_done fd = {.id = 3, .gen = 99}, fd2;
        p = split_one(proto_encode_flush_done(buf, sizeof(buf), &fd), PROTO_MSG_FLUSH_DONE, &len);
        ck_assert_int_eq(proto_decode_flush_done(p, len, &fd2), 0);
        ck_assert_uint_eq(fd2.id, 3);
        ck_assert_uint_eq(fd2.gen, 99);

        struct proto_dump_request dr = {.id = 5}, dr2;
        snprintf(dr.reason, sizeof(dr.reason), "%s", "assertion failed");
        p = split_one(proto_encode_dump_request(buf, sizeof(buf), &dr), PROTO_MSG_DUMP_REQUEST,
                      &len);
        ck_assert_int_eq(proto_decode_dump_request(p, len, &dr2), 0);
        ck_assert_uint_eq(dr2.id, 5);
        ck_assert_str_eq(dr2.reason, "assertion failed");

        struct proto_dump_reply rp = {.id = 5, .result = -ENOSPC}, rp2;
        snprintf(rp.text, sizeof(rp.text), "%s", "No space left on device");
        p = split_one(proto_encode_dump_reply(buf, sizeof(buf), &rp), PROTO_MSG_DUMP_REPLY, &len);
        ck_assert_int_eq(proto_decode_dump_reply(p, len, &rp2), 0);
        ck_assert_int_eq(rp2.result, -ENOSPC);
        ck_assert_str_eq(rp2.text, rp.text);

        struct proto_crash c = {.signo = 11}, c2;
        p = split_one(proto_encode_crash(buf, sizeof(buf), &c), PROTO_MSG_CRASH, &len);
        ck_assert_int_eq(proto_decode_crash(p, len, &c2), 0);
        ck_assert_uint_eq(c2.signo, 11);

        p = split_one(proto_encode_goodbye(buf, sizeof(buf)), PROTO_MSG_GOODBYE, &len);
        ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(test_encode_no_room)
{
        struct proto_crash c = {.signo = 6};
        for (size_t cap = 0; cap < PROTO_HEADER_BYTES + 1; cap++)
                ck_assert_int_eq(proto_encode_crash(buf, cap, &c), -ENOBUFS);
        ck_assert_int_eq(proto_encode_crash(buf, PROTO_HEADER_BYTES + 1, &c),
                         PROTO_HEADER_BYTES + 1);
}
END_TEST

START_TEST(test_text_truncation_utf8)
{
        /* A reason longer than the limit, with a 3-byte character across the cut. */
        static struct proto_dump_request dr, dr2;
        memset(dr.reason, 'a', sizeof(dr.reason) - 1);
        dr.reason[PROTO_MAX_REASON - 1] = (char)0xe2;
        dr.reason[PROTO_MAX_REASON] = (char)0x82;
        size_t len;
        const uint8_t *p = split_one(proto_encode_dump_request(buf, sizeof(buf), &dr),
                                     PROTO_MSG_DUMP_REQUEST, &len);
        ck_assert_int_eq(proto_decode_dump_request(p, len, &dr2), 0);
        ck_assert_uint_eq(strlen(dr2.reason), PROTO_MAX_REASON - 1);
}
END_TEST

START_TEST(test_header_limits)
{
        struct proto_header h;
        uint8_t hdr[PROTO_HEADER_BYTES];
        const uint16_t types[] = {PROTO_MSG_HELLO,        PROTO_MSG_WELCOME,    PROTO_MSG_ERROR,
                                  PROTO_MSG_GENERATION,   PROTO_MSG_FLUSH_DONE, PROTO_MSG_CRASH,
                                  PROTO_MSG_DUMP_REQUEST, PROTO_MSG_GOODBYE,    PROTO_MSG_FLUSH,
                                  PROTO_MSG_DUMP_REPLY,   PROTO_MSG_REQUEST,    PROTO_MSG_REPLY};
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                uint32_t max = proto_msg_max(types[i]);
                ck_assert(proto_msg_known(types[i]));
                proto_header_put(hdr, types[i], max);
                ck_assert_int_eq(proto_header_get(hdr, &h), 0);
                proto_header_put(hdr, types[i], max + 1);
                ck_assert_int_eq(proto_header_get(hdr, &h), -EMSGSIZE);
                ck_assert_uint_eq(h.length, max + 1);
        }
        ck_assert_uint_eq(proto_msg_max(PROTO_MSG_GENERATION), PROTO_MAX_GENERATION_BYTES);

        proto_header_put(hdr, 0x77, 0);
        ck_assert_int_eq(proto_header_get(hdr, &h), -EPROTO);
        ck_assert_uint_eq(h.type, 0x77);
        ck_assert_str_eq(proto_msg_name(0x77), "unknown");

        proto_header_put(hdr, PROTO_MSG_GOODBYE, 0);
        hdr[7] = 1;
        ck_assert_int_eq(proto_header_get(hdr, &h), -EBADMSG);

        /* A huge length is refused from the header alone. */
        proto_header_put(hdr, PROTO_MSG_REQUEST, UINT32_MAX);
        const uint8_t *payload;
        ck_assert_int_eq(proto_frame_split(hdr, sizeof(hdr), &h, &payload), -EMSGSIZE);
}
END_TEST

START_TEST(test_decode_rejects)
{
        struct proto_crash c;
        uint8_t p[16];
        /* signal 0 and out-of-range signals */
        p[0] = 0;
        ck_assert_int_eq(proto_decode_crash(p, 1, &c), -EBADMSG);
        p[0] = 65;
        ck_assert_int_eq(proto_decode_crash(p, 1, &c), -EBADMSG);
        /* trailing bytes */
        p[0] = 11;
        p[1] = 0;
        ck_assert_int_eq(proto_decode_crash(p, 2, &c), -EBADMSG);
        /* an over-long varint */
        memset(p, 0xff, sizeof(p));
        struct proto_flush f;
        ck_assert_int_eq(proto_decode_flush(p, sizeof(p), &f), -EBADMSG);
        /* a text with a NUL inside */
        struct proto_dump_request dr;
        uint8_t q[] = {1, 3, 'a', 0, 'b'};
        ck_assert_int_eq(proto_decode_dump_request(q, sizeof(q), &dr), -EBADMSG);
        /* a text longer than what remains */
        uint8_t q2[] = {1, 9, 'a'};
        ck_assert_int_eq(proto_decode_dump_request(q2, sizeof(q2), &dr), -EBADMSG);
        /* a dump reply whose result is positive */
        struct proto_dump_reply rp;
        uint8_t q3[] = {1, 2, 0};
        ck_assert_int_eq(proto_decode_dump_reply(q3, sizeof(q3), &rp), -EBADMSG);
        /* a version that does not fit 32 bits */
        struct proto_hello h;
        uint8_t q4[] = {0x80, 0x80, 0x80, 0x80, 0x10};
        ck_assert_int_eq(proto_decode_hello(q4, sizeof(q4), &h), -EBADMSG);
}
END_TEST

static Suite *wire_suite(void)
{
        Suite *s = suite_create("wire");
        TCase *core = tcase_create("core");
        tcase_add_test(core, test_hello_producer_roundtrip);
        tcase_add_test(core, test_hello_control_and_version);
        tcase_add_test(core, test_small_messages_roundtrip);
        suite_add_tcase(s, core);
        TCase *limits = tcase_create("limits");
        tcase_add_test(limits, test_encode_no_room);
        tcase_add_test(limits, test_text_truncation_utf8);
        tcase_add_test(limits, test_header_limits);
        suite_add_tcase(s, limits);
        TCase *errors = tcase_create("errors");
        tcase_add_test(errors, test_decode_rejects);
        suite_add_tcase(s, errors);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(wire_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
