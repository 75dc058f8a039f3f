/* SPDX-License-Identifier: MIT */
/*
 * gtracectl, table of contents.
 *
 *   gtracectl.c    main: global options, the command table, help, exit codes
 *   ctl-daemon.c   status, list, snapshot: libgtrace-client and human/JSON output
 *   ctl-files.c    view, stats, validate, export: flightrec's reader and text tools
 *
 * Conventions: every command returns an exit code (CTL_OK, CTL_FAIL,
 * CTL_USAGE) and reports its own errors on stderr, in one line that names
 * what went wrong and what to do about it.  With --json a command prints
 * exactly one JSON document on stdout, also on failure ({"ok":false,...}),
 * so scripts can always parse stdout.  Human output goes to stdout only.
 */
#ifndef GTRACE_CTL_H
#define GTRACE_CTL_H

#include <jansson.h>
#include <stdint.h>

enum {
        CTL_OK = 0,
        CTL_FAIL = 1,
        CTL_USAGE = 2,
};

struct ctl {
        const char *socket; /* --socket, or NULL */
        int json;           /* --json */
};

struct ctl_command {
        const char *name;
        int (*run)(struct ctl *ctl, int argc, char **argv);
        const char *usage; /* one line, after "gtracectl " */
        const char *help;  /* the rest of --help */
};

/* Messages on stderr, prefixed "gtracectl: ". */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the message, then a hint to --help; returns CTL_USAGE. */
int ctl_usage(const struct ctl_command *cmd, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* Prints cmd's --help on stdout; returns CTL_OK. */
int ctl_help(const struct ctl_command *cmd);

/*
 * Parses a command's options with getopt_long: --help, --json and --socket
 * are accepted by every command (so they may follow the command name).
 * extra is the command's own option table (terminated), shortopts its
 * short options.  For each command option, on_opt is called with the
 * option's val and optarg; it returns 0, or CTL_USAGE after ctl_usage().
 * Leaves the positional arguments in argv[*ret_first .. argc).  Returns 0,
 * -1 after --help was printed (exit CTL_OK), or CTL_USAGE.
 */
struct option;
int ctl_parse(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv,
              const char *shortopts, const struct option *extra,
              int (*on_opt)(void *ctx, int val, const char *arg), void *ctx, int *ret_first);

/* Prints a JSON value on stdout (indented, one document, newline).  Steals
 * the reference.  CTL_OK, or CTL_FAIL if stdout failed. */
int ctl_json_print(json_t *v);
/* {"ok":false,"error":msg,"errno":NAME,"code":N} on stdout (with --json). */
void ctl_json_error(int code, const char *msg);

/* Positive integer parsing for pids and counts; 0 or -EINVAL. */
int ctl_parse_u64(const char *s, uint64_t *ret);

extern const struct ctl_command ctl_cmd_status, ctl_cmd_list, ctl_cmd_snapshot;
extern const struct ctl_command ctl_cmd_view, ctl_cmd_stats, ctl_cmd_validate, ctl_cmd_export;

#define CTL_VERSION "0.1.0"

#endif
