/* SPDX-License-Identifier: MIT */
/*
 * bench-httpd: a small libuv HTTP/1.1 server instrumented the way a service
 * would be, for the "overhead on a real workload" measurement (bench/run
 * drives it with wrk, tracing off and on, alternating).
 *
 * Per request: a region "request" around everything, and one region per
 * phase ("parse", "handle", "respond"); one request in 100 is answered 503
 * as if overloaded, and that error is logged (gtrace_log); a counter tracks
 * open connections.  The handler does a little real work (hashes the request
 * and formats a JSON body), so a request costs what a trivial endpoint of a
 * real service costs, not less.
 *
 *   bench-httpd [--trace] [--probe KIND] [--idle-thread] [--port N]
 *               [--warmup W --requests N]
 *
 * --trace starts gtrace with the defaults and the environment (GTRACED_SOCKET
 * names the daemon); without it every gtrace call is a no-op.  Prints
 * "listening PORT PID" when ready; SIGTERM or SIGINT stop it cleanly, and
 * it prints its request count and CPU time on standard error.
 *
 * --probe KIND replaces what the instrumentation points call, to set gtrace
 * beside events of known cost in the very same places (a server's setting,
 * where the kernel runs between requests, is not a microbenchmark's):
 * "floor" (the timestamped thread-local append bench-emit calls the floor),
 * "rdtsc" (the cycle counter read alone) or "call" (an empty call).
 * Default "gtrace".  Four more set the floor beside itself grown, for what a
 * call's footprint costs here: "floor-data" reads eight more data lines
 * (the same eight) per call, "floor-pages" eight lines on eight pages
 * (the TLB's share), "floor-code" (x86-64) first runs ten jumps, each to
 * the start of the next code line, "floor-alu" (x86-64) 24 adds
 * that depend on nothing (what gtrace's fast path has over the floor, in
 * instructions, without its branches or lines).
 * --idle-thread starts a thread that only sleeps, in a file table of its
 * own as gtrace's advance thread: what any second thread costs a process
 * that had only one (glibc leaves its single-threaded paths for good).
 *
 * --requests N makes a run of a fixed size for instruction counts: after W
 * requests (--warmup, default 0) the server zeroes callgrind's counters,
 * after N more it dumps them (CALLGRIND_DUMP_STATS_AT("requests")) and
 * stops.  Outside valgrind the client requests cost nothing.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtrace/gtrace.h>
#include <uv.h>

#include "common.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_HAVE_CALLGRIND 1
#endif
#endif
#if !defined(BENCH_HAVE_CALLGRIND)
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(what)
#endif

#define READ_BYTES 8192 /* one connection's request buffer */

struct conn {
        uv_tcp_t tcp;
        size_t len;
        char buf[READ_BYTES];
};

struct reply {
        uv_write_t req;
        char data[512];
};

/* ---- the instrumentation points -------------------------------------------- */

enum probe {
        PROBE_GTRACE,
        PROBE_FLOOR,
        PROBE_RDTSC,
        PROBE_CALL,
        PROBE_FLOOR_DATA,
        PROBE_FLOOR_PAGES,
        PROBE_FLOOR_CODE,
        PROBE_FLOOR_ALU
};
static enum probe probe;

/* Stand-ins of known cost, out of line as an API call is (--probe). */
#define FLOOR_BYTES (1u << 20)
static struct {
        uint8_t *pos;
        uint64_t last, sink;
        uint8_t data[FLOOR_BYTES];
} floor_buf;

static inline uint8_t *floor_put(uint8_t *p, uint64_t v)
{
        while (v >= 0x80) {
                *p++ = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        *p++ = (uint8_t)v;
        return p;
}

static __attribute__((noinline)) void probe_floor(uint8_t type, uint64_t arg)
{
        uint64_t now = bench_ticks();
        if (!floor_buf.pos || floor_buf.pos > floor_buf.data + FLOOR_BYTES - 32)
                floor_buf.pos = floor_buf.data;
        uint8_t *p = floor_buf.pos;
        *p++ = type;
        p = floor_put(p, now - floor_buf.last);
        floor_buf.last = now;
        floor_buf.pos = floor_put(p, arg);
}

static __attribute__((noinline)) void probe_floor_data(uint8_t type, uint64_t arg)
{
        static volatile uint64_t lines[8][8] __attribute__((aligned(64)));
        uint64_t x = 0;
        for (int i = 0; i < 8; i++)
                x += lines[i][0];
        floor_buf.sink += x;
        probe_floor(type, arg);
}

/* The same, but the eight lines lie on eight pages: what a call's pages
 * cost (the TLB), beside floor-data's lines of one page. */
static __attribute__((noinline)) void probe_floor_pages(uint8_t type, uint64_t arg)
{
        static volatile uint64_t pages[8][4096 / 8] __attribute__((aligned(4096)));
        uint64_t x = 0;
        for (int i = 0; i < 8; i++)
                x += pages[i][0];
        floor_buf.sink += x;
        probe_floor(type, arg);
}

#if defined(__x86_64__)
#define HAVE_PROBE_FLOOR_CODE 1
static __attribute__((noinline)) void probe_floor_code(uint8_t type, uint64_t arg)
{
        __asm__ volatile(".p2align 6\n"
                         ".rept 10\n"
                         "jmp 1f\n"
                         ".p2align 6\n"
                         "1:\n"
                         ".endr" ::: "memory");
        probe_floor(type, arg);
}

static __attribute__((noinline)) void probe_floor_alu(uint8_t type, uint64_t arg)
{
        __asm__ volatile(".rept 6\n"
                         "add $1, %%r8\n"
                         "add $1, %%r9\n"
                         "add $1, %%r10\n"
                         "add $1, %%r11\n"
                         ".endr" ::: "r8", "r9", "r10", "r11", "cc");
        probe_floor(type, arg);
}
#endif

static __attribute__((noinline)) void probe_rdtsc(void)
{
        floor_buf.sink += bench_ticks();
}

static __attribute__((noinline)) void probe_call(void)
{
        __asm__ volatile("" ::: "memory");
}

/* --probe's names: the one list parsing, --help and the error use. */
static const struct {
        const char *name;
        enum probe probe;
} probe_names[] = {
        {"gtrace", PROBE_GTRACE},
        {"floor", PROBE_FLOOR},
        {"rdtsc", PROBE_RDTSC},
        {"call", PROBE_CALL},
        {"floor-data", PROBE_FLOOR_DATA},
        {"floor-pages", PROBE_FLOOR_PAGES},
#if defined(HAVE_PROBE_FLOOR_CODE)
        {"floor-code", PROBE_FLOOR_CODE},
        {"floor-alu", PROBE_FLOOR_ALU},
#endif
};

static void print_probe_names(FILE *f, const char *sep)
{
        for (size_t i = 0; i < sizeof(probe_names) / sizeof(probe_names[0]); i++)
                fprintf(f, "%s%s", i ? sep : "", probe_names[i].name);
        fputc('\n', f);
}

static bool parse_probe(const char *s)
{
        for (size_t i = 0; i < sizeof(probe_names) / sizeof(probe_names[0]); i++) {
                if (!strcmp(s, probe_names[i].name)) {
                        probe = probe_names[i].probe;
                        return true;
                }
        }
        return false;
}

static void stand_in(uint8_t type, uint64_t arg)
{
        switch (probe) {
        case PROBE_FLOOR: probe_floor(type, arg); break;
        case PROBE_RDTSC: probe_rdtsc(); break;
        case PROBE_FLOOR_DATA: probe_floor_data(type, arg); break;
        case PROBE_FLOOR_PAGES: probe_floor_pages(type, arg); break;
#if defined(HAVE_PROBE_FLOOR_CODE)
        case PROBE_FLOOR_CODE: probe_floor_code(type, arg); break;
        case PROBE_FLOOR_ALU: probe_floor_alu(type, arg); break;
#endif
        default: probe_call(); break;
        }
}

static inline void t_begin(const char *name)
{
        if (probe == PROBE_GTRACE)
                gtrace_region_begin(name);
        else
                stand_in(0x20, (uintptr_t)name & 0x7f);
}

static inline void t_end(void)
{
        if (probe == PROBE_GTRACE)
                gtrace_region_end();
        else
                stand_in(0x21, 0);
}

static inline void t_log(const char *category, const char *message)
{
        if (probe == PROBE_GTRACE)
                gtrace_log(category, message);
        else
                stand_in(0x22, strlen(message));
}

static inline void t_counter(const char *name, int64_t v)
{
        if (probe == PROBE_GTRACE)
                gtrace_counter(name, v);
        else
                stand_in(0x23, (uint64_t)v);
}

/* ---- the server ------------------------------------------------------------- */

static uv_loop_t *loop;
static uint64_t nrequests; /* answered 200 (they number the responses) */
static uint64_t served;    /* every request answered */
static uint64_t warmup, limit;
static int64_t nconns;

/* One request answered: the bounds of a fixed-size run. */
static void request_done(void)
{
        served++;
        if (!limit)
                return;
        if (served == warmup)
                CALLGRIND_ZERO_STATS;
        if (served == warmup + limit) {
                CALLGRIND_DUMP_STATS_AT("requests");
                uv_stop(loop);
        }
}

static void on_close(uv_handle_t *h)
{
        free(h->data);
}

static void conn_close(struct conn *c)
{
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
                t_counter("connections", --nconns);
                uv_close((uv_handle_t *)&c->tcp, on_close);
        }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
        struct conn *c = h->data;
        buf->base = c->buf + c->len;
        buf->len = sizeof(c->buf) - c->len;
}

static void on_written(uv_write_t *req, int status)
{
        free(req->data);
}

/* FNV-1a: the handler's "work". */
static uint64_t hash(const char *p, size_t n)
{
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++) {
                h ^= (uint8_t)p[i];
                h *= 1099511628211ull;
        }
        return h;
}

/* Always 16 digits by the same steps: printf's zero padding would make the
 * cost depend on the hash, and so on the port in the Host header, and the
 * instruction counts differ between two servers doing the same work. */
static void hex16(char out[17], uint64_t v)
{
        for (int i = 15; i >= 0; i--, v >>= 4)
                out[i] = "0123456789abcdef"[v & 15];
        out[16] = '\0';
}

/* Handles one complete request of n bytes at p.  Returns false to close. */
static bool handle_request(struct conn *c, const char *p, size_t n)
{
        t_begin("request");

        t_begin("parse");
        const char *sp1 = memchr(p, ' ', n);
        const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(p + n - sp1 - 1)) : NULL;
        bool ok = sp1 && sp2 && (size_t)(sp1 - p) == 3 && memcmp(p, "GET", 3) == 0;
        t_end();

        t_begin("handle");
        struct reply *r = malloc(sizeof(*r));
        if (!r) {
                t_end();
                t_end();
                return false;
        }
        r->req.data = r;
        char body[160];
        int status = 200;
        int blen;
        uint64_t h = hash(p, n);
        if (!ok) {
                status = 400;
                t_log("http", "malformed request line");
                blen = snprintf(body, sizeof(body), "{\"error\":\"bad request\"}\n");
        } else if (++nrequests % 100 == 0) {
                status = 503;
                t_log("http", "overloaded: shedding request");
                blen = snprintf(body, sizeof(body), "{\"error\":\"overloaded\"}\n");
        } else {
                char etag[17];
                hex16(etag, h);
                blen = snprintf(body, sizeof(body),
                                "{\"path\":\"%.*s\",\"request\":%llu,\"etag\":\"%s\"}\n",
                                (int)(sp2 - sp1 - 1 > 64 ? 64 : sp2 - sp1 - 1), sp1 + 1,
                                (unsigned long long)nrequests, etag);
        }
        t_end();

        t_begin("respond");
        int len = snprintf(r->data, sizeof(r->data),
                           "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                           "Content-Length: %d\r\nConnection: keep-alive\r\n\r\n%s",
                           status, status == 200 ? "OK" : status == 503 ? "Service Unavailable"
                                                                        : "Bad Request",
                           blen, body);
        uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
        int e = uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
        if (e < 0)
                free(r);
        t_end();

        t_end();
        return e == 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct conn *c = s->data;
        if (n < 0) {
                conn_close(c);
                return;
        }
        c->len += (size_t)n;
        /* Every complete request in the buffer (wrk does not pipeline, but
         * a client may). */
        size_t start = 0;
        for (;;) {
                char *end = NULL;
                for (size_t i = start; i + 3 < c->len; i++)
                        if (memcmp(c->buf + i, "\r\n\r\n", 4) == 0) {
                                end = c->buf + i + 4;
                                break;
                        }
                if (!end)
                        break;
                if (!handle_request(c, c->buf + start, (size_t)(end - c->buf) - start)) {
                        conn_close(c);
                        return;
                }
                request_done();
                start = (size_t)(end - c->buf);
        }
        if (start) {
                memmove(c->buf, c->buf + start, c->len - start);
                c->len -= start;
        }
        if (c->len == sizeof(c->buf)) {
                t_log("http", "request too large");
                conn_close(c);
        }
}

static void on_connection(uv_stream_t *server, int status)
{
        if (status < 0)
                return;
        struct conn *c = calloc(1, sizeof(*c));
        if (!c)
                return;
        uv_tcp_init(loop, &c->tcp);
        c->tcp.data = c;
        if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
                uv_close((uv_handle_t *)&c->tcp, on_close);
                return;
        }
        (void)uv_tcp_nodelay(&c->tcp, 1);
        t_counter("connections", ++nconns);
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void *idle_main(void *arg)
{
        /* As gtrace's advance thread does (runtime/advance.c): a file table
         * of its own, so the loop thread's stays single-user. */
        (void)syscall(SYS_close_range, 0u, ~0u, 1u << 1 /* CLOSE_RANGE_UNSHARE */);
        for (;;)
                pause();
        return NULL;
}

static void on_signal(uv_signal_t *h, int signo)
{
        uv_stop(loop);
}

static void close_walk(uv_handle_t *h, void *arg)
{
        if (!uv_is_closing(h))
                uv_close(h, h->type == UV_TCP && h->data ? on_close : NULL);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"trace", no_argument, NULL, 't'},
                {"port", required_argument, NULL, 'p'},
                {"warmup", required_argument, NULL, 'w'},
                {"requests", required_argument, NULL, 'n'},
                {"probe", required_argument, NULL, 'P'},
                {"idle-thread", no_argument, NULL, 'I'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        static const char usage[] =
                "usage: bench-httpd [--trace] [--probe KIND] [--idle-thread]\n"
                "                   [--port N]\n"
                "                   [--warmup W --requests N]\n"
                "KIND (default gtrace): ";
        bool trace = false, idle_thread = false;
        int port = 0;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                switch (c) {
                case 't': trace = true; break;
                case 'p': port = atoi(optarg); break;
                case 'w': warmup = strtoull(optarg, NULL, 10); break;
                case 'n': limit = strtoull(optarg, NULL, 10); break;
                case 'I': idle_thread = true; break;
                case 'P':
                        if (!parse_probe(optarg)) {
                                fprintf(stderr, "bench-httpd: --probe ");
                                print_probe_names(stderr, "|");
                                return 2;
                        }
                        break;
                case 'h':
                        printf("%s", usage);
                        print_probe_names(stdout, ", ");
                        return 0;
                default:
                        fprintf(stderr, "%s", usage);
                        print_probe_names(stderr, ", ");
                        return 2;
                }
        }
        if (port < 0 || port > 65535) {
                fprintf(stderr, "bench-httpd: bad port\n");
                return 2;
        }
        if (trace) {
                int r = gtrace_start(NULL);
                if (r < 0) {
                        fprintf(stderr, "bench-httpd: gtrace_start: %s\n", strerror(-r));
                        return 1;
                }
                gtrace_thread_name("http-loop");
        }
        if (idle_thread) {
                pthread_t t;
                sigset_t all, old;
                sigfillset(&all);
                pthread_sigmask(SIG_SETMASK, &all, &old);
                int e = pthread_create(&t, NULL, idle_main, NULL);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                if (e) {
                        fprintf(stderr, "bench-httpd: pthread_create: %s\n", strerror(e));
                        return 1;
                }
        }
        /* A client that closes with responses in flight must not kill the
         * server (libuv reports EPIPE instead). */
        signal(SIGPIPE, SIG_IGN);
        loop = uv_default_loop();
        uv_tcp_t server;
        uv_tcp_init(loop, &server);
        server.data = NULL;
        struct sockaddr_in addr;
        uv_ip4_addr("127.0.0.1", port, &addr);
        int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
        if (r == 0)
                r = uv_listen((uv_stream_t *)&server, 1024, on_connection);
        if (r < 0) {
                fprintf(stderr, "bench-httpd: listen: %s\n", uv_strerror(r));
                return 1;
        }
        struct sockaddr_storage ss;
        int sl = sizeof(ss);
        uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &sl);
        printf("listening %d %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port), (int)getpid());
        fflush(stdout);

        uv_signal_t sigterm, sigint;
        uv_signal_init(loop, &sigterm);
        uv_signal_init(loop, &sigint);
        uv_signal_start(&sigterm, on_signal, SIGTERM);
        uv_signal_start(&sigint, on_signal, SIGINT);

        if (limit && !warmup)
                CALLGRIND_ZERO_STATS;
        uv_run(loop, UV_RUN_DEFAULT);
        uv_walk(loop, close_walk, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        r = uv_loop_close(loop);
        if (trace)
                gtrace_stop();
        /* The whole process's CPU time (every thread: gtrace's advance thread
         * counts against tracing) per request: a throughput measure that the
         * neighbours on a shared machine do not move much. */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        uint64_t cpu_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
                          ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
        fprintf(stderr, "bench-httpd: requests=%llu cpu_ns=%llu\n", (unsigned long long)served,
                (unsigned long long)cpu_ns);
        return r == 0 ? 0 : 1;
}
