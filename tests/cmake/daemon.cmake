# Tests of the wire protocol, the daemon's generation rings and gtraced.
gtrace_check_test(test-wire-codec SOURCES unit/test-wire-codec.c LIBS gtrace_proto TIMEOUT 30)
gtrace_check_test(test-ring-retention SOURCES unit/test-ring-retention.c LIBS gtrace_flightrec TIMEOUT 30)
gtrace_check_test(test-daemon-config SOURCES unit/test-daemon-config.c LIBS gtraced_core
  TIMEOUT 30)

# Integration tests: a real gtraced in a temporary directory.
set(DAEMON_HARNESS common/daemon-harness.c)
gtrace_check_test(test-daemon-raw SOURCES integration/test-daemon-raw.c common/fault-harness.c
  ${DAEMON_HARNESS}
  LIBS gtrace_flightrec LABELS concurrency TIMEOUT 120)
add_dependencies(test-daemon-raw gtraced)

# A real instrumented program for the runtime <-> daemon tests.
add_executable(daemon-prog integration/daemon-prog.c)
target_link_libraries(daemon-prog PRIVATE gtrace)
gtrace_target(daemon-prog)
gtrace_check_test(test-daemon-runtime SOURCES integration/test-daemon-runtime.c common/fault-harness.c ${DAEMON_HARNESS}
  LIBS gtrace_flightrec gtrace_rtcheck LABELS concurrency TIMEOUT 240)
add_dependencies(test-daemon-runtime gtraced daemon-prog)
gtrace_check_test(test-daemon-systemd SOURCES integration/test-daemon-systemd.c ${DAEMON_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 120)
add_dependencies(test-daemon-systemd gtraced)

# Fuzz target for the wire codec: a corpus replayer under ctest, and with
# GTRACE_FUZZ=ON (clang) a libFuzzer binary:
#   CC=clang cmake -S . -B build-fuzz -DGTRACE_FUZZ=ON -DGTRACE_SANITIZE=address,undefined
#   build-fuzz/tests/fuzz-wire tests/fuzz/corpus/fuzz-wire
add_executable(fuzz-wire-replay fuzz/fuzz-wire.c)
target_compile_definitions(fuzz-wire-replay PRIVATE FUZZ_REPLAY_MAIN)
target_link_libraries(fuzz-wire-replay PRIVATE gtrace_flightrec)
gtrace_target(fuzz-wire-replay)
add_test(NAME fuzz-wire-replay
  COMMAND fuzz-wire-replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/fuzz-wire)
set_tests_properties(fuzz-wire-replay PROPERTIES TIMEOUT 60)
if(GTRACE_FUZZ)
  add_executable(fuzz-wire fuzz/fuzz-wire.c ${PROJECT_SOURCE_DIR}/protocol/wire.c
    ${PROJECT_SOURCE_DIR}/protocol/varint.c ${PROJECT_SOURCE_DIR}/protocol/event.c
    ${PROJECT_SOURCE_DIR}/flightrec/ring.c)
  target_include_directories(fuzz-wire PRIVATE ${PROJECT_SOURCE_DIR}/flightrec/include
    ${PROJECT_SOURCE_DIR}/protocol/include)
  target_compile_options(fuzz-wire PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz-wire PRIVATE -fsanitize=fuzzer)
  gtrace_target(fuzz-wire)
endif()
