/* SPDX-License-Identifier: MIT */
/*
 * The runtime's connection to gtraced (the "daemon sink").
 *
 * Owned by the advance thread, which polls gt_daemon_pollfd() alongside its
 * own wake-up descriptor and calls gt_daemon_service() whenever the
 * descriptor is ready or a generation was pushed to the ring.  The socket is
 * non-blocking: the application never waits on it (invariant 7).  While the
 * daemon is unreachable, generations stay in the in-process ring and are
 * sent, oldest first, once a connection is up again; reconnect attempts back
 * off exponentially.
 *
 * Only the advance thread calls these, except gt_daemon_crash(), which the
 * fatal-signal handler calls (async-signal-safe, bounded time).
 */
#ifndef GT_DAEMON_H
#define GT_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ring.h"

struct gt_proc_info {
        pid_t pid;
        uid_t uid;
        uint64_t start_time_ns; /* wall clock, from /proc/self/stat */
        uint64_t clock_freq;    /* the trace clock, as in CLOCK records */
        char command[64];
        char executable[1024];
        char host[256];
};

struct gt_daemon;

/* Result of one service round, for the advance thread to act on. */
struct gt_daemon_events {
        int flush_requested; /* FLUSH arrived: cut a generation now, push it, then call
                                gt_daemon_flush_done() */
        uint64_t flush_id;
        int dump_done;       /* a reply to gt_daemon_request_dump() arrived */
        uint64_t dump_id;
        int dump_result;     /* 0 or -errno */
        char dump_path[4096];
};

/* No I/O happens here; the first connect is attempted by the first service call. */
struct gt_daemon *gt_daemon_new(const char *socket_path, const struct gt_proc_info *info);
/* Sends what fits of the unsent ring entries and GOODBYE (bounded wait),
 * then closes the connection.  On the thread that services d (the advance
 * thread): the descriptor may be in that thread's file table only. */
void gt_daemon_close(struct gt_daemon *d, struct gt_ring *ring);
/* Frees d.  Closes nothing: gt_daemon_close() did, on the right thread. */
void gt_daemon_free(struct gt_daemon *d);

/* The descriptor to poll and the events wanted, or -1 when not connected;
 * *ret_timeout_ms is when the next reconnect attempt is due (-1: none). */
int gt_daemon_pollfd(struct gt_daemon *d, short *ret_events, int *ret_timeout_ms);

/* (Re)connects when due, reads incoming frames, sends unsent ring entries as
 * far as the socket accepts without blocking.  Fills *ret.  With may_read
 * false the socket is not read (frames already buffered are still parsed):
 * for a caller whose poll of the descriptor, since the last call, showed
 * nothing to read -- what arrives after that poll wakes the next one.  It
 * saves a generation's cycle a system call that would find nothing. */
void gt_daemon_service(struct gt_daemon *d, struct gt_ring *ring, struct gt_daemon_events *ret,
                       bool may_read);

int gt_daemon_connected(const struct gt_daemon *d);

/* Acknowledges a FLUSH once the generation it asked for is in the ring. */
void gt_daemon_flush_done(struct gt_daemon *d, uint64_t flush_id, uint64_t gen);

/* Queues a DUMP request for this process; the reply comes back through
 * gt_daemon_service() with the same id.  -ENOTCONN if not connected. */
int gt_daemon_request_dump(struct gt_daemon *d, uint64_t id, const char *reason);

/*
 * From the fatal-signal handler, on a connection of its own: the sealed
 * current generation, a CRASH notice with the signal, then the backlog
 * blobs in the order given, waiting at most timeout_ms in total.  Most
 * valuable first: if time runs out, what was sent is kept (gtraced puts
 * each generation in its place by its start time).  Returns 0 once the
 * CRASH notice is sent, -errno otherwise (then the caller dumps locally).
 */
int gt_daemon_crash(struct gt_daemon *d, int signo, const struct iovec *sealed,
                    const struct iovec *backlog, size_t nbacklog, int timeout_ms);

/* The generation blob the connection is in the middle of sending, if any:
 * gtraced drops a frame cut short, so a crash handler that can read this
 * safely (the advance thread held) sends it again whole.  NULL otherwise. */
struct gt_blob *gt_daemon_partial(const struct gt_daemon *d);

#endif
