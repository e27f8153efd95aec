#pragma once
// linear's fused CPU kernel (nn/functional.hpp's fused::linear_kernels()): the bias is copied
// into every output row and the GEMM accumulates x @ w^T onto it, so no second pass adds it. The
// weight is read through its strides (a transposed view is not copied).
// In bfloat16 the GEMM adds the bias to its float32 sums before rounding each output once.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../../nn/functional.hpp"  // the table this file fills
#include "gemm.hpp"
#include "gemm_bf16.hpp"

namespace nabla {
namespace cpu {

// x [M, K] and out [M, N] contiguous; w [N, K] with any strides (B = w^T: B(k, n) = w(n, k)).
template <class T>
void linear_forward_kernel(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0), rsB = w.stride(1), csB = w.stride(0);
  T* o = out.data_ptr<T>();
  const T* b = bias.data_ptr<T>();
  for (int64_t i = 0; i < M; ++i) std::copy(b, b + N, o + i * N);
  if constexpr (std::is_same_v<T, BFloat16>)
    gemm_bf16<BFloat16>(M, N, K, x.data_ptr<T>(), K, 1, w.data_ptr<T>(), rsB, csB, o, N, 1, true);
  else
    gemm<T>(M, N, K, x.data_ptr<T>(), K, 1, w.data_ptr<T>(), rsB, csB, o, N, 1, true);
}

inline bool linear_forward_cpu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (x.dtype() == kFloat64) linear_forward_kernel<double>(out, x, w, bias);
  else if (x.dtype() == kBFloat16) linear_forward_kernel<BFloat16>(out, x, w, bias);
  else linear_forward_kernel<float>(out, x, w, bias);
  return true;
}
NABLA_FILL_KERNELS(linear_cpu, nn::functional::fused::linear_kernels(), DeviceType::CPU,
                   (DTypeSet{kFloat32, kFloat64, kBFloat16}),
                   nn::functional::fused::LinearKernels{&linear_forward_cpu});

}  // namespace cpu
}  // namespace nabla
