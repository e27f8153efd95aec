#pragma once
// Binary elementwise ops with NumPy broadcasting and PyTorch type promotion: add sub mul div
// pow maximum minimum, comparisons, logical and/or, where, masked_fill and tril / triu (a where
// against a triangular mask), plus their in-place forms. Gradients come back in the broadcast
// shape; the engine sums them to each input's shape.

#include "autocast.hpp"
#include "copy.hpp"

namespace nabla {
namespace detail {

inline Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, DType compute,
                             DType out_dtype) {
  check_defined(a, name);
  check_defined(b, name);
  Device dev = common_device(name, {a, b});
  Shape shape = broadcast_shapes(a.sizes(), b.sizes(), name);
  Tensor out = empty(shape, TensorOptions(out_dtype).device(dev));
  if (out.numel() > 0) backend(dev).binary(op, out, cast(a, compute), cast(b, compute));
  if (trace::active()) trace::record(op_name(op), {a, b}, {out}, {{"dtype", static_cast<int64_t>(compute)}});
  return out;
}

inline Tensor arith_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  DType dt = result_type({a, b});
  return binary_forward(op, name, a, b, dt, dt);
}

inline Tensor wrap(const Scalar& s) { return scalar_to_tensor(s); }
inline Tensor zero_like_scalar(const Tensor& g) { return scalar_to_tensor(0, g.dtype()); }

}  // namespace detail

inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_defined(cond, "where");
  detail::check_defined(a, "where");
  detail::check_defined(b, "where");
  NABLA_CHECK(cond.dtype() == kBool, DTypeError, "where: condition must be a bool tensor, got ", detail::describe(cond));
  Device dev = detail::common_device("where", {cond, a, b});
  Shape shape = broadcast_shapes(broadcast_shapes(cond.sizes(), a.sizes(), "where"), b.sizes(), "where");
  DType dt = detail::result_type({a, b});
  Tensor out = empty(shape, TensorOptions(dt).device(dev));
  if (out.numel() > 0) backend(dev).where(out, cond, detail::cast(a, dt), detail::cast(b, dt));
  if (trace::active()) trace::record("Where", {cond, a, b}, {out}, {{"dtype", static_cast<int64_t>(dt)}});
  if (autograd::needs_grad(a, b))
    autograd::record("WhereBackward0", out, {a, b}, [c = autograd::save(cond)](const Tensor& g, autograd::NeedsGrad need) {
      Tensor cv = c.unpack(), z = detail::zero_like_scalar(g);
      return TensorList{need[0] ? where(cv, g, z) : Tensor(), need[1] ? where(cv, z, g) : Tensor()};
    });
  return out;
}
inline Tensor where(const Tensor& cond, const Tensor& a, Scalar b) { return where(cond, a, detail::wrap(b)); }
inline Tensor where(const Tensor& cond, Scalar a, const Tensor& b) { return where(cond, detail::wrap(a), b); }

inline Tensor add(const Tensor& a, const Tensor& b, Scalar alpha = 1) {
  if (alpha.to_double() != 1.0) return add(a, b * alpha);
  Tensor out = detail::arith_forward(BinaryOp::Add, "add", a, b);
  if (autograd::needs_grad(a, b))
    autograd::record("AddBackward0", out, {a, b}, [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g, g}; });
  return out;
}

inline Tensor sub(const Tensor& a, const Tensor& b, Scalar alpha = 1) {
  detail::check_defined(a, "sub");
  detail::check_defined(b, "sub");
  NABLA_CHECK(!(a.dtype() == kBool && b.dtype() == kBool), DTypeError,
              "sub: subtracting two bool tensors is not supported; use logical ops instead");
  if (alpha.to_double() != 1.0) return sub(a, b * alpha);
  Tensor out = detail::arith_forward(BinaryOp::Sub, "sub", a, b);
  if (autograd::needs_grad(a, b))
    autograd::record("SubBackward0", out, {a, b}, [](const Tensor& g, autograd::NeedsGrad need) {
      return TensorList{g, need[1] ? -g : Tensor()};
    });
  return out;
}

inline Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = detail::arith_forward(BinaryOp::Mul, "mul", a, b);
  if (autograd::needs_grad(a, b))
    autograd::record("MulBackward0", out, {a, b},
                     [sa = autograd::save(a), sb = autograd::save(b)](const Tensor& g, autograd::NeedsGrad need) {
                       return TensorList{need[0] ? g * sb.unpack() : Tensor(), need[1] ? g * sa.unpack() : Tensor()};
                     });
  return out;
}

// True division: integer inputs give float32, like PyTorch.
inline Tensor div(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "div");
  detail::check_defined(b, "div");
  DType dt = detail::result_type({a, b});
  if (!is_floating_point(dt)) dt = kFloat32;
  Tensor out = detail::binary_forward(BinaryOp::Div, "div", a, b, dt, dt);
  if (autograd::needs_grad(a, b))
    autograd::record("DivBackward0", out, {a, b},
                     [sa = autograd::save(a), sb = autograd::save(b)](const Tensor& g, autograd::NeedsGrad need) {
                       Tensor bv = sb.unpack();
                       return TensorList{need[0] ? g / bv : Tensor(), need[1] ? -g * sa.unpack() / (bv * bv) : Tensor()};
                     });
  return out;
}

inline Tensor pow(const Tensor& a, const Tensor& b) {
  if (auto ac = NABLA_AUTOCAST(pow, a, b)) return pow(ac[0], ac[1]);
  Tensor out = detail::arith_forward(BinaryOp::Pow, "pow", a, b);
  if (autograd::needs_grad(a, b))
    autograd::record("PowBackward1", out, {a, b},
                     [sa = autograd::save(a), sb = autograd::save(b), so = autograd::save_output(out)](
                         const Tensor& g, autograd::NeedsGrad need) {
                       Tensor av = sa.unpack(), bv = sb.unpack();
                       Tensor ga, gb;
                       if (need[0]) ga = g * bv * av.pow(bv - 1);
                       if (need[1]) {  // d/db a^b = a^b log a, taken as 0 where a == 0 and b >= 0
                         Tensor d = g * so.unpack() * av.log();
                         gb = where(av.eq(detail::zero_like_scalar(av)).logical_and(bv.ge(detail::zero_like_scalar(bv))), detail::zero_like_scalar(d), d);
                       }
                       return TensorList{ga, gb};
                     });
  return out;
}
inline Tensor pow(const Tensor& a, Scalar e) {
  detail::check_defined(a, "pow");
  if (auto ac = NABLA_AUTOCAST(pow, a)) return pow(ac[0], e);
  Tensor out = detail::arith_forward(BinaryOp::Pow, "pow", a, detail::wrap(e));
  if (autograd::needs_grad(a))
    autograd::record("PowBackward0", out, {a}, [sa = autograd::save(a), e](const Tensor& g, autograd::NeedsGrad) {
      double ev = e.to_double();
      if (ev == 0.0) return TensorList{g * 0};
      Tensor av = sa.unpack();
      return TensorList{ev == 2.0 ? g * av * 2 : g * av.pow(ev - 1.0) * ev};
    });
  return out;
}
inline Tensor pow(Scalar base, const Tensor& e) { return pow(detail::wrap(base), e); }

namespace detail {
// maximum / minimum: the gradient goes to the selected input, split in half on ties.
inline Tensor extremum(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = arith_forward(op, name, a, b);
  if (autograd::needs_grad(a, b))
    autograd::record(op == BinaryOp::Maximum ? "MaximumBackward0" : "MinimumBackward0", out, {a, b},
                     [sa = autograd::save(a), sb = autograd::save(b), op](const Tensor& g, autograd::NeedsGrad need) {
                       Tensor av = sa.unpack(), bv = sb.unpack(), z = zero_like_scalar(g);
                       Tensor tie = av.eq(bv), half = g * 0.5;
                       Tensor a_wins = op == BinaryOp::Maximum ? av.gt(bv) : av.lt(bv);
                       Tensor b_wins = op == BinaryOp::Maximum ? av.lt(bv) : av.gt(bv);
                       return TensorList{need[0] ? where(tie, half, where(a_wins, g, z)) : Tensor(),
                                         need[1] ? where(tie, half, where(b_wins, g, z)) : Tensor()};
                     });
  return out;
}
inline Tensor compare(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  return binary_forward(op, name, a, b, result_type({a, b}), kBool);
}
}  // namespace detail

inline Tensor maximum(const Tensor& a, const Tensor& b) { return detail::extremum(BinaryOp::Maximum, "maximum", a, b); }
inline Tensor minimum(const Tensor& a, const Tensor& b) { return detail::extremum(BinaryOp::Minimum, "minimum", a, b); }
inline Tensor eq(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Eq, "eq", a, b); }
inline Tensor ne(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Ne, "ne", a, b); }
inline Tensor lt(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Lt, "lt", a, b); }
inline Tensor le(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Le, "le", a, b); }
inline Tensor gt(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Gt, "gt", a, b); }
inline Tensor ge(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::Ge, "ge", a, b); }
inline Tensor logical_and(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::LogicalAnd, "logical_and", a, b); }
inline Tensor logical_or(const Tensor& a, const Tensor& b) { return detail::compare(BinaryOp::LogicalOr, "logical_or", a, b); }
inline Tensor logical_not(const Tensor& a) { return detail::compare(BinaryOp::Eq, "logical_not", a, detail::scalar_to_tensor(0, a.dtype())); }

// x with `value` wherever mask is true; mask must broadcast to x's shape. Keeps x's dtype.
inline Tensor masked_fill(const Tensor& x, const Tensor& mask, Scalar value) {
  detail::check_defined(x, "masked_fill");
  detail::check_defined(mask, "masked_fill");
  NABLA_CHECK(mask.dtype() == kBool, DTypeError, "masked_fill: mask must be a bool tensor, got ", detail::describe(mask));
  NABLA_CHECK(is_expandable_to(mask.sizes(), x.sizes()), ShapeError, "masked_fill: mask ", detail::describe(mask),
              " cannot be broadcast to ", detail::describe(x));
  NABLA_CHECK(!(value.is_floating_point() && !is_floating_point(x.dtype())), DTypeError, "masked_fill: cannot fill ",
              detail::describe(x), " with the floating-point value ", value);
  return where(mask, detail::scalar_to_tensor(value, x.dtype()), x);
}

namespace detail {
// x with the elements above (lower: tril) or below (upper: triu) the `diagonal`-th diagonal of
// its last two dims set to zero: one `where` against a [rows, cols] mask of column - row offsets.
inline Tensor triangle(const Tensor& x, int64_t diagonal, bool lower, const char* name) {
  check_defined(x, name);
  NABLA_CHECK(x.dim() >= 2, ShapeError, name, ": input tensor must have at least 2 dimensions, got ", describe(x));
  Tensor out = empty(x.sizes(), x.options());
  if (out.numel() == 0) return out;
  const int64_t rows = x.size(-2), cols = x.size(-1);
  const TensorOptions index = TensorOptions(kInt64).device(x.device());
  const Tensor offset = arange(0, cols, 1, index) - arange(0, rows, 1, index).reshape({rows, 1});
  const Tensor keep = lower ? offset.le(diagonal) : offset.ge(diagonal);
  backend(x.device()).where(out, keep, x, scalar_to_tensor(0, x.dtype()));
  return out;
}
}  // namespace detail

// torch::tril / torch::triu: the lower (upper) triangle of the last two dims, from the
// `diagonal`-th diagonal (0 the main one, > 0 above it, < 0 below), the rest zero.
inline Tensor tril(const Tensor& x, int64_t diagonal = 0) {
  Tensor out = detail::triangle(x, diagonal, true, "tril");
  if (autograd::needs_grad(x))
    autograd::record("TrilBackward0", out, {x}, [diagonal](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{tril(g, diagonal)};
    });
  return out;
}
inline Tensor triu(const Tensor& x, int64_t diagonal = 0) {
  Tensor out = detail::triangle(x, diagonal, false, "triu");
  if (autograd::needs_grad(x))
    autograd::record("TriuBackward0", out, {x}, [diagonal](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{triu(g, diagonal)};
    });
  return out;
}

// ---- in-place ------------------------------------------------------------------------------

namespace detail {
// self op= other. Without autograd the kernel writes straight into self; with it, the result
// is computed out of place (on a clone of self, so saved values stay valid) and committed.
template <class OutOfPlace>
const Tensor& binary_inplace(const Tensor& self, const Tensor& other, BinaryOp op, const char* name, OutOfPlace f) {
  check_inplace(self, name);
  check_defined(other, name);
  common_device(name, {self, other});
  NABLA_CHECK(is_expandable_to(other.sizes(), self.sizes()), ShapeError, name, ": ", describe(other),
              " cannot be broadcast to the in-place output ", describe(self));
  if (GradMode::is_enabled() && (self.requires_grad() || other.requires_grad())) {
    // x.op_(x): the op gets an alias of x that carries x's current history, so the new node does
    // not save x itself (x's new grad_fn would own x: a reference cycle that is never freed)
    Tensor o = other;
    if (other.is_same(self)) {
      o = make_tensor(self.storage(), self.storage_offset(), self.sizes(), self.strides(), self.dtype());
      auto& m = o.impl()->autograd_meta();
      m.requires_grad = true;
      m.grad_fn = self.grad_fn();
    }
    return commit_inplace(self, f(self.clone(), o), name);
  }
  DType rt = op == BinaryOp::Div && !is_floating_point(result_type({self, other})) ? kFloat32 : result_type({self, other});
  NABLA_CHECK(can_cast(rt, self.dtype()), DTypeError, name, ": result type ", dtype_name(rt),
              " cannot be written into ", describe(self));
  bool overlap = other.storage() == self.storage() &&
                 !(other.sizes() == self.sizes() && other.strides() == self.strides() &&
                   other.storage_offset() == self.storage_offset());
  if (rt == self.dtype() && !overlap && self.numel() > 0) {
    backend(self.device()).binary(op, self, self, cast(other, rt));
  } else if (self.numel() > 0) {
    Tensor r = f(self, other);
    copy_backend(self, r).copy(self, r);
  }
  bump_version(self);
  return self;
}
}  // namespace detail

inline const Tensor& Tensor::add_(const Tensor& other, Scalar alpha) const {
  if (alpha.to_double() != 1.0) return add_(other * alpha);
  return detail::binary_inplace(*this, other, BinaryOp::Add, "add_", [](const Tensor& a, const Tensor& b) { return nabla::add(a, b); });
}
inline const Tensor& Tensor::sub_(const Tensor& other, Scalar alpha) const {
  if (alpha.to_double() != 1.0) return sub_(other * alpha);
  return detail::binary_inplace(*this, other, BinaryOp::Sub, "sub_", [](const Tensor& a, const Tensor& b) { return nabla::sub(a, b); });
}
inline const Tensor& Tensor::mul_(const Tensor& other) const {
  return detail::binary_inplace(*this, other, BinaryOp::Mul, "mul_", [](const Tensor& a, const Tensor& b) { return nabla::mul(a, b); });
}
inline const Tensor& Tensor::div_(const Tensor& other) const {
  return detail::binary_inplace(*this, other, BinaryOp::Div, "div_", [](const Tensor& a, const Tensor& b) { return nabla::div(a, b); });
}
inline const Tensor& Tensor::add_(Scalar other) const { return add_(detail::wrap(other)); }
inline const Tensor& Tensor::sub_(Scalar other) const { return sub_(detail::wrap(other)); }
inline const Tensor& Tensor::mul_(Scalar other) const { return mul_(detail::wrap(other)); }
inline const Tensor& Tensor::div_(Scalar other) const { return div_(detail::wrap(other)); }
inline const Tensor& Tensor::pow_(Scalar e) const {
  return detail::binary_inplace(*this, detail::wrap(e), BinaryOp::Pow, "pow_",
                                [e](const Tensor& a, const Tensor&) { return nabla::pow(a, e); });
}
inline Tensor Tensor::tril(int64_t diagonal) const { return nabla::tril(*this, diagonal); }
inline Tensor Tensor::triu(int64_t diagonal) const { return nabla::triu(*this, diagonal); }
namespace detail {
template <class OutOfPlace>
const Tensor& triangle_inplace(const Tensor& self, const char* name, OutOfPlace f) {
  check_inplace(self, name);
  if (GradMode::is_enabled() && self.requires_grad()) return commit_inplace(self, f(self.clone()), name);
  Tensor r = f(self);
  copy_backend(self, r).copy(self, r);
  bump_version(self);
  return self;
}
}  // namespace detail
inline const Tensor& Tensor::tril_(int64_t diagonal) const {
  return detail::triangle_inplace(*this, "tril_", [diagonal](const Tensor& x) { return nabla::tril(x, diagonal); });
}
inline const Tensor& Tensor::triu_(int64_t diagonal) const {
  return detail::triangle_inplace(*this, "triu_", [diagonal](const Tensor& x) { return nabla::triu(x, diagonal); });
}
inline const Tensor& Tensor::masked_fill_(const Tensor& mask, Scalar value) const {
  detail::check_inplace(*this, "masked_fill_");
  if (GradMode::is_enabled() && requires_grad())
    return detail::commit_inplace(*this, nabla::masked_fill(clone(), mask, value), "masked_fill_");
  Tensor r = nabla::masked_fill(*this, mask, value);
  detail::copy_backend(*this, r).copy(*this, r);
  detail::bump_version(*this);
  return *this;
}

}  // namespace nabla

