/* SPDX-License-Identifier: MIT */
/*
 * fr_dump_parse_threaded() against fr_dump_parse(): whatever the dump (every
 * parser and golden case, valid or broken, and a large generated one that
 * fills many queue chunks), the two must make the same callbacks with the
 * same arguments in the same order and end with the same result and error;
 * a callback that stops early stops both the same way; and the Chrome
 * export is byte-identical with one thread and with two.
 *
 * Each run records everything a callback can see (the generation's fields,
 * every event field, the text behind every string and bytes argument, the
 * generation's strings, stacks and thread names looked up through it), and
 * the two records are compared byte for byte.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flightrec/export.h"
#include "flightrec/reader.h"
#include "genbuild.h"

/* ---- a growable text log of callbacks ---- */

struct rec {
        char *buf;
        size_t len, cap;
        long events;
        long stop_at; /* the event callback returning 7 (-1: never) */
};

static void rec_put(struct rec *r, const char *s, size_t n)
{
        if (r->len + n + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                while (cap < r->len + n + 1)
                        cap *= 2;
                r->buf = realloc(r->buf, cap);
                ck_assert_ptr_nonnull(r->buf);
                r->cap = cap;
        }
        memcpy(r->buf + r->len, s, n);
        r->len += n;
        r->buf[r->len] = '\0';
}

#define ULL(x) ((unsigned long long)(x))

static void rec_u64(struct rec *r, uint64_t v)
{
        rec_put(r, (const char *)&v, sizeof(v));
}

/* A string with its length (NULL and "" differ). */
static void rec_str(struct rec *r, const char *s, size_t n)
{
        rec_u64(r, s ? n : UINT64_MAX);
        if (s)
                rec_put(r, s, n);
}

static int on_begin(void *ctx, const struct fr_generation *g)
{
        struct rec *r = ctx;
        const uint64_t v[] = {1,
                              g->gen,
                              g->pid,
                              g->offset,
                              g->size,
                              g->gens_lost,
                              g->gens_lost_bytes,
                              g->lost,
                              g->nbatches,
                              g->nevents,
                              g->nthreads,
                              g->clock.freq,
                              g->clock.ref,
                              g->clock.mono_ns,
                              g->clock.wall_ns,
                              g->clock.start,
                              g->clock.end};
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
                rec_u64(r, v[i]);
        for (size_t i = 0; i < g->nthreads; i++) {
                const char *n = fr_gen_thread_name(g, g->threads[i]);
                rec_u64(r, g->threads[i]);
                rec_str(r, n, n ? strlen(n) : 0);
        }
        return 0;
}

static int on_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct rec *r = ctx;

        if (r->events++ == r->stop_at)
                return 7;
        ck_assert_ptr_eq(ev->spec, proto_event_spec(ev->type));
        rec_u64(r, 2);
        rec_u64(r, ev->type);
        rec_u64(r, ev->tid);
        rec_u64(r, ev->time);
        rec_u64(r, ev->offset);
        for (unsigned i = 0; i < PROTO_MAX_ARGS; i++) {
                rec_u64(r, ev->args[i]);
                rec_str(r, ev->str[i], ev->str[i] ? strlen(ev->str[i]) : 0);
                rec_str(r, (const char *)ev->bytes[i], ev->bytes[i] ? (size_t)ev->args[i] : 0);
                /* The generation resolves the same id to the same text. */
                if (ev->str[i])
                        ck_assert_str_eq(fr_gen_string(g, ev->args[i]), ev->str[i]);
                if (i < ev->spec->nargs && ev->spec->args[i].kind == PA_STACK && ev->args[i]) {
                        const uint64_t *pcs;
                        size_t n;
                        ck_assert_int_eq(fr_gen_stack(g, ev->args[i], &pcs, &n), 0);
                        for (size_t k = 0; k < n; k++)
                                rec_u64(r, pcs[k]);
                }
        }
        return 0;
}

static int on_end(void *ctx, const struct fr_generation *g)
{
        rec_u64(ctx, 3);
        rec_u64(ctx, g->gen);
        return 0;
}

static const struct fr_callbacks record_cb = {on_begin, on_event, on_end};

/* Parses the dump in fd one way or the other; the log, result and error go
 * into *r, *ret_rc and the text of *ret_err. */
static void run(int fd, int threaded, long stop_at, struct rec *r, int *ret_rc, char *err_text,
                size_t err_len)
{
        struct fr_dump *d = NULL;
        struct fr_error err;
        int dfd = dup(fd);

        ck_assert_int_ge(dfd, 0);
        ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
        memset(r, 0, sizeof(*r));
        r->stop_at = stop_at;
        memset(&err, 0, sizeof(err));
        *ret_rc = fr_dump_open_fd(dfd, &d, &err);
        if (*ret_rc == 0) {
                *ret_rc = threaded ? fr_dump_parse_threaded(d, 0, &record_cb, r, &err)
                                   : fr_dump_parse(d, &record_cb, r, &err);
                fr_dump_free(d);
        }
        snprintf(err_text, err_len, "%d %llu %s", err.code, ULL(err.offset), err.msg);
}

static void check_same(int fd, const char *what, long stop_at)
{
        struct rec a, b;
        int rc_a, rc_b;
        char ea[512], eb[512];

        run(fd, 0, stop_at, &a, &rc_a, ea, sizeof(ea));
        run(fd, 1, stop_at, &b, &rc_b, eb, sizeof(eb));
        ck_assert_msg(rc_a == rc_b, "%s: result %d, threaded %d", what, rc_a, rc_b);
        ck_assert_msg(!strcmp(ea, eb), "%s: error \"%s\", threaded \"%s\"", what, ea, eb);
        ck_assert_msg(a.len == b.len && (a.len == 0 || !memcmp(a.buf, b.buf, a.len)),
                      "%s: the callbacks differ (%zu and %zu bytes of log)", what, a.len, b.len);
        free(a.buf);
        free(b.buf);
}

static int dump_memfd(const struct gb_blobs *b)
{
        int fd = memfd_create("dump", MFD_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(gb_dump_write_fd(fd, NULL, b), 0);
        return fd;
}

/* Every case directory under dir with a file named file: compiled, dumped
 * and parsed both ways.  Returns the number of cases. */
static int check_cases(const char *dir, const char *file)
{
        const char *src = getenv("GTRACE_TEST_SOURCE_DIR");
        char path[4096];
        struct dirent *de;
        int n = 0;

        ck_assert_ptr_nonnull(src);
        snprintf(path, sizeof(path), "%s/%s", src, dir);
        DIR *dd = opendir(path);
        ck_assert_ptr_nonnull(dd);
        while ((de = readdir(dd))) {
                struct gb_blobs b = {0};
                char err[256], *text;
                size_t len;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s/%s/%s", src, dir, de->d_name, file);
                text = gb_read_file(path, &len);
                if (!text)
                        continue;
                if (gb_compile(text, &b, err, sizeof(err)) == 0) {
                        int fd = dump_memfd(&b);
                        check_same(fd, de->d_name, -1);
                        close(fd);
                        n++;
                }
                gb_blobs_free(&b);
                free(text);
        }
        closedir(dd);
        return n;
}

START_TEST(test_parser_cases)
{
        ck_assert_int_gt(check_cases("tests/data/parser", "gen.txt"), 50);
}
END_TEST

START_TEST(test_golden_cases)
{
        ck_assert_int_gt(check_cases("tests/data/golden", "input.txt"), 5);
}
END_TEST

/* ---- a large dump: many generations, each many queue chunks of events ---- */

#define BIG_GENS 6
/* Per generation, about 13 events each: many queue chunks (a few under the
 * sanitizers, which are ten times slower). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define BIG_REQUESTS 400
#else
#define BIG_REQUESTS 1600
#endif

/*
 * Three threads: 100 creates a fiber and a task per request and logs, 200
 * runs each fiber (region, counter), blocks it and later exits it, 300
 * readies it.  A task and the "serve" region stay open across generations
 * (restated by status events); everything else lives in one generation.
 */
static void big_generation(struct gb_gen *g, uint64_t gen)
{
        uint64_t base = gen * 100000000ull, fiber0 = gen * 100000, task0 = gen * 100000;
        static const uint64_t pcs[] = {0x401000, 0x402000};

        gb_generation(g, gen, 4242);
        gb_clock(g, 1000000000, base, 5000000000ull + base, 1700000000000000000ull + base, base,
                 base + 90000000);
        gb_string(g, 1, "main");
        gb_string(g, 2, "worker");
        gb_string(g, 3, "io");
        gb_string(g, 4, "request");
        gb_string(g, 5, "serve");
        gb_string(g, 6, "depth");
        gb_string(g, 7, "net");
        gb_string(g, 8, "wait \"io\"");
        gb_string(g, 9, "job");
        gb_stack(g, 1, pcs, 2);
        gb_thread(g, 100, 1);
        gb_thread(g, 200, 2);
        gb_thread(g, 300, 3);

        gb_batch_begin(g, 0, base, 0);
        if (gen > 1)
                GB_EVENT(g, TASK_STATUS, base, 7, 0, 9, 0);
        gb_batch_end(g);

        gb_batch_begin(g, 100, base, 0);
        GB_EVENT(g, THREAD_STATUS, base, 0, 0, 0);
        if (gen > 1)
                GB_EVENT(g, REGION_STATUS, base, 5, 0);
        else
                GB_EVENT(g, REGION_BEGIN, base + 1, 5);
        if (gen == 1)
                GB_EVENT(g, TASK_BEGIN, base + 2, 7, 0, 9, 0);
        for (uint64_t i = 0; i < BIG_REQUESTS; i++) {
                uint64_t t = base + 10 + i * 20000;
                char msg[64];
                GB_EVENT(g, TASK_BEGIN, t, task0 + i + 100, 0, 4, 1);
                GB_EVENT(g, FIBER_CREATE, t + 1, fiber0 + i + 1, 4, 1);
                if (i % 7 == 0) {
                        snprintf(msg, sizeof(msg), "request %llu \xff", ULL(i));
                        GB_EVENT(g, LOG, t + 2, 7, GB_TEXT(msg), 1);
                }
        }
        gb_batch_end(g);

        /* Thread 200 and 300 in several batches each, interleaved. */
        for (int part = 0; part < 4; part++) {
                uint64_t lo = part * (BIG_REQUESTS / 4), hi = lo + BIG_REQUESTS / 4;
                gb_batch_begin(g, 200, base, 0);
                if (part == 0)
                        GB_EVENT(g, THREAD_STATUS, base, 0, 0, 0);
                for (uint64_t i = lo; i < hi; i++) {
                        uint64_t t = base + 10 + i * 20000 + 100, f = fiber0 + i + 1;
                        GB_EVENT(g, FIBER_RUN, t, f, 1);
                        GB_EVENT(g, REGION_BEGIN, t + 1, 4);
                        GB_EVENT(g, COUNTER, t + 2, 6, (uint64_t)(int64_t)(i % 5) - 2);
                        GB_EVENT(g, REGION_END, t + 3);
                        GB_EVENT(g, FIBER_BLOCK, t + 4, f, 2, 8, 1);
                        /* Ready again (by 300) before this; the clocks disagree. */
                        GB_EVENT(g, FIBER_RUN, t + 5000, f, 4);
                        GB_EVENT(g, TASK_END, t + 5001, task0 + i + 100);
                        GB_EVENT(g, FIBER_EXIT, t + 5002, f, 5);
                }
                gb_batch_end(g);
                gb_batch_begin(g, 300, base, 0);
                if (part == 0)
                        GB_EVENT(g, THREAD_STATUS, base, 0, 0, 0);
                for (uint64_t i = lo; i < hi; i++)
                        GB_EVENT(g, FIBER_READY, base + 10 + i * 20000 + 6000, fiber0 + i + 1, 3,
                                 0);
                gb_batch_end(g);
        }
        gb_end(g);
}

static int big_dump(void)
{
        struct gb_blobs b = {0};
        struct gb_gen g;

        b.v = calloc(BIG_GENS, sizeof(*b.v));
        ck_assert_ptr_nonnull(b.v);
        gb_gen_init(&g);
        for (uint64_t gen = 1; gen <= BIG_GENS; gen++) {
                gb_gen_reset(&g);
                big_generation(&g, gen);
                gb_buf_put(&b.v[b.n++], g.out.data, g.out.len);
        }
        gb_gen_done(&g);
        int fd = dump_memfd(&b);
        gb_blobs_free(&b);
        return fd;
}

START_TEST(test_big)
{
        int fd = big_dump();
        check_same(fd, "big", -1);
        close(fd);
}
END_TEST

/* A callback that stops: at the first event, one in the middle, the last. */
START_TEST(test_stop)
{
        static const long at[] = {0, 1, 4000, 30000, BIG_GENS * BIG_REQUESTS * 12 - 10};
        int fd = big_dump();
        for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
                check_same(fd, "stop", at[i]);
        close(fd);
}
END_TEST

/* The file cut short anywhere: the same generations, then the same error. */
START_TEST(test_truncated)
{
        int fd = big_dump();
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        for (int k = 1; k <= 7; k++) {
                off_t cut = st.st_size * k / 8 + k;
                char *buf = malloc((size_t)cut);
                ck_assert_ptr_nonnull(buf);
                ck_assert_int_eq(pread(fd, buf, (size_t)cut, 0), cut);
                int cfd = memfd_create("cut", MFD_CLOEXEC);
                ck_assert_int_ge(cfd, 0);
                ck_assert_int_eq(write(cfd, buf, (size_t)cut), cut);
                check_same(cfd, "truncated", -1);
                close(cfd);
                free(buf);
        }
        close(fd);
}
END_TEST

/* A broken event in a late generation, after many good ones. */
START_TEST(test_late_error)
{
        struct gb_blobs b = {0};
        struct gb_gen g;
        b.v = calloc(4, sizeof(*b.v));
        ck_assert_ptr_nonnull(b.v);
        gb_gen_init(&g);
        for (uint64_t gen = 1; gen <= 4; gen++) {
                gb_gen_reset(&g);
                if (gen < 4) {
                        big_generation(&g, gen);
                } else {
                        /* A fiber run twice: found while merging (-EPROTO). */
                        gb_generation(&g, gen, 4242);
                        gb_clock(&g, 1000000000, 0, 0, 0, 0, 1000);
                        gb_thread(&g, 100, 0);
                        gb_batch_begin(&g, 100, 0, 0);
                        GB_EVENT(&g, THREAD_STATUS, 0, 0, 0, 0);
                        GB_EVENT(&g, FIBER_CREATE, 1, 5, 0, 0);
                        GB_EVENT(&g, FIBER_RUN, 2, 5, 1);
                        GB_EVENT(&g, FIBER_RUN, 3, 5, 2);
                        gb_batch_end(&g);
                        gb_end(&g);
                }
                gb_buf_put(&b.v[b.n++], g.out.data, g.out.len);
        }
        gb_gen_done(&g);
        int fd = dump_memfd(&b);
        gb_blobs_free(&b);
        check_same(fd, "late error", -1);
        close(fd);
}
END_TEST

/* From a pipe (never a regular file: always two threads). */
START_TEST(test_pipe)
{
        int fd = big_dump(), p[2];
        struct rec a, b;
        int rc_a, rc_b;
        char ea[512];
        struct fr_dump *d;
        struct fr_error err;
        struct stat st;

        run(fd, 0, -1, &a, &rc_a, ea, sizeof(ea));
        ck_assert_int_eq(rc_a, 0);
        ck_assert_int_eq(fstat(fd, &st), 0);
        ck_assert_int_eq(pipe(p), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char buf[65536];
                ssize_t n;
                close(p[0]);
                lseek(fd, 0, SEEK_SET);
                while ((n = read(fd, buf, sizeof(buf))) > 0)
                        if (write(p[1], buf, (size_t)n) != n)
                                _exit(1);
                _exit(0);
        }
        close(p[1]);
        memset(&b, 0, sizeof(b));
        b.stop_at = -1;
        ck_assert_int_eq(fr_dump_open_fd(p[0], &d, &err), 0);
        /* A large min_bytes: a pipe has no size, so it still takes two threads. */
        rc_b = fr_dump_parse_threaded(d, UINT64_MAX, &record_cb, &b, &err);
        fr_dump_free(d);
        ck_assert_int_eq(rc_b, 0);
        ck_assert(a.len == b.len && !memcmp(a.buf, b.buf, a.len));
        free(a.buf);
        free(b.buf);
        close(fd);
}
END_TEST

/* The exported JSON, one thread and two. */
static char *export_text(int fd, unsigned threads, size_t *ret_len)
{
        struct fr_dump *d;
        struct fr_error err;
        struct fr_export_options o = {.producer = "test", .threads = threads};
        int dfd = dup(fd), out = memfd_create("json", MFD_CLOEXEC);
        struct stat st;

        ck_assert_int_ge(out, 0);
        ck_assert_int_eq(lseek(dfd, 0, SEEK_SET), 0);
        ck_assert_int_eq(fr_dump_open_fd(dfd, &d, &err), 0);
        ck_assert_msg(fr_export_chrome(d, out, &o, NULL, &err) == 0, "%s", err.msg);
        fr_dump_free(d);
        ck_assert_int_eq(fstat(out, &st), 0);
        char *buf = malloc((size_t)st.st_size + 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(pread(out, buf, (size_t)st.st_size, 0), st.st_size);
        close(out);
        *ret_len = (size_t)st.st_size;
        return buf;
}

START_TEST(test_export_identical)
{
        int fd = big_dump();
        size_t la, lb;
        char *a = export_text(fd, 1, &la), *b = export_text(fd, 2, &lb);
        ck_assert_uint_gt(la, 1000000);
        ck_assert_msg(la == lb && !memcmp(a, b, la), "JSON differs: %zu and %zu bytes", la, lb);
        free(a);
        free(b);
        close(fd);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("export-threaded");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_parser_cases);
        tcase_add_test(tc, test_golden_cases);
        tcase_add_test(tc, test_big);
        tcase_add_test(tc, test_pipe);
        tcase_add_test(tc, test_export_identical);
        suite_add_tcase(s, tc);
        TCase *te = tcase_create("errors");
        tcase_add_test(te, test_stop);
        tcase_add_test(te, test_truncated);
        tcase_add_test(te, test_late_error);
        suite_add_tcase(s, te);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
