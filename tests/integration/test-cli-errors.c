/* SPDX-License-Identifier: MIT */
/*
 * gtracectl's failures: each with its exit code (2 usage, 1 failure) and a
 * message that names the problem and what to do.  Runs the real binary,
 * against a real gtraced where a daemon is involved.
 */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-proc.h"
#include "daemon-harness.h"

#define NOBODY ((uid_t)65534)

static char gtracectl[512];
static char *scratch;

/* Runs gtracectl with the given arguments (NULL-terminated) as uid. */
static void ctl_as(uid_t uid, struct cp_result *r, ...)
{
        const char *argv[32];
        size_t n = 0;
        va_list ap;
        argv[n++] = gtracectl;
        va_start(ap, r);
        for (const char *a; (a = va_arg(ap, const char *)) && n < 31;)
                argv[n++] = a;
        va_end(ap);
        argv[n] = NULL;
        static const char *const env[] = {"TZ=UTC", NULL};
        cp_run(argv, env, scratch, uid, r);
}

#define CTL(r, ...) ctl_as((uid_t)-1, (r), __VA_ARGS__, (const char *)NULL)

static void expect(const struct cp_result *r, int status, const char *in_stderr)
{
        ck_assert_msg(r->status == status, "exit %d, want %d (stderr: %s)", r->status, status,
                      r->err);
        if (in_stderr)
                ck_assert_msg(strstr(r->err, in_stderr) != NULL, "stderr lacks \"%s\": %s",
                              in_stderr, r->err);
}

static void setup(void)
{
        cp_build_path("client/gtracectl", gtracectl, sizeof(gtracectl));
        scratch = cp_tmpdir("clierr");
}

static void teardown(void)
{
        cp_rmtree(scratch);
        free(scratch);
}

/* ---- usage ---- */

START_TEST(test_usage_errors)
{
        static const char *const cases[][8] = {
                {"--bogus", NULL},
                {NULL},
                {"frobnicate", NULL},
                {"view", NULL},
                {"view", "a.gtrace", "--bogus", NULL},
                {"view", "a.gtrace", "b.gtrace", NULL},
                {"view", "a.gtrace", "--since", "soon", NULL},
                {"view", "a.gtrace", "--event", "nope", NULL},
                {"view", "a.gtrace", "--last", "--thread", "1", NULL},
                {"view", "a.gtrace", "--since", "2s", "--until", "1s", NULL},
                {"export", "a.gtrace", NULL},
                {"export", "a.gtrace", "--format", "svg", NULL},
                {"export", "a.gtrace", "--format", NULL},
                {"snapshot", NULL},
                {"snapshot", "abc", NULL},
                {"snapshot", "0", NULL},
                {"snapshot", "12", "13", NULL},
                {"snapshot", "--all", "12", NULL},
                {"snapshot", "--all", "-o", "x", NULL},
                {"status", "extra", NULL},
                {"--socket", NULL},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const char *argv[8] = {gtracectl};
                size_t n = 1;
                for (size_t j = 0; cases[i][j]; j++)
                        argv[n++] = cases[i][j];
                argv[n] = NULL;
                struct cp_result r;
                cp_run(argv, NULL, scratch, (uid_t)-1, &r);
                ck_assert_msg(r.status == 2, "case %zu (%s %s): exit %d: %s", i,
                              cases[i][0] ? cases[i][0] : "",
                              cases[i][0] && cases[i][1] ? cases[i][1] : "", r.status, r.err);
                ck_assert_msg(strstr(r.err, "gtracectl: ") == r.err, "case %zu: %s", i, r.err);
                ck_assert_msg(strstr(r.err, "--help") != NULL, "case %zu: no hint: %s", i, r.err);
                ck_assert_uint_eq(r.out_len, 0);
                cp_result_free(&r);
        }
}
END_TEST

START_TEST(test_help_everywhere)
{
        static const char *const cmds[] = {"status", "list",     "snapshot", "view",
                                           "stats",  "validate", "export"};
        struct cp_result r;
        CTL(&r, "--help");
        expect(&r, 0, NULL);
        ck_assert(strstr(r.out, "Usage: gtracectl") != NULL);
        cp_result_free(&r);
        CTL(&r, "--version");
        expect(&r, 0, NULL);
        ck_assert(strncmp(r.out, "gtracectl ", 10) == 0);
        cp_result_free(&r);
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                CTL(&r, cmds[i], "--help");
                expect(&r, 0, NULL);
                ck_assert_msg(strstr(r.out, cmds[i]) && strstr(r.out, "Usage: gtracectl"),
                              "%s --help: %s", cmds[i], r.out);
                cp_result_free(&r);
                CTL(&r, "help", cmds[i]);
                expect(&r, 0, NULL);
                cp_result_free(&r);
        }
}
END_TEST

/* ---- files ---- */

START_TEST(test_file_missing)
{
        struct cp_result r;
        CTL(&r, "stats", "missing.gtrace");
        expect(&r, 1, "cannot open missing.gtrace: No such file or directory");
        cp_result_free(&r);
        CTL(&r, "view", scratch);
        expect(&r, 1, "cannot open");
        cp_result_free(&r);
}
END_TEST

START_TEST(test_file_unreadable)
{
        char path[700];
        (void)snprintf(path, sizeof(path), "%s/secret.gtrace", scratch);
        cp_make_dump("GENERATION 1 1\nCLOCK 1000000000 0 0 0 0 10\nEND_OF_GENERATION\n", path, "x");
        ck_assert_int_eq(chmod(path, 0600), 0);
        struct cp_result r;
        ctl_as(NOBODY, &r, "validate", path, (const char *)NULL);
        expect(&r, 1, "Permission denied");
        cp_result_free(&r);
}
END_TEST

START_TEST(test_file_corrupt)
{
        char path[700];
        struct cp_result r;

        (void)snprintf(path, sizeof(path), "%s/text.gtrace", scratch);
        ck_assert_int_eq(cp_write(path, "hello, world\n", 13), 0);
        CTL(&r, "validate", "text.gtrace");
        expect(&r, 1, "not a gtrace dump");
        cp_result_free(&r);

        /* A real dump cut in the middle of a generation. */
        (void)snprintf(path, sizeof(path), "%s/cut.gtrace", scratch);
        cp_make_dump("GENERATION 1 1\nCLOCK 1000000000 0 0 0 0 10\nSTRING 1 \"a name\"\n"
                     "THREAD 5 1\nBATCH 5 0 0 {\n THREAD_STATUS 0 0 0 0\n REGION_BEGIN 1 1\n"
                     " REGION_END 2\n}\nEND_OF_GENERATION\n",
                     path, "x");
        size_t len;
        char *data = cp_read(path, &len);
        ck_assert_int_eq(cp_write(path, data, len - 20), 0);
        free(data);
        static const char *const cmds[] = {"validate", "view", "stats", "export"};
        for (size_t i = 0; i < 4; i++) {
                if (i == 3)
                        CTL(&r, "export", "cut.gtrace", "--format", "chrome", "-o", "out.json");
                else
                        CTL(&r, cmds[i], "cut.gtrace");
                expect(&r, 1, "cut.gtrace");
                ck_assert_msg(strstr(r.err, "byte") != NULL, "%s: no offset: %s", cmds[i], r.err);
                cp_result_free(&r);
        }
        /* The failed export left no out.json behind. */
        (void)snprintf(path, sizeof(path), "%s/out.json", scratch);
        ck_assert_int_ne(access(path, F_OK), 0);

        /* --json still prints one document on stdout. */
        CTL(&r, "--json", "validate", "cut.gtrace");
        expect(&r, 1, NULL);
        json_t *j = json_loads(r.out, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert(json_is_false(json_object_get(j, "valid")));
        ck_assert(json_is_integer(json_object_get(j, "offset")));
        json_decref(j);
        cp_result_free(&r);
}
END_TEST

START_TEST(test_export_output_unwritable)
{
        char path[700];
        (void)snprintf(path, sizeof(path), "%s/ok.gtrace", scratch);
        cp_make_dump("GENERATION 1 1\nCLOCK 1000000000 0 0 0 0 10\nEND_OF_GENERATION\n", path, "x");
        struct cp_result r;
        CTL(&r, "export", "ok.gtrace", "--format", "chrome", "-o", "/nonexistent-dir/out.json");
        expect(&r, 1, "cannot create /nonexistent-dir/out.json");
        cp_result_free(&r);
}
END_TEST

/* ---- the daemon ---- */

START_TEST(test_daemon_absent)
{
        char sock[700];
        (void)snprintf(sock, sizeof(sock), "%s/nobody-home.sock", scratch);
        struct cp_result r;
        CTL(&r, "--socket", sock, "status");
        char want[800];
        (void)snprintf(want, sizeof(want), "gtraced is not running at %s", sock);
        expect(&r, 1, want);
        ck_assert(strstr(r.err, "systemctl start gtraced") != NULL);
        cp_result_free(&r);

        /* GTRACED_SOCKET is honoured the same way, and --json reports it too. */
        const char *argv[] = {gtracectl, "list", "--json", NULL};
        char envvar[800];
        (void)snprintf(envvar, sizeof(envvar), "GTRACED_SOCKET=%s", sock);
        const char *env[] = {envvar, NULL};
        cp_run(argv, env, scratch, (uid_t)-1, &r);
        expect(&r, 1, want);
        json_t *j = json_loads(r.out, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(json_string_value(json_object_get(j, "errno")), "ECONNREFUSED");
        json_decref(j);
        cp_result_free(&r);
}
END_TEST

START_TEST(test_daemon_errors)
{
        struct dh_daemon d = {0};
        struct cp_result r;
        dh_start_ok(&d, NULL);

        CTL(&r, "--socket", d.sock, "snapshot", "999999");
        expect(&r, 1, "no traced process with pid 999999");
        ck_assert(strstr(r.err, "gtracectl list") != NULL);
        ck_assert_uint_eq(r.out_len, 0);
        cp_result_free(&r);

        CTL(&r, "--socket", d.sock, "snapshot", "999999", "-o", "mine.gtrace");
        expect(&r, 1, "no traced process");
        cp_result_free(&r);
        char path[700];
        (void)snprintf(path, sizeof(path), "%s/mine.gtrace", scratch);
        ck_assert_msg(access(path, F_OK) != 0, "a failed snapshot left its -o file");

        CTL(&r, "--socket", d.sock, "snapshot", "1", "-o", "/nonexistent-dir/x.gtrace");
        expect(&r, 1, "cannot create /nonexistent-dir/x.gtrace");
        cp_result_free(&r);

        /* Permission denied on the socket: a user who may not connect. */
        ck_assert_int_eq(chmod(d.sock, 0600), 0);
        ctl_as(NOBODY, &r, "--socket", d.sock, "status", (const char *)NULL);
        expect(&r, 1, "not allowed to connect to gtraced");
        cp_result_free(&r);
        ck_assert_int_eq(chmod(d.sock, 0666), 0);

        /* The same daemon answers status fine. */
        CTL(&r, "--socket", d.sock, "status");
        expect(&r, 0, NULL);
        ck_assert(strstr(r.out, "gtraced ") == r.out);
        cp_result_free(&r);

        dh_finish(&d);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("cli-errors");
        TCase *tc = tcase_create("usage");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_usage_errors);
        tcase_add_test(tc, test_help_everywhere);
        suite_add_tcase(s, tc);
        tc = tcase_create("files");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_file_missing);
        tcase_add_test(tc, test_file_unreadable);
        tcase_add_test(tc, test_file_corrupt);
        tcase_add_test(tc, test_export_output_unwritable);
        suite_add_tcase(s, tc);
        tc = tcase_create("daemon");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_daemon_absent);
        tcase_add_test(tc, test_daemon_errors);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
