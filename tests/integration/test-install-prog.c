/* SPDX-License-Identifier: MIT */
/*
 * A user program built against the *installed* tree by test-install.sh,
 * the way the README tells users to: cc prog.c $(pkg-config --cflags --libs
 * gtrace).  It touches every kind of call once, dumps, and prints the dump
 * path as its only stdout line; the script checks the file.  No test
 * framework here on purpose: only what an installed tree offers.
 *
 * `prog daemon` records through gtraced (GTRACED_SOCKET): it waits, with a
 * deadline, until the runtime reports the connection, so the dump is the
 * daemon's; without the argument it never contacts a daemon and dumps
 * in-process to GTRACE_DUMP_DIR.
 */
#define _POSIX_C_SOURCE 200809L /* strict -std=c11: clock_gettime, nanosleep */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gtrace/gtrace.h>

#define CONNECT_DEADLINE_S 10

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the runtime's daemon connection; 0 or -ETIMEDOUT. */
static int wait_connected(void)
{
        double deadline = now_s() + CONNECT_DEADLINE_S;
        struct gtrace_stats st;

        for (;;) {
                struct timespec pause = { 0, 10 * 1000 * 1000 };

                gtrace_get_stats(&st);
                if (st.daemon_connected)
                        return 0;
                if (now_s() > deadline)
                        return -ETIMEDOUT;
                nanosleep(&pause, NULL);
        }
}

int main(int argc, char **argv)
{
        struct gtrace_options opts;
        char path[4096];
        uint64_t task, fiber;
        int use_daemon = argc > 1 && strcmp(argv[1], "daemon") == 0;
        int r;

        memset(&opts, 0, sizeof(opts));
        opts.size = sizeof(opts);
        opts.flags = use_daemon ? 0 : GTRACE_F_NO_DAEMON;
        r = gtrace_start(&opts);
        if (r < 0) {
                fprintf(stderr, "gtrace_start: %s\n", strerror(-r));
                return 1;
        }
        if (use_daemon && wait_connected() < 0) {
                fprintf(stderr, "no connection to gtraced within %d s\n", CONNECT_DEADLINE_S);
                gtrace_stop();
                return 1;
        }
        gtrace_thread_name("main");
        gtrace_region_begin("install-test");
        gtrace_counter("answer", 42);
        gtrace_log("test", "hello from an installed libgtrace");
        task = gtrace_task_begin("task", 0);
        fiber = gtrace_fiber_create("fiber");
        gtrace_fiber_run(fiber);
        gtrace_syscall_begin("none");
        gtrace_syscall_end();
        gtrace_fiber_exit();
        gtrace_task_end(task);
        gtrace_region_end();

        r = gtrace_dump("install test", path, sizeof(path));
        if (r < 0) {
                fprintf(stderr, "gtrace_dump: %s\n", strerror(-r));
                gtrace_stop();
                return 1;
        }
        gtrace_stop();
        if (printf("%s\n", path) < 0)
                return 1;
        return 0;
}
