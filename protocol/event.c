/* SPDX-License-Identifier: MIT */
#include <stddef.h>

#include "proto/event.h"

#define ROW_ARG_(kind, name) {kind, #name},
#define ROW_ARG_NONE_(kind, name)
#define ROW_(name, code, where, doc, ...)                                                  \
        {#name, code, where, sizeof((struct proto_arg_spec[]){__VA_ARGS__}) /              \
                                     sizeof(struct proto_arg_spec), doc, {__VA_ARGS__}},
/* Expand each row's A(...) list into initialisers. */
#define XROW_(name, code, where, doc, args) ROW_(name, code, where, doc, args)

static const struct proto_event_spec table[] = {PROTO_EVENTS(XROW_, ROW_ARG_)};

/* Position of each row in table[], then a code -> position+1 index, both
 * generated from the same X-macro so they cannot disagree. */
#define POS_(name, code, where, doc, ...) POS_##name,
enum { PROTO_EVENTS(POS_, ROW_ARG_NONE_) POS_COUNT_ };
#define IDX_(name, code, where, doc, ...) [code] = POS_##name + 1,
static const uint8_t by_code[256] = {PROTO_EVENTS(IDX_, ROW_ARG_NONE_)};

const struct proto_event_spec *proto_event_spec(uint8_t code)
{
        return by_code[code] ? &table[by_code[code] - 1] : NULL;
}

const struct proto_event_spec *proto_event_table(size_t *ret_n)
{
        *ret_n = sizeof(table) / sizeof(table[0]);
        return table;
}

const char *proto_arg_kind_name(uint8_t kind)
{
        switch (kind) {
        case PA_UINT: return "uint";
        case PA_SINT: return "sint";
        case PA_TS: return "ts";
        case PA_TIME: return "time";
        case PA_STR: return "string";
        case PA_STACK: return "stack";
        case PA_THREAD: return "thread";
        case PA_FIBER: return "fiber";
        case PA_SEQ: return "seq";
        case PA_TASK: return "task";
        case PA_STATE: return "state";
        case PA_BYTES: return "bytes";
        default: return "?";
        }
}

const char *proto_fiber_state_name(uint8_t state)
{
        switch (state) {
        case PROTO_FIBER_RUNNABLE: return "runnable";
        case PROTO_FIBER_RUNNING: return "running";
        case PROTO_FIBER_WAITING: return "waiting";
        case PROTO_FIBER_SYSCALL: return "syscall";
        default: return "?";
        }
}
