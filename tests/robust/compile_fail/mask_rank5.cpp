// Must not compile: a mask has rank 1 to 4 (mask.hpp's static_assert).
#include <attend/attend.hpp>

int main() {
  static bool data[1] = {true};
  const attend::ConstView<bool, 5> m(data, {1, 1, 1, 1, 1});
  const auto mask = attend::Mask<float>::keep(m);
  return mask.rank();
}
