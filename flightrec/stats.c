/* SPDX-License-Identifier: MIT */
/*
 * `gtracectl stats FILE`: counts over the whole dump.  Distinct threads,
 * fibers and tasks are counted with id sets, the only memory here that grows
 * with the trace (16 bytes per distinct id).
 */
#include <errno.h>
#include <string.h>

#include "flightrec/view.h"
#include "view-map.h"

struct stats_ctx {
        struct fr_stats *s;
        struct vmap threads, fibers, tasks;
        int have_gen;
};

/* Sets store a dummy non-NULL value. */
static int set_add(struct vmap *m, uint64_t key)
{
        static char present;
        if (vmap_get(m, key))
                return 0;
        return vmap_put(m, key, &present);
}

static int stats_generation_begin(void *ctx, const struct fr_generation *g)
{
        struct stats_ctx *c = ctx;
        struct fr_stats *s = c->s;
        if (!c->have_gen) {
                s->first_gen = g->gen;
                s->start_ns = fr_track_ns(g, g->clock.start);
                s->start_wall_ns = fr_clock_wall_ns(&g->clock, g->clock.start);
                c->have_gen = 1;
        } else if (g->gen > s->last_gen + 1) {
                s->gen_gaps += g->gen - s->last_gen - 1;
        }
        s->last_gen = g->gen;
        s->generations++;
        s->gens_lost += g->gens_lost;
        s->blob_bytes += g->size;
        for (size_t i = 0; i < g->nthreads; i++) {
                int r = set_add(&c->threads, g->threads[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int stats_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct stats_ctx *c = ctx;
        (void)g;
        c->s->events++;
        c->s->per_type[ev->type]++;
        switch (ev->type) {
        case PROTO_EV_FIBER_CREATE:
        case PROTO_EV_FIBER_STATUS: return set_add(&c->fibers, ev->args[1]);
        case PROTO_EV_TASK_BEGIN:
        case PROTO_EV_TASK_STATUS: return set_add(&c->tasks, ev->args[1]);
        default: return 0;
        }
}

static int stats_generation_end(void *ctx, const struct fr_generation *g)
{
        struct stats_ctx *c = ctx;
        c->s->end_ns = fr_track_ns(g, g->clock.end);
        c->s->end_wall_ns = fr_clock_wall_ns(&g->clock, g->clock.end);
        c->s->events_lost += g->lost;
        return 0;
}

int fr_stats_collect(struct fr_dump *d, struct fr_stats *ret, struct fr_error *ret_err)
{
        struct fr_stats s;
        struct stats_ctx c = {.s = &s};
        struct fr_callbacks cb = {
                .generation_begin = stats_generation_begin,
                .event = stats_event,
                .generation_end = stats_generation_end,
        };
        memset(&s, 0, sizeof(s));
        vmap_init(&c.threads);
        vmap_init(&c.fibers);
        vmap_init(&c.tasks);
        int r = fr_dump_parse(d, &cb, &c, ret_err);
        s.threads = c.threads.n;
        s.fibers = c.fibers.n;
        s.tasks = c.tasks.n;
        vmap_done(&c.threads);
        vmap_done(&c.fibers);
        vmap_done(&c.tasks);
        if (r == 0)
                *ret = s;
        return r;
}
