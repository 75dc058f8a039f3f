/* SPDX-License-Identifier: MIT */
/*
 * The end of most runtime tests: dump what the ring holds, stop tracing, and
 * read the dump back with the real reader.  Inline, so that rt-check itself
 * needs no libgtrace (the daemon tests link it without one).
 */
#ifndef GTRACE_TEST_RT_DUMP_H
#define GTRACE_TEST_RT_DUMP_H

#include <check.h>

#include "gtrace/gtrace.h"
#include "rt-check.h"

/* gtrace_dump(reason), gtrace_stop(), then rt_read_dump() into *s; each step
 * must succeed. */
static inline void rt_dump_stop_read(const char *reason, struct rt_summary *s)
{
        char path[4096];
        ck_assert_int_eq(gtrace_dump(reason, path, sizeof(path)), 0);
        gtrace_stop();
        ck_assert_int_eq(rt_read_dump(path, s), 0);
}

#endif
