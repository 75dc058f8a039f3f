/* SPDX-License-Identifier: MIT */
/*
 * bench-size: what events cost in bytes, and threads in memory.
 *
 * --stream: a region/counter stream — per "request" a region begin, a
 * counter sample (a queue depth doing a random walk) and a region end — of
 * --events events, optionally paced (--pace-ns: busy-wait between events,
 * so timestamp deltas look like a busy service's rather than a tight
 * loop's).  gtrace writes it, then gtrace_dump() writes the .gtrace file:
 * its size over the events emitted is gtrace's bytes per event, everything
 * included (file header, generation headers, string/thread tables, clock,
 * status events).  With --lttng the same stream is then emitted as LTTng-UST
 * events (gtbench:begin / gtbench:ints / gtbench:end); bench/run records the
 * snapshot and sizes the CTF trace.  Prints key=value lines.
 *
 * --threads K: K threads start and wait; then each emits one event (which
 * registers it with gtrace and gives it a chunk) and waits again.  The heap,
 * resident and chunk-pool growth between the two points, over K, is what
 * gtrace holds per registered thread.  Prints key=value lines.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtrace/gtrace.h>

#include "common.h"

#if defined(BENCH_HAVE_LTTNG)
#include "lttng-tp.h"
#endif

static uint64_t ticks_per_event; /* pacing, in bench_ticks() units */

static inline void pace(void)
{
        if (!ticks_per_event)
                return;
        uint64_t until = bench_ticks() + ticks_per_event;
        while (bench_ticks() < until)
                __asm__ volatile("" ::: "memory");
}

/* Queue depth: a bounded random walk (a fixed-seed LCG), like a real queue's. */
static int64_t depth_next(uint64_t *state, int64_t d)
{
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        d += (*state >> 62) & 1 ? 1 : -1;
        return d < 0 ? 0 : d > 64 ? 64 : d;
}

static void stream_gtrace(uint64_t requests)
{
        uint64_t seed = 42;
        int64_t d = 8;
        for (uint64_t i = 0; i < requests; i++) {
                gtrace_region_begin("request");
                pace();
                d = depth_next(&seed, d);
                gtrace_counter("queue_depth", d);
                pace();
                gtrace_region_end();
                pace();
        }
}

#if defined(BENCH_HAVE_LTTNG)
static void stream_lttng(uint64_t requests)
{
        uint64_t seed = 42;
        int64_t d = 8;
        for (uint64_t i = 0; i < requests; i++) {
                lttng_ust_tracepoint(gtbench, begin, 1);
                pace();
                d = depth_next(&seed, d);
                lttng_ust_tracepoint(gtbench, ints, 2, d);
                pace();
                lttng_ust_tracepoint(gtbench, end);
                pace();
        }
}
#endif

static int run_stream(uint64_t events, const char *dump_dir, bool lttng)
{
        struct gtrace_options o = {.size = sizeof(o), .flags = GTRACE_F_NO_DAEMON,
                                   .dump_dir = dump_dir};
        int r = gtrace_start(&o);
        if (r < 0) {
                fprintf(stderr, "bench-size: gtrace_start: %s\n", strerror(-r));
                return 1;
        }
        uint64_t requests = events / 3;
        stream_gtrace(requests);
        char path[4096];
        r = gtrace_dump("bench-size", path, sizeof(path));
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        gtrace_stop();
        if (r < 0) {
                fprintf(stderr, "bench-size: gtrace_dump: %s\n", strerror(-r));
                return 1;
        }
        struct stat sb;
        if (stat(path, &sb) < 0) {
                fprintf(stderr, "bench-size: %s: %m\n", path);
                return 1;
        }
        printf("gtrace_events=%llu\ngtrace_bytes=%lld\ngtrace_lost=%llu\ngtrace_generations=%llu\n"
               "gtrace_dump=%s\n",
               (unsigned long long)(requests * 3), (long long)sb.st_size,
               (unsigned long long)st.events_lost, (unsigned long long)st.generations, path);
#if defined(BENCH_HAVE_LTTNG)
        if (lttng) {
                if (!lttng_ust_tracepoint_enabled(gtbench, ints)) {
                        fprintf(stderr, "bench-size: --lttng but gtbench:ints is not enabled\n");
                        return 1;
                }
                stream_lttng(requests);
                printf("lttng_events=%llu\n", (unsigned long long)(requests * 3));
        }
#else
        if (lttng) {
                fprintf(stderr, "bench-size: built without LTTng-UST\n");
                return 1;
        }
#endif
        return 0;
}

/* ---- memory per thread ----------------------------------------------------- */

static pthread_barrier_t mem_barrier;

static void *mem_thread(void *arg)
{
        pthread_barrier_wait(&mem_barrier); /* created */
        pthread_barrier_wait(&mem_barrier); /* baseline taken */
        gtrace_counter("queue_depth", 1);
        pthread_barrier_wait(&mem_barrier); /* registered */
        pthread_barrier_wait(&mem_barrier); /* measured: exit */
        return NULL;
}

static long long resident_bytes(void)
{
        FILE *f = fopen("/proc/self/statm", "re");
        long long size = 0, res = 0;
        if (!f)
                return 0;
        if (fscanf(f, "%lld %lld", &size, &res) != 2)
                res = 0;
        fclose(f);
        return res * sysconf(_SC_PAGESIZE);
}

static long long heap_bytes(void)
{
        struct mallinfo2 mi = mallinfo2();
        return (long long)(mi.uordblks + mi.hblkhd);
}

static int run_threads(unsigned k)
{
        struct gtrace_options o = {.size = sizeof(o), .flags = GTRACE_F_NO_DAEMON};
        int r = gtrace_start(&o);
        if (r < 0) {
                fprintf(stderr, "bench-size: gtrace_start: %s\n", strerror(-r));
                return 1;
        }
        pthread_t *th = calloc(k, sizeof(*th));
        if (!th)
                return 1;
        pthread_barrier_init(&mem_barrier, NULL, k + 1);
        for (unsigned i = 0; i < k; i++) {
                if (pthread_create(&th[i], NULL, mem_thread, NULL) != 0) {
                        fprintf(stderr, "bench-size: pthread_create failed\n");
                        return 1;
                }
        }
        pthread_barrier_wait(&mem_barrier);
        struct gtrace_stats s0, s1;
        long long heap0 = heap_bytes(), rss0 = resident_bytes();
        gtrace_get_stats(&s0);
        pthread_barrier_wait(&mem_barrier);
        pthread_barrier_wait(&mem_barrier);
        long long heap1 = heap_bytes(), rss1 = resident_bytes();
        gtrace_get_stats(&s1);
        printf("threads=%u\nheap_per_thread=%lld\nresident_per_thread=%lld\n"
               "chunk_bytes_per_thread=%lld\n",
               k, (heap1 - heap0) / (long long)k, (rss1 - rss0) / (long long)k,
               (long long)(s1.bytes_buffered - s0.bytes_buffered) / (long long)k);
        pthread_barrier_wait(&mem_barrier);
        for (unsigned i = 0; i < k; i++)
                pthread_join(th[i], NULL);
        free(th);
        pthread_barrier_destroy(&mem_barrier);
        gtrace_stop();
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: bench-size --stream [--events N] [--pace-ns NS] [--dump-dir DIR] "
                   "[--lttng] [--cpu C]\n"
                   "       bench-size --threads K\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"stream", no_argument, NULL, 's'},
                {"events", required_argument, NULL, 'e'},
                {"pace-ns", required_argument, NULL, 'p'},
                {"dump-dir", required_argument, NULL, 'd'},
                {"lttng", no_argument, NULL, 'l'},
                {"threads", required_argument, NULL, 't'},
                {"cpu", required_argument, NULL, 'c'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool stream = false, lttng = false;
        uint64_t events = 300000, pace_ns = 0;
        const char *dump_dir = ".";
        unsigned threads = 0;
        int cpu = -1;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                switch (c) {
                case 's': stream = true; break;
                case 'e':
                        if (bench_parse_size(optarg, &events) < 0)
                                goto bad;
                        break;
                case 'p': pace_ns = strtoull(optarg, NULL, 10); break;
                case 'd': dump_dir = optarg; break;
                case 'l': lttng = true; break;
                case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'c': cpu = atoi(optarg); break;
                case 'h': usage(stdout); return 0;
                default: goto bad;
                }
        }
        if (stream == (threads != 0) || events < 3 || events > (1ull << 32) ||
            pace_ns > 1000000 || threads > 4096)
                goto bad;
        (void)bench_pin(cpu);
        if (threads)
                return run_threads(threads);
        if (pace_ns)
                ticks_per_event = (uint64_t)((double)pace_ns * bench_ticks_per_ns());
        return run_stream(events, dump_dir, lttng);
bad:
        usage(stderr);
        return 2;
}
