/* SPDX-License-Identifier: MIT */
/*
 * gtraced's security model (docs/security.md) against a real daemon:
 * authorization from SO_PEERCRED with other users' processes invisible,
 * gtrace_dump() limited to the calling process whatever it claims, dumps
 * only inside the dump directory or a descriptor the client opened, names
 * that cannot escape, modes, per-user quotas (bytes and processes), frame
 * limits.  CI runs as root, so the other users are forked children that
 * setuid() to unprivileged uids; run as non-root the cross-user parts skip.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon-harness.h"
#include "fault-harness.h"
#include "flightrec/reader.h"
#include "proto/wire.h"

#define UID_A 65534 /* nobody */
#define UID_B 65533

static struct dh_daemon D;

/* Waits until the daemon lists pid in state (NULL: any) with exactly gens
 * generations (-1: any number). */
static void wait_proc(pid_t pid, const char *state, long long gens)
{
        dh_expect_proc(D.sock, pid, state, gens < 0 ? DH_GENS_ANY : DH_GENS_EXACTLY, gens, 10000);
}

static int need_root(void)
{
        if (geteuid() == 0)
                return 1;
        fprintf(stderr, "skipped: only root can act as other users\n");
        return 0;
}

/* A directory the unprivileged uid can write into. */
static void user_dir(uid_t uid, char *out, size_t cap)
{
        snprintf(out, cap, "%s/u%u", D.dir, (unsigned)uid);
        ck_assert_int_eq(mkdir(out, 0700), 0);
        ck_assert_int_eq(chown(out, uid, uid), 0);
}

/* ---- authorization ---------------------------------------------------------- */

struct as_a {
        pid_t mine, other, roots;
        char dir[256];
};

/* Runs as UID_A: sees exactly its own process; the others do not exist. */
static int as_user_a(void *arg)
{
        struct as_a *a = arg;
        char req[256];
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        json_t *procs = json_object_get(l, "processes");
        if (json_array_size(procs) != 1 || !dh_find_proc(l, a->mine))
                return 10;
        json_decref(l);
        json_t *st = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        if (dh_int(st, "processes") != 1 || dh_int(st, "live") != 1 ||
            dh_int(st, "generations") != 2)
                return 11;
        json_decref(st);

        /* Another user's process fails exactly like a pid never seen. */
        pid_t hidden[] = {a->other, a->roots};
        for (size_t i = 0; i < 2; i++) {
                snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"pid\":%d}", (int)hidden[i]);
                json_t *r = dh_request(D.sock, -1, req);
                char want[64];
                snprintf(want, sizeof(want), "no traced process with pid %d", (int)hidden[i]);
                if (!r || json_is_true(json_object_get(r, "ok")) ||
                    strcmp(dh_str(r, "errno"), "ESRCH") != 0 ||
                    strcmp(dh_str(r, "error"), want) != 0)
                        return 12;
                json_decref(r);
        }

        /* snapshot --all covers only what is visible. */
        json_t *all = dh_request(D.sock, -1, "{\"command\":\"snapshot\",\"all\":true}");
        json_t *dumps = json_object_get(all, "dumps");
        if (!json_is_true(json_object_get(all, "ok")) || json_array_size(dumps) != 1 ||
            dh_int(json_array_get(dumps, 0), "pid") != a->mine)
                return 13;
        json_decref(all);

        /* A dump of its own process through a descriptor it opened itself:
         * readable by this user, a valid dump. */
        char out[300];
        snprintf(out, sizeof(out), "%s/mine.gtrace", a->dir);
        int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return 14;
        snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"pid\":%d,\"fd\":true}",
                 (int)a->mine);
        json_t *r = dh_request(D.sock, fd, req);
        close(fd);
        if (!json_is_true(json_object_get(r, "ok")))
                return 15;
        json_decref(r);
        unsigned gens;
        if (dh_dump_check(out, &gens, NULL) != 0 || gens != 2)
                return 16;
        /* And the other user's process cannot be had that way either. */
        snprintf(out, sizeof(out), "%s/theirs.gtrace", a->dir);
        fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        snprintf(req, sizeof(req), "{\"command\":\"snapshot\",\"pid\":%d,\"fd\":true}",
                 (int)a->other);
        r = dh_request(D.sock, fd, req);
        close(fd);
        struct stat stt;
        if (!r || strcmp(dh_str(r, "errno"), "ESRCH") != 0 || stat(out, &stt) < 0 ||
            stt.st_size != 0)
                return 17;
        json_decref(r);
        return 0;
}

START_TEST(test_uid_isolation)
{
        if (!need_root())
                return;
        dh_start_ok(&D, NULL);
        struct dh_producer a, b, root;
        ck_assert_int_eq(dh_producer_spawn_as(&a, D.sock, "alice", 0, UID_A), 0);
        ck_assert_int_eq(dh_producer_spawn_as(&b, D.sock, "bob", 0, UID_B), 0);
        ck_assert_int_eq(dh_producer_spawn(&root, D.sock, "rootd", 0), 0);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(dh_producer_cmd(&a, 'g', 400, NULL, 0), 0);
                ck_assert_int_eq(dh_producer_cmd(&b, 'g', 400, NULL, 0), 0);
                ck_assert_int_eq(dh_producer_cmd(&root, 'g', 400, NULL, 0), 0);
        }
        wait_proc(a.pid, "live", 2);
        wait_proc(b.pid, "live", 2);
        wait_proc(root.pid, "live", 2);

        struct as_a arg = {.mine = a.pid, .other = b.pid, .roots = root.pid};
        user_dir(UID_A, arg.dir, sizeof(arg.dir));
        ck_assert_int_eq(fh_run_as(UID_A, as_user_a, &arg), 0);

        /* Root sees everyone; the list names each process's kernel uid. */
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        ck_assert_uint_eq(json_array_size(json_object_get(l, "processes")), 3);
        ck_assert_int_eq(dh_int(dh_find_proc(l, a.pid), "uid"), UID_A);
        ck_assert_int_eq(dh_int(dh_find_proc(l, b.pid), "uid"), UID_B);
        json_decref(l);

        /* A dump in the dump directory belongs to the process's owner, 0640. */
        json_t *r = dh_snapshot(D.sock, a.pid);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        struct stat st;
        ck_assert_int_eq(stat(dh_str(r, "path"), &st), 0);
        ck_assert_uint_eq(st.st_uid, UID_A);
        ck_assert_uint_eq(st.st_mode & 07777, 0640);
        json_decref(r);

        ck_assert_int_eq(dh_producer_cmd(&a, 'q', 0, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&b, 'q', 0, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&root, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&a);
        dh_producer_wait(&b);
        dh_producer_wait(&root);
        dh_finish(&D);
}
END_TEST

/* ---- gtrace_dump() dumps the caller only ---------------------------------------- */

static uint64_t dump_meta_pid(const char *path)
{
        struct fr_dump *d = NULL;
        struct fr_error err;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fr_dump_open_fd(fd, &d, &err), 0);
        uint64_t pid = fr_dump_meta(d)->pid;
        fr_dump_free(d);
        close(fd);
        return pid;
}

START_TEST(test_dump_request_only_self)
{
        dh_start_ok(&D, NULL);
        struct dh_producer victim;
        ck_assert_int_eq(dh_producer_spawn(&victim, D.sock, "victim", 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&victim, 'g', 3000, NULL, 0), 0);
        wait_proc(victim.pid, "live", 1);

        /* This process claims to be the victim (pid and uid) in HELLO. */
        int fd = fh_raw_producer(D.sock, (uint64_t)victim.pid, 0, "victim");
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fh_send_gen(fd, 1, 200), 0);
        static struct proto_dump_request dr;
        dr.id = 42;
        snprintf(dr.reason, sizeof(dr.reason), "impostor");
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_dump_request(frame, sizeof(frame), &dr);
        ck_assert_int_eq(send(fd, frame, (size_t)n, MSG_NOSIGNAL), n);
        uint16_t type;
        uint8_t *p;
        size_t len;
        ck_assert_int_eq(dh_recv_frame(fd, 10000, &type, &p, &len), 0);
        ck_assert_uint_eq(type, PROTO_MSG_DUMP_REPLY);
        static struct proto_dump_reply rp;
        ck_assert_int_eq(proto_decode_dump_reply(p, len, &rp), 0);
        free(p);
        ck_assert_int_eq(rp.result, 0);
        /* The dump is of this process (the kernel's pid), holding its one
         * small generation and nothing of the victim's. */
        ck_assert_uint_eq(dump_meta_pid(rp.text), (uint64_t)getpid());
        unsigned gens;
        ck_assert_int_eq(dh_dump_check(rp.text, &gens, NULL), 0);
        ck_assert_uint_eq(gens, 1);
        struct stat st;
        ck_assert_int_eq(stat(rp.text, &st), 0);
        ck_assert_int_lt(st.st_size, 1000);
        close(fd);

        /* The victim's history is untouched and still its own. */
        wait_proc(victim.pid, "live", 1);
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        ck_assert_int_eq(dh_int(dh_find_proc(l, victim.pid), "bytes"), 3000);
        ck_assert_str_eq(dh_str(dh_find_proc(l, getpid()), "command"), "victim");
        json_decref(l);
        ck_assert_int_eq(dh_producer_cmd(&victim, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&victim);
        dh_finish(&D);
}
END_TEST

/* ---- where dumps go ------------------------------------------------------------------ */

START_TEST(test_no_client_named_path)
{
        dh_start_ok(&D, NULL);
        struct stat st;
        /* The daemon created the dump directory 0750. */
        ck_assert_int_eq(stat(D.dumps, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0750);
        struct dh_producer p;
        ck_assert_int_eq(dh_producer_spawn(&p, D.sock, "named", 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&p, 'g', 300, NULL, 0), 0);
        wait_proc(p.pid, "live", 1);

        /* Keys a client might hope are honoured name paths; they are not. */
        char evil[256], req[2048];
        snprintf(evil, sizeof(evil), "%s/evil.gtrace", D.dir);
        snprintf(req, sizeof(req),
                 "{\"command\":\"snapshot\",\"pid\":%d,\"path\":\"%s\",\"output\":\"%s\","
                 "\"file\":\"%s\",\"dump_dir\":\"%s\",\"reason\":\"../../../%s\"}",
                 (int)p.pid, evil, evil, evil, D.dir, evil);
        json_t *r = dh_request(D.sock, -1, req);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        const char *path = dh_str(r, "path");
        ck_assert_msg(strncmp(path, D.dumps, strlen(D.dumps)) == 0 && path[strlen(D.dumps)] == '/',
                      "%s", path);
        ck_assert_ptr_null(strchr(path + strlen(D.dumps) + 1, '/'));
        ck_assert_int_ne(stat(evil, &st), 0);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 07777, 0640);
        json_decref(r);
        /* Exactly one file, the dump: no temporary file was left behind. */
        ck_assert_int_eq(dh_count_entries(D.dumps), 1);
        ck_assert_int_eq(dh_producer_cmd(&p, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&p);
        dh_finish(&D);
}
END_TEST

/* A real runtime whose command name (comm) is "../../x". */
START_TEST(test_comm_cannot_escape)
{
        dh_start_ok(&D, NULL);
        struct dh_prog prog;
        const char *args[] = {"name", "../../x", "escapee", NULL};
        ck_assert_int_eq(fh_prog_start(&prog, D.sock, NULL, args), 0);
        wait_proc(prog.pid, "live", -1);
        json_t *r = dh_snapshot_ok(D.sock, prog.pid);
        const char *path = dh_str(r, "path");
        const char *base = path + strlen(D.dumps) + 1;
        ck_assert_msg(strncmp(path, D.dumps, strlen(D.dumps)) == 0, "%s", path);
        ck_assert_ptr_null(strchr(base, '/'));
        ck_assert_msg(base[0] != '.', "hidden dump name %s", base); /* and not hidden */
        ck_assert_ptr_nonnull(strstr(base, "x-"));
        ck_assert(dh_file_contains(path, "escapee"));
        json_decref(r);
        /* Nothing appeared where the name points. */
        struct stat st;
        char outside[256];
        snprintf(outside, sizeof(outside), "%s/x", D.dir);
        ck_assert_int_ne(stat(outside, &st), 0);
        ck_assert_int_eq(dh_count_entries(D.dumps), 1);
        int status = fh_prog_end(&prog);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        dh_finish(&D);
}
END_TEST

/* The runtime's own dump (no daemon reachable) is named from the same comm:
 * inside GTRACE_DUMP_DIR and not hidden. */
START_TEST(test_comm_cannot_escape_local_dump)
{
        ck_assert_int_eq(dh_prepare(&D), 0); /* nobody listens on D.sock */
        ck_assert_int_eq(mkdir(D.dumps, 0700), 0);
        char env_dir[256];
        snprintf(env_dir, sizeof(env_dir), "GTRACE_DUMP_DIR=%s", D.dumps);
        const char *env[] = {env_dir, "GTRACE_PERIOD_MS=20", NULL};
        struct dh_prog prog;
        const char *args[] = {"name", "../../x", "local", NULL};
        ck_assert_int_eq(fh_prog_start(&prog, D.sock, env, args), 0);
        kill(prog.pid, SIGSEGV); /* the crash handler writes a local dump */
        dh_prog_close(&prog);
        char name[256];
        ck_assert_ptr_nonnull(dh_only_entry(D.dumps, name, sizeof(name)));
        ck_assert_msg(name[0] != '.', "hidden local dump %s", name);
        ck_assert_ptr_nonnull(strstr(name, "x-"));
        ck_assert_int_eq(dh_count_entries(D.dumps), 1);
        dh_cleanup(&D);
}
END_TEST

/* ---- quotas ---------------------------------------------------------------------------- */

START_TEST(test_uid_byte_quota)
{
        if (!need_root())
                return;
        const char *extra[] = {"--max-uid-bytes", "8K", "--max-total-bytes", "1M", NULL};
        dh_start_ok(&D, extra);
        json_t *st = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        ck_assert_int_eq(dh_int(json_object_get(st, "limits"), "max_uid_bytes"), 8192);
        ck_assert_int_eq(dh_int(json_object_get(st, "limits"), "max_generation_bytes"), 8192);
        json_decref(st);

        struct dh_producer quiet, flood[3];
        ck_assert_int_eq(dh_producer_spawn_as(&quiet, D.sock, "quiet", 0, UID_B), 0);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(dh_producer_cmd(&quiet, 'g', 1000, NULL, 0), 0);
        wait_proc(quiet.pid, "live", 3);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(dh_producer_spawn_as(&flood[i], D.sock, "flood", 0, UID_A), 0);
        for (int k = 0; k < 20; k++)
                for (int i = 0; i < 3; i++)
                        ck_assert_int_eq(dh_producer_cmd(&flood[i], 'g', 1000, NULL, 0), 0);
        /* Stream order: once the last flood process's GOODBYE is in, all of
         * its generations are. */
        for (int i = 0; i < 3; i++) {
                ck_assert_int_eq(dh_producer_cmd(&flood[i], 'q', 0, NULL, 0), 0);
                dh_producer_wait(&flood[i]);
                wait_proc(flood[i].pid, "exited", -1);
        }
        json_t *l = dh_request(D.sock, -1, "{\"command\":\"list\"}");
        long long flood_bytes = 0;
        for (int i = 0; i < 3; i++)
                flood_bytes += dh_int(dh_find_proc(l, flood[i].pid), "bytes");
        ck_assert_int_le(flood_bytes, 8192);
        ck_assert_int_ge(flood_bytes, 6000);
        /* The other user kept every generation. */
        ck_assert_int_eq(dh_int(dh_find_proc(l, quiet.pid), "generations"), 3);
        json_decref(l);
        ck_assert_int_eq(dh_producer_cmd(&quiet, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&quiet);
        dh_finish(&D);
}
END_TEST

START_TEST(test_uid_process_cap)
{
        if (!need_root())
                return;
        const char *extra[] = {"--max-uid-processes", "2", NULL};
        dh_start_ok(&D, extra);
        struct dh_producer a1, a2, a3, b1;
        ck_assert_int_eq(dh_producer_spawn_as(&a1, D.sock, "a1", 0, UID_A), 0);
        ck_assert_int_eq(dh_producer_spawn_as(&a2, D.sock, "a2", 0, UID_A), 0);
        ck_assert_int_eq(dh_producer_cmd(&a1, 'g', 100, NULL, 0), 0);
        wait_proc(a1.pid, "live", 1);
        wait_proc(a2.pid, "live", 0);
        /* A third live process of the same user is refused ... */
        ck_assert_int_eq(dh_producer_spawn_as(&a3, D.sock, "a3", 0, UID_A), -ECONNREFUSED);
        /* ... another user is not affected ... */
        ck_assert_int_eq(dh_producer_spawn_as(&b1, D.sock, "b1", 0, UID_B), 0);
        /* ... and once one of the user's processes ended, the user's oldest
         * ended process makes room. */
        ck_assert_int_eq(dh_producer_cmd(&a1, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&a1);
        wait_proc(a1.pid, "exited", 1);
        ck_assert_int_eq(dh_producer_spawn_as(&a3, D.sock, "a3", 0, UID_A), 0);
        wait_proc(a3.pid, "live", 0);
        struct dh_proc_want gone = {D.sock, a1.pid, NULL, DH_GENS_ANY, 0};
        ck_assert(!dh_proc_is(&gone));
        wait_proc(b1.pid, "live", 0);
        ck_assert_int_eq(dh_producer_cmd(&a2, 'q', 0, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&a3, 'q', 0, NULL, 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&b1, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&a2);
        dh_producer_wait(&a3);
        dh_producer_wait(&b1);
        ck_assert(dh_file_contains(D.log, "too many traced processes for uid 65534"));
        dh_finish(&D);
}
END_TEST

/* ---- frame limits ----------------------------------------------------------------------- */

static int error_code_of(int fd)
{
        uint16_t type = 0;
        uint8_t *p = NULL;
        size_t len;
        int code = 0;
        if (dh_recv_frame(fd, 5000, &type, &p, &len) == 0 && type == PROTO_MSG_ERROR) {
                struct proto_error e;
                if (proto_decode_error(p, len, &e) == 0)
                        code = (int)e.code;
        }
        free(p);
        return code;
}

START_TEST(test_frame_limits)
{
        const char *extra[] = {"--max-process-bytes", "4K", NULL};
        dh_start_ok(&D, extra);
        /* A generation above what WELCOME announced: refused from the header. */
        int fd = fh_raw_producer(D.sock, 1, 0, "big");
        ck_assert_int_ge(fd, 0);
        uint8_t hdr[PROTO_HEADER_BYTES];
        proto_header_put(hdr, PROTO_MSG_GENERATION, 4097);
        ck_assert_int_eq(send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
        ck_assert_int_eq(error_code_of(fd), EMSGSIZE);
        ck_assert(dh_wait_closed(fd, 5000));
        close(fd);
        /* One of exactly the limit is fine. */
        fd = fh_raw_producer(D.sock, 1, 0, "big");
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(fh_send_gen(fd, 1, 4096), 0);
        wait_proc(getpid(), NULL, 1);
        close(fd);
        /* A control request above 64 KiB. */
        fd = dh_connect_raw(D.sock);
        ck_assert_int_ge(fd, 0);
        proto_header_put(hdr, PROTO_MSG_REQUEST, PROTO_MAX_REQUEST_BYTES + 1);
        ck_assert_int_eq(send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
        ck_assert_int_eq(error_code_of(fd), EMSGSIZE);
        close(fd);
        ck_assert(dh_alive(&D));
        dh_finish(&D);
}
END_TEST

static Suite *security_suite(void)
{
        Suite *s = suite_create("daemon-security");
        TCase *auth = tcase_create("authorization");
        tcase_set_timeout(auth, 60);
        tcase_add_test(auth, test_uid_isolation);
        tcase_add_test(auth, test_dump_request_only_self);
        suite_add_tcase(s, auth);
        TCase *files = tcase_create("files");
        tcase_set_timeout(files, 60);
        tcase_add_test(files, test_no_client_named_path);
        tcase_add_test(files, test_comm_cannot_escape);
        tcase_add_test(files, test_comm_cannot_escape_local_dump);
        suite_add_tcase(s, files);
        TCase *limits = tcase_create("limits");
        tcase_set_timeout(limits, 60);
        tcase_add_test(limits, test_uid_byte_quota);
        tcase_add_test(limits, test_uid_process_cap);
        tcase_add_test(limits, test_frame_limits);
        suite_add_tcase(s, limits);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(security_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
