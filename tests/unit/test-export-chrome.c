/* SPDX-License-Identifier: MIT */
/*
 * The Chrome Trace Event exporter, checked structurally with jansson: every
 * event kind of the trace shows up as the right phase, with the right
 * counts; slices nest on every track; flows pair up; strings that are not
 * UTF-8 still give valid JSON; write errors are reported.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/export.h"
#include "flightrec/reader.h"
#include "genbuild.h"

/* Every batch event kind; three fibers; tasks whose parent ends first. */
static const char trace_all[] =
        "GENERATION 1 4242\n"
        "CLOCK 1000000000 0 5000000000 1700000000000000000 0 1000000\n"
        "GENS_LOST 1 4096\n"
        "STRING 1 \"main\"\nSTRING 2 \"worker\"\nSTRING 3 \"request\"\nSTRING 4 \"net\"\n"
        "STRING 5 \"depth\"\nSTRING 6 \"read\"\nSTRING 7 \"job\"\nSTRING 8 \"lock\"\n"
        "STRING 9 \"parse\"\nSTRING 10 \"child\"\nSTRING 11 \"renamed\"\n"
        "STACK 1 0x401000 0x401100\n"
        "THREAD 100 1\nTHREAD 200 2\n"
        "BATCH 100 0 0 {\n"
        "  THREAD_STATUS 0 0 0 0\n"
        "  REGION_BEGIN 1000 3\n"
        "  LOG 2000 4 \"bad \\xff byte\" 1\n"
        "  COUNTER 3000 5 7\n"
        "  COUNTER 3500 5 -2\n"
        "  TASK_BEGIN 4000 50 0 7 0\n"
        "  TASK_BEGIN 4500 51 50 10 0\n"
        "  TASK_END 5000 50\n"
        "  THREAD_NAME 6000 11\n"
        "  SYSCALL_BEGIN 7000 6 1\n"
        "  SYSCALL_END 8000\n"
        "  EVENTS_LOST 9000 3\n"
        "  FIBER_CREATE 10000 1 9 0\n"
        "  FIBER_RUN 11000 1 1\n"
        "  FIBER_BLOCK 12000 1 2 8 1\n"
        "  REGION_END 13000\n"
        "}\n"
        "BATCH 200 0 2 {\n"
        "  THREAD_STATUS 0 0 0 0\n"
        "  FIBER_READY 20000 1 3 0\n"
        "  FIBER_RUN 21000 1 4\n"
        "  FIBER_YIELD 22000 1 5\n"
        "  FIBER_RUN 23000 1 6\n"
        "  FIBER_EXIT 24000 1 7\n"
        "  TASK_END 25000 51\n"
        "  REGION_BEGIN 26000 3\n"
        "}\n"
        "END_OF_GENERATION\n";

static int export_text(const char *text, json_t **ret, struct fr_export_result *res)
{
        struct gb_blobs b = {0};
        char err[256];
        struct fr_error ferr;
        struct fr_dump *d;
        ck_assert_msg(gb_compile(text, &b, err, sizeof(err)) == 0, "%s", err);
        if (b.n == 1 && b.v[0].len == 0) {
                gb_blobs_free(&b);
                b.n = 0;
        }
        int dfd = memfd_create("dump", MFD_CLOEXEC);
        ck_assert_int_ge(dfd, 0);
        ck_assert_int_eq(gb_dump_write_fd(dfd, NULL, &b), 0);
        gb_blobs_free(&b);
        ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
        ck_assert_int_eq(fr_dump_open_fd(dfd, &d, &ferr), 0);

        int out = memfd_create("json", MFD_CLOEXEC);
        ck_assert_int_ge(out, 0);
        int r = fr_export_chrome(d, out, NULL, res, &ferr);
        fr_dump_free(d);
        ck_assert_msg(r == 0, "export: %s", ferr.msg);
        off_t len = lseek(out, 0, SEEK_END);
        char *buf = malloc((size_t)len + 1);
        ck_assert_int_eq(pread(out, buf, (size_t)len, 0), len);
        close(out);
        json_error_t jerr;
        *ret = json_loadb(buf, (size_t)len, 0, &jerr);
        ck_assert_msg(*ret != NULL, "invalid JSON at line %d: %s", jerr.line, jerr.text);
        free(buf);
        return 0;
}

static const char *sget(json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

static int count(json_t *events, const char *ph, const char *cat, const char *name)
{
        size_t i;
        json_t *e;
        int n = 0;
        json_array_foreach(events, i, e)
        {
                if (strcmp(sget(e, "ph"), ph) != 0)
                        continue;
                if (cat && strcmp(sget(e, "cat"), cat) != 0)
                        continue;
                if (name && strcmp(sget(e, "name"), name) != 0)
                        continue;
                n++;
        }
        return n;
}

START_TEST(test_export_every_kind)
{
        json_t *root;
        struct fr_export_result res;
        export_text(trace_all, &root, &res);
        json_t *ev = json_object_get(root, "traceEvents");
        ck_assert(json_is_array(ev));
        ck_assert_str_eq(sget(root, "displayTimeUnit"), "ns");
        ck_assert_uint_eq(res.events_out, json_array_size(ev));

        /* Every event has the common fields with the right types. */
        size_t i;
        json_t *e;
        json_array_foreach(ev, i, e)
        {
                ck_assert_msg(json_is_string(json_object_get(e, "ph")), "event %zu: ph", i);
                ck_assert(json_is_integer(json_object_get(e, "pid")));
                ck_assert(json_is_integer(json_object_get(e, "tid")));
                ck_assert(json_is_number(json_object_get(e, "ts")));
                if (!strcmp(sget(e, "ph"), "X"))
                        ck_assert(json_number_value(json_object_get(e, "dur")) >= 0);
        }

        /* Names: the process, both threads (with the rename), the fiber. */
        ck_assert_int_eq(count(ev, "M", NULL, "process_name"), 1);
        ck_assert_int_ge(count(ev, "M", NULL, "thread_name"), 4);
        /* Regions: two, one still open at the end. */
        ck_assert_int_eq(count(ev, "X", "region", "request"), 2);
        /* The log with its message; the invalid byte became U+FFFD. */
        ck_assert_int_eq(count(ev, "i", "log", "net"), 1);
        json_array_foreach(ev, i, e)
        {
                if (strcmp(sget(e, "cat"), "log") != 0)
                        continue;
                json_t *args = json_object_get(e, "args");
                ck_assert_str_eq(sget(args, "message"), "bad \xef\xbf\xbd byte");
                ck_assert_uint_eq(json_array_size(json_object_get(args, "stack")), 2);
        }
        ck_assert_int_eq(count(ev, "C", "counter", "depth"), 2);
        ck_assert_int_eq(count(ev, "X", "syscall", "read"), 1);
        /* Tasks: two begins, and the child split when its parent ended first. */
        ck_assert_int_eq(count(ev, "b", "task", NULL), 3);
        ck_assert_int_eq(count(ev, "e", "task", NULL), 3);
        /* Fiber states: runnable, running, waiting, runnable, running,
         * runnable, running — and the flow from the ready to the run. */
        ck_assert_int_eq(count(ev, "X", "fiber", "running"), 3);
        ck_assert_int_eq(count(ev, "X", "fiber", "runnable"), 3);
        ck_assert_int_eq(count(ev, "X", "fiber", "waiting: lock"), 1);
        ck_assert_int_eq(count(ev, "s", "fiber", "ready"), 1);
        ck_assert_int_eq(count(ev, "f", "fiber", "ready"), 1);
        /* Losses: generations, the EVENTS_LOST event, the batch's lost field. */
        ck_assert_int_eq(count(ev, "i", "lost", "generations lost"), 1);
        ck_assert_int_eq(count(ev, "i", "lost", "events lost"), 2);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(root, "otherData"),
                                                            "generations")),
                         1);
        json_decref(root);
}
END_TEST

/* Nestable async events with one id must nest by time: replay each id's
 * b/e in timestamp order with a stack. */
START_TEST(test_export_task_tracks_nest)
{
        json_t *root;
        struct fr_export_result res;
        export_text(trace_all, &root, &res);
        json_t *ev = json_object_get(root, "traceEvents");
        size_t i;
        json_t *e;
        /* ids seen; stacks of (name) per id, events taken in file order per
         * id, which the exporter keeps in time order per track. */
        const char *ids[16];
        int depth[16];
        double last_ts[16];
        size_t nids = 0;
        json_array_foreach(ev, i, e)
        {
                const char *ph = sget(e, "ph");
                if (strcmp(ph, "b") != 0 && strcmp(ph, "e") != 0)
                        continue;
                const char *id = sget(e, "id");
                size_t k;
                for (k = 0; k < nids && strcmp(ids[k], id) != 0; k++)
                        ;
                if (k == nids) {
                        ck_assert_uint_lt(nids, 16);
                        ids[nids] = id;
                        depth[nids] = 0;
                        last_ts[nids] = -1;
                        nids++;
                }
                double ts = json_number_value(json_object_get(e, "ts"));
                ck_assert_msg(ts >= last_ts[k], "track %s goes back in time", id);
                last_ts[k] = ts;
                depth[k] += ph[0] == 'b' ? 1 : -1;
                ck_assert_msg(depth[k] >= 0, "track %s ends more than it began", id);
        }
        for (size_t k = 0; k < nids; k++)
                ck_assert_msg(depth[k] == 0, "track %s left open", ids[k]);
        json_decref(root);
}
END_TEST

START_TEST(test_export_empty_dump)
{
        json_t *root;
        struct fr_export_result res;
        export_text("# nothing\n", &root, &res);
        ck_assert_uint_eq(json_array_size(json_object_get(root, "traceEvents")), 0);
        ck_assert_uint_eq(res.generations, 0);
        json_decref(root);
}
END_TEST

START_TEST(test_export_write_error)
{
        struct gb_blobs b = {0};
        char err[256];
        struct fr_error ferr;
        struct fr_dump *d;
        ck_assert_int_eq(gb_compile(trace_all, &b, err, sizeof(err)), 0);
        int dfd = memfd_create("dump", MFD_CLOEXEC);
        ck_assert_int_eq(gb_dump_write_fd(dfd, NULL, &b), 0);
        gb_blobs_free(&b);
        ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
        ck_assert_int_eq(fr_dump_open_fd(dfd, &d, &ferr), 0);
        int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
        ck_assert_int_ge(full, 0);
        int r = fr_export_chrome(d, full, NULL, NULL, &ferr);
        ck_assert_int_eq(r, -ENOSPC);
        ck_assert_msg(strstr(ferr.msg, "writing") != NULL, "%s", ferr.msg);
        close(full);
        fr_dump_free(d);
}
END_TEST

/* A bigger trace: the output stays valid and every region is exported. */
START_TEST(test_export_many_events)
{
        struct gb_gen g;
        struct gb_blobs b = {0};
        struct fr_error ferr;
        struct fr_dump *d;
        enum { N = 20000 };

        gb_gen_init(&g);
        gb_generation(&g, 1, 99);
        gb_clock(&g, 1000000000, 0, 0, 0, 0, 10 * N + 100);
        gb_string(&g, 1, "r");
        gb_thread(&g, 5, 1);
        gb_batch_begin(&g, 5, 0, 0);
        GB_EVENT(&g, THREAD_STATUS, 0, 0, 0, 0);
        for (uint64_t i = 0; i < N; i++) {
                GB_EVENT(&g, REGION_BEGIN, 10 * i + 1, 1);
                GB_EVENT(&g, REGION_END, 10 * i + 5);
        }
        gb_batch_end(&g);
        gb_end(&g);
        b.v = calloc(1, sizeof(*b.v));
        b.n = 1;
        gb_buf_put(&b.v[0], g.out.data, g.out.len);
        gb_gen_done(&g);

        int dfd = memfd_create("dump", MFD_CLOEXEC);
        ck_assert_int_eq(gb_dump_write_fd(dfd, NULL, &b), 0);
        gb_blobs_free(&b);
        ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
        ck_assert_int_eq(fr_dump_open_fd(dfd, &d, &ferr), 0);
        int out = memfd_create("json", MFD_CLOEXEC);
        struct fr_export_result res;
        ck_assert_int_eq(fr_export_chrome(d, out, NULL, &res, &ferr), 0);
        fr_dump_free(d);
        off_t len = lseek(out, 0, SEEK_END);
        char *buf = malloc((size_t)len);
        ck_assert_int_eq(pread(out, buf, (size_t)len, 0), len);
        close(out);
        json_error_t jerr;
        json_t *root = json_loadb(buf, (size_t)len, 0, &jerr);
        free(buf);
        ck_assert_msg(root != NULL, "line %d: %s", jerr.line, jerr.text);
        ck_assert_int_eq(count(json_object_get(root, "traceEvents"), "X", "region", "r"), N);
        ck_assert_uint_eq(res.events_in, 2 * N + 1);
        json_decref(root);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("export-chrome");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_export_every_kind);
        tcase_add_test(tc, test_export_task_tracks_nest);
        tcase_add_test(tc, test_export_empty_dump);
        tcase_add_test(tc, test_export_many_events);
        suite_add_tcase(s, tc);
        tc = tcase_create("errors");
        tcase_add_test(tc, test_export_write_error);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
