/* SPDX-License-Identifier: MIT */
/*
 * Out of memory in the exporter and the text tools: for N = 0, 1, 2 ... the
 * N-th allocation made during the call fails, until the call succeeds.
 * Each failure must be a clean -ENOMEM (nothing else), and nothing may leak:
 * the test counts live allocations itself, because it replaces malloc and
 * friends for the whole program (so it is skipped under ASan, which owns
 * them).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/export.h"
#include "flightrec/reader.h"
#include "flightrec/view.h"
#include "genbuild.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CHAOS_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CHAOS_ENABLED 0
#endif
#endif
#ifndef CHAOS_ENABLED
#define CHAOS_ENABLED 1
#endif

#if CHAOS_ENABLED
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

/* Only while armed: count allocations, fail the fail_at-th one, and keep the
 * set of live blocks, so a leak and a free of a block we never handed out
 * (a double free, or memory from before the call) are both seen.  One
 * thread (Check runs each test in its own process). */
static int armed;
static long counter, fail_at = -1, live, foreign_frees;

#define LIVE_SLOTS 65536
static void *live_set[LIVE_SLOTS];

static size_t slot_of(void *p)
{
        return ((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 48;
}

static void live_add(void *p)
{
        size_t i = slot_of(p);
        while (live_set[i])
                i = (i + 1) % LIVE_SLOTS;
        live_set[i] = p;
        live++;
}

static int live_del(void *p)
{
        size_t i = slot_of(p);
        for (size_t k = 0; k < LIVE_SLOTS && live_set[i]; k++, i = (i + 1) % LIVE_SLOTS) {
                if (live_set[i] == p) {
                        /* Backward-shift delete keeps later probes reachable. */
                        size_t hole = i;
                        for (size_t j = (i + 1) % LIVE_SLOTS; live_set[j];
                             j = (j + 1) % LIVE_SLOTS) {
                                size_t home = slot_of(live_set[j]);
                                int move = hole <= j ? (home <= hole || home > j)
                                                     : (home <= hole && home > j);
                                if (move) {
                                        live_set[hole] = live_set[j];
                                        hole = j;
                                }
                        }
                        live_set[hole] = NULL;
                        live--;
                        return 1;
                }
        }
        return 0;
}

static int should_fail(void)
{
        if (!armed)
                return 0;
        return counter++ == fail_at;
}

void *malloc(size_t n)
{
        if (should_fail())
                return NULL;
        void *p = __libc_malloc(n);
        if (p && armed)
                live_add(p);
        return p;
}

void *calloc(size_t a, size_t b)
{
        if (should_fail())
                return NULL;
        void *p = __libc_calloc(a, b);
        if (p && armed)
                live_add(p);
        return p;
}

void *realloc(void *old, size_t n)
{
        if (should_fail())
                return NULL;
        void *p = __libc_realloc(old, n);
        if (p && armed) {
                if (old && !live_del(old))
                        foreign_frees++;
                live_add(p);
        }
        return p;
}

/* glibc's strdup allocates internally, out of our sight: route it here. */
char *strdup(const char *s)
{
        size_t n = strlen(s) + 1;
        char *p = malloc(n);
        if (p)
                memcpy(p, s, n);
        return p;
}

void free(void *p)
{
        if (p && armed && !live_del(p))
                foreign_frees++;
        __libc_free(p);
}
#endif

enum tool { T_EXPORT, T_LAST, T_STATS, T_VIEW };

#if CHAOS_ENABLED
static const char trace[] =
        "GENERATION 1 4242\n"
        "CLOCK 1000000000 0 5000000000 1700000000000000000 0 1000000\n"
        "STRING 1 \"main\"\nSTRING 2 \"a region name longer than thirty-two bytes\"\n"
        "STRING 3 \"net\"\nSTRING 4 \"depth\"\nSTRING 5 \"read\"\nSTRING 6 \"job\"\n"
        "STRING 7 \"lock\"\nSTRING 8 \"f\"\n"
        "THREAD 100 1\nTHREAD 200 1\n"
        "BATCH 100 0 0 {\n"
        "  THREAD_STATUS 0 0 0 0\n"
        "  REGION_BEGIN 1000 2\n  REGION_BEGIN 1100 3\n"
        "  LOG 2000 3 \"message\" 0\n  COUNTER 3000 4 7\n"
        "  TASK_BEGIN 4000 50 0 6 0\n  TASK_BEGIN 4500 51 50 6 0\n  TASK_END 5000 50\n"
        "  SYSCALL_BEGIN 7000 5 0\n  SYSCALL_END 8000\n"
        "  FIBER_CREATE 10000 1 8 0\n  FIBER_RUN 11000 1 1\n  FIBER_BLOCK 12000 1 2 7 0\n"
        "  REGION_END 13000\n"
        "}\n"
        "BATCH 200 0 0 {\n"
        "  THREAD_STATUS 0 0 0 0\n"
        "  FIBER_READY 20000 1 3 0\n  FIBER_RUN 21000 1 4\n  TASK_END 25000 51\n"
        "}\n"
        "END_OF_GENERATION\n"
        "---\n"
        "GENERATION 2 4242\n"
        "CLOCK 1000000000 1000000 5001000000 1700000000001000000 1000000 2000000\n"
        "STRING 1 \"main\"\nSTRING 2 \"a region name longer than thirty-two bytes\"\n"
        "STRING 8 \"f\"\n"
        "THREAD 200 1\n"
        "BATCH 200 1000000 0 {\n"
        "  THREAD_STATUS 1000000 1 0 0\n  FIBER_STATUS 1000000 1 2 8 0\n"
        "  REGION_BEGIN 1000100 2\n"
        "}\n"
        "END_OF_GENERATION\n";

static int dump_fd(void)
{
        struct gb_blobs b = {0};
        char err[256];
        ck_assert_msg(gb_compile(trace, &b, err, sizeof(err)) == 0, "%s", err);
        int fd = memfd_create("dump", MFD_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(gb_dump_write_fd(fd, NULL, &b), 0);
        gb_blobs_free(&b);
        return fd;
}

/* One run of a tool with the chaos armed; returns its result. */
static int run_tool(enum tool tool, int src)
{
        struct fr_dump *d = NULL;
        struct fr_error err;
        int r;
        int fd = dup(src);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
#if CHAOS_ENABLED
        armed = 1;
#endif
        r = fr_dump_open_fd(fd, &d, &err);
        if (r == 0) {
                switch (tool) {
                case T_EXPORT: {
                        int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
                        r = fr_export_chrome(d, out, NULL, NULL, &err);
                        close(out);
                        break;
                }
                case T_LAST: {
                        struct fr_last l;
                        r = fr_last_collect(d, &l, &err);
                        if (r == 0) {
                                FILE *f = fopen("/dev/null", "w");
                                if (f) {
                                        r = fr_last_print(&l, fr_dump_meta(d), f);
                                        fclose(f);
                                } else {
                                        r = -ENOMEM;
                                }
                                fr_last_done(&l);
                        }
                        break;
                }
                case T_STATS: {
                        struct fr_stats s;
                        r = fr_stats_collect(d, &s, &err);
                        break;
                }
                case T_VIEW: {
                        FILE *f = fopen("/dev/null", "w");
                        if (!f) {
                                r = -ENOMEM;
                                break;
                        }
                        r = fr_view_print(d, NULL, f, &err);
                        fclose(f);
                        break;
                }
                }
                fr_dump_free(d);
        }
#if CHAOS_ENABLED
        armed = 0;
#endif
        return r;
}

#endif

START_TEST(test_chaos)
{
#if !CHAOS_ENABLED
        if (_i == 0)
                printf("export-chaos: skipped under a sanitizer (it replaces malloc)\n");
#else
        static const char *const names[] = {"export", "view --last", "stats", "view"};
        int src = dump_fd();
        enum tool tool = (enum tool)_i;
        for (long n = 0;; n++) {
                counter = 0;
                fail_at = n;
                live = 0;
                foreign_frees = 0;
                memset(live_set, 0, sizeof(live_set));
                int r = run_tool(tool, src);
                ck_assert_msg(live == 0, "%s: allocation %ld failing leaked %ld blocks",
                              names[tool], n, live);
                ck_assert_msg(foreign_frees == 0,
                              "%s: allocation %ld failing: %ld frees of blocks not allocated "
                              "during the call",
                              names[tool], n, foreign_frees);
                if (r == 0) {
                        /* Sanity: the run did allocate, so failures were injected. */
                        ck_assert_msg(n > 10, "%s: only %ld allocations?", names[tool], n);
                        printf("%s: every one of %ld allocations failed once, cleanly\n",
                               names[tool], n);
                        break;
                }
                /* fopen in the tool itself fails the same way as our allocations. */
                ck_assert_msg(r == -ENOMEM || r == -EIO,
                              "%s: allocation %ld failing gave %d, not -ENOMEM", names[tool], n, r);
                ck_assert_msg(n < 100000, "%s: never succeeds", names[tool]);
        }
        close(src);
#endif
}
END_TEST

int main(void)
{
        Suite *s = suite_create("export-chaos");
        TCase *tc = tcase_create("errors");
        tcase_add_loop_test(tc, test_chaos, T_EXPORT, T_VIEW + 1);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
