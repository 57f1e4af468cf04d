// attend: scaled dot-product attention over Eigen tensors.
// The version's single home: CMake parses these three lines (cmake/attendVersion.cmake).
#ifndef ATTEND_VERSION_HPP
#define ATTEND_VERSION_HPP

#define ATTEND_VERSION_MAJOR 0
#define ATTEND_VERSION_MINOR 1
#define ATTEND_VERSION_PATCH 0

/// The version as one integer, MAJOR * 10000 + MINOR * 100 + PATCH.
#define ATTEND_VERSION (ATTEND_VERSION_MAJOR * 10000 + ATTEND_VERSION_MINOR * 100 + ATTEND_VERSION_PATCH)

#endif  // ATTEND_VERSION_HPP
