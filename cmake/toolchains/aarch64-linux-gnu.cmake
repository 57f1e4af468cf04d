# Cross-compiling attend (its tests and examples) for 64-bit ARM Linux on an x86-64 Debian/Ubuntu host,
# with the distribution's cross compiler, and running the results under qemu-user:
#
#   apt-get install --no-install-recommends g++-aarch64-linux-gnu qemu-user googletest libeigen3-dev
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DATTEND_GTEST_SOURCE_DIR=/usr/src/googletest        (or: cmake --preset arm64)
#   cmake --build build-arm64 && ctest --test-dir build-arm64     (.ci/arm64.sh does all this)
#
# Debian's cross toolchain is not a sysroot toolchain: the target's glibc and libstdc++ live under
# /usr/aarch64-linux-gnu (multiarch-cross layout) and the compiler already searches there, so
# CMAKE_SYSROOT stays unset (setting it to that folder breaks the compiler's own search paths).
# That compiler searches /usr/aarch64-linux-gnu/include (the target's glibc) and then, last, the
# host's /usr/include: architecture-independent headers there (Eigen, Random123) are found, while the
# host's architecture-specific ones live in /usr/include/x86_64-linux-gnu, which it never searches.
# So never add -I/usr/include (it would come before the target's glibc). The find_* commands are
# rooted at /usr/aarch64-linux-gnu for headers, libraries and packages.
#
# Eigen is header-only and architecture-independent (libeigen3-dev is Architecture: all): its CMake
# package in /usr/share/eigen3/cmake is the host's, found through Eigen3_DIR (rooted package searches
# would not see it), and its include directory /usr/include/eigen3 holds only Eigen's own headers.
# GoogleTest's libraries from libgtest-dev are amd64 only: build it from the sources of the
# `googletest` package with -DATTEND_GTEST_SOURCE_DIR=/usr/src/googletest (tests/CMakeLists.txt).
#
# ctest runs every test executable through CMAKE_CROSSCOMPILING_EMULATOR (add_test with a target as
# COMMAND, and gtest_discover_tests in both discovery modes). Cache variables to override:
#   ATTEND_AARCH64_TRIPLE   (aarch64-linux-gnu)           compiler prefix and target root /usr/<triple>
#   ATTEND_AARCH64_EMULATOR (qemu-aarch64;-L;/usr/<triple>)  empty: no emulator (e.g. on binfmt_misc hosts)
# Target flags go in CMAKE_CXX_FLAGS (e.g. -march=armv8.2-a+fp16); attend::native adds none in a
# cross build (ATTEND_CROSS_NATIVE_FLAGS, root CMakeLists.txt), since -march=native means the build
# machine.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ATTEND_AARCH64_TRIPLE "aarch64-linux-gnu" CACHE STRING "attend: the cross toolchain's target triple")
set(attend_aarch64_root "/usr/${ATTEND_AARCH64_TRIPLE}")

# Unless given (-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++-13, say). C only for subprojects that enable it.
if(NOT CMAKE_CXX_COMPILER)
  set(CMAKE_CXX_COMPILER "${ATTEND_AARCH64_TRIPLE}-g++")
endif()
if(NOT CMAKE_C_COMPILER)
  set(CMAKE_C_COMPILER "${ATTEND_AARCH64_TRIPLE}-gcc")
endif()

# find_* for headers, libraries and packages look only under the target root; programs (doxygen,
# pkg-config, python3) are the host's.
set(CMAKE_FIND_ROOT_PATH "${attend_aarch64_root}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Eigen: the host's architecture-independent package (an explicit <Pkg>_DIR is used as given, without
# re-rooting). Not forced, so -DEigen3_DIR=<another Eigen> wins.
if(NOT DEFINED Eigen3_DIR AND EXISTS "/usr/share/eigen3/cmake/Eigen3Config.cmake")
  set(Eigen3_DIR "/usr/share/eigen3/cmake" CACHE PATH "Eigen's CMake package (architecture-independent)")
endif()

set(ATTEND_AARCH64_EMULATOR "qemu-aarch64;-L;${attend_aarch64_root}" CACHE STRING
    "attend: how the build machine runs aarch64 executables (ctest, test discovery); empty for none")
if(ATTEND_AARCH64_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${ATTEND_AARCH64_EMULATOR}")
endif()
