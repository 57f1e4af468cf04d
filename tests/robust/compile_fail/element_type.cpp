// Must not compile: attend computes in double, float, bfloat16 or half only.
#include <attend/attend.hpp>

int main() {
  const attend::Attend<int> a;
  return a.flash() ? 1 : 0;
}
