/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a whole .gtrace file through fr_dump_open_fd + fr_dump_parse,
 * read from a memfd as the CLI reads files.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fz_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        uint64_t *sink = ctx;

        (void)g;
        *sink += ev->time;
        for (unsigned i = 0; i < ev->spec->nargs; i++)
                if (ev->spec->args[i].kind == PA_STR && ev->str[i])
                        *sink += strlen(ev->str[i]);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const struct fr_callbacks cb = {NULL, fz_event, NULL};
        struct fr_dump *d = NULL;
        struct fr_error err;
        uint64_t sink = 0;
        int fd = memfd_create("fuzz", MFD_CLOEXEC);

        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0) {
                close(fd);
                return 0;
        }
        if (fr_dump_open_fd(fd, &d, &err) == 0) {
                const struct fr_dump_meta *m = fr_dump_meta(d);
                sink += strlen(m->command) + strlen(m->reason) + strlen(m->host);
                (void)fr_dump_parse(d, &cb, &sink, &err);
                fr_dump_free(d);
        }
        return 0;
}
