/* SPDX-License-Identifier: MIT */
/*
 * genbuild-compile: turn the text form of genbuild.h into bytes.
 *
 *   genbuild-compile IN.txt OUT          one generation blob (IN holds exactly one)
 *   genbuild-compile --dump IN.txt OUT   a .gtrace dump of every generation in IN
 *
 * For golden tests of the file tools and for fuzz seed corpora.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genbuild.h"

int main(int argc, char **argv)
{
        int dump = argc == 4 && strcmp(argv[1], "--dump") == 0;
        const char *in = argv[1 + dump], *out = argv[2 + dump];
        struct gb_blobs blobs = {0};
        char err[256];
        char *text;
        FILE *f;
        int r;

        if (argc != 3 + dump) {
                fprintf(stderr, "usage: genbuild-compile [--dump] IN.txt OUT\n");
                return 2;
        }
        text = gb_read_file(in, NULL);
        if (!text) {
                fprintf(stderr, "genbuild-compile: cannot read %s\n", in);
                return 1;
        }
        r = gb_compile(text, &blobs, err, sizeof(err));
        free(text);
        if (r < 0) {
                fprintf(stderr, "genbuild-compile: %s: %s\n", in, err);
                return 1;
        }
        if (dump) {
                r = gb_dump_write(out, NULL, &blobs);
                if (r < 0)
                        fprintf(stderr, "genbuild-compile: %s: %s\n", out, strerror(-r));
        } else if (blobs.n != 1) {
                fprintf(stderr, "genbuild-compile: %s holds %zu generations (use --dump)\n", in,
                        blobs.n);
                r = -EINVAL;
        } else {
                f = fopen(out, "wbe");
                if (!f || fwrite(blobs.v[0].data, 1, blobs.v[0].len, f) != blobs.v[0].len) {
                        fprintf(stderr, "genbuild-compile: cannot write %s\n", out);
                        r = -EIO;
                }
                if (f && fclose(f) != 0)
                        r = -EIO;
        }
        gb_blobs_free(&blobs);
        return r < 0 ? 1 : 0;
}
