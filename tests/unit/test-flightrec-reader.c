/* SPDX-License-Identifier: MIT */
/*
 * The generation parser and validator (flightrec/reader.c).
 *
 * "cases" runs the directory tests/data/parser/: each case is a directory
 * with gen.txt (one generation in genbuild's text form, parsed with
 * fr_generation_parse) or dump.txt (generations written as a .gtrace dump
 * and read with fr_dump_parse), an `expect` file holding "ok" or
 * "error ERRNO message-substring", and optionally an `events` file: the
 * exact callback sequence, one line per call.  Run with GTRACE_BLESS=1 to
 * (re)write the events files of passing cases, then review the diff.
 *
 * "robustness" truncates every valid case at every byte and flips bits in
 * every byte: always an error for truncations, never a crash.  "merge"
 * builds a large random multi-threaded fiber workload whose clocks disagree
 * across threads and checks the delivered order against the sequence
 * numbers.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "flightrec/reader.h"
#include "genbuild.h"

/* ---- formatting the callback stream -------------------------------------- */

static void put(struct gb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct gb_buf *b, const char *fmt, ...)
{
        char tmp[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        ck_assert_int_ge(n, 0);
        gb_buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void put_quoted(struct gb_buf *b, const uint8_t *p, size_t n)
{
        put(b, "\"");
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '"' || p[i] == '\\')
                        put(b, "\\%c", p[i]);
                else if (p[i] < 0x20 || p[i] >= 0x7f)
                        put(b, "\\x%02x", p[i]);
                else
                        put(b, "%c", p[i]);
        }
        put(b, "\"");
}

static int rec_begin(void *ctx, const struct fr_generation *g)
{
        struct gb_buf *b = ctx;

        put(b, "generation %llu pid %llu threads", (unsigned long long)g->gen,
            (unsigned long long)g->pid);
        for (size_t i = 0; i < g->nthreads; i++) {
                const char *name = fr_gen_thread_name(g, g->threads[i]);
                put(b, " %llu", (unsigned long long)g->threads[i]);
                if (name)
                        put(b, "(%s)", name);
        }
        put(b, " batches %llu events %llu lost %llu gens_lost %llu/%llu\n",
            (unsigned long long)g->nbatches, (unsigned long long)g->nevents,
            (unsigned long long)g->lost, (unsigned long long)g->gens_lost,
            (unsigned long long)g->gens_lost_bytes);
        return 0;
}

static int rec_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct gb_buf *b = ctx;

        ck_assert_ptr_nonnull(ev->spec);
        ck_assert_uint_eq(ev->spec->code, ev->type);
        ck_assert_uint_eq(ev->args[0], ev->time);
        ck_assert_uint_ge(ev->offset, g->offset);
        ck_assert_uint_lt(ev->offset, g->offset + g->size);
        put(b, "  %llu %llu %s", (unsigned long long)ev->tid, (unsigned long long)ev->time,
            ev->spec->name);
        for (unsigned i = 1; i < ev->spec->nargs; i++) {
                const struct proto_arg_spec *a = &ev->spec->args[i];
                put(b, " %s=", a->name);
                switch (a->kind) {
                case PA_STR:
                        if (ev->str[i])
                                put_quoted(b, (const uint8_t *)ev->str[i], strlen(ev->str[i]));
                        else
                                put(b, "-");
                        break;
                case PA_BYTES:
                        put_quoted(b, ev->bytes[i], ev->args[i]);
                        break;
                case PA_SINT:
                        put(b, "%lld", (long long)(int64_t)ev->args[i]);
                        break;
                case PA_STATE:
                        put(b, "%s", proto_fiber_state_name((uint8_t)ev->args[i]));
                        break;
                case PA_STACK: {
                        const uint64_t *pcs;
                        size_t n;
                        put(b, "%llu", (unsigned long long)ev->args[i]);
                        if (ev->args[i] && fr_gen_stack(g, ev->args[i], &pcs, &n) == 0) {
                                put(b, "[");
                                for (size_t k = 0; k < n; k++)
                                        put(b, "%s%#llx", k ? " " : "", (unsigned long long)pcs[k]);
                                put(b, "]");
                        }
                        break;
                }
                default:
                        put(b, "%llu", (unsigned long long)ev->args[i]);
                        break;
                }
        }
        put(b, "\n");
        return 0;
}

static int rec_end(void *ctx, const struct fr_generation *g)
{
        put(ctx, "end %llu\n", (unsigned long long)g->gen);
        return 0;
}

static const struct fr_callbacks rec_cb = {rec_begin, rec_event, rec_end};

/* ---- the cases directory ------------------------------------------------- */

#define MAX_CASES 512
static char *cases[MAX_CASES];
static int ncases;

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_cases(void)
{
        DIR *d = opendir(GTRACE_PARSER_CASES);
        struct dirent *e;

        if (!d) {
                fprintf(stderr, "cannot open %s\n", GTRACE_PARSER_CASES);
                exit(EXIT_FAILURE);
        }
        while ((e = readdir(d)) != NULL && ncases < MAX_CASES)
                if (e->d_name[0] != '.')
                        cases[ncases++] = strdup(e->d_name);
        closedir(d);
        qsort(cases, (size_t)ncases, sizeof(cases[0]), name_cmp);
}

static char *case_file(const char *name, const char *file, size_t *ret_len)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s/%s", GTRACE_PARSER_CASES, name, file);
        return gb_read_file(path, ret_len);
}

static int errno_by_name(const char *s)
{
        static const struct {
                const char *name;
                int code;
        } names[] = {{"EBADMSG", EBADMSG}, {"EPROTO", EPROTO},
                     {"EPROTONOSUPPORT", EPROTONOSUPPORT}, {"EMSGSIZE", EMSGSIZE},
                     {"ENOMEM", ENOMEM}};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(names[i].name, s) == 0)
                        return names[i].code;
        ck_abort_msg("unknown errno name %s", s);
        return 0;
}

/* Compiles a case; *ret_dump says whether it is a dump case. */
static void compile_case(const char *name, struct gb_blobs *blobs, int *ret_dump)
{
        char err[256];
        char *text = case_file(name, "gen.txt", NULL);

        *ret_dump = 0;
        if (!text) {
                text = case_file(name, "dump.txt", NULL);
                *ret_dump = 1;
        }
        ck_assert_msg(text != NULL, "%s: neither gen.txt nor dump.txt", name);
        ck_assert_msg(gb_compile(text, blobs, err, sizeof(err)) == 0, "%s: %s", name, err);
        free(text);
        if (!*ret_dump)
                ck_assert_msg(blobs->n == 1, "%s: gen.txt holds %zu generations", name,
                              blobs->n);
}

/* Parses a dump held in memory through a memfd. */
static int parse_dump_bytes(const uint8_t *p, size_t len, const struct fr_callbacks *cb,
                            void *ctx, struct fr_error *err)
{
        int fd = memfd_create("case", MFD_CLOEXEC);
        struct fr_dump *d = NULL;
        int r;

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
        r = fr_dump_open_fd(fd, &d, err);
        if (r < 0)
                return r;
        r = fr_dump_parse(d, cb, ctx, err);
        fr_dump_free(d);
        return r;
}

static int run_blobs(const struct gb_blobs *blobs, int dump, const struct fr_callbacks *cb,
                     void *ctx, struct fr_error *err)
{
        if (!dump) {
                /* An exact-size copy, so a read past the end is caught by ASan. */
                uint8_t *copy = malloc(blobs->v[0].len ? blobs->v[0].len : 1);
                int r;
                if (blobs->v[0].len)
                        memcpy(copy, blobs->v[0].data, blobs->v[0].len);
                r = fr_generation_parse(copy, blobs->v[0].len, 0, cb, ctx, err);
                free(copy);
                return r;
        } else {
                int fd = memfd_create("dump", MFD_CLOEXEC);
                off_t size;
                uint8_t *bytes;
                int r;

                ck_assert_int_ge(fd, 0);
                ck_assert_int_eq(gb_dump_write_fd(fd, NULL, blobs), 0);
                size = lseek(fd, 0, SEEK_END);
                bytes = malloc((size_t)size);
                ck_assert_int_eq(pread(fd, bytes, (size_t)size, 0), size);
                close(fd);
                r = parse_dump_bytes(bytes, (size_t)size, cb, ctx, err);
                free(bytes);
                return r;
        }
}

START_TEST(test_case)
{
        const char *name = cases[_i];
        struct gb_blobs blobs = {0};
        struct gb_buf got = {0};
        struct fr_error err = {0};
        char *expect = case_file(name, "expect", NULL), *want_events, *nl;
        int dump, r;

        ck_assert_msg(expect != NULL, "%s: no expect file", name);
        nl = strchr(expect, '\n');
        if (nl)
                *nl = '\0';
        compile_case(name, &blobs, &dump);
        r = run_blobs(&blobs, dump, &rec_cb, &got, &err);

        if (strcmp(expect, "ok") == 0) {
                ck_assert_msg(r == 0, "%s: expected ok, got %d at %llu: %s", name, r,
                              (unsigned long long)err.offset, err.msg);
        } else {
                char errname[32];
                int consumed = 0;
                const char *substr;

                ck_assert_msg(sscanf(expect, "error %31s %n", errname, &consumed) == 1 &&
                                      consumed > 0,
                              "%s: bad expect line '%s'", name, expect);
                substr = expect + consumed;
                ck_assert_msg(r == -errno_by_name(errname),
                              "%s: expected %s, got %d (%s) at %llu: %s", name, errname, r,
                              strerror(-r), (unsigned long long)err.offset, err.msg);
                ck_assert_int_eq(err.code, r);
                ck_assert_msg(strstr(err.msg, substr) != NULL,
                              "%s: message '%s' lacks '%s'", name, err.msg, substr);
        }

        gb_buf_put(&got, "", 1);
        want_events = case_file(name, "events", NULL);
        if (getenv("GTRACE_BLESS") && r == 0) {
                char path[1024];
                FILE *f;
                snprintf(path, sizeof(path), "%s/%s/events", GTRACE_PARSER_CASES, name);
                f = fopen(path, "we");
                ck_assert_ptr_nonnull(f);
                fputs((const char *)got.data, f);
                fclose(f);
        } else if (want_events) {
                ck_assert_msg(strcmp(want_events, (const char *)got.data) == 0,
                              "%s: events differ; got:\n%s", name, (const char *)got.data);
        }
        free(want_events);
        free(expect);
        gb_buf_free(&got);
        gb_blobs_free(&blobs);
}
END_TEST

/* ---- robustness ---------------------------------------------------------- */

static int is_valid_case(const char *name)
{
        char *expect = case_file(name, "expect", NULL);
        int ok = expect && strncmp(expect, "ok", 2) == 0;
        free(expect);
        return ok;
}

/* Every proper prefix of a valid generation is an error, never a crash. */
START_TEST(test_truncations)
{
        for (int c = 0; c < ncases; c++) {
                struct gb_blobs blobs = {0};
                int dump;

                if (!is_valid_case(cases[c]))
                        continue;
                compile_case(cases[c], &blobs, &dump);
                for (size_t k = 0; k < blobs.n; k++) {
                        const struct gb_buf *b = &blobs.v[k];
                        for (size_t cut = 0; cut < b->len; cut++) {
                                uint8_t *copy = malloc(cut ? cut : 1);
                                struct fr_error err = {0};
                                int r;

                                if (cut)
                                        memcpy(copy, b->data, cut);
                                r = fr_generation_parse(copy, cut, 1000, NULL, NULL, &err);
                                ck_assert_msg(r < 0, "%s: prefix of %zu bytes parsed", cases[c],
                                              cut);
                                ck_assert_int_eq(err.code, r);
                                ck_assert_uint_ge(err.offset, 1000);
                                ck_assert_uint_le(err.offset, 1000 + cut);
                                ck_assert(err.msg[0] != '\0');
                                free(copy);
                        }
                }
                gb_blobs_free(&blobs);
        }
}
END_TEST

static int count_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        (void)g;
        (*(uint64_t *)ctx) += ev->time & 1; /* touch it */
        for (unsigned i = 0; i < ev->spec->nargs; i++) {
                if (ev->spec->args[i].kind == PA_STR && ev->str[i])
                        (*(uint64_t *)ctx) += (uint64_t)strlen(ev->str[i]);
                if (ev->spec->args[i].kind == PA_BYTES && ev->args[i])
                        (*(uint64_t *)ctx) += ev->bytes[i][ev->args[i] - 1];
        }
        return 0;
}

/* Flipped bits anywhere: any verdict, but a clean one. */
START_TEST(test_bit_flips)
{
        static const uint8_t masks[] = {0x01, 0x02, 0x40, 0x80, 0xff, 0x7f};
        const struct fr_callbacks cb = {NULL, count_event, NULL};

        for (int c = 0; c < ncases; c++) {
                struct gb_blobs blobs = {0};
                int dump;

                if (!is_valid_case(cases[c]))
                        continue;
                compile_case(cases[c], &blobs, &dump);
                for (size_t k = 0; k < blobs.n; k++) {
                        const struct gb_buf *b = &blobs.v[k];
                        uint8_t *copy = malloc(b->len);
                        for (size_t i = 0; i < b->len; i++) {
                                for (size_t m = 0; m < sizeof(masks); m++) {
                                        struct fr_error err = {0};
                                        uint64_t sink = 0;
                                        int r;

                                        memcpy(copy, b->data, b->len);
                                        copy[i] ^= masks[m];
                                        r = fr_generation_parse(copy, b->len, 0, &cb, &sink, &err);
                                        if (r < 0) {
                                                ck_assert_int_eq(err.code, r);
                                                ck_assert_uint_le(err.offset, b->len);
                                                ck_assert(err.msg[0] != '\0');
                                        }
                                }
                        }
                        free(copy);
                }
                gb_blobs_free(&blobs);
        }
}
END_TEST

/* ---- API details ----------------------------------------------------------- */

static void build_small(struct gb_gen *g)
{
        static const uint64_t pcs[] = {0x1000, 0x2000, 0xffffffffffffffffull};

        gb_gen_init(g);
        gb_generation(g, 9, 1234);
        gb_clock(g, 3000000000ull, 1000, 5000000000ull, 1700000000000000000ull, 1000, 4000);
        gb_string(g, 1, "main");
        gb_string(g, 2, "span");
        gb_stack(g, 7, pcs, 3);
        gb_thread(g, 100, 1);
        gb_thread(g, 200, 0);
        gb_batch_begin(g, 100, 1000, 0);
        GB_EVENT(g, THREAD_STATUS, 1000, 0, 0, 0);
        GB_EVENT(g, REGION_BEGIN, 1500, 2);
        GB_EVENT(g, REGION_END, 1600);
        GB_EVENT(g, REGION_END, 1700); /* the error the tests below look for */
        gb_batch_end(g);
        gb_end(g);
}

struct api_ctx {
        int begins, events, ends;
        int stop_after;
};

static int api_begin(void *ctx, const struct fr_generation *g)
{
        struct api_ctx *c = ctx;
        const uint64_t *pcs;
        size_t n;

        c->begins++;
        ck_assert_uint_eq(g->gen, 9);
        ck_assert_uint_eq(g->pid, 1234);
        ck_assert_str_eq(fr_gen_string(g, 1), "main");
        ck_assert_str_eq(fr_gen_string(g, 2), "span");
        ck_assert_ptr_null(fr_gen_string(g, 0));
        ck_assert_ptr_null(fr_gen_string(g, 3));
        ck_assert_int_eq(fr_gen_stack(g, 7, &pcs, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(pcs[0], 0x1000);
        ck_assert_uint_eq(pcs[2], UINT64_MAX);
        ck_assert_int_eq(fr_gen_stack(g, 8, &pcs, &n), -ENOENT);
        ck_assert_int_eq(fr_gen_stack(g, 0, &pcs, &n), -ENOENT);
        ck_assert_str_eq(fr_gen_thread_name(g, 100), "main");
        ck_assert_ptr_null(fr_gen_thread_name(g, 200));
        ck_assert_ptr_null(fr_gen_thread_name(g, 300));
        ck_assert_uint_eq(g->nthreads, 2);
        ck_assert_uint_eq(g->threads[0], 100);
        ck_assert_uint_eq(g->threads[1], 200);
        /* 3e9 units per second, anchored at ref 1000. */
        ck_assert_int_eq(fr_clock_mono_ns(&g->clock, 1000), 5000000000ll);
        ck_assert_int_eq(fr_clock_mono_ns(&g->clock, 4000), 5000001000ll);
        ck_assert_int_eq(fr_clock_mono_ns(&g->clock, 1), 5000000000ll - 333);
        ck_assert_int_eq(fr_clock_wall_ns(&g->clock, 1000 + 3000000000ull),
                         1700000001000000000ll);
        return 0;
}

static int api_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct api_ctx *c = ctx;
        (void)g;
        (void)ev;
        return ++c->events == c->stop_after ? 42 : 0;
}

static int api_end(void *ctx, const struct fr_generation *g)
{
        struct api_ctx *c = ctx;
        (void)g;
        c->ends++;
        return 0;
}

START_TEST(test_api)
{
        const struct fr_callbacks cb = {api_begin, api_event, api_end};
        struct gb_gen g;
        struct api_ctx c = {0};
        struct fr_error err = {0};
        uint64_t err_off;
        int r;

        build_small(&g);
        /* Offset of the second REGION_END: the last event of the batch, just
         * before the END_OF_GENERATION record (5 bytes: type + 4 one-byte varints). */
        err_off = g.out.len - 5 - 2;
        r = fr_generation_parse(g.out.data, g.out.len, 777, &cb, &c, &err);
        ck_assert_int_eq(r, -EPROTO);
        ck_assert_int_eq(c.begins, 0); /* per-thread errors come before any callback */
        ck_assert_uint_eq(err.offset, 777 + err_off);
        ck_assert_str_eq(err.msg, "generation 9: thread 100: REGION_END with no open region");
        gb_gen_done(&g);

        /* Without the bad event: all callbacks; then a callback stops the parse. */
        {
                struct gb_gen h;
                gb_gen_init(&h);
                gb_generation(&h, 9, 1234);
                gb_clock(&h, 3000000000ull, 1000, 5000000000ull, 1700000000000000000ull, 1000,
                         4000);
                gb_string(&h, 1, "main");
                gb_string(&h, 2, "span");
                gb_stack(&h, 7, (const uint64_t[]){0x1000, 0x2000, UINT64_MAX}, 3);
                gb_thread(&h, 100, 1);
                gb_thread(&h, 200, 0);
                gb_batch_begin(&h, 100, 1000, 0);
                GB_EVENT(&h, THREAD_STATUS, 1000, 0, 0, 0);
                GB_EVENT(&h, REGION_BEGIN, 1500, 2);
                GB_EVENT(&h, REGION_END, 1600);
                gb_batch_end(&h);
                gb_end(&h);
                memset(&c, 0, sizeof(c));
                ck_assert_int_eq(fr_generation_parse(h.out.data, h.out.len, 0, &cb, &c, NULL), 0);
                ck_assert_int_eq(c.begins, 1);
                ck_assert_int_eq(c.events, 3);
                ck_assert_int_eq(c.ends, 1);
                memset(&c, 0, sizeof(c));
                c.stop_after = 2;
                ck_assert_int_eq(fr_generation_parse(h.out.data, h.out.len, 0, &cb, &c, NULL),
                                 42);
                ck_assert_int_eq(c.events, 2);
                ck_assert_int_eq(c.ends, 0);
                /* No callbacks at all, no error struct. */
                ck_assert_int_eq(fr_generation_parse(h.out.data, h.out.len, 0, NULL, NULL, NULL),
                                 0);
                gb_gen_done(&h);
        }
        /* Oversized and absent blobs. */
        ck_assert_int_eq(fr_generation_parse((const uint8_t *)"", (size_t)PROTO_MAX_GENERATION_BYTES + 1,
                                             0, NULL, NULL, &err),
                         -EMSGSIZE);
        ck_assert_int_eq(fr_generation_parse(NULL, 0, 0, NULL, NULL, &err), -EBADMSG);
}
END_TEST

/* One parser across generations of different shapes gives the same verdicts
 * as fresh parsers (nothing leaks from one generation into the next). */
START_TEST(test_parser_reuse)
{
        struct fr_parser *p = fr_parser_new();
        int rounds = 0;

        ck_assert_ptr_nonnull(p);
        for (int pass = 0; pass < 2; pass++) {
                for (int c = 0; c < ncases; c++) {
                        struct gb_blobs blobs = {0};
                        int dump;

                        compile_case(cases[c], &blobs, &dump);
                        for (size_t k = 0; k < blobs.n; k++) {
                                struct gb_buf a = {0}, b = {0};
                                struct fr_error ea = {0}, eb = {0};
                                int ra = fr_parser_parse(p, blobs.v[k].data, blobs.v[k].len, 0,
                                                         &rec_cb, &a, &ea);
                                int rb = fr_generation_parse(blobs.v[k].data, blobs.v[k].len, 0,
                                                             &rec_cb, &b, &eb);
                                ck_assert_int_eq(ra, rb);
                                ck_assert_uint_eq(a.len, b.len);
                                if (a.len)
                                        ck_assert_int_eq(memcmp(a.data, b.data, a.len), 0);
                                if (ra < 0) {
                                        ck_assert_str_eq(ea.msg, eb.msg);
                                        ck_assert_uint_eq(ea.offset, eb.offset);
                                }
                                gb_buf_free(&a);
                                gb_buf_free(&b);
                                rounds++;
                        }
                        gb_blobs_free(&blobs);
                }
        }
        ck_assert_int_gt(rounds, 0);
        fr_parser_free(p);
        fr_parser_free(NULL);
}
END_TEST

/* ---- a large random workload --------------------------------------------- */

#define MG_THREADS 8
#define MG_FIBERS 64

struct mg_ev {
        uint8_t type;
        uint64_t time;
        uint64_t a[3];
};

struct mg_thread {
        struct mg_ev *ev;
        size_t n, cap;
        uint64_t running;
        uint64_t depth;
};

static uint64_t mg_rand(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void mg_push(struct mg_thread *t, uint8_t type, uint64_t time, uint64_t a0, uint64_t a1,
                    uint64_t a2)
{
        if (t->n == t->cap) {
                t->cap = t->cap ? t->cap * 2 : 1024;
                t->ev = realloc(t->ev, t->cap * sizeof(*t->ev));
                ck_assert_ptr_nonnull(t->ev);
        }
        t->ev[t->n++] = (struct mg_ev){type, time, {a0, a1, a2}};
}

enum { MG_NONE, MG_RUNNABLE, MG_RUNNING, MG_WAITING, MG_GONE };

struct mg_check {
        uint64_t seq[MG_FIBERS + 1];
        uint64_t last_off[MG_THREADS];
        uint64_t events;
        uint64_t bad; /* first broken rule, as an offset + 1 (ck_assert per event is slow) */
};

static int mg_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct mg_check *c = ctx;
        unsigned ti = (unsigned)(ev->tid / 100 - 1);

        (void)g;
        if (ti >= MG_THREADS)
                goto bad;
        if (ev->spec->where != 'T') {
                /* A thread's own events keep their order. */
                if (ev->offset <= c->last_off[ti])
                        goto bad;
                c->last_off[ti] = ev->offset;
        }
        if (ev->type == PROTO_EV_FIBER_CREATE) {
                c->seq[ev->args[1]] = 0;
        } else if (ev->type >= PROTO_EV_FIBER_RUN && ev->type <= PROTO_EV_FIBER_EXIT) {
                if (ev->args[2] != c->seq[ev->args[1]] + 1)
                        goto bad;
                c->seq[ev->args[1]] = ev->args[2];
        }
        c->events++;
        return 0;
bad:
        if (!c->bad)
                c->bad = ev->offset + 1;
        return 0;
}

/*
 * Threads do random work on shared fibers.  Each thread's clock is skewed by
 * up to ±500 units, far more than the 10 units between steps, so cross-thread
 * timestamps routinely contradict the order the sequence numbers impose.
 */
START_TEST(test_merge_random)
{
        struct mg_thread th[MG_THREADS] = {{0}};
        uint8_t fstate[MG_FIBERS + 1] = {0};
        uint64_t fseq[MG_FIBERS + 1] = {0};
        int64_t skew[MG_THREADS];
        uint64_t seed = 0x2545f4914f6cdd1dull, s, next_fiber = 1, total = 0;
        const int steps = 200000;
        struct mg_check chk;
        struct fr_callbacks cb = {NULL, mg_event, NULL};
        struct fr_error err = {0};
        struct timespec t0, t1;
        struct gb_gen g;
        size_t pos[MG_THREADS] = {0};
        int r, open;

        memset(&chk, 0, sizeof(chk));
        printf("merge: seed %#llx\n", (unsigned long long)seed);
        s = seed;
        for (int i = 0; i < MG_THREADS; i++) {
                skew[i] = (int64_t)(mg_rand(&s) % 1001) - 500;
                mg_push(&th[i], PROTO_EV_THREAD_STATUS, 1000, 0, 0, 0);
        }
        for (int step = 0; step < steps; step++) {
                unsigned ti = (unsigned)(mg_rand(&s) % MG_THREADS);
                struct mg_thread *t = &th[ti];
                uint64_t now = (uint64_t)(1000 + 500 + 10 * (int64_t)step + skew[ti]);
                uint64_t f = 1 + mg_rand(&s) % MG_FIBERS, roll = mg_rand(&s) % 100;

                if (t->running) {
                        uint64_t r0 = t->running;
                        if (roll < 20) {
                                mg_push(t, PROTO_EV_FIBER_BLOCK, now, r0, ++fseq[r0], 0);
                                fstate[r0] = MG_WAITING;
                                t->running = 0;
                        } else if (roll < 35) {
                                mg_push(t, PROTO_EV_FIBER_YIELD, now, r0, ++fseq[r0], 0);
                                fstate[r0] = MG_RUNNABLE;
                                t->running = 0;
                        } else if (roll < 38) {
                                mg_push(t, PROTO_EV_FIBER_EXIT, now, r0, ++fseq[r0], 0);
                                fstate[r0] = MG_GONE;
                                t->running = 0;
                        } else if (roll < 60 || t->depth == 0) {
                                mg_push(t, PROTO_EV_REGION_BEGIN, now, 1, 0, 0);
                                t->depth++;
                        } else {
                                mg_push(t, PROTO_EV_REGION_END, now, 0, 0, 0);
                                t->depth--;
                        }
                        continue;
                }
                if (fstate[f] == MG_NONE && next_fiber <= MG_FIBERS && roll < 30) {
                        f = next_fiber++;
                        mg_push(t, PROTO_EV_FIBER_CREATE, now, f, 0, 0);
                        fstate[f] = MG_RUNNABLE;
                        fseq[f] = 0;
                } else if (fstate[f] == MG_RUNNABLE) {
                        mg_push(t, PROTO_EV_FIBER_RUN, now, f, ++fseq[f], 0);
                        fstate[f] = MG_RUNNING;
                        t->running = f;
                } else if (fstate[f] == MG_WAITING) {
                        mg_push(t, PROTO_EV_FIBER_READY, now, f, ++fseq[f], 0);
                        fstate[f] = MG_RUNNABLE;
                } else {
                        mg_push(t, PROTO_EV_COUNTER, now, 1, (uint64_t)(int64_t)-step, 0);
                }
        }

        /* Batches of random length, threads interleaved at random. */
        gb_gen_init(&g);
        gb_generation(&g, 1, 1);
        gb_clock(&g, 1000000000, 0, 0, 0, 0, 1u << 30);
        gb_string(&g, 1, "work");
        for (int i = 0; i < MG_THREADS; i++)
                gb_thread(&g, (uint64_t)(i + 1) * 100, 0);
        do {
                unsigned ti = (unsigned)(mg_rand(&s) % MG_THREADS);
                size_t len = 1 + mg_rand(&s) % 300;
                struct mg_thread *t = &th[ti];

                open = 0;
                if (pos[ti] < t->n) {
                        gb_batch_begin(&g, (ti + 1) * 100, t->ev[pos[ti]].time, 0);
                        for (size_t k = 0; k < len && pos[ti] < t->n; k++, pos[ti]++) {
                                const struct mg_ev *e = &t->ev[pos[ti]];
                                switch (e->type) {
                                case PROTO_EV_THREAD_STATUS:
                                        GB_EVENT(&g, THREAD_STATUS, e->time, 0, 0, 0);
                                        break;
                                case PROTO_EV_REGION_BEGIN:
                                        GB_EVENT(&g, REGION_BEGIN, e->time, 1);
                                        break;
                                case PROTO_EV_REGION_END: GB_EVENT(&g, REGION_END, e->time); break;
                                case PROTO_EV_COUNTER:
                                        GB_EVENT(&g, COUNTER, e->time, 1, e->a[1]);
                                        break;
                                case PROTO_EV_FIBER_CREATE:
                                        GB_EVENT(&g, FIBER_CREATE, e->time, e->a[0], 0, 0);
                                        break;
                                case PROTO_EV_FIBER_BLOCK:
                                        GB_EVENT(&g, FIBER_BLOCK, e->time, e->a[0], e->a[1], 0, 0);
                                        break;
                                case PROTO_EV_FIBER_READY:
                                        GB_EVENT(&g, FIBER_READY, e->time, e->a[0], e->a[1], 0);
                                        break;
                                default:
                                        gb_event_v(&g, e->type, e->time, e->a, 2);
                                        break;
                                }
                                total++;
                        }
                        gb_batch_end(&g);
                }
                for (int i = 0; i < MG_THREADS; i++)
                        open |= pos[i] < th[i].n;
        } while (open);
        gb_end(&g);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = fr_generation_parse(g.out.data, g.out.len, 0, &cb, &chk, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ck_assert_msg(r == 0, "merge: %d at %llu: %s", r, (unsigned long long)err.offset,
                      err.msg);
        ck_assert_msg(chk.bad == 0, "merge: order broken at offset %llu",
                      (unsigned long long)chk.bad - 1);
        ck_assert_uint_eq(chk.events, total);
        {
                double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
                printf("merge: %llu events, %zu bytes, %.1f ms, %.0f MB/s, %.0f ns/event\n",
                       (unsigned long long)total, g.out.len, sec * 1e3,
                       (double)g.out.len / sec / 1e6, sec * 1e9 / (double)total);
        }
        gb_gen_done(&g);
        for (int i = 0; i < MG_THREADS; i++)
                free(th[i].ev);
}
END_TEST

/*
 * regress-wake-storm: thousands of threads wait on one fiber for a sequence
 * number that never comes while another thread moves that fiber through
 * tens of thousands of transitions.  Waking every waiter on every
 * transition made this threads x transitions (minutes); waiting on the
 * exact (fiber, seq) makes it linear.  The verdict is the ordering error.
 */
START_TEST(test_regress_wake_storm)
{
        const uint64_t waiters = 4000, steps = 40000;
        struct fr_error err = {0};
        struct gb_gen g;
        uint64_t seq = 0, t = 10;
        int r;

        gb_gen_init(&g);
        gb_generation(&g, 1, 1);
        gb_clock(&g, 1000000000, 0, 0, 0, 0, 1u << 30);
        for (uint64_t i = 0; i <= waiters; i++)
                gb_thread(&g, 1 + i, 0);
        gb_batch_begin(&g, 1, 10, 0);
        GB_EVENT(&g, THREAD_STATUS, 10, 0, 0, 0);
        GB_EVENT(&g, FIBER_CREATE, 10, 7, 0, 0);
        for (uint64_t i = 0; i < steps / 2; i++) {
                GB_EVENT(&g, FIBER_RUN, ++t, 7, ++seq);
                GB_EVENT(&g, FIBER_YIELD, ++t, 7, ++seq);
        }
        gb_batch_end(&g);
        for (uint64_t i = 1; i <= waiters; i++) {
                gb_batch_begin(&g, 1 + i, 0, 0);
                GB_EVENT(&g, THREAD_STATUS, 0, 0, 0, 0);
                GB_EVENT(&g, FIBER_RUN, 1, 7, 1000000);
                gb_batch_end(&g);
        }
        gb_end(&g);
        r = fr_generation_parse(g.out.data, g.out.len, 0, NULL, NULL, &err);
        ck_assert_int_eq(r, -EPROTO);
        ck_assert_ptr_nonnull(strstr(err.msg, "FIBER_RUN of fiber 7 with seq 1000000 cannot be "
                                              "ordered"));
        gb_gen_done(&g);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("flightrec-reader");
        TCase *tc_cases = tcase_create("cases"), *robust = tcase_create("robustness"),
              *api = tcase_create("api"), *merge = tcase_create("merge"),
              *regress = tcase_create("regress");
        SRunner *sr;
        int failed;

        load_cases();
        tcase_add_loop_test(tc_cases, test_case, 0, ncases);
        tcase_add_test(robust, test_truncations);
        tcase_add_test(robust, test_bit_flips);
        tcase_add_test(api, test_api);
        tcase_add_test(api, test_parser_reuse);
        tcase_add_test(merge, test_merge_random);
        /* Linear work finishes in milliseconds; the old quadratic wake-up took minutes. */
        tcase_set_timeout(regress, 20);
        tcase_add_test(regress, test_regress_wake_storm);
        suite_add_tcase(s, tc_cases);
        suite_add_tcase(s, robust);
        suite_add_tcase(s, api);
        suite_add_tcase(s, merge);
        suite_add_tcase(s, regress);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        for (int i = 0; i < ncases; i++)
                free(cases[i]);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
