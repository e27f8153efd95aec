#pragma once
// linear's CUDA slot (nn/functional.hpp's fused::linear_kernels()): one cuBLASLt GEMM with the
// bias in its epilogue (backend/cuda/cublaslt.hpp), for float32 (TF32 when allowed), float16
// and bfloat16. cuBLASLt declines operands under 16-byte alignment; the op then runs the
// composite.

#include <nabla/backend/cuda/cublaslt.hpp>

#include "common.cuh"

namespace nabla {
namespace cuda {

inline bool linear_forward_cuda(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  NoGradGuard no_grad;
  const Tensor w = weight.is_contiguous() ? weight : weight.contiguous();  // fused::linear passes it as it is
  const DType t = out.dtype();
  detail::DeviceGuard g(out.device().index);
  detail::LinearProblem pb{};
  pb.device = out.device().index;
  pb.dtype = t == kFloat32 ? CUDA_R_32F : t == kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
  pb.allow_tf32 = t == kFloat32 && float32_matmul_precision() != MatmulPrecision::Highest;
  pb.M = x.size(0), pb.N = w.size(0), pb.K = x.size(1);
  pb.align_x = detail::pointer_alignment(x.data_ptr());
  pb.align_w = detail::pointer_alignment(w.data_ptr());
  pb.align_out = detail::pointer_alignment(out.data_ptr());
  pb.align_bias = detail::pointer_alignment(bias.data_ptr());
  return detail::cublaslt_linear(pb, x.data_ptr(), w.data_ptr(), bias.data_ptr(), out.data_ptr());
}
NABLA_FILL_KERNELS(linear_cuda, nn::functional::fused::linear_kernels(), DeviceType::CUDA,
                   (DTypeSet{kFloat32, kFloat16, kBFloat16}), nn::functional::fused::LinearKernels{&linear_forward_cuda});

}  // namespace cuda
}  // namespace nabla
