/* SPDX-License-Identifier: MIT */
/*
 * Exporting dumps to formats that existing viewers open.
 *
 * Chrome Trace Event Format (the JSON object form: {"traceEvents":[...]}),
 * which Perfetto UI (ui.perfetto.dev) and chrome://tracing load.  The
 * mapping, in full in docs/cli.md:
 *
 *   process / thread names   "M" metadata events (process_name, thread_name)
 *   regions, blocking calls  "X" complete events on the thread's track
 *   logs                     "i" instant events (thread scope), message in args
 *   counters                 "C" counter events, one track per counter name
 *   async tasks              "b"/"e" nestable async events, children nested in
 *                            their parent's track while that nests properly
 *   fibers                   a pseudo-thread each (tid FR_EXPORT_FIBER_TID_BASE
 *                            + fiber id) with running / runnable / waiting /
 *                            syscall "X" slices, and "s"/"f" flow arrows from
 *                            the thread that readied a fiber to where it ran
 *   lost events              "i" instant events named "events lost"
 *
 * Timestamps are CLOCK_MONOTONIC microseconds with three decimals (the full
 * nanosecond precision).  The exporter streams: it writes JSON text as the
 * reader hands out events and keeps only what is open at the current point
 * of the trace (open regions, live fibers and tasks), so memory does not
 * grow with the dump's size.
 */
#ifndef FLIGHTREC_EXPORT_H
#define FLIGHTREC_EXPORT_H

#include <stdint.h>

#include "flightrec/reader.h"

/* Fiber pseudo-thread ids: far above any Linux tid (pid_max <= 2^22) and
 * still a positive 32-bit integer, which every viewer accepts. */
#define FR_EXPORT_FIBER_TID_BASE 1000000000u
#define FR_EXPORT_FIBER_TID_SPAN 1000000000u

struct fr_export_progress {
        uint64_t bytes_done;  /* dump bytes consumed so far */
        uint64_t bytes_total; /* as given in the options (0 unknown) */
        uint64_t events;      /* trace events read */
        uint64_t out_bytes;   /* JSON bytes written */
};

struct fr_export_options {
        /* Called after every generation; may be NULL. */
        void (*progress)(void *ctx, const struct fr_export_progress *p);
        void *progress_ctx;
        uint64_t bytes_total; /* the dump's size, passed through to progress */
        const char *producer; /* "gtracectl 0.1.0", written into otherData; may be NULL */
        /* 0: reading and checking the dump on a second thread while the JSON
         * is written, when the dump is at least FR_EXPORT_THREADED_MIN_BYTES
         * (or not a regular file; bytes_total, when set, counts too), the
         * process may run on two CPUs or more and fewer tasks are runnable
         * on the machine than that (this one included; the least of up to
         * five readings 1 ms apart); 1: one thread; 2: two
         * threads whatever the size.  The output is the same
         * (fr_dump_parse_threaded() in reader.h). */
        unsigned threads;
};

#define FR_EXPORT_THREADED_MIN_BYTES ((uint64_t)4 << 20)

struct fr_export_result {
        uint64_t events_in;  /* trace events read */
        uint64_t events_out; /* JSON trace events written */
        uint64_t out_bytes;
        uint64_t generations;
};

/*
 * Writes the whole dump d as Trace Event Format JSON to out_fd.  Returns 0,
 * a reader error (-EBADMSG, -EPROTO ... with *ret_err filled), -ENOMEM, or
 * the write(2) error (-ENOSPC, -EPIPE ...; ret_err's message says so).
 * ret_result may be NULL.  On error the output is incomplete JSON.
 */
int fr_export_chrome(struct fr_dump *d, int out_fd, const struct fr_export_options *o,
                     struct fr_export_result *ret_result, struct fr_error *ret_err);

#endif
