/* SPDX-License-Identifier: MIT */
/*
 * The exported-symbol allowlist of libgtrace.so.
 *
 * libgtrace lives inside other people's processes, so every symbol it
 * exports is ABI and a chance to collide with the host program.  Three lists
 * must agree:
 *
 *   - what the shared library exports (`nm -D --defined-only libgtrace.so`),
 *   - runtime/exported-symbols.txt (the reviewed allowlist, sorted),
 *   - the functions declared with GTRACE_API in gtrace.h.
 *
 * A helper made non-static by accident, a function added to the header but
 * not exported, or one exported but not declared each fail here with the
 * names that differ.
 */
#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef GTRACE_SYMBOLS_LIB
#error "GTRACE_SYMBOLS_LIB must name libgtrace.so (tests/cmake/infra.cmake)"
#endif

#define MAX_SYMBOLS 1024
#define MAX_NAME 128
#define MAX_LINE 4096

struct names {
        size_t n;
        char *v[MAX_SYMBOLS];
};

static void names_add(struct names *s, const char *name, size_t len)
{
        ck_assert_msg(len > 0 && len < MAX_NAME, "symbol name of length %zu", len);
        ck_assert_msg(s->n < MAX_SYMBOLS, "more than %d symbols", MAX_SYMBOLS);
        s->v[s->n] = strndup(name, len);
        ck_assert_ptr_nonnull(s->v[s->n]);
        s->n++;
}

static void names_free(struct names *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->v[i]);
        s->n = 0;
}

static int cmp_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort(struct names *s)
{
        qsort(s->v, s->n, sizeof(s->v[0]), cmp_name);
}

/* Reports every name in one sorted list and not the other; returns the count. */
static size_t names_diff(const struct names *a, const char *a_what, const struct names *b,
                         const char *b_what)
{
        size_t i = 0, j = 0, bad = 0;

        while (i < a->n || j < b->n) {
                int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->v[i], b->v[j]);

                if (c < 0) {
                        fprintf(stderr, "  %s: in %s, not in %s\n", a->v[i++], a_what, b_what);
                        bad++;
                } else if (c > 0) {
                        fprintf(stderr, "  %s: in %s, not in %s\n", b->v[j++], b_what, a_what);
                        bad++;
                } else {
                        i++;
                        j++;
                }
        }
        return bad;
}

static int is_ident(char c)
{
        return isalnum((unsigned char)c) || c == '_';
}

/* runtime/exported-symbols.txt: one name a line, '#' comments, blank lines. */
static void read_allowlist(struct names *s, int *ret_sorted)
{
        char line[MAX_LINE];
        FILE *f = fopen(GTRACE_SYMBOLS_LIST, "re");

        ck_assert_msg(f, "cannot open %s: %s", GTRACE_SYMBOLS_LIST, strerror(errno));
        *ret_sorted = 1;
        while (fgets(line, sizeof(line), f)) {
                size_t len = strcspn(line, "\r\n");

                line[len] = '\0';
                if (len == 0 || line[0] == '#')
                        continue;
                for (size_t i = 0; i < len; i++)
                        ck_assert_msg(is_ident(line[i]), "%s: bad name '%s'", GTRACE_SYMBOLS_LIST, line);
                names_add(s, line, len);
        }
        fclose(f);
        for (size_t i = 1; i < s->n; i++)
                if (strcmp(s->v[i - 1], s->v[i]) >= 0)
                        *ret_sorted = 0;
}

/*
 * gtrace.h: every declaration starting with GTRACE_API; the name is the
 * identifier right before the first '(' (the header keeps each declaration
 * on one line, which this test also enforces by failing otherwise).
 */
static void read_header(struct names *s)
{
        char line[MAX_LINE];
        FILE *f = fopen(GTRACE_SYMBOLS_HEADER, "re");

        ck_assert_msg(f, "cannot open %s: %s", GTRACE_SYMBOLS_HEADER, strerror(errno));
        while (fgets(line, sizeof(line), f)) {
                const char *p = line, *paren, *end;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (strncmp(p, "GTRACE_API", 10) != 0 || is_ident(p[10]))
                        continue;
                paren = strchr(p, '(');
                ck_assert_msg(paren, "gtrace.h: GTRACE_API declaration not on one line: %s", line);
                end = paren;
                while (end > p && end[-1] == ' ')
                        end--;
                p = end;
                while (p > line && is_ident(p[-1]))
                        p--;
                names_add(s, p, (size_t)(end - p));
        }
        fclose(f);
}

/* Starts nm on the library (no shell: the path is passed as an argument)
 * with the defined dynamic symbols, their sizes too if `sizes`; returns its
 * output, which nm_close() closes. */
static FILE *nm_open(int sizes, pid_t *ret_pid)
{
        int fds[2];
        pid_t pid;
        FILE *f;

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                dup2(fds[1], STDOUT_FILENO);
                close(fds[0]);
                close(fds[1]);
                char *argv[6] = {"nm", "-D", "--defined-only"};
                int n = 3;
                if (sizes)
                        argv[n++] = "-S";
                argv[n++] = GTRACE_SYMBOLS_LIB;
                argv[n] = NULL;
                execvp("nm", argv);
                _exit(127);
        }
        close(fds[1]);
        f = fdopen(fds[0], "r");
        ck_assert_ptr_nonnull(f);
        *ret_pid = pid;
        return f;
}

static void nm_close(FILE *f, pid_t pid)
{
        int status;

        fclose(f);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nm -D --defined-only %s failed",
                      GTRACE_SYMBOLS_LIB);
}

/* The defined dynamic symbols.  Version nodes (type 'A', "GTRACE_0") are not
 * symbols anyone can link against and are skipped; "@@VERSION" suffixes are
 * cut. */
static void read_nm(struct names *s, struct names *not_functions)
{
        char line[MAX_LINE];
        pid_t pid;
        FILE *f = nm_open(0, &pid);

        while (fgets(line, sizeof(line), f)) {
                char type, name[MAX_NAME];
                size_t len;

                /* "0000000000001234 T gtrace_start@@GTRACE_0" */
                if (sscanf(line, "%*s %c %127s", &type, name) != 2)
                        continue;
                if (type == 'A')
                        continue;
                len = strcspn(name, "@");
                names_add(s, name, len);
                if (type != 'T')
                        names_add(not_functions, name, len);
        }
        nm_close(f, pid);
}

START_TEST(test_exports_match_allowlist)
{
        struct names lib = { 0 }, list = { 0 }, odd = { 0 };
        int sorted;
        size_t bad;

        read_nm(&lib, &odd);
        read_allowlist(&list, &sorted);
        names_sort(&lib);
        names_sort(&list);
        bad = names_diff(&lib, "libgtrace.so", &list, "exported-symbols.txt");
        ck_assert_msg(bad == 0, "%zu symbol(s) differ between libgtrace.so and the allowlist", bad);
        for (size_t i = 0; i < odd.n; i++)
                fprintf(stderr, "  %s: exported, but not a function\n", odd.v[i]);
        ck_assert_msg(odd.n == 0, "libgtrace.so exports data or weak symbols");
        names_free(&lib);
        names_free(&list);
        names_free(&odd);
}
END_TEST

START_TEST(test_allowlist_matches_header)
{
        struct names hdr = { 0 }, list = { 0 };
        int sorted;
        size_t bad;

        read_header(&hdr);
        read_allowlist(&list, &sorted);
        ck_assert_msg(sorted, "exported-symbols.txt is not sorted or has duplicates");
        names_sort(&hdr);
        bad = names_diff(&hdr, "gtrace.h", &list, "exported-symbols.txt");
        ck_assert_msg(bad == 0, "%zu name(s) differ between gtrace.h and the allowlist", bad);
        for (size_t i = 0; i < hdr.n; i++)
                ck_assert_msg(strncmp(hdr.v[i], "gtrace_", 7) == 0, "public name without gtrace_: %s",
                              hdr.v[i]);
        names_free(&hdr);
        names_free(&list);
}
END_TEST

/*
 * The functions with an event fast path lie in one page of code (their
 * section starts one: runtime/trace.c, GT_FAST_TEXT), so that a traced
 * server's events touch one page of the library's code.  Sanitizer builds
 * carry their instrumentation in the same functions and need not fit: the
 * test is not registered there.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FAST_PAGE_CHECKED 0
#else
#define FAST_PAGE_CHECKED 1
#endif
START_TEST(test_fast_paths_share_a_page)
{
        static const char *const fast[] = {
                "gtrace_region_begin", "gtrace_region_end", "gtrace_counter",
                "gtrace_log",          "gtrace_fiber_run",  "gtrace_fiber_yield",
        };
        unsigned long long lo = ~0ull, hi = 0;
        unsigned found = 0;
        char line[MAX_LINE];
        pid_t pid;
        FILE *f = nm_open(1, &pid);

        while (fgets(line, sizeof(line), f)) {
                unsigned long long addr, size;
                char type, name[MAX_NAME];

                /* "000000000000f000 0000000000000254 T gtrace_region_begin" */
                if (sscanf(line, "%llx %llx %c %127s", &addr, &size, &type, name) != 4)
                        continue;
                name[strcspn(name, "@")] = '\0';
                for (size_t i = 0; i < sizeof(fast) / sizeof(fast[0]); i++) {
                        if (strcmp(name, fast[i]) != 0)
                                continue;
                        found++;
                        lo = addr < lo ? addr : lo;
                        hi = addr + size > hi ? addr + size : hi;
                }
        }
        nm_close(f, pid);
        ck_assert_uint_eq(found, sizeof(fast) / sizeof(fast[0]));
        ck_assert_msg(lo / 4096 == (hi - 1) / 4096,
                      "the fast paths span %#llx..%#llx, more than one page", lo, hi);
}
END_TEST

static Suite *symbols_suite(void)
{
        Suite *s = suite_create("runtime-symbols");
        TCase *tc = tcase_create("abi");

        tcase_add_test(tc, test_exports_match_allowlist);
        tcase_add_test(tc, test_allowlist_matches_header);
        if (FAST_PAGE_CHECKED)
                tcase_add_test(tc, test_fast_paths_share_a_page);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(symbols_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
