#ifndef ATTEND_DETAIL_KERNEL_PHILOX_HPP
#define ATTEND_DETAIL_KERNEL_PHILOX_HPP

// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3" (SC'11), with the constants and round structure of Random123's philox.h. Counter-based
// means the i-th number is a pure function of (key, counter): no state, so any path, tile order or
// thread count draws the same number for the same attention element.

#include <array>    // std::array
#include <cstdint>  // std::uint32_t, std::uint64_t

#include "attend/detail/abi.hpp"

ATTEND_BEGIN_NAMESPACE
namespace detail {

using PhiloxBlock = std::array<std::uint32_t, 4>;
using PhiloxKey = std::array<std::uint32_t, 2>;

inline void philox_mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}

/// Ten Philox rounds over a 128-bit counter with a 64-bit key.
inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, PhiloxKey key) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u;   // round multipliers
  constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // key schedule: golden ratio
  constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // and sqrt(3) - 1
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    std::uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr[0], hi0, lo0);
    philox_mulhilo(kMul1, ctr[2], hi1, lo1);
    ctr = {hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0};
  }
  return ctr;
}

}  // namespace detail
ATTEND_END_NAMESPACE

#endif  // ATTEND_DETAIL_KERNEL_PHILOX_HPP
