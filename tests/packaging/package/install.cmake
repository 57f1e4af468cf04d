# cmake -DBUILD_DIR=<build> -DPREFIX=<prefix> [-DCONFIG=<cfg>] -DINCLUDEDIR=include
#       -DCMAKEDIR=share/cmake/attend -DPKGCONFIGDIR=share/pkgconfig -P install.cmake
# Installs attend's build tree into PREFIX from scratch and checks that exactly the package's files
# landed there: the headers, the three CMake package files and attend.pc (no test binaries, no data),
# and attend::dispatch's library when it was built (ATTEND_BUILD_DISPATCH).
cmake_minimum_required(VERSION 3.21)

foreach(var BUILD_DIR PREFIX INCLUDEDIR CMAKEDIR PKGCONFIGDIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()

file(GLOB_RECURSE installed LIST_DIRECTORIES false RELATIVE "${PREFIX}" "${PREFIX}/*")
list(SORT installed)
set(required
    "${INCLUDEDIR}/attend/attend.hpp"
    "${INCLUDEDIR}/attend/version.hpp"
    "${CMAKEDIR}/attendConfig.cmake"
    "${CMAKEDIR}/attendConfigVersion.cmake"
    "${CMAKEDIR}/attendTargets.cmake"
    "${PKGCONFIGDIR}/attend.pc")
foreach(file IN LISTS required)
  if(NOT file IN_LIST installed)
    message(FATAL_ERROR "not installed: ${file}\ninstalled:\n  ${installed}")
  endif()
endforeach()
set(unexpected "")
foreach(file IN LISTS installed)
  if(NOT file MATCHES "^${INCLUDEDIR}/attend/(detail/([a-z0-9_]+/)?)?[a-z0-9_]+\\.hpp$"
     AND NOT file MATCHES "^${CMAKEDIR}/attend(Config|ConfigVersion|Targets(-[a-z]+)?)\\.cmake$"
     AND NOT file STREQUAL "${PKGCONFIGDIR}/attend.pc"
     AND NOT file MATCHES "^lib(64)?(/[^/]+)?/libattend_dispatch\\.a$")  # attend::dispatch, when built
    list(APPEND unexpected "${file}")
  endif()
endforeach()
if(unexpected)
  string(REPLACE ";" "\n  " unexpected "${unexpected}")
  message(FATAL_ERROR "installed files outside attend's package:\n  ${unexpected}")
endif()
list(LENGTH installed count)
message(STATUS "attend installed into ${PREFIX}: ${count} files")
