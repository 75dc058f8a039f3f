/* SPDX-License-Identifier: MIT */
/*
 * The in-process generation ring: the last N finished generations, at most
 * M bytes, oldest evicted first.  It is the runtime's flight recorder when no
 * daemon is reachable, and the queue of generations not yet pushed to
 * gtraced when one is.
 *
 * Owned by the advance thread: only it pushes, pops and iterates.  The one
 * exception is the crash handler, on whatever thread crashed, which reads
 * the ring without locking: it sets `frozen`, then waits (bounded) for
 * `busy` to clear.  A push sets busy, then looks at frozen, and leaves the
 * ring alone (dropping its blob, counted) when it is set.  All four accesses
 * are seq_cst, so at least one side sees the other's flag.  Only a push
 * frees or moves entries; the other writers change counters.
 *
 * Blobs are reference counted (plain counts: single owner thread) so the
 * daemon connection can keep sending a blob the ring has since evicted.
 */
#ifndef GT_RING_H
#define GT_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gt_blob {
        unsigned refs;
        uint64_t gen;
        size_t len;
        /* Losses its header reports (gt_ring_take_dropped): if it is itself
         * lost, they are reported again by a later generation. */
        uint64_t reported_gens, reported_bytes;
        uint8_t data[];
};

struct gt_blob *gt_blob_new(uint64_t gen, size_t len); /* refs = 1; NULL on ENOMEM */
struct gt_blob *gt_blob_ref(struct gt_blob *b);
void gt_blob_unref(struct gt_blob *b); /* NULL ok */

struct gt_ring {
        struct gt_blob **slots; /* circular, capacity max_count */
        uint32_t max_count;
        uint64_t max_bytes;
        uint32_t head;          /* index of the oldest */
        uint32_t count;
        uint64_t bytes;
        uint64_t unsent;        /* the newest `unsent` entries are not yet pushed to gtraced */
        /* Losses no generation in the ring reports yet.  Written by the
         * advance thread only, read by a crash handler without the hold:
         * atomic, relaxed. */
        _Atomic uint64_t gens_dropped;  /* evicted before being pushed anywhere (unsent) */
        _Atomic uint64_t bytes_dropped;
        /* Losses counted before, whose report went with a generation that
         * was itself lost (evicted unsent, or refused): to report again. */
        _Atomic uint64_t gens_carried, bytes_carried;
        /* Taken by the generation being assembled (gt_ring_take_dropped),
         * which reports them once it is pushed: until then a crash handler
         * counts them too, or a cycle it could not hold would lose them
         * with the generation a frozen ring refuses. */
        _Atomic uint64_t taken_gens, taken_bytes;
        uint64_t gens_evicted;  /* evicted at all, sent or not */
        uint64_t sent_total;    /* entries marked sent */
        atomic_int busy;        /* 1 while a push runs */
        atomic_int frozen;      /* set by the crash handler: pushes drop their blob */
        _Atomic uint64_t frozen_dropped; /* blobs dropped so, and what they reported */
};

int gt_ring_init(struct gt_ring *r, uint32_t max_count, uint64_t max_bytes);
void gt_ring_done(struct gt_ring *r);

/* Appends b (the ring takes the caller's reference), evicting oldest entries
 * until both bounds hold.  A blob larger than max_bytes alone is still kept
 * (as the only entry) so the newest data is never refused.  False when the
 * ring is frozen (a crash handler reads it): b is dropped and counted, with
 * the losses it was to report (taken).  Either way nothing is taken after. */
bool gt_ring_push(struct gt_ring *r, struct gt_blob *b);

/* The crash handler's side: true once no push runs and none will until
 * gt_ring_thaw(); false after about max_ms when one still runs (the crash
 * happened inside it, on the advance thread).  Async-signal-safe. */
bool gt_ring_freeze(struct gt_ring *r, unsigned max_ms);
void gt_ring_thaw(struct gt_ring *r);

/* The i-th entry, 0 = oldest; NULL past the end.  Borrowed. */
struct gt_blob *gt_ring_at(const struct gt_ring *r, uint32_t i);

/* The oldest entry not yet pushed to gtraced, or NULL.  Borrowed. */
struct gt_blob *gt_ring_first_unsent(const struct gt_ring *r);
/* Marks that entry as pushed. */
void gt_ring_mark_sent(struct gt_ring *r);

/* Losses for the generation being assembled to report (and their bytes):
 * generations dropped unsent since the last call, and those whose report
 * was lost with a later loss.  They are taken until it is pushed.  *ret_new
 * (if not NULL): how many of them are new losses, not reported before. */
uint64_t gt_ring_take_dropped(struct gt_ring *r, uint64_t *ret_bytes, uint64_t *ret_new);
/* The generation that took them could not be made: it is a loss, and what
 * it took is to be reported again. */
void gt_ring_untake(struct gt_ring *r);
/* Every loss no generation in the ring reports, taken ones included,
 * without a reset (the crash handler, which reports them in the generation
 * it seals and lets the advancer report them again if the process lives
 * on).  Async-signal-safe; exact once the ring is frozen, unless a cycle
 * takes losses meanwhile (then they may count twice, never none). */
uint64_t gt_ring_dropped(const struct gt_ring *r, uint64_t *ret_bytes);

#endif
