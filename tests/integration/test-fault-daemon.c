/* SPDX-License-Identifier: MIT */
/*
 * Faults on the daemon's side, with real processes: gtraced killed (SIGKILL)
 * and restarted under load, stopped (SIGSTOP) for seconds, its dump
 * directory removed or replaced, its disk full, and a storm of control
 * requests while dumps are written.  The applications must never wait,
 * their memory must stay within the runtime's bounds, losses must be
 * counted and visible in the trace, and nothing the daemon holds may be
 * lost to a failed dump.
 *
 * Every wait polls a condition with a deadline.  The only fixed durations
 * are the lengths of faults themselves (how long the daemon stays stopped).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon-harness.h"
#include "fault-harness.h"

static struct dh_daemon D;

/* Generous: the machine is shared and small.  An application that waited
 * on the daemon would wait for as long as the fault lasts (unbounded). */
#define MAX_APP_GAP_US 2000000ull
/* Events per second per application thread: a busy service, not a
 * benchmark, so the suite stays light on a two-core machine (and lighter
 * still under a sanitizer, which makes every event many times dearer). */
#ifdef FAULT_SANITIZED
#define LOAD_RATE "50000"
#else
#define LOAD_RATE "200000"
#endif

/* Waits until the daemon lists pid in state with min_gens generations or more. */
static void wait_proc(pid_t pid, const char *state, long long min_gens)
{
        dh_expect_proc(D.sock, pid, state, DH_GENS_AT_LEAST, min_gens, 20000);
}

static void state_of(struct dh_prog *p, struct fh_state *st)
{
        ck_assert_int_eq(fh_prog_state(p, st), 0);
}

static void kill_daemon(int sig)
{
        ck_assert_int_eq(kill(D.pid, sig), 0);
        int st;
        ck_assert_int_eq(waitpid(D.pid, &st, 0), D.pid);
        ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == sig);
        D.pid = 0;
}

/* ---- killed and restarted ---------------------------------------------------------------- */

struct lost_cond {
        struct dh_prog *p;
        struct fh_state st;
};

static int prog_dropping(void *ctx)
{
        struct lost_cond *c = ctx;
        state_of(c->p, &c->st);
        return !c->st.connected && c->st.gens_lost > 0;
}

static int prog_resent(void *ctx)
{
        struct lost_cond *c = ctx;
        unsigned long long before = c->st.gens_sent;
        struct fh_state now;
        state_of(c->p, &now);
        return now.connected && now.gens_sent > before + 1;
}

START_TEST(test_daemon_sigkill_restart_under_load)
{
        dh_start_ok(&D, NULL);
        /* Short generations and a shallow in-process ring: an outage of a
         * few generations already overflows it. */
        const char *env[] = {"GTRACE_PERIOD_MS=20", "GTRACE_RING_GENERATIONS=3", NULL};
        const char *args[] = {"load", "2", LOAD_RATE, NULL};
        struct dh_prog p[2];
        for (int i = 0; i < 2; i++)
                ck_assert_int_eq(fh_prog_start(&p[i], D.sock, env, args), 0);
        for (int i = 0; i < 2; i++)
                wait_proc(p[i].pid, "live", 2);

        struct fh_state before[2];
        for (int i = 0; i < 2; i++) {
                state_of(&p[i], &before[i]);
                ck_assert(write(p[i].in, "r", 1) == 1);
        }
        kill_daemon(SIGKILL);

        /* The applications notice, keep running and drop generations they
         * cannot hand over, counting them. */
        struct lost_cond lc[2];
        for (int i = 0; i < 2; i++) {
                lc[i].p = &p[i];
                ck_assert_msg(dh_wait_until(prog_dropping, &lc[i], 15000),
                              "pid %d never dropped a generation", (int)p[i].pid);
                ck_assert_uint_gt(lc[i].st.iters, before[i].iters); /* progress meanwhile */
        }

        /* Same socket, same dump directory; deep enough to keep every
         * generation until the snapshot, so the one that reports the loss
         * is in the dump. */
        const char *deep[] = {"--generations", "100000", NULL};
        dh_start_ok(&D, deep);
        for (int i = 0; i < 2; i++) {
                ck_assert_msg(dh_wait_until(prog_resent, &lc[i], 15000), "pid %d did not reconnect",
                              (int)p[i].pid);
                wait_proc(p[i].pid, "live", 2);
        }
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        for (int i = 0; i < 2; i++)
                ck_assert_int_gt(dh_int(dh_find_proc(l, p[i].pid), "generations_lost"), 0);
        json_decref(l);
        json_t *snaps[2];
        for (int i = 0; i < 2; i++) {
                snaps[i] = dh_snapshot_ok(D.sock, p[i].pid);
        }
        for (int i = 0; i < 2; i++) {
                const char *path = dh_str(snaps[i], "path");
                fh_check_valid(path);
                if (fh_have_gtracectl()) {
                        /* The outage shows in the trace: generations the process
                         * reported dropping, or numbers missing in between. */
                        json_t *s = fh_dump_stats(path);
                        ck_assert_ptr_nonnull(s);
                        ck_assert_msg(dh_int(s, "generations_lost") > 0 ||
                                              dh_int(s, "generation_gaps") > 0,
                                      "no gap visible in %s", path);
                        ck_assert_int_gt(dh_int(s, "first_generation"), 1);
                        json_decref(s);
                }
                json_decref(snaps[i]);
                struct fh_state st;
                state_of(&p[i], &st);
                ck_assert_msg(st.gap_us < MAX_APP_GAP_US, "application stalled %llu us", st.gap_us);
        }
        for (int i = 0; i < 2; i++) {
                int status = fh_prog_end(&p[i]);
                ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        dh_finish(&D);
}
END_TEST

/* ---- stopped for seconds -------------------------------------------------------------- */

#define STOP_RING_BYTES   (1ull << 20)
#define STOP_BUFFER_BYTES (4ull << 20)
#define STOP_MS           2500

START_TEST(test_daemon_sigstop)
{
        /* The generations that report the drops reach the daemon right after
         * SIGCONT; with the default retention (10 generations, 200 ms of
         * them here) a snapshot that comes later than that on a loaded
         * machine no longer holds them.  Keep every generation instead (the
         * daemon receives nothing while stopped: a few dozen in all). */
        const char *deep[] = {"--generations", "100000", NULL};
        dh_start_ok(&D, deep);
        const char *env[] = {"GTRACE_PERIOD_MS=20", "GTRACE_RING_GENERATIONS=4",
                             "GTRACE_RING_BYTES=1048576", "GTRACE_BUFFER_BYTES=4194304", NULL};
        const char *args[] = {"load", "2", LOAD_RATE, NULL};
        struct dh_prog p;
        ck_assert_int_eq(fh_prog_start(&p, D.sock, env, args), 0);
        wait_proc(p.pid, "live", 2);
        struct fh_state base;
        state_of(&p, &base);
        ck_assert(write(p.in, "r", 1) == 1);

        ck_assert_int_eq(kill(D.pid, SIGSTOP), 0);
        ck_assert_int_eq(fh_wait_stopped(D.pid, 5000), 0);
        uint64_t t0 = dh_now_ms();
        struct fh_state st = base;
        unsigned long long last_iters = base.iters;
        int samples = 0;
        /* Hold the daemon stopped for STOP_MS, looking at the application
         * all along: it runs, and its memory stays within its bounds. */
        while (dh_now_ms() - t0 < STOP_MS || st.gens_lost == 0) {
                /* Drops start once the socket's buffer and the ring are
                 * full: seconds here, much longer under a sanitizer on a
                 * busy machine. */
                ck_assert_msg(dh_now_ms() - t0 < 60000,
                              "no generation dropped in 60 s: iters %llu gens %llu sent %llu "
                              "ring %llu bytes in %llu",
                              st.iters, st.gens, st.gens_sent, st.ring_bytes, st.ring_gens);
                state_of(&p, &st);
                samples++;
                /* The ring keeps its newest generation even when that alone
                 * is above the bound (with these settings one is smaller). */
                ck_assert_msg(st.ring_bytes <= STOP_RING_BYTES || st.ring_gens == 1,
                              "ring %llu bytes in %llu generations", st.ring_bytes, st.ring_gens);
                ck_assert_uint_le(st.buffered, STOP_BUFFER_BYTES);
#ifndef FAULT_SANITIZED
                /* The bounds above plus slack for the allocator and stacks
                 * (sanitizers keep freed memory in quarantine: skipped). */
                ck_assert_msg(st.rss_kb <= base.rss_kb +
                                                   (STOP_RING_BYTES + STOP_BUFFER_BYTES) / 1024 +
                                                   16 * 1024,
                              "rss %llu kB, was %llu kB", st.rss_kb, base.rss_kb);
#endif
                struct timespec ts = {0, 50 * 1000 * 1000}; /* sampling interval */
                nanosleep(&ts, NULL);
        }
        ck_assert_uint_gt(st.iters, last_iters);
        ck_assert_int_ge(samples, 5);
        ck_assert_msg(st.gap_us < MAX_APP_GAP_US, "application stalled %llu us", st.gap_us);
        ck_assert_uint_gt(st.gens_lost, 0);

        ck_assert_int_eq(kill(D.pid, SIGCONT), 0);
        struct lost_cond lc = {.p = &p, .st = st};
        ck_assert(dh_wait_until(prog_resent, &lc, 15000));
        json_t *r = dh_snapshot_ok(D.sock, p.pid);
        fh_check_valid(dh_str(r, "path"));
        if (fh_have_gtracectl()) {
                json_t *s = fh_dump_stats(dh_str(r, "path"));
                ck_assert_ptr_nonnull(s);
                ck_assert_int_gt(dh_int(s, "generations_lost"), 0); /* counted in the trace */
                json_decref(s);
        }
        json_decref(r);
        int status = fh_prog_end(&p);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        dh_finish(&D);
}
END_TEST

/* ---- the dump directory ---------------------------------------------------------------- */

START_TEST(test_dump_dir_removed)
{
        dh_start_ok(&D, NULL);
        struct dh_producer p;
        ck_assert_int_eq(dh_producer_spawn(&p, D.sock, "keeper", 0), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(dh_producer_cmd(&p, 'g', 500, NULL, 0), 0);
        wait_proc(p.pid, "live", 3);

        /* Removed: the next dump creates it again (0750) and succeeds. */
        dh_rmtree(D.dumps);
        json_t *r = dh_snapshot_ok(D.sock, p.pid);
        fh_check_valid(dh_str(r, "path"));
        json_decref(r);
        struct stat st;
        ck_assert_int_eq(stat(D.dumps, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_uint_eq(st.st_mode & 07777, 0750);
        ck_assert(dh_file_contains(D.log, "was missing; created it again"));

        /* Replaced by a file: a clear error, the daemon keeps its data. */
        dh_rmtree(D.dumps);
        int fd = open(D.dumps, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        close(fd);
        r = dh_snapshot(D.sock, p.pid);
        ck_assert(json_is_false(json_object_get(r, "ok")));
        ck_assert_str_eq(dh_str(r, "errno"), "ENOTDIR");
        ck_assert_ptr_nonnull(strstr(dh_str(r, "error"), D.dumps));
        json_decref(r);

        /* Replaced by a symbolic link: refused, nothing written through it. */
        ck_assert_int_eq(unlink(D.dumps), 0);
        char elsewhere[256];
        snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", D.dir);
        ck_assert_int_eq(mkdir(elsewhere, 0700), 0);
        ck_assert_int_eq(symlink(elsewhere, D.dumps), 0);
        r = dh_snapshot(D.sock, p.pid);
        ck_assert(json_is_false(json_object_get(r, "ok")));
        ck_assert_str_eq(dh_str(r, "errno"), "ELOOP");
        json_decref(r);
        ck_assert_int_eq(dh_count_dumps(elsewhere), 0);

        ck_assert(dh_alive(&D));
        wait_proc(p.pid, "live", 3);
        json_t *s = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        ck_assert_int_eq(dh_int(s, "dumps_failed"), 2);
        ck_assert_int_eq(dh_int(s, "generations"), 3);
        json_decref(s);

        /* A directory again: dumps work again. */
        ck_assert_int_eq(unlink(D.dumps), 0);
        ck_assert_int_eq(mkdir(D.dumps, 0750), 0);
        r = dh_snapshot_ok(D.sock, p.pid);
        unsigned gens;
        ck_assert_int_eq(dh_dump_check(dh_str(r, "path"), &gens, NULL), 0);
        ck_assert_uint_eq(gens, 3);
        json_decref(r);
        ck_assert_int_eq(dh_producer_cmd(&p, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&p);
        dh_finish(&D);
}
END_TEST

/* ---- a full disk ------------------------------------------------------------------------ */

START_TEST(test_full_disk_tmpfs)
{
        ck_assert_int_eq(dh_prepare(&D), 0);
        ck_assert_int_eq(mkdir(D.dumps, 0750), 0);
        if (mount("gtrace-test", D.dumps, "tmpfs", MS_NOSUID | MS_NODEV, "size=1M,mode=0750") < 0) {
                fprintf(stderr, "skipped: cannot mount a tmpfs (%s)\n", strerror(errno));
                dh_cleanup(&D);
                return;
        }
        dh_start_ok(&D, NULL);
        struct dh_producer big, small;
        ck_assert_int_eq(dh_producer_spawn(&big, D.sock, "big", 0), 0);
        ck_assert_int_eq(dh_producer_spawn(&small, D.sock, "small", 0), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(dh_producer_cmd(&big, 'g', 500 * 1024, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&small, 'g', 2000, NULL, 0), 0);
        wait_proc(big.pid, "live", 3);
        wait_proc(small.pid, "live", 1);

        json_t *r = dh_snapshot(D.sock, big.pid);
        ck_assert(json_is_false(json_object_get(r, "ok")));
        ck_assert_str_eq(dh_str(r, "errno"), "ENOSPC");
        ck_assert_ptr_nonnull(strstr(dh_str(r, "error"), D.dumps));
        json_decref(r);
        /* Nothing left behind (the partial temporary file is removed), the
         * daemon runs and still holds everything. */
        ck_assert_int_eq(dh_count_dumps(D.dumps), 0);
        ck_assert_int_eq(dh_count_entries(D.dumps), 0);
        ck_assert(dh_alive(&D));
        wait_proc(big.pid, "live", 3);

        /* A dump that fits still works. */
        r = dh_snapshot_ok(D.sock, small.pid);
        fh_check_valid(dh_str(r, "path"));
        json_decref(r);

        ck_assert_int_eq(dh_producer_cmd(&big, 'q', 0, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&small, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&big);
        dh_producer_wait(&small);
        ck_assert_int_eq(dh_stop(&D), 0);
        ck_assert_int_eq(umount2(D.dumps, MNT_DETACH), 0);
        dh_cleanup(&D);
}
END_TEST

/* ---- a storm of control requests while dumps run ---------------------------------------- */

#define STORM_CLIENTS   4
#define STORM_REQUESTS  40
#define STORM_PRODUCERS 4

static pid_t storm_pids[STORM_PRODUCERS];

/* One client: a mix of status, list and snapshots, each on a fresh
 * connection; every reply must be a success. */
static int storm_client(int seed)
{
        char req[128];
        for (int i = 0; i < STORM_REQUESTS; i++) {
                int kind = (i + seed) % 8;
                if (kind < 2)
                        snprintf(req, sizeof(req), "{\"command\":\"status\"}");
                else if (kind < 4)
                        snprintf(req, sizeof(req), "{\"command\":\"list\"}");
                else if (kind < 7)
                        snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"pid\":%d}",
                                 (int)storm_pids[(i + seed) % STORM_PRODUCERS]);
                else
                        snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"all\":true}");
                json_t *r = dh_request(D.sock, -1, req);
                if (!r)
                        return 10;
                if (!json_is_true(json_object_get(r, "ok"))) {
                        fprintf(stderr, "storm: %s -> %s\n", req, dh_str(r, "error"));
                        json_decref(r);
                        return 11;
                }
                json_decref(r);
        }
        return 0;
}

/* Each file (not hidden) is a whole dump; the first three pass gtracectl. */
static int check_whole(const char *path, void *ctx)
{
        int *checked = ctx;
        ck_assert_msg(dh_dump_check(path, NULL, NULL) == 0, "%s is not a whole dump", path);
        if ((*checked)++ < 3 && fh_have_gtracectl())
                ck_assert_int_eq(fh_validate(path), 0);
        return 0;
}

START_TEST(test_control_storm_during_dumps)
{
        const char *extra[] = {"--flush-timeout", "100", NULL};
        dh_start_ok(&D, extra);
        struct dh_producer p[STORM_PRODUCERS];
        for (int i = 0; i < STORM_PRODUCERS; i++) {
                char name[16];
                snprintf(name, sizeof(name), "storm%d", i);
                ck_assert_int_eq(dh_producer_spawn(&p[i], D.sock, name, DH_ANSWER_FLUSH), 0);
                for (int g = 0; g < 4; g++)
                        ck_assert_int_eq(dh_producer_cmd(&p[i], 'g', 64 * 1024, NULL, 0), 0);
                storm_pids[i] = p[i].pid;
        }
        for (int i = 0; i < STORM_PRODUCERS; i++)
                wait_proc(p[i].pid, "live", 4);

        pid_t clients[STORM_CLIENTS];
        for (int c = 0; c < STORM_CLIENTS; c++) {
                clients[c] = fork();
                ck_assert_int_ge(clients[c], 0);
                if (clients[c] == 0)
                        _exit(storm_client(c));
        }
        /* SIGUSR1 dumps on top. */
        for (int k = 0; k < 3; k++)
                ck_assert_int_eq(kill(D.pid, SIGUSR1), 0);
        for (int c = 0; c < STORM_CLIENTS; c++) {
                int st;
                ck_assert_int_eq(waitpid(clients[c], &st, 0), clients[c]);
                ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d failed (%d)", c,
                              st);
        }
        ck_assert(dh_alive(&D));
        json_t *s = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        ck_assert_int_eq(dh_int(s, "dumps_failed"), 0);
        long long written = dh_int(s, "dumps_written");
        json_decref(s);
        /* Each client asked for 15 single dumps and 5 of all four. */
        ck_assert_int_ge(written, STORM_CLIENTS * (15 + 5 * STORM_PRODUCERS));
        /* Every file in the directory is a complete dump: they appear by
         * rename only (SIGUSR1's may still be arriving; those count too). */
        int n = dh_count_dumps(D.dumps);
        ck_assert_int_ge(n, STORM_CLIENTS * (15 + 5 * STORM_PRODUCERS));
        int checked = 0;
        ck_assert_int_eq(dh_foreach_file(D.dumps, check_whole, &checked), 0);
        ck_assert_int_ge(checked, n);
        for (int i = 0; i < STORM_PRODUCERS; i++) {
                ck_assert_int_eq(dh_producer_cmd(&p[i], 'q', 0, NULL, 0), 0);
                dh_producer_wait(&p[i]);
        }
        dh_finish(&D);
}
END_TEST

static Suite *fault_daemon_suite(void)
{
        Suite *s = suite_create("fault-daemon");
        TCase *down = tcase_create("daemon-down");
        tcase_set_timeout(down, 150);
        tcase_add_test(down, test_daemon_sigkill_restart_under_load);
        tcase_add_test(down, test_daemon_sigstop);
        suite_add_tcase(s, down);
        TCase *disk = tcase_create("disk");
        tcase_set_timeout(disk, 60);
        tcase_add_test(disk, test_dump_dir_removed);
        tcase_add_test(disk, test_full_disk_tmpfs);
        suite_add_tcase(s, disk);
        TCase *storm = tcase_create("storm");
        tcase_set_timeout(storm, 90);
        tcase_add_test(storm, test_control_storm_during_dumps);
        suite_add_tcase(s, storm);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(fault_daemon_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
