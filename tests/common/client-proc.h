/* SPDX-License-Identifier: MIT */
/*
 * Test helpers of the client module: run gtracectl (or any program) and
 * capture what it prints, make scratch directories and dumps.  A real
 * gtraced and instrumented programs are started with daemon-harness.h.
 */
#ifndef GTRACE_TESTS_CLIENT_PROC_H
#define GTRACE_TESTS_CLIENT_PROC_H

#include <stddef.h>
#include <sys/types.h>

#include "genbuild.h"

struct cp_result {
        int status;      /* exit code, or 128 + signal */
        char *out, *err; /* NUL-terminated captures (malloc'ed) */
        size_t out_len, err_len;
};

void cp_result_free(struct cp_result *r);

/* Runs argv (argv[0] a path) with env additions ("K=V", NULL-terminated, may
 * be NULL) in directory cwd (NULL: inherit), stdin from /dev/null; uid/gid
 * switched first when uid != (uid_t)-1.  Aborts the test on setup failure. */
void cp_run(const char *const *argv, const char *const *env, const char *cwd, uid_t uid,
            struct cp_result *ret);

/* $GTRACE_TEST_BINARY_DIR/<rel> (static buffer per call site: copy it). */
const char *cp_build_path(const char *rel, char *buf, size_t len);
const char *cp_source_path(const char *rel, char *buf, size_t len);

/* mkdtemp under $TMPDIR or /tmp, mode 0755; returns a malloc'ed path. */
char *cp_tmpdir(const char *tag);
/* rm -r of a scratch directory (files and one level of subdirectories). */
void cp_rmtree(const char *dir);

/* Reads a whole file (NUL-terminated); NULL if it cannot. */
char *cp_read(const char *path, size_t *ret_len);
/* Writes a whole file (0644).  0 or -errno. */
int cp_write(const char *path, const void *data, size_t len);

/* Compiles genbuild text into a dump at path with a fixed test META
 * (pid 4242, command "golden", reason, origin "test", a fixed dump time). */
void cp_make_dump(const char *text, const char *path, const char *reason);

#endif
