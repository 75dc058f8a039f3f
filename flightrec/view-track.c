/* SPDX-License-Identifier: MIT */
/*
 * The state tracker (see flightrec/view.h for the contract).
 *
 * The one subtle part is reconciliation at generation boundaries.  Each
 * generation restates what was in progress when it began (docs/format.md,
 * "Status events"): per thread a THREAD_STATUS, then its open regions
 * outermost first; per live fiber a FIBER_STATUS; per live task a
 * TASK_STATUS.  The tracker compares these with what it already holds:
 *
 *  - identical (same name and the same start, compared in raw clock units
 *    because the ns conversion is recalibrated each generation): nothing
 *    happens, the region or call simply continues;
 *  - different or missing: what the tracker held ended in a gap the trace
 *    does not cover (lost events, generations dropped by the producer), so
 *    it is closed with FR_END_LOST at the generation's start, and the
 *    restated item opens with its real start time.
 *
 * A thread's status events precede all its other events of the generation,
 * so its reconciliation is complete at its first ordinary event (or at the
 * generation's end).  FIBER_STATUS and TASK_STATUS may come later in a
 * batch, but they too describe the generation's start, so whatever they
 * change, changed at the generation's start.
 *
 * Absence means different things for different objects.  A thread with no
 * events in a generation has no status there either (docs/format.md): it is
 * idle, maybe blocked in a long call — exactly the thread a post-mortem
 * needs — so threads are never dropped for being absent.  Runnable and
 * waiting fibers and live tasks are restated every generation, so a missing
 * one is gone (its exit or end was lost); a fiber running on a thread that
 * is itself absent is kept with its thread.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/view.h"
#include "track-priv.h"
#include "view-map.h"

/* Argument positions in the event table rows (protocol/include/proto/event.h).
 * tests/unit/test-export-chrome.c checks them against the table. */
enum {
        A_THREAD_STATUS_FIBER = 1,
        A_THREAD_STATUS_SYSCALL = 2,
        A_THREAD_STATUS_SYSCALL_START = 3,
        A_REGION_STATUS_NAME = 1,
        A_REGION_STATUS_START = 2,
        A_TASK_STATUS_TASK = 1,
        A_TASK_STATUS_PARENT = 2,
        A_TASK_STATUS_NAME = 3,
        A_TASK_STATUS_START = 4,
        A_FIBER_STATUS_FIBER = 1,
        A_FIBER_STATUS_STATE = 2,
        A_FIBER_STATUS_NAME = 3,
        A_FIBER_STATUS_REASON = 4,
        A_REGION_BEGIN_NAME = 1,
        A_LOG_CATEGORY = 1,
        A_LOG_MESSAGE = 2,
        A_TASK_BEGIN_TASK = 1,
        A_TASK_BEGIN_PARENT = 2,
        A_TASK_BEGIN_NAME = 3,
        A_TASK_END_TASK = 1,
        A_THREAD_NAME_NAME = 1,
        A_SYSCALL_BEGIN_NAME = 1,
        A_FIBER_FIBER = 1, /* every FIBER_* transition */
        A_FIBER_CREATE_NAME = 2,
        A_FIBER_BLOCK_REASON = 3,
};

/*
 * Names (see track-priv.h): interned by content in a chained hash table,
 * freed when the last object using one lets go.  Looking a reader string up
 * by content for every new fiber would still cost a hash of the text, so a
 * small direct-mapped cache remembers, per generation, which fr_name each
 * reader string pointer turned into: a reader string is one address for the
 * whole generation (docs: reader.h), so a hit needs no look at the text.
 * The cache holds a reference on what it maps, and is emptied when the next
 * generation begins (the reader reuses its memory then).
 */
#define NAME_CACHE 256 /* entries of the pointer cache, a power of two */
#define TCACHE     64  /* entries of the thread cache, a power of two */

struct name_cache_ent {
        const char *p;
        struct fr_name *n;
};

/*
 * Fibers and tasks come and go by the hundred thousand: they are carved
 * from slabs and recycled through a free list instead of one malloc each.
 * A pool keeps its slabs until the tracker is freed, so the tracker's memory
 * is what was live at the busiest point, not what is live now.
 */
#define POOL_SLAB 64 /* objects per slab */

struct pool {
        size_t size; /* of one object, at least a pointer */
        size_t zero; /* bytes zeroed when handed out (the rest is set before use) */
        void *free;  /* free objects, chained through their first word */
        void **slabs;
        size_t nslabs, cslabs;
};

struct fr_track {
        /* First: the time, thread and fiber of the event being processed,
         * which the exporters read inline (track-priv.h). */
        struct fr_track_current cur;
        struct fr_track_hooks hooks;
        void *ctx;
        /* fr_track_set_pass() (track-priv.h) */
        fr_track_pass_fn pass_counter, pass_log, pass_lost, pass_ready, pass_run;
        struct vmap threads, fibers, tasks;
        uint64_t gen_index; /* generations begun, 1-based */
        int64_t gen_start_ns;
        struct fr_clockconv conv; /* the current generation's clock */
        /* Threads by the low bits of their id: events of several threads
         * interleave finely, and a hit here is a branch that predicts well,
         * where "same thread as the last event" did not. */
        struct {
                uint64_t tid; /* 0: empty (the tracer's id never comes here) */
                struct fr_track_thread *t;
        } tcache[TCACHE];
        /* names */
        struct fr_name **names;
        size_t nnames_cap, nnames; /* buckets (a power of two), entries */
        struct fr_name *empty;     /* "", held for the tracker's lifetime */
        struct name_cache_ent cache[NAME_CACHE];
        struct pool fiber_pool, task_pool;
};

/* ---- names ---- */

static uint32_t name_hash(const char *s, size_t len)
{
        uint32_t h = 2166136261u; /* FNV-1a */
        for (size_t i = 0; i < len; i++)
                h = (h ^ (uint8_t)s[i]) * 16777619u;
        return h;
}

/* Names handed out are char * in the view.h structs; this is their header. */
static struct fr_name *name_mut(char *s)
{
        return (struct fr_name *)(void *)(s - offsetof(struct fr_name, s));
}

static int names_grow(struct fr_track *tr)
{
        size_t cap = tr->nnames_cap ? tr->nnames_cap * 2 : 64;
        struct fr_name **b = calloc(cap, sizeof(*b));
        if (!b)
                return -ENOMEM;
        for (size_t i = 0; i < tr->nnames_cap; i++) {
                struct fr_name *n = tr->names[i], *next;
                for (; n; n = next) {
                        next = n->next;
                        n->next = b[n->hash & (cap - 1)];
                        b[n->hash & (cap - 1)] = n;
                }
        }
        free(tr->names);
        tr->names = b;
        tr->nnames_cap = cap;
        return 0;
}

/* A new reference to the interned copy of s[0..len). NULL: out of memory. */
static struct fr_name *name_intern(struct fr_track *tr, const char *s, size_t len)
{
        uint32_t h = name_hash(s, len);
        struct fr_name *n;

        if (tr->nnames_cap) {
                for (n = tr->names[h & (tr->nnames_cap - 1)]; n; n = n->next) {
                        if (n->hash == h && n->len == len && !memcmp(n->s, s, len)) {
                                n->refs++;
                                return n;
                        }
                }
        }
        if (tr->nnames >= tr->nnames_cap && names_grow(tr) < 0)
                return NULL;
        n = malloc(sizeof(*n) + (len + 1 > FR_NAME_READABLE ? len + 1 : FR_NAME_READABLE));
        if (!n)
                return NULL;
        n->refs = 1;
        n->len = (uint32_t)len;
        n->hash = h;
        n->json_plain = 1;
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
                        n->json_plain = 0;
        }
        memcpy(n->s, s, len);
        n->s[len] = '\0';
        n->next = tr->names[h & (tr->nnames_cap - 1)];
        tr->names[h & (tr->nnames_cap - 1)] = n;
        tr->nnames++;
        return n;
}

static void name_put(struct fr_track *tr, struct fr_name *n)
{
        if (!n || --n->refs)
                return;
        struct fr_name **pp = &tr->names[n->hash & (tr->nnames_cap - 1)];
        while (*pp != n)
                pp = &(*pp)->next;
        *pp = n->next;
        tr->nnames--;
        free(n);
}

/* Lets go of a name pointer from one of the tracker's structs. */
static void name_release(struct fr_track *tr, char *s)
{
        if (s)
                name_put(tr, name_mut(s));
}

/* A new reference to the name for reader string s (NULL: ""), as its text
 * pointer.  NULL: out of memory. */
static char *name_get(struct fr_track *tr, const char *s)
{
        struct name_cache_ent *e;
        struct fr_name *n;

        if (!s || !*s) {
                tr->empty->refs++;
                return tr->empty->s;
        }
        e = &tr->cache[((uintptr_t)s >> 3) & (NAME_CACHE - 1)];
        if (e->p == s) {
                e->n->refs++;
                return e->n->s;
        }
        n = name_intern(tr, s, strlen(s));
        if (!n)
                return NULL;
        n->refs++; /* the cache's */
        name_put(tr, e->n);
        e->p = s;
        e->n = n;
        return n->s;
}

/* An extra reference to a name the tracker already holds. */
static char *name_dup(char *s)
{
        name_mut(s)->refs++;
        return s;
}

static void name_cache_clear(struct fr_track *tr)
{
        for (size_t i = 0; i < NAME_CACHE; i++) {
                if (tr->cache[i].n) {
                        name_put(tr, tr->cache[i].n);
                        tr->cache[i] = (struct name_cache_ent){0};
                }
        }
}

/* ---- pools ---- */

static void *pool_get(struct pool *p)
{
        if (!p->free) {
                char *slab;
                if (p->nslabs == p->cslabs) {
                        size_t cap = p->cslabs ? p->cslabs * 2 : 8;
                        void **s = realloc(p->slabs, cap * sizeof(*s));
                        if (!s)
                                return NULL;
                        p->slabs = s;
                        p->cslabs = cap;
                }
                slab = malloc(p->size * POOL_SLAB);
                if (!slab)
                        return NULL;
                p->slabs[p->nslabs++] = slab;
                for (size_t i = POOL_SLAB; i > 0; i--) {
                        void *o = slab + (i - 1) * p->size;
                        *(void **)o = p->free;
                        p->free = o;
                }
        }
        void *o = p->free;
        p->free = *(void **)o;
        memset(o, 0, p->zero);
        return o;
}

static void pool_put(struct pool *p, void *o)
{
        *(void **)o = p->free;
        p->free = o;
}

static void pool_done(struct pool *p)
{
        for (size_t i = 0; i < p->nslabs; i++)
                free(p->slabs[i]);
        free(p->slabs);
        *p = (struct pool){0};
}

static void region_name_free(struct fr_track *tr, struct fr_track_region *r)
{
        name_release(tr, r->name);
        r->name = NULL;
}

int64_t fr_track_ns(const struct fr_generation *g, uint64_t t)
{
        return fr_clock_mono_ns(&g->clock, t);
}

static inline int64_t clock_mono(const struct fr_track *tr, uint64_t t)
{
        return fr_clockconv_mono_inline(&tr->conv, t);
}

int64_t fr_track_time(const struct fr_track *tr, uint64_t t)
{
        return clock_mono(tr, t);
}

int64_t fr_track_event_ns(const struct fr_track *tr)
{
        return tr->cur.event_ns;
}

int fr_track_set_pass(struct fr_track *tr, uint8_t type, fr_track_pass_fn fn)
{
        switch (type) {
        case PROTO_EV_COUNTER: tr->pass_counter = fn; return 0;
        case PROTO_EV_LOG: tr->pass_log = fn; return 0;
        case PROTO_EV_EVENTS_LOST: tr->pass_lost = fn; return 0;
        case PROTO_EV_FIBER_READY: tr->pass_ready = fn; return 0;
        case PROTO_EV_FIBER_RUN: tr->pass_run = fn; return 0;
        default: return -EINVAL;
        }
}

struct fr_track *fr_track_new(const struct fr_track_hooks *hooks, void *ctx)
{
        struct fr_track *tr = calloc(1, sizeof(*tr));
        if (!tr)
                return NULL;
        if (hooks)
                tr->hooks = *hooks;
        tr->ctx = ctx;
        vmap_init(&tr->threads);
        vmap_init(&tr->fibers);
        vmap_init(&tr->tasks);
        /* A fiber's log lines count only up to nlogs: zero what is before. */
        tr->fiber_pool.size = sizeof(struct fr_track_fiber);
        tr->fiber_pool.zero = offsetof(struct fr_track_fiber, logs);
        tr->task_pool.size = sizeof(struct fr_track_task);
        tr->task_pool.zero = sizeof(struct fr_track_task);
        tr->empty = name_intern(tr, "", 0);
        if (!tr->empty) {
                fr_track_free(tr);
                return NULL;
        }
        return tr;
}

static void thread_free(struct fr_track *tr, struct fr_track_thread *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->nregions; i++)
                region_name_free(tr, &t->regions[i]);
        free(t->regions);
        name_release(tr, t->syscall);
        name_release(tr, t->name);
        free(t);
}

static void fiber_free(struct fr_track *tr, struct fr_track_fiber *f)
{
        if (!f)
                return;
        name_release(tr, f->name);
        name_release(tr, f->reason);
        pool_put(&tr->fiber_pool, f);
}

static void task_free(struct fr_track *tr, struct fr_track_task *k)
{
        if (!k)
                return;
        name_release(tr, k->name);
        pool_put(&tr->task_pool, k);
}

void fr_track_free(struct fr_track *tr)
{
        void *v;
        if (!tr)
                return;
        for (size_t i = 0; vmap_next(&tr->threads, &i, NULL, &v);)
                thread_free(tr, v);
        for (size_t i = 0; vmap_next(&tr->fibers, &i, NULL, &v);)
                fiber_free(tr, v);
        for (size_t i = 0; vmap_next(&tr->tasks, &i, NULL, &v);)
                task_free(tr, v);
        vmap_done(&tr->threads);
        vmap_done(&tr->fibers);
        vmap_done(&tr->tasks);
        name_cache_clear(tr);
        if (tr->empty)
                name_put(tr, tr->empty);
        free(tr->names);
        pool_done(&tr->fiber_pool);
        pool_done(&tr->task_pool);
        free(tr);
}

struct fr_track_thread *fr_track_thread(const struct fr_track *tr, uint64_t tid)
{
        if (tr->cur.thread && tr->cur.thread->tid == tid)
                return tr->cur.thread;
        return vmap_get(&tr->threads, tid);
}

struct fr_track_fiber *fr_track_fiber(const struct fr_track *tr, uint64_t id)
{
        return vmap_get(&tr->fibers, id);
}

struct fr_track_task *fr_track_task(const struct fr_track *tr, uint64_t id)
{
        return vmap_get(&tr->tasks, id);
}

/* ---- logs ---- */

static void log_push(struct fr_track_log *logs, unsigned *n, unsigned *first, int64_t ns,
                     const char *category, const uint8_t *message, size_t message_len)
{
        unsigned slot;
        if (*n < FR_TRACK_LOGS) {
                slot = (*first + *n) % FR_TRACK_LOGS;
                (*n)++;
        } else {
                slot = *first;
                *first = (*first + 1) % FR_TRACK_LOGS;
        }
        struct fr_track_log *l = &logs[slot];
        l->time_ns = ns;
        size_t clen = category ? strnlen(category, sizeof(l->category) - 1) : 0;
        if (clen)
                memcpy(l->category, category, clen);
        l->category[clen] = '\0';
        if (!message)
                message_len = 0;
        if (message_len > sizeof(l->message) - 1)
                message_len = sizeof(l->message) - 1;
        if (message_len)
                memcpy(l->message, message, message_len);
        l->message[message_len] = '\0';
}

const struct fr_track_log *fr_track_thread_log(const struct fr_track_thread *t, unsigned i)
{
        return i < t->nlogs ? &t->logs[(t->log_first + i) % FR_TRACK_LOGS] : NULL;
}

const struct fr_track_log *fr_track_fiber_log(const struct fr_track_fiber *f, unsigned i)
{
        return i < f->nlogs ? &f->logs[(f->log_first + i) % FR_TRACK_LOGS] : NULL;
}

/* ---- threads, regions, syscalls ---- */

/*
 * The hot paths below return what they find (NULL: out of memory) rather
 * than filling an out parameter, and leave rare work to functions kept out
 * of line: fr_track_event() runs for every event, and an address-taken
 * local or a dozen live registers would cost it a stack canary and a
 * longer prologue on every call.
 */
static __attribute__((noinline)) struct fr_track_thread *
thread_get_slow(struct fr_track *tr, const struct fr_generation *g, uint64_t tid)
{
        unsigned slot = (unsigned)tid & (TCACHE - 1);
        struct fr_track_thread *t = vmap_get(&tr->threads, tid);
        if (t) {
                tr->tcache[slot].tid = tid;
                tr->tcache[slot].t = t;
                tr->cur.thread = t;
                return t;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->tid = tid;
        t->name = name_get(tr, fr_gen_thread_name(g, tid));
        if (!t->name || vmap_put(&tr->threads, tid, t) < 0) {
                thread_free(tr, t);
                return NULL;
        }
        tr->cur.thread = t;
        if (tr->hooks.thread_new)
                tr->hooks.thread_new(tr->ctx, t);
        return t;
}

static inline struct fr_track_thread *thread_get(struct fr_track *tr, const struct fr_generation *g,
                                                 uint64_t tid)
{
        unsigned slot = (unsigned)tid & (TCACHE - 1);
        if (__builtin_expect(tr->tcache[slot].tid == tid, 1)) {
                struct fr_track_thread *t = tr->tcache[slot].t;
                tr->cur.thread = t;
                return t;
        }
        return thread_get_slow(tr, g, tid);
}

static int thread_set_name(struct fr_track *tr, struct fr_track_thread *t, const char *name)
{
        if (!name)
                return 0;
        char *n = name_get(tr, name);
        if (!n)
                return -ENOMEM;
        if (n == t->name) { /* interned: the same text is the same name */
                name_release(tr, n);
                return 0;
        }
        name_release(tr, t->name);
        t->name = n;
        if (tr->hooks.thread_name)
                tr->hooks.thread_name(tr->ctx, t);
        return 0;
}

/* Closes the innermost open region. */
static void region_pop(struct fr_track *tr, struct fr_track_thread *t, int64_t end_ns,
                       enum fr_end how)
{
        struct fr_track_region *r = &t->regions[t->nregions - 1];
        if (tr->hooks.region_end)
                tr->hooks.region_end(tr->ctx, t, r, end_ns, how);
        region_name_free(tr, r);
        t->nregions--;
}

static int region_push(struct fr_track *tr, struct fr_track_thread *t, const char *name,
                       int64_t start_ns, uint64_t start_units)
{
        if (t->nregions == FR_TRACK_MAX_REGIONS) {
                t->regions_untracked++;
                return 0;
        }
        if (t->nregions == t->regions_cap) {
                size_t cap = t->regions_cap ? t->regions_cap * 2 : 8;
                struct fr_track_region *n = realloc(t->regions, cap * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                t->regions = n;
                t->regions_cap = cap;
        }
        struct fr_track_region *r = &t->regions[t->nregions];
        r->name = name_get(tr, name);
        if (!r->name)
                return -ENOMEM;
        r->start_ns = start_ns;
        r->start_units = start_units;
        t->nregions++;
        return 0;
}

static void syscall_close(struct fr_track *tr, struct fr_track_thread *t, int64_t end_ns,
                          enum fr_end how);

/* End of a thread's status section: regions it did not restate are gone. */
static void thread_reconcile_done(struct fr_track *tr, struct fr_track_thread *t)
{
        if (!t->reconciling)
                return;
        while (t->nregions > t->status_regions)
                region_pop(tr, t, tr->gen_start_ns, FR_END_LOST);
        t->regions_untracked = 0;
        t->reconciling = 0;
}

static void syscall_close(struct fr_track *tr, struct fr_track_thread *t, int64_t end_ns,
                          enum fr_end how)
{
        if (!t->in_syscall)
                return;
        if (tr->hooks.syscall_end)
                tr->hooks.syscall_end(tr->ctx, t, t->syscall, t->syscall_start_ns, end_ns, how);
        name_release(tr, t->syscall);
        t->syscall = NULL;
        t->in_syscall = 0;
}

static int syscall_open(struct fr_track *tr, struct fr_track_thread *t, const char *name,
                        int64_t start_ns, uint64_t start_units)
{
        char *n = name_get(tr, name);
        if (!n)
                return -ENOMEM;
        name_release(tr, t->syscall);
        t->syscall = n;
        t->syscall_start_ns = start_ns;
        t->syscall_start_units = start_units;
        t->in_syscall = 1;
        return 0;
}

/* ---- fibers ---- */

/* A new fiber (not in the map); NULL: out of memory. */
static __attribute__((noinline)) struct fr_track_fiber *
fiber_new(struct fr_track *tr, uint64_t id, const char *name, uint8_t state, int64_t now_ns)
{
        struct fr_track_fiber *f = pool_get(&tr->fiber_pool);
        if (!f)
                return NULL;
        f->id = id;
        f->name = name_get(tr, name);
        f->reason = name_dup(tr->empty->s);
        f->state = state;
        f->since_ns = now_ns;
        f->created_ns = now_ns;
        f->seen_gen = tr->gen_index;
        if (!f->name || vmap_put(&tr->fibers, id, f) < 0) {
                fiber_free(tr, f);
                return NULL;
        }
        if (tr->hooks.fiber_new)
                tr->hooks.fiber_new(tr->ctx, f);
        return f;
}

/* The fiber, created (name, state since now_ns) if absent; NULL: out of memory. */
static inline struct fr_track_fiber *fiber_get(struct fr_track *tr, uint64_t id, const char *name,
                                               uint8_t state, int64_t now_ns)
{
        struct fr_track_fiber *f = vmap_get(&tr->fibers, id);
        return f ? f : fiber_new(tr, id, name, state, now_ns);
}

static int fiber_set_state(struct fr_track *tr, struct fr_track_fiber *f, uint8_t state,
                           const char *reason, int64_t now_ns, enum fr_end how)
{
        char *n = name_get(tr, reason);
        if (!n)
                return -ENOMEM;
        uint8_t old_state = f->state;
        char *old_reason = f->reason;
        int64_t old_since = f->since_ns;
        f->state = state;
        f->reason = n;
        f->since_ns = now_ns;
        if (tr->hooks.fiber_state)
                tr->hooks.fiber_state(tr->ctx, f, old_state, old_reason, old_since, now_ns, how);
        name_release(tr, old_reason);
        return 0;
}

static void fiber_remove(struct fr_track *tr, struct fr_track_fiber *f, int64_t now_ns,
                         enum fr_end how)
{
        if (tr->hooks.fiber_state)
                tr->hooks.fiber_state(tr->ctx, f, f->state, f->reason, f->since_ns, now_ns, how);
        if (tr->hooks.fiber_free)
                tr->hooks.fiber_free(tr->ctx, f);
        if (f->tid) {
                struct fr_track_thread *t = fr_track_thread(tr, f->tid);
                if (t && t->fiber == f->id)
                        t->fiber = 0;
        }
        if (tr->cur.fiber == f)
                tr->cur.fiber = NULL;
        (void)vmap_del(&tr->fibers, f->id);
        fiber_free(tr, f);
}

/* ---- tasks ---- */

static int task_open(struct fr_track *tr, uint64_t id, uint64_t parent, const char *name,
                     int64_t start_ns, uint64_t start_units, uint64_t tid)
{
        struct fr_track_task *k = pool_get(&tr->task_pool);
        if (!k)
                return -ENOMEM;
        k->id = id;
        k->parent = parent;
        k->name = name_get(tr, name);
        k->start_ns = start_ns;
        k->tid = tid;
        k->seen_gen = tr->gen_index;
        k->start_units = start_units;
        if (!k->name || vmap_put(&tr->tasks, id, k) < 0) {
                task_free(tr, k);
                return -ENOMEM;
        }
        if (tr->hooks.task_begin)
                tr->hooks.task_begin(tr->ctx, k);
        return 0;
}

static void task_close(struct fr_track *tr, struct fr_track_task *k, int64_t end_ns,
                       enum fr_end how)
{
        if (tr->hooks.task_end)
                tr->hooks.task_end(tr->ctx, k, end_ns, how);
        (void)vmap_del(&tr->tasks, k->id);
        task_free(tr, k);
}

/* ---- generations ---- */

int fr_track_generation_begin(struct fr_track *tr, const struct fr_generation *g)
{
        tr->gen_index++;
        fr_clockconv_init(&tr->conv, &g->clock);
        tr->gen_start_ns = fr_track_time(tr, g->clock.start);
        /* The reader's strings of the last generation are gone. */
        name_cache_clear(tr);
        return 0;
}

static int snapshot(const struct vmap *m, void ***ret, size_t *ret_n);

static void thread_drop(struct fr_track *tr, struct fr_track_thread *t, int64_t end_ns,
                        enum fr_end how)
{
        syscall_close(tr, t, end_ns, how);
        while (t->nregions)
                region_pop(tr, t, end_ns, how);
        if (tr->hooks.thread_free)
                tr->hooks.thread_free(tr->ctx, t);
        if (tr->cur.thread == t)
                tr->cur.thread = NULL;
        if (tr->tcache[t->tid & (TCACHE - 1)].t == t)
                tr->tcache[t->tid & (TCACHE - 1)].tid = 0;
        (void)vmap_del(&tr->threads, t->tid);
        thread_free(tr, t);
}

/* Whatever this generation did not mention is gone (see the top of the file).
 * Work on sorted snapshots: the maps must not change while iterated, and the
 * order of the hooks should not depend on hashing. */
int fr_track_generation_end(struct fr_track *tr, const struct fr_generation *g)
{
        struct fr_track_thread **threads = NULL;
        struct fr_track_fiber **fibers = NULL;
        struct fr_track_task **tasks = NULL;
        size_t nthreads, nfibers, ntasks;
        int r;
        (void)g;

        r = fr_track_threads(tr, &threads, &nthreads);
        if (r < 0)
                goto out;
        r = fr_track_fibers(tr, &fibers, &nfibers);
        if (r < 0)
                goto out;
        r = fr_track_tasks(tr, &tasks, &ntasks);
        if (r < 0)
                goto out;
        for (size_t i = 0; i < nthreads; i++)
                thread_reconcile_done(tr, threads[i]);
        for (size_t i = 0; i < nfibers; i++) {
                struct fr_track_fiber *f = fibers[i];
                if (f->seen_gen == tr->gen_index)
                        continue;
                if (f->state == PROTO_FIBER_RUNNING || f->state == PROTO_FIBER_SYSCALL) {
                        struct fr_track_thread *t = vmap_get(&tr->threads, f->tid);
                        if (t && t->seen_gen != tr->gen_index && t->fiber == f->id)
                                continue; /* its thread was idle all generation */
                }
                fiber_remove(tr, f, tr->gen_start_ns, FR_END_LOST);
        }
        for (size_t i = 0; i < ntasks; i++)
                if (tasks[i]->seen_gen != tr->gen_index)
                        task_close(tr, tasks[i], tr->gen_start_ns, FR_END_LOST);
out:
        free(threads);
        free(fibers);
        free(tasks);
        return r;
}

void fr_track_finish(struct fr_track *tr, int64_t end_ns)
{
        void *v;

        /* Without memory for a sorted snapshot, still end everything, in map order. */
        for (int pass = 0; pass < 3; pass++) {
                struct vmap *m = pass == 0 ? &tr->tasks : pass == 1 ? &tr->fibers : &tr->threads;
                void **arr = NULL;
                size_t n = 0;
                if (snapshot(m, &arr, &n) < 0) {
                        size_t i = 0;
                        if (vmap_next(m, &i, NULL, &v)) {
                                arr = &v;
                                n = 1;
                        }
                }
                for (size_t i = 0; i < n; i++) {
                        if (pass == 0)
                                task_close(tr, arr[i], end_ns, FR_END_TRACE);
                        else if (pass == 1)
                                fiber_remove(tr, arr[i], end_ns, FR_END_TRACE);
                        else
                                thread_drop(tr, arr[i], end_ns, FR_END_TRACE);
                }
                if (arr != &v)
                        free(arr);
                if (m->n) /* only after an allocation failure: go again */
                        pass--;
        }
}

/* ---- events ---- */

static __attribute__((noinline)) int on_thread_status(struct fr_track *tr,
                                                      const struct fr_generation *g,
                                                      struct fr_track_thread *t,
                                                      const struct fr_event *ev)
{
        int r = thread_set_name(tr, t, fr_gen_thread_name(g, t->tid));
        if (r < 0)
                return r;
        t->seen_gen = tr->gen_index;
        t->reconciling = 1;
        t->status_regions = 0;
        t->fiber = ev->args[A_THREAD_STATUS_FIBER];

        const char *sys = ev->str[A_THREAD_STATUS_SYSCALL];
        uint64_t sys_units = ev->args[A_THREAD_STATUS_SYSCALL_START];
        if (t->in_syscall &&
            (!sys || t->syscall_start_units != sys_units || strcmp(sys, t->syscall) != 0))
                syscall_close(tr, t, tr->gen_start_ns, FR_END_LOST);
        if (sys && !t->in_syscall)
                return syscall_open(tr, t, sys, fr_track_time(tr, sys_units), sys_units);
        return 0;
}

static __attribute__((noinline)) int
on_region_status(struct fr_track *tr, struct fr_track_thread *t, const struct fr_event *ev)
{
        const char *name = ev->str[A_REGION_STATUS_NAME];
        uint64_t units = ev->args[A_REGION_STATUS_START];
        size_t idx = t->status_regions++;
        if (!name)
                name = "";
        if (idx < t->nregions) {
                struct fr_track_region *r = &t->regions[idx];
                if (r->start_units == units && !strcmp(r->name, name))
                        return 0;
                while (t->nregions > idx)
                        region_pop(tr, t, tr->gen_start_ns, FR_END_LOST);
        }
        return region_push(tr, t, name, fr_track_time(tr, units), units);
}

static __attribute__((noinline)) int on_fiber_status(struct fr_track *tr, const struct fr_event *ev)
{
        uint64_t id = ev->args[A_FIBER_STATUS_FIBER];
        uint8_t state = (uint8_t)ev->args[A_FIBER_STATUS_STATE];
        const char *reason = ev->str[A_FIBER_STATUS_REASON];
        struct fr_track_fiber *f = vmap_get(&tr->fibers, id);
        int r;

        if (!f) {
                /* First sight: the state began at or before the generation. */
                f = fiber_get(tr, id, ev->str[A_FIBER_STATUS_NAME], state, tr->gen_start_ns);
                if (!f)
                        return -ENOMEM;
                char *n = name_get(tr, reason);
                if (!n)
                        return -ENOMEM;
                name_release(tr, f->reason);
                f->reason = n;
        } else if (f->state != state || strcmp(f->reason, reason ? reason : "") != 0) {
                r = fiber_set_state(tr, f, state, reason, tr->gen_start_ns, FR_END_LOST);
                if (r < 0)
                        return r;
        }
        f->seen_gen = tr->gen_index;
        if ((state == PROTO_FIBER_RUNNING || state == PROTO_FIBER_SYSCALL) && ev->tid)
                f->tid = ev->tid;
        return 0;
}

static __attribute__((noinline)) int on_task_status(struct fr_track *tr, const struct fr_event *ev)
{
        uint64_t id = ev->args[A_TASK_STATUS_TASK];
        uint64_t units = ev->args[A_TASK_STATUS_START];
        struct fr_track_task *k = vmap_get(&tr->tasks, id);
        if (k) {
                if (k->start_units == units) {
                        k->seen_gen = tr->gen_index;
                        return 0;
                }
                task_close(tr, k, tr->gen_start_ns, FR_END_LOST);
        }
        return task_open(tr, id, ev->args[A_TASK_STATUS_PARENT], ev->str[A_TASK_STATUS_NAME],
                         fr_track_time(tr, units), units, 0);
}

static int on_fiber_event(struct fr_track *tr, const struct fr_generation *g,
                          struct fr_track_thread *t, const struct fr_event *ev, int64_t now)
{
        int r;

        uint64_t id = ev->args[A_FIBER_FIBER];
        struct fr_track_fiber *f;

        if (ev->type == PROTO_EV_FIBER_CREATE) {
                f = vmap_get(&tr->fibers, id);
                if (f) /* an id reused, or a create we saw as a status: restart it */
                        fiber_remove(tr, f, now, FR_END_LOST);
                f = fiber_get(tr, id, ev->str[A_FIBER_CREATE_NAME], PROTO_FIBER_RUNNABLE, now);
                if (!f)
                        return -ENOMEM;
                tr->cur.fiber = f;
                return 0;
        }
        /* A transition of a fiber we never saw (its create was lost): start it
         * from here in the state the transition leaves. */
        f = fiber_get(tr, id, NULL, PROTO_FIBER_RUNNABLE, now);
        if (!f)
                return -ENOMEM;
        tr->cur.fiber = f;
        f->seen_gen = tr->gen_index;
        switch (ev->type) {
        case PROTO_EV_FIBER_RUN:
                f->tid = t->tid;
                t->fiber = id;
                r = fiber_set_state(tr, f, PROTO_FIBER_RUNNING, NULL, now, FR_END_NORMAL);
                if (r == 0 && tr->pass_run)
                        tr->pass_run(tr->ctx, g, ev, now);
                return r;
        case PROTO_EV_FIBER_BLOCK:
                if (t->fiber == id)
                        t->fiber = 0;
                return fiber_set_state(tr, f, PROTO_FIBER_WAITING, ev->str[A_FIBER_BLOCK_REASON],
                                       now, FR_END_NORMAL);
        case PROTO_EV_FIBER_READY:
                r = fiber_set_state(tr, f, PROTO_FIBER_RUNNABLE, NULL, now, FR_END_NORMAL);
                if (r == 0 && tr->pass_ready)
                        tr->pass_ready(tr->ctx, g, ev, now);
                return r;
        case PROTO_EV_FIBER_YIELD:
                if (t->fiber == id)
                        t->fiber = 0;
                return fiber_set_state(tr, f, PROTO_FIBER_RUNNABLE, NULL, now, FR_END_NORMAL);
        case PROTO_EV_FIBER_EXIT: fiber_remove(tr, f, now, FR_END_NORMAL); return 0;
        default: return 0;
        }
}

int fr_track_event(struct fr_track *tr, const struct fr_generation *g, const struct fr_event *ev)
{
        int64_t now = ev->mono_ok ? ev->mono_ns : clock_mono(tr, ev->time);
        struct fr_track_thread *t = NULL;
        struct fr_track_task *k;
        struct fr_track_fiber *f;
        int r;

        tr->cur.event_ns = now;
        tr->cur.fiber = NULL;
        /* The tracer's own batch (thread 0) carries only fiber and task status. */
        if (ev->tid == 0) {
                tr->cur.thread = NULL;
                if (ev->type == PROTO_EV_FIBER_STATUS)
                        return on_fiber_status(tr, ev);
                if (ev->type == PROTO_EV_TASK_STATUS)
                        return on_task_status(tr, ev);
                return 0;
        }
        t = thread_get(tr, g, ev->tid);
        if (!t)
                return -ENOMEM;
        t->last_ns = now;
        t->events++;
        if (t->reconciling && ev->spec && ev->spec->where != 'T')
                thread_reconcile_done(tr, t);

        switch (ev->type) {
        case PROTO_EV_THREAD_STATUS: return on_thread_status(tr, g, t, ev);
        case PROTO_EV_REGION_STATUS: return on_region_status(tr, t, ev);
        case PROTO_EV_FIBER_STATUS: return on_fiber_status(tr, ev);
        case PROTO_EV_TASK_STATUS: return on_task_status(tr, ev);
        case PROTO_EV_REGION_BEGIN:
                return region_push(tr, t, ev->str[A_REGION_BEGIN_NAME], now, ev->time);
        case PROTO_EV_REGION_END:
                if (t->regions_untracked)
                        t->regions_untracked--;
                else if (t->nregions)
                        region_pop(tr, t, now, FR_END_NORMAL);
                return 0;
        case PROTO_EV_LOG:
                log_push(t->logs, &t->nlogs, &t->log_first, now, ev->str[A_LOG_CATEGORY],
                         ev->bytes[A_LOG_MESSAGE], ev->args[A_LOG_MESSAGE]);
                f = t->fiber ? vmap_get(&tr->fibers, t->fiber) : NULL;
                if (f)
                        log_push(f->logs, &f->nlogs, &f->log_first, now, ev->str[A_LOG_CATEGORY],
                                 ev->bytes[A_LOG_MESSAGE], ev->args[A_LOG_MESSAGE]);
                if (tr->pass_log)
                        tr->pass_log(tr->ctx, g, ev, now);
                return 0;
        case PROTO_EV_COUNTER:
                if (tr->pass_counter)
                        tr->pass_counter(tr->ctx, g, ev, now);
                return 0;
        case PROTO_EV_EVENTS_LOST:
                if (tr->pass_lost)
                        tr->pass_lost(tr->ctx, g, ev, now);
                return 0;
        case PROTO_EV_TASK_BEGIN:
                k = vmap_get(&tr->tasks, ev->args[A_TASK_BEGIN_TASK]);
                if (k) /* begun twice: the first one's end was lost */
                        task_close(tr, k, now, FR_END_LOST);
                return task_open(tr, ev->args[A_TASK_BEGIN_TASK], ev->args[A_TASK_BEGIN_PARENT],
                                 ev->str[A_TASK_BEGIN_NAME], now, ev->time, t->tid);
        case PROTO_EV_TASK_END:
                k = vmap_get(&tr->tasks, ev->args[A_TASK_END_TASK]);
                if (k)
                        task_close(tr, k, now, FR_END_NORMAL);
                return 0;
        case PROTO_EV_THREAD_NAME: return thread_set_name(tr, t, ev->str[A_THREAD_NAME_NAME]);
        case PROTO_EV_SYSCALL_BEGIN:
                syscall_close(tr, t, now, FR_END_LOST);
                r = syscall_open(tr, t, ev->str[A_SYSCALL_BEGIN_NAME], now, ev->time);
                if (r < 0)
                        return r;
                f = t->fiber ? vmap_get(&tr->fibers, t->fiber) : NULL;
                if (f && f->state == PROTO_FIBER_RUNNING)
                        return fiber_set_state(tr, f, PROTO_FIBER_SYSCALL,
                                               ev->str[A_SYSCALL_BEGIN_NAME], now, FR_END_NORMAL);
                return 0;
        case PROTO_EV_SYSCALL_END:
                syscall_close(tr, t, now, FR_END_NORMAL);
                f = t->fiber ? vmap_get(&tr->fibers, t->fiber) : NULL;
                if (f && f->state == PROTO_FIBER_SYSCALL)
                        return fiber_set_state(tr, f, PROTO_FIBER_RUNNING, NULL, now,
                                               FR_END_NORMAL);
                return 0;
        case PROTO_EV_FIBER_CREATE:
        case PROTO_EV_FIBER_RUN:
        case PROTO_EV_FIBER_BLOCK:
        case PROTO_EV_FIBER_READY:
        case PROTO_EV_FIBER_YIELD:
        case PROTO_EV_FIBER_EXIT: return on_fiber_event(tr, g, t, ev, now);
        default: return 0;
        }
}

/* ---- snapshots ---- */

static int cmp_id(const void *a, const void *b)
{
        /* Every tracked struct starts with its 64-bit id (tid / id). */
        uint64_t x = **(const uint64_t *const *)a, y = **(const uint64_t *const *)b;
        return x < y ? -1 : x > y;
}

static int snapshot(const struct vmap *m, void ***ret, size_t *ret_n)
{
        void **arr = NULL;
        void *v;
        size_t n = 0;
        if (m->n) {
                arr = malloc(m->n * sizeof(*arr));
                if (!arr)
                        return -ENOMEM;
                for (size_t i = 0; vmap_next(m, &i, NULL, &v);)
                        arr[n++] = v;
                qsort(arr, n, sizeof(*arr), cmp_id);
        }
        *ret = arr;
        *ret_n = n;
        return 0;
}

int fr_track_threads(const struct fr_track *tr, struct fr_track_thread ***ret, size_t *ret_n)
{
        return snapshot(&tr->threads, (void ***)ret, ret_n);
}

int fr_track_fibers(const struct fr_track *tr, struct fr_track_fiber ***ret, size_t *ret_n)
{
        return snapshot(&tr->fibers, (void ***)ret, ret_n);
}

int fr_track_tasks(const struct fr_track *tr, struct fr_track_task ***ret, size_t *ret_n)
{
        return snapshot(&tr->tasks, (void ***)ret, ret_n);
}
