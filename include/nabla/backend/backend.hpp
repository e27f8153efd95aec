#pragma once
// The Backend interface: what a device must provide. Ops do checks, shape and dtype rules and
// autograd; a backend only runs kernels on tensors that are already validated and allocated.
// The CPU backend is in backend/cpu; the CUDA one is compiled in backend/cuda/backend.cu.

#include <cstdint>

#include "../core/random.hpp"
#include "op_codes.hpp"
#include "../core/settings.hpp"
#include "cuda/api.hpp"
#include "../core/tensor.hpp"

namespace nabla {

// Parameters of the fused-kernel hooks below.
struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};
struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1,
          dilation_w = 1;
};
struct AdamStepParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  bool amsgrad = false;
  double step = 1;  // the step count after this step (1 on the first), for bias correction
};
struct SgdStepParams {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;  // momentum buffers are initialised to the gradient on this step
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Storage allocate(size_t nbytes, Device device) = 0;
  // dst = src; src broadcastable to dst's shape; dtypes may differ; one side may live on the CPU.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, const Scalar& value) = 0;
  // out (contiguous, 1-D): out[i] = start + i * step
  virtual void arange(const Tensor& out, double start, double step) = 0;
  // out (contiguous): out[i] = random_value(params, i), converted to out's dtype
  virtual void random(const Tensor& out, const RandomParams& params) = 0;

  // Elementwise: inputs are broadcastable to out's shape (a 0-dim input may be a CPU scalar
  // even for a device op). Unary: in has out's dtype. Binary: a and b share one dtype; out has
  // it too, or bool for comparisons.
  virtual void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& params) = 0;
  virtual void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // out = cond ? a : b (cond bool; a, b of out's dtype; all broadcastable to out)
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;

  // out has in's rank with size 1 in every reduced dim (a dim is reduced iff out has 1 and in
  // has not). Sum/Mean/Prod of integers write int64.
  virtual void reduce(ReduceOp op, const Tensor& out, const Tensor& in) = 0;
  // out (int64) has in's rank with size 1 at dim.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) = 0;
  virtual void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) = 0;

  // out[..., M, N] = a[..., M, K] @ b[..., K, N]; all three have the same batch dims (a and b
  // may carry stride-0 batch dims from broadcasting) and one dtype.
  virtual void matmul(const Tensor& out, const Tensor& a, const Tensor& b) = 0;

  // Index kernels; indices are int64 and have been range-checked by the caller only on the
  // CPU, so device backends must check (or clamp) them too.
  virtual void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  virtual void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  // IndexError naming `op` and `dim` if a value of `index` (int64) is outside [0, size). The CPU
  // raises it at once; a device may raise it at its next synchronisation (CUDA does, so that a
  // training loop never waits for the check).
  virtual void check_index_range(const Tensor& index, int64_t size, const char* op, int64_t dim) = 0;

  virtual void synchronize(Device) {}

  // ---- Optional fused kernels --------------------------------------------------------------
  // Each returns false when the backend has no kernel for the case (dtype, shape, library
  // missing); the op then runs as a composite of the primitives above. The composites stay the
  // reference the fused kernels are checked against, and what double backward differentiates.
  // Every tensor passed here is contiguous, on the backend's device, of one floating dtype.
  // Hooks may be called from any host thread (a DataLoader's prefetch thread included).

  // x [N, C, H, W], w [O, C / groups, kh, kw], bias [O] or undefined -> out [N, O, Ho, Wo]
  // (overwritten); zero padding of pad_h rows / pad_w columns on each side.
  virtual bool conv2d_forward(const Tensor& /*out*/, const Tensor& /*x*/, const Tensor& /*w*/,
                              const Tensor& /*bias*/, const Conv2dParams&) {
    return false;
  }
  // grad_x [N, C, H, W] (overwritten) = the input gradient for grad_out [N, O, Ho, Wo].
  virtual bool conv2d_backward_input(const Tensor& /*grad_x*/, const Tensor& /*grad_out*/, const Tensor& /*w*/,
                                     const Conv2dParams&) {
    return false;
  }
  // grad_w [O, C / groups, kh, kw] (overwritten); grad_bias [O] (overwritten, the sum of grad_out
  // over N, Ho, Wo) or undefined when the bias needs no gradient.
  virtual bool conv2d_backward_weight(const Tensor& /*grad_w*/, const Tensor& /*grad_bias*/,
                                      const Tensor& /*grad_out*/, const Tensor& /*x*/, const Conv2dParams&) {
    return false;
  }
  // out [N, C, Ho, Wo]; indices (int64, same shape) = h * W + w of the window's maximum within
  // its input plane: the first maximum in window order, NaN counting as the maximum. out's shape
  // defines the windows (window (oh, ow) starts at oh * stride - pad); elements outside the
  // input (padding, or past the edge with ceil_mode) are skipped, so a window whose inputs are
  // all -inf names its first input element. The backward pass is a scatter_add through indices.
  virtual bool max_pool2d_forward(const Tensor& /*out*/, const Tensor& /*indices*/, const Tensor& /*x*/,
                                  const Pool2dParams&) {
    return false;
  }
  // Batch norm over dim 1 of x [N, C, *]. training: normalise with the batch mean and biased
  // variance, write save_mean / save_invstd [C] (float32 for half inputs) and, when defined,
  // update running_mean / running_var in place with the unbiased variance:
  // r = (1 - momentum) r + momentum * stat. eval: normalise with the running statistics
  // (save_* undefined). weight / bias [C] may be undefined (1 and 0).
  virtual bool batch_norm_forward(const Tensor& /*out*/, const Tensor& /*save_mean*/, const Tensor& /*save_invstd*/,
                                  const Tensor& /*x*/, const Tensor& /*weight*/, const Tensor& /*bias*/,
                                  const Tensor& /*running_mean*/, const Tensor& /*running_var*/, bool /*training*/,
                                  double /*momentum*/, double /*eps*/) {
    return false;
  }
  // Training-mode gradients from the saved batch statistics; each output may be undefined
  // (not needed). weight may be undefined (1).
  virtual bool batch_norm_backward(const Tensor& /*grad_x*/, const Tensor& /*grad_weight*/,
                                   const Tensor& /*grad_bias*/, const Tensor& /*grad_out*/, const Tensor& /*x*/,
                                   const Tensor& /*weight*/, const Tensor& /*save_mean*/,
                                   const Tensor& /*save_invstd*/) {
    return false;
  }
  // out [M, N] = x [M, K] @ w [N, K]^T + bias [N] (always defined) in one GEMM with the bias in
  // its epilogue.
  virtual bool linear_forward(const Tensor& /*out*/, const Tensor& /*x*/, const Tensor& /*w*/,
                              const Tensor& /*bias*/) {
    return false;
  }
  // One optimizer step over many parameters at once (one launch on a GPU, not one per
  // parameter per operation). Lists are parallel and each entry's tensors have its parameter's
  // shape (the caller checks); params and state are updated in place. Semantics as torch.optim.Adam/AdamW and SGD (see optim/adam.hpp, sgd.hpp).
  virtual bool adam_step(const TensorList& /*params*/, const TensorList& /*grads*/, const TensorList& /*exp_avg*/,
                         const TensorList& /*exp_avg_sq*/, const TensorList& /*max_exp_avg_sq (amsgrad)*/,
                         const AdamStepParams&) {
    return false;
  }
  // momentum_buffers is empty when momentum == 0; on the first step (p.first_step) buffers are
  // set to the (weight-decayed) gradient rather than updated.
  virtual bool sgd_step(const TensorList& /*params*/, const TensorList& /*grads*/,
                        const TensorList& /*momentum_buffers*/, const SgdStepParams&) {
    return false;
  }
};

inline Backend& cpu_backend();  // defined in backend/cpu/cpu_backend.hpp

#if defined(NABLA_WITH_CUDA)
namespace cuda {
// Defined in backend/cuda/backend.cu, the one CUDA translation unit of nabla::cuda.
Backend& backend();
}  // namespace cuda
#endif

inline Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
#if defined(NABLA_WITH_CUDA)
  NABLA_CHECK(cuda::is_available(), DeviceError, "a tensor on ", device.str(),
              " was requested, but no CUDA device is available (no driver or no GPU) although the CUDA backend is "
              "linked");
  return cuda::backend();
#else
  throw DeviceError("nabla: a tensor on " + device.str() +
                    " needs the CUDA backend, but this program was built without it; link the nabla::cuda "
                    "CMake target (or compile nabla's backend.cu and define NABLA_WITH_CUDA)");
#endif
}

}  // namespace nabla

// The CPU backend's kernels are instantiated for every dtype, which is heavy. Header-only use
// compiles them wherever nabla.hpp is included; with NABLA_CPU_BACKEND_COMPILED (what the CMake
// target sets) they are compiled once, in backend/cpu/cpu_backend.cpp, and headers only call it.
#if defined(NABLA_CPU_BACKEND_COMPILED)
namespace nabla {
namespace detail {
Backend& compiled_cpu_backend();  // backend/cpu/cpu_backend.cpp
}  // namespace detail
inline Backend& cpu_backend() { return detail::compiled_cpu_backend(); }
}  // namespace nabla
#endif
#if !defined(NABLA_CPU_BACKEND_COMPILED) || defined(NABLA_CPU_BACKEND_IMPLEMENTATION)
#include "cpu/cpu_backend.hpp"  // NOLINT: after the interface it implements
#endif
