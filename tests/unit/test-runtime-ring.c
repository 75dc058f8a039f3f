/* SPDX-License-Identifier: MIT */
/*
 * The in-process ring's crash protocol (runtime/ring.h): once the crash
 * handler has frozen the ring, pushes leave it alone and are counted as
 * dropped; a freeze waits for a push in progress, and gives up after its
 * deadline when the push never ends (the crash happened inside it); a thaw
 * brings the ring back.
 */
#include <check.h>
#include <stdint.h>
#include <time.h>

#include "../../runtime/ring.h"

static struct gt_blob *blob(uint64_t gen)
{
        struct gt_blob *b = gt_blob_new(gen, 100);
        ck_assert_ptr_nonnull(b);
        return b;
}

static double now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

START_TEST(test_frozen_ring_keeps_its_entries)
{
        struct gt_ring r;
        ck_assert_int_eq(gt_ring_init(&r, 2, 1 << 20), 0);
        ck_assert(gt_ring_push(&r, blob(1)));
        ck_assert(gt_ring_push(&r, blob(2)));
        struct gt_blob *oldest = gt_ring_at(&r, 0);

        ck_assert(gt_ring_freeze(&r, 10));
        /* Frozen: a push would have evicted generation 1; it is dropped. */
        ck_assert(!gt_ring_push(&r, blob(3)));
        ck_assert(!gt_ring_push(&r, blob(4)));
        ck_assert_ptr_eq(gt_ring_at(&r, 0), oldest);
        ck_assert_uint_eq(gt_ring_at(&r, 0)->gen, 1);
        ck_assert_uint_eq(gt_ring_at(&r, 1)->gen, 2);
        ck_assert_ptr_null(gt_ring_at(&r, 2));
        uint64_t bytes;
        ck_assert_uint_eq(gt_ring_take_dropped(&r, &bytes, NULL), 2);

        gt_ring_thaw(&r);
        ck_assert(gt_ring_push(&r, blob(5)));
        ck_assert_uint_eq(gt_ring_at(&r, 0)->gen, 2);
        ck_assert_uint_eq(gt_ring_at(&r, 1)->gen, 5);
        /* Generation 1 left the ring without being sent anywhere: that
         * eviction is a loss of its own (the frozen drops were taken). */
        ck_assert_uint_eq(gt_ring_take_dropped(&r, &bytes, NULL), 1);
        gt_ring_done(&r);
}
END_TEST

/* Losses a generation took to report are counted as long as it is not in
 * the ring: by a crash handler reading the ring (gt_ring_dropped), and, if a
 * frozen ring refuses that generation, with it.  Once it is in the ring, it
 * reports them and they are no longer the ring's to count. */
START_TEST(test_taken_losses_are_counted_until_pushed)
{
        struct gt_ring r;
        ck_assert_int_eq(gt_ring_init(&r, 1, 1 << 20), 0);
        ck_assert(gt_ring_push(&r, blob(1)));
        r.unsent = 1;
        ck_assert(gt_ring_push(&r, blob(2))); /* evicts 1, never sent: a loss */
        uint64_t bytes;
        ck_assert_uint_eq(gt_ring_dropped(&r, &bytes), 1);
        /* Generation 3 is being assembled and reports that loss. */
        ck_assert_uint_eq(gt_ring_take_dropped(&r, &bytes, NULL), 1);
        ck_assert_uint_eq(bytes, 100);
        ck_assert_uint_eq(gt_ring_dropped(&r, &bytes), 1); /* taken, not yet reported */
        ck_assert_uint_eq(bytes, 100);
        /* The crash handler freezes the ring; generation 3 is refused: it
         * is lost, with the loss it was to report. */
        ck_assert(gt_ring_freeze(&r, 10));
        struct gt_blob *b3 = blob(3);
        b3->reported_gens = 1; /* what it took, as assemble records it */
        b3->reported_bytes = 100;
        ck_assert(!gt_ring_push(&r, b3));
        ck_assert_uint_eq(gt_ring_dropped(&r, &bytes), 2);
        ck_assert_uint_eq(bytes, 200);
        gt_ring_thaw(&r);
        /* Generation 4 takes both and is pushed: it reports them. */
        ck_assert_uint_eq(gt_ring_take_dropped(&r, &bytes, NULL), 2);
        ck_assert(gt_ring_push(&r, blob(4)));
        ck_assert_uint_eq(gt_ring_dropped(&r, &bytes), 1); /* 2, unsent, evicted by 4 */
        ck_assert_uint_eq(gt_ring_take_dropped(&r, NULL, NULL), 1);
        ck_assert(gt_ring_push(&r, blob(5)));
        gt_ring_done(&r);
}
END_TEST

/* A generation evicted unsent takes with it the losses it reported: they
 * are reported again by a later one (counted once as new losses). */
START_TEST(test_evicted_report_is_carried)
{
        struct gt_ring r;
        ck_assert_int_eq(gt_ring_init(&r, 1, 1 << 20), 0);
        struct gt_blob *b = blob(1);
        b->reported_gens = 3; /* it reported 3 earlier losses */
        b->reported_bytes = 300;
        ck_assert(gt_ring_push(&r, b));
        ck_assert(gt_ring_push(&r, blob(2))); /* evicts 1, unsent */
        uint64_t bytes, fresh;
        ck_assert_uint_eq(gt_ring_dropped(&r, &bytes), 4);
        ck_assert_uint_eq(bytes, 400);
        ck_assert_uint_eq(gt_ring_take_dropped(&r, &bytes, &fresh), 4);
        ck_assert_uint_eq(fresh, 1); /* only generation 1 is a new loss */
        ck_assert_uint_eq(bytes, 400);
        /* The generation that took them cannot be made: a loss itself, and
         * the four are reported again. */
        gt_ring_untake(&r);
        ck_assert_uint_eq(gt_ring_take_dropped(&r, NULL, &fresh), 5);
        ck_assert_uint_eq(fresh, 1);
        gt_ring_done(&r);
}
END_TEST

START_TEST(test_freeze_gives_up_on_a_push_that_never_ends)
{
        struct gt_ring r;
        ck_assert_int_eq(gt_ring_init(&r, 2, 1 << 20), 0);
        /* As if the crash happened inside a push on this very thread. */
        atomic_store(&r.busy, 1);
        double t0 = now_ms();
        ck_assert(!gt_ring_freeze(&r, 30));
        double waited = now_ms() - t0;
        ck_assert_msg(waited >= 29 && waited < 2000, "waited %.1f ms", waited);
        atomic_store(&r.busy, 0);
        ck_assert(gt_ring_freeze(&r, 30));
        gt_ring_thaw(&r);
        gt_ring_done(&r);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("runtime-ring");
        TCase *tc = tcase_create("freeze");
        tcase_add_test(tc, test_frozen_ring_keeps_its_entries);
        tcase_add_test(tc, test_taken_losses_are_counted_until_pushed);
        tcase_add_test(tc, test_evicted_report_is_carried);
        tcase_add_test(tc, test_freeze_gives_up_on_a_push_that_never_ends);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
