#pragma once
// max_pool2d forward on CUDA: one thread per output element scans its window and writes the
// maximum and its flat index h * W + w within the input plane (what the backward's scatter_add
// reads). Reference: the CPU backend's max_pool2d_forward, and the composite max_pool2d.

#include "common.cuh"

namespace nabla {
namespace cuda {

// Window order is row-major (kernel row, then kernel column). The first element seen becomes
// the running maximum; a later one replaces it only when strictly greater or NaN, and nothing
// replaces a NaN: that is "first maximum, NaN wins", as the CPU's max_pool2d kernel. Padding
// (and, with ceil_mode, the overhang past it) is skipped rather than read as -inf; that only
// matters for a window whose input elements are all -inf (it reports its first input element)
// or that holds no input element at all (possible with a large dilation: -inf and index 0, as
// the CPU kernel does).
template <class T>
__global__ void max_pool2d_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t* __restrict__ indices,
                                  int64_t total, int64_t H, int64_t W, int64_t Ho, int64_t Wo, Pool2dParams p) {
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = i % Wo, oh = (i / Wo) % Ho, plane = i / (Wo * Ho);
    const T* xp = x + plane * H * W;
    const int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
    C best = C(-INFINITY);
    int64_t best_i = -1;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t h = h0 + kh * p.dilation_h;
      if (h < 0 || h >= H) continue;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t w = w0 + kw * p.dilation_w;
        if (w < 0 || w >= W) continue;
        const C v = static_cast<C>(xp[h * W + w]);
        if (best_i < 0 || (!fn::is_nan(best) && (v > best || fn::is_nan(v)))) {
          best = v;
          best_i = h * W + w;
        }
      }
    }
    out[i] = static_cast<T>(best);
    indices[i] = best_i < 0 ? 0 : best_i;
  }
}

// out, indices [N, C, Ho, Wo]; x [N, C, H, W]; all contiguous on one device. Returns false
// for what it does not handle (the op then uses its fallback).
inline bool launch_max_pool2d(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  if (x.dim() != 4 || out.dim() != 4 || indices.dim() != 4 || indices.dtype() != kInt64) return false;
  if (!is_floating_point(x.dtype()) || out.dtype() != x.dtype()) return false;
  if (p.kernel_h < 1 || p.kernel_w < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dilation_h < 1 || p.dilation_w < 1 ||
      p.pad_h < 0 || p.pad_w < 0)
    return false;
  const int64_t H = x.size(2), W = x.size(3), Ho = out.size(2), Wo = out.size(3);
  if (out.size(0) != x.size(0) || out.size(1) != x.size(1) || indices.sizes() != out.sizes()) return false;
  const int64_t total = out.numel();
  if (total == 0) return true;
  const int dev = out.device().index;
  dispatch_floating(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_kernel<T><<<grid_for(total, dev), kThreads, 0, detail::stream(dev)>>>(
        static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()), static_cast<int64_t*>(indices.data_ptr()),
        total, H, W, Ho, Wo, p);
  });
  NABLA_CUDA_LAUNCH_CHECK();
  return true;
}

// ---- max_pool2d's CUDA slot (ops/pool.hpp's max_pool2d_kernels()) -------------------------------

inline bool max_pool2d_forward_cuda(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  NoGradGuard no_grad;
  detail::DeviceGuard g(out.device().index);
  return launch_max_pool2d(out, indices, x, p);
}
NABLA_FILL_KERNELS(max_pool2d_cuda, max_pool2d_kernels(), DeviceType::CUDA,
                   (DTypeSet{kFloat32, kFloat64, kFloat16, kBFloat16}), MaxPool2dKernels{&max_pool2d_forward_cuda});

}  // namespace cuda
}  // namespace nabla
