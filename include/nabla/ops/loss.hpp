#pragma once
// Losses: mse_loss, l1_loss, smooth_l1_loss, huber_loss, binary_cross_entropy(_with_logits),
// nll_loss and cross_entropy (class indices or class probabilities, optional class weights,
// ignore_index, label smoothing), built from differentiable ops, with LibTorch's argument order.

#include "index.hpp"
#include "operators.hpp"
#include "softmax.hpp"

namespace nabla {

enum class Reduction : uint8_t { None, Mean, Sum };
inline constexpr Reduction kNone = Reduction::None, kMean = Reduction::Mean, kSum = Reduction::Sum;
namespace detail {
inline const char* reduction_name(Reduction r) { return r == kNone ? "none" : (r == kSum ? "sum" : "mean"); }
}  // namespace detail
inline std::ostream& operator<<(std::ostream& os, Reduction r) { return os << detail::reduction_name(r); }

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
  if (auto ac = NABLA_AUTOCAST(mse_loss, input, target)) return mse_loss(ac[0], ac[1], reduction);
  NABLA_CHECK(input.sizes() == target.sizes(), ShapeError, "mse_loss: input ", detail::describe(input),
              " and target ", detail::describe(target), " must have the same shape");
  Tensor d = input - target;
  return detail::apply_reduction(d * d, reduction);
}

namespace detail {
inline void check_same_shape(const Tensor& input, const Tensor& target, const char* op) {
  check_defined(input, op);
  check_defined(target, op);
  NABLA_CHECK(input.sizes() == target.sizes(), ShapeError, op, ": input ", describe(input), " and target ",
              describe(target), " must have the same shape");
}
inline void check_weight(const Tensor& weight, const Tensor& input, const char* op, const char* what) {
  if (!weight.defined()) return;
  NABLA_CHECK(weight.dim() <= input.dim() && broadcast_shapes(weight.sizes(), input.sizes(), op) == input.sizes(),
              ShapeError, op, ": ", what, " ", describe(weight), " does not broadcast to the input ", describe(input));
}
}  // namespace detail

// torch.nn.functional.l1_loss: |input - target|.
inline Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = kMean) {
  detail::check_same_shape(input, target, "l1_loss");
  if (auto ac = NABLA_AUTOCAST(l1_loss, input, target)) return l1_loss(ac[0], ac[1], reduction);
  return detail::apply_reduction((input - target).abs(), reduction);
}

// torch.nn.functional.smooth_l1_loss (LibTorch's order: reduction, then beta): 0.5 d^2 / beta
// where |d| < beta, else |d| - 0.5 beta; beta = 0 is l1_loss.
inline Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = kMean, double beta = 1.0) {
  detail::check_same_shape(input, target, "smooth_l1_loss");
  if (auto ac = NABLA_AUTOCAST(smooth_l1_loss, input, target)) return smooth_l1_loss(ac[0], ac[1], reduction, beta);
  NABLA_CHECK(beta >= 0, ValueError, "smooth_l1_loss: beta must be non-negative, got ", beta);
  Tensor d = (input - target).abs();
  if (beta == 0) return detail::apply_reduction(d, reduction);
  return detail::apply_reduction(where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta), reduction);
}

// torch.nn.functional.huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).
inline Tensor huber_loss(const Tensor& input, const Tensor& target, Reduction reduction = kMean, double delta = 1.0) {
  detail::check_same_shape(input, target, "huber_loss");
  if (auto ac = NABLA_AUTOCAST(huber_loss, input, target)) return huber_loss(ac[0], ac[1], reduction, delta);
  NABLA_CHECK(delta > 0, ValueError, "huber_loss: delta must be positive, got ", delta);
  Tensor d = (input - target).abs();
  return detail::apply_reduction(where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta), reduction);
}

// torch.nn.functional.binary_cross_entropy: -w (t log p + (1 - t) log(1 - p)), each log clamped
// at -100 as PyTorch does (so p = 0 or 1 gives a finite loss and gradient). On the CPU, probabilities outside
// [0, 1] are refused (PyTorch's check); on a GPU they are not looked at (that would wait for the
// device) and give NaN.
inline Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const Tensor& weight = Tensor(),
                                   Reduction reduction = kMean) {
  detail::check_same_shape(input, target, "binary_cross_entropy");
  if (auto ac = NABLA_AUTOCAST(binary_cross_entropy, input, target, weight))
    return binary_cross_entropy(ac[0], ac[1], ac[2], reduction);
  detail::check_weight(weight, input, "binary_cross_entropy", "weight");
  NABLA_CHECK(input.is_floating_point(), DTypeError, "binary_cross_entropy: input must be floating point, got ",
              detail::describe(input));
  if (input.is_cpu() && input.numel() > 0) {
    NoGradGuard ng;
    const bool inside = input.min().item<double>() >= 0 && input.max().item<double>() <= 1;  // NaN: false
    NABLA_CHECK(inside, ValueError, "binary_cross_entropy: every element of the input ", detail::describe(input),
                " must be a probability in [0, 1] (for logits use binary_cross_entropy_with_logits)");
  }
  Tensor loss;
  {
    NoGradGuard ng;
    loss = -(target * input.log().clamp_min(-100.0) + (1 - target) * (1 - input).log().clamp_min(-100.0));
  }
  // PyTorch's gradient, finite where a probability saturates at 0 or 1 (a sigmoid in float32
  // does past |x| ~ 17), where the clamped logs' own chain rule would give 0 * inf = NaN.
  if (autograd::needs_grad(input, target))
    autograd::record("BinaryCrossEntropyBackward0", loss, {input, target},
                     [ps = autograd::save(input), ts = autograd::save(target)](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor p = ps.unpack(), t = ts.unpack();
                       TensorList out(2);
                       // PyTorch's floor is the float 1e-12f (9.99999996e-13 as a double)
                       if (needs[0]) out[0] = g * (p - t) / ((1 - p) * p).clamp_min(static_cast<double>(1e-12f));
                       if (needs[1]) out[1] = g * ((1 - p).log().clamp_min(-100.0) - p.log().clamp_min(-100.0));
                       return out;
                     });
  if (weight.defined()) loss = loss * weight;
  return detail::apply_reduction(loss, reduction);
}

// torch.nn.functional.binary_cross_entropy_with_logits, the log-sum-exp form that never
// overflows: (1 - t) x + (1 + (pos_weight - 1) t) (log(1 + exp(-|x|)) + max(-x, 0)), times weight.
// pos_weight broadcasts over the last dimension (one per class), as PyTorch's.
inline Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, const Tensor& weight = Tensor(),
                                               const Tensor& pos_weight = Tensor(), Reduction reduction = kMean) {
  detail::check_same_shape(input, target, "binary_cross_entropy_with_logits");
  if (auto ac = NABLA_AUTOCAST(binary_cross_entropy_with_logits, input, target, weight, pos_weight))
    return binary_cross_entropy_with_logits(ac[0], ac[1], ac[2], ac[3], reduction);
  detail::check_weight(weight, input, "binary_cross_entropy_with_logits", "weight");
  detail::check_weight(pos_weight, input, "binary_cross_entropy_with_logits", "pos_weight");
  auto softplus_neg = [](const Tensor& x) { return (-x.abs()).exp().log1p() + (-x).relu(); };  // log(1 + e^-x)
  Tensor loss;
  {
    NoGradGuard ng;
    Tensor sp = softplus_neg(input);
    loss = pos_weight.defined() ? (1 - target) * input + (1 + (pos_weight - 1) * target) * sp : (1 - target) * input + sp;
  }
  // PyTorch's gradients, written out: the stable form's |x| and max(-x, 0) have kinks at x = 0
  // whose one-sided derivatives would give 0 there instead of sigmoid(0) - 1 = -0.5.
  if (autograd::needs_grad(input, target, pos_weight))
    autograd::record("BinaryCrossEntropyWithLogitsBackward0", loss, {input, target, pos_weight},
                     [xs = autograd::save(input), ts = autograd::save(target),
                      pws = autograd::save(pos_weight), softplus_neg](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor x = xs.unpack(), t = ts.unpack(), pw = pws.unpack();
                       TensorList out(3);
                       Tensor coef = pw.defined() ? 1 + (pw - 1) * t : Tensor();
                       if (needs[0]) out[0] = coef.defined() ? g * ((x.sigmoid() - 1) * coef + 1 - t) : g * (x.sigmoid() - t);
                       if (needs[1]) out[1] = pw.defined() ? g * ((pw - 1) * softplus_neg(x) - x) : g * -x;
                       if (needs[2]) out[2] = sum_to(g * t * softplus_neg(x), pw.sizes());
                       return out;
                     });
  if (weight.defined()) loss = loss * weight;
  return detail::apply_reduction(loss, reduction);
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
  if (auto ac = NABLA_AUTOCAST(nll_loss, log_probs, target, opt.weight))
    return nll_loss(ac[0], ac[1], NllLossOptions{ac[2], opt.reduction, opt.ignore_index});
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
// LibTorch's positional torch::nll_loss(input, target, weight, reduction, ignore_index). (With
// three arguments, `nll_loss(x, t, {})` is the options form above: the same defaults.)
inline Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const Tensor& weight, Reduction reduction,
                       int64_t ignore_index = -100) {
  return nll_loss(log_probs, target, NllLossOptions{weight, reduction, ignore_index});
}
template <class W>
  requires std::same_as<std::remove_cvref_t<W>, Tensor>
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, W&& weight) {
  return nll_loss(log_probs, target, NllLossOptions{weight, kMean, -100});
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
  if (auto ac = NABLA_AUTOCAST(cross_entropy_loss, input, target, opt.weight))
    return cross_entropy(ac[0], ac[1], CrossEntropyOptions{ac[2], opt.reduction, opt.ignore_index, opt.label_smoothing});
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

