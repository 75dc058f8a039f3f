/* SPDX-License-Identifier: MIT */
/* genbuild: hand-built generation blobs and dump files for tests (see genbuild.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "genbuild.h"
#include "proto/varint.h"

#define GB_MAX_FILE_BYTES (64u << 20)
#define GB_MAX_TOKENS 1024

__attribute__((noreturn, format(printf, 1, 2))) static void gb_die(const char *fmt, ...)
{
        va_list ap;

        fputs("genbuild: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        abort();
}

/* ---- buffers ------------------------------------------------------------- */

void gb_buf_put(struct gb_buf *b, const void *p, size_t n)
{
        if (n == 0)
                return;
        if (n > b->cap - b->len) {
                size_t nc = b->cap ? b->cap : 256;
                while (nc - b->len < n)
                        nc *= 2;
                b->data = realloc(b->data, nc);
                if (!b->data)
                        gb_die("out of memory");
                b->cap = nc;
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

void gb_buf_uvarint(struct gb_buf *b, uint64_t v)
{
        uint8_t tmp[PROTO_VARINT_MAX];
        gb_buf_put(b, tmp, (size_t)(proto_put_uvarint(tmp, v) - tmp));
}

void gb_buf_free(struct gb_buf *b)
{
        free(b->data);
        *b = (struct gb_buf){0};
}

/* ---- the generation builder ---------------------------------------------- */

void gb_gen_init(struct gb_gen *g)
{
        memset(g, 0, sizeof(*g));
}

void gb_gen_done(struct gb_gen *g)
{
        gb_buf_free(&g->out);
        gb_buf_free(&g->batch);
        memset(g, 0, sizeof(*g));
}

void gb_gen_reset(struct gb_gen *g)
{
        struct gb_buf out = g->out, batch = g->batch;

        memset(g, 0, sizeof(*g));
        out.len = 0;
        batch.len = 0;
        g->out = out;
        g->batch = batch;
}

static const struct proto_event_spec *gb_spec(uint8_t type)
{
        const struct proto_event_spec *spec = proto_event_spec(type);
        if (!spec)
                gb_die("no event type 0x%02x in the table", type);
        return spec;
}

/*
 * Writes one record or event.  vals, bytes and blen are indexed like the
 * table's arguments; for batch events index 0 (ts) is taken from time.
 */
static void gb_emit(struct gb_gen *g, const struct proto_event_spec *spec, uint64_t time,
                    const uint64_t *vals, const uint8_t *const *bytes, const size_t *blen)
{
        int batch_event = spec->where != 'S';
        struct gb_buf *b = batch_event ? &g->batch : &g->out;

        if (batch_event && !g->in_batch)
                gb_die("%s needs an open batch", spec->name);
        if (!batch_event && g->in_batch)
                gb_die("%s inside a batch (use gb_raw for malformed input)", spec->name);
        if (batch_event && time < g->last_time)
                gb_die("%s at time %llu, before the batch's previous event (%llu)", spec->name,
                       (unsigned long long)time, (unsigned long long)g->last_time);

        gb_buf_put(b, &spec->code, 1);
        for (unsigned i = 0; i < spec->nargs; i++) {
                switch (spec->args[i].kind) {
                case PA_TS:
                        gb_buf_uvarint(b, time - g->last_time);
                        break;
                case PA_SINT:
                        gb_buf_uvarint(b, proto_zigzag((int64_t)vals[i]));
                        break;
                case PA_BYTES:
                        gb_buf_uvarint(b, blen[i]);
                        gb_buf_put(b, bytes[i], blen[i]);
                        break;
                default:
                        gb_buf_uvarint(b, vals[i]);
                        break;
                }
        }
        if (batch_event) {
                g->last_time = time;
                g->nevents++;
                if (spec->code == PROTO_EV_EVENTS_LOST)
                        g->lost += vals[1];
        } else if (spec->code == PROTO_EV_BATCH) {
                g->nbatches++;
                g->lost += vals[2];
        } else if (spec->code == PROTO_EV_GENERATION) {
                g->gen = vals[0];
        }
}

void gb_event_v(struct gb_gen *g, uint8_t type, uint64_t time, const uint64_t *args, size_t nargs)
{
        const struct proto_event_spec *spec = gb_spec(type);
        unsigned first = spec->where == 'S' ? 0 : 1;
        uint64_t vals[PROTO_MAX_ARGS] = {0};
        const uint8_t *bytes[PROTO_MAX_ARGS] = {0};
        size_t blen[PROTO_MAX_ARGS] = {0};

        if (nargs + first != spec->nargs)
                gb_die("%s takes %u arguments after the time, got %zu", spec->name,
                       spec->nargs - first, nargs);
        for (unsigned i = first; i < spec->nargs; i++) {
                vals[i] = args[i - first];
                if (spec->args[i].kind == PA_BYTES) {
                        bytes[i] = (const uint8_t *)(uintptr_t)vals[i];
                        blen[i] = bytes[i] ? strlen((const char *)bytes[i]) : 0;
                }
        }
        gb_emit(g, spec, time, vals, bytes, blen);
}

void gb_generation(struct gb_gen *g, uint64_t gen, uint64_t pid)
{
        GB_RECORD(g, GENERATION, gen, pid, PROTO_FORMAT_VERSION);
}

void gb_clock(struct gb_gen *g, uint64_t freq, uint64_t ref, uint64_t mono_ns, uint64_t wall_ns,
              uint64_t start, uint64_t end)
{
        GB_RECORD(g, CLOCK, freq, ref, mono_ns, wall_ns, start, end);
}

void gb_gens_lost(struct gb_gen *g, uint64_t count, uint64_t bytes)
{
        GB_RECORD(g, GENS_LOST, count, bytes);
}

static void gb_string_n(struct gb_gen *g, uint64_t id, const void *data, size_t len)
{
        uint64_t vals[2] = {id, 0};
        const uint8_t *bytes[2] = {NULL, data};
        size_t blen[2] = {0, len};

        gb_emit(g, gb_spec(PROTO_EV_STRING), 0, vals, bytes, blen);
}

void gb_string(struct gb_gen *g, uint64_t id, const char *s)
{
        gb_string_n(g, id, s, strlen(s));
}

void gb_stack(struct gb_gen *g, uint64_t id, const uint64_t *pcs, size_t n)
{
        struct gb_buf frames = {0};
        uint64_t vals[2] = {id, 0};
        const uint8_t *bytes[2] = {NULL, NULL};
        size_t blen[2] = {0, 0};

        for (size_t i = 0; i < n; i++)
                gb_buf_uvarint(&frames, pcs[i]);
        bytes[1] = frames.data;
        blen[1] = frames.len;
        gb_emit(g, gb_spec(PROTO_EV_STACK), 0, vals, bytes, blen);
        gb_buf_free(&frames);
}

void gb_thread(struct gb_gen *g, uint64_t tid, uint64_t name)
{
        GB_RECORD(g, THREAD, tid, name);
}

void gb_batch_begin(struct gb_gen *g, uint64_t tid, uint64_t base, uint64_t lost)
{
        if (g->in_batch)
                gb_die("batch of thread %llu opened inside another", (unsigned long long)tid);
        g->in_batch = 1;
        g->batch.len = 0;
        g->batch_tid = tid;
        g->batch_base = base;
        g->batch_lost = lost;
        g->last_time = base;
}

void gb_batch_end(struct gb_gen *g)
{
        uint64_t vals[4] = {g->batch_tid, g->batch_base, g->batch_lost, 0};
        const uint8_t *bytes[4] = {NULL, NULL, NULL, g->batch.data};
        size_t blen[4] = {0, 0, 0, g->batch.len};

        if (!g->in_batch)
                gb_die("gb_batch_end without an open batch");
        g->in_batch = 0;
        gb_emit(g, gb_spec(PROTO_EV_BATCH), 0, vals, bytes, blen);
        g->batch.len = 0;
        g->last_time = 0;
}

void gb_end_totals(struct gb_gen *g, uint64_t gen, uint64_t batches, uint64_t events,
                   uint64_t lost)
{
        GB_RECORD(g, END_OF_GENERATION, gen, batches, events, lost);
}

void gb_end(struct gb_gen *g)
{
        gb_end_totals(g, g->gen, g->nbatches, g->nevents, g->lost);
}

void gb_raw(struct gb_gen *g, const void *p, size_t n)
{
        gb_buf_put(g->in_batch ? &g->batch : &g->out, p, n);
}

void gb_blobs_free(struct gb_blobs *b)
{
        for (size_t i = 0; i < b->n; i++)
                gb_buf_free(&b->v[i]);
        free(b->v);
        *b = (struct gb_blobs){0};
}

static void gb_blobs_push(struct gb_blobs *b, const struct gb_buf *src)
{
        struct gb_buf copy = {0};

        b->v = realloc(b->v, (b->n + 1) * sizeof(*b->v));
        if (!b->v)
                gb_die("out of memory");
        gb_buf_put(&copy, src->data, src->len);
        b->v[b->n++] = copy;
}

/* ---- the text form ------------------------------------------------------- */

struct gb_tok {
        char *s;      /* NUL-terminated (quoted: unescaped) */
        size_t len;
        int quoted;
};

struct gb_cc {
        char *err;
        size_t errlen;
        unsigned line;
};

__attribute__((format(printf, 2, 3))) static int gb_cc_fail(struct gb_cc *c, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (!c->err || c->errlen == 0)
                return -EINVAL;
        n = snprintf(c->err, c->errlen, "line %u: ", c->line);
        if (n >= 0 && (size_t)n < c->errlen) {
                va_start(ap, fmt);
                vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int gb_hex(int ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        ch = tolower(ch);
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        return -1;
}

/* Splits line (modified in place) into tokens; comments start at an unquoted '#'. */
static int gb_tokenize(struct gb_cc *c, char *line, struct gb_tok *toks, size_t *ret_n)
{
        size_t n = 0;
        char *p = line;

        for (;;) {
                while (*p == ' ' || *p == '\t' || *p == '\r')
                        p++;
                if (*p == '\0' || *p == '#')
                        break;
                if (n == GB_MAX_TOKENS)
                        return gb_cc_fail(c, "too many tokens");
                if (*p == '"') {
                        char *out = ++p, *start = out;
                        for (;;) {
                                if (*p == '\0')
                                        return gb_cc_fail(c, "unterminated string");
                                if (*p == '"')
                                        break;
                                if (*p == '\\') {
                                        p++;
                                        switch (*p) {
                                        case 'n': *out++ = '\n'; p++; break;
                                        case 't': *out++ = '\t'; p++; break;
                                        case '\\': *out++ = '\\'; p++; break;
                                        case '"': *out++ = '"'; p++; break;
                                        case 'x': {
                                                int h = gb_hex(p[1]), l = h < 0 ? -1 : gb_hex(p[2]);
                                                if (l < 0)
                                                        return gb_cc_fail(c, "bad \\x escape");
                                                *out++ = (char)(h * 16 + l);
                                                p += 3;
                                                break;
                                        }
                                        default:
                                                return gb_cc_fail(c, "bad escape \\%c", *p);
                                        }
                                        continue;
                                }
                                *out++ = *p++;
                        }
                        p++; /* closing quote */
                        toks[n++] = (struct gb_tok){start, (size_t)(out - start), 1};
                        *out = '\0'; /* out < p: the quote's place is free */
                } else {
                        char *start = p;
                        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '#')
                                p++;
                        toks[n++] = (struct gb_tok){start, (size_t)(p - start), 0};
                        if (*p == '#') {
                                *p = '\0';
                                break;
                        }
                        if (*p)
                                *p++ = '\0';
                }
        }
        *ret_n = n;
        return 0;
}

static int gb_num(struct gb_cc *c, const struct gb_tok *t, int sint, uint64_t *ret)
{
        char *end;

        if (t->quoted || t->len == 0)
                return gb_cc_fail(c, "expected a number, got \"%s\"", t->s);
        errno = 0;
        if (t->s[0] == '-') {
                if (!sint)
                        return gb_cc_fail(c, "negative value %s for an unsigned argument", t->s);
                *ret = (uint64_t)strtoll(t->s, &end, 0);
        } else {
                *ret = strtoull(t->s, &end, 0);
        }
        if (errno || *end != '\0')
                return gb_cc_fail(c, "bad number %s", t->s);
        return 0;
}

static const struct proto_event_spec *gb_spec_by_name(const char *name)
{
        size_t n;
        const struct proto_event_spec *t = proto_event_table(&n);

        for (size_t i = 0; i < n; i++)
                if (strcmp(t[i].name, name) == 0)
                        return &t[i];
        return NULL;
}

static int gb_compile_line(struct gb_cc *c, struct gb_gen *g, struct gb_tok *tk, size_t n)
{
        const char *name = tk[0].s;
        const struct proto_event_spec *spec;
        uint64_t vals[PROTO_MAX_ARGS] = {0};
        const uint8_t *bytes[PROTO_MAX_ARGS] = {0};
        size_t blen[PROTO_MAX_ARGS] = {0};
        int r;

        if (strcmp(name, "}") == 0) {
                if (!g->in_batch || n != 1)
                        return gb_cc_fail(c, "\"}\" without an open batch");
                gb_batch_end(g);
                return 0;
        }
        if (strcmp(name, "raw") == 0) {
                for (size_t i = 1; i < n; i++) {
                        uint64_t v = 0;
                        uint8_t b;
                        if ((r = gb_num(c, &tk[i], 0, &v)) < 0)
                                return r;
                        if (v > 0xff)
                                return gb_cc_fail(c, "raw byte %s out of range", tk[i].s);
                        b = (uint8_t)v;
                        gb_raw(g, &b, 1);
                }
                return 0;
        }
        spec = gb_spec_by_name(name);
        if (!spec)
                return gb_cc_fail(c, "unknown record %s", name);
        if (spec->where != 'S' && !g->in_batch)
                return gb_cc_fail(c, "%s outside a batch", name);
        if (spec->where == 'S' && g->in_batch)
                return gb_cc_fail(c, "%s inside a batch (close it with \"}\")", name);

        switch (spec->code) {
        case PROTO_EV_BATCH:
                if (n != 5 || strcmp(tk[4].s, "{") != 0 || tk[4].quoted)
                        return gb_cc_fail(c, "expected BATCH tid base lost {");
                for (size_t i = 1; i < 4; i++)
                        if ((r = gb_num(c, &tk[i], 0, &vals[i - 1])) < 0)
                                return r;
                gb_batch_begin(g, vals[0], vals[1], vals[2]);
                return 0;
        case PROTO_EV_END_OF_GENERATION:
                if (n == 1) {
                        gb_end(g);
                        return 0;
                }
                break;
        case PROTO_EV_GENERATION:
                if (n == 3) {
                        for (size_t i = 1; i < 3; i++)
                                if ((r = gb_num(c, &tk[i], 0, &vals[i - 1])) < 0)
                                        return r;
                        gb_generation(g, vals[0], vals[1]);
                        return 0;
                }
                break;
        case PROTO_EV_STACK: {
                uint64_t *pcs;
                if (n < 2)
                        return gb_cc_fail(c, "expected STACK id pc...");
                if ((r = gb_num(c, &tk[1], 0, &vals[0])) < 0)
                        return r;
                pcs = calloc(n, sizeof(*pcs));
                if (!pcs)
                        gb_die("out of memory");
                for (size_t i = 2; i < n; i++) {
                        if ((r = gb_num(c, &tk[i], 0, &pcs[i - 2])) < 0) {
                                free(pcs);
                                return r;
                        }
                }
                gb_stack(g, vals[0], pcs, n - 2);
                free(pcs);
                return 0;
        }
        default:
                break;
        }

        if (n - 1 != spec->nargs)
                return gb_cc_fail(c, "%s takes %u arguments, got %zu", name, spec->nargs, n - 1);
        for (unsigned i = 0; i < spec->nargs; i++) {
                const struct gb_tok *t = &tk[i + 1];
                if (spec->args[i].kind == PA_BYTES) {
                        if (!t->quoted)
                                return gb_cc_fail(c, "%s: argument %s must be a quoted string",
                                                  name, spec->args[i].name);
                        bytes[i] = (const uint8_t *)t->s;
                        blen[i] = t->len;
                        continue;
                }
                if ((r = gb_num(c, t, spec->args[i].kind == PA_SINT, &vals[i])) < 0)
                        return r;
        }
        if (spec->where != 'S' && vals[0] < g->last_time)
                return gb_cc_fail(c, "%s at time %llu, before the batch's previous event (%llu)",
                                  name, (unsigned long long)vals[0],
                                  (unsigned long long)g->last_time);
        gb_emit(g, spec, vals[0], vals, bytes, blen);
        return 0;
}

int gb_compile(const char *text, struct gb_blobs *ret, char *err, size_t errlen)
{
        struct gb_cc c = {err, errlen, 0};
        struct gb_blobs out = {0};
        struct gb_gen g;
        struct gb_tok *toks = calloc(GB_MAX_TOKENS, sizeof(*toks));
        const char *p = text;
        char *line = NULL;
        int r = 0;

        if (!toks)
                gb_die("out of memory");
        gb_gen_init(&g);
        while (*p) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                size_t n = 0;

                c.line++;
                line = realloc(line, len + 1);
                if (!line)
                        gb_die("out of memory");
                memcpy(line, p, len);
                line[len] = '\0';
                p += len + (nl ? 1 : 0);

                r = gb_tokenize(&c, line, toks, &n);
                if (r < 0)
                        goto done;
                if (n == 0)
                        continue;
                if (strcmp(toks[0].s, "---") == 0 && !toks[0].quoted) {
                        if (g.in_batch) {
                                r = gb_cc_fail(&c, "--- inside a batch");
                                goto done;
                        }
                        gb_blobs_push(&out, &g.out);
                        gb_gen_reset(&g);
                        continue;
                }
                r = gb_compile_line(&c, &g, toks, n);
                if (r < 0)
                        goto done;
        }
        if (g.in_batch) {
                r = gb_cc_fail(&c, "batch not closed at the end of the text");
                goto done;
        }
        if (g.out.len > 0 || out.n == 0)
                gb_blobs_push(&out, &g.out);
        *ret = out;
        out = (struct gb_blobs){0};
done:
        gb_blobs_free(&out);
        gb_gen_done(&g);
        free(line);
        free(toks);
        return r;
}

char *gb_read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rbe");
        struct gb_buf b = {0};
        char tmp[65536];
        size_t n;

        if (!f)
                return NULL;
        while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
                if (b.len + n > GB_MAX_FILE_BYTES) {
                        fclose(f);
                        gb_buf_free(&b);
                        return NULL;
                }
                gb_buf_put(&b, tmp, n);
        }
        if (ferror(f)) {
                fclose(f);
                gb_buf_free(&b);
                return NULL;
        }
        fclose(f);
        gb_buf_put(&b, "", 1);
        if (ret_len)
                *ret_len = b.len - 1;
        return (char *)b.data;
}

int gb_dump_write_fd(int fd, const struct proto_dump_meta *meta, const struct gb_blobs *b)
{
        static const struct proto_dump_meta test_meta = {
                .pid = 1,
                .command = "genbuild",
                .origin = "test",
        };
        struct iovec *iov = calloc(b->n ? b->n : 1, sizeof(*iov));
        int r;

        if (!iov)
                return -ENOMEM;
        for (size_t i = 0; i < b->n; i++)
                iov[i] = (struct iovec){b->v[i].data, b->v[i].len};
        r = proto_dump_write(fd, meta ? meta : &test_meta, iov, b->n);
        free(iov);
        return r;
}

int gb_dump_write(const char *path, const struct proto_dump_meta *meta, const struct gb_blobs *b)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int r;

        if (fd < 0)
                return -errno;
        r = gb_dump_write_fd(fd, meta, b);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}
