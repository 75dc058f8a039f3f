/* SPDX-License-Identifier: MIT */
/*
 * Allocation for flightrec/ (private to the module and its tests).
 *
 * Every allocation of the reader goes through these so that tests can make
 * the N-th one fail (the "chaos" test: for N = 0, 1, 2 ... until the call
 * succeeds, check that each failure is a clean -ENOMEM with nothing leaked).
 * In production the hook is off and these are malloc/realloc/free.
 */
#ifndef FLIGHTREC_FRALLOC_H
#define FLIGHTREC_FRALLOC_H

#include <stddef.h>

void *fr_malloc(size_t size);
void *fr_calloc(size_t n, size_t size);
void *fr_realloc(void *p, size_t size);
void fr_free(void *p);

/*
 * Test hook: the n-th allocation from now (0 = the next one) fails, and only
 * that one; n < 0 turns failures off.  Returns how many allocations were
 * attempted, while the hook was on, since the previous call.  Not thread-safe: tests call it from one thread
 * while nothing else allocates through fr_malloc.
 */
long fr_alloc_fail_at(long n);

#endif
