/* SPDX-License-Identifier: MIT */
/*
 * Removing what a test made, shared by the test harnesses (header only: the
 * harnesses are linked into different sets of tests).
 */
#ifndef GTRACE_TEST_FILES_H
#define GTRACE_TEST_FILES_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GTRACE_TEST_KEEP set (and not "0"): leave what the tests write, to look at. */
static inline int test_keep(void)
{
        const char *keep = getenv("GTRACE_TEST_KEEP");
        return keep && *keep && strcmp(keep, "0") != 0;
}

static inline int test_rm_entry_(const char *path, const struct stat *st, int flag,
                                 struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(path);
}

/* Removes path and what it holds, following no symbolic link. */
static inline void test_rmtree(const char *path)
{
        (void)nftw(path, test_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
