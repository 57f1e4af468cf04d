// ODR check, first translation unit (with odr_b.cpp): both include attend, instantiate and call
// Attend<float> and Attend<double> on every path, and link into one program. A function or variable
// defined non-inline in a header is then a duplicate symbol and the link fails; the run checks that the
// program the linker assembled from the two TUs' copies works and gives the same bits through either.
#include <attend/attend.hpp>

#include <cstdio>   // std::printf, std::fprintf
#include <cstring>  // std::memcmp
#include <vector>   // std::vector

#include "odr.hpp"

int main() {
  int failures = 0;
  for (attend::Path path : {attend::Path::math, attend::Path::mem_efficient, attend::Path::flash}) {
    const std::vector<float> fa = attend_odr::run<float>(path), fb = attend_odr::run_b_float(path);
    const std::vector<double> da = attend_odr::run<double>(path), db = attend_odr::run_b_double(path);
    const bool f_same = fa.size() == fb.size() && std::memcmp(fa.data(), fb.data(), fa.size() * sizeof(float)) == 0;
    const bool d_same = da.size() == db.size() && std::memcmp(da.data(), db.data(), da.size() * sizeof(double)) == 0;
    if (!f_same || !d_same) {
      std::fprintf(stderr, "attend_odr: %s path: the two translation units disagree (f32 %s, f64 %s)\n",
                   attend::path_name(path), f_same ? "same" : "differ", d_same ? "same" : "differ");
      ++failures;
    }
  }
  std::printf("attend_odr: %s\n", failures == 0 ? "both translation units agree on every path" : "FAILED");
  return failures == 0 ? 0 : 1;
}
