/* SPDX-License-Identifier: MIT */
/*
 * Corpus replayer: feeds every file of the directories (or files) named on
 * the command line to LLVMFuzzerTestOneInput, so each fuzz target's seed
 * corpus runs as an ordinary test under any compiler and sanitizer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (16u << 20)

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rbe");
        uint8_t *buf;
        size_t n;

        if (!f) {
                fprintf(stderr, "replay: cannot open %s\n", path);
                return -1;
        }
        buf = malloc(REPLAY_MAX_INPUT);
        if (!buf) {
                fclose(f);
                return -1;
        }
        n = fread(buf, 1, REPLAY_MAX_INPUT, f);
        fclose(f);
        /* An exact-size copy, so reads past the input's end are caught. */
        {
                uint8_t *exact = malloc(n ? n : 1);
                if (!exact) {
                        free(buf);
                        return -1;
                }
                memcpy(exact, buf, n);
                free(buf);
                LLVMFuzzerTestOneInput(exact, n);
                free(exact);
        }
        return 0;
}

static int name_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
        int files = 0, failed = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "replay: %s: not found\n", argv[i]);
                        failed++;
                        continue;
                }
                if (S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        struct dirent *e;
                        char **names = NULL;
                        size_t n = 0;

                        while (d && (e = readdir(d)) != NULL) {
                                if (e->d_name[0] == '.')
                                        continue;
                                names = realloc(names, (n + 1) * sizeof(*names));
                                names[n++] = strdup(e->d_name);
                        }
                        if (d)
                                closedir(d);
                        qsort(names, n, sizeof(*names), name_cmp);
                        for (size_t k = 0; k < n; k++) {
                                char path[4096];
                                snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]);
                                if (run_file(path) < 0)
                                        failed++;
                                else
                                        files++;
                                free(names[k]);
                        }
                        free(names);
                } else if (run_file(argv[i]) < 0) {
                        failed++;
                } else {
                        files++;
                }
        }
        printf("replay: %d inputs ran, %d could not be read\n", files, failed);
        return failed || files == 0 ? 1 : 0;
}
