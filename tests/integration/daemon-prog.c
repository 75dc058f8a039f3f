/* SPDX-License-Identifier: MIT */
/*
 * An instrumented program for gtraced's integration tests.
 *
 *   daemon-prog wait MARKER   events, log MARKER, print "ready", block until stdin closes
 *   daemon-prog crash MARKER  events, log MARKER, then a segmentation fault
 *   daemon-prog run N         N iterations of region/counter events, print elapsed ms
 *   daemon-prog dump MARKER   log MARKER, gtrace_dump(), print the path
 *   daemon-prog spin MS       emit events for MS milliseconds, print iterations done
 *   daemon-prog survive MARKER  a segmentation fault its own handler recovers from
 *                             (siglongjmp), then events, log MARKER, print "ready",
 *                             block until stdin closes
 *   daemon-prog flood MARKER  print "connected", wait for a line on stdin, emit
 *                             events as fast as it can for 800 ms, log MARKER,
 *                             print "crashing", then a segmentation fault
 */
#include <gtrace/gtrace.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void some_events(int n)
{
        for (int i = 0; i < n; i++) {
                gtrace_region_begin("step");
                gtrace_counter("i", i);
                gtrace_region_end();
        }
}

/* The scenarios under test are about a connected producer: wait (bounded)
 * for the runtime's first connection to gtraced. */
static void wait_connected(void)
{
        uint64_t deadline = now_ms() + 5000;
        struct gtrace_stats st;
        for (;;) {
                gtrace_get_stats(&st);
                if (st.daemon_connected || now_ms() >= deadline)
                        return;
                struct timespec ts = {0, 2 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
}

static sigjmp_buf survive_env;

static void survive(int sig)
{
        (void)sig;
        siglongjmp(survive_env, 1);
}

int main(int argc, char **argv)
{
        if (argc < 3)
                return 2;
        setvbuf(stdout, NULL, _IOLBF, 0);
        /* Before gtrace_start(): gtrace's crash handler chains to it. */
        if (strcmp(argv[1], "survive") == 0) {
                struct sigaction sa = {.sa_handler = survive};
                sigemptyset(&sa.sa_mask);
                if (sigaction(SIGSEGV, &sa, NULL) != 0)
                        return 4;
        }
        if (gtrace_start(NULL) < 0)
                return 3;
        const char *mode = argv[1];
        if (strcmp(mode, "wait") == 0) {
                some_events(100);
                gtrace_log("test", argv[2]);
                printf("ready\n");
                char c;
                while (read(STDIN_FILENO, &c, 1) > 0)
                        ;
        } else if (strcmp(mode, "crash") == 0) {
                wait_connected();
                some_events(100);
                gtrace_log("test", argv[2]);
                *(volatile int *)((uintptr_t)argc * 8) = 0; /* aligned, never mapped */
        } else if (strcmp(mode, "run") == 0) {
                int n = atoi(argv[2]);
                uint64_t t0 = now_ms();
                some_events(n);
                printf("%llu\n", (unsigned long long)(now_ms() - t0));
        } else if (strcmp(mode, "dump") == 0) {
                wait_connected();
                some_events(10);
                gtrace_log("test", argv[2]);
                char path[4096];
                int r = gtrace_dump("prog asked", path, sizeof(path));
                printf("%d %s\n", r, r == 0 ? path : "-");
        } else if (strcmp(mode, "survive") == 0) {
                wait_connected();
                some_events(100);
                if (sigsetjmp(survive_env, 1) == 0) {
                        gtrace_log("test", "before the fault");
                        *(volatile int *)((uintptr_t)argc * 8) = 0; /* aligned, never mapped */
                }
                some_events(100);
                gtrace_log("test", argv[2]);
                printf("ready\n");
                char c;
                while (read(STDIN_FILENO, &c, 1) > 0)
                        some_events(1);
        } else if (strcmp(mode, "flood") == 0) {
                wait_connected();
                printf("connected\n");
                char go[16];
                if (!fgets(go, sizeof(go), stdin))
                        return 5;
                uint64_t end = now_ms() + 800;
                while (now_ms() < end)
                        some_events(100);
                gtrace_log("test", argv[2]);
                printf("crashing\n");
                *(volatile int *)((uintptr_t)argc * 8) = 0; /* aligned, never mapped */
        } else if (strcmp(mode, "spin") == 0) {
                uint64_t end = now_ms() + (uint64_t)atoi(argv[2]);
                unsigned long long n = 0;
                while (now_ms() < end) {
                        some_events(10);
                        n++;
                }
                printf("%llu\n", n);
        }
        gtrace_stop();
        return 0;
}
