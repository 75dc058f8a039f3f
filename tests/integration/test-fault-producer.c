/* SPDX-License-Identifier: MIT */
/*
 * Faults on the producers' side: a traced process killed (SIGKILL, SIGTERM)
 * while its threads are in the middle of events, a producer that dies with
 * a frame half sent (in its header, in its payload), and 500 producers at
 * once.  What the daemon already holds for a dying process must stay
 * intact and dumpable, and nothing it holds for any other process may
 * change.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-blob.h"
#include "daemon-harness.h"
#include "fault-harness.h"
#include "proto/dumpfile.h"
#include "proto/varint.h"
#include "proto/wire.h"

static struct dh_daemon D;

/* Waits until the daemon lists pid in state with min_gens generations or more. */
static void wait_proc(pid_t pid, const char *state, long long min_gens)
{
        dh_expect_proc(D.sock, pid, state, DH_GENS_AT_LEAST, min_gens, 20000);
}

/* The GENERATION records of a dump file, concatenated (malloc'd). */
static uint8_t *dump_generations(const char *path, size_t *ret_len)
{
        size_t len;
        uint8_t *b = (uint8_t *)dh_read_file(path, &len), *out = malloc(len + 1);
        ck_assert_msg(b && out, "cannot read %s", path);
        ck_assert_uint_ge(len, PROTO_DUMP_MAGIC_LEN);
        size_t o = 0;
        const uint8_t *p = b + PROTO_DUMP_MAGIC_LEN, *end = b + len;
        while (p < end) {
                uint8_t type = *p++;
                uint64_t n;
                ck_assert_int_eq(proto_get_uvarint(&p, end, &n), 0);
                ck_assert_uint_le(n, (uint64_t)(end - p));
                if (type == PROTO_DUMP_GENERATION) {
                        memcpy(out + o, p, (size_t)n);
                        o += (size_t)n;
                }
                p += n;
        }
        free(b);
        *ret_len = o;
        return out;
}

/* A bystander: a raw producer whose history must never change. */
struct bystander {
        struct dh_producer p;
        json_t *entry; /* its list entry, as first seen */
        uint8_t *gens;
        size_t gens_len;
};

static void bystander_start(struct bystander *b)
{
        ck_assert_int_eq(dh_producer_spawn(&b->p, D.sock, "bystander", 0), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(dh_producer_cmd(&b->p, 'g', 1000 + 100 * (uint32_t)i, NULL, 0), 0);
        wait_proc(b->p.pid, "live", 3);
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        b->entry = json_deep_copy(dh_find_proc(l, b->p.pid));
        json_decref(l);
        json_t *r = dh_snapshot_ok(D.sock, b->p.pid);
        b->gens = dump_generations(dh_str(r, "path"), &b->gens_len);
        json_decref(r);
}

/* Its list entry and its dumped generations are as they were. */
static void bystander_check(struct bystander *b)
{
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        json_t *now = dh_find_proc(l, b->p.pid);
        const char *keys[] = {"state",
                              "generations",
                              "bytes",
                              "first_ns",
                              "last_ns",
                              "events_lost",
                              "generations_lost",
                              "generations_evicted"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                ck_assert_msg(json_equal(json_object_get(now, keys[i]),
                                         json_object_get(b->entry, keys[i])),
                              "bystander's %s changed", keys[i]);
        json_decref(l);
        json_t *r = dh_snapshot_ok(D.sock, b->p.pid);
        size_t len;
        uint8_t *gens = dump_generations(dh_str(r, "path"), &len);
        ck_assert_uint_eq(len, b->gens_len);
        ck_assert_int_eq(memcmp(gens, b->gens, len), 0);
        free(gens);
        json_decref(r);
}

static void bystander_end(struct bystander *b)
{
        ck_assert_int_eq(dh_producer_cmd(&b->p, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&b->p);
        json_decref(b->entry);
        free(b->gens);
}

static int dumps_for(void *ctx)
{
        char path[512];
        return dh_find_dump(D.dumps, *(pid_t *)ctx, path, sizeof(path)) != NULL;
}

/* ---- killed while its threads are mid-event ---------------------------------------------- */

START_TEST(test_producer_killed_mid_event)
{
        /* No flush on snapshot: the bystander never answers one, and the
         * comparison wants exactly what it sent. */
        const char *extra[] = {"--flush-timeout", "0", NULL};
        dh_start_ok(&D, extra);
        struct bystander by;
        bystander_start(&by);

        const int sigs[] = {SIGKILL, SIGTERM};
        for (size_t k = 0; k < 2; k++) {
                const char *env[] = {"GTRACE_PERIOD_MS=20", NULL};
                const char *args[] = {"load", "4", "200000", NULL};
                struct dh_prog p;
                ck_assert_int_eq(fh_prog_start(&p, D.sock, env, args), 0);
                wait_proc(p.pid, "live", 3);
                /* Its four threads are inside their event loops right now. */
                struct fh_state st;
                ck_assert_int_eq(fh_prog_state(&p, &st), 0);
                ck_assert_uint_gt(st.iters, 0);
                ck_assert_int_eq(kill(p.pid, sigs[k]), 0);
                dh_prog_close(&p);

                /* Gone without a goodbye: crashed, dumped automatically once, and
                 * what was held still dumps and validates. */
                wait_proc(p.pid, "crashed", 3);
                ck_assert(dh_wait_until(dumps_for, &p.pid, 10000));
                json_t *r = dh_snapshot_ok(D.sock, p.pid);
                ck_assert(json_is_false(json_object_get(r, "flushed")));
                fh_check_valid(dh_str(r, "path"));
                json_decref(r);
        }
        bystander_check(&by);
        bystander_end(&by);
        dh_finish(&D);
}
END_TEST

/* ---- dies with a frame half sent ---------------------------------------------------------- */

/*
 * A raw producer in a child: HELLO, two whole generations, then `cut`
 * bytes of a third GENERATION frame (header included), then it tells the
 * parent and waits to be killed.
 */
static pid_t half_frame_child(size_t cut, int *ret_sent)
{
        int pfd[2];
        ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(pfd[0]);
                int fd = fh_raw_producer(D.sock, (uint64_t)getpid(), 0, "halfway");
                if (fd < 0)
                        _exit(2);
                if (fh_send_gen(fd, 1, 1000) < 0 || fh_send_gen(fd, 2, 1200) < 0)
                        _exit(3);
                uint32_t len = 4000;
                uint8_t *frame = malloc(PROTO_HEADER_BYTES + len);
                proto_header_put(frame, PROTO_MSG_GENERATION, len);
                daemon_blob_fill(frame + PROTO_HEADER_BYTES, len, 3, (uint64_t)getpid(),
                                 1700000000000000000ull);
                if (send(fd, frame, cut, MSG_NOSIGNAL) != (ssize_t)cut)
                        _exit(4);
                (void)!write(pfd[1], "x", 1);
                for (;;)
                        pause();
        }
        close(pfd[1]);
        *ret_sent = pfd[0];
        return pid;
}

START_TEST(test_producer_dies_mid_frame)
{
        const char *extra[] = {"--flush-timeout", "0", NULL};
        dh_start_ok(&D, extra);
        struct bystander by;
        bystander_start(&by);

        /* Cut inside the header, and inside the payload. */
        const size_t cuts[] = {PROTO_HEADER_BYTES / 2, PROTO_HEADER_BYTES + 2000};
        for (size_t k = 0; k < 2; k++) {
                int sent;
                pid_t pid = half_frame_child(cuts[k], &sent);
                struct pollfd pfd = {.fd = sent, .events = POLLIN};
                ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
                close(sent);
                /* The two whole generations are in before the partial frame. */
                wait_proc(pid, "live", 2);
                ck_assert_int_eq(kill(pid, SIGKILL), 0);
                ck_assert_int_eq(waitpid(pid, NULL, 0), pid);

                wait_proc(pid, "crashed", 2);
                json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
                json_t *e = dh_find_proc(l, pid);
                ck_assert_int_eq(dh_int(e, "generations"), 2);
                ck_assert_int_eq(dh_int(e, "bytes"), 2200);
                json_decref(l);
                ck_assert(dh_wait_until(dumps_for, &pid, 10000)); /* the automatic dump */
                json_t *r = dh_snapshot_ok(D.sock, pid);
                unsigned gens;
                ck_assert_int_eq(dh_dump_check(dh_str(r, "path"), &gens, NULL), 0);
                ck_assert_uint_eq(gens, 2);
                json_decref(r);
        }
        ck_assert(dh_file_contains(D.log, "ended in the middle of a frame"));
        ck_assert(dh_alive(&D));
        bystander_check(&by);
        bystander_end(&by);
        dh_finish(&D);
}
END_TEST

/* ---- 500 producers at once ---------------------------------------------------------------- */

#define MANY 500

struct count_cond {
        const char *key;
        long long want;
};

static int status_count(void *ctx)
{
        struct count_cond *c = ctx;
        json_t *s = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        int ok = s && dh_int(s, c->key) == c->want;
        json_decref(s);
        return ok;
}

START_TEST(test_500_producers)
{
        /* Each producer is a connection, so gtraced needs MANY descriptors
         * and more; raise our soft limit for it to inherit if need be. */
        struct rlimit rl;
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < MANY + 128) {
                if (rl.rlim_max < MANY + 128) {
                        fprintf(stderr, "skipped: RLIMIT_NOFILE hard limit %llu\n",
                                (unsigned long long)rl.rlim_max);
                        return;
                }
                rl.rlim_cur = MANY + 128;
                ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        }
        const char *extra[] = {"--flush-timeout", "0", NULL};
        dh_start_ok(&D, extra);
        int ready[2], go[2];
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
        static pid_t kids[MANY];
        for (int i = 0; i < MANY; i++) {
                kids[i] = fork();
                ck_assert_int_ge(kids[i], 0);
                if (kids[i] == 0) {
                        close(ready[0]);
                        close(go[1]);
                        int fd = fh_raw_producer(D.sock, (uint64_t)getpid(), 0, "many");
                        if (fd < 0 || fh_send_gen(fd, 1, 256) < 0)
                                _exit(2);
                        (void)!write(ready[1], "x", 1);
                        char c;
                        while (read(go[0], &c, 1) > 0)
                                ;
                        uint8_t frame[PROTO_HEADER_BYTES];
                        ssize_t n = proto_encode_goodbye(frame, sizeof(frame));
                        (void)!send(fd, frame, (size_t)n, MSG_NOSIGNAL);
                        close(fd);
                        _exit(0);
                }
        }
        close(ready[1]);
        close(go[0]);
        int got = 0;
        char buf[64];
        while (got < MANY) {
                struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
                ck_assert_msg(poll(&pfd, 1, 20000) == 1, "only %d producers connected", got);
                ssize_t n = read(ready[0], buf, sizeof(buf));
                ck_assert_int_gt(n, 0);
                got += (int)n;
        }
        close(ready[0]);
        struct count_cond live = {"live", MANY}, gens = {"generations", MANY};
        ck_assert(dh_wait_until(status_count, &live, 20000));
        ck_assert(dh_wait_until(status_count, &gens, 20000));

        /* Every one of them dumps. */
        json_t *r = dh_request(D.sock, -1, "{\"command\":\"snapshot\",\"all\":true}");
        ck_assert_ptr_nonnull(r);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        ck_assert_uint_eq(json_array_size(json_object_get(r, "dumps")), MANY);
        json_decref(r);
        ck_assert_int_eq(dh_count_dumps(D.dumps), MANY);

        close(go[1]); /* all say goodbye */
        for (int i = 0; i < MANY; i++) {
                int st;
                ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
                ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        struct count_cond exited = {"exited", MANY};
        ck_assert(dh_wait_until(status_count, &exited, 20000));
        ck_assert(dh_alive(&D));
        dh_finish(&D);
}
END_TEST

static Suite *fault_producer_suite(void)
{
        Suite *s = suite_create("fault-producer");
        TCase *kill_tc = tcase_create("killed");
        tcase_set_timeout(kill_tc, 90);
        tcase_add_test(kill_tc, test_producer_killed_mid_event);
        tcase_add_test(kill_tc, test_producer_dies_mid_frame);
        suite_add_tcase(s, kill_tc);
        TCase *many = tcase_create("many");
        tcase_set_timeout(many, 120);
        tcase_add_test(many, test_500_producers);
        suite_add_tcase(s, many);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(fault_producer_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
