/* SPDX-License-Identifier: MIT */
/*
 * libgtrace internals: the table of contents.
 *
 *   trace.c    design essay and invariants; thread registration; the seqlock
 *              write section; every public event function; stack capture;
 *              fibers; tasks
 *   advance.c  the advance thread: generation cuts, status events, blob
 *              assembly, the in-process ring, dump requests, gtrace_start/stop
 *   strtab.c   process-wide interning of strings and stacks
 *   clock.c    the trace clock and its calibration
 *   dump.c     in-process .gtrace files
 *   crash.c    the fatal-signal handler
 *   ring.c     the in-process generation ring
 *   daemon.c   the connection to gtraced
 */
#ifndef GT_INTERNAL_H
#define GT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "gtrace/gtrace.h"
#include "clock.h"
#include "daemon.h"
#include "ring.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Sanitizer builds, by GCC's macros or clang's __has_feature: code that
 * reads past a string's end (within its page) or a stale frame record
 * takes its plain path there. */
#if defined(__has_feature)
#define GT_HAS_FEATURE(f) __has_feature(f)
#else
#define GT_HAS_FEATURE(f) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || GT_HAS_FEATURE(address_sanitizer)
#define GT_SAN_ADDRESS 1
#else
#define GT_SAN_ADDRESS 0
#endif
#if defined(__SANITIZE_THREAD__) || GT_HAS_FEATURE(thread_sanitizer)
#define GT_SAN_THREAD 1
#else
#define GT_SAN_THREAD 0
#endif

/* Limits (docs/runtime.md lists them with their knobs). */
#define GT_MAX_REGION_DEPTH 64        /* open regions tracked per thread */
#define GT_NO_GEN UINT64_MAX          /* gt_thread.cur_gen: no slot for the fast paths */
#define GT_MAX_EVENT_BYTES 96         /* largest fixed-arity event */
#define GT_FAST_ROOM 192              /* the most a fast path asks room for */
#define GT_MAX_LOG_BYTES 1024         /* longer log messages are truncated */
#define GT_MAX_STACK_DEPTH 64

/* A frame of the stack a thread interned last, as stack_is_last() checks
 * it: the address of its frame record and the record's two words (the
 * caller's frame pointer, the return address). */
struct gt_quick_frame {
        uintptr_t at, unused;
        _Alignas(16) uintptr_t next;
        uintptr_t ret;
};
/* Per-thread pointer -> string cache: 2-way sets, one cache line each. */
#define GT_STRCACHE_SET_BITS 5
#define GT_STRCACHE_WAYS 2
#define GT_STRCACHE_SIZE (GT_STRCACHE_WAYS << GT_STRCACHE_SET_BITS)
#define GT_DEFAULT_STRING_BYTES (4u << 20)
#define GT_DEFAULT_MAX_STRINGS 65536u /* power of two */
#define GT_DEFAULT_STACK_BYTES (4u << 20)
#define GT_DEFAULT_MAX_STACKS 16384u  /* power of two */
#define GT_DEFAULT_MAX_TASKS 65536u   /* power of two; live tasks tracked */
#define GT_DEFAULT_MAX_FIBERS 65536u  /* power of two; live fibers tracked */
#define GT_MIN_TABLE 64u              /* the smallest string, stack, fiber or task table */
#define GT_MAX_TABLE (1u << 24)       /* the largest */
#define GT_MIN_TABLE_BYTES (64u << 10)
#define GT_MAX_TABLE_BYTES (1ull << 30)
#define GT_MAX_PROBE 128u             /* open-addressing probe bound, every table */

/* ---- strings and stacks (strtab.c) ---------------------------------------- */

/*
 * An interned string.  Entries live until gtrace_stop() and are never moved,
 * so a pointer to one may be kept (region stacks do).  last_gen is the
 * newest generation that references the entry: a generation's string table
 * is every entry with last_gen >= that generation (a superset is harmless).
 */
struct gt_str {
        _Atomic uint64_t last_gen;
        uint32_t id;
        uint32_t len;
        /* Bytes 0..len (the NUL included) of a name under 16 bytes, as
         * two 8-byte masks; bits 0..len of a 32-byte compare's result for
         * one of 16-31 (str_same_short in trace.c). */
        uint64_t mask[2];
        char data[];      /* len bytes + NUL, zero-padded to at least 16 */
};

struct gt_stack {
        _Atomic uint64_t last_gen;
        uint32_t id;
        uint32_t n;
        uint64_t hash;
        uint64_t pcs[];
};

/* Is s in a read-only segment of the program itself (a string literal of
 * the executable, never unmapped and never rewritten)?  Such a string is
 * the one the thread's cache saw under the same pointer, with no need to
 * compare the text.  Ranges read at the first gtrace_start(). */
bool gt_str_fixed(const char *s);
void gt_str_fixed_init(void);
int gt_strtab_init(uint32_t max_strings, uint64_t bytes, uint32_t max_stacks,
                   uint64_t stack_bytes);
void gt_strtab_done(void);
/* Interns s (NUL-terminated, at most len bytes used); never NULL: the table
 * full entry stands in when the bound is hit (and is counted). */
struct gt_str *gt_str_intern(const char *s, size_t len);
struct gt_stack *gt_stack_intern(const uint64_t *pcs, uint32_t n);
uint64_t gt_stack_hash(const uint64_t *pcs, uint32_t n);
/* Raises last_gen to gen (atomic max; off the fast path). */
void gt_str_mark(struct gt_str *e, uint64_t gen);
void gt_stack_mark(struct gt_stack *e, uint64_t gen);
/* gtrace_log with an interrupted context's stack instead of the caller's:
 * pc (0: no stack) first, then the frame records from fp.  The crash
 * handler's note (crash.c). */
void gt_log_context(const char *category, const char *message, uintptr_t pc, uintptr_t fp);

/* code.c: the loaded objects' executable segments, for the stack walk.
 * gt_code_addr is for events (lock-free); gt_code_init is for
 * gtrace_start, gt_code_refresh for the advancer, after a gt_wait_writers. */
void gt_code_init(void);
void gt_code_refresh(void);
bool gt_code_addr(uintptr_t pc);
/* Test hook: when set, the segments a code buffer holds at the start of
 * every build (it grows from there), so that a test sees the growth. */
extern uint32_t gt_test_code_first;

/* Calls fn for every entry with last_gen >= gen. */
void gt_str_foreach(uint64_t gen, void (*fn)(void *ctx, const struct gt_str *e), void *ctx);
void gt_stack_foreach(uint64_t gen, void (*fn)(void *ctx, const struct gt_stack *e), void *ctx);
uint64_t gt_strtab_dropped(void);

/* ---- threads, buffers, generations (trace.c) ------------------------------ */

/* A chunk: one batch of one thread's events for one generation. */
struct gt_chunk {
        struct gt_chunk *next;  /* within the slot, oldest first */
        uint32_t index;         /* in the pool */
        _Atomic uint32_t used;  /* bytes of events, set when the chunk is full; for the
                                   slot's tail, gt_chunk_used() */
        uint64_t base;          /* time the first delta counts from */
        uint8_t data[];
};

/* One generation's worth of one thread's buffers (the seed's "2 slots"). */
struct gt_slot {
        /* What every event reads and writes, first: with the slot 32-byte
         * aligned these four share one cache line (see struct gt_thread). */
        _Atomic(uint8_t *) pos; /* write cursor in tail (the crash handler reads it) */
        uint8_t *limit;         /* end - GT_FAST_ROOM (NULL: no room): a fast path's event
                                 * fits at a cursor below it */
        uint64_t last;          /* time of the previous event */
        uint64_t nevents;
        uint8_t *end;           /* the end of tail */
        uint64_t gen;           /* generation this slot holds; 0 = empty */
        struct gt_chunk *head;
        struct gt_chunk *tail;  /* the chunk being written */
        uint64_t lost;          /* dropped, not yet reported by an EVENTS_LOST */
        uint64_t lost_total;    /* dropped in this generation */
        uint32_t nchunks;
        bool lossy;             /* dropped one: drop the rest of this generation too */
} __attribute__((aligned(32)));

struct gt_region {
        _Atomic(struct gt_str *) name;
        _Atomic uint64_t start;
};

/* key: the caller's pointer when it points into the program's read-only
 * data (gt_str_fixed), whose text cannot change, else its complement
 * (GT_KEY_COPY): one compare then tells a fixed string's hit, and a pointer
 * to writable memory must also compare its text.  The complement of a
 * user-space pointer is never one (x86-64: it lies in the kernel's half;
 * arm64: bits 48-55 set, even under top-byte tags). */
#define GT_KEY_COPY(s) (~(uintptr_t)(s))
struct gt_strcache {
        uintptr_t key;
        struct gt_str *e;
        uint64_t gen; /* generation e was last marked for */
        uint32_t id;  /* e->id, kept here so that a fast path need not read e */
};

/* struct gt_thread is allocated at a page boundary, and everything a region,
 * counter or log event reads or writes in it lies in that first page (static
 * asserts in trace.c): between a server's requests the kernel runs, and each
 * page an event touches then costs a TLB miss as well (docs/performance.md). */
#define GT_THREAD_ALIGN 4096

struct gt_fiber;

struct gt_thread {
        /*
         * The first cache line holds what an event of a thread in an even
         * generation reads and writes in this struct, but for the region
         * stack and its depth, and the string cache; an odd generation's
         * slot adds the third line.  All of it lies in the struct's first
         * page (GT_THREAD_ALIGN; static asserts in trace.c keep this).
         */
        /* Seqlock: odd while the owner is inside a write section (invariant 2). */
        _Atomic uint64_t seq;
        /* The slot the owner writes and the generation it was set up for
         * (GT_NO_GEN: none, never 0, which is no generation): the fast
         * paths' one check, in the line of seq.  Only the owner reads them,
         * so the slot of a generation the advancer is flushing is never
         * looked at (slot_fast). */
        struct gt_slot *cur;
        uint64_t cur_gen;
        /* gt.gen as published to this thread (gt_gen_publish): what its
         * events read, so that they touch no process-wide page. */
        _Atomic uint64_t gen;
        struct gt_slot slot[2];      /* indexed by gen & 1 */
        uint64_t tid;
        /* gt_clock.shift, copied when the fast paths are enabled for a slot
         * (they read the cycle counter), so that they read it in this page. */
        uint8_t clock_shift;
        /* Region depth: a status field (below), here for its page. */
        _Atomic uint32_t depth;      /* may exceed GT_MAX_REGION_DEPTH: extra levels untracked */

        /* State the advancer snapshots for status events: written only inside
         * the owner's write sections, read by the advancer as a seqlock reader. */
        struct gt_region regions[GT_MAX_REGION_DEPTH] __attribute__((aligned(64)));
        _Atomic(struct gt_fiber *) fiber;
        _Atomic(struct gt_str *) syscall;
        _Atomic uint64_t syscall_start;
        _Atomic(struct gt_str *) name;
        /* Who wrote this thread's status events for a generation: the thread or
         * the advancer, whichever moves this to the generation first. */
        _Atomic uint64_t status_gen;

        uintptr_t stack_lo, stack_last; /* for unwinding: see frame_ok() */
        struct gt_stack *last_stack;  /* the stack this thread interned last */
        uint64_t last_stack_gen;      /* generation it was last marked for */
        struct gt_strcache strcache[GT_STRCACHE_SIZE] __attribute__((aligned(64)));

        /* Lists: protected by gt.threads_lock. */
        struct gt_thread *next;
        bool exited;

        /* last_stack's frames as they lay (see stack_is_last): quick_n of
         * them (0: not known), at most quick_cap, the stack depth when the
         * thread registered; the walk stopped at quick_end, at a record
         * whose return address was 0 if quick_end0.  Owner only. */
        uint32_t quick_cap, quick_n;
        bool quick_end0;
        uintptr_t quick_end;
        struct gt_quick_frame quick[];
};

/* Fibers: one entry per live fiber in a fixed open-addressing table. */
#define GT_FIBER_SCAN 0x80u /* ownership bit over transitions (invariant 4) */
struct gt_fiber {
        _Atomic uint64_t id;          /* 0 empty, GT_TOMB removed */
        _Atomic uint32_t state;       /* enum proto_fiber_state | GT_FIBER_SCAN */
        _Atomic(struct gt_str *) name;
        _Atomic(struct gt_str *) reason;
        _Atomic uint64_t status_gen;  /* generation whose status event is written */
        /* Owned by whoever owns the fiber's transitions (invariant 4): */
        uint64_t seq_gen;             /* generation seq counts in */
        uint64_t lossy_gen;           /* a transition was dropped in this generation */
        uint64_t plain_gen;           /* announced, counting and not lossy in this
                                         generation: the fast paths' one check */
        uint32_t seq;
};

struct gt_task {
        _Atomic uint64_t id;         /* 0 empty, GT_TOMB removed */
        _Atomic uint64_t parent;
        _Atomic(struct gt_str *) name;
        _Atomic uint64_t start;
        _Atomic uint64_t begin_gen;  /* generation whose batch holds TASK_BEGIN */
        _Atomic uint64_t status_gen; /* newest generation with this task's status written
                                        (or its begin); the thread ending it and the advancer
                                        race for it with a CAS, as for threads */
};
#define GT_TOMB UINT64_MAX
#define GT_TASK_BEGIN_LOST (1ull << 63) /* in begin_gen: the TASK_BEGIN was dropped */

struct gt_config {
        uint32_t period_ms;
        uint64_t max_buffer_bytes;
        uint32_t chunk_bytes;
        uint32_t ring_generations;
        uint64_t ring_bytes;
        char socket_path[108];
        char dump_dir[1024];
        uint32_t stack_events;
        uint32_t stack_depth;
        uint32_t flags;
        uint32_t max_strings, max_stacks; /* powers of two */
        uint64_t string_bytes, stack_bytes;
        uint32_t max_fibers, max_tasks; /* powers of two */
};

/* Dump requests from application threads to the advance thread. */
struct gt_dump_req {
        struct gt_dump_req *next;
        uint64_t id;
        const char *reason;
        bool done;
        int result;
        char path[4096];
};

/* Everything global, in one place. */
struct gt_state {
        /* Read by the general paths and the fibers' fast paths (region,
         * counter and log fast paths read their thread's copies instead):
         * the current generation (0: not tracing). */
        _Atomic uint64_t gen __attribute__((aligned(64)));
        bool use_membarrier;
        uint32_t stack_mask;   /* kinds that record stacks */
        uint32_t stack_depth;
        /* The fiber table (below): its address and mask, here for the line. */
        struct gt_fiber *fibers;
        uint32_t fiber_mask;

        /* Chunk pool: one reserved mapping (pages are touched only when a
         * chunk is first used).  Never-used chunks come from a bump index;
         * returned ones from a lock-free stack whose head packs a 32-bit
         * ABA tag with index + 1 (see chunk_get in trace.c). */
        uint8_t *pool __attribute__((aligned(64))); /* the line above is read-only */
        size_t pool_bytes;
        uint32_t chunk_bytes;
        uint32_t nchunks;
        _Atomic uint32_t fresh;       /* next never-used chunk */
        _Atomic uint64_t free_head;   /* tag << 32 | (index + 1); 0 empty */
        _Atomic uint64_t copied_head; /* the same, for chunks a cut in progress copied */
        _Atomic uint32_t *free_next;  /* per chunk: index + 1 of the next free one */
        _Atomic uint32_t in_use;      /* chunks handed out */
        /* Chunks taken for the generations of each parity, reset as the
         * generation of that parity is published (gt_gen_publish): the
         * current generation's count, without the chunks of the one the
         * advancer is still copying out. */
        _Atomic uint32_t gen_chunks[2];
        uint32_t kick_chunks;         /* gen_chunks above this wakes the advancer early */
        _Atomic int kick;             /* an early advance was requested (gt_advance_kick) */

        pthread_mutex_t threads_lock; /* guards the thread lists */
        struct gt_thread *threads;    /* live (invariant 1) */
        struct gt_thread *exited;     /* exited, buffers not yet flushed */

        _Atomic uint32_t fibers_live; /* entries in use: the advancer skips an empty table */
        _Atomic uint64_t next_fiber;
        struct gt_task *tasks;
        uint32_t task_mask;
        _Atomic uint32_t tasks_live;
        _Atomic uint64_t next_task;

        /* Advance thread. */
        struct gt_config cfg;
        pthread_t advancer;
        /* The crash handler's hold on advancing (crash.c): it sets adv_frozen
         * and waits for adv_busy to clear; an advance cycle sets adv_busy,
         * then skips itself when adv_frozen is set.  All seq_cst. */
        atomic_int adv_busy;
        atomic_int adv_frozen;
        /* A crash handler cut the generation while the advance thread was
         * held (crash.c): the generation it started, and when it cut.  The
         * advance thread finishes that cycle (advance.c, advance_cycle). */
        _Atomic uint64_t crash_cut_gen;
        struct gt_clock_ref crash_cut_ref;
        int wake_fd;                  /* eventfd */
        /* The advance thread has a file table of its own (advance.c):
         * its descriptors are not the application's. */
        atomic_bool adv_files_private;
        pthread_mutex_t req_lock;
        pthread_cond_t req_cond;
        struct gt_dump_req *dump_reqs;
        uint64_t flush_reqs;          /* gtrace_flush() callers waiting */
        uint64_t flushes_done;
        bool stop;
        struct gt_ring ring;
        struct gt_daemon *daemon;
        struct gt_proc_info proc;
        pthread_mutex_t ring_lock;    /* ring readers other than the advancer (stats) */

        /* Counters (advancer-written unless noted). */
        _Atomic uint64_t events;
        _Atomic uint64_t events_lost;
        _Atomic uint64_t generations;
        _Atomic uint64_t generations_sent;
        _Atomic uint64_t generations_lost;
        _Atomic uint64_t fibers_untracked; /* fiber table full (app threads) */
        _Atomic uint64_t tasks_untracked;

        /* Fork: the child restarts tracing lazily with the parent's options. */
        _Atomic int restart_after_fork;
        struct gtrace_options fork_opts;
};

extern struct gt_state gt;

/* Makes gen the generation events go to (a cut; 0 stops tracing): gt.gen and
 * every registered thread's copy of it (trace.c).  Its parity's chunk count
 * starts over first: no thread writes a generation of that parity any more
 * (the cut before waited for them), and none writes gen before these stores.
 * The lock-free variant is the crash handler's, which may have interrupted a
 * holder of gt.threads_lock. */
void gt_gen_publish(uint64_t gen);
void gt_gen_publish_nolock(uint64_t gen);

/* Bytes of complete events in c, one of s's chunks (the tail's length is
 * the slot's cursor; a full chunk's was recorded when it filled).  The crash
 * handler calls this on other threads' live slots: a cursor that has
 * already moved on to the next chunk falls back to the recorded length. */
static inline uint32_t gt_chunk_used(const struct gt_slot *s, const struct gt_chunk *c)
{
        const uint8_t *pos = atomic_load_explicit(&s->pos, memory_order_acquire);
        if (c == s->tail && pos >= c->data && pos <= (const uint8_t *)c + gt.chunk_bytes)
                return (uint32_t)(pos - c->data);
        return atomic_load_explicit(&c->used, memory_order_relaxed);
}
extern __thread struct gt_thread *gt_self __attribute__((tls_model("initial-exec")));
/* True on the advance thread (crash.c: a crash there must not wait for itself). */
extern __thread bool gt_on_advancer __attribute__((tls_model("initial-exec")));

/* trace.c */
int gt_threads_init(void);
void gt_threads_done(void);
/* Hands slot `gen & 1` of every thread to fn, then releases to the pool
 * whatever chunks the slot still lists and empties it; frees exited threads
 * whose slots are all empty.  fn may take the chunks for itself by setting
 * s->head and s->tail to NULL: they are then its to give back, one by one,
 * with gt_chunk_put() (advance.c copies them into the blob first).
 * Advancer only, after the generation can no longer be written. */
void gt_flush_threads(uint64_t gen, void (*fn)(void *ctx, struct gt_thread *t, struct gt_slot *s),
                      void *ctx);
void gt_chunk_put(struct gt_chunk *c);
/* A chunk a cut has copied, back in the pool but taken only when no other
 * is left, until gt_chunks_copied_done() moves them all to the free stack,
 * the first copied on top (advance.c, flush_write says why). */
void gt_chunk_put_copied(struct gt_chunk *c);
void gt_chunks_copied_done(void);
/* Tests only (NULL otherwise): called by the advance thread once a cut's
 * chunks are copied and back as copied, before they join the free stack. */
extern void (*gt_test_copied)(uint64_t gen);

/* Status handshake for every live thread at the start of gen; writes into
 * gt.status_buf through the callbacks in advance.c. */
void gt_threads_status(uint64_t gen);
void gt_fibers_status(uint64_t gen);
void gt_tasks_status(uint64_t gen);
/* Wait until no thread can still write generation gen - 1 (invariant 3). */
void gt_wait_writers(void);
/* The advancer's half of the write-section barrier (wr_enter), which
 * gt_wait_writers() starts with; async-signal-safe. */
void gt_writers_barrier(void);
/* The scan gt_wait_writers() makes after the barrier: waits until no thread
 * but skip is inside the write section it was in when looked at.  With a
 * deadline (gt_mono_ns; 0: none), false once it passes.  Walks the thread
 * lists without gt.threads_lock: the caller holds it, or is the crash
 * handler, whose thread may hold it.  Async-signal-safe. */
bool gt_wait_sections(const struct gt_thread *skip, uint64_t deadline_ns);
void gt_fork_child_reset(void);

/* advance.c: the status buffer writers (advancer only). */
/* Tests only (NULL otherwise): called by the advancer right after it wins a
 * thread's status claim, before it writes that status; lets a test make the
 * thread move on inside that window. */
extern void (*gt_test_status_claimed)(uint64_t tid);
/* Tests only (NULL otherwise): called right after an entry of the string
 * (table 0) or stack (table 1) table is published in its slot, before the
 * intern returns; lets a test hold its maker there while others find it. */
extern void (*gt_test_published)(int table, const void *entry);
/* Tests only (NULL otherwise): called when a wait for sections
 * (gt_wait_sections) finds the thread tid inside one and waits for it. */
extern void (*gt_test_section_wait)(uint64_t tid);
/* gt_status_thread takes the thread's state as read before its claim (the
 * running fiber's id and name included: once the claim is won the thread
 * goes on and may end that fiber, and its slot be reused). */
void gt_status_thread(uint64_t gen, uint64_t tid, struct gt_str *tname, uint64_t fiber,
                      struct gt_str *fiber_name, struct gt_str *sys, uint64_t sys_start,
                      const struct gt_region *regions, uint32_t depth);
void gt_status_fiber(uint64_t gen, struct gt_fiber *f, uint32_t state);
void gt_status_task(uint64_t gen, uint64_t task, uint64_t parent, struct gt_str *name,
                    uint64_t start);
void gt_advance_wake(void);
/* Asks the advance thread for a cycle now, once until that cycle begins
 * (it clears the request before its cut: a request made while it is busy
 * is a cycle more, never lost).  Async-signal-safe. */
void gt_advance_kick(void);
/* Tests only (NULL otherwise): called by the advance thread in each cycle
 * after its cut, once no thread writes the generation cut, before that
 * generation is assembled; lets a test hold a cycle in flight. */
extern void (*gt_test_cycle)(uint64_t gen);
/* Tests only (NULL otherwise): called by the advance thread once gen is
 * assembled and counted, before it looks for the next cycle to make. */
extern void (*gt_test_finished)(uint64_t gen);
/* The status records of gen for the crash handler; false while being written. */
bool gt_status_records(uint64_t gen, const uint8_t **ret_p, size_t *ret_len,
                       uint64_t *ret_batches, uint64_t *ret_events);

/* dump.c */
int gt_dump_write_local(const char *dir, const char *reason, const char *origin, int signo,
                        const struct iovec *extra, char *ret_path, size_t path_len);
void gt_dump_name(char *buf, size_t len, const char *command, pid_t pid, uint64_t wall_ns);

/* crash.c */
void gt_crash_install(void);
void gt_crash_uninstall(void);
/* Seal what the current generation holds into buf without locks or malloc;
 * returns the blob length (0 if nothing fits).  The ring is frozen (its
 * losses are read). */
size_t gt_seal_current(uint8_t *buf, size_t cap, uint64_t gen);
/* When the current generation began (clock units): the start the sealed
 * generation records, as its finished copy does. */
uint64_t gt_gen_start_units(void);

/* advance.c */
/* GENERATION and CLOCK, and GENS_LOST when lost_gens; at most
 * GT_GEN_HEADER_MAX bytes. */
#define GT_GEN_HEADER_MAX 128
size_t gt_encode_generation_header(uint8_t *p, uint64_t gen, const struct gt_clock_ref *ref,
                                   uint64_t start, uint64_t lost_gens, uint64_t lost_bytes);

#endif
