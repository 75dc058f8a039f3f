/* SPDX-License-Identifier: MIT */
/*
 * Process-wide interning of strings and stacks.
 *
 * Each table is an open-addressing array of entry pointers plus a bump
 * arena for the entries, both fixed at gtrace_start().  Lookups are
 * lock-free; an insert claims arena space with one fetch_add and publishes
 * the finished entry with a release CAS on an empty slot, so a reader that
 * loads a slot with acquire sees a complete entry.  Nothing is ever removed
 * while tracing runs, which is what lets a region opened many generations
 * ago keep pointing at its name.
 *
 * Ids are dense (1, 2, ...) and stable for the life of the tracing session;
 * a generation defines only the ids it references (last_gen, see
 * internal.h), so ids in one generation may have gaps.
 *
 * Each table also lists its entries in the order they were made, so that
 * cutting a generation visits the entries that exist rather than every slot
 * (65536 and 16384 of them by default: most of an idle process's advance
 * cycle when it scanned them).  An entry joins the list before it is
 * published in a slot: whoever finds it in a slot, and marks it used in a
 * generation, can rely on the list holding it by the time the advancer
 * walks it for that generation (the advancer acquires the writer's section
 * end).  An entry that loses the race for its slot stays in the list,
 * never marked, never emitted; like its arena space, that is bounded.
 *
 * Probing is bounded (GT_MAX_PROBE): an entry always sits within that many
 * slots of its home, so a nearly full table costs a bounded miss instead of
 * a scan of the whole table on every lookup.
 *
 * When a table or its arena is full, interning returns a fixed entry
 * ("<gtrace: string table full>") and counts the miss: the event is kept,
 * only its text is lost, and gtrace_get_stats() / the trace show it.
 */
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/* ---- the program's read-only data ---------------------------------------------- */

#define FIXED_MAX 8
static struct {
        uintptr_t lo, hi;
} fixed[FIXED_MAX];
static unsigned nfixed;

/* The first object dl_iterate_phdr reports is the program itself, which
 * stays mapped for the life of the process; libraries can be unloaded (and
 * their addresses reused), so their strings keep the compare. */
static int fixed_add(struct dl_phdr_info *info, size_t size, void *ctx)
{
        (void)size;
        (void)ctx;
        for (unsigned i = 0; i < info->dlpi_phnum && nfixed < FIXED_MAX; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) || !ph->p_memsz)
                        continue;
                fixed[nfixed].lo = info->dlpi_addr + ph->p_vaddr;
                fixed[nfixed].hi = fixed[nfixed].lo + ph->p_memsz;
                nfixed++;
        }
        return 1; /* the program only */
}

static void fixed_scan(void)
{
        (void)dl_iterate_phdr(fixed_add, NULL);
}

void gt_str_fixed_init(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        (void)pthread_once(&once, fixed_scan);
}

bool gt_str_fixed(const char *s)
{
        uintptr_t a = (uintptr_t)s;
        for (unsigned i = 0; i < nfixed; i++)
                if (a >= fixed[i].lo && a < fixed[i].hi)
                        return true;
        return false;
}

struct table {
        _Atomic(void *) *slots;
        _Atomic(void *) *list; /* entries by id - 1: in the order made (mask + 1 at most) */
        uint32_t mask;
        uint8_t *arena;
        size_t arena_bytes;
        _Atomic size_t arena_used;
        _Atomic uint32_t next_id;
        _Atomic uint64_t dropped;
};

static struct table strs, stacks;
void (*gt_test_published)(int table, const void *entry);
static struct gt_str *str_full;

static uint64_t hash_bytes(const void *p, size_t n)
{
        /* FNV-1a: short keys, good enough spread for a power-of-two table. */
        const uint8_t *b = p;
        uint64_t h = 1469598103934665603ull;
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 1099511628211ull;
        }
        return h ^ (h >> 29);
}

static int table_init(struct table *t, uint32_t max, uint64_t bytes)
{
        t->mask = max - 1;
        t->slots = calloc(max, sizeof(*t->slots));
        t->list = calloc(max, sizeof(*t->list));
        if (!t->slots || !t->list) {
                free(t->slots);
                free(t->list);
                t->slots = t->list = NULL;
                return -ENOMEM;
        }
        /* Reserve without committing: pages are touched as entries are made. */
        void *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (a == MAP_FAILED) {
                free(t->slots);
                free(t->list);
                t->slots = t->list = NULL;
                return -ENOMEM;
        }
        t->arena = a;
        t->arena_bytes = bytes;
        atomic_init(&t->arena_used, 0);
        atomic_init(&t->next_id, 1);
        atomic_init(&t->dropped, 0);
        return 0;
}

static void table_done(struct table *t)
{
        free(t->slots);
        free(t->list);
        if (t->arena)
                munmap(t->arena, t->arena_bytes);
        *t = (struct table){0};
}

static void *arena_alloc(struct table *t, size_t n)
{
        n = (n + 15) & ~(size_t)15;
        size_t off = atomic_fetch_add_explicit(&t->arena_used, n, memory_order_relaxed);
        if (off + n > t->arena_bytes)
                return NULL;
        return t->arena + off;
}

/* Puts a finished entry, not yet published, on t's list at its id (ids
 * are dense and taken once per entry made); false when that is past the
 * list (the entry must then not be published). */
static bool list_add(struct table *t, uint32_t id, void *e)
{
        if (id - 1 > t->mask)
                return false;
        /* Release: a walker that sees the pointer sees the entry. */
        atomic_store_explicit(&t->list[id - 1], e, memory_order_release);
        return true;
}

/* How many entries t's list may hold; list_at(t, i) below it is one of
 * them, or NULL for an insert in progress (which no section of a
 * generation being cut can have used: see the top of this file). */
static uint32_t list_len(struct table *t)
{
        if (!t->list)
                return 0;
        uint32_t n = atomic_load_explicit(&t->next_id, memory_order_relaxed) - 1;
        return n <= t->mask ? n : t->mask + 1;
}

static void *list_at(struct table *t, uint32_t i)
{
        return atomic_load_explicit(&t->list[i], memory_order_acquire);
}

int gt_strtab_init(uint32_t max_strings, uint64_t bytes, uint32_t max_stacks, uint64_t stack_bytes)
{
        int r = table_init(&strs, max_strings, bytes);
        if (r < 0)
                return r;
        r = table_init(&stacks, max_stacks, stack_bytes);
        if (r < 0) {
                table_done(&strs);
                return r;
        }
        static const char full[] = "<gtrace: string table full>";
        str_full = gt_str_intern(full, sizeof(full) - 1);
        return 0;
}

void gt_strtab_done(void)
{
        table_done(&strs);
        table_done(&stacks);
        str_full = NULL;
}

static bool str_equal(const struct gt_str *e, const char *s, size_t len)
{
        return e->len == len && memcmp(e->data, s, len) == 0;
}

struct gt_str *gt_str_intern(const char *s, size_t len)
{
        uint64_t h = hash_bytes(s, len);
        struct gt_str *fresh = NULL;

        for (uint32_t i = 0; i <= strs.mask && i < GT_MAX_PROBE; i++) {
                _Atomic(void *) *slot = &strs.slots[(h + i) & strs.mask];
                struct gt_str *e = atomic_load_explicit(slot, memory_order_acquire);
                while (!e) {
                        if (!fresh) {
                                /* Zero-padded to 16 bytes, or to 32 when longer
                                 * than 15 (trace.c, str_same_short). */
                                size_t room = len + 1 <= 16 ? 16 : len + 1 <= 32 ? 32 : len + 1;
                                fresh = arena_alloc(&strs, sizeof(*fresh) + room);
                                if (!fresh)
                                        goto full;
                                atomic_init(&fresh->last_gen, 0);
                                fresh->len = (uint32_t)len;
                                memset(fresh->data, 0, room);
                                memcpy(fresh->data, s, len);
                                /* Masks over the len + 1 bytes a short string
                                 * compares (trace.c, str_same_short): bytes
                                 * of two 8-byte words under 16 bytes, bits of
                                 * a 32-byte compare's result up to 31. */
                                size_t n = len + 1;
                                if (n <= 16) {
                                        fresh->mask[0] = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
                                        fresh->mask[1] = n == 16 ? ~0ull
                                                         : n <= 8 ? 0
                                                                  : (1ull << (8 * (n - 8))) - 1;
                                } else {
                                        /* Longer names are compared by a loop. */
                                        fresh->mask[0] = n <= 32 ? (1ull << n) - 1 : 0;
                                        fresh->mask[1] = 0;
                                }
                                fresh->id = atomic_fetch_add_explicit(&strs.next_id, 1,
                                                                      memory_order_relaxed);
                                if (!list_add(&strs, fresh->id, fresh))
                                        goto full;
                        }
                        void *expect = NULL;
                        if (atomic_compare_exchange_strong_explicit(slot, &expect, fresh,
                                                                    memory_order_acq_rel,
                                                                    memory_order_acquire)) {
                                if (unlikely(gt_test_published))
                                        gt_test_published(0, fresh);
                                return fresh;
                        }
                        e = expect; /* someone else filled the slot: compare with theirs */
                }
                if (str_equal(e, s, len))
                        return e; /* a fresh entry lost the race: its arena space is wasted, bounded */
        }
full:
        atomic_fetch_add_explicit(&strs.dropped, 1, memory_order_relaxed);
        return str_full;
}

struct gt_stack *gt_stack_intern(const uint64_t *pcs, uint32_t n)
{
        uint64_t h = gt_stack_hash(pcs, n);
        struct gt_stack *fresh = NULL;

        for (uint32_t i = 0; i <= stacks.mask && i < GT_MAX_PROBE; i++) {
                _Atomic(void *) *slot = &stacks.slots[(h + i) & stacks.mask];
                struct gt_stack *e = atomic_load_explicit(slot, memory_order_acquire);
                while (!e) {
                        if (!fresh) {
                                fresh = arena_alloc(&stacks, sizeof(*fresh) + n * sizeof(*pcs));
                                if (!fresh)
                                        goto full;
                                atomic_init(&fresh->last_gen, 0);
                                fresh->n = n;
                                fresh->hash = h;
                                memcpy(fresh->pcs, pcs, n * sizeof(*pcs));
                                fresh->id = atomic_fetch_add_explicit(&stacks.next_id, 1,
                                                                      memory_order_relaxed);
                                if (!list_add(&stacks, fresh->id, fresh))
                                        goto full;
                        }
                        void *expect = NULL;
                        if (atomic_compare_exchange_strong_explicit(slot, &expect, fresh,
                                                                    memory_order_acq_rel,
                                                                    memory_order_acquire)) {
                                if (unlikely(gt_test_published))
                                        gt_test_published(1, fresh);
                                return fresh;
                        }
                        e = expect;
                }
                if (e->hash == h && e->n == n && memcmp(e->pcs, pcs, n * sizeof(*pcs)) == 0)
                        return e;
        }
full:
        atomic_fetch_add_explicit(&stacks.dropped, 1, memory_order_relaxed);
        return NULL; /* no stack recorded (id 0) */
}

uint64_t gt_stack_hash(const uint64_t *pcs, uint32_t n)
{
        /* Word at a time: stacks are tens of 64-bit addresses, and this runs
         * for every stack-carrying event that misses the thread's cache. */
        uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
        for (uint32_t i = 0; i < n; i++) {
                h ^= pcs[i];
                h *= 0xff51afd7ed558ccdull;
                h ^= h >> 32;
        }
        return h;
}

static void mark(_Atomic uint64_t *last, uint64_t gen)
{
        uint64_t cur = atomic_load_explicit(last, memory_order_relaxed);
        /* Atomic max: two threads on either side of a generation boundary may
         * mark the same entry; the newer generation must win. */
        while (cur < gen &&
               !atomic_compare_exchange_weak_explicit(last, &cur, gen, memory_order_relaxed,
                                                      memory_order_relaxed))
                ;
}

void gt_str_mark(struct gt_str *e, uint64_t gen)
{
        mark(&e->last_gen, gen);
}

void gt_stack_mark(struct gt_stack *e, uint64_t gen)
{
        mark(&e->last_gen, gen);
}

void gt_str_foreach(uint64_t gen, void (*fn)(void *ctx, const struct gt_str *e), void *ctx)
{
        for (uint32_t i = 0, n = list_len(&strs); i < n; i++) {
                struct gt_str *e = list_at(&strs, i);
                if (e && atomic_load_explicit(&e->last_gen, memory_order_relaxed) >= gen)
                        fn(ctx, e);
        }
}

void gt_stack_foreach(uint64_t gen, void (*fn)(void *ctx, const struct gt_stack *e), void *ctx)
{
        for (uint32_t i = 0, n = list_len(&stacks); i < n; i++) {
                struct gt_stack *e = list_at(&stacks, i);
                if (e && atomic_load_explicit(&e->last_gen, memory_order_relaxed) >= gen)
                        fn(ctx, e);
        }
}

uint64_t gt_strtab_dropped(void)
{
        return atomic_load_explicit(&strs.dropped, memory_order_relaxed) +
               atomic_load_explicit(&stacks.dropped, memory_order_relaxed);
}
