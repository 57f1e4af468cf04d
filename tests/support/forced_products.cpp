// Linked into the test executables that ctest also runs with ATTEND_BF16_PRODUCTS forced
// (tests/forward/CMakeLists.txt: attend.bf16_<products>.*). With `amx` forced where the kernels have
// no AMX or the CPU or OS refuses it, attend falls back to the kernel it takes without AMX, so those
// runs would repeat the plain ones: they are skipped instead, with the reason, and ctest reports them
// skipped (SKIP_REGULAR_EXPRESSION on the message below).

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/attend_test.hpp"

namespace {

class ForcedAmx : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* forced = std::getenv("ATTEND_BF16_PRODUCTS");
    if (forced == nullptr || std::strcmp(forced, "amx") != 0) return;
    using B16 = Eigen::bfloat16;
    const std::vector<B16> x(70 * 64, B16(0.5f));  // (1, 1, 70, 64): tiles, not the decode kernel
    const attend::ConstView<B16, 4> view(x.data(), {1, 1, 70, 64});
    const attend::Dispatch d = attend::Attend<B16>(0.0, true).dispatch(view, view, view);
    if (d.kernel != attend::Kernel::query_tiles_bf16_amx) {
      GTEST_SKIP() << "ATTEND_BF16_PRODUCTS=amx: AMX tiles unavailable here (kernels compiled for " << d.isa
                   << ", or the CPU or OS lacks AMX-TILE/AMX-BF16); bf16 runs " << attend::kernel_name(d.kernel);
    }
  }
};

[[maybe_unused]] ::testing::Environment* const kForcedAmx = ::testing::AddGlobalTestEnvironment(new ForcedAmx);

}  // namespace
