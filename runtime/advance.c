/* SPDX-License-Identifier: MIT */
/*
 * The advance thread: it ends generations, writes the status events of the
 * next one, assembles finished generations into blobs, keeps the in-process
 * ring, drives the gtraced connection and serves gtrace_dump()/gtrace_flush().
 *
 * It is the only thread that ever waits: on poll(2) for its wake-up eventfd,
 * the daemon socket and its timers; on writers leaving their write sections
 * (a few hundred instructions).  Application threads reach it only through
 * gt.req_lock, and only from gtrace_dump(), gtrace_flush(), gtrace_stop()
 * and the rare early-advance kick (an eventfd write, when the current
 * generation holds more than half the buffer pool, or a thread found the
 * pool empty).
 *
 * One generation's life, N being the current one:
 *
 *   1. gt.gen := N + 1, then wait until no thread can still write N
 *      (gt_wait_writers: membarrier + seqlock scan);
 *   2. status events for N + 1 (threads, fibers, tasks) into status[N+1 & 1];
 *   3. flush N: status[N & 1] + every thread's slot[N & 1] -> one blob;
 *   4. blob -> ring -> gtraced (when connected).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proto/event.h"
#include "proto/varint.h"

/* ---- a growable byte buffer (advancer only) ------------------------------- */

struct gbuf {
        uint8_t *p;
        size_t len, cap;
        bool failed; /* an allocation failed: the content is incomplete */
};

static bool gb_reserve(struct gbuf *b, size_t n)
{
        if (b->failed)
                return false;
        if (b->len + n <= b->cap)
                return true;
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
                cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
                b->failed = true;
                return false;
        }
        b->p = p;
        b->cap = cap;
        return true;
}

static void gb_u8(struct gbuf *b, uint8_t v)
{
        if (gb_reserve(b, 1))
                b->p[b->len++] = v;
}

static void gb_uv(struct gbuf *b, uint64_t v)
{
        if (gb_reserve(b, PROTO_VARINT_MAX))
                b->len = (size_t)(proto_put_uvarint(b->p + b->len, v) - b->p);
}

static void gb_bytes(struct gbuf *b, const void *data, size_t n)
{
        gb_uv(b, n);
        if (n && gb_reserve(b, n)) {
                memcpy(b->p + b->len, data, n);
                b->len += n;
        }
}

static void gb_free(struct gbuf *b)
{
        free(b->p);
        *b = (struct gbuf){0};
}

/* A buffer kept from one generation to the next: emptied, not freed, so a
 * steady stream reuses the same (already faulted-in) pages every generation.
 * After a burst it gives the memory back once a generation needs less than
 * a quarter of it. */
#define GBUF_KEEP_MIN (256u << 10)

static void gb_recycle(struct gbuf *b)
{
        if (b->failed || (b->cap > GBUF_KEEP_MIN && b->len < b->cap / 4))
                gb_free(b);
        b->len = 0;
}

/* ---- status events written by the advancer ---------------------------------- */

struct tid_name {
        uint64_t tid;
        struct gt_str *name;
};

/* Status events for one generation: complete BATCH records, and the tids
 * they cover (for the THREAD table). */
struct status_part {
        uint64_t gen;
        struct gbuf records;
        struct gbuf tracer;   /* FIBER_STATUS / TASK_STATUS events of batch tid 0 */
        uint64_t base;
        uint64_t nbatches;
        uint64_t nevents;
        uint64_t tracer_events;
        struct tid_name *tids;
        size_t ntids, captids;
};

static struct status_part status[2];
/* Set while the advancer writes status records (the crash handler skips them then). */
static atomic_int status_busy;
/* Clock units when the current generation began; written by the advance
 * thread, read by the crash handler too (gt_gen_start_units). */
static _Atomic uint64_t gen_start_units;

uint64_t gt_gen_start_units(void)
{
        return atomic_load_explicit(&gen_start_units, memory_order_relaxed);
}

static struct status_part *status_for(uint64_t gen)
{
        return &status[gen & 1];
}

static void status_reset(struct status_part *sp, uint64_t gen)
{
        sp->gen = gen;
        sp->records.len = 0;
        sp->records.failed = false;
        sp->tracer.len = 0;
        sp->tracer.failed = false;
        sp->nbatches = sp->nevents = sp->tracer_events = 0;
        sp->ntids = 0;
        /* Status events are "as of the generation's start": the time read
         * just before the switch, older than any event of the generation. */
        sp->base = atomic_load_explicit(&gen_start_units, memory_order_relaxed);
}

static void status_add_tid(struct status_part *sp, uint64_t tid, struct gt_str *name)
{
        if (sp->ntids == sp->captids) {
                size_t cap = sp->captids ? sp->captids * 2 : 64;
                struct tid_name *n = realloc(sp->tids, cap * sizeof(*n));
                if (!n)
                        return;
                sp->tids = n;
                sp->captids = cap;
        }
        sp->tids[sp->ntids++] = (struct tid_name){tid, name};
}

void gt_status_thread(uint64_t gen, uint64_t tid, struct gt_str *tname, uint64_t fiber,
                      struct gt_str *fiber_name, struct gt_str *sys, uint64_t sys_start,
                      const struct gt_region *regions, uint32_t depth)
{
        struct status_part *sp = status_for(gen);
        struct gbuf ev = {0};
        uint64_t n = 0;

        if (sys)
                gt_str_mark(sys, gen);
        gb_u8(&ev, PROTO_EV_THREAD_STATUS);
        gb_uv(&ev, 0);
        gb_uv(&ev, fiber);
        gb_uv(&ev, sys ? sys->id : 0);
        gb_uv(&ev, sys ? sys_start : 0);
        n++;
        for (uint32_t i = 0; i < depth; i++) {
                struct gt_str *name = atomic_load_explicit(&regions[i].name, memory_order_relaxed);
                gt_str_mark(name, gen);
                gb_u8(&ev, PROTO_EV_REGION_STATUS);
                gb_uv(&ev, 0);
                gb_uv(&ev, name->id);
                gb_uv(&ev, atomic_load_explicit(&regions[i].start, memory_order_relaxed));
                n++;
        }
        if (fiber) {
                gt_str_mark(fiber_name, gen);
                gb_u8(&ev, PROTO_EV_FIBER_STATUS);
                gb_uv(&ev, 0);
                gb_uv(&ev, fiber);
                gb_uv(&ev, sys ? PROTO_FIBER_SYSCALL : PROTO_FIBER_RUNNING);
                gb_uv(&ev, fiber_name->id);
                gb_uv(&ev, 0);
                n++;
        }
        gb_u8(&sp->records, PROTO_EV_BATCH);
        gb_uv(&sp->records, tid);
        gb_uv(&sp->records, sp->base);
        gb_uv(&sp->records, 0);
        gb_bytes(&sp->records, ev.p, ev.len);
        sp->records.failed |= ev.failed;
        gb_free(&ev);
        sp->nbatches++;
        sp->nevents += n;
        if (tname)
                gt_str_mark(tname, gen);
        status_add_tid(sp, tid, tname);
}

void gt_status_fiber(uint64_t gen, struct gt_fiber *f, uint32_t state)
{
        struct status_part *sp = status_for(gen);
        struct gt_str *name = atomic_load_explicit(&f->name, memory_order_relaxed);
        struct gt_str *why = state == PROTO_FIBER_WAITING
                                     ? atomic_load_explicit(&f->reason, memory_order_relaxed)
                                     : NULL;
        gt_str_mark(name, gen);
        if (why)
                gt_str_mark(why, gen);
        gb_u8(&sp->tracer, PROTO_EV_FIBER_STATUS);
        gb_uv(&sp->tracer, 0);
        gb_uv(&sp->tracer, atomic_load_explicit(&f->id, memory_order_relaxed));
        gb_uv(&sp->tracer, state);
        gb_uv(&sp->tracer, name->id);
        gb_uv(&sp->tracer, why ? why->id : 0);
        sp->tracer_events++;
}

void gt_status_task(uint64_t gen, uint64_t task, uint64_t parent, struct gt_str *name,
                    uint64_t start)
{
        struct status_part *sp = status_for(gen);
        gt_str_mark(name, gen);
        gb_u8(&sp->tracer, PROTO_EV_TASK_STATUS);
        gb_uv(&sp->tracer, 0);
        gb_uv(&sp->tracer, task);
        gb_uv(&sp->tracer, parent);
        gb_uv(&sp->tracer, name->id);
        gb_uv(&sp->tracer, start);
        sp->tracer_events++;
}

static void status_finish(struct status_part *sp)
{
        if (!sp->tracer_events)
                return;
        gb_u8(&sp->records, PROTO_EV_BATCH);
        gb_uv(&sp->records, 0);
        gb_uv(&sp->records, sp->base);
        gb_uv(&sp->records, 0);
        gb_bytes(&sp->records, sp->tracer.p, sp->tracer.len);
        sp->records.failed |= sp->tracer.failed;
        sp->nbatches++;
        sp->nevents += sp->tracer_events;
        static const char tracer[] = "gtrace";
        struct gt_str *name = gt_str_intern(tracer, sizeof(tracer) - 1);
        gt_str_mark(name, sp->gen);
        status_add_tid(sp, 0, name);
}

bool gt_status_records(uint64_t gen, const uint8_t **ret_p, size_t *ret_len,
                       uint64_t *ret_batches, uint64_t *ret_events)
{
        struct status_part *sp = status_for(gen);
        if (atomic_load(&status_busy) || sp->gen != gen || sp->records.failed)
                return false;
        *ret_p = sp->records.p;
        *ret_len = sp->records.len;
        *ret_batches = sp->nbatches;
        *ret_events = sp->nevents;
        return true;
}

/* ---- assembling a generation -------------------------------------------------- */

/*
 * Every byte of trace is copied once on its way into a blob: from the
 * thread's chunk straight to its place in the blob.  flush_thread takes the
 * chunks out of their slot (the slot then releases nothing) and only notes
 * them; once the generation's size is known exactly, assemble() allocates
 * the blob, copies each chunk and hands it back to the pool.  (Staging the
 * batches in a growing buffer first, as before, doubled the copying and
 * cost a page fault per 4 KiB of trace.)
 */
struct held_chunk {
        struct gt_chunk *c; /* NULL: a batch without events, only drops to report */
        uint64_t tid, base, lost;
        uint32_t used;
};

struct flush_ctx {
        struct held_chunk *held;
        size_t nheld, capheld;
        size_t batch_bytes; /* the BATCH records' encoded size */
        uint64_t nbatches, nevents, lost;
        struct tid_name *tids;
        size_t ntids, captids;
        uint64_t gen;
        bool failed; /* an allocation failed: this generation is lost (counted) */
};

/* The pieces of a blob being assembled.  They live from one generation to
 * the next (see gb_recycle), so a steady stream allocates nothing here. */
static struct assembly {
        struct flush_ctx fc;
        struct gbuf head, threads, tail;
} asmb;

static void flush_add_tid(struct flush_ctx *fc, uint64_t tid, struct gt_str *name)
{
        if (fc->ntids == fc->captids) {
                size_t cap = fc->captids ? fc->captids * 2 : 64;
                struct tid_name *n = realloc(fc->tids, cap * sizeof(*n));
                if (!n) {
                        fc->failed = true;
                        return;
                }
                fc->tids = n;
                fc->captids = cap;
        }
        fc->tids[fc->ntids++] = (struct tid_name){tid, name};
}

static bool flush_hold(struct flush_ctx *fc, size_t more)
{
        if (fc->nheld + more <= fc->capheld)
                return true;
        size_t cap = fc->capheld ? fc->capheld : 64;
        while (cap < fc->nheld + more)
                cap *= 2;
        struct held_chunk *n = realloc(fc->held, cap * sizeof(*n));
        if (!n)
                return false;
        fc->held = n;
        fc->capheld = cap;
        return true;
}

static void flush_thread(void *ctx, struct gt_thread *t, struct gt_slot *s)
{
        struct flush_ctx *fc = ctx;
        size_t n = 0, first = fc->nheld;

        for (struct gt_chunk *c = s->head; c; c = c->next)
                n++;
        if (fc->failed || !flush_hold(fc, n ? n : 1)) {
                /* No room to note them: the chunks stay in the slot, which
                 * returns them to the pool, and this generation is lost. */
                fc->failed = true;
                return;
        }
        for (struct gt_chunk *c = s->head; c; c = c->next) {
                struct held_chunk *h = &fc->held[fc->nheld++];
                h->c = c;
                h->tid = t->tid;
                h->base = c->base;
                h->lost = c->next ? 0 : s->lost_total;
                h->used = gt_chunk_used(s, c);
        }
        if (!s->head && s->lost_total) {
                /* Nothing buffered at all, only drops to report. */
                fc->held[fc->nheld++] = (struct held_chunk){
                        .tid = t->tid,
                        .lost = s->lost_total,
                };
        }
        for (size_t i = first; i < fc->nheld; i++) {
                const struct held_chunk *h = &fc->held[i];
                fc->batch_bytes += 1 + proto_uvarint_len(h->tid) + proto_uvarint_len(h->base) +
                                   proto_uvarint_len(h->lost) + proto_uvarint_len(h->used) +
                                   h->used;
                fc->nbatches++;
        }
        /* Ours now (invariant 2: no thread can write this generation any
         * more): the slot, released after this returns, has nothing left. */
        s->head = s->tail = NULL;
        fc->nevents += s->nevents;
        fc->lost += s->lost_total;
        struct gt_str *name = atomic_load_explicit(&t->name, memory_order_relaxed);
        if (name)
                gt_str_mark(name, fc->gen);
        flush_add_tid(fc, t->tid, name);
}

/*
 * Writes the held chunks' BATCH records at p, returning each chunk to the
 * pool as copied; p == NULL only returns them.  As *copied*: a thread takes
 * such a chunk only when no other is left, until the copy is done and they
 * all join the free stack, the first copied on top.  A thread that takes a
 * chunk the copy has just read writes lines held in the advance thread's
 * cache, on another CPU, each write a miss (a log emitted during a copy of
 * 32 MiB cost 1.4-1.8 times one emitted outside it); a thread that finds
 * no chunk drops events, which is worse.
 */
static uint8_t *flush_write(struct flush_ctx *fc, uint8_t *p)
{
        for (size_t i = 0; i < fc->nheld; i++) {
                struct held_chunk *h = &fc->held[i];
                if (p) {
                        *p++ = PROTO_EV_BATCH;
                        p = proto_put_uvarint(p, h->tid);
                        p = proto_put_uvarint(p, h->base);
                        p = proto_put_uvarint(p, h->lost);
                        p = proto_put_uvarint(p, h->used);
                        if (h->used)
                                memcpy(p, h->c->data, h->used);
                        p += h->used;
                }
                if (h->c)
                        gt_chunk_put_copied(h->c);
        }
        if (unlikely(gt_test_copied) && p)
                gt_test_copied(fc->gen);
        gt_chunks_copied_done();
        fc->nheld = 0;
        return p;
}

/*
 * Blob memory, reused.  A busy process makes a blob of a few hundred KiB
 * every period and the ring frees one as old: malloc serves such sizes
 * from fresh mappings, so each generation used to pay a page fault per
 * 4 KiB and an munmap (a quarter of the advance thread's time).  Instead
 * the advancer keeps its own reference to the large blobs it pushes; one
 * that nobody else references any more (the ring evicted it, the daemon
 * connection has sent it) is *retired*, and carries a later generation
 * that fits it.  A new blob gets half again the room its generation
 * needs, so that later generations from three quarters to one and a half
 * times as long fit it too (the unused tail of a fresh allocation is never
 * touched).  At most BLOB_SPARES retired blobs are kept, and a blob carries
 * only a generation of more than half its room, so the memory held stays
 * within a few generations of the ring's own bound.
 */
#define BLOB_REUSE_MIN (64u << 10) /* smaller blobs come from malloc's free lists */
#define BLOB_KEEP_MAX 1100         /* > the ring's count bound (1024) */
#define BLOB_SPARES 2              /* retired blobs kept for later generations */

struct kept_blob {
        struct gt_blob *b;
        size_t cap; /* bytes of data the allocation holds (len may be less) */
};
static struct kept_blob *kept;
static size_t nkept;

static struct gt_blob *blob_get(uint64_t gen, size_t len)
{
        /* The best fit among the retired: the smallest that holds len. */
        size_t best = SIZE_MAX, spares = 0;
        for (size_t i = 0; i < nkept; i++) {
                const struct kept_blob *k = &kept[i];
                if (k->b->refs == 1 && len <= k->cap && len > k->cap / 2 &&
                    (best == SIZE_MAX || k->cap < kept[best].cap))
                        best = i;
        }
        struct gt_blob *b = NULL;
        size_t j = 0;
        for (size_t i = 0; i < nkept; i++) {
                struct kept_blob k = kept[i];
                if (i == best) {
                        /* Stays kept; the new reference is the caller's. */
                        b = gt_blob_ref(k.b);
                        b->gen = gen;
                        b->len = len;
                } else if (k.b->refs == 1 && ++spares > BLOB_SPARES) {
                        gt_blob_unref(k.b);
                        continue;
                }
                kept[j++] = k;
        }
        nkept = j;
        if (b)
                return b;
        if (len < BLOB_REUSE_MIN)
                return gt_blob_new(gen, len);
        size_t cap = len + len / 2;
        b = gt_blob_new(gen, cap);
        if (!b)
                return gt_blob_new(gen, len);
        b->len = len;
        if (!kept)
                kept = calloc(BLOB_KEEP_MAX, sizeof(*kept));
        if (kept && nkept < BLOB_KEEP_MAX)
                kept[nkept++] = (struct kept_blob){gt_blob_ref(b), cap};
        return b;
}

static void blobs_free(void)
{
        for (size_t i = 0; i < nkept; i++)
                gt_blob_unref(kept[i].b);
        free(kept);
        kept = NULL;
        nkept = 0;
}

static void assembly_free(void)
{
        free(asmb.fc.held);
        free(asmb.fc.tids);
        gb_free(&asmb.head);
        gb_free(&asmb.threads);
        gb_free(&asmb.tail);
        asmb = (struct assembly){0};
        blobs_free();
}

struct table_ctx {
        struct gbuf *b;
};

static void put_string(void *ctx, const struct gt_str *e)
{
        struct gbuf *b = ctx;
        gb_u8(b, PROTO_EV_STRING);
        gb_uv(b, e->id);
        gb_bytes(b, e->data, e->len);
}

static void put_stack(void *ctx, const struct gt_stack *e)
{
        struct gbuf *b = ctx;
        uint8_t frames[GT_MAX_STACK_DEPTH * PROTO_VARINT_MAX];
        uint8_t *p = frames;
        for (uint32_t i = 0; i < e->n; i++)
                p = proto_put_uvarint(p, e->pcs[i]);
        gb_u8(b, PROTO_EV_STACK);
        gb_uv(b, e->id);
        gb_bytes(b, frames, (size_t)(p - frames));
}

static int cmp_tid(const void *a, const void *b)
{
        const struct tid_name *x = a, *y = b;
        return x->tid < y->tid ? -1 : x->tid > y->tid;
}

size_t gt_encode_generation_header(uint8_t *p0, uint64_t gen, const struct gt_clock_ref *ref,
                                   uint64_t start, uint64_t lost_gens, uint64_t lost_bytes)
{
        uint8_t *p = p0;
        *p++ = PROTO_EV_GENERATION;
        p = proto_put_uvarint(p, gen);
        p = proto_put_uvarint(p, (uint64_t)gt.proc.pid);
        p = proto_put_uvarint(p, PROTO_FORMAT_VERSION);
        *p++ = PROTO_EV_CLOCK;
        p = proto_put_uvarint(p, ref->freq);
        p = proto_put_uvarint(p, ref->units);
        p = proto_put_uvarint(p, ref->mono_ns);
        p = proto_put_uvarint(p, ref->wall_ns);
        p = proto_put_uvarint(p, start);
        p = proto_put_uvarint(p, ref->units > start ? ref->units : start);
        if (lost_gens) {
                *p++ = PROTO_EV_GENS_LOST;
                p = proto_put_uvarint(p, lost_gens);
                p = proto_put_uvarint(p, lost_bytes);
        }
        return (size_t)(p - p0);
}

/* Flushes generation gen (which no thread can write any more) into a blob. */
static struct gt_blob *assemble(uint64_t gen, const struct gt_clock_ref *ref, uint64_t start)
{
        struct status_part *sp = status_for(gen);
        struct flush_ctx *fc = &asmb.fc;
        struct gbuf *head = &asmb.head, *threads = &asmb.threads, *tail = &asmb.tail;
        struct gt_blob *blob = NULL;
        uint64_t lost_gens, lost_bytes = 0;

        fc->nheld = fc->batch_bytes = 0;
        fc->nbatches = fc->nevents = fc->lost = 0;
        fc->ntids = 0;
        fc->gen = gen;
        fc->failed = false;
        gt_flush_threads(gen, flush_thread, fc);
        if (sp->gen != gen)
                status_reset(sp, gen); /* none were written (first generation) */

        pthread_mutex_lock(&gt.ring_lock);
        uint64_t new_lost = 0;
        lost_gens = gt_ring_take_dropped(&gt.ring, &lost_bytes, &new_lost);
        /* gtrace_get_stats() counts every loss since the start: the ring's
         * count only holds the ones no generation has recorded yet (a loss
         * reported again, its first report lost, is counted once). */
        atomic_fetch_add_explicit(&gt.generations_lost, new_lost, memory_order_relaxed);
        pthread_mutex_unlock(&gt.ring_lock);
        if (gb_reserve(head, GT_GEN_HEADER_MAX))
                head->len = gt_encode_generation_header(head->p, gen, ref, start, lost_gens,
                                                        lost_bytes);
        gt_str_foreach(gen, put_string, head);
        gt_stack_foreach(gen, put_stack, head);

        /* THREAD table: every tid with a batch, once, with any name known. */
        for (size_t i = 0; i < sp->ntids; i++)
                flush_add_tid(fc, sp->tids[i].tid, sp->tids[i].name);
        if (fc->ntids)
                qsort(fc->tids, fc->ntids, sizeof(*fc->tids), cmp_tid);
        for (size_t i = 0; i < fc->ntids;) {
                size_t j = i;
                struct gt_str *name = NULL;
                for (; j < fc->ntids && fc->tids[j].tid == fc->tids[i].tid; j++)
                        if (fc->tids[j].name)
                                name = fc->tids[j].name;
                gb_u8(threads, PROTO_EV_THREAD);
                gb_uv(threads, fc->tids[i].tid);
                gb_uv(threads, name ? name->id : 0);
                i = j;
        }

        gb_u8(tail, PROTO_EV_END_OF_GENERATION);
        gb_uv(tail, gen);
        gb_uv(tail, fc->nbatches + sp->nbatches);
        gb_uv(tail, fc->nevents + sp->nevents);
        gb_uv(tail, fc->lost);

        if (fc->failed || head->failed || threads->failed || sp->records.failed || tail->failed)
                goto out;
        size_t len = head->len + threads->len + sp->records.len + fc->batch_bytes + tail->len;
        blob = blob_get(gen, len);
        if (!blob)
                goto out;
        blob->reported_gens = lost_gens;
        blob->reported_bytes = lost_bytes;
        uint8_t *p = blob->data;
        memcpy(p, head->p, head->len);
        p += head->len;
        if (threads->len)
                memcpy(p, threads->p, threads->len);
        p += threads->len;
        if (sp->records.len)
                memcpy(p, sp->records.p, sp->records.len);
        p += sp->records.len;
        p = flush_write(fc, p);
        memcpy(p, tail->p, tail->len);
        atomic_fetch_add_explicit(&gt.events, fc->nevents + sp->nevents, memory_order_relaxed);
        atomic_fetch_add_explicit(&gt.events_lost, fc->lost, memory_order_relaxed);
out:
        if (!blob)
                gt_ring_untake(&gt.ring); /* this generation is a loss, and what it took */
        flush_write(fc, NULL); /* whatever is still held goes back */
        gb_recycle(head);
        gb_recycle(threads);
        gb_recycle(tail);
        sp->gen = 0;
        return blob;
}

/* ---- advancing ------------------------------------------------------------------- */

static void ring_push_blob(struct gt_blob *b)
{
        pthread_mutex_lock(&gt.ring_lock);
        if (gt_ring_push(&gt.ring, b) && !gt.daemon)
                gt_ring_mark_sent(&gt.ring); /* flight-recorder only: nothing to push */
        pthread_mutex_unlock(&gt.ring_lock);
}

__thread bool gt_on_advancer __attribute__((tls_model("initial-exec")));

static void advance_cycle(bool next);

/*
 * The advance thread's side of a crash handler's hold (crash.c,
 * advancer_freeze): busy while it changes what a handler reads.  adv_enter
 * returns false, and leaves the thread not busy, while a handler holds it:
 * the work waits for a later turn.
 */
static bool adv_enter(void)
{
        atomic_store_explicit(&gt.adv_busy, 1, memory_order_seq_cst);
        if (!atomic_load_explicit(&gt.adv_frozen, memory_order_seq_cst))
                return true;
        atomic_store_explicit(&gt.adv_busy, 0, memory_order_release);
        return false;
}

static void adv_leave(void)
{
        atomic_store_explicit(&gt.adv_busy, 0, memory_order_release);
}

/* adv_enter for work that has no later turn (tracing stops): waits until
 * the handler lets go, which it says through gt_advance_wake. */
static void adv_enter_wait(void)
{
        while (!adv_enter()) {
                struct pollfd pfd = {.fd = gt.wake_fd, .events = POLLIN};
                uint64_t v;
                if (poll(&pfd, 1, -1) > 0)
                        (void)!read(gt.wake_fd, &v, sizeof(v));
        }
}

/*
 * Ends the current generation; with `next` false, tracing stops (gen 0).
 * Everything a crash handler reads besides the threads' live chunks --
 * the generation number, the chunks of the generation being cut, the
 * status records, the ring, the exited threads -- changes only in here, so
 * a crash handler on another thread holds it off (crash.c) and the cycle is
 * skipped meanwhile: the next period tries again.  The last one (tracing
 * stops) has no next period: it waits for the handler to let go.
 */
static void advance(bool next)
{
        if (!next)
                adv_enter_wait();
        else if (!adv_enter())
                return; /* the next period tries again */
        advance_cycle(next);
        adv_leave();
}

/* Steps 2-4 of a cycle whose cut (step 1, at ref) is made: the status
 * records of gen + 1 unless tracing stops, then gen assembled and pushed. */
static void advance_finish(uint64_t gen, bool next, const struct gt_clock_ref *ref)
{
        uint64_t start = atomic_load_explicit(&gen_start_units, memory_order_relaxed);

        gt_wait_writers();
        if (unlikely(gt_test_cycle))
                gt_test_cycle(gen);
        /* After the wait: no walk is still reading the ranges it replaces. */
        gt_code_refresh();
        atomic_store_explicit(&gen_start_units, ref->units, memory_order_relaxed);
        if (next) {
                struct status_part *sp = status_for(gen + 1);
                atomic_store(&status_busy, 1);
                status_reset(sp, gen + 1);
                gt_threads_status(gen + 1);
                gt_fibers_status(gen + 1);
                gt_tasks_status(gen + 1);
                status_finish(sp);
                atomic_store(&status_busy, 0);
        }
        struct gt_blob *b = assemble(gen, ref, start);
        if (b) {
                ring_push_blob(b);
                atomic_fetch_add_explicit(&gt.generations, 1, memory_order_relaxed);
        }
        if (unlikely(gt_test_finished))
                gt_test_finished(gen);
}

static void advance_cycle(bool next)
{
        uint64_t gen = atomic_load_explicit(&gt.gen, memory_order_relaxed);
        if (!gen)
                return;
        /* A crash handler the process survived made the last cut itself
         * (crash.c, crash_cut): the status records of the generation it
         * started, and the flush of the one it ended, are still ours to do.
         * Late is as good as on time: a thread or fiber that moved since
         * has restated itself (its status_gen says so), and the records
         * cover the rest. */
        uint64_t cut = atomic_exchange_explicit(&gt.crash_cut_gen, 0, memory_order_acquire);
        if (cut > 1 && cut == gen)
                advance_finish(gen - 1, true, &gt.crash_cut_ref);

        /* A request for a cycle made from here on asks for the next one:
         * the cut below may come too late for it (a thread that found no
         * chunk for gen + 1 while gen is copied out needs a cut after this
         * one, and cleared after the cut, its request would be lost, and
         * the thread drop events until the period ends). */
        atomic_store_explicit(&gt.kick, 0, memory_order_seq_cst);
        struct gt_clock_ref ref;
        gt_clock_reference(&ref);
        gt_gen_publish(next ? gen + 1 : 0);
        advance_finish(gen, next, &ref);
}

void gt_advance_wake(void)
{
        uint64_t one = 1;
        if (gt.wake_fd >= 0)
                (void)!write(gt.wake_fd, &one, sizeof(one));
}

void gt_advance_kick(void)
{
        /* The load first: threads past the mark keep asking, and a write
         * each time would move the line between them for nothing. */
        if (!atomic_load_explicit(&gt.kick, memory_order_relaxed) &&
            !atomic_exchange_explicit(&gt.kick, 1, memory_order_relaxed))
                gt_advance_wake();
}

void (*gt_test_cycle)(uint64_t gen);
void (*gt_test_copied)(uint64_t gen);
void (*gt_test_finished)(uint64_t gen);

/* ---- requests from application threads --------------------------------------------- */

#define DAEMON_DUMP_MS 10000  /* a daemon dump reply later than this: dump locally */
#define FLUSH_WAIT_MS 10000

static struct gt_dump_req *dump_inflight; /* sent to the daemon, awaiting its reply */
static uint64_t dump_inflight_deadline;

static void dump_complete(struct gt_dump_req *r, int result, const char *path)
{
        pthread_mutex_lock(&gt.req_lock);
        r->result = result;
        if (path) {
                size_t n = strnlen(path, sizeof(r->path) - 1);
                memcpy(r->path, path, n);
                r->path[n] = '\0';
        }
        r->done = true;
        pthread_cond_broadcast(&gt.req_cond);
        pthread_mutex_unlock(&gt.req_lock);
}

static void dump_local(struct gt_dump_req *r)
{
        char path[4096];
        int ret = gt_dump_write_local(gt.cfg.dump_dir, r->reason, "process", 0, NULL, path,
                                      sizeof(path));
        dump_complete(r, ret, ret < 0 ? NULL : path);
}

/* The daemon connection mutates the ring (marks entries sent).  A crash
 * handler holds it off as it does a cycle (advance): it reads the frame the
 * connection is in the middle of, to send it again whole, and that frame's
 * blob may go when the send completes.  may_read: as gt_daemon_service's. */
static void daemon_service(struct gt_daemon_events *ev, bool may_read)
{
        if (!adv_enter())
                return;
        pthread_mutex_lock(&gt.ring_lock);
        gt_daemon_service(gt.daemon, &gt.ring, ev, may_read);
        atomic_store_explicit(&gt.generations_sent, gt.ring.sent_total, memory_order_relaxed);
        pthread_mutex_unlock(&gt.ring_lock);
        adv_leave();
}

static void serve_dump(struct gt_dump_req *r)
{
        if (gt.daemon && gt_daemon_connected(gt.daemon) && !dump_inflight) {
                struct gt_daemon_events ev = {0};
                daemon_service(&ev, true); /* push the new generation first */
                if (gt_daemon_request_dump(gt.daemon, r->id, r->reason) == 0) {
                        dump_inflight = r;
                        dump_inflight_deadline = gt_mono_ns() + DAEMON_DUMP_MS * 1000000ull;
                        return;
                }
        }
        dump_local(r);
}

/* ---- the thread ------------------------------------------------------------------------ */

/*
 * The advance thread's file table.
 *
 * Threads of a process share one table of descriptors, and the kernel pays
 * for that on every read, write, send, recv and epoll_wait: once a table has
 * a second user, each descriptor it looks up is reference-counted for the
 * duration of the call (two atomic operations), where a table with a single
 * user is read as is.  A single-threaded server that starts gtrace would pay
 * this on every system call for the sake of a thread that does a few calls
 * a second: bench/run measured it at about 2% of a small HTTP request, more
 * than everything else tracing costs.
 *
 * So the advance thread takes a table of its own (close_range with
 * CLOSE_RANGE_UNSHARE: the kernel copies the table, then closes the range in
 * the copy) and keeps in it only the wake-up eventfd.  The application's
 * table is then single-user again, and its descriptors stay entirely its
 * own: closing one closes the file, since the advance thread holds no copy
 * of it (a reader waiting for EOF on a pipe sees it at once).  The sockets
 * and dump files the advance thread opens from then on are in its table
 * only: they never reach the application's children, and no descriptor of
 * the application's can be closed in their name.  So the connection to
 * gtraced is closed by the advance thread (gt_daemon_close), and a forked
 * child, whose table is a copy of the application's, has nothing to close.
 *
 * Descriptors 0-2 of the private table point at /dev/null, so a socket never
 * takes a number a stray write to stdout or stderr would reach (glibc's fatal
 * messages write to fd 2).  AddressSanitizer builds keep the application's
 * stderr instead, so a report from this thread is seen.  ThreadSanitizer
 * builds keep the shared table: TSan models descriptors by number for the
 * whole process, and two tables make it see races between unrelated files.
 *
 * Without close_range (Linux before 5.9, or a seccomp filter that refuses
 * it), nothing changes and the table stays shared: correct, only slower.
 * The copy costs what duplicating the table costs, once per start.
 */
#if GT_SAN_ADDRESS
#define KEEP_STDERR 1
#else
#define KEEP_STDERR 0
#endif

static int sys_close_range(unsigned first, unsigned last, unsigned flags)
{
#if defined(SYS_close_range)
        return (int)syscall(SYS_close_range, first, last, flags);
#else
        (void)first, (void)last, (void)flags;
        errno = ENOSYS;
        return -1;
#endif
}

static bool files_go_private(int keep_fd)
{
#if defined(GTRACE_TSAN)
        (void)keep_fd;
        return false;
#endif
        /* The descriptors to keep, ascending: at most stderr and the eventfd. */
        unsigned keep[2];
        size_t n = 0;
        if (KEEP_STDERR && keep_fd != 2)
                keep[n++] = 2;
        if (keep_fd >= 0)
                keep[n++] = (unsigned)keep_fd;
        if (n == 2 && keep[0] > keep[1]) {
                unsigned t = keep[0];
                keep[0] = keep[1];
                keep[1] = t;
        }
        /* Above the highest kept one first, unsharing: the kernel then
         * copies only the descriptors below it. */
        unsigned first = n ? keep[n - 1] + 1 : 0;
        if (sys_close_range(first, ~0U, 1U << 1 /* CLOSE_RANGE_UNSHARE */) < 0)
                return false;
        unsigned lo = 0;
        for (size_t i = 0; i < n; i++) {
                if (keep[i] > lo)
                        (void)sys_close_range(lo, keep[i] - 1, 0);
                lo = keep[i] + 1;
        }
        /* Fill 0-2 (open returns the lowest free number). */
        for (;;) {
                int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        break;
                if (fd > 2) {
                        close(fd);
                        break;
                }
        }
        return true;
}

static void *advancer_main(void *arg)
{
        gt_on_advancer = true;
        atomic_store(&gt.adv_files_private, files_go_private(gt.wake_fd));
        uint64_t period_ns = (uint64_t)gt.cfg.period_ms * 1000000ull;
        uint64_t next_cut = gt_mono_ns() + period_ns;

        for (;;) {
                struct pollfd pfd[2] = {{.fd = gt.wake_fd, .events = POLLIN}, {.fd = -1}};
                uint64_t now = gt_mono_ns();
                int timeout = now >= next_cut ? 0 : (int)((next_cut - now + 999999) / 1000000);
                /* Held by a crash handler, the connection is not ours to
                 * serve (daemon_service): its socket waking us would only
                 * spin the loop.  The handler wakes us when it lets go. */
                if (gt.daemon && !atomic_load_explicit(&gt.adv_frozen, memory_order_acquire)) {
                        short events = 0;
                        int dto = -1;
                        pfd[1].fd = gt_daemon_pollfd(gt.daemon, &events, &dto);
                        pfd[1].events = events;
                        if (dto >= 0 && dto < timeout)
                                timeout = dto;
                }
                if (dump_inflight) {
                        uint64_t left = dump_inflight_deadline > now ? dump_inflight_deadline - now : 0;
                        if ((int)(left / 1000000) < timeout)
                                timeout = (int)(left / 1000000);
                }
                int n = poll(pfd, pfd[1].fd >= 0 ? 2 : 1, timeout);
                if (n < 0 && errno != EINTR)
                        break;
                /* Nothing to read unless the poll said so: a period's cut
                 * then makes no recv() that finds nothing.  A socket not
                 * polled (none yet, or held by a crash handler) is read. */
                bool daemon_readable = pfd[1].fd < 0 || n < 0 ||
                                       (pfd[1].revents & (POLLIN | POLLHUP | POLLERR));
                if (pfd[0].revents & POLLIN) {
                        uint64_t v;
                        (void)!read(gt.wake_fd, &v, sizeof(v));
                }

                pthread_mutex_lock(&gt.req_lock);
                bool stop = gt.stop;
                uint64_t flushes = gt.flush_reqs;
                struct gt_dump_req *reqs = gt.dump_reqs;
                gt.dump_reqs = NULL;
                pthread_mutex_unlock(&gt.req_lock);

                now = gt_mono_ns();
                bool kicked = atomic_load_explicit(&gt.kick, memory_order_relaxed);
                if (stop)
                        break;
                if (now >= next_cut || kicked || flushes != gt.flushes_done || reqs) {
                        advance(true);
                        next_cut = gt_mono_ns() + period_ns;
                }
                if (gt.daemon) {
                        struct gt_daemon_events ev = {0};
                        daemon_service(&ev, daemon_readable);
                        if (ev.flush_requested) {
                                /* gtraced asks for a snapshot: cut now, push, confirm. */
                                advance(true);
                                next_cut = gt_mono_ns() + period_ns;
                                struct gt_daemon_events ev2 = {0};
                                daemon_service(&ev2, true);
                                gt_daemon_flush_done(gt.daemon, ev.flush_id,
                                                     atomic_load(&gt.gen) - 1);
                                if (ev2.dump_done)
                                        ev = ev2;
                        }
                        if (ev.dump_done && dump_inflight && ev.dump_id == dump_inflight->id) {
                                struct gt_dump_req *r = dump_inflight;
                                dump_inflight = NULL;
                                dump_complete(r, ev.dump_result, ev.dump_path);
                        }
                }
                if (dump_inflight && (gt_mono_ns() >= dump_inflight_deadline ||
                                      !gt_daemon_connected(gt.daemon))) {
                        /* The daemon did not answer in time: our own copy it is. */
                        struct gt_dump_req *r = dump_inflight;
                        dump_inflight = NULL;
                        dump_local(r);
                }
                while (reqs) {
                        struct gt_dump_req *r = reqs;
                        reqs = r->next;
                        serve_dump(r);
                }
                if (flushes != gt.flushes_done) {
                        pthread_mutex_lock(&gt.req_lock);
                        gt.flushes_done = flushes;
                        pthread_cond_broadcast(&gt.req_cond);
                        pthread_mutex_unlock(&gt.req_lock);
                }
        }

        /* Stopping: the last generation, then everything still unsent. */
        advance(false);
        if (dump_inflight) {
                struct gt_dump_req *r = dump_inflight;
                dump_inflight = NULL;
                dump_local(r);
        }
        pthread_mutex_lock(&gt.req_lock);
        struct gt_dump_req *reqs = gt.dump_reqs;
        gt.dump_reqs = NULL;
        pthread_mutex_unlock(&gt.req_lock);
        while (reqs) {
                struct gt_dump_req *r = reqs;
                reqs = r->next;
                dump_local(r);
        }
        /* The connection is in this thread's file table (files_go_private).
         * Not while a crash handler holds it: it may be reading the frame
         * in flight. */
        if (gt.daemon) {
                adv_enter_wait();
                gt_daemon_close(gt.daemon, &gt.ring);
                adv_leave();
        }
        return NULL;
}

/* ---- configuration ---------------------------------------------------------------------- */

static int env_u64(const char *name, uint64_t *v, uint64_t min, uint64_t max)
{
        const char *s = getenv(name);
        if (!s || !*s)
                return 0;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        uint64_t mult = 1;
        if (*end == 'K' || *end == 'k')
                mult = 1024, end++;
        else if (*end == 'M' || *end == 'm')
                mult = 1024 * 1024, end++;
        else if (*end == 'G' || *end == 'g')
                mult = 1024ull * 1024 * 1024, end++;
        if (errno || *end || x > max / mult || x * mult < min)
                return -EINVAL;
        *v = x * mult;
        return 1;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
        size_t n = strnlen(src, cap - 1);
        memcpy(dst, src, n);
        dst[n] = '\0';
}

static void default_socket_path(char *buf, size_t cap)
{
        const char *env = getenv("GTRACED_SOCKET");
        if (env && *env) {
                copy_str(buf, cap, env);
                return;
        }
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (geteuid() != 0 && xdg && *xdg) {
                snprintf(buf, cap, "%s/gtraced/gtraced.sock", xdg);
                return;
        }
        copy_str(buf, cap, "/run/gtraced/gtraced.sock");
}

/* The smallest power of two >= v, for v in [1, 2^31]. */
static uint32_t pow2_ceil(uint32_t v)
{
        uint32_t p = 1;
        while (p < v)
                p <<= 1;
        return p;
}

/* A count bound: 0 keeps the default; else within [GT_MIN_TABLE,
 * GT_MAX_TABLE], rounded up to a power of two. */
static int table_count(uint32_t v, uint32_t *ret)
{
        if (!v)
                return 0;
        if (v < GT_MIN_TABLE || v > GT_MAX_TABLE)
                return -EINVAL;
        *ret = pow2_ceil(v);
        return 0;
}

static int table_bytes(uint64_t v, uint64_t *ret)
{
        if (!v)
                return 0;
        if (v < GT_MIN_TABLE_BYTES || v > GT_MAX_TABLE_BYTES)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Does the caller's struct (of o->size bytes; 0: this version's) have field? */
#define HAS_OPT(o, field)                                                                          \
        ((o)->size == 0 ||                                                                         \
         (o)->size >= offsetof(struct gtrace_options, field) + sizeof((o)->field))

static int configure(const struct gtrace_options *o, struct gt_config *c)
{
        struct gtrace_options z = {0};
        uint64_t v;
        int r;

        if (!o)
                o = &z;
        *c = (struct gt_config){
                .period_ms = 1000,
                .max_buffer_bytes = 64u << 20,
                .chunk_bytes = 64u << 10,
                .ring_generations = 10,
                .ring_bytes = 64u << 20,
                .stack_events = (1u << GTRACE_KIND_LOG) | (1u << GTRACE_KIND_TASK) |
                                (1u << GTRACE_KIND_FIBER) | (1u << GTRACE_KIND_SYSCALL),
                .stack_depth = 32,
                .flags = o->flags,
                .max_strings = GT_DEFAULT_MAX_STRINGS,
                .max_stacks = GT_DEFAULT_MAX_STACKS,
                .string_bytes = GT_DEFAULT_STRING_BYTES,
                .stack_bytes = GT_DEFAULT_STACK_BYTES,
                .max_fibers = GT_DEFAULT_MAX_FIBERS,
                .max_tasks = GT_DEFAULT_MAX_TASKS,
        };
        v = c->period_ms;
        if ((r = env_u64("GTRACE_PERIOD_MS", &v, 1, 3600000)) < 0)
                return r;
        c->period_ms = (uint32_t)v;
        if ((r = env_u64("GTRACE_BUFFER_BYTES", &c->max_buffer_bytes, 64u << 10, 1ull << 40)) < 0)
                return r;
        v = c->ring_generations;
        if ((r = env_u64("GTRACE_RING_GENERATIONS", &v, 1, 1024)) < 0)
                return r;
        c->ring_generations = (uint32_t)v;
        if ((r = env_u64("GTRACE_RING_BYTES", &c->ring_bytes, 64u << 10, 1ull << 40)) < 0)
                return r;
        const char *stacks = getenv("GTRACE_STACKS");
        if (stacks && *stacks) {
                if (!strcmp(stacks, "0") || !strcmp(stacks, "off"))
                        c->flags |= GTRACE_F_NO_STACKS;
                else if (!strcmp(stacks, "all"))
                        c->stack_events = ~0u;
        }
        const char *nd = getenv("GTRACE_NO_DAEMON");
        if (nd && *nd && strcmp(nd, "0") != 0)
                c->flags |= GTRACE_F_NO_DAEMON;

        if (o->period_ms)
                c->period_ms = o->period_ms;
        if (o->max_buffer_bytes)
                c->max_buffer_bytes = o->max_buffer_bytes;
        if (o->chunk_bytes)
                c->chunk_bytes = o->chunk_bytes;
        if (o->ring_generations)
                c->ring_generations = o->ring_generations;
        if (o->ring_bytes)
                c->ring_bytes = o->ring_bytes;
        if (o->stack_events)
                c->stack_events = o->stack_events;
        if (o->stack_depth)
                c->stack_depth = o->stack_depth;
        /* Fields added after the first version: an older caller's struct
         * ends before them, and its size says so. */
        if (o->size && o->size < offsetof(struct gtrace_options, max_strings))
                return -EINVAL;
        if (HAS_OPT(o, max_tasks) &&
            (table_count(o->max_strings, &c->max_strings) < 0 ||
             table_count(o->max_stacks, &c->max_stacks) < 0 ||
             table_bytes(o->string_bytes, &c->string_bytes) < 0 ||
             table_bytes(o->stack_bytes, &c->stack_bytes) < 0 ||
             table_count(o->max_fibers, &c->max_fibers) < 0 ||
             table_count(o->max_tasks, &c->max_tasks) < 0))
                return -EINVAL;

        if (c->period_ms < 1 || c->period_ms > 3600000 || c->chunk_bytes < 4096 ||
            c->chunk_bytes > (4u << 20) || c->max_buffer_bytes < 2 * (uint64_t)c->chunk_bytes ||
            c->max_buffer_bytes / c->chunk_bytes > UINT32_MAX - 1 || c->ring_generations > 1024 ||
            c->stack_depth > GT_MAX_STACK_DEPTH)
                return -EINVAL;
        if (o->socket_path) {
                if (strlen(o->socket_path) >= sizeof(c->socket_path))
                        return -ENAMETOOLONG;
                copy_str(c->socket_path, sizeof(c->socket_path), o->socket_path);
        } else {
                default_socket_path(c->socket_path, sizeof(c->socket_path));
        }
        const char *dir = o->dump_dir ? o->dump_dir : getenv("GTRACE_DUMP_DIR");
        if (!dir || !*dir)
                dir = ".";
        if (strlen(dir) >= sizeof(c->dump_dir))
                return -ENAMETOOLONG;
        copy_str(c->dump_dir, sizeof(c->dump_dir), dir);
        return 0;
}

/* ---- process identity ------------------------------------------------------------------- */

static void read_proc_info(struct gt_proc_info *pi)
{
        memset(pi, 0, sizeof(*pi));
        pi->pid = getpid();
        pi->uid = getuid();
        FILE *f = fopen("/proc/self/comm", "re");
        if (f) {
                if (fgets(pi->command, sizeof(pi->command), f))
                        pi->command[strcspn(pi->command, "\n")] = '\0';
                fclose(f);
        }
        ssize_t n = readlink("/proc/self/exe", pi->executable, sizeof(pi->executable) - 1);
        pi->executable[n > 0 ? n : 0] = '\0';
        struct utsname u;
        if (uname(&u) == 0)
                snprintf(pi->host, sizeof(pi->host), "%s", u.nodename);

        /* Start time: field 22 of /proc/self/stat (ticks since boot) + btime. */
        char buf[1024];
        unsigned long long start_ticks = 0, btime = 0;
        f = fopen("/proc/self/stat", "re");
        if (f) {
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                buf[len] = '\0';
                fclose(f);
                char *p = strrchr(buf, ')'); /* comm may hold spaces */
                for (int field = 2; p && field < 22; field++)
                        p = strchr(p + 1, ' ');
                if (p)
                        start_ticks = strtoull(p + 1, NULL, 10);
        }
        f = fopen("/proc/stat", "re");
        if (f) {
                while (fgets(buf, sizeof(buf), f))
                        if (sscanf(buf, "btime %llu", &btime) == 1)
                                break;
                fclose(f);
        }
        long hz = sysconf(_SC_CLK_TCK);
        if (btime && hz > 0)
                pi->start_time_ns = btime * 1000000000ull + start_ticks * (1000000000ull / (unsigned long long)hz);
}

/* ---- start / stop ------------------------------------------------------------------------- */

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static char fork_socket[108], fork_dump_dir[1024];

static void atfork_prepare(void)
{
        pthread_mutex_lock(&start_lock);
}

static void atfork_parent(void)
{
        pthread_mutex_unlock(&start_lock);
}

static void atfork_child(void)
{
        bool was_tracing = atomic_load_explicit(&gt.gen, memory_order_relaxed) != 0;
        pthread_mutex_init(&start_lock, NULL);
        gt_fork_child_reset();
        for (int i = 0; i < 2; i++)
                status[i] = (struct status_part){0};
        asmb = (struct assembly){0};
        kept = NULL;
        nkept = 0;
        dump_inflight = NULL;
        if (was_tracing) {
                copy_str(fork_socket, sizeof(fork_socket), gt.cfg.socket_path);
                copy_str(fork_dump_dir, sizeof(fork_dump_dir), gt.cfg.dump_dir);
                gt.fork_opts = (struct gtrace_options){
                        .size = sizeof(struct gtrace_options),
                        .period_ms = gt.cfg.period_ms,
                        .max_buffer_bytes = gt.cfg.max_buffer_bytes,
                        .chunk_bytes = gt.cfg.chunk_bytes,
                        .ring_generations = gt.cfg.ring_generations,
                        .ring_bytes = gt.cfg.ring_bytes,
                        .socket_path = fork_socket,
                        .dump_dir = fork_dump_dir,
                        .stack_events = gt.cfg.stack_events,
                        .stack_depth = gt.cfg.stack_depth,
                        .flags = gt.cfg.flags,
                        .max_strings = gt.cfg.max_strings,
                        .max_stacks = gt.cfg.max_stacks,
                        .string_bytes = gt.cfg.string_bytes,
                        .stack_bytes = gt.cfg.stack_bytes,
                        .max_fibers = gt.cfg.max_fibers,
                        .max_tasks = gt.cfg.max_tasks,
                };
                atomic_store(&gt.restart_after_fork, 1);
        }
}

static void register_atfork(void)
{
        (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void release_all(void)
{
        gt_ring_done(&gt.ring);
        if (gt.pool)
                munmap(gt.pool, gt.pool_bytes);
        gt.pool = NULL;
        free(gt.free_next);
        gt.free_next = NULL;
        free(gt.fibers);
        gt.fibers = NULL;
        free(gt.tasks);
        gt.tasks = NULL;
        gt_strtab_done();
        for (int i = 0; i < 2; i++) {
                gb_free(&status[i].records);
                gb_free(&status[i].tracer);
                free(status[i].tids);
                status[i] = (struct status_part){0};
        }
        assembly_free();
        if (gt.wake_fd >= 0)
                close(gt.wake_fd);
        gt.wake_fd = -1;
}

GTRACE_API int gtrace_start(const struct gtrace_options *opts)
{
        struct gt_config cfg;
        int r;

        pthread_once(&atfork_once, register_atfork);
        pthread_mutex_lock(&start_lock);
        if (atomic_load(&gt.gen) != 0) {
                r = -EALREADY;
                goto out;
        }
        r = configure(opts, &cfg);
        if (r < 0)
                goto out;
        r = gt_threads_init();
        if (r < 0)
                goto out;

        static bool locks_ready;
        if (!locks_ready) {
                pthread_mutex_init(&gt.threads_lock, NULL);
                pthread_mutex_init(&gt.req_lock, NULL);
                pthread_mutex_init(&gt.ring_lock, NULL);
                pthread_cond_init(&gt.req_cond, NULL);
                locks_ready = true;
        }
        gt.cfg = cfg;
        gt.wake_fd = -1;
        gt.stop = false;
        gt.flush_reqs = gt.flushes_done = 0;
        gt.dump_reqs = NULL;
        atomic_store(&gt.events, 0);
        atomic_store(&gt.events_lost, 0);
        atomic_store(&gt.generations, 0);
        atomic_store(&gt.generations_sent, 0);
        atomic_store(&gt.generations_lost, 0);
        gt.stack_mask = cfg.flags & GTRACE_F_NO_STACKS ? 0 : cfg.stack_events;
        gt.stack_depth = cfg.stack_depth;

        gt_clock_init();
#if defined(GTRACE_TSAN)
        gt.use_membarrier = false;
#else
        /* GTRACE_MEMBARRIER=0 forces the fence-based fallback (a diagnostic
         * knob; the stress test runs both ways). */
        const char *mb = getenv("GTRACE_MEMBARRIER");
        gt.use_membarrier =
                !(mb && strcmp(mb, "0") == 0) &&
                syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
        gt_str_fixed_init();
        gt_code_init();
        r = gt_strtab_init(cfg.max_strings, cfg.string_bytes, cfg.max_stacks, cfg.stack_bytes);
        if (r < 0)
                goto out;

        gt.chunk_bytes = cfg.chunk_bytes;
        gt.nchunks = (uint32_t)(cfg.max_buffer_bytes / cfg.chunk_bytes);
        gt.pool_bytes = (size_t)gt.nchunks * cfg.chunk_bytes;
        gt.pool = mmap(NULL, gt.pool_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (gt.pool == MAP_FAILED) {
                gt.pool = NULL;
                r = -ENOMEM;
                goto fail;
        }
        gt.free_next = calloc(gt.nchunks, sizeof(*gt.free_next));
        gt.fiber_mask = cfg.max_fibers - 1;
        gt.fibers = calloc(cfg.max_fibers, sizeof(*gt.fibers));
        gt.task_mask = cfg.max_tasks - 1;
        gt.tasks = calloc(cfg.max_tasks, sizeof(*gt.tasks));
        if (!gt.free_next || !gt.fibers || !gt.tasks) {
                r = -ENOMEM;
                goto fail;
        }
        atomic_store(&gt.crash_cut_gen, 0);
        atomic_store(&gt.fresh, 0);
        atomic_store(&gt.free_head, 0);
        atomic_store(&gt.copied_head, 0);
        atomic_store(&gt.in_use, 0);
        atomic_store(&gt.gen_chunks[0], 0);
        atomic_store(&gt.gen_chunks[1], 0);
        atomic_store(&gt.kick, 0);
        gt.kick_chunks = gt.nchunks / 2;
        atomic_store(&gt.next_fiber, 1);
        atomic_store(&gt.next_task, 1);
        atomic_store(&gt.fibers_live, 0);
        atomic_store(&gt.tasks_live, 0);

        r = gt_ring_init(&gt.ring, cfg.ring_generations, cfg.ring_bytes);
        if (r < 0)
                goto fail;
        gt.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (gt.wake_fd < 0) {
                r = -errno;
                goto fail;
        }
        read_proc_info(&gt.proc);
        gt.daemon = NULL;
        if (!(cfg.flags & GTRACE_F_NO_DAEMON)) {
                struct gt_clock_ref ref;
                gt_clock_reference(&ref);
                gt.proc.clock_freq = ref.freq;
                gt.daemon = gt_daemon_new(cfg.socket_path, &gt.proc);
        }
        if (!(cfg.flags & GTRACE_F_NO_CRASH_HANDLER))
                gt_crash_install();

        atomic_store_explicit(&gen_start_units, gt_clock_now(), memory_order_relaxed);
        gt_gen_publish(1);

        /* The advance thread takes no signals: they belong to the application. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&gt.advancer, NULL, advancer_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                gt_gen_publish(0);
                gt_wait_writers();
                gt_crash_uninstall();
                gt_daemon_free(gt.daemon);
                gt.daemon = NULL;
                goto fail;
        }
#if defined(__linux__)
        (void)pthread_setname_np(gt.advancer, "gtrace-advance");
#endif
        r = 0;
        goto out;
fail:
        gt_flush_threads(0, NULL, NULL);
        release_all();
out:
        pthread_mutex_unlock(&start_lock);
        return r;
}

GTRACE_API void gtrace_stop(void)
{
        pthread_mutex_lock(&start_lock);
        if (atomic_load(&gt.gen) == 0) {
                pthread_mutex_unlock(&start_lock);
                return;
        }
        pthread_mutex_lock(&gt.req_lock);
        gt.stop = true;
        pthread_mutex_unlock(&gt.req_lock);
        gt_advance_wake();
        pthread_join(gt.advancer, NULL);
        gt_crash_uninstall();
        if (gt.daemon) {
                gt_daemon_free(gt.daemon);
                gt.daemon = NULL;
        }
        gt_threads_done();
        release_all();
        pthread_mutex_unlock(&start_lock);
}

GTRACE_API int gtrace_flush(void)
{
        if (atomic_load_explicit(&gt.gen, memory_order_acquire) == 0)
                return -ENOTCONN;
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += FLUSH_WAIT_MS / 1000;
        pthread_mutex_lock(&gt.req_lock);
        uint64_t want = ++gt.flush_reqs;
        gt_advance_wake();
        int r = 0;
        while (gt.flushes_done < want && !gt.stop && r == 0)
                r = pthread_cond_timedwait(&gt.req_cond, &gt.req_lock, &deadline);
        pthread_mutex_unlock(&gt.req_lock);
        return r == ETIMEDOUT ? -ETIMEDOUT : 0;
}

GTRACE_API int gtrace_dump(const char *reason, char *path, size_t path_len)
{
        static _Atomic uint64_t next_id = 1;
        if (atomic_load_explicit(&gt.gen, memory_order_acquire) == 0)
                return -ENOTCONN;
        struct gt_dump_req *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        char *why = strdup(reason ? reason : "gtrace_dump");
        if (!why) {
                free(r);
                return -ENOMEM;
        }
        r->id = atomic_fetch_add(&next_id, 1);
        r->reason = why;

        pthread_mutex_lock(&gt.req_lock);
        if (gt.stop) {
                pthread_mutex_unlock(&gt.req_lock);
                free(why);
                free(r);
                return -ENOTCONN;
        }
        r->next = gt.dump_reqs;
        gt.dump_reqs = r;
        gt_advance_wake();
        /* The advancer always completes a request: a daemon that does not
         * answer within DAEMON_DUMP_MS gets replaced by a local dump. */
        while (!r->done)
                pthread_cond_wait(&gt.req_cond, &gt.req_lock);
        int result = r->result;
        if (result >= 0 && path && path_len) {
                size_t n = strnlen(r->path, path_len - 1);
                memcpy(path, r->path, n);
                path[n] = '\0';
        }
        pthread_mutex_unlock(&gt.req_lock);
        free(why);
        free(r);
        return result < 0 ? result : 0;
}

GTRACE_API void gtrace_get_stats(struct gtrace_stats *ret)
{
        memset(ret, 0, sizeof(*ret));
        pthread_mutex_lock(&start_lock);
        if (atomic_load(&gt.gen) == 0) {
                pthread_mutex_unlock(&start_lock);
                return;
        }
        ret->events = atomic_load(&gt.events);
        ret->events_lost = atomic_load(&gt.events_lost);
        ret->generations = atomic_load(&gt.generations);
        ret->generations_sent = atomic_load(&gt.generations_sent);
        ret->bytes_buffered = (uint64_t)atomic_load(&gt.in_use) * gt.chunk_bytes;
        pthread_mutex_lock(&gt.ring_lock);
        ret->ring_bytes = gt.ring.bytes;
        ret->ring_generations = gt.ring.count;
        ret->generations_lost = atomic_load(&gt.generations_lost) + gt.ring.gens_dropped;
        pthread_mutex_unlock(&gt.ring_lock);
        ret->daemon_connected = gt.daemon ? (uint32_t)gt_daemon_connected(gt.daemon) : 0;
        pthread_mutex_unlock(&start_lock);
}
