/* SPDX-License-Identifier: MIT */
/*
 * The whole path, with real processes: an instrumented program
 * (test-cli-roundtrip-prog, public API only) → a real gtraced → gtracectl
 * snapshot (of the live process, into a file gtracectl creates) → validate →
 * stats → view --last → export, and the exported JSON checked with jansson
 * for every event kind the program emitted, with exact counts.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-proc.h"
#include "daemon-harness.h"

struct counts {
        int regions, logs, counters, tasks, child_tasks, fibers, syscalls;
};

struct prog {
        struct dh_prog proc; /* its stdin (EOF ends it) and stdout */
        struct counts n;
};

static void prog_start(struct prog *p, const char *socket)
{
        char line[256];
        const char *args[] = {NULL};
        ck_assert_int_eq(dh_prog_spawn(&p->proc, "tests/test-cli-roundtrip-prog", socket, NULL, args),
                         0);
        ck_assert_msg(dh_prog_line(&p->proc, line, sizeof(line), 20000) == 0,
                      "the traced program did not report its counts");
        ck_assert_int_eq(sscanf(line,
                                "counts regions=%d logs=%d counters=%d tasks=%d child_tasks=%d "
                                "fibers=%d syscalls=%d",
                                &p->n.regions, &p->n.logs, &p->n.counters, &p->n.tasks,
                                &p->n.child_tasks, &p->n.fibers, &p->n.syscalls),
                         7);
        ck_assert_msg(dh_prog_line(&p->proc, line, sizeof(line), 20000) == 0 &&
                              !strncmp(line, "ready ", 6),
                      "the traced program did not get ready: %s", line);
}

/* EOF on its stdin: it stops tracing and exits.  Its exit code, or 128 +
 * the signal that ended it. */
static int prog_stop(struct prog *p)
{
        int status = dh_prog_close(&p->proc);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
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
                if (strcmp(sget(e, "ph"), ph) != 0 || (cat && strcmp(sget(e, "cat"), cat) != 0))
                        continue;
                if (name && strcmp(sget(e, "name"), name) != 0)
                        continue;
                n++;
        }
        return n;
}

static long per_type(json_t *stats, const char *type)
{
        return (long)json_integer_value(
                json_object_get(json_object_get(stats, "events_per_type"), type));
}

START_TEST(test_roundtrip)
{
        struct dh_daemon d = {0};
        struct prog p;
        struct cp_result r;
        char gtracectl[512], pid[32];
        char *dir = cp_tmpdir("roundtrip");

        cp_build_path("client/gtracectl", gtracectl, sizeof(gtracectl));
        dh_start_ok(&d, NULL);
        prog_start(&p, d.sock);
        (void)snprintf(pid, sizeof(pid), "%d", (int)p.proc.pid);

        /* snapshot: the absolute path of the file we named is the only line. */
        const char *snap[] = {gtracectl,  "--socket",   d.sock, "snapshot",  pid,
                              "--reason", "round trip", "-o",     "rt.gtrace", NULL};
        cp_run(snap, NULL, dir, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "snapshot: %s", r.err);
        char want_path[700];
        (void)snprintf(want_path, sizeof(want_path), "%s/rt.gtrace\n", dir);
        ck_assert_str_eq(r.out, want_path);
        cp_result_free(&r);

        const char *val[] = {gtracectl, "validate", "rt.gtrace", NULL};
        cp_run(val, NULL, dir, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "validate: %s", r.err);
        cp_result_free(&r);

        /* stats: exact counts per event type, the dump's metadata. */
        const char *st[] = {gtracectl, "stats", "--json", "rt.gtrace", NULL};
        cp_run(st, NULL, dir, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "stats: %s", r.err);
        json_t *stats = json_loads(r.out, 0, NULL);
        ck_assert_ptr_nonnull(stats);
        cp_result_free(&r);
        json_t *meta = json_object_get(stats, "meta");
        ck_assert_int_eq(json_integer_value(json_object_get(meta, "pid")), p.proc.pid);
        ck_assert_str_eq(sget(meta, "reason"), "round trip");
        /* comm (15 bytes) or the full argv[0] basename: a prefix either way. */
        const char *cmd = sget(meta, "command");
        ck_assert_msg(cmd[0] && !strncmp(cmd, "test-cli-roundtrip-prog", strlen(cmd)), "%s", cmd);
        ck_assert(json_is_true(json_object_get(meta, "flushed")));
        ck_assert_int_eq(json_integer_value(json_object_get(stats, "events_lost")), 0);
        ck_assert_int_eq(per_type(stats, "REGION_BEGIN"), p.n.regions);
        ck_assert_int_eq(per_type(stats, "REGION_END"), p.n.regions);
        ck_assert_int_eq(per_type(stats, "LOG"), p.n.logs);
        ck_assert_int_eq(per_type(stats, "COUNTER"), p.n.counters);
        ck_assert_int_eq(per_type(stats, "TASK_BEGIN"), p.n.tasks + p.n.child_tasks);
        ck_assert_int_eq(per_type(stats, "TASK_END"), p.n.tasks + p.n.child_tasks);
        ck_assert_int_eq(per_type(stats, "SYSCALL_BEGIN"), p.n.syscalls);
        ck_assert_int_eq(per_type(stats, "FIBER_CREATE"), p.n.fibers);
        ck_assert_int_eq(per_type(stats, "FIBER_RUN"), 3 * p.n.fibers);
        ck_assert_int_eq(per_type(stats, "FIBER_BLOCK"), p.n.fibers);
        ck_assert_int_eq(per_type(stats, "FIBER_READY"), p.n.fibers);
        ck_assert_int_eq(per_type(stats, "FIBER_YIELD"), p.n.fibers);
        ck_assert_int_eq(per_type(stats, "FIBER_EXIT"), p.n.fibers);
        ck_assert_int_eq(json_integer_value(json_object_get(stats, "fibers")), p.n.fibers);
        json_decref(stats);

        /* view --last names both threads. */
        const char *last[] = {gtracectl, "view", "rt.gtrace", "--last", NULL};
        cp_run(last, NULL, dir, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "view --last: %s", r.err);
        ck_assert(strstr(r.out, " main") && strstr(r.out, " scheduler"));
        cp_result_free(&r);

        /* export, and the JSON per kind. */
        const char *ex[] = {gtracectl, "export", "rt.gtrace", "--format",
                            "chrome",  "-o",     "rt.json",   NULL};
        cp_run(ex, NULL, dir, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "export: %s", r.err);
        cp_result_free(&r);
        char json_path[700];
        (void)snprintf(json_path, sizeof(json_path), "%s/rt.json", dir);
        json_error_t jerr;
        json_t *root = json_load_file(json_path, 0, &jerr);
        ck_assert_msg(root != NULL, "rt.json: line %d: %s", jerr.line, jerr.text);
        json_t *ev = json_object_get(root, "traceEvents");
        ck_assert_int_eq(count(ev, "M", NULL, "process_name"), 1);
        ck_assert_int_eq(count(ev, "X", "region", NULL), p.n.regions);
        ck_assert_int_eq(count(ev, "i", "log", NULL), p.n.logs);
        ck_assert_int_eq(count(ev, "C", "counter", "depth"), p.n.counters);
        ck_assert_int_eq(count(ev, "X", "syscall", "nanosleep"), p.n.syscalls);
        /* Children end before their parents: each task exactly one b/e pair. */
        ck_assert_int_eq(count(ev, "b", "task", NULL), p.n.tasks + p.n.child_tasks);
        ck_assert_int_eq(count(ev, "e", "task", NULL), p.n.tasks + p.n.child_tasks);
        ck_assert_int_eq(count(ev, "X", "fiber", "running"), 3 * p.n.fibers);
        ck_assert_int_eq(count(ev, "X", "fiber", "runnable"), 3 * p.n.fibers);
        ck_assert_int_eq(count(ev, "X", "fiber", "waiting: waiting for main"), p.n.fibers);
        ck_assert_int_eq(count(ev, "s", "fiber", "ready"), p.n.fibers);
        ck_assert_int_eq(count(ev, "f", "fiber", "ready"), p.n.fibers);
        int fiber_tracks = 0, named_main = 0, named_sched = 0;
        size_t i;
        json_t *e;
        json_array_foreach(ev, i, e)
        {
                if (strcmp(sget(e, "ph"), "M") || strcmp(sget(e, "name"), "thread_name"))
                        continue;
                const char *name = sget(json_object_get(e, "args"), "name");
                if (json_integer_value(json_object_get(e, "tid")) >= 1000000000)
                        fiber_tracks++;
                named_main += !strcmp(name, "main");
                named_sched += !strcmp(name, "scheduler");
        }
        ck_assert_int_eq(fiber_tracks, p.n.fibers);
        ck_assert_int_ge(named_main, 1);
        ck_assert_int_ge(named_sched, 1);
        json_decref(root);

        ck_assert_int_eq(prog_stop(&p), 0);
        dh_finish(&d);
        cp_rmtree(dir);
        free(dir);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("cli-roundtrip");
        TCase *tc = tcase_create("roundtrip");
        tcase_add_test(tc, test_roundtrip);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
