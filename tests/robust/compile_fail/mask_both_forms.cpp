// Must not compile: a Mask is either keep (bool) or additive (T), never both, and keep takes bools.
#include <attend/attend.hpp>

int main() {
  static bool keep[4] = {true, true, true, true};
  static float bias[4] = {0, 0, 0, 0};
  const attend::ConstView<bool, 2> k(keep, {2, 2});
  const attend::ConstView<float, 2> b(bias, {2, 2});
#ifdef ATTEND_ROBUST_KEEP_FROM_VALUES
  const attend::Mask<float> mask = attend::Mask<float>::keep(b);  // values are not a keep mask
#else
  const attend::Mask<float> mask(k, b);  // no mask with both forms
#endif
  return mask.rank();
}
