/* SPDX-License-Identifier: MIT */
/*
 * libgtrace-client against a real gtraced: socket path rules, the errors a
 * caller acts on, status/list/snapshot (to the daemon's directory and into a
 * descriptor we pass), and the exported symbol list.
 *
 * A process to snapshot is this test itself, speaking the producer side of
 * the protocol with the wire codec: HELLO, one generation built with
 * genbuild, GOODBYE.  The daemon then holds an exited process with our pid.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-proc.h"
#include "daemon-harness.h"
#include "flightrec/reader.h"
#include "gtrace/client.h"
#include "proto/wire.h"

static struct dh_daemon d;

static void daemon_up(void)
{
        dh_start_ok(&d, NULL);
}

static void daemon_down(void)
{
        dh_finish(&d);
}

/* ---- socket paths ---- */

START_TEST(test_socket_path_rules)
{
        char buf[256];
        struct gtrace_client_error e;

        ck_assert_int_eq(gtrace_client_socket_path("/x/y.sock", buf, sizeof(buf), &e), 0);
        ck_assert_str_eq(buf, "/x/y.sock");
        setenv("GTRACED_SOCKET", "/env/g.sock", 1);
        ck_assert_int_eq(gtrace_client_socket_path(NULL, buf, sizeof(buf), &e), 0);
        ck_assert_str_eq(buf, "/env/g.sock");
        ck_assert_int_eq(gtrace_client_socket_path("", buf, sizeof(buf), &e), 0);
        ck_assert_str_eq(buf, "/env/g.sock");
        setenv("GTRACED_SOCKET", "", 1);
        if (geteuid() == 0) {
                ck_assert_int_eq(gtrace_client_socket_path(NULL, buf, sizeof(buf), &e), 0);
                ck_assert_str_eq(buf, "/run/gtraced/gtraced.sock");
        }
        unsetenv("GTRACED_SOCKET");
        ck_assert_int_eq(gtrace_client_socket_path("/a/very/long/path", buf, 8, &e), -ENAMETOOLONG);
}
END_TEST

/* ---- connection errors ---- */

START_TEST(test_connect_no_daemon)
{
        char *dir = cp_tmpdir("clientlib");
        char path[600];
        struct gtrace_client *c = NULL;
        struct gtrace_client_error e;

        (void)snprintf(path, sizeof(path), "%s/none.sock", dir);
        ck_assert_int_eq(gtrace_client_connect(path, &c, &e), -ECONNREFUSED);
        ck_assert_int_eq(e.code, -ECONNREFUSED);
        ck_assert_msg(strstr(e.message, "gtraced is not running at") && strstr(e.message, path),
                      "%s", e.message);
        ck_assert_ptr_null(c);

        /* A socket file nobody listens on: connection refused. */
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", dir);
        ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(s);
        ck_assert_int_eq(gtrace_client_connect(sa.sun_path, &c, &e), -ECONNREFUSED);
        ck_assert(strstr(e.message, "connection refused") != NULL);

        /* Longer than sun_path. */
        char longp[200];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[0] = '/';
        longp[sizeof(longp) - 1] = '\0';
        ck_assert_int_eq(gtrace_client_connect(longp, &c, &e), -ENAMETOOLONG);
        cp_rmtree(dir);
        free(dir);
}
END_TEST

/* A peer that is not gtraced: it answers HELLO with garbage. */
START_TEST(test_connect_not_gtraced)
{
        char *dir = cp_tmpdir("clientlib");
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", dir);
        int ls = socket(AF_UNIX, SOCK_STREAM, 0);
        ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(ls, 1), 0);
        pid_t pid = fork();
        if (pid == 0) {
                int c = accept(ls, NULL, NULL);
                char buf[64];
                (void)!read(c, buf, sizeof(buf));
                /* A frame header with reserved bits set. */
                static const unsigned char junk[8] = {1, 0, 0, 0, 2, 0, 0xff, 0xff};
                (void)!write(c, junk, sizeof(junk));
                _exit(0);
        }
        struct gtrace_client *c = NULL;
        struct gtrace_client_error e;
        int r = gtrace_client_connect(sa.sun_path, &c, &e);
        ck_assert_msg(r == -EBADMSG || r == -EPROTO, "%d: %s", r, e.message);
        ck_assert(strstr(e.message, sa.sun_path) != NULL);
        (void)waitpid(pid, NULL, 0);
        close(ls);
        cp_rmtree(dir);
        free(dir);
}
END_TEST

/* ---- against gtraced ---- */

START_TEST(test_status_and_empty_list)
{
        struct gtrace_client *c;
        struct gtrace_client_error e;
        struct gtrace_client_status s;
        ck_assert_int_eq(gtrace_client_connect(d.sock, &c, &e), 0);
        ck_assert_str_eq(gtrace_client_path(c), d.sock);
        ck_assert(strncmp(gtrace_client_daemon_software(c), "gtraced ", 8) == 0);
        ck_assert_int_eq(gtrace_client_status(c, &s, &e), 0);
        ck_assert_uint_eq(s.protocol, 1);
        ck_assert(s.version[0] != '\0');
        ck_assert_str_eq(s.socket, d.sock);
        ck_assert_uint_gt(s.limits.generations, 0);

        struct gtrace_client_process *v = (void *)1;
        size_t n = 99;
        ck_assert_int_eq(gtrace_client_list(c, &v, &n, &e), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(v);

        struct gtrace_client_dump dump;
        ck_assert_int_eq(gtrace_client_snapshot(c, 999999, "x", -1, &dump, &e), -ENOENT);
        ck_assert_int_eq(dump.result, -ENOENT);
        ck_assert(strstr(e.message, "999999") != NULL);

        /* A bad raw request keeps the connection usable. */
        char *reply = NULL;
        ck_assert_int_eq(gtrace_client_request(c, "{\"command\":\"frobnicate\"}", -1, &reply, &e),
                         0);
        ck_assert_msg(strstr(reply, "\"ok\"") && strstr(reply, "EINVAL"), "%s", reply);
        gtrace_client_free(reply);
        ck_assert_int_eq(gtrace_client_status(c, &s, &e), 0);
        ck_assert_int_eq(gtrace_client_set_timeout(c, 0), -EINVAL);

        struct gtrace_client_dump *all = (void *)1;
        ck_assert_int_eq(gtrace_client_snapshot_all(c, NULL, &all, &n, &e), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_ptr_null(all);
        gtrace_client_close(c);
        gtrace_client_close(NULL);
}
END_TEST

static int producer_push(const char *socket_path)
{
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        int s = dh_connect_sock(socket_path);
        ck_assert_int_ge(s, 0);

        struct proto_hello h = {.version = PROTO_WIRE_VERSION,
                                .role = PROTO_ROLE_PRODUCER,
                                .pid = (uint64_t)getpid(),
                                .uid = getuid(),
                                .clock_freq = 1000000000};
        (void)snprintf(h.software, sizeof(h.software), "test-client-lib");
        (void)snprintf(h.command, sizeof(h.command), "test-client-lib");
        (void)snprintf(h.executable, sizeof(h.executable), "/proc/self/exe");
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(dh_send_all(s, frame, (size_t)n), 0);
        uint16_t type;
        size_t len;
        ck_assert_int_eq(dh_recv_frame(s, 10000, &type, NULL, &len), 0);
        ck_assert_int_eq(type, PROTO_MSG_WELCOME);
        ck_assert_uint_le(len, PROTO_MAX_WELCOME_BYTES);

        struct gb_blobs b = {0};
        char err[256];
        ck_assert_int_eq(gb_compile("GENERATION 1 1\nCLOCK 1000000000 0 0 0 0 1000\n"
                                    "STRING 1 \"main\"\nTHREAD 9 1\n"
                                    "BATCH 9 0 0 {\n THREAD_STATUS 0 0 0 0\n REGION_BEGIN 10 1\n"
                                    " REGION_END 20\n}\nEND_OF_GENERATION\n",
                                    &b, err, sizeof(err)),
                         0);
        uint8_t gh[PROTO_HEADER_BYTES];
        proto_header_put(gh, PROTO_MSG_GENERATION, (uint32_t)b.v[0].len);
        ck_assert_int_eq(dh_send_all(s, gh, sizeof(gh)), 0);
        ck_assert_int_eq(dh_send_all(s, b.v[0].data, b.v[0].len), 0);
        gb_blobs_free(&b);
        n = proto_encode_goodbye(frame, sizeof(frame));
        ck_assert_int_eq(dh_send_all(s, frame, (size_t)n), 0);
        close(s);

        /* Wait until the daemon has seen the end: the process is listed as
         * exited (the test then checks the list through the library). */
        dh_expect_proc(socket_path, getpid(), "exited", DH_GENS_ANY, 0, 10000);
        return 0;
}

static void check_dump_file(const char *path, uint64_t pid)
{
        struct fr_dump *dump;
        struct fr_error err;
        ck_assert_msg(fr_dump_open(path, &dump, &err) == 0, "%s: %s", path, err.msg);
        ck_assert_uint_eq(fr_dump_meta(dump)->pid, pid);
        ck_assert_str_eq(fr_dump_meta(dump)->reason, "library test");
        ck_assert_int_eq(fr_dump_parse(dump, &(struct fr_callbacks){0}, NULL, &err), 0);
        fr_dump_free(dump);
}

START_TEST(test_snapshot_paths_and_fd)
{
        struct gtrace_client *c;
        struct gtrace_client_error e;
        struct gtrace_client_dump dump;
        uint64_t me = (uint64_t)getpid();

        producer_push(d.sock);
        ck_assert_int_eq(gtrace_client_connect(d.sock, &c, &e), 0);

        struct gtrace_client_process *v;
        size_t n;
        ck_assert_int_eq(gtrace_client_list(c, &v, &n, &e), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(v[0].pid, me);
        ck_assert_str_eq(v[0].state, "exited");
        ck_assert_uint_eq(v[0].generations, 1);
        gtrace_client_free(v);

        /* Into the daemon's directory: an absolute path there. */
        ck_assert_msg(gtrace_client_snapshot(c, me, "library test", -1, &dump, &e) == 0, "%s",
                      e.message);
        ck_assert_uint_eq(dump.pid, me);
        ck_assert_msg(strncmp(dump.path, d.dumps, strlen(d.dumps)) == 0, "%s", dump.path);
        check_dump_file(dump.path, me);

        /* Into a file we opened: written through the descriptor. */
        char mine[700];
        (void)snprintf(mine, sizeof(mine), "%s/mine.gtrace", d.dir);
        int fd = open(mine, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_msg(gtrace_client_snapshot(c, me, "library test", fd, &dump, &e) == 0, "%s",
                      e.message);
        close(fd);
        ck_assert_str_eq(dump.path, "");
        check_dump_file(mine, me);

        /* All processes. */
        struct gtrace_client_dump *all;
        ck_assert_int_eq(gtrace_client_snapshot_all(c, "library test", &all, &n, &e), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(all[0].result, 0);
        check_dump_file(all[0].path, me);
        gtrace_client_free(all);
        gtrace_client_close(c);

        /* The one-call form. */
        char path[GTRACE_CLIENT_PATH_MAX];
        ck_assert_int_eq(
                gtrace_client_snapshot_pid(d.sock, me, "library test", path, sizeof(path), &e),
                0);
        check_dump_file(path, me);
        ck_assert_int_eq(gtrace_client_snapshot_pid(d.sock, me, "library test", path, 4, &e),
                         -ENAMETOOLONG);
}
END_TEST

/* ---- exported symbols ---- */

START_TEST(test_exported_symbols)
{
        char allow_path[512];
        cp_source_path("client/exported-symbols.txt", allow_path, sizeof(allow_path));
        char *allow = cp_read(allow_path, NULL);
        ck_assert_ptr_nonnull(allow);
        const char *argv[] = {"/usr/bin/nm",    "-D", "--defined-only", "--format=posix",
                              GTRACE_CLIENT_SO, NULL};
        struct cp_result r;
        cp_run(argv, NULL, NULL, (uid_t)-1, &r);
        ck_assert_msg(r.status == 0, "nm failed: %s", r.err);
        int nsyms = 0;
        char *save = NULL;
        for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[256], type;
                if (sscanf(line, "%255s %c", name, &type) != 2 || type == 'A')
                        continue; /* version nodes */
                char *at = strchr(name, '@');
                if (at)
                        *at = '\0';
                char needle[260];
                (void)snprintf(needle, sizeof(needle), "\n%s\n", name);
                char hay[8192];
                (void)snprintf(hay, sizeof(hay), "\n%s", allow);
                ck_assert_msg(strstr(hay, needle) != NULL, "%s is exported but not listed in %s",
                              name, allow_path);
                nsyms++;
        }
        /* And every listed symbol is exported. */
        int listed = 0;
        for (char *p = allow; *p;) {
                char *nl = strchr(p, '\n');
                if (*p != '#' && p != nl)
                        listed++;
                if (!nl)
                        break;
                p = nl + 1;
        }
        ck_assert_int_eq(nsyms, listed);
        cp_result_free(&r);
        free(allow);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("client-lib");
        TCase *tc = tcase_create("errors");
        tcase_add_test(tc, test_socket_path_rules);
        tcase_add_test(tc, test_connect_no_daemon);
        tcase_add_test(tc, test_connect_not_gtraced);
        suite_add_tcase(s, tc);
        tc = tcase_create("daemon");
        tcase_add_checked_fixture(tc, daemon_up, daemon_down);
        tcase_add_test(tc, test_status_and_empty_list);
        tcase_add_test(tc, test_snapshot_paths_and_fd);
        suite_add_tcase(s, tc);
        tc = tcase_create("symbols");
        tcase_add_test(tc, test_exported_symbols);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
