// ODR check, second translation unit (see odr_a.cpp). This one includes Eigen's Tensor module itself,
// first, with EIGEN_USE_THREADS defined: the other include order attend supports.
#define EIGEN_USE_THREADS
#include <unsupported/Eigen/CXX11/Tensor>

#include <attend/attend.hpp>

#include <vector>  // std::vector

#include "odr.hpp"

namespace attend_odr {

std::vector<float> run_b_float(attend::Path path) { return run<float>(path); }
std::vector<double> run_b_double(attend::Path path) { return run<double>(path); }

}  // namespace attend_odr
