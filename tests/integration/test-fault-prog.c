/* SPDX-License-Identifier: MIT */
/*
 * An instrumented program for the fault and security tests (linked with
 * libgtrace).  It reads one-letter commands on stdin and answers on stdout,
 * one line each, so a test can look at it while the daemon is killed,
 * stopped or restarted under it.
 *
 *   test-fault-prog load THREADS [RATE]
 *                                  THREADS threads emit events until stdin
 *                                  closes or 'q': RATE events per second
 *                                  each (paced in batches of ten), or as
 *                                  fast as they can (RATE 0, the default)
 *   test-fault-prog name COMM TEXT prctl(PR_SET_NAME, COMM) before
 *                                  gtrace_start, log TEXT, then as 'load 1'
 *
 * Commands: 's' prints the state line below; 'r' resets the worst gap;
 * 'q' (or end of input) stops the threads, calls gtrace_stop and exits 0.
 *
 *   iters=N gap_us=N events=N events_lost=N gens=N gens_lost=N gens_sent=N
 *   buffered=N ring_bytes=N ring_gens=N connected=N rss_kb=N
 *
 * iters counts batches of ten events over all threads; gap_us is the
 * longest any one batch took since the last reset: an application that
 * waited on the daemon would show it there.  "ready" is printed once the
 * threads run.
 */
#include <gtrace/gtrace.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16

static atomic_ullong iters;
static atomic_ullong worst_gap_ns;
static atomic_int stop;
static unsigned long long rate; /* events per second per thread; 0: flat out */

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker(void *arg)
{
        char name[32];
        snprintf(name, sizeof(name), "worker-%d", (int)(intptr_t)arg);
        gtrace_thread_name(name);
        int64_t i = 0;
        uint64_t started = now_ns(), batches = 0;
        while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
                if (rate) {
                        /* Pacing is the workload's own think time, outside
                         * the timed batch. */
                        uint64_t due = started + batches * 10u * 1000000000u / rate;
                        uint64_t now = now_ns();
                        if (due > now) {
                                uint64_t d = due - now;
                                struct timespec ts = {(time_t)(d / 1000000000u),
                                                      (long)(d % 1000000000u)};
                                nanosleep(&ts, NULL);
                        }
                        batches++;
                }
                uint64_t t0 = now_ns();
                for (int k = 0; k < 3; k++) {
                        gtrace_region_begin("work");
                        gtrace_counter("i", i++);
                        gtrace_region_end();
                }
                gtrace_log("fault", "tick");
                uint64_t d = now_ns() - t0;
                unsigned long long w = atomic_load_explicit(&worst_gap_ns, memory_order_relaxed);
                while (d > w && !atomic_compare_exchange_weak_explicit(&worst_gap_ns, &w, d,
                                                                       memory_order_relaxed,
                                                                       memory_order_relaxed))
                        ;
                atomic_fetch_add_explicit(&iters, 1, memory_order_relaxed);
        }
        return NULL;
}

static unsigned long long rss_kb(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        unsigned long long kb = 0;
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
                        break;
        fclose(f);
        return kb;
}

static void print_state(void)
{
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        printf("iters=%llu gap_us=%llu events=%llu events_lost=%llu gens=%llu gens_lost=%llu "
               "gens_sent=%llu buffered=%llu ring_bytes=%llu ring_gens=%u connected=%u "
               "rss_kb=%llu\n",
               (unsigned long long)atomic_load(&iters),
               (unsigned long long)atomic_load(&worst_gap_ns) / 1000u,
               (unsigned long long)st.events, (unsigned long long)st.events_lost,
               (unsigned long long)st.generations, (unsigned long long)st.generations_lost,
               (unsigned long long)st.generations_sent, (unsigned long long)st.bytes_buffered,
               (unsigned long long)st.ring_bytes, st.ring_generations, st.daemon_connected,
               rss_kb());
}

int main(int argc, char **argv)
{
        int nthreads = 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc >= 3 && strcmp(argv[1], "load") == 0) {
                nthreads = atoi(argv[2]);
                if (argc >= 4)
                        rate = strtoull(argv[3], NULL, 10);
        } else if (argc >= 4 && strcmp(argv[1], "name") == 0) {
                if (prctl(PR_SET_NAME, argv[2], 0, 0, 0) < 0)
                        return 4;
        } else {
                fprintf(stderr, "usage: test-fault-prog load THREADS [RATE] | name COMM TEXT\n");
                return 2;
        }
        if (nthreads < 1 || nthreads > MAX_THREADS)
                return 2;
        if (gtrace_start(NULL) < 0)
                return 3;
        if (strcmp(argv[1], "name") == 0)
                gtrace_log("fault", argv[3]);
        pthread_t t[MAX_THREADS];
        for (int i = 0; i < nthreads; i++)
                if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0)
                        return 5;
        printf("ready\n");
        int c;
        while ((c = getchar()) != EOF && c != 'q') {
                if (c == 's')
                        print_state();
                else if (c == 'r')
                        atomic_store(&worst_gap_ns, 0);
        }
        atomic_store(&stop, 1);
        for (int i = 0; i < nthreads; i++)
                pthread_join(t[i], NULL);
        gtrace_stop();
        return 0;
}
