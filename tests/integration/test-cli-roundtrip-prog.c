/* SPDX-License-Identifier: MIT */
/*
 * The traced program of test-cli-roundtrip: emits a known number of every
 * kind of event through the public API only, pushes it to gtraced, says
 * "ready PID" on stdout, and stays alive (so the snapshot is of a live
 * process) until stdin closes.  The counts are printed first so the test
 * and this program cannot disagree:
 *
 *   counts regions=R logs=L counters=C tasks=T child_tasks=K fibers=F syscalls=S
 *   ready PID
 *
 * Fibers run on a second thread ("scheduler"), are readied by the main
 * thread, and each goes create, run, block, ready, run, yield, run, exit:
 * three runs, one ready, one wait and two runnable spells per fiber.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gtrace/gtrace.h>

#define NREGIONS  40 /* nested in pairs */
#define NLOGS     25
#define NCOUNTERS 30
#define NTASKS    12 /* each with one child */
#define NFIBERS   6
#define NSYSCALLS 9

/* Handoff between the main thread and the scheduler thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int step; /* protocol steps, see scheduler() */
static uint64_t fibers[NFIBERS];

static void wait_step(int want)
{
        pthread_mutex_lock(&mu);
        while (step < want)
                pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
}

static void set_step(int s)
{
        pthread_mutex_lock(&mu);
        step = s;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
}

/* Step 1: fibers created, run and blocked here; step 2: main readied them;
 * step 3: they ran to the end here. */
static void *scheduler(void *arg)
{
        (void)arg;
        gtrace_thread_name("scheduler");
        for (int i = 0; i < NFIBERS; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "fiber-%d", i);
                fibers[i] = gtrace_fiber_create(name);
                gtrace_fiber_run(fibers[i]);
                gtrace_region_begin("fiber work");
                gtrace_region_end();
                gtrace_fiber_block("waiting for main");
        }
        set_step(1);
        wait_step(2);
        for (int i = 0; i < NFIBERS; i++) {
                gtrace_fiber_run(fibers[i]);
                gtrace_fiber_yield();
                gtrace_fiber_run(fibers[i]);
                gtrace_log("fiber", "finishing");
                gtrace_fiber_exit();
        }
        set_step(3);
        return NULL;
}

int main(void)
{
        pthread_t th;
        int r = gtrace_start(NULL);
        if (r < 0) {
                fprintf(stderr, "gtrace_start: %s\n", strerror(-r));
                return 1;
        }
        gtrace_thread_name("main");

        /* The daemon must know us before the events matter: wait for the
         * connection (the advance thread makes it), deadline 10 s. */
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                struct gtrace_stats st;
                gtrace_get_stats(&st);
                if (st.daemon_connected)
                        break;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - t0.tv_sec > 10) {
                        fprintf(stderr, "never connected to gtraced\n");
                        return 1;
                }
                struct timespec pause = {0, 1000000}; /* polling a state, not hoping */
                nanosleep(&pause, NULL);
        }

        for (int i = 0; i < NREGIONS / 2; i++) {
                gtrace_region_begin("outer");
                gtrace_region_begin("inner");
                gtrace_region_end();
                gtrace_region_end();
        }
        for (int i = 0; i < NLOGS - NFIBERS; i++)
                gtrace_log("test", i % 2 ? "odd line" : "even line \"quoted\"\n");
        for (int i = 0; i < NCOUNTERS; i++)
                gtrace_counter("depth", i - 10);
        for (int i = 0; i < NTASKS; i++) {
                uint64_t parent = gtrace_task_begin("request", 0);
                uint64_t child = gtrace_task_begin("lookup", parent);
                gtrace_task_end(child);
                gtrace_task_end(parent);
        }
        for (int i = 0; i < NSYSCALLS; i++) {
                gtrace_syscall_begin("nanosleep");
                struct timespec ts = {0, 1000};
                nanosleep(&ts, NULL);
                gtrace_syscall_end();
        }

        if (pthread_create(&th, NULL, scheduler, NULL) != 0)
                return 1;
        wait_step(1);
        for (int i = 0; i < NFIBERS; i++)
                gtrace_fiber_ready(fibers[i]);
        set_step(2);
        wait_step(3);
        pthread_join(th, NULL);

        r = gtrace_flush();
        if (r < 0) {
                fprintf(stderr, "gtrace_flush: %s\n", strerror(-r));
                return 1;
        }
        /* The fibers' "finishing" logs count with the main thread's. */
        printf("counts regions=%d logs=%d counters=%d tasks=%d child_tasks=%d fibers=%d "
               "syscalls=%d\n",
               NREGIONS + NFIBERS, NLOGS, NCOUNTERS, NTASKS, NTASKS, NFIBERS, NSYSCALLS);
        printf("ready %d\n", (int)getpid());
        fflush(stdout);

        char buf[64];
        while (read(0, buf, sizeof(buf)) > 0)
                ;
        gtrace_stop();
        return 0;
}
