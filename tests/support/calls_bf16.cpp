// The Attend-calling helpers of support/attend_test.hpp for Eigen::bfloat16: attend's kernels for this
// type, compiled once for the whole test suite (see support/calls.hpp).
#include "support/calls.hpp"

ATTEND_TEST_INSTANTIATE_CALLS(Eigen::bfloat16)
