/* SPDX-License-Identifier: MIT */
/*
 * bench-daemon: gtraced under load.  bench/run starts a private gtraced and
 * uses three modes of this program:
 *
 * --ingest: how many MB/s gtraced takes in from 1, 8 and 64 producers.
 *   The producers are forked processes speaking the producer protocol
 *   directly (docs/protocol.md): HELLO, then GENERATION frames as fast as
 *   the socket takes them, then GOODBYE.  Each frame carries the same real
 *   generation blob, cut by libgtrace from a region/counter stream in this
 *   process beforehand, so the daemon does its real work per frame (checking
 *   the top-level records, keeping and evicting generations) and nothing
 *   else limits the rate: a libgtrace producer sends one generation per
 *   period.  The clock runs from the moment every producer is connected and
 *   told to go until the daemon reports every one of them exited (it has
 *   read each stream to its end).  The producers share the 2 CPUs with the
 *   daemon, as they would.
 *
 * --fill SIZE: a traced process (libgtrace, daemon sink) that emits a
 *   region/counter stream, paced so the daemon receives SIZE in about three
 *   seconds of generations (100 ms period), until the daemon holds SIZE for
 *   it; then it stops emitting, prints "ready pid=P bytes=B", and stays
 *   alive (so a snapshot includes the flush round trip) until its standard
 *   input closes.
 *
 * --lttng-fill SIZE: emits LTTng-UST events on every CPU (one pinned thread
 *   each) until each CPU has written SIZE/ncpus and half again, so an
 *   overwrite-mode session with SIZE of buffers is full.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <flightrec/reader.h>
#include <gtrace/client.h>
#include <gtrace/gtrace.h>
#include <proto/wire.h>

#include "common.h"

#if defined(BENCH_HAVE_LTTNG)
#include "lttng-tp.h"
#endif

#define MAX_PRODUCERS 256

static const char *socket_path;

static void die(const char *what, int err)
{
        fprintf(stderr, "bench-daemon: %s: %s\n", what, strerror(err < 0 ? -err : err));
        exit(1);
}

/* ---- a real generation blob ------------------------------------------------ */

/* Emits `requests` region/counter requests with gtrace in-process and returns
 * the largest generation blob of the resulting dump (malloc'ed). */
static uint8_t *make_blob(uint64_t requests, const char *scratch, size_t *ret_len)
{
        struct gtrace_options o = {.size = sizeof(o), .flags = GTRACE_F_NO_DAEMON,
                                   .dump_dir = scratch, .period_ms = 3600000};
        int r = gtrace_start(&o);
        if (r < 0)
                die("gtrace_start", r);
        for (uint64_t i = 0; i < requests; i++) {
                gtrace_region_begin("request");
                gtrace_counter("queue_depth", (int64_t)(i & 63));
                gtrace_region_end();
        }
        char path[4096];
        r = gtrace_dump("bench-daemon", path, sizeof(path));
        gtrace_stop();
        if (r < 0)
                die("gtrace_dump", r);
        struct fr_dump *d;
        struct fr_error err;
        r = fr_dump_open(path, &d, &err);
        if (r < 0)
                die(err.msg, r);
        uint8_t *best = NULL;
        size_t best_len = 0;
        const uint8_t *blob;
        size_t len;
        uint64_t off;
        while ((r = fr_dump_next(d, &blob, &len, &off, &err)) == 1) {
                if (len > best_len) {
                        free(best);
                        best = malloc(len);
                        if (!best)
                                die("malloc", ENOMEM);
                        memcpy(best, blob, len);
                        best_len = len;
                }
        }
        fr_dump_free(d);
        (void)unlink(path);
        if (r < 0 || !best)
                die("reading the blob dump", r < 0 ? r : EBADMSG);
        *ret_len = best_len;
        return best;
}

/* ---- a protocol-level producer ----------------------------------------------- */

static int write_all(int fd, const struct iovec *iov, int n)
{
        struct iovec v[4];
        memcpy(v, iov, sizeof(*v) * (size_t)n);
        int i = 0;
        while (i < n) {
                ssize_t w = writev(fd, v + i, n - i);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                while (i < n && (size_t)w >= v[i].iov_len) {
                        w -= (ssize_t)v[i].iov_len;
                        i++;
                }
                if (i < n) {
                        v[i].iov_base = (uint8_t *)v[i].iov_base + w;
                        v[i].iov_len -= (size_t)w;
                }
        }
        return 0;
}

static int read_frame(int fd, uint8_t *buf, size_t cap, struct proto_header *ret)
{
        size_t got = 0;
        while (got < PROTO_HEADER_BYTES) {
                ssize_t n = read(fd, buf + got, PROTO_HEADER_BYTES - got);
                if (n <= 0)
                        return n < 0 ? -errno : -ECONNRESET;
                got += (size_t)n;
        }
        int r = proto_header_get(buf, ret);
        if (r < 0)
                return r;
        if (ret->length > cap)
                return -EMSGSIZE;
        for (got = 0; got < ret->length;) {
                ssize_t n = read(fd, buf + got, ret->length - got);
                if (n <= 0)
                        return n < 0 ? -errno : -ECONNRESET;
                got += (size_t)n;
        }
        return 0;
}

/* Connects and does the producer handshake.  Returns the socket. */
static int producer_connect(void)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(socket_path) >= sizeof(sa.sun_path)) {
                close(fd);
                return -ENAMETOOLONG;
        }
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        static struct proto_hello h;
        memset(&h, 0, sizeof(h));
        h.version = PROTO_WIRE_VERSION;
        h.role = PROTO_ROLE_PRODUCER;
        snprintf(h.software, sizeof(h.software), "bench-daemon");
        h.pid = (uint64_t)getpid();
        h.uid = (uint64_t)getuid();
        h.clock_freq = 1000000000u;
        snprintf(h.command, sizeof(h.command), "bench-producer");
        snprintf(h.executable, sizeof(h.executable), "/proc/self/exe");
        static uint8_t buf[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(buf, sizeof(buf), &h);
        if (n < 0) {
                close(fd);
                return (int)n;
        }
        struct iovec iov = {buf, (size_t)n};
        int r = write_all(fd, &iov, 1);
        struct proto_header hdr;
        if (r == 0)
                r = read_frame(fd, buf, sizeof(buf), &hdr);
        if (r == 0 && hdr.type != PROTO_MSG_WELCOME)
                r = -EPROTO;
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* Child: connect, wait for the go byte, send `bytes` of generations, GOODBYE. */
static void producer_main(int go_fd, uint8_t *blob, size_t len, uint64_t bytes)
{
        int fd = producer_connect();
        if (fd < 0)
                die("producer connect", fd);
        char c;
        if (read(go_fd, &c, 1) != 1)
                _exit(1);
        uint8_t hdr[PROTO_HEADER_BYTES];
        proto_header_put(hdr, PROTO_MSG_GENERATION, (uint32_t)len);
        struct iovec iov[2] = {{hdr, sizeof(hdr)}, {blob, len}};
        for (uint64_t sent = 0; sent < bytes; sent += len + sizeof(hdr)) {
                int r = write_all(fd, iov, 2);
                if (r < 0)
                        die("producer write", r);
        }
        uint8_t bye[PROTO_HEADER_BYTES];
        ssize_t n = proto_encode_goodbye(bye, sizeof(bye));
        struct iovec b = {bye, (size_t)(n > 0 ? n : 0)};
        (void)write_all(fd, &b, 1);
        /* The parent learns from the daemon when it has read it all. */
        close(fd);
        _exit(0);
}

static long daemon_rss_kib(uint64_t pid)
{
        char path[64], line[256];
        long kib = -1;
        snprintf(path, sizeof(path), "/proc/%llu/status", (unsigned long long)pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

/* CPU time of every thread of the process so far, in ns (the first field of
 * each task's schedstat); -1 when unreadable. */
static int64_t daemon_cpu_ns(uint64_t pid)
{
        char path[96];
        snprintf(path, sizeof(path), "/proc/%llu/task", (unsigned long long)pid);
        DIR *d = opendir(path);
        if (!d)
                return -1;
        int64_t sum = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
                if (e->d_name[0] == '.')
                        continue;
                int64_t ns = bench_task_cpu_ns((long)pid, atol(e->d_name));
                if (ns >= 0) /* else the thread ended meanwhile */
                        sum += ns;
        }
        closedir(d);
        return sum;
}

/* True when the daemon lists none of pids[0..n) as live. */
static bool all_ended(struct gtrace_client *c, const pid_t *pids, int n)
{
        struct gtrace_client_process *p = NULL;
        size_t np = 0;
        struct gtrace_client_error err;
        if (gtrace_client_list(c, &p, &np, &err) < 0)
                die(err.message, err.code);
        int ended = 0;
        for (int i = 0; i < n; i++)
                for (size_t k = 0; k < np; k++)
                        if (p[k].pid == (uint64_t)pids[i] && strcmp(p[k].state, "live") != 0) {
                                ended++;
                                break;
                        }
        gtrace_client_free(p);
        return ended == n;
}

/* One ingest run with n producers; returns MB/s (10^6 bytes) and sets
 * *cpu_us_per_mb to the daemon's CPU time per MB taken in. */
static double ingest_run(struct gtrace_client *c, uint64_t daemon_pid, int n, uint8_t *blob,
                         size_t len, uint64_t total, double *cpu_us_per_mb)
{
        int go[2];
        if (pipe(go) < 0)
                die("pipe", errno);
        pid_t pids[MAX_PRODUCERS];
        uint64_t per = total / (uint64_t)n;
        uint64_t frames = (per + len + PROTO_HEADER_BYTES - 1) / (len + PROTO_HEADER_BYTES);
        for (int i = 0; i < n; i++) {
                pids[i] = fork();
                if (pids[i] < 0)
                        die("fork", errno);
                if (pids[i] == 0) {
                        close(go[1]);
                        producer_main(go[0], blob, len, per);
                }
        }
        close(go[0]);
        /* Every producer connected (the daemon lists it) before the clock starts. */
        for (;;) {
                struct gtrace_client_process *p = NULL;
                size_t np = 0, live = 0;
                struct gtrace_client_error err;
                if (gtrace_client_list(c, &p, &np, &err) < 0)
                        die(err.message, err.code);
                for (int i = 0; i < n; i++)
                        for (size_t k = 0; k < np; k++)
                                if (p[k].pid == (uint64_t)pids[i] &&
                                    strcmp(p[k].state, "live") == 0)
                                        live++;
                gtrace_client_free(p);
                if ((int)live == n)
                        break;
                (void)poll(NULL, 0, 2);
        }
        int64_t cpu0 = daemon_cpu_ns(daemon_pid);
        uint64_t t0 = bench_mono_ns();
        char gobytes[MAX_PRODUCERS];
        memset(gobytes, 'g', sizeof(gobytes));
        if (write(go[1], gobytes, (size_t)n) != n)
                die("go", errno);
        close(go[1]);
        while (!all_ended(c, pids, n))
                (void)poll(NULL, 0, 1);
        uint64_t t1 = bench_mono_ns();
        int64_t cpu1 = daemon_cpu_ns(daemon_pid);
        for (int i = 0; i < n; i++) {
                int st;
                if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        die("a producer failed", EPROTO);
        }
        double bytes = (double)frames * (double)(len + PROTO_HEADER_BYTES) * n;
        *cpu_us_per_mb = cpu0 >= 0 && cpu1 >= cpu0 ? (double)(cpu1 - cpu0) / 1e3 / (bytes / 1e6) : -1;
        return bytes / 1e6 / ((double)(t1 - t0) / 1e9);
}

static int run_ingest(const char *list, uint64_t total, uint32_t rounds, uint64_t blob_requests,
                      const char *scratch)
{
        int ns[8], nn = 0;
        for (const char *p = list; *p && nn < 8;) {
                ns[nn] = atoi(p);
                if (ns[nn] < 1 || ns[nn] > MAX_PRODUCERS)
                        return 2;
                nn++;
                p += strcspn(p, ",");
                p += *p == ',';
        }
        size_t len;
        uint8_t *blob = make_blob(blob_requests, scratch, &len);
        struct gtrace_client *c;
        struct gtrace_client_error err;
        if (gtrace_client_connect(socket_path, &c, &err) < 0)
                die(err.message, err.code);
        struct gtrace_client_status st;
        if (gtrace_client_status(c, &st, &err) < 0)
                die(err.message, err.code);
        static double mbs[8][64], cpu[8][64];
        if (rounds > 64)
                rounds = 64;
        for (uint32_t r = 0; r < rounds; r++)
                for (int k = 0; k < nn; k++) {
                        int i = (int)((r + (uint32_t)k) % (uint32_t)nn);
                        mbs[i][r] = ingest_run(c, st.pid, ns[i], blob, len, total, &cpu[i][r]);
                }
        long rss = daemon_rss_kib(st.pid);
        char what[128], res[96], cmp[384];
        for (int i = 0; i < nn; i++) {
                struct bench_stat s, sc;
                bench_stat(mbs[i], rounds, &s);
                bench_stat(cpu[i], rounds, &sc);
                snprintf(what, sizeof(what), "gtraced ingest, %d producer%s", ns[i],
                         ns[i] == 1 ? "" : "s");
                bench_fmt_stat(res, sizeof(res), &s, "MB/s", 0);
                /* One core's worth: what the daemon would take in if it had a
                 * CPU to itself, from its CPU time per MB. */
                double core = sc.median > 0 ? 1e6 / sc.median : 0;
                snprintf(cmp, sizeof(cmp),
                         "%.0f generations/s; daemon CPU %.0f µs per MB [%.0f–%.0f], one core's "
                         "worth %.0f MB/s; %.0f MiB per run in %zu-byte generations; daemon RSS "
                         "after all runs %ld MiB",
                         s.median * 1e6 / (double)(len + PROTO_HEADER_BYTES), sc.median, sc.p25,
                         sc.p75, core, (double)total / 1048576.0, len, rss / 1024);
                bench_row(what, res, cmp, "≥ 1 GB/s on one core", core >= 1000 ? "yes" : "**NO**");
        }
        gtrace_client_close(c);
        free(blob);
        return 0;
}

/* ---- --fill: a traced process ---------------------------------------------- */

static uint64_t held_bytes(struct gtrace_client *c, pid_t pid)
{
        struct gtrace_client_process *p = NULL;
        size_t np = 0;
        struct gtrace_client_error err;
        if (gtrace_client_list(c, &p, &np, &err) < 0)
                die(err.message, err.code);
        uint64_t b = 0;
        for (size_t k = 0; k < np; k++)
                if (p[k].pid == (uint64_t)pid)
                        b = p[k].bytes;
        gtrace_client_free(p);
        return b;
}

static int run_fill(uint64_t target)
{
        struct gtrace_options o = {.size = sizeof(o), .period_ms = 100,
                                   .socket_path = socket_path};
        int r = gtrace_start(&o);
        if (r < 0)
                die("gtrace_start", r);
        struct gtrace_client *c;
        struct gtrace_client_error err;
        if (gtrace_client_connect(socket_path, &c, &err) < 0)
                die(err.message, err.code);
        /* Aim at ~3 s: bytes per second at ~3.3 bytes per event. */
        double events_per_ns = (double)target / 3.0 / 3.3 / 1e9;
        uint64_t t0 = bench_mono_ns(), emitted = 0, i = 0, last_check = 0;
        pid_t self = getpid();
        for (;;) {
                for (int k = 0; k < 333; k++, i++) {
                        gtrace_region_begin("request");
                        gtrace_counter("queue_depth", (int64_t)(i & 63));
                        gtrace_region_end();
                }
                emitted += 999;
                uint64_t now = bench_mono_ns();
                while ((double)emitted > (double)(now - t0) * events_per_ns) {
                        struct timespec ts = {0, 200000};
                        nanosleep(&ts, NULL); /* pacing, not synchronisation */
                        now = bench_mono_ns();
                }
                if (now - last_check > 20000000u) {
                        last_check = now;
                        if (held_bytes(c, self) >= target)
                                break;
                }
                if (now - t0 > 120000000000ull)
                        die("the daemon never held the target", ETIMEDOUT);
        }
        /* Idle: let the last generation arrive, then report. */
        (void)gtrace_flush();
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        printf("ready pid=%d bytes=%llu lost=%llu\n", (int)self,
               (unsigned long long)held_bytes(c, self), (unsigned long long)st.events_lost);
        fflush(stdout);
        gtrace_client_close(c);
        char buf[64];
        while (read(0, buf, sizeof(buf)) > 0)
                ;
        gtrace_stop();
        return 0;
}

/* ---- --lttng-fill ------------------------------------------------------------ */

#if defined(BENCH_HAVE_LTTNG)
struct lt_arg {
        int cpu;
        uint64_t events;
};

static void *lttng_thread(void *arg)
{
        struct lt_arg *a = arg;
        (void)bench_pin(a->cpu);
        for (uint64_t i = 0; i < a->events; i++)
                lttng_ust_tracepoint(gtbench, ints, 2, (int64_t)(i & 63));
        return NULL;
}
#endif

static int run_lttng_fill(uint64_t target)
{
#if defined(BENCH_HAVE_LTTNG)
        if (!lttng_ust_tracepoint_enabled(gtbench, ints)) {
                fprintf(stderr, "bench-daemon: gtbench:ints is not enabled\n");
                return 1;
        }
        int n = bench_ncpus();
        if (n > 64)
                n = 64;
        pthread_t th[64];
        struct lt_arg a[64];
        /* ~16 bytes per event (compact header, 4- and 8-byte fields); half
         * again to be sure every sub-buffer was overwritten at least once. */
        for (int i = 0; i < n; i++) {
                a[i] = (struct lt_arg){.cpu = i, .events = target / (uint64_t)n / 16 * 3 / 2};
                if (pthread_create(&th[i], NULL, lttng_thread, &a[i]) != 0)
                        die("pthread_create", EAGAIN);
        }
        for (int i = 0; i < n; i++)
                pthread_join(th[i], NULL);
        return 0;
#else
        (void)target;
        fprintf(stderr, "bench-daemon: built without LTTng-UST\n");
        return 1;
#endif
}

static void usage(FILE *f)
{
        fprintf(f, "usage: bench-daemon --socket PATH --ingest [--producers 1,8,64] [--bytes SIZE]\n"
                   "                    [--rounds N] [--blob-requests N] [--scratch DIR]\n"
                   "       bench-daemon --socket PATH --fill SIZE\n"
                   "       bench-daemon --lttng-fill SIZE\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"ingest", no_argument, NULL, 'i'},
                {"producers", required_argument, NULL, 'n'},
                {"bytes", required_argument, NULL, 'b'},
                {"rounds", required_argument, NULL, 'r'},
                {"blob-requests", required_argument, NULL, 'q'},
                {"scratch", required_argument, NULL, 'd'},
                {"fill", required_argument, NULL, 'f'},
                {"lttng-fill", required_argument, NULL, 'l'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        bool ingest = false;
        const char *producers = "1,8,64", *scratch = "/tmp";
        uint64_t bytes = 1ull << 30, fill = 0, lttng_fill = 0, blob_requests = 100000;
        uint32_t rounds = 3;
        for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
                switch (c) {
                case 's': socket_path = optarg; break;
                case 'i': ingest = true; break;
                case 'n': producers = optarg; break;
                case 'b':
                        if (bench_parse_size(optarg, &bytes) < 0)
                                goto bad;
                        break;
                case 'r': rounds = (uint32_t)strtoul(optarg, NULL, 10); break;
                case 'q': blob_requests = strtoull(optarg, NULL, 10); break;
                case 'd': scratch = optarg; break;
                case 'f':
                        if (bench_parse_size(optarg, &fill) < 0)
                                goto bad;
                        break;
                case 'l':
                        if (bench_parse_size(optarg, &lttng_fill) < 0)
                                goto bad;
                        break;
                case 'h': usage(stdout); return 0;
                default: goto bad;
                }
        }
        if (lttng_fill)
                return run_lttng_fill(lttng_fill);
        if (!socket_path || rounds < 1 || blob_requests < 1 || blob_requests > 100000000)
                goto bad;
        signal(SIGPIPE, SIG_IGN);
        if (fill)
                return run_fill(fill);
        if (ingest) {
                int r = run_ingest(producers, bytes, rounds, blob_requests, scratch);
                if (r == 2)
                        goto bad;
                return r;
        }
bad:
        usage(stderr);
        return 2;
}
