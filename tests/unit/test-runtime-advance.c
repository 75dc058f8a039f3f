/* SPDX-License-Identifier: MIT */
/*
 * The advance thread's blob assembly (runtime/advance.c): every byte of a
 * thread's chunks is copied once, straight into the blob, and large blobs
 * are reused once the ring and the daemon connection are done with them.
 *
 * Each test cuts many generations of varying length (some below the reuse
 * threshold, most above it, lengths jumping by more than a reused blob can
 * take), each holding a run of counter samples numbered 0, 1, 2, ...; then
 * it dumps and reads the dump back with the real reader: the samples it
 * holds must be one unbroken run ending at the last number emitted, in
 * every generation.  A blob reused while still referenced, or written past
 * its room, shows up as a broken run, a parse error, or (in the sanitizer
 * builds) a use-after-free or overflow report.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gtrace/gtrace.h>

#include "daemon-harness.h"
#include "flightrec/reader.h"
#include "rt-check.h"

#define GENERATIONS 24

/* Samples per generation: about 3 bytes each, so 1000 stay under the 64 KiB
 * reuse threshold and the rest make blobs of 90 to 600 KiB. */
static const uint32_t samples[] = {30000, 30000, 32000, 60000, 1000, 45000,
                                   200000, 31000, 29000, 100000, 33000, 40000};

struct run {
        int64_t next;     /* the value the next sample must have; -1: none seen yet */
        int64_t first;
        uint64_t total;
        uint64_t generations;
        int broken;
        char why[160];
};

static int on_gen(void *ctx, const struct fr_generation *g)
{
        struct run *r = ctx;
        r->generations++;
        (void)g;
        return 0;
}

static int on_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct run *r = ctx;
        if (ev->type != PROTO_EV_COUNTER || !ev->str[1] || strcmp(ev->str[1], "seq") != 0)
                return 0;
        int64_t v = (int64_t)ev->args[2];
        if (r->next >= 0 && v != r->next && !r->broken) {
                r->broken = 1;
                snprintf(r->why, sizeof(r->why), "generation %llu: sample %lld after %lld",
                         (unsigned long long)g->gen, (long long)v, (long long)r->next - 1);
        }
        if (r->next < 0)
                r->first = v;
        r->next = v + 1;
        r->total++;
        return 0;
}

static void read_run(const char *path, struct run *r)
{
        *r = (struct run){.next = -1};
        struct fr_dump *d;
        struct fr_error err = {0};
        ck_assert_msg(fr_dump_open(path, &d, &err) == 0, "%s: %s", path, err.msg);
        const struct fr_callbacks cb = {.generation_begin = on_gen, .event = on_event};
        int rc = fr_dump_parse(d, &cb, r, &err);
        ck_assert_msg(rc == 0, "%s: %s", path, err.msg);
        fr_dump_free(d);
}

/* Emits GENERATIONS generations of numbered samples, cutting each with
 * gtrace_flush(); returns the number of samples emitted. */
static int64_t emit_generations(void)
{
        int64_t v = 0;
        for (int g = 0; g < GENERATIONS; g++) {
                uint32_t n = samples[g % (sizeof(samples) / sizeof(samples[0]))];
                for (uint32_t i = 0; i < n; i++)
                        gtrace_counter("seq", v++);
                ck_assert_int_eq(gtrace_flush(), 0);
        }
        return v;
}

static void check_tail(const char *path, int64_t emitted, uint64_t min_generations)
{
        struct run r;
        read_run(path, &r);
        ck_assert_msg(!r.broken, "%s", r.why);
        ck_assert_int_eq(r.next, emitted);
        ck_assert_uint_ge(r.generations, min_generations);
        ck_assert_uint_eq((uint64_t)(r.next - r.first), r.total);
}

START_TEST(test_ring_only_reuses_blobs_intact)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = {
                .size = sizeof(o),
                .period_ms = 3600000, /* only the flushes cut */
                .ring_generations = 4,
                .dump_dir = dir,
                .flags = GTRACE_F_NO_DAEMON | GTRACE_F_NO_CRASH_HANDLER,
        };
        ck_assert_int_eq(gtrace_start(&o), 0);
        int64_t emitted = emit_generations();
        char path[4096];
        ck_assert_int_eq(gtrace_dump("advance test", path, sizeof(path)), 0);
        gtrace_stop();
        check_tail(path, emitted, 4);
}
END_TEST

static int connected(void *ctx)
{
        struct gtrace_stats st;
        (void)ctx;
        gtrace_get_stats(&st);
        return st.daemon_connected != 0;
}

START_TEST(test_daemon_sends_reused_blobs_intact)
{
        struct dh_daemon D = {0};
        const char *extra[] = {"--generations", "6", NULL};
        dh_start_ok(&D, extra);
        struct gtrace_options o = {
                .size = sizeof(o),
                .period_ms = 3600000,
                .ring_generations = 3, /* evicts while the connection may still send */
                .socket_path = D.sock,
                .dump_dir = D.dumps,
                .flags = GTRACE_F_NO_CRASH_HANDLER,
        };
        ck_assert_int_eq(gtrace_start(&o), 0);
        ck_assert(dh_wait_until(connected, NULL, 10000));
        int64_t emitted = emit_generations();
        char path[4096];
        ck_assert_int_eq(gtrace_dump("advance test", path, sizeof(path)), 0);
        gtrace_stop();
        /* gtraced keeps the last 6 generations of the process. */
        check_tail(path, emitted, 6);
        dh_finish(&D);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("runtime-advance");
        TCase *tc = tcase_create("assembly");
        tcase_add_test(tc, test_ring_only_reuses_blobs_intact);
        tcase_add_test(tc, test_daemon_sends_reused_blobs_intact);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
