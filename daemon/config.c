/* SPDX-License-Identifier: MIT */
/*
 * gtraced's settings: the command line, then the config file for whatever
 * the command line left unset.  Both go through one table of options, so a
 * setting means the same in both places and is checked the same way.
 *
 * Config file format (docs/daemon.md): one `name = value` per line, names
 * as the long options without the dashes; blank lines and lines starting
 * with '#' or ';' are ignored.  Any problem names the file and the line and
 * makes gtraced exit 2, like a bad flag.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "gtraced.h"

#define CONFIG_MAX_LINE 4096
#define CONFIG_MAX_BYTES (1u << 20)

enum opt_id {
        OPT_SOCKET,
        OPT_DUMP_DIR,
        OPT_GENERATIONS,
        OPT_MAX_PROCESS_BYTES,
        OPT_MAX_TOTAL_BYTES,
        OPT_RETAIN_EXITED,
        OPT_FLUSH_TIMEOUT,
        OPT_CRASH_WAIT,
        OPT_MAX_CONNECTIONS,
        OPT_MAX_PROCESSES,
        OPT_HELLO_TIMEOUT,
        OPT_MAX_UID_BYTES,
        OPT_MAX_UID_PROCESSES,
        OPT_LOG_LEVEL,
        OPT_SETTABLE_, /* options below are command line only */
        OPT_CONFIG = OPT_SETTABLE_,
        OPT_HELP,
        OPT_VERSION,
};

struct opt_def {
        const char *name;
        const char *arg; /* NULL: no argument */
        const char *help;
};

static const struct opt_def opts[] = {
        [OPT_SOCKET] = {"socket", "PATH", "listen on PATH (default: $GTRACED_SOCKET, else "
                                          "/run/gtraced/gtraced.sock as root, else "
                                          "$XDG_RUNTIME_DIR/gtraced/gtraced.sock)"},
        [OPT_DUMP_DIR] = {"dump-dir", "DIR", "write dumps into DIR (default "
                                             "/var/lib/gtraced/dumps as root, else "
                                             "$XDG_STATE_HOME/gtraced/dumps)"},
        [OPT_GENERATIONS] = {"generations", "N", "generations kept per process (default 10)"},
        [OPT_MAX_PROCESS_BYTES] = {"max-process-bytes", "SIZE",
                                   "bytes kept per process (default 64M)"},
        [OPT_MAX_TOTAL_BYTES] = {"max-total-bytes", "SIZE",
                                 "bytes kept for all processes together (default 1G)"},
        [OPT_RETAIN_EXITED] = {"retain-exited", "SECONDS",
                               "keep exited and crashed processes this long (default 600)"},
        [OPT_FLUSH_TIMEOUT] = {"flush-timeout", "MS",
                               "wait this long for a process to flush before a snapshot "
                               "(default 250)"},
        [OPT_CRASH_WAIT] = {"crash-wait", "MS",
                            "wait at most this long for a crashed process's last generations "
                            "before its crash dump (default 1500)"},
        [OPT_MAX_CONNECTIONS] = {"max-connections", "N",
                                 "connections accepted at once (default 1024)"},
        [OPT_MAX_PROCESSES] = {"max-processes", "N", "processes held at once (default 4096)"},
        [OPT_HELLO_TIMEOUT] = {"hello-timeout", "MS",
                               "drop connections that do not say HELLO within MS (default "
                               "5000)"},
        [OPT_MAX_UID_BYTES] = {"max-uid-bytes", "SIZE",
                               "bytes kept for all processes of one user (default: "
                               "max-total-bytes)"},
        [OPT_MAX_UID_PROCESSES] = {"max-uid-processes", "N",
                                   "processes held for one user (default: max-processes)"},
        [OPT_LOG_LEVEL] = {"log-level", "LEVEL", "error, warning, notice, info (default) or "
                                                 "debug"},
        [OPT_CONFIG] = {"config", "PATH", "read settings from PATH (default /etc/gtraced.conf "
                                          "when it exists)"},
        [OPT_HELP] = {"help", NULL, "show this help and exit"},
        [OPT_VERSION] = {"version", NULL, "show the version and exit"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

int gd_parse_size(const char *s, uint64_t *ret)
{
        char *end;
        if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        unsigned shift = 0;
        switch (*end) {
        case '\0': break;
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        default: return -EINVAL;
        }
        if (*end)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t)v << shift;
        return 0;
}

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        char *end;
        if (!s || !*s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_level(const char *s, int *ret)
{
        static const struct {
                const char *name;
                int level;
        } levels[] = {{"error", LOG_ERR},   {"warning", LOG_WARNING}, {"notice", LOG_NOTICE},
                      {"info", LOG_INFO},   {"debug", LOG_DEBUG}};
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
                if (strcmp(s, levels[i].name) == 0) {
                        *ret = levels[i].level;
                        return 0;
                }
        return -EINVAL;
}

static int set_string(char **slot, const char *v)
{
        if (!*v)
                return -EINVAL;
        char *d = strdup(v);
        if (!d)
                return -ENOMEM;
        free(*slot);
        *slot = d;
        return 0;
}

/* Applies one setting.  On failure err says what was expected. */
static int apply(struct gd_config *c, enum opt_id id, const char *v, char *err, size_t err_len)
{
        uint64_t u = 0;
        int r = 0;
        const char *expect = "";

        switch (id) {
        case OPT_SOCKET:
                r = set_string(&c->socket_path, v);
                expect = "a path";
                if (r == 0 && strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                        r = -ENAMETOOLONG;
                        expect = "a path shorter than 108 bytes";
                }
                break;
        case OPT_DUMP_DIR:
                r = set_string(&c->dump_dir, v);
                expect = "a directory";
                break;
        case OPT_GENERATIONS:
                r = parse_uint(v, 1, GD_MAX_GENERATIONS, &u);
                c->generations = (uint32_t)u;
                expect = "a number from 1 to 100000";
                break;
        case OPT_MAX_PROCESS_BYTES:
        case OPT_MAX_TOTAL_BYTES:
        case OPT_MAX_UID_BYTES:
                r = gd_parse_size(v, &u);
                if (r == 0 && u < 4096)
                        r = -ERANGE;
                if (id == OPT_MAX_PROCESS_BYTES)
                        c->max_process_bytes = u;
                else if (id == OPT_MAX_TOTAL_BYTES)
                        c->max_total_bytes = u;
                else
                        c->max_uid_bytes = u;
                expect = "a size of at least 4096 bytes, with an optional K, M or G suffix";
                break;
        case OPT_RETAIN_EXITED:
                r = parse_uint(v, 0, 10u * 365 * 24 * 3600, &u);
                c->retain_exited_s = (uint32_t)u;
                expect = "a number of seconds";
                break;
        case OPT_FLUSH_TIMEOUT:
                r = parse_uint(v, 0, 60000, &u);
                c->flush_timeout_ms = (uint32_t)u;
                expect = "a number of milliseconds from 0 to 60000";
                break;
        case OPT_CRASH_WAIT:
                r = parse_uint(v, 0, 60000, &u);
                c->crash_wait_ms = (uint32_t)u;
                expect = "a number of milliseconds from 0 to 60000";
                break;
        case OPT_MAX_CONNECTIONS:
        case OPT_MAX_PROCESSES:
        case OPT_MAX_UID_PROCESSES:
                r = parse_uint(v, 1, 1000000, &u);
                if (id == OPT_MAX_CONNECTIONS)
                        c->max_connections = (uint32_t)u;
                else if (id == OPT_MAX_PROCESSES)
                        c->max_processes = (uint32_t)u;
                else
                        c->max_uid_processes = (uint32_t)u;
                expect = "a number from 1 to 1000000";
                break;
        case OPT_HELLO_TIMEOUT:
                r = parse_uint(v, 100, 600000, &u);
                c->hello_timeout_ms = (uint32_t)u;
                expect = "a number of milliseconds from 100 to 600000";
                break;
        case OPT_LOG_LEVEL:
                r = parse_level(v, &c->log_level);
                expect = "one of error, warning, notice, info, debug";
                break;
        default:
                r = -EINVAL;
                break;
        }
        if (r < 0)
                snprintf(err, err_len, "invalid value '%s' for %s: expected %s", v, opts[id].name,
                         expect);
        return r;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: gtraced [OPTION]...\n"
                   "The gtrace flight-recorder daemon: keeps the last generations of every "
                   "traced process\nand dumps them on request, on SIGUSR1 and on crashes.\n\n");
        for (size_t i = 0; i < NOPTS; i++) {
                char left[64];
                snprintf(left, sizeof(left), "--%s%s%s", opts[i].name, opts[i].arg ? " " : "",
                         opts[i].arg ? opts[i].arg : "");
                fprintf(f, "  %-26s %s\n", left, opts[i].help);
        }
        fprintf(f, "\nSIZE accepts K, M and G suffixes (powers of 1024). Settings in the config "
                   "file\nuse the option names without dashes: 'generations = 20'. The command "
                   "line wins.\n");
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                         s[n - 1] == '\n'))
                s[--n] = '\0';
        return s;
}

/* One "name = value" line (terminated, no newline). */
static int config_line(struct gd_config *c, const char *path, unsigned lineno, char *line,
                       const int *set)
{
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
                return 0;
        char *eq = strchr(s, '=');
        if (!eq) {
                fprintf(stderr, "gtraced: %s:%u: expected 'name = value'\n", path, lineno);
                return -EINVAL;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t id;
        for (id = 0; id < OPT_SETTABLE_; id++)
                if (strcmp(name, opts[id].name) == 0)
                        break;
        if (id == OPT_SETTABLE_) {
                fprintf(stderr, "gtraced: %s:%u: unknown setting '%s'\n", path, lineno, name);
                return -EINVAL;
        }
        if (set[id])
                return 0;
        char err[512];
        if (apply(c, (enum opt_id)id, value, err, sizeof(err)) < 0) {
                fprintf(stderr, "gtraced: %s:%u: %s\n", path, lineno, err);
                return -EINVAL;
        }
        return 0;
}

/*
 * Reads the config file; settings already in `set` (from the command line)
 * are skipped.  The whole file is read first, at most CONFIG_MAX_BYTES of
 * it, so a huge or endless file (a device, say) is refused rather than
 * read forever, and a NUL byte cannot hide the rest of a line.
 */
static int config_file(struct gd_config *c, const char *path, int must_exist, const int *set)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                fprintf(stderr, "gtraced: cannot open config file %s: %s\n", path,
                        strerror(errno));
                return -EINVAL;
        }
        char *text = malloc(CONFIG_MAX_BYTES + 1);
        if (!text) {
                fclose(f);
                fprintf(stderr, "gtraced: out of memory reading %s\n", path);
                return -ENOMEM;
        }
        size_t len = fread(text, 1, CONFIG_MAX_BYTES + 1, f);
        int r = 0;
        if (ferror(f)) {
                fprintf(stderr, "gtraced: cannot read config file %s\n", path);
                r = -EINVAL;
        } else if (len > CONFIG_MAX_BYTES) {
                fprintf(stderr, "gtraced: %s: file larger than %u bytes\n", path,
                        CONFIG_MAX_BYTES);
                r = -EINVAL;
        }
        fclose(f);
        char line[CONFIG_MAX_LINE + 1];
        unsigned lineno = 0;
        for (size_t off = 0; r == 0 && off < len;) {
                const char *nl = memchr(text + off, '\n', len - off);
                size_t n = nl ? (size_t)(nl - (text + off)) : len - off;
                lineno++;
                if (n > CONFIG_MAX_LINE) {
                        fprintf(stderr, "gtraced: %s:%u: line longer than %u bytes\n", path,
                                lineno, CONFIG_MAX_LINE);
                        r = -EINVAL;
                        break;
                }
                if (memchr(text + off, '\0', n)) {
                        fprintf(stderr, "gtraced: %s:%u: NUL byte in line\n", path, lineno);
                        r = -EINVAL;
                        break;
                }
                memcpy(line, text + off, n);
                line[n] = '\0';
                r = config_line(c, path, lineno, line, set);
                off += n + (nl ? 1 : 0);
        }
        free(text);
        return r;
}

int gd_config_parse(struct gd_config *c, int argc, char **argv)
{
        struct option lopts[NOPTS + 1];
        int set[NOPTS] = {0};

        *c = (struct gd_config){
                .generations = GD_DEFAULT_GENERATIONS,
                .max_process_bytes = GD_DEFAULT_MAX_PROCESS_BYTES,
                .max_total_bytes = GD_DEFAULT_MAX_TOTAL_BYTES,
                .retain_exited_s = GD_DEFAULT_RETAIN_EXITED_S,
                .flush_timeout_ms = GD_DEFAULT_FLUSH_TIMEOUT_MS,
                .crash_wait_ms = GD_DEFAULT_CRASH_WAIT_MS,
                .max_connections = GD_DEFAULT_MAX_CONNECTIONS,
                .max_processes = GD_DEFAULT_MAX_PROCESSES,
                .hello_timeout_ms = GD_DEFAULT_HELLO_TIMEOUT_MS,
                .log_level = LOG_INFO,
        };
        for (size_t i = 0; i < NOPTS; i++)
                lopts[i] = (struct option){opts[i].name,
                                           opts[i].arg ? required_argument : no_argument, NULL,
                                           (int)i + 256};
        lopts[NOPTS] = (struct option){0};

        /* 0, not 1: glibc then forgets the state of any earlier parse (a
         * half-read "-xyz" would otherwise be resumed from freed memory when
         * this is called again, as the tests and the fuzzer do). */
        optind = 0;
        opterr = 0;
        for (;;) {
                int o = getopt_long(argc, argv, "+", lopts, NULL);
                if (o == -1)
                        break;
                if (o == '?' || o == ':') {
                        if (optopt >= 256 && optopt < 256 + (int)NOPTS)
                                fprintf(stderr, "gtraced: option --%s needs a value\n",
                                        opts[optopt - 256].name);
                        else
                                fprintf(stderr, "gtraced: unknown option '%s'\n",
                                        argv[optind - 1]);
                        fprintf(stderr, "Try 'gtraced --help'.\n");
                        return -EINVAL;
                }
                enum opt_id id = (enum opt_id)(o - 256);
                if (id == OPT_HELP) {
                        usage(stdout);
                        return 1;
                }
                if (id == OPT_VERSION) {
                        printf("gtraced %s (protocol %u)\n", GTRACED_VERSION,
                               PROTO_WIRE_VERSION);
                        return 1;
                }
                if (id == OPT_CONFIG) {
                        if (set_string(&c->config_path, optarg) < 0) {
                                fprintf(stderr, "gtraced: invalid value '' for config\n");
                                return -EINVAL;
                        }
                        continue;
                }
                char err[512];
                if (apply(c, id, optarg, err, sizeof(err)) < 0) {
                        fprintf(stderr, "gtraced: %s\n", err);
                        return -EINVAL;
                }
                set[id] = 1;
        }
        if (optind < argc) {
                fprintf(stderr, "gtraced: unexpected argument '%s'\nTry 'gtraced --help'.\n",
                        argv[optind]);
                return -EINVAL;
        }
        int r = config_file(c, c->config_path ? c->config_path : GD_DEFAULT_CONFIG,
                            c->config_path != NULL, set);
        if (r < 0)
                return r;
        return gd_config_defaults(c);
}

static int path_join(char **ret, const char *a, const char *b)
{
        size_t n = strlen(a) + strlen(b) + 1;
        char *p = malloc(n);
        if (!p)
                return -ENOMEM;
        snprintf(p, n, "%s%s", a, b);
        *ret = p;
        return 0;
}

int gd_config_defaults(struct gd_config *c)
{
        int root = geteuid() == 0;
        /* Per-user bounds left unset are as large as the global ones. */
        if (!c->max_uid_bytes)
                c->max_uid_bytes = c->max_total_bytes;
        if (!c->max_uid_processes)
                c->max_uid_processes = c->max_processes;
        if (!c->socket_path) {
                const char *env = getenv("GTRACED_SOCKET");
                const char *xdg = getenv("XDG_RUNTIME_DIR");
                int r;
                if (env && *env)
                        r = set_string(&c->socket_path, env);
                else if (root)
                        r = set_string(&c->socket_path, "/run/gtraced/gtraced.sock");
                else if (xdg && *xdg == '/')
                        r = path_join(&c->socket_path, xdg, "/gtraced/gtraced.sock");
                else {
                        fprintf(stderr, "gtraced: no socket path: pass --socket, or set "
                                        "GTRACED_SOCKET or XDG_RUNTIME_DIR\n");
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
                if (strlen(c->socket_path) >= 108) {
                        fprintf(stderr, "gtraced: socket path '%s' is too long\n",
                                c->socket_path);
                        return -EINVAL;
                }
        }
        if (!c->dump_dir) {
                const char *state = getenv("XDG_STATE_HOME");
                const char *home = getenv("HOME");
                int r;
                if (root)
                        r = set_string(&c->dump_dir, "/var/lib/gtraced/dumps");
                else if (state && *state == '/')
                        r = path_join(&c->dump_dir, state, "/gtraced/dumps");
                else if (home && *home == '/')
                        r = path_join(&c->dump_dir, home, "/.local/state/gtraced/dumps");
                else {
                        fprintf(stderr, "gtraced: no dump directory: pass --dump-dir, or set "
                                        "XDG_STATE_HOME or HOME\n");
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

void gd_config_done(struct gd_config *c)
{
        free(c->socket_path);
        free(c->dump_dir);
        free(c->config_path);
        c->socket_path = c->dump_dir = c->config_path = NULL;
}
