/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the size and duration argument parsers and gtraced's whole
 * settings path.
 *
 * Input layout: a config file's text, a 0x00 0x00 separator, then command
 * line arguments separated by single 0x00 bytes (no separator: all of it is
 * the config file).  The arguments go through gd_config_parse() after a
 * fixed "--config FILE" naming a memfd that holds the text, so the real
 * file-reading path runs; arguments that would name another config file
 * ("--c...") are dropped, so the fuzzer never opens a path of its choosing.
 * Every argument also goes through gd_parse_size() and the reader's
 * fr_parse_duration() (gtracectl's --since/--until), with their contracts
 * checked: a size is an exact multiple of its suffix, a duration is never
 * negative.
 *
 * Replayer: tests/fuzz-args-replay tests/fuzz/corpus/fuzz-args
 * libFuzzer: build-fuzz/tests/fuzz-args -close_fd_mask=3 CORPUS
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "flightrec/view.h"
#include "gtraced.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ARGS 24

static void check_size(const char *s)
{
        uint64_t v = 12345;
        int r = gd_parse_size(s, &v);
        if (r < 0) {
                if ((r != -EINVAL && r != -ERANGE) || v != 12345)
                        abort(); /* failure leaves the output alone */
                return;
        }
        size_t n = strlen(s);
        char last = n ? s[n - 1] : 0;
        uint64_t unit = last == 'k' || last == 'K'   ? 1ull << 10
                        : last == 'm' || last == 'M' ? 1ull << 20
                        : last == 'g' || last == 'G' ? 1ull << 30
                                                     : 1;
        if (v % unit)
                abort();
}

static void check_duration(const char *s)
{
        int64_t ns = 0;
        if (fr_parse_duration(s, &ns) == 0 && ns < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > (1u << 16))
                return 0;
        /* Split off the config text. */
        size_t conf_len = size;
        for (size_t i = 0; i + 1 < size; i++)
                if (data[i] == 0 && data[i + 1] == 0) {
                        conf_len = i;
                        break;
                }
        int fd = memfd_create("fuzz-args-conf", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, conf_len) != (ssize_t)conf_len) {
                close(fd);
                return 0;
        }
        char conf[64];
        snprintf(conf, sizeof(conf), "/proc/self/fd/%d", fd);

        /* The arguments, each its own heap string (as exact as argv). */
        char *args[FUZZ_MAX_ARGS + 4];
        int argc = 0;
        args[argc++] = strdup("gtraced");
        args[argc++] = strdup("--config");
        args[argc++] = strdup(conf);
        size_t off = conf_len + 2;
        while (off < size && argc < FUZZ_MAX_ARGS + 3) {
                const uint8_t *z = memchr(data + off, 0, size - off);
                size_t n = z ? (size_t)(z - (data + off)) : size - off;
                char *a = malloc(n + 1);
                if (!a)
                        break;
                memcpy(a, data + off, n);
                a[n] = '\0';
                off += n + 1;
                check_size(a);
                check_duration(a);
                if (strncmp(a, "--c", 3) == 0) {
                        free(a);
                        continue;
                }
                args[argc++] = a;
        }
        args[argc] = NULL;

        struct gd_config c;
        int r = gd_config_parse(&c, argc, args);
        if (r == 0) {
                /* What was accepted obeys the documented ranges. */
                if (c.generations < 1 || c.generations > GD_MAX_GENERATIONS ||
                    c.max_process_bytes < 4096 || c.max_total_bytes < 4096 ||
                    c.max_uid_bytes < 4096 || c.max_connections < 1 || c.max_processes < 1 ||
                    c.max_uid_processes < 1 || c.flush_timeout_ms > 60000 || c.crash_wait_ms > 60000 ||
                    c.hello_timeout_ms < 100 || !c.socket_path || !c.dump_dir)
                        abort();
        } else if (r != 1 && r != -EINVAL && r != -ENOMEM) {
                abort();
        }
        gd_config_done(&c);
        for (int i = 0; i < argc; i++)
                free(args[i]);
        close(fd);
        return 0;
}
