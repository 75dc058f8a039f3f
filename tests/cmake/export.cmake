# Tests of the exporter's own pieces (owner: export): the JSON writer's
# number formatting against snprintf.  The writer is private to flightrec/,
# so the test sees its header directly.
gtrace_check_test(test-export-writer SOURCES unit/test-export-writer.c
  LIBS gtrace_flightrec TIMEOUT 60)
target_include_directories(test-export-writer PRIVATE ${PROJECT_SOURCE_DIR}/flightrec)
