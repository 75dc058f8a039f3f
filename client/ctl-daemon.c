/* SPDX-License-Identifier: MIT */
/*
 * gtracectl status, list, snapshot: the daemon commands, on libgtrace-client.
 *
 * --json output is the daemon's reply object itself (keys documented in
 * docs/protocol.md, "Control connections"), so gtracectl adds no second
 * schema to keep in step; for snapshot with -o, gtracectl adds "path" (the
 * daemon never sees the client's path).
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
#include <unistd.h>

#include "ctl.h"
#include "flightrec/view.h"
#include "gtrace/client.h"

/* An error from the library, with a hint when we know a better next step. */
static int report(struct ctl *ctl, const struct gtrace_client_error *e)
{
        char msg[1024];
        const char *hint = "";
        if (e->code == -ENOENT)
                hint = ": `gtracectl list` shows the processes you may snapshot";
        else if (e->code == -ENODATA)
                hint = ": the process has not pushed a generation yet; try again in a second";
        (void)snprintf(msg, sizeof(msg), "%s%s", e->message, hint);
        if (ctl->json)
                ctl_json_error(e->code, msg);
        ctl_error("%s", msg);
        return CTL_FAIL;
}

static int connect_daemon(struct ctl *ctl, struct gtrace_client **ret)
{
        struct gtrace_client_error e;
        int r = gtrace_client_connect(ctl->socket, ret, &e);
        if (r < 0)
                return report(ctl, &e);
        return CTL_OK;
}

/* --json: send the request as is and print the reply object. */
static int raw_json(struct ctl *ctl, struct gtrace_client *c, const char *request)
{
        struct gtrace_client_error e;
        char *text = NULL;
        json_error_t jerr;

        if (gtrace_client_request(c, request, -1, &text, &e) < 0)
                return report(ctl, &e);
        json_t *reply = json_loads(text, 0, &jerr);
        gtrace_client_free(text);
        if (!json_is_object(reply)) {
                json_decref(reply);
                e.code = -EBADMSG;
                (void)snprintf(e.message, sizeof(e.message),
                               "gtraced sent a reply that is not "
                               "a JSON object");
                return report(ctl, &e);
        }
        int ok = json_is_true(json_object_get(reply, "ok"));
        if (!ok) {
                const char *msg = json_string_value(json_object_get(reply, "error"));
                ctl_error("%s", msg ? msg : "gtraced reported a failure");
        }
        int r = ctl_json_print(reply);
        return ok ? r : CTL_FAIL;
}

static int no_positional(const struct ctl_command *cmd, int argc, char **argv, int first)
{
        if (first < argc)
                return ctl_usage(cmd, "unexpected argument '%s'", argv[first]);
        return 0;
}

/* ---- status ---- */

static int run_status(struct ctl *ctl, int argc, char **argv)
{
        struct gtrace_client *c;
        struct gtrace_client_status s;
        struct gtrace_client_error e;
        int first, r;
        char a[32], b[32], d[32];

        r = ctl_parse(ctl, &ctl_cmd_status, argc, argv, NULL, NULL, NULL, NULL, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = no_positional(&ctl_cmd_status, argc, argv, first)))
                return r;
        if ((r = connect_daemon(ctl, &c)))
                return r;
        if (ctl->json) {
                r = raw_json(ctl, c, "{\"command\":\"status\"}");
                gtrace_client_close(c);
                return r;
        }
        r = gtrace_client_status(c, &s, &e);
        gtrace_client_close(c);
        if (r < 0)
                return report(ctl, &e);

        printf("gtraced %s, pid %" PRIu64 ", up %s, protocol %" PRIu64 "\n", s.version, s.pid,
               fr_fmt_duration(d, sizeof(d), (int64_t)s.uptime_ms * 1000000), s.protocol);
        printf("%-13s %s\n", "socket", s.socket[0] ? s.socket : "(socket activation)");
        printf("%-13s %s\n", "dump dir", s.dump_dir);
        printf("%-13s %" PRIu64 " (%" PRIu64 " live, %" PRIu64 " exited, %" PRIu64 " crashed)\n",
               "processes", s.processes, s.live, s.exited, s.crashed);
        printf("%-13s %" PRIu64 " generations, %s\n", "held", s.generations,
               fr_fmt_size(a, sizeof(a), s.bytes));
        printf("%-13s %" PRIu64 " written, %" PRIu64 " failed\n", "dumps", s.dumps_written,
               s.dumps_failed);
        printf("%-13s %" PRIu64 " generations and %s per process, %s in total\n", "retention",
               s.limits.generations, fr_fmt_size(a, sizeof(a), s.limits.max_process_bytes),
               fr_fmt_size(b, sizeof(b), s.limits.max_total_bytes));
        printf("%-13s generation %s, flush timeout %s, exited kept %s\n", "limits",
               fr_fmt_size(a, sizeof(a), s.limits.max_generation_bytes),
               fr_fmt_duration(b, sizeof(b), (int64_t)s.limits.flush_timeout_ms * 1000000),
               fr_fmt_duration(d, sizeof(d), (int64_t)s.limits.retain_exited_s * 1000000000));
        printf("%-13s %" PRIu64 " connections, %" PRIu64 " processes\n", "",
               s.limits.max_connections, s.limits.max_processes);
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

const struct ctl_command ctl_cmd_status = {
        .name = "status",
        .run = run_status,
        .usage = "status",
        .help = "Show the daemon's version, uptime, the processes it holds traces for (the ones\n"
                "you may see: root sees all, other users their own), bytes held and limits.\n"
                "\n"
                "With --json, prints gtraced's status reply (keys in docs/protocol.md).\n",
};

/* ---- list ---- */

static int run_list(struct ctl *ctl, int argc, char **argv)
{
        struct gtrace_client *c;
        struct gtrace_client_process *v = NULL;
        struct gtrace_client_error e;
        size_t n = 0;
        int first, r;

        r = ctl_parse(ctl, &ctl_cmd_list, argc, argv, NULL, NULL, NULL, NULL, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if ((r = no_positional(&ctl_cmd_list, argc, argv, first)))
                return r;
        if ((r = connect_daemon(ctl, &c)))
                return r;
        if (ctl->json) {
                r = raw_json(ctl, c, "{\"command\":\"list\"}");
                gtrace_client_close(c);
                return r;
        }
        r = gtrace_client_list(c, &v, &n, &e);
        gtrace_client_close(c);
        if (r < 0)
                return report(ctl, &e);
        if (n == 0) {
                fputs("no traced process\n", stdout);
                return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
        }

        /* Two passes: format every cell, then print with the widest of each column. */
        enum { NCOL = 8 };
        static const char *const heads[NCOL] = {"PID",  "COMMAND", "STATE", "GENS",
                                                "HELD", "SPAN",    "LOST",  "UID"};
        static const int right[NCOL] = {1, 0, 0, 1, 1, 1, 1, 1};
        char(*cells)[NCOL][48] = calloc(n, sizeof(*cells));
        int width[NCOL];
        if (!cells) {
                gtrace_client_free(v);
                ctl_error("out of memory");
                return CTL_FAIL;
        }
        for (int j = 0; j < NCOL; j++)
                width[j] = (int)strlen(heads[j]);
        for (size_t i = 0; i < n; i++) {
                const struct gtrace_client_process *p = &v[i];
                char tmp[32];
                (void)snprintf(cells[i][0], 48, "%" PRIu64, p->pid);
                (void)snprintf(cells[i][1], 48, "%.40s", p->command[0] ? p->command : "?");
                if (!strcmp(p->state, "crashed") && p->signal_name[0])
                        (void)snprintf(cells[i][2], 48, "crashed (%s)", p->signal_name);
                else
                        (void)snprintf(cells[i][2], 48, "%s", p->state);
                (void)snprintf(cells[i][3], 48, "%" PRIu64, p->generations);
                (void)snprintf(cells[i][4], 48, "%s", fr_fmt_size(tmp, sizeof(tmp), p->bytes));
                (void)snprintf(cells[i][5], 48, "%s",
                               p->generations
                                       ? fr_fmt_duration(tmp, sizeof(tmp), (int64_t)p->span_ns)
                                       : "-");
                (void)snprintf(cells[i][6], 48, "%" PRIu64, p->events_lost);
                (void)snprintf(cells[i][7], 48, "%" PRIu64, p->uid);
                for (int j = 0; j < NCOL; j++)
                        if ((int)strlen(cells[i][j]) > width[j])
                                width[j] = (int)strlen(cells[i][j]);
        }
        for (int j = 0; j < NCOL; j++)
                printf("%s%*s", j ? "  " : "", right[j] ? width[j] : -width[j], heads[j]);
        fputc('\n', stdout);
        for (size_t i = 0; i < n; i++) {
                for (int j = 0; j < NCOL; j++)
                        printf("%s%*s", j ? "  " : "", right[j] ? width[j] : -width[j],
                               cells[i][j]);
                fputc('\n', stdout);
        }
        free(cells);
        gtrace_client_free(v);
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

const struct ctl_command ctl_cmd_list = {
        .name = "list",
        .run = run_list,
        .usage = "list",
        .help = "List the traced processes gtraced holds traces for: pid, command, state\n"
                "(live, exited, crashed), generations and bytes held, the time span they\n"
                "cover, events lost, and the owner's uid.\n"
                "\n"
                "With --json, prints gtraced's list reply (keys in docs/protocol.md).\n",
};

/* ---- snapshot ---- */

struct snap_opts {
        int all;
        const char *reason;
        const char *out;
};

enum { OPT_ALL = 0x2000, OPT_REASON };

static int snap_opt(void *ctx, int val, const char *arg)
{
        struct snap_opts *o = ctx;
        switch (val) {
        case OPT_ALL: o->all = 1; return 0;
        case OPT_REASON: o->reason = arg; return 0;
        case 'o': o->out = arg; return 0;
        default: return CTL_USAGE;
        }
}

/* Creates FILE as the calling user (so the user can read the dump), for the
 * daemon to write into.  *ret_created says whether it did not exist before,
 * so a failed snapshot removes only what it made. */
static int open_output(const char *path, int *ret_fd, int *ret_created)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        *ret_created = fd >= 0;
        if (fd < 0 && errno == EEXIST)
                fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                (void)close(fd);
                return -EINVAL;
        }
        *ret_fd = fd;
        return 0;
}

static int snapshot_one(struct ctl *ctl, struct gtrace_client *c, uint64_t pid,
                        const struct snap_opts *o)
{
        struct gtrace_client_dump d;
        struct gtrace_client_error e;
        char abs_path[PATH_MAX];
        int fd = -1, created = 0, r;

        if (o->out) {
                r = open_output(o->out, &fd, &created);
                if (r < 0) {
                        e.code = r;
                        (void)snprintf(e.message, sizeof(e.message), "cannot create %s: %s%s",
                                       o->out, r == -EINVAL ? "not a regular file" : strerror(-r),
                                       r == -EACCES ? " (choose a directory you can write)" : "");
                        return report(ctl, &e);
                }
                if (!realpath(o->out, abs_path))
                        (void)snprintf(abs_path, sizeof(abs_path), "%s", o->out);
        }
        r = gtrace_client_snapshot(c, pid, o->reason, fd, &d, &e);
        if (fd >= 0 && close(fd) < 0 && r == 0) {
                e.code = -errno;
                (void)snprintf(e.message, sizeof(e.message), "writing %.600s: %s", abs_path,
                               strerror(errno));
                r = e.code;
        }
        if (r < 0) {
                if (created)
                        (void)unlink(o->out);
                return report(ctl, &e);
        }
        const char *path = o->out ? abs_path : d.path;
        if (ctl->json) {
                json_t *j = json_pack("{s:b,s:I,s:s,s:s,s:b,s:I,s:I}", "ok", 1, "pid",
                                      (json_int_t)d.pid, "command", d.command, "path", path,
                                      "flushed", d.flushed, "generations",
                                      (json_int_t)d.generations, "bytes", (json_int_t)d.bytes);
                return ctl_json_print(j);
        }
        printf("%s\n", path);
        if (!d.flushed)
                ctl_error("note: pid %" PRIu64 " did not flush in time; the dump ends at its last "
                          "complete generation",
                          d.pid);
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int snapshot_all(struct ctl *ctl, struct gtrace_client *c, const struct snap_opts *o)
{
        struct gtrace_client_dump *v = NULL;
        struct gtrace_client_error e;
        size_t n = 0;
        int r = gtrace_client_snapshot_all(c, o->reason, &v, &n, &e);
        int failed = 0;

        if (r < 0 && !v)
                return report(ctl, &e);
        json_t *arr = ctl->json ? json_array() : NULL;
        for (size_t i = 0; i < n; i++) {
                const struct gtrace_client_dump *d = &v[i];
                if (d->result < 0) {
                        failed = 1;
                        ctl_error("pid %" PRIu64 " (%s): %s", d->pid, d->command, d->error);
                } else if (!ctl->json) {
                        printf("%s\n", d->path);
                }
                if (arr) {
                        const char *name = gtrace_client_errno_name(d->result);
                        json_t *j =
                                d->result < 0
                                        ? json_pack("{s:b,s:I,s:s,s:s,s:s,s:i}", "ok", 0, "pid",
                                                    (json_int_t)d->pid, "command", d->command,
                                                    "error", d->error, "errno", name ? name : "",
                                                    "code", -d->result)
                                        : json_pack("{s:b,s:I,s:s,s:s,s:b,s:I,s:I}", "ok", 1, "pid",
                                                    (json_int_t)d->pid, "command", d->command,
                                                    "path", d->path, "flushed", d->flushed,
                                                    "generations", (json_int_t)d->generations,
                                                    "bytes", (json_int_t)d->bytes);
                        (void)json_array_append_new(arr, j);
                }
        }
        gtrace_client_free(v);
        if (n == 0 && !ctl->json)
                ctl_error("no traced process to snapshot");
        if (arr) {
                int pr = ctl_json_print(json_pack("{s:b,s:o}", "ok", !failed, "dumps", arr));
                if (pr)
                        return pr;
        } else if (fflush(stdout) != 0) {
                return CTL_FAIL;
        }
        return failed ? CTL_FAIL : CTL_OK;
}

static int run_snapshot(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"all", no_argument, NULL, OPT_ALL},
                {"reason", required_argument, NULL, OPT_REASON},
                {"output", required_argument, NULL, 'o'},
                {0},
        };
        struct snap_opts o = {0};
        struct gtrace_client *c;
        uint64_t pid = 0;
        int first, r;

        r = ctl_parse(ctl, &ctl_cmd_snapshot, argc, argv, "o:", opts, snap_opt, &o, &first);
        if (r)
                return r < 0 ? CTL_OK : r;
        if (o.all) {
                if (first < argc)
                        return ctl_usage(&ctl_cmd_snapshot, "give a PID or --all, not both");
                if (o.out)
                        return ctl_usage(&ctl_cmd_snapshot,
                                         "-o names one file: it cannot be used with --all");
        } else {
                if (first >= argc)
                        return ctl_usage(&ctl_cmd_snapshot, "which process? give a PID or --all");
                if (first + 1 < argc)
                        return ctl_usage(&ctl_cmd_snapshot, "unexpected argument '%s'",
                                         argv[first + 1]);
                if (ctl_parse_u64(argv[first], &pid) < 0 || pid == 0 || pid > INT32_MAX)
                        return ctl_usage(&ctl_cmd_snapshot, "'%s' is not a process id",
                                         argv[first]);
                if (o.out && !*o.out)
                        return ctl_usage(&ctl_cmd_snapshot, "-o needs a file name");
        }
        if (o.reason && strlen(o.reason) > 1024)
                return ctl_usage(&ctl_cmd_snapshot, "--reason is limited to 1024 bytes");
        if ((r = connect_daemon(ctl, &c)))
                return r;
        r = o.all ? snapshot_all(ctl, c, &o) : snapshot_one(ctl, c, pid, &o);
        gtrace_client_close(c);
        return r;
}

const struct ctl_command ctl_cmd_snapshot = {
        .name = "snapshot",
        .run = run_snapshot,
        .usage = "snapshot PID [--reason TEXT] [-o FILE] | snapshot --all [--reason TEXT]",
        .help = "Dump the recent trace of a traced process: gtraced asks the process to cut\n"
                "its current generation (waiting a bounded time), then writes the generations\n"
                "it holds to a .gtrace file.  The dump's absolute path is the only line printed\n"
                "on stdout.\n"
                "\n"
                "  --reason TEXT   stored in the dump (shown by `gtracectl stats`)\n"
                "  -o, --output FILE\n"
                "                  write the dump to FILE, created by gtracectl as you (so you\n"
                "                  can read it) and handed to the daemon as an open descriptor;\n"
                "                  without -o the daemon writes into its dump directory\n"
                "  --all           dump every process you may see, one path per line\n"
                "\n"
                "With --json, prints {\"ok\", \"pid\", \"command\", \"path\", \"flushed\",\n"
                "\"generations\", \"bytes\"}, or for --all {\"ok\", \"dumps\": [...]}.\n",
};
