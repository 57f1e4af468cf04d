# Compiler warnings for attend's own code: its tests, benchmark and examples (never for consumers:
# this file is not installed, and the attend targets carry no warning flags).
#
# Included by the root CMakeLists.txt and, so that each also configures standalone against an
# installed attend (cmake -S tests|bench|examples), by tests/, bench/ and examples/ from the
# source tree (include(... OPTIONAL): without it they build without these flags).
#
#   ATTEND_WERROR=ON                  also -Werror (CI: .ci/compilers.sh); default OFF, so that a user's
#                                     newer compiler does not fail scripts/test.sh on a new warning
#   attend_warning_options(<var>)     the flags, as a list of generator expressions
#   attend_target_warnings(<target>...)   adds them to each target (PRIVATE)
#   attend_directory_warnings()       adds them to every target defined after it in this directory
#
# The language standard is chosen the usual way, e.g. -DCMAKE_CXX_STANDARD=20: the targets ask only
# for cxx_std_17 as a minimum, so CMake compiles them as C++20 then (check with
# CMAKE_EXPORT_COMPILE_COMMANDS=ON). attend_header_check stays exactly C++17 (what the package promises).
include_guard(GLOBAL)

option(ATTEND_WERROR "Treat warnings as errors in attend's tests, benchmark and examples" OFF)

function(attend_warning_options var)
  # One generator expression per flag: add_compile_options evaluates each list element on its own.
  set(gnu_like "$<OR:$<CXX_COMPILER_ID:GNU>,$<CXX_COMPILER_ID:Clang>,$<CXX_COMPILER_ID:AppleClang>>")
  # GCC 12 flags its own AVX-512 intrinsics ('__Y is/may be used uninitialized', from the
  # deliberately undefined pass-through operand of _mm512_undefined_ps) wherever they are inlined,
  # in Eigen's GEBP kernel and in attend's kernels alike: a false positive, GCC bug 105593.
  # Clang keeps checking -Wuninitialized for these sources.
  # GCC 12 at -O3 also reports a bogus -Wrestrict inside libstdc++'s own std::string operator+
  # ("__builtin_memcpy accessing 9223372036854775810 or more bytes ... may overlap"), GCC bug 105329,
  # in test helpers that build names such as "B" + std::to_string(b) + ...; whether it fires depends
  # on inlining, so any change to an included header can bring it up (C++20 build, shapes_test.cpp).
  set(gcc12 "$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>")
  set(flags "$<${gnu_like}:-Wall>" "$<${gnu_like}:-Wextra>" "$<${gnu_like}:-Wpedantic>"
      "$<${gcc12}:-Wno-maybe-uninitialized>" "$<${gcc12}:-Wno-uninitialized>" "$<${gcc12}:-Wno-restrict>")
  if(ATTEND_WERROR)
    list(APPEND flags "$<${gnu_like}:-Werror>" "$<$<CXX_COMPILER_ID:MSVC>:/WX>")
  endif()
  set(${var} "${flags}" PARENT_SCOPE)
endfunction()

function(attend_target_warnings)
  attend_warning_options(flags)
  foreach(target IN LISTS ARGN)
    target_compile_options(${target} PRIVATE ${flags})
  endforeach()
endfunction()

function(attend_directory_warnings)
  attend_warning_options(flags)
  add_compile_options(${flags})
endfunction()
