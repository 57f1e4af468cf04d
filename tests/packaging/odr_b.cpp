// ODR check, second translation unit (see odr_a.cpp), compiled for the architecture's baseline. This
// one includes Eigen's Tensor module itself, first, with EIGEN_USE_THREADS defined: the other include
// order attend supports.
#define EIGEN_USE_THREADS
#include <unsupported/Eigen/CXX11/Tensor>

#include <attend/attend.hpp>

#include "odr.hpp"

namespace attend_odr {

Result run_b_float(int path) { return run<float>(path); }
Result run_b_double(int path) { return run<double>(path); }
Result run_b_bf16(int path) { return run<Eigen::bfloat16>(path); }

}  // namespace attend_odr
