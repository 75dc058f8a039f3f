# Tests of the installed tree, the systemd units and the exported symbols
# (owner: infra).  See tests/integration/test-install.sh.

# Programs the build defines must be installed; until the daemon and client
# modules define them, test-install reports them as not built yet.
set(infra_expect "")
foreach(prog gtraced gtracectl)
  if(TARGET ${prog})
    list(APPEND infra_expect ${prog})
  endif()
endforeach()
list(JOIN infra_expect " " infra_expect)

set(infra_prefix ${CMAKE_BINARY_DIR}/test-install/prefix)
set(infra_env
  "GTRACE_BUILD_DIR=${CMAKE_BINARY_DIR}"
  "GTRACE_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
  "GTRACE_INSTALL_PREFIX=${infra_prefix}"
  "GTRACE_EXPECT_BINARIES=${infra_expect}"
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
foreach(check layout systemd)
  add_test(NAME test-install-${check} COMMAND bash ${infra_script} ${check})
  set_tests_properties(test-install-${check} PROPERTIES
    FIXTURES_REQUIRED infra_install ENVIRONMENT "${infra_env}" TIMEOUT 120
    SKIP_RETURN_CODE 77)
endforeach()

# House style: no sprintf/strcpy/strcat/gets in any C source.
add_test(NAME test-style-banned-functions
  COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/check-banned.sh ${CMAKE_SOURCE_DIR})
