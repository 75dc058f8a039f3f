/* SPDX-License-Identifier: MIT */
/*
 * genbuild: build generation blobs and dump files by hand, for tests.
 *
 * Tests of the reader, the validator and the CLI tools need traces with
 * exactly the events they are about, valid or broken in one precise way.
 * This builder writes them in the real format (docs/format.md) from the
 * event table, so it never falls behind the table, and it takes care of the
 * fiddly parts: timestamp deltas, batch lengths, END_OF_GENERATION totals.
 *
 * Two ways to use it:
 *
 * 1. From C, record by record:
 *
 *        struct gb_gen g;
 *        gb_gen_init(&g);
 *        gb_generation(&g, 1, 4242);                 // GENERATION 1, pid 4242
 *        gb_clock(&g, 1000000000, 0, 0, 0, 0, 1000); // freq ref mono wall start end
 *        gb_string(&g, 1, "main");
 *        gb_thread(&g, 100, 1);                      // tid 100, name = string 1
 *        gb_batch_begin(&g, 100, 10, 0);             // tid, base time, lost
 *        GB_EVENT(&g, THREAD_STATUS, 10, 0, 0, 0);   // times are absolute
 *        GB_EVENT(&g, REGION_BEGIN, 12, 1);
 *        GB_EVENT(&g, LOG, 13, 0, GB_TEXT("hello"), 0);
 *        GB_EVENT(&g, REGION_END, 15);
 *        gb_batch_end(&g);
 *        gb_end(&g);                                 // END_OF_GENERATION, totals computed
 *        ... g.out.data, g.out.len is the blob ...
 *        gb_gen_done(&g);
 *
 * 2. From text, with gb_compile() (and the genbuild-compile tool, which
 *    turns a text file into a blob or a .gtrace dump).  One record per line,
 *    named as in the event table, arguments in table order:
 *
 *        # comment
 *        GENERATION 1 4242          # format version defaults to the current one
 *        CLOCK 1000000000 0 0 0 0 1000
 *        STRING 1 "main"            # quoted; escapes \" \\ \n \t \xHH
 *        STACK 1 0x401000 0x401234  # program counters, innermost first
 *        THREAD 100 1
 *        BATCH 100 10 0 {           # tid base lost, then events until "}"
 *          THREAD_STATUS 10 0 0 0   # first argument: absolute time
 *          REGION_BEGIN 12 1
 *          LOG 13 0 "hello" 0       # bytes arguments are quoted strings
 *          COUNTER 14 1 -5          # signed arguments may be negative
 *          REGION_END 15
 *        }
 *        END_OF_GENERATION          # no arguments: correct totals; or give all four
 *        raw 0x13 0x80              # raw bytes, for malformed input
 *        ---                        # starts the next generation (for dumps)
 *
 * Everything here is test code: misuse (an unknown name, a wrong argument
 * count, time going backwards inside a batch) and allocation failure abort
 * with a message, except in gb_compile(), which reports text errors.
 */
#ifndef GTRACE_TESTS_GENBUILD_H
#define GTRACE_TESTS_GENBUILD_H

#include <stddef.h>
#include <stdint.h>

#include "proto/dumpfile.h"
#include "proto/event.h"

/* A growable byte buffer. */
struct gb_buf {
        uint8_t *data;
        size_t len, cap;
};

void gb_buf_put(struct gb_buf *b, const void *p, size_t n);
void gb_buf_uvarint(struct gb_buf *b, uint64_t v);
void gb_buf_free(struct gb_buf *b);

struct gb_gen {
        struct gb_buf out;   /* the blob so far; complete after gb_end() */
        struct gb_buf batch; /* events of the open batch */
        int in_batch;
        uint64_t gen;        /* from gb_generation(), for gb_end() */
        uint64_t batch_tid, batch_base, batch_lost;
        uint64_t last_time;  /* of the open batch's previous event (or its base) */
        /* Totals for END_OF_GENERATION, kept as records are added. */
        uint64_t nbatches, nevents, lost;
};

void gb_gen_init(struct gb_gen *g);
void gb_gen_done(struct gb_gen *g);
/* Empties g for the next generation (keeps the memory). */
void gb_gen_reset(struct gb_gen *g);

/* Structural records, appended to the blob in the order called. */
void gb_generation(struct gb_gen *g, uint64_t gen, uint64_t pid); /* current format version */
void gb_clock(struct gb_gen *g, uint64_t freq, uint64_t ref, uint64_t mono_ns, uint64_t wall_ns,
              uint64_t start, uint64_t end);
void gb_gens_lost(struct gb_gen *g, uint64_t count, uint64_t bytes);
void gb_string(struct gb_gen *g, uint64_t id, const char *s);
void gb_stack(struct gb_gen *g, uint64_t id, const uint64_t *pcs, size_t n);
void gb_thread(struct gb_gen *g, uint64_t tid, uint64_t name);

/* Opens a batch of thread tid (0: the tracer); events go into it until
 * gb_batch_end() writes the BATCH record. */
void gb_batch_begin(struct gb_gen *g, uint64_t tid, uint64_t base, uint64_t lost);
void gb_batch_end(struct gb_gen *g);

/* END_OF_GENERATION with the totals of what was added (call after the last
 * batch is closed). */
void gb_end(struct gb_gen *g);
/* END_OF_GENERATION with explicit values (for broken-totals tests). */
void gb_end_totals(struct gb_gen *g, uint64_t gen, uint64_t batches, uint64_t events,
                   uint64_t lost);

/*
 * Any record or event from the table.  args are the table's arguments after
 * the first for batch events (whose first, ts, is `time`, absolute; the
 * builder writes the delta), or all of them for structural records (`time`
 * ignored).  PA_SINT arguments are int64_t values cast to uint64_t (the
 * builder zig-zags them); PA_BYTES arguments are GB_TEXT("...") (a pointer to
 * a NUL-terminated string).  Batch events need an open batch; structural
 * records must not have one.
 */
void gb_event_v(struct gb_gen *g, uint8_t type, uint64_t time, const uint64_t *args, size_t nargs);
#define GB_TEXT(s) ((uint64_t)(uintptr_t)(const char *)(s))
#define GB_ARGS_(...) ((const uint64_t[]){0, __VA_ARGS__} + 1)
#define GB_NARGS_(...) (sizeof((const uint64_t[]){0, __VA_ARGS__}) / sizeof(uint64_t) - 1)
/* GB_EVENT(&g, REGION_BEGIN, time, name_id): a batch event by table name. */
#define GB_EVENT(g, name, time, ...)                                                               \
        gb_event_v((g), PROTO_EV_##name, (time), GB_ARGS_(__VA_ARGS__), GB_NARGS_(__VA_ARGS__))
/* GB_RECORD(&g, GENS_LOST, count, bytes): a structural record by table name. */
#define GB_RECORD(g, name, ...)                                                                    \
        gb_event_v((g), PROTO_EV_##name, 0, GB_ARGS_(__VA_ARGS__), GB_NARGS_(__VA_ARGS__))

/* Raw bytes into the open batch, or the blob when no batch is open. */
void gb_raw(struct gb_gen *g, const void *p, size_t n);

/* Several blobs, e.g. the generations of one dump. */
struct gb_blobs {
        struct gb_buf *v;
        size_t n;
};
void gb_blobs_free(struct gb_blobs *b);

/*
 * Compiles the text form (see above) into one blob per generation ("---"
 * separates them).  Returns 0, or -EINVAL with "line N: problem" in err.
 * On success *ret holds the blobs (free with gb_blobs_free()).
 */
int gb_compile(const char *text, struct gb_blobs *ret, char *err, size_t errlen);

/* Reads a whole (small) file into a NUL-terminated buffer; NULL on error. */
char *gb_read_file(const char *path, size_t *ret_len);

/*
 * Writes a .gtrace dump of the blobs with proto_dump_write(), creating or
 * truncating path (mode 0644).  meta may be NULL (a test META: pid 1,
 * command "genbuild").  Returns 0 or -errno.
 */
int gb_dump_write(const char *path, const struct proto_dump_meta *meta, const struct gb_blobs *b);
int gb_dump_write_fd(int fd, const struct proto_dump_meta *meta, const struct gb_blobs *b);

#endif
