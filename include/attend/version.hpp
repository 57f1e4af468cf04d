/// @file
/// @brief attend's version: scaled dot-product attention over Eigen tensors.
///
/// The version's single home: CMake parses the three `#define ATTEND_VERSION_<PART> <number>` lines
/// below (cmake/attendVersion.cmake), so each must stay on one line of exactly that form.
#ifndef ATTEND_VERSION_HPP
#define ATTEND_VERSION_HPP

/// @brief Major version. While it is 0, only the same minor version is compatible.
#define ATTEND_VERSION_MAJOR 0
/// @brief Minor version.
#define ATTEND_VERSION_MINOR 2
/// @brief Patch version.
#define ATTEND_VERSION_PATCH 0

/// @brief The version as one integer, MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is 100), for `#if`.
#define ATTEND_VERSION (ATTEND_VERSION_MAJOR * 10000 + ATTEND_VERSION_MINOR * 100 + ATTEND_VERSION_PATCH)

#endif  // ATTEND_VERSION_HPP
