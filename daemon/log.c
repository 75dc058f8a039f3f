/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr.  Under journald (JOURNAL_STREAM names the device and
 * inode of our stderr) each line starts with "<N>" so the journal records
 * its priority; on a terminal or a plain file the lines are plain text with
 * the level spelled out.  No log files, no syslog socket: systemd
 * supervises, stderr is the channel.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gtraced.h"

static int log_level = LOG_INFO;
static int log_journal;

void log_setup(int level)
{
        log_level = level;
        const char *js = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;
        log_journal = 0;
        if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
                log_journal = 1;
}

int log_get_level(void)
{
        return log_level;
}

static const char *level_name(int level)
{
        switch (level) {
        case LOG_EMERG:
        case LOG_ALERT:
        case LOG_CRIT:
        case LOG_ERR: return "error";
        case LOG_WARNING: return "warning";
        case LOG_NOTICE: return "notice";
        case LOG_INFO: return "info";
        default: return "debug";
        }
}

static void log_vemit(int level, int error, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
static void log_vemit(int level, int error, const char *fmt, va_list ap)
{
        char msg[2048];
        /* %m in fmt is glibc's strerror(errno): point errno at the error. */
        int saved = errno;
        errno = error < 0 ? -error : error;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        errno = saved;
        if (log_journal)
                fprintf(stderr, "<%d>%s\n", level, msg);
        else
                fprintf(stderr, "gtraced: %s: %s\n", level_name(level), msg);
}

int log_full_errno(int level, int error, const char *fmt, ...)
{
        if (level <= log_level) {
                va_list ap;
                va_start(ap, fmt);
                log_vemit(level, error, fmt, ap);
                va_end(ap);
        }
        return error < 0 ? error : -error;
}

/* A misbehaving peer must not be able to flood the log: LOG_PEER_BURST
 * warnings per LOG_PEER_INTERVAL_MS, then one line saying how many were
 * suppressed. */
#define LOG_PEER_BURST 10
#define LOG_PEER_INTERVAL_MS 5000

int log_peer_warning(const char *fmt, ...)
{
        static uint64_t window_start;
        static unsigned in_window, suppressed;
        uint64_t now = gd_now_mono_ms();

        if (now - window_start >= LOG_PEER_INTERVAL_MS) {
                if (suppressed)
                        log_warning("%u more warnings about misbehaving peers suppressed",
                                    suppressed);
                window_start = now;
                in_window = 0;
                suppressed = 0;
        }
        if (in_window >= LOG_PEER_BURST) {
                suppressed++;
                return 0;
        }
        in_window++;
        if (LOG_WARNING <= log_level) {
                va_list ap;
                va_start(ap, fmt);
                log_vemit(LOG_WARNING, 0, fmt, ap);
                va_end(ap);
        }
        return 0;
}
