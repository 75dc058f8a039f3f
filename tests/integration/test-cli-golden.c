/* SPDX-License-Identifier: MIT */
/*
 * Golden tests of gtracectl's file tools: view, view --last, stats, validate
 * and export, on small hand-written dumps.
 *
 * Each directory of tests/data/golden/ is a case:
 *
 *   input.txt   the trace, in genbuild's text form (tests/common/genbuild.h);
 *               compiled into dump.gtrace with a fixed test META
 *   commands    one line per check: EXPECTED-FILE EXIT-CODE ARGS...
 *               e.g. "view-last.txt 0 view dump.gtrace --last"
 *   <expected>  gtracectl's exact stdout for that line
 *
 * gtracectl runs in a scratch directory holding dump.gtrace, with TZ=UTC so
 * wall-clock times do not depend on the machine.  JSON outputs are also
 * checked to parse.  To accept new output after a deliberate change, run
 * the test with GTRACE_GOLDEN_UPDATE=1 and review the diff.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-proc.h"

#define MAX_CASES 64
#define MAX_ARGS  24

static char *cases[MAX_CASES];
static int ncases;

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void find_cases(void)
{
        char dir[512];
        cp_source_path("tests/data/golden", dir, sizeof(dir));
        DIR *d = opendir(dir);
        struct dirent *e;
        if (!d) {
                fprintf(stderr, "test-cli-golden: no golden cases in %s\n", dir);
                exit(EXIT_FAILURE);
        }
        while ((e = readdir(d)) && ncases < MAX_CASES)
                if (e->d_name[0] != '.')
                        cases[ncases++] = strdup(e->d_name);
        closedir(d);
        qsort(cases, (size_t)ncases, sizeof(cases[0]), cmp_str);
}

/* Shows where two texts first differ, with a little context. */
static void report_diff(const char *name, const char *want, const char *got)
{
        size_t i = 0, line = 1;
        while (want[i] && want[i] == got[i]) {
                if (want[i] == '\n')
                        line++;
                i++;
        }
        size_t from = i;
        while (from > 0 && want[from - 1] != '\n')
                from--;
        fprintf(stderr, "%s: first difference at line %zu:\n  want: %.200s\n  got:  %.200s\n", name,
                line, want + from, got + from);
}

static void run_case(const char *name)
{
        char src[512], path[700], gtracectl[512];
        char *tmp = cp_tmpdir("golden");
        int update = getenv("GTRACE_GOLDEN_UPDATE") != NULL;

        cp_source_path("tests/data/golden", src, sizeof(src));
        (void)snprintf(path, sizeof(path), "%s/%s/input.txt", src, name);
        char *input = cp_read(path, NULL);
        ck_assert_msg(input != NULL, "%s: cannot read %s", name, path);
        (void)snprintf(path, sizeof(path), "%s/dump.gtrace", tmp);
        cp_make_dump(input, path, name);
        free(input);

        (void)snprintf(path, sizeof(path), "%s/%s/commands", src, name);
        char *commands = cp_read(path, NULL);
        ck_assert_msg(commands != NULL, "%s: cannot read %s", name, path);
        cp_build_path("client/gtracectl", gtracectl, sizeof(gtracectl));

        int checks = 0;
        char *save = NULL;
        for (char *line = strtok_r(commands, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                if (line[0] == '#' || line[0] == '\0')
                        continue;
                const char *argv[MAX_ARGS + 2];
                char *words[MAX_ARGS + 2];
                int nw = 0;
                char *wsave = NULL;
                for (char *w = strtok_r(line, " ", &wsave); w && nw < MAX_ARGS;
                     w = strtok_r(NULL, " ", &wsave))
                        words[nw++] = w;
                ck_assert_msg(nw >= 3, "%s: bad commands line", name);
                const char *expected = words[0];
                int want_status = atoi(words[1]);
                argv[0] = gtracectl;
                for (int i = 2; i < nw; i++)
                        argv[i - 1] = words[i];
                argv[nw - 1] = NULL;

                static const char *const env[] = {"TZ=UTC", "GTRACED_SOCKET=/nonexistent", NULL};
                struct cp_result r;
                cp_run(argv, env, tmp, (uid_t)-1, &r);
                ck_assert_msg(r.status == want_status, "%s/%s: exit %d, want %d; stderr: %s", name,
                              expected, r.status, want_status, r.err);
                if (want_status == 0)
                        ck_assert_msg(r.err_len == 0, "%s/%s: unexpected stderr: %s", name,
                                      expected, r.err);
                if (strstr(expected, ".json")) {
                        json_error_t jerr;
                        json_t *j = json_loadb(r.out, r.out_len, 0, &jerr);
                        ck_assert_msg(j != NULL, "%s/%s: not JSON: line %d: %s", name, expected,
                                      jerr.line, jerr.text);
                        json_decref(j);
                }
                (void)snprintf(path, sizeof(path), "%s/%s/%s", src, name, expected);
                if (update) {
                        ck_assert_int_eq(cp_write(path, r.out, r.out_len), 0);
                } else {
                        char *want = cp_read(path, NULL);
                        ck_assert_msg(want != NULL,
                                      "%s: missing %s (GTRACE_GOLDEN_UPDATE=1 "
                                      "creates it)",
                                      name, path);
                        if (strcmp(want, r.out) != 0)
                                report_diff(path, want, r.out);
                        ck_assert_msg(strcmp(want, r.out) == 0, "%s/%s differs from %s", name,
                                      expected, path);
                        free(want);
                }
                cp_result_free(&r);
                checks++;
        }
        ck_assert_msg(checks > 0, "%s: no checks in commands", name);
        free(commands);
        cp_rmtree(tmp);
        free(tmp);
}

START_TEST(test_golden_case)
{
        run_case(cases[_i]);
}
END_TEST

int main(void)
{
        find_cases();
        Suite *s = suite_create("cli-golden");
        TCase *tc = tcase_create("golden");
        tcase_add_loop_test(tc, test_golden_case, 0, ncases);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        for (int i = 0; i < ncases; i++)
                free(cases[i]);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
