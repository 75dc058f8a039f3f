/* SPDX-License-Identifier: MIT */
/*
 * gtrace-proto-doc: prints the event table (proto/event.h) as Markdown, the
 * text docs/format.md carries between its GENERATED EVENT TABLE markers.
 *
 *   gtrace-proto-doc                 print the table
 *   gtrace-proto-doc --update FILE   rewrite FILE's generated section in place
 *
 * tests/unit/test-protocol-doc.c runs this program and fails when the
 * document and the table disagree, so the table stays the one source of truth
 * and the document cannot drift from it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/event.h"

#define BEGIN_MARK "<!-- BEGIN GENERATED EVENT TABLE -->"
#define END_MARK "<!-- END GENERATED EVENT TABLE -->"
/* docs/format.md is a few pages; refuse anything absurd rather than slurp it. */
#define DOC_MAX_BYTES (1u << 20)

static const char *where_name(char where)
{
        switch (where) {
        case 'S': return "top level";
        case 'B': return "batch";
        case 'T': return "batch, status";
        default: return "?";
        }
}

/* Markdown table cells cannot hold a bare '|'. */
static void put_cell(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '|')
                        fputc('\\', f);
                fputc(*s, f);
        }
}

static void print_table(FILE *f)
{
        size_t n;
        const struct proto_event_spec *t = proto_event_table(&n);

        fprintf(f, "Format version %u. Each argument is shown as `name:kind`; kinds are "
                   "described under Encoding and in `proto/event.h`.\n\n",
                PROTO_FORMAT_VERSION);
        fprintf(f, "| code | event | where | arguments | meaning |\n");
        fprintf(f, "|---|---|---|---|---|\n");
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "| `0x%02x` | `%s` | %s | ", t[i].code, t[i].name, where_name(t[i].where));
                for (size_t a = 0; a < t[i].nargs; a++)
                        fprintf(f, "%s`%s:%s`", a ? " " : "", t[i].args[a].name,
                                proto_arg_kind_name(t[i].args[a].kind));
                fputs(" | ", f);
                put_cell(f, t[i].doc);
                fputs(" |\n", f);
        }
        fprintf(f, "\nFiber states (`state` arguments):");
        for (unsigned s = 1; s <= PROTO_FIBER_STATE_MAX; s++)
                fprintf(f, "%s %u = `%s`", s > 1 ? "," : "", s, proto_fiber_state_name((uint8_t)s));
        fprintf(f, ".\n");
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t len = 0;
        int r = 0;

        if (!f)
                return -errno;
        buf = malloc(DOC_MAX_BYTES + 1);
        if (!buf) {
                r = -ENOMEM;
                goto close_file;
        }
        len = fread(buf, 1, DOC_MAX_BYTES + 1, f);
        if (ferror(f)) {
                r = -EIO;
                goto free_buf;
        }
        if (len > DOC_MAX_BYTES) {
                r = -EFBIG;
                goto free_buf;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        buf = NULL;
free_buf:
        free(buf);
close_file:
        fclose(f);
        return r;
}

/* Replaces the text between the markers (exclusive) with the generated table. */
static int update(const char *path)
{
        char *doc = NULL, *table = NULL, *begin, *end;
        size_t doc_len = 0, table_len = 0;
        FILE *mem, *out;
        int r;

        r = read_file(path, &doc, &doc_len);
        if (r < 0) {
                fprintf(stderr, "gtrace-proto-doc: cannot read %s: %s\n", path, strerror(-r));
                return 1;
        }
        begin = strstr(doc, BEGIN_MARK);
        end = begin ? strstr(begin, END_MARK) : NULL;
        if (!begin || !end) {
                fprintf(stderr, "gtrace-proto-doc: %s lacks the " BEGIN_MARK " / " END_MARK
                                " markers\n",
                        path);
                free(doc);
                return 1;
        }
        begin += strlen(BEGIN_MARK);

        mem = open_memstream(&table, &table_len);
        if (!mem) {
                free(doc);
                return 1;
        }
        fputc('\n', mem);
        print_table(mem);
        if (fclose(mem) != 0) {
                free(table);
                free(doc);
                return 1;
        }

        out = fopen(path, "we");
        if (!out) {
                fprintf(stderr, "gtrace-proto-doc: cannot write %s: %m\n", path);
                free(table);
                free(doc);
                return 1;
        }
        fwrite(doc, 1, (size_t)(begin - doc), out);
        fwrite(table, 1, table_len, out);
        fwrite(end, 1, doc_len - (size_t)(end - doc), out);
        r = fclose(out);
        free(table);
        free(doc);
        if (r != 0) {
                fprintf(stderr, "gtrace-proto-doc: writing %s failed: %m\n", path);
                return 1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 1) {
                print_table(stdout);
                return fflush(stdout) == 0 ? 0 : 1;
        }
        if (argc == 3 && strcmp(argv[1], "--update") == 0)
                return update(argv[2]);
        fprintf(stderr, "usage: gtrace-proto-doc [--update FILE]\n");
        return 2;
}
