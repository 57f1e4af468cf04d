// LinePrefetcher (detail/kernel/prefetch.hpp): the lines it hands out, in order, across dense and strided
// ranges, rows that are not a whole number of lines, and requests that cross range boundaries.

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include <attend/detail/kernel/prefetch.hpp>

namespace {

using attend::Index;
using attend::detail::LinePrefetcher;

std::vector<const char*> take_all(LinePrefetcher& p) {
  std::vector<const char*> lines;
  while (p.remaining() > 0) lines.push_back(p.take());
  return lines;
}

TEST(LinePrefetcher, EmptyHasNothingToRequest) {
  LinePrefetcher p;
  EXPECT_EQ(p.remaining(), 0);
  p.issue(5);  // must not touch anything
  p.drain();
  EXPECT_EQ(p.remaining(), 0);
}

TEST(LinePrefetcher, DenseRowsAreOneRunOfLines) {
  alignas(64) static char buf[62 * 256];
  LinePrefetcher p;
  p.add(buf, 62, 256, 256);  // (62, 64) floats, contiguous: 248 lines
  ASSERT_EQ(p.remaining(), 248);
  const auto lines = take_all(p);
  ASSERT_EQ(lines.size(), 248u);
  for (std::size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i], buf + 64 * i) << i;
}

TEST(LinePrefetcher, StridedRowsSkipTheGaps) {
  alignas(64) static char buf[5 * 1024];
  LinePrefetcher p;
  p.add(buf, 5, 1024, 200);  // 200-byte rows 1 KiB apart: 4 lines each (the last one partial)
  ASSERT_EQ(p.remaining(), 20);
  const auto lines = take_all(p);
  ASSERT_EQ(lines.size(), 20u);
  for (Index r = 0; r < 5; ++r)
    for (Index l = 0; l < 4; ++l) EXPECT_EQ(lines[static_cast<std::size_t>(4 * r + l)], buf + 1024 * r + 64 * l);
}

TEST(LinePrefetcher, RangesFollowInOrderAndIssueCountsLines) {
  alignas(64) static char q[3 * 128], k[2 * 512], v[2 * 512];
  LinePrefetcher p;
  p.add(q, 3, 128, 128);  // 6 lines
  p.add(k, 2, 512, 64);   // 2 lines
  p.add(v, 2, 512, 100);  // 4 lines
  p.add(v, 0, 512, 64);   // no rows: ignored
  ASSERT_EQ(p.remaining(), 12);
  p.issue(5);  // stops inside the first range
  EXPECT_EQ(p.remaining(), 7);
  EXPECT_EQ(p.take(), q + 320);
  EXPECT_EQ(p.take(), k);
  EXPECT_EQ(p.take(), k + 512);
  EXPECT_EQ(p.take(), v);
  p.issue(100);  // more than remain
  EXPECT_EQ(p.remaining(), 0);
}

// One range more than it holds: the last is dropped (a prefetch is only a hint).
TEST(LinePrefetcher, AtMostMaxRanges) {
  constexpr int kMax = LinePrefetcher::kMaxRanges;
  alignas(64) static char buf[64 * (kMax + 1)];
  LinePrefetcher p;
  for (int i = 0; i < kMax + 1; ++i) p.add(buf + 64 * i, 1, 64, 64);
  EXPECT_EQ(p.remaining(), kMax);
  const auto lines = take_all(p);
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(kMax));
  EXPECT_EQ(lines.back(), buf + 64 * (kMax - 1));
}

}  // namespace
