/* SPDX-License-Identifier: MIT */
/*
 * The server object: listening sockets, signals, timers, sd_notify, the
 * registry of traced processes and its retention, and the shutdown order.
 *
 * Listening sockets and connections are polled with uv_poll_t rather than
 * uv_pipe_t: we need recvmsg() for SCM_RIGHTS descriptors on control
 * connections and reads straight into generation buffers of the exact
 * frame size, both of which libuv's stream API hides.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "gtraced.h"

#define ACCEPT_BATCH 64          /* accepts per poll callback */
#define STATUS_INTERVAL_MS 1000  /* STATUS= at most this often */

/* ---- small utilities --------------------------------------------------------- */

uint64_t gd_now_mono_ms(void)
{
        return gd_now_mono_us() / 1000u;
}

uint64_t gd_now_mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t gd_now_wall_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void gd_strscpy(char *dst, size_t cap, const char *src)
{
        size_t n = strnlen(src, cap - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s)
{
        unsigned char c = s[0];
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                return (s[1] & 0xc0) == 0x80 ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
                if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
                        return 0;
                if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
                        return 0; /* overlong, surrogate */
                return 3;
        }
        if (c >= 0xf0 && c <= 0xf4) {
                if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
                        return 0;
                if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
                        return 0;
                return 4;
        }
        return 0;
}

void gd_utf8_copy(char *dst, size_t cap, const char *src)
{
        const unsigned char *s = (const unsigned char *)src;
        size_t o = 0;
        if (!cap)
                return;
        while (*s) {
                size_t n = utf8_seq(s); /* never reads past the NUL: it fails the 0x80 test */
                if (n == 0) {
                        if (o + 1 >= cap)
                                break;
                        dst[o++] = '?';
                        s++;
                        continue;
                }
                if (o + n >= cap)
                        break;
                memcpy(dst + o, s, n);
                o += n;
                s += n;
        }
        dst[o] = '\0';
}

const char *gd_signal_name(int signo)
{
        static __thread char buf[32];
        const char *abbrev = sigabbrev_np(signo);
        if (abbrev)
                snprintf(buf, sizeof(buf), "SIG%s", abbrev);
        else
                snprintf(buf, sizeof(buf), "signal %d", signo);
        return buf;
}

const char *gd_errno_name(int err)
{
        const char *n = strerrorname_np(err < 0 ? -err : err);
        return n ? n : "EIO";
}

/* ---- processes ------------------------------------------------------------------ */

const char *gd_proc_state_name(enum gd_proc_state st)
{
        switch (st) {
        case GD_PROC_LIVE: return "live";
        case GD_PROC_EXITED: return "exited";
        case GD_PROC_CRASHED: return "crashed";
        }
        return "unknown";
}

int gd_proc_visible(const struct gd_proc *p, uid_t uid)
{
        return uid == 0 || p->uid == uid;
}

struct gd_proc *gd_proc_find(struct gd_server *s, uint64_t pid, uint64_t start_time_ns)
{
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->pid == pid && p->start_time_ns == start_time_ns)
                        return p;
        }
        return NULL;
}

void gd_proc_free(struct gd_proc *p)
{
        if (!p)
                return;
        gd_list_remove(&p->link);
        p->srv->nprocs--;
        fr_ring_free(p->ring);
        free(p);
}

/* The exited or crashed process that ended first, among uid's (or among
 * everyone's when all_uids); NULL if every candidate is live. */
static struct gd_proc *oldest_ended(struct gd_server *s, uid_t uid, int all_uids)
{
        struct gd_proc *oldest = NULL;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->state == GD_PROC_LIVE || p->nconns || p->crash_pending ||
                    (!all_uids && p->uid != uid))
                        continue;
                if (!oldest || p->ended_mono_ms < oldest->ended_mono_ms)
                        oldest = p;
        }
        return oldest;
}

/* The uid holding the most processes among those with an ended one: at the
 * global limit that user's oldest ended process is forgotten first, so one
 * user starting many short-lived processes forgets their own history, not
 * everyone's.  Returns 0 when there is none (with *ret_found = 0). */
static uid_t busiest_uid_with_ended(struct gd_server *s, int *ret_found)
{
        struct {
                uid_t uid;
                size_t n;
                int ended;
        } tab[64];
        size_t ntab = 0, overflow = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                size_t i;
                for (i = 0; i < ntab && tab[i].uid != p->uid; i++)
                        ;
                if (i == ntab) {
                        if (ntab == sizeof(tab) / sizeof(tab[0])) {
                                overflow++; /* more users than the table: counted nowhere */
                                continue;
                        }
                        tab[ntab++] = (typeof(tab[0])){.uid = p->uid};
                }
                tab[i].n++;
                if (p->state != GD_PROC_LIVE && !p->nconns)
                        tab[i].ended = 1;
        }
        (void)overflow;
        size_t best = ntab;
        for (size_t i = 0; i < ntab; i++)
                if (tab[i].ended && (best == ntab || tab[i].n > tab[best].n))
                        best = i;
        *ret_found = best < ntab;
        return best < ntab ? tab[best].uid : 0;
}

static void proc_forget_early(struct gd_proc *p, const char *why)
{
        log_info("Forgetting pid %" PRIu64 " (%s) early: %s", p->pid, p->command, why);
        gd_proc_free(p);
}

/* Makes room for one more process of uid: at the per-user limit that user's
 * oldest ended process is forgotten, at the global limit the busiest user's.
 * -EDQUOT or -ENOSPC when only live processes hold the places. */
static int proc_make_room(struct gd_server *s, uid_t uid)
{
        const struct gd_config *cfg = s->cfg;
        size_t mine = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                if (gd_container_of(l, struct gd_proc, link)->uid == uid)
                        mine++;
        }
        if (mine >= cfg->max_uid_processes) {
                struct gd_proc *p = oldest_ended(s, uid, 0);
                if (!p)
                        return -EDQUOT;
                proc_forget_early(p, "its user's process limit was reached");
        }
        if (s->nprocs >= cfg->max_processes) {
                int found;
                uid_t busiest = busiest_uid_with_ended(s, &found);
                struct gd_proc *p = found ? oldest_ended(s, busiest, 0) : NULL;
                if (!p)
                        p = oldest_ended(s, 0, 1);
                if (!p)
                        return -ENOSPC;
                proc_forget_early(p, "the process limit was reached");
        }
        return 0;
}

int gd_proc_new(struct gd_server *s, uint64_t pid, uint64_t start_time_ns, uid_t uid,
                struct gd_proc **ret)
{
        int r = proc_make_room(s, uid);
        if (r < 0)
                return r;
        struct gd_proc *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->ring = fr_ring_new(s->rings, pid, start_time_ns);
        if (!p->ring || fr_ring_set_owner(p->ring, (uint32_t)uid) < 0) {
                fr_ring_free(p->ring);
                free(p);
                return -ENOMEM;
        }
        p->srv = s;
        p->pid = pid;
        p->start_time_ns = start_time_ns;
        p->uid = uid;
        p->state = GD_PROC_LIVE;
        p->connected_wall_ns = gd_now_wall_ns();
        gd_list_init(&p->conns);
        gd_list_init(&p->flushing);
        gd_list_append(&s->procs, &p->link);
        s->nprocs++;
        *ret = p;
        return 0;
}

void gd_proc_ended(struct gd_proc *p)
{
        p->ended_wall_ns = gd_now_wall_ns();
        p->ended_mono_ms = gd_now_mono_ms();
        gd_server_arm_retention(p->srv);
        gd_server_status_changed(p->srv);
}

static void on_retain_timer(uv_timer_t *t)
{
        struct gd_server *s = t->data;
        uint64_t now = gd_now_mono_ms(), keep = (uint64_t)s->cfg->retain_exited_s * 1000u;
        struct gd_link *l, *tmp;
        gd_list_for_each_safe(l, tmp, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->state == GD_PROC_LIVE || p->nconns || p->crash_pending)
                        continue;
                if (now - p->ended_mono_ms >= keep) {
                        log_info("Forgetting pid %" PRIu64 " (%s): %s %u s ago", p->pid,
                                 p->command, gd_proc_state_name(p->state),
                                 s->cfg->retain_exited_s);
                        gd_proc_free(p);
                        gd_server_status_changed(s);
                }
        }
        gd_server_arm_retention(s);
}

void gd_server_arm_retention(struct gd_server *s)
{
        if (s->stopping)
                return;
        uint64_t keep = (uint64_t)s->cfg->retain_exited_s * 1000u, next = UINT64_MAX;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (p->state != GD_PROC_LIVE && !p->nconns && p->ended_mono_ms + keep < next)
                        next = p->ended_mono_ms + keep;
        }
        if (next == UINT64_MAX) {
                uv_timer_stop(&s->retain_timer);
                return;
        }
        uint64_t now = gd_now_mono_ms();
        uv_timer_start(&s->retain_timer, on_retain_timer, next > now ? next - now : 0, 0);
}

/* ---- sd_notify ----------------------------------------------------------------------- */

static void send_status(struct gd_server *s)
{
        size_t live = 0;
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                if (gd_container_of(l, struct gd_proc, link)->state == GD_PROC_LIVE)
                        live++;
        }
        (void)sd_notifyf(0,
                         "STATUS=%zu processes (%zu live), %" PRIu64 " generations, %" PRIu64
                         " bytes held",
                         s->nprocs, live, fr_rings_generations(s->rings),
                         fr_rings_bytes(s->rings));
        s->status_dirty = 0;
}

static void on_status_timer(uv_timer_t *t)
{
        struct gd_server *s = t->data;
        if (s->status_dirty && !s->stopping)
                send_status(s);
}

void gd_server_status_changed(struct gd_server *s)
{
        if (!s->notify || s->stopping)
                return;
        if (!s->status_dirty) {
                s->status_dirty = 1;
                if (!uv_is_active((uv_handle_t *)&s->status_timer))
                        uv_timer_start(&s->status_timer, on_status_timer, STATUS_INTERVAL_MS,
                                       0);
        }
}

static void on_watchdog(uv_timer_t *t)
{
        (void)t;
        (void)sd_notify(0, "WATCHDOG=1");
}

/* ---- signals ----------------------------------------------------------------------------- */

static void on_sigusr1(uv_signal_t *h, int signo)
{
        struct gd_server *s = h->data;
        if (s->stopping)
                return;
        struct gd_snap *snap = gd_snap_new(s, GD_SNAP_AUTO, NULL);
        if (!snap) {
                log_error_errno(-ENOMEM, "SIGUSR1: cannot dump: %m");
                return;
        }
        log_info("SIGUSR1: dumping all %zu traced processes", s->nprocs);
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->procs)
        {
                struct gd_proc *p = gd_container_of(l, struct gd_proc, link);
                if (fr_ring_count(p->ring) == 0 && p->state != GD_PROC_LIVE)
                        continue;
                (void)gd_dump_start(snap, p, "signal", "SIGUSR1", GD_FLUSH_ASK, -1);
        }
        gd_snap_launched(snap);
        (void)signo;
}

static void on_sigterm(uv_signal_t *h, int signo)
{
        struct gd_server *s = h->data;
        log_info("%s: shutting down", gd_signal_name(signo));
        gd_server_stop(s);
}

static void on_sighup(uv_signal_t *h, int signo)
{
        (void)h;
        (void)signo;
        log_notice("SIGHUP ignored: settings are read at start only; restart to apply them");
}

/* ---- listening ------------------------------------------------------------------------------ */

static void on_accept_ready(uv_poll_t *h, int status, int events)
{
        struct gd_listener *ls = h->data;
        struct gd_server *s = ls->srv;
        if (status < 0) {
                log_warning("Listening socket poll failed: %s", uv_strerror(status));
                return;
        }
        (void)events;
        for (int i = 0; i < ACCEPT_BATCH; i++) {
                int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return;
                        /* EMFILE and friends: the pending connection stays queued and
                         * the socket stays readable; say so (rate-limited) and retry on
                         * the next round. */
                        log_peer_warning("Failed to accept a connection: %s", strerror(errno));
                        return;
                }
                if (s->nconns >= s->cfg->max_connections) {
                        uint8_t frame[PROTO_HEADER_BYTES + PROTO_MAX_ERROR_BYTES];
                        struct proto_error e = {.code = EUSERS};
                        snprintf(e.message, sizeof(e.message),
                                 "too many connections (%u); try again later",
                                 s->cfg->max_connections);
                        ssize_t n = proto_encode_error(frame, sizeof(frame), &e);
                        if (n > 0)
                                (void)send(fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
                        close(fd);
                        log_peer_warning("Refused a connection: %u connections open",
                                         s->cfg->max_connections);
                        continue;
                }
                int r = gd_conn_new(s, fd);
                if (r < 0)
                        log_error_errno(r, "Failed to set up a connection: %m");
        }
}

int gd_mkdir_parents(const char *path, mode_t mode)
{
        char buf[PATH_MAX];
        if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
                return -ENAMETOOLONG;
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int bind_socket(struct gd_server *s, const char *path, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);

        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                int r = gd_mkdir_parents(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Failed to create socket directory '%s': %m",
                                               dir);
        }

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(-errno, "Failed to create socket: %m");

        struct stat st;
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode)) {
                        close(fd);
                        return log_error_errno(-EEXIST, "'%s' exists and is not a socket", path);
                }
                /* A socket someone still answers on belongs to a running daemon. */
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                        close(probe);
                        close(fd);
                        return log_error_errno(-EADDRINUSE,
                                               "Another gtraced is listening on '%s'", path);
                }
                if (probe >= 0)
                        close(probe);
                (void)unlink(path);
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return log_error_errno(r, "Failed to bind '%s': %m", path);
        }
        /* Every local user may connect; authorization is by SO_PEERCRED. */
        if (chmod(path, 0666) < 0)
                log_warning_errno(-errno, "Failed to make '%s' world-connectable: %m", path);
        if (listen(fd, SOMAXCONN) < 0) {
                int r = -errno;
                close(fd);
                (void)unlink(path);
                return log_error_errno(r, "Failed to listen on '%s': %m", path);
        }
        s->unlink_socket = 1;
        *ret_fd = fd;
        return 0;
}

static int add_listener(struct gd_server *s, int fd)
{
        struct gd_listener *ls = realloc(s->listeners, (s->nlisteners + 1) * sizeof(*ls));
        if (!ls)
                return -ENOMEM;
        s->listeners = ls;
        ls = &s->listeners[s->nlisteners];
        ls->srv = s;
        ls->fd = fd;
        int r = uv_poll_init(s->loop, &ls->poll, fd);
        if (r < 0)
                return log_error_errno(r, "Failed to poll the listening socket: %s",
                                       uv_strerror(r));
        ls->poll.data = ls;
        s->nlisteners++;
        return 0;
}

int gd_server_listen(struct gd_server *s)
{
        int n = sd_listen_fds(1);
        int r;
        if (n < 0)
                return log_error_errno(n, "Failed to read the sockets passed by systemd: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
                        log_warning("Ignoring passed descriptor %d: not a listening unix "
                                    "stream socket", fd);
                        close(fd);
                        continue;
                }
                int fl = fcntl(fd, F_GETFL);
                if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
                    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                        return log_error_errno(-errno, "Failed to set up passed socket: %m");
                r = add_listener(s, fd);
                if (r < 0) {
                        close(fd);
                        return r;
                }
                if (!*s->socket_path) {
                        struct sockaddr_un sa;
                        socklen_t len = sizeof(sa);
                        if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
                            len > offsetof(struct sockaddr_un, sun_path) && sa.sun_path[0]) {
                                free(s->socket_path);
                                s->socket_path = strndup(sa.sun_path, sizeof(sa.sun_path));
                                if (!s->socket_path)
                                        return -ENOMEM;
                        }
                }
                log_info("Listening on socket passed by systemd%s%s",
                         *s->socket_path ? ": " : "", s->socket_path);
        }
        if (s->nlisteners == 0) {
                int fd;
                free(s->socket_path);
                s->socket_path = strdup(s->cfg->socket_path);
                if (!s->socket_path)
                        return -ENOMEM;
                r = bind_socket(s, s->socket_path, &fd);
                if (r < 0)
                        return r;
                r = add_listener(s, fd);
                if (r < 0) {
                        close(fd);
                        return r;
                }
                log_info("Listening on %s", s->socket_path);
        }
        for (size_t i = 0; i < s->nlisteners; i++) {
                r = uv_poll_start(&s->listeners[i].poll, UV_READABLE, on_accept_ready);
                if (r < 0)
                        return log_error_errno(r, "Failed to poll the listening socket: %s",
                                               uv_strerror(r));
        }
        return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

int gd_server_init(struct gd_server *s, uv_loop_t *loop, const struct gd_config *cfg)
{
        int r;
        *s = (struct gd_server){.loop = loop, .cfg = cfg, .next_flush_id = 1};
        gd_list_init(&s->conns);
        gd_list_init(&s->procs);
        gd_list_init(&s->dumps);
        /* Handles first: gd_server_stop() closes them even after a failed start. */
        uv_signal_t *sigs[] = {&s->sig_usr1, &s->sig_term, &s->sig_int, &s->sig_hup};
        for (size_t i = 0; i < 4; i++) {
                uv_signal_init(loop, sigs[i]);
                sigs[i]->data = s;
        }
        uv_timer_t *timers[] = {&s->retain_timer, &s->flush_timer, &s->watchdog_timer,
                                &s->status_timer, &s->hello_timer, &s->crash_timer};
        for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
                uv_timer_init(loop, timers[i]);
                timers[i]->data = s;
        }
        s->started_mono_ms = gd_now_mono_ms();
        if (gethostname(s->hostname, sizeof(s->hostname) - 1) < 0)
                snprintf(s->hostname, sizeof(s->hostname), "unknown");

        struct fr_limits lim = {.generations = cfg->generations,
                                .max_process_bytes = cfg->max_process_bytes,
                                .max_total_bytes = cfg->max_total_bytes,
                                .max_owner_bytes = cfg->max_uid_bytes};
        s->rings = fr_rings_new(&lim);
        if (!s->rings)
                return log_error_errno(-ENOMEM, "Failed to set up generation rings: %m");
        /* A generation must fit the smallest bound that applies to it. */
        s->max_generation = PROTO_MAX_GENERATION_BYTES;
        if (cfg->max_process_bytes < s->max_generation)
                s->max_generation = cfg->max_process_bytes;
        if (cfg->max_total_bytes < s->max_generation)
                s->max_generation = cfg->max_total_bytes;
        if (cfg->max_uid_bytes && cfg->max_uid_bytes < s->max_generation)
                s->max_generation = cfg->max_uid_bytes;

        s->socket_path = strdup("");
        if (!s->socket_path)
                return -ENOMEM;

        r = gd_mkdir_parents(cfg->dump_dir, 0750);
        if (r < 0)
                log_warning_errno(r, "Failed to create dump directory '%s': %m (dumps into it "
                                     "will fail until it exists)",
                                  cfg->dump_dir);
        s->dump_dir = realpath(cfg->dump_dir, NULL);
        if (!s->dump_dir) {
                if (cfg->dump_dir[0] == '/')
                        s->dump_dir = strdup(cfg->dump_dir);
                else {
                        char cwd[PATH_MAX];
                        size_t n = PATH_MAX + strlen(cfg->dump_dir) + 2;
                        s->dump_dir = malloc(n);
                        if (s->dump_dir && getcwd(cwd, sizeof(cwd)))
                                snprintf(s->dump_dir, n, "%s/%s", cwd, cfg->dump_dir);
                        else if (s->dump_dir)
                                snprintf(s->dump_dir, n, "%s", cfg->dump_dir);
                }
                if (!s->dump_dir)
                        return -ENOMEM;
        }

        s->notify = getenv("NOTIFY_SOCKET") != NULL;
        return 0;
}

int gd_server_start_signals(struct gd_server *s)
{
        int r = uv_signal_start(&s->sig_usr1, on_sigusr1, SIGUSR1);
        if (r == 0)
                r = uv_signal_start(&s->sig_term, on_sigterm, SIGTERM);
        if (r == 0)
                r = uv_signal_start(&s->sig_int, on_sigterm, SIGINT);
        if (r == 0)
                r = uv_signal_start(&s->sig_hup, on_sighup, SIGHUP);
        if (r < 0)
                return log_error_errno(r, "Failed to set up signal handling: %s",
                                       uv_strerror(r));
        uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
                uint64_t ms = usec / 2000u;
                if (ms == 0)
                        ms = 1;
                uv_timer_start(&s->watchdog_timer, on_watchdog, ms, ms);
                log_debug("Watchdog: WATCHDOG=1 every %" PRIu64 " ms", ms);
        }
        return 0;
}

void gd_server_send_ready(struct gd_server *s)
{
        if (!s->notify)
                return;
        (void)sd_notify(0, "READY=1");
        send_status(s);
}

static void close_handle(uv_handle_t *h)
{
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

void gd_handled_signals(sigset_t *set)
{
        sigemptyset(set);
        sigaddset(set, SIGTERM);
        sigaddset(set, SIGINT);
        sigaddset(set, SIGUSR1);
        sigaddset(set, SIGHUP);
}

void gd_server_stop(struct gd_server *s)
{
        if (s->stopping)
                return;
        s->stopping = 1;
        if (s->notify)
                (void)sd_notify(0, "STOPPING=1");
        for (size_t i = 0; i < s->nlisteners; i++)
                close_handle((uv_handle_t *)&s->listeners[i].poll);
        /* Pending flushes cannot complete once producers are gone: write now;
         * so do crash dumps still waiting for a process's last generations. */
        gd_dump_stop(s);
        gd_crash_start_all(s);
        struct gd_link *l, *t;
        gd_list_for_each_safe(l, t, &s->conns)
        {
                gd_conn_close(gd_container_of(l, struct gd_conn, link));
        }
        /* Closing the handles gives the signals their default actions back;
         * a second SIGTERM must not cut the in-flight dumps short.  Blocked
         * here (and in every other thread, see main), one that comes in
         * between stays pending, and SIG_IGN discards it. */
        sigset_t handled, saved;
        gd_handled_signals(&handled);
        pthread_sigmask(SIG_BLOCK, &handled, &saved);
        close_handle((uv_handle_t *)&s->sig_usr1);
        close_handle((uv_handle_t *)&s->sig_term);
        close_handle((uv_handle_t *)&s->sig_int);
        close_handle((uv_handle_t *)&s->sig_hup);
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGUSR1, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        close_handle((uv_handle_t *)&s->retain_timer);
        close_handle((uv_handle_t *)&s->flush_timer);
        close_handle((uv_handle_t *)&s->watchdog_timer);
        close_handle((uv_handle_t *)&s->status_timer);
        close_handle((uv_handle_t *)&s->hello_timer);
        close_handle((uv_handle_t *)&s->crash_timer);
}

void gd_server_done(struct gd_server *s)
{
        for (size_t i = 0; i < s->nlisteners; i++)
                close(s->listeners[i].fd);
        free(s->listeners);
        s->listeners = NULL;
        if (s->unlink_socket && s->socket_path && *s->socket_path)
                (void)unlink(s->socket_path);
        while (!gd_list_empty(&s->procs))
                gd_proc_free(gd_container_of(s->procs.next, struct gd_proc, link));
        fr_rings_free(s->rings);
        s->rings = NULL;
        free(s->socket_path);
        free(s->dump_dir);
        s->socket_path = s->dump_dir = NULL;
}
