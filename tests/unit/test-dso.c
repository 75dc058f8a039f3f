/* SPDX-License-Identifier: MIT */
/* A library test-runtime-api loads with dlopen after gtrace_start: frames
 * in it are code the stack walk must learn about (runtime/code.c). */
void test_dso_call(void (*fn)(void));

__attribute__((noinline, visibility("default"))) void test_dso_call(void (*fn)(void))
{
        fn();
        __asm__ volatile("" ::: "memory"); /* not a tail call: keep this frame */
}
