/* SPDX-License-Identifier: MIT */
/*
 * The .gtrace dump file container (normative text: docs/format.md).
 *
 *   file   := magic[8] record*
 *   record := type:u8 length:uvarint payload[length]
 *
 * The first record is META, the last END; GENERATION records in between carry
 * one generation blob each, oldest first.  A META payload is a sequence of
 * (key:u8, length:uvarint, value[length]) fields; integers are uvarints,
 * texts are UTF-8 without a terminator.  Unknown record types and META keys
 * are skipped by readers, so later versions can add without breaking.
 */
#ifndef PROTO_DUMPFILE_H
#define PROTO_DUMPFILE_H

#define PROTO_DUMP_MAGIC "GTRACE\r\n"
#define PROTO_DUMP_MAGIC_LEN 8
#define PROTO_DUMP_VERSION 1u

/* Limits a reader enforces before allocating anything. */
#define PROTO_MAX_GENERATION_BYTES (256u << 20) /* one generation blob */
#define PROTO_MAX_META_BYTES (64u << 10)        /* the META record */
#define PROTO_MAX_TEXT_BYTES 4096u              /* one META text field */

enum proto_dump_record {
        PROTO_DUMP_META = 0x01,
        PROTO_DUMP_GENERATION = 0x02,
        PROTO_DUMP_END = 0x03, /* payload: uvarint generation count */
};

enum proto_meta_key {
        PROTO_META_VERSION = 0x01,      /* uvarint: PROTO_DUMP_VERSION */
        PROTO_META_PID = 0x02,          /* uvarint */
        PROTO_META_COMMAND = 0x03,      /* text: comm or argv[0] basename */
        PROTO_META_EXECUTABLE = 0x04,   /* text: /proc/PID/exe */
        PROTO_META_HOST = 0x05,         /* text: hostname */
        PROTO_META_REASON = 0x06,       /* text: why the dump was taken */
        PROTO_META_DUMP_TIME = 0x07,    /* uvarint: wall-clock ns since the epoch */
        PROTO_META_ORIGIN = 0x08,       /* text: "process", "crash", "daemon", "signal" ... */
        PROTO_META_FLUSHED = 0x09,      /* uvarint: 1 if the newest generation was cut for this dump */
        PROTO_META_START_TIME = 0x0a,   /* uvarint: process start time, ns since the epoch */
        PROTO_META_GENS_DROPPED = 0x0b, /* uvarint: generations evicted before this dump */
        PROTO_META_PRODUCER = 0x0c,     /* text: producer library and version */
        PROTO_META_UID = 0x0d,          /* uvarint */
        PROTO_META_SIGNAL = 0x0e,       /* uvarint: fatal signal for crash dumps */
};

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* What a writer puts in META.  Texts may be NULL (field omitted). */
struct proto_dump_meta {
        uint64_t pid;
        uint64_t uid;
        uint64_t dump_time_ns;   /* wall clock */
        uint64_t start_time_ns;  /* process start, wall clock; 0 unknown */
        uint64_t gens_dropped;
        uint64_t signal;         /* 0 unless a crash dump */
        int flushed;
        const char *command;
        const char *executable;
        const char *host;
        const char *reason;
        const char *origin;
        const char *producer;
};

/*
 * Writes a whole dump file to fd: magic, META, one GENERATION record per
 * iovec (oldest first), END.  Uses only write(2) and stack memory, so it is
 * async-signal-safe (the crash handler uses it).  Texts longer than
 * PROTO_MAX_TEXT_BYTES are truncated.  Returns 0 or -errno (-ENOSPC, -EIO ...).
 */
int proto_dump_write(int fd, const struct proto_dump_meta *meta, const struct iovec *gens,
                     size_t ngens);

/*
 * The exact size in bytes of the file proto_dump_write() writes for the same
 * arguments (a writer preallocates it), or -EMSGSIZE.  Async-signal-safe.
 */
int64_t proto_dump_size(const struct proto_dump_meta *meta, const struct iovec *gens,
                        size_t ngens);

#endif
