#pragma once
// softmax and log_softmax along one dim: one fused, numerically stable kernel forward; the
// backward is written in ops so it is differentiable again.

#include "reduce.hpp"

namespace nabla {
namespace detail {
inline Tensor softmax_forward(const Tensor& x, int64_t dim, bool log, const char* name) {
  check_defined(x, name);
  Tensor xf = is_floating_point(x.dtype()) ? x : x.to(kFloat32);
  if (xf.dim() == 0) xf = xf.reshape({1});
  int64_t d = wrap_dim(dim, xf.dim(), name);
  Tensor out = empty(xf.sizes(), xf.options());
  if (out.numel() > 0) backend(x.device()).softmax(out, xf, d, log);
  if (x.dim() == 0) out = make_tensor(out.storage(), 0, {}, {}, out.dtype());
  return out;
}
}  // namespace detail

inline Tensor softmax(const Tensor& x, int64_t dim) {
  if (auto ac = NABLA_AUTOCAST(softmax, x)) return softmax(ac[0], dim);
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = softmax(x, dim);
    scope.record("Softmax", {x}, {y}, {{"axis", wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "softmax")}});
    return y;
  }
  Tensor out = detail::softmax_forward(x, dim, false, "softmax");
  if (autograd::needs_grad(x))
    autograd::record("SoftmaxBackward0", out, {x}, [s = autograd::save_output(out), dim](const Tensor& g, autograd::NeedsGrad) {
      Tensor y = s.unpack();
      if (y.dim() == 0) return TensorList{g * 0};
      return TensorList{y * (g - (g * y).sum(dim, true))};
    });
  return out;
}

inline Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (auto ac = NABLA_AUTOCAST(log_softmax, x)) return log_softmax(ac[0], dim);
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = log_softmax(x, dim);
    scope.record("LogSoftmax", {x}, {y}, {{"axis", wrap_dim(dim, std::max<int64_t>(x.dim(), 1), "log_softmax")}});
    return y;
  }
  Tensor out = detail::softmax_forward(x, dim, true, "log_softmax");
  if (autograd::needs_grad(x))
    autograd::record("LogSoftmaxBackward0", out, {x}, [s = autograd::save_output(out), dim](const Tensor& g, autograd::NeedsGrad) {
      Tensor y = s.unpack();
      if (y.dim() == 0) return TensorList{g * 0};
      return TensorList{g - y.exp() * g.sum(dim, true)};
    });
  return out;
}

inline Tensor Tensor::softmax(int64_t dim) const { return nabla::softmax(*this, dim); }
inline Tensor Tensor::log_softmax(int64_t dim) const { return nabla::log_softmax(*this, dim); }

}  // namespace nabla

