/* SPDX-License-Identifier: MIT */
/*
 * # libgtrace: the execution tracer
 *
 * ## Design
 *
 * Every thread that emits an event owns a trace buffer: a struct gt_thread,
 * reached through a thread-local pointer, holding two *slots*, one per
 * generation parity.  A generation is a global epoch, gt.gen; an event goes
 * into slot[gen & 1] of its thread.  The background advance thread (the
 * advancer, advance.c) ends a generation by storing gen + 1, waiting until
 * no thread can still be writing the old generation, and then reading the
 * old slots out into one self-contained blob (docs/format.md) that goes to
 * the sinks: gtraced and the in-process ring.
 *
 * Each thread brackets every event with a *write section*: a per-thread
 * sequence counter, odd while inside.  The advancer uses it as in a seqlock:
 * after publishing the new generation it waits, for each thread whose
 * counter is odd, until the counter changes.  From then on that thread
 * either has left its write section or entered a new one that read the new
 * generation, so the old slot is the advancer's alone.
 *
 * The generation a thread reads is its own copy of gt.gen, t->gen, which
 * the advancer writes for every registered thread when it publishes one
 * (gt_gen_publish): a region, counter or log on the fast path then touches
 * no process-wide memory (a fiber transition reads the fiber table, a new
 * stack the stack table).
 * The argument needs the thread's "counter := odd" store to be ordered
 * before its load of t->gen, and the advancer's stores of the new
 * generation before its loads of the counters (both store->load orders,
 * which x86 and ARM both relax).  A fence on the event path would cost more than the rest
 * of the event, so the thread uses only a compiler barrier and the advancer
 * calls membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) between its store and
 * its loads: that forces a full barrier on every CPU running one of our
 * threads, which promotes every thread's compiler barrier to a real one at
 * that moment (a thread not running has passed through a context switch,
 * itself a full barrier).  Where membarrier is missing (old kernel,
 * seccomp), the thread falls back to a seq_cst fence; under TSan, which
 * cannot see membarrier, to seq_cst accesses.
 *
 * The resulting fast path (a region, counter or log on a thread that already
 * has a buffer) takes no lock, makes no system call, allocates nothing and
 * performs no atomic read-modify-write: two plain stores to its own counter,
 * one load of its generation, a cycle-counter read and a few bytes of
 * varints.  What it reads and writes lies in three pages: the thread's own
 * state (one page, see GT_THREAD_ALIGN), its buffer, and the library's code
 * (one page, GT_FAST_TEXT).
 *
 * Strings are interned process-wide (strtab.c); a thread-local cache keyed
 * by pointer (checked against the content; two entries a set, 64 in all, in
 * the thread's page) makes a repeated name cost one short compare.  Stacks
 * likewise.
 *
 * ### Self-contained generations
 *
 * A reader of one generation must know what every thread and fiber was
 * doing when it began.  So each generation starts, per thread, with status
 * events (open regions, running fiber, open blocking call) and, per live
 * fiber and task, with their status.  Who writes a thread's status for
 * generation G is settled by a handshake on t->status_gen: the thread, at
 * its first event in G, and the advancer, right after the switch to G,
 * both try to move it to G with a CAS; the winner writes.  The advancer
 * reads the thread's state *before* its CAS and throws the reading away if
 * it loses; the thread CASes *before* changing any state in G.  So a winning
 * advancer read a state the thread had not yet changed (its reads happen
 * before the thread's failing CAS, which reads from the advancer's), and a
 * winning thread writes its own state.  The reading includes what the
 * advancer writes about the running fiber (its id and name): once it has
 * won, the thread goes on and may end that fiber.  The advancer marks that
 * fiber announced for G before its CAS (so the thread, losing, writes no
 * second status), but only after checking that the thread has not claimed
 * G already: a fiber the thread started in G is the thread's to announce.
 * Fibers use their scan bit the same way Go uses _Gscan.
 *
 * ### Drops
 *
 * Memory is bounded: chunks come from a fixed pool.  When a thread cannot
 * get a chunk it drops every further event of that generation (and counts
 * them), so its stream is a consistent prefix; a fiber whose transition was
 * dropped has its further transitions in that generation dropped too.  The
 * next generation's status events restate the truth.
 *
 * ## Invariants
 *
 * 1. A thread that holds trace buffers MUST be on gt.threads or gt.exited
 *    until its buffers are flushed.
 *    Otherwise the advancer could miss buffers it must flush (and leak them).
 *
 * 2. Trace buffers MUST be mutated only by their owning thread inside its
 *    write section, or by the advancer for a generation no thread can still
 *    write.
 *    Otherwise the advancer may read a chunk while it is being written.
 *
 * 3. The advancer MUST NOT hand a generation to the sinks until every buffer
 *    of it is flushed.
 *    Otherwise a dump taken right after a flush could miss events emitted
 *    before the flush request.
 *
 * 4. A fiber's transition event MUST be emitted by the thread that owns the
 *    transition: the thread running it, or the holder of its scan bit.
 *    Otherwise two threads could emit conflicting transitions in an order the
 *    reader cannot reconstruct.
 *
 * 5. A write section MUST NOT cover acquiring ownership of something not yet
 *    owned, except a fiber's scan bit, which is taken inside the section
 *    that emits the transition and released before it ends.
 *    Otherwise a thread could read generation G, lose a race for ownership
 *    to an event already in G + 1, and emit its own event into G after it.
 *
 * 6. Fiber transitions, except into Running, MUST happen inside the write
 *    section that emits the event; transitions into Running emit the event
 *    after the transition, in the same section.
 *    Otherwise the advancer could observe a state and write a status that
 *    disagrees with the events around it.
 *
 * 7. The application MUST NOT wait on the daemon, the socket or the disk,
 *    and the runtime's memory MUST stay within its configured bounds.
 *    Otherwise tracing could stall or exhaust the process it observes.
 *
 * ## Corner cases
 *
 * - Reentrancy: an event from a signal handler that interrupted a write
 *   section on the same thread is dropped (counted), never nested.
 * - Thread exit: a TLS destructor moves the thread to gt.exited; the
 *   advancer frees it once both slots are flushed.  Events the thread emits
 *   from later destructors are dropped.
 * - fork(): the child inherits a half-finished world (no advance thread,
 *   maybe a lock held mid-operation; the parent's socket only if the
 *   advance thread shared the application's file table, see advance.c).
 *   It forgets all of it and restarts tracing lazily, with the parent's
 *   options, at its first event (gt_fork_child_reset).
 * - Crash: the handler runs on the crashing thread while the others go on.
 *   It holds the advancer off first (no cut, flush or push until it is
 *   done; crash.c), cuts the generation itself, then copies each thread's
 *   current chunks up to the cursor it reads, stopping at the chunk that
 *   was the tail: a consistent prefix of each thread's stream, as after a
 *   drop.  If the process lives on, the advancer finishes the cycle the
 *   handler began (advance_cycle).
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "internal.h"
#include "tsdelta.h"
#include "proto/event.h"
#include "proto/varint.h"

#if defined(__SSE2__) && !GT_SAN_ADDRESS && !GT_SAN_THREAD
#define GT_TEXT32 1 /* see text32_load */
#else
#define GT_TEXT32 0
#endif

/* The lines an event touches (internal.h, struct gt_thread and gt_state). */
_Static_assert(offsetof(struct gt_thread, gen) < 64 &&
                       offsetof(struct gt_thread, slot[0].nevents) + 8 <= 64,
               "an even generation's slot check and cursor are the thread's first line");
_Static_assert(offsetof(struct gt_thread, depth) + 4 <= GT_THREAD_ALIGN &&
                       offsetof(struct gt_thread, clock_shift) < GT_THREAD_ALIGN,
               "depth and the clock's shift lie in the thread's first page");
_Static_assert(offsetof(struct gt_thread, slot[1].pos) / 64 ==
                       (offsetof(struct gt_thread, slot[1].nevents) + 7) / 64,
               "an odd generation's slot fields share a line");
_Static_assert(offsetof(struct gt_thread, regions) % 64 == 0,
               "the first four region levels share a line");
_Static_assert(offsetof(struct gt_state, fiber_mask) + sizeof(gt.fiber_mask) <= 64 &&
                       offsetof(struct gt_state, pool) == 64,
               "gt's first line holds what the general paths and fibers read, and nothing written");
_Static_assert(GT_STRCACHE_WAYS == 2 && sizeof(struct gt_strcache) * GT_STRCACHE_WAYS == 64,
               "a string cache set is two entries, one line (str_get, str_cached)");
_Static_assert(offsetof(struct gt_thread, strcache) + sizeof(((struct gt_thread *)0)->strcache) <=
                       GT_THREAD_ALIGN &&
                       offsetof(struct gt_thread, regions) + 4 * sizeof(struct gt_region) <=
                               GT_THREAD_ALIGN,
               "what the fast paths touch in a thread lies in its first page");

struct gt_state gt;
__thread struct gt_thread *gt_self __attribute__((tls_model("initial-exec")));
/* Set by the TLS destructor: this thread is gone for the tracer. */
static __thread bool gt_dead __attribute__((tls_model("initial-exec")));
static pthread_key_t gt_key;
static pthread_once_t gt_key_once = PTHREAD_ONCE_INIT;

/* ---- chunk pool -------------------------------------------------------- */

#define CHUNK_HDR offsetof(struct gt_chunk, data)

static struct gt_chunk *chunk_at(uint32_t i)
{
        return (struct gt_chunk *)(gt.pool + (size_t)i * gt.chunk_bytes);
}

static struct gt_chunk *chunk_take(uint32_t idx)
{
        struct gt_chunk *c = chunk_at(idx);
        atomic_fetch_add_explicit(&gt.in_use, 1, memory_order_relaxed);
        c->next = NULL;
        c->index = idx;
        atomic_store_explicit(&c->used, 0, memory_order_relaxed);
        return c;
}

/* The pool's two stacks of returned chunks (free_head, copied_head):
 * lock-free, each head packing a 32-bit ABA tag with index + 1, linked
 * through free_next (a chunk is on one stack at most). */
static bool chunk_pop(_Atomic uint64_t *top, uint32_t *ret)
{
        uint64_t head = atomic_load_explicit(top, memory_order_acquire);
        while ((uint32_t)head) {
                uint32_t idx = (uint32_t)head - 1;
                uint32_t next = atomic_load_explicit(&gt.free_next[idx], memory_order_relaxed);
                uint64_t want = ((head >> 32) + 1) << 32 | next;
                if (atomic_compare_exchange_weak_explicit(top, &head, want, memory_order_acquire,
                                                          memory_order_acquire)) {
                        *ret = idx;
                        return true;
                }
        }
        return false;
}

static void chunk_push(_Atomic uint64_t *top, uint32_t idx)
{
        uint64_t head = atomic_load_explicit(top, memory_order_relaxed);
        do {
                atomic_store_explicit(&gt.free_next[idx], (uint32_t)head, memory_order_relaxed);
        } while (!atomic_compare_exchange_weak_explicit(top, &head,
                                                        ((head >> 32) + 1) << 32 | (idx + 1u),
                                                        memory_order_release,
                                                        memory_order_relaxed));
}

/* Slow path (a new chunk): a returned one, else a never-used one, else
 * one a cut in progress has copied already (gt_chunk_put_copied: the
 * last resort, its lines being in the advance thread's cache). */
static struct gt_chunk *chunk_get(void)
{
        uint32_t idx;
        if (chunk_pop(&gt.free_head, &idx))
                return chunk_take(idx);
        if (atomic_load_explicit(&gt.fresh, memory_order_relaxed) < gt.nchunks &&
            (idx = atomic_fetch_add_explicit(&gt.fresh, 1, memory_order_relaxed)) < gt.nchunks)
                return chunk_take(idx);
        if (chunk_pop(&gt.copied_head, &idx))
                return chunk_take(idx);
        return NULL;
}

void gt_chunk_put(struct gt_chunk *c)
{
        chunk_push(&gt.free_head, c->index);
        atomic_fetch_sub_explicit(&gt.in_use, 1, memory_order_relaxed);
}

void gt_chunk_put_copied(struct gt_chunk *c)
{
        chunk_push(&gt.copied_head, c->index);
        atomic_fetch_sub_explicit(&gt.in_use, 1, memory_order_relaxed);
}

void gt_chunks_copied_done(void)
{
        /* Popped last copied first, so the first copied ends on top. */
        uint32_t idx;
        while (chunk_pop(&gt.copied_head, &idx))
                chunk_push(&gt.free_head, idx);
}

/* ---- threads ------------------------------------------------------------ */

static void thread_destructor(void *arg);

static void key_create(void)
{
        (void)pthread_key_create(&gt_key, thread_destructor);
}

int gt_threads_init(void)
{
        return pthread_once(&gt_key_once, key_create) == 0 ? 0 : -EAGAIN;
}

static struct gt_thread *thread_register(void)
{
        if (gt_dead)
                return NULL;
        if (atomic_load_explicit(&gt.gen, memory_order_acquire) == 0) {
                if (atomic_load_explicit(&gt.restart_after_fork, memory_order_relaxed) &&
                    atomic_exchange(&gt.restart_after_fork, 0))
                        (void)gtrace_start(&gt.fork_opts);
                if (atomic_load_explicit(&gt.gen, memory_order_acquire) == 0)
                        return NULL;
        }
        uint32_t cap = gt.stack_depth;
        /* At a page boundary: its hot part is one page (internal.h). */
        size_t bytes = sizeof(struct gt_thread) + cap * sizeof(struct gt_quick_frame);
        struct gt_thread *t = aligned_alloc(GT_THREAD_ALIGN, (bytes + GT_THREAD_ALIGN - 1) &
                                                                     ~(size_t)(GT_THREAD_ALIGN - 1));
        if (!t)
                return NULL;
        memset(t, 0, bytes);
        t->cur_gen = GT_NO_GEN;
        t->quick_cap = cap;
        t->tid = (uint64_t)syscall(SYS_gettid);
        pthread_attr_t attr;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
                void *addr;
                size_t size;
                if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
                        t->stack_lo = (uintptr_t)addr;
                        if (size >= 2 * sizeof(uintptr_t))
                                t->stack_last = (uintptr_t)addr + size - 2 * sizeof(uintptr_t);
                }
                pthread_attr_destroy(&attr);
        }
        pthread_mutex_lock(&gt.threads_lock);
        t->next = gt.threads;
        gt.threads = t;
        /* Under the lock: a publish either finds t on the list or stored
         * gt.gen before this load (gt_gen_publish). */
        atomic_store_explicit(&t->gen, atomic_load_explicit(&gt.gen, memory_order_seq_cst),
                              memory_order_seq_cst);
        pthread_mutex_unlock(&gt.threads_lock);
        (void)pthread_setspecific(gt_key, t);
        gt_self = t;
        return t;
}

static void thread_destructor(void *arg)
{
        struct gt_thread *t = arg;
        gt_dead = true;
        gt_self = NULL;
        pthread_mutex_lock(&gt.threads_lock);
        for (struct gt_thread **pp = &gt.threads; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                        *pp = t->next;
                        break;
                }
        }
        if (atomic_load_explicit(&gt.gen, memory_order_acquire) != 0 || t->slot[0].head ||
            t->slot[1].head) {
                /* Invariant 1: still reachable until the advancer flushed it. */
                t->exited = true;
                t->next = gt.exited;
                gt.exited = t;
                t = NULL;
        }
        pthread_mutex_unlock(&gt.threads_lock);
        free(t);
}

static void slot_release(struct gt_slot *s)
{
        for (struct gt_chunk *c = s->head, *n; c; c = n) {
                n = c->next;
                gt_chunk_put(c);
        }
        memset(s, 0, sizeof(*s));
}

void gt_flush_threads(uint64_t gen, void (*fn)(void *ctx, struct gt_thread *t, struct gt_slot *s),
                      void *ctx)
{
        pthread_mutex_lock(&gt.threads_lock);
        for (int list = 0; list < 2; list++) {
                struct gt_thread **pp = list ? &gt.exited : &gt.threads;
                while (*pp) {
                        struct gt_thread *t = *pp;
                        struct gt_slot *s = &t->slot[gen & 1];
                        if (s->gen == gen) {
                                if (fn)
                                        fn(ctx, t, s);
                                /* Only what fn left listed: it may have taken
                                 * the chunks (internal.h). */
                                slot_release(s);
                        } else if (s->gen && s->gen < gen) {
                                /* Left over from a generation that was never
                                 * flushed (a stop mid-way): just release. */
                                slot_release(s);
                        }
                        if (list && !t->slot[0].gen && !t->slot[1].gen) {
                                *pp = t->next;
                                free(t);
                                continue;
                        }
                        pp = &t->next;
                }
        }
        pthread_mutex_unlock(&gt.threads_lock);
}

void gt_threads_done(void)
{
        /* Tracing is off and every slot was flushed: free what exited, reset
         * what lives (their structs stay: a live thread may be about to read
         * gt.gen through its own pointer, see gtrace_stop). */
        pthread_mutex_lock(&gt.threads_lock);
        for (struct gt_thread *t = gt.exited, *n; t; t = n) {
                n = t->next;
                free(t);
        }
        gt.exited = NULL;
        for (struct gt_thread *t = gt.threads; t; t = t->next) {
                memset(t->slot, 0, sizeof(t->slot));
                t->cur = NULL;
                t->cur_gen = GT_NO_GEN;
                atomic_store_explicit(&t->status_gen, 0, memory_order_relaxed);
                atomic_store_explicit(&t->depth, 0, memory_order_relaxed);
                atomic_store_explicit(&t->fiber, NULL, memory_order_relaxed);
                atomic_store_explicit(&t->syscall, NULL, memory_order_relaxed);
                atomic_store_explicit(&t->name, NULL, memory_order_relaxed);
                /* Both point into the string/stack tables freed by this stop. */
                memset(t->strcache, 0, sizeof(t->strcache));
                t->last_stack = NULL;
                t->last_stack_gen = 0;
                t->quick_n = 0;
        }
        pthread_mutex_unlock(&gt.threads_lock);
}

void gt_writers_barrier(void)
{
        /* Pairs with the writers' barrier in wr_enter(): membarrier() makes
         * their compiler barriers full ones; without it, they and we both
         * fence (store; seq_cst fence; load on each side). */
        if (gt.use_membarrier)
                (void)syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
#if !defined(GTRACE_TSAN)
        else
                atomic_thread_fence(memory_order_seq_cst);
#endif
}

bool gt_wait_sections(const struct gt_thread *skip, uint64_t deadline_ns)
{
        for (int list = 0; list < 2; list++) {
                for (struct gt_thread *t = list ? gt.exited : gt.threads; t; t = t->next) {
                        if (t == skip)
                                continue;
                        uint64_t s = atomic_load_explicit(&t->seq, memory_order_seq_cst);
                        if (unlikely(gt_test_section_wait) && (s & 1))
                                gt_test_section_wait(t->tid);
                        /* Odd: inside a write section that may have read the old
                         * generation.  Sections are a few hundred instructions;
                         * yield rather than burn the CPU of a preempted writer. */
                        for (unsigned spins = 0;
                             (s & 1) && atomic_load_explicit(&t->seq, memory_order_acquire) == s;
                             spins++) {
                                if (deadline_ns && gt_mono_ns() >= deadline_ns)
                                        return false;
                                if (spins > 64)
                                        sched_yield();
                        }
                }
        }
        return true;
}

/*
 * Publishes gen: gt.gen first (threads that register from now on read it,
 * under the lock), then each registered thread's copy, which is what its
 * events read (wr_enter_fast).  The copies are written before the caller's
 * membarrier and seqlock scan, just as gt.gen was when events read it, so
 * the ordering argument of the design notes holds unchanged.  Exited
 * threads emit nothing: they need no copy.
 */
static void gen_publish_threads(uint64_t gen)
{
        for (struct gt_thread *t = gt.threads; t; t = t->next)
                atomic_store_explicit(&t->gen, gen, memory_order_seq_cst);
}

static void gen_publish_global(uint64_t gen)
{
        if (gen)
                atomic_store_explicit(&gt.gen_chunks[gen & 1], 0, memory_order_relaxed);
        atomic_store_explicit(&gt.gen, gen, memory_order_seq_cst);
}

void gt_gen_publish(uint64_t gen)
{
        gen_publish_global(gen);
        pthread_mutex_lock(&gt.threads_lock);
        gen_publish_threads(gen);
        pthread_mutex_unlock(&gt.threads_lock);
}

void gt_gen_publish_nolock(uint64_t gen)
{
        /* The crash handler's: the lock's holder may be the crashed thread.
         * A thread registering right now may miss gen on its copy; it then
         * writes on into the generation being sealed, which the crash reads
         * up to the cursor it finds (a consistent prefix, as after a drop). */
        gen_publish_global(gen);
        bool locked = pthread_mutex_trylock(&gt.threads_lock) == 0;
        gen_publish_threads(gen);
        if (locked)
                pthread_mutex_unlock(&gt.threads_lock);
}

void gt_wait_writers(void)
{
        gt_writers_barrier();
        pthread_mutex_lock(&gt.threads_lock);
        (void)gt_wait_sections(NULL, 0);
        pthread_mutex_unlock(&gt.threads_lock);
}

/* ---- the write section ---------------------------------------------------- */

/* Moves t's seqlock one step on, as a release store.  On x86-64 one add
 * to memory: a single instruction, so no signal handler of the thread can
 * fall between its load and its store, and every store is a release there
 * (the clobber keeps the compiler's stores before it).  TSan sees only what
 * C11 atomics do. */
static inline void seq_step(struct gt_thread *t)
{
#if defined(__x86_64__) && !defined(GTRACE_TSAN)
        __asm__ volatile("addq $1, %0" : "+m"(t->seq) : : "memory");
#else
        atomic_store_explicit(&t->seq, atomic_load_explicit(&t->seq, memory_order_relaxed) + 1,
                              memory_order_release);
#endif
}

static inline void wr_exit(struct gt_thread *t)
{
        /* Release: everything written in the section happens before the
         * advancer's acquire load that sees this value (invariant 2). */
        seq_step(t);
}

/*
 * Whether the fast paths' way into the write section orders the section's
 * first step before its load of the generation (t->gen): with membarrier (the advancer's
 * barrier makes the compiler fence enough), or under TSan (seq_cst).
 * Without, slot_fast never passes (t->cur_gen stays GT_NO_GEN) and
 * FAST_SLOW fences before the general code reads gen again.
 */
static inline bool fast_fenced(void)
{
#if defined(GTRACE_TSAN)
        return true;
#else
        return gt.use_membarrier;
#endif
}

/*
 * Enters t's write section and reads the generation, with the fence left to
 * the caller (see fast_fenced): the fast paths look at gen only through
 * slot_fast, whose t->cur_gen is never 0, so a stopped tracer (gen 0) fails
 * that one check too and needs no test of its own.  False, with the section
 * not entered, when a signal handler interrupted an event of this very
 * thread: nesting would interleave two events' bytes, so this one is
 * dropped.  (A handler that runs between the load and the step finishes its
 * own section first and leaves the counter even: the step enters from
 * there.)
 */
static inline bool wr_enter_fast(struct gt_thread *t, uint64_t *gen)
{
        uint64_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);
        if (unlikely(s & 1))
                return false;
#if defined(GTRACE_TSAN)
        atomic_store_explicit(&t->seq, s + 1, memory_order_seq_cst);
        *gen = atomic_load_explicit(&t->gen, memory_order_seq_cst);
#else
        seq_step(t);
        atomic_signal_fence(memory_order_seq_cst); /* paired with membarrier() */
        *gen = atomic_load_explicit(&t->gen, memory_order_acquire);
#endif
        return true;
}

/* The generation a fast path's way out may write: gen again after the fence
 * the fast path left out (no membarrier), 0 when tracing stopped. */
static inline uint64_t slow_gen(uint64_t gen)
{
        if (unlikely(!fast_fenced())) {
                atomic_thread_fence(memory_order_seq_cst);
                gen = atomic_load_explicit(&gt.gen, memory_order_acquire);
        }
        return gen;
}

/* Enters t's write section; returns the generation to write, or 0 when the
 * event must not be written (tracing stopped, or a nested call). */
static inline uint64_t wr_enter(struct gt_thread *t)
{
        uint64_t gen;
        if (unlikely(!wr_enter_fast(t, &gen)))
                return 0;
        gen = slow_gen(gen);
        if (unlikely(!gen))
                wr_exit(t); /* not tracing: leave the section again */
        return gen;
}

/*
 * Whether a thread without its record may get one: tracing runs, or a
 * forked child restarts it at its first event.  Two plain loads, so that an
 * event while tracing is off returns before any call: a program built with
 * its instrumentation and not tracing pays a few instructions an event, not
 * a trip through thread_register's frame (which checks again, ordered).
 */
static inline bool may_register(void)
{
        return atomic_load_explicit(&gt.gen, memory_order_relaxed) != 0 ||
               atomic_load_explicit(&gt.restart_after_fork, memory_order_relaxed) != 0;
}

/*
 * Opens an event: declares t (this thread's buffer) and gen (the generation
 * to write), or returns `ret` from the calling function when nothing may be
 * written.  A macro, so that no local's address escapes and the fast path
 * needs no stack frame beyond its registers.
 */
#define EV_ENTER(t, gen, ...)                                                      \
        struct gt_thread *t = gt_self;                                             \
        if (unlikely(!t) && (!may_register() || !(t = thread_register())))         \
                return __VA_ARGS__;                                                \
        uint64_t gen = wr_enter(t);                                                \
        if (unlikely(!gen))                                                        \
                return __VA_ARGS__

/*
 * The fast paths' opening: declares t and gen like EV_ENTER, but a thread's
 * first event goes to `first` (the general code, which registers it) by a
 * tail call, and the fast path itself makes no call.
 */
#define FAST_ENTER(t, gen, first)                                     \
        struct gt_thread *t = gt_self;                                \
        if (unlikely(!t))                                             \
                return may_register() ? first : (void)0;              \
        uint64_t gen;                                                 \
        if (unlikely(!wr_enter_fast(t, &gen)))                        \
                return

/*
 * A fast path's way out to the general code, `call`, which gets t's section
 * and gen: gen made good first (slow_gen), and with tracing stopped the
 * section is left instead.  Every exit of a fast path to its general code
 * goes this way, and none has written anything before it (each fast path
 * writes only once its slot_fast passed, which needs a live, fenced gen).
 */
#define FAST_SLOW(t, gen, call)                                       \
        do {                                                          \
                gen = slow_gen(gen);                                  \
                if (likely(gen))                                      \
                        call;                                         \
                else                                                  \
                        wr_exit(t);                                   \
                return;                                               \
        } while (0)

static inline uint8_t *put_u(uint8_t *p, uint64_t v)
{
        return proto_put_uvarint(p, v);
}

/*
 * Is s the string e holds, without a loop?  A name of up to 15 bytes not in
 * the last 16 bytes of a page: two 8-byte loads compared under e's
 * precomputed masks.  Up to 31 bytes, not in the last 32 of a page: two
 * 16-byte compares (e's text is zero-padded to 32 bytes then).  Reading
 * past the caller's NUL is safe there (same page), but sanitizers would
 * flag it.  STR_UNSURE otherwise: the fast paths leave such a name to the
 * general code, whose str_same() loops.
 */
#define STR_UNSURE 2
static inline int str_same_short(const struct gt_str *e, const char *s)
{
#if !GT_SAN_ADDRESS && !GT_SAN_THREAD
        if (likely(e->len < 16 && ((uintptr_t)s & 4095) <= 4096 - 16)) {
                uint64_t a0, a1, b0, b1;
                memcpy(&a0, s, 8);
                memcpy(&a1, s + 8, 8);
                memcpy(&b0, e->data, 8);
                memcpy(&b1, e->data + 8, 8);
                return (((a0 ^ b0) & e->mask[0]) | ((a1 ^ b1) & e->mask[1])) == 0;
        }
#if defined(__SSE2__)
        if (e->len < 32 && ((uintptr_t)s & 4095) <= 4096 - 32) {
                const __m128i *a = (const __m128i *)(const void *)s;
                const __m128i *b = (const __m128i *)(const void *)e->data;
                uint64_t eq =
                        (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(a),
                                                                   _mm_loadu_si128(b))) |
                        (uint64_t)(uint32_t)_mm_movemask_epi8(
                                _mm_cmpeq_epi8(_mm_loadu_si128(a + 1), _mm_loadu_si128(b + 1)))
                                << 16;
                return (~eq & e->mask[0]) == 0; /* bytes 0..len, NUL included */
        }
#endif
#endif
        (void)e, (void)s;
        return STR_UNSURE;
}

static inline bool str_same(const struct gt_str *e, const char *s)
{
        int r = str_same_short(e, s);
        if (likely(r != STR_UNSURE))
                return r;
        const char *a = e->data;
        while (*a && *a == *s) {
                a++;
                s++;
        }
        return *a == *s;
}

/*
 * Copies a log text into the buffer.  A text of a few dozen bytes is the
 * common case, and there the compiler's inline memcpy (`rep movs`, whose
 * start-up is most of the cost of a short copy) or a call to libc is slower
 * than a few word moves; the last word overlaps the one before it instead
 * of finishing byte by byte.  Long texts take memcpy.
 */
static inline void copy_text(uint8_t *dst, const char *src, size_t len)
{
        if (len > 64) {
                memcpy(dst, src, len);
        } else if (len >= 8) {
                uint64_t w;
                for (size_t i = 0; i + 8 < len; i += 8) {
                        memcpy(&w, src + i, 8);
                        /* keeps the compiler from turning the loop back into memcpy */
                        __asm__("" : "+r"(w));
                        memcpy(dst + i, &w, 8);
                }
                memcpy(&w, src + len - 8, 8);
                memcpy(dst + len - 8, &w, 8);
        } else if (len >= 4) {
                uint32_t a, b;
                memcpy(&a, src, 4);
                memcpy(&b, src + len - 4, 4);
                memcpy(dst, &a, 4);
                memcpy(dst + len - 4, &b, 4);
        } else {
                for (size_t i = 0; i < len; i++)
                        dst[i] = (uint8_t)src[i];
        }
}

/* The thread's cache set for the string at s: two entries in one line.
 * Multiplicative hash of the pointer: the linker packs short literals a few
 * bytes apart, so low bits alone would collide. */
static inline struct gt_strcache *strcache_set(struct gt_thread *t, const char *s)
{
        /* Fibonacci hashing of the address's low 32 bits: a multiply by an
         * immediate (a 64-bit constant needs a move of its own first).  A
         * name whose set holds two others costs its events the general
         * path: three of a thread's names in one set thrash. */
        uint32_t set = (uint32_t)((uint32_t)(uintptr_t)s * 0x9e3779b9u) >> (32 - GT_STRCACHE_SET_BITS);
        /* A set is one line (static assert): the byte offset, as written,
         * gives one shift and one address; &t->strcache[set * WAYS] makes
         * GCC compute the first and second entry's addresses apart, four
         * instructions more on region begin's fast path. */
        return (struct gt_strcache *)((char *)t->strcache + (size_t)set * 64);
}

/* Same pointer is not enough: the caller may reuse a buffer (but not the
 * program's own read-only data; see GT_KEY_COPY). */
static inline bool strcache_holds(const struct gt_strcache *c, const char *s)
{
        return c->e && (c->key == (uintptr_t)s || (c->key == GT_KEY_COPY(s) && str_same(c->e, s)));
}

/* The interned string s, marked as used in gen, through the thread's cache.
 * A miss moves the set's first entry to the second (dropping that one) and
 * fills the first. */
static inline struct gt_str *str_get(struct gt_thread *t, const char *s, uint64_t gen)
{
        if (unlikely(!s))
                s = "";
        struct gt_strcache *set = strcache_set(t, s);
        struct gt_strcache *c = strcache_holds(&set[0], s)   ? &set[0]
                                : strcache_holds(&set[1], s) ? &set[1]
                                                             : NULL;
        if (likely(c)) {
                if (unlikely(c->gen != gen)) {
                        gt_str_mark(c->e, gen);
                        c->gen = gen;
                }
                return c->e;
        }
        struct gt_str *e = gt_str_intern(s, strnlen(s, 4096));
        gt_str_mark(e, gen);
        set[1] = set[0];
        set[0] = (struct gt_strcache){
                .key = gt_str_fixed(s) ? (uintptr_t)s : GT_KEY_COPY(s),
                .e = e,
                .gen = gen,
                .id = e->id,
        };
        return e;
}

static inline uint64_t ts_delta(struct gt_slot *s, uint64_t now)
{
        return gt_ts_delta(&s->last, now);
}

/* The write cursor.  Atomic only because the crash handler reads it from
 * another thread (plain moves on x86); everything else is the owner's. */
static inline uint8_t *slot_pos(const struct gt_slot *s)
{
        return atomic_load_explicit(&s->pos, memory_order_relaxed);
}

static inline void ev_commit(struct gt_slot *s, uint8_t *p)
{
        /* Release: the crash handler, on another thread, copies the bytes
         * before the cursor it reads (gt_chunk_used).  A plain store on x86. */
        atomic_store_explicit(&s->pos, p, memory_order_release);
        s->nevents++;
}

static uint8_t *write_thread_status(struct gt_thread *t, struct gt_slot *s, uint8_t *p,
                                    uint64_t gen, uint64_t now);

/*
 * Slow path: the first event of a generation on this thread, or the current
 * chunk is full.  Returns the slot with at least `need` bytes free, or NULL
 * when the event must be dropped (counted).
 */
static __attribute__((noinline)) struct gt_slot *slot_room_slow(struct gt_thread *t, uint64_t gen,
                                                                size_t need)
{
        struct gt_slot *s = &t->slot[gen & 1];
        bool first = s->gen != gen, claimed = false;
        if (!first && s->lossy) {
                /* Once an event is dropped, every later one of this generation
                 * is too, even if chunks came back to the pool meanwhile: the
                 * thread's stream must stay a consistent prefix (a region
                 * whose begin was dropped must not show its end).  Without a
                 * clock read: under overload a dropped event should cost
                 * less than a kept one. */
                goto drop;
        }
        uint64_t now = gt_clock_now();

        if (first) {
                /* By invariant 3 the advancer emptied this slot before
                 * publishing gen; a leftover means an older generation that a
                 * stop abandoned: its chunks go back. */
                if (s->head)
                        slot_release(s);
                memset(s, 0, sizeof(*s));
                s->gen = gen;
                t->cur = s;
                /* With any other clock, or without membarrier (the fast
                 * paths take gen without a fence, see wr_enter_fast), every
                 * event comes here, below. */
                t->cur_gen = gt_clock_is_counter() && fast_fenced() ? gen : GT_NO_GEN;
                t->clock_shift = (uint8_t)gt_clock.shift;
                /* The status handshake (see the design notes): CAS before any
                 * state of this generation changes -- even when this event is
                 * dropped below, for the change it stands for is not, and the
                 * advancer must not write the status from what it read
                 * before.  Won with no chunk, nobody writes the status: the
                 * thread drops every event of the generation. */
                uint64_t prev = atomic_load_explicit(&t->status_gen, memory_order_relaxed);
                claimed = prev < gen && atomic_compare_exchange_strong_explicit(
                                                &t->status_gen, &prev, gen, memory_order_acq_rel,
                                                memory_order_acquire);
        }
        struct gt_chunk *c = chunk_get();
        if (!c) {
                if (first)
                        s->tail = NULL;
                /* The pool is empty: only a cut gives chunks back, and this
                 * thread drops every event until one comes.  Ask for it
                 * now, not at the period's end. */
                gt_advance_kick();
                goto drop;
        }
        /* Half the pool in the current generation: cut it early, while
         * the other half takes the events that come during the copy. */
        if (unlikely(atomic_fetch_add_explicit(&gt.gen_chunks[gen & 1], 1,
                                               memory_order_relaxed) >= gt.kick_chunks))
                gt_advance_kick();
        c->base = first ? now : s->last;
        if (first)
                s->last = now;
        if (s->tail) {
                /* The full chunk's length is final: record it, hand it on. */
                atomic_store_explicit(&s->tail->used, (uint32_t)(slot_pos(s) - s->tail->data),
                                      memory_order_relaxed);
                s->tail->next = c;
        } else {
                s->head = c;
        }
        s->tail = c;
        s->nchunks++;
        atomic_store_explicit(&s->pos, c->data, memory_order_relaxed);
        s->end = (uint8_t *)c + gt.chunk_bytes;
        s->limit = s->end - GT_FAST_ROOM;

        if (claimed) {
                uint8_t *p = write_thread_status(t, s, slot_pos(s), gen, now);
                atomic_store_explicit(&s->pos, p, memory_order_relaxed);
        }
        if ((size_t)(s->end - slot_pos(s)) < need)
                goto drop; /* cannot happen with chunk_bytes >= 4 KiB; be safe */
        return s;
drop:
        /* No room from now on: every further event of the generation comes
         * here and drops (slot_fast and slot_room see none). */
        s->end = slot_pos(s);
        s->limit = NULL;
        s->lossy = true;
        s->lost++;
        s->lost_total++;
        return NULL;
}

/*
 * Room for an event of at most `need` bytes in the current generation's
 * slot.  Callers read the clock only after this returns: on a generation's
 * first event the status handshake happens in here, and the event must not
 * carry a time older than the status the advancer may have written.
 */
/* Is t->cur the slot of gen, with a chunk that has room for any event of
 * up to GT_FAST_ROOM bytes, and is the clock the cycle counter?
 * slot_room without its slow path: the fast paths take this test alone
 * (two compares), and then may read the counter without the fallback's
 * check (slot_room_slow sets cur_gen only for that clock, and only where
 * the fast paths' way into the section is fenced: fast_fenced). */
static inline bool slot_fast(const struct gt_thread *t, uint64_t gen)
{
        const struct gt_slot *s = t->cur;
        /* Strictly below: a slot with no room has limit NULL, its cursor
         * perhaps NULL too. */
        return likely(t->cur_gen == gen && (uintptr_t)slot_pos(s) < (uintptr_t)s->limit);
}

/* slot_fast that gives the caller the cursor it checked, to write at: the
 * load is atomic (the crash handler reads it), so the compiler does not
 * reuse it, and loading it again costs an instruction.  For the fast paths
 * with registers to spare (region end, fibers); the others (region begin,
 * counter, log) would keep it in a callee-saved register, and saving that
 * costs more than the load. */
static inline bool slot_fast_at(const struct gt_thread *t, uint64_t gen, uint8_t **at)
{
        const struct gt_slot *s = t->cur;
        if (unlikely(t->cur_gen != gen))
                return false;
        *at = slot_pos(s);
        return likely((uintptr_t)*at < (uintptr_t)s->limit);
}

/* The general paths' check asks the generation's slot itself, whatever
 * the clock (t->cur_gen is the fast paths' gate: set only under the cycle
 * counter).  A slot that dropped an event has no room left (end == pos),
 * so room here also means not lossy.  Slot gen & 1 is the owner's: the
 * advancer emptied it before publishing gen (invariant 3). */
static inline struct gt_slot *slot_room(struct gt_thread *t, uint64_t gen, size_t need)
{
        struct gt_slot *s = &t->slot[gen & 1];
        if (likely(s->gen == gen && (size_t)(s->end - slot_pos(s)) >= need))
                return s;
        return slot_room_slow(t, gen, need);
}

/* The events of the fast paths, written the same way by their general
 * paths: into s, which has room. */
static inline void put_region_begin_at(struct gt_slot *s, uint8_t *p, uint64_t now,
                                      uint32_t name)
{
        *p++ = PROTO_EV_REGION_BEGIN;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, name);
        ev_commit(s, p);
}

static inline void put_region_end_at(struct gt_slot *s, uint8_t *p, uint64_t now)
{
        *p++ = PROTO_EV_REGION_END;
        p = put_u(p, ts_delta(s, now));
        ev_commit(s, p);
}

static inline void put_counter_at(struct gt_slot *s, uint8_t *p, uint64_t now, uint32_t name,
                                  int64_t value)
{
        *p++ = PROTO_EV_COUNTER;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, name);
        p = put_u(p, proto_zigzag(value));
        ev_commit(s, p);
}

/* The open region at depth, for status events. */
static inline void region_open(struct gt_thread *t, uint32_t depth, struct gt_str *e, uint64_t now)
{
        atomic_store_explicit(&t->regions[depth].name, e, memory_order_relaxed);
        atomic_store_explicit(&t->regions[depth].start, now, memory_order_relaxed);
}

/* ---- stacks ---------------------------------------------------------------- */

/*
 * Frame-pointer unwinding: a load pair per frame, and safe.  Every frame
 * pointer is checked to lie inside the thread's own stack, to be aligned and
 * to move towards the stack's base before it is dereferenced, so a frame
 * built without frame pointers ends the walk instead of faulting.  Code
 * compiled with -fomit-frame-pointer (the default at -O2 on x86-64) shows up
 * as a short or empty stack; build with -fno-omit-frame-pointer to get full
 * stacks (docs/runtime.md).  A thread running on a stack that is not its own
 * (a signal's alternate stack, a fiber's makecontext stack) records none.
 *
 * The walk starts directly at the public function's frame (ours, built with
 * frame pointers), whose return address is the application's call site.
 * A thread usually logs from the same few places, so the common case is a
 * walk that only compares each return address with the stack the thread
 * interned last: no copy, no hash, no table.  The first difference sends the
 * capture to the slow path, which walks again into an array and interns it.
 */

/* [lo, last]: where a frame record (saved frame pointer, return address)
 * may start on this thread's stack; last = 0 when the stack is unknown. */
static inline bool frame_ok(uintptr_t fp, uintptr_t lo, uintptr_t last)
{
        return fp >= lo && fp <= last && !(fp & (sizeof(uintptr_t) - 1));
}

/*
 * Is next, the saved frame pointer in the record at fp, a record the walk
 * may go on to?  Above fp (towards the stack's base), at most last, aligned:
 * frame_ok(next, fp, last) && next > fp, as one comparison and a mask.
 */
static inline bool frame_next_ok(uintptr_t next, uintptr_t fp, uintptr_t last)
{
        return (next - fp - 1 < last - fp) & !(next & (sizeof(uintptr_t) - 1));
}

/* The stack from the frame record at fp (checked by the caller), walked and
 * interned.  With pc0, an interrupted context's: pc0 is its first frame,
 * and fp its frame pointer, which the walk follows if it is a record on
 * this thread's stack (the crash handler's note, crash.c). */
static __attribute__((noinline, cold)) uint64_t stack_intern_walk(struct gt_thread *t,
                                                                  uint64_t gen, uintptr_t fp,
                                                                  uintptr_t pc0)
{
        uint64_t pcs[GT_MAX_STACK_DEPTH];
        uintptr_t at[GT_MAX_STACK_DEPTH + 1];
        uint32_t n = 0, max = gt.stack_depth;
        bool end0 = false;
        if (pc0) {
                if (!gt_code_addr(pc0))
                        return 0;
                pcs[n++] = pc0;
        }
        at[n] = fp;
        /* A context's frame pointer is checked as stack_walk checks a start. */
        if (!pc0 || (n < max && frame_ok(fp, t->stack_lo, t->stack_last))) {
                for (;;) {
                        const uintptr_t *frame = (const uintptr_t *)fp;
                        uintptr_t next = frame[0], ret = frame[1];
                        if (!ret) {
                                end0 = n > 0;
                                break;
                        }
                        /* A record made by a frame without a frame pointer
                         * holds the caller's data, not a return address
                         * (code.c). */
                        if (!gt_code_addr(ret))
                                break;
                        pcs[n++] = ret;
                        at[n] = next;
                        if (n == max || !frame_next_ok(next, fp, t->stack_last))
                                break;
                        fp = next;
                }
        }
        /* A cached stack is never empty: stack_capture relies on it. */
        struct gt_stack *e = n ? gt_stack_intern(pcs, n) : NULL;
        if (!e)
                return 0;
        t->last_stack = e;
        /* Its records are where a later walk may find them again; not a
         * context's, whose first frame has none. */
        t->quick_n = n <= t->quick_cap && !pc0 ? n : 0;
        for (uint32_t i = 0; i < t->quick_n; i++)
                t->quick[i] = (struct gt_quick_frame){.at = at[i], .next = at[i + 1], .ret = pcs[i]};
        t->quick_end = at[n];
        t->quick_end0 = end0;
        gt_stack_mark(e, gen);
        t->last_stack_gen = gen;
        return e->id;
}

/*
 * Is the stack at start the one this thread interned last, already marked
 * for gen?  Then its id is t->last_stack->id.  It is when every frame
 * record it was read from is still where it was and holds what it held
 * (start being the first): a walk from start would read those records
 * again and stop where it stopped.  The records' addresses are known, so
 * they are loaded independently of one another (a walk's loads each wait
 * for the one before) and compared 16 bytes at a time: a few instructions
 * a frame and no bounds to check (they were checked when recorded, and
 * start == quick[0].at keeps them above the live frame).  Not under ASan,
 * whose poisoned locals may lie where a record was: it walks.
 */
static inline bool stack_is_last(const struct gt_thread *t, uint64_t gen, uintptr_t start)
{
#if GT_SAN_ADDRESS
        (void)t, (void)gen, (void)start;
        return false;
#else
        const uint32_t n = t->quick_n;
        if (n == 0 || t->last_stack_gen != gen || start != t->quick[0].at)
                return false;
        const struct gt_quick_frame *q = t->quick, *end = q + n;
#if defined(__SSE2__)
        __m128i d = _mm_setzero_si128();
        for (; q < end; q++)
                d = _mm_or_si128(d, _mm_xor_si128(_mm_loadu_si128((const __m128i *)q->at),
                                                  _mm_load_si128((const __m128i *)&q->next)));
        if (t->quick_end0)
                d = _mm_or_si128(d, _mm_loadl_epi64((const __m128i *)(t->quick_end + 8)));
        return _mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_setzero_si128())) == 0xffff;
#else
        uintptr_t d = 0;
        for (; q < end; q++) {
                const uintptr_t *frame = (const uintptr_t *)q->at;
                d |= (frame[0] ^ q->next) | (frame[1] ^ q->ret);
        }
        if (t->quick_end0)
                d |= ((const uintptr_t *)t->quick_end)[1];
        return d == 0;
#endif
#endif
}

/* The stack from the frame record at start, walked and interned: 0 when
 * start is not on this thread's own stack. */
static inline uint64_t stack_walk(struct gt_thread *t, uint64_t gen, uintptr_t start)
{
        if (!frame_ok(start, t->stack_lo, t->stack_last))
                return 0;
        return stack_intern_walk(t, gen, start, 0);
}

/* The stack from the frame record at start, the public function's own (its
 * return address is the application's call site): the thread's last, or
 * walked and interned. */
static inline __attribute__((always_inline)) uint64_t stack_from(struct gt_thread *t,
                                                                 uint64_t gen, uintptr_t start)
{
        if (likely(stack_is_last(t, gen, start)))
                return t->last_stack->id;
        return stack_walk(t, gen, start);
}

/* Out of line for the events that are not logs: it must stay exactly one
 * call deep from the public function, and skips its own frame. */
static __attribute__((noinline)) uint64_t stack_capture(struct gt_thread *t, uint64_t gen)
{
        return stack_from(t, gen, *(const uintptr_t *)__builtin_frame_address(0));
}

/* The stack id for an event of kind k: 0 unless stacks are on for k.  The
 * check is inline; the capture is out of line (stack_capture). */
#define stack_id(t, k, gen) ((gt.stack_mask & (1u << (k))) ? stack_capture(t, gen) : 0)

/* ---- status events -------------------------------------------------------- */

static uint8_t fiber_status_state(struct gt_thread *t, uint32_t state)
{
        state &= ~GT_FIBER_SCAN;
        if (state == PROTO_FIBER_RUNNING && t && atomic_load_explicit(&t->syscall, memory_order_relaxed))
                return PROTO_FIBER_SYSCALL;
        return (uint8_t)state;
}

/* The thread's own status set, written into its first chunk of gen. */
static uint8_t *write_thread_status(struct gt_thread *t, struct gt_slot *s, uint8_t *p,
                                    uint64_t gen, uint64_t now)
{
        struct gt_fiber *f = atomic_load_explicit(&t->fiber, memory_order_relaxed);
        struct gt_str *sys = atomic_load_explicit(&t->syscall, memory_order_relaxed);
        if (sys)
                gt_str_mark(sys, gen);
        *p++ = PROTO_EV_THREAD_STATUS;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, f ? atomic_load_explicit(&f->id, memory_order_relaxed) : 0);
        p = put_u(p, sys ? sys->id : 0);
        p = put_u(p, sys ? atomic_load_explicit(&t->syscall_start, memory_order_relaxed) : 0);
        s->nevents++;
        uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
        if (depth > GT_MAX_REGION_DEPTH)
                depth = GT_MAX_REGION_DEPTH;
        for (uint32_t i = 0; i < depth; i++) {
                struct gt_str *n = atomic_load_explicit(&t->regions[i].name, memory_order_relaxed);
                gt_str_mark(n, gen);
                *p++ = PROTO_EV_REGION_STATUS;
                p = put_u(p, 0);
                p = put_u(p, n->id);
                p = put_u(p, atomic_load_explicit(&t->regions[i].start, memory_order_relaxed));
                s->nevents++;
        }
        if (f) {
                /* The running fiber's status is part of its thread's. */
                struct gt_str *fn = atomic_load_explicit(&f->name, memory_order_relaxed);
                gt_str_mark(fn, gen);
                *p++ = PROTO_EV_FIBER_STATUS;
                p = put_u(p, 0);
                p = put_u(p, atomic_load_explicit(&f->id, memory_order_relaxed));
                p = put_u(p, fiber_status_state(t, PROTO_FIBER_RUNNING));
                p = put_u(p, fn->id);
                p = put_u(p, 0);
                atomic_store_explicit(&f->status_gen, gen, memory_order_relaxed);
                s->nevents++;
        }
        return p;
}

/* Bytes the status set above may take. */
#define THREAD_STATUS_BYTES (4 * 11 + GT_MAX_REGION_DEPTH * 24 + 6 * 11)

void (*gt_test_status_claimed)(uint64_t tid);
void (*gt_test_section_wait)(uint64_t tid);

void gt_threads_status(uint64_t gen)
{
        pthread_mutex_lock(&gt.threads_lock);
        for (struct gt_thread *t = gt.threads; t; t = t->next) {
                uint64_t prev = atomic_load_explicit(&t->status_gen, memory_order_acquire);
                if (prev >= gen)
                        continue;
                /* Read first, then try to claim: see the design notes. */
                struct gt_region regions[GT_MAX_REGION_DEPTH];
                uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
                if (depth > GT_MAX_REGION_DEPTH)
                        depth = GT_MAX_REGION_DEPTH;
                for (uint32_t i = 0; i < depth; i++) {
                        atomic_init(&regions[i].name, atomic_load_explicit(&t->regions[i].name,
                                                                           memory_order_relaxed));
                        atomic_init(&regions[i].start, atomic_load_explicit(&t->regions[i].start,
                                                                            memory_order_relaxed));
                }
                /* Acquire, paired with gtrace_fiber_run's release: a fiber
                 * the thread started running after its own claim makes the
                 * load of status_gen below see that claim. */
                struct gt_fiber *f = atomic_load_explicit(&t->fiber, memory_order_acquire);
                struct gt_str *sys = atomic_load_explicit(&t->syscall, memory_order_relaxed);
                uint64_t sys_start = atomic_load_explicit(&t->syscall_start, memory_order_relaxed);
                /* Mark f announced before the claim, so that a transition the
                 * thread makes right after losing the claim writes no second
                 * status.  But only while the thread has not claimed: once it
                 * has, f may be a fiber it ran in this generation, whose
                 * status is the thread's to write (fiber_emit), and marking
                 * it would make the thread skip it. */
                uint64_t fid = 0;
                struct gt_str *fname = NULL;
                if (f) {
                        if (atomic_load_explicit(&t->status_gen, memory_order_relaxed) >= gen)
                                continue; /* the thread wrote its own */
                        /* Its id and name are part of the reading: once the
                         * claim is won the thread goes on, and may end f,
                         * whose slot a new fiber can then take. */
                        fid = atomic_load_explicit(&f->id, memory_order_relaxed);
                        fname = atomic_load_explicit(&f->name, memory_order_relaxed);
                        atomic_store_explicit(&f->status_gen, gen, memory_order_relaxed);
                }
                struct gt_str *tname = atomic_load_explicit(&t->name, memory_order_relaxed);
                if (!atomic_compare_exchange_strong_explicit(&t->status_gen, &prev, gen,
                                                             memory_order_acq_rel,
                                                             memory_order_acquire))
                        continue; /* the thread wrote its own */
                if (unlikely(gt_test_status_claimed))
                        gt_test_status_claimed(t->tid);
                gt_status_thread(gen, t->tid, tname, fid, fname, sys, sys_start, regions, depth);
        }
        pthread_mutex_unlock(&gt.threads_lock);
}

/* ---- fibers and tasks: fixed tables ----------------------------------------- */

static inline uint32_t id_hash(uint64_t id, uint32_t mask)
{
        id *= 0x9e3779b97f4a7c15ull;
        return (uint32_t)(id >> 32) & mask;
}

/* Can id name a fiber?  0 and the table's markers (GT_TOMB, GT_TOMB - 1)
 * cannot: a caller's bad id must not match an empty or removed slot. */
static inline bool fiber_id_ok(uint64_t id)
{
        return id - 1 < GT_TOMB - 2;
}

static struct gt_fiber *fiber_find(uint64_t id)
{
        if (!fiber_id_ok(id) || !gt.fibers)
                return NULL;
        for (uint32_t i = 0, h = id_hash(id, gt.fiber_mask); i <= gt.fiber_mask && i < GT_MAX_PROBE;
             i++) {
                struct gt_fiber *f = &gt.fibers[(h + i) & gt.fiber_mask];
                uint64_t cur = atomic_load_explicit(&f->id, memory_order_acquire);
                if (cur == id)
                        return f;
                if (cur == 0)
                        return NULL;
        }
        return NULL;
}

static struct gt_fiber *fiber_insert(uint64_t id)
{
        for (uint32_t i = 0, h = id_hash(id, gt.fiber_mask); i <= gt.fiber_mask && i < GT_MAX_PROBE;
             i++) {
                struct gt_fiber *f = &gt.fibers[(h + i) & gt.fiber_mask];
                uint64_t cur = atomic_load_explicit(&f->id, memory_order_relaxed);
                /* A reserved slot: id stays GT_TOMB - 1 until published. */
                if ((cur == 0 || cur == GT_TOMB) &&
                    atomic_compare_exchange_strong_explicit(&f->id, &cur, GT_TOMB - 1,
                                                            memory_order_acquire,
                                                            memory_order_relaxed)) {
                        atomic_fetch_add_explicit(&gt.fibers_live, 1, memory_order_relaxed);
                        return f;
                }
        }
        return NULL;
}

/*
 * Invariant 4, as the seed puts it for goroutines: a transition is emitted
 * by the thread running the fiber, or by the holder of a fiber's scan bit
 * when it is not running.  A Running fiber is its thread's alone -- nobody
 * takes the bit of a Running fiber -- so its thread leaves Running with
 * plain stores, and only the way into Running (the thread takes the fiber
 * from Runnable) and the transitions of fibers that are not running
 * (ready, the advancer's status) pay a CAS.
 */

/* Takes f's scan bit unless f is Running; returns the state it had
 * (PROTO_FIBER_RUNNING: no bit taken, nothing to unlock). */
static uint32_t fiber_lock(struct gt_fiber *f)
{
        uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
        for (unsigned spins = 0;; spins++) {
                if (s == PROTO_FIBER_RUNNING)
                        return s;
                if (!(s & GT_FIBER_SCAN) &&
                    atomic_compare_exchange_weak_explicit(&f->state, &s, s | GT_FIBER_SCAN,
                                                          memory_order_acquire,
                                                          memory_order_relaxed))
                        return s;
                if (spins > 64)
                        sched_yield();
                s = atomic_load_explicit(&f->state, memory_order_relaxed);
        }
}

/* Publishes f's state: gives up the scan bit, or the running thread's
 * ownership.  Release: the next owner sees what this one wrote. */
static void fiber_unlock(struct gt_fiber *f, uint32_t state)
{
        atomic_store_explicit(&f->state, state, memory_order_release);
}

/* Moves f from Runnable to Running, owned by the calling thread, waiting
 * out a scan bit; false when f is in another state (misuse: ignored).  The
 * general path: the fast one tries a single CAS (fiber_try_take). */
static bool fiber_take(struct gt_fiber *f)
{
        uint32_t s = fiber_lock(f);
        if (s == PROTO_FIBER_RUNNABLE) {
                fiber_unlock(f, PROTO_FIBER_RUNNING);
                return true;
        }
        if (s != PROTO_FIBER_RUNNING)
                fiber_unlock(f, s);
        return false;
}

void gt_fibers_status(uint64_t gen)
{
        /* Any fiber created before the switch is counted by now (its
         * creator's write section ended before gt_wait_writers returned). */
        if (!atomic_load_explicit(&gt.fibers_live, memory_order_relaxed))
                return;
        for (uint32_t i = 0; gt.fibers && i <= gt.fiber_mask; i++) {
                struct gt_fiber *f = &gt.fibers[i];
                uint64_t id = atomic_load_explicit(&f->id, memory_order_acquire);
                if (id == 0 || id >= GT_TOMB - 1)
                        continue;
                uint32_t s = fiber_lock(f);
                if (s == PROTO_FIBER_RUNNING)
                        continue; /* its thread's status covers it */
                if (atomic_load_explicit(&f->id, memory_order_relaxed) == id &&
                    atomic_load_explicit(&f->status_gen, memory_order_relaxed) < gen) {
                        gt_status_fiber(gen, f, s);
                        atomic_store_explicit(&f->status_gen, gen, memory_order_relaxed);
                }
                fiber_unlock(f, s);
        }
}

static struct gt_task *task_find(uint64_t id)
{
        if (!id || !gt.tasks)
                return NULL;
        for (uint32_t i = 0, h = id_hash(id, gt.task_mask); i <= gt.task_mask && i < GT_MAX_PROBE;
             i++) {
                struct gt_task *k = &gt.tasks[(h + i) & gt.task_mask];
                uint64_t cur = atomic_load_explicit(&k->id, memory_order_acquire);
                if (cur == id)
                        return k;
                if (cur == 0)
                        return NULL;
        }
        return NULL;
}

void gt_tasks_status(uint64_t gen)
{
        if (!atomic_load_explicit(&gt.tasks_live, memory_order_relaxed))
                return;
        for (uint32_t i = 0; gt.tasks && i <= gt.task_mask; i++) {
                struct gt_task *k = &gt.tasks[i];
                uint64_t id = atomic_load_explicit(&k->id, memory_order_acquire);
                if (id == 0 || id >= GT_TOMB - 1)
                        continue;
                uint64_t bg = atomic_load_explicit(&k->begin_gen, memory_order_relaxed) &
                              ~GT_TASK_BEGIN_LOST;
                uint64_t parent = atomic_load_explicit(&k->parent, memory_order_relaxed);
                struct gt_str *name = atomic_load_explicit(&k->name, memory_order_relaxed);
                uint64_t start = atomic_load_explicit(&k->start, memory_order_relaxed);
                uint64_t sg = atomic_load_explicit(&k->status_gen, memory_order_relaxed);
                /* Read, then claim (as for threads): the thread ending the task
                 * in this generation may write its status first. */
                if (bg >= gen || sg >= gen || atomic_load_explicit(&k->id, memory_order_acquire) != id ||
                    !name)
                        continue;
                if (!atomic_compare_exchange_strong_explicit(&k->status_gen, &sg, gen,
                                                             memory_order_acq_rel,
                                                             memory_order_relaxed))
                        continue;
                gt_status_task(gen, id, parent, name, start);
        }
}

/* ---- public event functions -------------------------------------------------- */

/*
 * The API functions with a fast path share one page of code, as their data
 * shares the thread's page: a server's kernel work between two requests
 * leaves each page an event touches a TLB miss (docs/performance.md).  Their
 * section starts a page; tests/unit/test-runtime-symbols.c checks that they
 * fit in it.
 */
#define GT_FAST_TEXT __attribute__((section(".text.gtrace_fast")))
__asm__(".pushsection .text.gtrace_fast,\"ax\",@progbits\n\t"
        ".balign 4096\n\t"
        ".popsection");

/*
 * The fast paths.  The common event -- a known string, room in the current
 * chunk, the cycle counter as clock -- is checked for up front, and
 * anything else goes to the general code by a tail call, before any state
 * changes.  No call then remains on the fast path, and the compiler saves
 * two callee-saved registers there instead of six (with the stack
 * adjustment, a dozen instructions: a tenth of a region's cost).
 */

/* Does the thread's cache entry for s hold s marked for gen?  Then *id is
 * the string's id, and *e the string unless e is NULL (only a region begin
 * keeps it): a fast path writes the id without reading the string itself
 * (one cache line fewer; a fixed string's text is not read at all).  Flags
 * and out-parameters rather than NULL: the callers' conditions then need no
 * test of a pointer of their own. */
static inline bool str_cached(struct gt_thread *t, const char *s, uint64_t gen, uint32_t *id,
                              struct gt_str **e)
{
        const struct gt_strcache *c = strcache_set(t, s);
        /* A fixed string in either entry, or a copied one in the first (in
         * the second it takes the general path: checking its text here too
         * would cost every event registers). */
        if (unlikely(c->key != (uintptr_t)s)) {
                if (c[1].key == (uintptr_t)s)
                        c++;
                else if (c->key != GT_KEY_COPY(s) || str_same_short(c->e, s) != 1)
                        return false;
        }
        *id = c->id;
        if (e)
                *e = c->e;
        /* An entry marked for gen (never 0 here) was filled by str_get,
         * which sets e with it: e needs no test of its own. */
        return likely(c->gen == gen);
}

/* The cycle counter in clock units, for the fast paths (which know from
 * their slot check that it is the clock): the shift is t's copy, in the
 * page of the thread's state the event touches anyway, instead of gt_clock's. */
static inline uint64_t counter_now(const struct gt_thread *t)
{
        return gt_clock_raw() >> t->clock_shift;
}


/* Inside the write section: the general case. */
static __attribute__((noinline)) void region_begin_in(struct gt_thread *t, uint64_t gen,
                                                      const char *name)
{
        uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
        if (likely(depth < GT_MAX_REGION_DEPTH)) {
                struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
                uint64_t now = gt_clock_now();
                struct gt_str *e = str_get(t, name, gen);
                if (likely(s))
                        put_region_begin_at(s, slot_pos(s), now, e->id);
                region_open(t, depth, e, now);
        } else {
                /* Deeper than tracked: neither begin nor end is recorded. */
                struct gt_slot *s = &t->slot[gen & 1];
                if (s->gen == gen) {
                        s->lost_total++;
                }
        }
        atomic_store_explicit(&t->depth, depth + 1, memory_order_relaxed);
        wr_exit(t);
}

/* A thread's first event: register it, then the general case. */
static __attribute__((noinline)) void region_begin_new(const char *name)
{
        EV_ENTER(t, gen);
        region_begin_in(t, gen, name);
}

GTRACE_API GT_FAST_TEXT void gtrace_region_begin(const char *name)
{
        FAST_ENTER(t, gen, region_begin_new(name));
        uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
        uint32_t id;
        struct gt_str *e;
        if (unlikely(depth >= GT_MAX_REGION_DEPTH || !slot_fast(t, gen) ||
                     !str_cached(t, name, gen, &id, &e)))
                FAST_SLOW(t, gen, region_begin_in(t, gen, name));
        struct gt_slot *s = t->cur;
        uint64_t now = counter_now(t);
        region_open(t, depth, e, now);
        put_region_begin_at(s, slot_pos(s), now, id);
        atomic_store_explicit(&t->depth, depth + 1, memory_order_relaxed);
        wr_exit(t);
}

static __attribute__((noinline)) void region_end_in(struct gt_thread *t, uint64_t gen)
{
        uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
        if (likely(depth > 0 && depth <= GT_MAX_REGION_DEPTH)) {
                struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
                if (likely(s)) /* a dropped event reads no clock */
                        put_region_end_at(s, slot_pos(s), gt_clock_now());
        }
        if (depth > 0)
                atomic_store_explicit(&t->depth, depth - 1, memory_order_relaxed);
        wr_exit(t);
}

static __attribute__((noinline)) void region_end_new(void)
{
        EV_ENTER(t, gen);
        region_end_in(t, gen);
}

GTRACE_API GT_FAST_TEXT void gtrace_region_end(void)
{
        FAST_ENTER(t, gen, region_end_new());
        uint32_t depth = atomic_load_explicit(&t->depth, memory_order_relaxed);
        uint8_t *p;
        if (unlikely(depth - 1 >= GT_MAX_REGION_DEPTH || !slot_fast_at(t, gen, &p)))
                FAST_SLOW(t, gen, region_end_in(t, gen));
        put_region_end_at(t->cur, p, counter_now(t));
        atomic_store_explicit(&t->depth, depth - 1, memory_order_relaxed);
        wr_exit(t);
}

static __attribute__((noinline)) void counter_in(struct gt_thread *t, uint64_t gen,
                                                 const char *name, int64_t value)
{
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
        if (likely(s)) { /* a dropped event reads no clock */
                uint64_t now = gt_clock_now();
                put_counter_at(s, slot_pos(s), now, str_get(t, name, gen)->id, value);
        }
        wr_exit(t);
}

static __attribute__((noinline)) void counter_new(const char *name, int64_t value)
{
        EV_ENTER(t, gen);
        counter_in(t, gen, name, value);
}

GTRACE_API GT_FAST_TEXT void gtrace_counter(const char *name, int64_t value)
{
        FAST_ENTER(t, gen, counter_new(name, value));
        uint32_t id;
        if (unlikely(!slot_fast(t, gen) || !str_cached(t, name, gen, &id, NULL)))
                FAST_SLOW(t, gen, counter_in(t, gen, name, value));
        struct gt_slot *s = t->cur;
        put_counter_at(s, slot_pos(s), counter_now(t), id, value);
        wr_exit(t);
}

/*
 * A short log text's length and bytes in one pass: text32_load() reads the
 * 32 bytes at s into two vector registers and finds the NUL in them;
 * text32_store() writes the same registers into the buffer (past the text
 * the bytes are garbage no event covers: the caller has room for 32).
 * SHORT_TEXT_NONE when the text is 32 bytes or longer, or when the 32 bytes
 * would cross into the next page (which the text may not reach: the load
 * could fault), or s is NULL (the general code logs ""), or s starts a page
 * (one test finds both).  Sanitizers would flag the bytes read past the NUL: they
 * take strnlen and copy_text, as every longer text does.
 */
#define SHORT_TEXT 32
#define SHORT_TEXT_NONE ((size_t)-1)
_Static_assert(GT_MAX_EVENT_BYTES + SHORT_TEXT <= GT_FAST_ROOM &&
                       2 * GT_MAX_EVENT_BYTES <= GT_FAST_ROOM,
               "slot_fast leaves room for every fast path's event");
#if GT_TEXT32
struct text32 {
        __m128i a, b;
};

static inline size_t text32_load(struct text32 *v, const char *s)
{
        /* Also NULL, and (as a price of that) a text at a page's start. */
        if ((((uintptr_t)s - 1) & 4095) >= 4096 - SHORT_TEXT)
                return SHORT_TEXT_NONE;
        v->a = _mm_loadu_si128((const __m128i *)(const void *)s);
        v->b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i z = _mm_setzero_si128();
        uint32_t nul = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v->a, z)) |
                       (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v->b, z)) << 16;
        return nul ? (size_t)__builtin_ctz(nul) : SHORT_TEXT_NONE;
}

static inline void text32_store(uint8_t *dst, const struct text32 *v)
{
        _mm_storeu_si128((__m128i *)(void *)dst, v->a);
        _mm_storeu_si128((__m128i *)(void *)(dst + 16), v->b);
}
#else
struct text32 {
        char unused;
};

static inline size_t text32_load(struct text32 *v, const char *s)
{
        (void)v;
        (void)s;
        return SHORT_TEXT_NONE;
}

static inline void text32_store(uint8_t *dst, const struct text32 *v)
{
        (void)dst;
        (void)v;
}
#endif

/* A LOG event up to its text, which goes at the pointer returned, then
 * the stack id: both of gtrace_log's ways write it so. */
static inline uint8_t *put_log_head_at(struct gt_slot *s, uint8_t *p, uint64_t now,
                                       uint32_t category, size_t len)
{
        *p++ = PROTO_EV_LOG;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, category);
        return put_u(p, len);
}

/*
 * The general log: any text, any slot state, the string table's slow path.
 * frame is gtrace_log's frame record, whose return address is the
 * application's call site; the stack is walked from it.  When gtrace_log
 * reaches this by a tail call, that record is this function's own (its
 * prologue stores the same saved frame pointer at the same address), so
 * the walk reads the same two words either way.  With pc0, the stack is
 * an interrupted context's instead: pc0, then the records from its frame
 * pointer, frame (stack_intern_walk).
 */
static __attribute__((noinline)) void log_in(struct gt_thread *t, uint64_t gen,
                                             const char *category, const char *message,
                                             uintptr_t frame, uintptr_t pc0)
{
        if (!message)
                message = "";
        size_t len = strnlen(message, GT_MAX_LOG_BYTES);
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES + len);
        if (likely(s)) { /* a dropped event reads no clock */
                uint64_t now = gt_clock_now();
                uint8_t *p = put_log_head_at(s, slot_pos(s), now, str_get(t, category, gen)->id, len);
                copy_text(p, message, len);
                p += len;
                uint64_t stack = 0;
                if (gt.stack_mask & (1u << GTRACE_KIND_LOG))
                        stack = pc0 ? stack_intern_walk(t, gen, frame, pc0)
                                    : stack_from(t, gen, frame);
                p = put_u(p, stack);
                ev_commit(s, p);
        }
        wr_exit(t);
}

static __attribute__((noinline)) void log_new(const char *category, const char *message,
                                              uintptr_t frame, uintptr_t pc0)
{
        EV_ENTER(t, gen);
        log_in(t, gen, category, message, frame, pc0);
}

void gt_log_context(const char *category, const char *message, uintptr_t pc, uintptr_t fp)
{
        log_new(category, message, fp, pc);
}

/* The end of a log whose stack is not the thread's last (gtrace_log has
 * checked; see log_in for frame): the id goes at p. */
static __attribute__((noinline)) void log_stack_end(struct gt_thread *t, uint64_t gen,
                                                    struct gt_slot *s, uint8_t *p,
                                                    uintptr_t frame)
{
        ev_commit(s, put_u(p, stack_walk(t, gen, frame)));
        wr_exit(t);
}

/* This function's frame record: the stack of a log starts there.  Taken
 * where it is used, so that it stays in %rbp instead of a register of its
 * own. */
#define LOG_FRAME() ((uintptr_t)__builtin_frame_address(0))

GTRACE_API GT_FAST_TEXT void gtrace_log(const char *category, const char *message)
{
        FAST_ENTER(t, gen, log_new(category, message, LOG_FRAME(), 0));
        /* The common case: a short text, room for it in the current chunk,
         * a known category, the stack the thread logged from last.  The
         * checks that need category and message come last but one, so
         * that neither is kept past them. */
        struct text32 v;
        size_t len;
        uint32_t id;
        if (unlikely((len = text32_load(&v, message)) == SHORT_TEXT_NONE ||
                     !slot_fast(t, gen) ||
                     !str_cached(t, category, gen, &id, NULL)))
                FAST_SLOW(t, gen, log_in(t, gen, category, message, LOG_FRAME(), 0));
        struct gt_slot *s = t->cur;
        uint8_t *p = put_log_head_at(s, slot_pos(s), counter_now(t), id, len);
        text32_store(p, &v);
        p += len;
        uint64_t stack = 0;
        if (gt.stack_mask & (1u << GTRACE_KIND_LOG)) {
                if (unlikely(!stack_is_last(t, gen, LOG_FRAME())))
                        return log_stack_end(t, gen, s, p, LOG_FRAME());
                stack = t->last_stack->id;
        }
        ev_commit(s, put_u(p, stack));
        wr_exit(t);
}

GTRACE_API void gtrace_thread_name(const char *name)
{
        EV_ENTER(t, gen);
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
        uint64_t now = gt_clock_now();
        char buf[64];
        size_t n = strnlen(name ? name : "", sizeof(buf) - 1);
        memcpy(buf, name ? name : "", n);
        buf[n] = '\0';
        struct gt_str *e = gt_str_intern(buf, n);
        gt_str_mark(e, gen);
        atomic_store_explicit(&t->name, e, memory_order_relaxed);
        if (likely(s)) {
                uint8_t *p = slot_pos(s);
                *p++ = PROTO_EV_THREAD_NAME;
                p = put_u(p, ts_delta(s, now));
                p = put_u(p, e->id);
                ev_commit(s, p);
        }
        wr_exit(t);
}

GTRACE_API void gtrace_syscall_begin(const char *name)
{
        EV_ENTER(t, gen);
        if (atomic_load_explicit(&t->syscall, memory_order_relaxed)) {
                wr_exit(t); /* already in one: nesting is not modelled */
                return;
        }
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
        uint64_t now = gt_clock_now();
        struct gt_str *e = str_get(t, name, gen);
        if (likely(s)) {
                uint64_t stk = stack_id(t, GTRACE_KIND_SYSCALL, gen);
                uint8_t *p = slot_pos(s);
                *p++ = PROTO_EV_SYSCALL_BEGIN;
                p = put_u(p, ts_delta(s, now));
                p = put_u(p, e->id);
                p = put_u(p, stk);
                ev_commit(s, p);
        }
        atomic_store_explicit(&t->syscall_start, now, memory_order_relaxed);
        atomic_store_explicit(&t->syscall, e, memory_order_relaxed);
        wr_exit(t);
}

GTRACE_API void gtrace_syscall_end(void)
{
        EV_ENTER(t, gen);
        if (atomic_load_explicit(&t->syscall, memory_order_relaxed)) {
                struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
                uint64_t now = gt_clock_now();
                if (likely(s)) {
                        uint8_t *p = slot_pos(s);
                        *p++ = PROTO_EV_SYSCALL_END;
                        p = put_u(p, ts_delta(s, now));
                        ev_commit(s, p);
                }
                atomic_store_explicit(&t->syscall, NULL, memory_order_relaxed);
        }
        wr_exit(t);
}

GTRACE_API uint64_t gtrace_task_begin(const char *name, uint64_t parent)
{
        EV_ENTER(t, gen, 0);
        uint64_t id = atomic_fetch_add_explicit(&gt.next_task, 1, memory_order_relaxed);
        struct gt_str *e = str_get(t, name, gen);
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
        uint64_t now = gt_clock_now();
        /* Track it for TASK_STATUS in later generations. */
        struct gt_task *k = NULL;
        for (uint32_t i = 0, h = id_hash(id, gt.task_mask); i <= gt.task_mask && i < GT_MAX_PROBE;
             i++) {
                struct gt_task *c = &gt.tasks[(h + i) & gt.task_mask];
                uint64_t cur = atomic_load_explicit(&c->id, memory_order_relaxed);
                if ((cur == 0 || cur == GT_TOMB) &&
                    atomic_compare_exchange_strong_explicit(&c->id, &cur, GT_TOMB - 1,
                                                            memory_order_acquire,
                                                            memory_order_relaxed)) {
                        atomic_fetch_add_explicit(&gt.tasks_live, 1, memory_order_relaxed);
                        k = c;
                        break;
                }
        }
        if (k) {
                atomic_store_explicit(&k->parent, parent, memory_order_relaxed);
                atomic_store_explicit(&k->name, e, memory_order_relaxed);
                atomic_store_explicit(&k->start, now, memory_order_relaxed);
                /* A dropped begin counts as "before this generation", so the
                 * next generation's TASK_STATUS still introduces the task. */
                atomic_store_explicit(&k->begin_gen, s ? gen : gen | GT_TASK_BEGIN_LOST,
                                      memory_order_relaxed);
                atomic_store_explicit(&k->status_gen, s ? gen : gen - 1, memory_order_relaxed);
                atomic_store_explicit(&k->id, id, memory_order_release);
        } else {
                atomic_fetch_add_explicit(&gt.tasks_untracked, 1, memory_order_relaxed);
        }
        if (likely(s)) {
                uint64_t stk = stack_id(t, GTRACE_KIND_TASK, gen);
                uint8_t *p = slot_pos(s);
                *p++ = PROTO_EV_TASK_BEGIN;
                p = put_u(p, ts_delta(s, now));
                p = put_u(p, id);
                p = put_u(p, parent);
                p = put_u(p, e->id);
                p = put_u(p, stk);
                ev_commit(s, p);
        }
        wr_exit(t);
        return id;
}

GTRACE_API void gtrace_task_end(uint64_t task)
{
        EV_ENTER(t, gen);
        struct gt_task *k = task_find(task);
        if (k) {
                uint64_t bg = atomic_load_explicit(&k->begin_gen, memory_order_relaxed);
                /* A begin dropped in this very generation has neither an event
                 * nor a status here, so its end must go too (counted). */
                bool orphan = bg == (gen | GT_TASK_BEGIN_LOST);
                struct gt_slot *s = orphan ? NULL : slot_room(t, gen, 2 * GT_MAX_EVENT_BYTES);
                uint64_t now = gt_clock_now();
                if (orphan && t->slot[gen & 1].gen == gen) {
                        t->slot[gen & 1].lost_total++;
                } else if (likely(s)) {
                        uint8_t *p = slot_pos(s);
                        uint64_t sg = atomic_load_explicit(&k->status_gen, memory_order_relaxed);
                        if (sg < gen && atomic_compare_exchange_strong_explicit(
                                                &k->status_gen, &sg, gen, memory_order_acq_rel,
                                                memory_order_relaxed)) {
                                /* Begun in an older generation and not yet
                                 * restated in this one: say it was live. */
                                struct gt_str *name = atomic_load_explicit(&k->name, memory_order_relaxed);
                                gt_str_mark(name, gen);
                                *p++ = PROTO_EV_TASK_STATUS;
                                p = put_u(p, ts_delta(s, now));
                                p = put_u(p, task);
                                p = put_u(p, atomic_load_explicit(&k->parent, memory_order_relaxed));
                                p = put_u(p, name->id);
                                p = put_u(p, atomic_load_explicit(&k->start, memory_order_relaxed));
                                s->nevents++;
                        }
                        *p++ = PROTO_EV_TASK_END;
                        p = put_u(p, ts_delta(s, now));
                        p = put_u(p, task);
                        ev_commit(s, p);
                }
                atomic_store_explicit(&k->id, GT_TOMB, memory_order_release);
                atomic_fetch_sub_explicit(&gt.tasks_live, 1, memory_order_relaxed);
        }
        wr_exit(t);
}

/* ---- fibers -------------------------------------------------------------------- */

/*
 * Emits a transition of f (whose scan bit, or running ownership, the caller
 * holds; `prior` is the state before) into s.  Writes f's status first if
 * this is f's first event of the generation.  A drop after f already has
 * events in this generation makes f lossy for the rest of it (see "Drops").
 */
static void fiber_emit(struct gt_slot *s, struct gt_fiber *f, uint32_t prior, uint64_t gen,
                       uint64_t now, uint8_t type, uint64_t reason, uint64_t stack)
{
        bool announced = atomic_load_explicit(&f->status_gen, memory_order_relaxed) >= gen;
        if (!s || (announced && f->lossy_gen == gen)) {
                if (announced)
                        f->lossy_gen = gen;
                f->plain_gen = 0;
                if (s) {
                        s->lost++;
                        s->lost_total++;
                }
                return;
        }
        if (f->seq_gen != gen) {
                f->seq_gen = gen;
                f->seq = 0;
        }
        uint8_t *p = slot_pos(s);
        uint64_t id = atomic_load_explicit(&f->id, memory_order_relaxed);
        if (!announced) {
                struct gt_str *fn = atomic_load_explicit(&f->name, memory_order_relaxed);
                struct gt_str *why = prior == PROTO_FIBER_WAITING
                                             ? atomic_load_explicit(&f->reason, memory_order_relaxed)
                                             : NULL;
                gt_str_mark(fn, gen);
                if (why)
                        gt_str_mark(why, gen);
                *p++ = PROTO_EV_FIBER_STATUS;
                p = put_u(p, ts_delta(s, now));
                p = put_u(p, id);
                p = put_u(p, fiber_status_state(NULL, prior));
                p = put_u(p, fn->id);
                p = put_u(p, why ? why->id : 0);
                s->nevents++;
                atomic_store_explicit(&f->status_gen, gen, memory_order_relaxed);
                f->seq = 0;
        }
        f->seq++;
        *p++ = type;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, id);
        p = put_u(p, f->seq);
        if (type == PROTO_EV_FIBER_BLOCK)
                p = put_u(p, reason);
        if (type == PROTO_EV_FIBER_BLOCK || type == PROTO_EV_FIBER_READY)
                p = put_u(p, stack);
        ev_commit(s, p);
        f->plain_gen = gen; /* announced, seq counting in gen, not lossy */
}

GTRACE_API uint64_t gtrace_fiber_create(const char *name)
{
        EV_ENTER(t, gen, 0);
        uint64_t id = atomic_fetch_add_explicit(&gt.next_fiber, 1, memory_order_relaxed);
        struct gt_str *e = str_get(t, name, gen);
        struct gt_slot *s = slot_room(t, gen, GT_MAX_EVENT_BYTES);
        uint64_t now = gt_clock_now();
        struct gt_fiber *f = fiber_insert(id);
        if (!f) {
                atomic_fetch_add_explicit(&gt.fibers_untracked, 1, memory_order_relaxed);
                wr_exit(t);
                return id; /* untracked: its transitions are ignored */
        }
        atomic_store_explicit(&f->name, e, memory_order_relaxed);
        atomic_store_explicit(&f->reason, NULL, memory_order_relaxed);
        atomic_store_explicit(&f->state, PROTO_FIBER_RUNNABLE, memory_order_relaxed);
        f->seq = 0;
        f->seq_gen = gen;
        f->lossy_gen = 0;
        f->plain_gen = 0;
        if (likely(s)) {
                uint64_t stk = stack_id(t, GTRACE_KIND_FIBER, gen);
                uint8_t *p = slot_pos(s);
                *p++ = PROTO_EV_FIBER_CREATE;
                p = put_u(p, ts_delta(s, now));
                p = put_u(p, id);
                p = put_u(p, e->id);
                p = put_u(p, stk);
                ev_commit(s, p);
                atomic_store_explicit(&f->status_gen, gen, memory_order_relaxed);
                f->plain_gen = gen;
        } else {
                /* Not announced: whoever transitions it first in this
                 * generation writes its status, else the next generation's
                 * status introduces it. */
                atomic_store_explicit(&f->status_gen, gen - 1, memory_order_relaxed);
        }
        atomic_store_explicit(&f->id, id, memory_order_release);
        wr_exit(t);
        return id;
}

/*
 * The fast paths of run and yield, as for regions: the common transition --
 * the fiber in its home slot of the table, Runnable with its scan bit free
 * (run) or run by this thread (yield), already announced in this generation
 * with no drop, room in the current chunk -- is checked for up front, and
 * anything else goes to the general code by a tail call.  fiber_plain()
 * reads fields that belong to whoever owns f's transitions: only its owner
 * may call it.
 */
static inline bool fiber_plain(const struct gt_fiber *f, uint64_t gen)
{
        /* status_gen >= gen && seq_gen == gen && lossy_gen != gen, as
         * fiber_emit and gtrace_fiber_create leave it. */
        return f->plain_gen == gen;
}

/* A RUN or YIELD event of a plain fiber (fiber_emit's common case). */
static inline void put_fiber_at(struct gt_slot *s, uint8_t *p, struct gt_fiber *f, uint64_t now,
                                uint8_t type)
{
        *p++ = type;
        p = put_u(p, ts_delta(s, now));
        p = put_u(p, atomic_load_explicit(&f->id, memory_order_relaxed));
        p = put_u(p, ++f->seq);
        ev_commit(s, p);
}

/* The fiber in id's home slot of the table, else NULL (fiber_find probes on). */
static inline struct gt_fiber *fiber_home(uint64_t id)
{
        struct gt_fiber *tab = gt.fibers;
        if (unlikely(!tab || !fiber_id_ok(id)))
                return NULL;
        struct gt_fiber *f = &tab[id_hash(id, gt.fiber_mask)];
        return atomic_load_explicit(&f->id, memory_order_acquire) == id ? f : NULL;
}

/* fiber_take in one try, for the fast path. */
static inline bool fiber_try_take(struct gt_fiber *f)
{
        uint32_t want = PROTO_FIBER_RUNNABLE;
        return atomic_compare_exchange_strong_explicit(&f->state, &want, PROTO_FIBER_RUNNING,
                                                       memory_order_acquire,
                                                       memory_order_relaxed);
}

/* Emits the run of f, just taken by t, and leaves the section. */
static __attribute__((noinline)) void fiber_run_taken(struct gt_thread *t, uint64_t gen,
                                                      struct gt_fiber *f, struct gt_slot *s)
{
        uint64_t now = gt_clock_now();
        /* Invariant 6: into Running, the event follows the transition (both
         * inside this section).  Release: gt_threads_status reads status_gen
         * after this (see there). */
        atomic_store_explicit(&t->fiber, f, memory_order_release);
        fiber_emit(s, f, PROTO_FIBER_RUNNABLE, gen, now, PROTO_EV_FIBER_RUN, 0, 0);
        wr_exit(t);
}

static __attribute__((noinline)) void fiber_run_in(struct gt_thread *t, uint64_t gen,
                                                   uint64_t fiber)
{
        struct gt_fiber *f = fiber_find(fiber);
        if (f && !atomic_load_explicit(&t->fiber, memory_order_relaxed) && fiber_take(f))
                return fiber_run_taken(t, gen, f, slot_room(t, gen, 2 * GT_MAX_EVENT_BYTES));
        wr_exit(t);
}

static __attribute__((noinline)) void fiber_run_new(uint64_t fiber)
{
        EV_ENTER(t, gen);
        fiber_run_in(t, gen, fiber);
}

GTRACE_API GT_FAST_TEXT void gtrace_fiber_run(uint64_t fiber)
{
        FAST_ENTER(t, gen, fiber_run_new(fiber));
        struct gt_fiber *f = fiber_home(fiber);
        if (unlikely(!f))
                FAST_SLOW(t, gen, fiber_run_in(t, gen, fiber));
        uint8_t *p;
        if (unlikely(!slot_fast_at(t, gen, &p) ||
                     atomic_load_explicit(&t->fiber, memory_order_relaxed) || !fiber_try_take(f)))
                FAST_SLOW(t, gen, fiber_run_in(t, gen, fiber));
        struct gt_slot *s = t->cur;
        if (unlikely(!fiber_plain(f, gen)))
                return fiber_run_taken(t, gen, f, s);
        uint64_t now = counter_now(t);
        atomic_store_explicit(&t->fiber, f, memory_order_release); /* as fiber_run_taken */
        put_fiber_at(s, p, f, now, PROTO_EV_FIBER_RUN);
        wr_exit(t);
}

/* block / yield / exit: transitions out of Running by the running thread,
 * inside t's section.  Always inlined: stack capture counts a fixed number
 * of our own frames. */
static inline __attribute__((always_inline)) void fiber_leave_in(struct gt_thread *t,
                                                                uint64_t gen, uint8_t type,
                                                                uint32_t new_state,
                                                                const char *reason)
{
        struct gt_fiber *f = atomic_load_explicit(&t->fiber, memory_order_relaxed);
        if (f) {
                struct gt_slot *s = slot_room(t, gen, 2 * GT_MAX_EVENT_BYTES);
                uint64_t now = gt_clock_now();
                struct gt_str *why = reason ? str_get(t, reason, gen) : NULL;
                uint64_t stk = s && type == PROTO_EV_FIBER_BLOCK ? stack_id(t, GTRACE_KIND_FIBER, gen) : 0;
                /* t runs f: it owns f's transitions (no scan bit). */
                fiber_emit(s, f, PROTO_FIBER_RUNNING, gen, now, type, why ? why->id : 0, stk);
                atomic_store_explicit(&t->fiber, NULL, memory_order_relaxed);
                if (type == PROTO_EV_FIBER_EXIT) {
                        atomic_store_explicit(&f->id, GT_TOMB, memory_order_release);
                        atomic_fetch_sub_explicit(&gt.fibers_live, 1, memory_order_relaxed);
                        fiber_unlock(f, PROTO_FIBER_RUNNABLE);
                } else {
                        atomic_store_explicit(&f->reason, why, memory_order_relaxed);
                        fiber_unlock(f, new_state);
                }
        }
        wr_exit(t);
}

static inline __attribute__((always_inline)) void fiber_leave(uint8_t type, uint32_t new_state,
                                                             const char *reason)
{
        EV_ENTER(t, gen);
        fiber_leave_in(t, gen, type, new_state, reason);
}

GTRACE_API void gtrace_fiber_block(const char *reason)
{
        fiber_leave(PROTO_EV_FIBER_BLOCK, PROTO_FIBER_WAITING, reason ? reason : "");
}

/* A yield records no stack: its general path may be a call. */
static __attribute__((noinline)) void fiber_yield_in(struct gt_thread *t, uint64_t gen)
{
        fiber_leave_in(t, gen, PROTO_EV_FIBER_YIELD, PROTO_FIBER_RUNNABLE, NULL);
}

static __attribute__((noinline)) void fiber_yield_new(void)
{
        fiber_leave(PROTO_EV_FIBER_YIELD, PROTO_FIBER_RUNNABLE, NULL);
}

GTRACE_API GT_FAST_TEXT void gtrace_fiber_yield(void)
{
        FAST_ENTER(t, gen, fiber_yield_new());
        struct gt_fiber *f = atomic_load_explicit(&t->fiber, memory_order_relaxed);
        /* t runs f, so it may read f's plain_gen before anything else. */
        uint8_t *p;
        if (unlikely(!f || !slot_fast_at(t, gen, &p) || !fiber_plain(f, gen)))
                FAST_SLOW(t, gen, fiber_yield_in(t, gen));
        put_fiber_at(t->cur, p, f, counter_now(t), PROTO_EV_FIBER_YIELD);
        atomic_store_explicit(&t->fiber, NULL, memory_order_relaxed);
        atomic_store_explicit(&f->reason, NULL, memory_order_relaxed);
        fiber_unlock(f, PROTO_FIBER_RUNNABLE);
        wr_exit(t);
}

GTRACE_API void gtrace_fiber_exit(void)
{
        fiber_leave(PROTO_EV_FIBER_EXIT, 0, NULL);
}

GTRACE_API void gtrace_fiber_ready(uint64_t fiber)
{
        EV_ENTER(t, gen);
        struct gt_fiber *f = fiber_find(fiber);
        if (f) {
                struct gt_slot *s = slot_room(t, gen, 2 * GT_MAX_EVENT_BYTES);
                uint64_t now = gt_clock_now();
                uint64_t stk = s ? stack_id(t, GTRACE_KIND_FIBER, gen) : 0;
                uint32_t prior = fiber_lock(f);
                if (prior == PROTO_FIBER_WAITING) {
                        fiber_emit(s, f, prior, gen, now, PROTO_EV_FIBER_READY, 0, stk);
                        atomic_store_explicit(&f->reason, NULL, memory_order_relaxed);
                        fiber_unlock(f, PROTO_FIBER_RUNNABLE);
                } else if (prior != PROTO_FIBER_RUNNING) {
                        fiber_unlock(f, prior); /* not waiting: misuse, ignored */
                }
        }
        wr_exit(t);
}

/* ---- fork ---------------------------------------------------------------------- */

static void *inherited_daemon;
/* What a forked child inherited from the parent's tracer, kept reachable. */
struct gt_inherited {
        struct gt_ring ring;
        void *pool, *fibers, *tasks, *daemon;
        _Atomic uint32_t *free_next;
};
static struct gt_inherited gt_inherited_state __attribute__((used));

void gt_fork_child_reset(void)
{
        /* Runs in the child right after fork(), on the only thread.  Nothing
         * of the parent's tracer is used again: the memory is abandoned (it
         * is the parent's data), locks are re-initialised, and tracing
         * restarts lazily with the parent's options. */
        atomic_store_explicit(&gt.gen, 0, memory_order_relaxed);
        /* The parent's advance thread may have been mid-cycle. */
        atomic_store_explicit(&gt.adv_busy, 0, memory_order_relaxed);
        atomic_store_explicit(&gt.adv_frozen, 0, memory_order_relaxed);
        atomic_store_explicit(&gt.crash_cut_gen, 0, memory_order_relaxed);
        pthread_mutex_init(&gt.threads_lock, NULL);
        pthread_mutex_init(&gt.req_lock, NULL);
        pthread_mutex_init(&gt.ring_lock, NULL);
        pthread_cond_init(&gt.req_cond, NULL);
        gt.threads = NULL;
        gt.exited = NULL;
        gt_self = NULL;
        if (gt.wake_fd >= 0)
                close(gt.wake_fd);
        gt.wake_fd = -1;
        if (gt.daemon) {
                short ev;
                int to;
                int fd = gt_daemon_pollfd(gt.daemon, &ev, &to);
                /* The parent's connection, not ours; in our table only if
                 * the advance thread shared the application's. */
                if (fd >= 0 && !atomic_load_explicit(&gt.adv_files_private,
                                                     memory_order_relaxed))
                        close(fd);
                inherited_daemon = gt.daemon;
                gt.daemon = NULL;
        }
        /* The parent's memory stays reachable (leak checkers in the child
         * should not report what the child merely inherited). */
        gt_inherited_state.ring = gt.ring;
        gt_inherited_state.pool = gt.pool;
        gt_inherited_state.fibers = gt.fibers;
        gt_inherited_state.tasks = gt.tasks;
        gt_inherited_state.free_next = gt.free_next;
        gt_inherited_state.daemon = inherited_daemon;
        memset(&gt.ring, 0, sizeof(gt.ring));
        gt.pool = NULL;
        gt.free_next = NULL;
        gt.fibers = NULL;
        gt.tasks = NULL;
        gt.dump_reqs = NULL;
}
