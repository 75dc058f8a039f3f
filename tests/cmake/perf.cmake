# Tests of the export fast path (owner: perf): fr_dump_parse_threaded()
# against fr_dump_parse(), and the exporter with one thread and two.  The
# genbuild sources are compiled in, as in client.cmake (this file is
# included before reader.cmake, which defines the genbuild library).
gtrace_check_test(test-export-threaded
  SOURCES unit/test-export-threaded.c ${CMAKE_CURRENT_SOURCE_DIR}/common/genbuild.c
  LIBS gtrace_flightrec LABELS concurrency TIMEOUT 120)
