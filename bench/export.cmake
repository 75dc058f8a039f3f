# bench-export: `gtracectl export --format chrome` throughput on a generated
# dump (owner: perf).  Included from bench/CMakeLists.txt.  It links the
# reader and exporter directly, and runs the gtracectl built beside it.
if(TARGET gtracectl AND TARGET gtrace_flightrec)
  add_executable(bench-export ${CMAKE_CURRENT_LIST_DIR}/export.c)
  target_link_libraries(bench-export PRIVATE gtrace_flightrec gtrace_bench_common)
  target_compile_definitions(bench-export PRIVATE BENCH_GTRACECTL="$<TARGET_FILE:gtracectl>")
  add_dependencies(bench-export gtracectl)
  gtrace_target(bench-export)
endif()
if(TARGET bench-export AND TARGET bench-all)
  add_dependencies(bench-all bench-export) # bench/run's export section
endif()
