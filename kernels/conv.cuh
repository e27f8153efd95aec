#pragma once
// conv2d's CUDA slots (ops/conv.hpp's conv2d_kernels()): cuDNN convolutions (forward, backward
// data, backward filter) through backend/cuda/cudnn.hpp, the bias added (and its gradient
// summed) by norm.cuh's channel kernels. Without cuDNN the slots stay empty and conv2d runs its
// composite (cuBLAS matmuls over gathered windows).

#include <climits>

#include "norm.cuh"
#if defined(NABLA_HAS_CUDNN)
#include <nabla/backend/cuda/cudnn.hpp>
#endif

namespace nabla {
namespace cuda {

#if defined(NABLA_HAS_CUDNN)
namespace conv_detail {

// cuDNN's fast kernels want 16-byte aligned operands: a view at an odd offset is copied (an
// output is written to a fresh tensor and copied back).
inline Tensor aligned_input(const Tensor& t) {
  if (aligned16(t.data_ptr())) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  launch_copy(c, t);
  return c;
}
inline Tensor aligned_output(const Tensor& t) {
  return aligned16(t.data_ptr()) ? t : empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
}

// The cuDNN problem for x [N, C, H, W], w [O, C / groups, kh, kw], y [N, O, Ho, Wo]; false for
// what cuDNN cannot be asked (sizes past int). The op has checked shapes, dtypes and layout.
inline bool conv_problem(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p,
                         detail::ConvProblem& pb) {
  switch (x.dtype()) {
    case DType::Float32: pb.dtype = CUDNN_DATA_FLOAT; break;
    case DType::Float64: pb.dtype = CUDNN_DATA_DOUBLE; break;
    case DType::Float16: pb.dtype = CUDNN_DATA_HALF; break;
    case DType::BFloat16: pb.dtype = CUDNN_DATA_BFLOAT16; break;
    default: return false;
  }
  for (const Tensor* t : {&x, &w, &y})
    if (t->numel() == 0 || t->numel() > INT_MAX) return false;
  auto fits = [](int64_t v, int64_t lo) { return v >= lo && v <= INT_MAX; };
  if (!fits(p.stride_h, 1) || !fits(p.stride_w, 1) || !fits(p.dilation_h, 1) || !fits(p.dilation_w, 1) ||
      !fits(p.pad_h, 0) || !fits(p.pad_w, 0) || !fits(p.groups, 1))
    return false;
  pb.n = static_cast<int>(x.size(0)), pb.c = static_cast<int>(x.size(1));
  pb.h = static_cast<int>(x.size(2)), pb.w = static_cast<int>(x.size(3));
  pb.o = static_cast<int>(w.size(0)), pb.kh = static_cast<int>(w.size(2)), pb.kw = static_cast<int>(w.size(3));
  pb.ho = static_cast<int>(y.size(2)), pb.wo = static_cast<int>(y.size(3));
  pb.stride_h = static_cast<int>(p.stride_h), pb.stride_w = static_cast<int>(p.stride_w);
  pb.pad_h = static_cast<int>(p.pad_h), pb.pad_w = static_cast<int>(p.pad_w);
  pb.dilation_h = static_cast<int>(p.dilation_h), pb.dilation_w = static_cast<int>(p.dilation_w);
  pb.groups = static_cast<int>(p.groups);
  pb.allow_tf32 = x.dtype() == kFloat32 && float32_matmul_precision() != MatmulPrecision::Highest;
  pb.device = y.device().index;
  return true;
}

}  // namespace conv_detail

inline bool conv2d_forward_cuda(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Conv2dParams& p) {
  using namespace conv_detail;
  NoGradGuard no_grad;
  detail::DeviceGuard g(out.device().index);
  detail::ConvProblem pb{};
  if (!conv_problem(x, w, out, p, pb)) return false;
  Tensor xa = aligned_input(x), wa = aligned_input(w), ya = aligned_output(out);
  if (!detail::cudnn_convolution(detail::ConvKind::Forward, pb, xa.data_ptr(), wa.data_ptr(), ya.data_ptr()))
    return false;
  if (bias.defined()) launch_add_channel_bias(ya, bias);
  if (!ya.is_same(out)) launch_copy(out, ya);
  return true;
}

inline bool conv2d_backward_input_cuda(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                                       const Conv2dParams& p) {
  using namespace conv_detail;
  NoGradGuard no_grad;
  detail::DeviceGuard g(grad_x.device().index);
  detail::ConvProblem pb{};
  if (!conv_problem(grad_x, w, grad_out, p, pb)) return false;
  Tensor gya = aligned_input(grad_out), wa = aligned_input(w), gxa = aligned_output(grad_x);
  if (!detail::cudnn_convolution(detail::ConvKind::BackwardData, pb, gxa.data_ptr(), wa.data_ptr(), gya.data_ptr()))
    return false;
  if (!gxa.is_same(grad_x)) launch_copy(grad_x, gxa);
  return true;
}

inline bool conv2d_backward_weight_cuda(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out,
                                        const Tensor& x, const Conv2dParams& p) {
  using namespace conv_detail;
  NoGradGuard no_grad;
  detail::DeviceGuard g(grad_w.device().index);
  detail::ConvProblem pb{};
  if (!conv_problem(x, grad_w, grad_out, p, pb)) return false;
  Tensor xa = aligned_input(x), gya = aligned_input(grad_out), gwa = aligned_output(grad_w);
  if (!detail::cudnn_convolution(detail::ConvKind::BackwardFilter, pb, xa.data_ptr(), gwa.data_ptr(), gya.data_ptr()))
    return false;
  if (!gwa.is_same(grad_w)) launch_copy(grad_w, gwa);
  if (grad_bias.defined()) launch_channel_sum(grad_bias, grad_out);
  return true;
}

NABLA_FILL_KERNELS(conv2d_cuda, conv2d_kernels(), DeviceType::CUDA,
                   (DTypeSet{kFloat32, kFloat64, kFloat16, kBFloat16}),
                   (Conv2dKernels{&conv2d_forward_cuda, &conv2d_backward_input_cuda, &conv2d_backward_weight_cuda}));
#endif  // NABLA_HAS_CUDNN

}  // namespace cuda
}  // namespace nabla
