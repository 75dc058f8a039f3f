/* SPDX-License-Identifier: MIT */
/*
 * In-process dumps: the ring (plus, for a crash, the generation sealed in the
 * signal handler) written as a .gtrace file into the dump directory, when no
 * gtraced is there to do it.
 *
 * The file appears atomically: it is written under a hidden temporary name
 * and renamed.  Everything here is async-signal-safe (open, write, rename,
 * no stdio, no malloc, no locale), because the crash handler uses it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proto/dumpfile.h"

#define MAX_RING_IOV 1025 /* ring depth is at most 1024, plus the sealed blob */
static struct iovec dump_iov[MAX_RING_IOV];

/* Appends s to buf at *pos, keeping only [A-Za-z0-9._-] (a command name
 * must not be able to escape the directory or hide the file). */
static void put_safe(char *buf, size_t len, size_t *pos, const char *s)
{
        for (; *s && *pos + 1 < len; s++) {
                char c = *s;
                int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         (c == '.' && *pos > 0) || c == '_' || c == '-';
                buf[(*pos)++] = ok ? c : '_';
        }
        buf[*pos] = '\0';
}

static void put_num(char *buf, size_t len, size_t *pos, uint64_t v, int width)
{
        char d[24];
        int n = 0;
        do {
                d[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v && n < (int)sizeof(d));
        while (n < width && n < (int)sizeof(d))
                d[n++] = '0';
        while (n > 0 && *pos + 1 < len)
                buf[(*pos)++] = d[--n];
        buf[*pos] = '\0';
}

/* Civil date from days since 1970-01-01 (proleptic Gregorian). */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        unsigned doe = (unsigned)(z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        unsigned mp = (5 * doy + 2) / 153;
        *d = doy - (153 * mp + 2) / 5 + 1;
        *m = mp < 10 ? mp + 3 : mp - 9;
        *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void gt_dump_name(char *buf, size_t len, const char *command, pid_t pid, uint64_t wall_ns)
{
        size_t pos = 0;
        int64_t secs = (int64_t)(wall_ns / 1000000000u);
        int64_t y;
        unsigned mo, d;
        civil(secs / 86400, &y, &mo, &d);
        unsigned sod = (unsigned)(secs % 86400);

        buf[0] = '\0';
        put_safe(buf, len, &pos, command && *command ? command : "process");
        put_safe(buf, len, &pos, "-");
        put_num(buf, len, &pos, (uint64_t)pid, 1);
        put_safe(buf, len, &pos, "-");
        put_num(buf, len, &pos, (uint64_t)y, 4);
        put_num(buf, len, &pos, mo, 2);
        put_num(buf, len, &pos, d, 2);
        put_safe(buf, len, &pos, "T");
        put_num(buf, len, &pos, sod / 3600, 2);
        put_num(buf, len, &pos, sod / 60 % 60, 2);
        put_num(buf, len, &pos, sod % 60, 2);
        put_safe(buf, len, &pos, ".");
        put_num(buf, len, &pos, wall_ns / 1000000 % 1000, 3);
        put_safe(buf, len, &pos, "Z.gtrace");
}

static size_t append(char *buf, size_t len, size_t pos, const char *s)
{
        while (*s && pos + 1 < len)
                buf[pos++] = *s++;
        buf[pos] = '\0';
        return pos;
}

int gt_dump_write_local(const char *dir, const char *reason, const char *origin, int signo,
                        const struct iovec *extra, char *ret_path, size_t path_len)
{
        char name[256], path[4096], tmp[4096];
        struct timespec now;
        size_t n;
        int fd, r;

        clock_gettime(CLOCK_REALTIME, &now);
        uint64_t wall = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
        gt_dump_name(name, sizeof(name), gt.proc.command, gt.proc.pid, wall);

        n = append(path, sizeof(path), 0, dir);
        n = append(path, sizeof(path), n, "/");
        n = append(path, sizeof(path), n, name);
        if (n + 1 >= sizeof(path))
                return -ENAMETOOLONG;
        n = append(tmp, sizeof(tmp), 0, dir);
        n = append(tmp, sizeof(tmp), n, "/.");
        n = append(tmp, sizeof(tmp), n, name);
        n = append(tmp, sizeof(tmp), n, ".tmp");
        if (n + 1 >= sizeof(tmp))
                return -ENAMETOOLONG;

        /* The ring: whoever calls this is the advancer, or the crash handler
         * having checked the ring is not mid-update. */
        size_t niov = 0;
        for (uint32_t i = 0; niov < MAX_RING_IOV - 1; i++) {
                struct gt_blob *b = gt_ring_at(&gt.ring, i);
                if (!b)
                        break;
                dump_iov[niov++] = (struct iovec){b->data, b->len};
        }
        if (extra && extra->iov_len)
                dump_iov[niov++] = *extra;

        struct proto_dump_meta meta = {
                .pid = (uint64_t)gt.proc.pid,
                .uid = (uint64_t)gt.proc.uid,
                .dump_time_ns = wall,
                .start_time_ns = gt.proc.start_time_ns,
                .gens_dropped = gt.ring.gens_evicted,
                .signal = (uint64_t)signo,
                .flushed = 1,
                .command = gt.proc.command,
                .executable = gt.proc.executable,
                .host = gt.proc.host,
                .reason = reason,
                .origin = origin,
                .producer = "libgtrace " GTRACE_VERSION_STRING,
        };
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = proto_dump_write(fd, &meta, dump_iov, niov);
        if (r == 0 && fsync(fd) < 0 && errno != EINVAL)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        if (ret_path && path_len) {
                /* An absolute path for the caller: prefix the cwd if needed. */
                size_t pos = 0;
                ret_path[0] = '\0';
                if (path[0] != '/') {
                        char cwd[2048];
                        if (getcwd(cwd, sizeof(cwd))) {
                                pos = append(ret_path, path_len, 0, cwd);
                                pos = append(ret_path, path_len, pos, "/");
                        }
                }
                const char *p = path;
                if (p[0] == '.' && p[1] == '/')
                        p += 2;
                append(ret_path, path_len, pos, p);
        }
        return 0;
}
