/* SPDX-License-Identifier: MIT */
/*
 * The time delta every event carries (runtime/tsdelta.h): the time since the
 * thread's last event, never negative, and the thread's last time never
 * moving back, whatever order the counter's readings come in.
 */
#include <check.h>
#include <stdint.h>

#include "../../runtime/tsdelta.h"

START_TEST(test_delta_forward_and_behind)
{
        uint64_t last = 0;
        ck_assert_uint_eq(gt_ts_delta(&last, 100), 100);
        ck_assert_uint_eq(last, 100);
        ck_assert_uint_eq(gt_ts_delta(&last, 105), 5);
        ck_assert_uint_eq(last, 105);
        /* A reading behind the last one (another CPU's counter): zero, and
         * the next delta still counts from the latest time seen. */
        ck_assert_uint_eq(gt_ts_delta(&last, 103), 0);
        ck_assert_uint_eq(last, 105);
        ck_assert_uint_eq(gt_ts_delta(&last, 105), 0);
        ck_assert_uint_eq(gt_ts_delta(&last, 110), 5);
        ck_assert_uint_eq(gt_ts_delta(&last, 0), 0);
        ck_assert_uint_eq(last, 110);
        ck_assert_uint_eq(gt_ts_delta(&last, UINT64_MAX), UINT64_MAX - 110);
        ck_assert_uint_eq(gt_ts_delta(&last, UINT64_MAX - 1), 0);
        ck_assert_uint_eq(last, UINT64_MAX);
}
END_TEST

START_TEST(test_delta_matches_model)
{
        /* Readings that wander around a rising line, some behind: the sum
         * of the deltas is always the latest reading minus the first, and
         * each delta is what the plain branchy definition gives. */
        uint64_t last = 1000, model = 1000, x = 88172645463325252ull, sum = 0;
        for (int i = 0; i < 1000000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                uint64_t now = 1000 + (uint64_t)i * 3 + (x % 17) - 8;
                uint64_t want = now > model ? now - model : 0;
                if (now > model)
                        model = now;
                uint64_t d = gt_ts_delta(&last, now);
                ck_assert_uint_eq(d, want);
                ck_assert_uint_eq(last, model);
                sum += d;
        }
        ck_assert_uint_eq(sum, model - 1000);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("runtime-delta");
        TCase *tc = tcase_create("delta");
        tcase_add_test(tc, test_delta_forward_and_behind);
        tcase_add_test(tc, test_delta_matches_model);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
