/* SPDX-License-Identifier: MIT */
/*
 * LTTng-UST tracepoints the benchmarks compare gtrace against.
 *
 *   gtbench:ints      two integer fields (an id and a 64-bit value): the
 *                     payload of a gtrace counter, and more than a region
 *                     begin or end carries;
 *   gtbench:msg       an id and a string: the payload of a gtrace log;
 *   gtbench:begin     a name id, gtbench:end (no field) and gtbench:ints:
 *                     the LTTng rendering of a region/counter stream, for
 *                     the size comparison (bench-size);
 *   gtbench_off:ints  the same as gtbench:ints in a provider no session
 *                     enables: the cost of a disabled tracepoint.
 *
 * Built only when liblttng-ust-dev is installed (BENCH_HAVE_LTTNG).
 */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER gtbench

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "./lttng-tp.h"

#if !defined(BENCH_LTTNG_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define BENCH_LTTNG_TP_H

#include <lttng/tracepoint.h>

LTTNG_UST_TRACEPOINT_EVENT(gtbench, ints,
        LTTNG_UST_TP_ARGS(uint32_t, id, int64_t, value),
        LTTNG_UST_TP_FIELDS(
                lttng_ust_field_integer(uint32_t, id, id)
                lttng_ust_field_integer(int64_t, value, value)))

LTTNG_UST_TRACEPOINT_EVENT(gtbench, msg,
        LTTNG_UST_TP_ARGS(uint32_t, id, const char *, text),
        LTTNG_UST_TP_FIELDS(
                lttng_ust_field_integer(uint32_t, id, id)
                lttng_ust_field_string(text, text)))

LTTNG_UST_TRACEPOINT_EVENT(gtbench, begin,
        LTTNG_UST_TP_ARGS(uint32_t, id),
        LTTNG_UST_TP_FIELDS(
                lttng_ust_field_integer(uint32_t, id, id)))

LTTNG_UST_TRACEPOINT_EVENT(gtbench, end,
        LTTNG_UST_TP_ARGS(void),
        LTTNG_UST_TP_FIELDS())

#endif

#include <lttng/tracepoint-event.h>
