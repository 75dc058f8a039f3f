/* SPDX-License-Identifier: MIT */
/*
 * gtraced under systemd's protocols, for real: the notify socket (READY,
 * STATUS, WATCHDOG cadence, STOPPING), socket activation through
 * systemd-socket-activate, and journald priority prefixes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

static struct dh_daemon D;

/* Next notify datagram into buf; 0 or -ETIMEDOUT. */
static int notify_recv(int fd, char *buf, size_t cap, int timeout_ms)
{
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) <= 0)
                return -ETIMEDOUT;
        ssize_t n = recv(fd, buf, cap - 1, 0);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

START_TEST(test_notify_protocol)
{
        ck_assert_int_eq(dh_prepare(&D), 0);
        char path[160];
        snprintf(path, sizeof(path), "%s/notify", D.dir);
        int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        memcpy(sa.sun_path, path, strlen(path) + 1);
        ck_assert_int_eq(bind(ns, (struct sockaddr *)&sa, sizeof(sa)), 0);

        struct dh_opts o = {.notify_socket = path, .watchdog_usec = "200000"};
        ck_assert_int_eq(dh_start(&D, NULL, &o), 0);

        char msg[1024];
        int ready = 0, status = 0, watchdogs = 0;
        uint64_t first_wd = 0, last_wd = 0;
        /* Generous: start-up on a loaded machine is not what is tested. */
        uint64_t deadline = dh_now_ms() + 10000;
        while (dh_now_ms() < deadline && watchdogs < 6) {
                if (notify_recv(ns, msg, sizeof(msg), 1000) < 0)
                        break;
                if (strstr(msg, "READY=1"))
                        ready = 1;
                if (strstr(msg, "STATUS="))
                        status = 1;
                if (strstr(msg, "WATCHDOG=1")) {
                        ck_assert_msg(ready, "WATCHDOG before READY");
                        last_wd = dh_now_ms();
                        if (!watchdogs)
                                first_wd = last_wd;
                        watchdogs++;
                }
        }
        ck_assert(ready);
        ck_assert(status);
        ck_assert_int_ge(watchdogs, 6);
        /* Half of 200 ms: five intervals of ~100 ms, never as slow on average
         * as the 200 ms after which systemd would kill us. */
        uint64_t span = last_wd - first_wd;
        ck_assert_msg(span >= 5 * 60 && span < 5 * 200, "5 watchdog intervals took %llu ms",
                      (unsigned long long)span);

        /* STATUS follows what is held. */
        struct dh_producer p;
        ck_assert_int_eq(dh_producer_spawn(&p, D.sock, "notified", 0), 0);
        ck_assert_int_eq(dh_producer_cmd(&p, 'g', 500, NULL, 0), 0);
        int saw = 0;
        deadline = dh_now_ms() + 5000;
        while (!saw && dh_now_ms() < deadline) {
                if (notify_recv(ns, msg, sizeof(msg), 1000) == 0 &&
                    strstr(msg, "STATUS=1 processes (1 live), 1 generations"))
                        saw = 1;
        }
        ck_assert_msg(saw, "no STATUS with the producer");
        ck_assert_int_eq(dh_producer_cmd(&p, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&p);

        kill(D.pid, SIGTERM);
        int stopping = 0;
        deadline = dh_now_ms() + 5000;
        while (!stopping && dh_now_ms() < deadline) {
                if (notify_recv(ns, msg, sizeof(msg), 1000) == 0 && strstr(msg, "STOPPING=1"))
                        stopping = 1;
        }
        ck_assert(stopping);
        ck_assert_int_eq(dh_stop(&D), 0);
        close(ns);
        dh_cleanup(&D);
}
END_TEST

static int accepts_connections(void *ctx)
{
        return dh_can_connect(ctx);
}

static int path_exists(void *ctx)
{
        struct stat st;
        return stat(ctx, &st) == 0;
}

START_TEST(test_socket_activation)
{
        const char *activate = "/usr/bin/systemd-socket-activate";
        if (access(activate, X_OK) != 0) {
                fprintf(stderr, "skipping: %s not installed\n", activate);
                return;
        }
        ck_assert_int_eq(dh_prepare(&D), 0);
        char listen_arg[160];
        snprintf(listen_arg, sizeof(listen_arg), "--listen=%s", D.sock);
        pid_t pid = fork();
        if (pid == 0) {
                int logfd = open(D.log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                dup2(logfd, STDERR_FILENO);
                /* gtraced's own --socket names a path it must not bind. */
                const char *argv[] = {activate,  listen_arg,  dh_binary("daemon/gtraced"),
                                      "--config", "/dev/null", "--socket",
                                      "/nonexistent/not-used.sock", "--dump-dir", D.dumps,
                                      NULL};
                execv(argv[0], dh_mut(argv));
                _exit(127);
        }
        D.pid = pid;
        /* The first connection makes systemd-socket-activate exec gtraced with
         * the listening socket; the producer talks through it. */
        struct stat st;
        ck_assert(dh_wait_until(path_exists, D.sock, 5000));
        /* The path appears at bind(), before listen(): a connect in between
         * is refused.  Wait until one is accepted. */
        ck_assert(dh_wait_until(accepts_connections, D.sock, 5000));
        struct dh_producer p;
        ck_assert_int_eq(dh_producer_spawn(&p, D.sock, "activated", DH_ANSWER_FLUSH), 0);
        ck_assert_int_eq(dh_producer_cmd(&p, 'g', 400, NULL, 0), 0);
        json_t *r = dh_snapshot(D.sock, p.pid);
        ck_assert(json_is_true(json_object_get(r, "ok")));
        ck_assert(json_is_true(json_object_get(r, "flushed")));
        ck_assert_int_eq(dh_dump_check(dh_str(r, "path"), NULL, NULL), 0);
        json_decref(r);
        json_t *s = dh_request(D.sock, -1, "{\"command\":\"status\"}");
        ck_assert_str_eq(dh_str(s, "socket"), D.sock); /* learned from the passed socket */
        json_decref(s);
        ck_assert_int_eq(dh_producer_cmd(&p, 'q', 0, NULL, 0), 0);
        dh_producer_wait(&p);
        ck_assert_int_eq(dh_stop(&D), 0);
        ck_assert_int_eq(stat(D.sock, &st), 0); /* not ours to remove */
        dh_cleanup(&D);
}
END_TEST

START_TEST(test_journal_prefixes)
{
        ck_assert_int_eq(dh_prepare(&D), 0);
        int fd = open(D.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        struct stat st;
        ck_assert_int_eq(fstat(fd, &st), 0);
        close(fd);
        char js[64];
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", js, 1);
        ck_assert_int_eq(dh_start(&D, NULL, NULL), 0);
        unsetenv("JOURNAL_STREAM");
        ck_assert_int_eq(dh_stop(&D), 0);
        char *buf = dh_read_file(D.log, NULL);
        ck_assert_ptr_nonnull(buf);
        ck_assert_msg(strncmp(buf, "<6>Listening on ", 16) == 0, "log: %s", buf);
        ck_assert_ptr_null(strstr(buf, "gtraced: info:"));
        free(buf);

        /* Without it (a file, a terminal): plain text. */
        struct dh_daemon d2 = {0};
        ck_assert_int_eq(dh_start(&d2, NULL, NULL), 0);
        ck_assert_int_eq(dh_stop(&d2), 0);
        buf = dh_read_file(d2.log, NULL);
        ck_assert_ptr_nonnull(buf);
        ck_assert_msg(strncmp(buf, "gtraced: info: Listening on ", 28) == 0, "log: %s", buf);
        free(buf);
        dh_cleanup(&d2);
        dh_cleanup(&D);
}
END_TEST

static Suite *daemon_systemd_suite(void)
{
        Suite *s = suite_create("daemon-systemd");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_notify_protocol);
        tcase_add_test(tc, test_socket_activation);
        tcase_add_test(tc, test_journal_prefixes);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        SRunner *sr = srunner_create(daemon_systemd_suite());
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
