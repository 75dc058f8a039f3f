/* SPDX-License-Identifier: MIT */
/*
 * bench-export: how fast `gtracectl export --format chrome` converts a large
 * dump, in MB of dump input per second (issue 4 asks for >= 50 MB/s).
 *
 * The dump is generated here, deterministically (a fixed-seed LCG and a
 * simulated clock, so every run and every machine converts the same bytes),
 * with the shape of examples/service.c under load: an acceptor that begins a
 * "request" task and creates a fiber per request, workers that run each
 * request in three slices (parse, lookup, render) with a region each, a
 * run-queue counter sample before every run, a block on "io" after parsing
 * and a yield after the lookup, an io thread in clock_nanosleep that readies
 * the fibers whose lookup is done, an audit child task begun in render and
 * ended by an audit thread in read(2), errors logged for a few requests, a
 * "serve" region open on the main thread for the whole run.  Generations
 * are cut every --period-ms of simulated time and written the way the
 * runtime writes them (docs/format.md): per thread a status set at the
 * start (THREAD_STATUS, REGION_STATUS, FIBER_STATUS of the running fiber),
 * the status of every other live fiber and task in the tracer's batch,
 * per-generation string and stack tables, batches cut at --chunk bytes,
 * fiber sequence numbers restarting at every generation.
 *
 * Then it times, in interleaved rounds (the machine is shared: medians and
 * the interquartile range, min and max as the spread):
 *   - export in this process (fr_dump_open + fr_export_chrome to /dev/null);
 *   - validate in this process (fr_dump_parse without callbacks): the
 *     reader's share;
 *   - `gtracectl export FILE --format chrome` end to end, stdout /dev/null;
 *   - with --output-file, also `gtracectl export FILE --format chrome -o
 *     OUT` (the real file, fsync included: that measures the disk as well).
 * CPU seconds are reported beside wall time: with a second thread the
 * export may take more CPU than wall clock.
 *
 *   bench-export [--size 64M] [--rate 40000] [--workers 4] [--period-ms 1000]
 *                [--chunk 64K] [--seed 1] [--rounds 7] [--file PATH] [--keep]
 *                [--gtracectl PATH] [--output-file] [--generate-only] [--threads N]
 *                [--reuse]
 *
 * --reuse: with --file, convert the file as it is if it exists (a dump of
 * any origin; nothing is generated).
 * --threads sets fr_export_options.threads for the in-process export (0:
 * automatic, 1: one thread, 2: a second thread for reading); gtracectl
 * always runs with the automatic choice.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "flightrec/export.h"
#include "flightrec/reader.h"
#include "proto/dumpfile.h"
#include "proto/event.h"
#include "proto/varint.h"

#ifndef BENCH_GTRACECTL
#define BENCH_GTRACECTL "gtracectl"
#endif

extern char **environ;

/* ---- a growable byte buffer -------------------------------------------- */

struct buf {
        uint8_t *p;
        size_t n, cap;
};

static void buf_need(struct buf *b, size_t more)
{
        if (b->n + more <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + more)
                cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) {
                fprintf(stderr, "bench-export: out of memory\n");
                exit(1);
        }
        b->cap = cap;
}

static void buf_u(struct buf *b, uint64_t v)
{
        buf_need(b, PROTO_VARINT_MAX);
        b->n = (size_t)(proto_put_uvarint(b->p + b->n, v) - b->p);
}

static void buf_byte(struct buf *b, uint8_t v)
{
        buf_need(b, 1);
        b->p[b->n++] = v;
}

static void buf_bytes(struct buf *b, const void *p, size_t n)
{
        buf_u(b, n);
        buf_need(b, n);
        memcpy(b->p + b->n, p, n);
        b->n += n;
}

static void buf_free(struct buf *b)
{
        free(b->p);
        *b = (struct buf){0};
}

/* ---- the model's vocabulary ---------------------------------------------- */

/* Threads of the simulated process (index into emu.th); workers follow. */
enum { TH_MAIN, TH_AUDIT, TH_IO, TH_WORKER0 };
#define MAX_WORKERS 16
#define MAX_THREADS (TH_WORKER0 + MAX_WORKERS)
#define BASE_TID    4200

/* Stacks: a few fixed call paths, as a real program has. */
enum {
        STK_NONE,
        STK_TASK,
        STK_CREATE,
        STK_BLOCK,
        STK_READY,
        STK_SLEEP,
        STK_READ,
        STK_WRITE,
        STK_AUDIT,
        STK_LOG,
        STK_COUNT
};
static const uint64_t stack_pcs[STK_COUNT][4] = {
        [STK_TASK] = {0x5635301aea54, 0x5635301ae1c0, 0x7f3a25cf30a4},
        [STK_CREATE] = {0x5635301aea61, 0x5635301ae1c0, 0x7f3a25cf30a4},
        [STK_BLOCK] = {0x5635301af7a3, 0x5635301af1e0},
        [STK_READY] = {0x5635301af9d2, 0x5635301af010},
        [STK_SLEEP] = {0x5635301af307, 0x5635301af010},
        [STK_READ] = {0x5635301aef32, 0x5635301aeb00},
        [STK_WRITE] = {0x5635301af8e1, 0x5635301af1e0},
        [STK_AUDIT] = {0x5635301af8b0, 0x5635301af1e0},
        [STK_LOG] = {0x5635301af6c4, 0x5635301af1e0, 0x7f3a25cf30a4},
};
static const unsigned stack_len[STK_COUNT] = {0, 3, 3, 2, 2, 2, 2, 2, 2, 3};

static const char *const thread_names[MAX_THREADS] = {
        "main",      "audit",     "io",        "worker-1",  "worker-2",  "worker-3",  "worker-4",
        "worker-5",  "worker-6",  "worker-7",  "worker-8",  "worker-9",  "worker-10", "worker-11",
        "worker-12", "worker-13", "worker-14", "worker-15", "worker-16",
};

/* One event as the model produces it; the emulator below encodes it. */
struct gev {
        uint64_t time, order; /* clock units; ties keep the order of production */
        uint64_t a, b;        /* fiber or task id, parent / counter value */
        const char *s;        /* name, category, reason (a static string) */
        uint8_t type;
        uint8_t thread;
        uint8_t stack;
        uint8_t msglen;
        char msg[48]; /* LOG message */
};

/* ---- the runtime emulator: events in time order -> generation blobs --------- */

#define RING_BITS 16 /* live fibers and tasks are looked up by id in rings this big */
#define RING_MASK ((1u << RING_BITS) - 1)
#define MAX_DEPTH 8

struct efiber {
        uint64_t id;   /* 0: free slot */
        uint8_t state; /* PROTO_FIBER_* */
        uint32_t thread;
        uint64_t seq;
        const char *reason;
};

struct etask {
        uint64_t id, parent, start;
        const char *name;
};

struct ethread {
        uint64_t tid;
        struct buf chunk; /* events of the batch being filled */
        uint64_t base, last;
        uint64_t nchunk;
        uint64_t fiber; /* running */
        const char *sys;
        uint64_t sys_start;
        const char *reg[MAX_DEPTH];
        uint64_t reg_start[MAX_DEPTH];
        unsigned depth;
};

struct emu {
        uint64_t freq, t0, mono0, wall0;
        uint64_t period; /* clock units per generation */
        size_t chunk_bytes;
        unsigned nthreads;
        struct ethread th[MAX_THREADS + 1]; /* [MAX_THREADS]: the tracer (tid 0) */
        struct efiber fibers[1u << RING_BITS];
        struct etask tasks[1u << (RING_BITS + 1)];
        /* the generation being built */
        uint64_t gen, gen_start, gen_end;
        struct buf batches;
        uint64_t nbatches, nevents;
        const char *strs[64];
        unsigned nstrs;
        uint8_t stk_id[STK_COUNT];
        unsigned nstks;
        /* finished generations */
        struct iovec *gens;
        size_t ngens, cgens;
        uint64_t bytes;
        uint64_t events_total;
};

static uint64_t str_id(struct emu *e, const char *s)
{
        if (!s)
                return 0;
        for (unsigned i = 0; i < e->nstrs; i++)
                if (e->strs[i] == s)
                        return i + 1;
        if (e->nstrs == sizeof(e->strs) / sizeof(e->strs[0])) {
                fprintf(stderr, "bench-export: string table full\n");
                exit(1);
        }
        e->strs[e->nstrs++] = s;
        return e->nstrs;
}

static uint64_t stk_id(struct emu *e, unsigned stk)
{
        if (stk == STK_NONE)
                return 0;
        if (!e->stk_id[stk])
                e->stk_id[stk] = (uint8_t)++e->nstks;
        return e->stk_id[stk];
}

static struct efiber *fiber_slot(struct emu *e, uint64_t id)
{
        return &e->fibers[id & RING_MASK];
}

static struct etask *task_slot(struct emu *e, uint64_t id)
{
        return &e->tasks[id & ((RING_MASK << 1) | 1)];
}

static void flush_chunk(struct emu *e, unsigned ti)
{
        struct ethread *t = &e->th[ti];
        if (!t->nchunk)
                return;
        buf_byte(&e->batches, PROTO_EV_BATCH);
        buf_u(&e->batches, t->tid);
        buf_u(&e->batches, t->base);
        buf_u(&e->batches, 0);
        buf_bytes(&e->batches, t->chunk.p, t->chunk.n);
        e->nbatches++;
        t->chunk.n = 0;
        t->nchunk = 0;
}

/* Starts an event of thread ti at time t: the type byte and the ts delta
 * (from the batch's base for its first event, else from the previous one). */
static struct buf *ev(struct emu *e, unsigned ti, uint8_t type, uint64_t t)
{
        struct ethread *th = &e->th[ti];
        struct buf *b;
        if (th->chunk.n >= e->chunk_bytes)
                flush_chunk(e, ti);
        if (!th->nchunk)
                th->base = th->last > e->gen_start ? th->last : e->gen_start;
        uint64_t prev = th->nchunk ? th->last : th->base;
        if (t < prev)
                t = prev;
        th->nchunk++;
        e->nevents++;
        b = &th->chunk;
        buf_byte(b, type);
        buf_u(b, t - prev);
        th->last = t;
        return b;
}

static void fiber_status(struct emu *e, unsigned ti, struct efiber *f)
{
        struct buf *b = ev(e, ti, PROTO_EV_FIBER_STATUS, e->gen_start);
        buf_u(b, f->id);
        buf_u(b, f->state);
        buf_u(b, str_id(e, "request"));
        buf_u(b, str_id(e, f->state == PROTO_FIBER_WAITING || f->state == PROTO_FIBER_SYSCALL
                                   ? f->reason
                                   : NULL));
        f->seq = 0;
}

/* The status sets that open a generation (docs/format.md, "Status events"). */
static void gen_begin(struct emu *e)
{
        e->gen++;
        e->nbatches = e->nevents = 0;
        e->nstrs = e->nstks = 0;
        memset(e->stk_id, 0, sizeof(e->stk_id));
        e->batches.n = 0;
        for (unsigned ti = 0; ti <= MAX_THREADS; ti++)
                e->th[ti].last = e->gen_start;
        /* Sequence numbers restart with every generation. */
        for (uint32_t i = 0; i <= RING_MASK; i++)
                e->fibers[i].seq = 0;
        for (unsigned ti = 0; ti < e->nthreads; ti++) {
                struct ethread *t = &e->th[ti];
                struct buf *b = ev(e, ti, PROTO_EV_THREAD_STATUS, e->gen_start);
                buf_u(b, t->fiber);
                buf_u(b, str_id(e, t->sys));
                buf_u(b, t->sys ? t->sys_start : 0);
                for (unsigned d = 0; d < t->depth; d++) {
                        b = ev(e, ti, PROTO_EV_REGION_STATUS, e->gen_start);
                        buf_u(b, str_id(e, t->reg[d]));
                        buf_u(b, t->reg_start[d]);
                }
                if (t->fiber)
                        fiber_status(e, ti, fiber_slot(e, t->fiber));
        }
        /* Every other live fiber in the tracer's batch. */
        for (uint32_t i = 0; i <= RING_MASK; i++) {
                struct efiber *f = &e->fibers[i];
                if (f->id && f->state != PROTO_FIBER_RUNNING && f->state != PROTO_FIBER_SYSCALL)
                        fiber_status(e, MAX_THREADS, f);
        }
        for (uint32_t i = 0; i <= ((RING_MASK << 1) | 1); i++) {
                struct etask *k = &e->tasks[i];
                if (!k->id)
                        continue;
                struct buf *b = ev(e, MAX_THREADS, PROTO_EV_TASK_STATUS, e->gen_start);
                buf_u(b, k->id);
                buf_u(b, k->parent);
                buf_u(b, str_id(e, k->name));
                buf_u(b, k->start);
        }
}

static void gen_end(struct emu *e)
{
        struct buf blob = {0};
        /* As the runtime does: the clock is anchored where the generation
         * was cut, its end (docs/format.md, "Clock"). */
        uint64_t mono = e->mono0 +
                        (uint64_t)((unsigned __int128)(e->gen_end - e->t0) * 1000000000u / e->freq);
        uint64_t wall = e->wall0 + (mono - e->mono0);

        /* The tracer's batch first: its status events describe the start. */
        flush_chunk(e, MAX_THREADS);
        for (unsigned ti = 0; ti < e->nthreads; ti++)
                flush_chunk(e, ti);

        buf_byte(&blob, PROTO_EV_GENERATION);
        buf_u(&blob, e->gen);
        buf_u(&blob, BASE_TID);
        buf_u(&blob, PROTO_FORMAT_VERSION);
        buf_byte(&blob, PROTO_EV_CLOCK);
        buf_u(&blob, e->freq);
        buf_u(&blob, e->gen_end);
        buf_u(&blob, mono);
        buf_u(&blob, wall);
        buf_u(&blob, e->gen_start);
        buf_u(&blob, e->gen_end);
        for (unsigned ti = 0; ti < e->nthreads; ti++)
                (void)str_id(e, thread_names[ti]);
        for (unsigned i = 0; i < e->nstrs; i++) {
                buf_byte(&blob, PROTO_EV_STRING);
                buf_u(&blob, i + 1);
                buf_bytes(&blob, e->strs[i], strlen(e->strs[i]));
        }
        for (unsigned s = 0; s < STK_COUNT; s++) {
                struct buf pcs = {0};
                if (!e->stk_id[s])
                        continue;
                for (unsigned i = 0; i < stack_len[s]; i++)
                        buf_u(&pcs, stack_pcs[s][i]);
                buf_byte(&blob, PROTO_EV_STACK);
                buf_u(&blob, e->stk_id[s]);
                buf_bytes(&blob, pcs.p, pcs.n);
                buf_free(&pcs);
        }
        for (unsigned ti = 0; ti < e->nthreads; ti++) {
                buf_byte(&blob, PROTO_EV_THREAD);
                buf_u(&blob, e->th[ti].tid);
                buf_u(&blob, str_id(e, thread_names[ti]));
        }
        buf_need(&blob, e->batches.n);
        memcpy(blob.p + blob.n, e->batches.p, e->batches.n);
        blob.n += e->batches.n;
        buf_byte(&blob, PROTO_EV_END_OF_GENERATION);
        buf_u(&blob, e->gen);
        buf_u(&blob, e->nbatches);
        buf_u(&blob, e->nevents);
        buf_u(&blob, 0);

        if (e->ngens == e->cgens) {
                e->cgens = e->cgens ? e->cgens * 2 : 16;
                e->gens = realloc(e->gens, e->cgens * sizeof(*e->gens));
                if (!e->gens) {
                        fprintf(stderr, "bench-export: out of memory\n");
                        exit(1);
                }
        }
        e->gens[e->ngens++] = (struct iovec){blob.p, blob.n};
        e->bytes += blob.n;
        e->events_total += e->nevents;
}

static void fiber_move(struct emu *e, unsigned ti, const struct gev *g, struct buf **ret)
{
        struct efiber *f = fiber_slot(e, g->a);
        if (f->id != g->a) {
                fprintf(stderr, "bench-export: fiber ring collision (%llu)\n",
                        (unsigned long long)g->a);
                exit(1);
        }
        *ret = ev(e, ti, g->type, g->time);
        buf_u(*ret, f->id);
        buf_u(*ret, ++f->seq);
}

/* Applies one model event (time order) to the emulated runtime and encodes it. */
static void emu_event(struct emu *e, const struct gev *g)
{
        unsigned ti = g->thread;
        struct ethread *t = &e->th[ti];
        struct efiber *f;
        struct etask *k;
        struct buf *b;

        while (g->time >= e->gen_end) {
                gen_end(e);
                e->gen_start = e->gen_end;
                e->gen_end += e->period;
                gen_begin(e);
        }
        switch (g->type) {
        case PROTO_EV_REGION_BEGIN:
                b = ev(e, ti, g->type, g->time);
                buf_u(b, str_id(e, g->s));
                t->reg[t->depth] = g->s;
                t->reg_start[t->depth++] = g->time;
                break;
        case PROTO_EV_REGION_END:
        case PROTO_EV_SYSCALL_END:
                (void)ev(e, ti, g->type, g->time);
                if (g->type == PROTO_EV_REGION_END)
                        t->depth--;
                else
                        t->sys = NULL;
                if (g->type == PROTO_EV_SYSCALL_END && t->fiber)
                        fiber_slot(e, t->fiber)->state = PROTO_FIBER_RUNNING;
                break;
        case PROTO_EV_SYSCALL_BEGIN:
                b = ev(e, ti, g->type, g->time);
                buf_u(b, str_id(e, g->s));
                buf_u(b, stk_id(e, g->stack));
                t->sys = g->s;
                t->sys_start = g->time;
                if (t->fiber) {
                        f = fiber_slot(e, t->fiber);
                        f->state = PROTO_FIBER_SYSCALL;
                        f->reason = g->s;
                }
                break;
        case PROTO_EV_LOG:
                b = ev(e, ti, g->type, g->time);
                buf_u(b, str_id(e, g->s));
                buf_bytes(b, g->msg, g->msglen);
                buf_u(b, stk_id(e, g->stack));
                break;
        case PROTO_EV_COUNTER:
                b = ev(e, ti, g->type, g->time);
                buf_u(b, str_id(e, g->s));
                buf_u(b, proto_zigzag((int64_t)g->b));
                break;
        case PROTO_EV_THREAD_NAME:
                b = ev(e, ti, g->type, g->time);
                buf_u(b, str_id(e, g->s));
                break;
        case PROTO_EV_TASK_BEGIN:
                k = task_slot(e, g->a);
                if (k->id) {
                        fprintf(stderr, "bench-export: task ring collision\n");
                        exit(1);
                }
                *k = (struct etask){g->a, g->b, g->time, g->s};
                b = ev(e, ti, g->type, g->time);
                buf_u(b, g->a);
                buf_u(b, g->b);
                buf_u(b, str_id(e, g->s));
                buf_u(b, stk_id(e, g->stack));
                break;
        case PROTO_EV_TASK_END:
                task_slot(e, g->a)->id = 0;
                b = ev(e, ti, g->type, g->time);
                buf_u(b, g->a);
                break;
        case PROTO_EV_FIBER_CREATE:
                f = fiber_slot(e, g->a);
                if (f->id) {
                        fprintf(stderr, "bench-export: fiber ring collision\n");
                        exit(1);
                }
                *f = (struct efiber){.id = g->a, .state = PROTO_FIBER_RUNNABLE};
                b = ev(e, ti, g->type, g->time);
                buf_u(b, g->a);
                buf_u(b, str_id(e, g->s));
                buf_u(b, stk_id(e, g->stack));
                break;
        case PROTO_EV_FIBER_RUN:
                fiber_move(e, ti, g, &b);
                f = fiber_slot(e, g->a);
                f->state = PROTO_FIBER_RUNNING;
                f->thread = ti;
                t->fiber = g->a;
                break;
        case PROTO_EV_FIBER_BLOCK:
                fiber_move(e, ti, g, &b);
                buf_u(b, str_id(e, g->s));
                buf_u(b, stk_id(e, g->stack));
                f = fiber_slot(e, g->a);
                f->state = PROTO_FIBER_WAITING;
                f->reason = g->s;
                t->fiber = 0;
                break;
        case PROTO_EV_FIBER_READY:
                fiber_move(e, ti, g, &b);
                buf_u(b, stk_id(e, g->stack));
                fiber_slot(e, g->a)->state = PROTO_FIBER_RUNNABLE;
                break;
        case PROTO_EV_FIBER_YIELD:
                fiber_move(e, ti, g, &b);
                fiber_slot(e, g->a)->state = PROTO_FIBER_RUNNABLE;
                t->fiber = 0;
                break;
        case PROTO_EV_FIBER_EXIT:
                fiber_move(e, ti, g, &b);
                fiber_slot(e, g->a)->id = 0;
                t->fiber = 0;
                break;
        default:
                fprintf(stderr, "bench-export: model event 0x%02x not emulated\n", g->type);
                exit(1);
        }
}

/* ---- the model: a request-serving process, simulated in clock units ------- */

struct rng {
        uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
        r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
        return r->s >> 33;
}

/* Uniform in [lo, hi]. */
static uint64_t rnd_range(struct rng *r, uint64_t lo, uint64_t hi)
{
        return lo + rnd(r) % (hi - lo + 1);
}

#define MAX_INFLIGHT 4096

enum { PH_PARSE, PH_LOOKUP, PH_RENDER };
enum { A_ARRIVE, A_RUN, A_IO_DONE, A_AUDIT };

struct req {
        uint64_t id, fiber, task;
        uint8_t phase;
        uint8_t live;
};

struct action {
        uint64_t time, order;
        uint32_t kind;
        uint32_t req;
};

/* A binary min-heap of T ordered by (time, order). */
#define HEAP_DEFINE(name, T)                                                                       \
        struct name {                                                                              \
                T *v;                                                                              \
                size_t n, cap;                                                                     \
        };                                                                                         \
        static int name##_less(const T *a, const T *b)                                             \
        {                                                                                          \
                return a->time < b->time || (a->time == b->time && a->order < b->order);           \
        }                                                                                          \
        static void name##_push(struct name *h, const T *x)                                        \
        {                                                                                          \
                if (h->n == h->cap) {                                                              \
                        h->cap = h->cap ? h->cap * 2 : 1024;                                       \
                        h->v = realloc(h->v, h->cap * sizeof(T));                                  \
                        if (!h->v) {                                                               \
                                fprintf(stderr, "bench-export: out of memory\n");                  \
                                exit(1);                                                           \
                        }                                                                          \
                }                                                                                  \
                size_t i = h->n++;                                                                 \
                while (i > 0 && name##_less(x, &h->v[(i - 1) / 2])) {                              \
                        h->v[i] = h->v[(i - 1) / 2];                                               \
                        i = (i - 1) / 2;                                                           \
                }                                                                                  \
                h->v[i] = *x;                                                                      \
        }                                                                                          \
        static void name##_pop(struct name *h, T *ret)                                             \
        {                                                                                          \
                *ret = h->v[0];                                                                    \
                T last = h->v[--h->n];                                                             \
                size_t i = 0;                                                                      \
                for (;;) {                                                                         \
                        size_t c = 2 * i + 1;                                                      \
                        if (c >= h->n)                                                             \
                                break;                                                             \
                        if (c + 1 < h->n && name##_less(&h->v[c + 1], &h->v[c]))                   \
                                c++;                                                               \
                        if (!name##_less(&h->v[c], &last))                                         \
                                break;                                                             \
                        h->v[i] = h->v[c];                                                         \
                        i = c;                                                                     \
                }                                                                                  \
                if (h->n)                                                                          \
                        h->v[i] = last;                                                            \
        }

HEAP_DEFINE(aheap, struct action)
HEAP_DEFINE(eheap, struct gev)

struct model {
        struct rng rng;
        struct emu *emu;
        struct aheap actions;
        struct eheap pending; /* produced, not yet handed to the emulator */
        uint64_t order;
        uint64_t us; /* clock units per microsecond */
        unsigned workers;
        uint64_t busy[MAX_THREADS]; /* each thread's events are produced in time order */
        struct req reqs[MAX_INFLIGHT];
        uint32_t free_reqs[MAX_INFLIGHT];
        uint32_t nfree;
        uint64_t next_req, next_fiber, next_task;
        uint64_t run_queue, inflight;
        uint64_t arrival_gap; /* mean, clock units */
};

static void act(struct model *m, uint64_t time, uint32_t kind, uint32_t req)
{
        struct action a = {time, m->order++, kind, req};
        aheap_push(&m->actions, &a);
}

/* Produces an event of thread ti at t (not before the thread's previous one);
 * returns the time used. */
static uint64_t emit(struct model *m, unsigned ti, uint64_t t, uint8_t type, uint64_t a, uint64_t b,
                     const char *s, uint8_t stack)
{
        struct gev g = {.order = m->order++,
                        .a = a,
                        .b = b,
                        .s = s,
                        .type = type,
                        .thread = (uint8_t)ti,
                        .stack = stack};
        if (t < m->busy[ti])
                t = m->busy[ti];
        g.time = t;
        m->busy[ti] = t;
        eheap_push(&m->pending, &g);
        return t;
}

static uint64_t emit_log(struct model *m, unsigned ti, uint64_t t, const char *cat,
                         const char *what, uint64_t id)
{
        struct gev g = {.order = m->order++,
                        .s = cat,
                        .type = PROTO_EV_LOG,
                        .thread = (uint8_t)ti,
                        .stack = STK_LOG};
        int n = snprintf(g.msg, sizeof(g.msg), "request %llu: %s", (unsigned long long)id, what);
        g.msglen = (uint8_t)(n > 0 && (size_t)n < sizeof(g.msg) ? n : 0);
        if (t < m->busy[ti])
                t = m->busy[ti];
        g.time = t;
        m->busy[ti] = t;
        eheap_push(&m->pending, &g);
        return t;
}

/* A few clock units to a few microseconds between two events of a slice. */
static uint64_t step(struct model *m, uint64_t lo_ns, uint64_t hi_ns)
{
        return rnd_range(&m->rng, lo_ns * m->us / 1000 + 1, hi_ns * m->us / 1000 + 1);
}

static void req_done(struct model *m, uint32_t ri)
{
        m->reqs[ri].live = 0;
        m->free_reqs[m->nfree++] = ri;
        m->inflight--;
}

/* One slice of a request on a worker: what examples/service.c does per phase. */
static void run_slice(struct model *m, uint64_t now, uint32_t ri)
{
        struct req *r = &m->reqs[ri];
        unsigned w = TH_WORKER0, ti;
        uint64_t t;

        /* The worker that is free first (they all pull from one queue). */
        for (unsigned i = 1; i < m->workers; i++)
                if (m->busy[TH_WORKER0 + i] < m->busy[w])
                        w = TH_WORKER0 + i;
        ti = w;
        t = now > m->busy[ti] ? now : m->busy[ti];
        m->run_queue = m->run_queue ? m->run_queue - 1 : 0;
        t = emit(m, ti, t, PROTO_EV_COUNTER, 0, m->run_queue, "run_queue", 0);
        t = emit(m, ti, t + step(m, 20, 200), PROTO_EV_FIBER_RUN, r->fiber, 0, NULL, 0);
        switch (r->phase) {
        case PH_PARSE:
                t = emit(m, ti, t + step(m, 10, 60), PROTO_EV_REGION_BEGIN, 0, 0, "parse", 0);
                if (rnd(&m->rng) % 100 < 3) {
                        t = emit_log(m, ti, t + step(m, 1000, 6000), "error", "bad input", r->id);
                        t = emit(m, ti, t + step(m, 20, 100), PROTO_EV_REGION_END, 0, 0, NULL, 0);
                        t = emit(m, ti, t + step(m, 50, 200), PROTO_EV_TASK_END, r->task, 0, NULL,
                                 0);
                        emit(m, ti, t + step(m, 20, 100), PROTO_EV_FIBER_EXIT, r->fiber, 0, NULL,
                             0);
                        req_done(m, ri);
                        return;
                }
                t = emit(m, ti, t + step(m, 2000, 9000), PROTO_EV_REGION_END, 0, 0, NULL, 0);
                t = emit(m, ti, t + step(m, 20, 100), PROTO_EV_FIBER_BLOCK, r->fiber, 0, "io",
                         STK_BLOCK);
                r->phase = PH_LOOKUP;
                /* The backend answers in 50 us .. 2 ms. */
                act(m, t + step(m, 50000, 2000000), A_IO_DONE, ri);
                return;
        case PH_LOOKUP:
                t = emit(m, ti, t + step(m, 10, 60), PROTO_EV_REGION_BEGIN, 0, 0, "lookup", 0);
                if (rnd(&m->rng) % 100 < 2) {
                        t = emit_log(m, ti, t + step(m, 1000, 4000), "error", "no such key", r->id);
                        t = emit(m, ti, t + step(m, 20, 100), PROTO_EV_REGION_END, 0, 0, NULL, 0);
                        t = emit(m, ti, t + step(m, 50, 200), PROTO_EV_TASK_END, r->task, 0, NULL,
                                 0);
                        emit(m, ti, t + step(m, 20, 100), PROTO_EV_FIBER_EXIT, r->fiber, 0, NULL,
                             0);
                        req_done(m, ri);
                        return;
                }
                t = emit(m, ti, t + step(m, 1000, 5000), PROTO_EV_REGION_END, 0, 0, NULL, 0);
                t = emit(m, ti, t + step(m, 20, 100), PROTO_EV_FIBER_YIELD, r->fiber, 0, NULL, 0);
                r->phase = PH_RENDER;
                m->run_queue++;
                act(m, t, A_RUN, ri);
                return;
        default: {
                uint64_t audit = ++m->next_task;
                t = emit(m, ti, t + step(m, 10, 60), PROTO_EV_REGION_BEGIN, 0, 0, "render", 0);
                t = emit(m, ti, t + step(m, 3000, 15000), PROTO_EV_TASK_BEGIN, audit, r->task,
                         "audit", STK_AUDIT);
                t = emit(m, ti, t + step(m, 50, 300), PROTO_EV_SYSCALL_BEGIN, 0, 0, "write",
                         STK_WRITE);
                t = emit(m, ti, t + step(m, 1000, 4000), PROTO_EV_SYSCALL_END, 0, 0, NULL, 0);
                t = emit(m, ti, t + step(m, 50, 300), PROTO_EV_REGION_END, 0, 0, NULL, 0);
                t = emit(m, ti, t + step(m, 50, 200), PROTO_EV_TASK_END, r->task, 0, NULL, 0);
                t = emit(m, ti, t + step(m, 20, 100), PROTO_EV_FIBER_EXIT, r->fiber, 0, NULL, 0);
                req_done(m, ri);
                /* The audit thread reads the record a little later and ends the child. */
                act(m, t + step(m, 2000, 50000), A_AUDIT, (uint32_t)audit);
                return;
        }
        }
}

static void arrive(struct model *m, uint64_t now)
{
        uint64_t t = now;
        if (!m->nfree) {
                t = emit_log(m, TH_MAIN, t, "warn", "shed at admission", ++m->next_req);
        } else {
                uint32_t ri = m->free_reqs[--m->nfree];
                struct req *r = &m->reqs[ri];
                *r = (struct req){.id = ++m->next_req,
                                  .fiber = ++m->next_fiber,
                                  .task = ++m->next_task,
                                  .phase = PH_PARSE,
                                  .live = 1};
                m->inflight++;
                t = emit(m, TH_MAIN, t, PROTO_EV_TASK_BEGIN, r->task, 0, "request", STK_TASK);
                t = emit(m, TH_MAIN, t + step(m, 100, 600), PROTO_EV_FIBER_CREATE, r->fiber, 0,
                         "request", STK_CREATE);
                m->run_queue++;
                act(m, t, A_RUN, ri);
        }
        t = emit(m, TH_MAIN, t + step(m, 50, 300), PROTO_EV_COUNTER, 0, m->inflight, "inflight", 0);
        /* Exponential-ish inter-arrival times: a uniform draw around the mean. */
        act(m, now + rnd_range(&m->rng, 1, 2 * m->arrival_gap), A_ARRIVE, 0);
}

/* Hands every produced event before `until` to the emulator, in time order. */
static void drain(struct model *m, uint64_t until)
{
        struct gev g;
        while (m->pending.n && m->pending.v[0].time < until) {
                eheap_pop(&m->pending, &g);
                emu_event(m->emu, &g);
        }
}

static void model_run(struct model *m, uint64_t target_bytes)
{
        struct emu *e = m->emu;
        struct action a;
        uint64_t t = e->t0;

        for (uint32_t i = 0; i < MAX_INFLIGHT; i++)
                m->free_reqs[m->nfree++] = MAX_INFLIGHT - 1 - i;
        for (unsigned ti = 0; ti < e->nthreads; ti++) {
                m->busy[ti] = t;
                emit(m, ti, t + step(m, 100, 1000), PROTO_EV_THREAD_NAME, 0, 0, thread_names[ti],
                     0);
        }
        emit(m, TH_MAIN, t + step(m, 1000, 2000), PROTO_EV_REGION_BEGIN, 0, 0, "serve", 0);
        emit(m, TH_IO, t + step(m, 1000, 2000), PROTO_EV_SYSCALL_BEGIN, 0, 0, "clock_nanosleep",
             STK_SLEEP);
        emit(m, TH_AUDIT, t + step(m, 1000, 2000), PROTO_EV_SYSCALL_BEGIN, 0, 0, "read", STK_READ);
        act(m, t + 5000 * m->us, A_ARRIVE, 0);

        while (e->bytes + e->batches.n < target_bytes) {
                aheap_pop(&m->actions, &a);
                drain(m, a.time);
                switch (a.kind) {
                case A_ARRIVE: arrive(m, a.time); break;
                case A_RUN: run_slice(m, a.time, a.req); break;
                case A_IO_DONE: {
                        struct req *r = &m->reqs[a.req];
                        uint64_t u = emit(m, TH_IO, a.time, PROTO_EV_SYSCALL_END, 0, 0, NULL, 0);
                        u = emit(m, TH_IO, u + step(m, 100, 500), PROTO_EV_FIBER_READY, r->fiber, 0,
                                 NULL, STK_READY);
                        emit(m, TH_IO, u + step(m, 100, 400), PROTO_EV_SYSCALL_BEGIN, 0, 0,
                             "clock_nanosleep", STK_SLEEP);
                        m->run_queue++;
                        act(m, u, A_RUN, a.req);
                        break;
                }
                case A_AUDIT: {
                        uint64_t u = emit(m, TH_AUDIT, a.time, PROTO_EV_SYSCALL_END, 0, 0, NULL, 0);
                        u = emit(m, TH_AUDIT, u + step(m, 100, 400), PROTO_EV_TASK_END, a.req, 0,
                                 NULL, 0);
                        emit(m, TH_AUDIT, u + step(m, 100, 400), PROTO_EV_SYSCALL_BEGIN, 0, 0,
                             "read", STK_READ);
                        break;
                }
                default: break;
                }
        }
        /* Finish: hand over everything produced, end the generation there. */
        drain(m, UINT64_MAX);
        e->gen_end = e->th[0].last;
        for (unsigned ti = 0; ti < e->nthreads; ti++)
                if (e->th[ti].last > e->gen_end)
                        e->gen_end = e->th[ti].last;
        e->gen_end++;
        gen_end(e);
}

/* Writes the dump; returns its size. */
static int generate(const char *path, uint64_t size, uint64_t rate, unsigned workers,
                    uint64_t period_ms, size_t chunk, uint64_t seed, uint64_t *ret_bytes,
                    uint64_t *ret_events, uint64_t *ret_gens)
{
        struct emu *e = calloc(1, sizeof(*e));
        struct model *m = calloc(1, sizeof(*m));
        struct stat st;
        int fd, r;

        if (!e || !m)
                return -ENOMEM;
        /* A 2.4 GHz TSC shifted right by 6, as the runtime's clock is: a
         * clock unit of about 27 ns (docs/format.md, "Clock"). */
        e->freq = 37500000;
        e->t0 = 1146192689000ull; /* about an hour of uptime, in clock units */
        e->mono0 = 3820000000000ull;
        e->wall0 = 1795670400000000000ull;
        e->period = period_ms * (e->freq / 1000);
        e->chunk_bytes = chunk;
        e->nthreads = TH_WORKER0 + workers;
        for (unsigned ti = 0; ti < e->nthreads; ti++)
                e->th[ti].tid = BASE_TID + ti;
        e->th[MAX_THREADS].tid = 0;
        e->gen_start = e->t0;
        e->gen_end = e->t0 + e->period;
        gen_begin(e);

        m->emu = e;
        m->rng.s = seed;
        m->us = e->freq / 1000000;
        m->workers = workers;
        m->arrival_gap = e->freq / rate;
        model_run(m, size);

        struct proto_dump_meta meta = {
                .pid = BASE_TID,
                .dump_time_ns = e->wall0 + 3600000000000ull,
                .start_time_ns = e->wall0 - 1000000000ull,
                .flushed = 1,
                .command = "example-service",
                .executable = "/usr/local/bin/example-service",
                .host = "bench",
                .reason = "bench-export",
                .origin = "process",
                .producer = "bench-export",
        };
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                r = -errno;
        else
                r = proto_dump_write(fd, &meta, e->gens, e->ngens);
        if (fd >= 0 && close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && stat(path, &st) == 0)
                *ret_bytes = (uint64_t)st.st_size;
        *ret_events = e->events_total;
        *ret_gens = e->ngens;
        for (size_t i = 0; i < e->ngens; i++)
                free(e->gens[i].iov_base);
        free(e->gens);
        for (unsigned ti = 0; ti <= MAX_THREADS; ti++)
                buf_free(&e->th[ti].chunk);
        buf_free(&e->batches);
        free(m->actions.v);
        free(m->pending.v);
        free(e);
        free(m);
        return r;
}

/* ---- timing ----------------------------------------------------------------- */

static double cpu_s(int who)
{
        struct rusage ru;
        getrusage(who, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static unsigned export_threads; /* --threads: fr_export_options.threads */

static int run_inprocess(const char *path, int do_export, uint64_t *ret_out)
{
        struct fr_dump *d;
        struct fr_error err;
        int r = fr_dump_open(path, &d, &err);
        if (r < 0) {
                fprintf(stderr, "bench-export: %s: %s\n", path, err.msg);
                return r;
        }
        if (do_export) {
                struct fr_export_result res;
                int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
                struct fr_export_options o = {.producer = "bench-export",
                                              .threads = export_threads};
                r = fr_export_chrome(d, fd, &o, &res, &err);
                close(fd);
                if (r == 0 && ret_out)
                        *ret_out = res.out_bytes;
        } else {
                r = fr_dump_parse(d, NULL, NULL, &err);
        }
        if (r)
                fprintf(stderr, "bench-export: %s: %s\n", path, err.msg);
        fr_dump_free(d);
        return r;
}

static int run_gtracectl(const char *gtracectl, const char *path, const char *out)
{
        posix_spawn_file_actions_t fa;
        pid_t pid;
        int status, r;
        /* posix_spawn takes char *const argv[]: give it writable copies. */
        char a_prog[4200], a_export[] = "export", a_path[4200], a_fmt[] = "--format",
                           a_chrome[] = "chrome", a_o[] = "-o", a_out[4300];
        char *argv[] = {a_prog, a_export, a_path, a_fmt, a_chrome, out ? a_o : NULL, a_out, NULL};

        snprintf(a_prog, sizeof(a_prog), "%s", gtracectl);
        snprintf(a_path, sizeof(a_path), "%s", path);
        snprintf(a_out, sizeof(a_out), "%s", out ? out : "");

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        r = posix_spawn(&pid, gtracectl, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r) {
                fprintf(stderr, "bench-export: cannot run %s: %s\n", gtracectl, strerror(r));
                return -r;
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bench-export: %s export failed (status %d)\n", gtracectl, status);
                return -EIO;
        }
        return 0;
}

enum { M_EXPORT, M_VALIDATE, M_CLI, M_CLI_FILE, M_COUNT };
static const char *const mode_names[M_COUNT] = {
        "export, in process (fr_export_chrome to /dev/null)",
        "validate, in process (the reader alone)",
        "gtracectl export > /dev/null",
        "gtracectl export -o FILE (fsync included)",
};

static void usage(FILE *f)
{
        fprintf(f, "usage: bench-export [--size 64M] [--rate 40000] [--workers 4] "
                   "[--period-ms 1000]\n"
                   "                    [--chunk 64K] [--seed 1] [--rounds 7] [--file PATH] "
                   "[--keep]\n"
                   "                    [--gtracectl PATH] [--output-file] "
                   "[--generate-only] [--threads 0|1|2] [--reuse]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"size", required_argument, NULL, 's'},
                {"rate", required_argument, NULL, 'r'},
                {"workers", required_argument, NULL, 'w'},
                {"period-ms", required_argument, NULL, 'p'},
                {"chunk", required_argument, NULL, 'c'},
                {"seed", required_argument, NULL, 'S'},
                {"rounds", required_argument, NULL, 'n'},
                {"file", required_argument, NULL, 'f'},
                {"keep", no_argument, NULL, 'k'},
                {"gtracectl", required_argument, NULL, 'g'},
                {"output-file", no_argument, NULL, 'o'},
                {"generate-only", no_argument, NULL, 'G'},
                {"threads", required_argument, NULL, 't'},
                {"reuse", no_argument, NULL, 'R'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        uint64_t size = 64u << 20, rate = 40000, period = 1000, chunk = 64u << 10, seed = 1;
        unsigned workers = 4, rounds = 7;
        const char *file = NULL, *gtracectl = BENCH_GTRACECTL;
        int keep = 0, with_file = 0, generate_only = 0, reuse = 0, c;
        char tmpl[] = "/tmp/bench-export.XXXXXX", path[4200], out[4300];

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                case 'c':
                        if (bench_parse_size(optarg, c == 's' ? &size : &chunk) < 0) {
                                usage(stderr);
                                return 2;
                        }
                        break;
                case 'r': rate = strtoull(optarg, NULL, 10); break;
                case 'w': workers = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'p': period = strtoull(optarg, NULL, 10); break;
                case 'S': seed = strtoull(optarg, NULL, 10); break;
                case 'n': rounds = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'f': file = optarg; break;
                case 'k': keep = 1; break;
                case 'g': gtracectl = optarg; break;
                case 'o': with_file = 1; break;
                case 'G':
                        generate_only = 1;
                        keep = 1;
                        break;
                case 't': export_threads = (unsigned)strtoul(optarg, NULL, 10); break;
                case 'R': reuse = 1; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (workers < 1 || workers > MAX_WORKERS || rate < 1 || rate > 10000000 || period < 1 ||
            chunk < 256 || rounds < 1 || rounds > 1000 || size < 4096) {
                usage(stderr);
                return 2;
        }
        if (file) {
                snprintf(path, sizeof(path), "%s", file);
        } else {
                if (!mkdtemp(tmpl)) {
                        perror("bench-export: mkdtemp");
                        return 1;
                }
                snprintf(path, sizeof(path), "%s/bench.gtrace", tmpl);
        }
        snprintf(out, sizeof(out), "%s.json", path);

        uint64_t bytes = 0, events = 0, gens = 0, t0 = bench_mono_ns();
        struct stat fst;
        int r;
        if (reuse && file && stat(path, &fst) == 0) {
                bytes = (uint64_t)fst.st_size;
                r = 0;
        } else {
                r = generate(path, size, rate, workers, period, (size_t)chunk, seed, &bytes,
                             &events, &gens);
        }
        if (r < 0) {
                fprintf(stderr, "bench-export: writing %s: %s\n", path, strerror(-r));
                return 1;
        }
        printf("dump=%s bytes=%llu events=%llu generations=%llu seed=%llu generated_in=%.2fs\n",
               path, (unsigned long long)bytes, (unsigned long long)events,
               (unsigned long long)gens, (unsigned long long)seed,
               (double)(bench_mono_ns() - t0) / 1e9);
        fflush(stdout);
        if (generate_only)
                return 0;

        uint64_t json_bytes = 0;
        if (run_inprocess(path, 1, &json_bytes) < 0)
                return 1;
        double *mbs[M_COUNT], *cpu[M_COUNT];
        unsigned nmodes = with_file ? M_COUNT : M_CLI_FILE;
        for (unsigned k = 0; k < M_COUNT; k++) {
                mbs[k] = calloc(rounds, sizeof(double));
                cpu[k] = calloc(rounds, sizeof(double));
                if (!mbs[k] || !cpu[k])
                        return 1;
        }
        for (unsigned i = 0; i < rounds; i++) {
                for (unsigned k = 0; k < nmodes; k++) {
                        int child = k >= M_CLI;
                        double c0 = cpu_s(child ? RUSAGE_CHILDREN : RUSAGE_SELF);
                        uint64_t s = bench_mono_ns();
                        if (k == M_EXPORT || k == M_VALIDATE)
                                r = run_inprocess(path, k == M_EXPORT, NULL);
                        else
                                r = run_gtracectl(gtracectl, path, k == M_CLI_FILE ? out : NULL);
                        if (r < 0)
                                return 1;
                        double secs = (double)(bench_mono_ns() - s) / 1e9;
                        mbs[k][i] = (double)bytes / 1e6 / secs;
                        cpu[k][i] = (cpu_s(child ? RUSAGE_CHILDREN : RUSAGE_SELF) - c0) /
                                    ((double)bytes / 1e6) * 1e3;
                }
        }
        printf("json_bytes=%llu (%.1f per byte of dump)\n", (unsigned long long)json_bytes,
               (double)json_bytes / (double)bytes);
        for (unsigned k = 0; k < nmodes; k++) {
                struct bench_stat st, sc;
                char res[160], cmp[160], what[256];
                bench_stat(mbs[k], rounds, &st);
                bench_stat(cpu[k], rounds, &sc);
                bench_fmt_stat(res, sizeof(res), &st, "MB/s", 1);
                snprintf(cmp, sizeof(cmp), "min %.1f, max %.1f; CPU %.2f ms per MB", st.min, st.max,
                         sc.median);
                snprintf(what, sizeof(what), "%s, %.1f MB dump, %u rounds", mode_names[k],
                         (double)bytes / 1e6, rounds);
                bench_row(what, res, cmp, k == M_VALIDATE ? "" : ">= 50 MB/s",
                          k == M_VALIDATE   ? ""
                          : st.median >= 50 ? "yes"
                                            : "no");
        }
        if (!keep) {
                unlink(path);
                if (!file)
                        rmdir(tmpl);
        }
        unlink(out);
        return 0;
}
