/* SPDX-License-Identifier: MIT */
/*
 * The advance thread's file table (runtime/advance.c, files_go_private): it
 * is not the application's, it holds none of the application's descriptors,
 * and nothing gtrace does closes one of them -- not gtrace_stop(), which ends
 * the connection to gtraced, and not a fork, whose child inherits the
 * application's table.  Against a real gtraced, so that the advance thread
 * really holds a socket.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtrace/gtrace.h>

#include "daemon-harness.h"

static struct dh_daemon D;

enum { MAX_FD = 256 };

/* What each descriptor of a thread's table points at ("" if not open). */
struct fd_table {
        char target[MAX_FD][96];
};

/* Fills t from /proc/self/task/TID/fd.  Async-signal-safe enough for a
 * forked child: no allocation. */
static void read_table(long tid, struct fd_table *t)
{
        memset(t, 0, sizeof(*t));
        for (int fd = 0; fd < MAX_FD; fd++) {
                char p[64];
                snprintf(p, sizeof(p), "/proc/self/task/%ld/fd/%d", tid, fd);
                ssize_t n = readlink(p, t->target[fd], sizeof(t->target[fd]) - 1);
                t->target[fd][n > 0 ? n : 0] = '\0';
        }
}

static long self_tid(void)
{
        return (long)syscall(SYS_gettid);
}

static long advancer_tid(void)
{
        long tid = -1;
        DIR *d = opendir("/proc/self/task");
        ck_assert_ptr_nonnull(d);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
                char p[300], comm[32] = "";
                snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
                FILE *f = e->d_name[0] != '.' ? fopen(p, "re") : NULL;
                if (f) {
                        if (fgets(comm, sizeof(comm), f) && strcmp(comm, "gtrace-advance\n") == 0)
                                tid = atol(e->d_name);
                        fclose(f);
                }
        }
        closedir(d);
        ck_assert_int_gt(tid, 0);
        return tid;
}

static int connected(void *ctx)
{
        (void)ctx;
        struct gtrace_stats s;
        gtrace_get_stats(&s);
        return s.daemon_connected == 1;
}

/* Tracing on, connected to D (so the advance thread holds a socket). */
static void start_connected(void)
{
        struct gtrace_options o = {
                .period_ms = 50,
                .socket_path = D.sock,
                .dump_dir = D.dir,
                .flags = GTRACE_F_NO_CRASH_HANDLER,
        };
        ck_assert_int_eq(gtrace_start(&o), 0);
        ck_assert_msg(dh_wait_until(connected, NULL, 10000), "never connected to gtraced");
        gtrace_region_begin("files");
        gtrace_region_end();
        ck_assert_int_eq(gtrace_flush(), 0);
}

/* Occupies every free descriptor below n, so that whatever number the
 * advance thread's socket has in its own table, the application has a
 * descriptor of that number too. */
static void fill_low_fds(int n)
{
        for (;;) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                ck_assert_int_ge(fd, 0);
                if (fd >= n) {
                        close(fd);
                        return;
                }
        }
}

/* Fails the test unless every descriptor points where it did. */
static void expect_same_table(const struct fd_table *want, const struct fd_table *got,
                              const char *when)
{
        for (int fd = 0; fd < MAX_FD; fd++)
                ck_assert_msg(strcmp(want->target[fd], got->target[fd]) == 0,
                              "fd %d was \"%s\", is \"%s\" %s", fd, want->target[fd],
                              got->target[fd], when);
}

static int table_has(const struct fd_table *t, const char *target)
{
        for (int fd = 0; fd < MAX_FD; fd++)
                if (strcmp(t->target[fd], target) == 0)
                        return 1;
        return 0;
}

START_TEST(test_advancer_table_is_its_own)
{
        dh_start_ok(&D, NULL);
        int before[2], after[2];
        ck_assert_int_eq(pipe2(before, O_CLOEXEC | O_NONBLOCK), 0);
        start_connected();
        ck_assert_int_eq(pipe2(after, O_CLOEXEC | O_NONBLOCK), 0);

        struct fd_table app, adv;
        read_table(self_tid(), &app);
        read_table(advancer_tid(), &adv);
        /* Neither the application's descriptors from before the start, nor
         * those it opened since. */
        /* What the checks below look for: the pipes, as the kernel names them. */
        ck_assert_msg(strncmp(app.target[before[0]], "pipe:", 5) == 0 &&
                              strncmp(app.target[after[0]], "pipe:", 5) == 0,
                      "fds %d and %d read as \"%s\" and \"%s\"", before[0], after[0],
                      app.target[before[0]], app.target[after[0]]);
        ck_assert_msg(!table_has(&adv, app.target[before[0]]),
                      "the advance thread holds a copy of %s", app.target[before[0]]);
        ck_assert_msg(!table_has(&adv, app.target[after[0]]),
                      "the advance thread shares the application's table (%s)",
                      app.target[after[0]]);
        /* Its own: the wake-up eventfd, its socket, and /dev/null on 0-2
         * (stderr stays the application's in sanitizer builds). */
        int open_fds = 0, sockets = 0;
        for (int fd = 0; fd < MAX_FD; fd++) {
                if (!adv.target[fd][0])
                        continue;
                open_fds++;
                if (strncmp(adv.target[fd], "socket:", 7) == 0) {
                        sockets++;
                        ck_assert_msg(!table_has(&app, adv.target[fd]),
                                      "the application's table has gtrace's socket");
                }
        }
        ck_assert_int_eq(sockets, 1);
        ck_assert_int_le(open_fds, 5);
        ck_assert_str_eq(adv.target[0], "/dev/null");

        /* Closing a descriptor is final: the advance thread holds no copy
         * that would keep the pipe's write end open. */
        close(before[1]);
        char c;
        ck_assert_int_eq(read(before[0], &c, 1), 0);

        gtrace_stop();
        close(before[0]);
        close(after[0]);
        close(after[1]);
        dh_finish(&D);
}
END_TEST

START_TEST(test_stop_and_fork_close_no_app_fd)
{
        dh_start_ok(&D, NULL);
        fill_low_fds(32);
        struct fd_table want, got;
        read_table(self_tid(), &want);

        start_connected();
        /* The child's table is a copy of ours: gtrace's connection is not in
         * it, and resetting gtrace in the child must close none of ours. */
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                static struct fd_table child;
                read_table(self_tid(), &child);
                for (int fd = 0; fd < MAX_FD; fd++)
                        if (want.target[fd][0] && strcmp(want.target[fd], child.target[fd]) != 0)
                                _exit(10 + (fd < 100 ? fd : 99));
                _exit(0);
        }
        int status = 0;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "the forked child lost descriptor %d", WEXITSTATUS(status) - 10);

        /* Stop ends the connection (GOODBYE, on the advance thread) and
         * leaves our table exactly as it was before the start. */
        gtrace_stop();
        read_table(self_tid(), &got);
        expect_same_table(&want, &got, "after gtrace_stop");
        dh_expect_proc(D.sock, getpid(), "exited", DH_GENS_AT_LEAST, 1, 10000);
        dh_finish(&D);
}
END_TEST

/* Every start makes a table for a new advance thread and every stop ends
 * it: nothing accumulates in the application's table, and each connection
 * ends with GOODBYE (the daemon lists the process as exited, not lost). */
START_TEST(test_start_stop_cycles)
{
        dh_start_ok(&D, NULL);
        fill_low_fds(16);
        struct fd_table want, got;
        read_table(self_tid(), &want);
        for (int i = 0; i < 20; i++) {
                start_connected();
                gtrace_stop();
                read_table(self_tid(), &got);
                expect_same_table(&want, &got, "after a start and a stop");
                dh_expect_proc(D.sock, getpid(), "exited", DH_GENS_AT_LEAST, 1, 10000);
        }
        dh_finish(&D);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("runtime-files");
        TCase *tc = tcase_create("files");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_advancer_table_is_its_own);
        tcase_add_test(tc, test_stop_and_fork_close_no_app_fd);
        tcase_add_test(tc, test_start_stop_cycles);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
