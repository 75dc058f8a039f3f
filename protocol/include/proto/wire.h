/* SPDX-License-Identifier: MIT */
/*
 * The gtraced wire protocol: framing and messages on the unix stream socket
 * (normative text: docs/protocol.md).
 *
 *   frame  := length:u32le type:u16le reserved:u16le(=0) payload[length]
 *
 * A connection starts with one HELLO from the client naming the protocol
 * version and the role (producer or control); the daemon answers WELCOME or
 * ERROR.  Message payloads are a fixed sequence of fields: integers are
 * LEB128 uvarints (signed ones zig-zag), texts are a uvarint length then
 * that many bytes (no terminator, no NUL inside).  Decoders are strict: a
 * payload must hold exactly the fields of its type, each within its limit.
 * GENERATION carries a raw generation blob, REQUEST and REPLY raw JSON
 * bytes: this module only frames them (it is libc only, no jansson).
 *
 * Every type has a maximum payload size (proto_msg_max()), checked from the
 * header alone, before a byte of payload is read or allocated for.
 *
 * Everything here is async-signal-safe (no allocation, no locks): the
 * runtime's crash handler encodes with it.
 */
#ifndef PROTO_WIRE_H
#define PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_WIRE_VERSION 1u
#define PROTO_HEADER_BYTES 8u

/* Text field limits, in bytes, without a terminator. */
#define PROTO_MAX_COMMAND 255u   /* HELLO command (comm or argv[0] basename) */
#define PROTO_MAX_PATH 4096u     /* HELLO executable, DUMP_REPLY path */
#define PROTO_MAX_SOFTWARE 128u  /* HELLO / WELCOME software name and version */
#define PROTO_MAX_REASON 1024u   /* DUMP_REQUEST reason */
#define PROTO_MAX_ERROR_TEXT 512u /* ERROR message */

/* Payload limits per type (the worst-case encodings fit; see wire.c). */
#define PROTO_MAX_HELLO_BYTES 8192u
#define PROTO_MAX_WELCOME_BYTES 512u
#define PROTO_MAX_ERROR_BYTES 1024u
#define PROTO_MAX_SMALL_BYTES 64u            /* FLUSH, FLUSH_DONE, CRASH */
#define PROTO_MAX_DUMP_REQUEST_BYTES 1100u
#define PROTO_MAX_DUMP_REPLY_BYTES 4200u
#define PROTO_MAX_REQUEST_BYTES (64u << 10)  /* control JSON request */
#define PROTO_MAX_REPLY_BYTES (16u << 20)    /* control JSON reply */
/* GENERATION: PROTO_MAX_GENERATION_BYTES (proto/dumpfile.h); a daemon may
 * announce a lower limit in WELCOME. */

/* The largest whole frame of every type except GENERATION, REQUEST and REPLY:
 * a buffer this big holds any of them. */
#define PROTO_MAX_SMALL_FRAME (PROTO_HEADER_BYTES + PROTO_MAX_HELLO_BYTES)

enum proto_msg_type {
        /* handshake, both roles */
        PROTO_MSG_HELLO = 0x01,        /* client -> daemon, first frame */
        PROTO_MSG_WELCOME = 0x02,      /* daemon -> client, answer to HELLO */
        PROTO_MSG_ERROR = 0x03,        /* daemon -> client, then the daemon closes */
        /* producer -> daemon */
        PROTO_MSG_GENERATION = 0x10,   /* payload: one whole generation blob */
        PROTO_MSG_FLUSH_DONE = 0x11,   /* the generation a FLUSH asked for was sent */
        PROTO_MSG_DUMP_REQUEST = 0x12, /* dump this process (gtrace_dump) */
        PROTO_MSG_CRASH = 0x13,        /* fatal signal; the connection ends next */
        PROTO_MSG_GOODBYE = 0x14,      /* clean end of tracing; empty payload */
        /* daemon -> producer */
        PROTO_MSG_FLUSH = 0x20,        /* cut a generation now and send it */
        PROTO_MSG_DUMP_REPLY = 0x21,   /* answer to DUMP_REQUEST */
        /* control */
        PROTO_MSG_REQUEST = 0x30,      /* client -> daemon, JSON; may carry one fd */
        PROTO_MSG_REPLY = 0x31,        /* daemon -> client, JSON */
};

enum proto_role {
        PROTO_ROLE_PRODUCER = 1,
        PROTO_ROLE_CONTROL = 2,
};

struct proto_header {
        uint32_t length; /* payload bytes */
        uint16_t type;   /* enum proto_msg_type */
};

/* Maximum payload of a type, or 0 for an unknown type (GOODBYE's maximum is
 * also 0 but it is known: use proto_msg_known()). */
uint32_t proto_msg_max(uint16_t type);
int proto_msg_known(uint16_t type);
/* "HELLO", "GENERATION" ...; "unknown" for anything else. */
const char *proto_msg_name(uint16_t type);

/* Writes a header into out[PROTO_HEADER_BYTES]. */
void proto_header_put(uint8_t *out, uint16_t type, uint32_t length);

/*
 * Reads a header from in[PROTO_HEADER_BYTES] and checks it against the
 * protocol: -EBADMSG reserved bits set, -EPROTO unknown type, -EMSGSIZE
 * length above the type's maximum.  *ret is filled in every case (so an
 * error can name the type and length); 0 when the header is acceptable.
 */
int proto_header_get(const uint8_t *in, struct proto_header *ret);

/*
 * Splits one frame off the front of [buf, buf+len).  Returns 0 when more
 * bytes are needed, the whole frame's size (> 0) with *ret_hdr and
 * *ret_payload set, or a proto_header_get() error.
 */
ssize_t proto_frame_split(const uint8_t *buf, size_t len, struct proto_header *ret_hdr,
                          const uint8_t **ret_payload);

/* ---- messages ---------------------------------------------------------- */

struct proto_hello {
        uint32_t version; /* PROTO_WIRE_VERSION */
        uint32_t role;    /* enum proto_role */
        char software[PROTO_MAX_SOFTWARE + 1]; /* "libgtrace 0.1.0", "gtracectl 0.1.0" */
        /* producer role only */
        uint64_t pid;
        uint64_t uid;
        uint64_t start_time_ns; /* process start, wall clock ns since the epoch */
        uint64_t clock_freq;    /* trace clock units per second */
        char command[PROTO_MAX_COMMAND + 1];
        char executable[PROTO_MAX_PATH + 1];
};

struct proto_welcome {
        uint32_t version;
        uint64_t max_generation; /* largest GENERATION payload the daemon accepts */
        char software[PROTO_MAX_SOFTWARE + 1];
};

struct proto_error {
        uint32_t code; /* a positive Linux errno value */
        char message[PROTO_MAX_ERROR_TEXT + 1];
};

struct proto_flush {
        uint64_t id;
};

struct proto_flush_done {
        uint64_t id;
        uint64_t gen; /* the generation cut for it (already sent before this frame) */
};

struct proto_dump_request {
        uint64_t id;
        char reason[PROTO_MAX_REASON + 1];
};

struct proto_dump_reply {
        uint64_t id;
        int32_t result;                 /* 0 or -errno */
        char text[PROTO_MAX_PATH + 1];  /* absolute dump path, or the error message */
};

struct proto_crash {
        uint32_t signo;
};

/*
 * Encoders write one whole frame (header and payload) into buf and return
 * its size, or -ENOBUFS when cap is too small.  Texts longer than their
 * limit are truncated to it (at a UTF-8 character boundary).
 */
ssize_t proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *m);
ssize_t proto_encode_welcome(uint8_t *buf, size_t cap, const struct proto_welcome *m);
ssize_t proto_encode_error(uint8_t *buf, size_t cap, const struct proto_error *m);
ssize_t proto_encode_flush(uint8_t *buf, size_t cap, const struct proto_flush *m);
ssize_t proto_encode_flush_done(uint8_t *buf, size_t cap, const struct proto_flush_done *m);
ssize_t proto_encode_dump_request(uint8_t *buf, size_t cap, const struct proto_dump_request *m);
ssize_t proto_encode_dump_reply(uint8_t *buf, size_t cap, const struct proto_dump_reply *m);
ssize_t proto_encode_crash(uint8_t *buf, size_t cap, const struct proto_crash *m);
ssize_t proto_encode_goodbye(uint8_t *buf, size_t cap);

/*
 * Decoders read one payload (without its header).  0, or -EBADMSG for a
 * payload that does not hold exactly the type's fields within their limits
 * (texts with a NUL byte included).  proto_decode_hello() returns
 * -EPROTONOSUPPORT, with ret->version set, when the version is not
 * PROTO_WIRE_VERSION (nothing after the version is read then), and -EPROTO
 * for an unknown role.  *ret may be partly written on failure.
 */
int proto_decode_hello(const uint8_t *p, size_t len, struct proto_hello *ret);
int proto_decode_welcome(const uint8_t *p, size_t len, struct proto_welcome *ret);
int proto_decode_error(const uint8_t *p, size_t len, struct proto_error *ret);
int proto_decode_flush(const uint8_t *p, size_t len, struct proto_flush *ret);
int proto_decode_flush_done(const uint8_t *p, size_t len, struct proto_flush_done *ret);
int proto_decode_dump_request(const uint8_t *p, size_t len, struct proto_dump_request *ret);
int proto_decode_dump_reply(const uint8_t *p, size_t len, struct proto_dump_reply *ret);
int proto_decode_crash(const uint8_t *p, size_t len, struct proto_crash *ret);

#endif
