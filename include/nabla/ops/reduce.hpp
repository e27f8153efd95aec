#pragma once
// Reductions over one or several dims, with keepdim: sum mean prod amax amin max min argmax
// argmin var std logsumexp, the scan cumsum, and sum_to (the inverse of broadcasting, used by
// the engine).
// var, std and logsumexp are composites, so their gradients come for free.

#include <cmath>
#include <concepts>
#include <optional>
#include <limits>
#include <tuple>
#include <vector>

#include "unary.hpp"

namespace nabla {
namespace detail {

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape keep_shape;           // input shape with 1 in reduced dims
  int64_t count = 1;          // elements folded into each output
};

inline ReducePlan plan_reduce(const Tensor& x, const Dims& dims, const char* op) {
  const int64_t r = x.dim();
  ReducePlan p;
  p.reduced.assign(static_cast<size_t>(r), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, r, op);
    if (r == 0) continue;
    NABLA_CHECK(!p.reduced[w] || dims.empty(), ValueError, op, ": dimension ", d, " appears more than once in ",
                shape_str(dims));
    p.reduced[w] = true;
  }
  p.keep_shape = x.sizes();
  for (int64_t d = 0; d < r; ++d)
    if (p.reduced[d]) {
      p.count *= x.sizes()[d];
      p.keep_shape[d] = 1;
    }
  return p;
}

// Drops the reduced dims of a keepdim result (metadata only).
inline Tensor drop_reduced(const Tensor& out, const ReducePlan& p) {
  Shape s;
  Strides st;
  for (size_t d = 0; d < p.reduced.size(); ++d)
    if (!p.reduced[d]) {
      s.push_back(out.sizes()[d]);
      st.push_back(out.strides()[d]);
    }
  return make_tensor(out.storage(), out.storage_offset(), s, st, out.dtype());
}

inline Tensor reduce_forward(ReduceOp op, const char* name, const Tensor& x, const ReducePlan& p, bool keepdim) {
  DType dt = x.dtype();
  if (op == ReduceOp::Mean) {
    NABLA_CHECK(is_floating_point(dt), DTypeError, name, ": expected a floating-point input, got ", describe(x),
                "; convert it with .to(kFloat32) first");
  } else if (op == ReduceOp::Sum || op == ReduceOp::Prod) {
    if (!is_floating_point(dt)) dt = kInt64;
  } else {
    for (size_t d = 0; d < p.reduced.size(); ++d)
      NABLA_CHECK(!(p.reduced[d] && x.sizes()[d] == 0), IndexError, name, ": cannot reduce over the zero-size dimension ",
                  d, " of ", describe(x));
  }
  Tensor out = empty(p.keep_shape, TensorOptions(dt).device(x.device()));
  if (out.numel() > 0) backend(x.device()).reduce(op, out, x);
  Tensor result = keepdim ? out : drop_reduced(out, p);
  if (trace::active()) {
    static constexpr const char* names[] = {"ReduceSum", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin"};
    std::vector<int64_t> axes;
    for (size_t d = 0; d < p.reduced.size(); ++d)
      if (p.reduced[d]) axes.push_back(static_cast<int64_t>(d));
    trace::record(names[static_cast<size_t>(op)], {x}, {result},
                  {{"axes", axes}, {"keepdims", int64_t{keepdim}}, {"dtype", static_cast<int64_t>(dt)}});
  }
  return result;
}

// The gradient of a reduction's output, broadcast back over the input's shape.
inline Tensor expand_grad(const Tensor& g, const Shape& keep_shape, const Shape& in_shape) {
  return g.reshape(keep_shape).expand(in_shape);
}

inline Tensor extremum_all(ReduceOp op, const char* name, const Tensor& x, const Dims& dims, bool keepdim) {
  check_defined(x, name);
  ReducePlan p = plan_reduce(x, dims, name);
  Tensor out = reduce_forward(op, name, x, p, keepdim);
  if (autograd::needs_grad(x))  // ties share the gradient evenly
    autograd::record(op == ReduceOp::Max ? "AmaxBackward0" : "AminBackward0", out, {x},
                     [sx = autograd::save(x), so = autograd::save_output(out), p](const Tensor& g, autograd::NeedsGrad) {
                       Tensor xv = sx.unpack();
                       Tensor mask = xv.eq(so.unpack().reshape(p.keep_shape)).to(g.dtype());
                       Dims rd;
                       for (size_t d = 0; d < p.reduced.size(); ++d)
                         if (p.reduced[d]) rd.push_back(static_cast<int64_t>(d));
                       Tensor count = rd.empty() ? mask : mask.sum(rd, true);
                       return TensorList{expand_grad(g, p.keep_shape, xv.sizes()) * mask / count};
                     });
  return out;
}

}  // namespace detail

inline Tensor sum(const Tensor& x, const Dims& dims, bool keepdim = false) {
  detail::check_defined(x, "sum");
  if (auto ac = NABLA_AUTOCAST(sum, x)) return sum(ac[0], dims, keepdim);
  detail::ReducePlan p = detail::plan_reduce(x, dims, "sum");
  Tensor out = detail::reduce_forward(ReduceOp::Sum, "sum", x, p, keepdim);
  if (autograd::needs_grad(x))
    autograd::record(dims.empty() ? "SumBackward0" : "SumBackward1", out, {x}, [keep = p.keep_shape, in = x.sizes()](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{detail::expand_grad(g, keep, in)};
    });
  return out;
}
inline Tensor sum(const Tensor& x) { return sum(x, Dims()); }

inline Tensor mean(const Tensor& x, const Dims& dims, bool keepdim = false) {
  detail::check_defined(x, "mean");
  detail::ReducePlan p = detail::plan_reduce(x, dims, "mean");
  Tensor out = detail::reduce_forward(ReduceOp::Mean, "mean", x, p, keepdim);
  if (autograd::needs_grad(x))
    autograd::record(dims.empty() ? "MeanBackward0" : "MeanBackward1", out, {x}, [p, in = x.sizes()](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{detail::expand_grad(g, p.keep_shape, in) / static_cast<double>(p.count)};
    });
  return out;
}
inline Tensor mean(const Tensor& x) { return mean(x, Dims()); }

inline Tensor prod(const Tensor& x, const Dims& dims, bool keepdim = false) {
  detail::check_defined(x, "prod");
  if (auto ac = NABLA_AUTOCAST(prod, x)) return prod(ac[0], dims, keepdim);
  detail::ReducePlan p = detail::plan_reduce(x, dims, "prod");
  Tensor out = detail::reduce_forward(ReduceOp::Prod, "prod", x, p, keepdim);
  if (autograd::needs_grad(x))
    // d prod / d x_i = product of the others; computed without dividing by x_i so zeros work:
    // with one zero in a slice only that position gets a gradient, with two or more none does.
    autograd::record("ProdBackward0", out, {x}, [sx = autograd::save(x), p](const Tensor& g, autograd::NeedsGrad) {
      Tensor xv = sx.unpack();
      Dims rd;
      for (size_t d = 0; d < p.reduced.size(); ++d)
        if (p.reduced[d]) rd.push_back(static_cast<int64_t>(d));
      Tensor zero = xv.eq(detail::zero_like_scalar(xv));
      Tensor zeros_in_slice = zero.sum(rd, true);
      Tensor nonzero_prod = where(zero, detail::scalar_to_tensor(1, xv.dtype()), xv).prod(rd, true);
      Tensor gk = detail::expand_grad(g, p.keep_shape, xv.sizes());
      Tensor none = zeros_in_slice.eq(detail::scalar_to_tensor(0, kInt64));
      Tensor one = zeros_in_slice.eq(detail::scalar_to_tensor(1, kInt64)).logical_and(zero);
      Tensor z = detail::zero_like_scalar(xv);
      return TensorList{gk * where(none, nonzero_prod / where(zero, detail::scalar_to_tensor(1, xv.dtype()), xv),
                                   where(one, nonzero_prod.expand(xv.sizes()), z))};
    });
  return out;
}
inline Tensor prod(const Tensor& x) { return prod(x, Dims()); }

inline Tensor amax(const Tensor& x, const Dims& dims, bool keepdim = false) {
  return detail::extremum_all(ReduceOp::Max, "amax", x, dims, keepdim);
}
inline Tensor amin(const Tensor& x, const Dims& dims, bool keepdim = false) {
  return detail::extremum_all(ReduceOp::Min, "amin", x, dims, keepdim);
}

namespace detail {
inline Tensor arg_extremum(ArgReduceOp op, const char* name, const Tensor& x, std::optional<int64_t> dim, bool keepdim) {
  check_defined(x, name);
  NABLA_CHECK(x.dtype() != kBool, DTypeError, name, ": not supported for bool tensors (", describe(x), ")");
  if (!dim) {
    NABLA_CHECK(x.numel() > 0, IndexError, name, ": cannot take the ", name, " of an empty tensor ", describe(x));
    Tensor flat = x.reshape({-1});
    return arg_extremum(op, name, flat, 0, false);
  }
  if (x.dim() == 0) return zeros({}, TensorOptions(kInt64).device(x.device()));
  int64_t d = wrap_dim(*dim, x.dim(), name);
  NABLA_CHECK(x.sizes()[d] > 0, IndexError, name, ": cannot reduce over the zero-size dimension ", d, " of ", describe(x));
  Shape keep = x.sizes();
  keep[d] = 1;
  Tensor out = empty(keep, TensorOptions(kInt64).device(x.device()));
  if (out.numel() > 0) backend(x.device()).arg_reduce(op, out, x, d);
  trace::Scope scope;  // the squeeze below is part of this op
  Tensor result = keepdim ? out : out.squeeze(d);
  scope.record(op == ArgReduceOp::ArgMax ? "ArgMax" : "ArgMin", {x}, {result}, {{"axis", d}, {"keepdims", int64_t{keepdim}}});
  return result;
}
}  // namespace detail

inline Tensor argmax(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false) {
  return detail::arg_extremum(ArgReduceOp::ArgMax, "argmax", x, dim, keepdim);
}
inline Tensor argmin(const Tensor& x, std::optional<int64_t> dim = std::nullopt, bool keepdim = false) {
  return detail::arg_extremum(ArgReduceOp::ArgMin, "argmin", x, dim, keepdim);
}

// var over dims, dividing by N - correction: correction 1 (unbiased, Bessel's correction) is
// torch.var's default, 0 the biased estimate; nullopt means 1, as in LibTorch.
inline Tensor var(const Tensor& x, const Dims& dims, std::optional<int64_t> correction, bool keepdim = false) {
  detail::check_defined(x, "var");
  NABLA_NO_AUTOCAST();
  NABLA_CHECK(is_floating_point(x.dtype()), DTypeError, "var: expected a floating-point input, got ", detail::describe(x));
  detail::ReducePlan p = detail::plan_reduce(x, dims, "var");
  Tensor d = x - x.mean(dims, true);
  double denom = static_cast<double>(p.count) - static_cast<double>(correction.value_or(1));
  return (d * d).sum(dims, keepdim) / (denom > 0 ? denom : 0.0);
}
// LibTorch's overload set: var(x, dims, unbiased, keepdim), var(x, unbiased) over all elements,
// and var(x, dim) for an integer dim (which would otherwise convert to `bool unbiased`).
inline Tensor var(const Tensor& x, const Dims& dims, bool unbiased = true, bool keepdim = false) {
  return var(x, dims, std::optional<int64_t>(unbiased ? 1 : 0), keepdim);
}
inline Tensor var(const Tensor& x, bool unbiased = true) { return var(x, Dims(), unbiased); }
template <class I>
  requires(std::integral<I> && !std::same_as<I, bool>)
Tensor var(const Tensor& x, I dim) {
  return var(x, Dims(static_cast<int64_t>(dim)));
}
inline Tensor std(const Tensor& x, const Dims& dims, std::optional<int64_t> correction, bool keepdim = false) {
  return var(x, dims, correction, keepdim).sqrt();
}
inline Tensor std(const Tensor& x, const Dims& dims, bool unbiased = true, bool keepdim = false) {
  return var(x, dims, unbiased, keepdim).sqrt();
}
inline Tensor std(const Tensor& x, bool unbiased = true) { return std(x, Dims(), unbiased); }
template <class I>
  requires(std::integral<I> && !std::same_as<I, bool>)
Tensor std(const Tensor& x, I dim) {
  return std(x, Dims(static_cast<int64_t>(dim)));
}

// (var, mean) and (std, mean) in one call, with var's overloads (torch::var_mean, std_mean).
inline std::tuple<Tensor, Tensor> var_mean(const Tensor& x, const Dims& dims, bool unbiased = true, bool keepdim = false) {
  return {var(x, dims, unbiased, keepdim), mean(x, dims, keepdim)};
}
inline std::tuple<Tensor, Tensor> var_mean(const Tensor& x, const Dims& dims, std::optional<int64_t> correction,
                                           bool keepdim = false) {
  return {var(x, dims, correction, keepdim), mean(x, dims, keepdim)};
}
inline std::tuple<Tensor, Tensor> var_mean(const Tensor& x, bool unbiased = true) {
  return var_mean(x, Dims(), unbiased);
}
template <class I>
  requires(std::integral<I> && !std::same_as<I, bool>)
std::tuple<Tensor, Tensor> var_mean(const Tensor& x, I dim) {
  return var_mean(x, Dims(static_cast<int64_t>(dim)));
}
inline std::tuple<Tensor, Tensor> std_mean(const Tensor& x, const Dims& dims, bool unbiased = true, bool keepdim = false) {
  return {std(x, dims, unbiased, keepdim), mean(x, dims, keepdim)};
}
inline std::tuple<Tensor, Tensor> std_mean(const Tensor& x, const Dims& dims, std::optional<int64_t> correction,
                                           bool keepdim = false) {
  return {std(x, dims, correction, keepdim), mean(x, dims, keepdim)};
}
inline std::tuple<Tensor, Tensor> std_mean(const Tensor& x, bool unbiased = true) {
  return std_mean(x, Dims(), unbiased);
}
template <class I>
  requires(std::integral<I> && !std::same_as<I, bool>)
std::tuple<Tensor, Tensor> std_mean(const Tensor& x, I dim) {
  return std_mean(x, Dims(static_cast<int64_t>(dim)));
}

inline Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim = false) {
  detail::check_defined(x, "logsumexp");
  if (auto ac = NABLA_AUTOCAST(logsumexp, x)) return logsumexp(ac[0], dims, keepdim);
  Tensor xf = is_floating_point(x.dtype()) ? x : x.to(kFloat32);
  Tensor m = xf.detach().amax(dims, true);
  // shifting by the max keeps exp() in range; an infinite max would give inf - inf, so use 0
  m = where(m.abs().eq(detail::scalar_to_tensor(std::numeric_limits<double>::infinity())), detail::zero_like_scalar(m), m);
  Tensor out = (xf - m).exp().sum(dims, true).log() + m;
  if (keepdim) return out;
  detail::ReducePlan p = detail::plan_reduce(xf, dims, "logsumexp");
  Shape s;
  for (size_t d = 0; d < p.reduced.size(); ++d)
    if (!p.reduced[d]) s.push_back(xf.sizes()[d]);
  return out.reshape(s);
}

// ---- cumsum ---------------------------------------------------------------------------------

namespace detail {
// Inclusive prefix sums along d (from the end when reverse). The backward of one direction is
// the other, so cumsum is differentiable to any order.
inline Tensor cumsum_along(const Tensor& x, int64_t d, bool reverse) {
  Tensor out = empty(x.sizes(), x.options());
  if (out.numel() > 0) {
    if (x.dim() == 0) backend(x.device()).copy(out, x);  // one element is its own prefix sum
    else backend(x.device()).cumsum(out, x, d, reverse);
  }
  if (autograd::needs_grad(x))
    autograd::record("CumsumBackward0", out, {x}, [d, reverse](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{cumsum_along(g, d, !reverse)};
    });
  return out;
}
}  // namespace detail

// torch::cumsum: out[..., i, ...] = sum of x[..., :i+1, ...] along dim. The result has `dtype`
// when given (x is converted first), else x's dtype, or int64 for integer and bool inputs.
inline Tensor cumsum(const Tensor& x, int64_t dim, std::optional<DType> dtype = std::nullopt) {
  detail::check_defined(x, "cumsum");
  if (!dtype) {  // fp32_set_opt_dtype: autocast decides only when the caller did not
    if (auto ac = NABLA_AUTOCAST(cumsum, x)) return cumsum(ac[0], dim, dtype);
  }
  const int64_t d = wrap_dim(dim, x.dim(), "cumsum");
  const DType dt = dtype.value_or(is_floating_point(x.dtype()) ? x.dtype() : kInt64);
  if (dt == kBool) {  // a running logical or
    NoGradGuard no_grad;
    return ne(cumsum(x, d, kInt64), detail::scalar_to_tensor(0, kInt64));
  }
  return detail::cumsum_along(x.to(dt), d, false);  // to(): the gradient returns in x's dtype
}

// Sums g over broadcast dims so that it has `shape` (g's shape must be a broadcast of it).
inline Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.sizes() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  Dims dims;
  for (int64_t d = 0; d < g.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.sizes()[d] != 1)) dims.push_back(d);
  Tensor r = dims.empty() ? g : g.sum(dims, true);
  return r.reshape(shape);
}

// ---- Tensor members -----------------------------------------------------------------------

inline Tensor Tensor::sum() const { return nabla::sum(*this); }
inline Tensor Tensor::sum(const Dims& dims, bool keepdim) const { return nabla::sum(*this, dims, keepdim); }
inline Tensor Tensor::mean() const { return nabla::mean(*this); }
inline Tensor Tensor::mean(const Dims& dims, bool keepdim) const { return nabla::mean(*this, dims, keepdim); }
inline Tensor Tensor::prod() const { return nabla::prod(*this); }
inline Tensor Tensor::prod(const Dims& dims, bool keepdim) const { return nabla::prod(*this, dims, keepdim); }
inline Tensor Tensor::amax(const Dims& dims, bool keepdim) const { return nabla::amax(*this, dims, keepdim); }
inline Tensor Tensor::amin(const Dims& dims, bool keepdim) const { return nabla::amin(*this, dims, keepdim); }
inline Tensor Tensor::max() const { return nabla::amax(*this, Dims()); }
inline Tensor Tensor::min() const { return nabla::amin(*this, Dims()); }
inline Tensor Tensor::argmax(std::optional<int64_t> dim, bool keepdim) const { return nabla::argmax(*this, dim, keepdim); }
inline Tensor Tensor::argmin(std::optional<int64_t> dim, bool keepdim) const { return nabla::argmin(*this, dim, keepdim); }
inline Tensor Tensor::var(bool unbiased) const { return nabla::var(*this, Dims(), unbiased); }
inline Tensor Tensor::var(const Dims& dims, bool unbiased, bool keepdim) const { return nabla::var(*this, dims, unbiased, keepdim); }
inline Tensor Tensor::var(const Dims& dims, std::optional<int64_t> correction, bool keepdim) const {
  return nabla::var(*this, dims, correction, keepdim);
}
inline Tensor Tensor::std(bool unbiased) const { return nabla::std(*this, Dims(), unbiased); }
inline Tensor Tensor::std(const Dims& dims, bool unbiased, bool keepdim) const { return nabla::std(*this, dims, unbiased, keepdim); }
inline Tensor Tensor::std(const Dims& dims, std::optional<int64_t> correction, bool keepdim) const {
  return nabla::std(*this, dims, correction, keepdim);
}
inline Tensor Tensor::logsumexp(const Dims& dims, bool keepdim) const { return nabla::logsumexp(*this, dims, keepdim); }
inline Tensor Tensor::cumsum(int64_t dim, std::optional<DType> dtype) const { return nabla::cumsum(*this, dim, dtype); }

// ---- norm, all / any, isclose / allclose / equal (LibTorch's names and defaults) ------------------

// torch.norm / Tensor::norm: the p-norm over dims (all when empty), p = 2 by default; p = inf /
// -inf the largest / smallest |x|, p = 0 the count of non-zeros. The gradient is PyTorch's,
// 0 where the norm is 0 (sqrt's chain rule would give 0 * inf there).
inline Tensor norm(const Tensor& x, double p = 2.0, const Dims& dims = {}, bool keepdim = false) {
  detail::check_defined(x, "norm");
  if (auto ac = NABLA_AUTOCAST(norm, x)) return norm(ac[0], p, dims, keepdim);
  NABLA_CHECK(x.is_floating_point(), DTypeError, "norm: expected a floating-point tensor, got ", detail::describe(x));
  if (std::isinf(p)) return p > 0 ? amax(abs(x), dims, keepdim) : amin(abs(x), dims, keepdim);
  if (p == 0) {
    NoGradGuard ng;
    return sum(ne(x, detail::scalar_to_tensor(0, x.dtype())).to(x.dtype()), dims, keepdim);
  }
  if (p == 1) return sum(abs(x), dims, keepdim);
  Tensor out;
  {
    NoGradGuard ng;
    out = p == 2 ? sqrt(sum(x * x, dims, keepdim)) : pow(sum(pow(abs(x), p), dims, keepdim), 1.0 / p);
  }
  if (autograd::needs_grad(x))
    autograd::record("NormBackward0", out, {x},
                     [xs = autograd::save(x), n = out.detach(), p, dims, keepdim](const Tensor& g, autograd::NeedsGrad) {
                       Tensor xv = xs.unpack();
                       // g and the norm back to x's rank (keepdim's shape), then broadcast
                       Tensor gk = g, nk = n;
                       if (!keepdim) {
                         Shape kept = xv.sizes();
                         if (dims.empty()) {
                           for (auto& d : kept) d = 1;
                         } else {
                           for (int64_t d : dims) kept[static_cast<size_t>(d < 0 ? d + xv.dim() : d)] = 1;
                         }
                         gk = g.reshape(kept), nk = n.reshape(kept);
                       }
                       // building a second-order graph: the norm again, as a function of x
                       if (GradMode::is_enabled())
                         nk = p == 2 ? sqrt(sum(xv * xv, dims, true)) : pow(sum(pow(abs(xv), p), dims, true), 1.0 / p);
                       Tensor zero = eq(nk, detail::scalar_to_tensor(0, nk.dtype()));
                       Tensor safe = where(zero, detail::scalar_to_tensor(1, nk.dtype()), nk);
                       Tensor scale = p == 2 ? xv / safe : xv * pow(abs(xv), p - 2) / pow(safe, p - 1);
                       return TensorList{where(zero, detail::scalar_to_tensor(0, xv.dtype()), gk * scale)};
                     });
  return out;
}
inline Tensor Tensor::norm(double p) const { return nabla::norm(*this, p); }
inline Tensor Tensor::norm(double p, const Dims& dims, bool keepdim) const { return nabla::norm(*this, p, dims, keepdim); }

// torch.all / torch.any: bool, over dims (all when empty); no gradient.
inline Tensor all(const Tensor& x, const Dims& dims = {}, bool keepdim = false) {
  detail::check_defined(x, "all");
  NoGradGuard ng;
  return eq(sum(eq(x, detail::scalar_to_tensor(0, x.dtype())), dims, keepdim), detail::scalar_to_tensor(0, kInt64));
}
inline Tensor any(const Tensor& x, const Dims& dims = {}, bool keepdim = false) {
  detail::check_defined(x, "any");
  NoGradGuard ng;
  return gt(sum(ne(x, detail::scalar_to_tensor(0, x.dtype())), dims, keepdim), detail::scalar_to_tensor(0, kInt64));
}
inline Tensor Tensor::all() const { return nabla::all(*this); }
inline Tensor Tensor::all(int64_t dim, bool keepdim) const { return nabla::all(*this, Dims(dim), keepdim); }
inline Tensor Tensor::any() const { return nabla::any(*this); }
inline Tensor Tensor::any(int64_t dim, bool keepdim) const { return nabla::any(*this, Dims(dim), keepdim); }

// torch.isclose: |a - b| <= atol + rtol |b| (finite differences only), or a == b (infinities of
// one sign), or both NaN when equal_nan. Broadcasts; bool, no gradient.
inline Tensor isclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false) {
  detail::check_defined(a, "isclose");
  detail::check_defined(b, "isclose");
  NABLA_CHECK(a.dtype() == b.dtype(), DTypeError, "isclose: a ", detail::describe(a), " and b ", detail::describe(b),
              " must have the same dtype (as PyTorch's)");
  NABLA_CHECK(rtol >= 0 && atol >= 0, ValueError, "isclose: rtol and atol must be non-negative, got ", rtol, " and ", atol);
  NoGradGuard ng;
  Tensor close = eq(a, b);
  if (!a.is_floating_point()) return close;
  if (equal_nan) close = logical_or(close, logical_and(ne(a, a), ne(b, b)));
  Tensor actual = abs(a - b), allowed = abs(b) * rtol + atol;
  Tensor finite = le(actual, detail::scalar_to_tensor(std::numeric_limits<double>::max(), kFloat64).to(actual.dtype()));
  return logical_or(close, logical_and(finite, le(actual, allowed)));
}
// torch.allclose: isclose everywhere (a bool on the host).
inline bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false) {
  return all(isclose(a, b, rtol, atol, equal_nan)).item<bool>();
}
// torch.equal: same shape and every element equal (NaN is not equal to itself).
inline bool equal(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "equal");
  detail::check_defined(b, "equal");
  if (a.sizes() != b.sizes()) return false;
  NoGradGuard ng;
  return all(eq(a, b)).item<bool>();
}
inline Tensor Tensor::isclose(const Tensor& other, double rtol, double atol, bool equal_nan) const {
  return nabla::isclose(*this, other, rtol, atol, equal_nan);
}
inline bool Tensor::allclose(const Tensor& other, double rtol, double atol, bool equal_nan) const {
  return nabla::allclose(*this, other, rtol, atol, equal_nan);
}
inline bool Tensor::equal(const Tensor& other) const { return nabla::equal(*this, other); }

}  // namespace nabla
