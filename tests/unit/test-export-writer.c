/* SPDX-License-Identifier: MIT */
/*
 * The JSON writer's number formatting (flightrec/export-writer.h) against
 * snprintf: integers of every length, microsecond timestamps with their
 * cached seconds, and no write past the room each helper documents.  The
 * cases cover every digit count, every power of ten and its neighbours,
 * and a fixed-seed random sample of each magnitude.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export-writer.h"

#define SEED 0x5eed2026u

static uint64_t lcg_state;

static uint64_t lcg(void)
{
        lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
        return lcg_state >> 11 ^ lcg_state << 17;
}

/* Room a helper may use, and guard bytes after it that must stay intact. */
#define GUARD 16

/* Check's assertions report every passing check to the parent process (a
 * write(2) each): millions of them would take minutes.  Fail only. */
#define FAIL_IF(cond, ...)                                                                         \
        do {                                                                                       \
                if (cond)                                                                          \
                        ck_abort_msg(__VA_ARGS__);                                                 \
        } while (0)

static void check_u64(uint64_t v)
{
        char got[24 + GUARD], want[32];
        memset(got, 0x5a, sizeof(got));
        char *end = xw_put_u64(got, v);
        int n = snprintf(want, sizeof(want), "%" PRIu64, v);
        FAIL_IF((int)(end - got) != n || memcmp(got, want, (size_t)n), "%s: got %.*s", want,
                (int)(end - got), got);
        for (size_t i = 24; i < sizeof(got); i++)
                FAIL_IF(got[i] != 0x5a, "%s: wrote past the room", want);
}

static void check_u32(uint32_t v)
{
        char got[12 + GUARD], want[16];
        memset(got, 0x5a, sizeof(got));
        char *end = xw_put_u32(got, v);
        int n = snprintf(want, sizeof(want), "%" PRIu32, v);
        FAIL_IF((int)(end - got) != n || memcmp(got, want, (size_t)n), "%s: got %.*s", want,
                (int)(end - got), got);
        for (size_t i = 12; i < sizeof(got); i++)
                FAIL_IF(got[i] != 0x5a, "%s: wrote past the room", want);
}

static void check_i64(int64_t v)
{
        char got[32], want[32];
        char *end = xw_put_i64(got, v);
        int n = snprintf(want, sizeof(want), "%" PRId64, v);
        FAIL_IF((int)(end - got) != n || memcmp(got, want, (size_t)n), "%s: got %.*s", want,
                (int)(end - got), got);
}

START_TEST(test_integers)
{
        printf("test-export-writer: seed %#x\n", SEED);
        lcg_state = SEED;
        for (uint64_t v = 0; v < 200000; v++)
                check_u64(v);
        for (uint64_t p = 1, k = 0; k < 20; k++, p *= 10) {
                for (int d = -3; d <= 3; d++) {
                        check_u64(p + (uint64_t)d);
                        check_u64(p * 9 + (uint64_t)d);
                        if (p + (uint64_t)d <= UINT32_MAX)
                                check_u32((uint32_t)(p + (uint64_t)d));
                }
        }
        for (uint64_t d = 0; d < 4; d++) {
                check_u64(UINT64_MAX - d);
                check_u64((uint64_t)UINT32_MAX - d);
                check_u64((uint64_t)UINT32_MAX + 1 + d);
                check_u32(UINT32_MAX - (uint32_t)d);
        }
        for (int i = 0; i < 300000; i++) {
                uint64_t v = lcg() >> (lcg() % 64); /* every magnitude */
                check_u64(v);
                check_u32((uint32_t)v);
                check_i64((int64_t)v);
                check_i64(-(int64_t)(v >> 1));
        }
        check_i64(INT64_MIN);
        check_i64(INT64_MAX);
        check_i64(0);
        check_i64(-1);
}
END_TEST

static void us_want(char *buf, size_t size, int64_t ns)
{
        uint64_t a = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
        snprintf(buf, size, "%s%" PRIu64 ".%03" PRIu64, ns < 0 ? "-" : "", a / 1000, a % 1000);
}

static void check_us(struct xw *w, int64_t ns)
{
        char got[32 + GUARD], want[48];
        memset(got, 0x5a, sizeof(got));
        char *end = xw_put_us(w, got, ns);
        us_want(want, sizeof(want), ns);
        size_t n = strlen(want);
        FAIL_IF((size_t)(end - got) != n || memcmp(got, want, n), "%" PRId64 ": got %.*s", ns,
                (int)(end - got), got);
        for (size_t i = 32; i < sizeof(got); i++)
                FAIL_IF(got[i] != 0x5a, "%" PRId64 ": wrote past the room", ns);
}

START_TEST(test_microseconds)
{
        struct xw *w = malloc(sizeof(*w));
        ck_assert_ptr_nonnull(w);
        xw_init(w, -1);
        lcg_state = SEED;
        for (int64_t ns = -1100000; ns <= 1100000; ns++)
                check_us(w, ns);
        /* Around second boundaries, where the cached seconds change. */
        for (int64_t s = 0; s < 2000; s++)
                for (int64_t d = -1001; d <= 1001; d += 7)
                        check_us(w, s * 1000000000 + d);
        for (int64_t p = 1;; p *= 10) {
                for (int64_t d = -2; d <= 2; d++) {
                        check_us(w, p + d);
                        check_us(w, -(p + d));
                }
                if (p > INT64_MAX / 10 - 2)
                        break;
        }
        check_us(w, INT64_MAX);
        check_us(w, INT64_MIN);
        check_us(w, INT64_MIN + 1);
        /* A trace's timestamps: close together, then far apart. */
        int64_t t = 3820007566694000;
        for (int i = 0; i < 300000; i++) {
                t += (int64_t)(lcg() % 20000) - 5000;
                check_us(w, t);
                check_us(w, (int64_t)(lcg() >> (lcg() % 64)) * ((lcg() & 1) ? 1 : -1));
                check_us(w, (int64_t)(lcg() % 100000000)); /* a slice's duration */
        }
        free(w);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("export-writer");
        TCase *tc = tcase_create("numbers");
        tcase_add_test(tc, test_integers);
        tcase_add_test(tc, test_microseconds);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
