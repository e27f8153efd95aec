#pragma once
// Batch normalisation: fused kernels when the device has them (batch_norm_kernels()), else a
// composite of reductions and elementwise ops. The composite is the reference the
// kernels are tested against and the backward used under create_graph (double backward).

#include "conv.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

// Every tensor is contiguous, on the table's device, of x's dtype; undefined ones are absent.
struct BatchNormKernels {
  // Batch norm over dim 1 of x [N, C, *]. training: normalise with the batch mean and biased
  // variance, write save_mean / save_invstd [C] and, when defined, update running_mean /
  // running_var in place with the unbiased variance: r = (1 - momentum) r + momentum * stat.
  // eval: normalise with the running statistics (save_* undefined). weight / bias [C] may be
  // undefined (1 and 0).
  bool (*forward)(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                  const Tensor& weight, const Tensor& bias, const Tensor& running_mean, const Tensor& running_var,
                  bool training, double momentum, double eps) = nullptr;
  // Training-mode gradients from the saved batch statistics; each output may be undefined (not
  // needed). weight may be undefined (1).
  bool (*backward)(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias, const Tensor& grad_out,
                   const Tensor& x, const Tensor& weight, const Tensor& save_mean, const Tensor& save_invstd) = nullptr;
};
inline KernelTable<BatchNormKernels>& batch_norm_kernels() {
  static KernelTable<BatchNormKernels> table("batch_norm");
  return table;
}

// Batch normalisation over dim 1 of x [N, C, ...] (arguments in Python's F.batch_norm order).
// training: normalise with the batch's
// mean and biased variance, and update running_mean / running_var in place (no history) with
// the unbiased variance, as PyTorch; eval: normalise with the running statistics.
inline Tensor batch_norm_reference(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                   const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                                   bool training = false, double momentum = 0.1, double eps = 1e-5) {
  detail::check_defined(x, "batch_norm");
  NABLA_CHECK(x.dim() >= 2, ShapeError, "batch_norm: expected an input [N, C, ...], got ", detail::describe(x));
  const int64_t C = x.size(1);
  for (const Tensor* t : {&running_mean, &running_var, &weight, &bias})
    NABLA_CHECK(!t->defined() || (t->dim() == 1 && t->size(0) == C), ShapeError, "batch_norm: ", detail::describe(*t),
                " must be [", C, "] for input ", detail::describe(x));
  Shape bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = C;
  Dims dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor mean, var;
  if (training) {
    const int64_t n = x.numel() / std::max<int64_t>(C, 1);
    NABLA_CHECK(n > 1, ValueError, "batch_norm: expected more than 1 value per channel when training, got input ",
                detail::describe(x));
    mean = x.mean(dims, true);
    Tensor xc = x - mean;
    var = (xc * xc).mean(dims, true);
    if (running_mean.defined() || running_var.defined()) {
      NoGradGuard no_grad;
      if (running_mean.defined()) {
        Tensor rm = running_mean;
        rm.copy_(running_mean * (1.0 - momentum) + mean.detach().reshape({C}).to(running_mean.dtype()) * momentum);
      }
      if (running_var.defined()) {
        Tensor rv = running_var;
        const double unbias = static_cast<double>(n) / static_cast<double>(n - 1);
        rv.copy_(running_var * (1.0 - momentum) + var.detach().reshape({C}).to(running_var.dtype()) * (momentum * unbias));
      }
    }
    Tensor y = xc * (var + eps).rsqrt();
    if (weight.defined()) y = y * weight.reshape(bshape);
    if (bias.defined()) y = y + bias.reshape(bshape);
    return y;
  }
  NABLA_CHECK(running_mean.defined() && running_var.defined(), ValueError,
              "batch_norm: running_mean and running_var are needed in eval mode");
  Tensor y = (x - running_mean.reshape(bshape)) * (running_var.reshape(bshape) + eps).rsqrt();
  if (weight.defined()) y = y * weight.reshape(bshape);
  if (bias.defined()) y = y + bias.reshape(bshape);
  return y;
}


namespace detail {

// Training-mode gradients of batch norm in differentiable ops, from x, weight and the saved
// statistics (recomputed from x so that second derivatives see their dependence on x).
inline TensorList batch_norm_backward_composite(const Tensor& x, const Tensor& weight, const Tensor& g, double eps,
                                                autograd::NeedsGrad needs) {
  const int64_t C = x.size(1);
  Shape bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = C;
  Dims dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor mean = x.mean(dims, true), xc = x - mean;
  Tensor invstd = ((xc * xc).mean(dims, true) + eps).rsqrt();
  Tensor xhat = xc * invstd;
  TensorList out(3);
  if (needs[0]) {
    Tensor gxhat = weight.defined() ? g * weight.reshape(bshape) : g;
    out[0] = invstd * (gxhat - gxhat.mean(dims, true) - xhat * (gxhat * xhat).mean(dims, true));
  }
  if (needs[1]) out[1] = (g * xhat).sum(dims);
  if (needs[2]) out[2] = g.sum(dims);
  return out;
}

}  // namespace detail

// Batch normalisation over dim 1 of x [N, C, ...]; see batch_norm_reference for the semantics.
// The fused path saves the batch mean and inverse std and computes all three gradients in one
// kernel. LibTorch's torch::batch_norm argument order (weight and bias before the running
// statistics; every argument required; cudnn_enabled accepted and ignored). Python's
// F.batch_norm order is nn::functional::batch_norm.
inline Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                         const Tensor& running_var, bool training, double momentum, double eps,
                         bool cudnn_enabled) {
  detail::check_defined(x, "batch_norm");
  NABLA_CHECK(x.dim() >= 2, ShapeError, "batch_norm: expected an input [N, C, ...], got ", detail::describe(x));
  NABLA_NO_AUTOCAST();  // on no autocast list: runs in its input's dtype, as PyTorch's kernel
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled);
    scope.record("BatchNorm", {x, weight, bias, running_mean, running_var}, {y},
                 {{"training", int64_t{training}}, {"epsilon", eps}, {"momentum", momentum}});
    return y;
  }
  if (training && autograd::checkpoint_recomputing() && (running_mean.defined() || running_var.defined()))
    // a checkpointed region run again for backward: the same batch, so the running statistics
    // (updated by the first run) are left alone; the batch statistics are recomputed as before
    return batch_norm(x, weight, bias, Tensor(), Tensor(), training, momentum, eps, cudnn_enabled);
  if (x.dtype() == kFloat16 || x.dtype() == kBFloat16) {
    // A 16-bit input with float32 weight, bias or statistics (autocast's mixed types): computed in
    // float32, the result in the input's dtype, the running statistics updated in place in theirs.
    bool mixed = false;
    for (const Tensor* t : {&weight, &bias, &running_mean, &running_var})
      mixed = mixed || (t->defined() && t->dtype() != x.dtype());
    auto f32 = [](const Tensor& t) { return t.defined() ? t.to(kFloat32) : t; };
    if (mixed)
      return batch_norm(x.to(kFloat32), f32(weight), f32(bias), running_mean, running_var, training, momentum, eps,
                        cudnn_enabled)
          .to(x.dtype());
  }
  const int64_t C = x.size(1);
  bool fusable = x.is_floating_point() && x.numel() > 0 && (training || (running_mean.defined() && running_var.defined()));
  for (const Tensor* t : {&running_mean, &running_var, &weight, &bias}) {
    NABLA_CHECK(!t->defined() || (t->dim() == 1 && t->size(0) == C), ShapeError, "batch_norm: ", detail::describe(*t),
                " must be [", C, "] for input ", detail::describe(x));
    NABLA_CHECK(!t->defined() || t->device() == x.device(), DeviceError, "batch_norm: expected all tensors on one device, got ",
                detail::describe(*t), " for input ", detail::describe(x));
    if (t->defined()) fusable = fusable && t->dtype() == x.dtype() && t->device() == x.device() && t->is_contiguous();
  }
  if (training) {
    NABLA_CHECK(x.numel() / std::max<int64_t>(C, 1) > 1, ValueError,
                "batch_norm: expected more than 1 value per channel when training, got input ", detail::describe(x));
  }
  const bool want_graph = autograd::needs_grad(x, weight, bias);
  const BatchNormKernels* k = fusable ? batch_norm_kernels().find(x.device(), x.dtype()) : nullptr;
  if (k && k->forward && (training || !want_graph)) {  // eval with a graph: the composite's affine map is as cheap
    Tensor xc = x.detach().contiguous();
    Tensor out = empty(x.sizes(), x.options().requires_grad(false));
    Tensor save_mean = training ? empty({C}, x.options().requires_grad(false)) : Tensor();
    Tensor save_invstd = training ? empty({C}, x.options().requires_grad(false)) : Tensor();
    auto plain = [](const Tensor& t) { return t.defined() ? t.detach() : t; };
    if (k->forward(out, save_mean, save_invstd, xc, plain(weight), plain(bias), running_mean, running_var, training,
                   momentum, eps)) {
      batch_norm_kernels().count(x.device());
      if (training && running_mean.defined()) detail::bump_version(running_mean);
      if (training && running_var.defined()) detail::bump_version(running_var);
      if (!want_graph) return out;
      autograd::record("NativeBatchNormBackward0", out, {x, weight, bias},
                         [xs = autograd::save(x), ws = autograd::save(weight), save_mean, save_invstd, eps, k](
                             const Tensor& g, autograd::NeedsGrad needs) {
                           Tensor xv = xs.unpack(), wv = ws.unpack();
                           if (GradMode::is_enabled() || !fused_kernels_enabled() || !k->backward) return detail::batch_norm_backward_composite(xv, wv, g, eps, needs);
                           auto maybe = [&](bool need, const Shape& s) {
                             return need ? empty(s, g.options().requires_grad(false)) : Tensor();
                           };
                           TensorList out{maybe(needs[0], xv.sizes()), maybe(needs[1], {xv.size(1)}),
                                          maybe(needs[2], {xv.size(1)})};
                           if (!k->backward(out[0], out[1], out[2], g.contiguous(), xv.detach().contiguous(),
                                            wv.defined() ? wv.detach().contiguous() : wv, save_mean, save_invstd))
                             return detail::batch_norm_backward_composite(xv, wv, g, eps, needs);
                           batch_norm_kernels().count(g.device());
                           return out;
                         });
      return out;
    }
  }
  return batch_norm_reference(x, running_mean, running_var, weight, bias, training, momentum, eps);
}

}  // namespace nabla
