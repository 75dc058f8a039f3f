/* SPDX-License-Identifier: MIT */
/* A provider no benchmark session enables (see lttng-tp.h). */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER gtbench_off

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "./lttng-tp-off.h"

#if !defined(BENCH_LTTNG_TP_OFF_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define BENCH_LTTNG_TP_OFF_H

#include <lttng/tracepoint.h>

LTTNG_UST_TRACEPOINT_EVENT(gtbench_off, ints,
        LTTNG_UST_TP_ARGS(uint32_t, id, int64_t, value),
        LTTNG_UST_TP_FIELDS(
                lttng_ust_field_integer(uint32_t, id, id)
                lttng_ust_field_integer(int64_t, value, value)))

#endif

#include <lttng/tracepoint-event.h>
