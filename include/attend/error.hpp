#ifndef ATTEND_ERROR_HPP
#define ATTEND_ERROR_HPP

#include <stdexcept>  // std::invalid_argument
#include <string>     // std::string

namespace attend {

/// Thrown for every call the library refuses: bad shapes, strides, masks, dropout or scale, and a
/// requested path that is disabled or cannot serve the call. The message names the argument and the
/// shapes involved. It is always thrown before any output is written.
class Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& what) : std::invalid_argument("attend: " + what) {}
};

}  // namespace attend

#endif  // ATTEND_ERROR_HPP
