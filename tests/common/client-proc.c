/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-proc.h"

static void die(const char *what)
{
        fprintf(stderr, "client-proc: %s: %s\n", what, strerror(errno));
        abort();
}

void cp_result_free(struct cp_result *r)
{
        free(r->out);
        free(r->err);
        r->out = r->err = NULL;
}

static char *slurp_fd(int fd, size_t *ret_len)
{
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);
        if (!buf || lseek(fd, 0, SEEK_SET) < 0)
                die("capture");
        for (;;) {
                if (len + 1 >= cap) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        if (!buf)
                                die("capture");
                }
                ssize_t n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die("capture read");
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret_len = len;
        return buf;
}

void cp_run(const char *const *argv, const char *const *env, const char *cwd, uid_t uid,
            struct cp_result *ret)
{
        int out = memfd_create("cp-out", MFD_CLOEXEC);
        int err = memfd_create("cp-err", MFD_CLOEXEC);
        if (out < 0 || err < 0)
                die("memfd_create");
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
                die("fork");
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDONLY);
                if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                        _exit(126);
                for (size_t i = 0; env && env[i]; i++)
                        if (putenv((char *)(uintptr_t)env[i]) != 0)
                                _exit(126);
                if (cwd && chdir(cwd) < 0)
                        _exit(126);
                if (uid != (uid_t)-1 &&
                    (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
                        _exit(126);
                execv(argv[0], (char *const *)(uintptr_t)argv);
                _exit(127);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        die("waitpid");
        ret->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        ret->out = slurp_fd(out, &ret->out_len);
        ret->err = slurp_fd(err, &ret->err_len);
        close(out);
        close(err);
}

static const char *env_path(const char *var, const char *rel, char *buf, size_t len)
{
        const char *base = getenv(var);
        if (!base) {
                fprintf(stderr, "client-proc: %s is not set (run the tests with ctest)\n", var);
                abort();
        }
        int n = snprintf(buf, len, "%s/%s", base, rel);
        if (n < 0 || (size_t)n >= len)
                abort();
        return buf;
}

const char *cp_build_path(const char *rel, char *buf, size_t len)
{
        return env_path("GTRACE_TEST_BINARY_DIR", rel, buf, len);
}

const char *cp_source_path(const char *rel, char *buf, size_t len)
{
        return env_path("GTRACE_TEST_SOURCE_DIR", rel, buf, len);
}

char *cp_tmpdir(const char *tag)
{
        const char *base = getenv("TMPDIR");
        char path[512];
        (void)snprintf(path, sizeof(path), "%s/gtrace-%s-XXXXXX", base && *base ? base : "/tmp",
                       tag);
        if (!mkdtemp(path))
                die("mkdtemp");
        if (chmod(path, 0755) < 0)
                die("chmod");
        return strdup(path);
}

void cp_rmtree(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        if (!d)
                return;
        while ((e = readdir(d))) {
                char p[1024];
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                        continue;
                (void)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
                struct stat st;
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                        cp_rmtree(p);
                else
                        (void)unlink(p);
        }
        closedir(d);
        (void)rmdir(dir);
}

char *cp_read(const char *path, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        size_t len;
        char *s = slurp_fd(fd, &len);
        close(fd);
        if (ret_len)
                *ret_len = len;
        return s;
}

int cp_write(const char *path, const void *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        const char *p = data;
        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
                p += n;
                len -= (size_t)n;
        }
        return close(fd) < 0 ? -errno : 0;
}

void cp_make_dump(const char *text, const char *path, const char *reason)
{
        struct gb_blobs blobs = {0};
        char err[256];
        if (gb_compile(text, &blobs, err, sizeof(err)) < 0) {
                fprintf(stderr, "client-proc: genbuild text: %s\n", err);
                abort();
        }
        /* Text without any record (only comments): a dump with no generation. */
        if (blobs.n == 1 && blobs.v[0].len == 0) {
                gb_blobs_free(&blobs);
                blobs.n = 0;
        }
        struct proto_dump_meta meta = {
                .pid = 4242,
                .uid = 1000,
                .dump_time_ns = 1700000010000000000ull,
                .start_time_ns = 1699999990000000000ull,
                .flushed = 1,
                .command = "golden",
                .executable = "/usr/bin/golden",
                .host = "testhost",
                .reason = reason,
                .origin = "test",
                .producer = "genbuild",
        };
        if (gb_dump_write(path, &meta, &blobs) < 0)
                die("gb_dump_write");
        gb_blobs_free(&blobs);
}
