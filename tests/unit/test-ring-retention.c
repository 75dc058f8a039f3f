/* SPDX-License-Identifier: MIT */
/* The daemon's generation rings: scan, retention by count and bytes, the
 * global cap's fairness, references held by dumps. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>

#include "daemon-blob.h"
#include "flightrec/ring.h"

static struct fr_genbuf *blob(size_t len, uint64_t gen)
{
        struct fr_genbuf *b = fr_genbuf_new(len);
        ck_assert_ptr_nonnull(b);
        daemon_blob_fill(b->data, len, gen, 77, 1700000000000000000ull + gen * 1000000000ull);
        ck_assert_int_eq(fr_genbuf_scan(b, NULL, 0), 0);
        ck_assert_uint_eq(b->gen, gen);
        return b;
}

START_TEST(test_blob_sizes_exact)
{
        for (size_t len = DAEMON_BLOB_MIN; len < 20000; len += (len < 400 ? 1 : 97)) {
                struct fr_genbuf *b = blob(len, len);
                ck_assert_uint_eq(b->len, len);
                ck_assert_uint_eq(b->pid, 77);
                fr_genbuf_unref(b);
        }
}
END_TEST

START_TEST(test_scan_summary)
{
        struct fr_genbuf *b = blob(1000, 9);
        ck_assert_uint_eq(b->first_wall_ns, 1700000009000000000ull);
        ck_assert_uint_eq(b->last_wall_ns, 1700000009000001000ull);
        ck_assert_uint_eq(b->first_mono_ns, 1000); /* mono_ns at ref, and start == ref */
        ck_assert_uint_eq(b->first_clock, 1000);
        ck_assert_uint_eq(b->events_lost, 0);
        fr_genbuf_unref(b);
}
END_TEST

START_TEST(test_scan_rejects)
{
        char err[128];
        struct fr_genbuf *b = blob(500, 3);
        /* Every truncation fails. */
        size_t len = b->len;
        for (size_t n = 0; n < len; n += 7) {
                b->len = n;
                ck_assert_int_eq(fr_genbuf_scan(b, err, sizeof(err)), -EBADMSG);
        }
        b->len = len;
        /* A batch event at the top level. */
        uint8_t save = b->data[0];
        b->data[0] = PROTO_EV_REGION_BEGIN;
        ck_assert_int_eq(fr_genbuf_scan(b, err, sizeof(err)), -EBADMSG);
        b->data[0] = save;
        /* Garbage */
        for (size_t i = 0; i < len; i++)
                b->data[i] = (uint8_t)(i * 131 + 7);
        ck_assert_int_eq(fr_genbuf_scan(b, err, sizeof(err)), -EBADMSG);
        fr_genbuf_unref(b);
}
END_TEST

/* A set with one process's ring in it, bounded by count and bytes (the
 * global bound out of the way). */
static struct fr_ring *one_ring(struct fr_rings **ret_s, uint32_t generations,
                                uint64_t max_process_bytes)
{
        struct fr_limits l = {.generations = generations, .max_process_bytes = max_process_bytes,
                              .max_total_bytes = 1u << 30};
        *ret_s = fr_rings_new(&l);
        ck_assert_ptr_nonnull(*ret_s);
        struct fr_ring *r = fr_ring_new(*ret_s, 1, 100);
        ck_assert_ptr_nonnull(r);
        return r;
}

START_TEST(test_retention_by_count)
{
        struct fr_rings *s;
        struct fr_ring *r = one_ring(&s, 3, 1u << 30);
        for (uint64_t g = 1; g <= 10; g++) {
                fr_ring_push(r, blob(100, g));
                ck_assert_int_eq(fr_rings_check(s), 0);
        }
        ck_assert_uint_eq(fr_ring_count(r), 3);
        ck_assert_uint_eq(fr_ring_at(r, 0)->gen, 8);
        ck_assert_uint_eq(fr_ring_at(r, 2)->gen, 10);
        ck_assert_ptr_null(fr_ring_at(r, 3));
        ck_assert_uint_eq(fr_ring_evicted(r), 7);
        ck_assert_uint_eq(fr_rings_bytes(s), 300);
        ck_assert_ptr_eq(fr_ring_find(s, 1, 100), r);
        ck_assert_ptr_null(fr_ring_find(s, 1, 101)); /* same pid, other process */
        fr_rings_free(s);
}
END_TEST

/* A blob of generation gen that started at mono_ns on CLOCK_MONOTONIC. */
static struct fr_genbuf *blob_at(size_t len, uint64_t gen, uint64_t mono_ns)
{
        struct fr_genbuf *b = blob(len, gen);
        b->first_mono_ns = mono_ns; /* as fr_genbuf_scan would have read them */
        b->first_clock = mono_ns * 3;
        return b;
}

static void expect_gens(const struct fr_ring *r, const uint64_t *gens, uint32_t n)
{
        ck_assert_uint_eq(fr_ring_count(r), n);
        for (uint32_t i = 0; i < n; i++)
                ck_assert_msg(fr_ring_at(r, i)->gen == gens[i], "slot %u holds %llu, not %llu", i,
                              (unsigned long long)fr_ring_at(r, i)->gen,
                              (unsigned long long)gens[i]);
}

/* Around a crash a process's generations reach gtraced out of order and
 * twice: each goes where its start time puts it, the larger copy of one
 * stays, and every total follows. */
START_TEST(test_put_orders_and_dedupes)
{
        struct fr_rings *s;
        struct fr_ring *r = one_ring(&s, 5, 1u << 30);
        uint64_t lost;

        /* The sealed generation 5 first, then 3 and 4 from the other
         * connection, which still had them queued. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 2, 2000), &lost), FR_PUT_ADDED);
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 5, 5000), &lost), FR_PUT_ADDED);
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 3, 3000), &lost), FR_PUT_ADDED);
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 4, 4000), &lost), FR_PUT_ADDED);
        expect_gens(r, (const uint64_t[]){2, 3, 4, 5}, 4);
        ck_assert_int_eq(fr_rings_check(s), 0);

        /* 5 again, finished (larger): it takes the sealed copy's place.  Its
         * clock anchor differs, so its start converts a few ns apart: the
         * start in clock units says it is the same generation. */
        struct fr_genbuf *fin = blob_at(150, 5, 5000);
        fin->first_mono_ns = 4997;
        fin->gens_lost = 1;
        ck_assert_int_eq(fr_ring_put(r, fin, &lost), FR_PUT_REPLACED);
        ck_assert_uint_eq(lost, 0);
        ck_assert_ptr_eq(fr_ring_at(r, 3), fin);
        ck_assert_uint_eq(fr_ring_bytes(r), 450);
        ck_assert_uint_eq(fr_rings_bytes(s), 450);
        ck_assert_uint_eq(fr_rings_generations(s), 4);
        /* A smaller copy of 3 is dropped; the one held stays. */
        struct fr_genbuf *three = fr_ring_at(r, 1);
        ck_assert_int_eq(fr_ring_put(r, blob_at(60, 3, 3000), &lost), FR_PUT_DUPLICATE);
        ck_assert_ptr_eq(fr_ring_at(r, 1), three);
        /* The replaced copy's gens_lost is handed back. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(150, 5, 5000), &lost), FR_PUT_REPLACED);
        ck_assert_uint_eq(lost, 1);
        ck_assert_int_eq(fr_rings_check(s), 0);

        /* Another generation 3 of a later start (the tracer restarted and
         * numbers from 1 again) is not a copy: it goes last. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 3, 9000), &lost), FR_PUT_ADDED);
        expect_gens(r, (const uint64_t[]){2, 3, 4, 5, 3}, 5);
        ck_assert_uint_eq(fr_ring_evicted(r), 0);

        /* Full: an older one makes room by evicting the oldest, 2... */
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 1, 2500), &lost), FR_PUT_ADDED);
        expect_gens(r, (const uint64_t[]){1, 3, 4, 5, 3}, 5);
        ck_assert_uint_eq(fr_ring_evicted(r), 1);
        /* ...and one older than everything held is the next to go: it goes. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 9, 100), &lost), FR_PUT_ADDED);
        expect_gens(r, (const uint64_t[]){1, 3, 4, 5, 3}, 5);
        ck_assert_uint_eq(fr_ring_evicted(r), 2);
        ck_assert_int_eq(fr_rings_check(s), 0);

        /* Without start times (an old producer): appended, as by push. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 7, 0), &lost), FR_PUT_ADDED);
        ck_assert_int_eq(fr_ring_put(r, blob_at(100, 6, 8000), &lost), FR_PUT_ADDED);
        expect_gens(r, (const uint64_t[]){4, 5, 3, 7, 6}, 5);
        ck_assert_int_eq(fr_rings_check(s), 0);
        fr_rings_free(s);
}
END_TEST

/* The byte bounds hold after a larger copy replaces a smaller one. */
START_TEST(test_put_replace_keeps_bounds)
{
        struct fr_rings *s;
        struct fr_ring *r = one_ring(&s, 8, 1000);
        uint64_t lost;
        for (uint64_t g = 1; g <= 3; g++)
                fr_ring_put(r, blob_at(300, g, g * 1000), &lost);
        ck_assert_int_eq(fr_ring_put(r, blob_at(500, 3, 3000), &lost), FR_PUT_REPLACED);
        expect_gens(r, (const uint64_t[]){2, 3}, 2);
        ck_assert_uint_eq(fr_ring_bytes(r), 800);
        ck_assert_uint_eq(fr_ring_evicted(r), 1);
        ck_assert_int_eq(fr_rings_check(s), 0);
        /* A larger copy of the oldest with no room even so: it would be the
         * next to go, and both copies go; the newer one stays. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(600, 2, 2000), &lost), FR_PUT_REPLACED);
        expect_gens(r, (const uint64_t[]){3}, 1);
        ck_assert_uint_eq(fr_ring_bytes(r), 500);
        ck_assert_uint_eq(fr_ring_evicted(r), 2);
        ck_assert_int_eq(fr_rings_check(s), 0);
        /* Alone, a copy over the bound stays, as push keeps one. */
        ck_assert_int_eq(fr_ring_put(r, blob_at(1200, 3, 3000), &lost), FR_PUT_REPLACED);
        expect_gens(r, (const uint64_t[]){3}, 1);
        ck_assert_uint_eq(fr_ring_bytes(r), 1200);
        ck_assert_int_eq(fr_rings_check(s), 0);
        fr_rings_free(s);
}
END_TEST

START_TEST(test_retention_by_bytes)
{
        struct fr_rings *s;
        struct fr_ring *r = one_ring(&s, 100, 1000);
        for (uint64_t g = 1; g <= 10; g++)
                fr_ring_push(r, blob(300, g));
        ck_assert_uint_eq(fr_ring_count(r), 3);
        ck_assert_uint_eq(fr_ring_bytes(r), 900);
        /* One generation bigger than the bound is still kept, alone. */
        fr_ring_push(r, blob(5000, 11));
        ck_assert_int_eq(fr_rings_check(s), 0);
        ck_assert_uint_eq(fr_ring_count(r), 1);
        ck_assert_uint_eq(fr_ring_at(r, 0)->gen, 11);
        fr_rings_free(s);
}
END_TEST

START_TEST(test_global_cap_fair)
{
        struct fr_limits l = {.generations = 1000, .max_process_bytes = 1u << 30,
                              .max_total_bytes = 10000};
        struct fr_rings *s = fr_rings_new(&l);
        struct fr_ring *quiet[3];
        for (int i = 0; i < 3; i++) {
                quiet[i] = fr_ring_new(s, 10 + (uint64_t)i, 0);
                for (uint64_t g = 1; g <= 5; g++)
                        fr_ring_push(quiet[i], blob(200, g)); /* 1000 bytes each */
        }
        struct fr_ring *chatty = fr_ring_new(s, 99, 0);
        for (uint64_t g = 1; g <= 500; g++) {
                fr_ring_push(chatty, blob(500, g));
                ck_assert_int_eq(fr_rings_check(s), 0);
                ck_assert_uint_le(fr_rings_bytes(s), 10000);
        }
        /* The quiet processes keep all their history; the chatty one got
         * what was left. */
        for (int i = 0; i < 3; i++)
                ck_assert_uint_eq(fr_ring_count(quiet[i]), 5);
        ck_assert_uint_eq(fr_ring_bytes(chatty), 7000);
        ck_assert_uint_eq(fr_ring_at(chatty, fr_ring_count(chatty) - 1)->gen, 500);

        /* Two heavy processes share fairly: each ends near half. */
        struct fr_ring *other = fr_ring_new(s, 98, 0);
        for (uint64_t g = 1; g <= 500; g++) {
                fr_ring_push(other, blob(500, g));
                fr_ring_push(chatty, blob(500, 500 + g));
                ck_assert_int_eq(fr_rings_check(s), 0);
        }
        ck_assert_uint_ge(fr_ring_bytes(other), 3000);
        ck_assert_uint_ge(fr_ring_bytes(chatty), 3000);
        fr_rings_free(s);
}
END_TEST

START_TEST(test_global_cap_keeps_newest)
{
        struct fr_limits l = {.generations = 10, .max_process_bytes = 1u << 30,
                              .max_total_bytes = 1000};
        struct fr_rings *s = fr_rings_new(&l);
        struct fr_ring *a = fr_ring_new(s, 1, 0), *b = fr_ring_new(s, 2, 0);
        fr_ring_push(a, blob(600, 1));
        fr_ring_push(b, blob(600, 1)); /* total 1200: a (other) loses its only one */
        ck_assert_int_eq(fr_rings_check(s), 0);
        ck_assert_uint_eq(fr_ring_count(a), 0);
        ck_assert_uint_eq(fr_ring_count(b), 1);
        fr_rings_free(s);
}
END_TEST

START_TEST(test_snapshot_refs_outlive_ring)
{
        struct fr_limits l = {.generations = 4, .max_process_bytes = 1u << 20,
                              .max_total_bytes = 1u << 20};
        struct fr_rings *s = fr_rings_new(&l);
        struct fr_ring *r = fr_ring_new(s, 5, 5);
        for (uint64_t g = 1; g <= 4; g++)
                fr_ring_push(r, blob(128, g));
        struct fr_genbuf *snap[4];
        ck_assert_uint_eq(fr_ring_snapshot(r, snap, 4), 4);
        /* The ring moves on and is then freed; the snapshot stays intact. */
        for (uint64_t g = 5; g <= 12; g++)
                fr_ring_push(r, blob(128, g));
        fr_ring_free(r);
        ck_assert_uint_eq(fr_rings_count(s), 0);
        ck_assert_uint_eq(fr_rings_bytes(s), 0);
        for (uint64_t i = 0; i < 4; i++) {
                ck_assert_uint_eq(snap[i]->gen, i + 1);
                ck_assert_int_eq(fr_genbuf_scan(snap[i], NULL, 0), 0);
                fr_genbuf_unref(snap[i]);
        }
        /* A short cap takes the newest. */
        r = fr_ring_new(s, 5, 5);
        for (uint64_t g = 1; g <= 4; g++)
                fr_ring_push(r, blob(128, g));
        ck_assert_uint_eq(fr_ring_snapshot(r, snap, 2), 2);
        ck_assert_uint_eq(snap[0]->gen, 3);
        fr_genbuf_unref(snap[0]);
        fr_genbuf_unref(snap[1]);
        fr_rings_free(s);
}
END_TEST

/* One user at their quota evicts only their own history. */
START_TEST(test_owner_quota_isolates)
{
        struct fr_limits l = {.generations = 1000, .max_process_bytes = 1u << 30,
                              .max_total_bytes = 1u << 30, .max_owner_bytes = 3000};
        struct fr_rings *s = fr_rings_new(&l);
        struct fr_ring *victim = fr_ring_new(s, 1, 0);
        ck_assert_int_eq(fr_ring_set_owner(victim, 1000), 0);
        for (uint64_t g = 1; g <= 5; g++)
                fr_ring_push(victim, blob(500, g)); /* 2500 bytes, under the quota */
        struct fr_ring *flood[10];
        for (int i = 0; i < 10; i++) {
                flood[i] = fr_ring_new(s, 100 + (uint64_t)i, 0);
                ck_assert_int_eq(fr_ring_set_owner(flood[i], 2000), 0);
        }
        for (uint64_t g = 1; g <= 200; g++) {
                fr_ring_push(flood[g % 10], blob(400, g));
                ck_assert_int_eq(fr_rings_check(s), 0);
                ck_assert_uint_le(fr_rings_owner_bytes(s, 2000), 3000);
        }
        ck_assert_uint_eq(fr_ring_count(victim), 5);
        ck_assert_uint_eq(fr_rings_owner_bytes(s, 1000), 2500);
        /* Changing owner moves the bytes and applies the new owner's quota. */
        ck_assert_int_eq(fr_ring_set_owner(victim, 2000), 0);
        ck_assert_int_eq(fr_rings_check(s), 0);
        ck_assert_uint_eq(fr_rings_owner_bytes(s, 1000), 0);
        ck_assert_uint_le(fr_rings_owner_bytes(s, 2000), 3000);
        ck_assert_uint_eq(fr_ring_owner(victim), 2000);
        for (int i = 0; i < 10; i++)
                fr_ring_free(flood[i]);
        ck_assert_int_eq(fr_rings_check(s), 0);
        fr_rings_free(s);
}
END_TEST

/* Without quotas, the global cap takes from the owner holding the most
 * first: a user with many small processes cannot evict a user with one. */
START_TEST(test_global_cap_fair_by_owner)
{
        struct fr_limits l = {.generations = 1000, .max_process_bytes = 1u << 30,
                              .max_total_bytes = 10000};
        struct fr_rings *s = fr_rings_new(&l);
        struct fr_ring *one = fr_ring_new(s, 1, 0);
        ck_assert_int_eq(fr_ring_set_owner(one, 1000), 0);
        for (uint64_t g = 1; g <= 6; g++)
                fr_ring_push(one, blob(500, g)); /* 3000 bytes: the biggest process */
        struct fr_ring *many[20];
        for (int i = 0; i < 20; i++) {
                many[i] = fr_ring_new(s, 100 + (uint64_t)i, 0);
                ck_assert_int_eq(fr_ring_set_owner(many[i], 2000), 0);
        }
        for (uint64_t g = 1; g <= 400; g++) {
                fr_ring_push(many[g % 20], blob(100, g)); /* 100 bytes each */
                ck_assert_int_eq(fr_rings_check(s), 0);
                ck_assert_uint_le(fr_rings_bytes(s), 10000);
        }
        /* Per process, "one" is the biggest by far, yet it kept everything. */
        ck_assert_uint_eq(fr_ring_count(one), 6);
        ck_assert_uint_eq(fr_rings_owner_bytes(s, 2000), 7000);
        fr_rings_free(s);
}
END_TEST

START_TEST(test_limits_invalid)
{
        struct fr_limits l = {.generations = 0, .max_process_bytes = 1, .max_total_bytes = 1};
        ck_assert_ptr_null(fr_rings_new(&l));
        fr_rings_free(NULL);
        fr_ring_free(NULL);
        fr_genbuf_unref(NULL);
}
END_TEST

static Suite *ring_suite(void)
{
        Suite *s = suite_create("ring");
        TCase *scan = tcase_create("scan");
        tcase_add_test(scan, test_blob_sizes_exact);
        tcase_add_test(scan, test_scan_summary);
        tcase_add_test(scan, test_scan_rejects);
        suite_add_tcase(s, scan);
        TCase *core = tcase_create("retention");
        tcase_add_test(core, test_retention_by_count);
        tcase_add_test(core, test_put_orders_and_dedupes);
        tcase_add_test(core, test_put_replace_keeps_bounds);
        tcase_add_test(core, test_retention_by_bytes);
        tcase_add_test(core, test_global_cap_fair);
        tcase_add_test(core, test_global_cap_keeps_newest);
        tcase_add_test(core, test_snapshot_refs_outlive_ring);
        tcase_add_test(core, test_owner_quota_isolates);
        tcase_add_test(core, test_global_cap_fair_by_owner);
        tcase_add_test(core, test_limits_invalid);
        suite_add_tcase(s, core);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(ring_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
