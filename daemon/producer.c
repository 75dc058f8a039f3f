/* SPDX-License-Identifier: MIT */
/*
 * Producer connections: a traced process pushing generations.
 *
 * Identity comes from the kernel.  The pid and uid are SO_PEERCRED's; the
 * start time (which, with the pid, names the process: pids are reused) is
 * read from /proc/PID/stat.  What the producer claims is used only where the
 * kernel cannot tell (no /proc entry in our pid namespace) or for display.
 *
 * A process may have more than one connection at a time: a runtime that
 * reconnects before we noticed the old connection die, or a crash handler
 * that opens a fresh connection so it never interleaves with a thread still
 * writing on the old one.  The process is live while any is attached; how
 * the last one ends decides between exited and crashed (a CRASH on any
 * connection makes it crashed for good).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gtraced.h"

/* Process start time from /proc: boot time + starttime ticks, wall ns. */
static int read_start_time(pid_t pid, uint64_t *ret)
{
        static uint64_t btime;
        char path[64], buf[1024];

        if (!btime) {
                FILE *f = fopen("/proc/stat", "re");
                if (!f)
                        return -errno;
                char line[256];
                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "btime %" SCNu64, &btime) == 1)
                                break;
                fclose(f);
                if (!btime)
                        return -ENODATA;
        }
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* The command may contain spaces and parentheses: fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EBADMSG;
        p++;
        /* After ')': field 3 (state) ... field 22 (starttime) is the 20th. */
        unsigned long long ticks = 0;
        for (int field = 3; field <= 22; field++) {
                while (*p == ' ')
                        p++;
                if (!*p)
                        return -EBADMSG;
                if (field == 22)
                        ticks = strtoull(p, NULL, 10);
                while (*p && *p != ' ')
                        p++;
        }
        long hz = sysconf(_SC_CLK_TCK);
        if (hz <= 0)
                hz = 100;
        *ret = btime * 1000000000ull + (uint64_t)ticks * (1000000000ull / (uint64_t)hz);
        return 0;
}

int producer_hello(struct gd_conn *c, const struct proto_hello *h)
{
        struct gd_server *s = c->srv;
        uint64_t pid = (uint64_t)c->cred.pid, start = 0;

        if (read_start_time(c->cred.pid, &start) < 0)
                start = h->start_time_ns;
        struct gd_proc *p = gd_proc_find(s, pid, start);
        int fresh = !p;
        if (!p) {
                int r = gd_proc_new(s, pid, start, c->cred.uid, &p);
                if (r == -ENOSPC) {
                        gd_conn_fail(c, r, "too many traced processes (%u held, all live)",
                                     s->cfg->max_processes);
                        return r;
                }
                if (r == -EDQUOT) {
                        gd_conn_fail(c, r,
                                     "too many traced processes for uid %u (%u held, all live)",
                                     (unsigned)c->cred.uid, s->cfg->max_uid_processes);
                        return r;
                }
                if (r < 0) {
                        gd_conn_fail(c, r, "out of memory");
                        return r;
                }
        }
        /* The kernel's uid decides visibility and whose quota the history
         * counts against; take the current one (a process may have changed
         * uid since it last connected). */
        if (p->uid != c->cred.uid) {
                int r = fr_ring_set_owner(p->ring, (uint32_t)c->cred.uid);
                if (r < 0) {
                        gd_conn_fail(c, r, "out of memory");
                        return r;
                }
                p->uid = c->cred.uid;
        }
        if (h->command[0] || fresh)
                gd_utf8_copy(p->command, sizeof(p->command),
                             h->command[0] ? h->command : "unknown");
        if (h->executable[0] || fresh)
                gd_utf8_copy(p->executable, sizeof(p->executable), h->executable);
        if (h->software[0] || fresh)
                gd_utf8_copy(p->software, sizeof(p->software), h->software);
        if (!p->signo && p->state != GD_PROC_LIVE) {
                p->state = GD_PROC_LIVE;
                p->ended_wall_ns = 0;
        }
        c->proc = p;
        c->state = GD_CONN_PRODUCER;
        gd_list_append(&p->conns, &c->proc_link);
        p->nconns++;
        gd_server_arm_retention(s);
        gd_server_status_changed(s);

        if ((uint64_t)h->pid != pid)
                log_debug("pid %" PRIu64 " (%s) claims pid %" PRIu64 "; using the kernel's",
                          pid, p->command, h->pid);
        log_info("pid %" PRIu64 " (%s): producer connected (%s, uid %u)%s", pid, p->command,
                 p->software, (unsigned)p->uid, fresh ? "" : ", resuming its history");

        struct proto_welcome w = {.version = PROTO_WIRE_VERSION,
                                  .max_generation = s->max_generation};
        snprintf(w.software, sizeof(w.software), "gtraced %s", GTRACED_VERSION);
        uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_WELCOME_BYTES];
        ssize_t n = proto_encode_welcome(frame, sizeof(frame), &w);
        return n > 0 ? gd_conn_send(c, frame, (size_t)n) : (int)n;
}

int producer_generation(struct gd_conn *c, struct fr_genbuf *b)
{
        char err[160];
        int r = fr_genbuf_scan(b, err, sizeof(err));
        if (r < 0) {
                fr_genbuf_unref(b);
                gd_conn_fail(c, r, "%s", err);
                return r;
        }
        struct gd_proc *p = c->proc;
        log_debug("pid %" PRIu64 " (%s): generation %" PRIu64 ", %zu bytes, connection %" PRIu64,
                  p->pid, p->command, b->gen, b->len, c->id);
        /* Around a crash the generations of a process come on two
         * connections, out of order, and some twice (the one its crash
         * handler sealed comes again, finished, if the process lives on):
         * the ring puts each in its place and keeps one copy. */
        /* A process that survived its signal: once its crash dump is out,
         * what it goes on sending on its own connection says it is live. */
        if (p->state == GD_PROC_CRASHED && p->crash_dumped && !c->sent_crash) {
                p->state = GD_PROC_LIVE;
                log_info("pid %" PRIu64 " (%s) lives on after %s", p->pid, p->command,
                         gd_signal_name(p->signo));
                gd_server_status_changed(c->srv);
        }
        uint64_t replaced_lost, lost = b->gens_lost;
        switch (fr_ring_put(p->ring, b, &replaced_lost)) {
        case FR_PUT_REPLACED: p->gens_lost += lost - replaced_lost; break;
        case FR_PUT_DUPLICATE: break;
        default: p->gens_lost += lost; break;
        }
        gd_server_status_changed(c->srv);
        return 0;
}

static void crash_dump_start(struct gd_proc *p)
{
        p->crash_pending = 0;
        p->crash_dumped = 1;
        if (fr_ring_count(p->ring) == 0) {
                log_info("pid %" PRIu64 " (%s): no generation held, nothing to dump", p->pid,
                         p->command);
                return;
        }
        struct gd_snap *snap = gd_snap_new(p->srv, GD_SNAP_AUTO, NULL);
        if (!snap) {
                log_error_errno(-ENOMEM, "pid %" PRIu64 " (%s): cannot dump after crash: %m",
                                p->pid, p->command);
                return;
        }
        (void)gd_dump_start(snap, p, "crash", p->crash_reason, GD_FLUSH_NO, -1);
        gd_snap_launched(snap);
}

static uint64_t crash_quiet_ms(const struct gd_server *s)
{
        return s->cfg->crash_wait_ms < GD_CRASH_QUIET_MS ? s->cfg->crash_wait_ms
                                                         : GD_CRASH_QUIET_MS;
}

/* Starts the waiting crash dumps that are due; runs until none waits. */
static void on_crash_timer(uv_timer_t *t)
{
        struct gd_server *s = t->data;
        uint64_t now = gd_now_mono_ms();
        uint64_t quiet = crash_quiet_ms(s);
        int waiting = 0;
        struct gd_link *l, *tmp;
        gd_list_for_each_safe(l, tmp, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (!p->crash_pending)
                        continue;
                if (now >= p->crash_deadline_ms ||
                    (!p->nconns && now - p->quiet_since_ms >= quiet) ||
                    (p->handler_gone_ms && now - p->handler_gone_ms >= quiet))
                        crash_dump_start(p);
                else
                        waiting = 1;
        }
        if (!waiting)
                uv_timer_stop(t);
}

void gd_crash_schedule(struct gd_proc *p, const char *reason)
{
        struct gd_server *s = p->srv;
        if (p->crash_dumped)
                return;
        if (!p->crash_pending || p->signo)
                snprintf(p->crash_reason, sizeof(p->crash_reason), "%s", reason);
        if (p->crash_pending)
                return;
        p->crash_pending = 1;
        p->crash_deadline_ms = gd_now_mono_ms() + s->cfg->crash_wait_ms;
        if (!p->nconns)
                p->quiet_since_ms = gd_now_mono_ms();
        if (s->stopping || !s->cfg->crash_wait_ms) {
                crash_dump_start(p);
                return;
        }
        if (!uv_is_active((uv_handle_t *)&s->crash_timer)) {
                s->crash_timer.data = s;
                uint64_t tick = crash_quiet_ms(s) / 4 ? crash_quiet_ms(s) / 4 : 1;
                uv_timer_start(&s->crash_timer, on_crash_timer, tick, tick);
        }
}

void gd_crash_start_all(struct gd_server *s)
{
        struct gd_link *l, *tmp;
        gd_list_for_each_safe(l, tmp, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->crash_pending)
                        crash_dump_start(p);
        }
}

int producer_frame(struct gd_conn *c, const struct proto_header *h, const uint8_t *payload)
{
        struct gd_proc *p = c->proc;
        int r;

        switch (h->type) {
        case PROTO_MSG_FLUSH_DONE: {
                struct proto_flush_done m;
                r = proto_decode_flush_done(payload, h->length, &m);
                if (r < 0)
                        break;
                gd_dump_flush_done(p, m.id);
                return 0;
        }
        case PROTO_MSG_DUMP_REQUEST: {
                static struct proto_dump_request m; /* loop thread only; keeps the stack small */
                r = proto_decode_dump_request(payload, h->length, &m);
                if (r < 0)
                        break;
                struct gd_snap *snap = gd_snap_new(c->srv, GD_SNAP_PRODUCER, c);
                if (!snap) {
                        gd_conn_fail(c, -ENOMEM, "out of memory");
                        return -ENOMEM;
                }
                snap->reply_id = m.id;
                char reason[PROTO_MAX_REASON + 1];
                gd_utf8_copy(reason, sizeof(reason), m.reason[0] ? m.reason : "gtrace_dump()");
                log_info("pid %" PRIu64 " (%s): dump requested by the process: %s", p->pid,
                         p->command, reason);
                (void)gd_dump_start(snap, p, "process", reason, GD_FLUSH_ALREADY, -1);
                gd_snap_launched(snap);
                return 0;
        }
        case PROTO_MSG_CRASH: {
                struct proto_crash m;
                r = proto_decode_crash(payload, h->length, &m);
                if (r < 0)
                        break;
                p->signo = (int)m.signo;
                p->state = GD_PROC_CRASHED;
                c->sent_crash = 1;
                char reason[64];
                snprintf(reason, sizeof(reason), "crashed: %s", gd_signal_name(p->signo));
                log_warning("pid %" PRIu64 " (%s) %s", p->pid, p->command, reason);
                gd_crash_schedule(p, reason);
                gd_server_status_changed(c->srv);
                return 0;
        }
        case PROTO_MSG_GOODBYE:
                c->saw_goodbye = 1;
                c->state = GD_CONN_GOODBYE;
                return 0;
        default:
                r = -EPROTO;
                break;
        }
        gd_conn_fail(c, r, "malformed %s", proto_msg_name(h->type));
        return r;
}

void producer_detach(struct gd_conn *c)
{
        struct gd_proc *p = c->proc;
        gd_list_remove(&c->proc_link);
        p->nconns--;
        c->proc = NULL;
        if (c->sent_crash)
                p->handler_gone_ms = gd_now_mono_ms();
        if (c->srv->stopping || p->nconns > 0)
                return;
        p->quiet_since_ms = gd_now_mono_ms();
        if (p->signo && !(c->saw_goodbye && p->state == GD_PROC_LIVE)) {
                p->state = GD_PROC_CRASHED;
        } else if (c->saw_goodbye) {
                p->state = GD_PROC_EXITED;
                log_info("pid %" PRIu64 " (%s) exited; %u generations held", p->pid, p->command,
                         fr_ring_count(p->ring));
        } else {
                p->state = GD_PROC_CRASHED;
                log_warning("pid %" PRIu64 " (%s): connection lost without goodbye; treating "
                            "it as crashed",
                            p->pid, p->command);
                gd_crash_schedule(p, "connection lost without goodbye");
        }
        gd_dump_flush_abandon(p);
        gd_proc_ended(p);
}
