# Tests of the installed tree, the systemd units and the exported symbols
# (owner: infra).  See tests/integration/test-install.sh.

set(infra_prefix ${CMAKE_BINARY_DIR}/test-install/prefix)
set(infra_env
  "GTRACE_BUILD_DIR=${CMAKE_BINARY_DIR}"
  "GTRACE_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "GTRACE_INSTALL_PREFIX=${infra_prefix}"
  "GTRACE_SANITIZE=${GTRACE_SANITIZE}"
  "GTRACE_LIBDIR=${CMAKE_INSTALL_LIBDIR}"
  "GTRACE_SYSTEMD_SYSTEM_UNITDIR=${GTRACE_SYSTEMD_SYSTEM_UNITDIR}"
  "GTRACE_SYSTEMD_USER_UNITDIR=${GTRACE_SYSTEMD_USER_UNITDIR}"
  "GTRACE_SYSUSERSDIR=${GTRACE_SYSUSERSDIR}"
  "GTRACE_TMPFILESDIR=${GTRACE_TMPFILESDIR}"
  "GTRACE_USER_TMPFILESDIR=${GTRACE_USER_TMPFILESDIR}")
set(infra_script ${CMAKE_CURRENT_SOURCE_DIR}/integration/test-install.sh)

# One install per ctest run, shared by the checks below (a fixture, so
# `ctest -R test-install-layout` installs first as well).
add_test(NAME test-install-tree COMMAND bash ${infra_script} tree)
set_tests_properties(test-install-tree PROPERTIES
  FIXTURES_SETUP infra_install ENVIRONMENT "${infra_env}" TIMEOUT 120)
foreach(check layout pkgconfig systemd)
  add_test(NAME test-install-${check} COMMAND bash ${infra_script} ${check})
  set_tests_properties(test-install-${check} PROPERTIES
    FIXTURES_REQUIRED infra_install ENVIRONMENT "${infra_env}" TIMEOUT 120
    SKIP_RETURN_CODE 77)
endforeach()

# The exported-symbol allowlist: nm -D of libgtrace.so, the list, the header.
gtrace_check_test(test-runtime-symbols SOURCES unit/test-runtime-symbols.c TIMEOUT 60)
target_compile_definitions(test-runtime-symbols PRIVATE
  GTRACE_SYMBOLS_LIB="$<TARGET_FILE:gtrace>"
  GTRACE_SYMBOLS_LIST="${CMAKE_SOURCE_DIR}/runtime/exported-symbols.txt"
  GTRACE_SYMBOLS_HEADER="${CMAKE_SOURCE_DIR}/runtime/include/gtrace/gtrace.h")
add_dependencies(test-runtime-symbols gtrace)

# The example service, run as a user would (also under TSan: it exercises
# fibers migrating between threads, tasks ending on other threads, counters
# and logs from several threads at once).
if(TARGET example-service)
  set(infra_gtracectl "")
  if(TARGET gtracectl)
    set(infra_gtracectl "$<TARGET_FILE:gtracectl>")
  endif()
  add_test(NAME test-example-service
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/test-example-service.sh)
  set_tests_properties(test-example-service PROPERTIES LABELS concurrency TIMEOUT 120
    ENVIRONMENT "GTRACE_EXAMPLE=$<TARGET_FILE:example-service>;GTRACECTL=${infra_gtracectl};GTRACE_SANITIZE=${GTRACE_SANITIZE}")
endif()

# House style: no sprintf/strcpy/strcat/gets in any C source.
add_test(NAME test-style-banned-functions
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/check-banned.sh ${CMAKE_SOURCE_DIR})
