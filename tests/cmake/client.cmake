# Tests of the client module: libgtrace-client, gtracectl, the text tools and
# the Chrome exporter (owner: client).
#
# The genbuild sources are compiled into each test that builds dumps (rather
# than linking the gtrace_genbuild library), because this file is included
# before the one that defines that library.
set(client_genbuild ${CMAKE_CURRENT_SOURCE_DIR}/common/genbuild.c)
# A real gtraced and instrumented programs: common/daemon-harness.c.
set(client_proc ${CMAKE_CURRENT_SOURCE_DIR}/common/client-proc.c
  ${CMAKE_CURRENT_SOURCE_DIR}/common/daemon-harness.c ${client_genbuild})

gtrace_check_test(test-client-textfmt SOURCES unit/test-client-textfmt.c ${client_genbuild}
  LIBS gtrace_flightrec TIMEOUT 30)
target_include_directories(test-client-textfmt PRIVATE ${PROJECT_SOURCE_DIR}/flightrec)

gtrace_check_test(test-export-chrome SOURCES unit/test-export-chrome.c ${client_genbuild}
  LIBS gtrace_flightrec TIMEOUT 60)
# Fails the N-th allocation of export / view / view --last / stats until they succeed.
gtrace_check_test(test-export-chaos SOURCES unit/test-export-chaos.c ${client_genbuild}
  LIBS gtrace_flightrec TIMEOUT 120)

if(TARGET gtracectl)
  gtrace_check_test(test-cli-golden SOURCES integration/test-cli-golden.c ${client_proc}
    LIBS gtrace_flightrec TIMEOUT 120)
  add_dependencies(test-cli-golden gtracectl)
endif()

if(TARGET gtracectl AND TARGET gtraced)
  # Also checks that only GTRACE_CLIENT_API symbols leave libgtrace-client.so
  # (nm -D against client/exported-symbols.txt).
  gtrace_check_test(test-client-lib SOURCES unit/test-client-lib.c ${client_proc}
    LIBS gtrace_client gtrace_flightrec TIMEOUT 60)
  add_dependencies(test-client-lib gtraced)
  target_compile_definitions(test-client-lib PRIVATE
    GTRACE_CLIENT_SO="$<TARGET_FILE:gtrace_client>")
  gtrace_check_test(test-cli-errors SOURCES integration/test-cli-errors.c ${client_proc}
    LIBS gtrace_flightrec TIMEOUT 120)
  add_dependencies(test-cli-errors gtracectl gtraced)

  # The whole path: an instrumented program (public API, static libgtrace),
  # gtraced, gtracectl snapshot/validate/stats/view/export.
  add_executable(test-cli-roundtrip-prog integration/test-cli-roundtrip-prog.c)
  target_link_libraries(test-cli-roundtrip-prog PRIVATE gtrace_static Threads::Threads)
  gtrace_target(test-cli-roundtrip-prog)
  gtrace_check_test(test-cli-roundtrip SOURCES integration/test-cli-roundtrip.c ${client_proc}
    LIBS gtrace_flightrec TIMEOUT 120)
  add_dependencies(test-cli-roundtrip test-cli-roundtrip-prog gtracectl gtraced)
endif()

