#pragma once
// Batch transforms for images [B, C, H, W]: Normalize, RandomCrop, RandomHorizontalFlip, Compose.
// Their randomness comes from a BatchRng, a Philox stream keyed on (seed, epoch, batch index), so
// a batch is transformed the same way with or without the prefetch thread, and after a resume.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../ops/all.hpp"
#include "dataset.hpp"

namespace nabla {
namespace data {

namespace detail {
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// One Philox key per (seed, stream, epoch, batch): distinct streams never share numbers.
inline uint64_t philox_key(uint64_t seed, uint64_t stream, int64_t epoch, int64_t batch) {
  uint64_t k = splitmix64(seed ^ splitmix64(stream));
  k = splitmix64(k ^ static_cast<uint64_t>(epoch));
  return splitmix64(k ^ static_cast<uint64_t>(batch));
}
inline constexpr uint64_t kShuffleStream = 1, kTransformStream = 2;
}  // namespace detail

// Random numbers for one batch of one epoch; the sequence depends only on the three keys.
class BatchRng {
 public:
  BatchRng(uint64_t seed, int64_t epoch, int64_t batch)
      : key_(detail::philox_key(seed, detail::kTransformStream, epoch, batch)) {}
  static BatchRng from_key(uint64_t key) { return BatchRng(key); }

  uint32_t next_u32() {
    if (lane_ == 4) {
      block_ = Philox4x32::generate(key_, counter_++);
      lane_ = 0;
    }
    return block_.c[lane_++];
  }
  uint64_t next_u64() {
    uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }
  double uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  int64_t integer(int64_t low, int64_t high) {  // [low, high); the modulo bias is below 2^-40
    NABLA_CHECK(high > low, ValueError, "data::BatchRng::integer: expected low < high, got ", low, " and ", high);
    return low + static_cast<int64_t>(next_u64() % static_cast<uint64_t>(high - low));
  }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  explicit BatchRng(uint64_t key) : key_(key) {}
  uint64_t key_;
  uint64_t counter_ = 0;
  Philox4x32 block_{};
  int lane_ = 4;
};

// A batch transform. It may run on the DataLoader's prefetch thread: draw randomness from `rng`
// only (never nabla::rand, whose global generator the training thread is using).
using Transform = std::function<Batch(Batch, BatchRng&)>;

namespace transforms {

namespace detail {
inline void check_images(const Tensor& x, const char* op) {
  NABLA_CHECK(x.defined() && x.dim() >= 3, ShapeError, "data::transforms::", op,
              ": expected images [B, C, H, W], got ", x.defined() ? shape_str(x.sizes()) : std::string("undefined"));
}
}  // namespace detail

// (x - mean[c]) / std[c] for each channel c of dim 1; one value applies to every channel.
// A template only for LibTorch's spelling `Normalize<>(mean, std)` (Target is unused);
// `Normalize(mean, std)` deduces it.
template <class Target = Tensor>
class Normalize {
 public:
  Normalize(std::vector<double> mean, std::vector<double> stddev) : mean_(std::move(mean)), std_(std::move(stddev)) {
    NABLA_CHECK(!mean_.empty() && mean_.size() == std_.size(), ValueError,
                "data::transforms::Normalize: mean and std need the same, non-zero, number of values, got ",
                mean_.size(), " and ", std_.size());
    for (double s : std_) NABLA_CHECK(s > 0, ValueError, "data::transforms::Normalize: std must be positive, got ", s);
  }
  Normalize(double mean, double stddev) : Normalize(std::vector<double>{mean}, std::vector<double>{stddev}) {}

  Batch operator()(Batch b, BatchRng&) const {
    const Tensor& x = b.data;
    NABLA_CHECK(x.defined() && x.dim() >= 2 && x.is_floating_point(), ShapeError,
                "data::transforms::Normalize: expected floating-point data [B, C, ...], got ",
                x.defined() ? shape_str(x.sizes()) : std::string("undefined"), x.defined() ? " " : "",
                x.defined() ? dtype_name(x.dtype()) : "");
    const int64_t c = x.size(1);
    NABLA_CHECK(mean_.size() == 1 || static_cast<int64_t>(mean_.size()) == c, ShapeError,
                "data::transforms::Normalize: ", mean_.size(), " means for data ", shape_str(x.sizes()), " with ", c,
                " channels");
    NoGradGuard no_grad;
    Shape s(static_cast<size_t>(x.dim()), 1);
    s[1] = static_cast<int64_t>(mean_.size());
    Tensor mean = from_vector(mean_, s, TensorOptions(x.dtype()).device(x.device()));
    Tensor stddev = from_vector(std_, s, TensorOptions(x.dtype()).device(x.device()));
    b.data = (x - mean) / stddev;
    return b;
  }

 private:
  std::vector<double> mean_, std_;
};

// Pads H and W with `padding` zeros on each side, then cuts a random height x width window from
// each image. Draws, per image in batch order: top in [0, H + 2p - height], then left.
class RandomCrop {
 public:
  RandomCrop(int64_t height, int64_t width, int64_t padding) : h_(height), w_(width), pad_(padding) {
    NABLA_CHECK(height > 0 && width > 0 && padding >= 0, ValueError,
                "data::transforms::RandomCrop: expected a positive size and padding >= 0, got ", height, "x", width,
                " padding ", padding);
  }
  explicit RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop(size, size, padding) {}  // square

  Batch operator()(Batch b, BatchRng& rng) const {
    const Tensor& x = b.data;
    detail::check_images(x, "RandomCrop");
    const int64_t hd = x.dim() - 2, wd = x.dim() - 1;
    const int64_t H = x.size(hd), W = x.size(wd), Hp = H + 2 * pad_, Wp = W + 2 * pad_;
    NABLA_CHECK(h_ <= Hp && w_ <= Wp, ShapeError, "data::transforms::RandomCrop: a ", h_, "x", w_,
                " crop does not fit images ", shape_str(x.sizes()), " padded by ", pad_);
    NoGradGuard no_grad;
    Tensor padded = x;
    if (pad_ > 0) {
      Shape ps = x.sizes();
      ps[hd] = Hp;
      ps[wd] = Wp;
      padded = zeros(ps, x.options());
      padded.narrow(hd, pad_, H).narrow(wd, pad_, W).copy_(x);
    }
    Shape os = x.sizes();
    os[hd] = h_;
    os[wd] = w_;
    Tensor out = empty(os, x.options());
    for (int64_t i = 0; i < x.size(0); ++i) {
      int64_t top = rng.integer(0, Hp - h_ + 1);
      int64_t left = rng.integer(0, Wp - w_ + 1);
      out.select(0, i).copy_(padded.select(0, i).narrow(hd - 1, top, h_).narrow(wd - 1, left, w_));
    }
    b.data = out;
    return b;
  }

 private:
  int64_t h_, w_, pad_;
};

// Mirrors each image left-right (reverses W) with probability p; one draw per image, in order.
class RandomHorizontalFlip {
 public:
  explicit RandomHorizontalFlip(double p = 0.5) : p_(p) {
    NABLA_CHECK(p >= 0 && p <= 1, ValueError, "data::transforms::RandomHorizontalFlip: p must be in [0, 1], got ", p);
  }

  Batch operator()(Batch b, BatchRng& rng) const {
    const Tensor& x = b.data;
    detail::check_images(x, "RandomHorizontalFlip");
    NoGradGuard no_grad;
    const int64_t wd = x.dim() - 1, W = x.size(wd);
    Tensor reversed = arange(W - 1, -1, -1, TensorOptions(kInt64).device(x.device()));
    Tensor out;
    for (int64_t i = 0; i < x.size(0); ++i) {
      if (!rng.bernoulli(p_)) continue;
      if (!out.defined()) out = x.clone();
      out.select(0, i).copy_(x.select(0, i).index_select(wd - 1, reversed));
    }
    if (out.defined()) b.data = out;
    return b;
  }

 private:
  double p_;
};

// Applies transforms in order, all drawing from the same BatchRng.
class Compose {
 public:
  Compose(std::vector<Transform> transforms) : ts_(std::move(transforms)) {}  // NOLINT: implicit on purpose
  Batch operator()(Batch b, BatchRng& rng) const {
    for (const Transform& t : ts_)
      if (t) b = t(std::move(b), rng);
    return b;
  }

 private:
  std::vector<Transform> ts_;
};

}  // namespace transforms
}  // namespace data
}  // namespace nabla
