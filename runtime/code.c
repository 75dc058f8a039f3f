/* SPDX-License-Identifier: MIT */
/*
 * Where the process's code is: the executable segments of every loaded
 * object, for the stack walk (trace.c) to tell a return address from
 * whatever a frame without a frame pointer left where a frame record
 * would be.
 *
 * Code built without frame pointers (most distributions' default) keeps
 * anything in %rbp: often a pointer to its own locals, which passes every
 * check of a frame record's place (on the thread's stack, above the last
 * record, aligned).  Followed, it yields a "return address" made of the
 * caller's data (a log's own text, a heap pointer), a different stack for
 * nearly every event, and a table that fills with them.  A walk now ends at
 * the first return address outside the code of the objects loaded.
 *
 * The ranges are read with dl_iterate_phdr, which takes the loader's lock
 * for the link map list, so never by an event: at gtrace_start(), then by
 * the advance thread once per cycle, which reads the loader's counts of
 * objects loaded and unloaded and stops there when they have not moved.
 * That lock (glibc's dl_load_write_lock) is held only while the list
 * changes and during other dl_iterate_phdr calls, not while a library's
 * constructors or destructors run, so a cycle can wait on it only briefly.
 * Two buffers: the advancer rebuilds the one not published, then publishes
 * it; readers are inside write sections, and the advancer rebuilds only
 * after a wait for every section in progress (gt_wait_writers), which a
 * reader of the buffer it is about to overwrite had begun before that
 * buffer was replaced.  Until the advancer's next cycle, a frame in an
 * object just loaded ends the walk (its stack is cut short, never wrong).
 *
 * A buffer grows when the objects' segments outnumber it, and only while
 * it is not published, so no reader is in the arrays it replaces: it holds
 * every segment the process has loaded (16 bytes each), as the loader's
 * own list holds every object.  Only when memory runs out do the later
 * objects' frames end walks, as an object just loaded does.  The buffers
 * live as long as the process.
 */
#include <link.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

#define CODE_FIRST 256 /* segments a buffer holds at first */

struct code_ranges {
        uint32_t n, cap;
        uintptr_t *lo, *hi; /* [lo, hi), sorted by lo, disjoint; cap of each */
};

uint32_t gt_test_code_first;

static struct code_ranges code_buf[2];
static _Atomic(const struct code_ranges *) code_cur;
static unsigned long long code_adds, code_subs; /* the loader's counts at the last build */
static bool code_built;

struct code_scan {
        struct code_ranges *r;
        unsigned long long adds, subs;
        bool first, force, unchanged, full;
};

static int code_add(struct dl_phdr_info *info, size_t size, void *ctx)
{
        struct code_scan *sc = ctx;
        if (sc->first && size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
                /* The loader's counts, the same in every call. */
                sc->adds = info->dlpi_adds;
                sc->subs = info->dlpi_subs;
                if (!sc->force && code_built && sc->adds == code_adds && sc->subs == code_subs) {
                        sc->unchanged = true;
                        return 1;
                }
        }
        sc->first = false;
        struct code_ranges *r = sc->r;
        for (unsigned i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || !ph->p_memsz)
                        continue;
                if (r->n == r->cap) {
                        sc->full = true;
                        return 1;
                }
                uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
                /* Insertion sort: objects come in load order, not address order. */
                uint32_t j = r->n++;
                for (; j > 0 && r->lo[j - 1] > lo; j--) {
                        r->lo[j] = r->lo[j - 1];
                        r->hi[j] = r->hi[j - 1];
                }
                r->lo[j] = lo;
                r->hi[j] = hi;
        }
        return 0;
}

/* Gives r room for cap segments (r is not published).  On failure r keeps
 * what it had, and the scan keeps the segments that fit. */
static void code_grow(struct code_ranges *r, uint32_t cap)
{
        uintptr_t *lo = realloc(r->lo, cap * sizeof(*lo));
        if (!lo)
                return;
        r->lo = lo;
        uintptr_t *hi = realloc(r->hi, cap * sizeof(*hi));
        if (!hi)
                return;
        r->hi = hi;
        r->cap = cap;
}

/* Reads the loaded objects into the buffer not published and publishes
 * it, if any was loaded or unloaded since the last build (or always, with
 * force).  Never while a reader may be in that buffer: see the top. */
static void code_build(bool force)
{
        const struct code_ranges *cur = atomic_load_explicit(&code_cur, memory_order_relaxed);
        struct code_ranges *next = cur == &code_buf[0] ? &code_buf[1] : &code_buf[0];
        /* A test's small start applies to every build, so that each one
         * it makes has to grow. */
        if (gt_test_code_first)
                code_grow(next, gt_test_code_first);
        else if (!next->cap)
                code_grow(next, CODE_FIRST);
        struct code_scan sc;
        for (;;) {
                sc = (struct code_scan){.r = next, .first = true, .force = force};
                next->n = 0;
                (void)dl_iterate_phdr(code_add, &sc);
                uint32_t cap = next->cap;
                if (!sc.full || !cap || cap > UINT32_MAX / 2)
                        break;
                code_grow(next, cap * 2);
                if (next->cap == cap)
                        break; /* out of memory: what fits */
                force = true;   /* the counts are read; scan it all again */
        }
        if (sc.unchanged)
                return; /* keep the published one */
        code_adds = sc.adds;
        code_subs = sc.subs;
        code_built = true;
        atomic_store_explicit(&code_cur, next, memory_order_release);
}

void gt_code_init(void)
{
        code_build(true);
}

void gt_code_refresh(void)
{
        code_build(false);
}

bool gt_code_addr(uintptr_t pc)
{
        const struct code_ranges *r = atomic_load_explicit(&code_cur, memory_order_acquire);
        if (!r)
                return false;
        /* The last range starting at or below pc. */
        uint32_t lo = 0, hi = r->n;
        while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (r->lo[mid] <= pc)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo > 0 && pc < r->hi[lo - 1];
}
