/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "fralloc.h"

/* Plain ints: the hook is a single-threaded test facility (see fralloc.h). */
static long fail_at = -1;
static long count;

static int fr_alloc_should_fail(void)
{
        return fail_at >= 0 && count++ == fail_at;
}

void *fr_malloc(size_t size)
{
        if (fail_at >= 0 && fr_alloc_should_fail())
                return NULL;
        return malloc(size ? size : 1);
}

void *fr_calloc(size_t n, size_t size)
{
        if (fail_at >= 0 && fr_alloc_should_fail())
                return NULL;
        return calloc(n ? n : 1, size ? size : 1);
}

void *fr_realloc(void *p, size_t size)
{
        if (fail_at >= 0 && fr_alloc_should_fail())
                return NULL;
        return realloc(p, size ? size : 1);
}

void fr_free(void *p)
{
        free(p);
}

long fr_alloc_fail_at(long n)
{
        long made = count;
        fail_at = n;
        count = 0;
        return made;
}
