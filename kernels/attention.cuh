#pragma once
// scaled_dot_product_attention's CUDA slots (ops/attention.hpp's sdpa_kernels()): a flash-style
// kernel set in plain CUDA cores (no tensor cores yet), one thread per query (or key) row:
//   forward: each block takes 64 queries of one (batch, head), walks key tiles staged in shared
//     memory with an online softmax (running max and sum) and writes the output and the
//     log-sum-exp; causal tiles past the block's last query are skipped.
//   backward: one kernel per query row for dQ (and D = rowsum(dO o O)), then one per key row for
//     dK and dV, each recomputing the probabilities from the saved log-sum-exp; no atomics.
// Head dims up to 128 (the row lives in registers; larger declines to the composite).
//
// Status: compiled, not yet run on a GPU. Until the parity table has checked it on one, it is
// opt-in: set NABLA_CUDA_FLASH_ATTENTION=1 (scripts/gpu-check.sh does, for its test step);
// otherwise the slots decline and CUDA runs the composite (cuBLAS matmuls + the softmax kernel).

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <nabla/ops/attention.hpp>  // the table these kernels fill

#include "common.cuh"

namespace nabla {
namespace cuda {
namespace sdpa_detail {

inline bool flash_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("NABLA_CUDA_FLASH_ATTENTION");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

constexpr int kRows = 64;  // threads (= rows) per block

struct Args {
  int64_t B, H, L, S, E, Ev;
  double scale;
  bool causal;
  const void* mask;
  bool mask_bool;
  int64_t mb, mh, ml, ms;  // mask strides in elements
  int tile;                // rows of the other operand staged in shared memory per step
};

__device__ __forceinline__ int64_t imin(int64_t x, int64_t y) { return x < y ? x : y; }

template <class T>
__device__ __forceinline__ T neg_inf() {
  return -static_cast<T>(INFINITY);
}
template <class T>
__device__ __forceinline__ T dexp(T x) {
  if constexpr (sizeof(T) == 4) return ::expf(x);
  else return ::exp(x);
}

// scaled, masked score of (query i, key j) from the dot product; -inf when masked
template <class T>
__device__ __forceinline__ T masked_score(T dot, int64_t b, int64_t h, int64_t i, int64_t j, const Args& a) {
  if (a.causal && j > i) return neg_inf<T>();
  T s = dot * static_cast<T>(a.scale);
  if (a.mask) {
    const int64_t o = b * a.mb + h * a.mh + i * a.ml + j * a.ms;
    if (a.mask_bool) {
      if (!static_cast<const bool*>(a.mask)[o]) return neg_inf<T>();
    } else {
      s += static_cast<const T*>(a.mask)[o];
    }
  }
  return s;
}

template <class T, int HD>
__global__ void __launch_bounds__(kRows) sdpa_forward_kernel(T* __restrict__ out, T* __restrict__ lse,
                                                             const T* __restrict__ q, const T* __restrict__ k,
                                                             const T* __restrict__ v, Args a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + a.tile * a.E;
  const int64_t bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows, i = row0 + threadIdx.x;
  const bool active = i < a.L;
  T qr[HD], acc[HD];
#pragma unroll
  for (int e = 0; e < HD; ++e) {
    qr[e] = active && e < a.E ? q[(bh * a.L + i) * a.E + e] : T(0);
    acc[e] = T(0);
  }
  T mx = neg_inf<T>(), sum = T(0);
  const int64_t kend = a.causal ? imin(a.S, row0 + kRows) : a.S;
  const T* K = k + bh * a.S * a.E;
  const T* V = v + bh * a.S * a.Ev;
  for (int64_t j0 = 0; j0 < kend; j0 += a.tile) {
    const int64_t bk = imin(static_cast<int64_t>(a.tile), kend - j0);
    for (int64_t x = threadIdx.x; x < bk * a.E; x += blockDim.x) Ks[x] = K[j0 * a.E + x];
    for (int64_t x = threadIdx.x; x < bk * a.Ev; x += blockDim.x) Vs[x] = V[j0 * a.Ev + x];
    __syncthreads();
    if (active) {
      for (int64_t jj = 0; jj < bk; ++jj) {
        T dot = T(0);
#pragma unroll
        for (int e = 0; e < HD; ++e)
          if (e < a.E) dot += qr[e] * Ks[jj * a.E + e];
        const T s = masked_score<T>(dot, b, h, i, j0 + jj, a);
        if (s == neg_inf<T>()) continue;
        if (s > mx) {  // a new running max: rescale what was summed so far
          const T alpha = mx == neg_inf<T>() ? T(0) : dexp<T>(mx - s);
          sum *= alpha;
#pragma unroll
          for (int e = 0; e < HD; ++e) acc[e] *= alpha;
          mx = s;
        }
        const T p = dexp<T>(s - mx);
        sum += p;
#pragma unroll
        for (int e = 0; e < HD; ++e)
          if (e < a.Ev) acc[e] += p * Vs[jj * a.Ev + e];
      }
    }
    __syncthreads();
  }
  if (!active) return;
  const T inv = sum > T(0) ? T(1) / sum : T(0);
#pragma unroll
  for (int e = 0; e < HD; ++e)
    if (e < a.Ev) out[(bh * a.L + i) * a.Ev + e] = acc[e] * inv;
  lse[bh * a.L + i] = sum > T(0) ? mx + (sizeof(T) == 4 ? ::logf(float(sum)) : ::log(double(sum))) : neg_inf<T>();
}

// dQ (and D_i = rowsum(dO o O), written for the dK/dV kernel): one thread per query row.
template <class T, int HD>
__global__ void __launch_bounds__(kRows) sdpa_backward_q_kernel(T* __restrict__ dq, T* __restrict__ Dbuf,
                                                                const T* __restrict__ dout, const T* __restrict__ q,
                                                                const T* __restrict__ k, const T* __restrict__ v,
                                                                const T* __restrict__ out, const T* __restrict__ lse,
                                                                Args a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Ks = reinterpret_cast<T*>(smem_raw);
  T* Vs = Ks + a.tile * a.E;
  const int64_t bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows, i = row0 + threadIdx.x;
  const bool active = i < a.L;
  T qr[HD], dor[HD], acc[HD];
  T D = T(0);
#pragma unroll
  for (int e = 0; e < HD; ++e) {
    qr[e] = active && e < a.E ? q[(bh * a.L + i) * a.E + e] : T(0);
    dor[e] = active && e < a.Ev ? dout[(bh * a.L + i) * a.Ev + e] : T(0);
    if (active && e < a.Ev) D += dor[e] * out[(bh * a.L + i) * a.Ev + e];
    acc[e] = T(0);
  }
  const T l = active ? lse[bh * a.L + i] : neg_inf<T>();
  if (active) Dbuf[bh * a.L + i] = D;
  const int64_t kend = a.causal ? imin(a.S, row0 + kRows) : a.S;
  const T* K = k + bh * a.S * a.E;
  const T* V = v + bh * a.S * a.Ev;
  for (int64_t j0 = 0; j0 < kend; j0 += a.tile) {
    const int64_t bk = imin(static_cast<int64_t>(a.tile), kend - j0);
    for (int64_t x = threadIdx.x; x < bk * a.E; x += blockDim.x) Ks[x] = K[j0 * a.E + x];
    for (int64_t x = threadIdx.x; x < bk * a.Ev; x += blockDim.x) Vs[x] = V[j0 * a.Ev + x];
    __syncthreads();
    if (active && l != neg_inf<T>()) {
      for (int64_t jj = 0; jj < bk; ++jj) {
        T dot = T(0), dp = T(0);
#pragma unroll
        for (int e = 0; e < HD; ++e) {
          if (e < a.E) dot += qr[e] * Ks[jj * a.E + e];
          if (e < a.Ev) dp += dor[e] * Vs[jj * a.Ev + e];
        }
        const T s = masked_score<T>(dot, b, h, i, j0 + jj, a);
        if (s == neg_inf<T>()) continue;
        const T ds = dexp<T>(s - l) * (dp - D);
#pragma unroll
        for (int e = 0; e < HD; ++e)
          if (e < a.E) acc[e] += ds * Ks[jj * a.E + e];
      }
    }
    __syncthreads();
  }
  if (!active) return;
#pragma unroll
  for (int e = 0; e < HD; ++e)
    if (e < a.E) dq[(bh * a.L + i) * a.E + e] = acc[e] * static_cast<T>(a.scale);
}

// dK and dV: one thread per key row, walking the query tiles that can see it.
template <class T, int HD>
__global__ void __launch_bounds__(kRows) sdpa_backward_kv_kernel(T* __restrict__ dk, T* __restrict__ dv,
                                                                 const T* __restrict__ dout, const T* __restrict__ q,
                                                                 const T* __restrict__ k, const T* __restrict__ v,
                                                                 const T* __restrict__ lse, const T* __restrict__ Dbuf,
                                                                 Args a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* Qs = reinterpret_cast<T*>(smem_raw);
  T* dOs = Qs + a.tile * a.E;
  T* Ls = dOs + a.tile * a.Ev;
  T* Ds = Ls + a.tile;
  const int64_t bh = blockIdx.y, b = bh / a.H, h = bh % a.H;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kRows, j = col0 + threadIdx.x;
  const bool active = j < a.S;
  T kr[HD], vr[HD], dka[HD], dva[HD];
#pragma unroll
  for (int e = 0; e < HD; ++e) {
    kr[e] = active && e < a.E ? k[(bh * a.S + j) * a.E + e] : T(0);
    vr[e] = active && e < a.Ev ? v[(bh * a.S + j) * a.Ev + e] : T(0);
    dka[e] = dva[e] = T(0);
  }
  const int64_t qstart = a.causal ? imin(a.L, col0) : 0;  // causal: queries before the block's first key see none of it
  const T* Q = q + bh * a.L * a.E;
  const T* dO = dout + bh * a.L * a.Ev;
  for (int64_t i0 = qstart; i0 < a.L; i0 += a.tile) {
    const int64_t bq = imin(static_cast<int64_t>(a.tile), a.L - i0);
    for (int64_t x = threadIdx.x; x < bq * a.E; x += blockDim.x) Qs[x] = Q[i0 * a.E + x];
    for (int64_t x = threadIdx.x; x < bq * a.Ev; x += blockDim.x) dOs[x] = dO[i0 * a.Ev + x];
    for (int64_t x = threadIdx.x; x < bq; x += blockDim.x) {
      Ls[x] = lse[bh * a.L + i0 + x];
      Ds[x] = Dbuf[bh * a.L + i0 + x];
    }
    __syncthreads();
    if (active) {
      for (int64_t ii = 0; ii < bq; ++ii) {
        const T l = Ls[ii];
        if (l == neg_inf<T>()) continue;
        T dot = T(0), dp = T(0);
#pragma unroll
        for (int e = 0; e < HD; ++e) {
          if (e < a.E) dot += Qs[ii * a.E + e] * kr[e];
          if (e < a.Ev) dp += dOs[ii * a.Ev + e] * vr[e];
        }
        const T s = masked_score<T>(dot, b, h, i0 + ii, j, a);
        if (s == neg_inf<T>()) continue;
        const T p = dexp<T>(s - l);
        const T ds = p * (dp - Ds[ii]) * static_cast<T>(a.scale);
#pragma unroll
        for (int e = 0; e < HD; ++e) {
          if (e < a.Ev) dva[e] += p * dOs[ii * a.Ev + e];
          if (e < a.E) dka[e] += ds * Qs[ii * a.E + e];
        }
      }
    }
    __syncthreads();
  }
  if (!active) return;
#pragma unroll
  for (int e = 0; e < HD; ++e) {
    if (e < a.E) dk[(bh * a.S + j) * a.E + e] = dka[e];
    if (e < a.Ev) dv[(bh * a.S + j) * a.Ev + e] = dva[e];
  }
}

inline Args make_args(const SdpaMask& m, const SdpaShape& s) {
  Args a{};
  a.B = s.B, a.H = s.H, a.L = s.L, a.S = s.S, a.E = s.E, a.Ev = s.Ev;
  a.scale = s.scale, a.causal = s.causal;
  a.mask = m.data, a.mask_bool = m.is_bool;
  a.mb = m.stride_b, a.mh = m.stride_h, a.ml = m.stride_l, a.ms = m.stride_s;
  return a;
}

// Rows of the other operand per shared-memory step: as many as fit in 32 KiB, at most 64.
inline int tile_rows(int64_t per_row_elements, size_t elem) {
  const int64_t t = (32 * 1024) / std::max<int64_t>(1, per_row_elements * static_cast<int64_t>(elem));
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(64, t)));
}

// F(std::integral_constant<int, HD>) for the smallest HD in {32, 64, 128} holding E and Ev;
// false when they are larger.
template <class F>
bool with_head_dim(int64_t E, int64_t Ev, F&& f) {
  const int64_t d = std::max(E, Ev);
  if (d <= 32) return f(std::integral_constant<int, 32>{}), true;
  if (d <= 64) return f(std::integral_constant<int, 64>{}), true;
  if (d <= 128) return f(std::integral_constant<int, 128>{}), true;
  return false;
}

}  // namespace sdpa_detail

inline bool sdpa_forward_cuda(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                              const SdpaMask& mask, const SdpaShape& shape) {
  using namespace sdpa_detail;
  if (!flash_enabled() || shape.L > INT_MAX / 2 || shape.B * shape.H > 65535) return false;
  NoGradGuard no_grad;
  detail::DeviceGuard g(q.device().index);
  const int dev = q.device().index;
  bool ran = false;
  dispatch_floating(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      Args a = make_args(mask, shape);
      a.tile = tile_rows(shape.E + shape.Ev, sizeof(T));
      const size_t smem = static_cast<size_t>(a.tile) * static_cast<size_t>(shape.E + shape.Ev) * sizeof(T);
      const dim3 grid(static_cast<unsigned>((shape.L + kRows - 1) / kRows), static_cast<unsigned>(shape.B * shape.H));
      ran = with_head_dim(shape.E, shape.Ev, [&](auto hd) {
        sdpa_forward_kernel<T, decltype(hd)::value><<<grid, kRows, smem, detail::stream(dev)>>>(
            static_cast<T*>(out.data_ptr()), static_cast<T*>(lse.data_ptr()), static_cast<const T*>(q.data_ptr()),
            static_cast<const T*>(k.data_ptr()), static_cast<const T*>(v.data_ptr()), a);
      });
    }
  });
  if (ran) NABLA_CUDA_LAUNCH_CHECK();
  return ran;
}

inline bool sdpa_backward_cuda(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                               const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                               const SdpaMask& mask, const SdpaShape& shape) {
  using namespace sdpa_detail;
  if (!flash_enabled() || shape.B * shape.H > 65535) return false;
  NoGradGuard no_grad;
  detail::DeviceGuard g(q.device().index);
  const int dev = q.device().index;
  bool ran = false;
  Tensor D = empty({shape.B * shape.H, shape.L}, q.options().requires_grad(false));
  dispatch_floating(q.dtype(), "scaled_dot_product_attention_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      Args a = make_args(mask, shape);
      ran = with_head_dim(shape.E, shape.Ev, [&](auto hd) {
        constexpr int HD = decltype(hd)::value;
        Args aq = a;
        aq.tile = tile_rows(shape.E + shape.Ev, sizeof(T));
        const size_t smem_q = static_cast<size_t>(aq.tile) * static_cast<size_t>(shape.E + shape.Ev) * sizeof(T);
        const dim3 grid_q(static_cast<unsigned>((shape.L + kRows - 1) / kRows), static_cast<unsigned>(shape.B * shape.H));
        sdpa_backward_q_kernel<T, HD><<<grid_q, kRows, smem_q, detail::stream(dev)>>>(
            static_cast<T*>(dq.data_ptr()), static_cast<T*>(D.data_ptr()), static_cast<const T*>(dout.data_ptr()),
            static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()), static_cast<const T*>(v.data_ptr()),
            static_cast<const T*>(out.data_ptr()), static_cast<const T*>(lse.data_ptr()), aq);
        Args akv = a;
        akv.tile = tile_rows(shape.E + shape.Ev + 2, sizeof(T));
        const size_t smem_kv = static_cast<size_t>(akv.tile) * static_cast<size_t>(shape.E + shape.Ev + 2) * sizeof(T);
        const dim3 grid_kv(static_cast<unsigned>((shape.S + kRows - 1) / kRows), static_cast<unsigned>(shape.B * shape.H));
        sdpa_backward_kv_kernel<T, HD><<<grid_kv, kRows, smem_kv, detail::stream(dev)>>>(
            static_cast<T*>(dk.data_ptr()), static_cast<T*>(dv.data_ptr()), static_cast<const T*>(dout.data_ptr()),
            static_cast<const T*>(q.data_ptr()), static_cast<const T*>(k.data_ptr()), static_cast<const T*>(v.data_ptr()),
            static_cast<const T*>(lse.data_ptr()), static_cast<const T*>(D.data_ptr()), akv);
      });
    }
  });
  if (ran) NABLA_CUDA_LAUNCH_CHECK();
  return ran;
}

NABLA_FILL_KERNELS(sdpa_cuda, sdpa_kernels(), DeviceType::CUDA, (DTypeSet{kFloat32, kFloat64}),
                   (SdpaKernels{&sdpa_forward_cuda, &sdpa_backward_cuda}));

}  // namespace cuda
}  // namespace nabla
