/* SPDX-License-Identifier: MIT */
/*
 * Concurrency stress: several threads emit every kind of event while the
 * advancer cuts generations every few milliseconds.  Every generation must
 * validate, and with bounds large enough nothing is dropped, so the events
 * read back must match exactly what was emitted, type by type.  Runs under
 * TSan in CI (label "concurrency").
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gtrace/gtrace.h"
#include "../../runtime/internal.h" /* gt_test_status_claimed */
#include "rt-check.h"
#include "rt-dump.h"

#define NTHREADS 4
#if defined(GTRACE_TSAN)
#define ITERATIONS 4000 /* TSan runs 5-15x slower: keep the test to seconds */
#else
#define ITERATIONS 20000
#endif

struct worker {
        unsigned seed;
        unsigned iterations;
        bool flusher;
        uint64_t regions, counters, logs, tasks, fibers, syscalls;
        uint64_t *shared_fibers; /* fibers readied by others: migration */
};

static uint64_t parked[NTHREADS * 4];
static pthread_mutex_t parked_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        char name[32];
        snprintf(name, sizeof(name), "stress-%u", w->seed);
        gtrace_thread_name(name);
        for (unsigned i = 0; i < w->iterations; i++) {
                unsigned r = rand_r(&w->seed);
                /* On a loaded 2-core machine the period alone may not cut
                 * often; explicit flushes guarantee many boundaries. */
                if (w->flusher && i % 500 == 0)
                        gtrace_flush();
                gtrace_region_begin(i % 2 ? "outer-a" : "outer-b");
                gtrace_region_begin("inner");
                w->regions += 2;
                gtrace_counter("queue", (int64_t)(r % 100) - 50);
                w->counters++;
                if (r % 16 == 0) {
                        char msg[64];
                        snprintf(msg, sizeof(msg), "iteration %u failed with %u", i, r);
                        gtrace_log("error", msg);
                        w->logs++;
                }
                uint64_t task = gtrace_task_begin("work", 0);
                uint64_t child = gtrace_task_begin("sub", task);
                gtrace_task_end(child);
                w->tasks += 2;
                /* Park the task sometimes so it crosses generations. */
                gtrace_syscall_begin("read");
                gtrace_syscall_end();
                w->syscalls++;

                /* A fiber: run here, block, then hand it to whoever comes
                 * next (possibly another thread) to ready and run it. */
                uint64_t f = gtrace_fiber_create("req");
                gtrace_fiber_run(f);
                gtrace_region_begin("handler");
                gtrace_region_end();
                w->regions++;
                gtrace_fiber_block("io");
                w->fibers++;
                pthread_mutex_lock(&parked_lock);
                size_t slot = r % (sizeof(parked) / sizeof(parked[0]));
                uint64_t other = parked[slot];
                parked[slot] = f;
                pthread_mutex_unlock(&parked_lock);
                if (other) {
                        gtrace_fiber_ready(other);
                        gtrace_fiber_run(other);
                        if (r % 3 == 0) {
                                gtrace_fiber_yield();
                                gtrace_fiber_run(other);
                        }
                        gtrace_fiber_exit();
                }
                gtrace_task_end(task);
                gtrace_region_end();
                gtrace_region_end();
        }
        return NULL;
}

/* Starts tracing, cutting every period_ms, with bounds no test here
 * reaches: every event and every generation is kept. */
static void start_lossless(uint32_t period_ms)
{
        const char *dir = rt_tmpdir();
        ck_assert_ptr_nonnull(dir);
        struct gtrace_options o = {
                .period_ms = period_ms,
                .max_buffer_bytes = 256u << 20,
                .ring_generations = 1024,
                .ring_bytes = 1ull << 30,
                .dump_dir = dir,
                .flags = GTRACE_F_NO_DAEMON,
        };
        ck_assert_int_eq(gtrace_start(&o), 0);
}

/* Runs fn on NTHREADS threads, w[i] for the i-th, flusher the first, and
 * waits for them all. */
static void run_workers(struct worker *w, unsigned seed, unsigned iterations,
                        void *(*fn)(void *))
{
        pthread_t th[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
                w[i] = (struct worker){.seed = seed + (unsigned)i, .iterations = iterations,
                                       .flusher = i == 0};
                ck_assert_int_eq(pthread_create(&th[i], NULL, fn, &w[i]), 0);
        }
        for (int i = 0; i < NTHREADS; i++)
                pthread_join(th[i], NULL);
}

/* Dumps, stops, and reads the dump back into *s: nothing may have been
 * lost, no name or stack dropped, and every generation must read (one
 * that uses a name or stack it does not define fails). */
static void dump_lossless(const char *reason, struct rt_summary *s)
{
        char path[4096];
        ck_assert_int_eq(gtrace_dump(reason, path, sizeof(path)), 0);
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        uint64_t dropped = gt_strtab_dropped();
        gtrace_stop();
        ck_assert_uint_eq(st.events_lost, 0);
        ck_assert_uint_eq(st.generations_lost, 0);
        ck_assert_uint_eq(dropped, 0);
        ck_assert_int_eq(rt_read_dump(path, s), 0);
        ck_assert_uint_gt(s->generations, 10);
        ck_assert_uint_eq(s->lost, 0);
        ck_assert_uint_eq(s->gens_lost, 0);
}

/* _i: 0 with membarrier (the default), 1 with the fence-based fallback. */
START_TEST(test_stress_exact_counts)
{
        if (_i == 1)
                setenv("GTRACE_MEMBARRIER", "0", 1);
        else
                unsetenv("GTRACE_MEMBARRIER");
        memset(parked, 0, sizeof(parked));
        unsigned seed = (unsigned)(getenv("GTRACE_TEST_SEED") ? atoi(getenv("GTRACE_TEST_SEED"))
                                                               : 20261126);
        printf("stress seed %u\n", seed);
        start_lossless(3);
        struct worker w[NTHREADS];
        run_workers(w, seed, ITERATIONS, worker_main);
        /* Finish the fibers still parked so every state is accounted for. */
        uint64_t readied = 0;
        for (size_t i = 0; i < sizeof(parked) / sizeof(parked[0]); i++) {
                if (!parked[i])
                        continue;
                gtrace_fiber_ready(parked[i]);
                gtrace_fiber_run(parked[i]);
                gtrace_fiber_exit();
                readied++;
        }

        struct rt_summary s;
        dump_lossless("stress", &s);
        uint64_t regions = 0, counters = 0, logs = 0, tasks = 0, fibers = 0, syscalls = 0;
        for (int i = 0; i < NTHREADS; i++) {
                regions += w[i].regions;
                counters += w[i].counters;
                logs += w[i].logs;
                tasks += w[i].tasks;
                fibers += w[i].fibers;
                syscalls += w[i].syscalls;
        }
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), regions);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_END), regions);
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), counters);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), logs);
        ck_assert_uint_eq(RT_COUNT(&s, TASK_BEGIN), tasks);
        ck_assert_uint_eq(RT_COUNT(&s, TASK_END), tasks);
        ck_assert_uint_eq(RT_COUNT(&s, SYSCALL_BEGIN), syscalls);
        ck_assert_uint_eq(RT_COUNT(&s, SYSCALL_END), syscalls);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_CREATE), fibers);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_BLOCK), fibers);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_READY), fibers);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_EXIT), fibers);
        ck_assert_uint_eq(RT_COUNT(&s, THREAD_NAME), NTHREADS);
        /* Every generation after the first restates every live thread. */
        ck_assert_uint_ge(RT_COUNT(&s, THREAD_STATUS), s.generations);
        /* Fibers really migrated between threads. */
        ck_assert_uint_ge(s.fiber_threads_max, 2);
        (void)readied;
}
END_TEST

/* ---- names made while generations are cut ---------------------------------- */

#define NAMES_PER_THREAD 3000
#define SHARED_NAMES 256

static void *namer_main(void *arg)
{
        struct worker *w = arg;
        char name[48];
        unsigned me = w->seed;
        for (unsigned i = 0; i < w->iterations; i++) {
                unsigned r = rand_r(&w->seed);
                if (w->flusher && i % 100 == 0)
                        gtrace_flush();
                /* A name no one has used, then one that another thread may
                 * be making at this moment, or has just made. */
                snprintf(name, sizeof(name), "own-%u-%u", me, i);
                gtrace_counter(name, (int64_t)i);
                snprintf(name, sizeof(name), "shared-%u", r % SHARED_NAMES);
                gtrace_region_begin(name);
                gtrace_region_end();
                w->counters++;
                w->regions++;
        }
        return NULL;
}

/* Threads make thousands of new names while generations are cut every few
 * milliseconds, and use the names other threads are making.  Every
 * generation must define every name it uses: a generation is cut from the
 * entries the tables list, and a name used in it must be listed by then,
 * whichever thread made it and however far that thread has got. */
START_TEST(test_names_made_across_generations)
{
        start_lossless(2);
        struct worker w[NTHREADS];
        run_workers(w, 7000, NAMES_PER_THREAD, namer_main);
        struct rt_summary s;
        dump_lossless("names", &s);
        uint64_t counters = 0, regions = 0;
        for (int i = 0; i < NTHREADS; i++) {
                counters += w[i].counters;
                regions += w[i].regions;
        }
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), counters);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), regions);
        ck_assert_uint_eq(s.counters_table_full, 0);
}
END_TEST

/* ---- an entry found in its slot before its maker returns --------------------- */

#define HELD_NAME "held-in-section"

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int stage; /* 1 B held in its section, 2 A published the stack, 3 B done, 4 A released */
        bool b_made_stack;
        bool a_ready, a_go; /* A registered (its first event), A may log */
        bool a_held;        /* A held until released, not until a timeout */
        uint64_t b_tid;
        int waits_on_b;     /* 1: the advancer, past A, waits for B's section */
} pub = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, false, false, false,
         0, 0};
static _Thread_local char pub_role; /* 'A' or 'B' */

/* With lock held, waits until *stage reaches want, 5 s at most: whether
 * it did.  The hand-offs between a test's threads and a hook. */
static bool stage_wait(pthread_cond_t *cond, pthread_mutex_t *lock, const int *stage, int want)
{
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 5;
        int r = 0;
        while (*stage < want && r == 0)
                r = pthread_cond_timedwait(cond, lock, &dl);
        return *stage >= want;
}

static bool pub_wait(int stage)
{
        return stage_wait(&pub.cond, &pub.lock, &pub.stage, stage);
}

static void pub_set(int stage)
{
        pthread_mutex_lock(&pub.lock);
        pub.stage = stage;
        pthread_cond_broadcast(&pub.cond);
        pthread_mutex_unlock(&pub.lock);
}

static void pub_hook(int table, const void *entry)
{
        pthread_mutex_lock(&pub.lock);
        if (pub_role == 'B' && table == 0 &&
            strcmp(((const struct gt_str *)entry)->data, HELD_NAME) == 0) {
                /* B, inside its log's section (the old generation), holds
                 * until A has made and published the stack B is about to
                 * look up. */
                pub.stage = 1;
                pthread_cond_broadcast(&pub.cond);
                (void)pub_wait(2);
        } else if (pub_role == 'B' && table == 1) {
                pub.b_made_stack = true; /* B did not find A's: no test */
        } else if (pub_role == 'A' && table == 1) {
                /* A, in the new generation, holds right after publishing
                 * its stack, until the old generation has been cut. */
                pub.stage = 2;
                pthread_cond_broadcast(&pub.cond);
                pub.a_held = pub_wait(4);
        }
        pthread_mutex_unlock(&pub.lock);
}

/* A and B log from the same call chain, so their stacks are one entry. */
static __attribute__((noinline)) void pub_log(const char *category)
{
        gtrace_log(category, "same call site");
        __asm__ volatile("" ::: "memory"); /* not a tail call */
}

/* The advancer's wait for sections found tid inside one. */
static void pub_section_wait(uint64_t tid)
{
        pthread_mutex_lock(&pub.lock);
        if (tid == pub.b_tid) {
                pub.waits_on_b = 1;
                pthread_cond_broadcast(&pub.cond);
        }
        pthread_mutex_unlock(&pub.lock);
}

static void *pub_thread(void *arg)
{
        pub_role = *(const char *)arg;
        if (pub_role == 'B')
                pub.b_tid = (uint64_t)gettid(); /* read by the test after stage 1 */
        if (pub_role == 'A') {
                /* Registered now: a thread's first event takes the threads'
                 * lock, which the advancer holds while it waits for B. */
                gtrace_counter("maker-ready", 1);
                pthread_mutex_lock(&pub.lock);
                pub.a_ready = true;
                pthread_cond_broadcast(&pub.cond);
                while (!pub.a_go)
                        pthread_cond_wait(&pub.cond, &pub.lock);
                pthread_mutex_unlock(&pub.lock);
        }
        pub_log(pub_role == 'B' ? HELD_NAME : "maker");
        if (pub_role == 'B')
                pub_set(3);
        return NULL;
}

static void *pub_flusher(void *arg)
{
        *(int *)arg = gtrace_flush();
        return NULL;
}

/* Thread B's log, in generation g, finds its stack published by thread A,
 * whose log is in generation g + 1 and which has not yet returned from
 * making it; then g is cut.  g uses the stack, so it must define it: an
 * entry must be where the advancer looks for it (the table's list) before
 * anyone can find it in its slot. */
START_TEST(test_entry_found_before_its_maker_returns)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = {.period_ms = 3600000, .dump_dir = dir,
                                   .flags = GTRACE_F_NO_DAEMON};
        ck_assert_int_eq(gtrace_start(&o), 0);
        gt_test_published = pub_hook;
        gt_test_section_wait = pub_section_wait;
        pthread_t a, b, fl;
        int flushed = -1;
        /* B first: the advancer checks the threads newest first, so it
         * finds A outside any section, then waits for B. */
        ck_assert_int_eq(pthread_create(&b, NULL, pub_thread, "B"), 0);
        pthread_mutex_lock(&pub.lock);
        ck_assert(pub_wait(1));
        pthread_mutex_unlock(&pub.lock);
        ck_assert_int_eq(pthread_create(&a, NULL, pub_thread, "A"), 0);
        pthread_mutex_lock(&pub.lock);
        while (!pub.a_ready)
                pthread_cond_wait(&pub.cond, &pub.lock);
        pthread_mutex_unlock(&pub.lock);
        /* Cut g: the advancer moves to g + 1, passes A, waits for B. */
        uint64_t g = atomic_load(&gt.gen);
        ck_assert_int_eq(pthread_create(&fl, NULL, pub_flusher, &flushed), 0);
        pthread_mutex_lock(&pub.lock);
        ck_assert_msg(stage_wait(&pub.cond, &pub.lock, &pub.waits_on_b, 1),
                      "the advancer never waited for B");
        ck_assert_uint_eq(atomic_load(&gt.gen), g + 1);
        pub.a_go = true;
        pthread_cond_broadcast(&pub.cond);
        pthread_mutex_unlock(&pub.lock);
        pthread_join(fl, NULL); /* B went on once A published; g is cut */
        ck_assert_int_eq(flushed, 0);
        pub_set(4);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        gt_test_published = NULL;
        gt_test_section_wait = NULL;
        ck_assert_int_eq(pub.stage, 4);
        ck_assert(!pub.b_made_stack);
        /* Else the advancer waited for A's section too: not the case tested. */
        ck_assert(pub.a_held);
        char path[4096];
        ck_assert_int_eq(gtrace_dump("found-before-return", path, sizeof(path)), 0);
        gtrace_stop();
        struct rt_summary s;
        /* Fails on a generation that uses a stack it does not define. */
        ck_assert_int_eq(rt_read_dump(path, &s), 0);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), 2);
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), 1);
        ck_assert_uint_eq(s.logs_without_stack, 0);
}
END_TEST

/* ---- a fiber ended inside the advancer's status window ---------------------- */


static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t tid;  /* the worker's */
        int stage;     /* 0 armed, 1 go (hook to worker), 2 done (worker to hook) */
        bool hooked;
} win = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, false};

static bool win_wait(int stage)
{
        return stage_wait(&win.cond, &win.lock, &win.stage, stage);
}

static void win_hook(uint64_t tid)
{
        pthread_mutex_lock(&win.lock);
        if (tid == win.tid && win.stage == 0) {
                /* The advancer holds the claim: let the worker end its fiber
                 * (its own claim fails), then write the status. */
                win.hooked = true;
                win.stage = 1;
                pthread_cond_broadcast(&win.cond);
                (void)win_wait(2);
        }
        pthread_mutex_unlock(&win.lock);
}

static void *win_worker(void *arg)
{
        (void)arg;
        gtrace_thread_name("window");
        uint64_t f = gtrace_fiber_create("short");
        gtrace_fiber_run(f);
        pthread_mutex_lock(&win.lock);
        win.tid = (uint64_t)gettid();
        pthread_cond_broadcast(&win.cond);
        bool go = win_wait(1);
        pthread_mutex_unlock(&win.lock);
        if (go)
                gtrace_fiber_exit();
        pthread_mutex_lock(&win.lock);
        win.stage = 2;
        pthread_cond_broadcast(&win.cond);
        pthread_mutex_unlock(&win.lock);
        return NULL;
}

/* The advancer wins a thread's status claim while the thread runs a fiber;
 * before it writes the status, the thread ends that fiber (its slot freed).
 * The status must still name the fiber the thread was running, so that the
 * FIBER_EXIT that follows in the generation has its FIBER_STATUS. */
START_TEST(test_fiber_ends_inside_status_window)
{
        const char *dir = rt_tmpdir();
        ck_assert_ptr_nonnull(dir);
        struct gtrace_options o = {.period_ms = 3600000, .dump_dir = dir,
                                   .flags = GTRACE_F_NO_DAEMON};
        ck_assert_int_eq(gtrace_start(&o), 0);
        gt_test_status_claimed = win_hook;
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, win_worker, NULL), 0);
        pthread_mutex_lock(&win.lock);
        while (!win.tid)
                pthread_cond_wait(&win.cond, &win.lock);
        pthread_mutex_unlock(&win.lock);
        /* The switch this flush makes finds the worker idle in a fiber: the
         * advancer claims its status and the hook runs. */
        ck_assert_int_eq(gtrace_flush(), 0);
        pthread_join(th, NULL);
        gt_test_status_claimed = NULL;
        ck_assert_msg(win.hooked, "the advancer never claimed the worker's status");
        struct rt_summary s;
        rt_dump_stop_read("window", &s);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_CREATE), 1);
        ck_assert_uint_eq(RT_COUNT(&s, FIBER_EXIT), 1);
}
END_TEST

/* ---- a thread that found the pool empty while a cycle was in flight --------- */

/*
 * Half the pool in one generation wakes the advancer early; it cuts, and
 * while it copies the generation out the thread fills what is left of the
 * pool and drops.  The drop must bring the next cut at once: the generation
 * the thread drops in ends there, not at the period's end (an hour here),
 * and what the thread emits after it is kept.  The hook holds the cycle
 * until the pool is empty, so the drop always falls inside it; the request
 * it makes is the one a cycle that cleared its kick when done would lose.
 */
/*
 * The advance thread held at a test hook (hold_hit): every call counts in
 * hits, and the first one waits there (stage 1) until the test lets it go
 * (hold_release, stage 2).  Bounded: a test that failed before letting go
 * must not hang the advancer (and gtrace_stop) for ever.
 */
struct hold {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int stage; /* 0 armed, 1 held, 2 let go */
        int hits;  /* calls of the hook, the held one included */
};
#define HOLD_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}

static void hold_arm(struct hold *h)
{
        pthread_mutex_lock(&h->lock);
        h->stage = 0;
        h->hits = 0;
        pthread_mutex_unlock(&h->lock);
}

static void hold_hit(struct hold *h)
{
        pthread_mutex_lock(&h->lock);
        bool hold = h->stage == 0;
        h->hits++;
        if (hold)
                h->stage = 1;
        pthread_cond_broadcast(&h->cond); /* hits and stage, at once */
        if (hold)
                (void)stage_wait(&h->cond, &h->lock, &h->stage, 2);
        pthread_mutex_unlock(&h->lock);
}

static void hold_release(struct hold *h)
{
        pthread_mutex_lock(&h->lock);
        h->stage = 2;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
}

/* The first cut, held (gt_test_cycle or gt_test_copied). */
static struct hold cyc = HOLD_INIT;

static void cycle_hook(uint64_t gen)
{
        (void)gen;
        hold_hit(&cyc);
}

static uint64_t generations_now(void)
{
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        return st.generations;
}

/* Starts gtrace with nchunks chunks of 4 KiB for the whole process, no
 * stacks and an hour's period (no cut but those the test makes or the
 * pool asks for); returns a 1000-byte log text, three to a chunk. */
static const char *start_small_pool(uint32_t nchunks)
{
        static char text[1001];
        memset(text, 'x', sizeof(text) - 1);
        const char *dir = rt_tmpdir();
        ck_assert_ptr_nonnull(dir);
        struct gtrace_options o = {.period_ms = 3600000, .dump_dir = dir,
                                   .flags = GTRACE_F_NO_DAEMON | GTRACE_F_NO_STACKS,
                                   .chunk_bytes = 4096,
                                   .max_buffer_bytes = nchunks * 4096u};
        ck_assert_int_eq(gtrace_start(&o), 0);
        return text;
}

/* Starts gtrace with a pool of sixteen chunks (start_small_pool), sets
 * *hook to hold the first cut, and writes 1000-byte logs until the ninth
 * chunk asks for that cut, and no further: a chunk the first generation
 * took after the cut began would ask for a second one.  Returns the text
 * once the hook holds the cut; *nlogs is how many logs it wrote. */
static const char *hold_first_cut(void (**hook)(uint64_t), int *nlogs)
{
        hold_arm(&cyc);
        const char *text = start_small_pool(16); /* the kick past 8 */
        *hook = cycle_hook;
        *nlogs = 0;
        while (atomic_load(&gt.gen_chunks[1]) <= gt.kick_chunks && *nlogs < 1000) {
                gtrace_log("fill", text);
                ++*nlogs;
        }
        pthread_mutex_lock(&cyc.lock);
        bool held = stage_wait(&cyc.cond, &cyc.lock, &cyc.stage, 1);
        pthread_mutex_unlock(&cyc.lock);
        ck_assert_msg(held, "the advancer did not reach the hook with the first cut");
        return text;
}

/* The advance thread held once a generation is finished, before it looks
 * for the next cycle to make: what it would do next is fixed by then. */
static struct hold fin = HOLD_INIT;

static void finished_hook(uint64_t gen)
{
        (void)gen;
        hold_hit(&fin);
}

START_TEST(test_empty_pool_cuts_at_once)
{
        int fill;
        const char *text = hold_first_cut(&gt_test_cycle, &fill);
        /* The cut is made (the hook runs after it): these go to the next
         * generation, which gets the chunks the held one left, below the
         * half-pool mark, and then drops. */
        for (int i = 0; i < 100; i++)
                gtrace_log("more", text);
        ck_assert_uint_eq(generations_now(), 0);
        /* The drop asked for the next cut after this one cleared its own
         * request: it stands. */
        int kick = atomic_load(&gt.kick);
        ck_assert_int_eq(kick, 1);
        hold_release(&cyc);
        /* The held generation is pushed, then the one with the drops is
         * cut by the request the drop made: the hook sees that cut. */
        pthread_mutex_lock(&cyc.lock);
        (void)stage_wait(&cyc.cond, &cyc.lock, &cyc.hits, 2);
        int cuts = cyc.hits;
        pthread_mutex_unlock(&cyc.lock);
        gt_test_cycle = NULL;
        ck_assert_msg(cuts >= 2, "the generation that dropped was not cut (%d cuts)", cuts);
        gtrace_counter("after", 1);
        struct rt_summary s;
        rt_dump_stop_read("empty-pool", &s);
        ck_assert_uint_gt(s.lost, 0);
        ck_assert_uint_eq(RT_COUNT(&s, LOG) + s.lost, (uint64_t)fill + 100);
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), 1);
}
END_TEST

/*
 * The half-pool mark counts the current generation's chunks, not those of
 * the one being copied out: a generation that takes a few chunks while the
 * cut before it is in flight asks for no cut of its own.  Counted against
 * all chunks in use, it would, and every early cut would bring a second,
 * near-empty generation after it.
 */
START_TEST(test_kick_counts_the_current_generation)
{
        int fill;
        const char *text = hold_first_cut(&gt_test_cycle, &fill);
        /* Three chunks of the next generation while the held one has nine:
         * below its own mark, far above the mark for all in use. */
        for (int i = 0; i < 9; i++)
                gtrace_log("next", text);
        /* No request for a second cut (the cut in flight cleared the one
         * it answers before it began). */
        int kick = atomic_load(&gt.kick);
        ck_assert_int_eq(kick, 0);
        hold_arm(&fin);
        gt_test_finished = finished_hook;
        hold_release(&cyc);
        /* The held generation finished, the advance thread held before it
         * looks for another cycle: no request waits for one. */
        pthread_mutex_lock(&fin.lock);
        (void)stage_wait(&fin.cond, &fin.lock, &fin.stage, 1);
        pthread_mutex_unlock(&fin.lock);
        uint64_t n = generations_now();
        kick = atomic_load(&gt.kick);
        gt_test_cycle = NULL;
        gt_test_finished = NULL;
        uint64_t n_after = generations_now();
        /* Let go before asserting: a failed check must not leave the
         * advance thread held. */
        hold_release(&fin);
        ck_assert_int_eq(kick, 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(n_after, 1);
        struct rt_summary sum;
        rt_dump_stop_read("own-mark", &sum);
        ck_assert_uint_eq(RT_COUNT(&sum, LOG), (uint64_t)fill + 9);
        ck_assert_uint_eq(sum.lost, 0);
}
END_TEST

/*
 * While a cut is in flight, the chunks it has copied are back in the pool:
 * a thread that finds no other takes them rather than drop events.  The
 * hook holds the cut with every chunk copied, before they join the free
 * stack; the next generation writes twelve chunks, more than the seven
 * the pool has besides.
 */
START_TEST(test_copied_chunks_serve_before_drops)
{
        int fill;
        const char *text = hold_first_cut(&gt_test_copied, &fill);
        for (int i = 0; i < 36; i++)
                gtrace_log("next", text);
        struct gt_slot *s = gt_self->cur;
        bool dropped = s->lossy;
        hold_release(&cyc);
        struct rt_summary sum;
        rt_dump_stop_read("copied-serve", &sum);
        gt_test_copied = NULL;
        ck_assert_msg(!dropped, "events dropped while copied chunks were in the pool");
        ck_assert_uint_eq(RT_COUNT(&sum, LOG), (uint64_t)fill + 36);
        ck_assert_uint_eq(sum.lost, 0);
}
END_TEST

/*
 * A cut's chunks go back to the pool after the copy, last to first, so
 * that the first one copied (the coldest in the advance thread's cache) is
 * the first taken: a thread writing a chunk the copy has just read misses
 * on every line (bench-emit's log stacks off: 1.4-1.8 times the floor
 * during a copy; docs/performance.md has the runs).
 */
START_TEST(test_copied_chunks_come_back_coldest_first)
{
        const char *text = start_small_pool(64);
        /* The only thread that emits: its chunks are the pool's first,
         * taken in order. */
        for (int i = 0; i < 9; i++)
                gtrace_log("fill", text);
        struct gt_slot *s = gt_self->cur;
        uint32_t first = s->head->index, n = 0, last = first;
        for (struct gt_chunk *c = s->head; c; c = c->next, n++)
                last = c->index;
        ck_assert_uint_ge(n, 3);
        ck_assert_uint_ne(first, last);
        ck_assert_int_eq(gtrace_flush(), 0);
        gtrace_log("next", "generation");
        ck_assert_uint_eq(gt_self->cur->head->index, first);
        struct rt_summary sum;
        rt_dump_stop_read("coldest-first", &sum);
        ck_assert_uint_eq(RT_COUNT(&sum, LOG), 10);
        ck_assert_uint_eq(sum.lost, 0);
}
END_TEST

int main(void)
{
        Suite *suite = suite_create("runtime-stress");
        TCase *tc = tcase_create("core");
        tcase_set_timeout(tc, 240);
        tcase_add_loop_test(tc, test_stress_exact_counts, 0, 2);
        tcase_add_test(tc, test_fiber_ends_inside_status_window);
        tcase_add_test(tc, test_names_made_across_generations);
        tcase_add_test(tc, test_entry_found_before_its_maker_returns);
        tcase_add_test(tc, test_empty_pool_cuts_at_once);
        tcase_add_test(tc, test_kick_counts_the_current_generation);
        tcase_add_test(tc, test_copied_chunks_serve_before_drops);
        tcase_add_test(tc, test_copied_chunks_come_back_coldest_first);
        suite_add_tcase(suite, tc);
        SRunner *sr = srunner_create(suite);
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
