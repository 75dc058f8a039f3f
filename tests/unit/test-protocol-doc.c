/* SPDX-License-Identifier: MIT */
/*
 * docs/format.md carries the event table between its GENERATED EVENT TABLE
 * markers; it must be exactly what gtrace-proto-doc prints from the table.
 * When this fails, regenerate: cmake --build BUILD --target format-doc
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genbuild.h"

#define BEGIN_MARK "<!-- BEGIN GENERATED EVENT TABLE -->"
#define END_MARK "<!-- END GENERATED EVENT TABLE -->"

static char *run_generator(void)
{
        FILE *p = popen("'" GTRACE_PROTO_DOC "'", "r");
        struct gb_buf b = {0};
        char tmp[4096];
        size_t n;

        ck_assert_ptr_nonnull(p);
        while ((n = fread(tmp, 1, sizeof(tmp), p)) > 0)
                gb_buf_put(&b, tmp, n);
        ck_assert_int_eq(pclose(p), 0);
        gb_buf_put(&b, "", 1);
        return (char *)b.data;
}

START_TEST(test_doc_matches_table)
{
        char *doc = gb_read_file(GTRACE_FORMAT_MD, NULL);
        char *table = run_generator();
        char *begin, *end;

        ck_assert_msg(doc != NULL, "cannot read " GTRACE_FORMAT_MD);
        begin = strstr(doc, BEGIN_MARK);
        ck_assert_msg(begin != NULL, "docs/format.md lacks " BEGIN_MARK);
        begin += strlen(BEGIN_MARK);
        end = strstr(begin, END_MARK);
        ck_assert_msg(end != NULL, "docs/format.md lacks " END_MARK);
        /* The section is a newline, then the generator's output verbatim. */
        *end = '\0';
        ck_assert_msg(begin[0] == '\n' && strcmp(begin + 1, table) == 0,
                      "docs/format.md's event table is stale: run "
                      "`cmake --build BUILD --target format-doc`");
        free(doc);
        free(table);
}
END_TEST

/* The generated table names every event of the table. */
START_TEST(test_table_lists_every_event)
{
        char *table = run_generator();
        size_t n;
        const struct proto_event_spec *t = proto_event_table(&n);

        for (size_t i = 0; i < n; i++) {
                char needle[64];
                snprintf(needle, sizeof(needle), "| `0x%02x` | `%s` |", t[i].code, t[i].name);
                ck_assert_msg(strstr(table, needle) != NULL, "%s missing", t[i].name);
        }
        free(table);
}
END_TEST

int main(void)
{
        Suite *s = suite_create("protocol-doc");
        TCase *core = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(core, test_doc_matches_table);
        tcase_add_test(core, test_table_lists_every_event);
        suite_add_tcase(s, core);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
