# Benchmarks are not timed tests: this only runs each bench program once with
# tiny counts so they keep building and running (owner: bench).  The
# benchmarks themselves: bench/run.
if(TARGET bench-emit)
  add_test(NAME test-bench-smoke
    COMMAND bash ${CMAKE_SOURCE_DIR}/bench/smoke.sh ${CMAKE_BINARY_DIR}/bench
            ${CMAKE_CURRENT_BINARY_DIR}/bench-smoke)
  set_tests_properties(test-bench-smoke PROPERTIES TIMEOUT 60)
endif()
