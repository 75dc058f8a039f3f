/* SPDX-License-Identifier: MIT */
/*
 * Sanity of the event table (proto/event.h): the one description every
 * encoder, decoder and document derives from.  Besides general consistency,
 * this pins the argument positions the reader relies on, so a table edit that
 * would silently break the reader fails here first.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proto/event.h"

START_TEST(test_codes_and_names_unique)
{
        size_t n;
        const struct proto_event_spec *t = proto_event_table(&n);

        ck_assert_uint_gt(n, 0);
        for (size_t i = 0; i < n; i++) {
                ck_assert_uint_lt(t[i].code, PROTO_EV_MAX);
                ck_assert_ptr_eq(proto_event_spec(t[i].code), &t[i]);
                for (size_t j = i + 1; j < n; j++) {
                        ck_assert_msg(t[i].code != t[j].code, "code 0x%02x used twice",
                                      t[i].code);
                        ck_assert_msg(strcmp(t[i].name, t[j].name) != 0, "name %s used twice",
                                      t[i].name);
                }
        }
}
END_TEST

START_TEST(test_unknown_codes)
{
        size_t n, known = 0;
        const struct proto_event_spec *t = proto_event_table(&n);

        for (unsigned c = 0; c < 256; c++)
                if (proto_event_spec((uint8_t)c))
                        known++;
        ck_assert_uint_eq(known, n);
        ck_assert_ptr_null(proto_event_spec(0x00));
        ck_assert_ptr_null(proto_event_spec(0xff));
        (void)t;
}
END_TEST

START_TEST(test_rows_well_formed)
{
        size_t n;
        const struct proto_event_spec *t = proto_event_table(&n);

        for (size_t i = 0; i < n; i++) {
                const struct proto_event_spec *e = &t[i];
                int status_name = strstr(e->name, "_STATUS") != NULL &&
                                  strcmp(e->name + strlen(e->name) - 7, "_STATUS") == 0;

                ck_assert_msg(e->where == 'S' || e->where == 'B' || e->where == 'T',
                              "%s: bad where '%c'", e->name, e->where);
                ck_assert_msg(e->doc && e->doc[0], "%s: no doc", e->name);
                ck_assert_uint_le(e->nargs, PROTO_MAX_ARGS);
                ck_assert_msg((e->where == 'T') == status_name,
                              "%s: status events (and only they) are named *_STATUS", e->name);
                for (unsigned a = 0; a < e->nargs; a++) {
                        ck_assert_msg(strcmp(proto_arg_kind_name(e->args[a].kind), "?") != 0,
                                      "%s: argument %u has no kind", e->name, a);
                        ck_assert_msg(e->args[a].name && e->args[a].name[0], "%s: unnamed arg",
                                      e->name);
                        for (unsigned b = a + 1; b < e->nargs; b++)
                                ck_assert_msg(strcmp(e->args[a].name, e->args[b].name) != 0,
                                              "%s: argument %s twice", e->name, e->args[a].name);
                        /* ts is the first argument of batch events and nowhere else. */
                        if (e->where == 'S' || a > 0)
                                ck_assert_msg(e->args[a].kind != PA_TS,
                                              "%s: ts only as a batch event's first argument",
                                              e->name);
                }
                if (e->where != 'S') {
                        ck_assert_msg(e->nargs >= 1 && e->args[0].kind == PA_TS,
                                      "%s: a batch event's first argument must be ts", e->name);
                }
        }
}
END_TEST

static void expect_arg(uint8_t code, unsigned i, uint8_t kind, const char *name)
{
        const struct proto_event_spec *e = proto_event_spec(code);

        ck_assert_ptr_nonnull(e);
        ck_assert_msg(i < e->nargs && e->args[i].kind == kind && strcmp(e->args[i].name, name) == 0,
                      "%s: argument %u should be %s:%s", e->name, i, name,
                      proto_arg_kind_name(kind));
}

/* Positions the reader (flightrec/reader.c) and genbuild depend on. */
START_TEST(test_reader_positions)
{
        static const uint8_t transitions[] = {PROTO_EV_FIBER_RUN, PROTO_EV_FIBER_BLOCK,
                                              PROTO_EV_FIBER_READY, PROTO_EV_FIBER_YIELD,
                                              PROTO_EV_FIBER_EXIT};

        expect_arg(PROTO_EV_GENERATION, 0, PA_UINT, "gen");
        expect_arg(PROTO_EV_GENERATION, 1, PA_UINT, "pid");
        expect_arg(PROTO_EV_GENERATION, 2, PA_UINT, "format_version");
        expect_arg(PROTO_EV_CLOCK, 0, PA_UINT, "freq");
        expect_arg(PROTO_EV_CLOCK, 5, PA_TIME, "end");
        expect_arg(PROTO_EV_STRING, 1, PA_BYTES, "data");
        expect_arg(PROTO_EV_STACK, 1, PA_BYTES, "frames");
        expect_arg(PROTO_EV_THREAD, 0, PA_THREAD, "tid");
        expect_arg(PROTO_EV_THREAD, 1, PA_STR, "name");
        expect_arg(PROTO_EV_BATCH, 0, PA_THREAD, "tid");
        expect_arg(PROTO_EV_BATCH, 1, PA_TIME, "base");
        expect_arg(PROTO_EV_BATCH, 2, PA_UINT, "lost");
        expect_arg(PROTO_EV_BATCH, 3, PA_BYTES, "events");
        expect_arg(PROTO_EV_END_OF_GENERATION, 3, PA_UINT, "lost");
        expect_arg(PROTO_EV_THREAD_STATUS, 1, PA_FIBER, "fiber");
        expect_arg(PROTO_EV_THREAD_STATUS, 2, PA_STR, "syscall");
        expect_arg(PROTO_EV_THREAD_STATUS, 3, PA_TIME, "syscall_start");
        expect_arg(PROTO_EV_FIBER_STATUS, 1, PA_FIBER, "fiber");
        expect_arg(PROTO_EV_FIBER_STATUS, 2, PA_STATE, "state");
        expect_arg(PROTO_EV_TASK_STATUS, 1, PA_TASK, "task");
        expect_arg(PROTO_EV_TASK_BEGIN, 1, PA_TASK, "task");
        expect_arg(PROTO_EV_TASK_END, 1, PA_TASK, "task");
        expect_arg(PROTO_EV_EVENTS_LOST, 1, PA_UINT, "count");
        expect_arg(PROTO_EV_FIBER_CREATE, 1, PA_FIBER, "fiber");
        for (size_t i = 0; i < sizeof(transitions); i++) {
                expect_arg(transitions[i], 1, PA_FIBER, "fiber");
                expect_arg(transitions[i], 2, PA_SEQ, "seq");
        }
        /* The reader treats the code range CREATE..EXIT as the fiber transitions. */
        for (unsigned c = PROTO_EV_FIBER_CREATE; c <= PROTO_EV_FIBER_EXIT; c++) {
                const struct proto_event_spec *e = proto_event_spec((uint8_t)c);
                ck_assert_ptr_nonnull(e);
                ck_assert_msg(strncmp(e->name, "FIBER_", 6) == 0, "0x%02x is not a fiber event",
                              c);
        }
}
END_TEST

START_TEST(test_state_names)
{
        for (unsigned s = 1; s <= PROTO_FIBER_STATE_MAX; s++)
                ck_assert_str_ne(proto_fiber_state_name((uint8_t)s), "?");
        ck_assert_str_eq(proto_fiber_state_name(0), "?");
        ck_assert_str_eq(proto_fiber_state_name(PROTO_FIBER_STATE_MAX + 1), "?");
}
END_TEST

int main(void)
{
        Suite *s = suite_create("protocol-table");
        TCase *core = tcase_create("core");
        SRunner *sr;
        int failed;

        tcase_add_test(core, test_codes_and_names_unique);
        tcase_add_test(core, test_unknown_codes);
        tcase_add_test(core, test_rows_well_formed);
        tcase_add_test(core, test_reader_positions);
        tcase_add_test(core, test_state_names);
        suite_add_tcase(s, core);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
