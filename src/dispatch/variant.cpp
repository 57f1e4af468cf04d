// One variant of the attend::dispatch component: attend's kernels compiled for one instruction set
// (this file is compiled once per level, with that level's -march and ATTEND_VARIANT_ENTRY naming its
// table). It exports one function, the variant's table (detail/runtime.hpp); cmake/dispatch.cmake makes
// every other symbol of the object local and removes its COMDAT groups, so that nothing it defines
// (attend's inline code, Eigen's, the standard library's templates) is merged with another variant's
// or the program's copy. It has no static initializer: the table is constant-initialized.
#ifndef ATTEND_VARIANT_ENTRY
#error "compile with -DATTEND_VARIANT_ENTRY=<the table function's name> (cmake/dispatch.cmake)"
#endif
#ifndef ATTEND_VARIANT_LEVEL
#error "compile with -DATTEND_VARIANT_LEVEL=\"<the level's name>\" (cmake/dispatch.cmake)"
#endif
#define ATTEND_DISPATCH_VARIANT 1

#include <attend/attend.hpp>
#include <attend/detail/dispatch.hpp>
#include <attend/detail/runtime.hpp>

namespace {

namespace rt = attend::runtime;
namespace detail = attend::detail;

template <typename T>
int forward_kernel(const rt::Call& c, int path) {
  return static_cast<int>(detail::local_forward_kernel(detail::problem_of<T>(c), static_cast<attend::Path>(path)));
}

template <typename T>
std::size_t forward_workspace_bytes(int kernel, const rt::Call& c, int workers) {
  return detail::local_forward_workspace_bytes(static_cast<attend::Kernel>(kernel), detail::problem_of<T>(c), workers);
}

template <typename T>
void run_forward(int kernel, const rt::Call& c, const rt::Pool& pool, void* workspace) {
  detail::local_run_forward(static_cast<attend::Kernel>(kernel), detail::problem_of<T>(c), detail::from_runtime(pool),
                            workspace);
}

template <typename T>
std::size_t backward_workspace_bytes(int kernel, const rt::Call& c, int workers) {
  return detail::local_backward_workspace_bytes(static_cast<attend::Kernel>(kernel), detail::grad_problem_of<T>(c),
                                                workers);
}

template <typename T>
void run_backward(int kernel, const rt::Call& c, const rt::Pool& pool, void* workspace) {
  detail::local_run_backward(static_cast<attend::Kernel>(kernel), detail::grad_problem_of<T>(c),
                             detail::from_runtime(pool), workspace);
}

template <typename T>
constexpr rt::Kernels kernels() {
  return {&forward_kernel<T>, &forward_workspace_bytes<T>, &run_forward<T>, &backward_workspace_bytes<T>,
          &run_backward<T>};
}

constexpr rt::Table kTable = {ATTEND_ISA_NAME, ATTEND_VARIANT_LEVEL, kernels<double>(), kernels<float>(),
                              kernels<Eigen::bfloat16>(), kernels<Eigen::half>()};

}  // namespace

extern "C" __attribute__((visibility("default"))) const void* ATTEND_VARIANT_ENTRY() { return &kTable; }
