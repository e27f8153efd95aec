#pragma once
// Unary elementwise ops and their in-place forms. Float-only math (exp, log, tanh, ...) on an
// integer tensor returns float32, as in PyTorch. Each op's backward sits right under it.

#include <string>

#include "../backend/kernel_table.hpp"
#include "binary.hpp"

namespace nabla {
namespace detail {

inline Tensor unary_forward(UnaryOp op, const char* name, const Tensor& x, UnaryParams p = {}) {
  check_defined(x, name);
  DType dt = x.dtype();
  if (is_float_unary(op) && !is_floating_point(dt)) dt = kFloat32;
  Tensor out = empty(x.sizes(), TensorOptions(dt).device(x.device()));
  if (out.numel() > 0) backend(x.device()).unary(op, out, cast(x, dt), p);
  if (trace::active()) trace::record(op_name(op), {x}, {out}, {{"dtype", static_cast<int64_t>(dt)}, {"a", p.a}, {"b", p.b}});
  return out;
}

template <class F>
void record_unary(const char* name, const Tensor& out, const Tensor& x, F&& backward) {
  if (autograd::needs_grad(x)) autograd::record(name, out, {x}, std::forward<F>(backward));
}

using autograd::NeedsGrad;
using autograd::save;
using autograd::save_output;

}  // namespace detail

inline Tensor neg(const Tensor& x) {
  detail::check_defined(x, "neg");
  NABLA_CHECK(x.dtype() != kBool, DTypeError, "neg: not supported for bool tensors; use logical_not");
  Tensor out = detail::unary_forward(UnaryOp::Neg, "neg", x);
  detail::record_unary("NegBackward0", out, x, [](const Tensor& g, detail::NeedsGrad) { return TensorList{-g}; });
  return out;
}
inline Tensor abs(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Abs, "abs", x);
  detail::record_unary("AbsBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g * s.unpack().sign()};
  });
  return out;
}
inline Tensor sign(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Sign, "sign", x);
  detail::record_unary("SignBackward0", out, x, [](const Tensor& g, detail::NeedsGrad) { return TensorList{g * 0}; });
  return out;
}
inline Tensor square(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Square, "square", x);
  detail::record_unary("PowBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g * s.unpack() * 2};
  });
  return out;
}
namespace detail {
// relu's vjp in one pass over g: g where y = relu(x) > 0, else 0. Linear in g with the same
// mask, so its own vjp is itself (nothing flows to y: relu is piecewise linear), and double
// backward stays exact.
inline Tensor relu_backward(const Tensor& g, const Tensor& y) {
  Tensor out = binary_forward(BinaryOp::ReluBackward, "relu_backward", g, y, g.dtype(), g.dtype());
  if (autograd::needs_grad(g))
    autograd::record("ReluBackwardBackward0", out, {g}, [ys = save(y.detach())](const Tensor& gg, NeedsGrad) {
      return TensorList{relu_backward(gg, ys.unpack())};
    });
  return out;
}
}  // namespace detail

inline Tensor relu(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Relu, "relu", x);
  detail::record_unary("ReluBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{detail::relu_backward(g, s.unpack().detach())};
  });
  return out;
}
inline Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01) {
  Tensor out = detail::unary_forward(UnaryOp::LeakyRelu, "leaky_relu", x, {negative_slope, 0.0});
  detail::record_unary("LeakyReluBackward0", out, x, [s = detail::save(x), negative_slope](const Tensor& g, detail::NeedsGrad) {
    Tensor xv = s.unpack();
    return TensorList{where(xv.gt(detail::zero_like_scalar(xv)), g, g * negative_slope)};
  });
  return out;
}
inline Tensor clamp(const Tensor& x, std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) {
  detail::check_defined(x, "clamp");
  NABLA_CHECK(min || max, ValueError, "clamp: at least one of min and max must be given");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double lo = min ? min->to_double() : nan, hi = max ? max->to_double() : nan;
  Tensor out = detail::unary_forward(UnaryOp::Clamp, "clamp", x, {lo, hi});
  detail::record_unary("ClampBackward0", out, x, [s = detail::save(x), min, max](const Tensor& g, detail::NeedsGrad) {
    Tensor xv = s.unpack();
    Tensor keep;
    if (min) keep = xv.ge(detail::scalar_to_tensor(*min));
    if (max) {
      Tensor k2 = xv.le(detail::scalar_to_tensor(*max));
      keep = keep.defined() ? keep.logical_and(k2) : k2;
    }
    return TensorList{where(keep, g, detail::zero_like_scalar(g))};
  });
  return out;
}
inline Tensor exp(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(exp, x)) return exp(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Exp, "exp", x);
  detail::record_unary("ExpBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g * s.unpack()};
  });
  return out;
}
inline Tensor log(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(log, x)) return log(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Log, "log", x);
  detail::record_unary("LogBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g / s.unpack()};
  });
  return out;
}
inline Tensor log1p(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(log1p, x)) return log1p(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Log1p, "log1p", x);
  detail::record_unary("Log1pBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g / (s.unpack() + 1)};
  });
  return out;
}
inline Tensor expm1(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(expm1, x)) return expm1(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Expm1, "expm1", x);
  detail::record_unary("Expm1Backward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g * (s.unpack() + 1)};
  });
  return out;
}
inline Tensor sqrt(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Sqrt, "sqrt", x);
  detail::record_unary("SqrtBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g / (s.unpack() * 2)};
  });
  return out;
}
inline Tensor rsqrt(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(rsqrt, x)) return rsqrt(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Rsqrt, "rsqrt", x);
  detail::record_unary("RsqrtBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    Tensor y = s.unpack();
    return TensorList{g * y * y * y * -0.5};
  });
  return out;
}
inline Tensor reciprocal(const Tensor& x) {
  if (auto ac = NABLA_AUTOCAST(reciprocal, x)) return reciprocal(ac[0]);
  Tensor out = detail::unary_forward(UnaryOp::Reciprocal, "reciprocal", x);
  detail::record_unary("ReciprocalBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    Tensor y = s.unpack();
    return TensorList{-g * y * y};
  });
  return out;
}
inline Tensor sin(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Sin, "sin", x);
  detail::record_unary("SinBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{g * s.unpack().cos()};
  });
  return out;
}
inline Tensor cos(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Cos, "cos", x);
  detail::record_unary("CosBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    return TensorList{-g * s.unpack().sin()};
  });
  return out;
}
inline Tensor tanh(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Tanh, "tanh", x);
  detail::record_unary("TanhBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    Tensor y = s.unpack();
    return TensorList{g * (1 - y * y)};
  });
  return out;
}
inline Tensor sigmoid(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Sigmoid, "sigmoid", x);
  detail::record_unary("SigmoidBackward0", out, x, [s = detail::save_output(out)](const Tensor& g, detail::NeedsGrad) {
    Tensor y = s.unpack();
    return TensorList{g * y * (1 - y)};
  });
  return out;
}
inline Tensor erf(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Erf, "erf", x);
  detail::record_unary("ErfBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    Tensor xv = s.unpack();
    return TensorList{g * (-xv * xv).exp() * 1.1283791670955126};  // 2 / sqrt(pi)
  });
  return out;
}
// approximate: "none" (exact, x * Phi(x)) or "tanh", as in PyTorch.
inline Tensor gelu(const Tensor& x, const std::string& approximate = "none") {
  NABLA_CHECK(approximate == "none" || approximate == "tanh", ValueError, "gelu: approximate must be 'none' or 'tanh', got '",
              approximate, "'");
  bool tanh_form = approximate == "tanh";
  Tensor out = detail::unary_forward(tanh_form ? UnaryOp::GeluTanh : UnaryOp::Gelu, "gelu", x);
  detail::record_unary("GeluBackward0", out, x, [s = detail::save(x), tanh_form](const Tensor& g, detail::NeedsGrad) {
    Tensor xv = s.unpack();
    if (!GradMode::is_enabled() && fused_kernels_enabled())  // one pass; the composite below is for double backward
      return TensorList{g * detail::unary_forward(tanh_form ? UnaryOp::GeluTanhGrad : UnaryOp::GeluGrad, "gelu_backward", xv)};
    if (!tanh_form) {
      Tensor cdf = ((xv * 0.7071067811865476).erf() + 1) * 0.5;
      Tensor pdf = (xv * xv * -0.5).exp() * 0.3989422804014327;  // 1 / sqrt(2 pi)
      return TensorList{g * (cdf + xv * pdf)};
    }
    const double k = 0.7978845608028654, c = 0.044715;
    Tensor x2 = xv * xv;
    Tensor t = (xv * k * (x2 * c + 1)).tanh();
    Tensor d = (t + 1) * 0.5 + xv * 0.5 * (1 - t * t) * k * (x2 * (3 * c) + 1);
    return TensorList{g * d};
  });
  return out;
}
inline Tensor silu(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Silu, "silu", x);
  detail::record_unary("SiluBackward0", out, x, [s = detail::save(x)](const Tensor& g, detail::NeedsGrad) {
    Tensor xv = s.unpack(), sg = xv.sigmoid();
    return TensorList{g * sg * (xv * (1 - sg) + 1)};
  });
  return out;
}
inline Tensor floor(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Floor, "floor", x);
  detail::record_unary("FloorBackward0", out, x, [](const Tensor& g, detail::NeedsGrad) { return TensorList{g * 0}; });
  return out;
}
inline Tensor ceil(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Ceil, "ceil", x);
  detail::record_unary("CeilBackward0", out, x, [](const Tensor& g, detail::NeedsGrad) { return TensorList{g * 0}; });
  return out;
}
inline Tensor round(const Tensor& x) {
  Tensor out = detail::unary_forward(UnaryOp::Round, "round", x);
  detail::record_unary("RoundBackward0", out, x, [](const Tensor& g, detail::NeedsGrad) { return TensorList{g * 0}; });
  return out;
}

// ---- in-place ------------------------------------------------------------------------------

namespace detail {
template <class F>
const Tensor& unary_inplace(const Tensor& self, UnaryOp op, const char* name, F out_of_place, UnaryParams p = {}) {
  check_inplace(self, name);
  if (GradMode::is_enabled() && self.requires_grad()) return commit_inplace(self, out_of_place(self.clone()), name);
  NABLA_CHECK(!is_float_unary(op) || is_floating_point(self.dtype()), DTypeError, name, ": result type float32 cannot be ",
              "written into ", describe(self));
  if (self.numel() > 0) backend(self.device()).unary(op, self, self, p);
  bump_version(self);
  return self;
}
}  // namespace detail

inline const Tensor& Tensor::neg_() const { return detail::unary_inplace(*this, UnaryOp::Neg, "neg_", [](const Tensor& x) { return nabla::neg(x); }); }
inline const Tensor& Tensor::exp_() const { return detail::unary_inplace(*this, UnaryOp::Exp, "exp_", [](const Tensor& x) { return nabla::exp(x); }); }
inline const Tensor& Tensor::log_() const { return detail::unary_inplace(*this, UnaryOp::Log, "log_", [](const Tensor& x) { return nabla::log(x); }); }
inline const Tensor& Tensor::sqrt_() const { return detail::unary_inplace(*this, UnaryOp::Sqrt, "sqrt_", [](const Tensor& x) { return nabla::sqrt(x); }); }
inline const Tensor& Tensor::abs_() const { return detail::unary_inplace(*this, UnaryOp::Abs, "abs_", [](const Tensor& x) { return nabla::abs(x); }); }
inline const Tensor& Tensor::tanh_() const { return detail::unary_inplace(*this, UnaryOp::Tanh, "tanh_", [](const Tensor& x) { return nabla::tanh(x); }); }
inline const Tensor& Tensor::sigmoid_() const {
  return detail::unary_inplace(*this, UnaryOp::Sigmoid, "sigmoid_", [](const Tensor& x) { return nabla::sigmoid(x); });
}
inline const Tensor& Tensor::relu_() const { return detail::unary_inplace(*this, UnaryOp::Relu, "relu_", [](const Tensor& x) { return nabla::relu(x); }); }
inline const Tensor& Tensor::clamp_(std::optional<Scalar> min, std::optional<Scalar> max) const {
  NABLA_CHECK(min || max, ValueError, "clamp_: at least one of min and max must be given");
  const double nan = std::numeric_limits<double>::quiet_NaN();
  return detail::unary_inplace(*this, UnaryOp::Clamp, "clamp_", [=](const Tensor& x) { return nabla::clamp(x, min, max); },
                               {min ? min->to_double() : nan, max ? max->to_double() : nan});
}

}  // namespace nabla

