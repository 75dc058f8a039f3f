/* SPDX-License-Identifier: MIT */
/*
 * gtraced's private header: the table of contents of the daemon.
 *
 *   main.c     argument parsing → logging → sockets → server → signals →
 *              READY=1 → uv_run → STOPPING=1 → close everything
 *   config.c   flags and the config file (command line wins)
 *   log.c      stderr logging, <N> prefixes under journald, rate limits
 *   server.c   the server object: listeners, signals, timers, sd_notify,
 *              process registry and retention, shutdown
 *   conn.c     one connection: the state machine, framing, output queue
 *   producer.c producer frames: HELLO, GENERATION, FLUSH_DONE, DUMP_REQUEST,
 *              CRASH, GOODBYE, end of stream
 *   control.c  control requests: status, list, snapshot (JSON)
 *   dump.c     snapshots: flush, wait (bounded), write off the loop thread
 *
 * Everything runs on the loop thread except the dump writer (uv_queue_work),
 * which touches only its own job: copied metadata and referenced generation
 * buffers.  All state hangs off one struct gd_server reached through
 * handle->data.
 */
#ifndef GTRACED_H
#define GTRACED_H

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <syslog.h>
#include <uv.h>

#include "flightrec/ring.h"
#include "proto/dumpfile.h"
#include "proto/wire.h"

#define GTRACED_VERSION "0.1.0"

/* ---- lists --------------------------------------------------------------- */

struct gd_link {
        struct gd_link *prev, *next;
};

static inline void gd_list_init(struct gd_link *head)
{
        head->prev = head->next = head;
}

static inline int gd_list_empty(const struct gd_link *head)
{
        return head->next == head;
}

static inline void gd_list_append(struct gd_link *head, struct gd_link *l)
{
        l->prev = head->prev;
        l->next = head;
        head->prev->next = l;
        head->prev = l;
}

static inline void gd_list_remove(struct gd_link *l)
{
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->prev = l->next = l;
}

#define gd_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define gd_list_for_each_safe(pos, tmp, head)                                                   \
        for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                        \
             (pos) = (tmp), (tmp) = (pos)->next)

/* ---- config.c ------------------------------------------------------------- */

struct gd_config {
        char *socket_path;          /* NULL: default per docs/protocol.md */
        char *dump_dir;             /* NULL: default per docs/daemon.md */
        char *config_path;          /* NULL: /etc/gtraced.conf if it exists */
        uint32_t generations;       /* per process */
        uint64_t max_process_bytes;
        uint64_t max_total_bytes;
        uint32_t retain_exited_s;
        uint32_t flush_timeout_ms;
        uint32_t crash_wait_ms;     /* a crash dump waits at most this (gd_crash_schedule) */
        uint32_t max_connections;
        uint32_t max_processes;
        uint32_t hello_timeout_ms;  /* a connection must say HELLO within this */
        uint64_t max_uid_bytes;     /* bytes held for one uid; 0: max_total_bytes */
        uint32_t max_uid_processes; /* processes held for one uid; 0: max_processes */
        int log_level;              /* LOG_ERR .. LOG_DEBUG */
};

#define GD_DEFAULT_CONFIG "/etc/gtraced.conf"
#define GD_DEFAULT_GENERATIONS 10u
#define GD_DEFAULT_MAX_PROCESS_BYTES (64ull << 20)
#define GD_DEFAULT_MAX_TOTAL_BYTES (1ull << 30)
#define GD_DEFAULT_RETAIN_EXITED_S 600u
#define GD_DEFAULT_FLUSH_TIMEOUT_MS 250u
#define GD_DEFAULT_CRASH_WAIT_MS 1500u
#define GD_DEFAULT_MAX_CONNECTIONS 1024u
#define GD_DEFAULT_MAX_PROCESSES 4096u
#define GD_DEFAULT_HELLO_TIMEOUT_MS 5000u
#define GD_MAX_GENERATIONS 100000u

/*
 * Parses argv and then the config file (for what the command line did not
 * set).  Returns 0 to run, 1 when --help or --version was printed (exit 0),
 * or -EINVAL after printing the problem to stderr (exit 2).
 */
int gd_config_parse(struct gd_config *c, int argc, char **argv);
void gd_config_done(struct gd_config *c);
/* "1.5M"-style sizes: digits with an optional K/M/G (powers of 1024). */
int gd_parse_size(const char *s, uint64_t *ret);
/* Fills in the default socket path and dump dir (malloc'd). */
int gd_config_defaults(struct gd_config *c);

/* ---- log.c ----------------------------------------------------------------- */

void log_setup(int level);
int log_get_level(void);
/* Logs and returns -|error| (or 0 when error is 0).  %m means strerror(|error|). */
int log_full_errno(int level, int error, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* For misbehaving peers: at most a burst per interval, then one summary. */
int log_peer_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* ---- server.c ---------------------------------------------------------------- */

enum gd_proc_state {
        GD_PROC_LIVE,    /* at least one producer connection attached */
        GD_PROC_EXITED,  /* last connection ended after GOODBYE */
        GD_PROC_CRASHED, /* CRASH received, or last connection ended without GOODBYE */
};

/* One traced process, keyed by (pid, start_time_ns). */
struct gd_proc {
        struct gd_link link; /* server->procs */
        struct gd_server *srv;
        struct fr_ring *ring;
        uint64_t pid;
        uint64_t start_time_ns; /* from /proc/PID/stat, else as claimed */
        uid_t uid;
        enum gd_proc_state state;
        int signo;             /* CRASH signal, 0 if none */
        int crash_dumped;      /* the automatic crash dump was started */
        /* The automatic crash dump waits until everything the process sent
         * is read (see gd_crash_schedule). */
        int crash_pending;
        char crash_reason[64];
        uint64_t crash_deadline_ms; /* monotonic: dump then whatever is attached */
        uint64_t quiet_since_ms;    /* monotonic: when its last connection went */
        uint64_t handler_gone_ms;   /* monotonic: when the connection that sent
                                       CRASH went (0: it has not) */
        unsigned nconns;       /* attached producer connections */
        struct gd_link conns;  /* those connections (gd_conn.proc_link) */
        struct gd_link flushing; /* dumps waiting for FLUSH_DONE (gd_dump.proc_link) */
        uint64_t gens_lost;    /* GENS_LOST totals reported by the producer */
        uint64_t connected_wall_ns;
        uint64_t ended_wall_ns;
        uint64_t ended_mono_ms;
        char command[PROTO_MAX_COMMAND + 1];     /* valid UTF-8 */
        char executable[PROTO_MAX_PATH + 1];     /* valid UTF-8 */
        char software[PROTO_MAX_SOFTWARE + 1];   /* valid UTF-8 */
};

struct gd_listener {
        struct gd_server *srv;
        uv_poll_t poll;
        int fd;
};

struct gd_server {
        uv_loop_t *loop;
        const struct gd_config *cfg;
        char *socket_path;     /* "" when activated without a known path */
        char *dump_dir;        /* absolute */
        int unlink_socket;     /* we bound it, so we remove it at shutdown */
        struct gd_listener *listeners;
        size_t nlisteners;
        uv_signal_t sig_usr1, sig_term, sig_int, sig_hup;
        uv_timer_t retain_timer;   /* forgets exited/crashed processes */
        uv_timer_t flush_timer;    /* earliest flush deadline */
        uv_timer_t watchdog_timer; /* WATCHDOG=1 at half the interval */
        uv_timer_t status_timer;   /* STATUS= at most once a second */
        uv_timer_t hello_timer;    /* drops connections that never say HELLO */
        uv_timer_t crash_timer;    /* starts crash dumps that were waiting (gd_crash_*) */
        int notify;                /* NOTIFY_SOCKET is set */
        int status_dirty;
        struct fr_rings *rings;
        struct gd_link conns;      /* gd_conn.link */
        size_t nconns;
        struct gd_link procs;      /* gd_proc.link */
        size_t nprocs;
        struct gd_link dumps;      /* gd_dump.link, flushing or writing */
        size_t ndumps_writing;
        uint64_t next_flush_id;
        uint64_t max_generation;   /* GENERATION frames above this are refused */
        uint64_t started_mono_ms;
        uint64_t dumps_written;
        uint64_t dumps_failed;
        int stopping;
        char hostname[256];
};

int gd_server_init(struct gd_server *s, uv_loop_t *loop, const struct gd_config *cfg);
/* Takes the listening sockets from systemd, or binds cfg's path. */
int gd_server_listen(struct gd_server *s);
/* Begins a clean shutdown: stop listening, close connections and timers,
 * start pending flushes' dumps unflushed; uv_run returns once dumps finish. */
void gd_server_stop(struct gd_server *s);
/* After uv_run returned: frees what is left. */
void gd_server_done(struct gd_server *s);
void gd_server_status_changed(struct gd_server *s);
uint64_t gd_now_mono_ms(void);
uint64_t gd_now_mono_us(void);
uint64_t gd_now_wall_ns(void);

/* Signal handles and the watchdog timer; once the sockets are live. */
int gd_server_start_signals(struct gd_server *s);
/* The signals the loop handles (SIGTERM, SIGINT, SIGUSR1, SIGHUP): blocked
 * in every thread but the loop's, and around the stop's hand-over. */
void gd_handled_signals(sigset_t *set);
/* READY=1 and the first STATUS=. */
void gd_server_send_ready(struct gd_server *s);

/* Process registry. */
struct gd_proc *gd_proc_find(struct gd_server *s, uint64_t pid, uint64_t start_time_ns);
/* A new live process of uid.  -EDQUOT: uid's process limit is reached and
 * all of them are live; -ENOSPC: the same for the global limit. */
int gd_proc_new(struct gd_server *s, uint64_t pid, uint64_t start_time_ns, uid_t uid,
                struct gd_proc **ret);
void gd_proc_free(struct gd_proc *p);
void gd_proc_ended(struct gd_proc *p); /* state left LIVE: arm retention */
int gd_proc_visible(const struct gd_proc *p, uid_t uid);
const char *gd_proc_state_name(enum gd_proc_state st);
void gd_server_arm_retention(struct gd_server *s);

/* Copies src into dst[cap] (cap > 0), truncating; always terminated. */
void gd_strscpy(char *dst, size_t cap, const char *src);
/* Valid UTF-8 copy of src into dst[cap], invalid bytes as '?'. */
void gd_utf8_copy(char *dst, size_t cap, const char *src);
const char *gd_signal_name(int signo);
/* mkdir -p: path and its missing parents with mode.  0 or -errno.  Any thread. */
int gd_mkdir_parents(const char *path, mode_t mode);
const char *gd_errno_name(int err);

/* ---- conn.c ------------------------------------------------------------------ */

/*
 * The connection state machine:
 *
 *                 HELLO(producer)            GOODBYE
 *    ┌─────────┐ ───────────────▶ PRODUCER ─────────▶ GOODBYE ──┐
 *    │  HELLO  │                     │ EOF / error                 │ EOF
 *    │ (wait)  │ HELLO(control)      ▼                             ▼
 *    └─────────┘ ───────────────▶ CONTROL ◀──── reply ─── CONTROL_BUSY
 *         │                          │ REQUEST ───────────────▲
 *         │ bad frame / EOF          │ EOF / error
 *         ▼                          ▼
 *       CLOSED ◀──────────────────── (any state: conn_close)
 *
 * conn_read() performs the reads and splits frames; conn_dispatch() checks
 * the frame is allowed in the state and calls producer_* or control_*,
 * which perform the transitions.  CONTROL_BUSY stops reading until the
 * reply is queued (one request at a time, answered in order).  CLOSED
 * means uv_close() was called: the memory is freed in the close callback.
 */
enum gd_conn_state {
        GD_CONN_HELLO,
        GD_CONN_PRODUCER,
        GD_CONN_GOODBYE,
        GD_CONN_CONTROL,
        GD_CONN_CONTROL_BUSY,
        GD_CONN_CLOSED,
};

#define GD_CONN_RBUF_BYTES (16u << 10) /* staging buffer; larger frames are read in place */
#define GD_CONN_MAX_OUTQ (32u << 20)   /* queued output before a client is dropped */
#define GD_CONN_READ_BUDGET (4u << 20) /* bytes read per poll callback, for fairness */

struct gd_outchunk {
        struct gd_link link;
        size_t len, off;
        uint8_t *data; /* owned */
};

struct gd_conn {
        struct gd_link link;      /* server->conns */
        struct gd_link proc_link; /* proc->conns, producers */
        struct gd_server *srv;
        uv_poll_t poll;
        int fd;
        int poll_events;
        enum gd_conn_state state;
        struct ucred cred;
        uint64_t id;              /* for log messages */
        uint64_t accepted_ms;     /* monotonic; for the HELLO deadline */
        struct gd_proc *proc;     /* producer role: its process */
        int saw_goodbye;
        int sent_crash;           /* a crash handler's connection: it sent CRASH */
        int dispatching;          /* inside conn_process(): no re-entry */
        /* input */
        uint8_t rbuf[GD_CONN_RBUF_BYTES];
        size_t rlen;
        struct proto_header big_hdr; /* frame being read in place */
        uint8_t *big;                /* its payload target (malloc or genbuf->data) */
        struct fr_genbuf *big_gen;   /* for GENERATION */
        size_t big_fill;
        int pending_fd;              /* SCM_RIGHTS descriptor received, or -1 */
        /* output */
        struct gd_link outq;
        size_t outq_bytes;
        /* requests served for this connection (gd_snap.conn_link) */
        struct gd_link snaps;
};

/* Closes connections that did not send HELLO within the configured time. */
void gd_conn_hello_sweep(struct gd_server *s);
/* Takes ownership of fd (an accepted, non-blocking socket). */
int gd_conn_new(struct gd_server *s, int fd);
void gd_conn_close(struct gd_conn *c);
/* Protocol violation: queue ERROR(code, message), try to send it, close. */
void gd_conn_fail(struct gd_conn *c, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Queues a frame; data is copied.  -ENOBUFS closes the connection. */
int gd_conn_send(struct gd_conn *c, const void *data, size_t len);
/* Queues a frame whose payload (malloc'd) is handed over. */
int gd_conn_send_owned(struct gd_conn *c, uint16_t type, uint8_t *payload, size_t len);
/* CONTROL_BUSY -> CONTROL and continue with buffered input. */
void gd_conn_resume(struct gd_conn *c);
/* "pid 4242 (server)" or "connection 7 (uid 1000)" for log messages. */
const char *gd_conn_name(const struct gd_conn *c, char *buf, size_t len);

/* ---- producer.c --------------------------------------------------------------- */

int producer_hello(struct gd_conn *c, const struct proto_hello *h);
int producer_frame(struct gd_conn *c, const struct proto_header *h, const uint8_t *payload);
/* A GENERATION payload read in place: b's reference is handed over. */
int producer_generation(struct gd_conn *c, struct fr_genbuf *b);
/* The connection is going away (EOF, error, shutdown). */
void producer_detach(struct gd_conn *c);
/*
 * The automatic dump of a crashed process.  A process that crashes may
 * still have generations on their way on its other connections (queued in
 * the socket, read after the crash handler's CRASH) and its crash handler
 * sends what its own connection had not sent yet after the CRASH.  So the
 * dump waits until no connection of the process has been left for
 * GD_CRASH_QUIET_MS (a crash handler's connection may come in just after
 * the old one ends), or the crash handler's connection has been gone that
 * long (a process that lives on keeps its own), or `--crash-wait` after
 * the crash at most (the quiet time is never longer; 0 dumps at once).
 * gd_crash_schedule() keeps the first reason unless a CRASH (signo) names
 * the signal.
 */
#define GD_CRASH_QUIET_MS 100
void gd_crash_schedule(struct gd_proc *p, const char *reason);
/* Starts every waiting crash dump (gtraced is stopping). */
void gd_crash_start_all(struct gd_server *s);

struct gd_snap;

/* ---- control.c ------------------------------------------------------------------ */

enum gd_req_cmd { GD_REQ_STATUS, GD_REQ_LIST, GD_REQ_SNAPSHOT };

/* One control request as parsed (docs/protocol.md, "Control connections"). */
struct gd_request {
        enum gd_req_cmd cmd;
        uint64_t pid;     /* snapshot: > 0 unless all */
        int all;          /* snapshot --all */
        int want_fd;      /* snapshot into the descriptor that came with it */
        int has_reason;
        char reason[PROTO_MAX_REASON + 1]; /* valid UTF-8, no NUL inside */
};

/* Parses a REQUEST payload (any bytes).  0 and *ret filled, or -EINVAL with
 * a sentence for the client in err (always terminated).  No other effect. */
int control_parse(const uint8_t *payload, size_t len, struct gd_request *ret, char *err,
                  size_t err_len);
int control_request(struct gd_conn *c, const uint8_t *payload, size_t len);
/* Every dump of a control snapshot is done: reply and resume the connection. */
void control_snapshot_done(struct gd_snap *snap, struct gd_conn *c);

/* ---- dump.c ----------------------------------------------------------------------- */

enum gd_snap_kind {
        GD_SNAP_CONTROL,  /* gtracectl snapshot: JSON reply */
        GD_SNAP_PRODUCER, /* DUMP_REQUEST: DUMP_REPLY */
        GD_SNAP_AUTO,     /* SIGUSR1, crash: logged only */
};

/* One requester waiting for one or more dumps. */
struct gd_snap {
        struct gd_link conn_link; /* conn->snaps while conn is alive */
        struct gd_server *srv;
        enum gd_snap_kind kind;
        struct gd_conn *conn;     /* to answer; NULL once gone */
        uint64_t reply_id;        /* DUMP_REPLY id */
        int single;               /* control: snapshot of one pid */
        int with_fd;              /* control: dump went to the client's descriptor */
        unsigned outstanding;
        int launched;             /* every dump was started */
        int failed;               /* at least one dump failed */
        void *results;            /* json_t array, control only */
        int result;               /* producer: 0 or -errno */
        char text[PROTO_MAX_PATH + 1]; /* producer: path or error */
};

enum gd_flush {
        GD_FLUSH_NO,      /* write what is held now; the dump is marked not flushed */
        GD_FLUSH_ASK,     /* live process: FLUSH, wait (bounded), then write */
        GD_FLUSH_ALREADY, /* the producer flushed before asking (DUMP_REQUEST) */
};

struct gd_snap *gd_snap_new(struct gd_server *s, enum gd_snap_kind kind, struct gd_conn *conn);
/* Starts one dump of p for snap (see enum gd_flush).  fd >= 0: write into
 * it instead of the dump directory (ownership taken, even on failure).
 * The outcome is reported to snap, possibly before this returns. */
int gd_dump_start(struct gd_snap *snap, struct gd_proc *p, const char *origin,
                  const char *reason, enum gd_flush flush, int fd);
/* Call after the last gd_dump_start(): a snap with nothing outstanding
 * completes now. */
void gd_snap_launched(struct gd_snap *snap);
/* FLUSH_DONE from p's producer. */
void gd_dump_flush_done(struct gd_proc *p, uint64_t flush_id);
/* p's last connection ended, or shutdown: write every waiting dump now. */
void gd_dump_flush_abandon(struct gd_proc *p);
/* The flush timer fired. */
void gd_dump_flush_timeout(struct gd_server *s);
/* Shutdown: every waiting dump is written now. */
void gd_dump_stop(struct gd_server *s);
/* A connection is going away: its requesters lose their answer channel. */
void gd_snap_conn_gone(struct gd_conn *c);

#endif
