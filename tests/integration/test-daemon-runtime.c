/* SPDX-License-Identifier: MIT */
/*
 * gtraced with real instrumented programs (tests/integration/daemon-prog.c
 * linked with libgtrace): several processes, the last event before a
 * snapshot, SIGUSR1, kill -9, a crash, a stopped process, a daemon restart,
 * an absent daemon.
 */
#include <check.h>
#include <dirent.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-harness.h"
#include "flightrec/reader.h"
#include "flightrec/ring.h"
#include "fault-harness.h"
#include "rt-check.h"

static struct dh_daemon D;

/* daemon-prog MODE ARG with a generation period, dumping locally into D.dir. */
static void prog_start(struct dh_prog *p, const char *period_ms, const char *mode,
                       const char *arg)
{
        char period[64], dump_dir[192];
        snprintf(period, sizeof(period), "GTRACE_PERIOD_MS=%s", period_ms);
        snprintf(dump_dir, sizeof(dump_dir), "GTRACE_DUMP_DIR=%s", D.dir);
        const char *env[] = {period, dump_dir, NULL};
        const char *args[] = {mode, arg, NULL};
        ck_assert_int_eq(dh_prog_spawn(p, "tests/daemon-prog", D.sock, env, args), 0);
}

/* prog_start, then its first line (what it prints once it is ready) in line. */
static void prog_ready(struct dh_prog *p, const char *period_ms, const char *mode,
                       const char *arg, char *line, size_t cap)
{
        prog_start(p, period_ms, mode, arg);
        ck_assert_int_eq(dh_prog_line(p, line, cap, 10000), 0);
}

/* Waits until the daemon lists pid in state with min_gens generations or more. */
static void wait_proc(pid_t pid, const char *state, long long min_gens)
{
        dh_expect_proc(D.sock, pid, state, DH_GENS_AT_LEAST, min_gens, 15000);
}

/* The dump validates (dh_dump_check, and `gtracectl validate` when the
 * client is built), holds a generation and, if given, the marker. */
static void check_dump(const char *path, const char *marker)
{
        unsigned gens;
        ck_assert_int_eq(dh_dump_check(path, &gens, NULL), 0);
        ck_assert_uint_ge(gens, 1);
        if (marker)
                ck_assert_msg(dh_file_contains(path, marker), "%s lacks %s", path, marker);
        fh_check_valid(path);
}

/* A dump in D.dumps for pid, or NULL (static buffer). */
static const char *find_dump(pid_t pid)
{
        static char path[512];
        return dh_find_dump(D.dumps, pid, path, sizeof(path));
}

static int dump_exists(void *ctx)
{
        return find_dump(*(pid_t *)ctx) != NULL;
}

START_TEST(test_several_processes_last_event)
{
        /* The flush must win here, however slow the machine (sanitizers,
         * parallel tests): a generous flush timeout, not the default 250 ms. */
        const char *extra[] = {"--flush-timeout", "10000", NULL};
        dh_start_ok(&D, extra);
        struct dh_prog p[3];
        char line[256], marker[3][64];
        for (int i = 0; i < 3; i++) {
                snprintf(marker[i], sizeof(marker[i]), "last-event-of-%d-%d", i, (int)getpid());
                /* A long period: only the snapshot's FLUSH can deliver the marker. */
                prog_ready(&p[i], "60000", "wait", marker[i], line, sizeof(line));
                ck_assert_str_eq(line, "ready");
        }
        for (int i = 0; i < 3; i++)
                wait_proc(p[i].pid, "live", 0);
        for (int i = 0; i < 3; i++) {
                json_t *r = dh_snapshot(D.sock, p[i].pid);
                ck_assert_msg(json_is_true(json_object_get(r, "ok")), "%s",
                              dh_str(r, "error"));
                ck_assert(json_is_true(json_object_get(r, "flushed")));
                check_dump(dh_str(r, "path"), marker[i]);
                for (int j = 0; j < 3; j++)
                        if (j != i)
                                ck_assert(!dh_file_contains(dh_str(r, "path"), marker[j]));
                json_decref(r);
        }
        for (int i = 0; i < 3; i++) {
                int st = dh_prog_close(&p[i]);
                ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                wait_proc(p[i].pid, "exited", 1);
        }
        dh_finish(&D);
}
END_TEST

START_TEST(test_sigusr1_dumps_all)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p[2];
        char line[64];
        for (int i = 0; i < 2; i++) {
                prog_ready(&p[i], "100", "wait", "usr1-marker", line, sizeof(line));
                wait_proc(p[i].pid, "live", 1);
        }
        ck_assert_int_eq(kill(D.pid, SIGUSR1), 0);
        for (int i = 0; i < 2; i++) {
                ck_assert(dh_wait_until(dump_exists, &p[i].pid, 10000));
                check_dump(find_dump(p[i].pid), "usr1-marker");
        }
        for (int i = 0; i < 2; i++)
                dh_prog_close(&p[i]);
        dh_finish(&D);
}
END_TEST

START_TEST(test_kill9_history_dumpable)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p;
        char line[64];
        prog_ready(&p, "50", "wait", "before-kill", line, sizeof(line));
        wait_proc(p.pid, "live", 2);
        kill(p.pid, SIGKILL);
        dh_prog_close(&p);
        wait_proc(p.pid, "crashed", 1);
        ck_assert(dh_wait_until(dump_exists, &p.pid, 10000)); /* automatic */
        json_t *r = dh_snapshot(D.sock, p.pid);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        ck_assert(json_is_false(json_object_get(r, "flushed")));
        check_dump(dh_str(r, "path"), NULL);
        json_decref(r);
        dh_finish(&D);
}
END_TEST

START_TEST(test_crash_dump_has_last_events)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p;
        char marker[64];
        snprintf(marker, sizeof(marker), "dying-words-%d", (int)getpid());
        prog_start(&p, "60000", "crash", marker);
        int st = dh_prog_close(&p);
        /* Killed by SIGSEGV (a sanitizer's own fault handler may exit instead). */
        ck_assert(WIFSIGNALED(st) ? WTERMSIG(st) == SIGSEGV : WEXITSTATUS(st) != 0);
        wait_proc(p.pid, "crashed", 1);
        ck_assert(dh_wait_until(dump_exists, &p.pid, 10000));
        check_dump(find_dump(p.pid), marker);
        /* The crashing thread's last event, the handler's note, came too. */
        ck_assert(dh_file_contains(find_dump(p.pid), "gtrace.crash"));
        ck_assert(dh_file_contains(find_dump(p.pid), "SIGSEGV at 0x"));
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        ck_assert_str_eq(dh_str(dh_find_proc(l, p.pid), "signal_name"), "SIGSEGV");
        json_decref(l);
        dh_finish(&D);
}
END_TEST

static int gens_at_least(void *ctx)
{
        const long long *want = ctx;
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        long long g = dh_int(dh_find_proc(l, (pid_t)want[0]), "generations");
        json_decref(l);
        return g >= want[1];
}

/*
 * A process whose own handler recovers from SIGSEGV: gtraced gets the crash
 * (its dump) and then the same process's later generations.  The generation
 * the crash handler sealed arrives twice -- on the crash's own connection,
 * then finished on the usual one -- and a later snapshot must hold it once.
 */
START_TEST(test_survived_crash_generations_once)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p;
        char marker[64], line[64];
        snprintf(marker, sizeof(marker), "lived-on-%d", (int)getpid());
        prog_ready(&p, "50", "survive", marker, line, sizeof(line));
        ck_assert(dh_wait_until(dump_exists, &p.pid, 10000));
        check_dump(find_dump(p.pid), "before the fault");
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        long long want[2] = {p.pid, dh_int(dh_find_proc(l, p.pid), "generations") + 3};
        json_decref(l);
        ck_assert(dh_wait_until(gens_at_least, want, 10000));
        json_t *r = dh_snapshot_ok(D.sock, p.pid);
        const char *path = dh_str(r, "path");
        check_dump(path, marker);
        ck_assert(dh_file_contains(path, "before the fault"));
        struct rt_summary s;
        ck_assert_msg(rt_read_dump(path, &s) == 0, "%s: %s", path, s.err.msg);
        ck_assert_uint_eq(s.gens_lost, 0);
        ck_assert_msg(s.generations == s.last_gen - s.first_gen + 1,
                      "%llu generations from %llu to %llu: one is there twice",
                      (unsigned long long)s.generations, (unsigned long long)s.first_gen,
                      (unsigned long long)s.last_gen);
        json_decref(r);
        /* It lives on, and says so; then it ends cleanly. */
        wait_proc(p.pid, "live", 1);
        dh_prog_close(&p);
        wait_proc(p.pid, "exited", 1);
        dh_finish(&D);
}
END_TEST

/* Each generation of a dump in file order: its number and GENS_LOST count. */
static size_t dump_generations(const char *path, uint64_t *gen, uint64_t *gens_lost, size_t cap)
{
        struct fr_dump *d;
        struct fr_error err;
        const uint8_t *blob;
        size_t len, n = 0;
        uint64_t off;
        int r;

        ck_assert_msg(fr_dump_open(path, &d, &err) == 0, "%s: %s", path, err.msg);
        while ((r = fr_dump_next(d, &blob, &len, &off, &err)) == 1) {
                struct fr_genbuf *b = fr_genbuf_new(len);
                ck_assert_ptr_nonnull(b);
                memcpy(b->data, blob, len);
                ck_assert_int_eq(fr_genbuf_scan(b, NULL, 0), 0);
                ck_assert_uint_lt(n, cap);
                gen[n] = b->gen;
                gens_lost[n++] = b->gens_lost;
                fr_genbuf_unref(b);
        }
        ck_assert_msg(r == 0, "%s: %s", path, err.msg);
        fr_dump_free(d);
        return n;
}

/* Sockets in pid's file table (that of its main thread). */
static int count_sockets(pid_t pid)
{
        char dir[64], path[64 + 256], target[64];
        snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
        DIR *d = opendir(dir);
        int n = 0;
        if (!d)
                return -1;
        struct dirent *e;
        while ((e = readdir(d))) {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                ssize_t len = readlink(path, target, sizeof(target) - 1);
                if (len > 0) {
                        target[len] = '\0';
                        n += strncmp(target, "socket:", 7) == 0;
                }
        }
        closedir(d);
        return n;
}

struct sockets_above {
        pid_t pid;
        int base;
};

static int sockets_above(void *ctx)
{
        const struct sockets_above *w = ctx;
        return count_sockets(w->pid) > w->base;
}

/*
 * A crash while gtraced lags: the process's connection has generations
 * queued in the socket, more wait unsent in its ring, one is half written.
 * The crash dump must still hold them all, once each and in order: the
 * handler sends what the connection had not, gtraced waits for the queued
 * ones before it dumps, and puts every generation in its place.  Any gap
 * must be one the process reported dropping (its ring is bounded), but
 * two: when the handler cannot hold the advance thread (a cycle longer
 * than 500 ms, on a loaded machine) the frame in flight is not sent again,
 * and the generation that cycle finishes after the seal is lost.  The
 * drops a lost generation was to report are not lost with it: a later one
 * reports them again (ring.h, carried and taken).  Before, each generation
 * the ring evicted unsent took its report along, and this test saw 3 or 4
 * unexplained in about 1 run of 5 of the suite on a loaded machine.
 * Without the handler's backlog or gtraced's wait, 3 to 10 are missing.
 */
START_TEST(test_crash_while_daemon_lags)
{
        const char *extra[] = {"--generations",     "200", "--max-process-bytes", "1G",
                               "--max-total-bytes", "2G",  NULL};
        dh_start_ok(&D, extra);
        struct dh_prog p;
        char marker[64], line[64];
        snprintf(marker, sizeof(marker), "flooded-%d", (int)getpid());
        prog_ready(&p, "50", "flood", marker, line, sizeof(line));
        ck_assert_str_eq(line, "connected");
        struct sockets_above handler = {p.pid, count_sockets(p.pid)};
        ck_assert_int_ge(handler.base, 0);
        ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
        ck_assert_int_eq(write(p.in, "go\n", 3), 3);
        int r = dh_prog_line(&p, line, sizeof(line), 20000);
        /* Resume gtraced while the crash handler waits for it (up to one
         * second): once the handler has opened its own connection. */
        int connected = dh_wait_until(sockets_above, &handler, 20000);
        ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
        ck_assert_int_eq(r, 0);
        ck_assert_str_eq(line, "crashing");
        ck_assert_msg(connected, "the crash handler never connected");
        ck_assert(dh_wait_until(dump_exists, &p.pid, 20000));
        const char *path = find_dump(p.pid);
        check_dump(path, marker);

        static uint64_t gen[4096], lost[4096];
        size_t n = dump_generations(path, gen, lost, 4096);
        ck_assert_uint_ge(n, 2);
        /* A drop is reported by the next generation the process makes,
         * which may come after later ones still in its ring: count totals. */
        uint64_t reported = lost[0], missing;
        for (size_t i = 1; i < n; i++) {
                ck_assert_msg(gen[i] > gen[i - 1], "generation %llu after %llu in the dump",
                              (unsigned long long)gen[i], (unsigned long long)gen[i - 1]);
                reported += lost[i];
        }
        ck_assert_msg(gen[0] == 1, "the dump starts at generation %llu",
                      (unsigned long long)gen[0]);
        missing = gen[n - 1] - n;
        uint64_t unexplained = missing > reported ? missing - reported : 0;
        /* What the dump holds, for a failure to say: generation(lost). */
        char held[1024];
        size_t hl = 0;
        for (size_t i = 0; i < n && hl + 48 < sizeof(held); i++)
                hl += (size_t)snprintf(held + hl, sizeof(held) - hl, " %llu(%llu)",
                                       (unsigned long long)gen[i], (unsigned long long)lost[i]);
        held[hl] = '\0';
        ck_assert_msg(unexplained <= 2,
                      "%llu generations between 1 and %llu missing, not reported dropped "
                      "(%zu in the dump:%s)",
                      (unsigned long long)unexplained, (unsigned long long)gen[n - 1], n, held);
        dh_prog_close(&p);
        dh_finish(&D);
}
END_TEST

START_TEST(test_stopped_process_snapshot_bounded)
{
        const char *extra[] = {"--flush-timeout", "250", NULL};
        dh_start_ok(&D, extra);
        struct dh_prog p;
        char line[64];
        prog_ready(&p, "50", "wait", "stopped", line, sizeof(line));
        wait_proc(p.pid, "live", 1);
        kill(p.pid, SIGSTOP);
        /* kill(SIGSTOP) returns before every thread is stopped. */
        ck_assert_int_eq(fh_wait_stopped(p.pid, 5000), 0);
        uint64_t t0 = dh_now_ms();
        json_t *r = dh_snapshot(D.sock, p.pid);
        uint64_t took = dh_now_ms() - t0;
        kill(p.pid, SIGCONT);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        ck_assert(json_is_false(json_object_get(r, "flushed")));
        ck_assert_uint_lt(took, 250 + 1500);
        check_dump(dh_str(r, "path"), NULL);
        json_decref(r);
        dh_prog_close(&p);
        dh_finish(&D);
}
END_TEST

START_TEST(test_daemon_restart_producers_reconnect)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p;
        char line[64];
        prog_start(&p, "50", "spin", "3000");
        wait_proc(p.pid, "live", 1);
        uint64_t t0 = dh_now_ms();
        ck_assert_int_eq(dh_stop(&D), 0);
        ck_assert_int_eq(dh_start(&D, NULL, NULL), 0);
        /* The runtime reconnects on its own and history starts again. */
        wait_proc(p.pid, "live", 1);
        ck_assert_int_eq(dh_prog_line(&p, line, sizeof(line), 15000), 0);
        ck_assert_uint_gt(strtoull(line, NULL, 10), 0);
        /* It never stalled: it ended on time (3 s of spinning from its start). */
        ck_assert_uint_lt(dh_now_ms() - t0, 3000 + 2000);
        int st = dh_prog_close(&p);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        dh_finish(&D);
}
END_TEST

START_TEST(test_daemon_absent_full_speed)
{
        /* With gtraced absent, the program runs to completion with tracing
         * on (the in-process ring keeps its history).  That the emitting
         * threads never touch the socket -- "full speed" -- is proven without
         * timing by test-runtime-fastpath (seccomp, daemon configured but
         * absent); the cost is measured by bench/run, not here. */
        ck_assert_int_eq(dh_prepare(&D), 0); /* a socket path nobody listens on */
        struct dh_prog p;
        char line[64];
        prog_start(&p, "20", "run", "300000");
        ck_assert_int_eq(dh_prog_line(&p, line, sizeof(line), 60000), 0);
        ck_assert_uint_gt(strtoull(line, NULL, 10), 0);
        int st = dh_prog_close(&p);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        dh_cleanup(&D);
}
END_TEST

START_TEST(test_gtrace_dump_through_daemon)
{
        dh_start_ok(&D, NULL);
        struct dh_prog p;
        char line[4200];
        prog_ready(&p, "60000", "dump", "asked-for-it", line, sizeof(line));
        ck_assert_msg(strncmp(line, "0 ", 2) == 0, "%s", line);
        ck_assert_msg(strncmp(line + 2, D.dumps, strlen(D.dumps)) == 0, "%s", line);
        check_dump(line + 2, "asked-for-it");
        ck_assert(dh_file_contains(line + 2, "prog asked"));
        dh_prog_close(&p);
        dh_finish(&D);
}
END_TEST

static Suite *daemon_runtime_suite(void)
{
        Suite *s = suite_create("daemon-runtime");
        TCase *core = tcase_create("core");
        tcase_set_timeout(core, 90);
        tcase_add_test(core, test_several_processes_last_event);
        tcase_add_test(core, test_sigusr1_dumps_all);
        tcase_add_test(core, test_gtrace_dump_through_daemon);
        suite_add_tcase(s, core);
        TCase *failures = tcase_create("failures");
        tcase_set_timeout(failures, 90);
        tcase_add_test(failures, test_kill9_history_dumpable);
        tcase_add_test(failures, test_crash_dump_has_last_events);
        tcase_add_test(failures, test_survived_crash_generations_once);
        tcase_add_test(failures, test_crash_while_daemon_lags);
        tcase_add_test(failures, test_stopped_process_snapshot_bounded);
        tcase_add_test(failures, test_daemon_restart_producers_reconnect);
        tcase_add_test(failures, test_daemon_absent_full_speed);
        suite_add_tcase(s, failures);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(daemon_runtime_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
