/* SPDX-License-Identifier: MIT */
/*
 * Reading traces: one generation blob at a time, and .gtrace dump files as a
 * stream of generations.  Everything here treats its input as untrusted:
 * malformed bytes give an error naming the offset and the problem, never a
 * crash, and no allocation is larger than the input justifies (and never
 * larger than PROTO_MAX_GENERATION_BYTES).
 *
 * The parser validates as it reads (docs/format.md, "Validation rules") and
 * hands events to a callback in a valid global order: each thread's events
 * in the order the thread wrote them, merged across threads so that fiber
 * sequence numbers are respected, ties broken by time.
 */
#ifndef FLIGHTREC_READER_H
#define FLIGHTREC_READER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dumpfile.h"
#include "proto/event.h"

struct fr_error {
        int code;        /* -errno: -EBADMSG malformed, -EPROTO invariant broken, -ENOMEM ... */
        uint64_t offset; /* byte offset (in the file, for dump readers) where it was found */
        char msg[256];   /* "generation 12: thread 4242: REGION_END with no open region" */
};

struct fr_clock {
        uint64_t freq;    /* clock units per second */
        uint64_t ref;     /* clock units at the anchor */
        uint64_t mono_ns; /* CLOCK_MONOTONIC at the anchor */
        uint64_t wall_ns; /* wall clock at the anchor, ns since the epoch */
        uint64_t start;   /* generation start, clock units */
        uint64_t end;     /* generation end, clock units */
};

/* Clock units to nanoseconds (monotonic / wall).  Exact for 64-bit products. */
int64_t fr_clock_mono_ns(const struct fr_clock *c, uint64_t t);
int64_t fr_clock_wall_ns(const struct fr_clock *c, uint64_t t);

/* A generation being parsed; valid only during the callbacks for it. */
struct fr_generation {
        uint64_t gen;
        uint64_t pid;
        uint64_t offset;           /* of the blob's first byte */
        size_t size;               /* blob bytes */
        struct fr_clock clock;
        uint64_t gens_lost;        /* from GENS_LOST, 0 if absent */
        uint64_t gens_lost_bytes;
        uint64_t nbatches;
        uint64_t nevents;          /* batch events */
        uint64_t lost;             /* events lost: EVENTS_LOST counts + batch lost fields */
        size_t nthreads;
        const uint64_t *threads;   /* thread ids, table order */
        void *priv_;               /* parser state; do not touch */
};

/* Resolve references within g.  Unknown ids give NULL / -ENOENT. */
const char *fr_gen_string(const struct fr_generation *g, uint64_t id);
int fr_gen_stack(const struct fr_generation *g, uint64_t id, const uint64_t **ret_pcs,
                 size_t *ret_n);
const char *fr_gen_thread_name(const struct fr_generation *g, uint64_t tid);

/* One decoded event (batch and status events; structural records are
 * reported through struct fr_generation instead). */
struct fr_event {
        uint8_t type;                         /* PROTO_EV_* */
        const struct proto_event_spec *spec;  /* its table row */
        uint64_t tid;                         /* thread whose batch held it (0: the tracer) */
        uint64_t time;                        /* absolute, clock units */
        uint64_t offset;                      /* byte offset of the type byte */
        uint64_t args[PROTO_MAX_ARGS];        /* as in spec->args; PA_SINT already un-zig-zagged
                                                 (cast to int64_t); PA_TS is replaced by the
                                                 absolute time; PA_BYTES: the length */
        const char *str[PROTO_MAX_ARGS];      /* PA_STR args resolved (NULL for id 0) */
        const uint8_t *bytes[PROTO_MAX_ARGS]; /* PA_BYTES args: the data (args[i] bytes long,
                                                 not NUL-terminated) */
        /* time on CLOCK_MONOTONIC, when mono_ok: fr_dump_parse_threaded()
         * converts it on its reading thread (the callbacks' thread then has
         * less to do); otherwise 0, and fr_track_event() converts it. */
        int64_t mono_ns;
        uint8_t mono_ok;
};

struct fr_callbacks {
        /* Each may be NULL.  A non-zero return stops parsing and is returned. */
        int (*generation_begin)(void *ctx, const struct fr_generation *g);
        int (*event)(void *ctx, const struct fr_generation *g, const struct fr_event *ev);
        int (*generation_end)(void *ctx, const struct fr_generation *g);
};

/*
 * Parses and validates one generation blob.  base_offset is added to every
 * offset reported (the blob's position in its file).  Returns 0, the first
 * non-zero callback result, or -errno with *ret_err filled (ret_err may be
 * NULL).
 */
int fr_generation_parse(const uint8_t *blob, size_t len, uint64_t base_offset,
                        const struct fr_callbacks *cb, void *ctx, struct fr_error *ret_err);

/*
 * What is checked when: byte-level errors (-EBADMSG), references, section
 * order, per-thread rules (regions, blocking calls, status placement,
 * timestamps), tasks and the END_OF_GENERATION totals are all found before
 * any callback runs.  The fiber state machine and sequence numbers are
 * checked while events are merged, so such an error (-EPROTO) can come after
 * some of the generation's events were delivered; generation_end is then not
 * called.  Status events (kind 'T') are delivered first, in blob order, with
 * their own times; then every other event in the merged order: each thread's
 * events in its own order, fiber transitions in sequence order, a TASK_END
 * after its TASK_BEGIN, otherwise earliest time first (so times delivered
 * are not always non-decreasing across threads).
 */

/*
 * A reusable parser: it keeps its tables from one generation to the next, so
 * parsing a stream of generations allocates only while they grow.
 * fr_generation_parse() is new + parse + free.  The struct fr_generation
 * handed to callbacks points into the parser and is valid until the next
 * fr_parser_parse() or fr_parser_free() on it.  One parser, one thread.
 */
struct fr_parser;
struct fr_parser *fr_parser_new(void); /* NULL: out of memory */
void fr_parser_free(struct fr_parser *p); /* NULL ok */

/*
 * A parser's tables grow with what a generation holds, and a few input bytes
 * can cost many bytes of tables (a 3-byte event can add a task entry and its
 * hash slot), so each parser keeps its memory under a budget: a generation
 * that would need more fails with -EMSGSIZE.  The default is generous for
 * any real trace (a generation blob is at most PROTO_MAX_GENERATION_BYTES);
 * the setter changes it for one parser (never below what it already holds).
 * fr_generation_parse() and fr_dump_parse() use the default.
 */
#define FR_PARSER_MAX_MEMORY ((size_t)1 << 30)
void fr_parser_set_max_memory(struct fr_parser *p, size_t bytes);
int fr_parser_parse(struct fr_parser *p, const uint8_t *blob, size_t len, uint64_t base_offset,
                    const struct fr_callbacks *cb, void *ctx, struct fr_error *ret_err);

/* Dump file metadata; texts are NUL-terminated, "" when absent. */
struct fr_dump_meta {
        uint64_t version;
        uint64_t pid;
        uint64_t uid;
        uint64_t dump_time_ns;
        uint64_t start_time_ns;
        uint64_t gens_dropped;
        uint64_t signal;
        int flushed;
        char command[256];
        char executable[PROTO_MAX_TEXT_BYTES + 1];
        char host[256];
        char reason[PROTO_MAX_TEXT_BYTES + 1];
        char origin[64];
        char producer[128];
};

/* A .gtrace file open for streaming: one generation in memory at a time. */
struct fr_dump;

/* Opens and reads the header and META.  -EBADMSG not a gtrace dump (bad magic),
 * -EPROTONOSUPPORT newer format version, or the open/read errno. */
int fr_dump_open(const char *path, struct fr_dump **ret, struct fr_error *ret_err);
/* Takes ownership of fd: closed by fr_dump_free(), or before returning on failure.
 * fd may be a pipe or socket (the reader never seeks). */
int fr_dump_open_fd(int fd, struct fr_dump **ret, struct fr_error *ret_err);
void fr_dump_free(struct fr_dump *d);
const struct fr_dump_meta *fr_dump_meta(const struct fr_dump *d);

/*
 * Next generation blob.  Returns 1 with *ret_blob (owned by d, valid until
 * the next call), 0 at a well-formed END, or -errno (-EBADMSG for a truncated
 * or malformed file: the error says where).
 */
int fr_dump_next(struct fr_dump *d, const uint8_t **ret_blob, size_t *ret_len,
                 uint64_t *ret_offset, struct fr_error *ret_err);

/* Parse every generation of an open dump in order.  0 or as fr_generation_parse. */
int fr_dump_parse(struct fr_dump *d, const struct fr_callbacks *cb, void *ctx,
                  struct fr_error *ret_err);

/*
 * fr_dump_parse() on two CPUs: a second thread reads, checks and merges the
 * next events while the callbacks run for the current ones.  The callbacks
 * run on the calling thread, in the same order and with the same arguments
 * and results as fr_dump_parse() (the struct fr_generation and every
 * pointer in an event stay valid until generation_end returns).  Memory:
 * two generations (blob and tables) and up to 16 MiB of queued events.  A
 * regular file smaller than min_bytes, or a thread that cannot be started,
 * is parsed on the calling thread instead.  Uses the dump's allocation hook
 * from two threads (fralloc.h): not for the chaos tests.  When a callback
 * stops it early, the dump may have been read further than its generation:
 * only fr_dump_meta() and fr_dump_free() are meaningful on it then.
 */
int fr_dump_parse_threaded(struct fr_dump *d, uint64_t min_bytes, const struct fr_callbacks *cb,
                           void *ctx, struct fr_error *ret_err);

#endif
