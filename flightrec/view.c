/* SPDX-License-Identifier: MIT */
/*
 * `gtracectl view FILE`: every event on one line, in the reader's order.
 *
 *   +0.000123456  05:07:48.123456789  4242 main            7      REGION_BEGIN   name="parse"
 *   relative      wall clock (local)  thread (name)        fiber  event          arguments
 *
 * The relative time counts from the start of the first generation in the
 * dump (negative for regions restated from before it); it has full
 * nanosecond precision, so lines sort and diff well.  Each generation starts
 * with a comment line ("# generation ...") unless a thread or event filter
 * is active, so the output stays greppable.  Strings are quoted with C
 * escapes, stacks are hex program counters innermost first (symbolising
 * them is left to addr2line or a debugger with the executable at hand).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "flightrec/view.h"

struct view_ctx {
        const struct fr_view_options *o;
        FILE *out;
        struct fr_track *track;
        int have_start;
        int64_t start_ns; /* trace start, monotonic */
        int filtered;     /* a thread or event filter is active */
        int gen_printed;  /* the current generation's header line is out */
        uint64_t printed; /* events printed (JSON: to place the commas) */
};

/* ---- filters ---- */

static const struct {
        const char *family;
        uint8_t types[8];
} kind_families[] = {
        {"region", {PROTO_EV_REGION_BEGIN, PROTO_EV_REGION_END, PROTO_EV_REGION_STATUS}},
        {"log", {PROTO_EV_LOG}},
        {"counter", {PROTO_EV_COUNTER}},
        {"task", {PROTO_EV_TASK_BEGIN, PROTO_EV_TASK_END, PROTO_EV_TASK_STATUS}},
        {"thread", {PROTO_EV_THREAD_NAME, PROTO_EV_THREAD_STATUS}},
        {"syscall", {PROTO_EV_SYSCALL_BEGIN, PROTO_EV_SYSCALL_END}},
        {"fiber",
         {PROTO_EV_FIBER_CREATE, PROTO_EV_FIBER_RUN, PROTO_EV_FIBER_BLOCK, PROTO_EV_FIBER_READY,
          PROTO_EV_FIBER_YIELD, PROTO_EV_FIBER_EXIT, PROTO_EV_FIBER_STATUS}},
        {"lost", {PROTO_EV_EVENTS_LOST}},
        {"status",
         {PROTO_EV_THREAD_STATUS, PROTO_EV_REGION_STATUS, PROTO_EV_TASK_STATUS,
          PROTO_EV_FIBER_STATUS}},
};

static void type_set(struct fr_view_options *o, uint8_t type)
{
        o->types[type / 8] |= (uint8_t)(1u << (type % 8));
        o->have_types = 1;
}

static int type_isset(const struct fr_view_options *o, uint8_t type)
{
        return (o->types[type / 8] >> (type % 8)) & 1;
}

int fr_view_add_kind(struct fr_view_options *o, const char *kind)
{
        for (size_t i = 0; i < sizeof(kind_families) / sizeof(kind_families[0]); i++) {
                if (strcasecmp(kind, kind_families[i].family) != 0)
                        continue;
                for (size_t j = 0; j < 8 && kind_families[i].types[j]; j++)
                        type_set(o, kind_families[i].types[j]);
                return 0;
        }
        size_t n;
        const struct proto_event_spec *table = proto_event_table(&n);
        for (size_t i = 0; i < n; i++) {
                if (table[i].where != 'S' && !strcasecmp(kind, table[i].name)) {
                        type_set(o, table[i].code);
                        return 0;
                }
        }
        return -EINVAL;
}

static int thread_matches(const struct view_ctx *c, uint64_t tid)
{
        const struct fr_view_options *o = c->o;
        if (!o->nthreads)
                return 1;
        struct fr_track_thread *t = fr_track_thread(c->track, tid);
        /* Once a thread matched by name it stays selected after it renames
         * itself (the tracker leaves t->user to us: non-NULL = selected). */
        if (t && t->user)
                return 1;
        for (size_t i = 0; i < o->nthreads; i++) {
                if (o->thread_names[i]) {
                        if (t && !strcmp(t->name, o->thread_names[i])) {
                                t->user = t;
                                return 1;
                        }
                } else if (o->thread_ids[i] == tid) {
                        return 1;
                }
        }
        return 0;
}

/* ---- printing ---- */

static void print_rel(FILE *out, int64_t rel)
{
        uint64_t a = rel < 0 ? (uint64_t)0 - (uint64_t)rel : (uint64_t)rel;
        fprintf(out, "%c%" PRIu64 ".%09" PRIu64, rel < 0 ? '-' : '+', a / 1000000000,
                a % 1000000000);
}

/* Quoted, escaped for a terminal (fr_fmt_safe): a corrupt or hostile trace
 * must not be able to send control sequences to it. */
static void print_quoted(FILE *out, const uint8_t *s, size_t n)
{
        fputc('"', out);
        (void)fr_fmt_safe(out, (const char *)s, n, 1);
        fputc('"', out);
}

/* "4242 main" padded to 22 columns (counting characters, not bytes). */
static void print_thread(FILE *out, uint64_t tid, const struct fr_track_thread *t)
{
        char num[24];
        int width;
        if (tid == 0) {
                fputs("tracer", out);
                width = 6;
        } else {
                width = snprintf(num, sizeof(num), "%" PRIu64, tid);
                fputs(num, out);
                if (t && t->name[0]) {
                        size_t n = strlen(t->name);
                        if (n > 60)
                                n = 60;
                        fputc(' ', out);
                        (void)fr_fmt_safe(out, t->name, n, 0);
                        width += 1;
                        for (size_t i = 0; i < n; i++) /* UTF-8 continuation bytes take no column */
                                width += ((unsigned char)t->name[i] & 0xc0) != 0x80;
                }
        }
        fprintf(out, "%*s", width < 22 ? 23 - width : 1, "");
}

static void print_str(FILE *out, const char *s)
{
        if (s)
                print_quoted(out, (const uint8_t *)s, strlen(s));
        else
                fputc('-', out);
}

/* Arguments after the event name (padded to a column only when there are
 * any, so lines carry no trailing blanks).  Absent stacks are left out, and
 * absent times (0, e.g. the start of a blocking call that is not there)
 * print as "-". */
static void print_args(struct view_ctx *c, const struct fr_generation *g, const struct fr_event *ev,
                       int name_len)
{
        const struct proto_event_spec *spec = ev->spec;
        for (unsigned i = 0; spec && i < spec->nargs; i++) {
                const struct proto_arg_spec *a = &spec->args[i];
                uint64_t v = ev->args[i];
                if (a->kind == PA_TS)
                        continue;
                if (a->kind == PA_STACK && v == 0)
                        continue;
                if (name_len >= 0) {
                        fprintf(c->out, "%*s", name_len < 13 ? 13 - name_len : 0, "");
                        name_len = -1;
                }
                fprintf(c->out, " %s=", a->name);
                if (a->kind == PA_TIME && v == 0) {
                        fputc('-', c->out);
                        continue;
                }
                switch (a->kind) {
                case PA_SINT: fprintf(c->out, "%" PRId64, (int64_t)v); break;
                case PA_TIME: print_rel(c->out, fr_track_ns(g, v) - c->start_ns); break;
                case PA_STR: print_str(c->out, ev->str[i]); break;
                case PA_BYTES: print_quoted(c->out, ev->bytes[i], ev->bytes[i] ? v : 0); break;
                case PA_STATE: fputs(proto_fiber_state_name((uint8_t)v), c->out); break;
                case PA_TASK:
                        if (v == 0)
                                fputc('-', c->out);
                        else
                                fprintf(c->out, "%" PRIu64, v);
                        break;
                case PA_STACK: {
                        const uint64_t *pcs;
                        size_t n;
                        if (fr_gen_stack(g, v, &pcs, &n) < 0) {
                                fprintf(c->out, "#%" PRIu64, v);
                                break;
                        }
                        fputc('[', c->out);
                        for (size_t j = 0; j < n; j++)
                                fprintf(c->out, "%s0x%" PRIx64, j ? " " : "", pcs[j]);
                        fputc(']', c->out);
                        break;
                }
                case PA_FIBER: {
                        if (v == 0) {
                                fputc('-', c->out);
                                break;
                        }
                        fprintf(c->out, "%" PRIu64, v);
                        const struct fr_track_fiber *f = v ? fr_track_fiber(c->track, v) : NULL;
                        if (f && f->name[0] && ev->type != PROTO_EV_FIBER_CREATE &&
                            ev->type != PROTO_EV_FIBER_STATUS) {
                                fputc('(', c->out);
                                print_str(c->out, f->name);
                                fputc(')', c->out);
                        }
                        break;
                }
                default: fprintf(c->out, "%" PRIu64, v); break;
                }
        }
}

/* --json: one object per event, built and dropped at once (constant memory). */
static json_t *json_args(struct view_ctx *c, const struct fr_generation *g,
                         const struct fr_event *ev)
{
        json_t *o = json_object();
        const struct proto_event_spec *spec = ev->spec;
        for (unsigned i = 0; o && spec && i < spec->nargs; i++) {
                const struct proto_arg_spec *a = &spec->args[i];
                uint64_t v = ev->args[i];
                json_t *val = NULL;
                switch (a->kind) {
                case PA_TS: continue;
                case PA_SINT: val = json_integer((json_int_t)v); break;
                case PA_TIME:
                        val = v ? json_integer(fr_track_ns(g, v) - c->start_ns) : json_null();
                        break;
                case PA_STR: val = ev->str[i] ? json_string(ev->str[i]) : json_null(); break;
                case PA_BYTES:
                        val = json_stringn((const char *)ev->bytes[i], ev->bytes[i] ? v : 0);
                        if (!val && ev->bytes[i]) {
                                /* Not UTF-8: keep the ASCII, mark the rest. */
                                char *tmp = malloc(v + 1);
                                if (tmp) {
                                        for (uint64_t j = 0; j < v; j++)
                                                tmp[j] = ev->bytes[i][j] < 0x80
                                                                 ? (char)ev->bytes[i][j]
                                                                 : '?';
                                        val = json_stringn(tmp, v);
                                        free(tmp);
                                }
                        }
                        break;
                case PA_STATE: val = json_string(proto_fiber_state_name((uint8_t)v)); break;
                case PA_STACK: {
                        const uint64_t *pcs;
                        size_t n;
                        if (v == 0)
                                continue;
                        val = json_array();
                        if (val && fr_gen_stack(g, v, &pcs, &n) == 0) {
                                for (size_t j = 0; j < n; j++) {
                                        char hex[24];
                                        (void)snprintf(hex, sizeof(hex), "0x%" PRIx64, pcs[j]);
                                        (void)json_array_append_new(val, json_string(hex));
                                }
                        }
                        break;
                }
                default: val = json_integer((json_int_t)v); break;
                }
                if (!val || json_object_set_new(o, a->name, val) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

static int print_json_event(struct view_ctx *c, const struct fr_generation *g,
                            const struct fr_event *ev, int64_t rel, uint64_t fiber,
                            const struct fr_track_thread *t)
{
        json_t *o = json_pack("{s:I,s:I,s:I,s:s,s:I,s:s}", "time_ns", (json_int_t)rel, "wall_ns",
                              (json_int_t)fr_clock_wall_ns(&g->clock, ev->time), "tid",
                              (json_int_t)ev->tid, "thread",
                              ev->tid == 0 ? "tracer"
                              : t          ? t->name
                                           : "",
                              "fiber", (json_int_t)fiber, "event", ev->spec ? ev->spec->name : "?");
        json_t *args = json_args(c, g, ev);
        if (!o || !args || json_object_set_new(o, "args", args) < 0) {
                json_decref(o);
                return -ENOMEM;
        }
        fputs(c->printed ? ",\n" : "\n", c->out);
        int r = json_dumpf(o, c->out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        return r < 0 ? -EIO : 0;
}

static void print_generation(struct view_ctx *c, const struct fr_generation *g)
{
        char wall[64];
        fprintf(c->out, "# generation %" PRIu64 " pid %" PRIu64 " at ", g->gen, g->pid);
        print_rel(c->out, fr_track_ns(g, g->clock.start) - c->start_ns);
        fprintf(c->out, " (%s): %zu threads, %" PRIu64 " events, %" PRIu64 " lost",
                fr_fmt_wall(wall, sizeof(wall), fr_clock_wall_ns(&g->clock, g->clock.start), 1),
                g->nthreads, g->nevents, g->lost);
        if (g->gens_lost)
                fprintf(c->out, ", %" PRIu64 " generations lost before it", g->gens_lost);
        fputc('\n', c->out);
}

static int view_generation_begin(void *ctx, const struct fr_generation *g)
{
        struct view_ctx *c = ctx;
        if (!c->have_start) {
                c->start_ns = fr_track_ns(g, g->clock.start);
                c->have_start = 1;
        }
        c->gen_printed = 0;
        if (!c->filtered && !c->o->json) {
                int64_t gs = fr_track_ns(g, g->clock.start) - c->start_ns;
                int64_t ge = fr_track_ns(g, g->clock.end) - c->start_ns;
                if ((!c->o->have_until || gs < c->o->until_ns) &&
                    (!c->o->have_since || ge > c->o->since_ns)) {
                        print_generation(c, g);
                        c->gen_printed = 1;
                }
        }
        return fr_track_generation_begin(c->track, g);
}

static int view_wanted(const struct view_ctx *c, const struct fr_event *ev, int64_t rel)
{
        const struct fr_view_options *o = c->o;
        if (o->have_types && !type_isset(o, ev->type))
                return 0;
        if (o->have_since && rel < o->since_ns)
                return 0;
        if (o->have_until && rel >= o->until_ns)
                return 0;
        if (o->nthreads && (ev->tid == 0 || !thread_matches(c, ev->tid)))
                return 0;
        return 1;
}

static int view_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct view_ctx *c = ctx;
        int64_t rel = fr_track_ns(g, ev->time) - c->start_ns;
        /* Events that name the thread are shown with the name they set; all
         * others with the state before them (the fiber that ran, the name a
         * fiber had before it exits). */
        int after = ev->type == PROTO_EV_THREAD_NAME || ev->type == PROTO_EV_THREAD_STATUS;
        int r;

        if (after) {
                r = fr_track_event(c->track, g, ev);
                if (r < 0)
                        return r;
        }
        if (view_wanted(c, ev, rel)) {
                const struct fr_track_thread *t =
                        ev->tid ? fr_track_thread(c->track, ev->tid) : NULL;
                uint64_t fiber = t ? t->fiber : 0;
                char wall[64];

                if (ev->type == PROTO_EV_FIBER_RUN || ev->type == PROTO_EV_FIBER_CREATE)
                        fiber = ev->args[1];
                if (c->o->json) {
                        r = print_json_event(c, g, ev, rel, fiber, t);
                        c->printed++;
                        if (r < 0)
                                return r;
                        goto printed;
                }
                print_rel(c->out, rel);
                fprintf(c->out, "  %s  ",
                        fr_fmt_wall(wall, sizeof(wall), fr_clock_wall_ns(&g->clock, ev->time), 0));
                print_thread(c->out, ev->tid, t);
                if (fiber)
                        fprintf(c->out, "%-6" PRIu64 " ", fiber);
                else
                        fputs("-      ", c->out);
                const char *name = ev->spec ? ev->spec->name : "?";
                fputs(name, c->out);
                print_args(c, g, ev, (int)strlen(name));
                fputc('\n', c->out);
        printed:
                if (ferror(c->out))
                        return -EIO;
        }
        return after ? 0 : fr_track_event(c->track, g, ev);
}

static int view_generation_end(void *ctx, const struct fr_generation *g)
{
        struct view_ctx *c = ctx;
        return fr_track_generation_end(c->track, g);
}

int fr_view_print(struct fr_dump *d, const struct fr_view_options *o, FILE *out,
                  struct fr_error *ret_err)
{
        static const struct fr_view_options none;
        struct view_ctx c = {.o = o ? o : &none, .out = out};
        struct fr_callbacks cb = {
                .generation_begin = view_generation_begin,
                .event = view_event,
                .generation_end = view_generation_end,
        };
        int r;

        c.filtered = c.o->have_types || c.o->nthreads;
        c.track = fr_track_new(NULL, NULL);
        if (!c.track)
                return -ENOMEM;
        if (c.o->json)
                fputs("{\"events\":[", out);
        r = fr_dump_parse(d, &cb, &c, ret_err);
        fr_track_free(c.track);
        if (r == 0 && c.o->json)
                fputs("\n]}\n", out);
        if (r == 0 && fflush(out) != 0)
                r = -EIO;
        return r;
}
