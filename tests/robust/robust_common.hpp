// Shared helpers of the robustness tests (tests/robust): forcing one path, filling tensors with
// reproducible values, and comparing results bit for bit.
#ifndef ATTEND_TESTS_ROBUST_COMMON_HPP
#define ATTEND_TESTS_ROBUST_COMMON_HPP

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <attend/attend.hpp>

namespace robust {

using attend::Index;

/// Every element type attend supports, for typed tests: TYPED_TEST_SUITE(Suite, robust::AllTypes, ).
/// The empty third argument fills the macro's '...', which C++17's -Wpedantic requires (clang:
/// -Wgnu-zero-variadic-macro-arguments), and keeps gtest's default names, which ctest shows as
/// Suite.Test<double>.
using AllTypes = ::testing::Types<double, float, Eigen::bfloat16, Eigen::half>;

/// A way to run a call: a path forced through a config with only that path on, or flash = false.
struct Route {
  const char* name;
  bool flash;
  attend::FlashAttentionConfig config;
  attend::Path expect;  // the path the dispatcher must pick
};

inline attend::FlashAttentionConfig only(attend::Path p) {
  attend::FlashAttentionConfig c;
  c.enable_flash = p == attend::Path::flash;
  c.enable_mem_efficient = p == attend::Path::mem_efficient;
  c.enable_math = p == attend::Path::math;
  return c;
}

/// The three paths, each forced (flash = true, only that path enabled).
inline const std::array<Route, 3>& paths() {
  static const std::array<Route, 3> r = {{
      {"flash", true, only(attend::Path::flash), attend::Path::flash},
      {"mem_efficient", true, only(attend::Path::mem_efficient), attend::Path::mem_efficient},
      {"math", true, only(attend::Path::math), attend::Path::math},
  }};
  return r;
}

/// The three forced paths, plus flash = false (the module's naive route) and the default config.
inline const std::array<Route, 5>& routes() {
  static const std::array<Route, 5> r = {{
      paths()[0],
      paths()[1],
      paths()[2],
      {"flash=false", false, attend::FlashAttentionConfig{}, attend::Path::math},
      {"default", true, attend::FlashAttentionConfig{}, attend::Path::flash},
  }};
  return r;
}

template <typename T>
attend::Attend<T> make(const Route& r, double dropout = 0.0, std::optional<double> scale = std::nullopt,
                       std::uint64_t seed = 0) {
  return attend::Attend<T>(dropout, r.flash, scale, r.config, seed);
}

/// Fills a tensor with reproducible values uniform in [lo, hi], rounded to T.
template <typename T, int R>
void fill(attend::Tensor<T, R>& t, std::uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(u(gen));
}

/// Fills a raw range with reproducible values uniform in [-1, 1], rounded to T.
template <typename T>
void fill(T* p, Index n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (Index i = 0; i < n; ++i) p[i] = static_cast<T>(u(gen));
}

template <typename T>
bool is_nan(T x) {
  return std::isnan(static_cast<double>(x));
}
template <typename T>
bool is_finite(T x) {
  return std::isfinite(static_cast<double>(x));
}

/// Bitwise equality of two equally sized tensors (NaN payloads included).
template <typename T, int R>
bool same_bits(const attend::Tensor<T, R>& a, const attend::Tensor<T, R>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}

/// Index of the first element whose bits differ, or -1.
template <typename T, int R>
Index first_diff(const attend::Tensor<T, R>& a, const attend::Tensor<T, R>& b) {
  for (Index i = 0; i < a.size(); ++i) {
    if (std::memcmp(a.data() + i, b.data() + i, sizeof(T)) != 0) return i;
  }
  return -1;
}

}  // namespace robust

#endif  // ATTEND_TESTS_ROBUST_COMMON_HPP
