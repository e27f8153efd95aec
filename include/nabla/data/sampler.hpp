#pragma once
// Samplers: which examples of a dataset a DataLoader visits in an epoch, and in what order.
// DistributedSampler is torch.utils.data.distributed.DistributedSampler: every rank draws the
// same permutation of the dataset (keyed on seed + epoch), pads it by repeating its start (or
// drops the tail with drop_last) to a multiple of num_replicas, and takes every
// num_replicas-th index from its rank on, so the ranks see disjoint, equal-sized shares.

#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "transforms.hpp"

namespace nabla {
namespace data {

// The order of a dataset's n examples in `epoch`: 0..n-1, or a Fisher-Yates shuffle drawn from
// Philox keyed on (seed, epoch), identical on every machine and run.
inline std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (shuffle) {
    BatchRng rng = BatchRng::from_key(detail::philox_key(seed, detail::kShuffleStream, epoch, 0));
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.integer(0, i + 1))]);
  }
  return order;
}

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual int64_t size() const = 0;                                   // indices per epoch
  virtual std::vector<int64_t> indices(int64_t epoch) const = 0;     // the order in `epoch`
};

class DistributedSampler : public Sampler {
 public:
  DistributedSampler(int64_t dataset_size, int64_t num_replicas, int64_t rank, bool shuffle = true, uint64_t seed = 0,
                     bool drop_last = false)
      : n_(dataset_size), replicas_(num_replicas), rank_(rank), shuffle_(shuffle), seed_(seed), drop_last_(drop_last) {
    NABLA_CHECK(dataset_size >= 0, ValueError, "data::DistributedSampler: dataset_size must be >= 0, got ", dataset_size);
    NABLA_CHECK(num_replicas > 0, ValueError, "data::DistributedSampler: num_replicas must be positive, got ", num_replicas);
    NABLA_CHECK(rank >= 0 && rank < num_replicas, ValueError, "data::DistributedSampler: invalid rank ", rank,
                ", rank should be in the interval [0, ", num_replicas - 1, "]");
    // as PyTorch: with drop_last the tail that cannot be split evenly is dropped, else padded
    num_samples_ = drop_last_ && n_ % replicas_ != 0 ? (n_ - replicas_ + replicas_ - 1) / replicas_ : (n_ + replicas_ - 1) / replicas_;
    if (num_samples_ < 0) num_samples_ = 0;
  }

  // PyTorch's set_epoch: the permutation of indices() changes with it. (A DataLoader given this
  // sampler passes its own epoch to indices(epoch) instead, so its set_epoch is enough.)
  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }

  int64_t size() const override { return num_samples_; }  // PyTorch's len(sampler)
  int64_t total_size() const { return num_samples_ * replicas_; }
  int64_t num_replicas() const { return replicas_; }
  int64_t rank() const { return rank_; }

  std::vector<int64_t> indices() const { return indices(epoch_); }
  std::vector<int64_t> indices(int64_t epoch) const override {
    std::vector<int64_t> all = epoch_order(n_, shuffle_, seed_, epoch);
    const int64_t total = total_size();
    if (!drop_last_) {
      const int64_t base = static_cast<int64_t>(all.size());
      for (int64_t i = 0; static_cast<int64_t>(all.size()) < total && base > 0; ++i) all.push_back(all[static_cast<size_t>(i % base)]);
    } else {
      all.resize(static_cast<size_t>(total));
    }
    std::vector<int64_t> mine;
    mine.reserve(static_cast<size_t>(num_samples_));
    for (int64_t i = rank_; i < total; i += replicas_) mine.push_back(all[static_cast<size_t>(i)]);
    return mine;
  }

 private:
  int64_t n_, replicas_, rank_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace data
}  // namespace nabla
