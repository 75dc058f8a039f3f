/* SPDX-License-Identifier: MIT */
/*
 * The text tools' building blocks: human units, duration parsing, the id
 * map, and the state tracker's reconciliation across generations.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/reader.h"
#include "flightrec/view.h"
#include "genbuild.h"
#include "view-map.h"

/* ---- units ---- */

START_TEST(test_fmt_duration)
{
        static const struct {
                int64_t ns;
                const char *want;
        } cases[] = {
                {0, "0 ns"},
                {999, "999 ns"},
                {1000, "1.00 us"},
                {1234, "1.23 us"},
                {99949, "99.9 us"},
                {999499, "999 us"},
                {999500, "1.00 ms"},
                {12345678, "12.3 ms"},
                {1500000000, "1.50 s"},
                {59994999999, "60.0 s"},
                {60000000000, "1m00s"},
                {3599000000000, "59m59s"},
                {3600000000000, "1h00m"},
                {-2500000, "-2.50 ms"},
                {INT64_MIN, "-2562047h47m"},
        };
        char buf[64];
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                ck_assert_str_eq(fr_fmt_duration(buf, sizeof(buf), cases[i].ns), cases[i].want);
        /* A tiny buffer truncates, never overflows. */
        char tiny[4];
        ck_assert_str_eq(fr_fmt_duration(tiny, sizeof(tiny), 1500000000), "1.5");
}
END_TEST

START_TEST(test_fmt_size)
{
        char buf[32];
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 0), "0 B");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 1023), "1023 B");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 1024), "1.0 KiB");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 1536), "1.5 KiB");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 64u << 20), "64.0 MiB");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), 1ull << 30), "1.0 GiB");
        ck_assert_str_eq(fr_fmt_size(buf, sizeof(buf), UINT64_MAX), "16384.0 PiB");
}
END_TEST

START_TEST(test_parse_duration)
{
        static const struct {
                const char *s;
                int64_t ns;
        } ok[] = {
                {"0", 0},
                {"1", 1000000000},
                {"1.5s", 1500000000},
                {"200ms", 200000000},
                {"30us", 30000},
                {"500ns", 500},
                {"2m", 120000000000},
                {"1h", 3600000000000},
                {"0.25", 250000000},
        };
        static const char *const bad[] = {"",    "-1s", "+1s", "1x",     "s",
                                          "1 s", "nan", "inf", "1e300s", "ms"};
        int64_t ns;
        for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
                ck_assert_msg(fr_parse_duration(ok[i].s, &ns) == 0, "%s", ok[i].s);
                ck_assert_int_eq(ns, ok[i].ns);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(fr_parse_duration(bad[i], &ns) < 0, "'%s' accepted", bad[i]);
        ck_assert_int_lt(fr_parse_duration(NULL, &ns), 0);
}
END_TEST

START_TEST(test_view_kinds)
{
        struct fr_view_options o;
        memset(&o, 0, sizeof(o));
        ck_assert_int_eq(fr_view_add_kind(&o, "region"), 0);
        ck_assert_int_eq(fr_view_add_kind(&o, "FIBER_RUN"), 0);
        ck_assert_int_eq(fr_view_add_kind(&o, "log"), 0);
        ck_assert_int_eq(fr_view_add_kind(&o, "generation"), -EINVAL); /* structural */
        ck_assert_int_eq(fr_view_add_kind(&o, "nope"), -EINVAL);
        ck_assert(o.have_types);
        ck_assert(o.types[PROTO_EV_REGION_END / 8] & (1u << (PROTO_EV_REGION_END % 8)));
        ck_assert(o.types[PROTO_EV_FIBER_RUN / 8] & (1u << (PROTO_EV_FIBER_RUN % 8)));
        ck_assert(!(o.types[PROTO_EV_FIBER_EXIT / 8] & (1u << (PROTO_EV_FIBER_EXIT % 8))));
}
END_TEST

/* The fast conversion gives exactly the reader's results. */
START_TEST(test_clockconv_exact)
{
        static const uint64_t freqs[] = {1000000000ull,      2899999000ull, 24000000ull, 1,
                                         3000000000ull >> 3, 999999999ull,  19200000ull};
        uint64_t seed = 42;
        for (size_t f = 0; f < sizeof(freqs) / sizeof(freqs[0]); f++) {
                struct fr_clock c = {.freq = freqs[f],
                                     .ref = 1ull << 40,
                                     .mono_ns = 123456789012ull,
                                     .wall_ns = 1700000000000000000ull};
                struct fr_clockconv cv;
                fr_clockconv_init(&cv, &c);
                for (int i = 0; i < 100000; i++) {
                        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                        /* Spread: near the anchor, far before and after it, extremes. */
                        uint64_t t;
                        switch (i % 5) {
                        case 0: t = c.ref + (seed >> 40); break;
                        case 1: t = c.ref - (seed >> 44); break;
                        case 2: t = seed >> (i % 23); break;
                        case 3: t = seed; break;
                        default: t = i & 1 ? UINT64_MAX - (seed >> 50) : seed >> 60; break;
                        }
                        /* (No ck_assert per value: each one is a message to Check's
                         * parent process.) */
                        if (fr_clockconv_mono(&cv, t) != fr_clock_mono_ns(&c, t) ||
                            fr_clockconv_wall(&cv, t) != fr_clock_wall_ns(&c, t))
                                ck_abort_msg("freq %llu t %llu: %lld != %lld",
                                             (unsigned long long)c.freq, (unsigned long long)t,
                                             (long long)fr_clockconv_mono(&cv, t),
                                             (long long)fr_clock_mono_ns(&c, t));
                }
        }
        struct fr_clock z = {.freq = 0, .mono_ns = 5};
        struct fr_clockconv cz;
        fr_clockconv_init(&cz, &z);
        ck_assert_int_eq(fr_clockconv_mono(&cz, 77), fr_clock_mono_ns(&z, 77));
}
END_TEST

/* ---- the id map ---- */

START_TEST(test_vmap_churn)
{
        /* Fixed-seed churn against a plain array as the model. */
        enum { N = 4096 };
        static void *model[N];
        struct vmap m;
        uint64_t seed = 12345;
        vmap_init(&m);
        memset(model, 0, sizeof(model));
        for (int step = 0; step < 200000; step++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                uint64_t key = (seed >> 33) % N;
                if ((seed >> 20) & 1) {
                        void *v = (void *)(uintptr_t)(key * 8 + 8);
                        if (vmap_put(&m, key, v) != 0)
                                ck_abort_msg("put failed");
                        model[key] = v;
                } else {
                        if (vmap_del(&m, key) != model[key])
                                ck_abort_msg("step %d: del %llu returned the wrong value", step,
                                             (unsigned long long)key);
                        model[key] = NULL;
                }
                if (step % 9973 == 0) {
                        size_t n = 0;
                        for (uint64_t k = 0; k < N; k++) {
                                if (vmap_get(&m, k) != model[k])
                                        ck_abort_msg("step %d: key %llu wrong", step,
                                                     (unsigned long long)k);
                                n += model[k] != NULL;
                        }
                        ck_assert_uint_eq(m.n, n);
                }
        }
        /* Empty it: the table shrinks back. */
        for (uint64_t k = 0; k < N; k++)
                (void)vmap_del(&m, k);
        ck_assert_uint_eq(m.n, 0);
        ck_assert_uint_le(m.cap, 32);
        vmap_done(&m);
}
END_TEST

/* ---- the tracker ---- */

struct rec {
        int regions_lost, regions_normal, regions_open_at_end;
        int fiber_lost;
        char last_region[64];
        struct fr_track *tr;
};

static void h_region_end(void *ctx, struct fr_track_thread *t, const struct fr_track_region *r,
                         int64_t end_ns, enum fr_end how)
{
        struct rec *rec = ctx;
        (void)t;
        (void)end_ns;
        if (how == FR_END_LOST)
                rec->regions_lost++;
        else if (how == FR_END_TRACE)
                rec->regions_open_at_end++;
        else
                rec->regions_normal++;
        (void)snprintf(rec->last_region, sizeof(rec->last_region), "%s", r->name);
}

static void h_fiber_state(void *ctx, struct fr_track_fiber *f, uint8_t old_state,
                          const char *old_reason, int64_t since, int64_t now, enum fr_end how)
{
        struct rec *rec = ctx;
        (void)f;
        (void)old_state;
        (void)old_reason;
        ck_assert_int_le(since, now);
        if (how == FR_END_LOST)
                rec->fiber_lost++;
}

static int cb_begin(void *ctx, const struct fr_generation *g)
{
        return fr_track_generation_begin(((struct rec *)ctx)->tr, g);
}

static int cb_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        return fr_track_event(((struct rec *)ctx)->tr, g, ev);
}

static int cb_end(void *ctx, const struct fr_generation *g)
{
        return fr_track_generation_end(((struct rec *)ctx)->tr, g);
}

static void feed(struct rec *rec, const char *text)
{
        struct gb_blobs b = {0};
        char err[256];
        struct fr_callbacks cb = {cb_begin, cb_event, cb_end};
        struct fr_error ferr;
        ck_assert_msg(gb_compile(text, &b, err, sizeof(err)) == 0, "%s", err);
        for (size_t i = 0; i < b.n; i++) {
                int r = fr_generation_parse(b.v[i].data, b.v[i].len, 0, &cb, rec, &ferr);
                ck_assert_msg(r == 0, "generation %zu: %s", i, ferr.msg);
        }
        gb_blobs_free(&b);
}

/* Regions restated identically continue; one not restated ended in a gap;
 * one restated with another start is a different region. */
START_TEST(test_track_reconcile_regions)
{
        struct rec rec = {0};
        struct fr_track_hooks hooks = {.region_end = h_region_end, .fiber_state = h_fiber_state};
        rec.tr = fr_track_new(&hooks, &rec);
        ck_assert_ptr_nonnull(rec.tr);
        feed(&rec, "GENERATION 1 1\n"
                   "CLOCK 1000000000 0 0 0 0 100\n"
                   "STRING 1 \"outer\"\nSTRING 2 \"inner\"\nSTRING 3 \"t\"\n"
                   "THREAD 7 3\n"
                   "BATCH 7 0 0 {\n THREAD_STATUS 0 0 0 0\n REGION_BEGIN 10 1\n"
                   " REGION_BEGIN 20 2\n}\n"
                   "END_OF_GENERATION\n"
                   "---\n"
                   /* generation 2 restates only "outer": "inner" ended unseen */
                   "GENERATION 2 1\n"
                   "CLOCK 1000000000 100 100 100 100 200\n"
                   "STRING 1 \"outer\"\nSTRING 3 \"t\"\n"
                   "THREAD 7 3\n"
                   "BATCH 7 100 0 {\n THREAD_STATUS 100 0 0 0\n REGION_STATUS 100 1 10\n"
                   " REGION_END 150\n}\n"
                   "END_OF_GENERATION\n");
        ck_assert_int_eq(rec.regions_lost, 1);
        ck_assert_int_eq(rec.regions_normal, 1);
        ck_assert_str_eq(rec.last_region, "outer");
        struct fr_track_thread *t = fr_track_thread(rec.tr, 7);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->nregions, 0);
        fr_track_finish(rec.tr, 300);
        ck_assert_int_eq(rec.regions_open_at_end, 0);
        ck_assert_ptr_null(fr_track_thread(rec.tr, 7));
        fr_track_free(rec.tr);
}
END_TEST

/* A waiting fiber the next generation does not restate is gone; a thread
 * that is idle for a generation (no status at all) keeps its state. */
START_TEST(test_track_absence)
{
        struct rec rec = {0};
        struct fr_track_hooks hooks = {.region_end = h_region_end, .fiber_state = h_fiber_state};
        rec.tr = fr_track_new(&hooks, &rec);
        feed(&rec, "GENERATION 1 1\n"
                   "CLOCK 1000000000 0 0 0 0 100\n"
                   "STRING 1 \"busy\"\nSTRING 2 \"f\"\nSTRING 3 \"read\"\n"
                   "THREAD 7 0\nTHREAD 8 0\n"
                   "BATCH 7 0 0 {\n THREAD_STATUS 0 0 0 0\n REGION_BEGIN 10 1\n"
                   " SYSCALL_BEGIN 20 3 0\n}\n"
                   "BATCH 8 0 0 {\n THREAD_STATUS 0 0 0 0\n FIBER_CREATE 30 5 2 0\n}\n"
                   "END_OF_GENERATION\n"
                   "---\n"
                   "GENERATION 2 1\n"
                   "CLOCK 1000000000 100 100 100 100 200\n"
                   "END_OF_GENERATION\n");
        /* Thread 7 is blocked in read with "busy" open: still there. */
        struct fr_track_thread *t = fr_track_thread(rec.tr, 7);
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq(t->nregions, 1);
        ck_assert(t->in_syscall);
        ck_assert_str_eq(t->syscall, "read");
        /* Fiber 5 was runnable and not restated: its exit was lost. */
        ck_assert_ptr_null(fr_track_fiber(rec.tr, 5));
        ck_assert_int_eq(rec.fiber_lost, 1);
        fr_track_finish(rec.tr, 300);
        ck_assert_int_eq(rec.regions_open_at_end, 1);
        fr_track_free(rec.tr);
}
END_TEST

/* The argument positions the tracker and exporter use are the table's. */
START_TEST(test_table_positions)
{
        static const struct {
                uint8_t type;
                unsigned idx;
                const char *name;
        } pos[] = {
                {PROTO_EV_THREAD_STATUS, 1, "fiber"},
                {PROTO_EV_THREAD_STATUS, 2, "syscall"},
                {PROTO_EV_THREAD_STATUS, 3, "syscall_start"},
                {PROTO_EV_REGION_STATUS, 1, "name"},
                {PROTO_EV_REGION_STATUS, 2, "start"},
                {PROTO_EV_TASK_STATUS, 1, "task"},
                {PROTO_EV_TASK_STATUS, 2, "parent"},
                {PROTO_EV_TASK_STATUS, 3, "name"},
                {PROTO_EV_TASK_STATUS, 4, "start"},
                {PROTO_EV_FIBER_STATUS, 1, "fiber"},
                {PROTO_EV_FIBER_STATUS, 2, "state"},
                {PROTO_EV_FIBER_STATUS, 3, "name"},
                {PROTO_EV_FIBER_STATUS, 4, "reason"},
                {PROTO_EV_REGION_BEGIN, 1, "name"},
                {PROTO_EV_LOG, 1, "category"},
                {PROTO_EV_LOG, 2, "message"},
                {PROTO_EV_LOG, 3, "stack"},
                {PROTO_EV_COUNTER, 1, "name"},
                {PROTO_EV_COUNTER, 2, "value"},
                {PROTO_EV_TASK_BEGIN, 1, "task"},
                {PROTO_EV_TASK_BEGIN, 2, "parent"},
                {PROTO_EV_TASK_BEGIN, 3, "name"},
                {PROTO_EV_TASK_END, 1, "task"},
                {PROTO_EV_THREAD_NAME, 1, "name"},
                {PROTO_EV_SYSCALL_BEGIN, 1, "name"},
                {PROTO_EV_EVENTS_LOST, 1, "count"},
                {PROTO_EV_FIBER_CREATE, 1, "fiber"},
                {PROTO_EV_FIBER_CREATE, 2, "name"},
                {PROTO_EV_FIBER_RUN, 1, "fiber"},
                {PROTO_EV_FIBER_BLOCK, 1, "fiber"},
                {PROTO_EV_FIBER_BLOCK, 3, "reason"},
                {PROTO_EV_FIBER_READY, 1, "fiber"},
                {PROTO_EV_FIBER_YIELD, 1, "fiber"},
                {PROTO_EV_FIBER_EXIT, 1, "fiber"},
        };
        for (size_t i = 0; i < sizeof(pos) / sizeof(pos[0]); i++) {
                const struct proto_event_spec *s = proto_event_spec(pos[i].type);
                ck_assert_ptr_nonnull(s);
                ck_assert_uint_gt(s->nargs, pos[i].idx);
                ck_assert_msg(!strcmp(s->args[pos[i].idx].name, pos[i].name),
                              "%s arg %u is %s, the tools expect %s", s->name, pos[i].idx,
                              s->args[pos[i].idx].name, pos[i].name);
        }
}
END_TEST

int main(void)
{
        Suite *s = suite_create("client-textfmt");
        TCase *tc = tcase_create("units");
        tcase_add_test(tc, test_fmt_duration);
        tcase_add_test(tc, test_fmt_size);
        tcase_add_test(tc, test_parse_duration);
        tcase_add_test(tc, test_view_kinds);
        tcase_add_test(tc, test_clockconv_exact);
        suite_add_tcase(s, tc);
        tc = tcase_create("map");
        tcase_add_test(tc, test_vmap_churn);
        suite_add_tcase(s, tc);
        tc = tcase_create("tracker");
        tcase_add_test(tc, test_track_reconcile_regions);
        tcase_add_test(tc, test_track_absence);
        tcase_add_test(tc, test_table_positions);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
