/* SPDX-License-Identifier: MIT */
/*
 * The gtrace event table: the one description of every event type.
 *
 * An event is one type byte followed by the arguments the table lists for
 * that type, each an LEB128 unsigned varint (signed values zig-zag encoded;
 * PA_BYTES is a varint length followed by that many raw bytes).  The encoder
 * (runtime/), the decoder and validator (flightrec/) and docs/format.md are
 * all derived from PROTO_EVENTS below; tests/unit/test-protocol-doc.c fails if
 * the document and the table disagree.
 *
 * Two families share the one type space:
 *
 *  - structural records appear at the top level of a generation blob, in the
 *    order docs/format.md gives (Generation, Clock, strings, stacks, threads,
 *    batches, EndOfGeneration);
 *  - batch events appear only inside the payload of a Batch record.  Their
 *    first argument is always PA_TS: the time since the previous event of
 *    the batch (or since the batch's base time), in clock units.
 *
 * Changing an existing row is a format change: bump PROTO_FORMAT_VERSION.
 */
#ifndef PROTO_EVENT_H
#define PROTO_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PROTO_FORMAT_VERSION 1u

/* Argument kinds.  Every kind is one varint on the wire except PA_BYTES. */
enum proto_arg_kind {
        PA_UINT = 1,  /* unsigned integer */
        PA_SINT,      /* signed integer, zig-zag */
        PA_TS,        /* time delta in clock units since the previous batch event */
        PA_TIME,      /* absolute time in clock units (see Clock) */
        PA_STR,       /* string id, resolved by this generation's String records; 0 = none */
        PA_STACK,     /* stack id, resolved by this generation's Stack records; 0 = none */
        PA_THREAD,    /* OS thread id (gettid) */
        PA_FIBER,     /* fiber id; 0 = none */
        PA_SEQ,       /* fiber sequence number within this generation */
        PA_TASK,      /* async task id; 0 = none */
        PA_STATE,     /* fiber state, enum proto_fiber_state */
        PA_BYTES,     /* varint length, then that many bytes */
};

enum proto_fiber_state {
        PROTO_FIBER_RUNNABLE = 1,
        PROTO_FIBER_RUNNING = 2,
        PROTO_FIBER_WAITING = 3,
        PROTO_FIBER_SYSCALL = 4, /* running, inside gtrace_syscall_begin/end */
        PROTO_FIBER_STATE_MAX = 4,
};

#define PROTO_MAX_ARGS 8

/* The category of the LOG a crashing thread's last event is: the runtime's
 * crash handler writes it (signal, instruction, fault address, the stack
 * from the interrupted frame); `gtracectl view --last` names it first. */
#define PROTO_CRASH_CATEGORY "gtrace.crash"

/* Is a LOG of category cat (NULL: none) the crash handler's note? */
static inline bool proto_is_crash_note(const char *cat)
{
        return cat && strcmp(cat, PROTO_CRASH_CATEGORY) == 0;
}

/*
 * X(name, code, where, doc, args...)
 *   where: 'S' structural (top level), 'B' batch event, 'T' batch status event
 *          (state at the start of the generation; must precede the thread's
 *          other events in the generation)
 *   args:  A(kind, name) pairs; at most PROTO_MAX_ARGS.
 */
#define PROTO_EVENTS(X, A)                                                                      \
        X(GENERATION, 0x01, 'S', "First record of a generation blob.",                          \
          A(PA_UINT, gen) A(PA_UINT, pid) A(PA_UINT, format_version))                           \
        X(CLOCK, 0x02, 'S',                                                                     \
          "Clock reference: time in clock units t maps to CLOCK_MONOTONIC "                     \
          "mono_ns + (t - ref) * 1e9 / freq, and to wall time the same way from wall_ns.",      \
          A(PA_UINT, freq) A(PA_TIME, ref) A(PA_UINT, mono_ns) A(PA_UINT, wall_ns)              \
          A(PA_TIME, start) A(PA_TIME, end))                                                    \
        X(STRING, 0x03, 'S', "String table entry. Ids are unique within the generation.",       \
          A(PA_UINT, id) A(PA_BYTES, data))                                                     \
        X(STACK, 0x04, 'S',                                                                     \
          "Stack table entry: data is a sequence of varint program counters, innermost first.", \
          A(PA_UINT, id) A(PA_BYTES, frames))                                                   \
        X(THREAD, 0x05, 'S', "Thread table entry: every thread with a batch has one.",          \
          A(PA_THREAD, tid) A(PA_STR, name))                                                    \
        X(BATCH, 0x06, 'S',                                                                     \
          "A run of one thread's batch events. base is the time the first event's delta "       \
          "counts from; lost counts events this thread dropped in this generation that are "    \
          "reported by this batch.",                                                            \
          A(PA_THREAD, tid) A(PA_TIME, base) A(PA_UINT, lost) A(PA_BYTES, events))              \
        X(GENS_LOST, 0x07, 'S',                                                                 \
          "Whole generations the producer had to drop before this one (full ring).",            \
          A(PA_UINT, count) A(PA_UINT, bytes))                                                  \
        X(END_OF_GENERATION, 0x08, 'S',                                                         \
          "Last record of a generation: totals the reader checks.",                             \
          A(PA_UINT, gen) A(PA_UINT, batches) A(PA_UINT, events) A(PA_UINT, lost))              \
        X(THREAD_STATUS, 0x10, 'T',                                                             \
          "A thread's state at the start of the generation: running fiber and open "            \
          "blocking call.",                                                                     \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_STR, syscall) A(PA_TIME, syscall_start))         \
        X(REGION_STATUS, 0x11, 'T',                                                             \
          "One region still open on this thread at the start of the generation, outermost "     \
          "first.",                                                                             \
          A(PA_TS, ts) A(PA_STR, name) A(PA_TIME, start))                                       \
        X(TASK_STATUS, 0x12, 'T', "An async task live at the start of the generation.",         \
          A(PA_TS, ts) A(PA_TASK, task) A(PA_TASK, parent) A(PA_STR, name) A(PA_TIME, start))   \
        X(FIBER_STATUS, 0x13, 'T',                                                              \
          "A fiber's state at the start of the generation (its sequence counter is 0).",        \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_STATE, state) A(PA_STR, name) A(PA_STR, reason)) \
        X(REGION_BEGIN, 0x20, 'B', "Open a region (a nested span) on this thread.",             \
          A(PA_TS, ts) A(PA_STR, name))                                                         \
        X(REGION_END, 0x21, 'B', "Close this thread's innermost open region.", A(PA_TS, ts))    \
        X(LOG, 0x22, 'B', "A log message; its text is inline (messages rarely repeat).",          \
          A(PA_TS, ts) A(PA_STR, category) A(PA_BYTES, message) A(PA_STACK, stack))             \
        X(COUNTER, 0x23, 'B', "A counter sample.",                                              \
          A(PA_TS, ts) A(PA_STR, name) A(PA_SINT, value))                                       \
        X(TASK_BEGIN, 0x24, 'B', "An async task starts; it may end on any thread.",             \
          A(PA_TS, ts) A(PA_TASK, task) A(PA_TASK, parent) A(PA_STR, name) A(PA_STACK, stack))  \
        X(TASK_END, 0x25, 'B', "An async task ends.", A(PA_TS, ts) A(PA_TASK, task))            \
        X(THREAD_NAME, 0x26, 'B', "The thread names itself.", A(PA_TS, ts) A(PA_STR, name))     \
        X(SYSCALL_BEGIN, 0x27, 'B', "The thread (and its fiber) enters a blocking call.",       \
          A(PA_TS, ts) A(PA_STR, name) A(PA_STACK, stack))                                      \
        X(SYSCALL_END, 0x28, 'B', "The blocking call returns.", A(PA_TS, ts))                   \
        X(EVENTS_LOST, 0x29, 'B',                                                               \
          "This thread dropped count events just before this point (buffer bound hit).",        \
          A(PA_TS, ts) A(PA_UINT, count))                                                       \
        X(FIBER_CREATE, 0x30, 'B', "A new fiber, Runnable, with sequence 0.",                   \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_STR, name) A(PA_STACK, stack))                   \
        X(FIBER_RUN, 0x31, 'B', "Runnable -> Running on this thread.",                          \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_SEQ, seq))                                       \
        X(FIBER_BLOCK, 0x32, 'B', "Running -> Waiting.",                                        \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_SEQ, seq) A(PA_STR, reason) A(PA_STACK, stack))  \
        X(FIBER_READY, 0x33, 'B', "Waiting -> Runnable, by any thread.",                        \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_SEQ, seq) A(PA_STACK, stack))                    \
        X(FIBER_YIELD, 0x34, 'B', "Running -> Runnable.",                                       \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_SEQ, seq))                                       \
        X(FIBER_EXIT, 0x35, 'B', "Running -> gone.",                                            \
          A(PA_TS, ts) A(PA_FIBER, fiber) A(PA_SEQ, seq))

#define PROTO_EV_ENUM_(name, code, where, doc, ...) PROTO_EV_##name = code,
#define PROTO_ARG_NONE_(kind, name)
enum proto_event_type { PROTO_EVENTS(PROTO_EV_ENUM_, PROTO_ARG_NONE_) PROTO_EV_MAX = 0x40 };
#undef PROTO_EV_ENUM_

struct proto_arg_spec {
        uint8_t kind; /* enum proto_arg_kind */
        const char *name;
};

struct proto_event_spec {
        const char *name; /* "REGION_BEGIN" */
        uint8_t code;
        char where;       /* 'S', 'B' or 'T' (see PROTO_EVENTS) */
        uint8_t nargs;
        const char *doc;
        struct proto_arg_spec args[PROTO_MAX_ARGS];
};

/* The row for a type byte, or NULL if the byte names no event. */
const struct proto_event_spec *proto_event_spec(uint8_t code);

/* Every row, in table order; ret_n gets the count. */
const struct proto_event_spec *proto_event_table(size_t *ret_n);

const char *proto_arg_kind_name(uint8_t kind);
const char *proto_fiber_state_name(uint8_t state);

#endif
