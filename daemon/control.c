/* SPDX-License-Identifier: MIT */
/*
 * Control requests (docs/protocol.md, "Control connections"): status, list
 * and snapshot, JSON in and out.  Every request is evaluated with the
 * caller's kernel uid; processes the caller may not see are treated as if
 * they did not exist, so a snapshot of one fails exactly like a snapshot of
 * a pid the daemon never heard of.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gtraced.h"

static void reply(struct gd_conn *c, json_t *doc)
{
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (!text) {
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        size_t len = strlen(text);
        if (len > PROTO_MAX_REPLY_BYTES) {
                free(text);
                json_t *err = json_pack("{s:b,s:s,s:s,s:i}", "ok", 0, "error",
                                        "reply larger than the protocol allows", "errno",
                                        "EMSGSIZE", "code", EMSGSIZE);
                text = err ? json_dumps(err, JSON_COMPACT) : NULL;
                json_decref(err);
                if (!text) {
                        gd_conn_fail(c, -ENOMEM, "out of memory");
                        return;
                }
                len = strlen(text);
        }
        (void)gd_conn_send_owned(c, PROTO_MSG_REPLY, (uint8_t *)text, len);
}

static void reply_error(struct gd_conn *c, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void reply_error(struct gd_conn *c, int err, const char *fmt, ...)
{
        char raw[1024], msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        gd_utf8_copy(msg, sizeof(msg), raw);
        json_t *doc = json_pack("{s:b,s:s,s:s,s:i}", "ok", 0, "error", msg, "errno",
                                gd_errno_name(err), "code", err < 0 ? -err : err);
        if (!doc) {
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        reply(c, doc);
}

static void set_int(json_t *o, const char *key, uint64_t v)
{
        json_object_set_new(o, key, json_integer((json_int_t)v));
}

static void do_status(struct gd_conn *c)
{
        struct gd_server *s = c->srv;
        const struct gd_config *cfg = s->cfg;
        uint64_t n[3] = {0}, gens = 0, bytes = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (!gd_proc_visible(p, c->cred.uid))
                        continue;
                n[p->state]++;
                gens += fr_ring_count(p->ring);
                bytes += fr_ring_bytes(p->ring);
        }
        json_t *o = json_object(), *lim = json_object();
        if (!o || !lim) {
                json_decref(o);
                json_decref(lim);
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        json_object_set_new(o, "ok", json_true());
        json_object_set_new(o, "daemon", json_string("gtraced"));
        json_object_set_new(o, "version", json_string(GTRACED_VERSION));
        set_int(o, "protocol", PROTO_WIRE_VERSION);
        set_int(o, "pid", (uint64_t)getpid());
        set_int(o, "uptime_ms", gd_now_mono_ms() - s->started_mono_ms);
        set_int(o, "processes", n[0] + n[1] + n[2]);
        set_int(o, "live", n[GD_PROC_LIVE]);
        set_int(o, "exited", n[GD_PROC_EXITED]);
        set_int(o, "crashed", n[GD_PROC_CRASHED]);
        set_int(o, "generations", gens);
        set_int(o, "bytes", bytes);
        set_int(o, "dumps_written", s->dumps_written);
        set_int(o, "dumps_failed", s->dumps_failed);
        char buf[PATH_MAX];
        gd_utf8_copy(buf, sizeof(buf), s->socket_path);
        json_object_set_new(o, "socket", json_string(buf));
        gd_utf8_copy(buf, sizeof(buf), s->dump_dir);
        json_object_set_new(o, "dump_dir", json_string(buf));
        set_int(lim, "generations", cfg->generations);
        set_int(lim, "max_process_bytes", cfg->max_process_bytes);
        set_int(lim, "max_total_bytes", cfg->max_total_bytes);
        set_int(lim, "max_generation_bytes", s->max_generation);
        set_int(lim, "retain_exited_s", cfg->retain_exited_s);
        set_int(lim, "flush_timeout_ms", cfg->flush_timeout_ms);
        set_int(lim, "crash_wait_ms", cfg->crash_wait_ms);
        set_int(lim, "max_connections", cfg->max_connections);
        set_int(lim, "max_processes", cfg->max_processes);
        set_int(lim, "hello_timeout_ms", cfg->hello_timeout_ms);
        set_int(lim, "max_uid_bytes", cfg->max_uid_bytes);
        set_int(lim, "max_uid_processes", cfg->max_uid_processes);
        json_object_set_new(o, "limits", lim);
        reply(c, o);
}

static json_t *proc_json(const struct gd_proc *p)
{
        const struct gd_server *s = p->srv;
        json_t *o = json_object();
        if (!o)
                return NULL;
        uint32_t n = fr_ring_count(p->ring);
        uint64_t first = 0, last = 0, lost = 0;
        for (uint32_t i = 0; i < n; i++) {
                const struct fr_genbuf *b = fr_ring_at(p->ring, i);
                lost += b->events_lost;
                if (b->first_wall_ns && (!first || b->first_wall_ns < first))
                        first = b->first_wall_ns;
                if (b->last_wall_ns > last)
                        last = b->last_wall_ns;
        }
        set_int(o, "pid", p->pid);
        set_int(o, "start_time_ns", p->start_time_ns);
        set_int(o, "uid", p->uid);
        json_object_set_new(o, "command", json_string(p->command));
        json_object_set_new(o, "executable", json_string(p->executable));
        json_object_set_new(o, "software", json_string(p->software));
        json_object_set_new(o, "state", json_string(gd_proc_state_name(p->state)));
        if (p->state == GD_PROC_CRASHED && p->signo) {
                set_int(o, "signal", (uint64_t)p->signo);
                json_object_set_new(o, "signal_name", json_string(gd_signal_name(p->signo)));
        }
        set_int(o, "generations", n);
        set_int(o, "bytes", fr_ring_bytes(p->ring));
        set_int(o, "first_ns", first);
        set_int(o, "last_ns", last);
        set_int(o, "span_ns", last > first && first ? last - first : 0);
        set_int(o, "events_lost", lost);
        set_int(o, "generations_lost", p->gens_lost);
        set_int(o, "generations_evicted", fr_ring_evicted(p->ring));
        set_int(o, "connected_ns", p->connected_wall_ns);
        if (p->state != GD_PROC_LIVE && !p->nconns) {
                uint64_t keep = (uint64_t)s->cfg->retain_exited_s * 1000u;
                uint64_t gone = gd_now_mono_ms() - p->ended_mono_ms;
                set_int(o, "ended_ns", p->ended_wall_ns);
                set_int(o, "expires_ms", gone < keep ? keep - gone : 0);
        }
        return o;
}

static int proc_cmp(const void *a, const void *b)
{
        const struct gd_proc *x = *(const struct gd_proc *const *)a;
        const struct gd_proc *y = *(const struct gd_proc *const *)b;
        if (x->pid != y->pid)
                return x->pid < y->pid ? -1 : 1;
        if (x->start_time_ns != y->start_time_ns)
                return x->start_time_ns < y->start_time_ns ? -1 : 1;
        return 0;
}

static void do_list(struct gd_conn *c)
{
        struct gd_server *s = c->srv;
        struct gd_proc **v = calloc(s->nprocs ? s->nprocs : 1, sizeof(*v));
        json_t *arr = json_array(), *o = json_object();
        if (!v || !arr || !o)
                goto oom;
        size_t n = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (gd_proc_visible(p, c->cred.uid))
                        v[n++] = p;
        }
        qsort(v, n, sizeof(*v), proc_cmp);
        for (size_t i = 0; i < n; i++) {
                json_t *el = proc_json(v[i]);
                if (!el || json_array_append_new(arr, el) < 0)
                        goto oom;
        }
        free(v);
        json_object_set_new(o, "ok", json_true());
        json_object_set_new(o, "processes", arr);
        reply(c, o);
        return;
oom:
        free(v);
        json_decref(arr);
        json_decref(o);
        gd_conn_fail(c, -ENOMEM, "out of memory");
}

/* The process a snapshot of pid means for this caller: live first, then the
 * one that ended last. */
static struct gd_proc *find_visible(struct gd_server *s, uint64_t pid, uid_t uid)
{
        struct gd_proc *best = NULL;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->pid != pid || !gd_proc_visible(p, uid))
                        continue;
                if (!best || (p->state == GD_PROC_LIVE && best->state != GD_PROC_LIVE) ||
                    (p->state != GD_PROC_LIVE && best->state != GD_PROC_LIVE &&
                     p->ended_wall_ns > best->ended_wall_ns))
                        best = p;
        }
        return best;
}

/*
 * Parsing is separate from acting so the whole of what a client can say is
 * checked in one place, before any state is touched (and can be fuzzed on
 * its own: tests/fuzz/fuzz-control.c).
 */
static int parse_fail(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static int parse_fail(char *err, size_t err_len, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_snapshot(json_t *req, struct gd_request *q, char *err, size_t err_len)
{
        json_t *jpid = json_object_get(req, "pid");
        json_t *jall = json_object_get(req, "all");
        json_t *jreason = json_object_get(req, "reason");
        json_t *jfd = json_object_get(req, "fd");

        if ((jall && !json_is_boolean(jall)) || (jfd && !json_is_boolean(jfd)))
                return parse_fail(err, err_len, "'all' and 'fd' must be booleans");
        q->all = json_is_true(jall);
        q->want_fd = json_is_true(jfd);
        if (q->all == (jpid != NULL))
                return parse_fail(err, err_len, "snapshot needs exactly one of 'pid' and 'all'");
        if (jpid && (!json_is_integer(jpid) || json_integer_value(jpid) <= 0))
                return parse_fail(err, err_len, "'pid' must be a positive integer");
        if (jpid)
                q->pid = (uint64_t)json_integer_value(jpid);
        if (q->all && q->want_fd)
                return parse_fail(err, err_len, "'fd' cannot be used with 'all'");
        if (jreason) {
                if (!json_is_string(jreason) || json_string_length(jreason) > PROTO_MAX_REASON)
                        return parse_fail(err, err_len,
                                          "'reason' must be a string of at most %u bytes",
                                          PROTO_MAX_REASON);
                /* jansson rejects NUL inside strings unless asked not to, so
                 * the length is the C string's. */
                memcpy(q->reason, json_string_value(jreason), json_string_length(jreason));
                q->reason[json_string_length(jreason)] = '\0';
                q->has_reason = 1;
        }
        return 0;
}

int control_parse(const uint8_t *payload, size_t len, struct gd_request *ret, char *err,
                  size_t err_len)
{
        json_error_t jerr;
        struct gd_request q = {0};
        int r;
        json_t *req = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!req || !json_is_object(req)) {
                r = parse_fail(err, err_len, "request is not a JSON object%s%s",
                               req ? "" : ": ", req ? "" : jerr.text);
                goto done;
        }
        const char *cmd = json_string_value(json_object_get(req, "command"));
        if (!cmd) {
                r = parse_fail(err, err_len, "request has no 'command' string");
        } else if (strcmp(cmd, "status") == 0) {
                q.cmd = GD_REQ_STATUS;
                r = 0;
        } else if (strcmp(cmd, "list") == 0) {
                q.cmd = GD_REQ_LIST;
                r = 0;
        } else if (strcmp(cmd, "snapshot") == 0) {
                q.cmd = GD_REQ_SNAPSHOT;
                r = parse_snapshot(req, &q, err, err_len);
        } else {
                char safe[80];
                gd_utf8_copy(safe, sizeof(safe), cmd);
                r = parse_fail(err, err_len, "unknown command '%.64s'", safe);
        }
done:
        json_decref(req);
        if (r == 0)
                *ret = q;
        return r;
}

static void do_snapshot(struct gd_conn *c, const struct gd_request *q)
{
        struct gd_server *s = c->srv;
        int all = q->all, want_fd = q->want_fd;
        char reason[PROTO_MAX_REASON + 1];
        if (q->has_reason)
                gd_strscpy(reason, sizeof(reason), q->reason);
        else
                snprintf(reason, sizeof(reason), "snapshot requested by uid %u",
                         (unsigned)c->cred.uid);

        int fd = -1;
        if (want_fd) {
                struct stat st;
                int fl;
                if (c->pending_fd < 0) {
                        reply_error(c, -EBADF, "no descriptor came with the request");
                        return;
                }
                fd = c->pending_fd;
                c->pending_fd = -1;
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
                    (fl = fcntl(fd, F_GETFL)) < 0 || (fl & O_ACCMODE) == O_RDONLY) {
                        close(fd);
                        reply_error(c, -EBADF,
                                    "the descriptor is not a regular file open for writing");
                        return;
                }
        }

        struct gd_proc *one = NULL;
        if (!all) {
                uint64_t pid = q->pid;
                one = find_visible(s, pid, c->cred.uid);
                if (!one) {
                        if (fd >= 0)
                                close(fd);
                        reply_error(c, -ESRCH, "no traced process with pid %" PRIu64, pid);
                        return;
                }
        }
        struct gd_snap *snap = gd_snap_new(s, GD_SNAP_CONTROL, c);
        if (!snap) {
                if (fd >= 0)
                        close(fd);
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        snap->single = !all;
        snap->with_fd = fd >= 0;
        c->state = GD_CONN_CONTROL_BUSY;
        if (one) {
                log_info("pid %" PRIu64 " (%s): snapshot requested by uid %u", one->pid,
                         one->command, (unsigned)c->cred.uid);
                (void)gd_dump_start(snap, one, "request", reason, GD_FLUSH_ASK, fd);
        } else {
                struct gd_link *l, *t;
                gd_list_for_each_safe(l, t, &s->procs)
                {
                        struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                        if (gd_proc_visible(p, c->cred.uid))
                                (void)gd_dump_start(snap, p, "request", reason, GD_FLUSH_ASK,
                                                    -1);
                }
        }
        gd_snap_launched(snap);
}

void control_snapshot_done(struct gd_snap *snap, struct gd_conn *c)
{
        json_t *o = json_object();
        json_t *arr = snap->results;
        snap->results = NULL;
        if (!o) {
                json_decref(arr);
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return;
        }
        if (snap->single && json_array_size(arr) == 1) {
                json_t *el = json_array_get(arr, 0);
                const char *keys[] = {"ok", "path", "flushed", "error", "errno", "code"};
                for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                        json_t *v = json_object_get(el, keys[i]);
                        if (v)
                                json_object_set(o, keys[i], v);
                }
        } else {
                json_object_set_new(o, "ok", json_boolean(!snap->failed));
        }
        json_object_set_new(o, "dumps", arr);
        reply(c, o);
        gd_conn_resume(c);
}

int control_request(struct gd_conn *c, const uint8_t *payload, size_t len)
{
        struct gd_request *q = malloc(sizeof(*q)); /* a reason is 1 KiB: off the stack */
        char err[256];
        if (!q) {
                gd_conn_fail(c, -ENOMEM, "out of memory");
                return -ENOMEM;
        }
        if (control_parse(payload, len, q, err, sizeof(err)) < 0)
                reply_error(c, -EINVAL, "%s", err);
        else if (q->cmd == GD_REQ_STATUS)
                do_status(c);
        else if (q->cmd == GD_REQ_LIST)
                do_list(c);
        else
                do_snapshot(c, q);
        free(q);
        /* A descriptor no request claimed is not kept for the next one. */
        if (c->state != GD_CONN_CLOSED && c->pending_fd >= 0) {
                close(c->pending_fd);
                c->pending_fd = -1;
        }
        return 0;
}
