/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: one generation blob through fr_generation_parse, with
 * callbacks that touch everything the parser hands out (so a dangling or
 * out-of-bounds pointer in an event is caught by the sanitizers).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "flightrec/reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_begin(void *ctx, const struct fr_generation *g)
{
        uint64_t *sink = ctx;

        for (size_t i = 0; i < g->nthreads; i++) {
                const char *name = fr_gen_thread_name(g, g->threads[i]);
                *sink += name ? strlen(name) : 0;
        }
        *sink += (uint64_t)fr_clock_mono_ns(&g->clock, g->clock.end);
        *sink += (uint64_t)fr_clock_wall_ns(&g->clock, g->clock.start);
        return 0;
}

static int fz_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        uint64_t *sink = ctx;

        *sink += ev->time + ev->offset + ev->tid;
        for (unsigned i = 0; i < ev->spec->nargs; i++) {
                const uint64_t *pcs;
                size_t n;

                switch (ev->spec->args[i].kind) {
                case PA_STR:
                        if (ev->str[i])
                                *sink += strlen(ev->str[i]);
                        break;
                case PA_BYTES:
                        for (uint64_t k = 0; k < ev->args[i]; k++)
                                *sink += ev->bytes[i][k];
                        break;
                case PA_STACK:
                        if (fr_gen_stack(g, ev->args[i], &pcs, &n) == 0 && n > 0)
                                *sink += pcs[0] + pcs[n - 1];
                        break;
                default:
                        *sink += ev->args[i];
                        break;
                }
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const struct fr_callbacks cb = {fz_begin, fz_event, NULL};
        struct fr_error err;
        uint64_t sink = 0;

        (void)fr_generation_parse(data, size, 0, &cb, &sink, &err);
        return 0;
}
