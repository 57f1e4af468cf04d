/// @file
/// @brief attend::Error, the exception for every call the library refuses.
#ifndef ATTEND_ERROR_HPP
#define ATTEND_ERROR_HPP

#include <stdexcept>  // std::invalid_argument
#include <string>     // std::string

#include "attend/detail/abi.hpp"

/// @brief attend's public API. Everything in the nested namespace `attend::detail` (headers under
/// include/attend/detail/) is an implementation detail and may change without notice.
ATTEND_BEGIN_NAMESPACE

/// @brief Thrown for every call the library refuses.
///
/// Reasons include bad shapes, strides, masks, dropout or scale, an output that overlaps an input or
/// itself, a head dimension of 0, and a requested path that is disabled or cannot serve the call
/// (docs/errors.md lists every case with its message). The message starts with `"attend: "` and
/// names the argument and the shapes involved. It is always thrown before any output is written: the
/// output, the `lse` output and the inputs keep every bit they had.
///
/// A `std::invalid_argument`, so `catch (const std::invalid_argument&)` and
/// `catch (const std::exception&)` catch it too.
class Error : public std::invalid_argument {
 public:
  /// @brief An error whose `what()` is `"attend: "` followed by @p what.
  /// @param what the reason, naming the argument at fault and the shapes involved
  explicit Error(const std::string& what) : std::invalid_argument("attend: " + what) {}
};

ATTEND_END_NAMESPACE

#endif  // ATTEND_ERROR_HPP
