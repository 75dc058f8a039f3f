/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: gtraced's control-request parser (control_parse, the JSON a
 * REQUEST frame carries, docs/protocol.md "Control connections").  Any
 * bytes: it must not crash, leak or read out of bounds; a failure leaves a
 * terminated message; a success obeys the request rules (exactly one of pid
 * and all, pid > 0, fd only with pid, reason within its limit and free of
 * NUL) and survives a round trip through its canonical JSON form.
 *
 * Replayer: tests/fuzz-control-replay tests/fuzz/corpus/fuzz-control
 * libFuzzer (GTRACE_FUZZ=ON, clang): build-fuzz/tests/fuzz-control CORPUS
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gtraced.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gd_request q, q2;

static void check_rules(const struct gd_request *r)
{
        if (r->cmd != GD_REQ_STATUS && r->cmd != GD_REQ_LIST && r->cmd != GD_REQ_SNAPSHOT)
                abort();
        if (r->cmd != GD_REQ_SNAPSHOT)
                return;
        if (r->all == (r->pid != 0) || (r->all && r->want_fd))
                abort();
        if (r->has_reason && strlen(r->reason) > PROTO_MAX_REASON)
                abort();
}

static void round_trip(const struct gd_request *r)
{
        static const char *names[] = {"status", "list", "snapshot"};
        json_t *o = json_pack("{s:s}", "command", names[r->cmd]);
        if (!o)
                abort();
        if (r->cmd == GD_REQ_SNAPSHOT) {
                if (r->all)
                        json_object_set_new(o, "all", json_true());
                else
                        json_object_set_new(o, "pid", json_integer((json_int_t)r->pid));
                if (r->want_fd)
                        json_object_set_new(o, "fd", json_true());
                if (r->has_reason)
                        json_object_set_new(o, "reason", json_string(r->reason));
        }
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text)
                abort();
        char err[256];
        memset(&q2, 0, sizeof(q2));
        if (control_parse((const uint8_t *)text, strlen(text), &q2, err, sizeof(err)) != 0)
                abort();
        free(text);
        if (q2.cmd != r->cmd || q2.pid != r->pid || q2.all != r->all || q2.want_fd != r->want_fd ||
            q2.has_reason != r->has_reason || strcmp(q2.reason, r->reason) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[256];
        if (size > PROTO_MAX_REQUEST_BYTES)
                return 0; /* the frame layer refuses these before parsing */
        memset(&q, 0, sizeof(q));
        memset(err, 0x55, sizeof(err));
        int r = control_parse(data, size, &q, err, sizeof(err));
        if (r == 0) {
                check_rules(&q);
                round_trip(&q);
        } else if (r != -EINVAL || !memchr(err, '\0', sizeof(err))) {
                abort();
        }
        return 0;
}
