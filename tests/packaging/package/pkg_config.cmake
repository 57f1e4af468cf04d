# cmake -DPKG_CONFIG=<pkg-config> -DPKG_CONFIG_DIR=<prefix>/share/pkgconfig -DCXX=<c++> [-DLAUNCHER=ccache]
#       -DSOURCE=main.cpp -DOUT_DIR=<dir> [-DEXPECTED_VERSION=x.y.z] -P pkg_config.cmake
# The pkg-config consumer: `c++ -std=c++17 $(pkg-config --cflags attend) main.cpp $(pkg-config --libs attend)`,
# then run it. Eigen's flags come from eigen3.pc through attend.pc's Requires.
cmake_minimum_required(VERSION 3.21)

foreach(var PKG_CONFIG PKG_CONFIG_DIR CXX SOURCE OUT_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "pkg_config.cmake: -D${var}=... is required")
  endif()
endforeach()

if(DEFINED ENV{PKG_CONFIG_PATH} AND NOT "$ENV{PKG_CONFIG_PATH}" STREQUAL "")
  set(ENV{PKG_CONFIG_PATH} "${PKG_CONFIG_DIR}:$ENV{PKG_CONFIG_PATH}")
else()
  set(ENV{PKG_CONFIG_PATH} "${PKG_CONFIG_DIR}")
endif()

function(pkg_config out)
  execute_process(COMMAND "${PKG_CONFIG}" ${ARGN} attend RESULT_VARIABLE rc OUTPUT_VARIABLE text
                  ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} attend failed (${rc}): ${err}")
  endif()
  message(STATUS "pkg-config ${ARGN} attend: ${text}")
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

pkg_config(version --modversion)
if(EXPECTED_VERSION AND NOT version STREQUAL EXPECTED_VERSION)
  message(FATAL_ERROR "attend.pc says version ${version}, expected ${EXPECTED_VERSION}")
endif()
pkg_config(cflags --cflags)
pkg_config(libs --libs)
separate_arguments(cflags UNIX_COMMAND "${cflags}")
separate_arguments(libs UNIX_COMMAND "${libs}")

file(MAKE_DIRECTORY "${OUT_DIR}")
set(exe "${OUT_DIR}/attend_consumer")
execute_process(COMMAND ${LAUNCHER} "${CXX}" -std=c++17 ${cflags} "-DATTEND_EXPECTED_VERSION=\"${version}\""
                        "${SOURCE}" -o "${exe}" ${libs}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling ${SOURCE} with pkg-config's flags failed (${rc})")
endif()
execute_process(COMMAND "${exe}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${exe} failed (${rc})")
endif()
