/* SPDX-License-Identifier: MIT */
/*
 * bench-advancer: does the advance thread slow the application down?
 *
 * Two application threads, pinned to different CPUs, run for a fixed window:
 *   emitter   per iteration a region begin, ~1 µs of arithmetic, a counter
 *             sample and a region end (about 3 events per µs: a busy
 *             instrumented service);
 *   bystander the same arithmetic and no events.
 * Each window is one of three modes, in an order that rotates per round:
 *   default   gtrace started with the default period (1000 ms);
 *   long      gtrace started with a one-hour period (the advancer never cuts
 *             a generation inside the window: the buffers stay far below the
 *             size threshold);
 *   off       gtrace stopped (every call a no-op): context only.
 * The result is the time per iteration of each thread; the headline is the
 * ratio default/long of the same round, median over rounds with the IQR.
 * Starting and stopping gtrace happen outside the windows.
 *
 * The time is the thread's own CPU time (CLOCK_THREAD_CPUTIME_ID): on a
 * shared machine, wall time mostly measures the neighbours' compilers.  CPU
 * time per iteration shows what the advancer does *to* a thread running
 * beside it (membarrier interrupts, caches, the first event of each new
 * generation taking the slow path); what it can take *from* it, CPU time
 * when all CPUs are busy, is bounded by the advancer's own CPU use, which is
 * measured too (from /proc/self/task/TID/schedstat) and reported beside.
 */
#include <dirent.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include <gtrace/gtrace.h>

#include "common.h"

enum mode { M_DEFAULT, M_LONG, M_OFF, NMODES };
enum thr { T_EMITTER, T_BYSTANDER, NTHREADS };

#define MAX_ROUNDS 1000

static struct {
        uint32_t rounds;
        uint64_t window_ns;
        uint32_t work; /* arithmetic steps per iteration */
        pthread_barrier_t barrier;
        atomic_bool stop;
        bool quit;
        double ns[NTHREADS][NMODES][MAX_ROUNDS];
        uint64_t iters[NTHREADS];
        uint64_t elapsed[NTHREADS];
        double advancer_pct[MAX_ROUNDS]; /* CPU use of the advance thread, default period */
} b;

static uint64_t thread_cpu_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The advance thread's id (by its name), or 0. */
static int advancer_tid(void)
{
        DIR *d = opendir("/proc/self/task");
        if (!d)
                return 0;
        int tid = 0;
        for (struct dirent *e; !tid && (e = readdir(d));) {
                char path[300], comm[32] = "";
                snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(comm, sizeof(comm), f) && strncmp(comm, "gtrace-advance", 14) == 0)
                        tid = atoi(e->d_name);
                fclose(f);
        }
        closedir(d);
        return tid;
}

/* CPU time of our thread tid in ns, or 0. */
static uint64_t task_cpu_ns(int tid)
{
        int64_t v = bench_task_cpu_ns((long)getpid(), tid);
        return v < 0 ? 0 : (uint64_t)v;
}

static uint64_t sink;

static inline uint64_t work(uint64_t x, uint32_t n)
{
        for (uint32_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                __asm__ volatile("" : "+r"(x));
        }
        return x;
}

struct thr_arg {
        enum thr which;
        int cpu;
};

static void *thread_main(void *arg)
{
        struct thr_arg *a = arg;
        (void)bench_pin(a->cpu);
        uint64_t x = 88172645463325252ull + (uint64_t)a->which;
        for (;;) {
                pthread_barrier_wait(&b.barrier); /* window opens */
                if (b.quit)
                        break;
                uint64_t n = 0, t0 = thread_cpu_ns();
                if (a->which == T_EMITTER) {
                        int64_t depth = 0;
                        while (!atomic_load_explicit(&b.stop, memory_order_relaxed)) {
                                gtrace_region_begin("request");
                                x = work(x, b.work);
                                gtrace_counter("queue_depth", depth++ & 63);
                                gtrace_region_end();
                                n++;
                        }
                } else {
                        while (!atomic_load_explicit(&b.stop, memory_order_relaxed)) {
                                x = work(x, b.work);
                                n++;
                        }
                }
                b.elapsed[a->which] = thread_cpu_ns() - t0;
                b.iters[a->which] = n;
                pthread_barrier_wait(&b.barrier); /* window closed */
        }
        sink += x;
        return NULL;
}

static void window(uint32_t r, bool measure_advancer)
{
        int tid = measure_advancer ? advancer_tid() : 0;
        uint64_t a0 = tid ? task_cpu_ns(tid) : 0, w0 = bench_mono_ns();
        atomic_store(&b.stop, false);
        pthread_barrier_wait(&b.barrier);
        struct timespec ts = {.tv_sec = (time_t)(b.window_ns / 1000000000u),
                              .tv_nsec = (long)(b.window_ns % 1000000000u)};
        /* The window's length, not a synchronisation: the threads stop on the flag. */
        nanosleep(&ts, NULL);
        atomic_store(&b.stop, true);
        pthread_barrier_wait(&b.barrier);
        if (tid)
                b.advancer_pct[r] = (double)(task_cpu_ns(tid) - a0) * 100 /
                                    (double)(bench_mono_ns() - w0);
}

static double value(enum thr t, enum mode m, uint32_t r)
{
        return b.ns[t][m][r];
}

static void report(void)
{
        static const char *const tname[NTHREADS] = {"emitting thread (3 events/µs)",
                                                    "non-emitting thread"};
        char what[160], res[128], cmp[200], met[32];
        double v[MAX_ROUNDS];
        struct bench_stat adv;
        memcpy(v, b.advancer_pct, sizeof(double) * b.rounds);
        bench_stat(v, b.rounds, &adv);
        for (int t = 0; t < NTHREADS; t++) {
                struct bench_stat ratio, d, l, off;
                for (uint32_t r = 0; r < b.rounds; r++)
                        v[r] = (value(t, M_DEFAULT, r) / value(t, M_LONG, r) - 1) * 100;
                bench_stat(v, b.rounds, &ratio);
                for (uint32_t r = 0; r < b.rounds; r++)
                        v[r] = value(t, M_DEFAULT, r);
                bench_stat(v, b.rounds, &d);
                for (uint32_t r = 0; r < b.rounds; r++)
                        v[r] = value(t, M_LONG, r);
                bench_stat(v, b.rounds, &l);
                for (uint32_t r = 0; r < b.rounds; r++)
                        v[r] = value(t, M_OFF, r);
                bench_stat(v, b.rounds, &off);
                snprintf(what, sizeof(what), "advancer at the default period: %s", tname[t]);
                snprintf(res, sizeof(res), "%+.2f%% [%+.2f–%+.2f] CPU time per iteration",
                         ratio.median, ratio.p25, ratio.p75);
                snprintf(cmp, sizeof(cmp),
                         "period 1000 ms: %.0f ns; 1 h: %.0f ns; tracing off: %.0f ns; "
                         "advance thread used %.3f%% of a CPU",
                         d.median, l.median, off.median, adv.median);
                /* "Measurable": the interquartile range of the paired
                 * differences lies entirely above zero by more than 0.5%. */
                bool slower = ratio.p25 > 0 && ratio.median > 0.5;
                snprintf(met, sizeof(met), "%s", slower ? "**NO**" : "yes");
                bench_row(what, res, cmp, "no measurable slowdown", met);
        }
}

static void usage(FILE *f)
{
        fprintf(f, "usage: bench-advancer [--rounds N] [--window-ms MS] [--work STEPS] "
                   "[--cpus A,B]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"rounds", required_argument, NULL, 'r'},
                {"window-ms", required_argument, NULL, 'w'},
                {"work", required_argument, NULL, 'k'},
                {"cpus", required_argument, NULL, 'p'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int cpus[NTHREADS] = {1, 0};
        b.rounds = 11;
        b.window_ns = 1200000000u;
        b.work = 400;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                switch (c) {
                case 'r': b.rounds = (uint32_t)strtoul(optarg, NULL, 10); break;
                case 'w': b.window_ns = strtoull(optarg, NULL, 10) * 1000000u; break;
                case 'k': b.work = (uint32_t)strtoul(optarg, NULL, 10); break;
                case 'p':
                        if (sscanf(optarg, "%d,%d", &cpus[0], &cpus[1]) != 2) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (b.rounds < 1 || b.rounds > MAX_ROUNDS || b.window_ns < 1000000u ||
            b.window_ns > 60000000000ull || b.work > 10000000) {
                usage(stderr);
                return 2;
        }
        if (bench_ncpus() < 2)
                cpus[0] = cpus[1] = -1;

        pthread_barrier_init(&b.barrier, NULL, NTHREADS + 1);
        pthread_t th[NTHREADS];
        struct thr_arg args[NTHREADS];
        for (int t = 0; t < NTHREADS; t++) {
                args[t] = (struct thr_arg){.which = (enum thr)t, .cpu = cpus[t]};
                if (pthread_create(&th[t], NULL, thread_main, &args[t]) != 0) {
                        fprintf(stderr, "bench-advancer: pthread_create failed\n");
                        return 1;
                }
        }
        uint64_t lost = 0, gens = 0;
        for (uint32_t r = 0; r < b.rounds; r++) {
                for (int k = 0; k < NMODES; k++) {
                        enum mode m = (enum mode)((r + (uint32_t)k) % NMODES);
                        if (m != M_OFF) {
                                struct gtrace_options o = {
                                        .size = sizeof(o),
                                        .flags = GTRACE_F_NO_DAEMON,
                                        .period_ms = m == M_DEFAULT ? 1000 : 3600000,
                                };
                                int e = gtrace_start(&o);
                                if (e < 0) {
                                        fprintf(stderr, "bench-advancer: gtrace_start: %s\n",
                                                strerror(-e));
                                        return 1;
                                }
                        }
                        window(r, m == M_DEFAULT);
                        if (m != M_OFF) {
                                struct gtrace_stats st;
                                gtrace_get_stats(&st);
                                lost += st.events_lost;
                                if (m == M_DEFAULT)
                                        gens += st.generations;
                                gtrace_stop();
                        }
                        for (int t = 0; t < NTHREADS; t++)
                                b.ns[t][m][r] = b.iters[t] ? (double)b.elapsed[t] /
                                                                     (double)b.iters[t]
                                                           : 0;
                }
        }
        b.quit = true;
        pthread_barrier_wait(&b.barrier);
        for (int t = 0; t < NTHREADS; t++)
                pthread_join(th[t], NULL);
        report();
        fprintf(stderr, "bench-advancer: %u rounds of %llu ms; %llu generations cut at the "
                        "default period, %llu events lost\n",
                b.rounds, (unsigned long long)(b.window_ns / 1000000u),
                (unsigned long long)gens, (unsigned long long)lost);
        return sink == 42; /* keeps the arithmetic alive */
}
