# Tests of libgtrace (runtime/); owner: lead.  They link the static library
# and read what it writes back with the real reader (tests/common/rt-check).
add_library(gtrace_rtcheck STATIC common/rt-check.c)
target_link_libraries(gtrace_rtcheck PUBLIC gtrace_flightrec)
target_include_directories(gtrace_rtcheck PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
gtrace_target(gtrace_rtcheck)

gtrace_check_test(test-runtime-api SOURCES unit/test-runtime-api.c
  LIBS gtrace_static gtrace_rtcheck TIMEOUT 120)
# Under TSan too (the concurrency label), but for the test cases tagged
# no-tsan: forked children that start threads, and deliberate crashes.
if(GTRACE_SANITIZE MATCHES "thread")
  set_tests_properties(test-runtime-api PROPERTIES LABELS concurrency)
  set_property(TEST test-runtime-api APPEND PROPERTY ENVIRONMENT "CK_EXCLUDE_TAGS=no-tsan")
endif()
gtrace_check_test(test-runtime-stress SOURCES unit/test-runtime-stress.c
  LIBS gtrace_static gtrace_rtcheck LABELS concurrency TIMEOUT 300)
gtrace_check_test(test-runtime-fastpath SOURCES unit/test-runtime-fastpath.c
  LIBS gtrace_static gtrace_rtcheck LABELS concurrency TIMEOUT 120)
# The stack tests walk the test's own frames: keep them, as a user who wants
# full stacks builds (docs/runtime.md).
set_source_files_properties(unit/test-runtime-api.c PROPERTIES
  COMPILE_OPTIONS -fno-omit-frame-pointer)
# A library it loads after gtrace_start, whose frames the walk learns of.
add_library(gtrace_test_dso MODULE unit/test-dso.c)
target_compile_options(gtrace_test_dso PRIVATE -fno-omit-frame-pointer)
gtrace_target(gtrace_test_dso)
add_dependencies(test-runtime-api gtrace_test_dso)
target_compile_definitions(test-runtime-api PRIVATE
  GTRACE_TEST_DSO="$<TARGET_FILE:gtrace_test_dso>")
gtrace_check_test(test-runtime-delta SOURCES unit/test-runtime-delta.c TIMEOUT 60)
gtrace_check_test(test-runtime-ring SOURCES unit/test-runtime-ring.c LIBS gtrace_static TIMEOUT 60)
# The advance thread's own file table, against a real gtraced.  Not under
# TSan, whose builds keep the table shared (runtime/advance.c says why).
if(NOT GTRACE_SANITIZE MATCHES "thread")
  gtrace_check_test(test-runtime-files SOURCES integration/test-runtime-files.c ${DAEMON_HARNESS}
    LIBS gtrace_static gtrace_flightrec TIMEOUT 120)
  add_dependencies(test-runtime-files gtraced)
endif()
