# Tests of the trace format (protocol/: event table, varints, docs, dump
# writer) and of the reader (flightrec/reader.c, dump.c); owner: reader.
#
# gtrace_genbuild is the test-side generation builder (tests/common/genbuild.h)
# that other modules' golden tests may link too; genbuild-compile turns its
# text form into blobs or .gtrace dumps.
add_library(gtrace_genbuild STATIC common/genbuild.c)
target_link_libraries(gtrace_genbuild PUBLIC gtrace_flightrec)
target_include_directories(gtrace_genbuild PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/common)
gtrace_target(gtrace_genbuild)

add_executable(genbuild-compile common/genbuild-compile.c)
target_link_libraries(genbuild-compile PRIVATE gtrace_genbuild)
gtrace_target(genbuild-compile)

gtrace_check_test(test-protocol-varint SOURCES unit/test-protocol-varint.c LIBS gtrace_proto
  TIMEOUT 30)
gtrace_check_test(test-protocol-table SOURCES unit/test-protocol-table.c LIBS gtrace_proto
  TIMEOUT 30)
gtrace_check_test(test-protocol-doc SOURCES unit/test-protocol-doc.c LIBS gtrace_genbuild
  TIMEOUT 30)
add_dependencies(test-protocol-doc gtrace-proto-doc)
target_compile_definitions(test-protocol-doc PRIVATE
  GTRACE_PROTO_DOC="$<TARGET_FILE:gtrace-proto-doc>"
  GTRACE_FORMAT_MD="${PROJECT_SOURCE_DIR}/docs/format.md")
gtrace_check_test(test-protocol-dumpwrite SOURCES unit/test-protocol-dumpwrite.c
  LIBS gtrace_genbuild TIMEOUT 30)

gtrace_check_test(test-flightrec-reader SOURCES unit/test-flightrec-reader.c
  LIBS gtrace_genbuild TIMEOUT 120)
target_compile_definitions(test-flightrec-reader PRIVATE
  GTRACE_PARSER_CASES="${CMAKE_CURRENT_SOURCE_DIR}/data/parser")
gtrace_check_test(test-flightrec-reader-dump SOURCES unit/test-flightrec-reader-dump.c
  LIBS gtrace_genbuild TIMEOUT 60)
gtrace_check_test(test-flightrec-reader-chaos SOURCES unit/test-flightrec-reader-chaos.c
  LIBS gtrace_genbuild TIMEOUT 60)
target_include_directories(test-flightrec-reader-chaos PRIVATE ${PROJECT_SOURCE_DIR}/flightrec)

# Fuzz targets.  Each is always built as a corpus replayer (a main() feeding
# every file of its seed corpus to LLVMFuzzerTestOneInput) that runs under
# ctest; with GTRACE_FUZZ=ON and clang, also as a libFuzzer binary that has
# the reader's sources compiled in with coverage instrumentation:
#   CC=clang cmake -S . -B build-fuzz -DGTRACE_FUZZ=ON -DGTRACE_SANITIZE=address,undefined
#   build-fuzz/tests/fuzz-generation tests/fuzz/corpus/fuzz-generation
foreach(fz fuzz-generation fuzz-dump)
  add_executable(${fz}-replay fuzz/${fz}.c fuzz/replay.c)
  target_link_libraries(${fz}-replay PRIVATE gtrace_flightrec)
  gtrace_target(${fz}-replay)
  add_test(NAME ${fz}-replay
    COMMAND ${fz}-replay ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${fz})
  set_tests_properties(${fz}-replay PROPERTIES TIMEOUT 120)
  if(GTRACE_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "GTRACE_FUZZ=ON needs clang (CC=clang)")
    endif()
    add_executable(${fz} fuzz/${fz}.c
      ${PROJECT_SOURCE_DIR}/flightrec/reader.c ${PROJECT_SOURCE_DIR}/flightrec/dump.c
      ${PROJECT_SOURCE_DIR}/flightrec/fralloc.c ${PROJECT_SOURCE_DIR}/flightrec/view-format.c
      ${PROJECT_SOURCE_DIR}/protocol/event.c ${PROJECT_SOURCE_DIR}/protocol/varint.c)
    target_include_directories(${fz} PRIVATE ${PROJECT_SOURCE_DIR}/flightrec/include
      ${PROJECT_SOURCE_DIR}/protocol/include)
    target_compile_options(${fz} PRIVATE -fsanitize=fuzzer)
    target_link_options(${fz} PRIVATE -fsanitize=fuzzer)
    gtrace_target(${fz})
  endif()
endforeach()
