# attend::dispatch: attend's kernels compiled once per instruction-set level and chosen at run time,
# for programs built for the baseline (a distribution's package, an application shipped as one binary).
# A program links attend::dispatch instead of attend::attend and keeps its code as it is: the target
# defines ATTEND_DISPATCH, so calls validate in the program's code, then run the kernels of the best
# variant the CPU and OS support (or the one the environment variable ATTEND_ISA names), and
# Dispatch::isa reports which. src/dispatch/ holds the sources; include/attend/detail/runtime.hpp the
# interface, plain values only: no Eigen object and no attend type crosses between variants.
#
# Variants (GCC and Clang on x86-64): x86-64 (SSE2), x86-64-v3 (AVX2, FMA), x86-64-v4 (AVX-512),
# x86-64-v4-bf16 (AVX-512 with AVX512_BF16) and, where the compiler has AMX, x86-64-v4-amx (with
# AMX-TILE and AMX-BF16 as well). Elsewhere one variant, the target's own.
#
# Each variant object is compiled with hidden visibility, partially linked, and then every symbol but
# its table function is made local and its COMDAT groups removed (objcopy), so that nothing it defines
# (attend's inline code, Eigen's, the standard library's templates) is merged with another variant's
# or the program's copy: a baseline program never runs an AVX-512 copy of std::vector's code. The
# test attend.dispatch.symbols checks that with nm, and that no variant has a static initializer.
#
# Included from the root CMakeLists.txt when ATTEND_BUILD_DISPATCH is ON.

set(attend_dispatch_dir "${PROJECT_SOURCE_DIR}/src/dispatch")
set(attend_dispatch_levels "")
set(attend_dispatch_flags_x86-64 -march=x86-64 -mtune=generic)
set(attend_dispatch_flags_x86-64-v3 -march=x86-64-v3 -mtune=generic)
# The AVX-512 levels are tuned for Ice Lake server: with -mtune=generic (GCC 12) flash f32 bsr_freq
# (N = 62: small tiles, so the code around the products weighs) ran 5-7% slower than the same
# kernels built -march=native, in three interleaved runs on a Sapphire Rapids-class Xeon (one
# thread, medians of 5-7), while -mtune=icelake-server, sapphirerapids and rocketlake each ran as
# fast as native; long4k, bsr_time and the backward measured the same under every tuning. Tuning
# changes scheduling and code layout, never an instruction's result, so the bits are the same. No
# AMD tuning exists for AVX-512 in GCC 12 (znver4 came in 13), and Zen 4 was not measured.
set(attend_dispatch_flags_x86-64-v4 -march=x86-64-v4 -mtune=icelake-server)
set(attend_dispatch_flags_x86-64-v4-bf16 -march=x86-64-v4 -mavx512bf16 -mtune=icelake-server)
# AMX tiles for bf16 (arch/amx.hpp; Sapphire Rapids and later Xeons): 1.6-2.6x the bf16 flash forward
# of the level below at one thread. The variant asks Linux for the tile state on its first bf16 call
# and takes the level below's kernels where that is refused.
set(attend_dispatch_flags_x86-64-v4-amx -march=x86-64-v4 -mavx512bf16 -mamx-tile -mamx-bf16 -mtune=sapphirerapids)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set(attend_dispatch_levels x86-64 x86-64-v3 x86-64-v4 x86-64-v4-bf16)
  include(CheckCXXCompilerFlag)
  check_cxx_compiler_flag("-mamx-tile -mamx-bf16 -mtune=sapphirerapids" ATTEND_COMPILER_HAS_AMX)
  if(ATTEND_COMPILER_HAS_AMX)
    list(APPEND attend_dispatch_levels x86-64-v4-amx)
  endif()
else()
  set(attend_dispatch_levels native)
  set(attend_dispatch_flags_native "")
endif()

find_program(ATTEND_OBJCOPY NAMES "${CMAKE_OBJCOPY}" objcopy)
mark_as_advanced(ATTEND_OBJCOPY)
if(NOT ATTEND_OBJCOPY OR NOT CMAKE_LINKER)
  message(FATAL_ERROR "attend: ATTEND_BUILD_DISPATCH needs objcopy and a linker that does partial links (ld -r)")
endif()

set(attend_dispatch_objects "")
set(attend_dispatch_entry_names "")
set(attend_dispatch_entries "")
foreach(level IN LISTS attend_dispatch_levels)
  string(REPLACE "-" "_" id "${level}")
  set(entry "attend_runtime_variant_${id}")
  set(obj_target attend_dispatch_${id})
  add_library(${obj_target} OBJECT "${attend_dispatch_dir}/variant.cpp")
  target_link_libraries(${obj_target} PRIVATE attend)
  target_compile_definitions(${obj_target} PRIVATE ATTEND_VARIANT_ENTRY=${entry} "ATTEND_VARIANT_LEVEL=\"${level}\"")
  target_compile_options(${obj_target} PRIVATE ${attend_dispatch_flags_${level}} -fvisibility=hidden
                                               -fvisibility-inlines-hidden -fno-lto
                                               $<$<CXX_COMPILER_ID:GNU>:-fno-gnu-unique>)
  set_target_properties(${obj_target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # Partial link, then only the table function stays global; COMDAT groups go (their signatures
  # would otherwise still be merged by name with the other variants').
  set(out "${PROJECT_BINARY_DIR}/dispatch/variant_${id}.o")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${PROJECT_BINARY_DIR}/dispatch"
    COMMAND "${CMAKE_LINKER}" -r "$<TARGET_OBJECTS:${obj_target}>" -o "${out}.partial"
    COMMAND "${ATTEND_OBJCOPY}" "--keep-global-symbol=${entry}" --remove-section=.group "${out}.partial" "${out}"
    DEPENDS ${obj_target} "$<TARGET_OBJECTS:${obj_target}>"
    COMMENT "attend: variant ${level}: only ${entry} stays global"
    VERBATIM COMMAND_EXPAND_LISTS)
  set_source_files_properties("${out}" PROPERTIES EXTERNAL_OBJECT ON GENERATED ON)
  list(APPEND attend_dispatch_objects "${out}")
  list(APPEND attend_dispatch_entry_names "${entry}")
  string(APPEND attend_dispatch_entries "X(${entry}, \"${level}\") ")
endforeach()

add_library(attend_dispatch STATIC "${attend_dispatch_dir}/select.cpp" ${attend_dispatch_objects})
add_library(attend::dispatch ALIAS attend_dispatch)
set_target_properties(attend_dispatch PROPERTIES EXPORT_NAME dispatch POSITION_INDEPENDENT_CODE ON)
target_link_libraries(attend_dispatch PUBLIC attend)
target_compile_definitions(attend_dispatch PRIVATE "ATTEND_VARIANTS=${attend_dispatch_entries}")
# Consumers: calls run the dispatched kernels (detail/dispatch.hpp).
target_compile_definitions(attend_dispatch INTERFACE ATTEND_DISPATCH=1)
set(ATTEND_DISPATCH_LEVELS "${attend_dispatch_levels}" CACHE INTERNAL "attend::dispatch's variants")
set(ATTEND_DISPATCH_OBJECTS "${attend_dispatch_objects}" CACHE INTERNAL "attend::dispatch's variant objects")
set(ATTEND_DISPATCH_ENTRIES "${attend_dispatch_entry_names}" CACHE INTERNAL "their table functions, in the same order")
