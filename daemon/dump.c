/* SPDX-License-Identifier: MIT */
/*
 * Snapshots and dump files.
 *
 * A requester (struct gd_snap: a control client, a producer's DUMP_REQUEST,
 * SIGUSR1, a crash) asks for one or more dumps (struct gd_dump, one per
 * process).  A dump goes through at most two steps:
 *
 *     FLUSHING ──FLUSH_DONE / deadline / producer gone / shutdown──▶ WRITING ──▶ done
 *        (only when asked to flush a live process)
 *
 * Entering WRITING takes references to the generations the process's ring
 * holds at that moment and copies the metadata, so from then on the dump
 * depends on nothing the loop may free: the ring may evict, the process may
 * be forgotten.  The file is written on libuv's thread pool, into a
 * temporary file in the dump directory that is renamed into place only when
 * complete (readers never see half a dump), or into a descriptor the client
 * passed.  Completion runs on the loop thread, reports to the requester and
 * releases the references.  Shutdown waits for every WRITING dump (libuv
 * keeps the loop alive while work requests are pending).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "gtraced.h"

#define DUMP_NAME_COMMAND_MAX 64 /* command bytes kept in a file name */
#define DUMP_NAME_TRIES 100      /* -1 .. -99 suffixes when a name is taken */
#define DUMP_FILE_MODE 0640
#define DUMP_DIR_MODE 0750

struct gd_dump {
        struct gd_link link;      /* srv->dumps */
        struct gd_link proc_link; /* proc->flushing while FLUSHING */
        struct gd_server *srv;
        struct gd_snap *snap;
        struct gd_proc *proc; /* FLUSHING only */
        int flushing;
        uint64_t flush_id;
        uint64_t deadline_ms;
        uv_work_t work;
        /* the job: everything the writer thread reads */
        struct proto_dump_meta meta;
        char command[PROTO_MAX_COMMAND + 1];
        char executable[PROTO_MAX_PATH + 1];
        char software[PROTO_MAX_SOFTWARE + 1];
        char reason[PROTO_MAX_REASON + 1];
        char origin[16];
        int fd;            /* client's descriptor, or -1: the dump directory */
        int chown_uid;     /* >= 0: give the file to this uid */
        struct fr_genbuf **gens;
        uint32_t ngens;
        uint64_t bytes;
        /* when (monotonic µs): requested, writer queued, writer started, file in place */
        uint64_t t_request, t_queued, t_write, t_done;
        /* the outcome */
        int result;
        int recreated_dir; /* the dump directory was missing and was created */
        char path[PATH_MAX + 32];
        char err[PATH_MAX + 256];
};

struct gd_snap *gd_snap_new(struct gd_server *s, enum gd_snap_kind kind, struct gd_conn *conn)
{
        struct gd_snap *snap = calloc(1, sizeof(*snap));
        if (!snap)
                return NULL;
        snap->srv = s;
        snap->kind = kind;
        snap->conn = conn;
        gd_list_init(&snap->conn_link);
        if (conn)
                gd_list_append(&conn->snaps, &snap->conn_link);
        if (kind == GD_SNAP_CONTROL) {
                snap->results = json_array();
                if (!snap->results) {
                        gd_list_remove(&snap->conn_link);
                        free(snap);
                        return NULL;
                }
        }
        return snap;
}

static void snap_free(struct gd_snap *snap)
{
        gd_list_remove(&snap->conn_link);
        json_decref(snap->results);
        free(snap);
}

void gd_snap_conn_gone(struct gd_conn *c)
{
        while (!gd_list_empty(&c->snaps)) {
                struct gd_snap *snap = gd_container_of(c->snaps.next, struct gd_snap, conn_link);
                gd_list_remove(&snap->conn_link);
                snap->conn = NULL;
        }
}

static void snap_finish(struct gd_snap *snap)
{
        struct gd_conn *c = snap->conn;
        /* Detach first: answering may close the connection. */
        gd_list_remove(&snap->conn_link);
        snap->conn = NULL;
        if (c && snap->kind == GD_SNAP_CONTROL) {
                control_snapshot_done(snap, c);
        } else if (c && snap->kind == GD_SNAP_PRODUCER) {
                struct proto_dump_reply m = {.id = snap->reply_id, .result = snap->result};
                gd_strscpy(m.text, sizeof(m.text), snap->text);
                uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_DUMP_REPLY_BYTES];
                ssize_t n = proto_encode_dump_reply(frame, sizeof(frame), &m);
                if (n > 0)
                        (void)gd_conn_send(c, frame, (size_t)n);
        }
        snap_free(snap);
}

void gd_snap_launched(struct gd_snap *snap)
{
        snap->launched = 1;
        if (snap->outstanding == 0)
                snap_finish(snap);
}

static json_t *dump_element(const struct gd_dump *d)
{
        json_t *o = json_object();
        if (!o)
                return NULL;
        int ok = d->result >= 0;
        json_object_set_new(o, "ok", json_boolean(ok));
        json_object_set_new(o, "pid", json_integer((json_int_t)d->meta.pid));
        json_object_set_new(o, "command", json_string(d->command));
        if (ok) {
                if (d->fd < 0)
                        json_object_set_new(o, "path", json_string(d->path));
                json_object_set_new(o, "flushed", json_boolean(d->meta.flushed));
                json_object_set_new(o, "generations", json_integer(d->ngens));
                json_object_set_new(o, "bytes", json_integer((json_int_t)d->bytes));
        } else {
                char msg[sizeof(d->err)];
                gd_utf8_copy(msg, sizeof(msg), d->err);
                json_object_set_new(o, "error", json_string(msg));
                json_object_set_new(o, "errno", json_string(gd_errno_name(d->result)));
                json_object_set_new(o, "code", json_integer(-d->result));
        }
        return o;
}

/* On the loop thread: the dump is complete (or failed before writing). */
static void dump_complete(struct gd_dump *d)
{
        struct gd_server *s = d->srv;
        struct gd_snap *snap = d->snap;

        if (d->recreated_dir)
                log_warning("Dump directory %s was missing; created it again", s->dump_dir);
        if (d->result >= 0) {
                s->dumps_written++;
                /* Where a snapshot's time went: the producer's flush, the
                 * wait for a writer thread, the write itself (a dump only
                 * succeeds through dump_work, so every stamp is set). */
                log_info("pid %" PRIu64 " (%s): dumped %u generations (%" PRIu64
                         " bytes%s) to %s in %.1f ms (flush %.1f, queue %.1f, write %.1f)",
                         d->meta.pid, d->command, d->ngens, d->bytes,
                         d->meta.flushed ? "" : ", not flushed",
                         d->fd >= 0 ? "the requester's file" : d->path,
                         (double)(d->t_done - d->t_request) / 1000.0,
                         (double)(d->t_queued - d->t_request) / 1000.0,
                         (double)(d->t_write - d->t_queued) / 1000.0,
                         (double)(d->t_done - d->t_write) / 1000.0);
        } else {
                s->dumps_failed++;
                log_full_errno(d->result == -ENODATA ? LOG_INFO : LOG_ERR, d->result,
                               "pid %" PRIu64 " (%s): dump failed: %s", d->meta.pid,
                               d->command, d->err);
        }
        if (snap) {
                if (d->result < 0)
                        snap->failed = 1;
                if (snap->kind == GD_SNAP_CONTROL) {
                        json_t *el = dump_element(d);
                        if (el)
                                json_array_append_new(snap->results, el);
                } else if (snap->kind == GD_SNAP_PRODUCER) {
                        snap->result = d->result;
                        gd_strscpy(snap->text, sizeof(snap->text), d->result >= 0 ? d->path : d->err);
                }
        }
        for (uint32_t i = 0; i < d->ngens; i++)
                fr_genbuf_unref(d->gens[i]);
        free(d->gens);
        if (d->fd >= 0)
                close(d->fd);
        gd_list_remove(&d->link);
        free(d);
        if (snap && --snap->outstanding == 0 && snap->launched)
                snap_finish(snap);
}

/* ---- the writer (thread pool) ------------------------------------------------------ */

static void name_command(char *out, size_t cap, const char *cmd)
{
        size_t o = 0;
        for (const char *p = cmd; *p && o + 1 < cap && o < DUMP_NAME_COMMAND_MAX; p++) {
                char ch = *p;
                int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                         (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '+' ||
                         (ch == '.' && o > 0);
                out[o++] = ok ? ch : '_';
        }
        if (o == 0 && cap > 8)
                o = (size_t)snprintf(out, cap, "unknown");
        out[o] = '\0';
}

/*
 * The dump directory is opened afresh for every dump, without following a
 * symbolic link in its last component, and everything after that is
 * relative to that descriptor: a directory removed, replaced or remounted
 * while gtraced runs is picked up by the next dump, and a symlink planted
 * in its place is refused rather than followed.  A directory that is
 * missing is created again (docs/daemon.md, "Dumps").
 */
static int open_dump_dir(struct gd_dump *d, const char *dir)
{
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0 && errno == ENOENT) {
                int r = gd_mkdir_parents(dir, DUMP_DIR_MODE);
                if (r < 0) {
                        snprintf(d->err, sizeof(d->err),
                                 "dump directory %s is missing and cannot be created again: %s",
                                 dir, strerror(-r));
                        return r;
                }
                d->recreated_dir = 1;
                dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (dfd < 0) {
                int r = -errno;
                struct stat st;
                /* O_DIRECTORY wins over O_NOFOLLOW: a symlink gives ENOTDIR. */
                if ((r == -ENOTDIR || r == -ELOOP) && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
                        r = -ELOOP;
                snprintf(d->err, sizeof(d->err), "cannot open dump directory %s: %s", dir,
                         r == -ELOOP ? "it is a symbolic link (refused)" : strerror(-r));
                return r;
        }
        return dfd;
}

/* Creates a fresh temporary file name in dfd (O_EXCL, a random suffix). */
static int create_temp(int dfd, const char *prefix, char *name, size_t cap)
{
        static atomic_uint counter;
        for (int i = 0; i < DUMP_NAME_TRIES; i++) {
                uint32_t x;
                if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x))
                        x = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed) ^
                            (uint32_t)getpid();
                if (snprintf(name, cap, "%s.tmp.%08" PRIx32, prefix, x) >= (int)cap)
                        return -ENAMETOOLONG;
                int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                                0600);
                if (fd >= 0 || errno != EEXIST)
                        return fd >= 0 ? fd : -errno;
        }
        return -EEXIST;
}

static int write_to_dir(struct gd_dump *d, const struct iovec *iov)
{
        const char *dir = d->srv->dump_dir;
        char cmd[DUMP_NAME_COMMAND_MAX + 1], stamp[32], base[160], prefix[160],
                tmp[NAME_MAX + 1], name[NAME_MAX + 1];
        struct tm tm;
        time_t secs = (time_t)(d->meta.dump_time_ns / 1000000000u);
        unsigned ms = (unsigned)(d->meta.dump_time_ns / 1000000u % 1000u);

        /* Names are built from a sanitised command (no '/', no leading '.'),
         * the kernel's pid and the time: they cannot leave the directory. */
        name_command(cmd, sizeof(cmd), d->command);
        gmtime_r(&secs, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        snprintf(base, sizeof(base), "%s-%" PRIu64 "-%s.%03uZ", cmd, d->meta.pid, stamp, ms);
        snprintf(prefix, sizeof(prefix), ".%s-%" PRIu64, cmd, d->meta.pid);
        if (strlen(dir) + sizeof(base) + 16 > sizeof(d->path)) {
                snprintf(d->err, sizeof(d->err), "dump directory path too long: %s", dir);
                return -ENAMETOOLONG;
        }
        int dfd = open_dump_dir(d, dir);
        if (dfd < 0)
                return dfd;
        int fd = create_temp(dfd, prefix, tmp, sizeof(tmp));
        if (fd < 0) {
                snprintf(d->err, sizeof(d->err), "cannot create a file in %s: %s", dir,
                         strerror(-fd));
                close(dfd);
                return fd;
        }
        int r = 0;
        if (fchmod(fd, DUMP_FILE_MODE) < 0)
                r = -errno;
        /* Running as root: the process's owner may read the dump of their process. */
        if (r == 0 && d->chown_uid > 0)
                if (fchown(fd, (uid_t)d->chown_uid, (gid_t)-1) < 0) {
                        /* Best effort: without CAP_CHOWN the file stays ours. */
                }
        if (r == 0) {
                /* Reserving the whole file first makes the copy into the page
                 * cache cheaper (no block reservation page by page) and turns
                 * a full disk into an error before anything is written.  A
                 * file system without fallocate just skips it. */
                int64_t size = proto_dump_size(&d->meta, iov, d->ngens);
                if (size > 0 && fallocate(fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP &&
                    errno != ENOSYS)
                        r = -errno;
        }
        if (r == 0)
                r = proto_dump_write(fd, &d->meta, iov, d->ngens);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0) {
                snprintf(d->err, sizeof(d->err), "cannot write %s/%s: %s", dir, tmp,
                         strerror(-r));
                (void)unlinkat(dfd, tmp, 0);
                close(dfd);
                return r;
        }
        /* Atomic and never clobbering: a name already taken gets a suffix. */
        for (int i = 0; i < DUMP_NAME_TRIES; i++) {
                if (i == 0)
                        snprintf(name, sizeof(name), "%s.gtrace", base);
                else
                        snprintf(name, sizeof(name), "%s-%d.gtrace", base, i);
                if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0) {
                        r = 0;
                        goto renamed;
                }
                if (errno == EINVAL) {
                        /* No RENAME_NOREPLACE on this file system: link + unlink. */
                        if (linkat(dfd, tmp, dfd, name, 0) == 0) {
                                (void)unlinkat(dfd, tmp, 0);
                                r = 0;
                                goto renamed;
                        }
                }
                if (errno != EEXIST)
                        break;
        }
        r = -errno;
        snprintf(d->err, sizeof(d->err), "cannot rename %s/%s into place: %s", dir, tmp,
                 strerror(-r));
        (void)unlinkat(dfd, tmp, 0);
        close(dfd);
        d->path[0] = '\0';
        return r;
renamed:
        close(dfd);
        snprintf(d->path, sizeof(d->path), "%s/%s", dir, name);
        return 0;
}

static void dump_work(uv_work_t *w)
{
        struct gd_dump *d = w->data;
        d->t_write = gd_now_mono_us();
        struct iovec *iov = calloc(d->ngens ? d->ngens : 1, sizeof(*iov));
        if (!iov) {
                d->result = -ENOMEM;
                snprintf(d->err, sizeof(d->err), "out of memory");
                return;
        }
        for (uint32_t i = 0; i < d->ngens; i++)
                iov[i] = (struct iovec){d->gens[i]->data, d->gens[i]->len};
        if (d->fd >= 0) {
                d->result = proto_dump_write(d->fd, &d->meta, iov, d->ngens);
                if (d->result < 0)
                        snprintf(d->err, sizeof(d->err), "cannot write the requester's file: %s",
                                 strerror(-d->result));
        } else {
                d->result = write_to_dir(d, iov);
        }
        free(iov);
        d->t_done = gd_now_mono_us();
}

static void dump_after_work(uv_work_t *w, int status)
{
        struct gd_dump *d = w->data;
        d->srv->ndumps_writing--;
        if (status == UV_ECANCELED) {
                d->result = -ECANCELED;
                snprintf(d->err, sizeof(d->err), "cancelled");
        }
        dump_complete(d);
}

/* FLUSHING (or new) -> WRITING. */
static void dump_write(struct gd_dump *d, struct gd_proc *p, int flushed)
{
        struct gd_server *s = d->srv;
        if (d->flushing) {
                gd_list_remove(&d->proc_link);
                d->flushing = 0;
        }
        d->proc = NULL;
        d->meta.flushed = flushed;
        d->meta.dump_time_ns = gd_now_wall_ns();
        d->t_queued = gd_now_mono_us();
        d->meta.gens_dropped = fr_ring_evicted(p->ring);
        d->meta.signal = (uint64_t)p->signo;

        uint32_t n = fr_ring_count(p->ring);
        if (n == 0) {
                d->result = -ENODATA;
                snprintf(d->err, sizeof(d->err), "pid %" PRIu64 " (%s) holds no generation",
                         p->pid, p->command);
                dump_complete(d);
                return;
        }
        d->gens = calloc(n, sizeof(*d->gens));
        if (!d->gens) {
                d->result = -ENOMEM;
                snprintf(d->err, sizeof(d->err), "out of memory");
                dump_complete(d);
                return;
        }
        d->ngens = fr_ring_snapshot(p->ring, d->gens, n);
        for (uint32_t i = 0; i < d->ngens; i++)
                d->bytes += d->gens[i]->len;
        d->work.data = d;
        int r = uv_queue_work(s->loop, &d->work, dump_work, dump_after_work);
        if (r < 0) {
                d->result = -ECANCELED;
                snprintf(d->err, sizeof(d->err), "cannot queue the write: %s", uv_strerror(r));
                dump_complete(d);
                return;
        }
        s->ndumps_writing++;
}

static void on_flush_timer(uv_timer_t *t)
{
        gd_dump_flush_timeout(t->data);
}

static void arm_flush_timer(struct gd_server *s)
{
        uint64_t next = UINT64_MAX;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->dumps)
        {
                struct gd_dump *d = gd_container_of(l, struct gd_dump, link);
                if (d->flushing && d->deadline_ms < next)
                        next = d->deadline_ms;
        }
        if (next == UINT64_MAX || s->stopping) {
                if (!uv_is_closing((uv_handle_t *)&s->flush_timer))
                        uv_timer_stop(&s->flush_timer);
                return;
        }
        uint64_t now = gd_now_mono_ms();
        uv_timer_start(&s->flush_timer, on_flush_timer, next > now ? next - now : 0, 0);
}

static struct gd_conn *proc_conn(struct gd_proc *p)
{
        /* The most recent connection: a reconnected runtime answers there. */
        return gd_list_empty(&p->conns) ? NULL
                                        : gd_container_of(p->conns.prev, struct gd_conn, proc_link);
}

int gd_dump_start(struct gd_snap *snap, struct gd_proc *p, const char *origin,
                  const char *reason, enum gd_flush flush, int fd)
{
        struct gd_server *s = p->srv;
        struct gd_dump *d = calloc(1, sizeof(*d));
        if (!d) {
                if (fd >= 0)
                        close(fd);
                return -ENOMEM;
        }
        d->srv = s;
        d->snap = snap;
        d->fd = fd;
        d->t_request = gd_now_mono_us();
        d->chown_uid = geteuid() == 0 && p->uid != 0 ? (int)p->uid : -1;
        gd_list_init(&d->proc_link);
        gd_list_append(&s->dumps, &d->link);
        snap->outstanding++;

        gd_strscpy(d->command, sizeof(d->command), p->command);
        gd_strscpy(d->executable, sizeof(d->executable), p->executable);
        gd_strscpy(d->software, sizeof(d->software), p->software);
        gd_strscpy(d->reason, sizeof(d->reason), reason);
        gd_strscpy(d->origin, sizeof(d->origin), origin);
        d->meta = (struct proto_dump_meta){
                .pid = p->pid,
                .uid = p->uid,
                .start_time_ns = p->start_time_ns,
                .command = d->command,
                .executable = d->executable[0] ? d->executable : NULL,
                .host = s->hostname, /* fixed at start: safe to read from the writer */
                .reason = d->reason,
                .origin = d->origin,
                .producer = d->software[0] ? d->software : NULL,
        };

        struct gd_conn *c = flush == GD_FLUSH_ASK && p->state == GD_PROC_LIVE && !s->stopping &&
                                            s->cfg->flush_timeout_ms > 0
                                    ? proc_conn(p)
                                    : NULL;
        if (c && c->state == GD_CONN_PRODUCER) {
                struct proto_flush m = {.id = s->next_flush_id++};
                uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_SMALL_BYTES];
                ssize_t n = proto_encode_flush(frame, sizeof(frame), &m);
                if (n > 0) {
                        d->flushing = 1;
                        d->proc = p;
                        d->flush_id = m.id;
                        d->deadline_ms = gd_now_mono_ms() + s->cfg->flush_timeout_ms;
                        gd_list_append(&p->flushing, &d->proc_link);
                        arm_flush_timer(s);
                        /* Sending may fail and close c, which abandons the flush:
                         * the dump is then written right away. */
                        (void)gd_conn_send(c, frame, (size_t)n);
                        return 0;
                }
        }
        dump_write(d, p, flush == GD_FLUSH_ALREADY);
        return 0;
}

void gd_dump_flush_done(struct gd_proc *p, uint64_t flush_id)
{
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &p->flushing)
        {
                struct gd_dump *d = gd_container_of(l, struct gd_dump, proc_link);
                if (d->flush_id == flush_id) {
                        dump_write(d, p, 1);
                        arm_flush_timer(p->srv);
                        return;
                }
        }
}

void gd_dump_flush_abandon(struct gd_proc *p)
{
        while (!gd_list_empty(&p->flushing)) {
                struct gd_dump *d = gd_container_of(p->flushing.next, struct gd_dump, proc_link);
                dump_write(d, p, 0);
        }
        arm_flush_timer(p->srv);
}

void gd_dump_flush_timeout(struct gd_server *s)
{
        uint64_t now = gd_now_mono_ms();
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->dumps)
        {
                struct gd_dump *d = gd_container_of(l, struct gd_dump, link);
                if (!d->flushing || d->deadline_ms > now)
                        continue;
                struct gd_proc *p = d->proc;
                log_info("pid %" PRIu64 " (%s): no flush within %u ms; dumping what is held",
                         p->pid, p->command, s->cfg->flush_timeout_ms);
                dump_write(d, p, 0);
                /* dump_write may complete synchronously and free entries other
                 * than d: restart from the head. */
                t = s->dumps.next;
        }
        arm_flush_timer(s);
}

void gd_dump_stop(struct gd_server *s)
{
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                gd_dump_flush_abandon(gd_container_of(l, struct gd_proc, link));
        }
}
