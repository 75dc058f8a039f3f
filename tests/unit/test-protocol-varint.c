/* SPDX-License-Identifier: MIT */
/* The LEB128 varint and zig-zag codec (proto/varint.h). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/varint.h"

static const uint64_t samples[] = {
        0,          1,          0x7f,       0x80,       0x3fff,     0x4000,
        0x1fffff,   0x200000,   0xffffffff, 0x100000000, UINT64_MAX >> 1, (UINT64_MAX >> 1) + 1,
        UINT64_MAX - 1, UINT64_MAX,
};

START_TEST(test_round_trip)
{
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
                uint8_t buf[PROTO_VARINT_MAX + 4];
                uint8_t *end = proto_put_uvarint(buf, samples[i]);
                const uint8_t *p = buf;
                uint64_t v = 0;

                ck_assert_uint_eq((size_t)(end - buf), proto_uvarint_len(samples[i]));
                ck_assert_int_le(end - buf, PROTO_VARINT_MAX);
                ck_assert_int_eq(proto_get_uvarint(&p, end, &v), 0);
                ck_assert_ptr_eq(p, end);
                ck_assert_uint_eq(v, samples[i]);
        }
}
END_TEST

START_TEST(test_lengths)
{
        ck_assert_uint_eq(proto_uvarint_len(0), 1);
        ck_assert_uint_eq(proto_uvarint_len(127), 1);
        ck_assert_uint_eq(proto_uvarint_len(128), 2);
        ck_assert_uint_eq(proto_uvarint_len(16383), 2);
        ck_assert_uint_eq(proto_uvarint_len(16384), 3);
        ck_assert_uint_eq(proto_uvarint_len(UINT64_MAX), 10);
}
END_TEST

/* Every 7-bit boundary, and a pseudo-random sweep with a fixed seed. */
START_TEST(test_sweep)
{
        uint64_t x = 0x9e3779b97f4a7c15ull;

        for (unsigned bits = 0; bits < 64; bits++) {
                uint64_t vs[3] = {(1ull << bits) - 1, 1ull << bits, (1ull << bits) + 1};
                for (int k = 0; k < 3; k++) {
                        uint8_t buf[PROTO_VARINT_MAX];
                        const uint8_t *p = buf;
                        uint64_t v;
                        uint8_t *end = proto_put_uvarint(buf, vs[k]);
                        ck_assert_int_eq(proto_get_uvarint(&p, end, &v), 0);
                        ck_assert_uint_eq(v, vs[k]);
                }
        }
        for (int i = 0; i < 100000; i++) {
                uint8_t buf[PROTO_VARINT_MAX];
                const uint8_t *p = buf;
                uint64_t v, want;
                uint8_t *end;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                want = x >> (x & 63);
                end = proto_put_uvarint(buf, want);
                ck_assert_int_eq(proto_get_uvarint(&p, end, &v), 0);
                ck_assert_uint_eq(v, want);
        }
}
END_TEST

START_TEST(test_zigzag)
{
        static const int64_t vals[] = {0, -1, 1, -2, 2, 63, -64, 64, INT64_MAX, INT64_MIN,
                                       INT64_MIN + 1, INT64_MAX - 1};
        ck_assert_uint_eq(proto_zigzag(0), 0);
        ck_assert_uint_eq(proto_zigzag(-1), 1);
        ck_assert_uint_eq(proto_zigzag(1), 2);
        ck_assert_uint_eq(proto_zigzag(-2), 3);
        ck_assert_uint_eq(proto_zigzag(INT64_MAX), UINT64_MAX - 1);
        ck_assert_uint_eq(proto_zigzag(INT64_MIN), UINT64_MAX);
        for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
                ck_assert_int_eq(proto_unzigzag(proto_zigzag(vals[i])), vals[i]);
}
END_TEST

static int decode(const uint8_t *buf, size_t len, uint64_t *v, const uint8_t **ret_p)
{
        const uint8_t *p = buf;
        int r = proto_get_uvarint(&p, buf + len, v);
        *ret_p = p;
        return r;
}

START_TEST(test_malformed)
{
        static const uint8_t cont[] = {0x80, 0x80, 0x80};
        static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                         0x80, 0x80, 0x80, 0x80, 0x00};
        static const uint8_t overflow[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0x02};
        static const uint8_t max[] = {0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0x01};
        const uint8_t *p;
        uint64_t v = 12345;

        /* Empty input, and a continuation bit with nothing after it. */
        ck_assert_int_eq(decode(cont, 0, &v, &p), -EBADMSG);
        ck_assert_ptr_eq(p, cont);
        ck_assert_int_eq(decode(cont, sizeof(cont), &v, &p), -EBADMSG);
        ck_assert_ptr_eq(p, cont);
        ck_assert_uint_eq(v, 12345); /* untouched on failure */
        /* Longer than ten bytes. */
        ck_assert_int_eq(decode(eleven, sizeof(eleven), &v, &p), -EBADMSG);
        /* Tenth byte carrying more than the 64th bit. */
        ck_assert_int_eq(decode(overflow, sizeof(overflow), &v, &p), -EBADMSG);
        ck_assert_int_eq(decode(max, sizeof(max), &v, &p), 0);
        ck_assert_uint_eq(v, UINT64_MAX);
        /* Every truncation of a long varint fails. */
        for (size_t n = 0; n < sizeof(max); n++)
                ck_assert_int_eq(decode(max, n, &v, &p), -EBADMSG);
}
END_TEST

/* Overlong but in-range encodings (0x80 0x00 for 0) are accepted: the
 * encoder never writes them, and rejecting them would buy nothing. */
START_TEST(test_overlong_zero)
{
        static const uint8_t z[] = {0x80, 0x00};
        const uint8_t *p;
        uint64_t v = 1;

        ck_assert_int_eq(decode(z, sizeof(z), &v, &p), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_ptr_eq(p, z + 2);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("protocol-varint");
        TCase *core = tcase_create("core"), *errors = tcase_create("errors");
        SRunner *sr;
        int failed;

        tcase_add_test(core, test_round_trip);
        tcase_add_test(core, test_lengths);
        tcase_add_test(core, test_sweep);
        tcase_add_test(core, test_zigzag);
        tcase_add_test(errors, test_malformed);
        tcase_add_test(errors, test_overlong_zero);
        suite_add_tcase(s, core);
        suite_add_tcase(s, errors);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
