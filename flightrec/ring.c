/* SPDX-License-Identifier: MIT */
/*
 * Per-process generation rings with fair global eviction (contract in
 * flightrec/ring.h).
 *
 * A ring is a circular array of buffer pointers, capacity = the generations
 * bound.  Each ring belongs to an owner (the daemon's uid of the process);
 * owners are kept in a short list with their byte totals, created with
 * their first ring and freed with their last.  The set keeps a list of
 * rings and running totals.  The state is simple and checked by
 * fr_rings_check():
 *
 *     count <= generations,  bytes == sum of held lengths,
 *     bytes <= max_process_bytes unless count == 1 (the newest generation is
 *     never refused, however large: the daemon limits frame sizes instead),
 *     owner bytes == sum over its rings <= max_owner_bytes (when set) unless
 *     every ring of that owner holds at most one generation,
 *     set bytes == sum over rings <= max_total_bytes unless every ring that
 *     holds anything holds exactly one generation.
 *
 * Eviction for the owner and global bounds scans the rings for the biggest
 * holder.  That is linear in the number of processes (bounded by gtraced
 * --max-processes), paid only when a bound is exceeded; a heap would save
 * little at the sizes the daemon allows and would need updating on every
 * push.  The number of owners is the number of distinct uids with traced
 * processes: a handful.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/ring.h"
#include "proto/event.h"
#include "proto/varint.h"

struct fr_owner {
        struct fr_owner *next;
        uint32_t id;
        uint32_t nrings;
        uint64_t bytes;
};

struct fr_ring {
        struct fr_rings *set;
        struct fr_owner *owner;
        struct fr_ring *prev, *next; /* in set->rings */
        uint64_t pid;
        uint64_t start_time;
        struct fr_genbuf **slots; /* circular, capacity set->limits.generations */
        uint32_t head;            /* oldest */
        uint32_t count;
        uint64_t bytes;
        uint64_t evicted;
};

struct fr_rings {
        struct fr_limits limits;
        struct fr_ring *rings;
        size_t nrings;
        struct fr_owner *owners;
        uint64_t bytes;
        uint64_t generations;
};

/* ---- buffers --------------------------------------------------------------- */

struct fr_genbuf *fr_genbuf_new(size_t len)
{
        if (len > SIZE_MAX - sizeof(struct fr_genbuf))
                return NULL;
        struct fr_genbuf *b = malloc(sizeof(*b) + len);
        if (!b)
                return NULL;
        memset(b, 0, sizeof(*b));
        atomic_init(&b->refs, 1);
        b->len = len;
        return b;
}

struct fr_genbuf *fr_genbuf_ref(struct fr_genbuf *b)
{
        /* Relaxed: taking a reference needs no ordering, the caller already
         * holds one (the usual reference-count argument). */
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        return b;
}

void fr_genbuf_unref(struct fr_genbuf *b)
{
        if (!b)
                return;
        /* acq_rel pairs with the other threads' releasing decrements: the
         * last owner frees only after every other owner's reads are done. */
        if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
                free(b);
}

static int scan_fail(char *err, size_t err_len, size_t off, const char *what)
{
        if (err && err_len)
                snprintf(err, err_len, "generation blob: %s at byte %zu", what, off);
        return -EBADMSG;
}

/* The ns of clock-unit time t on the clock whose reading at ref was base
 * (CLOCK record: wall_ns or mono_ns); 0 if unusable. */
static uint64_t clock_at(const uint64_t *clk, uint64_t base, uint64_t t)
{
        uint64_t freq = clk[0], ref = clk[1];
        if (!freq)
                return 0;
        __int128 d = (__int128)t - (__int128)ref;
        __int128 ns = (__int128)base + d * 1000000000 / (__int128)freq;
        return ns < 0 || ns > (__int128)UINT64_MAX ? 0 : (uint64_t)ns;
}

int fr_genbuf_scan(struct fr_genbuf *b, char *err, size_t err_len)
{
        const uint8_t *p = b->data, *end = b->data + b->len;
        uint64_t clk[6] = {0};
        int have_clock = 0, ended = 0;

        b->gen = b->pid = b->first_wall_ns = b->last_wall_ns = b->first_mono_ns = 0;
        b->first_clock = 0;
        b->events_lost = b->gens_lost = 0;
        while (p < end) {
                size_t off = (size_t)(p - b->data);
                if (ended)
                        return scan_fail(err, err_len, off, "bytes after END_OF_GENERATION");
                uint8_t type = *p++;
                const struct proto_event_spec *spec = proto_event_spec(type);
                if (!spec || spec->where != 'S')
                        return scan_fail(err, err_len, off, "not a top-level record");
                if (off == 0 && type != PROTO_EV_GENERATION)
                        return scan_fail(err, err_len, off, "first record is not GENERATION");
                uint64_t a[PROTO_MAX_ARGS] = {0};
                for (unsigned i = 0; i < spec->nargs; i++) {
                        if (proto_get_uvarint(&p, end, &a[i]) < 0)
                                return scan_fail(err, err_len, off, "truncated record");
                        if (spec->args[i].kind == PA_BYTES) {
                                if (a[i] > (uint64_t)(end - p))
                                        return scan_fail(err, err_len, off,
                                                         "byte string past the end");
                                p += a[i];
                        }
                }
                switch (type) {
                case PROTO_EV_GENERATION:
                        if (off != 0)
                                return scan_fail(err, err_len, off, "second GENERATION");
                        b->gen = a[0];
                        b->pid = a[1];
                        break;
                case PROTO_EV_CLOCK:
                        memcpy(clk, a, sizeof(clk));
                        have_clock = 1;
                        break;
                case PROTO_EV_GENS_LOST:
                        b->gens_lost = a[0];
                        break;
                case PROTO_EV_END_OF_GENERATION:
                        if (a[0] != b->gen)
                                return scan_fail(err, err_len, off,
                                                 "END_OF_GENERATION names another generation");
                        b->events_lost = a[3];
                        ended = 1;
                        break;
                default:
                        break;
                }
        }
        if (!ended)
                return scan_fail(err, err_len, b->len, "no END_OF_GENERATION");
        if (have_clock) {
                b->first_wall_ns = clock_at(clk, clk[3], clk[4]);
                b->last_wall_ns = clock_at(clk, clk[3], clk[5]);
                b->first_mono_ns = clock_at(clk, clk[2], clk[4]);
                b->first_clock = clk[4];
        }
        return 0;
}

/* ---- the set ----------------------------------------------------------------- */

struct fr_rings *fr_rings_new(const struct fr_limits *limits)
{
        if (!limits->generations || !limits->max_process_bytes || !limits->max_total_bytes)
                return NULL;
        struct fr_rings *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->limits = *limits;
        return s;
}

void fr_rings_free(struct fr_rings *s)
{
        if (!s)
                return;
        while (s->rings)
                fr_ring_free(s->rings);
        free(s);
}

const struct fr_limits *fr_rings_limits(const struct fr_rings *s)
{
        return &s->limits;
}

uint64_t fr_rings_bytes(const struct fr_rings *s)
{
        return s->bytes;
}

uint64_t fr_rings_generations(const struct fr_rings *s)
{
        return s->generations;
}

size_t fr_rings_count(const struct fr_rings *s)
{
        return s->nrings;
}

int fr_rings_check(const struct fr_rings *s)
{
        uint64_t bytes = 0, gens = 0;
        size_t n = 0;
        int all_single = 1;
        for (const struct fr_ring *r = s->rings; r; r = r->next) {
                uint64_t rb = 0;
                if (r->set != s || r->count > s->limits.generations)
                        return -EBADMSG;
                for (uint32_t i = 0; i < r->count; i++)
                        rb += fr_ring_at(r, i)->len;
                if (rb != r->bytes || (r->count > 1 && r->bytes > s->limits.max_process_bytes))
                        return -EBADMSG;
                if (r->count > 1)
                        all_single = 0;
                bytes += rb;
                gens += r->count;
                n++;
        }
        if (n != s->nrings || bytes != s->bytes || gens != s->generations)
                return -EBADMSG;
        if (!all_single && s->bytes > s->limits.max_total_bytes)
                return -EBADMSG;
        for (const struct fr_owner *o = s->owners; o; o = o->next) {
                uint64_t ob = 0;
                uint32_t nr = 0;
                int owner_single = 1;
                for (const struct fr_ring *r = s->rings; r; r = r->next) {
                        if (r->owner != o)
                                continue;
                        ob += r->bytes;
                        nr++;
                        if (r->count > 1)
                                owner_single = 0;
                }
                if (ob != o->bytes || nr != o->nrings || nr == 0)
                        return -EBADMSG;
                if (s->limits.max_owner_bytes && !owner_single &&
                    o->bytes > s->limits.max_owner_bytes)
                        return -EBADMSG;
        }
        return 0;
}

/* ---- owners ----------------------------------------------------------------- */

static struct fr_owner *owner_get(struct fr_rings *s, uint32_t id)
{
        for (struct fr_owner *o = s->owners; o; o = o->next)
                if (o->id == id)
                        return o;
        struct fr_owner *o = calloc(1, sizeof(*o));
        if (!o)
                return NULL;
        o->id = id;
        o->next = s->owners;
        s->owners = o;
        return o;
}

static void owner_put(struct fr_rings *s, struct fr_owner *o)
{
        if (o->nrings)
                return;
        for (struct fr_owner **pp = &s->owners; *pp; pp = &(*pp)->next)
                if (*pp == o) {
                        *pp = o->next;
                        free(o);
                        return;
                }
}

uint64_t fr_rings_owner_bytes(const struct fr_rings *s, uint32_t owner)
{
        for (const struct fr_owner *o = s->owners; o; o = o->next)
                if (o->id == owner)
                        return o->bytes;
        return 0;
}

/* ---- one ring ---------------------------------------------------------------- */

struct fr_ring *fr_ring_new(struct fr_rings *s, uint64_t pid, uint64_t start_time)
{
        struct fr_ring *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        r->slots = calloc(s->limits.generations, sizeof(*r->slots));
        r->owner = owner_get(s, 0);
        if (!r->slots || !r->owner) {
                if (r->owner)
                        owner_put(s, r->owner);
                free(r->slots);
                free(r);
                return NULL;
        }
        r->owner->nrings++;
        r->set = s;
        r->pid = pid;
        r->start_time = start_time;
        r->next = s->rings;
        if (s->rings)
                s->rings->prev = r;
        s->rings = r;
        s->nrings++;
        return r;
}

static void ring_evict_oldest(struct fr_ring *r)
{
        struct fr_rings *s = r->set;
        struct fr_genbuf *b = r->slots[r->head];
        r->slots[r->head] = NULL;
        r->head = (r->head + 1) % s->limits.generations;
        r->count--;
        r->bytes -= b->len;
        r->owner->bytes -= b->len;
        r->evicted++;
        s->bytes -= b->len;
        s->generations--;
        fr_genbuf_unref(b);
}

void fr_ring_free(struct fr_ring *r)
{
        if (!r)
                return;
        struct fr_rings *s = r->set;
        while (r->count)
                ring_evict_oldest(r);
        if (r->prev)
                r->prev->next = r->next;
        else
                s->rings = r->next;
        if (r->next)
                r->next->prev = r->prev;
        s->nrings--;
        r->owner->nrings--;
        owner_put(s, r->owner);
        free(r->slots);
        free(r);
}

struct fr_ring *fr_ring_find(const struct fr_rings *s, uint64_t pid, uint64_t start_time)
{
        for (struct fr_ring *r = s->rings; r; r = r->next)
                if (r->pid == pid && r->start_time == start_time)
                        return r;
        return NULL;
}

/* Does ring a make a better eviction victim than ring b (NULL: anything
 * does)?  The owner holding more bytes first (when owners count), then the
 * ring holding more. */
static int victim_better(const struct fr_ring *a, const struct fr_ring *b, int by_owner)
{
        if (!b)
                return 1;
        if (by_owner && a->owner != b->owner)
                return a->owner->bytes > b->owner->bytes;
        return a->bytes > b->bytes;
}

/* The ring eviction takes from next, among the rings of owner (NULL: all
 * rings, fairest owner first): the biggest holder with more than one
 * generation; failing that the biggest other holder; failing that the
 * pushing ring itself. */
static struct fr_ring *pick_victim(struct fr_rings *s, struct fr_ring *pusher,
                                   const struct fr_owner *owner)
{
        struct fr_ring *multi = NULL, *other = NULL;
        for (struct fr_ring *r = s->rings; r; r = r->next) {
                if (owner && r->owner != owner)
                        continue;
                if (r->count > 1 && victim_better(r, multi, !owner))
                        multi = r;
                if (r->count >= 1 && r != pusher && victim_better(r, other, !owner))
                        other = r;
        }
        if (multi)
                return multi;
        if (other)
                return other;
        return pusher->count ? pusher : NULL;
}

/* Evicts until *held <= bound (taking victims among owner's rings, or all). */
static void evict_to(struct fr_ring *r, const uint64_t *held, uint64_t bound,
                     const struct fr_owner *owner)
{
        while (*held > bound) {
                struct fr_ring *victim = pick_victim(r->set, r, owner);
                /* The pusher's only generation is the one just pushed: keep it
                 * (a frame never exceeds the bounds, see gtraced). */
                if (!victim || (victim == r && r->count == 1))
                        break;
                ring_evict_oldest(victim);
        }
}

/* r holds len more bytes in gens more generations: the totals, then the
 * owner and global bounds again. */
static void ring_grew(struct fr_ring *r, uint64_t len, uint32_t gens)
{
        struct fr_rings *s = r->set;
        const struct fr_limits *l = &s->limits;

        r->bytes += len;
        r->owner->bytes += len;
        s->bytes += len;
        s->generations += gens;
        if (l->max_owner_bytes)
                evict_to(r, &r->owner->bytes, l->max_owner_bytes, r->owner);
        evict_to(r, &s->bytes, l->max_total_bytes, NULL);
}

void fr_ring_push(struct fr_ring *r, struct fr_genbuf *b)
{
        struct fr_rings *s = r->set;
        const struct fr_limits *l = &s->limits;

        while (r->count > 0 &&
               (r->count == l->generations || r->bytes + b->len > l->max_process_bytes))
                ring_evict_oldest(r);
        r->slots[(r->head + r->count) % l->generations] = b;
        r->count++;
        ring_grew(r, b->len, 1);
}

/* Slot of the i-th held generation (0 = oldest). */
static uint32_t ring_slot(const struct fr_ring *r, uint32_t i)
{
        return (r->head + i) % r->set->limits.generations;
}

static int same_generation(const struct fr_genbuf *a, const struct fr_genbuf *b)
{
        return a->gen == b->gen && a->first_clock == b->first_clock && a->first_mono_ns &&
               b->first_mono_ns;
}

enum fr_put fr_ring_put(struct fr_ring *r, struct fr_genbuf *b, uint64_t *ret_gens_lost)
{
        struct fr_rings *s = r->set;
        const struct fr_limits *l = &s->limits;
        uint32_t i = r->count;

        *ret_gens_lost = 0;
        /* Where b starts among what is held, from the newest back: nearly
         * always after the newest, at once.  b goes after every generation
         * that started no later than it, and after one without a start time. */
        while (b->first_mono_ns && i > 0) {
                struct fr_genbuf *o = r->slots[ring_slot(r, i - 1)];
                if (same_generation(o, b)) {
                        /* Two copies of one generation: keep the larger,
                         * which holds every event of the smaller. */
                        if (b->len < o->len) {
                                fr_genbuf_unref(b);
                                return FR_PUT_DUPLICATE;
                        }
                        *ret_gens_lost = o->gens_lost;
                        /* Room for the difference, from the generations
                         * older than it.  Not enough: it is the oldest left
                         * and the next to go (alone, it stays, as push
                         * keeps one), and both copies go. */
                        uint32_t k = i - 1;
                        while (k > 0 && r->bytes - o->len + b->len > l->max_process_bytes) {
                                ring_evict_oldest(r);
                                k--;
                        }
                        if (r->count > 1 && r->bytes - o->len + b->len > l->max_process_bytes) {
                                ring_evict_oldest(r); /* o */
                                fr_genbuf_unref(b);
                                return FR_PUT_REPLACED;
                        }
                        r->slots[ring_slot(r, k)] = b;
                        ring_grew(r, b->len - o->len, 0);
                        fr_genbuf_unref(o);
                        return FR_PUT_REPLACED;
                }
                if (!o->first_mono_ns || o->first_mono_ns <= b->first_mono_ns)
                        break;
                i--;
        }
        if (i == r->count) {
                fr_ring_push(r, b);
                return FR_PUT_ADDED;
        }
        /* Older than some held generation: room first, then move the newer
         * ones up a place.  Older than all and no room: it would be the
         * next to go, so it goes now. */
        while (r->count > 0 &&
               (r->count == l->generations || r->bytes + b->len > l->max_process_bytes)) {
                if (i == 0) {
                        r->evicted++;
                        fr_genbuf_unref(b);
                        return FR_PUT_ADDED;
                }
                ring_evict_oldest(r);
                i--;
        }
        for (uint32_t k = r->count; k > i; k--)
                r->slots[ring_slot(r, k)] = r->slots[ring_slot(r, k - 1)];
        r->slots[ring_slot(r, i)] = b;
        r->count++;
        ring_grew(r, b->len, 1);
        return FR_PUT_ADDED;
}

int fr_ring_set_owner(struct fr_ring *r, uint32_t owner)
{
        struct fr_rings *s = r->set;
        if (r->owner->id == owner)
                return 0;
        struct fr_owner *o = owner_get(s, owner);
        if (!o)
                return -ENOMEM;
        struct fr_owner *old = r->owner;
        old->bytes -= r->bytes;
        old->nrings--;
        owner_put(s, old);
        r->owner = o;
        o->nrings++;
        o->bytes += r->bytes;
        if (s->limits.max_owner_bytes)
                evict_to(r, &o->bytes, s->limits.max_owner_bytes, o);
        return 0;
}

uint32_t fr_ring_owner(const struct fr_ring *r)
{
        return r->owner->id;
}

uint64_t fr_ring_pid(const struct fr_ring *r)
{
        return r->pid;
}

uint64_t fr_ring_start_time(const struct fr_ring *r)
{
        return r->start_time;
}

uint32_t fr_ring_count(const struct fr_ring *r)
{
        return r->count;
}

uint64_t fr_ring_bytes(const struct fr_ring *r)
{
        return r->bytes;
}

uint64_t fr_ring_evicted(const struct fr_ring *r)
{
        return r->evicted;
}

struct fr_genbuf *fr_ring_at(const struct fr_ring *r, uint32_t i)
{
        return i < r->count ? r->slots[(r->head + i) % r->set->limits.generations] : NULL;
}

uint32_t fr_ring_snapshot(const struct fr_ring *r, struct fr_genbuf **out, uint32_t cap)
{
        uint32_t n = r->count < cap ? r->count : cap;
        /* The newest n, if cap is short. */
        for (uint32_t i = 0; i < n; i++)
                out[i] = fr_genbuf_ref(fr_ring_at(r, r->count - n + i));
        return n;
}
