/* SPDX-License-Identifier: MIT */
/*
 * gtraced: the gtrace flight-recorder daemon.  main() in the house order:
 * arguments → logging → sockets → server → signals → READY=1 → uv_run →
 * STOPPING=1 → close every handle → uv_loop_close() == 0.
 *
 * It runs in the foreground; systemd (or whoever started it) supervises.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "gtraced.h"

/*
 * libuv starts its thread pool on the first queued work.  Dumps are written
 * there, and the first dump is often the one that matters (a crash): start
 * the pool now so it does not pay for creating the threads.
 */
static void warm_work(uv_work_t *w)
{
        (void)w;
}

static void warm_done(uv_work_t *w, int status)
{
        (void)w;
        (void)status;
}

static void warm_threadpool(uv_loop_t *loop)
{
        static uv_work_t warm;
        (void)uv_queue_work(loop, &warm, warm_work, warm_done);
}

int main(int argc, char **argv)
{
        struct gd_config cfg;
        struct gd_server srv;
        uv_loop_t loop;
        int r, exit_code = EXIT_FAILURE;

        r = gd_config_parse(&cfg, argc, argv);
        if (r != 0) {
                gd_config_done(&cfg);
                return r > 0 ? EXIT_SUCCESS : 2;
        }
        log_setup(cfg.log_level);

        /* Writes to a vanished peer return EPIPE (we also pass MSG_NOSIGNAL);
         * a dump beyond RLIMIT_FSIZE returns EFBIG instead of killing us. */
        signal(SIGPIPE, SIG_IGN);
        signal(SIGXFSZ, SIG_IGN);
        /* Until the loop watches them, the signals we handle stay pending
         * instead of killing us with their default action (a SIGTERM that
         * arrives just after the socket went live still shuts down cleanly).
         * The thread pool starts in here and keeps them blocked for good, so
         * they always reach this thread, which gd_server_stop relies on. */
        sigset_t handled, saved;
        gd_handled_signals(&handled);
        sigprocmask(SIG_BLOCK, &handled, &saved);

        r = uv_loop_init(&loop);
        if (r < 0) {
                log_error("Failed to initialise the event loop: %s", uv_strerror(r));
                gd_config_done(&cfg);
                return EXIT_FAILURE;
        }
        r = gd_server_init(&srv, &loop, &cfg);
        if (r >= 0)
                r = gd_server_listen(&srv);
        if (r >= 0)
                r = gd_server_start_signals(&srv);
        if (r >= 0)
                warm_threadpool(&loop);
        sigprocmask(SIG_SETMASK, &saved, NULL);
        if (r >= 0) {
                log_info("gtraced %s ready: dumps into %s; %u generations, %" PRIu64
                         " bytes per process, %" PRIu64 " bytes in total",
                         GTRACED_VERSION, srv.dump_dir, cfg.generations, cfg.max_process_bytes,
                         cfg.max_total_bytes);
                gd_server_send_ready(&srv);
                r = uv_run(&loop, UV_RUN_DEFAULT);
                if (r != 0)
                        log_warning("Event loop ended with handles still active");
                exit_code = EXIT_SUCCESS;
        }
        /* Failed start or finished run: close whatever is still open and let
         * the close callbacks and in-flight dumps drain. */
        gd_server_stop(&srv);
        (void)uv_run(&loop, UV_RUN_DEFAULT);
        gd_server_done(&srv);
        r = uv_loop_close(&loop);
        if (r < 0) {
                log_error("Event loop did not close cleanly: %s", uv_strerror(r));
                exit_code = EXIT_FAILURE;
        }
        gd_config_done(&cfg);
        return exit_code;
}
