/* SPDX-License-Identifier: MIT */
/*
 * gtracectl view, stats, validate, export: the dump-file commands, on
 * flightrec's reader (reader.h), text tools (view.h) and exporter (export.h).
 *
 * All of them stream the dump: one generation in memory at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "flightrec/export.h"
#include "flightrec/reader.h"
#include "flightrec/view.h"
#include "gtrace/client.h"

/* Reports a reader error about path and returns CTL_FAIL. */
static int file_error(struct ctl *ctl, const char *path, int r, const struct fr_error *err)
{
        char msg[1024];
        if (r == -EBADMSG && err && err->msg[0] && err->offset == 0 && strstr(err->msg, "magic"))
                (void)snprintf(msg, sizeof(msg), "%s is not a gtrace dump (%s)", path, err->msg);
        else if (r == -EPROTONOSUPPORT)
                (void)snprintf(msg, sizeof(msg),
                               "%s uses a newer dump format than this gtracectl reads: %s; "
                               "upgrade gtracectl",
                               path, err && err->msg[0] ? err->msg : "unknown version");
        else if (r == -EBADMSG || r == -EPROTO)
                (void)snprintf(msg, sizeof(msg), "%s: at byte %" PRIu64 ": %s", path,
                               err ? err->offset : 0, err && err->msg[0] ? err->msg : strerror(-r));
        else if (err && err->msg[0])
                (void)snprintf(msg, sizeof(msg), "%s: %s", path, err->msg);
        else
                (void)snprintf(msg, sizeof(msg), "%s: %s", path, strerror(-r));
        if (ctl->json)
                ctl_json_error(r, msg);
        ctl_error("%s", msg);
        return CTL_FAIL;
}

static int open_dump(struct ctl *ctl, const char *path, struct fr_dump **ret)
{
        struct fr_error err;
        memset(&err, 0, sizeof(err));
        int r = fr_dump_open(path, ret, &err);
        if (r < 0) {
                char msg[1024];
                if (r == -ENOENT || r == -EACCES || r == -EISDIR || r == -ENOTDIR || r == -ELOOP ||
                    r == -ENAMETOOLONG) {
                        (void)snprintf(msg, sizeof(msg), "cannot open %s: %s", path, strerror(-r));
                        if (ctl->json)
                                ctl_json_error(r, msg);
                        ctl_error("%s", msg);
                        return CTL_FAIL;
                }
                return file_error(ctl, path, r, &err);
        }
        return CTL_OK;
}

/* One FILE argument, no more. */
static int one_file(const struct ctl_command *cmd, int argc, char **argv, int first,
                    const char **ret)
{
        if (first >= argc)
                return ctl_usage(cmd, "which dump? give a .gtrace FILE");
        if (first + 1 < argc)
                return ctl_usage(cmd, "unexpected argument '%s'", argv[first + 1]);
        *ret = argv[first];
        return 0;
}

static json_t *meta_json(const struct fr_dump_meta *m)
{
        return json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:s}", "version",
                         (json_int_t)m->version, "pid", (json_int_t)m->pid, "uid",
                         (json_int_t)m->uid, "command", m->command, "executable", m->executable,
                         "host", m->host, "reason", m->reason, "origin", m->origin, "flushed",
                         m->flushed, "signal", (json_int_t)m->signal, "dump_time_ns",
                         (json_int_t)m->dump_time_ns, "start_time_ns", (json_int_t)m->start_time_ns,
                         "generations_dropped", (json_int_t)m->gens_dropped, "producer",
                         m->producer);
}

/* ---- view ---- */

enum { OPT_THREAD = 0x3000, OPT_EVENT, OPT_SINCE, OPT_UNTIL, OPT_LAST, OPT_FORMAT };

struct view_args {
        struct fr_view_options o;
        int last;
};

static int add_threads(struct view_args *a, const char *arg)
{
        char buf[1024];
        (void)snprintf(buf, sizeof(buf), "%s", arg);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                if (a->o.nthreads == FR_VIEW_MAX_FILTERS)
                        return ctl_usage(&ctl_cmd_view, "at most %d threads in --thread",
                                         FR_VIEW_MAX_FILTERS);
                uint64_t tid;
                size_t i = a->o.nthreads++;
                if (ctl_parse_u64(tok, &tid) == 0) {
                        a->o.thread_ids[i] = tid;
                        a->o.thread_names[i] = NULL;
                } else {
                        /* Names point into argv (alive for the whole run): find tok there. */
                        a->o.thread_names[i] = arg + (tok - buf);
                }
        }
        return 0;
}

static int view_opt(void *ctx, int val, const char *arg)
{
        struct view_args *a = ctx;
        int64_t ns;
        switch (val) {
        case OPT_THREAD: return add_threads(a, arg);
        case OPT_EVENT: {
                char buf[1024];
                (void)snprintf(buf, sizeof(buf), "%s", arg);
                for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
                     tok = strtok_r(NULL, ",", &save))
                        if (fr_view_add_kind(&a->o, tok) < 0)
                                return ctl_usage(&ctl_cmd_view,
                                                 "unknown event kind '%s' (kinds: region, log, "
                                                 "counter, task, thread, syscall, fiber, lost, "
                                                 "status, or an event name like region_begin)",
                                                 tok);
                return 0;
        }
        case OPT_SINCE:
        case OPT_UNTIL:
                if (fr_parse_duration(arg, &ns) < 0)
                        return ctl_usage(&ctl_cmd_view,
                                         "'%s' is not a duration (examples: 1.5s, 200ms, 30us, "
                                         "2m)",
                                         arg);
                if (val == OPT_SINCE) {
                        a->o.have_since = 1;
                        a->o.since_ns = ns;
                } else {
                        a->o.have_until = 1;
                        a->o.until_ns = ns;
                }
                return 0;
        case OPT_LAST: a->last = 1; return 0;
        default: return CTL_USAGE;
        }
}

static json_t *log_json(const struct fr_track_log *lg, int64_t start_ns)
{
        return json_pack("{s:I,s:s,s:s}", "time_ns", (json_int_t)(lg->time_ns - start_ns),
                         "category", lg->category, "message", lg->message);
}

/* --last --json: the same story as the text, as data.  Times are ns
 * relative to the trace start, like view's. */
static json_t *last_json(const struct fr_last *l, const struct fr_dump_meta *meta)
{
        struct fr_track_thread **threads = NULL;
        struct fr_track_fiber **fibers = NULL;
        struct fr_track_task **tasks = NULL;
        size_t nt = 0, nf = 0, nk = 0;
        json_t *root = NULL, *jt, *jf, *jk;

        if (fr_track_threads(l->track, &threads, &nt) < 0 ||
            fr_track_fibers(l->track, &fibers, &nf) < 0 ||
            fr_track_tasks(l->track, &tasks, &nk) < 0)
                goto out;
        root = json_pack("{s:o,s:I,s:I,s:I,s:I,s:I}", "meta", meta_json(meta), "generations",
                         (json_int_t)l->generations, "events", (json_int_t)l->events, "duration_ns",
                         (json_int_t)(l->end_ns - l->start_ns), "end_ns",
                         (json_int_t)(l->end_ns - l->start_ns), "end_wall_ns",
                         (json_int_t)l->end_wall_ns);
        jt = json_array();
        jf = json_array();
        jk = json_array();
        if (!root || !jt || !jf || !jk) {
                json_decref(jt);
                json_decref(jf);
                json_decref(jk);
                json_decref(root);
                root = NULL;
                goto out;
        }
        (void)json_object_set_new(root, "threads", jt);
        (void)json_object_set_new(root, "fibers", jf);
        (void)json_object_set_new(root, "tasks", jk);
        for (size_t i = 0; i < nt; i++) {
                const struct fr_track_thread *t = threads[i];
                json_t *regions = json_array(), *logs = json_array();
                for (size_t j = 0; regions && j < t->nregions; j++)
                        (void)json_array_append_new(
                                regions,
                                json_pack("{s:s,s:I}", "name", t->regions[j].name, "start_ns",
                                          (json_int_t)(t->regions[j].start_ns - l->start_ns)));
                for (unsigned j = 0; logs && j < t->nlogs; j++)
                        (void)json_array_append_new(
                                logs, log_json(fr_track_thread_log(t, j), l->start_ns));
                json_t *o = json_pack("{s:I,s:s,s:I,s:o,s:o,s:I}", "tid", (json_int_t)t->tid,
                                      "name", t->name, "fiber", (json_int_t)t->fiber, "regions",
                                      regions, "logs", logs, "last_event_ns",
                                      (json_int_t)(t->last_ns - l->start_ns));
                if (o && t->in_syscall)
                        (void)json_object_set_new(
                                o, "syscall",
                                json_pack("{s:s,s:I}", "name", t->syscall, "start_ns",
                                          (json_int_t)(t->syscall_start_ns - l->start_ns)));
                (void)json_array_append_new(jt, o);
                /* The crash handler's note ends this thread: say so at the top. */
                const struct fr_track_log *lg = fr_last_crash(t);
                if (lg)
                        (void)json_object_set_new(
                                root, "crash",
                                json_pack("{s:I,s:s,s:I,s:s}", "tid", (json_int_t)t->tid, "name",
                                          t->name, "time_ns", (json_int_t)(lg->time_ns - l->start_ns),
                                          "message", lg->message));
        }
        for (size_t i = 0; i < nf; i++) {
                const struct fr_track_fiber *f = fibers[i];
                json_t *logs = json_array();
                for (unsigned j = 0; logs && j < f->nlogs; j++)
                        (void)json_array_append_new(
                                logs, log_json(fr_track_fiber_log(f, j), l->start_ns));
                (void)json_array_append_new(
                        jf, json_pack("{s:I,s:s,s:s,s:I,s:s,s:I,s:o}", "id", (json_int_t)f->id,
                                      "name", f->name, "state", proto_fiber_state_name(f->state),
                                      "since_ns", (json_int_t)(f->since_ns - l->start_ns), "reason",
                                      f->reason, "tid", (json_int_t)f->tid, "logs", logs));
        }
        for (size_t i = 0; i < nk; i++) {
                const struct fr_track_task *k = tasks[i];
                (void)json_array_append_new(
                        jk, json_pack("{s:I,s:I,s:s,s:I}", "id", (json_int_t)k->id, "parent",
                                      (json_int_t)k->parent, "name", k->name, "start_ns",
                                      (json_int_t)(k->start_ns - l->start_ns)));
        }
out:
        free(threads);
        free(fibers);
        free(tasks);
        return root;
}

static int run_view(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"thread", required_argument, NULL, OPT_THREAD},
                {"event", required_argument, NULL, OPT_EVENT},
                {"since", required_argument, NULL, OPT_SINCE},
                {"until", required_argument, NULL, OPT_UNTIL},
                {"last", no_argument, NULL, OPT_LAST},
                {0},
        };
        struct view_args a;
        struct fr_dump *d = NULL;
        struct fr_error err;
        const char *path = NULL;
        int first, r;

        memset(&a, 0, sizeof(a));
        memset(&err, 0, sizeof(err));
        r = ctl_parse(ctl, &ctl_cmd_view, argc, argv, NULL, opts, view_opt, &a, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = one_file(&ctl_cmd_view, argc, argv, first, &path)))
                return r;
        if (a.o.have_since && a.o.have_until && a.o.until_ns <= a.o.since_ns)
                return ctl_usage(&ctl_cmd_view, "--until must be after --since");
        if (a.last && (a.o.nthreads || a.o.have_types || a.o.have_since || a.o.have_until))
                return ctl_usage(&ctl_cmd_view,
                                 "--last shows the end of the whole trace: it takes no filters");
        if ((r = open_dump(ctl, path, &d)))
                return r;

        if (a.last) {
                struct fr_last l;
                r = fr_last_collect(d, &l, &err);
                if (r != 0) {
                        fr_dump_free(d);
                        return file_error(ctl, path, r, &err);
                }
                if (ctl->json)
                        r = ctl_json_print(last_json(&l, fr_dump_meta(d)));
                else
                        r = fr_last_print(&l, fr_dump_meta(d), stdout) < 0 ? CTL_FAIL : CTL_OK;
                fr_last_done(&l);
                fr_dump_free(d);
                if (r)
                        ctl_error("cannot write to stdout");
                return r;
        }

        static char outbuf[1 << 16];
        (void)setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
        a.o.json = ctl->json;
        r = fr_view_print(d, &a.o, stdout, &err);
        fr_dump_free(d);
        if (r == -EIO) {
                ctl_error("cannot write to stdout");
                return CTL_FAIL;
        }
        if (r != 0) {
                (void)fflush(stdout);
                /* With --json the document on stdout is cut short; the error is
                 * on stderr (a second document would not parse either). */
                struct ctl quiet = *ctl;
                quiet.json = 0;
                return file_error(&quiet, path, r, &err);
        }
        return CTL_OK;
}

const struct ctl_command ctl_cmd_view = {
        .name = "view",
        .run = run_view,
        .usage = "view FILE [--thread TID|NAME] [--event KIND[,KIND]] [--since D] [--until D] "
                 "| view FILE --last",
        .help = "Print every event of a dump, one per line:\n"
                "\n"
                "  +0.001234567  05:07:48.123456789  4242 main  7  REGION_BEGIN name=\"parse\"\n"
                "  time since the trace start, wall clock, thread (tid and name), running\n"
                "  fiber, event, arguments (strings quoted, stacks as [0x... 0x...]).\n"
                "Lines starting with '#' mark generations (left out when filtering).\n"
                "\n"
                "  --thread TID|NAME   only these threads (repeat, or separate with commas)\n"
                "  --event KIND        only these events: region, log, counter, task, thread,\n"
                "                      syscall, fiber, lost, status, or an event name such\n"
                "                      as region_begin (repeat, or separate with commas)\n"
                "  --since D, --until D\n"
                "                      only events in [D1, D2) after the trace start; D is\n"
                "                      1.5s, 200ms, 30us, 500ns, 2m, 1h or plain seconds\n"
                "  --last              instead of events: what every thread and fiber was\n"
                "                      doing at the end of the trace (open regions and for\n"
                "                      how long, blocking calls, fiber states and wait\n"
                "                      reasons, last log lines, open tasks)\n"
                "\n"
                "With --json: {\"events\":[{\"time_ns\",\"wall_ns\",\"tid\",\"thread\",\"fiber\",\n"
                "\"event\",\"args\"}...]}, or with --last {\"meta\",\"threads\",\"fibers\",\n"
                "\"tasks\",...} (see gtracectl(1)).\n",
};

/* ---- stats ---- */

static int run_stats(struct ctl *ctl, int argc, char **argv)
{
        struct fr_dump *d = NULL;
        struct fr_stats s;
        struct fr_error err;
        struct stat st;
        const char *path = NULL;
        char a[64], b[64], c[64];
        int first, r;

        memset(&err, 0, sizeof(err));
        r = ctl_parse(ctl, &ctl_cmd_stats, argc, argv, NULL, NULL, NULL, NULL, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = one_file(&ctl_cmd_stats, argc, argv, first, &path)))
                return r;
        if ((r = open_dump(ctl, path, &d)))
                return r;
        r = fr_stats_collect(d, &s, &err);
        if (r != 0) {
                fr_dump_free(d);
                return file_error(ctl, path, r, &err);
        }
        const struct fr_dump_meta *m = fr_dump_meta(d);
        uint64_t file_bytes = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        size_t ntable;
        const struct proto_event_spec *table = proto_event_table(&ntable);

        if (ctl->json) {
                json_t *per = json_object();
                for (size_t i = 0; per && i < ntable; i++)
                        if (table[i].where != 'S')
                                (void)json_object_set_new(
                                        per, table[i].name,
                                        json_integer((json_int_t)s.per_type[table[i].code]));
                json_t *o = json_pack(
                        "{s:s,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:"
                        "I,s:o}",
                        "file", path, "file_bytes", (json_int_t)file_bytes, "meta", meta_json(m),
                        "generations", (json_int_t)s.generations, "first_generation",
                        (json_int_t)s.first_gen, "last_generation", (json_int_t)s.last_gen,
                        "generations_lost", (json_int_t)s.gens_lost, "generation_gaps",
                        (json_int_t)s.gen_gaps, "start_wall_ns", (json_int_t)s.start_wall_ns,
                        "end_wall_ns", (json_int_t)s.end_wall_ns, "duration_ns",
                        (json_int_t)(s.end_ns - s.start_ns), "threads", (json_int_t)s.threads,
                        "fibers", (json_int_t)s.fibers, "tasks", (json_int_t)s.tasks, "events",
                        (json_int_t)s.events, "events_lost", (json_int_t)s.events_lost,
                        "blob_bytes", (json_int_t)s.blob_bytes, "start_ns", (json_int_t)s.start_ns,
                        "events_per_type", per);
                fr_dump_free(d);
                return ctl_json_print(o);
        }

        printf("%-13s %s (%s)\n", "file", path, fr_fmt_size(a, sizeof(a), file_bytes));
        printf("%-13s %" PRIu64 " %s", "process", m->pid, m->command[0] ? m->command : "?");
        if (m->executable[0])
                printf(" (%s)", m->executable);
        if (m->host[0])
                printf(" on %s", m->host);
        if (m->uid || m->pid)
                printf(", uid %" PRIu64, m->uid);
        fputc('\n', stdout);
        if (m->reason[0])
                printf("%-13s reason \"%s\", ", "dump", m->reason);
        else
                printf("%-13s no reason given, ", "dump");
        printf("origin %s, %s", m->origin[0] ? m->origin : "?",
               m->flushed ? "flushed" : "not flushed (ends at the last complete generation)");
        if (m->signal)
                printf(", signal %" PRIu64, m->signal);
        fputc('\n', stdout);
        if (m->dump_time_ns)
                printf("%-13s %s\n", "written",
                       fr_fmt_wall(a, sizeof(a), (int64_t)m->dump_time_ns, 1));
        if (m->producer[0])
                printf("%-13s %s\n", "producer", m->producer);
        printf("%-13s %" PRIu64, "generations", s.generations);
        if (s.generations)
                printf(" (%" PRIu64 " to %" PRIu64 ")", s.first_gen, s.last_gen);
        if (m->gens_dropped)
                printf(", %" PRIu64 " older ones evicted before the dump", m->gens_dropped);
        if (s.gens_lost)
                printf(", %" PRIu64 " dropped by the process", s.gens_lost);
        if (s.gen_gaps)
                printf(", %" PRIu64 " missing in between", s.gen_gaps);
        fputc('\n', stdout);
        if (s.generations)
                printf("%-13s %s to %s (%s)\n", "time span",
                       fr_fmt_wall(a, sizeof(a), s.start_wall_ns, 1),
                       fr_fmt_wall(b, sizeof(b), s.end_wall_ns, 0),
                       fr_fmt_duration(c, sizeof(c), s.end_ns - s.start_ns));
        printf("%-13s %" PRIu64 "\n", "threads", s.threads);
        printf("%-13s %" PRIu64 "\n", "fibers", s.fibers);
        printf("%-13s %" PRIu64 "\n", "tasks", s.tasks);
        printf("%-13s %" PRIu64 " (%s of generations)\n", "events", s.events,
               fr_fmt_size(a, sizeof(a), s.blob_bytes));
        printf("%-13s %" PRIu64 "%s\n", "events lost", s.events_lost,
               s.events_lost ? " (buffers were full: see `gtracectl view --event lost`)" : "");
        if (s.events)
                printf("\nevents per type:\n");
        for (size_t i = 0; i < ntable; i++)
                if (table[i].where != 'S' && s.per_type[table[i].code])
                        printf("  %-16s %12" PRIu64 "\n", table[i].name, s.per_type[table[i].code]);
        fr_dump_free(d);
        if (fflush(stdout) != 0) {
                ctl_error("cannot write to stdout");
                return CTL_FAIL;
        }
        return CTL_OK;
}

const struct ctl_command ctl_cmd_stats = {
        .name = "stats",
        .run = run_stats,
        .usage = "stats FILE",
        .help = "Summarise a dump: the process and why it was dumped (reason, origin, whether\n"
                "the last generation was flushed for it), generations and the time span they\n"
                "cover, distinct threads, fibers and tasks, events per type and events lost.\n"
                "\n"
                "With --json, the same as an object (keys in gtracectl(1)).\n",
};

/* ---- validate ---- */

struct validate_ctx {
        uint64_t generations, events, lost;
};

static int validate_gen_end(void *ctx, const struct fr_generation *g)
{
        struct validate_ctx *v = ctx;
        v->generations++;
        v->events += g->nevents;
        v->lost += g->lost;
        return 0;
}

static int run_validate(struct ctl *ctl, int argc, char **argv)
{
        struct fr_dump *d = NULL;
        struct fr_error err;
        struct validate_ctx v = {0};
        struct fr_callbacks cb = {.generation_end = validate_gen_end};
        const char *path = NULL;
        int first, r;

        memset(&err, 0, sizeof(err));
        r = ctl_parse(ctl, &ctl_cmd_validate, argc, argv, NULL, NULL, NULL, NULL, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = one_file(&ctl_cmd_validate, argc, argv, first, &path)))
                return r;
        if ((r = open_dump(ctl, path, &d)))
                return r;
        r = fr_dump_parse(d, &cb, &v, &err);
        fr_dump_free(d);
        if (r != 0) {
                if (ctl->json) {
                        const char *name = gtrace_client_errno_name(r);
                        json_t *o =
                                json_pack("{s:b,s:s,s:s,s:I,s:s,s:I}", "valid", 0, "file", path,
                                          "error", err.msg[0] ? err.msg : strerror(-r), "offset",
                                          (json_int_t)err.offset, "errno", name ? name : "",
                                          "generations_valid", (json_int_t)v.generations);
                        (void)ctl_json_print(o);
                        ctl_error("%s: invalid at byte %" PRIu64 ": %s", path, err.offset,
                                  err.msg[0] ? err.msg : strerror(-r));
                        return CTL_FAIL;
                }
                ctl_error("%s: invalid at byte %" PRIu64 ": %s", path, err.offset,
                          err.msg[0] ? err.msg : strerror(-r));
                return CTL_FAIL;
        }
        if (ctl->json)
                return ctl_json_print(json_pack("{s:b,s:s,s:I,s:I,s:I}", "valid", 1, "file", path,
                                                "generations", (json_int_t)v.generations, "events",
                                                (json_int_t)v.events, "events_lost",
                                                (json_int_t)v.lost));
        printf("%s: valid: %" PRIu64 " generation%s, %" PRIu64 " events, %" PRIu64 " lost\n", path,
               v.generations, v.generations == 1 ? "" : "s", v.events, v.lost);
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

const struct ctl_command ctl_cmd_validate = {
        .name = "validate",
        .run = run_validate,
        .usage = "validate FILE",
        .help = "Check a dump: every record decodes, every generation is complete and\n"
                "self-contained, and the ordering rules of docs/format.md hold (regions and\n"
                "blocking calls nest, fiber transitions follow the state machine and their\n"
                "sequence numbers admit an order, totals match).  Exit 0 when valid; else\n"
                "exit 1 naming the first violation and its byte offset in the file.\n"
                "\n"
                "With --json: {\"valid\", \"file\", \"generations\", \"events\", \"events_lost\"}\n"
                "or {\"valid\": false, \"error\", \"offset\", \"errno\", ...}.\n",
};

/* ---- export ---- */

struct export_args {
        const char *format;
        const char *out;
};

static int export_opt(void *ctx, int val, const char *arg)
{
        struct export_args *a = ctx;
        switch (val) {
        case OPT_FORMAT: a->format = arg; return 0;
        case 'o': a->out = arg; return 0;
        default: return CTL_USAGE;
        }
}

struct progress {
        int64_t start_ms, last_ms;
        int shown;
};

static int64_t mono_ms(void)
{
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* At most ten updates a second, on one line rewritten in place. */
static void show_progress(void *ctx, const struct fr_export_progress *p)
{
        struct progress *pr = ctx;
        int64_t now = mono_ms();
        if (now - pr->last_ms < 100)
                return;
        pr->last_ms = now;
        char a[32], b[32];
        double secs = (double)(now - pr->start_ms) / 1000.0;
        double rate = secs > 0 ? (double)p->bytes_done / secs / 1e6 : 0;
        if (p->bytes_total)
                fprintf(stderr, "\rexporting: %3d%%  %s of %s  %.0f MB/s   ",
                        (int)(p->bytes_done * 100 / p->bytes_total),
                        fr_fmt_size(a, sizeof(a), p->bytes_done),
                        fr_fmt_size(b, sizeof(b), p->bytes_total), rate);
        else
                fprintf(stderr, "\rexporting: %s  %.0f MB/s   ",
                        fr_fmt_size(a, sizeof(a), p->bytes_done), rate);
        pr->shown = 1;
}

static int run_export(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"format", required_argument, NULL, OPT_FORMAT},
                {"output", required_argument, NULL, 'o'},
                {0},
        };
        struct export_args a = {0};
        struct fr_dump *d = NULL;
        struct fr_error err;
        struct fr_export_result res = {0};
        struct progress pr = {0};
        const char *path = NULL;
        char tmp_path[PATH_MAX], abs_path[PATH_MAX];
        int first, r, fd = 1;

        memset(&err, 0, sizeof(err));
        r = ctl_parse(ctl, &ctl_cmd_export, argc, argv, "o:", opts, export_opt, &a, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = one_file(&ctl_cmd_export, argc, argv, first, &path)))
                return r;
        if (!a.format)
                return ctl_usage(&ctl_cmd_export, "which format? give --format chrome");
        if (strcmp(a.format, "chrome") != 0)
                return ctl_usage(&ctl_cmd_export, "unknown format '%s' (supported: chrome)",
                                 a.format);
        if (a.out && (!*a.out || !strcmp(a.out, "-")))
                a.out = NULL;
        if (!a.out && ctl->json)
                return ctl_usage(&ctl_cmd_export,
                                 "--json reports on the export: give the JSON trace a file "
                                 "with -o OUT");
        if (!a.out && isatty(1))
                return ctl_usage(&ctl_cmd_export,
                                 "refusing to write JSON to a terminal: give -o OUT or redirect "
                                 "stdout");
        if ((r = open_dump(ctl, path, &d)))
                return r;

        if (a.out) {
                /* Write next to OUT and rename at the end: a failed export never
                 * leaves a truncated file where a good one is expected. */
                int n = snprintf(tmp_path, sizeof(tmp_path), "%s.XXXXXX", a.out);
                if (n < 0 || (size_t)n >= sizeof(tmp_path)) {
                        fr_dump_free(d);
                        ctl_error("%s: name too long", a.out);
                        return CTL_FAIL;
                }
                fd = mkostemp(tmp_path, O_CLOEXEC);
                if (fd < 0) {
                        int e = errno;
                        fr_dump_free(d);
                        char msg[1024];
                        (void)snprintf(msg, sizeof(msg), "cannot create %s: %s", a.out,
                                       strerror(e));
                        if (ctl->json)
                                ctl_json_error(-e, msg);
                        ctl_error("%s", msg);
                        return CTL_FAIL;
                }
                mode_t mask = umask(0);
                umask(mask);
                (void)fchmod(fd, 0666 & ~mask);
        }

        struct fr_export_options eo = {.producer = "gtracectl " CTL_VERSION};
        struct stat st;
        if (stat(path, &st) == 0)
                eo.bytes_total = (uint64_t)st.st_size;
        if (isatty(2)) {
                pr.start_ms = mono_ms();
                pr.last_ms = pr.start_ms;
                eo.progress = show_progress;
                eo.progress_ctx = &pr;
        }
        r = fr_export_chrome(d, fd, &eo, &res, &err);
        fr_dump_free(d);
        if (pr.shown)
                fputs("\r\033[K", stderr);
        if (a.out) {
                if (r == 0 && fsync(fd) < 0 && errno != EINVAL) {
                        r = -errno;
                        (void)snprintf(err.msg, sizeof(err.msg), "writing %s: %s", a.out,
                                       strerror(errno));
                }
                if (close(fd) < 0 && r == 0) {
                        r = -errno;
                        (void)snprintf(err.msg, sizeof(err.msg), "writing %s: %s", a.out,
                                       strerror(errno));
                }
                if (r == 0 && rename(tmp_path, a.out) < 0) {
                        r = -errno;
                        (void)snprintf(err.msg, sizeof(err.msg), "cannot create %s: %s", a.out,
                                       strerror(errno));
                }
                if (r != 0)
                        (void)unlink(tmp_path);
        }
        if (r != 0)
                return file_error(ctl, path, r, &err);
        if (!a.out)
                return CTL_OK;
        if (!realpath(a.out, abs_path))
                (void)snprintf(abs_path, sizeof(abs_path), "%s", a.out);
        if (ctl->json)
                return ctl_json_print(
                        json_pack("{s:b,s:s,s:s,s:I,s:I,s:I,s:I}", "ok", 1, "file", path, "path",
                                  abs_path, "generations", (json_int_t)res.generations, "events",
                                  (json_int_t)res.events_in, "trace_events",
                                  (json_int_t)res.events_out, "bytes", (json_int_t)res.out_bytes));
        printf("%s\n", abs_path);
        if (isatty(2))
                fprintf(stderr, "open it in https://ui.perfetto.dev (\"Open trace file\") or "
                                "chrome://tracing\n");
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

const struct ctl_command ctl_cmd_export = {
        .name = "export",
        .run = run_export,
        .usage = "export FILE --format chrome [-o OUT]",
        .help = "Convert a dump to Chrome Trace Event Format JSON, which ui.perfetto.dev and\n"
                "chrome://tracing open: process and thread names, regions and blocking calls\n"
                "as slices, logs as instant events, counters as counter tracks, async tasks\n"
                "nested under their parents, every fiber as a track of its own with running,\n"
                "runnable and waiting slices and arrows from where it was readied to where it\n"
                "ran, lost events as markers.  Streams: memory does not grow with the dump.\n"
                "\n"
                "  --format chrome     the output format (the only one so far)\n"
                "  -o, --output OUT    write to OUT (replaced only when the export succeeds)\n"
                "                      and print its absolute path; default stdout\n"
                "\n"
                "A progress line is shown on stderr when it is a terminal.\n"
                "With --json (needs -o): {\"ok\", \"file\", \"path\", \"generations\", "
                "\"events\",\n"
                "\"trace_events\", \"bytes\"}.\n",
};
