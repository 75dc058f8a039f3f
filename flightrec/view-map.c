/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "view-map.h"

#define VMAP_MIN_CAP 16

void vmap_init(struct vmap *m)
{
        m->slots = NULL;
        m->cap = 0;
        m->n = 0;
}

void vmap_done(struct vmap *m)
{
        if (!m)
                return;
        free(m->slots);
        vmap_init(m);
}

static int vmap_resize(struct vmap *m, size_t cap)
{
        struct vmap_slot *slots = calloc(cap, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++) {
                if (!m->slots[i].value)
                        continue;
                size_t j = vmap_hash(m->slots[i].key, cap);
                while (slots[j].value)
                        j = (j + 1) & (cap - 1);
                slots[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
        return 0;
}

int vmap_put(struct vmap *m, uint64_t key, void *value)
{
        /* Load factor at most 1/2: probes stay short. */
        if ((m->n + 1) * 2 > m->cap) {
                int r = vmap_resize(m, m->cap ? m->cap * 2 : VMAP_MIN_CAP);
                if (r < 0)
                        return r;
        }
        size_t i = vmap_hash(key, m->cap);
        while (m->slots[i].value && m->slots[i].key != key)
                i = (i + 1) & (m->cap - 1);
        if (!m->slots[i].value)
                m->n++;
        m->slots[i].key = key;
        m->slots[i].value = value;
        return 0;
}

void *vmap_del(struct vmap *m, uint64_t key)
{
        if (!m->cap)
                return NULL;
        size_t mask = m->cap - 1;
        size_t i = vmap_hash(key, m->cap);
        while (m->slots[i].value && m->slots[i].key != key)
                i = (i + 1) & mask;
        void *value = m->slots[i].value;
        if (!value)
                return NULL;
        /* Backward shift: pull every later member of the probe run whose home
         * slot is not between the hole and itself into the hole. */
        size_t hole = i;
        for (size_t j = (i + 1) & mask; m->slots[j].value; j = (j + 1) & mask) {
                size_t home = vmap_hash(m->slots[j].key, m->cap);
                int movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
                if (movable) {
                        m->slots[hole] = m->slots[j];
                        hole = j;
                }
        }
        m->slots[hole].value = NULL;
        m->n--;
        /* Give memory back after a burst (many fibers that all exited). */
        if (m->cap > VMAP_MIN_CAP && m->n * 8 < m->cap)
                (void)vmap_resize(m, m->cap / 2);
        return value;
}

int vmap_next(const struct vmap *m, size_t *iter, uint64_t *ret_key, void **ret_value)
{
        for (size_t i = *iter; i < m->cap; i++) {
                if (m->slots[i].value) {
                        *iter = i + 1;
                        if (ret_key)
                                *ret_key = m->slots[i].key;
                        if (ret_value)
                                *ret_value = m->slots[i].value;
                        return 1;
                }
        }
        *iter = m->cap;
        return 0;
}
