# Tests of the wire protocol, the daemon's generation rings and gtraced.
gtrace_check_test(test-wire-codec SOURCES unit/test-wire-codec.c LIBS gtrace_proto TIMEOUT 30)
gtrace_check_test(test-ring-retention SOURCES unit/test-ring-retention.c LIBS gtrace_flightrec TIMEOUT 30)

# Integration tests: a real gtraced in a temporary directory.
set(DAEMON_HARNESS common/daemon-harness.c)
gtrace_check_test(test-daemon-raw SOURCES integration/test-daemon-raw.c ${DAEMON_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 120)
add_dependencies(test-daemon-raw gtraced)

# A real instrumented program for the runtime <-> daemon tests.
add_executable(daemon-prog integration/daemon-prog.c)
target_link_libraries(daemon-prog PRIVATE gtrace)
gtrace_target(daemon-prog)
gtrace_check_test(test-daemon-runtime SOURCES integration/test-daemon-runtime.c ${DAEMON_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 240)
add_dependencies(test-daemon-runtime gtraced daemon-prog)
gtrace_check_test(test-daemon-systemd SOURCES integration/test-daemon-systemd.c ${DAEMON_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 120)
add_dependencies(test-daemon-systemd gtraced)
