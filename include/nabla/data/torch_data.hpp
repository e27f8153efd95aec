#pragma once
// LibTorch's torch::data spelling over nabla's datasets and DataLoader, so that ported code reads
// unchanged:
//
//   auto train = data::datasets::MNIST(root)                                 // [0, 1] pixels
//                    .map(data::transforms::Normalize<>(0.1307, 0.3081))
//                    .map(data::transforms::Stack<>());
//   const size_t n = train.size().value();
//   auto loader = data::make_data_loader<data::samplers::SequentialSampler>(std::move(train), 64);
//   for (data::Example<>& batch : *loader) { batch.data, batch.target }
//
// Thin by design: a dataset holds whole tensors, map(Normalize) normalises them once (one pass,
// not one per batch), Stack is the identity (nabla's batches are stacked already), and the loader
// is nabla's DataLoader, which gathers each batch with one index_select. As in LibTorch, MNIST
// gives pixels in [0, 1] (not normalised: that is what the Normalize in the chain is for), and
// make_data_loader shuffles (RandomSampler) unless SequentialSampler is named.

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "dataloader.hpp"
#include "dataset.hpp"
#include "transforms.hpp"

namespace nabla {
namespace data {

// LibTorch's Example<Data, Target>: nabla's Batch (data, target), which the loader yields.
template <class Data = Tensor, class Target = Tensor>
using Example = Batch;

namespace transforms {
// LibTorch's Stack<>: collates examples into a batch. nabla's datasets hand out batches already.
template <class T = Example<>>
struct Stack {};
}  // namespace transforms

namespace datasets {

// A dataset of whole tensors with LibTorch's map() / size() surface.
class TensorFrontEnd {
 public:
  explicit TensorFrontEnd(std::shared_ptr<TensorDataset> set) : set_(std::move(set)) {}
  // LibTorch's size() is an optional (a stream has none); here there always is one.
  std::optional<size_t> size() const { return static_cast<size_t>(set_->size()); }
  // Normalize: applied once, to every image, now.
  template <class T>
  TensorFrontEnd map(const transforms::Normalize<T>& normalize) const {
    BatchRng rng = BatchRng::from_key(0);
    Batch all = normalize(Batch{set_->data(), Tensor()}, rng);
    return TensorFrontEnd(std::make_shared<TensorDataset>(all.data, set_->target()));
  }
  template <class T>
  TensorFrontEnd map(const transforms::Stack<T>&) const {
    return *this;
  }
  const std::shared_ptr<TensorDataset>& dataset() const { return set_; }

 private:
  std::shared_ptr<TensorDataset> set_;
};

// LibTorch's datasets::MNIST(root, mode): float32 images [N, 1, 28, 28] in [0, 1], int64 labels,
// from root's four files (plain or .gz; see data::load_mnist). When root does not hold them and
// the environment names a data folder (NABLA_DATA, see docs/data.md), $NABLA_DATA/mnist is
// read instead, so a ported program's "./data" finds the shared copy; the error names both.
class MNIST : public TensorFrontEnd {
 public:
  enum class Mode { kTrain, kTest };
  explicit MNIST(const std::string& root, Mode mode = Mode::kTrain)
      : TensorFrontEnd(mnist_dataset(resolve(root, mode), mode == Mode::kTrain, /*normalize=*/false)) {}

 private:
  static std::string resolve(const std::string& root, Mode mode) {
    const std::string images = mode == Mode::kTrain ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte";
    if (!nabla::data::detail::find_with_gz(root, images).empty()) return root;
    const char* env = std::getenv("NABLA_DATA");
    if (env == nullptr || *env == '\0') return root;
    const std::string shared = (std::filesystem::path(env) / "mnist").string();
    if (nabla::data::detail::find_with_gz(shared, images).empty())
      throw IOError("nabla::data::datasets::MNIST: neither " + root + " nor " + shared + " (from NABLA_DATA) holds " +
                    images + " (or " + images + ".gz)");
    return shared;
  }
};

}  // namespace datasets

namespace samplers {
struct SequentialSampler {};  // the examples in order
struct RandomSampler {};      // a new permutation each epoch (LibTorch's default)
}  // namespace samplers

// LibTorch's make_data_loader<Sampler>(dataset, options or batch size): a DataLoader over the
// dataset, shuffling for RandomSampler. Returned by unique_ptr, as LibTorch's, so `*loader` reads
// the same. DataLoaderOptions' other settings (drop_last, device, ...) carry over.
template <class Sampler = samplers::RandomSampler>
std::unique_ptr<DataLoader> make_data_loader(const datasets::TensorFrontEnd& dataset, DataLoaderOptions options) {
  options.shuffle(std::is_same_v<Sampler, samplers::RandomSampler>);
  return std::make_unique<DataLoader>(dataset.dataset(), std::move(options));
}
template <class Sampler = samplers::RandomSampler>
std::unique_ptr<DataLoader> make_data_loader(const datasets::TensorFrontEnd& dataset, size_t batch_size) {
  return make_data_loader<Sampler>(dataset, DataLoaderOptions().batch_size(static_cast<int64_t>(batch_size)));
}

}  // namespace data
}  // namespace nabla
