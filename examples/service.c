/* SPDX-License-Identifier: MIT */
/*
 * example-service: a small request-serving program instrumented with
 * libgtrace's public API only, to show what a trace of a real service looks
 * like and to give the demo and the tests something realistic to record.
 *
 * The shape is that of a green-thread server:
 *
 *   acceptor ──request──▶ run queue ◀──────────────┐
 *      (rate-limited)        │                     │ ready
 *                            ▼                     │
 *                  worker-1 … worker-N        io thread
 *                  run one slice of a         (clock_nanosleep until the
 *                  request, then block on     next completion is due)
 *                  "io", yield or exit             ▲
 *                            │ block "io" ─────────┘
 *                            ▼
 *                     audit pipe ──▶ audit thread (blocking read(2),
 *                                    ends the request's async audit task)
 *
 * Every in-flight request is a gtrace fiber.  It is created Runnable by the
 * acceptor, runs in slices on whichever worker picks it up (so it migrates
 * between threads), waits on "io" while the io thread simulates a backend
 * lookup, is made ready again by the io thread, yields once between lookup
 * and render so other requests get a turn, and exits when the response is
 * done.  Each slice is one request phase and one region (parse, lookup,
 * render): regions belong to a thread, so a region never stays open across a
 * block.  Some requests fail (bad input, a missing key) and log an error;
 * the run queue depth is a counter; each request is an async task with an
 * "audit" child task that ends on the audit thread; the io and audit threads
 * wrap their real blocking calls in gtrace_syscall_begin/end.
 *
 * Flags: --duration SEC, --workers N, --rate RPS, --seed N, --dump (dump the
 * trace at the end and print the path), --crash (segfault on purpose at the
 * end, inside a render, so the crash path can be seen).  The tracer itself is
 * configured by the environment (GTRACED_SOCKET, GTRACE_DUMP_DIR, ...), as for
 * any traced program.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <gtrace/gtrace.h>

#define MAX_WORKERS 64
#define MAX_DURATION_S 86400
#define MAX_RATE 1000000
#define MAX_INFLIGHT 4096 /* requests admitted at once; beyond it the acceptor sheds load */
#define IO_POLL_NS 200000 /* longest single sleep of the io thread: 0.2 ms */

enum phase { PHASE_PARSE, PHASE_LOOKUP, PHASE_RENDER };

struct request {
        struct request *next;
        uint64_t id;
        uint64_t fiber;
        uint64_t task;
        enum phase phase;
        uint64_t key;
        uint64_t io_due_ns; /* CLOCK_MONOTONIC */
        uint64_t value;
};

/* A FIFO of requests under a mutex; the condition variable wakes workers. */
struct queue {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct request *head, *tail;
        size_t depth;
};

struct config {
        double duration_s;
        unsigned workers;
        unsigned rate;
        uint64_t seed;
        int dump;
        int crash;
};

static struct config cfg = {
        .duration_s = 5.0,
        .workers = 4,
        .rate = 2000,
        .seed = 1,
};

static struct queue runq = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0 };
static struct queue ioq = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0 };

/* Set by the acceptor when it stops admitting; workers and io drain, then stop.
 * Read under the queue locks, so plain ints suffice. */
static int accepting_done;
static int io_done;

static atomic_uint_fast64_t inflight;  /* admitted and not finished */
static atomic_uint_fast64_t completed; /* responses rendered */
static atomic_uint_fast64_t failed;    /* requests that ended in an error */
static atomic_uint_fast64_t shed;      /* refused at admission */
static atomic_int crash_armed;         /* --crash: the next render faults */
static volatile sig_atomic_t stop_requested;

static int audit_pipe[2] = { -1, -1 };
static _Thread_local volatile uint64_t sink; /* keeps the simulated work from being optimised away */

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: each thread has its own state, seeded from --seed. */
static uint64_t rnd(uint64_t *s)
{
        uint64_t x = *s;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_for(uint64_t salt)
{
        uint64_t s = cfg.seed * 0x9E3779B97F4A7C15ULL + salt + 1;

        return s ? s : 1;
}

static void queue_push(struct queue *q, struct request *r)
{
        pthread_mutex_lock(&q->lock);
        r->next = NULL;
        if (q->tail)
                q->tail->next = r;
        else
                q->head = r;
        q->tail = r;
        q->depth++;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

/* Burns a little CPU so phases have a visible width in the trace. */
static uint64_t spin(uint64_t seed, unsigned rounds)
{
        uint64_t h = seed | 1;

        for (unsigned i = 0; i < rounds; i++)
                h = (h ^ (h >> 31)) * 0x7fb5d329728ea185ULL + i;
        return h;
}

static void finish(struct request *r, int ok)
{
        gtrace_task_end(r->task);
        gtrace_fiber_exit();
        if (ok)
                atomic_fetch_add_explicit(&completed, 1, memory_order_relaxed);
        else
                atomic_fetch_add_explicit(&failed, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
        free(r);
}

static void fault_on_purpose(void)
{
        /* A write to a PROT_NONE page: a genuine SIGSEGV (SEGV_ACCERR), not
         * undefined behaviour the compiler could reason away. */
        volatile char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (page == MAP_FAILED)
                abort();
        fprintf(stderr, "service: --crash: faulting now\n");
        page[0] = 1;
        abort(); /* not reached */
}

/*
 * Runs one slice of a request on the calling worker.  The fiber is Running
 * on this thread; the slice ends by blocking (io), yielding or exiting, and
 * the request is handed on only after that call returned, so the next thread
 * that touches the fiber always sees a consistent state.
 */
static void run_slice(struct request *r, uint64_t *rs, char *msg, size_t msglen)
{
        switch (r->phase) {
        case PHASE_PARSE:
                gtrace_region_begin("parse");
                r->key = spin(r->id, 2000 + (unsigned)(rnd(rs) % 4000));
                if (rnd(rs) % 100 < 3) {
                        snprintf(msg, msglen, "request %" PRIu64 ": malformed header", r->id);
                        gtrace_log("error", msg);
                        gtrace_region_end();
                        finish(r, 0);
                        return;
                }
                gtrace_region_end();
                /* The backend lookup: 0.1 .. 2 ms of simulated latency. */
                r->phase = PHASE_LOOKUP;
                r->io_due_ns = now_ns() + 100000 + rnd(rs) % 1900000;
                gtrace_fiber_block("io");
                queue_push(&ioq, r);
                return;
        case PHASE_LOOKUP:
                gtrace_region_begin("lookup");
                sink = spin(r->value, 1000 + (unsigned)(rnd(rs) % 2000));
                if (r->value % 50 == 0) {
                        snprintf(msg, msglen, "request %" PRIu64 ": key %" PRIx64 " not found", r->id,
                                 r->key);
                        gtrace_log("error", msg);
                        gtrace_region_end();
                        finish(r, 0);
                        return;
                }
                gtrace_region_end();
                r->phase = PHASE_RENDER;
                gtrace_fiber_yield(); /* let queued requests run before the big render */
                queue_push(&runq, r);
                return;
        case PHASE_RENDER: {
                uint64_t audit;
                ssize_t n;

                gtrace_region_begin("render");
                sink = spin(r->key ^ r->value, 4000 + (unsigned)(rnd(rs) % 8000));
                if (atomic_exchange(&crash_armed, 0))
                        fault_on_purpose();
                /* Async work that outlives the request: the audit record is
                 * written by the audit thread, which ends this task. */
                audit = gtrace_task_begin("audit", r->task);
                gtrace_syscall_begin("write");
                n = write(audit_pipe[1], &audit, sizeof(audit));
                gtrace_syscall_end();
                if (n != (ssize_t)sizeof(audit)) {
                        gtrace_log("error", "audit pipe write failed");
                        gtrace_task_end(audit);
                }
                gtrace_region_end();
                finish(r, 1);
                return;
        }
        }
}

static void *worker_main(void *arg)
{
        unsigned idx = (unsigned)(uintptr_t)arg;
        uint64_t rs = seed_for(100 + idx);
        char name[32], msg[128];

        snprintf(name, sizeof(name), "worker-%u", idx);
        gtrace_thread_name(name);
        (void)pthread_setname_np(pthread_self(), name);

        for (;;) {
                struct request *r;
                size_t depth;

                pthread_mutex_lock(&runq.lock);
                /* Workers may stop only when nothing can produce more work:
                 * the acceptor is done and no request is still in flight
                 * (one waiting on io will come back to the run queue). */
                while (!runq.head && !(accepting_done && atomic_load(&inflight) == 0))
                        pthread_cond_wait(&runq.cond, &runq.lock);
                r = runq.head;
                if (!r) {
                        pthread_cond_broadcast(&runq.cond);
                        pthread_mutex_unlock(&runq.lock);
                        break;
                }
                runq.head = r->next;
                if (!runq.head)
                        runq.tail = NULL;
                depth = --runq.depth;
                pthread_mutex_unlock(&runq.lock);
                gtrace_counter("run_queue", (int64_t)depth);

                gtrace_fiber_run(r->fiber);
                run_slice(r, &rs, msg, sizeof(msg));

                if (atomic_load(&inflight) == 0) {
                        /* Maybe the last request: wake idle workers to re-check. */
                        pthread_mutex_lock(&runq.lock);
                        pthread_cond_broadcast(&runq.cond);
                        pthread_mutex_unlock(&runq.lock);
                }
        }
        return NULL;
}

/*
 * The io thread stands in for a backend: it completes each lookup when its
 * due time has passed.  It sleeps in real clock_nanosleep calls (at most
 * IO_POLL_NS each, so a newly queued earlier completion is not missed by
 * much) and marks them as blocking calls in the trace.
 */
static void *io_main(void *arg)
{
        uint64_t rs = seed_for(7);
        struct request *pending = NULL;

        (void)arg;
        gtrace_thread_name("io");
        (void)pthread_setname_np(pthread_self(), "io");
        for (;;) {
                struct request *r, **pp;
                uint64_t now, next_due = UINT64_MAX;
                struct timespec ts;

                pthread_mutex_lock(&ioq.lock);
                while (!ioq.head && !pending && !io_done)
                        pthread_cond_wait(&ioq.cond, &ioq.lock);
                if (!ioq.head && !pending && io_done) {
                        pthread_mutex_unlock(&ioq.lock);
                        break;
                }
                /* Move new submissions to the private pending list. */
                while ((r = ioq.head)) {
                        ioq.head = r->next;
                        ioq.depth--;
                        r->next = pending;
                        pending = r;
                }
                ioq.tail = NULL;
                pthread_mutex_unlock(&ioq.lock);

                now = now_ns();
                for (pp = &pending; (r = *pp);) {
                        if (r->io_due_ns <= now) {
                                *pp = r->next;
                                r->value = rnd(&rs);
                                gtrace_fiber_ready(r->fiber);
                                queue_push(&runq, r);
                        } else {
                                if (r->io_due_ns < next_due)
                                        next_due = r->io_due_ns;
                                pp = &r->next;
                        }
                }
                if (!pending)
                        continue;
                if (next_due - now > IO_POLL_NS)
                        next_due = now + IO_POLL_NS;
                ts.tv_sec = (time_t)(next_due / 1000000000u);
                ts.tv_nsec = (long)(next_due % 1000000000u);
                gtrace_syscall_begin("clock_nanosleep");
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                        ;
                gtrace_syscall_end();
        }
        return NULL;
}

/* Ends the audit tasks; its read(2) blocks until a worker writes a record. */
static void *audit_main(void *arg)
{
        (void)arg;
        gtrace_thread_name("audit");
        (void)pthread_setname_np(pthread_self(), "audit");
        for (;;) {
                uint64_t task;
                ssize_t n;

                gtrace_syscall_begin("read");
                n = read(audit_pipe[0], &task, sizeof(task));
                gtrace_syscall_end();
                if (n == (ssize_t)sizeof(task)) {
                        gtrace_task_end(task);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                break; /* EOF: every worker has exited */
        }
        return NULL;
}

/* Admits requests at --rate for --duration, in 1 ms ticks. */
static void accept_loop(void)
{
        uint64_t start = now_ns(), next_id = 1;
        uint64_t end = start + (uint64_t)(cfg.duration_s * 1e9);
        uint64_t tick = 1000000; /* 1 ms */
        uint64_t t = start;
        double owed = 0.0;

        gtrace_thread_name("acceptor");
        while (!stop_requested) {
                struct timespec ts;

                t += tick;
                if (t > end)
                        break;
                ts.tv_sec = (time_t)(t / 1000000000u);
                ts.tv_nsec = (long)(t % 1000000000u);
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                        if (stop_requested)
                                break;
                owed += (double)cfg.rate / 1000.0;
                while (owed >= 1.0) {
                        struct request *r;

                        owed -= 1.0;
                        if (atomic_load(&inflight) >= MAX_INFLIGHT) {
                                atomic_fetch_add_explicit(&shed, 1, memory_order_relaxed);
                                gtrace_log("warn", "overloaded: request shed at admission");
                                continue;
                        }
                        r = calloc(1, sizeof(*r));
                        if (!r) {
                                gtrace_log("error", "out of memory: request dropped");
                                continue;
                        }
                        r->id = next_id++;
                        r->phase = PHASE_PARSE;
                        r->task = gtrace_task_begin("request", 0);
                        r->fiber = gtrace_fiber_create("request");
                        atomic_fetch_add_explicit(&inflight, 1, memory_order_relaxed);
                        queue_push(&runq, r);
                }
                gtrace_counter("inflight", (int64_t)atomic_load(&inflight));
        }
}

static void on_signal(int sig)
{
        (void)sig;
        stop_requested = 1;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: example-service [options]\n"
                "  --duration SEC  how long to accept requests (default 5, at most %d)\n"
                "  --workers N     worker threads (default 4, 1..%d)\n"
                "  --rate RPS      requests per second (default 2000, 1..%d)\n"
                "  --seed N        random seed (default 1)\n"
                "  --dump          dump the trace at the end (gtrace_dump) and print its path\n"
                "  --crash         crash on purpose (SIGSEGV) at the end, inside a request\n"
                "  --help          this text\n"
                "The tracer reads GTRACED_SOCKET, GTRACE_DUMP_DIR, GTRACE_PERIOD_MS ...\n",
                MAX_DURATION_S, MAX_WORKERS, MAX_RATE);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        if (*s == '-' || *s == '\0')
                return -EINVAL;
        v = strtoull(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "duration", required_argument, NULL, 'd' },
                { "workers", required_argument, NULL, 'w' },
                { "rate", required_argument, NULL, 'r' },
                { "seed", required_argument, NULL, 's' },
                { "dump", no_argument, NULL, 'D' },
                { "crash", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                uint64_t v;
                char *end;

                switch (c) {
                case 'd':
                        errno = 0;
                        cfg.duration_s = strtod(optarg, &end);
                        if (errno || *end || !(cfg.duration_s > 0) || cfg.duration_s > MAX_DURATION_S) {
                                fprintf(stderr, "service: --duration: want seconds in (0, %d], got '%s'\n",
                                        MAX_DURATION_S, optarg);
                                return -EINVAL;
                        }
                        break;
                case 'w':
                        if (parse_u64(optarg, MAX_WORKERS, &v) < 0 || v == 0) {
                                fprintf(stderr, "service: --workers: want 1..%d, got '%s'\n", MAX_WORKERS,
                                        optarg);
                                return -EINVAL;
                        }
                        cfg.workers = (unsigned)v;
                        break;
                case 'r':
                        if (parse_u64(optarg, MAX_RATE, &v) < 0 || v == 0) {
                                fprintf(stderr, "service: --rate: want 1..%d, got '%s'\n", MAX_RATE, optarg);
                                return -EINVAL;
                        }
                        cfg.rate = (unsigned)v;
                        break;
                case 's':
                        if (parse_u64(optarg, UINT64_MAX, &v) < 0) {
                                fprintf(stderr, "service: --seed: want a number, got '%s'\n", optarg);
                                return -EINVAL;
                        }
                        cfg.seed = v;
                        break;
                case 'D':
                        cfg.dump = 1;
                        break;
                case 'C':
                        cfg.crash = 1;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "service: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv)
{
        pthread_t workers[MAX_WORKERS], io, audit;
        struct sigaction sa;
        struct gtrace_stats st;
        unsigned started = 0;
        int r, ret = 1;

        if (parse_args(argc, argv) < 0)
                return 2;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGINT, &sa, NULL);
        (void)sigaction(SIGTERM, &sa, NULL);

        r = gtrace_start(NULL);
        if (r < 0)
                fprintf(stderr, "service: gtrace_start: %s (running untraced)\n", strerror(-r));
        gtrace_thread_name("main");
        printf("service: pid %ld, %u workers, %u requests/s for %gs\n", (long)getpid(), cfg.workers,
               cfg.rate, cfg.duration_s);
        fflush(stdout);

        if (pipe(audit_pipe) < 0) {
                perror("service: pipe");
                goto out_stop;
        }
        if (pthread_create(&audit, NULL, audit_main, NULL) != 0) {
                fprintf(stderr, "service: cannot start the audit thread\n");
                goto out_pipe;
        }
        if (pthread_create(&io, NULL, io_main, NULL) != 0) {
                fprintf(stderr, "service: cannot start the io thread\n");
                goto out_audit;
        }
        for (; started < cfg.workers; started++) {
                if (pthread_create(&workers[started], NULL, worker_main, (void *)(uintptr_t)(started + 1)) != 0) {
                        fprintf(stderr, "service: cannot start worker %u\n", started + 1);
                        stop_requested = 1;
                        break;
                }
        }

        gtrace_region_begin("serve");
        if (started > 0) {
                if (cfg.crash)
                        fprintf(stderr, "service: --crash: will fault in a render after %gs\n",
                                cfg.duration_s);
                accept_loop();
        }
        gtrace_region_end();
        if (cfg.crash && started > 0 && !stop_requested) {
                /* The crash happens in the next render on some worker, with
                 * requests in flight: that is the state a crash dump shows. */
                atomic_store(&crash_armed, 1);
                for (unsigned i = 0; i < 100 && atomic_load(&inflight) > 0; i++) {
                        struct timespec ms = { 0, 10000000 };

                        (void)nanosleep(&ms, NULL);
                }
                fault_on_purpose(); /* nothing was left in flight: fault here */
        }

        /* Drain: stop admitting, let in-flight requests finish. */
        pthread_mutex_lock(&runq.lock);
        accepting_done = 1;
        pthread_cond_broadcast(&runq.cond);
        pthread_mutex_unlock(&runq.lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(workers[i], NULL);
        ret = 0;

        pthread_mutex_lock(&ioq.lock);
        io_done = 1;
        pthread_cond_broadcast(&ioq.cond);
        pthread_mutex_unlock(&ioq.lock);
        pthread_join(io, NULL);
out_audit:
        close(audit_pipe[1]);
        audit_pipe[1] = -1;
        pthread_join(audit, NULL);
out_pipe:
        if (audit_pipe[1] >= 0)
                close(audit_pipe[1]);
        close(audit_pipe[0]);
out_stop:
        printf("service: %" PRIu64 " requests completed, %" PRIu64 " failed, %" PRIu64 " shed\n",
               (uint64_t)atomic_load(&completed), (uint64_t)atomic_load(&failed),
               (uint64_t)atomic_load(&shed));
        gtrace_get_stats(&st);
        printf("service: trace: %" PRIu64 " events, %" PRIu64 " lost, %" PRIu64 " generations, %" PRIu64
               " sent to gtraced\n",
               st.events, st.events_lost, st.generations, st.generations_sent);
        if (cfg.dump && ret == 0) {
                char path[PATH_MAX];

                r = gtrace_dump("example service: end of run", path, sizeof(path));
                if (r < 0) {
                        fprintf(stderr, "service: gtrace_dump: %s\n", strerror(-r));
                        ret = 1;
                } else {
                        printf("dump: %s\n", path);
                }
        }
        fflush(stdout);
        gtrace_stop();
        return ret;
}
