#pragma once
// Elementwise CUDA kernels and their host launchers: unary, binary, where, copy with dtype
// conversion, fill, arange and Philox random. One kernel per (op, dtype); a uniform branch
// picks flat indexing when every operand is dense, strided offsets otherwise. The math comes
// from the functors in backend/functors.hpp that the CPU uses too.

#include "common.cuh"

namespace nabla {
namespace cuda {

// Dense operands, up to 16 bytes per operand per thread per step: aligned vector loads and
// stores. The host launches these only when every pointer is aligned to its pack; the tail (and
// any unaligned or strided case) goes to the plain kernel.
template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Elements per pack when operands of types A and B move together: 16 bytes of the wider one.
template <class A, class B>
inline constexpr int kPackOf = static_cast<int>(16 / (sizeof(A) > sizeof(B) ? sizeof(A) : sizeof(B)));

template <class T, class F>
__global__ void unary_vec_kernel(int64_t packs, const T* __restrict__ in, T* __restrict__ out, F f) {
  constexpr int N = 16 / sizeof(T);
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<T, N> x = reinterpret_cast<const Pack<T, N>*>(in)[i], y;
#pragma unroll
    for (int k = 0; k < N; ++k) y.v[k] = static_cast<T>(f(static_cast<C>(x.v[k])));
    reinterpret_cast<Pack<T, N>*>(out)[i] = y;
  }
}

template <class T, class F>
__global__ void binary_vec_kernel(int64_t packs, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                  F f) {
  constexpr int N = 16 / sizeof(T);
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<T, N> x = reinterpret_cast<const Pack<T, N>*>(a)[i], y = reinterpret_cast<const Pack<T, N>*>(b)[i], z;
#pragma unroll
    for (int k = 0; k < N; ++k) z.v[k] = static_cast<T>(f(static_cast<C>(x.v[k]), static_cast<C>(y.v[k])));
    reinterpret_cast<Pack<T, N>*>(out)[i] = z;
  }
}

inline bool aligned16(const void* p) { return aligned_to(p, 16); }

// where on dense operands; x or y may be null (a by-value scalar, passed in xs / ys).
template <class T>
__global__ void where_vec_kernel(int64_t packs, const bool* __restrict__ cond, const T* __restrict__ x,
                                 const T* __restrict__ y, T* __restrict__ out, T xs, T ys) {
  constexpr int N = 16 / sizeof(T);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<bool, N> c = reinterpret_cast<const Pack<bool, N>*>(cond)[i];
    Pack<T, N> a, b, z;
    if (x) a = reinterpret_cast<const Pack<T, N>*>(x)[i];
    if (y) b = reinterpret_cast<const Pack<T, N>*>(y)[i];
#pragma unroll
    for (int k = 0; k < N; ++k) z.v[k] = c.v[k] ? (x ? a.v[k] : xs) : (y ? b.v[k] : ys);
    reinterpret_cast<Pack<T, N>*>(out)[i] = z;
  }
}

template <class T>
__global__ void fill_vec_kernel(int64_t packs, T* __restrict__ out, T value) {
  constexpr int N = 16 / sizeof(T);
  Pack<T, N> p;
#pragma unroll
  for (int k = 0; k < N; ++k) p.v[k] = value;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x)
    reinterpret_cast<Pack<T, N>*>(out)[i] = p;
}

template <class T, class F>
__global__ void unary_kernel(int64_t n, StridedArgs<2> a, F f) {
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (a.contiguous) {
      reinterpret_cast<T*>(a.base[0])[i] = static_cast<T>(f(static_cast<C>(a.template load<T>(1, i * int64_t(sizeof(T))))));
    } else {
      int64_t off[2];
      a.offsets(i, off);
      *a.template ptr<T>(0, off[0]) = static_cast<T>(f(static_cast<C>(a.template load<T>(1, off[1]))));
    }
  }
}

template <class T, class Out, class F>
__global__ void binary_kernel(int64_t n, StridedArgs<3> a, F f) {
  using C = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (a.contiguous) {
      const int64_t o = i * int64_t(sizeof(T));
      reinterpret_cast<Out*>(a.base[0])[i] =
          static_cast<Out>(f(static_cast<C>(a.template load<T>(1, o)), static_cast<C>(a.template load<T>(2, o))));
    } else {
      int64_t off[3];
      a.offsets(i, off);
      *a.template ptr<Out>(0, off[0]) =
          static_cast<Out>(f(static_cast<C>(a.template load<T>(1, off[1])), static_cast<C>(a.template load<T>(2, off[2]))));
    }
  }
}

template <class T>
__global__ void where_kernel(int64_t n, StridedArgs<4> a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (a.contiguous) {
      const int64_t o = i * int64_t(sizeof(T));
      reinterpret_cast<T*>(a.base[0])[i] = a.template load<bool>(1, i) ? a.template load<T>(2, o) : a.template load<T>(3, o);
    } else {
      int64_t off[4];
      a.offsets(i, off);
      *a.template ptr<T>(0, off[0]) =
          a.template load<bool>(1, off[1]) ? a.template load<T>(2, off[2]) : a.template load<T>(3, off[3]);
    }
  }
}

template <class D, class S>
__device__ __forceinline__ D convert_value(S v) {
  if constexpr (std::is_same_v<D, bool>) return static_cast<compute_t<S>>(v) != compute_t<S>(0);
  else if constexpr (std::is_same_v<D, S>) return v;
  else return static_cast<D>(static_cast<compute_t<S>>(v));
}

// Dense copy with a dtype conversion (a same-dtype dense copy is a cudaMemcpyAsync).
template <class D, class S>
__global__ void copy_vec_kernel(int64_t packs, const S* __restrict__ in, D* __restrict__ out) {
  constexpr int N = kPackOf<D, S>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    Pack<S, N> x = reinterpret_cast<const Pack<S, N>*>(in)[i];
    Pack<D, N> y;
#pragma unroll
    for (int k = 0; k < N; ++k) y.v[k] = convert_value<D>(x.v[k]);
    reinterpret_cast<Pack<D, N>*>(out)[i] = y;
  }
}

template <class D, class S>
__global__ void copy_kernel(int64_t n, StridedArgs<2> a) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (a.contiguous) {
      reinterpret_cast<D*>(a.base[0])[i] = convert_value<D>(a.template load<S>(1, i * int64_t(sizeof(S))));
    } else {
      int64_t off[2];
      a.offsets(i, off);
      *a.template ptr<D>(0, off[0]) = convert_value<D>(a.template load<S>(1, off[1]));
    }
  }
}

template <class T>
__global__ void fill_kernel(int64_t n, StridedArgs<1> a, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if (a.contiguous) {
      reinterpret_cast<T*>(a.base[0])[i] = value;
    } else {
      int64_t off[1];
      a.offsets(i, off);
      *a.template ptr<T>(0, off[0]) = value;
    }
  }
}

template <class T>
__global__ void arange_kernel(int64_t n, T* out, double start, double step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<T>(start + static_cast<double>(i) * step);
}

// One Philox block per thread step, all four lanes kept: elements 4b .. 4b+3, as the CPU fills
// them (random_value(p, i) is lane i % 4 of block i / 4). `vec`: out is aligned to 4 elements.
template <class T>
__global__ void random_kernel(int64_t n, T* out, RandomParams p, bool vec) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    double v[4];
    random_block(p, static_cast<uint64_t>(b), v);
    if (vec && 4 * b + 4 <= n) {
      Pack<T, 4> q;
#pragma unroll
      for (int k = 0; k < 4; ++k) q.v[k] = static_cast<T>(v[k]);
      reinterpret_cast<Pack<T, 4>*>(out)[b] = q;
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (4 * b + k < n) out[4 * b + k] = static_cast<T>(v[k]);
    }
  }
}

// ---- host launchers -----------------------------------------------------------------------------

template <class T, class F>
void launch_unary(const Tensor& out, const Tensor& in, F f) {
  const int dev = out.device().index;
  auto a = make_args<2>({&out, &in}, out.sizes(), "unary");
  int64_t done = 0;
  if (a.contiguous && a.base[1] && aligned16(a.base[0]) && aligned16(a.base[1])) {
    constexpr int64_t N = 16 / sizeof(T);
    const int64_t packs = out.numel() / N;
    if (packs > 0)
      unary_vec_kernel<T><<<grid_for(packs, dev), kThreads, 0, detail::stream(dev)>>>(
          packs, reinterpret_cast<const T*>(a.base[1]), reinterpret_cast<T*>(a.base[0]), f);
    done = packs * N;
  }
  if (done < out.numel()) {  // the tail, or the general strided case
    if (done > 0) a.drop_front(done);
    unary_kernel<T><<<grid_for(out.numel() - done, dev), kThreads, 0, detail::stream(dev)>>>(out.numel() - done, a, f);
  }
  NABLA_CUDA_LAUNCH_CHECK();
}

template <class T, class Out, class F>
void launch_binary(const Tensor& out, const Tensor& x, const Tensor& y, F f) {
  const int dev = out.device().index;
  auto a = make_args<3>({&out, &x, &y}, out.sizes(), "binary");
  int64_t done = 0;
  if constexpr (std::is_same_v<T, Out>) {
    if (a.contiguous && a.base[1] && a.base[2] && aligned16(a.base[0]) && aligned16(a.base[1]) && aligned16(a.base[2])) {
      constexpr int64_t N = 16 / sizeof(T);
      const int64_t packs = out.numel() / N;
      if (packs > 0)
        binary_vec_kernel<T><<<grid_for(packs, dev), kThreads, 0, detail::stream(dev)>>>(
            packs, reinterpret_cast<const T*>(a.base[1]), reinterpret_cast<const T*>(a.base[2]),
            reinterpret_cast<T*>(a.base[0]), f);
      done = packs * N;
    }
  }
  if (done < out.numel()) {  // the tail, or the general strided case
    if (done > 0) a.drop_front(done);
    binary_kernel<T, Out><<<grid_for(out.numel() - done, dev), kThreads, 0, detail::stream(dev)>>>(out.numel() - done, a, f);
  }
  NABLA_CUDA_LAUNCH_CHECK();
}

template <class T>
void launch_where(const Tensor& out, const Tensor& cond, const Tensor& x, const Tensor& y) {
  const int dev = out.device().index;
  const int64_t n = out.numel();
  auto a = make_args<4>({&out, &cond, &x, &y}, out.sizes(), "where");
  int64_t done = 0;
  constexpr int64_t N = 16 / sizeof(T);
  // the condition moves N bytes per pack; x and y may be by-value scalars (null base)
  if (a.contiguous && a.base[1] && aligned16(a.base[0]) && aligned_to(a.base[1], N) &&
      (!a.base[2] || aligned16(a.base[2])) && (!a.base[3] || aligned16(a.base[3]))) {
    const int64_t packs = n / N;
    if (packs > 0)
      where_vec_kernel<T><<<grid_for(packs, dev), kThreads, 0, detail::stream(dev)>>>(
          packs, reinterpret_cast<const bool*>(a.base[1]), reinterpret_cast<const T*>(a.base[2]),
          reinterpret_cast<const T*>(a.base[3]), reinterpret_cast<T*>(a.base[0]),
          *reinterpret_cast<const T*>(a.scalar[2]), *reinterpret_cast<const T*>(a.scalar[3]));
    done = packs * N;
  }
  if (done < n) {
    if (done > 0) a.drop_front(done);
    where_kernel<T><<<grid_for(n - done, dev), kThreads, 0, detail::stream(dev)>>>(n - done, a);
  }
  NABLA_CUDA_LAUNCH_CHECK();
}

// Device-to-device copy with dtype conversion and broadcasting (both tensors on `dst`'s device).
inline void launch_copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  const int dev = dst.device().index;
  cudaStream_t stream = detail::stream(dev);
  const int64_t n = dst.numel();
  auto a = make_args<2>({&dst, &src}, dst.sizes(), "copy_");
  const bool dense = a.contiguous && a.base[1];  // same layout, both dense (src not a scalar)
  if (dense && dst.dtype() == src.dtype()) {     // a byte copy: what clone() of a dense tensor is
    if (a.base[0] != a.base[1])
      NABLA_CUDA_CHECK(cudaMemcpyAsync(a.base[0], a.base[1], static_cast<size_t>(n) * dst.element_size(),
                                       cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatch_all(dst.dtype(), "copy_", [&](auto dt) {
    dispatch_all(src.dtype(), "copy_", [&](auto st) {
      using D = typename decltype(dt)::type;
      using S = typename decltype(st)::type;
      constexpr int64_t N = kPackOf<D, S>;
      int64_t done = 0;
      if (dense && aligned_to(a.base[0], N * sizeof(D)) && aligned_to(a.base[1], N * sizeof(S))) {
        const int64_t packs = n / N;
        if (packs > 0)
          copy_vec_kernel<D, S><<<grid_for(packs, dev), kThreads, 0, stream>>>(
              packs, reinterpret_cast<const S*>(a.base[1]), reinterpret_cast<D*>(a.base[0]));
        done = packs * N;
      }
      if (done < n) {
        if (done > 0) a.drop_front(done);
        copy_kernel<D, S><<<grid_for(n - done, dev), kThreads, 0, stream>>>(n - done, a);
      }
    });
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

inline void launch_fill(const Tensor& dst, const Scalar& value) {
  if (dst.numel() == 0) return;
  const int dev = dst.device().index;
  cudaStream_t stream = detail::stream(dev);
  const int64_t n = dst.numel();
  auto a = make_args<1>({&dst}, dst.sizes(), "fill_");
  dispatch_all(dst.dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = fn::scalar_as<T>(value);
    int64_t done = 0;
    if (a.contiguous) {
      unsigned char bytes[sizeof(T)];
      std::memcpy(bytes, &v, sizeof(T));
      bool splat = true;  // every byte the same (zeros, ones of a byte type): a memset
      for (size_t k = 1; k < sizeof(T); ++k) splat = splat && bytes[k] == bytes[0];
      if (splat) {
        NABLA_CUDA_CHECK(cudaMemsetAsync(a.base[0], bytes[0], static_cast<size_t>(n) * sizeof(T), stream));
        return;
      }
      if (aligned16(a.base[0])) {
        constexpr int64_t N = 16 / sizeof(T);
        const int64_t packs = n / N;
        if (packs > 0)
          fill_vec_kernel<T><<<grid_for(packs, dev), kThreads, 0, stream>>>(packs, reinterpret_cast<T*>(a.base[0]), v);
        done = packs * N;
      }
    }
    if (done < n) {
      if (done > 0) a.drop_front(done);
      fill_kernel<T><<<grid_for(n - done, dev), kThreads, 0, stream>>>(n - done, a, v);
    }
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

inline void launch_arange(const Tensor& out, double start, double step) {
  const int dev = out.device().index;
  dispatch_numeric(out.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    arange_kernel<T><<<grid_for(out.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
        out.numel(), static_cast<T*>(out.data_ptr()), start, step);
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

inline void launch_random(const Tensor& out, const RandomParams& p) {
  const int dev = out.device().index;
  dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    random_kernel<T><<<grid_for((out.numel() + 3) / 4, dev), kThreads, 0, detail::stream(dev)>>>(
        out.numel(), static_cast<T*>(out.data_ptr()), p, aligned_to(out.data_ptr(), 4 * sizeof(T)));
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace nabla
