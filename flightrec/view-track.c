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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/view.h"
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

struct fr_track {
        struct fr_track_hooks hooks;
        void *ctx;
        struct vmap threads, fibers, tasks;
        uint64_t gen_index; /* generations begun, 1-based */
        int64_t gen_start_ns;
        int64_t event_ns;         /* time of the event being processed */
        struct fr_clockconv conv; /* the current generation's clock */
};

static char *xstrdup(const char *s)
{
        return strdup(s ? s : "");
}

/* Fibers change state all the time and most states have no reason: those
 * share this empty string instead of a malloc'ed one. */
static char no_reason[] = "";

static char *reason_dup(const char *s)
{
        return s && *s ? strdup(s) : no_reason;
}

static void reason_free(char *s)
{
        if (s != no_reason)
                free(s);
}

static void region_name_free(struct fr_track_region *r)
{
        if (r->name != r->inline_name)
                free(r->name);
}

int64_t fr_track_ns(const struct fr_generation *g, uint64_t t)
{
        return fr_clock_mono_ns(&g->clock, t);
}

int64_t fr_track_time(const struct fr_track *tr, uint64_t t)
{
        return fr_clockconv_mono(&tr->conv, t);
}

int64_t fr_track_event_ns(const struct fr_track *tr)
{
        return tr->event_ns;
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
        return tr;
}

static void thread_free(struct fr_track_thread *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->nregions; i++)
                region_name_free(&t->regions[i]);
        free(t->regions);
        free(t->syscall);
        free(t->name);
        free(t);
}

static void fiber_free(struct fr_track_fiber *f)
{
        if (!f)
                return;
        free(f->name);
        reason_free(f->reason);
        free(f);
}

static void task_free(struct fr_track_task *k)
{
        if (!k)
                return;
        free(k->name);
        free(k);
}

void fr_track_free(struct fr_track *tr)
{
        void *v;
        if (!tr)
                return;
        for (size_t i = 0; vmap_next(&tr->threads, &i, NULL, &v);)
                thread_free(v);
        for (size_t i = 0; vmap_next(&tr->fibers, &i, NULL, &v);)
                fiber_free(v);
        for (size_t i = 0; vmap_next(&tr->tasks, &i, NULL, &v);)
                task_free(v);
        vmap_done(&tr->threads);
        vmap_done(&tr->fibers);
        vmap_done(&tr->tasks);
        free(tr);
}

struct fr_track_thread *fr_track_thread(const struct fr_track *tr, uint64_t tid)
{
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
        (void)snprintf(l->category, sizeof(l->category), "%s", category ? category : "");
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

static int thread_get(struct fr_track *tr, const struct fr_generation *g, uint64_t tid,
                      struct fr_track_thread **ret)
{
        struct fr_track_thread *t = vmap_get(&tr->threads, tid);
        if (t) {
                *ret = t;
                return 0;
        }
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->tid = tid;
        t->name = xstrdup(fr_gen_thread_name(g, tid));
        if (!t->name || vmap_put(&tr->threads, tid, t) < 0) {
                thread_free(t);
                return -ENOMEM;
        }
        if (tr->hooks.thread_new)
                tr->hooks.thread_new(tr->ctx, t);
        *ret = t;
        return 0;
}

static int thread_set_name(struct fr_track *tr, struct fr_track_thread *t, const char *name)
{
        if (!name || !strcmp(name, t->name))
                return 0;
        char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        free(t->name);
        t->name = copy;
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
        region_name_free(r);
        t->nregions--;
}

static int region_push(struct fr_track_thread *t, const char *name, int64_t start_ns,
                       uint64_t start_units)
{
        if (t->nregions == FR_TRACK_MAX_REGIONS) {
                t->regions_untracked++;
                return 0;
        }
        if (t->nregions == t->regions_cap) {
                size_t cap = t->regions_cap ? t->regions_cap * 2 : 8;
                /* Inline names move with the array: mark them (NULL) before
                 * the move and point them at their new place after it. */
                for (size_t i = 0; i < t->nregions; i++)
                        if (t->regions[i].name == t->regions[i].inline_name)
                                t->regions[i].name = NULL;
                struct fr_track_region *n = realloc(t->regions, cap * sizeof(*n));
                if (n) {
                        t->regions = n;
                        t->regions_cap = cap;
                }
                for (size_t i = 0; i < t->nregions; i++)
                        if (!t->regions[i].name)
                                t->regions[i].name = t->regions[i].inline_name;
                if (!n)
                        return -ENOMEM;
        }
        struct fr_track_region *r = &t->regions[t->nregions];
        size_t len = name ? strlen(name) : 0;
        if (len < sizeof(r->inline_name)) {
                if (len)
                        memcpy(r->inline_name, name, len);
                r->inline_name[len] = '\0';
                r->name = r->inline_name;
        } else {
                r->name = strdup(name);
                if (!r->name)
                        return -ENOMEM;
        }
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
        free(t->syscall);
        t->syscall = NULL;
        t->in_syscall = 0;
}

static int syscall_open(struct fr_track_thread *t, const char *name, int64_t start_ns,
                        uint64_t start_units)
{
        char *copy = xstrdup(name);
        if (!copy)
                return -ENOMEM;
        free(t->syscall);
        t->syscall = copy;
        t->syscall_start_ns = start_ns;
        t->syscall_start_units = start_units;
        t->in_syscall = 1;
        return 0;
}

/* ---- fibers ---- */

static int fiber_get(struct fr_track *tr, uint64_t id, const char *name, uint8_t state,
                     int64_t now_ns, struct fr_track_fiber **ret)
{
        struct fr_track_fiber *f = vmap_get(&tr->fibers, id);
        if (f) {
                *ret = f;
                return 0;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->id = id;
        f->name = xstrdup(name);
        f->reason = no_reason;
        f->state = state;
        f->since_ns = now_ns;
        f->created_ns = now_ns;
        f->seen_gen = tr->gen_index;
        if (!f->name || !f->reason || vmap_put(&tr->fibers, id, f) < 0) {
                fiber_free(f);
                return -ENOMEM;
        }
        if (tr->hooks.fiber_new)
                tr->hooks.fiber_new(tr->ctx, f);
        *ret = f;
        return 0;
}

static int fiber_set_state(struct fr_track *tr, struct fr_track_fiber *f, uint8_t state,
                           const char *reason, int64_t now_ns, enum fr_end how)
{
        char *copy = reason_dup(reason);
        if (!copy)
                return -ENOMEM;
        uint8_t old_state = f->state;
        char *old_reason = f->reason;
        int64_t old_since = f->since_ns;
        f->state = state;
        f->reason = copy;
        f->since_ns = now_ns;
        if (tr->hooks.fiber_state)
                tr->hooks.fiber_state(tr->ctx, f, old_state, old_reason, old_since, now_ns, how);
        reason_free(old_reason);
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
                struct fr_track_thread *t = vmap_get(&tr->threads, f->tid);
                if (t && t->fiber == f->id)
                        t->fiber = 0;
        }
        (void)vmap_del(&tr->fibers, f->id);
        fiber_free(f);
}

/* ---- tasks ---- */

static int task_open(struct fr_track *tr, uint64_t id, uint64_t parent, const char *name,
                     int64_t start_ns, uint64_t start_units, uint64_t tid)
{
        struct fr_track_task *k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        k->id = id;
        k->parent = parent;
        k->name = xstrdup(name);
        k->start_ns = start_ns;
        k->tid = tid;
        k->seen_gen = tr->gen_index;
        k->start_units = start_units;
        if (!k->name || vmap_put(&tr->tasks, id, k) < 0) {
                task_free(k);
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
        task_free(k);
}

/* ---- generations ---- */

int fr_track_generation_begin(struct fr_track *tr, const struct fr_generation *g)
{
        tr->gen_index++;
        fr_clockconv_init(&tr->conv, &g->clock);
        tr->gen_start_ns = fr_track_time(tr, g->clock.start);
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
        (void)vmap_del(&tr->threads, t->tid);
        thread_free(t);
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

static int on_thread_status(struct fr_track *tr, const struct fr_generation *g,
                            struct fr_track_thread *t, const struct fr_event *ev, int64_t now)
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
                return syscall_open(t, sys, fr_track_time(tr, sys_units), sys_units);
        (void)now;
        return 0;
}

static int on_region_status(struct fr_track *tr, const struct fr_generation *g,
                            struct fr_track_thread *t, const struct fr_event *ev)
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
        return region_push(t, name, fr_track_time(tr, units), units);
}

static int on_fiber_status(struct fr_track *tr, const struct fr_event *ev)
{
        uint64_t id = ev->args[A_FIBER_STATUS_FIBER];
        uint8_t state = (uint8_t)ev->args[A_FIBER_STATUS_STATE];
        const char *reason = ev->str[A_FIBER_STATUS_REASON];
        struct fr_track_fiber *f = vmap_get(&tr->fibers, id);
        int r;

        if (!f) {
                /* First sight: the state began at or before the generation. */
                r = fiber_get(tr, id, ev->str[A_FIBER_STATUS_NAME], state, tr->gen_start_ns, &f);
                if (r < 0)
                        return r;
                char *copy = reason_dup(reason);
                if (!copy)
                        return -ENOMEM;
                reason_free(f->reason);
                f->reason = copy;
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

static int on_task_status(struct fr_track *tr, const struct fr_generation *g,
                          const struct fr_event *ev)
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

static int on_fiber_event(struct fr_track *tr, struct fr_track_thread *t, const struct fr_event *ev,
                          int64_t now)
{
        uint64_t id = ev->args[A_FIBER_FIBER];
        struct fr_track_fiber *f;
        int r;

        if (ev->type == PROTO_EV_FIBER_CREATE) {
                f = vmap_get(&tr->fibers, id);
                if (f) /* an id reused, or a create we saw as a status: restart it */
                        fiber_remove(tr, f, now, FR_END_LOST);
                return fiber_get(tr, id, ev->str[A_FIBER_CREATE_NAME], PROTO_FIBER_RUNNABLE, now,
                                 &f);
        }
        /* A transition of a fiber we never saw (its create was lost): start it
         * from here in the state the transition leaves. */
        r = fiber_get(tr, id, NULL, PROTO_FIBER_RUNNABLE, now, &f);
        if (r < 0)
                return r;
        f->seen_gen = tr->gen_index;
        switch (ev->type) {
        case PROTO_EV_FIBER_RUN:
                f->tid = t->tid;
                t->fiber = id;
                return fiber_set_state(tr, f, PROTO_FIBER_RUNNING, NULL, now, FR_END_NORMAL);
        case PROTO_EV_FIBER_BLOCK:
                if (t->fiber == id)
                        t->fiber = 0;
                return fiber_set_state(tr, f, PROTO_FIBER_WAITING, ev->str[A_FIBER_BLOCK_REASON],
                                       now, FR_END_NORMAL);
        case PROTO_EV_FIBER_READY:
                return fiber_set_state(tr, f, PROTO_FIBER_RUNNABLE, NULL, now, FR_END_NORMAL);
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
        int64_t now = fr_track_time(tr, ev->time);
        struct fr_track_thread *t = NULL;
        struct fr_track_task *k;
        struct fr_track_fiber *f;
        int r;

        tr->event_ns = now;
        /* The tracer's own batch (thread 0) carries only fiber and task status. */
        if (ev->tid == 0) {
                if (ev->type == PROTO_EV_FIBER_STATUS)
                        return on_fiber_status(tr, ev);
                if (ev->type == PROTO_EV_TASK_STATUS)
                        return on_task_status(tr, g, ev);
                return 0;
        }
        r = thread_get(tr, g, ev->tid, &t);
        if (r < 0)
                return r;
        t->last_ns = now;
        t->events++;
        if (ev->spec && ev->spec->where != 'T')
                thread_reconcile_done(tr, t);

        switch (ev->type) {
        case PROTO_EV_THREAD_STATUS: return on_thread_status(tr, g, t, ev, now);
        case PROTO_EV_REGION_STATUS: return on_region_status(tr, g, t, ev);
        case PROTO_EV_FIBER_STATUS: return on_fiber_status(tr, ev);
        case PROTO_EV_TASK_STATUS: return on_task_status(tr, g, ev);
        case PROTO_EV_REGION_BEGIN:
                return region_push(t, ev->str[A_REGION_BEGIN_NAME], now, ev->time);
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
                r = syscall_open(t, ev->str[A_SYSCALL_BEGIN_NAME], now, ev->time);
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
        case PROTO_EV_FIBER_EXIT: return on_fiber_event(tr, t, ev, now);
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
