/* SPDX-License-Identifier: MIT */
/* The LTTng-UST probe providers, built into the benchmark programs. */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#define LTTNG_UST_TRACEPOINT_DEFINE
#include "lttng-tp.h"
#include "lttng-tp-off.h"
