#ifndef ATTEND_TYPES_HPP
#define ATTEND_TYPES_HPP

/// @file
/// @brief The element types attend accepts and the type each one accumulates in.

#include <type_traits>  // std::is_same_v, std::conditional_t

#include <Eigen/Core>  // Eigen::bfloat16, Eigen::half

#include "attend/detail/abi.hpp"

ATTEND_BEGIN_NAMESPACE

/// @brief True for the element types attend supports: `double`, `float`, `Eigen::bfloat16`,
/// `Eigen::half`.
///
/// attend::Attend<T> refuses any other T at compile time (`static_assert`).
/// @tparam T the element type to test
template <typename T>
inline constexpr bool is_supported_scalar_v =
    std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, Eigen::bfloat16> ||
    std::is_same_v<T, Eigen::half>;

/// @brief The type scores, softmax statistics, the output accumulator and the log-sum-exp are kept
/// in: `double` for `double`, `float` for everything else.
///
/// 16-bit storage never accumulates in 16 bits (an 8-bit bf16 mantissa would lose a row sum of 801
/// terms after the first 256). It is also the element type of the `lse` output
/// (attend::CallOptions::lse).
/// @tparam T the element type (storage type) of q, k, v and out
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// @brief Short name of a type, as used in benchmark and golden-test output: f64, f32, bf16, f16.
/// @tparam T a supported element type (is_supported_scalar_v); any other fails to compile
/// @return `"f64"`, `"f32"`, `"bf16"` or `"f16"`, a string literal
template <typename T>
constexpr const char* type_name() {
  static_assert(is_supported_scalar_v<T>, "attend: T must be double, float, Eigen::bfloat16 or Eigen::half");
  if constexpr (std::is_same_v<T, double>) return "f64";
  else if constexpr (std::is_same_v<T, float>) return "f32";
  else if constexpr (std::is_same_v<T, Eigen::bfloat16>) return "bf16";
  else return "f16";
}

ATTEND_END_NAMESPACE

#endif  // ATTEND_TYPES_HPP
