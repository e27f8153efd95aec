#pragma once
// Matrix-vector products, the GEMMs with a single row or column (batch-1 inference: a Linear on
// one token, a language model's head over the vocabulary). They are memory-bound, so one pass
// over the matrix in its own layout beats packing it as the blocked GEMM does (gemm.hpp's gemm()
// sends them here when there is no CBLAS). Two layouts, one loop each:
//   rows_dot   y[n] = W[n, :] . x         (rows contiguous along k: x @ W^T, W a Linear weight)
//   rows_axpy  y    = sum_k x[k] B[k, :]  (contiguous along n: x @ B)
// Written with GCC / clang vector types; gemm.hpp compiles them once per ISA (AVX-512, AVX2,
// the baseline) inside target-attributed wrappers and picks one at run time, as for the GEMM.

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace nabla::cpu::gemv_detail {

// sum_k a[k] * b[k], in 64-byte vector lanes (two independent accumulators), then the tail.
template <class T>
[[gnu::always_inline]] inline T dot(const T* a, const T* b, int64_t K) {
  typedef T V __attribute__((vector_size(64)));
  constexpr int64_t L = 64 / sizeof(T);
  V s0 = {}, s1 = {};
  int64_t k = 0;
  for (; k + 2 * L <= K; k += 2 * L) {
    V a0, b0, a1, b1;
    std::memcpy(&a0, a + k, sizeof(V));
    std::memcpy(&b0, b + k, sizeof(V));
    std::memcpy(&a1, a + k + L, sizeof(V));
    std::memcpy(&b1, b + k + L, sizeof(V));
    s0 += a0 * b0;
    s1 += a1 * b1;
  }
  for (; k + L <= K; k += L) {
    V a0, b0;
    std::memcpy(&a0, a + k, sizeof(V));
    std::memcpy(&b0, b + k, sizeof(V));
    s0 += a0 * b0;
  }
  s0 += s1;
  T t = 0;
  for (int64_t u = 0; u < L; ++u) t += s0[u];
  for (; k < K; ++k) t += a[k] * b[k];
  return t;
}

// y[n * incy] (+)= W[n * ldw + :K] . x for n < N (x contiguous).
template <class T>
[[gnu::always_inline]] inline void rows_dot(int64_t N, int64_t K, const T* W, int64_t ldw, const T* x, T* y, int64_t incy,
                                            bool acc) {
  for (int64_t n = 0; n < N; ++n) {
    const T t = dot(W + n * ldw, x, K);
    T& out = y[n * incy];
    out = acc ? out + t : t;
  }
}

// y[n] (+)= sum_k x[k] * B[k * ldb + n] for n < N (x and y contiguous): the rows of B, scaled
// and added four at a time, over blocks of y that stay in L1 while every row passes.
template <class T>
[[gnu::always_inline]] inline void rows_axpy(int64_t N, int64_t K, const T* B, int64_t ldb, const T* x, T* y, bool acc) {
  typedef T V __attribute__((vector_size(64)));
  constexpr int64_t L = 64 / sizeof(T), kBlock = 2048;
  for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
    const int64_t n1 = std::min(N, n0 + kBlock);
    if (!acc) std::fill(y + n0, y + n1, T(0));
    int64_t k = 0;
    for (; k < K; k += 4) {
      const int64_t rows = std::min<int64_t>(4, K - k);
      const T a0 = x[k], a1 = rows > 1 ? x[k + 1] : T(0), a2 = rows > 2 ? x[k + 2] : T(0), a3 = rows > 3 ? x[k + 3] : T(0);
      const T* r0 = B + k * ldb;
      const T* r1 = rows > 1 ? r0 + ldb : r0;  // a zero weight on a repeated row when K is not a multiple of 4
      const T* r2 = rows > 2 ? r0 + 2 * ldb : r0;
      const T* r3 = rows > 3 ? r0 + 3 * ldb : r0;
      const V v0 = V{} + a0, v1 = V{} + a1, v2 = V{} + a2, v3 = V{} + a3;
      int64_t n = n0;
      for (; n + L <= n1; n += L) {
        V yv, b0, b1, b2, b3;
        std::memcpy(&yv, y + n, sizeof(V));
        std::memcpy(&b0, r0 + n, sizeof(V));
        std::memcpy(&b1, r1 + n, sizeof(V));
        std::memcpy(&b2, r2 + n, sizeof(V));
        std::memcpy(&b3, r3 + n, sizeof(V));
        yv += (v0 * b0 + v1 * b1) + (v2 * b2 + v3 * b3);
        std::memcpy(y + n, &yv, sizeof(V));
      }
      for (; n < n1; ++n) y[n] += (a0 * r0[n] + a1 * r1[n]) + (a2 * r2[n] + a3 * r3[n]);
    }
  }
}

// The loops compiled for one ISA: `dot` selects the layout (see try_gemv in gemm.hpp).
#define NABLA_GEMV_VARIANT(name, attr)                                                                                   \
  template <class T>                                                                                                     \
  attr void name(bool dot_layout, int64_t N, int64_t K, const T* B, int64_t ld, const T* x, T* y, int64_t incy, bool acc) { \
    if (dot_layout) rows_dot<T>(N, K, B, ld, x, y, incy, acc);                                                           \
    else rows_axpy<T>(N, K, B, ld, x, y, acc);                                                                           \
  }
NABLA_GEMV_VARIANT(gemv_baseline, )
#if defined(NABLA_GEMM_X86)
NABLA_GEMV_VARIANT(gemv_avx2, NABLA_GEMM_AVX2)
NABLA_GEMV_VARIANT(gemv_avx512, NABLA_GEMM_AVX512)
#endif
#undef NABLA_GEMV_VARIANT

}  // namespace nabla::cpu::gemv_detail
