#include <gtest/gtest.h>

#include <vector>

#include "lmembed/core/batch.hpp"

using namespace lmembed;

TEST(TokenBatch, PacksWithoutPadding) {
  TokenBatch b;
  std::vector<std::int32_t> a{1, 2, 3}, c{4, 5, 6, 7, 8};
  b.add(a);
  b.add(c, 2);
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(b.n_tokens(), 8);
  EXPECT_EQ(b.length(1), 5);
  EXPECT_EQ(b.sequence(1)[0], 4);
  EXPECT_EQ(b.pool_start(0), 0);
  EXPECT_EQ(b.pool_start(1), 2);
}

TEST(TokenBatch, PoolFromOfTheFirstSequenceIsKept) {
  TokenBatch b;
  std::vector<std::int32_t> a{1, 2, 3}, c{4, 5};
  b.add(a, 2);
  b.add(c);
  ASSERT_EQ(b.pool_from.size(), 2u);
  EXPECT_EQ(b.pool_start(0), 2);
  EXPECT_EQ(b.pool_start(1), 0);
}

TEST(Captured, CheckRejectsWrongShape) {
  Captured c;
  c.spec = {CaptureLayers::all, CaptureTokens::last};
  c.n_seq = 2;
  c.n_layers = 3;
  c.d = 4;
  c.states = Matrix::Zero(6, 4);
  EXPECT_NO_THROW(c.check());
  c.states = Matrix::Zero(5, 4);
  EXPECT_THROW(c.check(), shape_error);
  EXPECT_EQ(to_string(c.spec), "all_layers.last_token");
}
