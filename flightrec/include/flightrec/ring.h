/* SPDX-License-Identifier: MIT */
/*
 * The daemon's flight recorder: per-process rings of generation buffers.
 *
 * Each traced process (keyed by pid and start time, so a reused pid never
 * mixes two processes) has one ring holding its most recent generations,
 * oldest first.  Three bounds, all fixed when the set is created:
 *
 *   - generations per process  (gtraced --generations N)
 *   - bytes per process        (--max-process-bytes)
 *   - bytes over all processes (--max-total-bytes)
 *
 * and, optionally, bytes per owner (gtraced --max-uid-bytes: the owner is
 * the uid the process runs as).  The first two evict the pushing process's
 * own oldest generations; the owner bound evicts among that owner's own
 * processes only, so one user can never push out another user's history by
 * reaching their quota.  The global bound evicts fairly: from the owner
 * holding the most bytes first and, within that owner, from the process
 * holding the most, so neither one chatty process nor one user with many
 * processes can push out everyone else's history; and a process keeps its
 * newest generation for as long as some other process holds more than one.
 *
 * Generation buffers are reference counted: a dump takes references to what
 * a ring holds at that moment and writes them from another thread while the
 * ring goes on ingesting and evicting; nothing is copied and neither side
 * waits.  The counts are atomic for that reason; everything else here is
 * single-threaded (the daemon's loop thread).
 */
#ifndef FLIGHTREC_RING_H
#define FLIGHTREC_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* One generation blob with what the daemon learned from its top level. */
struct fr_genbuf {
        atomic_uint refs;
        uint64_t gen;           /* from the GENERATION record */
        uint64_t pid;           /* as the producer wrote it */
        uint64_t first_wall_ns; /* generation start, wall clock (0 if unknown) */
        uint64_t last_wall_ns;  /* generation end, wall clock (0 if unknown) */
        uint64_t first_mono_ns; /* generation start, CLOCK_MONOTONIC (0 if unknown) */
        uint64_t first_clock;   /* generation start, trace clock units, as recorded */
        uint64_t events_lost;   /* END_OF_GENERATION lost total */
        uint64_t gens_lost;     /* GENS_LOST count (0 if absent) */
        size_t len;
        uint8_t data[];
};

/* A buffer for len blob bytes (uninitialised), refs = 1; NULL on ENOMEM. */
struct fr_genbuf *fr_genbuf_new(size_t len);
struct fr_genbuf *fr_genbuf_ref(struct fr_genbuf *b);
/* Drops one reference; frees at zero.  NULL ok.  Any thread. */
void fr_genbuf_unref(struct fr_genbuf *b);

/*
 * Checks the top level of the blob in b->data (first record GENERATION, last
 * END_OF_GENERATION, every top-level record decodes and is structural) and
 * fills the summary fields.  Batch contents are not looked at.  0, or
 * -EBADMSG with a message in err (err may be NULL).
 */
int fr_genbuf_scan(struct fr_genbuf *b, char *err, size_t err_len);

struct fr_limits {
        uint32_t generations;       /* per process, >= 1 */
        uint64_t max_process_bytes; /* per process, >= 1 */
        uint64_t max_total_bytes;   /* all processes, >= 1 */
        uint64_t max_owner_bytes;   /* all processes of one owner; 0: no such bound */
};

struct fr_rings; /* the set */
struct fr_ring;  /* one process */

/* NULL on ENOMEM or invalid limits (a 0 bound). */
struct fr_rings *fr_rings_new(const struct fr_limits *limits);
/* Frees every ring still in the set, then the set.  NULL ok. */
void fr_rings_free(struct fr_rings *s);
const struct fr_limits *fr_rings_limits(const struct fr_rings *s);
uint64_t fr_rings_bytes(const struct fr_rings *s);       /* held, all processes */
uint64_t fr_rings_generations(const struct fr_rings *s); /* held, all processes */
size_t fr_rings_count(const struct fr_rings *s);         /* processes */
/* Checks the totals and every ring's bounds against the state the comment
 * in ring.c describes: 0, or -EBADMSG if anything disagrees (tests). */
int fr_rings_check(const struct fr_rings *s);

/* An empty ring for (pid, start_time) in set s; NULL on ENOMEM.  The caller
 * makes sure the key is not already present (fr_ring_find). */
struct fr_ring *fr_ring_new(struct fr_rings *s, uint64_t pid, uint64_t start_time);
/* Moves r (and what it holds) to owner (new rings belong to owner 0), then
 * evicts r's owner's generations until the owner bound holds again.
 * 0, or -ENOMEM (r is unchanged). */
int fr_ring_set_owner(struct fr_ring *r, uint32_t owner);
uint32_t fr_ring_owner(const struct fr_ring *r);
/* Bytes held for all rings of owner (0 for an owner holding nothing). */
uint64_t fr_rings_owner_bytes(const struct fr_rings *s, uint32_t owner);

/* Releases the ring's buffers (dumps holding references keep theirs) and
 * removes it from its set.  NULL ok. */
void fr_ring_free(struct fr_ring *r);
struct fr_ring *fr_ring_find(const struct fr_rings *s, uint64_t pid, uint64_t start_time);

/* Appends b (the ring takes the caller's reference) and evicts until every
 * bound holds again, here and across the set. */
void fr_ring_push(struct fr_ring *r, struct fr_genbuf *b);

/*
 * fr_ring_push for generations that may come out of order or twice, as a
 * process's generations do around a crash: the one its crash handler
 * sealed and what its own connection still had queued arrive on two
 * connections, and a process that lives on sends the sealed one again,
 * finished.  b goes where its start time (first_mono_ns, monotonic for the
 * whole life of a process, across restarts of its tracer) puts it: after
 * every held generation that started no later; a held generation with b's
 * number and start (first_clock: two copies convert it to CLOCK_MONOTONIC
 * from their own clock anchors, a few ns apart) is the same one, and the
 * larger copy stays.  The ring takes the caller's reference either way.
 * FR_PUT_REPLACED: b took the place of a copy, whose gens_lost is stored in
 * *ret_gens_lost (0 otherwise); when even with every older generation gone
 * the larger copy has no room, it is the next to go and both copies go
 * (one eviction; still FR_PUT_REPLACED).  FR_PUT_DUPLICATE: b was the
 * smaller copy and is dropped.  A generation older than everything held in a full ring
 * is dropped too, counted as evicted (FR_PUT_ADDED).  Bounds as for
 * fr_ring_push.
 */
enum fr_put { FR_PUT_ADDED, FR_PUT_REPLACED, FR_PUT_DUPLICATE };
enum fr_put fr_ring_put(struct fr_ring *r, struct fr_genbuf *b, uint64_t *ret_gens_lost);

uint64_t fr_ring_pid(const struct fr_ring *r);
uint64_t fr_ring_start_time(const struct fr_ring *r);
uint32_t fr_ring_count(const struct fr_ring *r);
uint64_t fr_ring_bytes(const struct fr_ring *r);
uint64_t fr_ring_evicted(const struct fr_ring *r); /* generations evicted so far */
/* The i-th generation, 0 = oldest; NULL past the end.  Borrowed. */
struct fr_genbuf *fr_ring_at(const struct fr_ring *r, uint32_t i);

/* Takes a reference to every held generation, oldest first, into out (room
 * for fr_ring_count()); returns how many.  The caller unrefs them. */
uint32_t fr_ring_snapshot(const struct fr_ring *r, struct fr_genbuf **out, uint32_t cap);

#endif
