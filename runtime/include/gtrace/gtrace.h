/* SPDX-License-Identifier: MIT */
/*
 * libgtrace: an always-on execution tracer for C programs.
 *
 * Link with `pkg-config --cflags --libs gtrace`.  Call gtrace_start() once
 * (or not at all: every other call is a no-op while tracing is stopped), then
 * emit events from any thread.  Events go to per-thread buffers and are cut
 * into self-contained generations about once per period; finished
 * generations go to gtraced when it is reachable and to a bounded in-process
 * ring otherwise.  Emitting an event never blocks, never allocates on the
 * hot path and never waits for the daemon, a socket or the disk; when a
 * buffer bound is hit, events are dropped and the drop is recorded.
 *
 * Strings passed to the API are copied (interned) on first use; the caller
 * keeps ownership and may free or reuse them as soon as the call returns.
 */
#ifndef GTRACE_GTRACE_H
#define GTRACE_GTRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define GTRACE_API __attribute__((visibility("default")))
#else
#define GTRACE_API
#endif

#define GTRACE_VERSION_STRING "0.1.0"

/* Event kinds, for gtrace_options.stack_events (a bit mask of 1u << kind). */
enum gtrace_event_kind {
        GTRACE_KIND_REGION = 0,
        GTRACE_KIND_LOG = 1,
        GTRACE_KIND_COUNTER = 2,
        GTRACE_KIND_TASK = 3,
        GTRACE_KIND_FIBER = 4, /* create, block, ready */
        GTRACE_KIND_SYSCALL = 5,
};

/*
 * Options for gtrace_start().  Zero-initialise and set what you need: every
 * field left 0 (or NULL) takes its default, then the environment variable
 * named beside it, if set, wins over the default (not over a value you set).
 */
struct gtrace_options {
        uint32_t size;               /* sizeof(struct gtrace_options); 0 is taken as current */
        uint32_t period_ms;          /* generation period; GTRACE_PERIOD_MS, default 1000 */
        uint64_t max_buffer_bytes;   /* all per-thread buffers together; GTRACE_BUFFER_BYTES,
                                        default 64 MiB */
        uint32_t chunk_bytes;        /* one buffer chunk; default 64 KiB (4 KiB .. 4 MiB) */
        uint32_t ring_generations;   /* in-process ring depth; GTRACE_RING_GENERATIONS, default 10 */
        uint64_t ring_bytes;         /* in-process ring bound; GTRACE_RING_BYTES, default 64 MiB */
        const char *socket_path;     /* gtraced socket; GTRACED_SOCKET, default per the docs */
        const char *dump_dir;        /* in-process dumps; GTRACE_DUMP_DIR, default "." */
        uint32_t stack_events;       /* kinds that record a stack; GTRACE_STACKS; default logs,
                                        tasks, fiber blocks and syscalls; ~0u all */
        uint32_t stack_depth;        /* frames per stack; default 32, at most 64 */
        uint32_t flags;              /* GTRACE_F_* */
        /* Table bounds, each rounded up to a power of two where it is a count.
         * Past them events are still recorded, with less detail (docs/runtime.md,
         * "Memory: every bound").  Read only when size covers them. */
        uint32_t max_strings;        /* distinct strings; default 65536 (64 .. 2^24) */
        uint32_t max_stacks;         /* distinct stacks; default 16384 (64 .. 2^24) */
        uint64_t string_bytes;       /* text of the strings; default 4 MiB (64 KiB .. 1 GiB) */
        uint64_t stack_bytes;        /* frames of the stacks; default 4 MiB (64 KiB .. 1 GiB) */
        uint32_t max_fibers;         /* live fibers tracked; default 65536 (64 .. 2^24) */
        uint32_t max_tasks;          /* live async tasks tracked; default 65536 (64 .. 2^24) */
};

#define GTRACE_F_NO_CRASH_HANDLER 0x1u /* do not install the fatal-signal handler */
#define GTRACE_F_NO_DAEMON 0x2u        /* never connect to gtraced; GTRACE_NO_DAEMON=1 */
#define GTRACE_F_NO_STACKS 0x4u        /* record no stacks at all */

/* Start tracing.  NULL: defaults plus environment.  Returns 0, -EALREADY if
 * already started, -EINVAL for a bad option, or another -errno. */
GTRACE_API int gtrace_start(const struct gtrace_options *opts);

/* Flush what is buffered, push it, disconnect and release everything.
 * Threads still emitting see tracing as stopped (their calls become no-ops). */
GTRACE_API void gtrace_stop(void);

/* Name the calling thread in the trace (copied; at most 63 bytes kept). */
GTRACE_API void gtrace_thread_name(const char *name);

/* Nested spans on the calling thread; end closes the innermost open one. */
GTRACE_API void gtrace_region_begin(const char *name);
GTRACE_API void gtrace_region_end(void);

/* A log line, with its caller's stack unless stacks are off.  The category
 * "gtrace.crash" is the crash handler's: a crashing thread's last event
 * (docs/runtime.md). */
GTRACE_API void gtrace_log(const char *category, const char *message);
GTRACE_API void gtrace_counter(const char *name, int64_t value);

/* Async work that may end on another thread.  Returns the task id (never 0
 * while tracing; 0 when stopped).  parent 0 means no parent. */
GTRACE_API uint64_t gtrace_task_begin(const char *name, uint64_t parent);
GTRACE_API void gtrace_task_end(uint64_t task);

/*
 * Flush and dump this process's recent trace.  With gtraced reachable, the
 * daemon writes the dump; otherwise it is written to GTRACE_DUMP_DIR.  The
 * dump file's path is copied to path (NUL-terminated, truncated to
 * path_len) when path is not NULL.  Returns 0 or -errno.  Blocks the calling
 * thread (only) for the flush and the write.
 */
GTRACE_API int gtrace_dump(const char *reason, char *path, size_t path_len);

/*
 * Fibers: the goroutine analogue for coroutine or green-thread schedulers.
 * A fiber is Runnable, Running (on exactly one thread), or Waiting.  The
 * thread that runs a fiber calls run/block/yield/exit; ready may come from
 * any thread.  Ids are never reused within a process.
 */
GTRACE_API uint64_t gtrace_fiber_create(const char *name); /* -> Runnable; 0 when stopped */
GTRACE_API void gtrace_fiber_run(uint64_t fiber);          /* Runnable -> Running here */
GTRACE_API void gtrace_fiber_block(const char *reason);    /* Running -> Waiting */
GTRACE_API void gtrace_fiber_ready(uint64_t fiber);        /* Waiting -> Runnable */
GTRACE_API void gtrace_fiber_yield(void);                  /* Running -> Runnable */
GTRACE_API void gtrace_fiber_exit(void);                   /* Running -> gone */

/* The calling thread (and its fiber) enters / leaves a blocking call. */
GTRACE_API void gtrace_syscall_begin(const char *name);
GTRACE_API void gtrace_syscall_end(void);

/* Counters the runtime keeps about itself, for health checks and tests. */
struct gtrace_stats {
        uint64_t events;            /* events written */
        uint64_t events_lost;       /* events dropped at a buffer bound */
        uint64_t generations;       /* generations finished */
        uint64_t generations_lost;  /* generations dropped from the in-process ring */
        uint64_t generations_sent;  /* generations pushed to gtraced */
        uint64_t bytes_buffered;    /* bytes held in per-thread chunks now */
        uint64_t ring_bytes;        /* bytes held in the in-process ring now */
        uint32_t ring_generations;  /* generations held in the in-process ring now */
        uint32_t daemon_connected;  /* 1 while connected to gtraced */
};

/* Fills *ret with the current counters; zeroes it when tracing is stopped. */
GTRACE_API void gtrace_get_stats(struct gtrace_stats *ret);

/* Cut a generation now and wait (bounded) until it reached the sinks.
 * Returns 0, or -ETIMEDOUT, or -ENOTCONN when stopped. */
GTRACE_API int gtrace_flush(void);

#ifdef __cplusplus
}
#endif

#endif
