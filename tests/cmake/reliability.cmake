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

gtrace_check_test(test-fault-daemon SOURCES integration/test-fault-daemon.c ${FAULT_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 180)
add_dependencies(test-fault-daemon gtraced test-fault-prog)
if(GTRACE_SANITIZE)
  target_compile_definitions(test-fault-daemon PRIVATE FAULT_SANITIZED=1)
endif()

gtrace_check_test(test-fault-producer SOURCES integration/test-fault-producer.c ${FAULT_HARNESS}
  LIBS gtrace_flightrec TIMEOUT 180)
add_dependencies(test-fault-producer gtraced test-fault-prog)
