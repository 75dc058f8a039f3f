/* SPDX-License-Identifier: MIT */
/*
 * Reading a trace as a story: the state tracker, and the text tools built on
 * it (gtracectl view, view --last, stats).
 *
 * The reader (reader.h) hands out events one at a time in a valid order.
 * Most consumers need more than the event in hand: which fiber the thread is
 * running, which regions are open and since when, what state a fiber is in.
 * The tracker keeps exactly that — the state at the current point of the
 * trace — and tells its user through hooks whenever something *ends*: a
 * region closes, a fiber leaves a state, a task ends.  Exporters turn those
 * endings into slices; `view --last` reads the state left at the end.
 *
 * Generations are self-contained, so the tracker re-learns the state from
 * each generation's status events and reconciles it with what it had: a
 * region, syscall, fiber state or task that the new generation no longer
 * reports ended somewhere in a gap (lost events, dropped generations) and is
 * closed with FR_END_LOST.  Memory is proportional to what is live (threads,
 * open regions, fibers, tasks), never to the length of the trace.
 *
 * All times here are CLOCK_MONOTONIC nanoseconds, converted with the clock of
 * the generation the event came from.
 */
#ifndef FLIGHTREC_VIEW_H
#define FLIGHTREC_VIEW_H

#include <stdint.h>
#include <stdio.h>

#include "flightrec/reader.h"

/* Why something ended. */
enum fr_end {
        FR_END_NORMAL = 0, /* its end event */
        FR_END_LOST,       /* a later generation no longer had it: the end was lost */
        FR_END_TRACE,      /* still open when the trace ended */
};

#define FR_TRACK_LOGS         3    /* last log lines kept per thread and fiber */
#define FR_TRACK_LOG_CATEGORY 32   /* bytes kept of a log category (with NUL) */
#define FR_TRACK_LOG_MESSAGE  200  /* bytes kept of a log message (with NUL) */
#define FR_TRACK_MAX_REGIONS  4096 /* open regions per thread; deeper ones are not tracked */

struct fr_track_log {
        int64_t time_ns;
        char category[FR_TRACK_LOG_CATEGORY];
        char message[FR_TRACK_LOG_MESSAGE];
};

/* Names in these structs (thread, region, blocking call, fiber, reason, task)
 * are NUL-terminated, shared between objects and owned by the tracker: read
 * them, never write or free them. */
struct fr_track_region {
        char *name;
        int64_t start_ns;
        uint64_t start_units; /* raw clock units, to recognise it when restated */
};

struct fr_track_thread {
        uint64_t tid;
        char *name;                      /* "" when unnamed */
        uint64_t fiber;                  /* fiber running on it, 0 none */
        struct fr_track_region *regions; /* open regions, outermost first */
        size_t nregions;
        int in_syscall;
        char *syscall; /* name of the open blocking call */
        int64_t syscall_start_ns;
        uint64_t syscall_start_units;
        struct fr_track_log logs[FR_TRACK_LOGS]; /* ring: the last nlogs, oldest at log_first */
        unsigned nlogs, log_first;
        int64_t last_ns; /* time of its last event */
        uint64_t events; /* events seen on it */
        void *user;      /* free for the tracker's user */
        /* tracker-private */
        size_t regions_cap;
        uint64_t seen_gen;
        size_t status_regions;
        int reconciling;
        size_t regions_untracked; /* opened beyond FR_TRACK_MAX_REGIONS */
};

struct fr_track_fiber {
        uint64_t id;
        char *name;
        uint8_t state;      /* PROTO_FIBER_* */
        int64_t since_ns;   /* when it entered state */
        char *reason;       /* why it waits ("" otherwise) */
        uint64_t tid;       /* thread running it, or that last ran it (0 never) */
        int64_t created_ns; /* creation, or first sight */
        void *user;
        uint64_t seen_gen; /* tracker-private */
        unsigned nlogs, log_first;
        /* Last: a fiber's state changes touch only the line above. */
        struct fr_track_log logs[FR_TRACK_LOGS]; /* logged while it ran */
};

struct fr_track_task {
        uint64_t id;
        uint64_t parent;
        char *name;
        int64_t start_ns;
        uint64_t start_units;
        uint64_t tid; /* thread that began it (0 from a status) */
        void *user;
        uint64_t seen_gen; /* tracker-private */
};

/* Every hook may be NULL.  Pointers passed are valid during the call only;
 * the tracker frees the object right after a *_free / *_end hook. */
struct fr_track_hooks {
        void (*thread_new)(void *ctx, struct fr_track_thread *t);
        void (*thread_name)(void *ctx, struct fr_track_thread *t); /* after a change */
        void (*thread_free)(void *ctx, struct fr_track_thread *t);
        void (*region_end)(void *ctx, struct fr_track_thread *t, const struct fr_track_region *r,
                           int64_t end_ns, enum fr_end how);
        void (*syscall_end)(void *ctx, struct fr_track_thread *t, const char *name,
                            int64_t start_ns, int64_t end_ns, enum fr_end how);
        void (*fiber_new)(void *ctx, struct fr_track_fiber *f);
        /* f leaves old_state (entered at old_since_ns, with old_reason) at now_ns;
         * f->state is already the new state (or unchanged when it exits). */
        void (*fiber_state)(void *ctx, struct fr_track_fiber *f, uint8_t old_state,
                            const char *old_reason, int64_t old_since_ns, int64_t now_ns,
                            enum fr_end how);
        void (*fiber_free)(void *ctx, struct fr_track_fiber *f);
        void (*task_begin)(void *ctx, struct fr_track_task *k);
        void (*task_end)(void *ctx, struct fr_track_task *k, int64_t end_ns, enum fr_end how);
};

struct fr_track;

struct fr_track *fr_track_new(const struct fr_track_hooks *hooks, void *ctx);
/* Frees everything without calling hooks. */
void fr_track_free(struct fr_track *tr);

/* Feed the tracker from the reader's callbacks, in order.  0 or -ENOMEM.
 * Like the reader's, an event's strings must keep their address and text
 * from fr_track_generation_begin() to the next (the tracker remembers
 * which name each address turned into). */
int fr_track_generation_begin(struct fr_track *tr, const struct fr_generation *g);
int fr_track_event(struct fr_track *tr, const struct fr_generation *g, const struct fr_event *ev);
int fr_track_generation_end(struct fr_track *tr, const struct fr_generation *g);

/* Ends everything still open at end_ns with FR_END_TRACE (hooks run). */
void fr_track_finish(struct fr_track *tr, int64_t end_ns);

/* Event time in monotonic ns, with the generation's clock. */
int64_t fr_track_ns(const struct fr_generation *g, uint64_t t);

/*
 * Clock conversion at full speed: exactly fr_clock_mono_ns() and
 * fr_clock_wall_ns() (the same rounding), but with a multiply by a
 * precomputed 64.64 reciprocal instead of a 128-bit division per call.  The
 * exporters convert every event, which made the division one of the larger
 * costs of an export.
 */
struct fr_clockconv {
        struct fr_clock c;
        unsigned __int128 mult; /* floor(1e9 * 2^64 / freq) */
        uint64_t dmax;          /* |t - ref| below this takes the fast path */
        uint64_t inl;           /* |t - ref| below this: fr_clockconv_mono_inline's own path */
};
void fr_clockconv_init(struct fr_clockconv *cv, const struct fr_clock *c);
int64_t fr_clockconv_mono(const struct fr_clockconv *cv, uint64_t t);
int64_t fr_clockconv_wall(const struct fr_clockconv *cv, uint64_t t);

/*
 * fr_clockconv_mono() for every event of a generation: its common case
 * inline, exactly the same result.  Times less than cv->inl clock units from
 * the anchor (seconds to minutes: d * 1e9 + freq must fit 64 bits) split the
 * reciprocal multiply into two 64-bit ones and correct it exactly in 64
 * bits; the rest, and results beyond int64_t, take the out-of-line path.
 */
static inline int64_t fr_clockconv_mono_inline(const struct fr_clockconv *cv, uint64_t t)
{
        const struct fr_clock *c = &cv->c;
        uint64_t d = t >= c->ref ? t - c->ref : c->ref - t;

        if (__builtin_expect(d < cv->inl, 1)) {
                uint64_t mh = (uint64_t)(cv->mult >> 64), ml = (uint64_t)cv->mult;
                uint64_t q = d * mh + (uint64_t)(((unsigned __int128)d * ml) >> 64);
                if ((q + 1) * c->freq <= d * 1000000000u)
                        q++;
                if (t >= c->ref) {
                        if (c->mono_ns <= INT64_MAX && q <= (uint64_t)INT64_MAX - c->mono_ns)
                                return (int64_t)(c->mono_ns + q);
                } else if (c->mono_ns <= INT64_MAX && q <= INT64_MAX) {
                        return (int64_t)c->mono_ns - (int64_t)q;
                }
        }
        return fr_clockconv_mono(cv, t);
}

/* The current generation's time of t, and the time of the last event given
 * to fr_track_event() (both monotonic ns). */
int64_t fr_track_time(const struct fr_track *tr, uint64_t t);
int64_t fr_track_event_ns(const struct fr_track *tr);

struct fr_track_thread *fr_track_thread(const struct fr_track *tr, uint64_t tid);
struct fr_track_fiber *fr_track_fiber(const struct fr_track *tr, uint64_t id);
struct fr_track_task *fr_track_task(const struct fr_track *tr, uint64_t id);

/* Snapshots of what is live, sorted by id; *ret is malloc'ed (free() it),
 * NULL when empty.  0 or -ENOMEM. */
int fr_track_threads(const struct fr_track *tr, struct fr_track_thread ***ret, size_t *ret_n);
int fr_track_fibers(const struct fr_track *tr, struct fr_track_fiber ***ret, size_t *ret_n);
int fr_track_tasks(const struct fr_track *tr, struct fr_track_task ***ret, size_t *ret_n);

/* Log lines of a thread or fiber, i = 0 the oldest of the kept ones. */
const struct fr_track_log *fr_track_thread_log(const struct fr_track_thread *t, unsigned i);
const struct fr_track_log *fr_track_fiber_log(const struct fr_track_fiber *f, unsigned i);

/* ---- Formatting helpers shared by the text tools and gtracectl ---- */

/* "1.23 s", "12.3 ms", "850 ns", "2h03m" ... into buf; returns buf. */
char *fr_fmt_duration(char *buf, size_t len, int64_t ns);
/* "1.5 KiB", "12.0 MiB", "312 B". */
char *fr_fmt_size(char *buf, size_t len, uint64_t bytes);
/* Parses "1.5s", "200ms", "10us", "500ns", "2m", "1h", or plain seconds.
 * 0 or -EINVAL. */
int fr_parse_duration(const char *s, int64_t *ret_ns);
/* Writes n bytes of program-supplied text for a terminal: valid UTF-8 is
 * kept, control characters (C0, DEL, C1) and bytes that are not UTF-8 are
 * written as \xNN; with quoted, also '"' and '\' are escaped and \n \t \r
 * use their C escapes.  Returns 0 or -EIO. */
int fr_fmt_safe(FILE *out, const char *s, size_t n, int quoted);
/* Wall-clock ns as "2026-11-26 05:07:48.123456789" in local time (TZ). */
char *fr_fmt_wall(char *buf, size_t len, int64_t wall_ns, int with_date);

/* ---- gtracectl view ---- */

#define FR_VIEW_MAX_FILTERS 32

struct fr_view_options {
        /* Threads to show (numeric ids, or names matched exactly); none: all. */
        size_t nthreads;
        uint64_t thread_ids[FR_VIEW_MAX_FILTERS];
        const char *thread_names[FR_VIEW_MAX_FILTERS];
        /* Event types to show, a bit per type byte; all zero: all. */
        uint8_t types[256 / 8];
        int have_types;
        /* Window relative to the trace start; since <= t < until. */
        int have_since, have_until;
        int64_t since_ns, until_ns;
        /* Print {"events":[...]} instead of text: one object per event with
         * "time_ns" (relative), "wall_ns", "tid", "thread", "fiber", "event"
         * and "args" (names as in the event table; strings resolved, stacks
         * as arrays of "0x..." strings, times relative like time_ns). */
        int json;
};

/* Sets the types for a kind: an event name ("region_begin", any case) or a
 * family ("region", "log", "counter", "task", "thread", "syscall", "fiber",
 * "lost", "status").  0 or -EINVAL for an unknown kind. */
int fr_view_add_kind(struct fr_view_options *o, const char *kind);

/* Prints every event (filtered) one per line to out:
 *   REL  WALL  THREAD  FIBER  EVENT  ARGS
 * or, with o->json, one JSON document.
 * Returns 0, a reader error (with *ret_err), or -EIO when out failed. */
int fr_view_print(struct fr_dump *d, const struct fr_view_options *o, FILE *out,
                  struct fr_error *ret_err);

/* What the trace's end looks like, for `view --last`. */
struct fr_last {
        struct fr_track *track;   /* the state at the end (owned) */
        int64_t start_ns, end_ns; /* trace span, monotonic */
        int64_t end_wall_ns;
        uint64_t generations;
        uint64_t events;
};

/* The human output lists every running fiber, at most this many of each
 * group of runnable / waiting fibers (same state and reason, the longest
 * waiting first), and at most FR_LAST_MAX_TASKS open tasks; --json has all. */
#define FR_LAST_FIBERS_PER_GROUP 10
#define FR_LAST_MAX_TASKS        50

/* Reads the whole dump into *ret (fr_last_done() frees it). 0 or an error. */
int fr_last_collect(struct fr_dump *d, struct fr_last *ret, struct fr_error *ret_err);
void fr_last_done(struct fr_last *l);
/* The human "trace backtrace".  0 or -EIO. */
int fr_last_print(const struct fr_last *l, const struct fr_dump_meta *meta, FILE *out);
/* t's last log if it is a crash handler's note (PROTO_CRASH_CATEGORY: the
 * thread the process died on), else NULL. */
const struct fr_track_log *fr_last_crash(const struct fr_track_thread *t);

/* ---- gtracectl stats ---- */

struct fr_stats {
        uint64_t generations;
        uint64_t first_gen, last_gen;
        uint64_t gens_lost;       /* GENS_LOST records: generations the producer dropped */
        uint64_t gen_gaps;        /* generation numbers missing between dumped ones */
        int64_t start_ns, end_ns; /* monotonic */
        int64_t start_wall_ns, end_wall_ns;
        uint64_t threads, fibers, tasks; /* distinct ids seen */
        uint64_t events;                 /* batch and status events */
        uint64_t events_lost;
        uint64_t per_type[256];
        uint64_t blob_bytes; /* generation blob bytes */
};

int fr_stats_collect(struct fr_dump *d, struct fr_stats *ret, struct fr_error *ret_err);

#endif
