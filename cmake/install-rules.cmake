# Install rules: headers, the exported attend::attend (and opt-in attend::native) targets, and a
# relocatable, versioned CMake package under share/ (header-only, so architecture-independent).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ATTEND_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/attend" CACHE STRING
    "Where attend's CMake package files are installed, relative to the prefix")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS attend attend_native EXPORT attendTargets INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT attendTargets NAMESPACE attend:: DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/attendConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/attendConfig.cmake"
  INSTALL_DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")
# 0.x: minor versions may break the API, so only the same minor is compatible.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/attendConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/attendConfig.cmake" "${PROJECT_BINARY_DIR}/attendConfigVersion.cmake"
        DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")

# The build tree is a package too: find_package(attend) with attend_DIR=<build dir>.
export(EXPORT attendTargets NAMESPACE attend:: FILE "${PROJECT_BINARY_DIR}/attendTargets.cmake")
