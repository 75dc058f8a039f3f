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
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export-writer.h"
#include "flightrec/export.h"
#include "flightrec/view.h"
#include "track-priv.h"
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

/*
 * An async track: the tasks open on it, outermost first.  Each open task
 * points at its track (fr_track_task.user), so ending a task or nesting a
 * child needs no lookup; x->tracks maps every live track by its id as well,
 * in the order that decides how they are closed at the trace's end.  A
 * task's user is NULL while it is on no track: every path that takes a
 * task off a track clears it or puts the task on another one.
 */
#define TRACK_INLINE 3 /* open tasks a track holds without a second allocation */
struct task_track {
        uint64_t id;     /* the task that opened it */
        uint64_t *stack; /* open tasks on it, outermost first: inl, or malloc'ed */
        uint32_t n, cap;
        int64_t last_ts; /* latest timestamp written on it */
        struct task_track *next_free;
        /* Most tracks hold a task or two: kept in the track itself, a track
         * costs one allocation and one cache miss, not two, when a busy
         * trace has thousands open. */
        uint64_t inl[TRACK_INLINE];
};

/* The phases we write, each with its event prefix rendered once the pid is
 * known: ,\n{"ph":"X","pid":4242,"tid": */
enum { PH_M, PH_X, PH_I, PH_C, PH_B, PH_E, PH_S, PH_F, PH_COUNT };
static const char phases[PH_COUNT + 1] = "MXiCbesf";
#define PREFIX_BYTES 64 /* copied whole: room for the longest prefix */

/* Room taken for one event: its fixed parts, numbers, and up to three names
 * of at most NAME_INLINE bytes (longer ones are written piecewise). */
#define EV_ROOM     1024
#define NAME_INLINE 64

/* Counter names and log categories come straight from the reader: how each
 * one is written is remembered per generation, by its address (one string
 * is one address for the whole generation, see reader.h). */
#define STR_CACHE 64
struct str_ent {
        const char *p;
        uint32_t len;
        uint8_t plain; /* needs no escaping */
};

struct ex {
        struct xw *w;
        char prefix[PH_COUNT][PREFIX_BYTES];
        size_t prefix_len[PH_COUNT];
        struct str_ent strs[STR_CACHE];
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
        struct vmap tracks;             /* task track id -> struct task_track */
        struct task_track *free_tracks; /* recycled, stacks kept */
};

/* ---- event framing ---- */

static void set_pid(struct ex *x, uint64_t pid)
{
        x->pid = pid;
        for (size_t i = 0; i < PH_COUNT; i++) {
                int n = snprintf(x->prefix[i], sizeof(x->prefix[i]),
                                 ",\n{\"ph\":\"%c\",\"pid\":%llu,\"tid\":", phases[i],
                                 (unsigned long long)pid);
                x->prefix_len[i] = n > 0 ? (size_t)n : 0;
        }
}

/* A thread id (of a thread or a fiber track) in decimal.  A fiber track's
 * tid is 10^9 + the fiber id (below 10^9): a 1 and the id in nine digits,
 * written without dividing the whole number.  (Formatting is cheap enough
 * now that caching the text of every live fiber's tid cost more, in cache
 * misses, than it saved.) */
_Static_assert(FR_EXPORT_FIBER_TID_BASE == 1000000000u && FR_EXPORT_FIBER_TID_SPAN == 1000000000u,
               "put_tid writes a fiber track's tid as 1 and nine digits");
static inline char *put_tid(char *p, uint64_t tid)
{
        uint64_t f = tid - FR_EXPORT_FIBER_TID_BASE;
        if (f < FR_EXPORT_FIBER_TID_SPAN) {
                uint32_t v = (uint32_t)f, h = v / 1000000, m = v / 1000 - h * 1000;
                *p = '1';
                return xw_put_3(xw_put_3(xw_put_3(p + 1, h), m), v - v / 1000 * 1000);
        }
        return xw_put_u64(p, tid);
}

/* Opens an event in place: separator, {"ph":..,"pid":..,"tid":..,"ts":..
 * Returns where the rest goes; finish with ev_close(). */
static inline char *ev_open(struct ex *x, unsigned ph, uint64_t tid, int64_t ts_ns)
{
        char *p = xw_begin(x->w, EV_ROOM);
        /* The first event has no comma before it. */
        memcpy(p, x->prefix[ph] + x->first, PREFIX_BYTES - 1);
        p += x->prefix_len[ph] - (size_t)x->first;
        x->first = 0;
        p = put_tid(p, tid);
        p = XW_PUT(p, ",\"ts\":");
        p = xw_put_us(x->w, p, ts_ns);
        x->events_out++;
        return p;
}

static inline void ev_close(struct ex *x, char *p)
{
        *p++ = '}';
        xw_end(x->w, p);
}

/* n bytes of text, quoted; plain text (nothing to escape) of at most
 * NAME_INLINE bytes in place, anything else through the escaping writer. */
static char *put_text_slow(struct ex *x, char *p, const char *s, size_t n, int quoted)
{
        xw_end(x->w, p);
        if (quoted)
                xw_str(x->w, s, n);
        else
                xw_str_body(x->w, s, n);
        return xw_begin(x->w, EV_ROOM);
}

static inline char *put_text(struct ex *x, char *p, const char *s, size_t n, int plain, int quoted)
{
        if (!plain || n > NAME_INLINE)
                return put_text_slow(x, p, s, n, quoted);
        if (quoted)
                *p++ = '"';
        memcpy(p, s, n);
        p += n;
        if (quoted)
                *p++ = '"';
        return p;
}

/* A name the tracker handed out (see track-priv.h): a short plain one is
 * copied with a fixed-size move (its text is readable that far). */
_Static_assert(NAME_INLINE <= FR_NAME_READABLE, "names are read NAME_INLINE bytes at a time");
static inline char *put_name(struct ex *x, char *p, const char *s, int quoted)
{
        const struct fr_name *n = fr_name_of(s);
        if (!n->json_plain || n->len > NAME_INLINE)
                return put_text_slow(x, p, n->s, n->len, quoted);
        if (quoted)
                *p++ = '"';
        memcpy(p, n->s, NAME_INLINE);
        p += n->len;
        if (quoted)
                *p++ = '"';
        return p;
}

/* A string from the reader (NULL: ""). */
static char *put_str(struct ex *x, char *p, const char *s)
{
        struct str_ent *e;
        if (!s)
                return XW_PUT(p, "\"\"");
        e = &x->strs[((uintptr_t)s >> 3) & (STR_CACHE - 1)];
        if (e->p != s) {
                size_t n = strlen(s);
                e->p = s;
                e->len = (uint32_t)n;
                e->plain = n <= NAME_INLINE;
                for (size_t i = 0; e->plain && i < n; i++) {
                        uint8_t c = (uint8_t)s[i];
                        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
                                e->plain = 0;
                }
        }
        return put_text(x, p, s, e->len, e->plain, 1);
}

/* ,"end":"..." inside an args object that already has a member. */
static char *put_arg_end(char *p, enum fr_end how)
{
        if (how == FR_END_LOST)
                p = XW_PUT(p, ",\"end\":\"lost\"");
        else if (how == FR_END_TRACE)
                p = XW_PUT(p, ",\"end\":\"open at trace end\"");
        return p;
}

/* end_ns starts at INT64_MIN, and is 0 if nothing was seen; no branch on
 * a comparison that goes either way. */
static inline void note_time(struct ex *x, int64_t ns)
{
        x->end_ns = ns > x->end_ns ? ns : x->end_ns;
        x->have_end = 1;
}

static uint64_t fiber_tid(uint64_t id)
{
        return FR_EXPORT_FIBER_TID_BASE + id % FR_EXPORT_FIBER_TID_SPAN;
}

/* An event of unknown length, written piece by piece (rare events). */
static void ev_begin(struct ex *x, unsigned ph, uint64_t tid, int64_t ts_ns)
{
        xw_end(x->w, ev_open(x, ph, tid, ts_ns));
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

static void meta_name(struct ex *x, const char *what, uint64_t tid, const char *name)
{
        ev_begin(x, PH_M, tid, 0);
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
        char *p = ev_open(x, PH_X, t->tid, r->start_ns);
        p = XW_PUT(p, ",\"dur\":");
        p = xw_put_us(x->w, p, end_ns > r->start_ns ? end_ns - r->start_ns : 0);
        p = XW_PUT(p, ",\"cat\":\"region\",\"name\":");
        p = put_name(x, p, r->name, 1);
        if (how == FR_END_LOST)
                p = XW_PUT(p, ",\"args\":{\"end\":\"lost\"}");
        else if (how == FR_END_TRACE)
                p = XW_PUT(p, ",\"args\":{\"end\":\"open at trace end\"}");
        ev_close(x, p);
}

static void h_syscall_end(void *ctx, struct fr_track_thread *t, const char *name, int64_t start_ns,
                          int64_t end_ns, enum fr_end how)
{
        struct ex *x = ctx;
        char *p = ev_open(x, PH_X, t->tid, start_ns);
        p = XW_PUT(p, ",\"dur\":");
        p = xw_put_us(x->w, p, end_ns > start_ns ? end_ns - start_ns : 0);
        p = XW_PUT(p, ",\"cat\":\"syscall\",\"name\":");
        p = put_name(x, p, name, 1);
        if (t->fiber || how != FR_END_NORMAL) {
                p = XW_PUT(p, ",\"args\":{\"fiber\":");
                p = xw_put_u64(p, t->fiber);
                p = put_arg_end(p, how);
                *p++ = '}';
        }
        ev_close(x, p);
}

static void h_fiber_new(void *ctx, struct fr_track_fiber *f)
{
        struct ex *x = ctx;
        char *p = ev_open(x, PH_M, fiber_tid(f->id), 0);
        p = XW_PUT(p, ",\"name\":\"thread_name\",\"args\":{\"name\":\"");
        if (f->name[0]) {
                p = put_name(x, p, f->name, 0);
                p = XW_PUT(p, " (fiber ");
                p = xw_put_u64(p, f->id);
                *p++ = ')';
        } else {
                p = XW_PUT(p, "fiber ");
                p = xw_put_u64(p, f->id);
        }
        p = XW_PUT(p, "\"}");
        ev_close(x, p);
}

static void h_fiber_state(void *ctx, struct fr_track_fiber *f, uint8_t old_state,
                          const char *old_reason, int64_t since_ns, int64_t now_ns, enum fr_end how)
{
        struct ex *x = ctx;
        char *p = ev_open(x, PH_X, fiber_tid(f->id), since_ns);
        p = XW_PUT(p, ",\"dur\":");
        p = xw_put_us(x->w, p, now_ns > since_ns ? now_ns - since_ns : 0);
        p = XW_PUT(p, ",\"cat\":\"fiber\",\"name\":");
        /* The reason is in the name so that waits read at a glance and the
         * viewer colours each kind of wait on its own. */
        switch (old_state) {
        case PROTO_FIBER_WAITING:
        case PROTO_FIBER_SYSCALL:
                if (old_reason && old_reason[0]) {
                        if (old_state == PROTO_FIBER_WAITING)
                                p = XW_PUT(p, "\"waiting: ");
                        else
                                p = XW_PUT(p, "\"syscall: ");
                        p = put_name(x, p, old_reason, 0);
                        *p++ = '"';
                } else if (old_state == PROTO_FIBER_WAITING) {
                        p = XW_PUT(p, "\"waiting\"");
                } else {
                        p = XW_PUT(p, "\"syscall\"");
                }
                break;
        case PROTO_FIBER_RUNNABLE: p = XW_PUT(p, "\"runnable\""); break;
        case PROTO_FIBER_RUNNING: p = XW_PUT(p, "\"running\""); break;
        default: p = XW_PUT(p, "\"?\""); break;
        }
        p = XW_PUT(p, ",\"args\":{\"fiber\":");
        p = xw_put_u64(p, f->id);
        if (old_state == PROTO_FIBER_RUNNING || old_state == PROTO_FIBER_SYSCALL) {
                p = XW_PUT(p, ",\"thread\":");
                p = put_tid(p, f->tid);
        }
        p = put_arg_end(p, how);
        *p++ = '}';
        ev_close(x, p);
}

/* ---- tasks ---- */

/* What a task's event says beyond its ids, in args. */
enum task_note {
        TN_NONE,
        TN_CONTINUED, /* "continued": it was cut from its parent's track */
        TN_SPLIT,     /* "split": cut because an ancestor on the track ended */
        TN_LOST,      /* "end": "lost" */
        TN_TRACE,     /* "end": "open at trace end" */
};

static enum task_note end_note(enum fr_end how)
{
        return how == FR_END_LOST ? TN_LOST : how == FR_END_TRACE ? TN_TRACE : TN_NONE;
}

static void task_event(struct ex *x, unsigned ph, const struct fr_track_task *k, uint64_t track_id,
                       int64_t ts, enum task_note note)
{
        char *p = ev_open(x, ph, k->tid ? k->tid : x->pid, ts);
        p = XW_PUT(p, ",\"id\":");
        p = xw_put_hex_str(p, track_id);
        p = XW_PUT(p, ",\"cat\":\"task\",\"name\":");
        p = put_name(x, p, k->name, 1);
        p = XW_PUT(p, ",\"args\":{\"task\":");
        p = xw_put_u64(p, k->id);
        if (ph == PH_B) {
                p = XW_PUT(p, ",\"parent\":");
                p = xw_put_u64(p, k->parent);
        }
        switch (note) {
        case TN_CONTINUED: p = XW_PUT(p, ",\"continued\":\"split from its parent's track\""); break;
        case TN_SPLIT: p = XW_PUT(p, ",\"split\":\"its ancestor ended first\""); break;
        case TN_LOST: p = XW_PUT(p, ",\"end\":\"lost\""); break;
        case TN_TRACE: p = XW_PUT(p, ",\"end\":\"open at trace end\""); break;
        default: break;
        }
        *p++ = '}';
        ev_close(x, p);
}

static struct task_track *track_new(struct ex *x, uint64_t id)
{
        struct task_track *trk = x->free_tracks;
        if (trk) {
                x->free_tracks = trk->next_free;
        } else {
                trk = calloc(1, sizeof(*trk));
                if (!trk)
                        return NULL;
                trk->stack = trk->inl;
                trk->cap = TRACK_INLINE;
        }
        trk->id = id;
        trk->n = 0;
        trk->next_free = NULL;
        return trk;
}

/* Back to the free list, its stack kept for the next one. */
static void track_recycle(struct ex *x, struct task_track *trk)
{
        trk->next_free = x->free_tracks;
        x->free_tracks = trk;
}

static void track_free(struct task_track *trk)
{
        if (!trk)
                return;
        if (trk->stack != trk->inl)
                free(trk->stack);
        free(trk);
}

static void task_open(struct ex *x, struct fr_track_task *k, int64_t ts, int continued)
{
        struct task_track *trk = NULL;
        const struct fr_track_task *pk = k->parent ? fr_track_task(x->track, k->parent) : NULL;

        if (pk && pk->user) {
                struct task_track *p = pk->user;
                if (p->n && p->stack[p->n - 1] == pk->id)
                        trk = p;
        }
        if (!trk) {
                trk = track_new(x, k->id);
                if (!trk || vmap_put(&x->tracks, k->id, trk) < 0) {
                        if (trk)
                                track_recycle(x, trk);
                        x->err = -ENOMEM;
                        return;
                }
                trk->last_ts = ts;
        }
        if (trk->n == trk->cap) {
                uint32_t cap = trk->cap * 2;
                uint64_t *s = trk->stack == trk->inl ? malloc(cap * sizeof(*s))
                                                     : realloc(trk->stack, cap * sizeof(*s));
                if (!s) {
                        x->err = -ENOMEM;
                        return;
                }
                if (trk->stack == trk->inl)
                        memcpy(s, trk->inl, sizeof(trk->inl));
                trk->stack = s;
                trk->cap = cap;
        }
        trk->stack[trk->n++] = k->id;
        if (ts < trk->last_ts)
                ts = trk->last_ts;
        trk->last_ts = ts;
        k->user = trk;
        task_event(x, PH_B, k, trk->id, ts, continued ? TN_CONTINUED : TN_NONE);
}

static void h_task_begin(void *ctx, struct fr_track_task *k)
{
        struct ex *x = ctx;
        task_open(x, k, k->start_ns, 0);
}

/* Tasks cut at a time without an allocation; deeper nests take one. */
#define ABOVE_INLINE 16

static void h_task_end(void *ctx, struct fr_track_task *k, int64_t end_ns, enum fr_end how)
{
        struct ex *x = ctx;
        struct task_track *trk = k->user;
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
        uint64_t above_few[ABOVE_INLINE], *above = above_few;
        if (nabove > ABOVE_INLINE) {
                above = malloc(nabove * sizeof(*above));
                if (!above) {
                        x->err = -ENOMEM;
                        return;
                }
        }
        if (nabove)
                memcpy(above, &trk->stack[i + 1], nabove * sizeof(*above));
        /* Cut what is nested above k, innermost first, then end k. */
        for (size_t j = nabove; j > 0; j--) {
                const struct fr_track_task *a = fr_track_task(x->track, above[j - 1]);
                if (a)
                        task_event(x, PH_E, a, trk->id, ts, TN_SPLIT);
        }
        task_event(x, PH_E, k, trk->id, ts, end_note(how));
        k->user = NULL;
        trk->n = i;
        trk->last_ts = ts;
        if (trk->n == 0) {
                (void)vmap_del(&x->tracks, trk->id);
                track_recycle(x, trk);
        }
        /* Continue the cut tasks, outermost first, each where it now nests. */
        for (size_t j = 0; j < nabove; j++) {
                struct fr_track_task *a = fr_track_task(x->track, above[j]);
                if (a)
                        task_open(x, a, ts, 1);
        }
        if (above != above_few)
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
                        task_event(x, PH_E, k, trk->id, ts, TN_TRACE);
                        k->user = NULL;
                }
                track_free(trk);
        }
        vmap_done(&x->tracks);
}

/* ---- events that are not state ---- */

/* Logs and lost events are rare: out of line, so that the paths that run
 * for most events keep a short prologue and no stack canary. */
static __attribute__((noinline)) void ex_log(struct ex *x, const struct fr_generation *g,
                                             const struct fr_event *ev, int64_t ns)
{
        struct xw *w = x->w;
        const char *cat = ev->str[A_LOG_CATEGORY];
        const struct fr_track_thread *t = fr_track_event_thread(x->track);

        ev_begin(x, PH_I, ev->tid, ns);
        /* The crash handler's note marks the whole process: viewers draw a
         * process-scoped instant across all of its tracks. */
        if (proto_is_crash_note(cat))
                xw_lit(w, ",\"s\":\"p\"");
        else
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
        const char *name = ev->str[A_COUNTER_NAME];
        char *p = ev_open(x, PH_C, ev->tid, ns);
        p = XW_PUT(p, ",\"cat\":\"counter\",\"name\":");
        p = name ? put_str(x, p, name) : XW_PUT(p, "\"counter\"");
        p = XW_PUT(p, ",\"args\":{\"value\":");
        p = xw_put_i64(p, (int64_t)ev->args[A_COUNTER_VALUE]);
        *p++ = '}';
        ev_close(x, p);
}

static __attribute__((noinline)) void ex_lost(struct ex *x, const char *scope, uint64_t tid,
                                              int64_t ns, const char *name, uint64_t count,
                                              uint64_t bytes)
{
        ev_begin(x, PH_I, tid, ns);
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
        struct fr_track_fiber *f = fr_track_event_fiber(x->track);
        uint64_t flow = ++x->next_flow;

        /* 1 ns: flow binding needs a slice that encloses ts */
        char *p = ev_open(x, PH_X, ev->tid, ns);
        if (f && f->name[0]) {
                p = XW_PUT(p, ",\"dur\":0.001,\"cat\":\"fiber\",\"name\":\"ready ");
                p = put_name(x, p, f->name, 0);
                *p++ = '"';
        } else {
                p = XW_PUT(p, ",\"dur\":0.001,\"cat\":\"fiber\",\"name\":\"ready fiber ");
                p = xw_put_u64(p, ev->args[A_FIBER]);
                *p++ = '"';
        }
        p = XW_PUT(p, ",\"args\":{\"fiber\":");
        p = xw_put_u64(p, ev->args[A_FIBER]);
        *p++ = '}';
        ev_close(x, p);

        p = ev_open(x, PH_S, ev->tid, ns);
        p = XW_PUT(p, ",\"id\":");
        p = xw_put_u64(p, flow);
        p = XW_PUT(p, ",\"cat\":\"fiber\",\"name\":\"ready\"");
        ev_close(x, p);
        if (f)
                f->user = (void *)(uintptr_t)flow;
}

static void ex_fiber_run(struct ex *x, int64_t ns)
{
        struct fr_track_fiber *f = fr_track_event_fiber(x->track);
        if (!f || !f->user)
                return;
        char *p = ev_open(x, PH_F, fiber_tid(f->id), ns);
        p = XW_PUT(p, ",\"bp\":\"e\",\"id\":");
        p = xw_put_u64(p, (uint64_t)(uintptr_t)f->user);
        p = XW_PUT(p, ",\"cat\":\"fiber\",\"name\":\"ready\"");
        ev_close(x, p);
        f->user = NULL;
}

/* ---- reader callbacks ---- */

/* Status events (kind 'T') describe the generation's start: they do not
 * move the trace's end.  A table by type, from the event table: one load
 * from a line that stays in cache, not two dependent ones through the
 * event's spec. */
#define EX_STATUS_(name, code, where, doc, ...) [code] = (where) == 'T',
#define EX_NOARG_(kind, name)
static const uint8_t ex_status[256] = {PROTO_EVENTS(EX_STATUS_, EX_NOARG_)};
#undef EX_STATUS_
#undef EX_NOARG_

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
        /* The reader's strings of the last generation are gone. */
        memset(x->strs, 0, sizeof(x->strs));
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

        /* Logs, counters, lost events and fiber ready/run are written by
         * the pass functions below, which the tracker calls from its own
         * dispatch on the type (track-priv.h). */
        x->events_in++;
        r = fr_track_event(x->track, g, ev);
        if (r < 0)
                return r;
        ns = fr_track_current(x->track)->event_ns;
        if (!ex_status[ev->type])
                note_time(x, ns);
        if (x->err)
                return x->err;
        return x->w->err;
}

static void pass_log(void *ctx, const struct fr_generation *g, const struct fr_event *ev,
                     int64_t ns)
{
        ex_log(ctx, g, ev, ns);
}

static void pass_counter(void *ctx, const struct fr_generation *g, const struct fr_event *ev,
                         int64_t ns)
{
        (void)g;
        ex_counter(ctx, ev, ns);
}

static void pass_lost(void *ctx, const struct fr_generation *g, const struct fr_event *ev,
                      int64_t ns)
{
        struct ex *x = ctx;
        (void)g;
        x->lost_in_gen += ev->args[A_EVENTS_LOST_COUNT];
        ex_lost(x, "t", ev->tid, ns, "events lost", ev->args[A_EVENTS_LOST_COUNT], 0);
}

static void pass_ready(void *ctx, const struct fr_generation *g, const struct fr_event *ev,
                       int64_t ns)
{
        (void)g;
        ex_fiber_ready(ctx, ev, ns);
}

static void pass_run(void *ctx, const struct fr_generation *g, const struct fr_event *ev,
                     int64_t ns)
{
        (void)g;
        (void)ev;
        ex_fiber_run(ctx, ns);
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
                        .out_bytes = xw_total(x->w),
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

static int usable_cpus(void)
{
        cpu_set_t set;
        return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

/* Tasks runnable on the whole machine right now, this one included
 * (procs_running in /proc/stat); -1 when unknown. */
static long runnable_now(void)
{
        char line[256];
        long n = -1;
        FILE *f = fopen("/proc/stat", "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                if (!strncmp(line, "procs_running ", 14)) {
                        n = strtol(line + 14, NULL, 10);
                        break;
                }
        }
        fclose(f);
        return n;
}

/*
 * The automatic choice.  The reader's thread pays only when it has a CPU to
 * itself: the consumer does most of the work, and when the reader must
 * share a CPU with other work the two take turns and the export runs slower
 * than on one thread (on the 2-CPU development VM with the other CPU busy,
 * 38 MB/s against 48).  So a second thread only when the process may run on
 * two CPUs or more and fewer tasks are runnable than that (ours counts: on
 * two CPUs, no other task running).
 *
 * One reading is a moment's: just after the export starts, whatever started
 * it (a shell, time(1), a test harness) is often still running on the other
 * CPU, and kernel threads wake for a moment; on an idle 2-CPU machine
 * whole series of exports saw a second task and ran on one thread.  Work
 * that holds a CPU shows in every reading, so the least of a few, 1 ms
 * apart, decides; the first reading that shows a CPU free ends the wait.
 */
#define CPU_FREE_READINGS 5

static int second_cpu_free(void)
{
        int cpus = usable_cpus();
        if (cpus < 2)
                return 0;
        for (int i = 0; i < CPU_FREE_READINGS; i++) {
                long running = runnable_now();
                if (running < 0 || running < cpus)
                        return 1;
                if (i + 1 < CPU_FREE_READINGS)
                        (void)nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
        return 0;
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
        struct ex x = {.o = o, .meta = fr_dump_meta(d), .first = 1, .end_ns = INT64_MIN};
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
        (void)fr_track_set_pass(x.track, PROTO_EV_LOG, pass_log);
        (void)fr_track_set_pass(x.track, PROTO_EV_COUNTER, pass_counter);
        (void)fr_track_set_pass(x.track, PROTO_EV_EVENTS_LOST, pass_lost);
        (void)fr_track_set_pass(x.track, PROTO_EV_FIBER_READY, pass_ready);
        (void)fr_track_set_pass(x.track, PROTO_EV_FIBER_RUN, pass_run);
        xw_init(x.w, out_fd);
        xw_lit(x.w, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");

        if (o && o->threads == 1)
                r = fr_dump_parse(d, &cb, &x, ret_err);
        else if (o && o->threads >= 2)
                r = fr_dump_parse_threaded(d, 0, &cb, &x, ret_err);
        else if ((o && o->bytes_total && o->bytes_total < FR_EXPORT_THREADED_MIN_BYTES) ||
                 !second_cpu_free()) /* too small, or a second thread would take turns */
                r = fr_dump_parse(d, &cb, &x, ret_err);
        else
                r = fr_dump_parse_threaded(d, FR_EXPORT_THREADED_MIN_BYTES, &cb, &x, ret_err);
        if (!x.have_end)
                x.end_ns = 0;
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
                ret_result->out_bytes = xw_total(x.w);
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
                while (x.free_tracks) {
                        struct task_track *next = x.free_tracks->next_free;
                        track_free(x.free_tracks);
                        x.free_tracks = next;
                }
        }
        fr_track_free(x.track);
        free(x.w);
        return r;
}
