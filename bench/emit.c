/* SPDX-License-Identifier: MIT */
/*
 * bench-emit: what one event costs the thread that emits it.
 *
 * Variants, all measured in the same process run:
 *
 *   floor         a minimal timestamped thread-local append, written here:
 *                 read the cycle counter, write a type byte, the time delta
 *                 and one small argument as varints into a thread-local
 *                 buffer (wrapping when full).  It is a non-inlined call, as
 *                 an API call is.  Nothing can record an event for less.
 *   floor_text    the floor of a log: the same append with a category id,
 *                 the text's length (given, not searched for) and the text
 *                 (two overlapping 16-byte moves): what any tracer must do
 *                 to keep the log's bytes.
 *   floor_stack   the floor of a log with its stack: floor_text plus a
 *                 checked frame-pointer walk that appends each return
 *                 address raw (see floor_stack_event).
 *   gtrace        region begin, region end, counter, log, fiber transition
 *                 (run/yield), through libgtrace.so as a user links it, with
 *                 default options (no daemon: the in-process ring is the sink).
 *   LTTng-UST     a tracepoint with two integer fields and one with an
 *                 integer and a string, in whatever session bench/run set up
 *                 (snapshot mode: overwrite, per-UID buffers), and a
 *                 tracepoint of a provider no session enables (disabled).
 *
 * Timing: events are issued in groups of 32 between two cycle-counter reads
 * (consecutive groups share a read), so region begin and region end can be
 * told apart while the timer costs 1/32 of a counter read per event; the cost
 * of an empty group is measured too and subtracted.  One *sample* is a few
 * hundred thousand events of one variant; its value is the mean group time
 * without the groups that were interrupted (see sample_ns).  A *round* takes one sample of
 * every variant, in an order that rotates from round to round, so slow
 * phases of a noisy machine hit every variant alike; ratios are computed
 * per round (A and B of the same round) and the median over rounds is
 * reported with the interquartile range.  With --threads 2 two threads,
 * pinned to different CPUs, take each sample at the same time (a barrier
 * starts them) and the sample's value is the mean of the two.
 *
 * --log-stacks off: start gtrace with GTRACE_F_NO_STACKS, so that logs
 * carry no stack and are held to floor_text (bench/run runs the log once
 * each way, each in its own process beside its own floors).
 *
 * --overload: gtrace gets the least buffer there is (two 4 KiB chunks for
 * the process) and an hour's period, so that nearly every event is dropped:
 * what an event costs a thread when gtrace cannot keep it (rows marked
 * "overloaded", context only; the lost-events row says how many were kept).
 *
 * --tracing-off: gtrace is not started: what the calls cost a program built
 * with its instrumentation that does not trace (rows marked "tracing off",
 * context only, beside the floor and LTTng-UST's disabled tracepoint).
 *
 * --cold: instead of the above, a server's request in miniature: other
 * memory traffic (1 MiB written, as the kernel's work between two requests
 * evicts the caches), then the request's 8 events timed as one (a region
 * per request and per phase, the names bench-httpd uses), gtrace against
 * the floor's 8 appends and an empty request, interleaved.  What an event
 * costs when the lines it touches are not in the cache: the fast path's
 * cache footprint, which the loops above never see.
 *
 * --burst N: instead of the above, one thread logs N 24-byte texts as fast
 * as it can with default options, and the row says how many gtrace kept:
 * what a burst far above what the advance thread can copy loses.
 *
 * --callgrind: one sample per variant on the calling thread, bracketed by
 * callgrind client requests (zero before, dump after), for instruction
 * counts; bench/run reads the dumps.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gtrace/gtrace.h>

#include "common.h"

#if defined(BENCH_HAVE_LTTNG)
#include "lttng-tp.h"
#include "lttng-tp-off.h"
#endif

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif

/* Which libgtrace this binary links (bench-emit-static: libgtrace.a). */
#if defined(GTRACE_BENCH_STATIC)
#define GTRACE_BENCH_LINK "linked with libgtrace.a"
#else
#define GTRACE_BENCH_LINK "linked with libgtrace.so"
#endif

#define GROUP 32 /* events between two timer reads */
#define MAX_ROUNDS 10000

/* ---- the floor ---------------------------------------------------------- */

#define FLOOR_BYTES (1u << 20)

struct floor_buf {
        uint8_t *pos, *end;
        uint64_t last;
        uint8_t data[FLOOR_BYTES];
};

static __thread struct floor_buf *floor_self;

/* Gives this thread an empty floor buffer (exits when memory runs out). */
static void floor_open(void)
{
        floor_self = calloc(1, sizeof(*floor_self));
        if (!floor_self) {
                fprintf(stderr, "bench-emit: out of memory\n");
                exit(1);
        }
        floor_self->pos = floor_self->data;
        floor_self->end = floor_self->data + FLOOR_BYTES;
}

static void floor_close(void)
{
        free(floor_self); /* thread-local: this thread's own */
        floor_self = NULL;
}

static inline uint8_t *floor_put(uint8_t *p, uint64_t v)
{
        while (v >= 0x80) {
                *p++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *p++ = (uint8_t)v;
        return p;
}

/* The floor's event up to its first argument, at the buffer's cursor
 * (wrapping to the start when less than `room` bytes are left); returns
 * where the event goes on. */
static inline uint8_t *floor_head(struct floor_buf *b, uint8_t type, uint64_t arg, long room)
{
        uint64_t now = bench_ticks();
        if (__builtin_expect(b->end - b->pos < room, 0))
                b->pos = b->data;
        uint8_t *p = b->pos;
        *p++ = type;
        p = floor_put(p, now - b->last);
        b->last = now;
        return floor_put(p, arg);
}

static __attribute__((noinline)) void floor_event(uint8_t type, uint64_t arg)
{
        struct floor_buf *b = floor_self;
        b->pos = floor_head(b, type, arg, 32);
}

/* floor_head, then a text of 16..32 bytes with its length; returns where
 * the event goes on. */
static inline uint8_t *floor_text_head(struct floor_buf *b, uint8_t type, uint64_t arg,
                                       const char *text, size_t len, long room)
{
        uint8_t *p = floor_put(floor_head(b, type, arg, room), len);
        memcpy(p, text, 16);
        memcpy(p + len - 16, text + len - 16, 16);
        return p + len;
}

/* The floor of an event that carries a text of 16..32 bytes. */
static __attribute__((noinline)) void floor_text_event(uint8_t type, uint64_t arg,
                                                       const char *text, size_t len)
{
        struct floor_buf *b = floor_self;
        b->pos = floor_text_head(b, type, arg, text, len, 64);
}

/* This thread's stack, for floor_stack_event's walk as for gtrace's: a
 * frame record may start in [lo, hi]. */
static __thread uintptr_t floor_stack_lo, floor_stack_hi;

/*
 * The floor of a log that records its stack: floor_text_event, then every
 * return address up the frame-pointer chain, appended raw (a count, then 8
 * bytes each, at most 32).  The walk is the least a tracer can do without
 * risking a fault: each saved frame pointer is checked to lie in the
 * thread's stack, above the last and aligned before it is followed, as
 * gtrace checks it.  No interning, no deduplication: those cost instructions
 * here to save bytes later, which this floor does not try to.  Returns the
 * number of frames (in a register: the report's, not the floor's cost).
 */
#define FLOOR_STACK_MAX 32
static __attribute__((noinline)) unsigned floor_stack_event(uint8_t type, uint64_t arg,
                                                            const char *text, size_t len)
{
        struct floor_buf *b = floor_self;
        uint8_t *p = floor_text_head(b, type, arg, text, len, 64 + 8 * FLOOR_STACK_MAX);
        uint8_t *count = p++;
        unsigned n = 0;
        uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
        const uintptr_t hi = floor_stack_hi;
        if (fp >= floor_stack_lo && fp <= hi && !(fp & 7)) {
                while (n < FLOOR_STACK_MAX) {
                        const uintptr_t *frame = (const uintptr_t *)fp;
                        uintptr_t next = frame[0], ret = frame[1];
                        if (!ret)
                                break;
                        memcpy(p, &ret, sizeof(ret));
                        p += sizeof(ret);
                        n++;
                        if (next - fp - 1 >= hi - fp || (next & 7))
                                break;
                        fp = next;
                }
        }
        *count = (uint8_t)n;
        b->pos = p;
        return n;
}

/* ---- variants ------------------------------------------------------------ */

enum result {
        R_FLOOR,
        R_FLOOR_TEXT,
        R_FLOOR_STACK,
        R_BEGIN,
        R_END,
        R_COUNTER,
        R_LOG,
        R_FIBER,
        R_LT_INTS,
        R_LT_MSG,
        R_LT_OFF,
        R_COLLIDE,
        R_EMPTY,
        NRESULTS,
};

struct worker {
        int index;
        int cpu;
        uint64_t fiber;
        pthread_t thread;
        uint32_t *group[2];   /* ticks of each group of the current sample, per result slot */
        double *ns[NRESULTS]; /* [round] ns per event (group overhead not yet subtracted) */
        uint64_t groups_total, groups_dropped;
        unsigned stack_frames; /* floor_stack's walk, for the report */
};

/* A variant runs `groups` groups and stores each group's ticks in
 * w->group[0] (and w->group[1] for the second result of region). */
typedef void (*variant_fn)(struct worker *w, uint32_t groups);

static const char log_text[] = "connection reset by peer";
#define log_text_len (sizeof(log_text) - 1) /* 24: floor_text needs 16..32 */
_Static_assert(log_text_len >= 16 && log_text_len <= 32, "floor_text_event copies 16..32 bytes");

/* One group: BODY issues GROUP events; its ticks go to w->group[SLOT][g]. */
#define TIMED_GROUPS(SLOT, BODY)                                                                   \
        do {                                                                                       \
                uint32_t *out_ = w->group[SLOT];                                                   \
                uint64_t t_ = bench_ticks();                                                       \
                for (uint32_t g = 0; g < groups; g++) {                                            \
                        BODY;                                                                      \
                        uint64_t u_ = bench_ticks();                                               \
                        out_[g] = (uint32_t)(u_ - t_ < UINT32_MAX ? u_ - t_ : UINT32_MAX);         \
                        t_ = u_;                                                                   \
                }                                                                                  \
        } while (0)

static void v_floor(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++) floor_event(0x20, j));
}

static void v_floor_text(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++)
                                floor_text_event(0x21, 3, log_text, log_text_len));
}

static void v_floor_stack(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++)
                                floor_stack_event(0x21, 3, log_text, log_text_len));
        w->stack_frames = floor_stack_event(0x21, 3, log_text, log_text_len); /* untimed */
}

static void v_empty(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, __asm__ volatile("" ::: "memory"));
}

static void v_region(struct worker *w, uint32_t groups)
{
        uint32_t *b = w->group[0], *e = w->group[1];
        uint64_t t = bench_ticks();
        for (uint32_t g = 0; g < groups; g++) {
                for (uint32_t j = 0; j < GROUP; j++)
                        gtrace_region_begin("request");
                uint64_t u = bench_ticks();
                b[g] = (uint32_t)(u - t < UINT32_MAX ? u - t : UINT32_MAX);
                for (uint32_t j = 0; j < GROUP; j++)
                        gtrace_region_end();
                t = bench_ticks();
                e[g] = (uint32_t)(t - u < UINT32_MAX ? t - u : UINT32_MAX);
        }
}

/* Two region names in one 16-byte block, as short string literals packed
 * together by the linker often are ("parse", "handle"): a begin with each,
 * alternately (ends are not timed).  See report(). */
static _Alignas(16) const char collide_names[16] = "parse\0handle";

static void v_collide(struct worker *w, uint32_t groups)
{
        uint32_t *b = w->group[0];
        uint64_t t = bench_ticks();
        for (uint32_t g = 0; g < groups; g++) {
                for (uint32_t j = 0; j < GROUP; j++)
                        gtrace_region_begin(collide_names + (j & 1) * 6);
                uint64_t u = bench_ticks();
                b[g] = (uint32_t)(u - t < UINT32_MAX ? u - t : UINT32_MAX);
                for (uint32_t j = 0; j < GROUP; j++)
                        gtrace_region_end();
                t = bench_ticks();
        }
}

static void v_counter(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++) gtrace_counter("queue_depth", (int64_t)j));
}

static void v_log(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++) gtrace_log("net", log_text));
}

static void v_fiber(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP / 2; j++) {
                gtrace_fiber_run(w->fiber);
                gtrace_fiber_yield();
        });
}

#if defined(BENCH_HAVE_LTTNG)
static void v_lt_ints(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++)
                                lttng_ust_tracepoint(gtbench, ints, 1, (int64_t)j));
}

static void v_lt_msg(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++)
                                lttng_ust_tracepoint(gtbench, msg, 1, log_text));
}

static void v_lt_off(struct worker *w, uint32_t groups)
{
        TIMED_GROUPS(0, for (uint32_t j = 0; j < GROUP; j++)
                                lttng_ust_tracepoint(gtbench_off, ints, 1, (int64_t)j));
}
#endif

struct variant {
        const char *name;
        variant_fn fn;
        enum result results[2];
        int nresults;
};

static const struct variant all_variants[] = {
        {"floor", v_floor, {R_FLOOR}, 1},
        {"floor_text", v_floor_text, {R_FLOOR_TEXT}, 1},
        {"floor_stack", v_floor_stack, {R_FLOOR_STACK}, 1},
        {"empty", v_empty, {R_EMPTY}, 1},
        {"region", v_region, {R_BEGIN, R_END}, 2},
        {"counter", v_counter, {R_COUNTER}, 1},
        {"log", v_log, {R_LOG}, 1},
        {"fiber", v_fiber, {R_FIBER}, 1},
        {"collide", v_collide, {R_COLLIDE}, 1},
#if defined(BENCH_HAVE_LTTNG)
        {"lttng_ints", v_lt_ints, {R_LT_INTS}, 1},
        {"lttng_msg", v_lt_msg, {R_LT_MSG}, 1},
        {"lttng_disabled", v_lt_off, {R_LT_OFF}, 1},
#endif
};
#define NALL (sizeof(all_variants) / sizeof(all_variants[0]))

/* The variants of this run (--only selects; the floor and the empty group
 * are always in, every ratio needs them, and a log brings its floor). */
static struct variant variants[NALL];
static size_t nvariants;
static bool measured[NRESULTS];
static bool log_stacks = true; /* --log-stacks */
static bool overload;          /* --overload */
static bool tracing_off;       /* --tracing-off */
static uint64_t burst;         /* --burst N: logs in one go, then the count kept */
static bool cold;              /* --cold */

/* Is name one of the comma-separated list's? */
static bool listed(const char *list, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = list; *p;) {
                size_t m = strcspn(p, ",");
                if (m == n && strncmp(p, name, n) == 0)
                        return true;
                p += m + (p[m] == ',');
        }
        return false;
}

static int select_variants(const char *only)
{
        for (size_t i = 0; i < NALL; i++) {
                const struct variant *v = &all_variants[i];
                bool in = !only || v->fn == v_floor || v->fn == v_empty || listed(only, v->name) ||
                          ((v->fn == v_floor_text || v->fn == v_floor_stack) &&
                           listed(only, "log"));
                if (v->fn == v_floor_stack && !log_stacks)
                        in = false;
                if (!in)
                        continue;
                variants[nvariants++] = *v;
                for (int k = 0; k < v->nresults; k++)
                        measured[v->results[k]] = true;
        }
        return nvariants > 2 || !only ? 0 : -EINVAL;
}

/* ---- the run -------------------------------------------------------------- */

struct run {
        int nthreads;
        uint32_t rounds;
        uint32_t groups; /* per sample */
        double ticks_per_ns;
        pthread_barrier_t barrier;
        struct worker workers[2];
};

static struct run run;

static void worker_init(struct worker *w)
{
        (void)bench_pin(w->cpu);
        floor_open();
        pthread_attr_t attr;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
                void *addr;
                size_t size;
                if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size >= 16) {
                        floor_stack_lo = (uintptr_t)addr;
                        floor_stack_hi = (uintptr_t)addr + size - 16;
                }
                pthread_attr_destroy(&attr);
        }
        w->fiber = gtrace_fiber_create("bench-fiber");
        for (int i = 0; i < 2; i++) {
                w->group[i] = calloc(run.groups, sizeof(uint32_t));
                if (!w->group[i]) {
                        fprintf(stderr, "bench-emit: out of memory\n");
                        exit(1);
                }
        }
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
        return x < y ? -1 : x > y;
}

/*
 * ns per event of one sample: the mean group time, leaving out groups that
 * took more than TRIM times the median group.  Those are groups during which
 * the thread was preempted or interrupted (on a shared machine, by whatever
 * else runs); gtrace's own slow paths (a new chunk every few thousand events)
 * stay well below that bound and are included, amortized, in the mean.
 */
#define TRIM 4
static double sample_ns(struct worker *w, uint32_t *g, uint32_t n)
{
        qsort(g, n, sizeof(*g), cmp_u32);
        uint64_t bound = (uint64_t)g[n / 2] * TRIM + 64, sum = 0;
        uint32_t kept = 0;
        for (uint32_t i = 0; i < n && g[i] <= bound; i++, kept++)
                sum += g[i];
        w->groups_total += n;
        w->groups_dropped += n - kept;
        return (double)sum / kept / run.ticks_per_ns / GROUP;
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        worker_init(w);
        /* Round 0 warms up (first chunks, interned names, LTTng's per-thread
         * state) and is not recorded. */
        for (uint32_t r = 0; r <= run.rounds; r++) {
                for (uint32_t k = 0; k < nvariants; k++) {
                        const struct variant *v = &variants[(r + k) % nvariants];
                        pthread_barrier_wait(&run.barrier);
                        v->fn(w, run.groups);
                        if (r == 0)
                                continue;
                        for (int i = 0; i < v->nresults; i++)
                                w->ns[v->results[i]][r - 1] = sample_ns(w, w->group[i], run.groups);
                }
        }
        floor_close();
        return NULL;
}

/* Value of result res in round r: mean over threads, minus the timer. */
static double value(enum result res, uint32_t r)
{
        double sum = 0;
        for (int i = 0; i < run.nthreads; i++) {
                double v = run.workers[i].ns[res][r];
                if (res != R_EMPTY)
                        v -= run.workers[i].ns[R_EMPTY][r];
                sum += v;
        }
        return sum / run.nthreads;
}

static void stat_of(enum result res, struct bench_stat *ret)
{
        static double v[MAX_ROUNDS];
        for (uint32_t r = 0; r < run.rounds; r++)
                v[r] = value(res, r);
        bench_stat(v, run.rounds, ret);
}

static void ratio_of(enum result a, enum result b, struct bench_stat *ret)
{
        static double v[MAX_ROUNDS];
        for (uint32_t r = 0; r < run.rounds; r++)
                v[r] = value(a, r) / value(b, r);
        bench_stat(v, run.rounds, ret);
}

static bool have_lttng(void)
{
#if defined(BENCH_HAVE_LTTNG)
        return true;
#else
        return false;
#endif
}

static void report(bool lttng_enabled)
{
        char what[160], res[96], cmp[256], met[64];
        struct bench_stat s, rf, rl;
        const char *th = run.nthreads == 1 ? "1 thread" : "2 threads";
        static const struct {
                enum result r;
                const char *label;
                enum result lttng; /* compared with */
        } rows[] = {
                {R_BEGIN, "gtrace region begin", R_LT_INTS},
                {R_END, "gtrace region end", R_LT_INTS},
                {R_COUNTER, "gtrace counter", R_LT_INTS},
                /* Issue 6 asks every event within 1.5x of the floor.  A log
                 * is held to the floor of what it records: its bytes
                 * (floor_text), and with a stack (the default) its bytes and
                 * the walk (floor_stack); its ratios to the smaller floors
                 * are shown too.  A fiber transition is held to the 3-byte
                 * floor, though it writes two arguments.
                 * docs/performance.md says where their time goes. */
                {R_LOG, NULL, R_LT_MSG},
                {R_FIBER, "gtrace fiber transition (run/yield)", R_LT_INTS},
                {R_COLLIDE, "gtrace region begin, 2 names alternating in one 16-byte block",
                 R_LT_INTS},
        };

        stat_of(R_FLOOR, &s);
        bench_fmt_stat(res, sizeof(res), &s, "ns", 2);
        snprintf(what, sizeof(what), "emit, %s: floor (rdtsc + thread-local append)", th);
        bench_row(what, res, "reference", "", "");
        if (measured[R_FLOOR_TEXT]) {
                stat_of(R_FLOOR_TEXT, &s);
                bench_fmt_stat(res, sizeof(res), &s, "ns", 2);
                ratio_of(R_FLOOR_TEXT, R_FLOOR, &rf);
                snprintf(cmp, sizeof(cmp), "reference for logs%s; %.2f× floor [%.2f–%.2f]",
                         log_stacks ? " without a stack" : "", rf.median, rf.p25, rf.p75);
                snprintf(what, sizeof(what),
                         "emit, %s: floor with a log's bytes (the same append plus a "
                         "category id, length and the 24-byte text)", th);
                bench_row(what, res, cmp, "", "");
        }
        if (measured[R_FLOOR_STACK]) {
                stat_of(R_FLOOR_STACK, &s);
                bench_fmt_stat(res, sizeof(res), &s, "ns", 2);
                ratio_of(R_FLOOR_STACK, R_FLOOR, &rf);
                snprintf(cmp, sizeof(cmp), "reference for logs with a stack; %.2f× floor [%.2f–%.2f]",
                         rf.median, rf.p25, rf.p75);
                snprintf(what, sizeof(what),
                         "emit, %s: floor with a log's bytes and its stack (the same, plus a "
                         "checked frame-pointer walk appending the %u return addresses)",
                         th, run.workers[0].stack_frames);
                bench_row(what, res, cmp, "", "");
        }

        bool lt = have_lttng() && lttng_enabled;
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                if (!measured[rows[i].r])
                        continue;
                stat_of(rows[i].r, &s);
                bench_fmt_stat(res, sizeof(res), &s, "ns", 2);
                size_t n = 0;
                enum result floor = R_FLOOR;
                const char *label = rows[i].label;
                if (tracing_off) {
                        /* Nothing recorded: held to no floor, shown beside
                         * the plain one and LTTng's disabled tracepoint. */
                        if (rows[i].r == R_LOG)
                                label = "gtrace log";
                        ratio_of(rows[i].r, R_FLOOR, &rf);
                        n = (size_t)snprintf(cmp, sizeof(cmp), "%.2f× floor [%.2f–%.2f]", rf.median,
                                             rf.p25, rf.p75);
                        if (have_lttng() && measured[R_LT_OFF]) {
                                struct bench_stat lo;
                                stat_of(R_LT_OFF, &lo);
                                snprintf(cmp + n, sizeof(cmp) - n,
                                         "; an LTTng-UST tracepoint disabled: %.2f ns", lo.median);
                        }
                        snprintf(what, sizeof(what),
                                 "emit, %s: %s, tracing off (gtrace_start not called)", th, label);
                        bench_row(what, res, cmp, "context", "");
                        continue;
                }
                if (rows[i].r == R_LOG) {
                        label = log_stacks ? "gtrace log (24-byte text, stack on: the default)"
                                           : "gtrace log (24-byte text, stacks off: "
                                             "GTRACE_STACKS=off)";
                        /* The smaller floors first, the one it is held to last. */
                        static const enum result lf[] = {R_FLOOR, R_FLOOR_TEXT, R_FLOOR_STACK};
                        static const char *const lname[] = {"", " with its bytes",
                                                            " with its bytes and stack"};
                        for (int k = 0; k < 3; k++) {
                                if (!measured[lf[k]])
                                        continue;
                                if (k > 0)
                                        n += (size_t)snprintf(cmp + n, sizeof(cmp) - n, "; ");
                                floor = lf[k];
                                ratio_of(rows[i].r, floor, &rf);
                                n += (size_t)snprintf(cmp + n, sizeof(cmp) - n,
                                                      "%.2f× floor%s [%.2f–%.2f]", rf.median,
                                                      lname[k], rf.p25, rf.p75);
                        }
                } else {
                        ratio_of(rows[i].r, floor, &rf);
                        n += (size_t)snprintf(cmp + n, sizeof(cmp) - n, "%.2f× floor [%.2f–%.2f]",
                                              rf.median, rf.p25, rf.p75);
                }
                bool ok_floor = rf.median <= 1.5, ok_lttng = true;
                bool lt_row = lt && measured[rows[i].lttng];
                if (lt_row) {
                        ratio_of(rows[i].r, rows[i].lttng, &rl);
                        ok_lttng = rl.median <= 0.2;
                        snprintf(cmp + n, sizeof(cmp) - n, "; %.3f× LTTng%s [%.3f–%.3f]",
                                 rl.median, rows[i].lttng == R_LT_MSG ? " string event" : "",
                                 rl.p25, rl.p75);
                }
                snprintf(what, sizeof(what), "emit, %s: %s%s", th, label,
                         overload ? ", overloaded (buffers full: most events dropped)" : "");
                if (overload) {
                        /* What an event costs when gtrace cannot keep it:
                         * context, held to no target. */
                        bench_row(what, res, cmp, "context", "");
                        continue;
                }
                const char *target = lt_row ? "≤ 1.5× floor; ≤ 0.2× LTTng" : "≤ 1.5× floor";
                if (floor == R_FLOOR_TEXT)
                        target = lt_row ? "≤ 1.5× floor with its bytes; ≤ 0.2× LTTng"
                                        : "≤ 1.5× floor with its bytes";
                else if (floor == R_FLOOR_STACK)
                        target = lt_row ? "≤ 1.5× floor with its bytes and stack; ≤ 0.2× LTTng"
                                        : "≤ 1.5× floor with its bytes and stack";
                if (lt_row)
                        snprintf(met, sizeof(met), "%s / %s", ok_floor ? "yes" : "**NO**",
                                 ok_lttng ? "yes" : "**NO**");
                else
                        snprintf(met, sizeof(met), "%s", ok_floor ? "yes" : "**NO**");
                bench_row(what, res, cmp, target, met);
        }
        if (!have_lttng())
                return;
        static const struct {
                enum result r;
                const char *label;
        } lrows[] = {
                {R_LT_INTS, "LTTng-UST tracepoint, 2 integers"},
                {R_LT_MSG, "LTTng-UST tracepoint, integer + 24-byte string"},
                {R_LT_OFF, "LTTng-UST tracepoint, disabled"},
        };
        for (size_t i = 0; i < sizeof(lrows) / sizeof(lrows[0]); i++) {
                if ((!lttng_enabled && lrows[i].r != R_LT_OFF) || !measured[lrows[i].r])
                        continue;
                stat_of(lrows[i].r, &s);
                bench_fmt_stat(res, sizeof(res), &s, "ns", 2);
                ratio_of(lrows[i].r, R_FLOOR, &rf);
                snprintf(cmp, sizeof(cmp), "%.2f× floor [%.2f–%.2f]", rf.median, rf.p25, rf.p75);
                snprintf(what, sizeof(what), "emit, %s: %s", th, lrows[i].label);
                bench_row(what, res, cmp, "context", "");
        }
}

/* ---- a burst ---------------------------------------------------------------- */

static int burst_mode(int cpu)
{
        (void)bench_pin(cpu);
        double tpn = bench_ticks_per_ns();
        uint64_t t0 = bench_ticks();
        for (uint64_t i = 0; i < burst; i++)
                gtrace_log("net", log_text);
        uint64_t t1 = bench_ticks();
        (void)gtrace_flush(); /* the open generation's events and losses count too */
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        gtrace_stop();
        double ns = (double)(t1 - t0) / tpn / (double)burst;
        uint64_t kept = st.events_lost < burst ? burst - st.events_lost : 0;
        char what[160], res[96], cmp[200];
        snprintf(what, sizeof(what),
                 "a burst: one thread logs %llu 24-byte texts at full speed (stack %s)",
                 (unsigned long long)burst, log_stacks ? "on" : "off");
        snprintf(res, sizeof(res), "%.1f%% kept (%llu lost, counted)",
                 100.0 * (double)kept / (double)burst, (unsigned long long)st.events_lost);
        snprintf(cmp, sizeof(cmp), "%.2f ns per event; %llu generations cut", ns,
                 (unsigned long long)st.generations);
        bench_row(what, res, cmp, "context", "");
        return 0;
}

/* ---- cold mode ------------------------------------------------------------- */

#define COLD_EVICT (1u << 20) /* bytes written between two requests */
#define COLD_REQUESTS 2000    /* requests per kind in a sample */

enum { COLD_EMPTY, COLD_FLOOR, COLD_GTRACE, COLD_FIRST, COLD_KINDS };

/* One request's events: a region for the request and one per phase.
 * COLD_FIRST: one gtrace region, then six of the floor's appends: what the
 * first event of a request costs beyond the floor's. */
static __attribute__((noinline)) void cold_request(int kind)
{
        switch (kind) {
        case COLD_GTRACE:
                gtrace_region_begin("request");
                gtrace_region_begin("parse");
                gtrace_region_end();
                gtrace_region_begin("handle");
                gtrace_region_end();
                gtrace_region_begin("respond");
                gtrace_region_end();
                gtrace_region_end();
                break;
        case COLD_FIRST:
                gtrace_region_begin("request");
                gtrace_region_end();
                for (uint64_t j = 0; j < 6; j++)
                        floor_event(0x20, j);
                break;
        case COLD_FLOOR:
                for (uint64_t j = 0; j < 8; j++)
                        floor_event(0x20, j);
                break;
        default: break;
        }
}

static int cold_mode(int cpu, uint32_t rounds)
{
        (void)bench_pin(cpu);
        floor_open();
        uint8_t *evict = malloc(COLD_EVICT);
        double *samples[COLD_KINDS], *ratio = calloc(rounds, sizeof(double));
        double *t = calloc(COLD_REQUESTS, sizeof(double)); /* ticks of each request */
        bool ok = evict && ratio && t;
        for (int k = 0; k < COLD_KINDS; k++)
                ok = (samples[k] = calloc(rounds, sizeof(double))) != NULL && ok;
        if (!ok) {
                fprintf(stderr, "bench-emit: out of memory\n");
                return 1;
        }
        memset(evict, 1, COLD_EVICT);
        double tpn = bench_ticks_per_ns();
        for (uint32_t r = 0; r < rounds; r++) {
                for (int i = 0; i < COLD_KINDS; i++) {
                        int k = (int)((r + (uint32_t)i) % COLD_KINDS);
                        for (uint32_t q = 0; q < COLD_REQUESTS; q++) {
                                /* Written, not read: dirty lines, as a
                                 * system call's copies leave them. */
                                for (size_t off = 0; off < COLD_EVICT; off += 64)
                                        evict[off] = (uint8_t)(q + off);
                                __asm__ volatile("" ::: "memory");
                                uint64_t t0 = bench_ticks();
                                cold_request(k);
                                t[q] = (double)(bench_ticks() - t0);
                        }
                        /* The mean request of the sample without its
                         * slowest tenth (interrupts and the advance
                         * thread's cuts land in a few).  A mean, not a
                         * median: a request is a few tens of ticks, and
                         * the counter of a VM may step by several. */
                        struct bench_stat st;
                        bench_stat(t, COLD_REQUESTS, &st); /* sorts t */
                        uint32_t keep = COLD_REQUESTS - COLD_REQUESTS / 10;
                        double sum = 0;
                        for (uint32_t q = 0; q < keep; q++)
                                sum += t[q];
                        samples[k][r] = sum / keep / tpn;
                }
        }
        /* Per round: the empty request (the timer) subtracted, then the
         * ratio of gtrace's request to the floor's. */
        struct bench_stat e, f, g, rt, first;
        for (uint32_t r = 0; r < rounds; r++) {
                for (int k = COLD_FLOOR; k < COLD_KINDS; k++)
                        samples[k][r] -= samples[COLD_EMPTY][r];
                double fl = samples[COLD_FLOOR][r];
                ratio[r] = fl > 0 ? samples[COLD_GTRACE][r] / fl : 0;
        }
        bench_stat(samples[COLD_FIRST], rounds, &first);
        bench_stat(samples[COLD_EMPTY], rounds, &e);
        bench_stat(samples[COLD_FLOOR], rounds, &f);
        bench_stat(samples[COLD_GTRACE], rounds, &g);
        bench_stat(ratio, rounds, &rt);
        char res[96], cmp[320], what[160];
        bench_fmt_stat(res, sizeof(res), &g, "ns", 1);
        snprintf(cmp, sizeof(cmp),
                 "the floor's 8 appends: %.1f ns [%.1f–%.1f]; gtrace/floor %.2f× [%.2f–%.2f]; "
                 "one gtrace region and 6 of the floor's appends: %.1f ns [%.1f–%.1f] "
                 "(the timer alone: %.1f ns, subtracted)",
                 f.median, f.p25, f.p75, rt.median, rt.p25, rt.p75, first.median, first.p25,
                 first.p75, e.median);
        snprintf(what, sizeof(what),
                 "emit, cold: a request's 8 events (4 regions) after 1 MiB of other memory "
                 "traffic, %s",
                 GTRACE_BENCH_LINK);
        bench_row(what, res, cmp, "context", "");
        for (int k = 0; k < COLD_KINDS; k++)
                free(samples[k]);
        free(ratio);
        free(t);
        free(evict);
        floor_close();
        return 0;
}

/* ---- callgrind mode -------------------------------------------------------- */

static int callgrind_mode(void)
{
#if defined(BENCH_HAVE_CALLGRIND)
        struct worker *w = &run.workers[0];
        worker_init(w);
        for (size_t k = 0; k < nvariants; k++) {
                variants[k].fn(w, run.groups); /* warm-up */
                CALLGRIND_ZERO_STATS;
                variants[k].fn(w, run.groups);
                CALLGRIND_DUMP_STATS_AT(variants[k].name);
                /* bench/run divides a dump's total by the events it covers. */
                printf("callgrind\t%s\t%llu\n", variants[k].name,
                       (unsigned long long)run.groups * GROUP * (unsigned)variants[k].nresults);
        }
        return 0;
#else
        fprintf(stderr, "bench-emit: built without <valgrind/callgrind.h>\n");
        return 1;
#endif
}

/* ---- main ------------------------------------------------------------------ */

static void usage(FILE *f)
{
        fprintf(f, "usage: bench-emit [--threads 1|2] [--rounds N] [--events N] [--callgrind]\n"
                   "                  [--lttng-enabled] [--cpus A,B] [--only VARIANT,...]\n"
                   "                  [--log-stacks on|off] [--overload] [--tracing-off]\n"
                   "                  [--burst N] [--cold]\n"
                   "variants: floor floor_text floor_stack empty region counter log fiber collide\n"
                   "          lttng_ints lttng_msg lttng_disabled\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"threads", required_argument, NULL, 't'},
                {"rounds", required_argument, NULL, 'r'},
                {"events", required_argument, NULL, 'e'},
                {"callgrind", no_argument, NULL, 'c'},
                {"lttng-enabled", no_argument, NULL, 'l'},
                {"cpus", required_argument, NULL, 'p'},
                {"only", required_argument, NULL, 'o'},
                {"log-stacks", required_argument, NULL, 's'},
                {"overload", no_argument, NULL, 'O'},
                {"tracing-off", no_argument, NULL, 'T'},
                {"cold", no_argument, NULL, 'C'},
                {"burst", required_argument, NULL, 'B'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool cg = false, lttng_enabled = false;
        const char *only = NULL;
        uint64_t events = 1u << 18;
        int cpus[2] = {1, 0};
        run.nthreads = 1;
        run.rounds = 21;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                switch (c) {
                case 't': run.nthreads = atoi(optarg); break;
                case 'r': run.rounds = (uint32_t)strtoul(optarg, NULL, 10); break;
                case 'e':
                        if (bench_parse_size(optarg, &events) < 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'c': cg = true; break;
                case 'l': lttng_enabled = true; break;
                case 'p':
                        if (sscanf(optarg, "%d,%d", &cpus[0], &cpus[1]) < 1) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'o': only = optarg; break;
                case 's':
                        if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                                fprintf(stderr, "bench-emit: --log-stacks: 'on' or 'off', not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        log_stacks = strcmp(optarg, "on") == 0;
                        break;
                case 'O': overload = true; break;
                case 'T': tracing_off = true; break;
                case 'C': cold = true; break;
                case 'B':
                        if (bench_parse_size(optarg, &burst) < 0 || burst == 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (run.nthreads < 1 || run.nthreads > 2 || run.rounds < 1 || run.rounds > MAX_ROUNDS ||
            events < GROUP || events > (1ull << 32)) {
                usage(stderr);
                return 2;
        }
        if ((int)tracing_off + (int)overload + (int)(burst > 0) + (int)cold > 1) {
                fprintf(stderr, "bench-emit: --tracing-off, --overload, --burst and --cold are "
                                "separate runs: one at a time\n");
                return 2;
        }
        run.groups = (uint32_t)(events / GROUP);
        if (select_variants(only) < 0) {
                fprintf(stderr, "bench-emit: --only: no such variant in '%s'\n", only);
                return 2;
        }
        if (bench_ncpus() < 2) {
                cpus[0] = cpus[1] = -1; /* nothing to choose from */
        }

#if defined(BENCH_HAVE_LTTNG)
        /* The session must be active before the measurement starts (lttng-ust
         * registers with the session daemon from a constructor). */
        if (lttng_enabled && !lttng_ust_tracepoint_enabled(gtbench, ints)) {
                fprintf(stderr, "bench-emit: --lttng-enabled but gtbench:ints is not enabled "
                                "(is lttng-sessiond running with the bench session started?)\n");
                return 1;
        }
#endif

        struct gtrace_options o = {.size = sizeof(o),
                                   .flags = GTRACE_F_NO_DAEMON |
                                            (log_stacks ? 0 : GTRACE_F_NO_STACKS)};
        if (overload) {
                /* The least buffer there is, two 4 KiB chunks for the whole
                 * process, and no cut but those a full pool asks for: each
                 * cut keeps a few thousand events, the rest are dropped. */
                o.chunk_bytes = 4096;
                o.max_buffer_bytes = 2 * 4096;
                o.period_ms = 3600000;
        }
        int r = tracing_off ? 0 : gtrace_start(&o);
        if (r < 0) {
                fprintf(stderr, "bench-emit: gtrace_start: %s\n", strerror(-r));
                return 1;
        }
        if (cg) {
                r = callgrind_mode();
                gtrace_stop();
                return r;
        }
        if (burst)
                return burst_mode(cpus[0]);
        if (cold) {
                r = cold_mode(cpus[0], run.rounds);
                gtrace_stop();
                return r;
        }

        run.ticks_per_ns = bench_ticks_per_ns();
        pthread_barrier_init(&run.barrier, NULL, (unsigned)run.nthreads);
        for (int i = 0; i < run.nthreads; i++) {
                struct worker *w = &run.workers[i];
                w->index = i;
                w->cpu = cpus[i];
                for (int k = 0; k < NRESULTS; k++) {
                        w->ns[k] = calloc(run.rounds, sizeof(double));
                        if (!w->ns[k]) {
                                fprintf(stderr, "bench-emit: out of memory\n");
                                return 1;
                        }
                }
                if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                        fprintf(stderr, "bench-emit: pthread_create failed\n");
                        return 1;
                }
        }
        for (int i = 0; i < run.nthreads; i++)
                pthread_join(run.workers[i].thread, NULL);

        /* Cut the open generation first: its events and losses count too. */
        (void)gtrace_flush();
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        report(lttng_enabled);
        if (st.events_lost) {
                char lost[96];
                snprintf(lost, sizeof(lost), "%llu of %llu", (unsigned long long)st.events_lost,
                         (unsigned long long)(st.events + st.events_lost));
                char what[128];
                snprintf(what, sizeof(what), "emit, %s: gtrace events lost%s",
                         run.nthreads == 1 ? "1 thread" : "2 threads",
                         overload      ? " (the overloaded run)"
                         : log_stacks ? ""
                                      : " (the run of logs without stacks)");
                if (overload)
                        bench_row(what, lost, "dropped at full buffers and counted, as meant here",
                                  "context", "");
                else
                        bench_row(what, lost,
                                  "dropped at full buffers and counted; their time is in the rows above",
                                  "0", "**NO**");
        }
        uint64_t gt = 0, gd = 0;
        for (int i = 0; i < run.nthreads; i++) {
                gt += run.workers[i].groups_total;
                gd += run.workers[i].groups_dropped;
        }
        fprintf(stderr, "bench-emit: %d thread(s), %u rounds x %u events per sample; %.3f%% of "
                        "groups left out as interrupted; gtrace: %llu events, %llu lost, %llu "
                        "generations\n",
                run.nthreads, run.rounds, run.groups * GROUP, gt ? 100.0 * (double)gd / (double)gt : 0,
                (unsigned long long)st.events, (unsigned long long)st.events_lost,
                (unsigned long long)st.generations);
        gtrace_stop();
        for (int i = 0; i < run.nthreads; i++) {
                for (int k = 0; k < NRESULTS; k++)
                        free(run.workers[i].ns[k]);
                free(run.workers[i].group[0]);
                free(run.workers[i].group[1]);
        }
        pthread_barrier_destroy(&run.barrier);
        return 0;
}
