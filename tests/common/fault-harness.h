/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the reliability and security tests (test-fault-*,
 * test-daemon-security): real instrumented programs driven over pipes
 * (tests/integration/test-fault-prog.c), gtracectl on dump files, process
 * memory, and raw protocol clients that do what no well-behaved peer does.
 * The daemon itself is started with tests/common/daemon-harness.h.
 */
#ifndef TESTS_FAULT_HARNESS_H
#define TESTS_FAULT_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon-harness.h"

/* What test-fault-prog's 's' command reports. */
struct fh_state {
        unsigned long long iters, gap_us, events, events_lost, gens, gens_lost, gens_sent;
        unsigned long long buffered, ring_bytes, ring_gens, connected, rss_kb;
};

/* dh_prog_spawn of test-fault-prog (its commands on stdin, answers on
 * stdout), then waits for its "ready" line. */
int fh_prog_start(struct dh_prog *p, const char *sock, const char *const *env,
                  const char *const *args);
/* Asks for and parses the state line. */
int fh_prog_state(struct dh_prog *p, struct fh_state *ret);
/* Sends 'q', closes its stdin, waits; the wait status. */
int fh_prog_end(struct dh_prog *p);

/* VmRSS of pid in KiB (0 if unknown). */
unsigned long long fh_rss_kb(pid_t pid);

/* 1 when gtracectl was built. */
int fh_have_gtracectl(void);
/* Runs gtracectl with args; its stdout in out.  The exit status, or -1. */
int fh_gtracectl(const char *const *args, char *out, size_t cap);
/* `gtracectl validate FILE`: its exit status. */
int fh_validate(const char *path);
/* Check tests: fails the test unless path is a whole dump (dh_dump_check)
 * and, when gtracectl was built, `gtracectl validate` accepts it. */
void fh_check_valid(const char *path);
/* `gtracectl --json stats FILE`, parsed; NULL on failure. */
json_t *fh_dump_stats(const char *path);

/* Sends HELLO as a producer claiming the given pid/uid/command (the daemon
 * must ignore the claims) and reads WELCOME.  The socket, or -errno. */
int fh_raw_producer(const char *sock, uint64_t claim_pid, uint64_t claim_uid, const char *command);
/* Sends one GENERATION frame with a blob of len bytes for gen. */
int fh_send_gen(int fd, uint64_t gen, uint32_t len);

/* Forks a child that switches to uid (and gid = uid), runs fn(arg) and
 * exits with its result; returns that exit status (or -1). */
int fh_run_as(uid_t uid, int (*fn)(void *arg), void *arg);

/* Waits (bounded) until the pid's /proc/PID/task threads are all stopped. */
int fh_wait_stopped(pid_t pid, int timeout_ms);

#endif
