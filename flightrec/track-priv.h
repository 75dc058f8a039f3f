/* SPDX-License-Identifier: MIT */
/*
 * What the state tracker (view-track.c) shares with the exporters beyond
 * view.h (private to flightrec/).
 *
 * Names.  Every name the tracker keeps (thread, region, blocking call,
 * fiber, wait reason, task) is an interned, reference-counted struct
 * fr_name, and the char * in the view.h structs points at its text.  The
 * tracker's objects share them (a busy server has a hundred thousand
 * fibers all named "request"), so creating an object costs no malloc and
 * no copy, and an exporter can learn a name's length, and whether it needs
 * any JSON escaping, without scanning it: fr_name_of() on any name pointer
 * the tracker handed out (in a struct or to a hook).  Never on anything
 * else.
 */
#ifndef FLIGHTREC_TRACK_PRIV_H
#define FLIGHTREC_TRACK_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "flightrec/view.h"

struct fr_name {
        struct fr_name *next; /* hash chain */
        uint32_t refs;
        uint32_t len;
        uint32_t hash;
        uint8_t json_plain; /* printable ASCII without '"' or '\': JSON as it is */
        char s[];           /* NUL-terminated */
};

/* At least this many bytes are readable from any name's text whatever its
 * length (the allocation is padded): an exporter copies a short name with
 * one fixed-size move instead of a call to memcpy. */
#define FR_NAME_READABLE 64

static inline const struct fr_name *fr_name_of(const char *s)
{
        return (const struct fr_name *)(const void *)(s - offsetof(struct fr_name, s));
}

/* What the last fr_track_event() was about: its time (fr_track_event_ns()),
 * its thread and, for a fiber event, its fiber (NULL once it exited); NULL
 * when none.  The first member of struct fr_track, so that exporters read
 * it for every event without a call. */
struct fr_track_current {
        int64_t event_ns;
        struct fr_track_thread *thread;
        struct fr_track_fiber *fiber;
};

static inline const struct fr_track_current *fr_track_current(const struct fr_track *tr)
{
        return (const struct fr_track_current *)(const void *)tr;
}

static inline struct fr_track_thread *fr_track_event_thread(const struct fr_track *tr)
{
        return fr_track_current(tr)->thread;
}

static inline struct fr_track_fiber *fr_track_event_fiber(const struct fr_track *tr)
{
        return fr_track_current(tr)->fiber;
}

/*
 * Exporters: some events carry output that no hook reports (a counter
 * sample, a log line, lost events, a fiber made ready or run).
 * fr_track_event() hands each of them to the function set for its type,
 * after applying it and only if that succeeded, from its own case for the
 * type, so that the exporter needs no second dispatch on the type.  ns is
 * the event's time.  type: PROTO_EV_COUNTER, _LOG, _EVENTS_LOST,
 * _FIBER_READY or _FIBER_RUN (else -EINVAL); fn NULL: not passed on.
 */
typedef void (*fr_track_pass_fn)(void *ctx, const struct fr_generation *g,
                                 const struct fr_event *ev, int64_t ns);
int fr_track_set_pass(struct fr_track *tr, uint8_t type, fr_track_pass_fn fn);

#endif
