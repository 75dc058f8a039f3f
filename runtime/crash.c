/* SPDX-License-Identifier: MIT */
/*
 * The fatal-signal handler (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT).
 *
 * When the process is about to die, the most valuable data is the current,
 * unfinished generation: the last moments before the crash.  The handler
 * seals it without locks or allocation -- every thread's committed bytes
 * (a slot's cursor only ever moves past complete events, so each thread contributes a
 * consistent prefix of its stream), the status events the advancer wrote for
 * this generation, the strings and stacks it references -- and hands it,
 * with the ring, to gtraced (CRASH) or writes a crash dump itself.
 *
 * Then it gets out of the way: the previous disposition is restored and the
 * signal is delivered again (a fault re-executes; a sent signal is
 * re-raised), or a previous handler is called, so exit status and core dumps
 * are what they would have been without gtrace.
 *
 * The memory for the sealed blob is reserved at gtrace_start() with
 * MAP_NORESERVE: it costs nothing until a crash touches it.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"
#include "proto/event.h"
#include "proto/varint.h"

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define NFATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))
static struct sigaction previous[NFATAL];
static bool installed;
static atomic_int crashing;
static uint8_t *seal_buf;
#define CRASH_MAX_IOV 1025 /* the ring (at most 1024) and a partly sent generation */
static struct iovec crash_iov[CRASH_MAX_IOV];
static size_t seal_cap;

/* ---- sealing: a bounded writer over a fixed buffer ------------------------ */

struct sbuf {
        uint8_t *p;
        size_t len, cap;
        bool full;
};

static void sb_raw(struct sbuf *b, const void *d, size_t n)
{
        if (n == 0)
                return; /* d may be NULL then (no status records yet) */
        if (b->full || b->len + n > b->cap) {
                b->full = true;
                return;
        }
        memcpy(b->p + b->len, d, n);
        b->len += n;
}

static void sb_u8(struct sbuf *b, uint8_t v)
{
        sb_raw(b, &v, 1);
}

static void sb_uv(struct sbuf *b, uint64_t v)
{
        uint8_t tmp[PROTO_VARINT_MAX];
        sb_raw(b, tmp, (size_t)(proto_put_uvarint(tmp, v) - tmp));
}

static void sb_bytes(struct sbuf *b, const void *d, size_t n)
{
        sb_uv(b, n);
        sb_raw(b, d, n);
}

static void seal_string(void *ctx, const struct gt_str *e)
{
        struct sbuf *b = ctx;
        sb_u8(b, PROTO_EV_STRING);
        sb_uv(b, e->id);
        sb_bytes(b, e->data, e->len);
}

static void seal_stack(void *ctx, const struct gt_stack *e)
{
        struct sbuf *b = ctx;
        uint8_t frames[GT_MAX_STACK_DEPTH * PROTO_VARINT_MAX];
        uint8_t *p = frames;
        for (uint32_t i = 0; i < e->n; i++)
                p = proto_put_uvarint(p, e->pcs[i]);
        sb_u8(b, PROTO_EV_STACK);
        sb_uv(b, e->id);
        sb_bytes(b, frames, (size_t)(p - frames));
}

/* Counts the events in a run of complete batch events (the END totals
 * must be exact; the slot's own counter may be mid-update). */
static uint64_t count_events(const uint8_t *p, const uint8_t *end)
{
        uint64_t n = 0;
        while (p < end) {
                const struct proto_event_spec *sp = proto_event_spec(*p++);
                if (!sp)
                        break;
                for (unsigned i = 0; i < sp->nargs; i++) {
                        uint64_t v;
                        if (proto_get_uvarint(&p, end, &v) < 0)
                                return n;
                        if (sp->args[i].kind == PA_BYTES) {
                                if (v > (uint64_t)(end - p))
                                        return n;
                                p += v;
                        }
                }
                n++;
        }
        return n;
}

size_t gt_seal_current(uint8_t *buf, size_t cap, uint64_t gen)
{
        struct sbuf b = {.p = buf, .cap = cap};
        uint64_t nbatches = 0, nevents = 0, lost = 0;

        if (!gen || !buf)
                return 0;
        struct gt_clock_ref ref;
        ref.units = gt_clock_now();
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ref.mono_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        clock_gettime(CLOCK_REALTIME, &ts);
        ref.wall_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        /* No time to calibrate: extrapolate from the start baseline. */
        uint64_t dn = ref.mono_ns - gt_clock.base_mono_ns;
        uint64_t du = ref.units - gt_clock.base_units;
        ref.freq = gt_clock.source == GT_CLOCK_MONOTONIC || dn == 0
                           ? 1000000000u
                           : (uint64_t)((double)du * 1e9 / (double)dn);
        /* The generation's own start (the advance thread is held, or the
         * value is at worst the next one's): gtraced knows a copy of gen
         * it also gets finished by its number and start. */
        uint64_t start = gt_gen_start_units();
        if (!start || start > ref.units)
                start = ref.units;
        /* Generations the ring dropped that no generation in it reports
         * yet (the next one the advancer assembles would, or the one it is
         * assembling): said here, or a dump of a process that dies would
         * show them missing, unexplained.  A process that lives on reports
         * them again in the finished copy, which gtraced keeps instead of
         * this one.  Read with the ring frozen (crash_handler): a cycle the
         * handler could not hold has its generation refused, and that
         * counted, or else its losses are still taken. */
        uint64_t dropped_bytes = 0;
        uint64_t dropped = gt_ring_dropped(&gt.ring, &dropped_bytes);
        uint8_t head[GT_GEN_HEADER_MAX];
        sb_raw(&b, head,
               gt_encode_generation_header(head, gen, &ref, start, dropped, dropped_bytes));

        /* The threads' lists may be mid-update on another thread: try the
         * lock, and walk them anyway if it is held (we are dying; a torn
         * list is read, never written). */
        bool locked = pthread_mutex_trylock(&gt.threads_lock) == 0;
        for (int list = 0; list < 2; list++)
                for (struct gt_thread *t = list ? gt.exited : gt.threads; t; t = t->next) {
                        struct gt_str *n = atomic_load_explicit(&t->name, memory_order_relaxed);
                        if (n)
                                gt_str_mark(n, gen);
                }
        gt_str_foreach(gen, seal_string, &b);
        gt_stack_foreach(gen, seal_stack, &b);
        /* Every known thread (status batches may name silent ones) and the
         * tracer's pseudo-thread 0. */
        sb_u8(&b, PROTO_EV_THREAD);
        sb_uv(&b, 0);
        sb_uv(&b, 0);
        for (int list = 0; list < 2; list++)
                for (struct gt_thread *t = list ? gt.exited : gt.threads; t; t = t->next) {
                        struct gt_str *n = atomic_load_explicit(&t->name, memory_order_relaxed);
                        sb_u8(&b, PROTO_EV_THREAD);
                        sb_uv(&b, t->tid);
                        sb_uv(&b, n ? n->id : 0);
                }
        /* The advancer's status records for this generation, unless it is
         * writing them right now; then only threads that wrote their own
         * status (their first chunk starts with it) can be included. */
        const uint8_t *st;
        size_t stlen;
        uint64_t stb, ste;
        bool have_status = gt_status_records(gen, &st, &stlen, &stb, &ste);
        if (have_status) {
                sb_raw(&b, st, stlen);
                nbatches += stb;
                nevents += ste;
        }
        for (int list = 0; list < 2; list++)
                for (struct gt_thread *t = list ? gt.exited : gt.threads; t; t = t->next) {
                        struct gt_slot *s = &t->slot[gen & 1];
                        if (s->gen != gen)
                                continue;
                        if (!have_status && (!s->head || !gt_chunk_used(s, s->head) ||
                                             s->head->data[0] != PROTO_EV_THREAD_STATUS))
                                continue;
                        /* Read once: the thread may still be dropping
                         * events, and the last batch and the totals must
                         * agree. */
                        uint64_t slot_lost = s->lost_total;
                        for (struct gt_chunk *c = s->head, *next; c; c = next) {
                                /* The thread may still be writing.  The chunk
                                 * that was its tail when looked at is the last
                                 * one copied: the tail's length is the cursor
                                 * read after, and a chunk linked meanwhile
                                 * would follow a gap (whatever the thread
                                 * wrote into this one after the cursor read).
                                 * A chunk that is not the tail has its next
                                 * linked and its length final. */
                                bool tail = c == s->tail;
                                uint32_t used = gt_chunk_used(s, c);
                                next = tail ? NULL : c->next;
                                sb_u8(&b, PROTO_EV_BATCH);
                                sb_uv(&b, t->tid);
                                sb_uv(&b, c->base);
                                sb_uv(&b, next ? 0 : slot_lost);
                                sb_bytes(&b, c->data, used);
                                nbatches++;
                                nevents += count_events(c->data, c->data + used);
                        }
                        lost += slot_lost;
                }
        if (locked)
                pthread_mutex_unlock(&gt.threads_lock);
        sb_u8(&b, PROTO_EV_END_OF_GENERATION);
        sb_uv(&b, gen);
        sb_uv(&b, nbatches);
        sb_uv(&b, nevents);
        sb_uv(&b, lost);
        return b.full ? 0 : b.len;
}

/* ---- the handler ------------------------------------------------------------ */

static const char *signal_name(int sig)
{
        switch (sig) {
        case SIGSEGV: return "SIGSEGV";
        case SIGBUS: return "SIGBUS";
        case SIGILL: return "SIGILL";
        case SIGFPE: return "SIGFPE";
        case SIGABRT: return "SIGABRT";
        default: return "signal";
        }
}

/* Appends s to buf at n (cap bytes in all, one kept for the NUL). */
static size_t note_str(char *buf, size_t cap, size_t n, const char *s)
{
        while (*s && n + 1 < cap)
                buf[n++] = *s++;
        return n;
}

static size_t note_hex(char *buf, size_t cap, size_t n, uintptr_t v)
{
        char d[2 * sizeof(v) + 1];
        size_t k = sizeof(d) - 1;
        d[k] = '\0';
        do {
                d[--k] = "0123456789abcdef"[v & 15];
                v >>= 4;
        } while (v);
        return note_str(buf, cap, n, d + k);
}

/*
 * The crashing thread's last event: a log of category "gtrace.crash" that
 * names the signal, the instruction it struck at and, for a fault, the
 * address, with the stack walked from the interrupted frame.  A viewer then
 * shows on which thread, where and when the process died, at the end of
 * that thread's timeline.  Not on the advance thread, nor when the signal
 * struck inside one of the thread's own events: its buffer is mid-write.
 */
static void crash_note(int sig, const siginfo_t *info, const void *uctx)
{
        struct gt_thread *t = gt_self;
        if (!t || gt_on_advancer || (atomic_load_explicit(&t->seq, memory_order_relaxed) & 1))
                return;
        uintptr_t pc = 0, fp = 0;
#if defined(__x86_64__) && defined(REG_RIP)
        const ucontext_t *uc = uctx;
        pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
        fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
#else
        (void)uctx;
#endif
        char msg[96];
        size_t n = note_str(msg, sizeof(msg), 0, signal_name(sig));
        if (pc) {
                n = note_str(msg, sizeof(msg), n, " at 0x");
                n = note_hex(msg, sizeof(msg), n, pc);
        }
        if (info && info->si_code > 0 && sig != SIGABRT) {
                /* Sent by the kernel for a fault: si_addr is meaningful. */
                n = note_str(msg, sizeof(msg), n, ", address 0x");
                n = note_hex(msg, sizeof(msg), n, (uintptr_t)info->si_addr);
        }
        msg[n] = '\0';
        /* The handler may run on an alternate stack: the walk starts from
         * the interrupted frame's pointer, not from here. */
        gt_log_context(PROTO_CRASH_CATEGORY, msg, pc, fp);
}

static void chain(int sig, siginfo_t *info, void *uctx)
{
        for (size_t i = 0; i < NFATAL; i++) {
                if (fatal_signals[i] != sig)
                        continue;
                struct sigaction *old = &previous[i];
                sigaction(sig, old, NULL);
                if (old->sa_flags & SA_SIGINFO) {
                        if (old->sa_sigaction)
                                old->sa_sigaction(sig, info, uctx);
                        return;
                }
                if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
                        old->sa_handler(sig);
                        return;
                }
                /* Default: a signal that was sent (kill, raise, abort) must be
                 * sent again; a fault comes back by itself when the faulting
                 * instruction re-executes. */
                if (info->si_code <= 0 || sig == SIGABRT)
                        raise(sig);
                return;
        }
}

/*
 * How long a crash may wait for other threads, at most: for an advance cycle
 * in progress (assembling a large generation takes a while, and the thread
 * may be descheduled), for writers still inside the generation being cut,
 * and for a ring push when the advance thread could not be held.  Only a
 * crash that meets one of them waits; past the bound the dump is best
 * effort.  They bound how long a dying process lingers, so they are fixed
 * here rather than configured.
 */
#define CRASH_HOLD_MS 500
#define CRASH_CUT_MS 100
#define CRASH_RING_MS 100

/*
 * Holds the advance thread off while this handler reads what an advance
 * cycle changes (advance.c): waits for a cycle in progress, up to max_ms
 * (a large generation takes a while to assemble, and the thread may be
 * descheduled).  False when the crash happened on the advance thread inside
 * a cycle, or the cycle did not end in time: the seal is then best effort.
 */
static bool advancer_freeze(unsigned max_ms)
{
        atomic_store_explicit(&gt.adv_frozen, 1, memory_order_seq_cst);
        return gt_wait_clear(&gt.adv_busy, gt_on_advancer ? 0 : max_ms);
}

/*
 * The crash handler's own cut, made while the advance thread is held:
 * later events go to the next generation, and writers still inside gen
 * finish first (at most max_ms; never this thread, which may have crashed
 * inside a section).  The generation sealed is then as consistent as any
 * the advancer cuts: without the cut each thread's events were copied up to
 * a different moment, and a fiber run on one thread could appear without
 * the yield on another that preceded it.
 */
static void crash_cut(uint64_t gen, unsigned max_ms)
{
        gt_clock_reference(&gt.crash_cut_ref);
        gt_gen_publish_nolock(gen + 1);
        gt_writers_barrier();
        /* The lists change only under threads_lock, which the crashed thread
         * may hold: read without it (as gt_seal_current does). */
        (void)gt_wait_sections(gt_self, gt_mono_ns() + (uint64_t)max_ms * 1000000u);
}

static void crash_handler(int sig, siginfo_t *info, void *uctx)
{
        int saved_errno = errno;
        if (atomic_exchange(&crashing, 1) == 0 && atomic_load(&gt.gen) != 0) {
                /* First stop the generation from being cut, flushed or
                 * pushed under our feet; then seal what the current one
                 * holds. */
                bool adv_ok = advancer_freeze(CRASH_HOLD_MS);
                crash_note(sig, info, uctx);
                uint64_t gen = atomic_load_explicit(&gt.gen, memory_order_acquire);
                if (adv_ok)
                        crash_cut(gen, CRASH_CUT_MS);
                /* Only an advance cycle pushes to the ring, so with the
                 * advancer held the ring is still.  Otherwise it is read only
                 * between pushes: on the advance thread itself a push in
                 * progress never ends (no wait), elsewhere give a slow cycle
                 * a little more time.  Frozen before the seal, which reports
                 * the ring's losses: a push it refuses counts its own. */
                bool ring_ok = gt_ring_freeze(&gt.ring, adv_ok || gt_on_advancer ? 0 : CRASH_RING_MS);
                size_t len = gt_seal_current(seal_buf, seal_cap, gen);
                char reason[64] = "crash: ";
                size_t rl = strlen(reason);
                const char *name = signal_name(sig);
                memcpy(reason + rl, name, strlen(name) + 1);
                int sent = -ENOTCONN;
                if (gt.daemon) {
                        /* After the sealed generation, what gtraced may not
                         * have, newest first.  Connected: the generation the
                         * connection is in the middle of (gtraced drops a cut
                         * frame; the sending state is still only with the
                         * advance thread held) and the ring's unsent ones.
                         * Not connected: the whole ring.  gtraced keeps one
                         * copy of a generation it gets twice. */
                        size_t n = 0;
                        uint32_t count = ring_ok ? gt.ring.count : 0, from = 0;
                        if (gt_daemon_connected(gt.daemon))
                                from = gt.ring.unsent < count ? count - (uint32_t)gt.ring.unsent
                                                              : 0;
                        for (uint32_t i = count; i > from && n < CRASH_MAX_IOV - 1; i--) {
                                struct gt_blob *b = gt_ring_at(&gt.ring, i - 1);
                                crash_iov[n++] = (struct iovec){b->data, b->len};
                        }
                        struct gt_blob *partial =
                                adv_ok && !gt_on_advancer ? gt_daemon_partial(gt.daemon) : NULL;
                        if (partial && n < CRASH_MAX_IOV - 1)
                                crash_iov[n++] = (struct iovec){partial->data, partial->len};
                        struct iovec sealed = {seal_buf, len};
                        sent = gt_daemon_crash(gt.daemon, sig, &sealed, crash_iov, n, 1000);
                }
                if (sent < 0 && ring_ok) {
                        struct iovec iov = {seal_buf, len};
                        (void)gt_dump_write_local(gt.cfg.dump_dir, reason, "crash", sig, &iov,
                                                  NULL, 0);
                }
                /* A process that survives its signal (a handler of its own
                 * recovers) keeps its flight recorder: the advance thread
                 * finishes the cycle our cut began (the status records of
                 * gen + 1, gen flushed into the ring) before its next one. */
                if (adv_ok)
                        atomic_store_explicit(&gt.crash_cut_gen, gen + 1, memory_order_release);
                gt_ring_thaw(&gt.ring);
                atomic_store_explicit(&gt.adv_frozen, 0, memory_order_release);
                gt_advance_wake(); /* it left the connection alone meanwhile */
        }
        errno = saved_errno;
        chain(sig, info, uctx);
}

void gt_crash_install(void)
{
        if (installed)
                return;
        /* Room for the current generation: every chunk, plus tables. */
        seal_cap = gt.pool_bytes + (8u << 20);
        void *p = mmap(NULL, seal_cap, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        seal_buf = p == MAP_FAILED ? NULL : p;
        struct sigaction sa = {0};
        sa.sa_sigaction = crash_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < NFATAL; i++)
                sigaction(fatal_signals[i], &sa, &previous[i]);
        atomic_store(&crashing, 0);
        installed = true;
}

void gt_crash_uninstall(void)
{
        if (!installed)
                return;
        for (size_t i = 0; i < NFATAL; i++) {
                struct sigaction cur;
                /* Only undo ours: the application may have installed its own since. */
                if (sigaction(fatal_signals[i], NULL, &cur) == 0 &&
                    (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == crash_handler)
                        sigaction(fatal_signals[i], &previous[i], NULL);
        }
        if (seal_buf)
                munmap(seal_buf, seal_cap);
        seal_buf = NULL;
        installed = false;
}
