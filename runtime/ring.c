/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "clock.h"
#include "ring.h"

struct gt_blob *gt_blob_new(uint64_t gen, size_t len)
{
        struct gt_blob *b = malloc(sizeof(*b) + len);
        if (!b)
                return NULL;
        b->refs = 1;
        b->gen = gen;
        b->len = len;
        b->reported_gens = b->reported_bytes = 0;
        return b;
}

struct gt_blob *gt_blob_ref(struct gt_blob *b)
{
        b->refs++;
        return b;
}

void gt_blob_unref(struct gt_blob *b)
{
        if (b && --b->refs == 0)
                free(b);
}

int gt_ring_init(struct gt_ring *r, uint32_t max_count, uint64_t max_bytes)
{
        *r = (struct gt_ring){.max_count = max_count ? max_count : 1, .max_bytes = max_bytes};
        r->slots = calloc(r->max_count, sizeof(*r->slots));
        return r->slots ? 0 : -ENOMEM;
}

void gt_ring_done(struct gt_ring *r)
{
        if (!r->slots)
                return;
        for (uint32_t i = 0; i < r->count; i++)
                gt_blob_unref(r->slots[(r->head + i) % r->max_count]);
        free(r->slots);
        r->slots = NULL;
        r->count = 0;
}

/* Losses a lost generation reported, to be reported again by a later one. */
static void carry(struct gt_ring *r, uint64_t gens, uint64_t bytes)
{
        atomic_fetch_add_explicit(&r->gens_carried, gens, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->bytes_carried, bytes, memory_order_relaxed);
}

/* The generation being assembled, which took the ring's losses, is pushed
 * or lost: either way they are no longer taken. */
static void untaken(struct gt_ring *r)
{
        atomic_store_explicit(&r->taken_gens, 0, memory_order_relaxed);
        atomic_store_explicit(&r->taken_bytes, 0, memory_order_relaxed);
}

static void ring_evict_oldest(struct gt_ring *r)
{
        struct gt_blob *b = r->slots[r->head];
        r->slots[r->head] = NULL;
        r->head = (r->head + 1) % r->max_count;
        r->count--;
        r->bytes -= b->len;
        r->gens_evicted++;
        if (r->unsent > r->count) {
                /* It was never pushed: a real loss, recorded in the next generation. */
                r->unsent = r->count;
                atomic_fetch_add_explicit(&r->gens_dropped, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&r->bytes_dropped, b->len, memory_order_relaxed);
                carry(r, b->reported_gens, b->reported_bytes); /* what it reported */
        }
        gt_blob_unref(b);
}

bool gt_ring_push(struct gt_ring *r, struct gt_blob *b)
{
        /* See ring.h: busy, then frozen, both seq_cst. */
        atomic_store_explicit(&r->busy, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&r->frozen, memory_order_seq_cst)) {
                /* Lost, and what it was to report with it: count both
                 * before busy clears, which the crash handler waits for. */
                atomic_fetch_add_explicit(&r->frozen_dropped, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&r->bytes_dropped, b->len, memory_order_relaxed);
                carry(r, b->reported_gens, b->reported_bytes);
                untaken(r);
                atomic_store_explicit(&r->busy, 0, memory_order_release);
                gt_blob_unref(b);
                return false;
        }
        while (r->count > 0 && (r->count == r->max_count || r->bytes + b->len > r->max_bytes))
                ring_evict_oldest(r);
        r->slots[(r->head + r->count) % r->max_count] = b;
        r->count++;
        r->bytes += b->len;
        r->unsent++;
        untaken(r); /* b reports them */
        atomic_store_explicit(&r->busy, 0, memory_order_release);
        return true;
}

bool gt_ring_freeze(struct gt_ring *r, unsigned max_ms)
{
        atomic_store_explicit(&r->frozen, 1, memory_order_seq_cst);
        /* The push's release of busy makes the ring's contents visible. */
        return gt_wait_clear(&r->busy, max_ms);
}

void gt_ring_thaw(struct gt_ring *r)
{
        atomic_store_explicit(&r->frozen, 0, memory_order_release);
}

struct gt_blob *gt_ring_at(const struct gt_ring *r, uint32_t i)
{
        return i < r->count ? r->slots[(r->head + i) % r->max_count] : NULL;
}

struct gt_blob *gt_ring_first_unsent(const struct gt_ring *r)
{
        return r->unsent ? gt_ring_at(r, (uint32_t)(r->count - r->unsent)) : NULL;
}

void gt_ring_mark_sent(struct gt_ring *r)
{
        if (r->unsent) {
                r->unsent--;
                r->sent_total++;
        }
}

uint64_t gt_ring_dropped(const struct gt_ring *r, uint64_t *ret_bytes)
{
        if (ret_bytes)
                *ret_bytes = atomic_load_explicit(&r->bytes_dropped, memory_order_relaxed) +
                             atomic_load_explicit(&r->bytes_carried, memory_order_relaxed) +
                             atomic_load_explicit(&r->taken_bytes, memory_order_relaxed);
        return atomic_load_explicit(&r->gens_dropped, memory_order_relaxed) +
               atomic_load_explicit(&r->frozen_dropped, memory_order_relaxed) +
               atomic_load_explicit(&r->gens_carried, memory_order_relaxed) +
               atomic_load_explicit(&r->taken_gens, memory_order_relaxed);
}

uint64_t gt_ring_take_dropped(struct gt_ring *r, uint64_t *ret_bytes, uint64_t *ret_new)
{
        /* Only the advance thread writes these.  Taken first, then
         * subtracted: a crash handler reading in between counts them twice
         * rather than not at all. */
        uint64_t g = atomic_load_explicit(&r->gens_dropped, memory_order_relaxed);
        uint64_t f = atomic_load_explicit(&r->frozen_dropped, memory_order_relaxed);
        uint64_t c = atomic_load_explicit(&r->gens_carried, memory_order_relaxed);
        uint64_t by = atomic_load_explicit(&r->bytes_dropped, memory_order_relaxed);
        uint64_t cb = atomic_load_explicit(&r->bytes_carried, memory_order_relaxed);
        atomic_store_explicit(&r->taken_gens, g + f + c, memory_order_relaxed);
        atomic_store_explicit(&r->taken_bytes, by + cb, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->gens_dropped, g, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->frozen_dropped, f, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->gens_carried, c, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->bytes_dropped, by, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->bytes_carried, cb, memory_order_relaxed);
        if (ret_bytes)
                *ret_bytes = by + cb;
        if (ret_new)
                *ret_new = g + f;
        return g + f + c;
}

void gt_ring_untake(struct gt_ring *r)
{
        atomic_fetch_add_explicit(&r->gens_dropped, 1, memory_order_relaxed);
        carry(r, atomic_load_explicit(&r->taken_gens, memory_order_relaxed),
              atomic_load_explicit(&r->taken_bytes, memory_order_relaxed));
        untaken(r);
}
