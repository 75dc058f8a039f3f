# Per-target compile settings: warnings, hardening, sanitizers.  Applied with
# gtrace_target(<target>) on each of our targets, never directory-wide.

set(GTRACE_WARNINGS
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
  -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla -Wno-unused-parameter)

function(gtrace_target tgt)
  target_compile_options(${tgt} PRIVATE ${GTRACE_WARNINGS})
  if(GTRACE_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
  target_compile_definitions(${tgt} PRIVATE _GNU_SOURCE)
  if(GTRACE_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=${GTRACE_SANITIZE} -fno-omit-frame-pointer
                                          -fno-sanitize-recover=all)
    target_link_options(${tgt} PRIVATE -fsanitize=${GTRACE_SANITIZE})
    if(GTRACE_SANITIZE MATCHES "thread")
      target_compile_definitions(${tgt} PRIVATE GTRACE_TSAN=1)
    endif()
  elseif(CMAKE_BUILD_TYPE MATCHES "Rel")
    # Hardening for release builds; sanitizer builds skip fortify (it hides bugs from ASan).
    target_compile_options(${tgt} PRIVATE -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=3
                                          -fstack-protector-strong)
    target_link_options(${tgt} PRIVATE -Wl,-z,relro,-z,now)
  endif()
  get_target_property(type ${tgt} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set_target_properties(${tgt} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_options(${tgt} PRIVATE -pie)
  endif()
endfunction()
