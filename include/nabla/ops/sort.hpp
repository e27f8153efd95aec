#pragma once
// Ordering ops: sort argsort topk, and multinomial sampling built on them. The order is
// PyTorch's: NaN above every number (last ascending, first descending), -0.0 equal to 0.0.
// nabla's sorts are always stable, so `stable = false` gives the stable order too, and topk
// breaks ties by the lower index. The values' gradient is scattered back through the indices.

#include <functional>
#include <limits>
#include <optional>
#include <tuple>

#include "index.hpp"

namespace nabla {
namespace detail {

// (values, indices) of x ordered along dim: all of it (k = nullopt) or its first k. A 0-dim x is
// a row of one element.
inline std::tuple<Tensor, Tensor> order_forward(const Tensor& x, int64_t dim, bool descending, std::optional<int64_t> k,
                                                const char* name, const char* node) {
  check_defined(x, name);
  const int64_t d = wrap_dim(dim, x.dim(), name);
  const Tensor xv = x.dim() == 0 ? alias(x, {1}, {1}, x.storage_offset()) : x;
  const int64_t size = xv.size(d);
  if (k)
    NABLA_CHECK(*k >= 0 && *k <= size, IndexError, name, ": k (", *k, ") is out of range for dimension ", d,
                " of size ", size, " (", describe(x), ")");
  Shape shape = xv.sizes();
  if (k) shape[d] = *k;
  Tensor values = empty(shape, x.options()), indices = empty(shape, TensorOptions(kInt64).device(x.device()));
  if (values.numel() > 0) {
    if (k) backend(x.device()).topk(values, indices, xv, d, *k, descending);
    else backend(x.device()).sort(values, indices, xv, d, descending);
  }
  if (x.dim() == 0 && values.numel() == 1) {
    values = make_tensor(values.storage(), 0, {}, {}, values.dtype());
    indices = make_tensor(indices.storage(), 0, {}, {}, kInt64);
  }
  if (autograd::needs_grad(x))
    autograd::record(node, values, {x}, [in = x.sizes(), d, si = autograd::save(indices)](const Tensor& g, autograd::NeedsGrad) {
      if (in.empty()) return TensorList{g.sum()};  // a 0-dim x: the one element, or nothing for k = 0
      return TensorList{zeros(in, g.options()).scatter_add(d, si.unpack(), g)};
    });
  return {values, indices};
}

}  // namespace detail

// torch::sort: (values, int64 indices) along dim, ascending unless descending.
inline std::tuple<Tensor, Tensor> sort(const Tensor& x, int64_t dim = -1, bool descending = false) {
  return detail::order_forward(x, dim, descending, std::nullopt, "sort", "SortBackward0");
}
// torch::sort(x, stable, dim, descending) (sort.stable): the same order, as every sort is stable.
inline std::tuple<Tensor, Tensor> sort(const Tensor& x, std::optional<bool> stable, int64_t dim = -1,
                                       bool descending = false) {
  (void)stable;
  return detail::order_forward(x, dim, descending, std::nullopt, "sort", "SortBackward1");
}

// torch::argsort: the indices of sort. The integral overload makes argsort(x, 1) mean dim 1
// (LibTorch finds int -> int64_t and int -> bool equally good there and refuses the call).
inline Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false) {
  NoGradGuard no_grad;
  return std::get<1>(sort(x, dim, descending));
}
inline Tensor argsort(const Tensor& x, bool stable, int64_t dim = -1, bool descending = false) {
  NoGradGuard no_grad;
  return std::get<1>(sort(x, std::optional<bool>(stable), dim, descending));
}
template <class I>
  requires(std::integral<I> && !std::same_as<I, bool>)
Tensor argsort(const Tensor& x, I dim, bool descending = false) {
  return argsort(x, static_cast<int64_t>(dim), descending);
}

// torch::topk(x, k, dim, largest, sorted): the k largest (smallest) along dim, always in order;
// 0 <= k <= x.size(dim).
inline std::tuple<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true,
                                       bool sorted = true) {
  (void)sorted;
  return detail::order_forward(x, dim, largest, k, "topk", "TopkBackward0");
}

namespace detail {
// Uniform draws k / 2^24 (k < 2^24) from `gen`, the stream rand() uses: the same numbers on
// every device for the same seed.
inline Tensor uniform_draws(const Shape& shape, DType dtype, Device device, Generator& gen) {
  Tensor t = empty(shape, TensorOptions(dtype).device(device));
  RandomParams p{RandomKind::Uniform, 0, 0, 0.0, 1.0};
  std::tie(p.seed, p.offset) = gen.reserve(static_cast<uint64_t>(t.numel()));
  if (t.numel() > 0) backend(device).random(t, p);
  return t;
}
}  // namespace detail

// torch::multinomial: num_samples category indices (int64) per row of the 1-D or 2-D
// non-negative weights `probs` (rows need not sum to 1), drawn from `generator` (default: the
// global one, manual_seed) with the same draws on every device. As PyTorch: without replacement
// (and for one sample) the categories maximising p / q, q ~ Exp(1) (the Gumbel-max trick: k
// draws without replacement in proportion to p); with replacement the rows' normalised
// cumulative sums searched with uniform draws.
inline Tensor multinomial(const Tensor& probs, int64_t num_samples, bool replacement = false,
                          std::optional<std::reference_wrapper<Generator>> generator = std::nullopt) {
  detail::check_defined(probs, "multinomial");
  NABLA_CHECK(probs.dim() == 1 || probs.dim() == 2, ShapeError, "multinomial: prob_dist must be 1 or 2 dim, got ",
              detail::describe(probs));
  NABLA_CHECK(probs.is_floating_point(), DTypeError, "multinomial: only floating-point probabilities are supported, got ",
              detail::describe(probs));
  NABLA_CHECK(num_samples > 0, ValueError, "multinomial: cannot sample num_samples <= 0 samples (got ", num_samples,
              ") from ", detail::describe(probs));
  const int64_t C = probs.size(-1);
  NABLA_CHECK(replacement || num_samples <= C, ValueError, "multinomial: cannot sample num_samples (", num_samples,
              ") > prob_dist.size(-1) (", C, ") samples without replacement (", detail::describe(probs), ")");
  NoGradGuard no_grad;
  Generator& gen = generator ? generator->get() : default_generator();
  const Tensor p = probs.dim() == 1 ? probs.unsqueeze(0) : probs;  // [R, C]
  const int64_t R = p.size(0);
  const Device dev = probs.device();
  if (R == 0) return empty(probs.dim() == 1 ? Shape{num_samples} : Shape{0, num_samples}, TensorOptions(kInt64).device(dev));
  {  // one host round trip for both checks, as PyTorch's
    const double inf = std::numeric_limits<double>::infinity();
    Tensor valid = all(logical_and(ge(p, detail::scalar_to_tensor(0, p.dtype())), lt(p, detail::scalar_to_tensor(inf, p.dtype()))));
    Tensor nonzero = C > 0 ? all(gt(amax(p, {1}), detail::scalar_to_tensor(0, p.dtype()))) : detail::scalar_to_tensor(false);
    Tensor both = stack({valid.reshape({1}), nonzero.to(valid.device()).reshape({1})}).to(Device::cpu());
    const auto ok = both.to_vector<bool>();
    NABLA_CHECK(ok[0], ValueError, "multinomial: probability tensor contains either inf, nan or element < 0 (",
                detail::describe(probs), ")");
    NABLA_CHECK(ok[1], ValueError, "multinomial: invalid multinomial distribution (a row's sum of probabilities is 0) (",
                detail::describe(probs), ")");
  }
  Tensor samples;
  if (!replacement || num_samples == 1) {
    // q = -log(u), u = (k + 1/2) / 2^24 in (0, 1): q > 0, so a zero weight scores exactly 0 and is
    // never taken before a positive one
    Tensor u = detail::uniform_draws({R, C}, kFloat64, dev, gen) + 1.0 / 33554432.0;
    Tensor score = p.to(kFloat64) / neg(log(u));
    samples = num_samples == 1 ? argmax(score, 1, true) : std::get<1>(topk(score, num_samples, 1));
  } else {
    // the first category whose normalised cumulative weight exceeds u in [0, 1): a category of
    // weight 0 adds nothing to the sum, so it is never the first to exceed u
    const DType cdt = p.dtype() == kFloat64 ? kFloat64 : kFloat32;
    Tensor cdf = cumsum(p, 1, cdt);
    cdf = (cdf / cdf.narrow(1, C - 1, 1)).contiguous();
    Tensor u = detail::uniform_draws({R, num_samples}, cdt, dev, gen);
    samples = empty({R, num_samples}, TensorOptions(kInt64).device(dev));
    backend(dev).searchsorted(samples, cdf, u, /*right=*/true);
  }
  return probs.dim() == 1 ? samples.squeeze(0) : samples;
}

// ---- Tensor members -----------------------------------------------------------------------

inline std::tuple<Tensor, Tensor> Tensor::sort(int64_t dim, bool descending) const {
  return nabla::sort(*this, dim, descending);
}
inline std::tuple<Tensor, Tensor> Tensor::sort(std::optional<bool> stable, int64_t dim, bool descending) const {
  return nabla::sort(*this, stable, dim, descending);
}
inline Tensor Tensor::argsort(int64_t dim, bool descending) const { return nabla::argsort(*this, dim, descending); }
inline Tensor Tensor::argsort(bool stable, int64_t dim, bool descending) const {
  return nabla::argsort(*this, stable, dim, descending);
}
inline std::tuple<Tensor, Tensor> Tensor::topk(int64_t k, int64_t dim, bool largest, bool sorted) const {
  return nabla::topk(*this, k, dim, largest, sorted);
}
inline Tensor Tensor::multinomial(int64_t num_samples, bool replacement,
                                  std::optional<std::reference_wrapper<Generator>> generator) const {
  return nabla::multinomial(*this, num_samples, replacement, generator);
}

}  // namespace nabla
