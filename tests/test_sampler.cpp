// data::DistributedSampler against PyTorch's rules (torch/utils/data/distributed.py): equal
// shares, padding by repeating the start, drop_last, the strided split, one permutation per
// (seed, epoch) shared by every rank, and its use as a DataLoader's sampler.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nabla/data.hpp>
#include <nabla/nabla.hpp>
#include <set>

using namespace nabla;
using nabla::data::DistributedSampler;

namespace {

TEST(DistributedSampler, SharesArePyTorchsWithPadding) {
  // 10 examples, 3 replicas: num_samples ceil(10/3) = 4, total 12, padded with indices 0 and 1
  std::vector<int64_t> all;
  for (int64_t r = 0; r < 3; ++r) {
    DistributedSampler s(10, 3, r, /*shuffle=*/false);
    EXPECT_EQ(s.size(), 4);
    EXPECT_EQ(s.total_size(), 12);
    auto idx = s.indices();
    ASSERT_EQ(idx.size(), 4u);
    for (size_t k = 0; k < idx.size(); ++k) EXPECT_EQ(idx[k], (r + 3 * static_cast<int64_t>(k)) % 10) << "rank " << r;
    all.insert(all.end(), idx.begin(), idx.end());
  }
  std::map<int64_t, int> count;
  for (int64_t i : all) ++count[i];
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(count[i], i < 2 ? 2 : 1) << "index " << i;
}

TEST(DistributedSampler, DropLastDropsTheUnevenTail) {
  // PyTorch: num_samples = ceil((10 - 3) / 3) = 3, total 9; index 9 is never seen
  std::set<int64_t> seen;
  for (int64_t r = 0; r < 3; ++r) {
    DistributedSampler s(10, 3, r, false, 0, /*drop_last=*/true);
    EXPECT_EQ(s.size(), 3);
    for (int64_t i : s.indices()) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " twice";
  }
  EXPECT_EQ(seen.size(), 9u);
  EXPECT_FALSE(seen.count(9));
  EXPECT_EQ(DistributedSampler(9, 3, 0, false, 0, true).size(), 3);  // even: nothing dropped
  EXPECT_EQ(DistributedSampler(2, 3, 0, false, 0, true).size(), 0);
  EXPECT_EQ(DistributedSampler(2, 3, 2, false, 0, false).indices(), (std::vector<int64_t>{0}));  // padded from the start
}

TEST(DistributedSampler, OnePermutationPerSeedAndEpochAcrossRanks) {
  const int64_t n = 101, w = 4;
  auto union_of = [&](uint64_t seed, int64_t epoch) {
    std::vector<int64_t> firsts;
    std::multiset<int64_t> all;
    for (int64_t r = 0; r < w; ++r) {
      DistributedSampler s(n, w, r, true, seed);
      s.set_epoch(epoch);
      EXPECT_EQ(s.epoch(), epoch);
      auto idx = s.indices();
      EXPECT_EQ(idx, s.indices(epoch));
      all.insert(idx.begin(), idx.end());
      firsts.push_back(idx[0]);
    }
    EXPECT_EQ(all.size(), 104u);  // 101 padded to 4 * 26
    for (int64_t i = 0; i < n; ++i) EXPECT_GE(all.count(i), 1u);
    return firsts;
  };
  auto e0 = union_of(7, 0), e0_again = union_of(7, 0), e1 = union_of(7, 1), other_seed = union_of(8, 0);
  EXPECT_EQ(e0, e0_again);
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, other_seed);
  // the shuffled order is a permutation, not the identity
  DistributedSampler s(n, 1, 0, true, 7);
  auto idx = s.indices();
  std::vector<int64_t> sorted = idx;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  EXPECT_FALSE(std::is_sorted(idx.begin(), idx.end()));
}

TEST(DistributedSampler, BadArgumentsAreErrors) {
  EXPECT_THROW(DistributedSampler(10, 0, 0), ValueError);
  EXPECT_THROW(DistributedSampler(10, 2, 2), ValueError);
  EXPECT_THROW(DistributedSampler(10, 2, -1), ValueError);
  EXPECT_THROW(DistributedSampler(-1, 2, 0), ValueError);
}

TEST(DistributedSampler, DrivesADataLoader) {
  auto ds = std::make_shared<data::TensorDataset>(arange(10).to(kFloat32).reshape({10, 1}), arange(10));
  auto sampler = std::make_shared<DistributedSampler>(10, 3, 1, true, 5);
  data::DataLoader loader(ds, data::DataLoaderOptions().batch_size(3).sampler(sampler));
  EXPECT_EQ(loader.size(), 2);  // 4 samples in batches of 3
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::vector<int64_t> got;
    for (data::Batch& b : loader) {
      auto t = b.target.to_vector<int64_t>();
      got.insert(got.end(), t.begin(), t.end());
    }
    EXPECT_EQ(got, sampler->indices(epoch)) << "epoch " << epoch;  // the loader's epoch keys the order
  }
  EXPECT_THROW(data::DataLoader(ds, data::DataLoaderOptions().sampler(sampler).shuffle(true)), ValueError);
}

}  // namespace
