#pragma once
// Batched matmul on CUDA: cuBLAS strided-batched GEMM for floating types (TF32 tensor cores for
// float32 only when set_float32_matmul_precision allows, float32 accumulation for 16-bit
// types), a plain kernel for integers. Row-major C = A B is issued as column-major C^T = B^T A^T.
// Sizes past INT_MAX go through cuBLAS's 64-bit API.

#include <cublas_v2.h>

#include <algorithm>
#include <climits>

#include "common.cuh"

#define NABLA_CUBLAS_CHECK(expr) ::nabla::cuda::detail::check_cublas((expr), #expr, __FILE__, __LINE__)

namespace nabla {
namespace cuda {
namespace detail {

inline void check_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw Error(::nabla::detail::cat("nabla::cuda: ", expr, " failed with cuBLAS status ", static_cast<int>(s), " (",
                                   cublasGetStatusString(s), ") at ", file, ":", line));
}

inline cublasHandle_t cublas_handle(int device) {
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (handles.empty()) handles.resize(static_cast<size_t>(probe_device_count()), nullptr);
  cublasHandle_t& h = handles.at(static_cast<size_t>(device));
  if (!h) {
    DeviceGuard guard(device);
    NABLA_CUBLAS_CHECK(cublasCreate(&h));
    NABLA_CUBLAS_CHECK(cublasSetStream(h, stream(device)));
  }
  return h;
}

}  // namespace detail

template <class T>
__global__ void int_matmul_kernel(int64_t B, int64_t M, int64_t N, int64_t K, const T* a, const T* b, T* c) {
  const int64_t total = B * M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t n = i % N, m = (i / N) % M, bi = i / (M * N);
    int64_t acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += int64_t(a[(bi * M + m) * K + k]) * int64_t(b[(bi * K + k) * N + n]);
    c[i] = static_cast<T>(acc);
  }
}

// One operand as cuBLAS wants it: a pointer, op, leading dimension and one batch stride.
struct GemmOperand {
  Tensor t;
  cublasOperation_t op;
  int64_t ld, batch_stride;
};

// x is [..., rows, cols]; expresses it in column-major terms for the C^T = B^T A^T call
// (a row-major matrix is its own transpose in column-major), copying only when the batch dims
// cannot be described by one stride or neither matrix dim has unit stride.
inline GemmOperand gemm_operand(Tensor x, int64_t rows, int64_t cols) {
  auto batch_stride = [](const Tensor& t) -> std::optional<int64_t> {
    std::optional<int64_t> st;
    int64_t expected = -1;
    for (int64_t d = t.dim() - 3; d >= 0; --d) {
      if (t.size(d) == 1) continue;
      if (!st) {
        st = t.stride(d);
        expected = t.stride(d) * t.size(d);
      } else if (t.stride(d) != expected && !(*st == 0 && t.stride(d) == 0)) {
        return std::nullopt;
      } else {
        expected = t.stride(d) * t.size(d);
      }
    }
    return st.value_or(0);
  };
  const int64_t sr = x.stride(-2), sc = x.stride(-1);
  auto bs = batch_stride(x);
  if (bs && sc == 1 && sr >= std::max<int64_t>(1, cols)) return {x, CUBLAS_OP_N, sr, *bs};
  if (bs && sr == 1 && sc >= std::max<int64_t>(1, rows)) return {x, CUBLAS_OP_T, sc, *bs};
  Tensor c = x.contiguous();
  return {c, CUBLAS_OP_N, std::max<int64_t>(1, cols), rows * cols};
}

inline void launch_matmul(const Tensor& out, const Tensor& a_in, const Tensor& b_in) {
  NoGradGuard no_grad;
  const int dev = out.device().index;
  const int64_t M = out.size(-2), N = out.size(-1), K = a_in.size(-1);
  const int64_t batch = out.numel() / std::max<int64_t>(1, M * N);
  DType t = out.dtype();
  if (!is_floating_point(t)) {
    Tensor a = a_in.contiguous(), b = b_in.contiguous();
    dispatch_numeric(t, "matmul", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_integral_v<T>)
        int_matmul_kernel<T><<<grid_for(out.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
            batch, M, N, K, static_cast<const T*>(a.data_ptr()), static_cast<const T*>(b.data_ptr()),
            static_cast<T*>(out.data_ptr()));
    });
    NABLA_CUDA_LAUNCH_CHECK();
    return;
  }
  GemmOperand A = gemm_operand(a_in, M, K), B = gemm_operand(b_in, K, N);
  Tensor C = out.is_contiguous() ? out : empty(out.sizes(), out.options());
  cudaDataType_t dt;
  cublasComputeType_t compute;
  switch (t) {
    case DType::Float64: dt = CUDA_R_64F; compute = CUBLAS_COMPUTE_64F; break;
    case DType::Float16: dt = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; break;
    case DType::BFloat16: dt = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; break;
    default:
      dt = CUDA_R_32F;
      compute = float32_matmul_precision() == MatmulPrecision::Highest ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  }
  const double alpha64 = 1.0, beta64 = 0.0;
  const float alpha32 = 1.0f, beta32 = 0.0f;
  const void* alpha = t == kFloat64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = t == kFloat64 ? static_cast<const void*>(&beta64) : &beta32;
  detail::DeviceGuard guard(dev);
  // The int API would wrap a size, leading dimension or batch count past INT_MAX (a [1, K] @
  // [K, 1] with K > 2^31 has lda = K): those take the 64-bit entry point.
  if (std::max({M, N, K, A.ld, B.ld, batch}) <= INT_MAX) {
    NABLA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        detail::cublas_handle(dev), B.op, A.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), alpha,
        B.t.data_ptr(), dt, static_cast<int>(B.ld), B.batch_stride, A.t.data_ptr(), dt, static_cast<int>(A.ld),
        A.batch_stride, beta, C.data_ptr(), dt, static_cast<int>(N), M * N, static_cast<int>(batch), compute,
        CUBLAS_GEMM_DEFAULT));
  } else {
#if CUBLAS_VER_MAJOR >= 12
    NABLA_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(detail::cublas_handle(dev), B.op, A.op, N, M, K, alpha,
                                                     B.t.data_ptr(), dt, B.ld, B.batch_stride, A.t.data_ptr(), dt,
                                                     A.ld, A.batch_stride, beta, C.data_ptr(), dt, N, M * N, batch,
                                                     compute, CUBLAS_GEMM_DEFAULT));
#else
    throw Error(::nabla::detail::cat("matmul: ", ::nabla::detail::describe(a_in), " @ ",
                                     ::nabla::detail::describe(b_in),
                                     " has a size, leading dimension or batch count past INT_MAX, which needs "
                                     "cuBLAS's 64-bit API (cuBLAS >= 12); this build has cuBLAS ",
                                     CUBLAS_VER_MAJOR));
#endif
  }
  if (!C.is_same(out)) launch_copy(out, C);
}

}  // namespace cuda
}  // namespace nabla
