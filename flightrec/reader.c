/* SPDX-License-Identifier: MIT */
/*
 * The generation parser and validator.
 *
 * A generation blob is untrusted input (a dump file from anywhere, or bytes a
 * producer pushed to gtraced), and it is also the hot path of every file
 * tool: `gtracectl export` must stream at tens of megabytes per second
 * through here.  Both needs shape the design:
 *
 *   Phase 1, index.  One pass over the top-level records checks their
 *   encoding and section order and builds the per-generation tables: strings
 *   (copied once, NUL-terminated, into one arena), stacks (decoded once into
 *   one array of PCs), threads, and the position of every batch.  Nothing in
 *   a batch is looked at yet.
 *
 *   Phase 2, decode and check each thread.  Every batch is decoded once, in
 *   blob order, continuing its thread's state: timestamps never go back,
 *   THREAD_STATUS comes first, regions and blocking calls pair up, tasks are
 *   recorded.  Status events (kind 'T') are applied here, to the fiber and
 *   task tables, and remembered for delivery; totals are summed and compared
 *   with END_OF_GENERATION.  Every error that can be found without knowing
 *   the cross-thread order is found here, before any callback runs.
 *
 *   Phase 3, merge and deliver.  Status events go out first (they describe
 *   the state when the generation began, wherever the runtime happened to
 *   write them).  Then each thread is a cursor into its own batches and the
 *   threads' streams are merged: repeatedly take, among the thread heads that
 *   are *ready*, the one with the smallest time.  Most events are always
 *   ready; a fiber transition with sequence s is ready when its fiber is at
 *   s - 1 (FIBER_CREATE: when the fiber does not exist), and a TASK_END when
 *   its task had a TASK_STATUS or its TASK_BEGIN was delivered (a task's end
 *   cannot precede its begin, whatever two threads' clocks say).  A head
 *   that is not ready parks its thread on exactly the condition it needs
 *   (see struct rd_waits), and the event that brings it about wakes those
 *   threads, so the merge costs O(log threads) per event however the
 *   threads interleave.  When every remaining head is parked, no order
 *   satisfies the constraints: that is the error, and it names the fiber or
 *   task.  The fiber state machine is checked as transitions are applied,
 *   so those errors may come after some of the generation's events were
 *   delivered (generation_end is not called then).
 *
 * Nothing is allocated per event.  The tables are open-addressing hash maps
 * and growable arrays owned by a struct fr_parser and reused from one
 * generation to the next (fr_dump_parse keeps one parser for the whole file).
 * Every table grows only with records actually read, so memory stays
 * proportional to the input; the blob itself is capped at
 * PROTO_MAX_GENERATION_BYTES, which also keeps every offset in 32 bits.
 *
 * Interpretations of docs/format.md that the checks below rely on:
 *  - THREAD_STATUS is the first event of every thread that has batch events;
 *    REGION_STATUS, and the FIBER_STATUS of the fiber a thread runs, come
 *    before that thread's first non-status event.  FIBER_STATUS of a fiber
 *    that is not running, and TASK_STATUS, may appear anywhere in any batch
 *    (the runtime writes them lazily, just before the first transition).
 *  - The tracer's batches (thread id 0) hold only FIBER_STATUS and
 *    TASK_STATUS, need no THREAD record and no THREAD_STATUS.
 *  - A blocking call is open at the start when THREAD_STATUS has a non-zero
 *    syscall name or start time; a running fiber's FIBER_STATUS says
 *    `syscall` exactly when its thread's THREAD_STATUS has one open.
 *  - END_OF_GENERATION's `events` counts every event inside batches,
 *    status events included.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "flightrec/reader.h"
#include "event-kinds.h"
#include "fralloc.h"
#include "proto/varint.h"

#define RD_NONE UINT32_MAX

/* ---- growable arrays and the u64 -> index map ---------------------------- */

/*
 * Memory accounting.  Every table grows only with records actually read, but
 * a record of three bytes can still cost a hundred bytes of tables (a task,
 * its map slot, the slack of doubling), so a parser also keeps the total
 * under a budget: FR_PARSER_MAX_MEMORY, or what fr_parser_set_max_memory()
 * set.  Exceeding it fails the generation with -EMSGSIZE rather than letting
 * a hostile 256 MiB blob take gigabytes.
 */
struct rd_budget {
        size_t used, max;
        int over; /* the last failure was the budget, not malloc */
};

static int rd_charge(struct rd_budget *b, size_t grow)
{
        if (grow > b->max - b->used) {
                b->over = 1;
                return -ENOMEM;
        }
        b->used += grow;
        return 0;
}

static int rd_reserve(struct rd_budget *b, void **p, size_t *cap, size_t need, size_t elem)
{
        size_t nc;
        void *q;

        if (need <= *cap)
                return 0;
        nc = *cap ? *cap : 16;
        while (nc < need) {
                if (nc > SIZE_MAX / 2 / elem)
                        return -ENOMEM;
                nc *= 2;
        }
        if (rd_charge(b, (nc - *cap) * elem) < 0)
                return -ENOMEM;
        q = fr_realloc(*p, nc * elem);
        if (!q) {
                b->used -= (nc - *cap) * elem;
                return -ENOMEM;
        }
        *p = q;
        *cap = nc;
        return 0;
}

#define RD_RESERVE(arr, cap, need)                                                                 \
        rd_reserve(&r->budget, (void **)&(arr), &(cap), (need), sizeof(*(arr)))

/*
 * Open addressing with linear probing, load factor at most 1/2.  A slot is
 * occupied when its stamp equals the map's stamp, so emptying the map for
 * the next generation is one increment rather than a sweep.  Key, value and
 * stamp share a slot: a lookup touches one cache line.
 *
 * The runtime numbers strings, tasks and fibers from counters, and events
 * mostly refer to recent ones, so the hash keeps blocks of RD_BLOCK
 * consecutive ids in consecutive slots (two cache lines) and scatters the
 * blocks: a generation's busy tasks then share a few cache lines instead of
 * one each, which is the difference between cache hits and memory misses
 * once a generation holds tens of thousands of tasks.  (Passing the low bits
 * straight through would be even more local, but long runs of ids then form
 * long clusters that any other id landing inside must probe across.)
 *
 * Ids come from untrusted input, and any fixed hash can be collided on
 * purpose, so every insert counts its probes: past RD_PROBE_LIMIT the map
 * rebuilds itself with a scrambling hash keyed by a per-map seed.  Lookups
 * of present keys follow their insert's path, so they are bounded the same
 * way.
 */
#define RD_PROBE_LIMIT 64
#define RD_BLOCK_BITS 3 /* 8 ids per block */

struct rd_slot {
        uint64_t key;
        uint32_t val;
        uint32_t stamp;
};

struct rd_map {
        struct rd_slot *slots;
        uint64_t seed;  /* scrambling hash when non-zero */
        uint32_t stamp;
        uint32_t bits;  /* capacity 1 << bits; 0: nothing allocated */
        uint32_t n;
};

static inline uint32_t rd_hash(const struct rd_map *m, uint64_t k)
{
        if (m->seed)
                return (uint32_t)(((k ^ m->seed) * 0x9e3779b97f4a7c15ull) >> (64 - m->bits));
        /* m->bits >= 6 > RD_BLOCK_BITS */
        return (uint32_t)(((k >> RD_BLOCK_BITS) * 0x9e3779b97f4a7c15ull) >>
                          (64 - (m->bits - RD_BLOCK_BITS)))
                       << RD_BLOCK_BITS |
               (uint32_t)(k & ((1u << RD_BLOCK_BITS) - 1));
}

static uint32_t rd_map_get(const struct rd_map *m, uint64_t key)
{
        uint32_t mask, i;

        if (m->bits == 0)
                return RD_NONE;
        mask = (1u << m->bits) - 1;
        for (i = rd_hash(m, key);; i = (i + 1) & mask) {
                const struct rd_slot *sl = &m->slots[i];
                if (sl->stamp != m->stamp)
                        return RD_NONE;
                if (sl->key == key)
                        return sl->val;
        }
}

/* Returns the number of slots probed. */
static uint32_t rd_map_insert_slot(struct rd_map *m, uint64_t key, uint32_t val)
{
        uint32_t mask = (1u << m->bits) - 1, i, probes = 1;

        for (i = rd_hash(m, key); m->slots[i].stamp == m->stamp; i = (i + 1) & mask)
                probes++;
        m->slots[i] = (struct rd_slot){key, val, m->stamp};
        m->n++;
        return probes;
}

/* Rebuilds m with 1 << bits slots, scrambled or not. */
static int rd_map_rebuild(struct rd_budget *b, struct rd_map *m, uint32_t bits, int scramble)
{
        struct rd_map nm = {.stamp = 1, .bits = bits};
        size_t old = m->bits ? sizeof(struct rd_slot) << m->bits : 0;

        if (bits > 31 || rd_charge(b, sizeof(struct rd_slot) << bits) < 0)
                return -ENOMEM;
        nm.slots = fr_calloc((size_t)1 << bits, sizeof(struct rd_slot));
        if (!nm.slots) {
                b->used -= sizeof(struct rd_slot) << bits;
                return -ENOMEM;
        }
        b->used -= old;
        if (scramble || m->seed)
                /* ASLR makes the heap address a secret enough key for this. */
                nm.seed = ((uint64_t)(uintptr_t)nm.slots * 0xff51afd7ed558ccdull) | 1;
        for (uint32_t i = 0; m->bits && i < (1u << m->bits); i++)
                if (m->slots[i].stamp == m->stamp)
                        rd_map_insert_slot(&nm, m->slots[i].key, m->slots[i].val);
        fr_free(m->slots);
        *m = nm;
        return 0;
}

/* Adds key (which must be absent). */
static int rd_map_put(struct rd_budget *b, struct rd_map *m, uint64_t key, uint32_t val)
{
        if (m->bits == 0 || (uint64_t)(m->n + 1) * 2 > (1ull << m->bits)) {
                if (rd_map_rebuild(b, m, m->bits ? m->bits + 1 : 6, 0) < 0)
                        return -ENOMEM;
        }
        if (rd_map_insert_slot(m, key, val) > RD_PROBE_LIMIT && !m->seed)
                return rd_map_rebuild(b, m, m->bits, 1);
        return 0;
}

static void rd_map_clear(struct rd_map *m)
{
        m->n = 0;
        if (m->bits == 0)
                return;
        if (++m->stamp == 0) {
                for (uint32_t i = 0; i < (1u << m->bits); i++)
                        m->slots[i].stamp = 0;
                m->stamp = 1;
        }
}

static void rd_map_done(struct rd_map *m)
{
        fr_free(m->slots);
        *m = (struct rd_map){0};
}

/*
 * Fibers and tasks are looked up for every transition, begin and end, in
 * phase 2 and again in phase 3, and a busy generation has a hundred
 * thousand of them: too many for a hash table to stay in cache.  The
 * runtime numbers both from counters, so the ids that FIBER_CREATE and
 * TASK_BEGIN introduce in one generation are nearly consecutive: they get a
 * window, idx[id - base] holding the entry's index, opened by the first
 * such id and widened while it stays dense (at most RD_WINDOW_SLACK slots
 * per entry, plus RD_WINDOW_MIN).  Any other event about an id above the
 * window's base widens it too under the same rule: phase 2 reads batches
 * in blob order, so a task's end or a fiber's run on one thread often
 * comes before the begin or create in another thread's later batch, and
 * such ids are as dense as the rest.  Other ids (restated fibers and tasks
 * from long ago, any producer's sparse ids) live in the hash map.
 */
#define RD_WINDOW_SLACK 4
#define RD_WINDOW_MIN 4096

struct rd_window {
        uint32_t *idx;
        size_t n, cap; /* ids [base, base + n) */
        uint64_t base;
};

static inline uint32_t rd_window_get(const struct rd_window *w, uint64_t id)
{
        uint64_t k = id - w->base;
        return k < w->n ? w->idx[k] : RD_NONE;
}

/* Puts id -> val in the window if it stays dense with count entries: 1
 * placed, 0 not (use the map), -ENOMEM. */
static int rd_window_put(struct rd_budget *b, struct rd_window *w, uint64_t id, uint32_t val,
                         size_t count)
{
        size_t need;

        if (!w->n)
                w->base = id;
        if (id < w->base || id - w->base >= (uint64_t)RD_WINDOW_SLACK * (count + 1) + RD_WINDOW_MIN)
                return 0;
        need = (size_t)(id - w->base) + 1;
        if (need > w->n) {
                if (rd_reserve(b, (void **)&w->idx, &w->cap, need, sizeof(*w->idx)) < 0)
                        return -ENOMEM;
                memset(w->idx + w->n, 0xff, (need - w->n) * sizeof(*w->idx));
                w->n = need;
        }
        w->idx[id - w->base] = val;
        return 1;
}

/* ---- parser state -------------------------------------------------------- */

struct rd_str {
        uint64_t id;
        uint32_t off; /* into sarena, NUL-terminated */
        uint32_t len;
};

struct rd_stack {
        uint64_t id;
        uint32_t off; /* into pcs */
        uint32_t n;
};

struct rd_batch {
        uint32_t pos;  /* events payload, relative to the blob */
        uint32_t len;
        uint32_t rec;  /* offset of the BATCH record */
        uint32_t thread;
        uint32_t next; /* this thread's next batch, RD_NONE at the end */
        uint64_t base;
        uint64_t lost;
};

struct rd_thread {
        uint64_t tid;
        uint64_t name; /* string id */
        uint32_t first_batch, last_batch;
        uint8_t tracer;        /* tid 0: the tracer's own batches */
        uint8_t has_status;    /* THREAD_STATUS seen */
        uint8_t b_seen;        /* a non-status event seen */
        uint8_t syscall_open;  /* phase 2: a blocking call is open */
        uint8_t status_syscall;
        uint32_t status_off;   /* of THREAD_STATUS */
        uint64_t status_fiber; /* THREAD_STATUS's running fiber */
        uint64_t nev;
        uint64_t last_time;
        uint64_t depth;        /* open regions */

        /* Phase 3: cursor and merge state. */
        uint32_t cur_batch;
        uint32_t pos, end;
        uint64_t time;
        uint64_t running; /* fiber running on this thread, 0 none */
        uint32_t parked_next;
        uint8_t has_head;
        struct fr_event head;
};

enum rd_fstate { FS_UNKNOWN = 0, FS_RUNNABLE, FS_RUNNING, FS_WAITING, FS_GONE };

struct rd_fiber {
        uint64_t id;
        uint64_t seq;
        uint32_t thread; /* running on, RD_NONE otherwise */
        uint8_t state;   /* enum rd_fstate */
        uint8_t has_status;
};

struct rd_task {
        uint64_t id;
        uint8_t status, begun, ended;
        uint32_t end_off;
        uint32_t end_thread;
};

/*
 * Phase 3: a thread whose head is not ready waits on the exact condition
 * that would make it ready, keyed by (id, need): a fiber transition with
 * seq s waits for (fiber, s - 1), a FIBER_CREATE for (fiber, RD_WAIT_GONE),
 * a TASK_END for (task, RD_WAIT_BEGUN).  Whatever brings a condition about
 * wakes exactly its waiters, so no thread is woken for nothing however many
 * wait on one busy fiber (waking them all on every transition would let a
 * crafted trace cost threads x transitions).  A woken thread checks its head
 * again, so a fiber's and a task's keys meeting costs a recheck, no more.
 */
#define RD_WAIT_GONE UINT64_MAX
#define RD_WAIT_BEGUN (UINT64_MAX - 1)

struct rd_wslot {
        uint64_t id, need;
        uint32_t head; /* first waiting thread, chained by parked_next */
        uint32_t stamp;
};

struct rd_waits {
        struct rd_wslot *slots;
        uint64_t seed;
        uint32_t bits, n, stamp;
        uint32_t parked; /* threads waiting now: none, and nothing needs waking */
};


struct rd_status {
        uint32_t pos; /* the event's type byte, relative to the blob */
        uint32_t thread;
        uint64_t time;
};

/* How to decode one event type (see rd_event). */
_Static_assert(PROTO_MAX_ARGS <= 8, "rd_plan keeps argument masks in 8 bits");
struct rd_plan {
        const struct proto_event_spec *spec; /* NULL: no such type */
        uint8_t nargs;
        uint8_t batch; /* a batch or status event: argument 0 is ts */
        uint8_t bytes; /* mask of PA_BYTES arguments */
        uint8_t fixup; /* mask of arguments that are more than a plain number */
};

struct fr_parser {
        struct rd_plan plan[256];
        struct rd_budget budget;
        const uint8_t *blob;
        size_t len;
        uint64_t base;
        struct fr_error *err;
        struct fr_generation g;
        int have_gen;

        struct rd_str *strs;
        size_t nstrs, cstrs;
        char *sarena;
        size_t nsarena, csarena;
        struct rd_map strmap;
        /* Dense string ids: sdense[id - sdense_min] is the string's offset in
         * sarena (RD_NONE: no such id); sdense_n 0: use strmap. */
        uint32_t *sdense;
        size_t sdense_n, csdense;
        uint64_t sdense_min;

        struct rd_stack *stks;
        size_t nstks, cstks;
        uint64_t *pcs;
        size_t npcs, cpcs;
        struct rd_map stkmap;
        uint32_t *kdense; /* the same for stacks: index into stks */
        size_t kdense_n, ckdense;
        uint64_t kdense_min;

        struct rd_thread *th;
        size_t nth, cth;
        uint64_t *tids;
        size_t ntids, ctids;
        struct rd_map thmap;

        struct rd_batch *bt;
        size_t nbt, cbt;

        struct rd_fiber *fb;
        size_t nfb, cfb;
        struct rd_map fbmap;
        struct rd_window fbwin;

        struct rd_task *tk;
        size_t ntk, ctk;
        uint64_t *tklive; /* phase 3: bit i, task i may end (see rd_deliver) */
        size_t ctklive;
        struct rd_map tkmap;
        struct rd_window tkwin;

        struct rd_status *st;
        size_t nst, cst;

        struct rd_waits waits;

        /* Phase 3's winner tree (see rd_tree_set). */
        uint64_t *wk; /* keys (wide keys: times) */
        size_t cwk;
        uint32_t *wi; /* wide keys: thread indexes */
        size_t cwi;
        uint32_t wleaves;
        uint32_t wshift;
        int wwide;       /* wide keys */
        uint64_t wbase;
        uint64_t wrun;   /* the smallest key but the first thread's */
        uint32_t wdirty; /* first thread whose path is not replayed, or RD_NONE */
        int wskip;       /* runs take the shortcut (see rd_tree_next) */
        uint64_t wsame, wmoved; /* events after which the first thread stayed, changed */

        uint32_t eog_off;
        uint64_t eog_gen, eog_batches, eog_events, eog_lost;
};

/* ---- errors -------------------------------------------------------------- */

__attribute__((format(printf, 5, 6), cold)) static int rd_fail(struct fr_parser *r, int code,
                                                        uint64_t off, uint32_t thread,
                                                        const char *fmt, ...)
{
        struct fr_error *e = r->err;
        va_list ap;
        int n;

        if (!e)
                return code;
        e->code = code;
        e->offset = r->base + off;
        if (r->have_gen)
                n = snprintf(e->msg, sizeof(e->msg), "generation %llu: ",
                             (unsigned long long)r->g.gen);
        else
                n = snprintf(e->msg, sizeof(e->msg), "generation: ");
        if (n >= 0 && (size_t)n < sizeof(e->msg) && thread != RD_NONE) {
                int m = snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, "thread %llu: ",
                                 (unsigned long long)r->th[thread].tid);
                if (m > 0)
                        n += m;
        }
        if (n >= 0 && (size_t)n < sizeof(e->msg)) {
                va_start(ap, fmt);
                vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return code;
}

static __attribute__((cold)) int rd_oom(struct fr_parser *r)
{
        if (r->budget.over) {
                r->budget.over = 0;
                return rd_fail(r, -EMSGSIZE, 0, RD_NONE,
                               "generation needs more than the reader's %zu bytes of memory",
                               r->budget.max);
        }
        return rd_fail(r, -ENOMEM, 0, RD_NONE, "out of memory");
}

#define ULL(x) ((unsigned long long)(x))

/* ---- decoding ------------------------------------------------------------ */

/* One varint.  The one- to three-byte forms (almost every argument: small
 * ids, deltas of a few thousand clock units) are decoded inline; the rest,
 * and every error, by proto_get_uvarint(), which accepts exactly the same. */
static inline __attribute__((always_inline)) int rd_uvarint(const uint8_t **pp,
                                                             const uint8_t *end, uint64_t *v)
{
        const uint8_t *p = *pp;

        if (__builtin_expect(p < end && p[0] < 0x80, 1)) {
                *v = p[0];
                *pp = p + 1;
                return 0;
        }
        if (end - p >= 3) {
                if (p[1] < 0x80) {
                        *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
                        *pp = p + 2;
                        return 0;
                }
                if (p[2] < 0x80) {
                        *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)(p[1] & 0x7f) << 7 |
                             (uint64_t)p[2] << 14;
                        *pp = p + 3;
                        return 0;
                }
        }
        return proto_get_uvarint(pp, end, v);
}

/* Phase 3's varints: bytes phase 2 decoded already, so no bounds to check
 * and no error to find.  Short, because the decoder of every event type
 * inlines it for every argument: the forms of up to three bytes here (ids
 * and time deltas of a busy trace need three), longer ones out of line. */
static __attribute__((noinline)) const uint8_t *rd_uvarint_long(const uint8_t *p, uint64_t *v)
{
        uint64_t x = 0;
        unsigned shift = 0;

        do
                x |= (uint64_t)(*p & 0x7f) << shift, shift += 7;
        while (*p++ & 0x80);
        *v = x;
        return p;
}

static inline __attribute__((always_inline)) void rd_uvarint_trusted(const uint8_t **pp,
                                                                      uint64_t *v)
{
        const uint8_t *p = *pp;

        if (__builtin_expect(p[0] < 0x80, 1)) {
                *v = p[0];
                *pp = p + 1;
        } else if (p[1] < 0x80) {
                *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
                *pp = p + 2;
        } else if (p[2] < 0x80) {
                *v = (uint64_t)(p[0] & 0x7f) | (uint64_t)(p[1] & 0x7f) << 7 | (uint64_t)p[2] << 14;
                *pp = p + 3;
        } else {
                *pp = rd_uvarint_long(p, v);
        }
}

/*
 * Strings and stacks are looked up for every argument that names one.  The
 * runtime numbers them densely, so once a generation's tables are read
 * (phase 1) an id usually indexes a plain array (rd_dense_build); the hash
 * maps remain for sparse ids, which any producer may use.
 */
static inline const char *rd_string(const struct fr_parser *r, uint64_t id)
{
        if (r->sdense_n) {
                uint64_t k = id - r->sdense_min;
                uint32_t off = k < r->sdense_n ? r->sdense[k] : RD_NONE;
                return off == RD_NONE ? NULL : r->sarena + off;
        }
        uint32_t i = rd_map_get(&r->strmap, id);
        return i == RD_NONE ? NULL : r->sarena + r->strs[i].off;
}

static inline int rd_stack_defined(const struct fr_parser *r, uint64_t id)
{
        if (r->kdense_n) {
                uint64_t k = id - r->kdense_min;
                return k < r->kdense_n && r->kdense[k] != RD_NONE;
        }
        return rd_map_get(&r->stkmap, id) != RD_NONE;
}

/*
 * Decodes the batch event at *pp, of the given type (a constant: always
 * inlined, it unrolls into straight-line code for that type's arguments,
 * fr_kinds in event-kinds.h).  *time is the thread's clock before the
 * event and is advanced by its delta.  With check set (phase 2) every
 * reference is validated; phase 3 decodes bytes phase 2 accepted.  Errors are found in the order they always were: the
 * encoding of every argument first, then the time, then each argument's
 * meaning in argument order.
 */
static inline __attribute__((always_inline)) int
rd_decode(struct fr_parser *r, const uint8_t **pp, const uint8_t *end, uint64_t *time,
          uint32_t thread, struct fr_event *ev, const int check, const uint8_t type)
{
        const struct fr_kinds *k = &fr_kinds[type];
        const uint8_t *p = *pp;
        uint32_t off = (uint32_t)(p - r->blob);
        uint64_t *a = ev->args;

        p++;
        if (check) { /* phase 3: rd_event() did this before its switch */
                ev->type = type;
                ev->spec = r->plan[type].spec;
                ev->tid = r->th[thread].tid;
                ev->offset = r->base + off;
        }
        /* Constant per type: unrolled, every kind test below folds away. */
#pragma GCC unroll 8
        for (unsigned i = 0; i < k->nargs; i++) {
                if (!check)
                        rd_uvarint_trusted(&p, &a[i]);
                else if (rd_uvarint(&p, end, &a[i]) < 0)
                        goto truncated;
                if (k->kind[i] == PA_BYTES) {
                        if (a[i] > (uint64_t)(end - p))
                                goto truncated;
                        ev->bytes[i] = p;
                        p += a[i];
                }
        }
        /* Argument 0 of every batch event is ts (test-protocol-table checks). */
        if (check && a[0] > UINT64_MAX - *time)
                return rd_fail(r, -EBADMSG, off, thread, "%s: time overflows 64 bits",
                               ev->spec->name);
        *time += a[0];
        a[0] = ev->time = *time;

#pragma GCC unroll 8
        for (unsigned i = 1; i < k->nargs; i++) {
                switch (k->kind[i]) {
                case PA_SINT: a[i] = (uint64_t)proto_unzigzag(a[i]); break;
                case PA_STR:
                        if (a[i]) {
                                ev->str[i] = rd_string(r, a[i]);
                                if (check && !ev->str[i])
                                        return rd_fail(r, -EPROTO, off, thread,
                                                       "%s: string %llu is not defined",
                                                       ev->spec->name, ULL(a[i]));
                        } else if (check) {
                                ev->str[i] = NULL;
                        }
                        break;
                case PA_STACK:
                        if (check && a[i] && !rd_stack_defined(r, a[i]))
                                return rd_fail(r, -EPROTO, off, thread,
                                               "%s: stack %llu is not defined", ev->spec->name,
                                               ULL(a[i]));
                        break;
                case PA_STATE:
                        if (check && (a[i] < 1 || a[i] > PROTO_FIBER_STATE_MAX))
                                return rd_fail(r, -EBADMSG, off, thread,
                                               "%s: no fiber state %llu", ev->spec->name,
                                               ULL(a[i]));
                        break;
                default: break;
                }
        }
        *pp = p;
        return 0;
truncated:
        return rd_fail(r, -EBADMSG, off, thread, "truncated or malformed %s event",
                       ev->spec->name);
}

/*
 * The event at *pp, whatever its type: one switch to the decoder of its
 * type.  Phase 2 calls it with check set (unknown types and records that do
 * not belong in a batch are errors); phase 3 only ever sees bytes phase 2
 * accepted.
 */
#define RD_CASE_(name, code, where, doc, ...)                                                      \
        case code:                                                                                 \
                if (where == 'S')                                                                  \
                        goto structural;                                                           \
                return rd_decode(r, pp, end, time, thread, ev, check, code);
#define RD_NOARG_(kind, name)

static inline __attribute__((always_inline)) int rd_event(struct fr_parser *r,
                                                           const uint8_t **pp,
                                                           const uint8_t *end, uint64_t *time,
                                                           uint32_t thread, struct fr_event *ev,
                                                           const int check)
{
        uint8_t type = **pp;
        uint32_t off = (uint32_t)(*pp - r->blob);

        if (!check) {
                /* What every type's decoder would do, done once here (it
                 * keeps the merge loop's code small).  Delivered events have
                 * every unused slot zero. */
                ev->type = type;
                ev->spec = r->plan[type].spec;
                ev->tid = r->th[thread].tid;
                ev->offset = r->base + off;
                ev->mono_ok = 0;
                memset(ev->args, 0, sizeof(ev->args));
                memset(ev->str, 0, sizeof(ev->str));
                memset(ev->bytes, 0, sizeof(ev->bytes));
        }
        switch (type) {
                PROTO_EVENTS(RD_CASE_, RD_NOARG_)
        default: break;
        }
        return rd_fail(r, -EBADMSG, off, thread, "unknown event type 0x%02x", type);
structural:
        return rd_fail(r, -EBADMSG, off, thread, "%s record inside a batch",
                       r->plan[type].spec->name);
}
#undef RD_CASE_
#undef RD_NOARG_

/* Out of line, for the few events decoded outside the main loops. */
static int rd_event_fast(struct fr_parser *r, const uint8_t **pp, const uint8_t *end,
                         uint64_t *time, uint32_t thread, struct fr_event *ev)
{
        return rd_event(r, pp, end, time, thread, ev, 0);
}

/* ---- phase 1: the top-level records -------------------------------------- */

/* Section of each structural record: they must appear in this order. */
static int rd_section(uint8_t type)
{
        switch (type) {
        case PROTO_EV_GENERATION: return 0;
        case PROTO_EV_CLOCK: return 1;
        case PROTO_EV_GENS_LOST: return 2;
        case PROTO_EV_STRING: return 3;
        case PROTO_EV_STACK: return 4;
        case PROTO_EV_THREAD: return 5;
        case PROTO_EV_BATCH: return 6;
        case PROTO_EV_END_OF_GENERATION: return 7;
        default: return -1;
        }
}

static int rd_add_thread(struct fr_parser *r, uint64_t tid, uint64_t name, uint32_t *ret)
{
        struct rd_thread *t;

        if (RD_RESERVE(r->th, r->cth, r->nth + 1) < 0 ||
            rd_map_put(&r->budget, &r->thmap, tid, (uint32_t)r->nth) < 0)
                return rd_oom(r);
        t = &r->th[r->nth];
        memset(t, 0, offsetof(struct rd_thread, head));
        t->tid = tid;
        t->name = name;
        t->first_batch = t->last_batch = RD_NONE;
        t->tracer = tid == 0;
        *ret = (uint32_t)r->nth++;
        return 0;
}

static int rd_string_record(struct fr_parser *r, uint32_t off, uint64_t id, const uint8_t *data,
                            uint64_t len)
{
        struct rd_str *s;

        if (id == 0)
                return rd_fail(r, -EPROTO, off, RD_NONE, "STRING with id 0");
        if (rd_map_get(&r->strmap, id) != RD_NONE)
                return rd_fail(r, -EPROTO, off, RD_NONE, "string %llu defined twice", ULL(id));
        if (memchr(data, '\0', len))
                return rd_fail(r, -EBADMSG, off, RD_NONE, "string %llu contains a NUL byte",
                               ULL(id));
        if (RD_RESERVE(r->strs, r->cstrs, r->nstrs + 1) < 0 ||
            RD_RESERVE(r->sarena, r->csarena, r->nsarena + len + 1) < 0 ||
            rd_map_put(&r->budget, &r->strmap, id, (uint32_t)r->nstrs) < 0)
                return rd_oom(r);
        s = &r->strs[r->nstrs++];
        s->id = id;
        s->off = (uint32_t)r->nsarena;
        s->len = (uint32_t)len;
        memcpy(r->sarena + r->nsarena, data, len);
        r->sarena[r->nsarena + len] = '\0';
        r->nsarena += len + 1;
        return 0;
}

static int rd_stack_record(struct fr_parser *r, uint32_t off, uint64_t id, const uint8_t *data,
                           uint64_t len)
{
        const uint8_t *p = data, *end = data + len;
        struct rd_stack *s;

        if (id == 0)
                return rd_fail(r, -EPROTO, off, RD_NONE, "STACK with id 0");
        if (rd_map_get(&r->stkmap, id) != RD_NONE)
                return rd_fail(r, -EPROTO, off, RD_NONE, "stack %llu defined twice", ULL(id));
        /* At most one PC per byte: reserve once. */
        if (RD_RESERVE(r->stks, r->cstks, r->nstks + 1) < 0 ||
            RD_RESERVE(r->pcs, r->cpcs, r->npcs + len) < 0 ||
            rd_map_put(&r->budget, &r->stkmap, id, (uint32_t)r->nstks) < 0)
                return rd_oom(r);
        s = &r->stks[r->nstks++];
        s->id = id;
        s->off = (uint32_t)r->npcs;
        s->n = 0;
        while (p < end) {
                uint64_t pc;
                if (rd_uvarint(&p, end, &pc) < 0)
                        return rd_fail(r, -EBADMSG, off, RD_NONE,
                                       "stack %llu: malformed program counter", ULL(id));
                r->pcs[r->npcs++] = pc;
                s->n++;
        }
        return 0;
}

/*
 * Dense indexes (see rd_string): built when a table's ids span at most about
 * twice their number, else *ret_n stays 0 and lookups use the hash map.
 * rd_dense_span() finds the span; the callers fill the entries.
 */
static int rd_dense_span(struct fr_parser *r, uint32_t **arr, size_t *cap, uint64_t min,
                         uint64_t max, size_t n, size_t *ret_span)
{
        *ret_span = 0;
        if (n == 0 || max - min >= 2 * (uint64_t)n + 64)
                return 0;
        size_t span = (size_t)(max - min + 1);
        if (rd_reserve(&r->budget, (void **)arr, cap, span, sizeof(**arr)) < 0)
                return rd_oom(r);
        memset(*arr, 0xff, span * sizeof(**arr)); /* RD_NONE */
        *ret_span = span;
        return 0;
}

static int rd_dense_build(struct fr_parser *r)
{
        uint64_t min = UINT64_MAX, max = 0;
        size_t span;
        int rc;

        for (size_t i = 0; i < r->nstrs; i++) {
                min = r->strs[i].id < min ? r->strs[i].id : min;
                max = r->strs[i].id > max ? r->strs[i].id : max;
        }
        rc = rd_dense_span(r, &r->sdense, &r->csdense, min, max, r->nstrs, &span);
        if (rc < 0)
                return rc;
        for (size_t i = 0; span && i < r->nstrs; i++)
                r->sdense[r->strs[i].id - min] = r->strs[i].off;
        r->sdense_min = min;
        r->sdense_n = span;

        min = UINT64_MAX;
        max = 0;
        for (size_t i = 0; i < r->nstks; i++) {
                min = r->stks[i].id < min ? r->stks[i].id : min;
                max = r->stks[i].id > max ? r->stks[i].id : max;
        }
        rc = rd_dense_span(r, &r->kdense, &r->ckdense, min, max, r->nstks, &span);
        if (rc < 0)
                return rc;
        for (size_t i = 0; span && i < r->nstks; i++)
                r->kdense[r->stks[i].id - min] = (uint32_t)i;
        r->kdense_min = min;
        r->kdense_n = span;
        return 0;
}

static int rd_index(struct fr_parser *r)
{
        const uint8_t *p = r->blob, *end = r->blob + r->len;
        int section = -1, last_type = -1, have_eog = 0;

        while (p < end) {
                uint32_t off = (uint32_t)(p - r->blob);
                uint8_t type = *p++;
                const struct proto_event_spec *spec = proto_event_spec(type);
                uint64_t a[PROTO_MAX_ARGS] = {0};
                const uint8_t *bytes = NULL;
                int sec, rc;

                if (have_eog)
                        return rd_fail(r, -EBADMSG, off, RD_NONE,
                                       "data after END_OF_GENERATION");
                if (!spec)
                        return rd_fail(r, -EBADMSG, off, RD_NONE, "unknown record type 0x%02x",
                                       type);
                if (spec->where != 'S')
                        return rd_fail(r, -EBADMSG, off, RD_NONE, "%s event outside a batch",
                                       spec->name);
                for (unsigned i = 0; i < spec->nargs; i++) {
                        if (rd_uvarint(&p, end, &a[i]) < 0)
                                return rd_fail(r, -EBADMSG, off, RD_NONE,
                                               "truncated or malformed %s record", spec->name);
                        if (spec->args[i].kind == PA_BYTES) {
                                if (a[i] > (uint64_t)(end - p))
                                        return rd_fail(r, -EBADMSG, off, RD_NONE,
                                                       "truncated %s record (%llu bytes of "
                                                       "payload, %llu left)",
                                                       spec->name, ULL(a[i]), ULL(end - p));
                                bytes = p;
                                p += a[i];
                        }
                }

                sec = rd_section(type);
                if (section < 0 && type != PROTO_EV_GENERATION)
                        return rd_fail(r, -EBADMSG, off, RD_NONE,
                                       "blob begins with %s, not GENERATION", spec->name);
                if (sec < section || (sec == section && type != PROTO_EV_STRING &&
                                      type != PROTO_EV_STACK && type != PROTO_EV_THREAD &&
                                      type != PROTO_EV_BATCH))
                        return rd_fail(r, -EPROTO, off, RD_NONE, "%s after %s", spec->name,
                                       proto_event_spec((uint8_t)last_type)->name);
                if (section == 0 && sec != 1)
                        return rd_fail(r, -EPROTO, off, RD_NONE, "%s where CLOCK belongs",
                                       spec->name);
                section = sec;
                last_type = type;

                switch (type) {
                case PROTO_EV_GENERATION:
                        r->g.gen = a[0];
                        r->g.pid = a[1];
                        r->have_gen = 1;
                        if (a[2] != PROTO_FORMAT_VERSION)
                                return rd_fail(r, -EPROTONOSUPPORT, off, RD_NONE,
                                               "format version %llu (this reader knows %u)",
                                               ULL(a[2]), PROTO_FORMAT_VERSION);
                        break;
                case PROTO_EV_CLOCK:
                        if (a[0] == 0)
                                return rd_fail(r, -EPROTO, off, RD_NONE,
                                               "CLOCK with frequency 0");
                        if (a[4] > a[5])
                                return rd_fail(r, -EPROTO, off, RD_NONE,
                                               "CLOCK start %llu after end %llu", ULL(a[4]),
                                               ULL(a[5]));
                        r->g.clock = (struct fr_clock){a[0], a[1], a[2], a[3], a[4], a[5]};
                        break;
                case PROTO_EV_GENS_LOST:
                        r->g.gens_lost = a[0];
                        r->g.gens_lost_bytes = a[1];
                        break;
                case PROTO_EV_STRING:
                        rc = rd_string_record(r, off, a[0], bytes, a[1]);
                        if (rc < 0)
                                return rc;
                        break;
                case PROTO_EV_STACK:
                        rc = rd_stack_record(r, off, a[0], bytes, a[1]);
                        if (rc < 0)
                                return rc;
                        break;
                case PROTO_EV_THREAD: {
                        uint32_t ti;
                        if (rd_map_get(&r->thmap, a[0]) != RD_NONE)
                                return rd_fail(r, -EPROTO, off, RD_NONE,
                                               "thread %llu listed twice", ULL(a[0]));
                        if (a[1] && !rd_string(r, a[1]))
                                return rd_fail(r, -EPROTO, off, RD_NONE,
                                               "THREAD %llu: string %llu is not defined",
                                               ULL(a[0]), ULL(a[1]));
                        if (RD_RESERVE(r->tids, r->ctids, r->ntids + 1) < 0)
                                return rd_oom(r);
                        rc = rd_add_thread(r, a[0], a[1], &ti);
                        if (rc < 0)
                                return rc;
                        r->tids[r->ntids++] = a[0];
                        break;
                }
                case PROTO_EV_BATCH: {
                        uint32_t ti = rd_map_get(&r->thmap, a[0]);
                        struct rd_batch *b;

                        if (ti == RD_NONE) {
                                if (a[0] != 0)
                                        return rd_fail(r, -EPROTO, off, RD_NONE,
                                                       "BATCH of thread %llu, which is not in "
                                                       "the thread table",
                                                       ULL(a[0]));
                                rc = rd_add_thread(r, 0, 0, &ti);
                                if (rc < 0)
                                        return rc;
                        }
                        if (RD_RESERVE(r->bt, r->cbt, r->nbt + 1) < 0)
                                return rd_oom(r);
                        b = &r->bt[r->nbt];
                        b->pos = (uint32_t)(bytes - r->blob);
                        b->len = (uint32_t)a[3];
                        b->rec = off;
                        b->thread = ti;
                        b->next = RD_NONE;
                        b->base = a[1];
                        b->lost = a[2];
                        if (r->th[ti].last_batch == RD_NONE)
                                r->th[ti].first_batch = (uint32_t)r->nbt;
                        else
                                r->bt[r->th[ti].last_batch].next = (uint32_t)r->nbt;
                        r->th[ti].last_batch = (uint32_t)r->nbt;
                        r->nbt++;
                        break;
                }
                case PROTO_EV_END_OF_GENERATION:
                        have_eog = 1;
                        r->eog_off = off;
                        r->eog_gen = a[0];
                        r->eog_batches = a[1];
                        r->eog_events = a[2];
                        r->eog_lost = a[3];
                        break;
                default:
                        break;
                }
        }
        if (section < 0)
                return rd_fail(r, -EBADMSG, 0, RD_NONE, "empty generation blob");
        if (section < 1)
                return rd_fail(r, -EBADMSG, (uint64_t)r->len, RD_NONE,
                               "truncated generation: no CLOCK");
        if (!have_eog)
                return rd_fail(r, -EBADMSG, (uint64_t)r->len, RD_NONE,
                               "truncated generation: no END_OF_GENERATION");
        return 0;
}

/* ---- phase 2: per-thread checks and status events ------------------------ */

static const char *rd_fstate_name(uint8_t s)
{
        switch (s) {
        case FS_RUNNABLE: return "runnable";
        case FS_RUNNING: return "running";
        case FS_WAITING: return "waiting";
        case FS_GONE: return "gone";
        default: return "unknown";
        }
}

/* The fiber's entry, created (state unknown) if absent; RD_NONE on ENOMEM. */
static inline uint32_t rd_fiber_find(const struct fr_parser *r, uint64_t id)
{
        uint32_t i = rd_window_get(&r->fbwin, id);
        return i != RD_NONE || !r->fbmap.n ? i : rd_map_get(&r->fbmap, id);
}

/* The fiber's entry, created (state unknown) if absent: create names a
 * FIBER_CREATE's id, which may open or widen the window.  RD_NONE on
 * ENOMEM. */
static uint32_t rd_fiber(struct fr_parser *r, uint64_t id, int create)
{
        uint32_t i = rd_fiber_find(r, id);
        int win = 0;

        if (i != RD_NONE)
                return i;
        if (RD_RESERVE(r->fb, r->cfb, r->nfb + 1) < 0)
                return RD_NONE;
        if (create || (r->fbwin.n && id >= r->fbwin.base))
                win = rd_window_put(&r->budget, &r->fbwin, id, (uint32_t)r->nfb, r->nfb);
        if (win < 0 || (!win && rd_map_put(&r->budget, &r->fbmap, id, (uint32_t)r->nfb) < 0))
                return RD_NONE;
        r->fb[r->nfb] = (struct rd_fiber){.id = id, .thread = RD_NONE};
        return (uint32_t)r->nfb++;
}

static inline uint32_t rd_task_find(const struct fr_parser *r, uint64_t id)
{
        uint32_t i = rd_window_get(&r->tkwin, id);
        return i != RD_NONE || !r->tkmap.n ? i : rd_map_get(&r->tkmap, id);
}

/* The task's entry, created if absent (begin: the id of a TASK_BEGIN, which
 * may open or widen the window); NULL on ENOMEM. */
static struct rd_task *rd_task(struct fr_parser *r, uint64_t id, int begin)
{
        uint32_t i = rd_task_find(r, id);
        int win = 0;

        if (i != RD_NONE)
                return &r->tk[i];
        if (RD_RESERVE(r->tk, r->ctk, r->ntk + 1) < 0)
                return NULL;
        if (begin || (r->tkwin.n && id >= r->tkwin.base))
                win = rd_window_put(&r->budget, &r->tkwin, id, (uint32_t)r->ntk, r->ntk);
        if (win < 0 || (!win && rd_map_put(&r->budget, &r->tkmap, id, (uint32_t)r->ntk) < 0))
                return NULL;
        r->tk[r->ntk] = (struct rd_task){.id = id};
        return &r->tk[r->ntk++];
}

static int rd_fiber_status(struct fr_parser *r, uint32_t ti, const struct fr_event *ev,
                           uint32_t off)
{
        struct rd_thread *t = &r->th[ti];
        uint64_t id = ev->args[1], state = ev->args[2];
        uint32_t fi;
        struct rd_fiber *f;

        if (id == 0)
                return rd_fail(r, -EPROTO, off, ti, "FIBER_STATUS of fiber 0");
        fi = rd_fiber(r, id, 0);
        if (fi == RD_NONE)
                return rd_oom(r);
        f = &r->fb[fi];
        if (f->has_status)
                return rd_fail(r, -EPROTO, off, ti, "second FIBER_STATUS for fiber %llu",
                               ULL(id));
        f->has_status = 1;
        f->seq = 0;
        switch (state) {
        case PROTO_FIBER_RUNNABLE: f->state = FS_RUNNABLE; break;
        case PROTO_FIBER_WAITING: f->state = FS_WAITING; break;
        default: /* running or syscall: only the thread it runs on knows */
                if (t->tracer)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "FIBER_STATUS %s for fiber %llu in the tracer's batch",
                                       proto_fiber_state_name((uint8_t)state), ULL(id));
                if (t->b_seen)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "FIBER_STATUS %s for fiber %llu after the thread's "
                                       "first non-status event",
                                       proto_fiber_state_name((uint8_t)state), ULL(id));
                if (t->status_fiber != id)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "FIBER_STATUS says fiber %llu runs here, THREAD_STATUS "
                                       "says fiber %llu",
                                       ULL(id), ULL(t->status_fiber));
                if ((state == PROTO_FIBER_SYSCALL) != t->status_syscall)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "FIBER_STATUS %s for fiber %llu, but THREAD_STATUS has %s "
                                       "blocking call open",
                                       proto_fiber_state_name((uint8_t)state), ULL(id),
                                       t->status_syscall ? "a" : "no");
                f->state = FS_RUNNING;
                f->thread = ti;
                t->running = id;
                break;
        }
        return 0;
}

static int rd_task_event(struct fr_parser *r, uint32_t ti, const struct fr_event *ev,
                         uint32_t off)
{
        uint64_t id = ev->args[1];
        struct rd_task *k;

        if (id == 0)
                return rd_fail(r, -EPROTO, off, ti, "%s of task 0", ev->spec->name);
        k = rd_task(r, id, ev->type == PROTO_EV_TASK_BEGIN);
        if (!k)
                return rd_oom(r);
        switch (ev->type) {
        case PROTO_EV_TASK_STATUS:
                if (k->status)
                        return rd_fail(r, -EPROTO, off, ti, "second TASK_STATUS for task %llu",
                                       ULL(id));
                if (k->begun)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "TASK_STATUS for task %llu, which begins in this "
                                       "generation",
                                       ULL(id));
                k->status = 1;
                break;
        case PROTO_EV_TASK_BEGIN:
                if (k->status || k->begun)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "TASK_BEGIN of task %llu, which is already live", ULL(id));
                k->begun = 1;
                break;
        case PROTO_EV_TASK_END:
                if (k->ended)
                        return rd_fail(r, -EPROTO, off, ti, "second TASK_END of task %llu",
                                       ULL(id));
                k->ended = 1;
                k->end_off = off;
                k->end_thread = ti;
                break;
        default:
                break;
        }
        return 0;
}

/* Thread-local rules for one event, in the thread's own order.  type is
 * ev->type, a constant where it is inlined (see rd_check). */
static inline __attribute__((always_inline)) int rd_track(struct fr_parser *r, uint32_t ti,
                                                           const struct fr_event *ev,
                                                           const uint8_t type)
{
        struct rd_thread *t = &r->th[ti];
        uint32_t off = (uint32_t)(ev->offset - r->base);
        const char *name = ev->spec->name;

        if (t->nev > 0 && ev->time < t->last_time)
                return rd_fail(r, -EPROTO, off, ti,
                               "%s at time %llu, before the thread's previous event (%llu)", name,
                               ULL(ev->time), ULL(t->last_time));
        t->last_time = ev->time;
        if (t->tracer) {
                if (type != PROTO_EV_FIBER_STATUS && type != PROTO_EV_TASK_STATUS)
                        return rd_fail(r, -EPROTO, off, ti, "%s in the tracer's batch", name);
        } else if (!t->has_status && type != PROTO_EV_THREAD_STATUS) {
                return rd_fail(r, -EPROTO, off, ti, "first event is %s, not THREAD_STATUS",
                               name);
        }
        t->nev++;

        switch (type) {
        case PROTO_EV_THREAD_STATUS:
                if (t->has_status)
                        return rd_fail(r, -EPROTO, off, ti, "second THREAD_STATUS");
                t->has_status = 1;
                t->status_off = off;
                t->status_fiber = ev->args[1];
                t->status_syscall = ev->args[2] != 0 || ev->args[3] != 0;
                t->syscall_open = t->status_syscall;
                return 0;
        case PROTO_EV_REGION_STATUS:
                if (t->b_seen)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "REGION_STATUS after the thread's first non-status event");
                t->depth++;
                return 0;
        case PROTO_EV_FIBER_STATUS:
                return rd_fiber_status(r, ti, ev, off);
        case PROTO_EV_TASK_STATUS:
                return rd_task_event(r, ti, ev, off);
        default:
                break;
        }

        t->b_seen = 1;
        switch (type) {
        case PROTO_EV_REGION_BEGIN:
                t->depth++;
                break;
        case PROTO_EV_REGION_END:
                if (t->depth == 0)
                        return rd_fail(r, -EPROTO, off, ti, "REGION_END with no open region");
                t->depth--;
                break;
        case PROTO_EV_SYSCALL_BEGIN:
                if (t->syscall_open)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "SYSCALL_BEGIN while a blocking call is open");
                t->syscall_open = 1;
                break;
        case PROTO_EV_SYSCALL_END:
                if (!t->syscall_open)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "SYSCALL_END with no open blocking call");
                t->syscall_open = 0;
                break;
        case PROTO_EV_TASK_BEGIN:
        case PROTO_EV_TASK_END:
                return rd_task_event(r, ti, ev, off);
        case PROTO_EV_EVENTS_LOST:
                if (ev->args[1] > UINT64_MAX - r->g.lost)
                        return rd_fail(r, -EPROTO, off, ti, "lost-event count overflows");
                r->g.lost += ev->args[1];
                break;
        case PROTO_EV_FIBER_CREATE:
        case PROTO_EV_FIBER_RUN:
        case PROTO_EV_FIBER_BLOCK:
        case PROTO_EV_FIBER_READY:
        case PROTO_EV_FIBER_YIELD:
        case PROTO_EV_FIBER_EXIT:
                if (ev->args[1] == 0)
                        return rd_fail(r, -EPROTO, off, ti, "%s of fiber 0", name);
                break;
        default:
                break;
        }
        return 0;
}

/*
 * Phase 2's step: decodes the event at *pp and applies its thread's rules,
 * with one dispatch on the type for both (each case has the decoder and
 * rd_track specialised for its type).  A status event's position is
 * remembered for delivery.
 */
#define RD_CHECK_CASE_(name, code, where, doc, ...)                                                \
        case code:                                                                                 \
                if (where == 'S')                                                                  \
                        goto structural;                                                           \
                rc = rd_decode(r, pp, end, time, thread, ev, 1, code);                             \
                if (rc < 0)                                                                        \
                        return rc;                                                                 \
                rc = rd_track(r, thread, ev, code);                                                \
                if (rc < 0)                                                                        \
                        return rc;                                                                 \
                if (where == 'T') {                                                                \
                        if (RD_RESERVE(r->st, r->cst, r->nst + 1) < 0)                             \
                                return rd_oom(r);                                                  \
                        r->st[r->nst++] = (struct rd_status){off, thread, *time};                  \
                }                                                                                  \
                return 0;
#define RD_NOARG_(kind, name)

static inline __attribute__((always_inline)) int
rd_check(struct fr_parser *r, const uint8_t **pp, const uint8_t *end, uint64_t *time,
         uint32_t thread, struct fr_event *ev)
{
        uint8_t type = **pp;
        uint32_t off = (uint32_t)(*pp - r->blob);
        int rc;

        switch (type) {
                PROTO_EVENTS(RD_CHECK_CASE_, RD_NOARG_)
        default: break;
        }
        return rd_fail(r, -EBADMSG, off, thread, "unknown event type 0x%02x", type);
structural:
        return rd_fail(r, -EBADMSG, off, thread, "%s record inside a batch",
                       r->plan[type].spec->name);
}
#undef RD_CHECK_CASE_
#undef RD_NOARG_

static int rd_decode_batches(struct fr_parser *r)
{
        struct fr_event ev;

        for (size_t bi = 0; bi < r->nbt; bi++) {
                const struct rd_batch *b = &r->bt[bi];
                const uint8_t *p = r->blob + b->pos, *end = p + b->len;
                uint64_t time = b->base;
                int rc;

                if (b->lost > UINT64_MAX - r->g.lost)
                        return rd_fail(r, -EPROTO, b->rec, b->thread,
                                       "lost-event count overflows");
                r->g.lost += b->lost;
                while (p < end) {
                        rc = rd_check(r, &p, end, &time, b->thread, &ev);
                        if (rc < 0)
                                return rc;
                        r->g.nevents++;
                }
        }
        return 0;
}

/* Whole-generation rules, once every batch has been read. */
static int rd_check_totals(struct fr_parser *r)
{
        const struct rd_task *bad = NULL;

        if (r->eog_gen != r->g.gen)
                return rd_fail(r, -EPROTO, r->eog_off, RD_NONE,
                               "END_OF_GENERATION names generation %llu", ULL(r->eog_gen));
        if (r->eog_batches != r->nbt || r->eog_events != r->g.nevents ||
            r->eog_lost != r->g.lost)
                return rd_fail(r, -EPROTO, r->eog_off, RD_NONE,
                               "END_OF_GENERATION totals (%llu batches, %llu events, %llu lost) "
                               "disagree with the blob (%llu, %llu, %llu)",
                               ULL(r->eog_batches), ULL(r->eog_events), ULL(r->eog_lost),
                               ULL(r->nbt), ULL(r->g.nevents), ULL(r->g.lost));

        for (size_t i = 0; i < r->nth; i++) {
                const struct rd_thread *t = &r->th[i];
                uint32_t fi;

                if (!t->has_status || t->status_fiber == 0)
                        continue;
                fi = rd_fiber_find(r, t->status_fiber);
                if (fi == RD_NONE || !r->fb[fi].has_status || r->fb[fi].thread != i)
                        return rd_fail(r, -EPROTO, t->status_off, (uint32_t)i,
                                       "THREAD_STATUS names fiber %llu, but no FIBER_STATUS "
                                       "says it runs here",
                                       ULL(t->status_fiber));
        }

        for (size_t i = 0; i < r->ntk; i++) {
                const struct rd_task *k = &r->tk[i];
                if (k->ended && !k->status && !k->begun && (!bad || k->end_off < bad->end_off))
                        bad = k;
        }
        if (bad)
                return rd_fail(r, -EPROTO, bad->end_off, bad->end_thread,
                               "TASK_END of task %llu, which is not live (no TASK_STATUS or "
                               "TASK_BEGIN in this generation)",
                               ULL(bad->id));
        return 0;
}

/* ---- phase 3: merge ------------------------------------------------------ */

static inline int rd_before(const struct fr_parser *r, uint32_t a, uint32_t b)
{
        uint64_t ta = r->th[a].head.time, tb = r->th[b].head.time;
        return ta < tb || (ta == tb && a < b);
}

/*
 * The merge takes next, among the threads whose head is ready, the one
 * with the earliest (time, thread index).  A winner tree over all threads
 * finds it: leaf wleaves + ti holds ti's key while its head is ready, else
 * the sentinel, which every real key beats; each inner node holds the
 * smaller key of its two children, the root the overall one.  A thread
 * whose head changes replays its path to the root, whether it stays first
 * (a run of one thread's events) or not: at each level one comparison with
 * the sibling's key.
 *
 * Which thread comes next is as good as random to a branch predictor, so
 * the comparisons must not branch, and a key that is one 64-bit number
 * makes each level a compare and a conditional move.  Every head's time
 * lies between the earliest batch base and the latest event time phase 2
 * saw, so (time - wbase) << wshift | ti orders exactly as (time, ti) does
 * whenever that span fits in the bits left above the thread index: always,
 * for a real trace (2^40 clock units or more with a million threads).  A
 * blob whose times span more takes the wide keys: the time in wk, the
 * thread in wi, compared with masks.
 */
/* Replays ti's path to the root with its current key. */
static inline void rd_tree_replay(struct fr_parser *r, uint32_t ti, int ready)
{
        uint32_t i = r->wleaves + ti;

        if (__builtin_expect(!r->wwide, 1)) {
                uint64_t k = ready ? (r->th[ti].head.time - r->wbase) << r->wshift | ti
                                   : UINT64_MAX;
                r->wk[i] = k;
                while (i > 1) {
                        uint64_t s = r->wk[i ^ 1];
                        k = s < k ? s : k;
                        i >>= 1;
                        r->wk[i] = k;
                }
                return;
        }

        uint64_t kt = ready ? r->th[ti].head.time : UINT64_MAX;
        uint32_t kw = ready ? ti : r->wleaves;
        r->wk[i] = kt;
        r->wi[i] = kw;
        while (i > 1) {
                uint64_t st = r->wk[i ^ 1];
                uint32_t sw = r->wi[i ^ 1];
                /* All ones when the sibling comes first. */
                uint64_t m = (uint64_t)0 - (uint64_t)((st < kt) | ((st == kt) & (sw < kw)));
                kt = (st & m) | (kt & ~m);
                kw = (sw & (uint32_t)m) | (kw & ~(uint32_t)m);
                i >>= 1;
                r->wk[i] = kt;
                r->wi[i] = kw;
        }
}

/*
 * Runs.  A thread often has several events in a row before another's
 * time comes (a worker running a request's slice), and replaying its path
 * for each would be wasted: after every replay wrun holds the smallest key
 * of all the other threads (the smallest sibling along the winner's path),
 * and while the winner's next key is below it, it stays first without
 * touching the tree.  Its path then holds an older, smaller key of its own
 * (wdirty names it), which is harmless while it is first and is replayed
 * before any other thread's path is.  Wide keys take no shortcut.
 *
 * The shortcut pays only when runs are long: its test is a branch that
 * goes either way about as often when threads alternate every event or
 * two, and a mispredicted branch costs more than the replay it saves.  So
 * each generation starts with it and counts: once RD_RUN_SAMPLE events
 * have needed a replay, the shortcut stays on for the rest of the
 * generation only if at least RD_RUN_PERCENT of the events so far took it.
 */
#define RD_RUN_SAMPLE  1024
#define RD_RUN_PERCENT 70
static inline void rd_tree_runner(struct fr_parser *r)
{
        uint64_t run = UINT64_MAX, root = r->wk[1];
        uint32_t i;

        if (r->wwide || root == UINT64_MAX) {
                r->wrun = 0;
                return;
        }
        for (i = r->wleaves + (uint32_t)(root & (r->wleaves - 1)); i > 1; i >>= 1) {
                uint64_t s = r->wk[i ^ 1];
                run = s < run ? s : run;
        }
        r->wrun = run;
}

/* Sets any thread's leaf: ready with its head, or waiting. */
static inline void rd_tree_set(struct fr_parser *r, uint32_t ti, int ready)
{
        if (r->wdirty != RD_NONE && r->wdirty != ti)
                rd_tree_replay(r, r->wdirty, 1);
        r->wdirty = RD_NONE;
        rd_tree_replay(r, ti, ready);
        if (r->wskip)
                rd_tree_runner(r);
}

/* The same for the thread that was first, after its event was taken. */
static inline void rd_tree_next(struct fr_parser *r, uint32_t ti, int ready)
{
        if (!r->wskip) {
                rd_tree_replay(r, ti, ready);
                return;
        }
        if (ready && ((r->th[ti].head.time - r->wbase) << r->wshift | ti) < r->wrun) {
                r->wdirty = ti;
                r->wsame++;
                return;
        }
        r->wdirty = RD_NONE;
        rd_tree_replay(r, ti, ready);
        rd_tree_runner(r);
        if (++r->wmoved == RD_RUN_SAMPLE)
                r->wskip = r->wsame * 100 >= (r->wsame + r->wmoved) * RD_RUN_PERCENT;
}

/* The thread to take next, RD_NONE when none is ready. */
static inline uint32_t rd_tree_first(const struct fr_parser *r)
{
        if (__builtin_expect(!r->wwide, 1))
                return r->wk[1] == UINT64_MAX ? RD_NONE : (uint32_t)(r->wk[1] & (r->wleaves - 1));
        return r->wi[1] == r->wleaves ? RD_NONE : r->wi[1];
}

/* A tree with a leaf per thread, none ready. */
static int rd_tree_init(struct fr_parser *r)
{
        uint32_t n = 1, bits = 0;
        uint64_t lo = UINT64_MAX, hi = 0;

        while (n < r->nth) {
                n *= 2;
                bits++;
        }
        if (RD_RESERVE(r->wk, r->cwk, 2 * (size_t)n) < 0 ||
            RD_RESERVE(r->wi, r->cwi, 2 * (size_t)n) < 0)
                return rd_oom(r);
        r->wleaves = n;
        /* Every event's time is at least its batch's base, and at most its
         * thread's last time. */
        for (size_t bi = 0; bi < r->nbt; bi++)
                lo = r->bt[bi].base < lo ? r->bt[bi].base : lo;
        for (size_t ti = 0; ti < r->nth; ti++)
                hi = r->th[ti].last_time > hi ? r->th[ti].last_time : hi;
        r->wbase = lo;
        r->wshift = bits;
        r->wdirty = RD_NONE;
        r->wrun = 0;
        /* lo > hi: no events at all */
        r->wwide = lo <= hi && (hi - lo) >> (63 - bits) != 0;
        r->wskip = !r->wwide;
        r->wmoved = r->wsame = 0;
        for (uint32_t i = 0; i < 2 * n; i++) {
                r->wk[i] = UINT64_MAX;
                r->wi[i] = n;
        }
        return 0;
}

#define RD_PREFETCH 512 /* bytes ahead in a thread's stream */

/* Loads the thread's next non-status event into its head. */
static inline __attribute__((always_inline)) int rd_advance(struct fr_parser *r, uint32_t ti)
{
        struct rd_thread *t = &r->th[ti];

        for (;;) {
                const uint8_t *p;
                int rc;

                while (t->pos == t->end) {
                        uint32_t nb;
                        if (t->cur_batch == RD_NONE)
                                goto exhausted;
                        nb = r->bt[t->cur_batch].next;
                        t->cur_batch = nb;
                        if (nb == RD_NONE)
                                goto exhausted;
                        t->pos = r->bt[nb].pos;
                        t->end = r->bt[nb].pos + r->bt[nb].len;
                        t->time = r->bt[nb].base;
                }
                p = r->blob + t->pos;
                /* Phase 2 read the whole blob since: each thread's stream is
                 * sequential but they interleave finely, which hardware
                 * prefetchers follow poorly. */
                __builtin_prefetch(p + RD_PREFETCH);
                rc = rd_event(r, &p, r->blob + t->end, &t->time, ti, &t->head, 0);
                if (rc < 0)
                        return rc;
                t->pos = (uint32_t)(p - r->blob);
                if (t->head.spec->where != 'T') {
                        t->has_head = 1;
                        return 0;
                }
        }
exhausted:
        t->has_head = 0;
        return 0;
}

/* The same out of line, for each thread's first event: the decoder of
 * every event type is a lot of code, and one copy of it in the merge loop
 * is all the instruction cache should hold. */
static __attribute__((noinline)) int rd_advance_first(struct fr_parser *r, uint32_t ti)
{
        return rd_advance(r, ti);
}

static inline uint32_t rd_wait_hash(const struct rd_waits *w, uint64_t id, uint64_t need)
{
        uint64_t h = ((id ^ w->seed) * 0x9e3779b97f4a7c15ull + need) * 0xff51afd7ed558ccdull;
        return (uint32_t)(h >> (64 - w->bits));
}

/* The slot for (id, need); created when asked.  NULL: absent, or no memory. */
static struct rd_wslot *rd_wait_slot(struct fr_parser *r, uint64_t id, uint64_t need, int create)
{
        struct rd_waits *w = &r->waits;
        uint32_t mask, i;

        if (create && (w->bits == 0 || (uint64_t)(w->n + 1) * 2 > (1ull << w->bits))) {
                struct rd_waits nw = {.stamp = 1, .bits = w->bits ? w->bits + 1 : 6};
                size_t size = sizeof(struct rd_wslot) << nw.bits;

                if (nw.bits > 31 || rd_charge(&r->budget, size) < 0)
                        return NULL;
                nw.slots = fr_calloc((size_t)1 << nw.bits, sizeof(struct rd_wslot));
                if (!nw.slots) {
                        r->budget.used -= size;
                        return NULL;
                }
                nw.seed = ((uint64_t)(uintptr_t)nw.slots * 0x9e3779b97f4a7c15ull) | 1;
                mask = (1u << nw.bits) - 1;
                for (uint32_t k = 0; w->bits && k < (1u << w->bits); k++) {
                        const struct rd_wslot *o = &w->slots[k];
                        if (o->stamp != w->stamp)
                                continue;
                        for (i = rd_wait_hash(&nw, o->id, o->need); nw.slots[i].stamp == 1;
                             i = (i + 1) & mask)
                                ;
                        nw.slots[i] = *o;
                        nw.slots[i].stamp = 1;
                        nw.n++;
                }
                if (w->bits)
                        r->budget.used -= sizeof(struct rd_wslot) << w->bits;
                fr_free(w->slots);
                *w = nw;
        }
        if (w->bits == 0)
                return NULL;
        mask = (1u << w->bits) - 1;
        for (i = rd_wait_hash(w, id, need);; i = (i + 1) & mask) {
                struct rd_wslot *sl = &w->slots[i];
                if (sl->stamp != w->stamp) {
                        if (!create)
                                return NULL;
                        *sl = (struct rd_wslot){id, need, RD_NONE, w->stamp};
                        w->n++;
                        return sl;
                }
                if (sl->id == id && sl->need == need)
                        return sl;
        }
}

/* Parking and waking are rare (clocks that disagree): out of line, to keep
 * the merge loop small. */
static __attribute__((noinline)) int rd_wait_park(struct fr_parser *r, uint32_t ti, uint64_t id,
                                                  uint64_t need)
{
        struct rd_wslot *sl = rd_wait_slot(r, id, need, 1);

        if (!sl)
                return rd_oom(r);
        r->th[ti].parked_next = sl->head;
        sl->head = ti;
        r->waits.parked++;
        return 0;
}

/* Wakes the threads waiting for (id, need): back into the merge. */
static __attribute__((noinline)) void rd_wait_wake(struct fr_parser *r, uint64_t id, uint64_t need)
{
        struct rd_wslot *sl = rd_wait_slot(r, id, need, 0);
        uint32_t w;

        if (!sl)
                return;
        w = sl->head;
        sl->head = RD_NONE;
        while (w != RD_NONE) {
                uint32_t next = r->th[w].parked_next;
                rd_tree_set(r, w, 1);
                r->waits.parked--;
                w = next;
        }
}

static int rd_is_fiber_transition(uint8_t type)
{
        return type >= PROTO_EV_FIBER_CREATE && type <= PROTO_EV_FIBER_EXIT;
}

/*
 * Applies the fiber transition at ti's head if it is ready: returns 1 with
 * *ret_fi set when applied, 0 when the thread now waits for the fiber, or an
 * error for a transition the state machine forbids.
 */
static int rd_fiber_step(struct fr_parser *r, uint32_t ti, uint32_t *ret_fi)
{
        struct rd_thread *t = &r->th[ti];
        const struct fr_event *ev = &t->head;
        uint64_t id = ev->args[1], seq = ev->args[2];
        uint32_t off = (uint32_t)(ev->offset - r->base);
        uint32_t fi = rd_fiber(r, id, ev->type == PROTO_EV_FIBER_CREATE);
        struct rd_fiber *f;
        int ready;

        if (fi == RD_NONE)
                return rd_oom(r);
        f = &r->fb[fi];
        if (ev->type == PROTO_EV_FIBER_CREATE)
                ready = f->state == FS_UNKNOWN || f->state == FS_GONE;
        else
                ready = f->state != FS_UNKNOWN && f->seq + 1 == seq;
        if (!ready) {
                int rc = rd_wait_park(r, ti, id,
                                      ev->type == PROTO_EV_FIBER_CREATE ? RD_WAIT_GONE : seq - 1);
                return rc < 0 ? rc : 0;
        }

        switch (ev->type) {
        case PROTO_EV_FIBER_CREATE:
                f->state = FS_RUNNABLE;
                f->seq = 0;
                f->thread = RD_NONE;
                *ret_fi = fi;
                return 1;
        case PROTO_EV_FIBER_RUN:
                if (f->state != FS_RUNNABLE)
                        break;
                if (t->running)
                        return rd_fail(r, -EPROTO, off, ti,
                                       "FIBER_RUN of fiber %llu while the thread runs fiber %llu",
                                       ULL(id), ULL(t->running));
                f->state = FS_RUNNING;
                f->thread = ti;
                t->running = id;
                f->seq = seq;
                *ret_fi = fi;
                return 1;
        case PROTO_EV_FIBER_READY:
                if (f->state != FS_WAITING)
                        break;
                f->state = FS_RUNNABLE;
                f->seq = seq;
                *ret_fi = fi;
                return 1;
        default: /* block, yield, exit: only the thread running it */
                if (f->state != FS_RUNNING)
                        break;
                if (f->thread != ti)
                        return rd_fail(r, -EPROTO, off, ti, "%s of fiber %llu, which runs on thread %llu",
                                       ev->spec->name, ULL(id), ULL(r->th[f->thread].tid));
                t->running = 0;
                f->thread = RD_NONE;
                f->state = ev->type == PROTO_EV_FIBER_BLOCK   ? FS_WAITING
                           : ev->type == PROTO_EV_FIBER_YIELD ? FS_RUNNABLE
                                                              : FS_GONE;
                f->seq = seq;
                *ret_fi = fi;
                return 1;
        }
        return rd_fail(r, -EPROTO, off, ti, "%s of fiber %llu in state %s", ev->spec->name,
                       ULL(id), rd_fstate_name(f->state));
}

/* Every remaining head is parked: name the earliest one's fiber. */
static __attribute__((noinline)) int rd_deadlock(struct fr_parser *r)
{
        uint32_t best = RD_NONE;
        const struct fr_event *ev;
        const struct rd_fiber *f;
        uint32_t off;

        for (uint32_t i = 0; i < r->nth; i++)
                if (r->th[i].has_head && (best == RD_NONE || rd_before(r, i, best)))
                        best = i;
        if (best == RD_NONE)
                return 0;
        ev = &r->th[best].head;
        off = (uint32_t)(ev->offset - r->base);
        if (ev->type == PROTO_EV_TASK_END)
                return rd_fail(r, -EPROTO, off, best,
                               "TASK_END of task %llu cannot be ordered after its TASK_BEGIN",
                               ULL(ev->args[1]));
        f = &r->fb[rd_fiber_find(r, ev->args[1])];
        if (ev->type == PROTO_EV_FIBER_CREATE)
                return rd_fail(r, -EPROTO, off, best,
                               "FIBER_CREATE of fiber %llu, which is still %s", ULL(f->id),
                               rd_fstate_name(f->state));
        if (f->state == FS_UNKNOWN)
                return rd_fail(r, -EPROTO, off, best,
                               "%s of fiber %llu, which has no FIBER_STATUS or FIBER_CREATE",
                               ev->spec->name, ULL(f->id));
        return rd_fail(r, -EPROTO, off, best,
                       "%s of fiber %llu with seq %llu cannot be ordered: the fiber is %s at seq "
                       "%llu",
                       ev->spec->name, ULL(f->id), ULL(ev->args[2]), rd_fstate_name(f->state),
                       ULL(f->seq));
}

static int rd_deliver(struct fr_parser *r, const struct fr_callbacks *cb, void *ctx)
{
        int rc;

        if (cb && cb->generation_begin) {
                rc = cb->generation_begin(ctx, &r->g);
                if (rc)
                        return rc;
        }

        for (size_t i = 0; i < r->nst; i++) {
                const struct rd_status *s = &r->st[i];
                const uint8_t *p = r->blob + s->pos;
                uint64_t time = 0;
                struct fr_event ev;

                rc = rd_event_fast(r, &p, r->blob + r->len, &time, s->thread, &ev);
                if (rc < 0)
                        return rc;
                ev.time = ev.args[0] = s->time;
                if (cb && cb->event) {
                        rc = cb->event(ctx, &r->g, &ev);
                        if (rc)
                                return rc;
                }
        }

        rc = rd_tree_init(r);
        if (rc < 0)
                return rc;
        /* A task's end may be delivered once it is live: restated, or its
         * begin delivered.  One bit per task, by its index: the merge looks
         * tasks up in a bitmap that stays in cache, not in r->tk. */
        if (RD_RESERVE(r->tklive, r->ctklive, (r->ntk + 63) / 64) < 0)
                return rd_oom(r);
        if (r->ntk)
                memset(r->tklive, 0, (r->ntk + 63) / 64 * sizeof(*r->tklive));
        for (size_t i = 0; i < r->ntk; i++)
                r->tklive[i >> 6] |= (uint64_t)r->tk[i].status << (i & 63);
        for (uint32_t ti = 0; ti < r->nth; ti++) {
                struct rd_thread *t = &r->th[ti];

                t->has_head = 0;
                t->parked_next = RD_NONE;
                if (t->tracer || t->first_batch == RD_NONE)
                        continue;
                t->cur_batch = t->first_batch;
                t->pos = r->bt[t->first_batch].pos;
                t->end = t->pos + r->bt[t->first_batch].len;
                t->time = r->bt[t->first_batch].base;
                rc = rd_advance_first(r, ti);
                if (rc < 0)
                        return rc;
                if (t->has_head)
                        rd_tree_set(r, ti, 1);
        }

        for (;;) {
                uint32_t ti = rd_tree_first(r), fi = RD_NONE;
                if (ti == RD_NONE)
                        break;
                struct rd_thread *t = &r->th[ti];
                uint64_t begun = 0;

                if (rd_is_fiber_transition(t->head.type)) {
                        rc = rd_fiber_step(r, ti, &fi);
                        if (rc < 0)
                                return rc;
                        if (rc == 0) {
                                rd_tree_set(r, ti, 0); /* waits until the fiber moves */
                                continue;
                        }
                } else if (t->head.type == PROTO_EV_TASK_END ||
                           t->head.type == PROTO_EV_TASK_BEGIN) {
                        /* Phase 2 recorded every task of the generation. */
                        uint32_t k = rd_task_find(r, t->head.args[1]);
                        uint64_t bit = (uint64_t)1 << (k & 63);
                        if (t->head.type == PROTO_EV_TASK_BEGIN) {
                                r->tklive[k >> 6] |= bit;
                                begun = t->head.args[1];
                        } else if (!(r->tklive[k >> 6] & bit)) {
                                /* Another thread's clock put the end first. */
                                rc = rd_wait_park(r, ti, t->head.args[1], RD_WAIT_BEGUN);
                                if (rc < 0)
                                        return rc;
                                rd_tree_set(r, ti, 0);
                                continue;
                        }
                }
                if (cb && cb->event) {
                        rc = cb->event(ctx, &r->g, &t->head);
                        if (rc)
                                return rc;
                }
                rc = rd_advance(r, ti);
                if (rc < 0)
                        return rc;
                rd_tree_next(r, ti, t->has_head);
                if (__builtin_expect(!r->waits.parked, 1))
                        continue;
                /* Wake whoever waited for what just happened. */
                if (fi != RD_NONE) {
                        rd_wait_wake(r, r->fb[fi].id, r->fb[fi].seq);
                        if (r->fb[fi].state == FS_GONE)
                                rd_wait_wake(r, r->fb[fi].id, RD_WAIT_GONE);
                }
                if (begun)
                        rd_wait_wake(r, begun, RD_WAIT_BEGUN);
        }

        rc = rd_deadlock(r);
        if (rc < 0)
                return rc;
        if (cb && cb->generation_end)
                return cb->generation_end(ctx, &r->g);
        return 0;
}

/* ---- public API ---------------------------------------------------------- */

static void rd_plan_init(struct rd_plan *plan)
{
        for (unsigned c = 0; c < 256; c++) {
                const struct proto_event_spec *spec = proto_event_spec((uint8_t)c);
                struct rd_plan *pl = &plan[c];

                if (!spec)
                        continue;
                pl->spec = spec;
                pl->nargs = spec->nargs;
                pl->batch = spec->where != 'S';
                for (unsigned i = 0; i < spec->nargs; i++) {
                        switch (spec->args[i].kind) {
                        case PA_BYTES: pl->bytes |= (uint8_t)(1u << i); break;
                        case PA_SINT:
                        case PA_STR:
                        case PA_STACK:
                        case PA_STATE: pl->fixup |= (uint8_t)(1u << i); break;
                        default: break;
                        }
                }
        }
}

struct fr_parser *fr_parser_new(void)
{
        struct fr_parser *r = fr_calloc(1, sizeof(struct fr_parser));

        if (r) {
                rd_plan_init(r->plan);
                r->budget.max = FR_PARSER_MAX_MEMORY;
        }
        return r;
}

void fr_parser_set_max_memory(struct fr_parser *r, size_t bytes)
{
        r->budget.max = bytes > r->budget.used ? bytes : r->budget.used;
}

void fr_parser_free(struct fr_parser *r)
{
        if (!r)
                return;
        fr_free(r->strs);
        fr_free(r->sarena);
        rd_map_done(&r->strmap);
        fr_free(r->sdense);
        fr_free(r->kdense);
        fr_free(r->stks);
        fr_free(r->pcs);
        rd_map_done(&r->stkmap);
        fr_free(r->th);
        fr_free(r->tids);
        rd_map_done(&r->thmap);
        fr_free(r->bt);
        fr_free(r->fb);
        rd_map_done(&r->fbmap);
        fr_free(r->tk);
        fr_free(r->tklive);
        rd_map_done(&r->tkmap);
        fr_free(r->tkwin.idx);
        fr_free(r->fbwin.idx);
        fr_free(r->st);
        fr_free(r->wk);
        fr_free(r->wi);
        fr_free(r->waits.slots);
        fr_free(r);
}

static void rd_reset(struct fr_parser *r, const uint8_t *blob, size_t len, uint64_t base,
                     struct fr_error *err)
{
        r->blob = blob;
        r->len = len;
        r->base = base;
        r->err = err;
        r->have_gen = 0;
        memset(&r->g, 0, sizeof(r->g));
        r->g.offset = base;
        r->g.size = len;
        r->g.priv_ = r;
        r->nstrs = r->nsarena = r->nstks = r->npcs = 0;
        r->sdense_n = r->kdense_n = r->tkwin.n = r->fbwin.n = 0;
        r->nth = r->ntids = r->nbt = r->nfb = r->ntk = r->nst = 0;
        rd_map_clear(&r->strmap);
        rd_map_clear(&r->stkmap);
        rd_map_clear(&r->thmap);
        rd_map_clear(&r->fbmap);
        rd_map_clear(&r->tkmap);
        r->waits.n = 0;
        r->waits.parked = 0;
        if (r->waits.bits && ++r->waits.stamp == 0) {
                for (uint32_t i = 0; i < (1u << r->waits.bits); i++)
                        r->waits.slots[i].stamp = 0;
                r->waits.stamp = 1;
        }
        r->eog_off = 0;
        r->eog_gen = r->eog_batches = r->eog_events = r->eog_lost = 0;
}

int fr_parser_parse(struct fr_parser *r, const uint8_t *blob, size_t len, uint64_t base_offset,
                    const struct fr_callbacks *cb, void *ctx, struct fr_error *ret_err)
{
        int rc;

        rd_reset(r, blob, len, base_offset, ret_err);
        if (len > PROTO_MAX_GENERATION_BYTES)
                return rd_fail(r, -EMSGSIZE, 0, RD_NONE,
                               "generation blob of %zu bytes exceeds the %u byte limit", len,
                               PROTO_MAX_GENERATION_BYTES);
        if (len > 0 && !blob)
                return rd_fail(r, -EINVAL, 0, RD_NONE, "no blob");
        if (!blob) {
                static const uint8_t empty[1];
                r->blob = empty; /* so that blob + 0 is defined */
        }
        rc = rd_index(r);
        if (rc < 0)
                return rc;
        rc = rd_dense_build(r);
        if (rc < 0)
                return rc;
        r->g.nbatches = r->nbt;
        r->g.nthreads = r->ntids;
        r->g.threads = r->tids;
        rc = rd_decode_batches(r);
        if (rc < 0)
                return rc;
        rc = rd_check_totals(r);
        if (rc < 0)
                return rc;
        return rd_deliver(r, cb, ctx);
}

int fr_generation_parse(const uint8_t *blob, size_t len, uint64_t base_offset,
                        const struct fr_callbacks *cb, void *ctx, struct fr_error *ret_err)
{
        struct fr_parser *r = fr_parser_new();
        int rc;

        if (!r) {
                if (ret_err) {
                        memset(ret_err, 0, sizeof(*ret_err));
                        ret_err->code = -ENOMEM;
                        ret_err->offset = base_offset;
                        snprintf(ret_err->msg, sizeof(ret_err->msg), "out of memory");
                }
                return -ENOMEM;
        }
        rc = fr_parser_parse(r, blob, len, base_offset, cb, ctx, ret_err);
        fr_parser_free(r);
        return rc;
}

const char *fr_gen_string(const struct fr_generation *g, uint64_t id)
{
        return g && g->priv_ ? rd_string(g->priv_, id) : NULL;
}

int fr_gen_stack(const struct fr_generation *g, uint64_t id, const uint64_t **ret_pcs,
                 size_t *ret_n)
{
        const struct fr_parser *r = g ? g->priv_ : NULL;
        uint32_t i;

        if (!r)
                return -EINVAL;
        i = rd_map_get(&r->stkmap, id);
        if (i == RD_NONE)
                return -ENOENT;
        *ret_pcs = r->pcs + r->stks[i].off;
        *ret_n = r->stks[i].n;
        return 0;
}

const char *fr_gen_thread_name(const struct fr_generation *g, uint64_t tid)
{
        const struct fr_parser *r = g ? g->priv_ : NULL;
        uint32_t i;

        if (!r)
                return NULL;
        i = rd_map_get(&r->thmap, tid);
        if (i == RD_NONE || r->th[i].name == 0)
                return NULL;
        return rd_string(r, r->th[i].name);
}

/* ---- clock --------------------------------------------------------------- */

static int64_t rd_clock_ns(const struct fr_clock *c, uint64_t anchor, uint64_t t)
{
        __int128 ns;

        if (c->freq == 0)
                return (int64_t)anchor;
        ns = (__int128)anchor + ((__int128)t - (__int128)c->ref) * 1000000000 / c->freq;
        if (ns > INT64_MAX)
                return INT64_MAX;
        if (ns < INT64_MIN)
                return INT64_MIN;
        return (int64_t)ns;
}

int64_t fr_clock_mono_ns(const struct fr_clock *c, uint64_t t)
{
        return rd_clock_ns(c, c->mono_ns, t);
}

int64_t fr_clock_wall_ns(const struct fr_clock *c, uint64_t t)
{
        return rd_clock_ns(c, c->wall_ns, t);
}
