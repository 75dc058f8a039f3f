/* SPDX-License-Identifier: MIT */
/* gtraced's settings and small helpers: sizes, flags, config file, defaults,
 * UTF-8 sanitising. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gtraced.h"

START_TEST(test_sizes)
{
        uint64_t v;
        ck_assert_int_eq(gd_parse_size("0", &v), 0);
        ck_assert_uint_eq(v, 0);
        ck_assert_int_eq(gd_parse_size("4096", &v), 0);
        ck_assert_uint_eq(v, 4096);
        ck_assert_int_eq(gd_parse_size("4K", &v), 0);
        ck_assert_uint_eq(v, 4096);
        ck_assert_int_eq(gd_parse_size("64m", &v), 0);
        ck_assert_uint_eq(v, 64ull << 20);
        ck_assert_int_eq(gd_parse_size("2G", &v), 0);
        ck_assert_uint_eq(v, 2ull << 30);
        const char *bad[] = {"", "-1", "+5", " 5", "5 ", "1T", "12X", "K", "1KB", "0x10"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(gd_parse_size(bad[i], &v) < 0, "'%s' accepted", bad[i]);
        ck_assert_int_eq(gd_parse_size("18446744073709551615G", &v), -ERANGE);
        ck_assert_int_eq(gd_parse_size("99999999999999999999", &v), -EINVAL);
}
END_TEST

static int parse(struct gd_config *c, const char *const *args)
{
        char *argv[32] = {"gtraced", "--config", "/dev/null"};
        int n = 3;
        for (int i = 0; args[i]; i++)
                argv[n++] = (char *)(uintptr_t)args[i];
        argv[n] = NULL;
        return gd_config_parse(c, n, argv);
}

START_TEST(test_flags)
{
        struct gd_config c;
        const char *none[] = {"--socket", "/tmp/x.sock", "--dump-dir", "/tmp/d", NULL};
        ck_assert_int_eq(parse(&c, none), 0);
        ck_assert_uint_eq(c.generations, GD_DEFAULT_GENERATIONS);
        ck_assert_uint_eq(c.max_process_bytes, GD_DEFAULT_MAX_PROCESS_BYTES);
        ck_assert_uint_eq(c.max_total_bytes, GD_DEFAULT_MAX_TOTAL_BYTES);
        ck_assert_uint_eq(c.retain_exited_s, 600);
        ck_assert_uint_eq(c.flush_timeout_ms, 250);
        ck_assert_uint_eq(c.crash_wait_ms, 1500);
        ck_assert_str_eq(c.socket_path, "/tmp/x.sock");
        gd_config_done(&c);

        const char *set[] = {"--socket", "/tmp/x.sock", "--dump-dir", "/tmp/d",
                             "--generations", "7", "--max-process-bytes", "1M",
                             "--max-total-bytes", "3G", "--retain-exited", "0",
                             "--flush-timeout", "1000", "--crash-wait", "0",
                             "--log-level", "debug", NULL};
        ck_assert_int_eq(parse(&c, set), 0);
        ck_assert_uint_eq(c.generations, 7);
        ck_assert_uint_eq(c.max_process_bytes, 1u << 20);
        ck_assert_uint_eq(c.max_total_bytes, 3ull << 30);
        ck_assert_uint_eq(c.retain_exited_s, 0);
        ck_assert_uint_eq(c.flush_timeout_ms, 1000);
        ck_assert_uint_eq(c.crash_wait_ms, 0);
        ck_assert_int_eq(c.log_level, LOG_DEBUG);
        gd_config_done(&c);

        const char *const bad[][3] = {
                {"--generations", "0", NULL},       {"--generations", "100001", NULL},
                {"--max-total-bytes", "1K", NULL},  {"--flush-timeout", "60001", NULL},
                {"--crash-wait", "60001", NULL},
                {"--log-level", "loud", NULL},      {"--nope", NULL, NULL},
                {"--generations", NULL, NULL},      {"stray", NULL, NULL},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(parse(&c, bad[i]), -EINVAL);
                gd_config_done(&c);
        }
}
END_TEST

START_TEST(test_default_socket)
{
        struct gd_config c;
        const char *args[] = {"--dump-dir", "/tmp/d", NULL};
        setenv("GTRACED_SOCKET", "/tmp/env.sock", 1);
        ck_assert_int_eq(parse(&c, args), 0);
        ck_assert_str_eq(c.socket_path, "/tmp/env.sock");
        gd_config_done(&c);
        unsetenv("GTRACED_SOCKET");
        if (geteuid() == 0) {
                ck_assert_int_eq(parse(&c, args), 0);
                ck_assert_str_eq(c.socket_path, "/run/gtraced/gtraced.sock");
                gd_config_done(&c);
        }
}
END_TEST

START_TEST(test_config_file_line_numbers)
{
        char path[] = "/tmp/gtraced-conf-XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        const char *text = "; settings\n\ngenerations = 9\n  retain-exited=5  \nbogus = 1\n";
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        struct gd_config c;
        char *argv[] = {"gtraced", "--config", path, "--socket", "/tmp/s", NULL};
        ck_assert_int_eq(gd_config_parse(&c, 5, argv), -EINVAL); /* line 5: bogus */
        gd_config_done(&c);

        FILE *f = fopen(path, "w");
        fprintf(f, "generations = 9\nretain-exited=5\nsocket = /tmp/from-file\n");
        fclose(f);
        char *argv2[] = {"gtraced", "--config", path, "--generations", "3", "--dump-dir", "/tmp/d",
                         NULL};
        ck_assert_int_eq(gd_config_parse(&c, 7, argv2), 0);
        ck_assert_uint_eq(c.generations, 3); /* the command line wins */
        ck_assert_uint_eq(c.retain_exited_s, 5);
        ck_assert_str_eq(c.socket_path, "/tmp/from-file");
        gd_config_done(&c);
        unlink(path);
}
END_TEST

/* Regression (fuzz-args): a parse that stopped inside a cluster of short
 * options ("-xyz") left getopt pointing into that argv, and the next parse
 * resumed from there instead of starting over. */
START_TEST(test_regress_getopt_state_reset)
{
        struct gd_config c;
        const char *cluster[] = {"-xyz", NULL};
        ck_assert_int_eq(parse(&c, cluster), -EINVAL);
        gd_config_done(&c);
        const char *good[] = {"--socket", "/tmp/s", "--dump-dir", "/tmp/d", NULL};
        ck_assert_int_eq(parse(&c, good), 0);
        gd_config_done(&c);
}
END_TEST

/* A config file must be text: no NUL hiding the rest of a line, no endless
 * device read forever, and the per-user settings are read like the rest. */
START_TEST(test_config_file_bounds)
{
        char path[] = "/tmp/gtraced-conf-XXXXXX";
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        static const char nul[] = "generations = 9\0 junk\n";
        ck_assert_int_eq(write(fd, nul, sizeof(nul) - 1), (ssize_t)sizeof(nul) - 1);
        close(fd);
        struct gd_config c;
        char *argv[] = {"gtraced", "--config", path, "--socket", "/tmp/s", "--dump-dir", "/tmp/d",
                        NULL};
        ck_assert_int_eq(gd_config_parse(&c, 7, argv), -EINVAL);
        gd_config_done(&c);
        char *dev[] = {"gtraced", "--config", "/dev/zero", "--socket", "/tmp/s", NULL};
        ck_assert_int_eq(gd_config_parse(&c, 5, dev), -EINVAL); /* larger than 1 MiB */
        gd_config_done(&c);

        FILE *f = fopen(path, "w");
        fprintf(f, "max-uid-bytes = 64K\nmax-uid-processes = 3\nmax-total-bytes = 1M");
        fclose(f); /* no newline at the end: still read */
        ck_assert_int_eq(gd_config_parse(&c, 7, argv), 0);
        ck_assert_uint_eq(c.max_uid_bytes, 64 << 10);
        ck_assert_uint_eq(c.max_uid_processes, 3);
        ck_assert_uint_eq(c.max_total_bytes, 1 << 20);
        gd_config_done(&c);
        /* Unset, the per-user bounds are the global ones. */
        char *bare[] = {"gtraced", "--config", "/dev/null", "--socket", "/tmp/s", "--dump-dir",
                        "/tmp/d", "--max-processes", "77", NULL};
        ck_assert_int_eq(gd_config_parse(&c, 9, bare), 0);
        ck_assert_uint_eq(c.max_uid_bytes, c.max_total_bytes);
        ck_assert_uint_eq(c.max_uid_processes, 77);
        gd_config_done(&c);
        unlink(path);
}
END_TEST

START_TEST(test_utf8_copy)
{
        char out[16];
        gd_utf8_copy(out, sizeof(out), "caf\xc3\xa9");
        ck_assert_str_eq(out, "caf\xc3\xa9");
        gd_utf8_copy(out, sizeof(out), "a\xff" "b\xc3");
        ck_assert_str_eq(out, "a?b?");
        gd_utf8_copy(out, sizeof(out), "\xed\xa0\x80"); /* a surrogate */
        ck_assert_str_eq(out, "???");
        gd_utf8_copy(out, 5, "abc\xe2\x82\xac"); /* no room for the euro sign */
        ck_assert_str_eq(out, "abc");
        char small[4];
        gd_strscpy(small, sizeof(small), "abcdef");
        ck_assert_str_eq(small, "abc");
        ck_assert_str_eq(gd_signal_name(11), "SIGSEGV");
        ck_assert_str_eq(gd_errno_name(-ENOSPC), "ENOSPC");
}
END_TEST

static Suite *config_suite(void)
{
        Suite *s = suite_create("daemon-config");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_sizes);
        tcase_add_test(tc, test_flags);
        tcase_add_test(tc, test_default_socket);
        tcase_add_test(tc, test_config_file_line_numbers);
        tcase_add_test(tc, test_utf8_copy);
        tcase_add_test(tc, test_regress_getopt_state_reset);
        tcase_add_test(tc, test_config_file_bounds);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(config_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
