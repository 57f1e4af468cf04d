# Install rules: headers, the exported attend::attend (and opt-in attend::native) targets, a
# relocatable, versioned CMake package and a pkg-config file, all under share/ where they are
# package files (header-only, so nothing depends on the architecture).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ATTEND_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/attend" CACHE STRING
    "Where attend's CMake package files are installed, relative to the prefix")
set(ATTEND_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig" CACHE STRING
    "Where attend.pc is installed, relative to the prefix")
mark_as_advanced(ATTEND_INSTALL_CMAKEDIR ATTEND_INSTALL_PKGCONFIGDIR)

# ---- Headers and targets ----
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS attend attend_native EXPORT attendTargets)
if(TARGET attend_dispatch)  # the optional compiled component (cmake/dispatch.cmake)
  install(TARGETS attend_dispatch EXPORT attendTargets ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}")
endif()
install(EXPORT attendTargets NAMESPACE attend:: DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")

# ---- CMake package: attendConfig.cmake, attendConfigVersion.cmake, attendTargets.cmake ----
configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/attendConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/attendConfig.cmake"
  INSTALL_DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")
# 0.x: minor versions may break the API, so only the same minor is compatible (SameMajorVersion
# from 1.0 on).
# Header-only, the package fits any architecture; with attend::dispatch's library, only its own.
set(attend_arch_independent ARCH_INDEPENDENT)
if(TARGET attend_dispatch)
  set(attend_arch_independent "")
endif()
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/attendConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ${attend_arch_independent})
install(FILES "${PROJECT_BINARY_DIR}/attendConfig.cmake" "${PROJECT_BINARY_DIR}/attendConfigVersion.cmake"
        DESTINATION "${ATTEND_INSTALL_CMAKEDIR}")

# The build tree is a package too: find_package(attend) with attend_DIR=<build dir> (the config and
# version files above already sit there). Namespaced, like fmt's, for better diagnostics.
export(EXPORT attendTargets NAMESPACE attend:: FILE "${PROJECT_BINARY_DIR}/attendTargets.cmake")

# ---- pkg-config: share/pkgconfig/attend.pc ----
# Relocatable: the prefix is found from the .pc file's own directory, so the same file works after
# `cmake --install --prefix <anywhere>` and in a moved tree (as long as the layout is kept).
if(IS_ABSOLUTE "${ATTEND_INSTALL_PKGCONFIGDIR}")
  message(FATAL_ERROR "attend: ATTEND_INSTALL_PKGCONFIGDIR must be relative to the prefix")
endif()
file(RELATIVE_PATH attend_pc_up "/prefix/${ATTEND_INSTALL_PKGCONFIGDIR}" "/prefix")
string(REGEX REPLACE "/$" "" attend_pc_up "${attend_pc_up}")
set(attend_pc_prefix "\${pcfiledir}/${attend_pc_up}")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(attend_pc_includedir "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(attend_pc_includedir "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${PROJECT_SOURCE_DIR}/attend.pc.in" "${PROJECT_BINARY_DIR}/attend.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/attend.pc" DESTINATION "${ATTEND_INSTALL_PKGCONFIGDIR}")
