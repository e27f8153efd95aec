#pragma once
// Losses: mse_loss, nll_loss and cross_entropy (class indices or class probabilities,
// optional class weights, ignore_index, label smoothing), built from differentiable ops.

#include "index.hpp"
#include "softmax.hpp"

namespace nabla {

enum class Reduction : uint8_t { None, Mean, Sum };
inline constexpr Reduction kNone = Reduction::None, kMean = Reduction::Mean, kSum = Reduction::Sum;

namespace detail {
inline Tensor apply_reduction(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::None: return loss;
    case Reduction::Sum: return loss.sum();
    case Reduction::Mean: return loss.mean();
  }
  return loss;
}
// [N, C, d1, ...] -> [N * d1 * ..., C]; [C] -> [1, C]
inline Tensor classes_last(const Tensor& x) {
  if (x.dim() == 1) return x.unsqueeze(0);
  if (x.dim() == 2) return x;
  Dims perm{0};
  for (int64_t d = 2; d < x.dim(); ++d) perm.push_back(d);
  perm.push_back(1);
  return x.permute(perm).reshape({-1, x.size(1)});
}
}  // namespace detail

inline Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = kMean) {
  detail::check_defined(input, "mse_loss");
  detail::check_defined(target, "mse_loss");
  NABLA_CHECK(input.sizes() == target.sizes(), ShapeError, "mse_loss: input ", detail::describe(input),
              " and target ", detail::describe(target), " must have the same shape");
  Tensor d = input - target;
  return detail::apply_reduction(d * d, reduction);
}

struct NllLossOptions {
  Tensor weight;              // [C] per-class weights (optional)
  Reduction reduction = kMean;
  int64_t ignore_index = -100;
};

// log_probs: [N, C] (or [C], or [N, C, d1, ...]); target: int64 class indices of shape [N] (...).
inline Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& opt = {}) {
  detail::check_defined(log_probs, "nll_loss");
  detail::check_defined(target, "nll_loss");
  NABLA_CHECK(log_probs.dim() >= 1, ShapeError, "nll_loss: input must have at least one dimension, got ",
              detail::describe(log_probs));
  NABLA_CHECK(target.dtype() == kInt64 || target.dtype() == kInt32, DTypeError,
              "nll_loss: target must hold int64 class indices, got ", detail::describe(target));
  const int64_t C = log_probs.dim() == 1 ? log_probs.size(0) : log_probs.size(1);
  Shape expect = log_probs.sizes();
  if (log_probs.dim() == 1) expect = Shape{};
  else expect.erase(expect.begin() + 1);
  NABLA_CHECK(target.sizes() == expect, ShapeError, "nll_loss: target ", detail::describe(target), " should have shape ",
              shape_str(expect), " for input ", detail::describe(log_probs));
  Tensor lp = detail::classes_last(log_probs);
  Tensor t = target.to(kInt64).reshape({-1});
  Tensor valid = t.ne(detail::scalar_to_tensor(opt.ignore_index, kInt64));
  Tensor safe = where(valid, t, detail::scalar_to_tensor(0, kInt64));
  // Targets other than ignore_index must be in [0, C). On a GPU the check is a kernel whose
  // error surfaces at the next synchronisation: a training loop must not wait for it.
  backend(safe.device()).check_index_range(safe, C, "nll_loss", log_probs.dim() == 1 ? 0 : 1);
  Tensor picked = -lp.gather(1, safe.unsqueeze(1)).squeeze(1);
  Tensor w = valid.to(lp.dtype());
  if (opt.weight.defined()) {
    NABLA_CHECK(opt.weight.dim() == 1 && opt.weight.size(0) == C, ShapeError, "nll_loss: weight ",
                detail::describe(opt.weight), " should have shape [", C, "]");
    w = w * opt.weight.to(lp.dtype()).index_select(0, safe);
  }
  Tensor loss = picked * w;
  switch (opt.reduction) {
    case Reduction::None: return loss.reshape(expect);
    case Reduction::Sum: return loss.sum();
    case Reduction::Mean: return loss.sum() / w.sum();
  }
  return loss;
}

struct CrossEntropyOptions {
  Tensor weight;
  Reduction reduction = kMean;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

// input: unnormalised scores [N, C] (or [C], [N, C, d1, ...]); target: class indices
// (int64, [N]) or class probabilities (floating, same shape as input).
inline Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& opt = {}) {
  detail::check_defined(input, "cross_entropy");
  detail::check_defined(target, "cross_entropy");
  NABLA_CHECK(is_floating_point(input.dtype()), DTypeError, "cross_entropy: input must be floating point, got ",
              detail::describe(input));
  NABLA_CHECK(opt.label_smoothing >= 0.0 && opt.label_smoothing <= 1.0, ValueError,
              "cross_entropy: label_smoothing must be in [0, 1], got ", opt.label_smoothing);
  NABLA_CHECK(input.dim() >= 1, ShapeError, "cross_entropy: input must have at least one (class) dimension, got ",
              detail::describe(input));
  const int64_t class_dim = input.dim() == 1 ? 0 : 1;
  Tensor logp = log_softmax(input, class_dim);
  const int64_t C = input.size(class_dim);
  if (is_floating_point(target.dtype())) {  // soft targets
    NABLA_CHECK(target.sizes() == input.sizes(), ShapeError, "cross_entropy: probability target ", detail::describe(target),
                " must have the input's shape ", detail::describe(input));
    Tensor tgt = target;
    if (opt.label_smoothing > 0) tgt = tgt * (1 - opt.label_smoothing) + opt.label_smoothing / static_cast<double>(C);
    Tensor per = -(logp * tgt);
    if (opt.weight.defined()) {
      Shape ws(static_cast<size_t>(input.dim()), 1);
      ws[class_dim] = C;
      per = per * opt.weight.reshape(ws);
    }
    Tensor loss = per.sum(class_dim);
    return detail::apply_reduction(loss, opt.reduction);
  }
  Tensor nll = nll_loss(logp, target, NllLossOptions{opt.weight, opt.reduction, opt.ignore_index});
  if (opt.label_smoothing == 0.0) return nll;
  // smoothing term: mean over classes of -log p, over the same (non-ignored) elements
  Tensor lp = detail::classes_last(logp);
  Tensor t = target.to(kInt64).reshape({-1});
  Tensor valid = t.ne(detail::scalar_to_tensor(opt.ignore_index, kInt64)).to(lp.dtype());
  Tensor per_class = -lp;
  if (opt.weight.defined()) per_class = per_class * opt.weight.to(lp.dtype());
  Tensor smooth = per_class.sum(1) * valid / static_cast<double>(C);
  Tensor smooth_red;
  switch (opt.reduction) {
    case Reduction::None: smooth_red = smooth.reshape(target.sizes()); break;
    case Reduction::Sum: smooth_red = smooth.sum(); break;
    case Reduction::Mean: {
      Tensor denom = valid;
      if (opt.weight.defined())
        denom = denom * opt.weight.to(lp.dtype()).index_select(0, where(t.ne(detail::scalar_to_tensor(opt.ignore_index, kInt64)), t,
                                                                          detail::scalar_to_tensor(0, kInt64)));
      smooth_red = smooth.sum() / denom.sum();
      break;
    }
  }
  return nll * (1 - opt.label_smoothing) + smooth_red * opt.label_smoothing;
}

}  // namespace nabla

