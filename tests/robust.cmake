# Robustness tests (issue #4): bad input, 64-bit sizes, threads, allocation, fuzzing.
# Included by tests/CMakeLists.txt, in-tree or standalone against an installed attend.
#
#   attend.robust.*        tests/robust/*_test.cpp, GoogleTest, label "robust"
#                          (the thread tests also carry the label "threads", for the TSan stage)
#   attend.robust.compile_fail.*   mistakes the API must refuse at compile time
#   fuzz/                  the libFuzzer target, with -DATTEND_BUILD_FUZZERS=ON (clang only)
#
# The executables link attend::native where it exists, as the unit tests do: the kernels under test
# are the ones built for this machine's instruction set.

option(ATTEND_BUILD_FUZZERS "Build the libFuzzer target in fuzz/ (needs clang)" OFF)
# Warning flags (and -Werror with ATTEND_WERROR): the source tree's cmake/attendWarnings.cmake.
include("${CMAKE_CURRENT_LIST_DIR}/../cmake/attendWarnings.cmake" OPTIONAL)

set(attend_robust_dir "${CMAKE_CURRENT_SOURCE_DIR}/robust")
if(TARGET attend::native)
  set(attend_robust_lib attend::native)
else()
  set(attend_robust_lib attend::attend)
endif()

# attend_robust_test(<name> SOURCES <files...> [LABELS <labels...>] [NO_MAIN])
function(attend_robust_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "NO_MAIN" "" "SOURCES;LABELS")
  set(target attend_robust_${name}_test)
  add_executable(${target} ${arg_SOURCES})
  if(arg_NO_MAIN)
    target_link_libraries(${target} PRIVATE ${attend_robust_lib} GTest::gtest)
  else()
    target_link_libraries(${target} PRIVATE ${attend_robust_lib} GTest::gtest_main)
  endif()
  target_include_directories(${target} PRIVATE "${attend_robust_dir}")
  target_compile_features(${target} PRIVATE cxx_std_17)  # a minimum: -DCMAKE_CXX_STANDARD=20 raises it
  if(COMMAND attend_target_warnings)
    attend_target_warnings(${target})
  endif()
  # Discovered when ctest runs (not at build time), so a sanitizer build discovers under the same
  # environment (ASAN_OPTIONS, setarch) that runs the tests.
  gtest_discover_tests(${target} TEST_PREFIX "attend.robust." DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 120
                       PROPERTIES LABELS "robust;${arg_LABELS}")
endfunction()

# Bad input: a table of refused calls, each leaving out and lse untouched (docs/errors.md).
attend_robust_test(bad_input SOURCES "${attend_robust_dir}/bad_input_test.cpp")
get_filename_component(attend_robust_errors_md "${CMAKE_CURRENT_SOURCE_DIR}/../docs/errors.md" ABSOLUTE)
get_filename_component(attend_robust_readme_md "${CMAKE_CURRENT_SOURCE_DIR}/../README.md" ABSOLUTE)
target_compile_definitions(attend_robust_bad_input_test PRIVATE ATTEND_ROBUST_ERRORS_MD="${attend_robust_errors_md}"
                                                                ATTEND_ROBUST_README_MD="${attend_robust_readme_md}")

# Values: NaN/Inf propagate to exactly the rows they touch; 64-bit strides (an mmap reservation of
# tens of GiB of address space, a few MiB of it touched) give the bits of compact copies.
attend_robust_test(values SOURCES "${attend_robust_dir}/nonfinite_test.cpp" "${attend_robust_dir}/large_index_test.cpp")

# Compile-fail tests: the mistakes the types make unrepresentable (docs/errors.md) must not compile,
# for the stated reason. The compiler runs with -fsyntax-only on each source, outside the build tree.
set(attend_robust_cf_includes
    "$<TARGET_PROPERTY:attend::attend,INTERFACE_INCLUDE_DIRECTORIES>;$<TARGET_PROPERTY:Eigen3::Eigen,INTERFACE_INCLUDE_DIRECTORIES>")
# The standard of the build (-DCMAKE_CXX_STANDARD=20 checks the refusals as C++20), at least C++17.
set(attend_robust_cf_std 17)
if(CMAKE_CXX_STANDARD GREATER 17)
  set(attend_robust_cf_std ${CMAKE_CXX_STANDARD})
endif()
function(attend_robust_compile_fail name source regex)
  add_test(NAME attend.robust.compile_fail.${name}
           COMMAND "${CMAKE_CXX_COMPILER}" -std=c++${attend_robust_cf_std} -fsyntax-only ${ARGN}
                   "$<$<BOOL:${attend_robust_cf_includes}>:-I$<JOIN:${attend_robust_cf_includes},;-I>>"
                   "${attend_robust_dir}/compile_fail/${source}"
           COMMAND_EXPAND_LISTS)
  set_tests_properties(attend.robust.compile_fail.${name} PROPERTIES
                       PASS_REGULAR_EXPRESSION "${regex}" LABELS "robust;compile_fail")
endfunction()
# Not in a cross build: -march=native names the build machine; the refusals do not depend on the target.
if(TARGET Eigen3::Eigen AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang" AND NOT CMAKE_CROSSCOMPILING)
  attend_robust_compile_fail(mask_rank5 mask_rank5.cpp "a mask has rank 1 to 4" -march=native)
  attend_robust_compile_fail(mask_both_forms mask_both_forms.cpp "no matching (function|constructor)" -march=native)
  attend_robust_compile_fail(mask_keep_from_values mask_both_forms.cpp "no matching (function|member function)"
                             -march=native -DATTEND_ROBUST_KEEP_FROM_VALUES)
  attend_robust_compile_fail(element_type element_type.cpp "T must be double, float, Eigen::bfloat16 or Eigen::half"
                             -march=native)
endif()

# Threads: the same bits for any thread count and run, dropout included; one module, many callers.
# Label "threads": .ci/sanitize.sh runs these under ThreadSanitizer.
attend_robust_test(threads SOURCES "${attend_robust_dir}/threads_test.cpp" LABELS threads)
find_package(Threads REQUIRED)
target_link_libraries(attend_robust_threads_test PRIVATE Threads::Threads)

# No hidden allocation: its own executable, since it replaces operator new (and malloc, outside
# sanitizer builds) to count allocations, and turns Eigen's allocation check on.
attend_robust_test(noalloc SOURCES "${attend_robust_dir}/noalloc_test.cpp")
target_link_libraries(attend_robust_noalloc_test PRIVATE Threads::Threads)

# The libFuzzer target (fuzz/): opt-in, clang only. In-tree it also adds the ctest test
# attend.robust.fuzz_corpus, which runs each committed corpus input once.
if(ATTEND_BUILD_FUZZERS)
  add_subdirectory("${CMAKE_CURRENT_SOURCE_DIR}/../fuzz" "${CMAKE_CURRENT_BINARY_DIR}/fuzz")
endif()
