/* SPDX-License-Identifier: MIT */
/*
 * Writes the hand-made seed inputs of fuzz-daemon, fuzz-control and
 * fuzz-args (tests/fuzz/corpus/<target>/seed-*), with the real encoders,
 * so the seeds follow the protocol as it is.  Libfuzzer's own finds are
 * merged into the same directories; regression cases are named regress-*.
 *
 *   build/tests/fuzz-mkseeds tests/fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon-blob.h"
#include "proto/wire.h"

static const char *root;

/* ---- writing files ------------------------------------------------------------ */

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t len)
{
        if (b->len + len > b->cap) {
                b->cap = (b->len + len) * 2 + 256;
                b->p = realloc(b->p, b->cap);
                if (!b->p)
                        exit(1);
        }
        memcpy(b->p + b->len, p, len);
        b->len += len;
}

static void save(const char *target, const char *name, const void *p, size_t len)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", root, target);
        (void)mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/seed-%s", root, target, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "cannot write %s\n", path);
                exit(1);
        }
}

static void save_buf(const char *target, const char *name, struct buf *b)
{
        save(target, name, b->p, b->len);
        free(b->p);
        *b = (struct buf){0};
}

/* ---- fuzz-daemon inputs ---------------------------------------------------------- */

#define F_FD      0x04
#define F_GOOD_FD 0x08
#define F_SHUT    0x10
#define F_IDLE    0x20

/* Bytes for connection k, in chunks of at most `piece` bytes; fd flags go
 * with the first chunk, shutdown and idle with the last. */
static void emit(struct buf *b, int k, const void *data, size_t len, int flags, size_t piece)
{
        const uint8_t *p = data;
        size_t off = 0;
        if (piece == 0 || piece > 255)
                piece = 255;
        do {
                size_t n = len - off < piece ? len - off : piece;
                uint8_t ctl = (uint8_t)k;
                if (off == 0)
                        ctl |= (uint8_t)(flags & (F_FD | F_GOOD_FD));
                if (off + n == len)
                        ctl |= (uint8_t)(flags & (F_SHUT | F_IDLE));
                uint8_t hdr[2] = {ctl, (uint8_t)n};
                put(b, hdr, 2);
                put(b, p + off, n);
                off += n;
        } while (off < len);
}

static void hello(struct buf *b, int k, uint32_t role, const char *command)
{
        static struct proto_hello h;
        memset(&h, 0, sizeof(h));
        h.version = PROTO_WIRE_VERSION;
        h.role = role;
        h.pid = 4242;
        h.start_time_ns = 1700000000000000000ull;
        h.clock_freq = 1000000000u;
        snprintf(h.software, sizeof(h.software), "seed");
        snprintf(h.command, sizeof(h.command), "%s", command);
        snprintf(h.executable, sizeof(h.executable), "/seed/%s", command);
        uint8_t frame[PROTO_MAX_SMALL_FRAME];
        ssize_t n = proto_encode_hello(frame, sizeof(frame), &h);
        emit(b, k, frame, (size_t)n, F_IDLE, 0);
}

static void generation(struct buf *b, int k, uint64_t gen, uint32_t len, size_t piece)
{
        uint8_t *f = malloc(PROTO_HEADER_BYTES + len);
        proto_header_put(f, PROTO_MSG_GENERATION, len);
        daemon_blob_fill(f + PROTO_HEADER_BYTES, len, gen, 4242,
                         1700000000000000000ull + gen * 1000000);
        emit(b, k, f, PROTO_HEADER_BYTES + len, 0, piece);
        free(f);
}

static void request(struct buf *b, int k, const char *json, int flags)
{
        size_t len = strlen(json);
        uint8_t *f = malloc(PROTO_HEADER_BYTES + len);
        proto_header_put(f, PROTO_MSG_REQUEST, (uint32_t)len);
        memcpy(f + PROTO_HEADER_BYTES, json, len);
        emit(b, k, f, PROTO_HEADER_BYTES + len, flags | F_IDLE, 0);
        free(f);
}

static void small(struct buf *b, int k, uint8_t *frame, ssize_t n, int flags)
{
        emit(b, k, frame, (size_t)n, flags, 0);
}

static void daemon_seeds(void)
{
        struct buf b = {0};
        uint8_t f[PROTO_MAX_SMALL_FRAME];
        uint8_t nconn;

        nconn = 0;
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_CONTROL, "ctl");
        request(&b, 0, "{\"command\":\"status\"}", 0);
        request(&b, 0, "{\"command\":\"list\"}", 0);
        request(&b, 0, "{\"command\":\"frobnicate\"}", 0);
        request(&b, 0, "[1,2,3]", 0);
        save_buf("fuzz-daemon", "control", &b);

        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "prod");
        generation(&b, 0, 1, 200, 0);
        generation(&b, 0, 2, 300, 0);
        small(&b, 0, f, proto_encode_goodbye(f, sizeof(f)), F_IDLE);
        save_buf("fuzz-daemon", "producer-goodbye", &b);

        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "prod");
        generation(&b, 0, 1, 200, 3); /* in tiny pieces */
        static struct proto_dump_request dr;
        dr.id = 9;
        snprintf(dr.reason, sizeof(dr.reason), "seed dump");
        small(&b, 0, f, proto_encode_dump_request(f, sizeof(f), &dr), F_IDLE);
        save_buf("fuzz-daemon", "producer-dump-request", &b);

        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "crasher");
        generation(&b, 0, 1, 500, 0);
        struct proto_crash cr = {.signo = 11};
        small(&b, 0, f, proto_encode_crash(f, sizeof(f), &cr), F_IDLE | F_SHUT);
        save_buf("fuzz-daemon", "producer-crash", &b);

        /* A snapshot that asks the producer to flush; it answers. */
        nconn = 1;
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "flusher");
        generation(&b, 0, 1, 400, 0);
        hello(&b, 1, PROTO_ROLE_CONTROL, "ctl");
        request(&b, 1, "{\"command\":\"snapshot\",\"pid\":@PID@@@,\"reason\":\"seed\"}", 0);
        generation(&b, 0, 2, 100, 0);
        struct proto_flush_done fd = {.id = 1, .gen = 2};
        small(&b, 0, f, proto_encode_flush_done(f, sizeof(f), &fd), F_IDLE);
        request(&b, 1, "{\"command\":\"list\"}", 0);
        save_buf("fuzz-daemon", "snapshot-flush", &b);

        /* Into a passed descriptor, then a bad one, then --all. */
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "fdproc");
        generation(&b, 0, 1, 300, 0);
        hello(&b, 1, PROTO_ROLE_CONTROL, "ctl");
        request(&b, 1, "{\"command\":\"snapshot\",\"pid\":@PID@@@,\"fd\":true}", F_FD | F_GOOD_FD);
        request(&b, 1, "{\"command\":\"snapshot\",\"pid\":@PID@@@,\"fd\":true}", F_FD);
        request(&b, 1, "{\"command\":\"snapshot\",\"all\":true}", F_FD | F_GOOD_FD);
        small(&b, 0, f, proto_encode_goodbye(f, sizeof(f)), F_IDLE | F_SHUT);
        request(&b, 1, "{\"command\":\"snapshot\",\"pid\":@PID@@@}", 0);
        save_buf("fuzz-daemon", "snapshot-fd", &b);

        /* Retention: bigger than the per-process, per-user and total bounds. */
        nconn = 0;
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "chatty");
        for (uint64_t g = 1; g <= 8; g++)
                generation(&b, 0, g, 6000, 0);
        save_buf("fuzz-daemon", "retention", &b);

        /* The crash path: a second connection of the same process pipelines
         * HELLO, GENERATION and CRASH without waiting for WELCOME. */
        nconn = 1;
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "twoconn");
        generation(&b, 0, 1, 200, 0);
        hello(&b, 1, PROTO_ROLE_PRODUCER, "twoconn");
        generation(&b, 1, 2, 200, 0);
        small(&b, 1, f, proto_encode_crash(f, sizeof(f), &cr), F_SHUT);
        generation(&b, 0, 3, 200, 0);
        save_buf("fuzz-daemon", "crash-second-connection", &b);

        /* Protocol errors, one per connection. */
        nconn = 2;
        put(&b, &nconn, 1);
        proto_header_put(f, 0x77, 0);
        emit(&b, 0, f, PROTO_HEADER_BYTES, F_IDLE, 0);
        proto_header_put(f, PROTO_MSG_HELLO, 1u << 30);
        emit(&b, 1, f, PROTO_HEADER_BYTES, F_IDLE, 0);
        hello(&b, 2, PROTO_ROLE_PRODUCER, "twice");
        hello(&b, 2, PROTO_ROLE_PRODUCER, "twice");
        save_buf("fuzz-daemon", "errors", &b);

        /* A frame cut short, the peer going away mid-frame. */
        nconn = 0;
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "cut");
        generation(&b, 0, 1, 200, 0);
        proto_header_put(f, PROTO_MSG_GENERATION, 5000);
        emit(&b, 0, f, PROTO_HEADER_BYTES + 40, F_SHUT | F_IDLE, 0);
        save_buf("fuzz-daemon", "cut-mid-frame", &b);

        /* A GENERATION that is not one. */
        put(&b, &nconn, 1);
        hello(&b, 0, PROTO_ROLE_PRODUCER, "junk");
        memset(f, 0xab, 64);
        proto_header_put(f, PROTO_MSG_GENERATION, 56);
        emit(&b, 0, f, 64, F_IDLE, 0);
        save_buf("fuzz-daemon", "bad-generation", &b);
}

/* ---- fuzz-control inputs ------------------------------------------------------------ */

static void control_seeds(void)
{
        static const struct {
                const char *name, *json;
        } seeds[] = {
                {"status", "{\"command\":\"status\"}"},
                {"list", "{\"command\":\"list\",\"extra\":[1,{\"a\":null}]}"},
                {"snapshot-pid", "{\"command\":\"snapshot\",\"pid\":4242}"},
                {"snapshot-all", "{\"command\":\"snapshot\",\"all\":true,\"reason\":\"why\"}"},
                {"snapshot-fd", "{\"command\":\"snapshot\",\"pid\":7,\"fd\":true,\"reason\":\"\"}"},
                {"snapshot-both", "{\"command\":\"snapshot\",\"pid\":7,\"all\":true}"},
                {"snapshot-neither", "{\"command\":\"snapshot\"}"},
                {"snapshot-all-fd", "{\"command\":\"snapshot\",\"all\":true,\"fd\":true}"},
                {"pid-zero", "{\"command\":\"snapshot\",\"pid\":0}"},
                {"pid-negative", "{\"command\":\"snapshot\",\"pid\":-3}"},
                {"pid-huge", "{\"command\":\"snapshot\",\"pid\":99999999999999999999999}"},
                {"pid-string", "{\"command\":\"snapshot\",\"pid\":\"12\"}"},
                {"all-string", "{\"command\":\"snapshot\",\"all\":\"yes\"}"},
                {"reason-number", "{\"command\":\"snapshot\",\"all\":true,\"reason\":5}"},
                {"reason-nul", "{\"command\":\"snapshot\",\"all\":true,\"reason\":\"a\\u0000b\"}"},
                {"reason-utf8",
                 "{\"command\":\"snapshot\",\"all\":true,\"reason\":\"\\u00e9\\ud83d\\ude00\"}"},
                {"duplicate", "{\"command\":\"status\",\"command\":\"list\"}"},
                {"unknown", "{\"command\":\"frobnicate\"}"},
                {"command-number", "{\"command\":3}"},
                {"array", "[{\"command\":\"status\"}]"},
                {"not-json", "command=status"},
                {"empty", ""},
                {"deep", "{\"command\":\"list\",\"x\":[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}"},
        };
        for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
                save("fuzz-control", seeds[i].name, seeds[i].json, strlen(seeds[i].json));
        /* A reason of exactly the limit, and one byte over. */
        char big[PROTO_MAX_REASON + 100];
        for (int over = 0; over < 2; over++) {
                int n = snprintf(big, sizeof(big),
                                 "{\"command\":\"snapshot\",\"all\":true,"
                                 "\"reason\":\"");
                for (unsigned k = 0; k < PROTO_MAX_REASON + (unsigned)over; k++)
                        big[n++] = 'r';
                n += snprintf(big + n, sizeof(big) - (size_t)n, "\"}");
                save("fuzz-control", over ? "reason-over" : "reason-limit", big, (size_t)n);
        }
}

/* ---- fuzz-args inputs ------------------------------------------------------------------ */

static void args_seed(const char *name, const char *conf, const char *const *args)
{
        struct buf b = {0};
        put(&b, conf, strlen(conf));
        if (args) {
                put(&b, "\0\0", 2);
                for (int i = 0; args[i]; i++) {
                        if (i)
                                put(&b, "", 1);
                        put(&b, args[i], strlen(args[i]));
                }
        }
        save_buf("fuzz-args", name, &b);
}

static void args_seeds(void)
{
        const char *all[] = {"--socket",
                             "/tmp/s.sock",
                             "--dump-dir",
                             "/tmp/d",
                             "--generations",
                             "20",
                             "--max-process-bytes",
                             "1M",
                             "--max-total-bytes",
                             "2G",
                             "--max-uid-bytes",
                             "512K",
                             "--max-uid-processes",
                             "8",
                             "--retain-exited",
                             "30",
                             "--flush-timeout",
                             "100",
                             "--max-connections",
                             "64",
                             "--max-processes",
                             "100",
                             "--hello-timeout",
                             "1000",
                             "--log-level",
                             "debug",
                             NULL};
        args_seed("all-flags", "", all);
        args_seed("config-file",
                  "# comment\n; other\ngenerations = 7\n  max-total-bytes=2G \r\n\n"
                  "max-uid-bytes = 64K\nmax-uid-processes = 3\nlog-level = notice\n",
                  (const char *const[]){"--dump-dir", "/tmp/d", "--socket", "/tmp/s", NULL});
        args_seed("config-bad-line", "generations\n", (const char *const[]){NULL});
        args_seed("config-unknown", "bogus = 1\n", (const char *const[]){NULL});
        args_seed("config-bad-value", "flush-timeout = 5x\n", (const char *const[]){NULL});
        static const char nul_conf[] = "generations = 3\0 junk\nmax-processes = 2\n";
        save("fuzz-args", "config-nul", nul_conf, sizeof(nul_conf) - 1);
        args_seed("sizes", "",
                  (const char *const[]){"4K", "1.5M", "18446744073709551615G",
                                        "99999999999999999999", "0x10", "-1", " 5", "12X", "1KB",
                                        NULL});
        args_seed("durations", "",
                  (const char *const[]){"1.5s", "10ms", "2h", "3m", "250us", "1e300", "nan", "inf",
                                        "-5", "1e-9ns", NULL});
        args_seed("help", "", (const char *const[]){"--help", NULL});
        args_seed("version", "", (const char *const[]){"--version", NULL});
        args_seed("missing-value", "", (const char *const[]){"--generations", NULL});
        args_seed("stray", "", (const char *const[]){"--generations", "3", "stray", NULL});
        args_seed("prefix-option", "", (const char *const[]){"--gen", "3", "--max-u", "1", NULL});
        args_seed("equals", "", (const char *const[]){"--generations=3", "--log-level=loud", NULL});
        args_seed("short-cluster", "", (const char *const[]){"-xyz", NULL});
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]);
                return 2;
        }
        root = argv[1];
        daemon_seeds();
        control_seeds();
        args_seeds();
        return 0;
}
