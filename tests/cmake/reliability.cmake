# Reliability and security (issue 7; owner: rel): fault-injection and
# security tests against real gtraced processes, the ELF hardening check,
# and the fuzz targets for the daemon's parsers.
set(FAULT_HARNESS common/fault-harness.c common/daemon-harness.c)

# The instrumented program the fault and security tests drive over pipes.
add_executable(test-fault-prog integration/test-fault-prog.c)
target_link_libraries(test-fault-prog PRIVATE gtrace Threads::Threads)
gtrace_target(test-fault-prog)

gtrace_check_test(test-daemon-security SOURCES integration/test-daemon-security.c
  ${FAULT_HARNESS} LIBS gtrace_flightrec TIMEOUT 120)
add_dependencies(test-daemon-security gtraced test-fault-prog)

# The fault tests also run under TSan (label concurrency): the daemon's loop
# and dump threads under storms, restarts and hundreds of producers.
gtrace_check_test(test-fault-daemon SOURCES integration/test-fault-daemon.c ${FAULT_HARNESS}
  LIBS gtrace_flightrec LABELS concurrency TIMEOUT 300)
add_dependencies(test-fault-daemon gtraced test-fault-prog)
if(GTRACE_SANITIZE)
  target_compile_definitions(test-fault-daemon PRIVATE FAULT_SANITIZED=1)
endif()

gtrace_check_test(test-fault-producer SOURCES integration/test-fault-producer.c ${FAULT_HARNESS}
  LIBS gtrace_flightrec LABELS concurrency TIMEOUT 180)
add_dependencies(test-fault-producer gtraced test-fault-prog)

# Hardened release binaries (the flags cmake/GtraceTarget.cmake applies to
# release build types without a sanitizer), checked with readelf.
if(NOT GTRACE_SANITIZE AND CMAKE_BUILD_TYPE MATCHES "Rel" AND TARGET gtracectl)
  gtrace_check_test(test-daemon-hardening SOURCES integration/test-daemon-hardening.c
    TIMEOUT 60)
  target_compile_definitions(test-daemon-hardening PRIVATE
    GTRACE_HARDEN_GTRACED="$<TARGET_FILE:gtraced>"
    GTRACE_HARDEN_GTRACECTL="$<TARGET_FILE:gtracectl>"
    GTRACE_HARDEN_LIBGTRACE="$<TARGET_FILE:gtrace>")
  add_dependencies(test-daemon-hardening gtraced gtracectl gtrace)
  set_tests_properties(test-daemon-hardening PROPERTIES SKIP_RETURN_CODE 77)
endif()

# ---- fuzz targets for the daemon's parsers and the whole daemon -------------
# Each builds as a corpus replayer registered under ctest (any compiler,
# any sanitizer) and, with GTRACE_FUZZ=ON and clang, as a libFuzzer binary
# with the daemon's sources (and the ring and wire codec it drives)
# compiled in with coverage:
#   CC=clang cmake -S . -B build-fuzz -DGTRACE_FUZZ=ON -DGTRACE_SANITIZE=address,undefined
#   build-fuzz/tests/fuzz-daemon -close_fd_mask=3 tests/fuzz/corpus/fuzz-daemon
# scripts/test.sh runs each for a bounded time when libFuzzer is available.
pkg_check_modules(REL_LIBUV REQUIRED IMPORTED_TARGET libuv)
pkg_check_modules(REL_LIBSYSTEMD REQUIRED IMPORTED_TARGET libsystemd)
pkg_check_modules(REL_JANSSON REQUIRED IMPORTED_TARGET jansson)
set(REL_DAEMON_SOURCES config.c conn.c control.c dump.c log.c producer.c server.c)
list(TRANSFORM REL_DAEMON_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/daemon/)
set(REL_DAEMON_LIBS gtrace_flightrec PkgConfig::REL_LIBUV PkgConfig::REL_LIBSYSTEMD
  PkgConfig::REL_JANSSON Threads::Threads)

# fuzz_target(<name> [WHOLE_DAEMON]): the daemon's sources compiled into the
# target with assertions on (-UNDEBUG: the connection state checks run);
# WHOLE_DAEMON also compiles in the ring and the wire codec for coverage.
function(rel_fuzz_target name)
  cmake_parse_arguments(F "WHOLE_DAEMON" "" "" ${ARGN})
  set(extra "")
  if(F_WHOLE_DAEMON)
    set(extra ${PROJECT_SOURCE_DIR}/flightrec/ring.c ${PROJECT_SOURCE_DIR}/protocol/wire.c)
  endif()
  add_executable(${name}-replay fuzz/${name}.c fuzz/replay.c ${REL_DAEMON_SOURCES})
  target_include_directories(${name}-replay PRIVATE ${PROJECT_SOURCE_DIR}/daemon)
  target_compile_options(${name}-replay PRIVATE -UNDEBUG)
  target_link_libraries(${name}-replay PRIVATE ${REL_DAEMON_LIBS})
  gtrace_target(${name}-replay)
  add_test(NAME ${name}-replay
    COMMAND ${name}-replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name})
  set_tests_properties(${name}-replay PROPERTIES TIMEOUT 120)
  if(GTRACE_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "GTRACE_FUZZ=ON needs clang (CC=clang)")
    endif()
    add_executable(${name} fuzz/${name}.c ${REL_DAEMON_SOURCES} ${extra})
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/daemon)
    target_compile_options(${name} PRIVATE -UNDEBUG -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name} PRIVATE ${REL_DAEMON_LIBS})
    gtrace_target(${name})
  endif()
endfunction()

rel_fuzz_target(fuzz-control)
rel_fuzz_target(fuzz-args)
rel_fuzz_target(fuzz-daemon WHOLE_DAEMON)

# Regenerates the hand-made seeds: build/tests/fuzz-mkseeds tests/fuzz/corpus
add_executable(fuzz-mkseeds fuzz/mkseeds.c)
target_include_directories(fuzz-mkseeds PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/common)
target_link_libraries(fuzz-mkseeds PRIVATE gtrace_flightrec)
gtrace_target(fuzz-mkseeds)
