/* SPDX-License-Identifier: MIT */
/*
 * A user program built against the *installed* tree by test-install.sh,
 * the way the README tells users to: cc prog.c $(pkg-config --cflags --libs
 * gtrace).  It touches every kind of call once, dumps, and prints the dump
 * path as its only stdout line; the script checks the file.  No test
 * framework here on purpose: only what an installed tree offers.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gtrace/gtrace.h>

int main(void)
{
        struct gtrace_options opts;
        char path[4096];
        uint64_t task, fiber;
        int r;

        memset(&opts, 0, sizeof(opts));
        opts.size = sizeof(opts);
        opts.flags = GTRACE_F_NO_DAEMON;
        r = gtrace_start(&opts);
        if (r < 0) {
                fprintf(stderr, "gtrace_start: %s\n", strerror(-r));
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
