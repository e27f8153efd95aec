#pragma once
// CUDA reductions, arg-reductions and softmax. The host side moves the reduced dims (or the
// softmax dim) last and makes the input dense, so every kernel works on rows of a [K, R]
// matrix: blocks stride over rows, long rows are split into chunks whose partial results a
// second pass combines. Accumulation is in float for 16-bit and 32-bit floats.

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

// partial[row * chunks + c] = op over in[row, c*chunk : (c+1)*chunk]
template <class T, class A, class Op>
__global__ void reduce_rows_kernel(const T* in, int64_t K, int64_t R, int64_t chunk, int64_t chunks, A* partial, Op op) {
  for (int64_t row = blockIdx.y; row < K; row += gridDim.y) {
    for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
      const int64_t start = c * chunk, end = start + chunk < R ? start + chunk : R;
      A acc = op.init();
      for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x)
        acc = op(acc, static_cast<A>(static_cast<compute_t<T>>(in[row * R + i])));
      acc = block_reduce(acc, op);
      if (threadIdx.x == 0) partial[row * chunks + c] = acc;
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

template <class T>
__global__ void softmax_rows_kernel(const T* in, T* out, int64_t K, int64_t R, bool log) {
  using A = typename dev_acc<T>::type;
  for (int64_t row = blockIdx.x; row < K; row += gridDim.x) {
    const T* x = in + row * R;
    T* y = out + row * R;
    A mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < R; i += blockDim.x) mx = ExtremumOp<A, true>{}(mx, static_cast<A>(static_cast<compute_t<T>>(x[i])));
    mx = block_reduce(mx, ExtremumOp<A, true>{});
    __shared__ A shared_max, shared_sum;
    if (threadIdx.x == 0) shared_max = mx;
    __syncthreads();
    mx = shared_max;
    A sum = 0;
    for (int64_t i = threadIdx.x; i < R; i += blockDim.x) sum += fn::exp(static_cast<A>(static_cast<compute_t<T>>(x[i])) - mx);
    sum = block_reduce(sum, SumOp<A>{});
    if (threadIdx.x == 0) shared_sum = sum;
    __syncthreads();
    sum = shared_sum;
    const A lse = mx + fn::log(sum);
    for (int64_t i = threadIdx.x; i < R; i += blockDim.x) {
      A v = static_cast<A>(static_cast<compute_t<T>>(x[i]));
      y[i] = static_cast<T>(log ? v - lse : fn::exp(v - mx) / sum);
    }
    __syncthreads();
  }
}

// ---- host side ----------------------------------------------------------------------------------

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
  const int64_t chunk = 16384, chunks = (R + chunk - 1) / chunk;
  unsigned gy = static_cast<unsigned>(K < 65535 ? K : 65535);
  Tensor partial = empty({K, chunks}, TensorOptions(dtype_of_v<A>).device(out.device()));
  unsigned gx = static_cast<unsigned>(chunks < 1024 ? chunks : 1024);
  reduce_rows_kernel<T, A><<<dim3(gx, gy), kThreads, 0, s>>>(static_cast<const T*>(dense.data_ptr()), K, R, chunk, chunks,
                                                             static_cast<A*>(partial.data_ptr()), op);
  NABLA_CUDA_LAUNCH_CHECK();
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
  Tensor dense = move_dims_last(in.detach(), last);
  Tensor result = empty(dense.sizes(), dense.options());
  const int64_t R = in.size(dim), K = in.numel() / R;
  const int dev = out.device().index;
  dispatch_floating(in.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_rows_kernel<T><<<grid_for(K * kThreads, dev), kThreads, 0, detail::stream(dev)>>>(
        static_cast<const T*>(dense.data_ptr()), static_cast<T*>(result.data_ptr()), K, R, log);
  });
  NABLA_CUDA_LAUNCH_CHECK();
  // move the softmax dim back to where it was
  Dims inverse(Dims::Base(static_cast<size_t>(in.dim()), 0));
  int64_t pos = 0;
  for (int64_t d = 0; d < in.dim(); ++d)
    if (d != dim) inverse[d] = pos++;
  inverse[dim] = in.dim() - 1;
  launch_copy(out, result.permute(inverse));
}

}  // namespace cuda
}  // namespace nabla
