/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt-check.h"
#include "test-files.h"

const char *rt_watch[4];

#define MAX_FIBERS 4096
#define MAX_TIDS 64

struct ctx {
        struct rt_summary *s;
        uint64_t tids[MAX_TIDS];
        size_t ntids;
        /* fiber id -> bit set of thread slots it ran on (first 64 tids) */
        uint64_t fiber_id[MAX_FIBERS];
        uint64_t fiber_threads[MAX_FIBERS];
        bool in_first;
};

static size_t tid_slot(struct ctx *c, uint64_t tid)
{
        for (size_t i = 0; i < c->ntids; i++)
                if (c->tids[i] == tid)
                        return i;
        if (c->ntids < MAX_TIDS)
                c->tids[c->ntids++] = tid;
        return c->ntids - 1;
}

static int on_begin(void *ctx, const struct fr_generation *g)
{
        struct ctx *c = ctx;
        struct rt_summary *s = c->s;
        c->in_first = s->generations == 0;
        if (c->in_first) {
                s->first_gen = g->gen;
                s->first_gen_start = g->clock.start;
        }
        s->last_gen = g->gen;
        s->clock_freq = g->clock.freq;
        return 0;
}

static int on_event(void *ctx, const struct fr_generation *g, const struct fr_event *ev)
{
        struct ctx *c = ctx;
        struct rt_summary *s = c->s;
        s->counts[ev->type]++;
        if (ev->tid)
                tid_slot(c, ev->tid);
        if (ev->type == PROTO_EV_COUNTER) {
                const char *name = fr_gen_string(g, ev->args[1]);
                if (name && strcmp(name, "<gtrace: string table full>") == 0)
                        s->counters_table_full++;
        }
        if (ev->type == PROTO_EV_LOG) {
                s->log_text_hash = rt_text_hash(s->log_text_hash, ev->bytes[2], ev->args[2]);
                if (!ev->args[3])
                        s->logs_without_stack++;
                size_t n = ev->args[2] < sizeof(s->last_log) - 1 ? ev->args[2] : sizeof(s->last_log) - 1;
                if (ev->time >= s->last_log_time) {
                        memcpy(s->last_log, ev->bytes[2], n);
                        s->last_log[n] = '\0';
                        const char *cat = ev->str[1] ? ev->str[1] : "";
                        snprintf(s->last_log_category, sizeof(s->last_log_category), "%s", cat);
                        s->last_log_time = ev->time;
                        const uint64_t *pcs;
                        size_t npcs;
                        s->last_log_pc0 = 0;
                        s->last_log_npcs = 0;
                        if (ev->args[3] && fr_gen_stack(g, ev->args[3], &pcs, &npcs) == 0 && npcs) {
                                s->last_log_pc0 = pcs[0];
                                s->last_log_npcs = npcs;
                        }
                }
                char tmp[1100];
                size_t m = ev->args[2] < sizeof(tmp) - 1 ? ev->args[2] : sizeof(tmp) - 1;
                memcpy(tmp, ev->bytes[2], m);
                tmp[m] = '\0';
                for (int i = 0; i < 4; i++)
                        if (rt_watch[i] && strstr(tmp, rt_watch[i]))
                                s->logs_with[i]++;
        }
        if (ev->type == PROTO_EV_FIBER_RUN) {
                uint64_t f = ev->args[1];
                size_t h = f % MAX_FIBERS;
                if (c->fiber_id[h] != f) {
                        c->fiber_id[h] = f;
                        c->fiber_threads[h] = 0;
                }
                size_t slot = tid_slot(c, ev->tid);
                c->fiber_threads[h] |= 1ull << (slot & 63);
                uint64_t n = (uint64_t)__builtin_popcountll(c->fiber_threads[h]);
                if (n > s->fiber_threads_max)
                        s->fiber_threads_max = n;
        }
        if (ev->type == PROTO_EV_REGION_STATUS && c->in_first) {
                s->first_gen_region_status++;
                if (ev->str[1] && s->first_gen_region_status == 1) {
                        snprintf(s->first_gen_region, sizeof(s->first_gen_region), "%s", ev->str[1]);
                        s->first_gen_region_start = ev->args[2];
                }
        }
        return 0;
}

static int on_end(void *ctx, const struct fr_generation *g)
{
        struct ctx *c = ctx;
        c->s->generations++;
        c->s->lost += g->lost;
        c->s->gens_lost += g->gens_lost;
        return 0;
}

uint64_t rt_text_hash(uint64_t h, const void *text, size_t len)
{
        const uint8_t *p = text;
        for (size_t i = 0; i < sizeof(len); i++)
                h = (h ^ (uint8_t)(len >> (8 * i))) * 0x100000001b3ull;
        for (size_t i = 0; i < len; i++)
                h = (h ^ p[i]) * 0x100000001b3ull;
        return h;
}

int rt_read_dump(const char *path, struct rt_summary *s)
{
        struct ctx *c = calloc(1, sizeof(*c));
        struct fr_dump *d = NULL;
        memset(s, 0, sizeof(*s));
        s->log_text_hash = RT_TEXT_HASH_INIT;
        c->s = s;
        s->result = fr_dump_open(path, &d, &s->err);
        if (s->result < 0)
                goto out;
        s->meta = *fr_dump_meta(d);
        struct fr_callbacks cb = {.generation_begin = on_begin, .event = on_event,
                                  .generation_end = on_end};
        s->result = fr_dump_parse(d, &cb, c, &s->err);
        s->threads_seen = c->ntids;
out:
        fr_dump_free(d);
        free(c);
        if (s->result < 0)
                fprintf(stderr,
                        "rt_read_dump(%s): %d at %llu: %s (GTRACE_TEST_KEEP=1 keeps the dump)\n",
                        path, s->result, (unsigned long long)s->err.offset, s->err.msg);
        return s->result;
}

/* The directories rt_tmpdir made, removed at exit by the process that made
 * each (Check runs every test in a forked child, which inherits the list). */
static struct {
        char path[256];
        pid_t owner;
} rt_dirs[64];
static size_t rt_ndirs;

static void rt_remove_dirs(void)
{
        for (size_t i = 0; i < rt_ndirs; i++) {
                if (rt_dirs[i].owner != getpid())
                        continue;
                if (test_keep())
                        fprintf(stderr, "kept %s (GTRACE_TEST_KEEP)\n", rt_dirs[i].path);
                else
                        test_rmtree(rt_dirs[i].path);
        }
}

const char *rt_tmpdir(void)
{
        static char buf[256];
        static bool registered;
        const char *base = getenv("TMPDIR");
        snprintf(buf, sizeof(buf), "%s/gtrace-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(buf))
                return NULL;
        if (!registered && atexit(rt_remove_dirs) == 0)
                registered = true;
        /* Past the table's end a directory stays behind; no test makes that
         * many in one process. */
        if (registered && rt_ndirs < sizeof(rt_dirs) / sizeof(rt_dirs[0])) {
                memcpy(rt_dirs[rt_ndirs].path, buf, sizeof(buf));
                rt_dirs[rt_ndirs].owner = getpid();
                rt_ndirs++;
        }
        return buf;
}

const char *rt_find_dump(const char *dir)
{
        static char path[1024];
        DIR *d = opendir(dir);
        int found = 0;
        if (!d)
                return NULL;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t n = strlen(e->d_name);
                if (n > 7 && strcmp(e->d_name + n - 7, ".gtrace") == 0 && e->d_name[0] != '.') {
                        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                        found++;
                }
        }
        closedir(d);
        return found == 1 ? path : NULL;
}
