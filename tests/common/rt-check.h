/* SPDX-License-Identifier: MIT */
/*
 * Runtime test helpers: read back a dump the runtime wrote, validate every
 * generation with the real reader, and summarise what it holds.
 */
#ifndef GTRACE_TESTS_RT_CHECK_H
#define GTRACE_TESTS_RT_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "flightrec/reader.h"

struct rt_summary {
        int result;                 /* 0, or the reader's -errno */
        struct fr_error err;
        struct fr_dump_meta meta;
        uint64_t generations;
        uint64_t first_gen, last_gen;
        uint64_t clock_freq;        /* the last generation's clock units per second */
        uint64_t counts[256];       /* events per type, status events included */
        uint64_t lost;              /* summed over generations */
        uint64_t gens_lost;
        uint64_t logs_with[4];      /* LOG events whose message matched rt_watch[i] */
        uint64_t log_text_hash;     /* rt_text_hash() chained over every LOG text, in order */
        uint64_t logs_without_stack;
        uint64_t counters_table_full; /* COUNTER events named "<gtrace: string table full>" */
        uint64_t last_log_time;     /* absolute clock units of the newest LOG */
        char last_log[256];         /* its message */
        char last_log_category[64];
        uint64_t last_log_pc0;      /* innermost frame of its stack (0: none) */
        uint64_t last_log_npcs;     /* frames in its stack */
        uint64_t threads_seen;      /* distinct tids with events */
        uint64_t fiber_threads_max; /* most threads any one fiber ran on */
        /* REGION_STATUS entries seen in the first generation of the dump. */
        uint64_t first_gen_region_status;
        char first_gen_region[64];
        uint64_t first_gen_region_start, first_gen_start;
};

/* Up to four substrings counted in LOG messages (set before rt_read_dump). */
extern const char *rt_watch[4];

/* Reads and validates path; fills *s.  Returns s->result. */
int rt_read_dump(const char *path, struct rt_summary *s);

/* FNV-1a over len and the bytes of a text, continuing from h (start with
 * RT_TEXT_HASH_INIT): what log_text_hash is made of. */
#define RT_TEXT_HASH_INIT 0xcbf29ce484222325ull
uint64_t rt_text_hash(uint64_t h, const void *text, size_t len);

/* Non-status batch events of a type. */
#define RT_COUNT(s, NAME) ((s)->counts[PROTO_EV_##NAME])

/* A fresh temporary directory (mkdtemp under $TMPDIR or /tmp; static buffer),
 * removed with what it holds when the process that made it exits, unless
 * GTRACE_TEST_KEEP is set and not 0 (then named on stderr; test_keep). */
const char *rt_tmpdir(void);
/* The only *.gtrace file in dir (NULL if none or several); static buffer. */
const char *rt_find_dump(const char *dir);

#endif
