/* SPDX-License-Identifier: MIT */
/*
 * A small open-addressing hash map from 64-bit ids (thread, fiber, task) to
 * pointers, for the text tools and the exporters.  They track what is live
 * at each point of a trace (threads, fibers, tasks), so entries are added
 * and removed all the time: deletion uses backward shifting, which leaves no
 * tombstones and keeps lookups short however long the trace is.
 *
 * Memory is proportional to the number of live entries (the table shrinks
 * back when it empties out), never to the length of the trace.
 */
#ifndef FLIGHTREC_VIEW_MAP_H
#define FLIGHTREC_VIEW_MAP_H

#include <stddef.h>
#include <stdint.h>

struct vmap_slot {
        uint64_t key;
        void *value; /* NULL marks an empty slot: values are never NULL */
};

struct vmap {
        struct vmap_slot *slots;
        size_t cap; /* power of two, or 0 */
        size_t n;
};

void vmap_init(struct vmap *m);
/* Frees the table, not the values. */
void vmap_done(struct vmap *m);

/* Ids are often small consecutive integers; mix them so they spread. */
static inline size_t vmap_hash(uint64_t key, size_t cap)
{
        key ^= key >> 33;
        key *= 0xff51afd7ed558ccdULL;
        key ^= key >> 33;
        return (size_t)key & (cap - 1);
}

/* Inline: the tracker and the exporters look ids up for most events. */
static inline void *vmap_get(const struct vmap *m, uint64_t key)
{
        if (!m->cap)
                return NULL;
        for (size_t i = vmap_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
                if (!m->slots[i].value)
                        return NULL;
                if (m->slots[i].key == key)
                        return m->slots[i].value;
        }
}
/* Inserts or replaces; value must not be NULL.  0 or -ENOMEM. */
int vmap_put(struct vmap *m, uint64_t key, void *value);
/* Removes key; returns the value it had, or NULL. */
void *vmap_del(struct vmap *m, uint64_t key);

/* Iteration: for (size_t i = 0; vmap_next(m, &i, &k, &v);) ...  The map must
 * not change during the loop. */
int vmap_next(const struct vmap *m, size_t *iter, uint64_t *ret_key, void **ret_value);

#endif
