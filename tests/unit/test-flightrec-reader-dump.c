/* SPDX-License-Identifier: MIT */
/*
 * Reading .gtrace dump files (flightrec/dump.c): round trips through
 * proto_dump_write, streaming from pipes, truncation at every byte, limits,
 * and container-level malformations.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/reader.h"
#include "genbuild.h"
#include "proto/varint.h"

static const char three_gens[] =
        "GENERATION 1 77\n"
        "CLOCK 1000000000 0 0 0 0 100\n"
        "STRING 1 \"job\"\n"
        "THREAD 100 1\n"
        "BATCH 100 10 0 {\n"
        "  THREAD_STATUS 10 0 0 0\n"
        "  REGION_BEGIN 20 1\n"
        "  LOG 30 1 \"first\" 0\n"
        "}\n"
        "END_OF_GENERATION\n"
        "---\n"
        "GENERATION 2 77\n"
        "CLOCK 1000000000 100 100 100 100 200\n"
        "STRING 1 \"job\"\n"
        "THREAD 100 1\n"
        "BATCH 100 110 0 {\n"
        "  THREAD_STATUS 110 0 0 0\n"
        "  REGION_STATUS 110 1 20\n"
        "  REGION_END 150\n"
        "}\n"
        "END_OF_GENERATION\n"
        "---\n"
        "GENERATION 3 77\n"
        "CLOCK 1000000000 200 200 200 200 300\n"
        "END_OF_GENERATION\n";

static void compile(const char *text, struct gb_blobs *b)
{
        char err[256];
        ck_assert_msg(gb_compile(text, b, err, sizeof(err)) == 0, "%s", err);
}

/* The dump of blobs, as bytes. */
static uint8_t *dump_bytes(const struct proto_dump_meta *m, const struct gb_blobs *b,
                           size_t *ret_len)
{
        int fd = memfd_create("dump", MFD_CLOEXEC);
        off_t size;
        uint8_t *buf;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(gb_dump_write_fd(fd, m, b), 0);
        size = lseek(fd, 0, SEEK_END);
        buf = malloc((size_t)size);
        ck_assert_int_eq(pread(fd, buf, (size_t)size, 0), size);
        close(fd);
        *ret_len = (size_t)size;
        return buf;
}

static int open_bytes(const uint8_t *p, size_t len, struct fr_dump **ret, struct fr_error *err)
{
        int fd = memfd_create("in", MFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
        return fr_dump_open_fd(fd, ret, err);
}

struct counts {
        int begins, ends, events;
        uint64_t last_gen;
};

static int c_begin(void *ctx, const struct fr_generation *g)
{
        struct counts *c = ctx;
        c->begins++;
        c->last_gen = g->gen;
        return 0;
}

static int c_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        (void)g;
        (void)ev;
        ((struct counts *)ctx)->events++;
        return 0;
}

static int c_end(void *ctx, const struct fr_generation *g)
{
        (void)g;
        ((struct counts *)ctx)->ends++;
        return 0;
}

static const struct fr_callbacks counting = {c_begin, c_event, c_end};

START_TEST(test_round_trip_file)
{
        struct gb_blobs b = {0};
        struct proto_dump_meta m = {
                .pid = 77, .uid = 1000, .dump_time_ns = 123456789, .start_time_ns = 42,
                .gens_dropped = 5, .signal = 6, .flushed = 1, .command = "server",
                .executable = "/usr/sbin/server", .host = "h", .reason = "because",
                .origin = "signal", .producer = "test 1.0",
        };
        char path[] = "/tmp/test-reader-dump-XXXXXX";
        struct fr_dump *d = NULL;
        struct fr_error err = {0};
        const struct fr_dump_meta *dm;
        size_t flen;
        uint8_t *file;
        int fd;

        compile(three_gens, &b);
        ck_assert_uint_eq(b.n, 3);
        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(gb_dump_write(path, &m, &b), 0);
        file = (uint8_t *)gb_read_file(path, &flen);
        ck_assert_ptr_nonnull(file);

        ck_assert_int_eq(fr_dump_open(path, &d, &err), 0);
        dm = fr_dump_meta(d);
        ck_assert_uint_eq(dm->version, PROTO_DUMP_VERSION);
        ck_assert_uint_eq(dm->pid, 77);
        ck_assert_uint_eq(dm->uid, 1000);
        ck_assert_uint_eq(dm->dump_time_ns, 123456789);
        ck_assert_uint_eq(dm->start_time_ns, 42);
        ck_assert_uint_eq(dm->gens_dropped, 5);
        ck_assert_uint_eq(dm->signal, 6);
        ck_assert_int_eq(dm->flushed, 1);
        ck_assert_str_eq(dm->command, "server");
        ck_assert_str_eq(dm->executable, "/usr/sbin/server");
        ck_assert_str_eq(dm->host, "h");
        ck_assert_str_eq(dm->reason, "because");
        ck_assert_str_eq(dm->origin, "signal");
        ck_assert_str_eq(dm->producer, "test 1.0");

        for (size_t i = 0; i < b.n; i++) {
                const uint8_t *blob = NULL;
                size_t len = 0;
                uint64_t off = 0;
                ck_assert_int_eq(fr_dump_next(d, &blob, &len, &off, &err), 1);
                ck_assert_uint_eq(len, b.v[i].len);
                ck_assert_int_eq(memcmp(blob, b.v[i].data, len), 0);
                /* The offset is the blob's position in the file. */
                ck_assert_uint_le(off + len, flen);
                ck_assert_int_eq(memcmp(file + off, blob, len), 0);
        }
        {
                const uint8_t *blob;
                size_t len;
                ck_assert_int_eq(fr_dump_next(d, &blob, &len, NULL, &err), 0);
                ck_assert_int_eq(fr_dump_next(d, &blob, &len, NULL, &err), 0);
        }
        fr_dump_free(d);

        /* fr_dump_parse over the whole file. */
        {
                struct counts c = {0};
                ck_assert_int_eq(fr_dump_open(path, &d, &err), 0);
                ck_assert_int_eq(fr_dump_parse(d, &counting, &c, &err), 0);
                ck_assert_int_eq(c.begins, 3);
                ck_assert_int_eq(c.ends, 3);
                ck_assert_int_eq(c.events, 3 + 3);
                fr_dump_free(d);
        }
        unlink(path);
        free(file);
        gb_blobs_free(&b);
}
END_TEST

/* Texts longer than the fixed META fields are cut on a character boundary;
 * absent ones read as "". */
START_TEST(test_meta_texts)
{
        struct gb_blobs b = {0};
        struct proto_dump_meta m = {.pid = 1};
        char cmd[400];
        struct fr_dump *d = NULL;
        struct fr_error err = {0};
        size_t len;
        uint8_t *bytes;

        /* "ab" then "é" repeated: byte 255 is the second half of an "é", so
         * the 256-byte field (255 bytes and a NUL) keeps 254. */
        cmd[0] = 'a';
        cmd[1] = 'b';
        for (size_t i = 2; i + 1 < sizeof(cmd) - 1; i += 2) {
                cmd[i] = (char)0xc3;
                cmd[i + 1] = (char)0xa9;
        }
        cmd[sizeof(cmd) - 1] = '\0';
        m.command = cmd;
        compile("GENERATION 1 1\nCLOCK 1 0 0 0 0 0\nEND_OF_GENERATION\n", &b);
        bytes = dump_bytes(&m, &b, &len);
        ck_assert_int_eq(open_bytes(bytes, len, &d, &err), 0);
        ck_assert_uint_eq(strlen(fr_dump_meta(d)->command), 254);
        ck_assert_int_eq(memcmp(fr_dump_meta(d)->command, cmd, 254), 0);
        ck_assert_str_eq(fr_dump_meta(d)->host, "");
        ck_assert_str_eq(fr_dump_meta(d)->reason, "");
        fr_dump_free(d);
        free(bytes);
        gb_blobs_free(&b);
}
END_TEST

/* Every proper prefix of a dump is an error naming a position within the
 * prefix, and the generations wholly inside it are still delivered. */
START_TEST(test_truncations)
{
        struct gb_blobs b = {0};
        size_t len;
        uint8_t *bytes;
        size_t gen_end[3];

        compile(three_gens, &b);
        bytes = dump_bytes(NULL, &b, &len);
        /* Where each GENERATION record ends in the file. */
        {
                struct fr_dump *d = NULL;
                struct fr_error err;
                ck_assert_int_eq(open_bytes(bytes, len, &d, &err), 0);
                for (int i = 0; i < 3; i++) {
                        const uint8_t *blob;
                        size_t bl;
                        uint64_t off;
                        ck_assert_int_eq(fr_dump_next(d, &blob, &bl, &off, &err), 1);
                        gen_end[i] = (size_t)off + bl;
                }
                fr_dump_free(d);
        }
        for (size_t cut = 0; cut < len; cut++) {
                struct fr_dump *d = NULL;
                struct fr_error err = {0};
                struct counts c = {0};
                int r, whole = 0;

                for (int i = 0; i < 3; i++)
                        whole += gen_end[i] <= cut;
                r = open_bytes(bytes, cut, &d, &err);
                if (r == 0) {
                        r = fr_dump_parse(d, &counting, &c, &err);
                        fr_dump_free(d);
                }
                ck_assert_msg(r == -EBADMSG, "cut at %zu: %d %s", cut, r, err.msg);
                ck_assert_int_eq(err.code, -EBADMSG);
                ck_assert_uint_le(err.offset, cut);
                ck_assert_int_eq(c.ends, whole);
        }
        free(bytes);
        gb_blobs_free(&b);
}
END_TEST

/* A hand-made container: magic, META payload, then the given records. */
static void build_file(struct gb_buf *f, const uint8_t *meta, size_t meta_len)
{
        gb_buf_put(f, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);
        gb_buf_put(f, (const uint8_t[]){PROTO_DUMP_META}, 1);
        gb_buf_uvarint(f, meta_len);
        gb_buf_put(f, meta, meta_len);
}

static const uint8_t meta_v1[] = {PROTO_META_VERSION, 1, 1, PROTO_META_PID, 1, 9};

static int parse_file(const struct gb_buf *f, struct fr_error *err, struct counts *c)
{
        struct fr_dump *d = NULL;
        int r = open_bytes(f->data, f->len, &d, err);

        if (r < 0)
                return r;
        r = fr_dump_parse(d, &counting, c, err);
        fr_dump_free(d);
        return r;
}

static void put_record(struct gb_buf *f, uint8_t type, const void *p, size_t n)
{
        gb_buf_put(f, &type, 1);
        gb_buf_uvarint(f, n);
        gb_buf_put(f, p, n);
}

static void put_end(struct gb_buf *f, uint64_t count)
{
        uint8_t tmp[PROTO_VARINT_MAX];
        put_record(f, PROTO_DUMP_END, tmp, (size_t)(proto_put_uvarint(tmp, count) - tmp));
}

START_TEST(test_container_errors)
{
        struct gb_blobs b = {0};
        struct fr_error err;
        struct counts c;
        struct gb_buf f;
        struct fr_dump *d;

        compile("GENERATION 1 1\nCLOCK 1 0 0 0 0 0\nEND_OF_GENERATION\n", &b);

        /* Unknown record types and META keys are skipped. */
        f = (struct gb_buf){0};
        {
                static const uint8_t meta[] = {PROTO_META_VERSION, 1, 1, 0x7e, 3, 'x', 'y', 'z',
                                               PROTO_META_PID, 1, 9};
                build_file(&f, meta, sizeof(meta));
        }
        put_record(&f, 0x7f, "ignored", 7);
        put_record(&f, PROTO_DUMP_GENERATION, b.v[0].data, b.v[0].len);
        put_end(&f, 1);
        c = (struct counts){0};
        ck_assert_int_eq(parse_file(&f, &err, &c), 0);
        ck_assert_int_eq(c.ends, 1);
        gb_buf_free(&f);

        /* Bad magic. */
        f = (struct gb_buf){0};
        gb_buf_put(&f, "GTRACE\n\n", 8);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "not a gtrace dump"));
        gb_buf_free(&f);

        /* A newer format, and none at all. */
        f = (struct gb_buf){0};
        build_file(&f, (const uint8_t[]){PROTO_META_VERSION, 1, 2}, 3);
        put_end(&f, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EPROTONOSUPPORT);
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, (const uint8_t[]){PROTO_META_PID, 1, 2}, 3);
        put_end(&f, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "no format version"));
        gb_buf_free(&f);

        /* First record not META. */
        f = (struct gb_buf){0};
        gb_buf_put(&f, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);
        put_end(&f, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "not META"));
        gb_buf_free(&f);

        /* META over its limit, META text over its limit, META integer malformed. */
        f = (struct gb_buf){0};
        gb_buf_put(&f, PROTO_DUMP_MAGIC, PROTO_DUMP_MAGIC_LEN);
        gb_buf_put(&f, (const uint8_t[]){PROTO_DUMP_META}, 1);
        gb_buf_uvarint(&f, PROTO_MAX_META_BYTES + 1);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "exceeds"));
        gb_buf_free(&f);
        {
                struct gb_buf meta = {0};
                char *big = calloc(1, PROTO_MAX_TEXT_BYTES + 1);
                gb_buf_put(&meta, meta_v1, sizeof(meta_v1));
                gb_buf_put(&meta, (const uint8_t[]){PROTO_META_REASON}, 1);
                gb_buf_uvarint(&meta, PROTO_MAX_TEXT_BYTES + 1);
                gb_buf_put(&meta, big, PROTO_MAX_TEXT_BYTES + 1);
                f = (struct gb_buf){0};
                build_file(&f, meta.data, meta.len);
                put_end(&f, 0);
                ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
                ck_assert_ptr_nonnull(strstr(err.msg, "exceeds"));
                gb_buf_free(&f);
                gb_buf_free(&meta);
                free(big);
        }
        f = (struct gb_buf){0};
        build_file(&f, (const uint8_t[]){PROTO_META_VERSION, 2, 1, 1}, 4);
        put_end(&f, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "not one integer"));
        gb_buf_free(&f);

        /* A GENERATION longer than any reader accepts, and one that claims
         * 200 MiB but holds 10 bytes (the buffer must not follow the claim;
         * ASan's allocator would report a 200 MiB allocation as a leak or
         * exceed its limit otherwise). */
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        gb_buf_put(&f, (const uint8_t[]){PROTO_DUMP_GENERATION}, 1);
        gb_buf_uvarint(&f, (uint64_t)PROTO_MAX_GENERATION_BYTES + 1);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "exceeds"));
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        gb_buf_put(&f, (const uint8_t[]){PROTO_DUMP_GENERATION}, 1);
        gb_buf_uvarint(&f, 200u << 20);
        gb_buf_put(&f, "0123456789", 10);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "cut short"));
        gb_buf_free(&f);

        /* END miscounts; data after END; a second META. */
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        put_record(&f, PROTO_DUMP_GENERATION, b.v[0].data, b.v[0].len);
        put_end(&f, 2);
        c = (struct counts){0};
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "END counts 2 generations, the file holds 1"));
        ck_assert_int_eq(c.ends, 1);
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        put_end(&f, 0);
        gb_buf_put(&f, "x", 1);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "data after the END"));
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        put_record(&f, PROTO_DUMP_META, meta_v1, sizeof(meta_v1));
        put_end(&f, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "second META"));
        gb_buf_free(&f);

        /* An error is sticky: the stream cannot be resumed past it. */
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        d = NULL;
        ck_assert_int_eq(open_bytes(f.data, f.len, &d, &err), 0);
        {
                const uint8_t *blob;
                size_t len;
                struct fr_error e2 = {0};
                ck_assert_int_eq(fr_dump_next(d, &blob, &len, NULL, &err), -EBADMSG);
                ck_assert_int_eq(fr_dump_next(d, &blob, &len, NULL, &e2), -EBADMSG);
                ck_assert_str_eq(err.msg, e2.msg);
        }
        fr_dump_free(d);
        gb_buf_free(&f);

        /* regress-empty-meta-null-offset: empty META, GENERATION and END
         * payloads (nothing was ever allocated for them). */
        f = (struct gb_buf){0};
        build_file(&f, NULL, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "no format version"));
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        put_record(&f, PROTO_DUMP_END, NULL, 0);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "malformed END"));
        gb_buf_free(&f);
        f = (struct gb_buf){0};
        build_file(&f, meta_v1, sizeof(meta_v1));
        put_record(&f, PROTO_DUMP_GENERATION, NULL, 0);
        put_end(&f, 1);
        ck_assert_int_eq(parse_file(&f, &err, &c), -EBADMSG);
        ck_assert_ptr_nonnull(strstr(err.msg, "empty generation blob"));
        gb_buf_free(&f);

        /* Files that cannot be opened. */
        ck_assert_int_eq(fr_dump_open("/nonexistent/x.gtrace", &d, &err), -ENOENT);
        ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/x.gtrace"));
        gb_blobs_free(&b);
}
END_TEST

/* A generation bigger than the read buffer, from a pipe fed in small
 * pieces: the reader only ever sees a stream. */
struct feeder {
        int fd;
        const uint8_t *p;
        size_t len;
};

static void *feed(void *arg)
{
        struct feeder *f = arg;
        size_t off = 0;

        while (off < f->len) {
                size_t n = f->len - off < 777 ? f->len - off : 777;
                ssize_t w = write(f->fd, f->p + off, n);
                if (w <= 0)
                        break;
                off += (size_t)w;
        }
        close(f->fd);
        return NULL;
}

START_TEST(test_pipe_big_generation)
{
        struct gb_blobs b = {0};
        struct gb_gen g;
        struct fr_dump *d = NULL;
        struct fr_error err = {0};
        struct counts c = {0};
        struct feeder fe;
        pthread_t th;
        int fds[2];
        size_t len;
        uint8_t *bytes;
        const int nev = 100000;

        gb_gen_init(&g);
        gb_generation(&g, 1, 1);
        gb_clock(&g, 1000000000, 0, 0, 0, 0, 1u << 30);
        gb_string(&g, 1, "c");
        gb_thread(&g, 100, 0);
        gb_batch_begin(&g, 100, 0, 0);
        GB_EVENT(&g, THREAD_STATUS, 0, 0, 0, 0);
        for (int i = 0; i < nev; i++)
                GB_EVENT(&g, COUNTER, (uint64_t)i * 200, 1, (uint64_t)(int64_t)(i - nev / 2));
        gb_batch_end(&g);
        gb_end(&g);
        ck_assert_uint_gt(g.out.len, 256u << 10);
        b.v = calloc(1, sizeof(*b.v));
        b.n = 1;
        gb_buf_put(&b.v[0], g.out.data, g.out.len);
        gb_gen_done(&g);

        bytes = dump_bytes(NULL, &b, &len);
        signal(SIGPIPE, SIG_IGN);
        ck_assert_int_eq(pipe(fds), 0);
        fe = (struct feeder){fds[1], bytes, len};
        ck_assert_int_eq(pthread_create(&th, NULL, feed, &fe), 0);
        ck_assert_int_eq(fr_dump_open_fd(fds[0], &d, &err), 0);
        ck_assert_int_eq(fr_dump_parse(d, &counting, &c, &err), 0);
        ck_assert_int_eq(c.events, nev + 1);
        fr_dump_free(d);
        pthread_join(th, NULL);
        free(bytes);
        gb_blobs_free(&b);
}
END_TEST

/* A callback's non-zero result stops fr_dump_parse and is returned. */
static int stop_begin(void *ctx, const struct fr_generation *g)
{
        (void)ctx;
        return g->gen == 2 ? 7 : 0;
}

START_TEST(test_callback_stop)
{
        struct gb_blobs b = {0};
        const struct fr_callbacks cb = {stop_begin, NULL, NULL};
        struct fr_dump *d = NULL;
        struct fr_error err;
        size_t len;
        uint8_t *bytes;

        compile(three_gens, &b);
        bytes = dump_bytes(NULL, &b, &len);
        ck_assert_int_eq(open_bytes(bytes, len, &d, &err), 0);
        ck_assert_int_eq(fr_dump_parse(d, &cb, NULL, &err), 7);
        fr_dump_free(d);
        fr_dump_free(NULL);
        free(bytes);
        gb_blobs_free(&b);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("flightrec-reader-dump");
        TCase *core = tcase_create("core"), *errors = tcase_create("errors");
        SRunner *sr;
        int failed;

        tcase_add_test(core, test_round_trip_file);
        tcase_add_test(core, test_meta_texts);
        tcase_add_test(core, test_pipe_big_generation);
        tcase_add_test(core, test_callback_stop);
        tcase_add_test(errors, test_truncations);
        tcase_add_test(errors, test_container_errors);
        suite_add_tcase(s, core);
        suite_add_tcase(s, errors);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
