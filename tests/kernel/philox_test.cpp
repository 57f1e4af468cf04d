// Philox4x32-10 (attend::detail::philox4x32_10): known-answer vectors from Random123's kat_vectors,
// and, where librandom123-dev is installed, agreement with Random123's own philox.h on many inputs.

#include <gtest/gtest.h>

#include <cstdint>

#include <attend/detail/kernel/philox.hpp>

#if defined(ATTEND_TEST_HAVE_RANDOM123)
#include <Random123/philox.h>
#endif

namespace {

using attend::detail::philox4x32_10;
using attend::detail::PhiloxBlock;
using attend::detail::PhiloxKey;

struct Kat {
  const char* name;
  PhiloxBlock ctr;
  PhiloxKey key;
  PhiloxBlock expect;
};

// Random123 1.09, examples/kat_vectors, "philox4x32 10" lines.
const Kat kKats[] = {
    {"zeros", {0u, 0u, 0u, 0u}, {0u, 0u}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {"ones",
     {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {"pi",
     {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

class PhiloxKat : public ::testing::TestWithParam<Kat> {};

TEST_P(PhiloxKat, MatchesRandom123KnownAnswer) {
  const Kat& k = GetParam();
  const PhiloxBlock got = philox4x32_10(k.ctr, k.key);
  for (int w = 0; w < 4; ++w) {
    EXPECT_EQ(got[static_cast<std::size_t>(w)], k.expect[static_cast<std::size_t>(w)]) << "word " << w;
  }
}

INSTANTIATE_TEST_SUITE_P(Vectors, PhiloxKat, ::testing::ValuesIn(kKats),
                         [](const ::testing::TestParamInfo<Kat>& i) { return std::string(i.param.name); });

TEST(Philox, IsAPureFunctionOfCounterAndKey) {
  const PhiloxBlock c = {1u, 2u, 3u, 4u};
  const PhiloxKey key = {5u, 6u};
  EXPECT_EQ(philox4x32_10(c, key), philox4x32_10(c, key));
  // Every counter word and key word matters.
  for (int w = 0; w < 4; ++w) {
    PhiloxBlock c2 = c;
    c2[static_cast<std::size_t>(w)] ^= 1u;
    EXPECT_NE(philox4x32_10(c2, key), philox4x32_10(c, key)) << "counter word " << w;
  }
  for (int w = 0; w < 2; ++w) {
    PhiloxKey k2 = key;
    k2[static_cast<std::size_t>(w)] ^= 1u;
    EXPECT_NE(philox4x32_10(c, k2), philox4x32_10(c, key)) << "key word " << w;
  }
}

TEST(Philox, AgreesWithRandom123OnManyInputs) {
#if defined(ATTEND_TEST_HAVE_RANDOM123)
  r123::Philox4x32 gen;
  std::uint64_t s = 0x9E3779B97F4A7C15ull;
  auto next = [&s]() {  // splitmix64
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<std::uint32_t>(z ^ (z >> 31));
  };
  for (int n = 0; n < 20000; ++n) {
    PhiloxBlock c;
    PhiloxKey k;
    // Mostly random words, and every 4th input a small counter like the dropout's (j/4, i, bh, offset).
    for (auto& w : c) w = (n % 4 == 0) ? next() % 300u : next();
    for (auto& w : k) w = next();
    const r123::Philox4x32::ctr_type rc = {{c[0], c[1], c[2], c[3]}};
    const r123::Philox4x32::key_type rk = {{k[0], k[1]}};
    const r123::Philox4x32::ctr_type want = gen(rc, rk);
    const PhiloxBlock got = philox4x32_10(c, k);
    for (int w = 0; w < 4; ++w) {
      ASSERT_EQ(got[static_cast<std::size_t>(w)], want.v[w]) << "input " << n << " word " << w;
    }
  }
#else
  GTEST_SKIP() << "<Random123/philox.h> not found at configure time (install librandom123-dev)";
#endif
}

}  // namespace
