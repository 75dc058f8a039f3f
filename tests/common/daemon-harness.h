/* SPDX-License-Identifier: MIT */
/*
 * Test harness for gtraced: start a real daemon in a temporary directory,
 * talk to it as a control client, run scripted raw producers (child
 * processes speaking the wire protocol by hand) and real instrumented
 * programs over pipes, look at the dumps, and wait for conditions with
 * deadlines (never a bare sleep).  Shared by the daemon, fault, security
 * and client tests; the dh_*_ok / dh_expect_* / dh_snapshot* helpers
 * assert with Check and so belong in Check tests only.
 */
#ifndef TESTS_DAEMON_HARNESS_H
#define TESTS_DAEMON_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct dh_daemon {
        pid_t pid;
        char dir[128];   /* temporary directory, removed by dh_cleanup */
        char sock[100];  /* fits sun_path */
        char dumps[192];
        char log[192];   /* the daemon's stderr */
};

struct dh_opts {
        uint64_t rlimit_fsize;  /* 0: unlimited */
        const char *notify_socket;
        const char *watchdog_usec;
        int no_wait;            /* do not wait for the socket to appear */
};

/* Drops const for APIs that take char * but do not write (execv, iovec). */
static inline void *dh_mut(const void *p)
{
        return (void *)(uintptr_t)p;
}

/* Path of a binary in the build tree (GTRACE_TEST_BINARY_DIR/rel). */
const char *dh_binary(const char *rel);

uint64_t dh_now_ms(void);
/* Calls cond(ctx) every few ms until it returns non-zero or timeout_ms passed.
 * Returns the last result of cond. */
int dh_wait_until(int (*cond)(void *ctx), void *ctx, int timeout_ms);

/* Makes the temporary directory and fills the paths (no daemon yet). */
int dh_prepare(struct dh_daemon *d);
/* Starts gtraced with --socket/--dump-dir/--config /dev/null plus extra
 * (NULL-terminated), waits until it accepts connections.  0 or -errno. */
int dh_start(struct dh_daemon *d, const char *const *extra, const struct dh_opts *o);
/* SIGTERM, waits (bounded).  Returns the exit status, 128+signal, or -1. */
int dh_stop(struct dh_daemon *d);
/* dh_stop if running, then removes the directory. */
void dh_cleanup(struct dh_daemon *d);
int dh_alive(const struct dh_daemon *d);
/* 1 if a connection to the socket at path is accepted right now. */
int dh_can_connect(const char *sock);

/*
 * The same for Check tests, failing the running test instead of returning
 * an error: dh_start_ok asserts that the daemon started; dh_finish asserts
 * that it stops with exit status 0 (a clean shutdown, so ASan's leak check
 * ran and found nothing) and removes the directory.
 */
void dh_start_ok(struct dh_daemon *d, const char *const *extra);
void dh_finish(struct dh_daemon *d);

/* An instrumented program (linked with libgtrace): its pid, its stdin
 * (our write end, -1 once closed) and its stdout (our read end). */
struct dh_prog {
        pid_t pid;
        int in;
        int out;
};

/*
 * Starts the program binary (a path in the build tree, as for dh_binary)
 * with args (NULL-terminated, at most 14), its stdin and stdout piped to us,
 * GTRACED_SOCKET=sock, GTRACE_NO_DAEMON unset, sanitizers told to leave
 * SIGSEGV to gtrace's crash handler, plus env ("NAME=value" strings,
 * NULL-terminated, may be NULL).  0 or -errno.
 */
int dh_prog_spawn(struct dh_prog *p, const char *binary, const char *sock,
                  const char *const *env, const char *const *args);
/* One line of its output without the newline, within timeout_ms in all;
 * -ETIMEDOUT, or -EPIPE at EOF. */
int dh_prog_line(struct dh_prog *p, char *buf, size_t cap, int timeout_ms);
/* Closes its stdin (EOF: how the test programs are told to finish, and safe
 * with a dead or dying process), waits for it, closes the pipes; the wait
 * status. */
int dh_prog_close(struct dh_prog *p);

/* A connected socket (no HELLO yet), or -errno. */
int dh_connect_sock(const char *sock);
/* send() of the whole buffer (MSG_NOSIGNAL); 0 or -errno. */
int dh_send_all(int fd, const void *buf, size_t len);

/* One control request; the reply parsed, or NULL.  fd >= 0 is passed along
 * with SCM_RIGHTS. */
json_t *dh_request(const char *sock, int fd, const char *json_text);
/* The "processes" element of a list reply with that pid, or NULL (borrowed from list). */
json_t *dh_find_proc(json_t *list, pid_t pid);
/* Integer member (0 when absent). */
long long dh_int(json_t *o, const char *key);
const char *dh_str(json_t *o, const char *key);

/* How dh_expect_proc compares a process's generation count. */
enum dh_gens {
        DH_GENS_ANY,      /* any count */
        DH_GENS_EXACTLY,  /* exactly gens */
        DH_GENS_AT_LEAST, /* gens or more */
};
/* What the daemon's list must show: pid, in state (NULL: any state), with
 * generations as `how` says. */
struct dh_proc_want {
        const char *sock;
        pid_t pid;
        const char *state;
        enum dh_gens how;
        long long gens;
};
/* 1 if one list request shows the process as w describes (a dh_wait_until
 * condition: ctx is a struct dh_proc_want). */
int dh_proc_is(void *w);
/* Check tests: waits (bounded) until the list shows the process as wanted,
 * and fails the test with what was wanted if it never does. */
void dh_expect_proc(const char *sock, pid_t pid, const char *state, enum dh_gens how,
                    long long gens, int timeout_ms);
/* Check tests: a snapshot request for pid; fails the test without a reply.
 * dh_snapshot_ok also fails it unless the reply says ok (with its error). */
json_t *dh_snapshot(const char *sock, pid_t pid);
json_t *dh_snapshot_ok(const char *sock, pid_t pid);

/* A connected socket with HELLO sent and WELCOME (or ERROR) read. */
int dh_connect_raw(const char *sock);
int dh_send_frame(int fd, uint16_t type, const void *payload, size_t len);
/* Reads one frame (payload malloc'd, NUL-terminated); -ETIMEDOUT, -ECONNRESET on EOF. */
int dh_recv_frame(int fd, int timeout_ms, uint16_t *ret_type, uint8_t **ret_payload,
                  size_t *ret_len);
/* Waits until the peer closes (EOF) within timeout. 1 closed, 0 not. */
int dh_wait_closed(int fd, int timeout_ms);

/* A scripted raw producer in a child process. */
struct dh_producer {
        pid_t pid;
        int ctl; /* socketpair end to the child */
};

#define DH_ANSWER_FLUSH 0x1
/* Spawns a producer that connects to sock with the given command name. */
int dh_producer_spawn(struct dh_producer *p, const char *sock, const char *command, int flags);
/* The same as user uid (the child switches uid and gid before connecting;
 * (uid_t)-1 keeps ours).  A refused producer is reaped: -ECONNREFUSED. */
int dh_producer_spawn_as(struct dh_producer *p, const char *sock, const char *command,
                         int flags, uid_t uid);
/*
 * Commands: 'g' send a generation of arg bytes; 'q' GOODBYE and exit;
 * 'c' CRASH(arg) and exit; 'k' CRASH(arg), the connection kept open;
 * 'x' exit without a word; 'd' DUMP_REQUEST, the
 * reply's result and text come back in reply.  Returns the child's status
 * byte (0 ok) or -errno.
 */
int dh_producer_cmd(struct dh_producer *p, char cmd, uint32_t arg, char *reply, size_t cap);
int dh_producer_wait(struct dh_producer *p);

/* Counts GENERATION records of a dump file and checks each blob's top level;
 * -errno if the file is not a well-formed dump.  *ret_flushed from META. */
int dh_dump_check(const char *path, unsigned *ret_gens, int *ret_flushed);
/* 1 if the file contains the bytes of needle. */
int dh_file_contains(const char *path, const char *needle);
/* Number of *.gtrace files in dir (hidden temporary files not counted). */
int dh_count_dumps(const char *dir);
/* Number of entries in dir, hidden ones included (-errno if unreadable). */
int dh_count_entries(const char *dir);
/* The name of the only entry of dir, hidden ones included, into buf; NULL
 * when dir has none, several or cannot be read. */
const char *dh_only_entry(const char *dir, char *buf, size_t cap);
/* The path of a dump in dir whose name holds "-PID-" (the daemon names dumps
 * COMMAND-PID-TIME.gtrace), hidden files skipped; into buf, or NULL. */
const char *dh_find_dump(const char *dir, pid_t pid, char *buf, size_t cap);
/* Calls fn(path, ctx) for each entry of dir that is not hidden, in no set
 * order, until fn returns non-zero; returns that, 0, or -errno. */
int dh_foreach_file(const char *dir, int (*fn)(const char *path, void *ctx), void *ctx);
/* Reads a whole file, NUL-terminated (malloc'd); NULL and errno on failure. */
char *dh_read_file(const char *path, size_t *ret_len);
/* rm -rf of path (a file or a tree); symbolic links are removed, not followed. */
void dh_rmtree(const char *path);

#endif
