#pragma once
// CUDA reductions, arg-reductions, softmax and cumsum. The host side moves the reduced dims (or the
// softmax dim) last and makes the input dense, so every kernel works on rows of a [K, R]
// matrix: blocks stride over rows, long rows are split into chunks whose partial results a
// second pass combines (a row in one chunk is finished in place). Rows whose start is 16-byte
// aligned are read 16 bytes per load, several loads in flight per thread. Accumulation is in
// float for 16-bit and 32-bit floats.

#include <cub/block/block_scan.cuh>

#include "elementwise.cuh"

namespace nabla {
namespace cuda {

template <class T> struct dev_acc { using type = float; };
template <> struct dev_acc<double> { using type = double; };
template <> struct dev_acc<int32_t> { using type = int64_t; };
template <> struct dev_acc<int64_t> { using type = int64_t; };
template <> struct dev_acc<uint8_t> { using type = int64_t; };
template <> struct dev_acc<bool> { using type = int64_t; };

// max/min accumulate in a type warp shuffles support (bytes widen to int).
template <class T> struct ext_acc { using type = compute_t<T>; };
template <> struct ext_acc<uint8_t> { using type = int32_t; };
template <> struct ext_acc<bool> { using type = int32_t; };

template <class A> struct SumOp {
  __device__ A init() const { return A(0); }
  __device__ A operator()(A a, A b) const { return a + b; }
};
template <class A> struct ProdOp {
  __device__ A init() const { return A(1); }
  __device__ A operator()(A a, A b) const { return a * b; }
};
template <class A, bool IsMax> struct ExtremumOp {
  __device__ A init() const {
    if constexpr (std::is_floating_point_v<A>) return IsMax ? -INFINITY : INFINITY;
    else return IsMax ? std::numeric_limits<A>::lowest() : std::numeric_limits<A>::max();
  }
  __device__ A operator()(A a, A b) const {
    if (fn::is_nan(a)) return a;
    if (fn::is_nan(b)) return b;
    return IsMax ? (b > a ? b : a) : (b < a ? b : a);
  }
};

// Calls f(p) for the packs x[i], x[i + step], ... below `last` (one thread's share of a row),
// with U packs loaded before any is used: memory-level parallelism for the row kernels below.
template <int U, class P, class F>
__device__ __forceinline__ void for_each_pack(const P* __restrict__ x, int64_t i, int64_t last, int64_t step, F&& f) {
  for (; i + (U - 1) * step < last; i += U * step) {
    P v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u] = x[i + u * step];
#pragma unroll
    for (int u = 0; u < U; ++u) f(v[u]);
  }
  for (; i < last; i += step) {
    const P v = x[i];  // one 16-byte load (passing x[i] straight to f split it into four)
    f(v);
  }
}

// out[row * chunks + c] = op over in[row, c*chunk : (c+1)*chunk], read as packs of N elements
// (N > 1 only when R and chunk are multiples of N and `in` is 16-byte aligned). With one chunk
// per row, Out is the result type and Mean divides by `count` here; otherwise Out = A and
// finish_rows_kernel combines the partials.
template <int N, class T, class A, class Out, class Op>
__global__ void reduce_rows_kernel(const T* __restrict__ in, int64_t K, int64_t R, int64_t chunk, int64_t chunks,
                                   Out* __restrict__ out, int64_t count, bool mean, Op op) {
  constexpr int U = 4;  // packs loaded before any is combined: memory-level parallelism
  const Pack<T, N>* rows = reinterpret_cast<const Pack<T, N>*>(in);
  const int64_t step = blockDim.x;
  for (int64_t row = blockIdx.y; row < K; row += gridDim.y) {
    for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
      const int64_t start = c * chunk, end = start + chunk < R ? start + chunk : R;
      const Pack<T, N>* x = rows + row * (R / N);
      const int64_t last = end / N;
      A acc = op.init();
      for_each_pack<U>(x, start / N + threadIdx.x, last, step, [&](const Pack<T, N>& v) {
#pragma unroll
        for (int k = 0; k < N; ++k) acc = op(acc, static_cast<A>(static_cast<compute_t<T>>(v.v[k])));
      });
      acc = block_reduce(acc, op);
      if (threadIdx.x == 0) {
        if (mean) acc = acc / static_cast<A>(count);
        out[row * chunks + c] = static_cast<Out>(acc);
      }
    }
  }
}

// out[row] = finish(op over partial[row, :]); Mean divides by `count`.
template <class A, class Out, class Op>
__global__ void finish_rows_kernel(const A* partial, int64_t K, int64_t chunks, Out* out, int64_t count, bool mean, Op op) {
  for (int64_t row = blockIdx.x; row < K; row += gridDim.x) {
    A acc = op.init();
    for (int64_t i = threadIdx.x; i < chunks; i += blockDim.x) acc = op(acc, partial[row * chunks + i]);
    acc = block_reduce(acc, op);
    if (threadIdx.x == 0) {
      if (mean) acc = acc / static_cast<A>(count);
      out[row] = static_cast<Out>(acc);
    }
  }
}

template <class T>
__global__ void arg_reduce_kernel(const T* in, int64_t K, int64_t R, int64_t* out, bool is_max) {
  for (int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row < K; row += int64_t(gridDim.x) * blockDim.x) {
    const T* x = in + row * R;
    auto best = static_cast<compute_t<T>>(x[0]);
    int64_t bi = 0;
    for (int64_t k = 1; k < R && !fn::is_nan(best); ++k) {
      auto v = static_cast<compute_t<T>>(x[k]);
      if (fn::is_nan(v) || (is_max ? v > best : v < best)) {
        best = v;
        bi = k;
      }
    }
    out[row] = bi;
  }
}

// Online softmax statistics: m = running max, s = sum of exp(x - m). Each thread folds its
// elements in one read, rescaling s when the max grows; the block then merges the pairs.
template <class A>
__device__ __forceinline__ void softmax_fold(A& m, A& s, A x) {
  if (!(x <= m)) {  // a new max (or NaN, which then poisons s as the two-pass form does)
    s = s * fn::exp(m - x) + fn::exp(x - x);  // exp(x - x): 1, NaN for x = inf like the two-pass form
    m = x;
  } else if (x != -INFINITY) {  // -inf adds nothing, also while m is still -inf
    s += fn::exp(x - m);
  }
}

template <class A>
__device__ __forceinline__ void softmax_merge(A& m, A& s, A m2, A s2) {
  const A M = ExtremumOp<A, true>{}(m, m2);
  // a side that saw only -inf has s == 0 (and m == -inf): it adds nothing
  s = (s == A(0) ? A(0) : s * fn::exp(m - M)) + (s2 == A(0) ? A(0) : s2 * fn::exp(m2 - M));
  m = M;
}

// Merges every thread's (m, s) across the block; every thread gets the result.
template <class A>
__device__ void block_softmax_stats(A& m, A& s) {
  __shared__ A shared_m[32], shared_s[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int off = 16; off > 0; off /= 2)
    softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, off), __shfl_xor_sync(0xffffffffu, s, off));
  if (lane == 0) {
    shared_m[warp] = m;
    shared_s[warp] = s;
  }
  __syncthreads();
  m = shared_m[0];
  s = shared_s[0];
  for (int w = 1; w < warps; ++w) softmax_merge(m, s, shared_m[w], shared_s[w]);
  __syncthreads();  // shared_* are reused for the next row
}

// Folds the N elements of one pack into the running (m, s) of softmax_fold.
template <class A, class T, int N>
__device__ __forceinline__ void softmax_fold_pack(A& m, A& s, const Pack<T, N>& v) {
#pragma unroll
  for (int k = 0; k < N; ++k) softmax_fold(m, s, static_cast<A>(static_cast<compute_t<T>>(v.v[k])));
}

// One pack of the output from the row's statistics: log_softmax (x - m) - log(s) (not
// x - (m + log(s)), which rounds away float32's precision near 0 for large logits), softmax
// exp(x - m) / s.
template <class A, class T, int N>
__device__ __forceinline__ Pack<T, N> softmax_pack(const Pack<T, N>& v, bool log, A m, A log_s, A inv) {
  Pack<T, N> r;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const A a = static_cast<A>(static_cast<compute_t<T>>(v.v[k]));
    r.v[k] = static_cast<T>(log ? (a - m) - log_s : fn::exp(a - m) * inv);
  }
  return r;
}

// y[row] = softmax (or log_softmax) of x[row] over rows of length R (a multiple of N; both
// pointers 16-byte aligned when N > 1). One block per row: a read for the statistics, then a
// read (mostly from L2) and a write for the output.
template <int N, class T>
__global__ void softmax_rows_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t K, int64_t R, bool log) {
  using A = typename dev_acc<T>::type;
  constexpr int U = 4;
  const int64_t packs = R / N, step = blockDim.x;
  for (int64_t row = blockIdx.x; row < K; row += gridDim.x) {
    const Pack<T, N>* x = reinterpret_cast<const Pack<T, N>*>(in) + row * packs;
    Pack<T, N>* y = reinterpret_cast<Pack<T, N>*>(out) + row * packs;
    A m = -INFINITY, s = 0;
    for_each_pack<U>(x, threadIdx.x, packs, step, [&](const Pack<T, N>& v) { softmax_fold_pack(m, s, v); });
    block_softmax_stats(m, s);
    const A log_s = fn::log(s), inv = A(1) / s;
    for (int64_t i = threadIdx.x; i < packs; i += step) {
      const Pack<T, N> v = x[i];  // one 16-byte load, as in for_each_pack
      y[i] = softmax_pack(v, log, m, log_s, inv);
    }
  }
}

// Rows short enough to stay in registers (at most C packs per thread, e.g. 8192 float32 with
// 256 threads): one read for the statistics and the output together, one write. The general
// kernel above reads the row twice.
template <int N, int C, class T>
__global__ void softmax_rows_cached_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t K, int64_t R,
                                           bool log) {
  using A = typename dev_acc<T>::type;
  const int64_t packs = R / N, step = blockDim.x;
  for (int64_t row = blockIdx.x; row < K; row += gridDim.x) {
    const Pack<T, N>* x = reinterpret_cast<const Pack<T, N>*>(in) + row * packs;
    Pack<T, N>* y = reinterpret_cast<Pack<T, N>*>(out) + row * packs;
    Pack<T, N> v[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t i = threadIdx.x + c * step;
      if (i < packs) v[c] = x[i];
    }
    A m = -INFINITY, s = 0;
#pragma unroll
    for (int c = 0; c < C; ++c)
      if (threadIdx.x + c * step < packs) softmax_fold_pack(m, s, v[c]);
    block_softmax_stats(m, s);
    const A log_s = fn::log(s), inv = A(1) / s;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t i = threadIdx.x + c * step;
      if (i < packs) y[i] = softmax_pack(v[c], log, m, log_s, inv);
    }
  }
}

// Inclusive prefix sums of rows of length R (reverse: from the row's end), one block per row:
// tiles of kThreads * ITEMS elements are scanned with cub::BlockScan and carried into the next.
template <class T, int ITEMS>
__global__ void cumsum_rows_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t K, int64_t R, bool reverse) {
  using A = typename dev_acc<T>::type;
  using Scan = cub::BlockScan<A, kThreads>;
  __shared__ typename Scan::TempStorage scratch;
  constexpr int64_t kTile = int64_t(kThreads) * ITEMS;
  for (int64_t row = blockIdx.x; row < K; row += gridDim.x) {
    const T* x = in + row * R;
    T* y = out + row * R;
    A carry = A(0);
    for (int64_t base = 0; base < R; base += kTile) {
      A v[ITEMS];
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) {
        const int64_t j = base + int64_t(threadIdx.x) * ITEMS + i;
        v[i] = j < R ? static_cast<A>(static_cast<compute_t<T>>(x[reverse ? R - 1 - j : j])) : A(0);
      }
      A tile_sum;
      Scan(scratch).InclusiveSum(v, v, tile_sum);
      __syncthreads();  // scratch is reused by the next tile
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) {
        const int64_t j = base + int64_t(threadIdx.x) * ITEMS + i;
        if (j < R) y[reverse ? R - 1 - j : j] = static_cast<T>(static_cast<compute_t<T>>(v[i] + carry));
      }
      carry += tile_sum;
    }
  }
}

// ---- host side ----------------------------------------------------------------------------------

// The permutation that moves the last dim of a tensor of rank `rank` back to `dim` (the inverse
// of move_dims_last for one dim).
inline Dims last_dim_back(int64_t rank, int64_t dim) {
  Dims inverse(Dims::Base(static_cast<size_t>(rank), 0));
  int64_t pos = 0;
  for (int64_t d = 0; d < rank; ++d)
    if (d != dim) inverse[d] = pos++;
  inverse[dim] = rank - 1;
  return inverse;
}

// in with `last` dims moved to the end (keeping order within each group), made dense.
inline Tensor move_dims_last(const Tensor& in, const std::vector<bool>& last) {
  Dims perm;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (!last[d]) perm.push_back(d);
  for (int64_t d = 0; d < in.dim(); ++d)
    if (last[d]) perm.push_back(d);
  return in.permute(perm).contiguous();
}

template <class T, class Out, class A, class Op>
void reduce_rows(const Tensor& dense, int64_t K, int64_t R, const Tensor& out, bool mean, Op op) {
  const int dev = out.device().index;
  cudaStream_t s = detail::stream(dev);
  constexpr int N = static_cast<int>(16 / sizeof(T));
  const int64_t chunk = 16384, chunks = (R + chunk - 1) / chunk;  // chunk: a multiple of every N
  const T* in = static_cast<const T*>(dense.data_ptr());
  const bool vec = aligned16(in) && R % N == 0;
  unsigned gy = static_cast<unsigned>(K < 65535 ? K : 65535);
  unsigned gx = static_cast<unsigned>(chunks < 1024 ? chunks : 1024);
  auto rows = [&](auto* dst, int64_t count, bool finish) {
    using D = std::remove_pointer_t<decltype(dst)>;
    if (vec)
      reduce_rows_kernel<N, T, A, D><<<dim3(gx, gy), kThreads, 0, s>>>(in, K, R, chunk, chunks, dst, count, finish, op);
    else
      reduce_rows_kernel<1, T, A, D><<<dim3(gx, gy), kThreads, 0, s>>>(in, K, R, chunk, chunks, dst, count, finish, op);
    NABLA_CUDA_LAUNCH_CHECK();
  };
  if (chunks == 1) {  // one block per row: finish in place, no partials and no second launch
    rows(static_cast<Out*>(out.data_ptr()), R, mean);
    return;
  }
  Tensor partial = empty({K, chunks}, TensorOptions(dtype_of_v<A>).device(out.device()));
  rows(static_cast<A*>(partial.data_ptr()), 1, false);
  finish_rows_kernel<A, Out><<<grid_for(K * kThreads, dev), kThreads, 0, s>>>(
      static_cast<const A*>(partial.data_ptr()), K, chunks, static_cast<Out*>(out.data_ptr()), R, mean, op);
  NABLA_CUDA_LAUNCH_CHECK();
}

inline void launch_reduce(ReduceOp op, const Tensor& out, const Tensor& in) {
  NoGradGuard no_grad;
  std::vector<bool> red(static_cast<size_t>(in.dim()));
  int64_t R = 1;
  for (int64_t d = 0; d < in.dim(); ++d) {
    red[d] = out.size(d) == 1 && in.size(d) != 1;
    if (red[d]) R *= in.size(d);
  }
  const int64_t K = out.numel();
  if (R == 0) {  // empty reductions: the identity (mean of nothing is NaN, as in PyTorch)
    launch_fill(out, op == ReduceOp::Prod ? Scalar(1) : op == ReduceOp::Mean ? Scalar(NAN) : Scalar(0));
    return;
  }
  Tensor dense = move_dims_last(in.detach(), red);
  Tensor o = out.is_contiguous() ? out : empty(out.sizes(), out.options());
  dispatch_all(in.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename dev_acc<T>::type;
    using Wide = std::conditional_t<std::is_integral_v<T>, int64_t, T>;
    switch (op) {
      case ReduceOp::Sum: return reduce_rows<T, Wide, A>(dense, K, R, o, false, SumOp<A>{});
      case ReduceOp::Mean: return reduce_rows<T, Wide, A>(dense, K, R, o, true, SumOp<A>{});
      case ReduceOp::Prod: return reduce_rows<T, Wide, A>(dense, K, R, o, false, ProdOp<A>{});
      case ReduceOp::Max: return reduce_rows<T, T, typename ext_acc<T>::type>(dense, K, R, o, false, ExtremumOp<typename ext_acc<T>::type, true>{});
      case ReduceOp::Min: return reduce_rows<T, T, typename ext_acc<T>::type>(dense, K, R, o, false, ExtremumOp<typename ext_acc<T>::type, false>{});
    }
  });
  if (!o.is_same(out)) launch_copy(out, o);
}

inline void launch_arg_reduce(bool is_max, const Tensor& out, const Tensor& in, int64_t dim) {
  NoGradGuard no_grad;
  std::vector<bool> last(static_cast<size_t>(in.dim()), false);
  last[dim] = true;
  Tensor dense = move_dims_last(in.detach(), last);
  const int64_t R = in.size(dim), K = out.numel();
  const int dev = out.device().index;
  Tensor o = out.is_contiguous() ? out : empty(out.sizes(), out.options());
  dispatch_all(in.dtype(), "argmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    arg_reduce_kernel<T><<<grid_for(K, dev), kThreads, 0, detail::stream(dev)>>>(
        static_cast<const T*>(dense.data_ptr()), K, R, static_cast<int64_t*>(o.data_ptr()), is_max);
  });
  NABLA_CUDA_LAUNCH_CHECK();
  if (!o.is_same(out)) launch_copy(out, o);
}

inline void launch_softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) {
  NoGradGuard no_grad;
  std::vector<bool> last(static_cast<size_t>(in.dim()), false);
  last[dim] = true;
  Tensor dense = move_dims_last(in.detach(), last);  // no copy when in is already dense, dim last
  // rows along the last dim of a contiguous out: written in place; otherwise into a dense
  // temporary that is moved back below
  const bool direct = dim == in.dim() - 1 && out.is_contiguous();
  Tensor result = direct ? out : empty(dense.sizes(), dense.options());
  const int64_t R = in.size(dim), K = in.numel() / R;
  const int dev = out.device().index;
  dispatch_floating(in.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = static_cast<int>(16 / sizeof(T));
    const T* x = static_cast<const T*>(dense.data_ptr());
    T* y = static_cast<T*>(result.data_ptr());
    const bool vec = aligned16(x) && aligned16(y) && R % N == 0;
    // short rows get a smaller block (a multiple of a warp) so fewer threads idle
    const int64_t per_row = vec ? R / N : R;
    const int threads = static_cast<int>(per_row >= kThreads ? kThreads : (per_row + 31) / 32 * 32);
    const int64_t cap = static_cast<int64_t>(detail::device_state(dev).sm_count) * 32;
    const unsigned blocks = static_cast<unsigned>(K < cap ? K : cap);
    constexpr int C = 8;  // packs a thread keeps in registers when the row fits
    const bool cached = per_row <= int64_t{C} * threads;
    if (vec && cached)
      softmax_rows_cached_kernel<N, C, T><<<blocks, threads, 0, detail::stream(dev)>>>(x, y, K, R, log);
    else if (vec)
      softmax_rows_kernel<N, T><<<blocks, threads, 0, detail::stream(dev)>>>(x, y, K, R, log);
    else if (cached)
      softmax_rows_cached_kernel<1, C, T><<<blocks, threads, 0, detail::stream(dev)>>>(x, y, K, R, log);
    else
      softmax_rows_kernel<1, T><<<blocks, threads, 0, detail::stream(dev)>>>(x, y, K, R, log);
  });
  NABLA_CUDA_LAUNCH_CHECK();
  if (direct) return;
  launch_copy(out, result.permute(last_dim_back(in.dim(), dim)));  // the softmax dim back where it was
}

inline void launch_cumsum(const Tensor& out, const Tensor& in, int64_t dim, bool reverse) {
  NoGradGuard no_grad;
  std::vector<bool> last(static_cast<size_t>(in.dim()), false);
  last[dim] = true;
  Tensor dense = move_dims_last(in.detach(), last);
  const bool direct = dim == in.dim() - 1 && out.is_contiguous();
  Tensor result = direct ? out : empty(dense.sizes(), dense.options());
  const int64_t R = in.size(dim), K = in.numel() / R;
  const int dev = out.device().index;
  const int64_t cap = static_cast<int64_t>(detail::device_state(dev).sm_count) * 32;
  const unsigned blocks = static_cast<unsigned>(K < cap ? K : cap);
  dispatch_numeric(in.dtype(), "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>)
      cumsum_rows_kernel<T, 4><<<blocks, kThreads, 0, detail::stream(dev)>>>(
          static_cast<const T*>(dense.data_ptr()), static_cast<T*>(result.data_ptr()), K, R, reverse);
  });
  NABLA_CUDA_LAUNCH_CHECK();
  if (!direct) launch_copy(out, result.permute(last_dim_back(in.dim(), dim)));
}

}  // namespace cuda
}  // namespace nabla
