// ODR check, first translation unit, compiled with attend::native (-march=native); odr_b.cpp is
// compiled for the architecture's baseline. Both include attend, instantiate and call Attend<float>,
// Attend<double> and Attend<Eigen::bfloat16> on every path, and link into one program, in either
// order (attend_odr_ab, attend_odr_ba). Each TU's calls must report its own instruction set and give
// results that agree with the other TU's within the tolerance of their arithmetic: with one copy of
// a shared symbol for both, a TU would run the other's kernels (SIGILL on a CPU without them) or lay
// out less scratch than the other's kernels write (a crash under ASan). tests/odr_symbols.cmake
// checks the same thing statically: no weak attend:: symbol is defined by both objects.
#include <attend/attend.hpp>

#include <cmath>    // std::abs, std::isfinite, std::isnan
#include <cstdio>   // std::printf, std::fprintf
#include <cstring>  // std::strcmp
#include <string>   // std::string
#include <vector>   // std::vector

#include "odr.hpp"

namespace {

/// Largest |a - b| over finite pairs; a NaN or infinity must be matched exactly.
double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    } else if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
      if (a[i] != b[i]) return INFINITY;
    } else {
      m = std::max(m, std::abs(a[i] - b[i]));
    }
  }
  return m;
}

int check(const char* type, attend::Path path, const attend_odr::Result& a, const attend_odr::Result& b,
          double tol) {
  int failures = 0;
  const double d = max_diff(a.values, b.values);
  std::printf("attend_odr: %-4s %-13s  a: %s %-20s  b: %s %-20s  max |a - b| = %.3g\n", type, attend::path_name(path),
              a.isa, a.kernel, b.isa, b.kernel, d);
  if (!(d <= tol)) {
    std::fprintf(stderr, "attend_odr: %s %s: the translation units disagree by %.3g (tolerance %.3g)\n", type,
                 attend::path_name(path), d, tol);
    ++failures;
  }
  if (std::strcmp(a.isa, ATTEND_ISA_NAME) != 0) {
    std::fprintf(stderr, "attend_odr: %s %s: TU a (%s) ran kernels reporting %s\n", type, attend::path_name(path),
                 ATTEND_ISA_NAME, a.isa);
    ++failures;
  }
  if (std::string(a.abi) == b.abi) {
    std::printf("attend_odr: both TUs have the ABI tag %s (native is the baseline here)\n", a.abi);
  } else if (std::strcmp(a.isa, b.isa) == 0) {
    std::fprintf(stderr, "attend_odr: %s %s: TUs tagged %s and %s both ran kernels reporting %s\n", type,
                 attend::path_name(path), a.abi, b.abi, a.isa);
    ++failures;
  }
  return failures;
}

}  // namespace

int main() {
  int failures = 0;
  for (attend::Path path : {attend::Path::math, attend::Path::mem_efficient, attend::Path::flash}) {
    // The same inputs through two instruction sets: the f64 results agree to rounding, f32 and bf16
    // to what fp32 and bf16 products differ by on values of this size (|out| < 1, 64 terms).
    const int p = static_cast<int>(path);
    failures += check("f64", path, attend_odr::run<double>(p), attend_odr::run_b_double(p), 1e-12);
    failures += check("f32", path, attend_odr::run<float>(p), attend_odr::run_b_float(p), 1e-5);
    failures += check("bf16", path, attend_odr::run<Eigen::bfloat16>(p), attend_odr::run_b_bf16(p), 3e-2);
  }
  std::printf("attend_odr: %s\n", failures == 0 ? "each translation unit ran its own kernels" : "FAILED");
  return failures == 0 ? 0 : 1;
}
