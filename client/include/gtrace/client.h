/* SPDX-License-Identifier: MIT */
/*
 * libgtrace-client: talk to gtraced from another program.
 *
 * What gtracectl's status, list and snapshot commands use, for programs that
 * want the same without running gtracectl: a supervisor that snapshots its
 * worker when a health check times out, a test harness that collects the
 * trace of a failing process, a dashboard that lists traced processes.
 *
 *     struct gtrace_client *c;
 *     struct gtrace_client_error err;
 *     struct gtrace_client_dump dump;
 *     if (gtrace_client_connect(NULL, &c, &err) == 0) {
 *             if (gtrace_client_snapshot(c, worker_pid, "health check timed out", -1,
 *                                        &dump, &err) == 0)
 *                     printf("trace in %s\n", dump.path);
 *             gtrace_client_close(c);
 *     }
 *     ... on failure err.code is the -errno, err.message says what to do ...
 *
 * Link with `pkg-config --libs gtrace-client` (or -lgtrace-client).  Every
 * function returns 0 (or a non-negative value) on success and a negative
 * errno value on failure, and fills the optional error argument with that
 * code and a sentence naming the problem and the fix.  Errors a caller can
 * act on:
 *
 *   -ECONNREFUSED  no daemon: no socket at the path, or nobody listening
 *   -EACCES        not allowed to connect to the socket
 *   -ENOENT        no traced process with that pid (or not one you may see)
 *   -ENODATA       the process holds no trace yet
 *   -ETIMEDOUT     the daemon did not answer in time
 *   -EPROTO, -EBADMSG  the daemon's answer does not follow docs/protocol.md
 *   -EPROTONOSUPPORT   the daemon speaks another protocol version
 *   and for snapshots, whatever writing the dump failed with (-ENOSPC ...).
 *
 * A connection is not thread-safe: use one per thread, or lock around it.
 * The library never writes to stdout/stderr and installs no signal
 * handlers; it sends with MSG_NOSIGNAL, so a daemon that goes away gives
 * -EPIPE, not SIGPIPE.
 */
#ifndef GTRACE_CLIENT_H
#define GTRACE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GTRACE_CLIENT_API __attribute__((visibility("default")))
#else
#define GTRACE_CLIENT_API
#endif

#define GTRACE_CLIENT_VERSION_STRING "0.1.0"

/* How long a request waits for its reply by default.  A snapshot waits for
 * the process to flush (the daemon's flush timeout) and for the write. */
#define GTRACE_CLIENT_DEFAULT_TIMEOUT_MS 60000

#define GTRACE_CLIENT_PATH_MAX 4096

struct gtrace_client_error {
        int code;          /* the negative errno the call returned */
        char message[768]; /* "gtraced is not running at /run/...: start it with ..." */
};

struct gtrace_client;

/*
 * The socket path to use, into buf: explicit_path if not NULL or empty,
 * else $GTRACED_SOCKET if set and not empty, else /run/gtraced/gtraced.sock
 * for root and $XDG_RUNTIME_DIR/gtraced/gtraced.sock for other users.
 * Returns 0, -ENOENT when no rule applies (not root and XDG_RUNTIME_DIR
 * unset), -ENAMETOOLONG when it does not fit in buf.
 */
GTRACE_CLIENT_API int gtrace_client_socket_path(const char *explicit_path, char *buf, size_t len,
                                                struct gtrace_client_error *ret_err);

/*
 * Connects to gtraced at socket_path (NULL: gtrace_client_socket_path()) and
 * does the control handshake.  *ret is owned by the caller: close it with
 * gtrace_client_close().  ret_err may be NULL.
 */
GTRACE_CLIENT_API int gtrace_client_connect(const char *socket_path, struct gtrace_client **ret,
                                            struct gtrace_client_error *ret_err);
/* Closes the connection and frees c; NULL is fine. */
GTRACE_CLIENT_API void gtrace_client_close(struct gtrace_client *c);
/* Reply timeout for later requests, in ms (> 0).  0 or -EINVAL. */
GTRACE_CLIENT_API int gtrace_client_set_timeout(struct gtrace_client *c, int timeout_ms);
/* The path connected to, and the daemon's software string ("gtraced 0.1.0"). */
GTRACE_CLIENT_API const char *gtrace_client_path(const struct gtrace_client *c);
GTRACE_CLIENT_API const char *gtrace_client_daemon_software(const struct gtrace_client *c);

struct gtrace_client_limits {
        uint64_t generations; /* kept per process */
        uint64_t max_process_bytes;
        uint64_t max_total_bytes;
        uint64_t max_generation_bytes;
        uint64_t retain_exited_s;
        uint64_t flush_timeout_ms;
        uint64_t max_connections;
        uint64_t max_processes;
};

struct gtrace_client_status {
        char version[64]; /* "0.1.0" */
        uint64_t protocol;
        uint64_t pid; /* the daemon's */
        uint64_t uptime_ms;
        uint64_t processes, live, exited, crashed; /* the ones you may see */
        uint64_t generations, bytes;               /* held for them */
        uint64_t dumps_written, dumps_failed;
        char socket[GTRACE_CLIENT_PATH_MAX + 1];
        char dump_dir[GTRACE_CLIENT_PATH_MAX + 1];
        struct gtrace_client_limits limits;
};

GTRACE_CLIENT_API int gtrace_client_status(struct gtrace_client *c,
                                           struct gtrace_client_status *ret,
                                           struct gtrace_client_error *ret_err);

struct gtrace_client_process {
        uint64_t pid;
        uint64_t start_time_ns; /* wall clock, 0 unknown */
        uint64_t uid;
        char command[256];
        char executable[GTRACE_CLIENT_PATH_MAX + 1];
        char software[129];
        char state[16];  /* "live", "exited", "crashed" */
        uint64_t signal; /* crashed: the signal, 0 unknown */
        char signal_name[16];
        uint64_t generations, bytes;
        uint64_t first_ns, last_ns, span_ns; /* wall clock span held */
        uint64_t events_lost, generations_lost, generations_evicted;
        uint64_t connected_ns, ended_ns;
        int64_t expires_ms; /* exited/crashed: until the daemon forgets it; else -1 */
};

/* *ret is an array of *ret_n processes sorted by pid (NULL when none);
 * free it with gtrace_client_free(). */
GTRACE_CLIENT_API int gtrace_client_list(struct gtrace_client *c,
                                         struct gtrace_client_process **ret, size_t *ret_n,
                                         struct gtrace_client_error *ret_err);

struct gtrace_client_dump {
        int result; /* 0 or -errno, for this process */
        uint64_t pid;
        char command[256];
        char path[GTRACE_CLIENT_PATH_MAX + 1]; /* absolute; "" when written to a given fd */
        int flushed;                           /* the newest generation was cut for this dump */
        uint64_t generations, bytes;
        char error[768]; /* when result < 0 */
};

/*
 * Dumps the traced process pid.  reason may be NULL (the daemon's default).
 * fd < 0: the daemon writes a new file in its dump directory and ret->path
 * names it.  fd >= 0: a regular file open for writing that the daemon writes
 * the dump into (sent with SCM_RIGHTS; the caller keeps its descriptor and
 * closes it), ret->path is "".  Returns 0 or -errno (ret->result too).
 */
GTRACE_CLIENT_API int gtrace_client_snapshot(struct gtrace_client *c, uint64_t pid,
                                             const char *reason, int fd,
                                             struct gtrace_client_dump *ret,
                                             struct gtrace_client_error *ret_err);

/*
 * Dumps every process the caller may see.  *ret gets one element per
 * process (free with gtrace_client_free()).  Returns 0 when every dump
 * succeeded, else the first failure's -errno (the array is filled either
 * way, and is NULL when no process is traced).
 */
GTRACE_CLIENT_API int gtrace_client_snapshot_all(struct gtrace_client *c, const char *reason,
                                                 struct gtrace_client_dump **ret, size_t *ret_n,
                                                 struct gtrace_client_error *ret_err);

/* One call for the common case: connect (NULL: default socket), snapshot pid
 * into the daemon's dump directory, copy the dump's path into path, close. */
GTRACE_CLIENT_API int gtrace_client_snapshot_pid(const char *socket_path, uint64_t pid,
                                                 const char *reason, char *path, size_t path_len,
                                                 struct gtrace_client_error *ret_err);

/*
 * Sends one raw JSON request (docs/protocol.md, "Control connections") and
 * returns the reply's JSON text in *ret_reply (malloc'ed, NUL-terminated;
 * free with gtrace_client_free()).  fd >= 0 is passed along with it.
 * Returns 0 whenever a reply arrived, even one with "ok": false.
 */
GTRACE_CLIENT_API int gtrace_client_request(struct gtrace_client *c, const char *json, int fd,
                                            char **ret_reply, struct gtrace_client_error *ret_err);

/* Frees what the functions above allocated; NULL is fine. */
GTRACE_CLIENT_API void gtrace_client_free(void *p);

/* "ESRCH" for ESRCH (positive or negative), NULL if unknown. */
GTRACE_CLIENT_API const char *gtrace_client_errno_name(int code);

#ifdef __cplusplus
}
#endif

#endif
