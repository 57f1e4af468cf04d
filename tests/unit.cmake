# Unit, golden and property tests of the library. Included by tests/CMakeLists.txt, so it works both
# in the main build (attend::native is the in-tree target) and standalone against an installed attend.
#
# Every test executable links attend::native, so the kernels under test are the ones compiled for this
# machine's instruction set (AVX-512 where present), and GTest::gtest_main. Each source is kept small
# and focused: compiling Eigen's kernels for four element types is what costs time.

include(CheckIncludeFileCXX)
# Warning flags (and -Werror with ATTEND_WERROR): the source tree's cmake/attendWarnings.cmake.
include("${CMAKE_CURRENT_LIST_DIR}/../cmake/attendWarnings.cmake" OPTIONAL)
check_include_file_cxx("Random123/philox.h" ATTEND_TEST_HAVE_RANDOM123)

# attend_unit_test(<name> <source> [ADD_TEST]): an executable named attend_<name>_test.
# By default its tests are discovered one by one (gtest_discover_tests, prefixed "attend.");
# ADD_TEST registers the whole executable as one ctest test "attend.<name>" so its output is kept.
function(attend_unit_test name source)
  cmake_parse_arguments(PARSE_ARGV 2 arg "ADD_TEST" "" "")
  set(target attend_${name}_test)
  add_executable(${target} "${source}")
  target_link_libraries(${target} PRIVATE attend::native GTest::gtest_main)
  target_include_directories(${target} PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}")
  target_compile_features(${target} PRIVATE cxx_std_17)  # a minimum: -DCMAKE_CXX_STANDARD=20 raises it
  # -Wall -Wextra -Wpedantic, GCC 12's -Wno-maybe-uninitialized (GCC bug 105593), -Werror on request.
  if(COMMAND attend_target_warnings)
    attend_target_warnings(${target})
  endif()
  if(arg_ADD_TEST)
    add_test(NAME attend.${name} COMMAND ${target})
  else()
    gtest_discover_tests(${target} TEST_PREFIX "attend." DISCOVERY_TIMEOUT 60)
  endif()
endfunction()

# Golden cases from PyTorch: one ctest test that runs every case folder through every path and type
# and prints one line per (case, path, type). $ATTEND_GOLDEN_DIR overrides the folder.
attend_unit_test(golden golden_test.cpp ADD_TEST)
target_compile_definitions(attend_golden_test PRIVATE
  ATTEND_GOLDEN_DIR_DEFAULT="${CMAKE_CURRENT_SOURCE_DIR}/data/golden")
# The same runner over small cases in the same format that the public list lacks (masks of rank 1-3,
# broadcast query dimension, numeric and negative scale, Nk = 0, unknown keys): see
# tests/data/format_cases/make_format_cases.py. Not named "golden": its reference is not PyTorch's.
add_test(NAME attend.format_cases COMMAND attend_golden_test)
set_tests_properties(attend.format_cases PROPERTIES
  ENVIRONMENT "ATTEND_GOLDEN_DIR=${CMAKE_CURRENT_SOURCE_DIR}/data/format_cases")

# Every path against the double math path at tile edges, masks, causality, views, NaN, empty sizes.
attend_unit_test(shapes shapes_test.cpp)
attend_unit_test(typed typed_test.cpp)

# Dropout: one keep-mask for all paths and thread counts, its statistics, eval mode.
attend_unit_test(dropout dropout_test.cpp)

# Pieces: the Philox generator and the online softmax.
attend_unit_test(philox philox_test.cpp)
if(ATTEND_TEST_HAVE_RANDOM123)
  target_compile_definitions(attend_philox_test PRIVATE ATTEND_TEST_HAVE_RANDOM123=1)
endif()
attend_unit_test(online_softmax online_softmax_test.cpp)
attend_unit_test(prefetch prefetch_test.cpp)
# The register-blocked products of both GEMMs against scalar FMA chains, bit for bit.
attend_unit_test(microkernel microkernel_test.cpp)

# The API's contract: errors leave the output untouched, dispatch picks and explains the path.
attend_unit_test(errors errors_test.cpp)
attend_unit_test(dispatch dispatch_test.cpp)
