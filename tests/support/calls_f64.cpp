// The Attend-calling helpers of support/attend_test.hpp for double: attend's kernels for this
// type, compiled once for the whole test suite (see support/calls.hpp).
#include "support/calls.hpp"

ATTEND_TEST_INSTANTIATE_CALLS(double)
