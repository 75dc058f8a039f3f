/* SPDX-License-Identifier: MIT */
/*
 * gtracectl: control gtraced and read gtrace dumps.  See ctl.h for the
 * layout and conventions, docs/cli.md and gtracectl(1) for the user's view.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "gtrace/client.h"

static const struct ctl_command *const commands[] = {
        &ctl_cmd_status, &ctl_cmd_list,     &ctl_cmd_snapshot, &ctl_cmd_view,
        &ctl_cmd_stats,  &ctl_cmd_validate, &ctl_cmd_export,
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char main_help[] =
        "Usage: gtracectl [--socket PATH] [--json] COMMAND [ARGS...]\n"
        "\n"
        "Control gtraced, the gtrace flight recorder, and read its dump files.\n"
        "\n"
        "Commands for the daemon:\n"
        "  status                      daemon version, uptime, processes, bytes held, limits\n"
        "  list                        traced processes: state, generations, bytes, span, losses\n"
        "  snapshot PID [--reason TEXT] [-o FILE]\n"
        "                              dump a process's recent trace; prints the file's path\n"
        "  snapshot --all [--reason TEXT]\n"
        "                              dump every traced process\n"
        "\n"
        "Commands for dump files (.gtrace):\n"
        "  view FILE [--thread T] [--event KIND] [--since D] [--until D]\n"
        "                              every event, one per line\n"
        "  view FILE --last            what each thread and fiber was doing at the end\n"
        "  stats FILE                  generations, time span, threads, events per type, losses\n"
        "  validate FILE               check every generation; exit 1 at the first violation\n"
        "  export FILE --format chrome [-o OUT]\n"
        "                              Trace Event JSON for ui.perfetto.dev or chrome://tracing\n"
        "\n"
        "Options (accepted before or after the command):\n"
        "  --socket PATH   gtraced's socket; default $GTRACED_SOCKET, else\n"
        "                  /run/gtraced/gtraced.sock for root, else\n"
        "                  $XDG_RUNTIME_DIR/gtraced/gtraced.sock\n"
        "  --json          print one JSON document on stdout (keys in gtracectl(1))\n"
        "  --help          show help; `gtracectl COMMAND --help` for one command\n"
        "  --version       print the version\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error.\n";

void ctl_error(const char *fmt, ...)
{
        va_list ap;
        fputs("gtracectl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int ctl_usage(const struct ctl_command *cmd, const char *fmt, ...)
{
        va_list ap;
        fputs("gtracectl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        if (cmd)
                fprintf(stderr, "\nUsage: gtracectl %s\nTry 'gtracectl %s --help'.\n", cmd->usage,
                        cmd->name);
        else
                fputs("\nTry 'gtracectl --help'.\n", stderr);
        return CTL_USAGE;
}

int ctl_help(const struct ctl_command *cmd)
{
        printf("Usage: gtracectl [--socket PATH] [--json] %s\n\n%s", cmd->usage, cmd->help);
        return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

int ctl_parse_u64(const char *s, uint64_t *ret)
{
        char *end;
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

enum { OPT_HELP = 0x1000, OPT_JSON, OPT_SOCKET, OPT_VERSION };

int ctl_parse(struct ctl *ctl, const struct ctl_command *cmd, int argc, char **argv,
              const char *shortopts, const struct option *extra,
              int (*on_opt)(void *ctx, int val, const char *arg), void *ctx, int *ret_first)
{
        struct option opts[32];
        size_t n = 0;
        char shorts[64];

        opts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
        opts[n++] = (struct option){"json", no_argument, NULL, OPT_JSON};
        opts[n++] = (struct option){"socket", required_argument, NULL, OPT_SOCKET};
        for (size_t i = 0; extra && extra[i].name && n < 31; i++)
                opts[n++] = extra[i];
        opts[n] = (struct option){0};
        /* Leading ':' : we report missing arguments ourselves; '+' keeps GNU
         * getopt from reordering (positional arguments may look like options
         * only after "--"). */
        (void)snprintf(shorts, sizeof(shorts), ":%s", shortopts ? shortopts : "");

        optind = 0; /* re-initialise getopt for this argv */
        opterr = 0;
        for (;;) {
                int longidx = -1;
                int c = getopt_long(argc, argv, shorts, opts, &longidx);
                if (c == -1)
                        break;
                switch (c) {
                case OPT_HELP: ctl_help(cmd); return -1;
                case OPT_JSON: ctl->json = 1; break;
                case OPT_SOCKET:
                        if (!*optarg)
                                return ctl_usage(cmd, "--socket needs a path");
                        ctl->socket = optarg;
                        break;
                case '?':
                        if (optopt)
                                return ctl_usage(cmd, "unknown option '-%c'", optopt);
                        return ctl_usage(cmd, "unknown option '%s'", argv[optind - 1]);
                case ':':
                        if (optopt && optopt < 0x100)
                                return ctl_usage(cmd, "option '-%c' needs a value", optopt);
                        return ctl_usage(cmd, "option '%s' needs a value", argv[optind - 1]);
                default: {
                        int r = on_opt ? on_opt(ctx, c, optarg) : CTL_USAGE;
                        if (r)
                                return r;
                }
                }
        }
        *ret_first = optind;
        return 0;
}

int ctl_json_print(json_t *v)
{
        if (!v) {
                ctl_error("out of memory");
                return CTL_FAIL;
        }
        int r = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(v);
        fputc('\n', stdout);
        if (r < 0 || fflush(stdout) != 0) {
                ctl_error("cannot write to stdout");
                return CTL_FAIL;
        }
        return CTL_OK;
}

void ctl_json_error(int code, const char *msg)
{
        const char *name = gtrace_client_errno_name(code);
        json_t *o = json_pack("{s:b,s:s,s:s,s:i}", "ok", 0, "error", msg ? msg : "", "errno",
                              name ? name : "", "code", code < 0 ? -code : code);
        (void)ctl_json_print(o);
}

static const struct ctl_command *find_command(const char *name)
{
        for (size_t i = 0; i < NCOMMANDS; i++)
                if (!strcmp(commands[i]->name, name))
                        return commands[i];
        return NULL;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"help", no_argument, NULL, OPT_HELP},
                {"json", no_argument, NULL, OPT_JSON},
                {"socket", required_argument, NULL, OPT_SOCKET},
                {"version", no_argument, NULL, OPT_VERSION},
                {0},
        };
        struct ctl ctl = {0};

        opterr = 0;
        for (;;) {
                /* '+': stop at the command name; its own options come after. */
                int c = getopt_long(argc, argv, "+:h", opts, NULL);
                if (c == -1)
                        break;
                switch (c) {
                case 'h':
                case OPT_HELP: fputs(main_help, stdout); return CTL_OK;
                case OPT_VERSION: printf("gtracectl %s\n", CTL_VERSION); return CTL_OK;
                case OPT_JSON: ctl.json = 1; break;
                case OPT_SOCKET:
                        if (!*optarg)
                                return ctl_usage(NULL, "--socket needs a path");
                        ctl.socket = optarg;
                        break;
                case ':': return ctl_usage(NULL, "option '%s' needs a value", argv[optind - 1]);
                default:
                        if (optopt)
                                return ctl_usage(NULL, "unknown option '-%c'", optopt);
                        return ctl_usage(NULL, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind >= argc)
                return ctl_usage(NULL, "no command given");
        const char *name = argv[optind];
        if (!strcmp(name, "help")) {
                if (optind + 1 < argc) {
                        const struct ctl_command *cmd = find_command(argv[optind + 1]);
                        if (!cmd)
                                return ctl_usage(NULL, "unknown command '%s'", argv[optind + 1]);
                        return ctl_help(cmd);
                }
                fputs(main_help, stdout);
                return CTL_OK;
        }
        const struct ctl_command *cmd = find_command(name);
        if (!cmd)
                return ctl_usage(NULL, "unknown command '%s'", name);
        /* The command sees argv[0] = its name, like a program of its own. */
        return cmd->run(&ctl, argc - optind, argv + optind);
}
