/* SPDX-License-Identifier: MIT */
/*
 * `gtracectl view FILE --last`: the "trace backtrace".
 *
 * After a crash or a hang the first question is not "what happened over the
 * last ten seconds" but "what was every thread and fiber doing when it
 * stopped".  This reads the whole dump through the state tracker and prints
 * the state it is left in: per thread the fiber it runs, the blocking call it
 * sits in and the regions it has open (with how long each has been open at
 * the end of the trace), and its last log lines; per fiber its state, for how
 * long, and why it waits; then the async tasks still open.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/view.h"

struct last_ctx {
        struct fr_last *l;
        int have_start;
        struct fr_clock last_clock;
};

static int last_generation_begin(void *ctx, const struct fr_generation *g)
{
        struct last_ctx *c = ctx;
        if (!c->have_start) {
                c->l->start_ns = fr_track_ns(g, g->clock.start);
                c->have_start = 1;
        }
        c->l->generations++;
        return fr_track_generation_begin(c->l->track, g);
}

static int last_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct last_ctx *c = ctx;
        c->l->events++;
        return fr_track_event(c->l->track, g, ev);
}

static int last_generation_end(void *ctx, const struct fr_generation *g)
{
        struct last_ctx *c = ctx;
        c->last_clock = g->clock;
        c->l->end_ns = fr_track_ns(g, g->clock.end);
        c->l->end_wall_ns = fr_clock_wall_ns(&g->clock, g->clock.end);
        return fr_track_generation_end(c->l->track, g);
}

int fr_last_collect(struct fr_dump *d, struct fr_last *ret, struct fr_error *ret_err)
{
        struct fr_last l = {0};
        struct last_ctx c = {.l = &l};
        struct fr_callbacks cb = {
                .generation_begin = last_generation_begin,
                .event = last_event,
                .generation_end = last_generation_end,
        };
        l.track = fr_track_new(NULL, NULL);
        if (!l.track)
                return -ENOMEM;
        int r = fr_dump_parse(d, &cb, &c, ret_err);
        if (r != 0) {
                fr_track_free(l.track);
                return r;
        }
        *ret = l;
        return 0;
}

void fr_last_done(struct fr_last *l)
{
        if (!l)
                return;
        fr_track_free(l->track);
        l->track = NULL;
}

static void print_rel(FILE *out, int64_t rel)
{
        uint64_t a = rel < 0 ? (uint64_t)0 - (uint64_t)rel : (uint64_t)rel;
        fprintf(out, "%c%" PRIu64 ".%09" PRIu64, rel < 0 ? '-' : '+', a / 1000000000,
                a % 1000000000);
}

/* Names and messages come from the traced program: keep control bytes away
 * from the terminal. */
static void print_safe(FILE *out, const char *s)
{
        (void)fr_fmt_safe(out, s, strlen(s), 0);
}

static void print_logs(const struct fr_last *l, FILE *out,
                       const struct fr_track_log *(*get)(const void *, unsigned), const void *obj,
                       unsigned n)
{
        if (!n)
                return;
        fputs("    last logs:\n", out);
        for (unsigned i = 0; i < n; i++) {
                const struct fr_track_log *lg = get(obj, i);
                char ago[32];
                fputs("      ", out);
                print_rel(out, lg->time_ns - l->start_ns);
                fprintf(out, " (%s before the end) ",
                        fr_fmt_duration(ago, sizeof(ago), l->end_ns - lg->time_ns));
                if (lg->category[0]) {
                        print_safe(out, lg->category);
                        fputs(": ", out);
                }
                print_safe(out, lg->message);
                fputc('\n', out);
        }
}

static const struct fr_track_log *thread_log(const void *t, unsigned i)
{
        return fr_track_thread_log(t, i);
}

static const struct fr_track_log *fiber_log(const void *f, unsigned i)
{
        return fr_track_fiber_log(f, i);
}

/* "thread TID NAME" (no name: "thread TID"). */
static void print_thread_id(FILE *out, const struct fr_track_thread *t)
{
        fprintf(out, "thread %" PRIu64, t->tid);
        if (t->name[0]) {
                fputs(" ", out);
                print_safe(out, t->name);
        }
}

static const char *thread_name(const struct fr_track *tr, uint64_t tid)
{
        const struct fr_track_thread *t = fr_track_thread(tr, tid);
        return t ? t->name : "";
}

static void print_thread(const struct fr_last *l, FILE *out, const struct fr_track_thread *t)
{
        char d[32];
        int busy = t->fiber || t->in_syscall || t->nregions;

        print_thread_id(out, t);
        fprintf(out, "  (last event %s before the end)\n",
                fr_fmt_duration(d, sizeof(d), l->end_ns - t->last_ns));
        if (t->fiber) {
                const struct fr_track_fiber *f = fr_track_fiber(l->track, t->fiber);
                fprintf(out, "    running fiber %" PRIu64, t->fiber);
                if (f && f->name[0]) {
                        fputs(" ", out);
                        print_safe(out, f->name);
                }
                fputc('\n', out);
        }
        if (t->in_syscall) {
                fputs("    in blocking call ", out);
                print_safe(out, t->syscall[0] ? t->syscall : "?");
                fprintf(out, " for %s\n",
                        fr_fmt_duration(d, sizeof(d), l->end_ns - t->syscall_start_ns));
        }
        if (t->nregions) {
                fputs("    open regions, outermost first:\n", out);
                for (size_t i = 0; i < t->nregions; i++) {
                        fprintf(out, "      %*s", (int)(2 * (i < 8 ? i : 8)), "");
                        print_safe(out, t->regions[i].name);
                        fprintf(out, "  open for %s (since ",
                                fr_fmt_duration(d, sizeof(d), l->end_ns - t->regions[i].start_ns));
                        print_rel(out, t->regions[i].start_ns - l->start_ns);
                        fputs(")\n", out);
                }
        }
        if (!busy)
                fputs("    idle: no open region, no blocking call, no fiber\n", out);
        print_logs(l, out, thread_log, t, t->nlogs);
}

const struct fr_track_log *fr_last_crash(const struct fr_track_thread *t)
{
        const struct fr_track_log *lg = t->nlogs ? fr_track_thread_log(t, t->nlogs - 1) : NULL;
        return lg && proto_is_crash_note(lg->category) ? lg : NULL;
}

/* Threads whose last log is the crash handler's note (runtime/crash.c):
 * where the process died, said before the rest. */
static void print_crash(const struct fr_last *l, FILE *out, struct fr_track_thread *const *threads,
                        size_t n)
{
        for (size_t i = 0; i < n; i++) {
                const struct fr_track_thread *t = threads[i];
                const struct fr_track_log *lg = fr_last_crash(t);
                if (!lg)
                        continue;
                char d[32];
                fputs("crashed on ", out);
                print_thread_id(out, t);
                fprintf(out, " (%s before the end): ",
                        fr_fmt_duration(d, sizeof(d), l->end_ns - lg->time_ns));
                print_safe(out, lg->message);
                fputc('\n', out);
        }
}

static void print_fiber(const struct fr_last *l, FILE *out, const struct fr_track_fiber *f)
{
        char d[32];
        fprintf(out, "fiber %" PRIu64, f->id);
        if (f->name[0]) {
                fputs(" ", out);
                print_safe(out, f->name);
        }
        fprintf(out, "  %s for %s", proto_fiber_state_name(f->state),
                fr_fmt_duration(d, sizeof(d), l->end_ns - f->since_ns));
        switch (f->state) {
        case PROTO_FIBER_RUNNING:
        case PROTO_FIBER_SYSCALL:
                fprintf(out, " on thread %" PRIu64, f->tid);
                if (thread_name(l->track, f->tid)[0]) {
                        fputs(" ", out);
                        print_safe(out, thread_name(l->track, f->tid));
                }
                if (f->state == PROTO_FIBER_SYSCALL && f->reason[0]) {
                        fputs(", in blocking call ", out);
                        print_safe(out, f->reason);
                }
                break;
        case PROTO_FIBER_WAITING:
                if (f->reason[0]) {
                        fputs(": ", out);
                        print_safe(out, f->reason);
                }
                break;
        default: break;
        }
        fputc('\n', out);
        print_logs(l, out, fiber_log, f, f->nlogs);
}

/* Fibers that run are always listed; the others are grouped by state and
 * wait reason, longest-waiting first (the suspects), at most
 * FR_LAST_FIBERS_PER_GROUP each: a server with ten thousand idle
 * connections should not bury the two fibers that matter. */
static int fiber_group_cmp(const void *a, const void *b)
{
        const struct fr_track_fiber *x = *(const struct fr_track_fiber *const *)a;
        const struct fr_track_fiber *y = *(const struct fr_track_fiber *const *)b;
        int xr = x->state == PROTO_FIBER_RUNNING || x->state == PROTO_FIBER_SYSCALL;
        int yr = y->state == PROTO_FIBER_RUNNING || y->state == PROTO_FIBER_SYSCALL;
        if (xr != yr)
                return yr - xr; /* running ones first */
        if (x->state != y->state)
                return x->state < y->state ? -1 : 1;
        int c = strcmp(x->reason, y->reason);
        if (c)
                return c;
        if (x->since_ns != y->since_ns)
                return x->since_ns < y->since_ns ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

static void print_fibers(const struct fr_last *l, FILE *out, struct fr_track_fiber **fibers,
                         size_t n)
{
        size_t counts[PROTO_FIBER_STATE_MAX + 1] = {0};
        for (size_t i = 0; i < n; i++)
                if (fibers[i]->state <= PROTO_FIBER_STATE_MAX)
                        counts[fibers[i]->state]++;
        fprintf(out,
                "fibers: %zu live (%zu running, %zu in blocking calls, %zu runnable, %zu "
                "waiting)\n",
                n, counts[PROTO_FIBER_RUNNING], counts[PROTO_FIBER_SYSCALL],
                counts[PROTO_FIBER_RUNNABLE], counts[PROTO_FIBER_WAITING]);
        qsort(fibers, n, sizeof(*fibers), fiber_group_cmp);
        for (size_t i = 0; i < n;) {
                /* [i, j) is one group: same state and reason. */
                size_t j = i + 1;
                int running = fibers[i]->state == PROTO_FIBER_RUNNING ||
                              fibers[i]->state == PROTO_FIBER_SYSCALL;
                while (j < n && fibers[j]->state == fibers[i]->state &&
                       !strcmp(fibers[j]->reason, fibers[i]->reason))
                        j++;
                size_t shown = running                            ? j - i
                               : j - i < FR_LAST_FIBERS_PER_GROUP ? j - i
                                                                  : FR_LAST_FIBERS_PER_GROUP;
                for (size_t k = i; k < i + shown; k++)
                        print_fiber(l, out, fibers[k]);
                if (shown < j - i) {
                        fprintf(out, "  ... and %zu more %s", j - i - shown,
                                proto_fiber_state_name(fibers[i]->state));
                        if (fibers[i]->reason[0]) {
                                fputs(" (", out);
                                print_safe(out, fibers[i]->reason);
                                fputc(')', out);
                        }
                        fputs(" fibers (--json lists them all)\n", out);
                }
                i = j;
        }
}

int fr_last_print(const struct fr_last *l, const struct fr_dump_meta *meta, FILE *out)
{
        struct fr_track_thread **threads = NULL;
        struct fr_track_fiber **fibers = NULL;
        struct fr_track_task **tasks = NULL;
        size_t nthreads = 0, nfibers = 0, ntasks = 0;
        char wall[64], d[32];
        int r;

        r = fr_track_threads(l->track, &threads, &nthreads);
        if (r < 0)
                goto out;
        r = fr_track_fibers(l->track, &fibers, &nfibers);
        if (r < 0)
                goto out;
        r = fr_track_tasks(l->track, &tasks, &ntasks);
        if (r < 0)
                goto out;

        if (meta) {
                fprintf(out, "process %" PRIu64, meta->pid);
                if (meta->command[0]) {
                        fputs(" ", out);
                        print_safe(out, meta->command);
                }
                if (meta->reason[0] || meta->origin[0]) {
                        fputs(", dumped", out);
                        if (meta->origin[0]) {
                                fputs(" by ", out);
                                print_safe(out, meta->origin);
                        }
                        if (meta->reason[0]) {
                                fputs(": ", out);
                                print_safe(out, meta->reason);
                        }
                }
                if (meta->signal)
                        fprintf(out, " (signal %" PRIu64 ")", meta->signal);
                fputc('\n', out);
        }
        if (!l->generations) {
                fputs("the trace is empty: no generation in the dump\n", out);
                goto out;
        }
        fprintf(out,
                "trace ends %s, %s after it starts (%" PRIu64 " generation%s, %" PRIu64
                " events)\n",
                fr_fmt_wall(wall, sizeof(wall), l->end_wall_ns, 1),
                fr_fmt_duration(d, sizeof(d), l->end_ns - l->start_ns), l->generations,
                l->generations == 1 ? "" : "s", l->events);
        print_crash(l, out, threads, nthreads);

        for (size_t i = 0; i < nthreads; i++) {
                fputc('\n', out);
                print_thread(l, out, threads[i]);
        }
        if (nfibers) {
                fputc('\n', out);
                print_fibers(l, out, fibers, nfibers);
        }
        if (ntasks)
                fputs("\ntasks open at the end:\n", out);
        for (size_t i = 0; i < ntasks && i < FR_LAST_MAX_TASKS; i++) {
                const struct fr_track_task *k = tasks[i];
                fprintf(out, "  task %" PRIu64 " ", k->id);
                print_safe(out, k->name);
                if (k->parent)
                        fprintf(out, " (parent %" PRIu64 ")", k->parent);
                fprintf(out, "  open for %s\n",
                        fr_fmt_duration(d, sizeof(d), l->end_ns - k->start_ns));
        }
        if (ntasks > FR_LAST_MAX_TASKS)
                fprintf(out, "  ... and %zu more (--json lists them all)\n",
                        ntasks - FR_LAST_MAX_TASKS);
out:
        free(threads);
        free(fibers);
        free(tasks);
        if (r == 0 && (fflush(out) != 0 || ferror(out)))
                r = -EIO;
        return r;
}
