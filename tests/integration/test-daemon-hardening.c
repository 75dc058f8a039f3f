/* SPDX-License-Identifier: MIT */
/*
 * The release build's hardening, read back from the binaries with readelf:
 * gtraced, gtracectl and libgtrace.so are position independent (PIE for
 * the programs), fully RELRO (a GNU_RELRO segment and BIND_NOW, so the GOT
 * is read-only after start), have a non-executable stack and no text
 * relocations, call __stack_chk_fail (stack protector) and fortified libc
 * entry points (__*_chk, _FORTIFY_SOURCE).  cmake/GtraceTarget.cmake applies
 * the flags; this test is registered only for builds that get them
 * (release types without a sanitizer).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char out[1 << 20];

/* readelf OPTS FILE into out; 0 when readelf ran fine. */
static int readelf(const char *opts, const char *file)
{
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "readelf -W %s '%s' 2>&1", opts, file);
        FILE *f = popen(cmd, "r");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        return pclose(f);
}

static int has(const char *needle)
{
        return strstr(out, needle) != NULL;
}

/* Counts distinct fortified functions (__xxx_chk, not __stack_chk_fail). */
static int fortified(void)
{
        int n = 0;
        for (const char *p = out; (p = strstr(p, "_chk")) != NULL; p += 4) {
                const char *s = p;
                while (s > out && s[-1] != ' ')
                        s--;
                if (strncmp(s, "__", 2) == 0 && strncmp(s, "__stack_chk", 11) != 0 &&
                    (p[4] == '\n' || p[4] == '@' || p[4] == ' '))
                        n++;
        }
        return n;
}

static void check_binary(const char *path, int program)
{
        ck_assert_msg(access(path, R_OK) == 0, "%s not built", path);
        ck_assert_int_eq(readelf("-h", path), 0);
        ck_assert_msg(has("DYN ("), "%s is not position independent", path);

        ck_assert_int_eq(readelf("-d", path), 0);
        ck_assert_msg(has("BIND_NOW") || has("Flags: NOW"), "%s: no BIND_NOW (lazy binding)", path);
        if (program)
                ck_assert_msg(has(" PIE"), "%s: FLAGS_1 lacks PIE", path);
        ck_assert_msg(!has("TEXTREL"), "%s has text relocations", path);

        ck_assert_int_eq(readelf("-l", path), 0);
        ck_assert_msg(has("GNU_RELRO"), "%s: no GNU_RELRO segment", path);
        const char *stack = strstr(out, "GNU_STACK");
        ck_assert_msg(stack, "%s: no GNU_STACK header (executable stack)", path);
        const char *eol = strchr(stack, '\n');
        char line[256];
        snprintf(line, sizeof(line), "%.*s", eol ? (int)(eol - stack) : 200, stack);
        ck_assert_msg(strstr(line, "RWE") == NULL, "%s: executable stack: %s", path, line);

        ck_assert_int_eq(readelf("--dyn-syms", path), 0);
        ck_assert_msg(has("__stack_chk_fail"), "%s: no stack protector", path);
        ck_assert_msg(fortified() >= 1, "%s: no fortified libc call (_FORTIFY_SOURCE)", path);
}

START_TEST(test_gtraced_hardened)
{
        check_binary(GTRACE_HARDEN_GTRACED, 1);
}
END_TEST

START_TEST(test_gtracectl_hardened)
{
        check_binary(GTRACE_HARDEN_GTRACECTL, 1);
}
END_TEST

START_TEST(test_libgtrace_hardened)
{
        check_binary(GTRACE_HARDEN_LIBGTRACE, 0);
}
END_TEST

int main(void)
{
        if (system("readelf --version >/dev/null 2>&1") != 0) {
                fprintf(stderr, "skipped: readelf (binutils) is not installed\n");
                return 77;
        }
        Suite *s = suite_create("daemon-hardening");
        TCase *tc = tcase_create("elf");
        tcase_add_test(tc, test_gtraced_hardened);
        tcase_add_test(tc, test_gtracectl_hardened);
        tcase_add_test(tc, test_libgtrace_hardened);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
