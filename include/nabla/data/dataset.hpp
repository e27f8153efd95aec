#pragma once
// Datasets: anything that can hand out a batch of examples by index. TensorDataset serves rows of
// in-memory tensors with one index_select per batch; mnist_dataset builds one from MNIST files.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../core/tensor.hpp"
#include "../ops/all.hpp"
#include "idx.hpp"

namespace nabla {
namespace data {

struct Batch {
  Tensor data;    // [B, ...]
  Tensor target;  // [B] (or [B, ...])
};

// A random-access collection of examples. get_batch must be safe to call from the DataLoader's
// prefetch thread while the caller's thread runs its own ops: read shared state, never write it.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Batch get_batch(const std::vector<int64_t>& indices) const = 0;
};

// Examples are the rows (dim 0) of `data` and `target`, which must have the same length.
class TensorDataset : public Dataset {
 public:
  TensorDataset(Tensor data, Tensor target) : data_(std::move(data)), target_(std::move(target)) {
    NABLA_CHECK(data_.defined() && target_.defined(), ValueError, "data::TensorDataset: data and target must be defined");
    NABLA_CHECK(data_.dim() >= 1 && target_.dim() >= 1, ShapeError,
                "data::TensorDataset: data and target need a leading example dimension, got data ",
                shape_str(data_.sizes()), " and target ", shape_str(target_.sizes()));
    NABLA_CHECK(data_.size(0) == target_.size(0), ShapeError, "data::TensorDataset: data ", shape_str(data_.sizes()),
                " and target ", shape_str(target_.sizes()), " hold different numbers of examples");
    // Batches are copies, never part of a graph.
    data_ = data_.detach();
    target_ = target_.detach();
  }

  int64_t size() const override { return data_.size(0); }
  const Tensor& data() const { return data_; }
  const Tensor& target() const { return target_; }

  Batch get_batch(const std::vector<int64_t>& indices) const override {
    const int64_t n = size();
    for (int64_t i : indices)
      NABLA_CHECK(i >= 0 && i < n, IndexError, "data::TensorDataset::get_batch: index ", i,
                  " is out of range for a dataset of ", n, " examples");
    NoGradGuard no_grad;
    Tensor idx = from_vector(indices, Shape{static_cast<int64_t>(indices.size())}, TensorOptions(kInt64).device(data_.device()));
    Tensor tidx = target_.device() == data_.device() ? idx : idx.to(target_.device());
    return Batch{data_.index_select(0, idx), target_.index_select(0, tidx)};
  }

 private:
  Tensor data_, target_;
};

// MNIST's pixel statistics over the 60000 training images, after scaling to [0, 1].
inline constexpr double kMnistMean = 0.1307;
inline constexpr double kMnistStd = 0.3081;

// MNIST from `dir` (see load_mnist) as float32 images [N, 1, 28, 28] scaled to [0, 1] and, by
// default, normalised to (x - 0.1307) / 0.3081; targets int64 [N].
inline std::shared_ptr<TensorDataset> mnist_dataset(const std::string& dir, bool train, bool normalize = true) {
  MnistSet set = load_mnist(dir, train);
  NoGradGuard no_grad;
  Tensor x = set.images.to(kFloat32).unsqueeze(1).div_(255.0);  // as LibTorch and torchvision: a division, not * (1 / 255)
  if (normalize) x.sub_(kMnistMean).div_(kMnistStd);
  return std::make_shared<TensorDataset>(x, set.labels);
}

}  // namespace data
}  // namespace nabla
