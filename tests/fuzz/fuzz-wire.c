/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for the wire codec: the input is a byte stream as a peer
 * could send it.  Frames are split off one by one and every payload goes
 * through the decoder of its type; whatever decodes must re-encode to a
 * frame that decodes to the same message.  GENERATION payloads go through
 * the daemon's top-level generation scan.  Nothing may crash, read out of
 * bounds or leak.
 *
 * Built as a corpus replayer under ctest (FUZZ_REPLAY_MAIN: every file of a
 * directory is fed once) and, with GTRACE_FUZZ=ON and clang, as a libFuzzer
 * binary: build-fuzz/tests/fuzz-wire tests/fuzz/corpus/fuzz-wire
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flightrec/ring.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t frame[PROTO_MAX_SMALL_FRAME];

#define ROUNDTRIP(msgtype, enc, dec, m)                                                  \
        do {                                                                             \
                static msgtype m2_;                                                      \
                ssize_t n_ = enc(frame, sizeof(frame), &(m));                            \
                if (n_ < 0)                                                              \
                        abort();                                                         \
                if (dec(frame + PROTO_HEADER_BYTES, (size_t)n_ - PROTO_HEADER_BYTES,     \
                        &m2_) != 0)                                                      \
                        abort();                                                         \
        } while (0)

static void one_frame(const struct proto_header *h, const uint8_t *p)
{
        switch (h->type) {
        case PROTO_MSG_HELLO: {
                static struct proto_hello m;
                if (proto_decode_hello(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_hello, proto_encode_hello, proto_decode_hello, m);
                break;
        }
        case PROTO_MSG_WELCOME: {
                struct proto_welcome m;
                if (proto_decode_welcome(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_welcome, proto_encode_welcome,
                                  proto_decode_welcome, m);
                break;
        }
        case PROTO_MSG_ERROR: {
                struct proto_error m;
                if (proto_decode_error(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_error, proto_encode_error, proto_decode_error, m);
                break;
        }
        case PROTO_MSG_FLUSH: {
                struct proto_flush m;
                if (proto_decode_flush(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_flush, proto_encode_flush, proto_decode_flush, m);
                break;
        }
        case PROTO_MSG_FLUSH_DONE: {
                struct proto_flush_done m;
                if (proto_decode_flush_done(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_flush_done, proto_encode_flush_done,
                                  proto_decode_flush_done, m);
                break;
        }
        case PROTO_MSG_DUMP_REQUEST: {
                static struct proto_dump_request m;
                if (proto_decode_dump_request(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_dump_request, proto_encode_dump_request,
                                  proto_decode_dump_request, m);
                break;
        }
        case PROTO_MSG_DUMP_REPLY: {
                static struct proto_dump_reply m;
                if (proto_decode_dump_reply(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_dump_reply, proto_encode_dump_reply,
                                  proto_decode_dump_reply, m);
                break;
        }
        case PROTO_MSG_CRASH: {
                struct proto_crash m;
                if (proto_decode_crash(p, h->length, &m) == 0)
                        ROUNDTRIP(struct proto_crash, proto_encode_crash, proto_decode_crash, m);
                break;
        }
        case PROTO_MSG_GENERATION: {
                struct fr_genbuf *b = fr_genbuf_new(h->length);
                if (!b)
                        abort();
                memcpy(b->data, p, h->length);
                char err[128];
                (void)fr_genbuf_scan(b, err, sizeof(err));
                fr_genbuf_unref(b);
                break;
        }
        default: break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t off = 0;
        for (;;) {
                struct proto_header h;
                const uint8_t *payload;
                ssize_t n = proto_frame_split(data + off, size - off, &h, &payload);
                if (n <= 0)
                        break; /* error or incomplete: a daemon drops the peer here */
                if ((size_t)n > size - off || h.length > proto_msg_max(h.type))
                        abort();
                one_frame(&h, payload);
                off += (size_t)n;
        }
        return 0;
}

#ifdef FUZZ_REPLAY_MAIN
static int replay_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return -errno;
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (len == cap) {
                        cap = cap ? cap * 2 : 4096;
                        uint8_t *nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                fclose(f);
                                return -ENOMEM;
                        }
                        buf = nb;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                if (n == 0)
                        break;
                len += n;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        int files = 0;
        for (int i = 1; i < argc; i++) {
                DIR *d = opendir(argv[i]);
                if (!d) {
                        if (replay_file(argv[i]) < 0) {
                                fprintf(stderr, "cannot read %s\n", argv[i]);
                                return 1;
                        }
                        files++;
                        continue;
                }
                struct dirent *e;
                while ((e = readdir(d))) {
                        if (e->d_name[0] == '.')
                                continue;
                        char path[4096];
                        snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                        if (replay_file(path) < 0) {
                                fprintf(stderr, "cannot read %s\n", path);
                                closedir(d);
                                return 1;
                        }
                        files++;
                }
                closedir(d);
        }
        printf("fuzz-wire: replayed %d inputs\n", files);
        return files > 0 ? 0 : 1;
}
#endif
