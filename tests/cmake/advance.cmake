# Tests of the runtime's advance thread and daemon sink (runtime/advance.c,
# runtime/daemon.c; owner: http-bench): blob assembly and blob reuse, with
# the in-process ring alone and with a real gtraced.
gtrace_check_test(test-runtime-advance SOURCES unit/test-runtime-advance.c
  common/daemon-harness.c
  LIBS gtrace_static gtrace_rtcheck LABELS concurrency TIMEOUT 120)
add_dependencies(test-runtime-advance gtraced)
