/* SPDX-License-Identifier: MIT */
/*
 * Out-of-memory paths of the reader: make allocation N fail, for N = 0, 1,
 * 2 ... until the call succeeds.  Every failure must be a clean -ENOMEM
 * (with the error filled in), and nothing may leak (LeakSanitizer checks
 * that in the sanitizer build).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/reader.h"
#include "fralloc.h"
#include "genbuild.h"

/* Enough variety to exercise every table: strings, stacks, threads, fibers,
 * tasks, status events, several batches, and sizes that force the hash maps
 * to grow more than once. */
static void build(struct gb_gen *g)
{
        gb_gen_init(g);
        gb_generation(g, 1, 1);
        gb_clock(g, 1000000000, 0, 0, 0, 0, 1u << 30);
        for (uint64_t i = 1; i <= 200; i++) {
                char s[32];
                snprintf(s, sizeof(s), "string %llu", (unsigned long long)i);
                gb_string(g, i, s);
        }
        for (uint64_t i = 1; i <= 100; i++)
                gb_stack(g, i, (const uint64_t[]){i, i * 2, i * 3}, 3);
        for (uint64_t t = 1; t <= 40; t++)
                gb_thread(g, t, t);
        gb_batch_begin(g, 0, 0, 0);
        for (uint64_t k = 1; k <= 100; k++)
                GB_EVENT(g, TASK_STATUS, 0, k, 0, 1, 0);
        gb_batch_end(g);
        for (uint64_t t = 1; t <= 40; t++) {
                uint64_t f = 1000 + t;
                gb_batch_begin(g, t, 10, 1);
                GB_EVENT(g, THREAD_STATUS, 10, 0, 0, 0);
                GB_EVENT(g, REGION_STATUS, 10, 2, 1);
                GB_EVENT(g, FIBER_CREATE, 11, f, 3, t);
                GB_EVENT(g, FIBER_RUN, 12, f, 1);
                GB_EVENT(g, TASK_BEGIN, 13, 500 + t, t, 4, 0);
                GB_EVENT(g, LOG, 14, 5, GB_TEXT("some message"), t);
                GB_EVENT(g, FIBER_BLOCK, 15, f, 2, 6, 0);
                gb_batch_end(g);
                gb_batch_begin(g, t, 20, 0);
                GB_EVENT(g, TASK_END, 20, 500 + t);
                GB_EVENT(g, TASK_END, 21, t);
                GB_EVENT(g, REGION_END, 22);
                gb_batch_end(g);
        }
        gb_end(g);
}

START_TEST(test_generation_parse)
{
        struct gb_gen g;
        long n, failures = 0;
        int r;

        build(&g);
        r = fr_generation_parse(g.out.data, g.out.len, 0, NULL, NULL, NULL);
        ck_assert_int_eq(r, 0);
        for (n = 0;; n++) {
                struct fr_error err = {0};

                fr_alloc_fail_at(n);
                r = fr_generation_parse(g.out.data, g.out.len, 0, NULL, NULL, &err);
                fr_alloc_fail_at(-1);
                if (r == 0)
                        break;
                ck_assert_int_eq(r, -ENOMEM);
                ck_assert_int_eq(err.code, -ENOMEM);
                ck_assert_ptr_nonnull(strstr(err.msg, "out of memory"));
                failures++;
                ck_assert_int_lt(n, 10000);
        }
        ck_assert_int_gt(failures, 10);
        gb_gen_done(&g);
}
END_TEST

/* A reused parser survives a failure halfway through growing its tables. */
START_TEST(test_parser_after_failure)
{
        struct gb_gen g;
        struct fr_parser *p;

        build(&g);
        for (long n = 0; n < 60; n++) {
                struct fr_error err = {0};
                int r;

                fr_alloc_fail_at(-1);
                p = fr_parser_new();
                ck_assert_ptr_nonnull(p);
                fr_alloc_fail_at(n);
                r = fr_parser_parse(p, g.out.data, g.out.len, 0, NULL, NULL, &err);
                fr_alloc_fail_at(-1);
                ck_assert(r == 0 || r == -ENOMEM);
                ck_assert_int_eq(fr_parser_parse(p, g.out.data, g.out.len, 0, NULL, NULL, &err),
                                 0);
                fr_parser_free(p);
        }
        gb_gen_done(&g);
}
END_TEST

START_TEST(test_dump_parse)
{
        struct gb_gen g;
        struct gb_blobs b = {0};
        int fd = memfd_create("dump", MFD_CLOEXEC);
        long failures = 0;

        build(&g);
        b.v = calloc(2, sizeof(*b.v));
        b.n = 2;
        gb_buf_put(&b.v[0], g.out.data, g.out.len);
        gb_buf_put(&b.v[1], g.out.data, g.out.len);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(gb_dump_write_fd(fd, NULL, &b), 0);
        for (long n = 0;; n++) {
                struct fr_error err = {0};
                struct fr_dump *d = NULL;
                int r, dfd = dup(fd);

                ck_assert_int_ge(dfd, 0);
                ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
                fr_alloc_fail_at(n);
                r = fr_dump_open_fd(dfd, &d, &err);
                if (r == 0)
                        r = fr_dump_parse(d, NULL, NULL, &err);
                fr_dump_free(d);
                fr_alloc_fail_at(-1);
                if (r == 0)
                        break;
                ck_assert_int_eq(r, -ENOMEM);
                ck_assert_int_eq(err.code, -ENOMEM);
                failures++;
                ck_assert_int_lt(n, 10000);
        }
        ck_assert_int_gt(failures, 3);
        close(fd);
        gb_blobs_free(&b);
        gb_gen_done(&g);
}
END_TEST

/* The memory budget: a generation that needs more fails cleanly, and the
 * same parser succeeds once the budget is raised. */
START_TEST(test_memory_budget)
{
        struct gb_gen g;
        struct fr_parser *p = fr_parser_new();
        struct fr_error err = {0};

        build(&g);
        ck_assert_ptr_nonnull(p);
        fr_parser_set_max_memory(p, 16u << 10);
        ck_assert_int_eq(fr_parser_parse(p, g.out.data, g.out.len, 0, NULL, NULL, &err),
                         -EMSGSIZE);
        ck_assert_int_eq(err.code, -EMSGSIZE);
        ck_assert_ptr_nonnull(strstr(err.msg, "bytes of memory"));
        fr_parser_set_max_memory(p, FR_PARSER_MAX_MEMORY);
        ck_assert_int_eq(fr_parser_parse(p, g.out.data, g.out.len, 0, NULL, NULL, &err), 0);
        fr_parser_free(p);
        gb_gen_done(&g);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("flightrec-reader-chaos");
        TCase *tc = tcase_create("oom");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_generation_parse);
        tcase_add_test(tc, test_parser_after_failure);
        tcase_add_test(tc, test_dump_parse);
        tcase_add_test(tc, test_memory_budget);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
