/* SPDX-License-Identifier: MIT */
/*
 * Chrome Trace Event Format exporter (contract in flightrec/export.h, the
 * user-facing mapping in docs/cli.md).
 *
 * Slices are written as "X" (complete) events when they end, not as B/E
 * pairs when they begin: the state tracker (view.h) knows the start of
 * everything open, and an X event cannot be left dangling or mis-nested by
 * a truncated trace — what was still open at the end of the dump is closed
 * at the trace's end and marked {"end":"open at trace end"}, which is the
 * most useful thing to see after a crash.  Viewers sort events by time, so
 * writing a slice at its end is fine.
 *
 * Async tasks use nestable async events ("b"/"e"), which nest by timestamps
 * within one (cat, id) track.  A child task is put on its parent's track
 * only when the parent is the innermost open task there; otherwise (a
 * sibling still open, no parent) it starts a track of its own, named by its
 * own id.  If a task ends while tasks nested above it on its track are
 * still open, those are cut at that point and continue on tracks of their
 * own ({"split":true} / {"continued":true}), so every track stays properly
 * nested whatever order tasks end in.  Timestamps on a track never go
 * backwards (clamped to the track's last one), which keeps the nesting
 * valid even when the clocks of two CPUs disagree by a few nanoseconds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "export-writer.h"
#include "flightrec/export.h"
#include "flightrec/view.h"
#include "view-map.h"

/* Argument positions (see view-track.c; checked by test-export-chrome). */
enum {
        A_LOG_CATEGORY = 1,
        A_LOG_MESSAGE = 2,
        A_LOG_STACK = 3,
        A_COUNTER_NAME = 1,
        A_COUNTER_VALUE = 2,
        A_EVENTS_LOST_COUNT = 1,
        A_FIBER = 1,
};

struct task_track {
        uint64_t id;     /* the task that opened it */
        uint64_t *stack; /* open tasks on it, outermost first */
        size_t n, cap;
        int64_t last_ts; /* latest timestamp written on it */
};

/* The phases we write, each with its event prefix rendered once the pid is
 * known: {"ph":"X","pid":4242,"tid": */
static const char phases[] = "MXiCbesf";

struct ex {
        struct xw *w;
        char prefix[sizeof(phases) - 1][48];
        size_t prefix_len[sizeof(phases) - 1];
        uint64_t last_tid; /* the tid last written, kept formatted */
        char last_tid_str[24];
        size_t last_tid_len; /* 0: none yet */
        struct fr_track *track;
        const struct fr_export_options *o;
        const struct fr_dump_meta *meta;
        uint64_t pid;
        int have_pid;
        int first; /* no trace event written yet */
        int err;   /* first error inside a hook (hooks return void) */
        uint64_t events_in, events_out, generations;
        uint64_t lost_in_gen; /* EVENTS_LOST counts seen in the current generation */
        uint64_t next_flow;
        int64_t end_ns; /* latest time seen: where open things end */
        int have_end;
        struct vmap tracks; /* task track id -> struct task_track */
};

/* ---- event framing ---- */

static void set_pid(struct ex *x, uint64_t pid)
{
        x->pid = pid;
        for (size_t i = 0; i < sizeof(phases) - 1; i++) {
                int n = snprintf(x->prefix[i], sizeof(x->prefix[i]),
                                 "{\"ph\":\"%c\",\"pid\":%llu,\"tid\":", phases[i],
                                 (unsigned long long)pid);
                x->prefix_len[i] = n > 0 ? (size_t)n : 0;
        }
}

static void ev_begin(struct ex *x, const char *ph, uint64_t tid, int64_t ts_ns)
{
        struct xw *w = x->w;
        if (x->first)
                xw_lit(w, "\n");
        else
                xw_lit(w, ",\n");
        x->first = 0;
        size_t i;
        switch (ph[0]) { /* the order of phases[] */
        case 'X': i = 1; break;
        case 'i': i = 2; break;
        case 'C': i = 3; break;
        case 'b': i = 4; break;
        case 'e': i = 5; break;
        case 's': i = 6; break;
        case 'f': i = 7; break;
        default: i = 0; break;
        }
        xw_raw(w, x->prefix[i], x->prefix_len[i]);
        if (!x->last_tid_len || tid != x->last_tid) {
                x->last_tid = tid;
                x->last_tid_len = xw_fmt_u64(x->last_tid_str, tid);
        }
        xw_raw(w, x->last_tid_str, x->last_tid_len);
        xw_lit(w, ",\"ts\":");
        xw_us(w, ts_ns);
        x->events_out++;
}

static void ev_name(struct ex *x, const char *cat, const char *name)
{
        xw_lit(x->w, ",\"cat\":\"");
        xw_raw(x->w, cat, strlen(cat));
        xw_lit(x->w, "\",\"name\":");
        xw_cstr(x->w, name);
}

static void ev_end(struct ex *x)
{
        xw_lit(x->w, "}");
}

static const char *end_text(enum fr_end how)
{
        return how == FR_END_LOST ? "lost" : how == FR_END_TRACE ? "open at trace end" : NULL;
}

/* ,"end":"..." inside an args object that already has a member. */
static void arg_end(struct ex *x, enum fr_end how)
{
        if (how != FR_END_NORMAL) {
                xw_lit(x->w, ",\"end\":");
                xw_cstr(x->w, end_text(how));
        }
}

static void note_time(struct ex *x, int64_t ns)
{
        if (!x->have_end || ns > x->end_ns) {
                x->end_ns = ns;
                x->have_end = 1;
        }
}

static uint64_t fiber_tid(uint64_t id)
{
        return FR_EXPORT_FIBER_TID_BASE + id % FR_EXPORT_FIBER_TID_SPAN;
}

static void meta_name(struct ex *x, const char *what, uint64_t tid, const char *name)
{
        ev_begin(x, "M", tid, 0);
        xw_lit(x->w, ",\"name\":\"");
        xw_raw(x->w, what, strlen(what));
        xw_lit(x->w, "\",\"args\":{\"name\":");
        xw_cstr(x->w, name);
        xw_lit(x->w, "}");
        ev_end(x);
}

/* ---- tracker hooks ---- */

static void h_thread_name(void *ctx, struct fr_track_thread *t)
{
        struct ex *x = ctx;
        if (t->name[0])
                meta_name(x, "thread_name", t->tid, t->name);
}

static void h_region_end(void *ctx, struct fr_track_thread *t, const struct fr_track_region *r,
                         int64_t end_ns, enum fr_end how)
{
        struct ex *x = ctx;
        ev_begin(x, "X", t->tid, r->start_ns);
        xw_lit(x->w, ",\"dur\":");
        xw_us(x->w, end_ns > r->start_ns ? end_ns - r->start_ns : 0);
        ev_name(x, "region", r->name);
        if (how != FR_END_NORMAL) {
                xw_lit(x->w, ",\"args\":{\"end\":");
                xw_cstr(x->w, end_text(how));
                xw_lit(x->w, "}");
        }
        ev_end(x);
}

static void h_syscall_end(void *ctx, struct fr_track_thread *t, const char *name, int64_t start_ns,
                          int64_t end_ns, enum fr_end how)
{
        struct ex *x = ctx;
        ev_begin(x, "X", t->tid, start_ns);
        xw_lit(x->w, ",\"dur\":");
        xw_us(x->w, end_ns > start_ns ? end_ns - start_ns : 0);
        ev_name(x, "syscall", name);
        if (t->fiber || how != FR_END_NORMAL) {
                xw_lit(x->w, ",\"args\":{\"fiber\":");
                xw_u64(x->w, t->fiber);
                arg_end(x, how);
                xw_lit(x->w, "}");
        }
        ev_end(x);
}

static void h_fiber_new(void *ctx, struct fr_track_fiber *f)
{
        struct ex *x = ctx;
        struct xw *w = x->w;
        /* Written in pieces (no snprintf): a busy server has a fiber per request. */
        ev_begin(x, "M", fiber_tid(f->id), 0);
        xw_lit(w, ",\"name\":\"thread_name\",\"args\":{\"name\":\"");
        if (f->name[0]) {
                xw_str_body(w, f->name, strlen(f->name));
                xw_lit(w, " (fiber ");
                xw_u64(w, f->id);
                xw_lit(w, ")");
        } else {
                xw_lit(w, "fiber ");
                xw_u64(w, f->id);
        }
        xw_lit(w, "\"}");
        ev_end(x);
}

static void h_fiber_state(void *ctx, struct fr_track_fiber *f, uint8_t old_state,
                          const char *old_reason, int64_t since_ns, int64_t now_ns, enum fr_end how)
{
        struct ex *x = ctx;
        struct xw *w = x->w;
        ev_begin(x, "X", fiber_tid(f->id), since_ns);
        xw_lit(w, ",\"dur\":");
        xw_us(w, now_ns > since_ns ? now_ns - since_ns : 0);
        xw_lit(w, ",\"cat\":\"fiber\",\"name\":");
        /* The reason is in the name so that waits read at a glance and the
         * viewer colours each kind of wait on its own. */
        if ((old_state == PROTO_FIBER_WAITING || old_state == PROTO_FIBER_SYSCALL) && old_reason &&
            old_reason[0]) {
                if (old_state == PROTO_FIBER_WAITING)
                        xw_lit(w, "\"waiting: ");
                else
                        xw_lit(w, "\"syscall: ");
                xw_str_body(w, old_reason, strlen(old_reason));
                xw_lit(w, "\"");
        } else {
                xw_cstr(w, proto_fiber_state_name(old_state));
        }
        xw_lit(w, ",\"args\":{\"fiber\":");
        xw_u64(w, f->id);
        if (old_state == PROTO_FIBER_RUNNING || old_state == PROTO_FIBER_SYSCALL) {
                xw_lit(w, ",\"thread\":");
                xw_u64(w, f->tid);
        }
        arg_end(x, how);
        xw_lit(w, "}");
        ev_end(x);
}

/* ---- tasks ---- */

static void task_event(struct ex *x, const char *ph, const struct fr_track_task *k,
                       uint64_t track_id, int64_t ts, const char *extra_key, const char *extra)
{
        struct xw *w = x->w;
        ev_begin(x, ph, k->tid ? k->tid : x->pid, ts);
        xw_lit(w, ",\"id\":");
        xw_hex_str(w, track_id);
        ev_name(x, "task", k->name);
        xw_lit(w, ",\"args\":{\"task\":");
        xw_u64(w, k->id);
        if (ph[0] == 'b') {
                xw_lit(w, ",\"parent\":");
                xw_u64(w, k->parent);
        }
        if (extra_key) {
                xw_lit(w, ",\"");
                xw_raw(w, extra_key, strlen(extra_key));
                xw_lit(w, "\":");
                xw_cstr(w, extra);
        }
        xw_lit(w, "}");
        ev_end(x);
}

static void task_open(struct ex *x, struct fr_track_task *k, int64_t ts, int continued)
{
        struct task_track *trk = NULL;
        const struct fr_track_task *pk = k->parent ? fr_track_task(x->track, k->parent) : NULL;

        if (pk && pk->user) {
                struct task_track *p = vmap_get(&x->tracks, (uint64_t)(uintptr_t)pk->user);
                if (p && p->n && p->stack[p->n - 1] == pk->id)
                        trk = p;
        }
        if (!trk) {
                trk = calloc(1, sizeof(*trk));
                if (!trk || vmap_put(&x->tracks, k->id, trk) < 0) {
                        free(trk);
                        x->err = -ENOMEM;
                        return;
                }
                trk->id = k->id;
                trk->last_ts = ts;
        }
        if (trk->n == trk->cap) {
                size_t cap = trk->cap ? trk->cap * 2 : 4;
                uint64_t *s = realloc(trk->stack, cap * sizeof(*s));
                if (!s) {
                        x->err = -ENOMEM;
                        return;
                }
                trk->stack = s;
                trk->cap = cap;
        }
        trk->stack[trk->n++] = k->id;
        if (ts < trk->last_ts)
                ts = trk->last_ts;
        trk->last_ts = ts;
        k->user = (void *)(uintptr_t)trk->id;
        task_event(x, "b", k, trk->id, ts, continued ? "continued" : NULL,
                   continued ? "split from its parent's track" : NULL);
}

static void h_task_begin(void *ctx, struct fr_track_task *k)
{
        struct ex *x = ctx;
        task_open(x, k, k->start_ns, 0);
}

static void track_free(struct task_track *trk)
{
        if (!trk)
                return;
        free(trk->stack);
        free(trk);
}

static void h_task_end(void *ctx, struct fr_track_task *k, int64_t end_ns, enum fr_end how)
{
        struct ex *x = ctx;
        uint64_t track_id = (uint64_t)(uintptr_t)k->user;
        struct task_track *trk = track_id ? vmap_get(&x->tracks, track_id) : NULL;
        size_t i;

        if (!trk)
                return; /* already closed (at the trace's end), or never opened (no memory) */
        for (i = trk->n; i > 0 && trk->stack[i - 1] != k->id; i--)
                ;
        if (i == 0)
                return;
        i--;
        int64_t ts = end_ns > trk->last_ts ? end_ns : trk->last_ts;
        size_t nabove = trk->n - 1 - i;
        uint64_t *above = NULL;
        if (nabove) {
                above = malloc(nabove * sizeof(*above));
                if (!above) {
                        x->err = -ENOMEM;
                        return;
                }
                memcpy(above, &trk->stack[i + 1], nabove * sizeof(*above));
        }
        /* Cut what is nested above k, innermost first, then end k. */
        for (size_t j = nabove; j > 0; j--) {
                const struct fr_track_task *a = fr_track_task(x->track, above[j - 1]);
                if (a)
                        task_event(x, "e", a, trk->id, ts, "split", "its ancestor ended first");
        }
        task_event(x, "e", k, trk->id, ts, how != FR_END_NORMAL ? "end" : NULL, end_text(how));
        k->user = NULL;
        trk->n = i;
        trk->last_ts = ts;
        if (trk->n == 0) {
                (void)vmap_del(&x->tracks, trk->id);
                track_free(trk);
        }
        /* Continue the cut tasks, outermost first, each where it now nests. */
        for (size_t j = 0; j < nabove; j++) {
                struct fr_track_task *a = fr_track_task(x->track, above[j]);
                if (a)
                        task_open(x, a, ts, 1);
        }
        free(above);
}

/* At the trace's end, close every track innermost first, so that nothing is
 * split just because the tracker ends tasks in id order. */
static void tasks_close_all(struct ex *x, int64_t end_ns)
{
        uint64_t key;
        void *v;
        for (size_t it = 0; vmap_next(&x->tracks, &it, &key, &v);) {
                struct task_track *trk = v;
                int64_t ts = end_ns > trk->last_ts ? end_ns : trk->last_ts;
                for (size_t j = trk->n; j > 0; j--) {
                        struct fr_track_task *k = fr_track_task(x->track, trk->stack[j - 1]);
                        if (!k)
                                continue;
                        task_event(x, "e", k, trk->id, ts, "end", end_text(FR_END_TRACE));
                        k->user = NULL;
                }
                track_free(trk);
        }
        vmap_done(&x->tracks);
}

/* ---- events that are not state ---- */

static void ex_log(struct ex *x, const struct fr_generation *g, const struct fr_event *ev,
                   int64_t ns)
{
        struct xw *w = x->w;
        const char *cat = ev->str[A_LOG_CATEGORY];
        const struct fr_track_thread *t = fr_track_thread(x->track, ev->tid);

        ev_begin(x, "i", ev->tid, ns);
        xw_lit(w, ",\"s\":\"t\"");
        ev_name(x, "log", cat && cat[0] ? cat : "log");
        xw_lit(w, ",\"args\":{\"message\":");
        xw_str(w, (const char *)ev->bytes[A_LOG_MESSAGE],
               ev->bytes[A_LOG_MESSAGE] ? ev->args[A_LOG_MESSAGE] : 0);
        if (cat) {
                xw_lit(w, ",\"category\":");
                xw_cstr(w, cat);
        }
        if (t && t->fiber) {
                xw_lit(w, ",\"fiber\":");
                xw_u64(w, t->fiber);
        }
        const uint64_t *pcs;
        size_t n;
        if (ev->args[A_LOG_STACK] && fr_gen_stack(g, ev->args[A_LOG_STACK], &pcs, &n) == 0) {
                xw_lit(w, ",\"stack\":[");
                for (size_t i = 0; i < n; i++) {
                        if (i)
                                xw_lit(w, ",");
                        xw_hex_str(w, pcs[i]);
                }
                xw_lit(w, "]");
        }
        xw_lit(w, "}");
        ev_end(x);
}

static void ex_counter(struct ex *x, const struct fr_event *ev, int64_t ns)
{
        ev_begin(x, "C", ev->tid, ns);
        ev_name(x, "counter", ev->str[A_COUNTER_NAME] ? ev->str[A_COUNTER_NAME] : "counter");
        xw_lit(x->w, ",\"args\":{\"value\":");
        xw_i64(x->w, (int64_t)ev->args[A_COUNTER_VALUE]);
        xw_lit(x->w, "}");
        ev_end(x);
}

static void ex_lost(struct ex *x, const char *scope, uint64_t tid, int64_t ns, const char *name,
                    uint64_t count, uint64_t bytes)
{
        ev_begin(x, "i", tid, ns);
        xw_lit(x->w, ",\"s\":\"");
        xw_raw(x->w, scope, strlen(scope));
        xw_lit(x->w, "\"");
        ev_name(x, "lost", name);
        xw_lit(x->w, ",\"args\":{\"count\":");
        xw_u64(x->w, count);
        if (bytes) {
                xw_lit(x->w, ",\"bytes\":");
                xw_u64(x->w, bytes);
        }
        xw_lit(x->w, "}");
        ev_end(x);
}

/* A readied fiber: a marker on the readying thread, and a flow from it to
 * where the fiber next runs (finished in ex_fiber_run). */
static void ex_fiber_ready(struct ex *x, const struct fr_event *ev, int64_t ns)
{
        struct fr_track_fiber *f = fr_track_fiber(x->track, ev->args[A_FIBER]);
        uint64_t flow = ++x->next_flow;

        ev_begin(x, "X", ev->tid, ns);
        xw_lit(x->w, ",\"dur\":0.001"); /* 1 ns: flow binding needs a slice that encloses ts */
        if (f && f->name[0]) {
                xw_lit(x->w, ",\"cat\":\"fiber\",\"name\":\"ready ");
                xw_str_body(x->w, f->name, strlen(f->name));
                xw_lit(x->w, "\"");
        } else {
                xw_lit(x->w, ",\"cat\":\"fiber\",\"name\":\"ready fiber ");
                xw_u64(x->w, ev->args[A_FIBER]);
                xw_lit(x->w, "\"");
        }
        xw_lit(x->w, ",\"args\":{\"fiber\":");
        xw_u64(x->w, ev->args[A_FIBER]);
        xw_lit(x->w, "}");
        ev_end(x);

        ev_begin(x, "s", ev->tid, ns);
        xw_lit(x->w, ",\"id\":");
        xw_u64(x->w, flow);
        ev_name(x, "fiber", "ready");
        ev_end(x);
        if (f)
                f->user = (void *)(uintptr_t)flow;
}

static void ex_fiber_run(struct ex *x, const struct fr_event *ev, int64_t ns)
{
        struct fr_track_fiber *f = fr_track_fiber(x->track, ev->args[A_FIBER]);
        if (!f || !f->user)
                return;
        ev_begin(x, "f", fiber_tid(f->id), ns);
        xw_lit(x->w, ",\"bp\":\"e\",\"id\":");
        xw_u64(x->w, (uint64_t)(uintptr_t)f->user);
        ev_name(x, "fiber", "ready");
        ev_end(x);
        f->user = NULL;
}

/* ---- reader callbacks ---- */

static int ex_generation_begin(void *ctx, const struct fr_generation *g)
{
        struct ex *x = ctx;
        if (!x->have_pid) {
                set_pid(x, x->meta && x->meta->pid ? x->meta->pid : g->pid);
                x->have_pid = 1;
                meta_name(x, "process_name", x->pid,
                          x->meta && x->meta->command[0] ? x->meta->command : "traced process");
        }
        x->generations++;
        x->lost_in_gen = 0;
        int r = fr_track_generation_begin(x->track, g);
        if (r < 0)
                return r;
        int64_t start = fr_track_time(x->track, g->clock.start);
        note_time(x, start);
        if (g->gens_lost)
                ex_lost(x, "p", x->pid, start, "generations lost", g->gens_lost,
                        g->gens_lost_bytes);
        return 0;
}

static int ex_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct ex *x = ctx;
        int64_t ns;
        int r;

        x->events_in++;
        r = fr_track_event(x->track, g, ev);
        if (r < 0)
                return r;
        ns = fr_track_event_ns(x->track);
        if (ev->spec && ev->spec->where != 'T')
                note_time(x, ns);
        switch (ev->type) {
        case PROTO_EV_LOG: ex_log(x, g, ev, ns); break;
        case PROTO_EV_COUNTER: ex_counter(x, ev, ns); break;
        case PROTO_EV_EVENTS_LOST:
                x->lost_in_gen += ev->args[A_EVENTS_LOST_COUNT];
                ex_lost(x, "t", ev->tid, ns, "events lost", ev->args[A_EVENTS_LOST_COUNT], 0);
                break;
        case PROTO_EV_FIBER_READY: ex_fiber_ready(x, ev, ns); break;
        case PROTO_EV_FIBER_RUN: ex_fiber_run(x, ev, ns); break;
        default: break;
        }
        if (x->err)
                return x->err;
        return x->w->err;
}

static int ex_generation_end(void *ctx, const struct fr_generation *g)
{
        struct ex *x = ctx;
        int64_t end = fr_track_time(x->track, g->clock.end);
        note_time(x, end);
        /* Drops the batches report without an EVENTS_LOST event of their own. */
        if (g->lost > x->lost_in_gen)
                ex_lost(x, "p", x->pid, end, "events lost", g->lost - x->lost_in_gen, 0);
        int r = fr_track_generation_end(x->track, g);
        if (r < 0)
                return r;
        if (x->o && x->o->progress) {
                struct fr_export_progress p = {
                        .bytes_done = g->offset + g->size,
                        .bytes_total = x->o->bytes_total,
                        .events = x->events_in,
                        .out_bytes = x->w->total,
                };
                x->o->progress(x->o->progress_ctx, &p);
        }
        return x->err ? x->err : x->w->err;
}

static void write_other_data(struct ex *x)
{
        struct xw *w = x->w;
        const struct fr_dump_meta *m = x->meta;
        xw_lit(w, "\n],\n\"otherData\":{\"format\":\"gtrace\",\"generations\":");
        xw_u64(w, x->generations);
        xw_lit(w, ",\"events\":");
        xw_u64(w, x->events_in);
        if (m) {
                xw_lit(w, ",\"pid\":");
                xw_u64(w, m->pid);
                xw_lit(w, ",\"command\":");
                xw_cstr(w, m->command);
                xw_lit(w, ",\"executable\":");
                xw_cstr(w, m->executable);
                xw_lit(w, ",\"host\":");
                xw_cstr(w, m->host);
                xw_lit(w, ",\"reason\":");
                xw_cstr(w, m->reason);
                xw_lit(w, ",\"origin\":");
                xw_cstr(w, m->origin);
                xw_lit(w, ",\"dump_time_ns\":");
                xw_u64(w, m->dump_time_ns);
                xw_lit(w, ",\"flushed\":");
                if (m->flushed)
                        xw_lit(w, "true");
                else
                        xw_lit(w, "false");
                if (m->signal) {
                        xw_lit(w, ",\"signal\":");
                        xw_u64(w, m->signal);
                }
        }
        if (x->o && x->o->producer) {
                xw_lit(w, ",\"exporter\":");
                xw_cstr(w, x->o->producer);
        }
        xw_lit(w, "}}\n");
}

static int set_write_error(struct fr_error *e, int err)
{
        if (e) {
                e->code = err;
                e->offset = 0;
                (void)snprintf(e->msg, sizeof(e->msg), "writing the JSON output: %s",
                               strerror(-err));
        }
        return err;
}

int fr_export_chrome(struct fr_dump *d, int out_fd, const struct fr_export_options *o,
                     struct fr_export_result *ret_result, struct fr_error *ret_err)
{
        struct fr_track_hooks hooks = {
                .thread_new = h_thread_name,
                .thread_name = h_thread_name,
                .region_end = h_region_end,
                .syscall_end = h_syscall_end,
                .fiber_new = h_fiber_new,
                .fiber_state = h_fiber_state,
                .task_begin = h_task_begin,
                .task_end = h_task_end,
        };
        struct fr_callbacks cb = {
                .generation_begin = ex_generation_begin,
                .event = ex_event,
                .generation_end = ex_generation_end,
        };
        struct ex x = {.o = o, .meta = fr_dump_meta(d), .first = 1};
        int r;

        if (ret_err)
                memset(ret_err, 0, sizeof(*ret_err));
        vmap_init(&x.tracks);
        x.w = malloc(sizeof(*x.w));
        x.track = fr_track_new(&hooks, &x);
        if (!x.w || !x.track) {
                r = -ENOMEM;
                goto out;
        }
        xw_init(x.w, out_fd);
        xw_lit(x.w, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");

        r = fr_dump_parse(d, &cb, &x, ret_err);
        if (r == 0) {
                tasks_close_all(&x, x.end_ns);
                fr_track_finish(x.track, x.end_ns);
                r = x.err;
        }
        if (r == 0) {
                write_other_data(&x);
                r = xw_flush(x.w);
                if (r < 0)
                        (void)set_write_error(ret_err, r);
        } else if (x.w->err == r) {
                (void)set_write_error(ret_err, r);
        }
        if (r == 0 && ret_result) {
                ret_result->events_in = x.events_in;
                ret_result->events_out = x.events_out;
                ret_result->out_bytes = x.w->total;
                ret_result->generations = x.generations;
        }
out:
        if (r == -ENOMEM && ret_err && !ret_err->msg[0]) {
                ret_err->code = r;
                (void)snprintf(ret_err->msg, sizeof(ret_err->msg), "out of memory");
        }
        {
                uint64_t key;
                void *v;
                for (size_t it = 0; vmap_next(&x.tracks, &it, &key, &v);)
                        track_free(v);
                vmap_done(&x.tracks);
        }
        fr_track_free(x.track);
        free(x.w);
        return r;
}
