/* SPDX-License-Identifier: MIT */
/*
 * proto_dump_write(): the .gtrace container as the crash handler writes it.
 * The bytes are checked here against the layout in docs/format.md by hand,
 * independently of the reader (test-flightrec-reader-dump does the round
 * trip through fr_dump_*).
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "genbuild.h"
#include "proto/dumpfile.h"
#include "proto/varint.h"

/* Writes through a memfd and returns the file's bytes; every file is
 * exactly as long as proto_dump_size() said it would be. */
static uint8_t *write_dump(const struct proto_dump_meta *m, const struct iovec *g, size_t n,
                           size_t *ret_len)
{
        int fd = memfd_create("dump", MFD_CLOEXEC);
        off_t size;
        uint8_t *buf;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(proto_dump_write(fd, m, g, n), 0);
        size = lseek(fd, 0, SEEK_END);
        ck_assert_int_gt(size, 0);
        ck_assert_int_eq(proto_dump_size(m, g, n), size);
        buf = malloc((size_t)size);
        ck_assert_int_eq(pread(fd, buf, (size_t)size, 0), size);
        close(fd);
        *ret_len = (size_t)size;
        return buf;
}

static uint64_t get_uv(const uint8_t **p, const uint8_t *end)
{
        uint64_t v;
        ck_assert_int_eq(proto_get_uvarint(p, end, &v), 0);
        return v;
}

struct field {
        const uint8_t *val;
        uint64_t len;
};

START_TEST(test_layout)
{
        static uint8_t g1[] = {1, 2, 3}, g2[] = {4, 5, 6, 7, 8};
        struct iovec gens[] = {{g1, sizeof(g1)}, {g2, sizeof(g2)}};
        struct proto_dump_meta m = {
                .pid = 4242, .uid = 1000, .dump_time_ns = 1700000000000000000ull,
                .start_time_ns = 5, .gens_dropped = 3, .signal = 11, .flushed = 1,
                .command = "server", .executable = "/usr/bin/server", .host = "box",
                .reason = "test", .origin = "crash", .producer = "libgtrace 0.1",
        };
        struct field f[256] = {{0}};
        size_t len;
        uint8_t *buf = write_dump(&m, gens, 2, &len);
        const uint8_t *p = buf, *end = buf + len, *mend;
        uint64_t mlen;

        ck_assert_mem_eq(buf, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);
        p += PROTO_DUMP_MAGIC_LEN;
        ck_assert_uint_eq(*p++, PROTO_DUMP_META);
        mlen = get_uv(&p, end);
        mend = p + mlen;
        ck_assert(mend <= end);
        while (p < mend) {
                uint8_t key = *p++;
                f[key].len = get_uv(&p, mend);
                f[key].val = p;
                p += f[key].len;
        }
        ck_assert_ptr_eq(p, mend);
#define INT_(k, want)                                                                              \
        do {                                                                                       \
                const uint8_t *q = f[k].val;                                                       \
                ck_assert_ptr_nonnull(q);                                                          \
                ck_assert_uint_eq(get_uv(&q, f[k].val + f[k].len), (want));                        \
                ck_assert_ptr_eq(q, f[k].val + f[k].len);                                          \
        } while (0)
#define TEXT_(k, want)                                                                             \
        do {                                                                                       \
                ck_assert_uint_eq(f[k].len, strlen(want));                                         \
                ck_assert_mem_eq(f[k].val, want, strlen(want));                                    \
        } while (0)
        INT_(PROTO_META_VERSION, PROTO_DUMP_VERSION);
        INT_(PROTO_META_PID, 4242);
        INT_(PROTO_META_UID, 1000);
        INT_(PROTO_META_DUMP_TIME, 1700000000000000000ull);
        INT_(PROTO_META_START_TIME, 5);
        INT_(PROTO_META_GENS_DROPPED, 3);
        INT_(PROTO_META_SIGNAL, 11);
        INT_(PROTO_META_FLUSHED, 1);
        TEXT_(PROTO_META_COMMAND, "server");
        TEXT_(PROTO_META_EXECUTABLE, "/usr/bin/server");
        TEXT_(PROTO_META_HOST, "box");
        TEXT_(PROTO_META_REASON, "test");
        TEXT_(PROTO_META_ORIGIN, "crash");
        TEXT_(PROTO_META_PRODUCER, "libgtrace 0.1");
#undef INT_
#undef TEXT_

        ck_assert_uint_eq(*p++, PROTO_DUMP_GENERATION);
        ck_assert_uint_eq(get_uv(&p, end), sizeof(g1));
        ck_assert_mem_eq(p, g1, sizeof(g1));
        p += sizeof(g1);
        ck_assert_uint_eq(*p++, PROTO_DUMP_GENERATION);
        ck_assert_uint_eq(get_uv(&p, end), sizeof(g2));
        ck_assert_mem_eq(p, g2, sizeof(g2));
        p += sizeof(g2);
        ck_assert_uint_eq(*p++, PROTO_DUMP_END);
        ck_assert_uint_eq(get_uv(&p, end), 1);
        ck_assert_uint_eq(get_uv(&p, end), 2);
        ck_assert_ptr_eq(p, end);
        free(buf);
}
END_TEST

/* NULL meta and no generations: magic, META with only the version, END 0. */
START_TEST(test_minimal)
{
        static const uint8_t want[] = {'G', 'T', 'R', 'A', 'C', 'E', '\r', '\n',
                                       PROTO_DUMP_META, 3, PROTO_META_VERSION, 1,
                                       PROTO_DUMP_VERSION, PROTO_DUMP_END, 1, 0};
        size_t len;
        uint8_t *buf = write_dump(NULL, NULL, 0, &len);

        ck_assert_uint_eq(len, sizeof(want));
        ck_assert_mem_eq(buf, want, sizeof(want));
        free(buf);
}
END_TEST

/* A text longer than the limit is cut at PROTO_MAX_TEXT_BYTES, never inside
 * a UTF-8 sequence. */
START_TEST(test_text_truncation)
{
        size_t n = PROTO_MAX_TEXT_BYTES + 100, len;
        char *reason = malloc(n + 1);
        struct proto_dump_meta m = {.reason = reason};
        uint8_t *buf;
        const uint8_t *p, *end;

        /* "é" (2 bytes) repeated from an odd offset: byte 4096 is a continuation byte. */
        reason[0] = 'x';
        for (size_t i = 1; i + 1 < n; i += 2) {
                reason[i] = (char)0xc3;
                reason[i + 1] = (char)0xa9;
        }
        reason[n - 1] = 'y';
        reason[n] = '\0';
        buf = write_dump(&m, NULL, 0, &len);
        p = buf + PROTO_DUMP_MAGIC_LEN + 1;
        end = buf + len;
        (void)get_uv(&p, end);
        while (*p != PROTO_META_REASON) {
                uint64_t l;
                p++;
                l = get_uv(&p, end);
                p += l;
        }
        p++;
        ck_assert_uint_eq(get_uv(&p, end), PROTO_MAX_TEXT_BYTES - 1);
        ck_assert_uint_eq(p[PROTO_MAX_TEXT_BYTES - 2], 0xa9); /* ends on a whole character */
        free(buf);
        free(reason);
}
END_TEST

START_TEST(test_errors)
{
        static uint8_t byte = 0;
        struct iovec big = {&byte, (size_t)PROTO_MAX_GENERATION_BYTES + 1};
        struct iovec null_base = {NULL, 10};
        int fds[2];

        ck_assert_int_eq(proto_dump_write(-1, NULL, NULL, 0), -EINVAL);
        ck_assert_int_eq(proto_dump_write(1000000, NULL, NULL, 0), -EBADF);
        /* Refused before anything is written. */
        ck_assert_int_eq(pipe(fds), 0);
        ck_assert_int_eq(proto_dump_write(fds[1], NULL, &big, 1), -EMSGSIZE);
        ck_assert_int_eq(proto_dump_write(fds[1], NULL, &null_base, 1), -EINVAL);
        close(fds[1]);
        {
                char c;
                ck_assert_int_eq(read(fds[0], &c, 1), 0);
        }
        close(fds[0]);
        /* A reader that went away: EPIPE (SIGPIPE ignored). */
        signal(SIGPIPE, SIG_IGN);
        ck_assert_int_eq(pipe(fds), 0);
        close(fds[0]);
        ck_assert_int_eq(proto_dump_write(fds[1], NULL, NULL, 0), -EPIPE);
        close(fds[1]);
}
END_TEST

/*
 * Short writes and EINTR: a pipe drained by a thread while an interval timer
 * interrupts the writer over and over (handler without SA_RESTART).  Every
 * interrupted write(2) is either short or fails with EINTR; the file must
 * come out whole either way.
 */
static void on_alarm(int sig)
{
        (void)sig;
}

struct drain {
        int fd;
        struct gb_buf got;
};

static void *drain_main(void *arg)
{
        struct drain *d = arg;
        char tmp[3000]; /* small reads: the writer blocks often */
        ssize_t n;

        while ((n = read(d->fd, tmp, sizeof(tmp))) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                gb_buf_put(&d->got, tmp, (size_t)n);
        }
        return NULL;
}

START_TEST(test_short_writes)
{
        size_t n = 4u << 20, len;
        uint8_t *blob = malloc(n), *want;
        struct iovec gen = {blob, n};
        struct sigaction sa = {.sa_handler = on_alarm};
        struct itimerval it = {{0, 200}, {0, 200}};
        struct drain d = {0};
        pthread_t th;
        sigset_t block;
        int fds[2];

        for (size_t i = 0; i < n; i++)
                blob[i] = (uint8_t)(i * 7 + (i >> 13));
        ck_assert_int_eq(pipe(fds), 0);
        d.fd = fds[0];
        /* The drain thread must not take the signals. */
        sigemptyset(&block);
        sigaddset(&block, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &block, NULL);
        ck_assert_int_eq(pthread_create(&th, NULL, drain_main, &d), 0);
        pthread_sigmask(SIG_UNBLOCK, &block, NULL);
        sigemptyset(&sa.sa_mask);
        ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
        ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);

        ck_assert_int_eq(proto_dump_write(fds[1], NULL, &gen, 1), 0);

        memset(&it, 0, sizeof(it));
        setitimer(ITIMER_REAL, &it, NULL);
        close(fds[1]);
        pthread_join(th, NULL);
        close(fds[0]);

        want = write_dump(NULL, &gen, 1, &len);
        ck_assert_uint_eq(d.got.len, len);
        ck_assert_int_eq(memcmp(d.got.data, want, len), 0);
        free(want);
        gb_buf_free(&d.got);
        free(blob);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("protocol-dumpwrite");
        TCase *core = tcase_create("core"), *errors = tcase_create("errors");
        SRunner *sr;
        int failed;

        tcase_add_test(core, test_layout);
        tcase_add_test(core, test_minimal);
        tcase_add_test(core, test_text_truncation);
        tcase_add_test(errors, test_errors);
        tcase_add_test(errors, test_short_writes);
        suite_add_tcase(s, core);
        suite_add_tcase(s, errors);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
