/* SPDX-License-Identifier: MIT */
/*
 * The runtime's public behaviour: start/stop, options, no-ops while
 * stopped, bounded memory with counted drops, self-contained generations,
 * thread exit, fork and crash.  Processes are real: fork and crash tests
 * run children and inspect what they leave behind.
 */
#include <check.h>
#include <dlfcn.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtrace/gtrace.h"
#include "../../runtime/internal.h" /* gt_str_fixed */
#include "rt-check.h"

static struct gtrace_options opts(const char *dir, uint32_t period_ms)
{
        return (struct gtrace_options){
                .period_ms = period_ms,
                .dump_dir = dir,
                .flags = GTRACE_F_NO_DAEMON,
        };
}

/* gtrace_dump() now, and the dump read back and validated. */
static struct rt_summary dump_and_read(const char *why)
{
        char path[4096];
        struct rt_summary s;
        ck_assert_int_eq(gtrace_dump(why, path, sizeof(path)), 0);
        ck_assert_int_eq(rt_read_dump(path, &s), 0);
        return s;
}

START_TEST(test_api_noop_when_stopped)
{
        /* Every call is safe and does nothing before gtrace_start(). */
        gtrace_thread_name("x");
        gtrace_region_begin("r");
        gtrace_region_end();
        gtrace_log("c", "m");
        gtrace_counter("n", 1);
        ck_assert_uint_eq(gtrace_task_begin("t", 0), 0);
        gtrace_task_end(1);
        ck_assert_uint_eq(gtrace_fiber_create("f"), 0);
        gtrace_fiber_run(1);
        gtrace_fiber_block("b");
        gtrace_fiber_ready(1);
        gtrace_fiber_yield();
        gtrace_fiber_exit();
        gtrace_syscall_begin("s");
        gtrace_syscall_end();
        gtrace_stop();
        ck_assert_int_eq(gtrace_dump("x", NULL, 0), -ENOTCONN);
        ck_assert_int_eq(gtrace_flush(), -ENOTCONN);
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        ck_assert_uint_eq(st.events, 0);
}
END_TEST

START_TEST(test_api_start_twice_and_bad_options)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        struct gtrace_options bad = o;
        bad.chunk_bytes = 100; /* below 4 KiB */
        ck_assert_int_eq(gtrace_start(&bad), -EINVAL);
        bad = o;
        bad.period_ms = 7200000;
        ck_assert_int_eq(gtrace_start(&bad), -EINVAL);
        ck_assert_int_eq(gtrace_start(&o), 0);
        ck_assert_int_eq(gtrace_start(&o), -EALREADY);
        gtrace_stop();
        /* Start again after stop: a new session works. */
        ck_assert_int_eq(gtrace_start(&o), 0);
        gtrace_region_begin("again");
        gtrace_region_end();
        struct rt_summary s = dump_and_read("restart");
        gtrace_stop();
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 1);
        ck_assert_str_eq(s.meta.reason, "restart");
        ck_assert_str_eq(s.meta.origin, "process");
        ck_assert_uint_eq(s.meta.pid, (uint64_t)getpid());
}
END_TEST

/* A thread that traced in one session and calls on after gtrace_stop():
 * each fast path finds the generation gone through its one slot check and
 * leaves its write section again (the seqlock even, nothing written), and
 * the next session records exactly its own events. */
START_TEST(test_api_fast_paths_after_stop)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        uint64_t f = gtrace_fiber_create("f");
        ck_assert_uint_ne(f, 0);
        gtrace_region_begin("warm");
        gtrace_counter("n", 1);
        gtrace_log("c", "m");
        gtrace_fiber_run(f);
        gtrace_fiber_yield();
        gtrace_region_end();
        ck_assert_ptr_nonnull(gt_self);
        gtrace_stop();
        for (int i = 0; i < 3; i++) {
                gtrace_region_begin("after");
                gtrace_region_end();
                gtrace_counter("n", 2);
                gtrace_log("c", "after stop");
                gtrace_fiber_run(f);
                gtrace_fiber_yield();
                ck_assert_uint_eq(atomic_load(&gt_self->seq) & 1, 0);
        }
        ck_assert_int_eq(gtrace_start(&o), 0);
        gtrace_region_begin("again");
        gtrace_counter("n", 3);
        gtrace_region_end();
        struct rt_summary s = dump_and_read("after-stop");
        gtrace_stop();
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 1);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_END), 1);
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), 1);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), 0);
}
END_TEST

START_TEST(test_api_env_bad_value)
{
        setenv("GTRACE_PERIOD_MS", "soon", 1);
        ck_assert_int_eq(gtrace_start(NULL), -EINVAL);
        unsetenv("GTRACE_PERIOD_MS");
}
END_TEST

/* A function that keeps its own frame at every optimisation level: not
 * inlined, not cloned or split (gcc's -O3 makes rec.part.0 of rec), so the
 * stacks below show exactly the frames the source has. */
#if defined(__clang__)
#define TEST_FRAME __attribute__((noinline, optnone))
#else
#define TEST_FRAME __attribute__((noinline, noipa))
#endif

/* The innermost frame of a log's stack is the caller of gtrace_log, not
 * gtrace's own code. */
TEST_FRAME static void log_from_here(void)
{
        gtrace_log("stack", "where am I");
        __asm__ volatile("" ::: "memory"); /* keep the call from being a tail call */
}

/* The same through gtrace_log's general path: a text too long for its
 * fast path, or none. */
static const char long_text[] = "a text of more than thirty-two bytes, which the fast path leaves "
                                "to the general one";

TEST_FRAME static void log_long_from_here(const char *text)
{
        gtrace_log("stack", text);
        __asm__ volatile("" ::: "memory");
}

START_TEST(test_stack_starts_at_caller)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        log_from_here(); /* the thread's first event: the first-event path */
        struct rt_summary s = dump_and_read("stack");
        ck_assert_str_eq(s.last_log, "where am I");
        uintptr_t fn = (uintptr_t)log_from_here;
        ck_assert_msg(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256,
                      "first frame %#llx is not inside log_from_here at %#llx",
                      (unsigned long long)s.last_log_pc0, (unsigned long long)fn);
        uint64_t n = s.last_log_npcs;
        for (int i = 0; i < 2; i++) {
                /* Twice from one call site: the second log's stack is the
                 * thread's last, found without a walk. */
                for (volatile int k = 0; k < 2; k++)
                        log_from_here();
                s = dump_and_read("stack");
                ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
                ck_assert_uint_eq(s.last_log_npcs, n);
        }
        fn = (uintptr_t)log_long_from_here;
        for (int i = 0; i < 2; i++) {
                log_long_from_here(long_text);
                s = dump_and_read("long");
                ck_assert_str_eq(s.last_log, long_text);
                ck_assert_msg(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256,
                              "long text: first frame %#llx is not inside log_long_from_here",
                              (unsigned long long)s.last_log_pc0);
                ck_assert_uint_eq(s.last_log_npcs, n);
                log_long_from_here(NULL);
                s = dump_and_read("none");
                ck_assert_str_eq(s.last_log, "");
                ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
                ck_assert_uint_eq(s.last_log_npcs, n);
        }
        gtrace_stop();
}
END_TEST

#if defined(__x86_64__)
TEST_FRAME static void log_target(void)
{
        gtrace_log("stack", "under a record of data");
        __asm__ volatile("" ::: "memory");
}

/* Calls log_target with %rbp pointing at rec, as code built without frame
 * pointers may leave it: a pointer to its own data.  log_target saves it
 * as its caller's frame record; rec sits where a record may (on the
 * thread's stack, above log_target's, aligned) and holds a pointer above
 * it and a "return address" that is data. */
TEST_FRAME static void log_under_data(void)
{
        uintptr_t rec[4] __attribute__((aligned(16)));
        rec[0] = (uintptr_t)&rec[2];
        rec[1] = (uintptr_t)&rec[0];
        rec[2] = 0; /* a return address of 0 ends a walk */
        rec[3] = 0;
        void (*target)(void) = log_target;
        /* Past the red zone, aligned for the call; %rbx keeps %rsp. */
        __asm__ volatile("mov %%rsp, %%rbx\n\t"
                         "sub $128, %%rsp\n\t"
                         "and $-16, %%rsp\n\t"
                         "push %%rbp\n\t"
                         "push %%rbp\n\t"
                         "mov %0, %%rbp\n\t"
                         "call *%1\n\t"
                         "pop %%rbp\n\t"
                         "pop %%rbp\n\t"
                         "mov %%rbx, %%rsp"
                         :
                         : "r"(rec), "r"(target)
                         : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                           "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                           "xmm15", "memory", "cc");
}

/* A walk ends at a return address outside the code of every loaded
 * object: log_target's frame, log_under_data's, and not the data record
 * the latter's %rbp pointed at.  Walked twice: the thread's first stack,
 * then again after a stack of another shape (no shortcut either time). */
START_TEST(test_stack_ends_at_data)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        uintptr_t fn = (uintptr_t)log_target;
        for (int i = 0; i < 2; i++) {
                log_under_data();
                struct rt_summary s = dump_and_read("data");
                ck_assert_str_eq(s.last_log, "under a record of data");
                ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
                ck_assert_uint_eq(s.last_log_npcs, 2);
                log_from_here();
        }
        gtrace_stop();
}
END_TEST
#endif

typedef void (*dso_call_fn)(void (*)(void));

/* Starts tracing (cycles only when asked: a dump is one) and loads the test
 * library after it; returns the library's test_dso_call. */
static dso_call_fn start_then_load_dso(void **dso)
{
        struct gtrace_options o = opts(rt_tmpdir(), 3600000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        *dso = dlopen(GTRACE_TEST_DSO, RTLD_NOW | RTLD_LOCAL);
        ck_assert_msg(*dso, "%s", dlerror());
        dso_call_fn call = (dso_call_fn)dlsym(*dso, "test_dso_call");
        ck_assert_ptr_nonnull(call);
        return call;
}

/* Dumps (a cycle) and returns how many frames the last log's stack has,
 * checking that it starts in log_from_here. */
static uint64_t last_log_frames(const char *why)
{
        struct rt_summary s = dump_and_read(why);
        uintptr_t fn = (uintptr_t)log_from_here;
        ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
        return s.last_log_npcs;
}

/* A library loaded after gtrace_start: until the advancer has read the
 * loaded objects again, a walk ends at its frame (cut short, never data);
 * after a cycle, the stack goes through it. */
START_TEST(test_stack_through_library_loaded_later)
{
        void *dso;
        dso_call_fn call = start_then_load_dso(&dso);
        call(log_from_here);
        ck_assert_uint_eq(last_log_frames("before"), 1);
        call(log_from_here);
        /* log_from_here, test_dso_call, this test and what called it. */
        ck_assert_uint_ge(last_log_frames("after"), 3);
        gtrace_stop();
        dlclose(dso);
}
END_TEST

/* The code table grows with the objects loaded: with room for one segment
 * at first, frames in the test's own executable, in libc and in a library
 * loaded later are all still walked through. */
START_TEST(test_stack_code_table_grows)
{
        gt_test_code_first = 1;
        void *dso;
        dso_call_fn call = start_then_load_dso(&dso);
        (void)dump_and_read("load"); /* a cycle: the advancer reads the new object */
        call(log_from_here);
        ck_assert_uint_ge(last_log_frames("after"), 3);
        gtrace_stop();
        gt_test_code_first = 0;
        dlclose(dso);
}
END_TEST

/* rec(k) logs from k frames deeper than rec(0) does, always from the same
 * call site: stacks that share their innermost frame and differ further out. */
TEST_FRAME static void rec(int k)
{
        if (k == 0)
                gtrace_log("stack", "rec");
        else
                rec(k - 1);
        __asm__ volatile("" ::: "memory");
}

TEST_FRAME static void rec_other(int k)
{
        if (k == 0)
                gtrace_log("stack", "rec_other");
        else
                rec_other(k - 1);
        __asm__ volatile("" ::: "memory");
}

/* Each log records its own stack whatever the thread logged before: the
 * last-stack cache is only a shortcut.  Shallow after deep, deep after
 * shallow and another call site must each give the right stack. */
START_TEST(test_stack_cache_follows_the_stack)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.stack_depth = 64;
        ck_assert_int_eq(gtrace_start(&o), 0);
        uintptr_t fn = (uintptr_t)rec;
        rec(0);
        struct rt_summary s = dump_and_read("shallow");
        uint64_t n0 = s.last_log_npcs;
        ck_assert_uint_ge(n0, 1);
        ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
        for (int round = 0; round < 2; round++) { /* the second round hits the cache */
                rec(3);
                s = dump_and_read("deep");
                ck_assert_uint_eq(s.last_log_npcs, n0 + 3);
                ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
                rec(0);
                s = dump_and_read("shallow again");
                ck_assert_uint_eq(s.last_log_npcs, n0);
        }
        /* The same within one generation (the thread's last stack is only
         * known in the generation it was marked for). */
        rec(0);
        rec(3);
        s = dump_and_read("shallow, then deep");
        ck_assert_uint_eq(s.last_log_npcs, n0 + 3);
        rec(3);
        rec(0);
        s = dump_and_read("deep, then shallow");
        ck_assert_uint_eq(s.last_log_npcs, n0);
        log_from_here();
        s = dump_and_read("elsewhere");
        fn = (uintptr_t)log_from_here;
        ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
        gtrace_stop();
}
END_TEST

#if defined(__x86_64__)
/* chain_call(fn, cut) calls fn from one call site, with the frame-pointer
 * chain either intact or (cut != 0) ending right there: the same return
 * addresses, a longer or a shorter stack. */
void chain_call(void (*fn)(void), int cut);
__asm__(".text\n"
        ".p2align 4\n"
        ".type chain_call, @function\n"
        "chain_call:\n"
        "        push %rbp\n"
        "        mov %rsp, %rbp\n"
        "        test %esi, %esi\n"
        "        jz 1f\n"
        "        xor %ebp, %ebp\n"
        "1:      call *%rdi\n"
        "        pop %rbp\n"
        "        ret\n"
        ".size chain_call, .-chain_call\n");

TEST_FRAME static void log_leaf(void)
{
        gtrace_log("stack", "leaf");
        __asm__ volatile("" ::: "memory");
}

/* A cached stack that is a prefix of the real one is not the real one: the
 * walk must notice that the chain goes on past the cached frames. */
START_TEST(test_stack_cache_prefix)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        chain_call(log_leaf, 1);
        struct rt_summary s = dump_and_read("cut");
        ck_assert_uint_eq(s.last_log_npcs, 2);
        chain_call(log_leaf, 0);
        s = dump_and_read("whole");
        ck_assert_uint_gt(s.last_log_npcs, 2);
        chain_call(log_leaf, 1);
        s = dump_and_read("cut again");
        ck_assert_uint_eq(s.last_log_npcs, 2);
        /* The same within one generation, where the thread's last stack is
         * checked record by record: the same return addresses at the same
         * places, a different saved frame pointer in the last one. */
        chain_call(log_leaf, 1);
        chain_call(log_leaf, 0);
        s = dump_and_read("cut, then whole");
        ck_assert_uint_gt(s.last_log_npcs, 2);
        chain_call(log_leaf, 0);
        chain_call(log_leaf, 1);
        s = dump_and_read("whole, then cut");
        ck_assert_uint_eq(s.last_log_npcs, 2);
        gtrace_stop();
}
END_TEST
#endif

/* stack_depth caps every stack, cached or not. */
START_TEST(test_stack_depth_cap)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.stack_depth = 3;
        ck_assert_int_eq(gtrace_start(&o), 0);
        for (int round = 0; round < 2; round++) {
                rec(6);
                struct rt_summary s = dump_and_read("capped");
                ck_assert_uint_eq(s.last_log_npcs, 3);
                rec(1);
                s = dump_and_read("capped, shallower");
                ck_assert_uint_eq(s.last_log_npcs, 3);
        }
        gtrace_stop();
}
END_TEST

/* A thread keeps its last stack's frame records in room sized by the
 * stack depth when it registered.  Restarted with a deeper limit, its
 * deeper stacks do not fit there: they are walked every time, and are
 * still whole; restarted with a shallower one, they are capped. */
START_TEST(test_stack_depth_changes_across_restart)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.stack_depth = 4;
        ck_assert_int_eq(gtrace_start(&o), 0);
        gtrace_counter("register", 1); /* this thread: room for 4 frames */
        gtrace_stop();
        o.stack_depth = 64;
        ck_assert_int_eq(gtrace_start(&o), 0);
        /* rec(k) from one call site twice per dump: the second log meets
         * the thread's last stack. */
        static const struct {
                int depth;
                const char *why;
        } step[] = {{0, "shallow"}, {20, "deeper than the room"}, {1, "shallow again"}};
        uint64_t n0 = 0;
        for (size_t i = 0; i < sizeof(step) / sizeof(step[0]); i++) {
                for (volatile int k = 0; k < 2; k++)
                        rec(step[i].depth);
                struct rt_summary s = dump_and_read(step[i].why);
                if (i == 0)
                        n0 = s.last_log_npcs; /* under 64: not capped */
                ck_assert_uint_eq(s.last_log_npcs, n0 + (uint64_t)step[i].depth);
        }
        ck_assert_uint_lt(n0 + 20, 64);
        gtrace_stop();
        o.stack_depth = 2;
        ck_assert_int_eq(gtrace_start(&o), 0);
        for (volatile int k = 0; k < 2; k++)
                rec(5);
        struct rt_summary s = dump_and_read("capped below the room");
        ck_assert_uint_eq(s.last_log_npcs, 2);
        gtrace_stop();
}
END_TEST

/* Regression: gtrace_get_stats() reported a generation dropped from the
 * ring only until the next generation recorded the loss, so a program (or a
 * test) looking a little later saw generations_lost == 0 while its daemon was
 * hung.  The daemon here is hung before it even accepts: nothing is pushed. */
START_TEST(test_regress_stats_generations_lost_stays)
{
        const char *dir = rt_tmpdir();
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        ck_assert_int_lt(snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/hung.sock", dir),
                         (int)sizeof(sa.sun_path));
        int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(ls, 0);
        ck_assert_int_eq(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(ls, 8), 0);

        struct gtrace_options o = {.period_ms = 100000, .dump_dir = dir, .ring_generations = 2,
                                   .socket_path = sa.sun_path};
        ck_assert_int_eq(gtrace_start(&o), 0);
        enum { CUTS = 8 };
        for (int i = 0; i < CUTS; i++) {
                gtrace_counter("c", i);
                (void)gtrace_flush(); /* times out: nobody answers; the cut is made */
        }
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        gtrace_stop();
        close(ls);
        ck_assert_uint_eq(st.generations_sent, 0);
        ck_assert_uint_ge(st.generations, CUTS);
        /* Every generation but the two the ring holds was dropped, whether
         * or not a later generation has recorded the loss yet. */
        ck_assert_uint_eq(st.generations_lost, st.generations - st.ring_generations);
}
END_TEST

/* Every log text arrives byte for byte, whatever its length (the copy has
 * separate paths for short, word-sized and long texts) and alignment, and
 * one longer than GT_MAX_LOG_BYTES (1024) is cut there. */
START_TEST(test_log_text_every_length)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.flags |= GTRACE_F_NO_STACKS;
        ck_assert_int_eq(gtrace_start(&o), 0);
        static char buf[1200 + 8];
        uint64_t want = RT_TEXT_HASH_INIT;
        for (size_t len = 0; len <= 1100; len += len < 80 ? 1 : 97) {
                size_t off = len % 8;
                for (size_t i = 0; i < len; i++)
                        buf[off + i] = (char)('A' + (i * 7 + len) % 26);
                buf[off + len] = '\0';
                gtrace_log("len", buf + off);
                size_t kept = len < 1024 ? len : 1024;
                want = rt_text_hash(want, buf + off, kept);
        }
        struct rt_summary s = dump_and_read("lengths");
        gtrace_stop();
        ck_assert_uint_eq(RT_COUNT(&s, LOG), 91);
        ck_assert_uint_eq(s.log_text_hash, want);
}
END_TEST

/* Short log texts are read 32 bytes at a time: a text that ends just
 * before an unmapped page must be read without touching it, and every
 * length around the 32-byte cut must come out whole. */
START_TEST(test_log_text_at_page_end)
{
        long page = sysconf(_SC_PAGESIZE);
        char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(map, MAP_FAILED);
        ck_assert_int_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.flags |= GTRACE_F_NO_STACKS;
        ck_assert_int_eq(gtrace_start(&o), 0);
        uint64_t want = RT_TEXT_HASH_INIT;
        unsigned n = 0;
        for (size_t len = 0; len <= 40; len++) {
                /* The NUL is the page's last byte, then one byte earlier. */
                for (size_t gap = 0; gap <= 1; gap++) {
                        char *text = map + page - 1 - gap - len;
                        for (size_t i = 0; i < len; i++)
                                text[i] = (char)('a' + (i + len) % 26);
                        text[len] = '\0';
                        gtrace_log("edge", text);
                        want = rt_text_hash(want, text, len);
                        n++;
                }
        }
        /* Texts that start a page (the fast path leaves them to the
         * general code, with NULL). */
        for (size_t len = 0; len <= 34; len += 2) {
                char *text = map;
                memset(text, 's', len);
                text[len] = '\0';
                gtrace_log("start", text);
                want = rt_text_hash(want, text, len);
                n++;
        }
        /* And texts in the middle of a page, around the cut. */
        for (size_t len = 28; len <= 36; len++) {
                char *text = map + 100;
                memset(text, 'm', len);
                text[len] = '\0';
                gtrace_log("middle", text);
                want = rt_text_hash(want, text, len);
                n++;
        }
        struct rt_summary s = dump_and_read("page end");
        gtrace_stop();
        munmap(map, (size_t)page * 2);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), n);
        ck_assert_uint_eq(s.log_text_hash, want);
}
END_TEST

/* Region names, in the order their REGION_BEGIN events were read. */
struct names {
        char text[24][64];
        unsigned n;
};

static int on_region(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct names *nm = ctx;
        (void)g;
        if (ev->type == PROTO_EV_REGION_BEGIN && nm->n < 24 && ev->str[1])
                snprintf(nm->text[nm->n++], sizeof(nm->text[0]), "%s", ev->str[1]);
        return 0;
}

/* gtrace_dump(), gtrace_stop(), and the names of the dump's region begins. */
static struct names dump_stop_region_names(const char *why)
{
        char path[4096];
        ck_assert_int_eq(gtrace_dump(why, path, sizeof(path)), 0);
        gtrace_stop();
        struct fr_dump *d;
        struct fr_error err;
        struct names nm = {0};
        struct fr_callbacks cb = {.event = on_region};
        ck_assert_int_eq(fr_dump_open(path, &d, &err), 0);
        ck_assert_msg(fr_dump_parse(d, &cb, &nm, &err) == 0, "%s", err.msg);
        fr_dump_free(d);
        return nm;
}

/*
 * A thread's string cache knows a name by its pointer.  A buffer the caller
 * rewrites keeps its pointer and changes its text: the cache compares the
 * text, unless the pointer is into the program's read-only data, which
 * nothing rewrites (and whose texts skip the compare).
 */
START_TEST(test_string_cache_rewritten_buffer)
{
        static const char ro[] = "read-only";
        static char rw[] = "writable";
        char stack[16] = "on-stack";
        char *heap = strdup("on-heap");
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        ck_assert(gt_str_fixed("a literal"));
        ck_assert(gt_str_fixed(ro));
        ck_assert(!gt_str_fixed(rw));
        ck_assert(!gt_str_fixed(stack));
        ck_assert(!gt_str_fixed(heap));
        ck_assert(!gt_str_fixed(NULL));

        gtrace_region_begin(stack);
        gtrace_region_end();
        gtrace_counter(stack, 1); /* the other fast path, same cache entry */
        snprintf(stack, sizeof(stack), "rewritten");
        gtrace_region_begin(stack);
        gtrace_region_end();
        snprintf(heap, strlen(heap) + 1, "heap-2");
        gtrace_region_begin(heap);
        gtrace_region_end();
        gtrace_region_begin(ro);
        gtrace_region_begin(ro);
        gtrace_region_end();
        gtrace_region_end();
        struct names nm = dump_stop_region_names("names");
        free(heap);
        ck_assert_uint_eq(nm.n, 5);
        ck_assert_str_eq(nm.text[0], "on-stack");
        ck_assert_str_eq(nm.text[1], "rewritten");
        ck_assert_str_eq(nm.text[2], "heap-2");
        ck_assert_str_eq(nm.text[3], "read-only");
        ck_assert_str_eq(nm.text[4], "read-only");
}
END_TEST

/*
 * The same for names the fast paths compare without a loop at other
 * lengths (16 to 31 bytes: two 16-byte compares) and names they leave to
 * the general code (32 bytes or more, or too near the end of a page to read
 * 32 bytes): each rewritten in place, the change in its last bytes.
 */
START_TEST(test_string_cache_long_names)
{
        /* Two pages: names at the start of the second and at its end. */
        char *pages = aligned_alloc(4096, 8192);
        ck_assert_ptr_nonnull(pages);
        memset(pages, 0, 8192);
        char *mid = pages + 4096, *end = pages + 8192 - 26;
        static const char *const want[] = {
                "a name of twenty-four b1", "a name of twenty-four b2",
                "a name of forty bytes, past thirty-two 1", "a name of forty bytes, past thirty-two 2",
                "twenty-five at page end1", "twenty-five at page end2",
                /* The second extends the first in the same buffer: the
                 * compare must cover the cached name's NUL. */
                "a name, seventeen", "a name, seventeen+",
                /* Fifteen bytes: the second word's mask covers the NUL. */
                "fifteen bytes.1", "fifteen bytes.2",
        };
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        char *at[] = {mid, mid, mid, mid, end, end, mid, mid, mid, mid};
        for (int i = 0; i < 10; i++) {
                memcpy(at[i], want[i], strlen(want[i]) + 1);
                for (int k = 0; k < 2; k++) { /* the second from the thread's cache */
                        gtrace_region_begin(at[i]);
                        gtrace_region_end();
                }
        }
        struct names nm = dump_stop_region_names("long names");
        free(pages);
        ck_assert_uint_eq(nm.n, 20);
        for (unsigned i = 0; i < 20; i++)
                ck_assert_str_eq(nm.text[i], want[i / 2]);
}
END_TEST

/* 256 names in the program's read-only data: "n" and two characters. */
#define POOL1(i) {'n', (char)('0' + ((i) >> 4)), (char)('0' + ((i) & 15)), 0}
#define POOL4(i) POOL1(i), POOL1((i) + 1), POOL1((i) + 2), POOL1((i) + 3)
#define POOL16(i) POOL4(i), POOL4((i) + 4), POOL4((i) + 8), POOL4((i) + 12)
#define POOL64(i) POOL16(i), POOL16((i) + 16), POOL16((i) + 32), POOL16((i) + 48)
static const char name_pool[256][4] = {POOL64(0), POOL64(64), POOL64(128), POOL64(192)};

/* The way of the calling thread's string cache that holds s, or -1; *set
 * its set when found. */
static int cache_way(const char *s, unsigned *set)
{
        for (unsigned i = 0; i < GT_STRCACHE_SIZE; i++) {
                if (gt_self->strcache[i].key == (uintptr_t)s) {
                        if (set)
                                *set = i / GT_STRCACHE_WAYS;
                        return (int)(i % GT_STRCACHE_WAYS);
                }
        }
        return -1;
}

static void region_named(const char *name)
{
        gtrace_region_begin(name);
        gtrace_region_end();
}

/*
 * The string cache has two ways per set: two names of one set both stay
 * (the newer first), a hit in the second way moves nothing, and a third
 * name drops the older of the two.  The events name the right strings
 * throughout, whichever way their ids came from.
 */
START_TEST(test_string_cache_two_ways)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        ck_assert_int_eq(gtrace_start(&o), 0);
        /* Which set each name falls in, for three of one set. */
        unsigned set_of[256], count[GT_STRCACHE_SIZE / GT_STRCACHE_WAYS] = {0};
        int pick[3] = {-1, -1, -1};
        for (int i = 0; i < 256; i++) {
                region_named(name_pool[i]);
                ck_assert_int_eq(cache_way(name_pool[i], &set_of[i]), 0);
                count[set_of[i]]++;
        }
        unsigned set = 0;
        while (count[set] < 3)
                set++; /* 256 names in 32 sets: some set has 8 */
        for (int i = 0, n = 0; i < 256 && n < 3; i++)
                if (set_of[i] == set)
                        pick[n++] = i;
        const char *a = name_pool[pick[0]], *b = name_pool[pick[1]], *c = name_pool[pick[2]];
        /* A session of these three alone (a stop empties the cache; the
         * set of an address stays). */
        gtrace_stop();
        ck_assert_int_eq(gtrace_start(&o), 0);
        region_named(c);
        region_named(a);
        region_named(b);
        ck_assert_int_eq(cache_way(b, NULL), 0);
        ck_assert_int_eq(cache_way(a, NULL), 1);
        for (int k = 0; k < 3; k++) {
                region_named(a); /* the second way: the fast path */
                region_named(b);
                ck_assert_int_eq(cache_way(b, NULL), 0);
                ck_assert_int_eq(cache_way(a, NULL), 1);
        }
        /* In a new generation the first use of a name takes the general
         * path, which marks it: found in the second way, it stays there. */
        ck_assert_int_eq(gtrace_flush(), 0);
        region_named(a);
        ck_assert_int_eq(cache_way(a, NULL), 1);
        ck_assert_int_eq(cache_way(b, NULL), 0);
        region_named(b);
        region_named(c);
        ck_assert_int_eq(cache_way(c, NULL), 0);
        ck_assert_int_eq(cache_way(b, NULL), 1);
        ck_assert_int_eq(cache_way(a, NULL), -1);
        for (unsigned w = 0; w < GT_STRCACHE_WAYS; w++)
                ck_assert_uint_eq(gt_self->strcache[set * GT_STRCACHE_WAYS + w].gen,
                                  atomic_load(&gt.gen));
        struct names nm = dump_stop_region_names("two ways");
        const char *want[] = {c, a, b, a, b, a, b, a, b, a, b, c};
        ck_assert_uint_eq(nm.n, 12);
        for (unsigned i = 0; i < 12; i++)
                ck_assert_str_eq(nm.text[i], want[i]);
}
END_TEST

/* The table bounds are options: past max_strings a name reads as the
 * table-full marker, past max_stacks an event carries no stack, and the
 * events themselves are all there. */
START_TEST(test_table_bounds_are_options)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 100000);
        o.max_strings = 64;
        o.max_stacks = 64;
        o.stack_depth = 64;
        ck_assert_int_eq(gtrace_start(&o), 0);
        char name[32];
        for (int i = 0; i < 200; i++) {
                snprintf(name, sizeof(name), "counter-%d", i);
                gtrace_counter(name, i);
        }
        /* Up to 2 x 60 distinct stacks: two leaves, at every depth until
         * stack_depth caps them. */
        for (int k = 0; k < 100; k++) {
                rec(k);
                rec_other(k);
        }
        struct rt_summary s = dump_and_read("bounds");
        gtrace_stop();
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), 200);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), 200);
        /* Some of the 64 slots hold the marker and the category: at least
         * 200 - 64 names did not fit. */
        ck_assert_uint_ge(s.counters_table_full, 200 - 64);
        ck_assert_uint_lt(s.counters_table_full, 200);
        ck_assert_uint_gt(s.logs_without_stack, 0);
        ck_assert_uint_lt(s.logs_without_stack, 200);
}
END_TEST

/* Out-of-range bounds are refused; a struct from an older gtrace.h (its
 * size ends before the bounds) has whatever follows it ignored. */
START_TEST(test_table_bounds_checked)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        o.max_strings = 63;
        ck_assert_int_eq(gtrace_start(&o), -EINVAL);
        o.max_strings = (1u << 24) + 1;
        ck_assert_int_eq(gtrace_start(&o), -EINVAL);
        o = opts(dir, 1000);
        o.stack_bytes = 4096;
        ck_assert_int_eq(gtrace_start(&o), -EINVAL);
        o = opts(dir, 1000);
        o.max_tasks = 1;
        ck_assert_int_eq(gtrace_start(&o), -EINVAL);
        o.size = (uint32_t)offsetof(struct gtrace_options, max_strings);
        ck_assert_int_eq(gtrace_start(&o), 0); /* max_tasks = 1 is beyond its size */
        gtrace_stop();
        o.size = 8; /* shorter than any version */
        ck_assert_int_eq(gtrace_start(&o), -EINVAL);
}
END_TEST

/* Regression: a thread's last-stack cache outlived gtrace_stop() and pointed
 * into the freed stack table when tracing started again. */
START_TEST(test_regress_stale_stack_cache_after_restart)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 1000);
        for (int round = 0; round < 3; round++) {
                ck_assert_int_eq(gtrace_start(&o), 0);
                log_from_here();
                /* Fill the fresh table so the old address is reused. */
                for (int i = 0; i < 64; i++)
                        gtrace_counter("filler", i);
                struct rt_summary s = dump_and_read("restart");
                gtrace_stop();
                uintptr_t fn = (uintptr_t)log_from_here;
                ck_assert(s.last_log_pc0 > fn && s.last_log_pc0 < fn + 256);
        }
}
END_TEST

/* Regression: a thread that dropped an event could write again later in the
 * same generation once the advancer had returned chunks to the pool, so a
 * REGION_END could follow a dropped REGION_BEGIN ("REGION_END with no open
 * region").  Several threads, a tiny pool, generations cut every ms. */
static void *drop_worker(void *arg)
{
        (void)arg;
        for (int i = 0; i < 200000; i++) {
                gtrace_region_begin("outer");
                gtrace_region_begin("inner");
                gtrace_counter("c", i);
                gtrace_region_end();
                gtrace_region_end();
        }
        return NULL;
}

START_TEST(test_regress_drop_then_write_in_same_generation)
{
        const char *dir = rt_tmpdir();
        /* Drops must happen for the test to tell anything, and how many do
         * depends on how fast the threads are against the advancer (which
         * cuts as soon as the pool runs out): under a sanitizer the threads
         * are slower, so the pool shrinks until some are dropped. */
        static const uint32_t chunks[] = {256, 32, 4};
        struct gtrace_stats st = {0};
        char path[4096];
        for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]) && !st.events_lost; k++) {
                struct gtrace_options o = opts(dir, 20);
                o.chunk_bytes = 4096;
                o.max_buffer_bytes = chunks[k] * 4096u;
                o.ring_generations = 1024;
                o.ring_bytes = 1ull << 30;
                ck_assert_int_eq(gtrace_start(&o), 0);
                pthread_t th[3];
                for (int i = 0; i < 3; i++)
                        pthread_create(&th[i], NULL, drop_worker, NULL);
                for (int i = 0; i < 3; i++)
                        pthread_join(th[i], NULL);
                ck_assert_int_eq(gtrace_dump("drops", path, sizeof(path)), 0);
                gtrace_get_stats(&st);
                gtrace_stop();
        }
        ck_assert_uint_gt(st.events_lost, 0);
        struct rt_summary s;
        ck_assert_int_eq(rt_read_dump(path, &s), 0);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN) + RT_COUNT(&s, REGION_END) +
                                  RT_COUNT(&s, COUNTER) + s.lost,
                          3 * 200000 * 5);
}
END_TEST

/*
 * A slot that dropped an event has no room any more, even where its chunk
 * still has some: a log too long for what is left, with no chunk to take,
 * drops, and so does every later event of the generation, through the
 * general path and the fast path alike; else the thread's stream would not
 * be a prefix of what it emitted.
 */
START_TEST(test_drop_leaves_no_room)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 3600000);
        o.chunk_bytes = 4096;
        o.max_buffer_bytes = 2 * 4096; /* two chunks for the whole process (the least) */
        char text[1001];
        memset(text, 'x', 1000);
        text[1000] = '\0';
        /* Taking the second chunk wakes the advancer early (half the pool),
         * and a generation it cuts before the drop gives the chunks back:
         * only a run whose events all fell in one generation tells. */
        int tries = 0;
        struct rt_summary s;
        do {
                ck_assert_int_lt(tries++, 50);
                ck_assert_int_eq(gtrace_start(&o), 0);
                for (int i = 0; i < 6; i++)
                        gtrace_log("big", text); /* three to a chunk, ~1 KiB left in each */
                gtrace_log("big", text);         /* not in the second's ~1 KiB, no third: dropped */
                gtrace_counter("after", 1);      /* would fit in what is left */
                gtrace_region_begin("after");
                gtrace_region_end();
                s = dump_and_read("no room after a drop");
                gtrace_stop();
        } while (s.generations != 1);
        ck_assert_uint_eq(RT_COUNT(&s, LOG), 6);
        ck_assert_uint_eq(RT_COUNT(&s, COUNTER), 0);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 0);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_END), 0);
        ck_assert_uint_eq(s.lost, 4);
}
END_TEST

START_TEST(test_limits_drops_counted)
{
        /* Two 4 KiB chunks for the whole process and a long period: most
         * events must be dropped, counted, and the dump must still validate. */
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 60000);
        o.chunk_bytes = 4096;
        o.max_buffer_bytes = 8192;
        o.ring_generations = 1024; /* keep every generation: the sums below are exact */
        ck_assert_int_eq(gtrace_start(&o), 0);
        for (int i = 0; i < 100000; i++) {
                gtrace_region_begin("r");
                gtrace_counter("c", i);
                gtrace_region_end();
        }
        struct gtrace_stats before;
        gtrace_get_stats(&before);
        char path[4096];
        ck_assert_int_eq(gtrace_dump("drops", path, sizeof(path)), 0);
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        gtrace_stop();
        /* How many drop depends on how soon the advancer (woken when
         * buffers are half full) gets a CPU; that some do, and that every
         * event is either recorded or counted, does not. */
        ck_assert_uint_gt(st.events_lost, 0);
        struct rt_summary s;
        ck_assert_int_eq(rt_read_dump(path, &s), 0);
        ck_assert_uint_eq(s.lost, st.events_lost);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN) + RT_COUNT(&s, COUNTER) +
                                  RT_COUNT(&s, REGION_END) + s.lost,
                          300000);
        /* Memory stayed within its bound. */
        ck_assert_uint_le(before.bytes_buffered, 8192);
}
END_TEST

START_TEST(test_generation_self_contained)
{
        /* A region opened long ago, in a generation the ring has since
         * dropped, still appears in the oldest kept generation with its name
         * and its real start time. */
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 2);
        o.ring_generations = 2;
        ck_assert_int_eq(gtrace_start(&o), 0);
        gtrace_region_begin("long-running-request");
        uint64_t task = gtrace_task_begin("background-job", 0);
        uint64_t f = gtrace_fiber_create("parked");
        gtrace_fiber_run(f);
        gtrace_fiber_block("lock");
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(gtrace_flush(), 0);
        char path[4096];
        ck_assert_int_eq(gtrace_dump("self-contained", path, sizeof(path)), 0);
        gtrace_task_end(task);
        gtrace_region_end();
        gtrace_stop();
        struct rt_summary s;
        ck_assert_int_eq(rt_read_dump(path, &s), 0);
        ck_assert_uint_le(s.generations, 2);
        ck_assert_uint_gt(s.first_gen, 5);
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 0);
        ck_assert_uint_ge(s.first_gen_region_status, 1);
        ck_assert_str_eq(s.first_gen_region, "long-running-request");
        ck_assert_uint_lt(s.first_gen_region_start, s.first_gen_start);
        ck_assert_uint_ge(RT_COUNT(&s, TASK_STATUS), 1);
        ck_assert_uint_ge(RT_COUNT(&s, FIBER_STATUS), 1);
}
END_TEST

static void *short_lived(void *arg)
{
        char name[32];
        snprintf(name, sizeof(name), "short-%ld", (long)(intptr_t)arg);
        gtrace_thread_name(name);
        for (int i = 0; i < 100; i++) {
                gtrace_region_begin("work");
                gtrace_region_end();
        }
        return NULL;
}

START_TEST(test_thread_exit_keeps_events)
{
        /* Threads that exit hand their buffers to the advancer: all their
         * events are in the dump, and (under ASan) nothing leaks. */
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, 5);
        o.ring_generations = 1024;
        ck_assert_int_eq(gtrace_start(&o), 0);
        for (long round = 0; round < 20; round++) {
                pthread_t th[4];
                for (long i = 0; i < 4; i++)
                        pthread_create(&th[i], NULL, short_lived, (void *)(intptr_t)(round * 4 + i));
                for (int i = 0; i < 4; i++)
                        pthread_join(th[i], NULL);
        }
        struct rt_summary s = dump_and_read("exit");
        gtrace_stop();
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 80 * 100);
        ck_assert_uint_eq(RT_COUNT(&s, THREAD_NAME), 80);
        ck_assert_uint_eq(s.threads_seen, 64); /* the summary tracks at most 64 tids */
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
/* GCC 12's AddressSanitizer has no fork handlers around its allocator (LLVM
 * added them later): a child forked while another thread holds one of its
 * locks deadlocks on its first malloc.  glibc's malloc is fork-safe, so the
 * Release build forks while the advancer runs every 5 ms; under ASan the test
 * forks only once the advancer sleeps in poll(2) for a long period. */
enum { FORK_PERIOD_MS = 60000 };

static int read_small(const char *path, char *buf, size_t n)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t r = read(fd, buf, n - 1);
        close(fd);
        if (r < 0)
                return -1;
        buf[r] = '\0';
        return 0;
}

static void wait_advancer_parked(void)
{
        long tid = -1;
        DIR *d = opendir("/proc/self/task");
        ck_assert_ptr_nonnull(d);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
                char p[300], comm[32];
                snprintf(p, sizeof(p), "/proc/self/task/%s/comm", e->d_name);
                if (e->d_name[0] != '.' && read_small(p, comm, sizeof(comm)) == 0 &&
                    strcmp(comm, "gtrace-advance\n") == 0)
                        tid = atol(e->d_name);
        }
        closedir(d);
        ck_assert_int_gt(tid, 0);
        /* Five samples in a row inside poll(2) (syscall 7), 2 ms apart: the
         * period is a minute, so this is the advancer's sleep. */
        char p[64], sc[256];
        snprintf(p, sizeof(p), "/proc/self/task/%ld/syscall", tid);
        int in_poll = 0;
        for (int i = 0; i < 2500 && in_poll < 5; i++) {
                ck_assert_int_eq(read_small(p, sc, sizeof(sc)), 0);
                in_poll = strncmp(sc, "7 ", 2) == 0 ? in_poll + 1 : 0;
                usleep(2000);
        }
        ck_assert_int_eq(in_poll, 5);
}
#else
enum { FORK_PERIOD_MS = 5 };

static void wait_advancer_parked(void)
{
}
#endif

START_TEST(test_fork_child_traces_cleanly)
{
        const char *dir = rt_tmpdir();
        struct gtrace_options o = opts(dir, FORK_PERIOD_MS);
        o.ring_generations = 1024; /* however long the child takes, keep the parent's log */
        ck_assert_int_eq(gtrace_start(&o), 0);
        gtrace_region_begin("parent-before-fork");
        wait_advancer_parked();
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                /* The child: its first event restarts tracing from scratch. */
                gtrace_region_begin("child-region");
                gtrace_log("child", "hello from the child");
                gtrace_region_end();
                char path[4096];
                int r = gtrace_dump("child", path, sizeof(path));
                gtrace_stop();
                _exit(r == 0 ? 0 : 10);
        }
        gtrace_log("parent", "parent after fork");
        gtrace_region_end();
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        char path[4096];
        ck_assert_int_eq(gtrace_dump("parent", path, sizeof(path)), 0);
        gtrace_stop();

        struct rt_summary parent;
        ck_assert_int_eq(rt_read_dump(path, &parent), 0);
        ck_assert_uint_eq(parent.meta.pid, (uint64_t)getpid());
        ck_assert_uint_eq(RT_COUNT(&parent, LOG), 1);
        ck_assert_str_eq(parent.last_log, "parent after fork");

        /* The child's dump: its own pid, only its own events. */
        char child_path[1024] = "";
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "ls %s/*-%d-*.gtrace > %s/child.txt", dir, pid, dir);
        ck_assert_int_eq(system(cmd), 0);
        char list[1200];
        snprintf(list, sizeof(list), "%s/child.txt", dir);
        FILE *f = fopen(list, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(child_path, sizeof(child_path), f));
        fclose(f);
        child_path[strcspn(child_path, "\n")] = '\0';
        struct rt_summary child;
        ck_assert_int_eq(rt_read_dump(child_path, &child), 0);
        ck_assert_uint_eq(child.meta.pid, (uint64_t)pid);
        ck_assert_uint_eq(RT_COUNT(&child, REGION_BEGIN), 1);
        ck_assert_str_eq(child.last_log, "hello from the child");
}
END_TEST

/* The handler chains to the previous disposition, so the exit status is
 * what it would have been without gtrace: killed by the signal.  Under
 * AddressSanitizer the previous handler is ASan's, which reports and exits. */
static void assert_died_of(int status, int sig)
{
#if defined(__SANITIZE_ADDRESS__)
        if (WIFEXITED(status)) {
                ck_assert_int_ne(WEXITSTATUS(status), 0);
                return;
        }
#endif
        ck_assert(WIFSIGNALED(status));
        ck_assert_int_eq(WTERMSIG(status), sig);
}

/* Waits until gtrace has finished n more generations. */
static void wait_generations(uint64_t n)
{
        struct gtrace_stats st;
        gtrace_get_stats(&st);
        for (uint64_t until = st.generations + n; st.generations < until; gtrace_get_stats(&st))
                usleep(500);
}

/* Emits until the process dies. */
static void *emit_forever(void *arg)
{
        (void)arg;
        for (uint64_t i = 0;; i++) {
                gtrace_region_begin("spin");
                gtrace_counter("i", (int64_t)i);
                gtrace_region_end();
        }
        return NULL;
}

/* Two threads pass one fiber back and forth (run, yield) until the process
 * dies: each run on one thread follows a yield on the other. */
static uint64_t pingpong_fiber;
static atomic_int pingpong_turn;

static void *pingpong(void *arg)
{
        int me = (int)(intptr_t)arg;
        for (;;) {
                if (atomic_load(&pingpong_turn) != me) {
                        sched_yield(); /* two CPUs: let the other player run */
                        continue;
                }
                gtrace_fiber_run(pingpong_fiber);
                gtrace_region_begin("turn");
                gtrace_region_end();
                gtrace_fiber_yield();
                atomic_store(&pingpong_turn, !me);
        }
        return NULL;
}

/* Reads the crash dump at path into *s: it must validate, hold last_words
 * once, and end with the crash handler's note for sig (its category, the
 * signal's name first). */
static void read_crash_dump(const char *path, const char *last_words, const char *sig,
                            struct rt_summary *s)
{
        rt_watch[0] = last_words;
        int rc = rt_read_dump(path, s);
        rt_watch[0] = NULL;
        ck_assert_msg(rc == 0, "%s: %s at %llu", path, s->err.msg,
                      (unsigned long long)s->err.offset);
        ck_assert_uint_eq(s->logs_with[0], 1);
        ck_assert_str_eq(s->last_log_category, "gtrace.crash");
        size_t n = strlen(sig);
        ck_assert_msg(strncmp(s->last_log, sig, n) == 0 && s->last_log[n] == ' ', "%s",
                      s->last_log);
}

/*
 * A thread crashes while the advancer pushes a generation every millisecond
 * into a two-entry ring, so every push evicts (frees) the oldest entry, and
 * while other threads emit and pass a fiber between them.  The crash handler
 * holds the advancer off, reads the ring, and cuts the generation it seals
 * (crash.c): the dump must validate -- a fiber's run on one thread never
 * without the yield on the other before it -- and hold the crashing
 * thread's last log.
 */
START_TEST(test_crash_while_the_ring_turns)
{
        const char *base = rt_tmpdir();
        for (int round = 0; round < 8; round++) {
                char dir[1100];
                snprintf(dir, sizeof(dir), "%s/round%d", base, round);
                ck_assert_int_eq(mkdir(dir, 0700), 0);
                pid_t pid = fork();
                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        struct gtrace_options o = opts(dir, 1);
                        o.ring_generations = 2;
                        if (gtrace_start(&o) != 0)
                                _exit(20);
                        pthread_t th[3];
                        pingpong_fiber = gtrace_fiber_create("pingpong");
                        if (pthread_create(&th[0], NULL, emit_forever, NULL) != 0 ||
                            pthread_create(&th[1], NULL, pingpong, (void *)0) != 0 ||
                            pthread_create(&th[2], NULL, pingpong, (void *)1) != 0)
                                _exit(21);
                        /* A few generations in the ring first, then a
                         * point in the advancer's cycle that varies by round. */
                        wait_generations(3);
                        usleep((useconds_t)round * 130);
                        gtrace_log("fatal", "aborting now");
                        abort();
                }
                int status;
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                assert_died_of(status, SIGABRT);
                const char *path = rt_find_dump(dir);
                ck_assert_msg(path != NULL, "round %d: no crash dump in %s", round, dir);
                struct rt_summary s;
                read_crash_dump(path, "aborting now", "SIGABRT", &s);
        }
}
END_TEST

static sigjmp_buf survive_env;

static void survive(int sig)
{
        (void)sig;
        siglongjmp(survive_env, 1);
}

/*
 * A process whose own handler recovers from the signal: gtrace leaves a
 * crash dump and chains to that handler.  The crash dump must validate (the
 * handler cuts the generation it seals, so no thread's events are copied up
 * to a different moment than another's), and so must everything the process
 * traces afterwards (the advance thread finishes the cycle the handler cut:
 * status records for the next generation, the cut one flushed).
 */
START_TEST(test_crash_survived_keeps_tracing)
{
        const char *dir = rt_tmpdir();
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct sigaction sa = {.sa_handler = survive};
                sigemptyset(&sa.sa_mask);
                if (sigaction(SIGSEGV, &sa, NULL) != 0)
                        _exit(20);
                struct gtrace_options o = opts(dir, 1);
                o.ring_generations = 1024; /* keep every generation after the crash */
                if (gtrace_start(&o) != 0)
                        _exit(21);
                pthread_t th[2];
                pingpong_fiber = gtrace_fiber_create("pingpong");
                if (pthread_create(&th[0], NULL, pingpong, (void *)0) != 0 ||
                    pthread_create(&th[1], NULL, pingpong, (void *)1) != 0)
                        _exit(22);
                wait_generations(3);
                if (sigsetjmp(survive_env, 1) == 0) {
                        gtrace_log("fatal", "before the signal");
                        raise(SIGSEGV);
                        _exit(23); /* the handler does not return here */
                }
                gtrace_log("recovered", "after the signal");
                wait_generations(5);
                char path[4096];
                _exit(gtrace_dump("after", path, sizeof(path)) == 0 ? 0 : 24);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
        /* Two dumps: the crash's, then the one asked for after it. */
        DIR *d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        int ndumps = 0, crash_seen = 0, after_seen = 0;
        struct rt_summary crash = {0}, after = {0};
        rt_watch[0] = "before the signal";
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
                size_t n = strlen(e->d_name);
                if (n < 7 || strcmp(e->d_name + n - 7, ".gtrace") != 0 || e->d_name[0] == '.')
                        continue;
                char path[1400];
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                struct rt_summary s;
                int rc = rt_read_dump(path, &s);
                ck_assert_msg(rc == 0, "%s: %s", path, s.err.msg);
                ndumps++;
                if (strcmp(s.last_log_category, "gtrace.crash") == 0 && s.logs_with[0] == 1) {
                        crash_seen++;
                        crash = s;
                }
                if (strcmp(s.last_log, "after the signal") == 0) {
                        after_seen++;
                        after = s;
                }
        }
        closedir(d);
        rt_watch[0] = NULL;
        ck_assert_int_eq(ndumps, 2);
        ck_assert_int_eq(crash_seen, 1);
        ck_assert_int_eq(after_seen, 1);
        /* The generation the handler cut and sealed reached the ring too,
         * and none was lost around it: the later dump holds every
         * generation, that one included, and the log it ends with. */
        ck_assert_uint_eq(after.gens_lost, 0);
        ck_assert_uint_eq(after.generations, after.last_gen - after.first_gen + 1);
        ck_assert_uint_le(after.first_gen, crash.last_gen);
        ck_assert_uint_gt(after.last_gen, crash.last_gen);
        ck_assert_uint_eq(after.logs_with[0], 1);
}
END_TEST

START_TEST(test_crash_leaves_valid_dump)
{
        const char *dir = rt_tmpdir();
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct gtrace_options o = opts(dir, 20);
                if (gtrace_start(&o) != 0)
                        _exit(20);
                for (int i = 0; i < 1000; i++) {
                        gtrace_region_begin("busy");
                        gtrace_region_end();
                }
                gtrace_region_begin("about-to-crash");
                gtrace_log("fatal", "last words before the crash");
                /* A store into the zero page: SIGSEGV (not NULL itself, which
                 * UBSan would catch before the fault happens; the address
                 * comes through a volatile so the compiler cannot see it). */
                static volatile uintptr_t zero_page = 64;
                *(volatile int *)zero_page = 42;
                _exit(21);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        assert_died_of(status, SIGSEGV);
        const char *path = rt_find_dump(dir);
        ck_assert_ptr_nonnull(path);
        struct rt_summary s;
        read_crash_dump(path, "last words before the crash", "SIGSEGV", &s);
        ck_assert_str_eq(s.meta.origin, "crash");
        ck_assert_uint_eq(s.meta.signal, SIGSEGV);
        ck_assert_str_eq(s.meta.reason, "crash: SIGSEGV");
        ck_assert_uint_eq(RT_COUNT(&s, REGION_BEGIN), 1001);
        /* The handler's note says where the fault struck and on what
         * address, with the stack from there, the faulting instruction
         * first. */
        ck_assert_msg(strncmp(s.last_log, "SIGSEGV at 0x", 13) == 0, "%s", s.last_log);
        ck_assert_msg(strstr(s.last_log, ", address 0x40") != NULL, "%s", s.last_log);
        ck_assert_uint_ge(s.last_log_npcs, 2);
        ck_assert_uint_eq(s.last_log_pc0, strtoull(s.last_log + 11, NULL, 16));
}
END_TEST

START_TEST(test_crash_daemon_unreachable_dumps_locally)
{
        /* A daemon is configured but not there: the crash handler's attempt
         * to reach it fails fast and the crash dump is written locally. */
        const char *dir = rt_tmpdir();
        char sock[1200];
        snprintf(sock, sizeof(sock), "%s/no-such-daemon.sock", dir);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct gtrace_options o = {.period_ms = 20, .dump_dir = dir, .socket_path = sock};
                if (gtrace_start(&o) != 0)
                        _exit(20);
                gtrace_log("fatal", "nobody is listening");
                static volatile uintptr_t zero_page = 64;
                *(volatile int *)zero_page = 42;
                _exit(21);
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        assert_died_of(status, SIGSEGV);
        const char *path = rt_find_dump(dir);
        ck_assert_ptr_nonnull(path);
        struct rt_summary s;
        read_crash_dump(path, "nobody is listening", "SIGSEGV", &s);
        ck_assert_str_eq(s.meta.origin, "crash");
}
END_TEST

START_TEST(test_abort_chains_to_default)
{
        const char *dir = rt_tmpdir();
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct gtrace_options o = opts(dir, 1000);
                if (gtrace_start(&o) != 0)
                        _exit(20);
                gtrace_log("fatal", "aborting");
                abort();
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        assert_died_of(status, SIGABRT);
        const char *path = rt_find_dump(dir);
        ck_assert_ptr_nonnull(path);
        struct rt_summary s;
        read_crash_dump(path, "aborting", "SIGABRT", &s);
}
END_TEST

int main(void)
{
        Suite *suite = suite_create("runtime");
        TCase *core = tcase_create("core");
        tcase_add_test(core, test_api_noop_when_stopped);
        tcase_add_test(core, test_api_start_twice_and_bad_options);
        tcase_add_test(core, test_api_fast_paths_after_stop);
        tcase_add_test(core, test_api_env_bad_value);
        tcase_add_test(core, test_generation_self_contained);
        tcase_add_test(core, test_stack_starts_at_caller);
#if defined(__x86_64__)
        tcase_add_test(core, test_stack_ends_at_data);
#endif
        tcase_add_test(core, test_stack_through_library_loaded_later);
        tcase_add_test(core, test_stack_code_table_grows);
        tcase_add_test(core, test_stack_cache_follows_the_stack);
        tcase_add_test(core, test_stack_depth_cap);
        tcase_add_test(core, test_stack_depth_changes_across_restart);
        tcase_add_test(core, test_regress_stats_generations_lost_stays);
        tcase_add_test(core, test_log_text_every_length);
        tcase_add_test(core, test_string_cache_rewritten_buffer);
        tcase_add_test(core, test_string_cache_long_names);
        tcase_add_test(core, test_string_cache_two_ways);
        tcase_add_test(core, test_log_text_at_page_end);
        tcase_add_test(core, test_table_bounds_are_options);
        tcase_add_test(core, test_table_bounds_checked);
#if defined(__x86_64__)
        tcase_add_test(core, test_stack_cache_prefix);
#endif
        tcase_add_test(core, test_regress_stale_stack_cache_after_restart);
        suite_add_tcase(suite, core);
        TCase *limits = tcase_create("limits");
        tcase_add_test(limits, test_drop_leaves_no_room);
        tcase_add_test(limits, test_limits_drops_counted);
        tcase_add_test(limits, test_regress_drop_then_write_in_same_generation);
        suite_add_tcase(suite, limits);
        TCase *proc = tcase_create("processes");
        tcase_set_timeout(proc, 60);
        tcase_add_test(proc, test_thread_exit_keeps_events);
        tcase_add_test(proc, test_crash_while_the_ring_turns);
        tcase_add_test(proc, test_crash_survived_keeps_tracing);
        tcase_add_test(proc, test_abort_chains_to_default);
        suite_add_tcase(suite, proc);
        /* Not under TSan (tag no-tsan; tests/cmake/runtime.cmake): it
         * cannot start threads in a child forked from a threaded process,
         * and it takes the crash tests' deliberate SIGSEGV for a bug of
         * its own. */
        TCase *child = tcase_create("children");
        tcase_set_tags(child, "no-tsan");
        tcase_set_timeout(child, 60);
        tcase_add_test(child, test_fork_child_traces_cleanly);
        tcase_add_test(child, test_crash_leaves_valid_dump);
        tcase_add_test(child, test_crash_daemon_unreachable_dumps_locally);
        suite_add_tcase(suite, child);
        SRunner *sr = srunner_create(suite);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? 1 : 0;
}
