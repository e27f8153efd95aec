#pragma once
// Batch norm on CUDA, and the per-channel sums that conv2d's bias gradient shares with it.
// x is a dense [N, C, S] view (S = the product of the trailing dims). Per-channel statistics
// are reduced in two passes: blocks of a (channel, chunk) grid each fold a chunk into a partial
// result (Welford's count / mean / M2 for the forward, sums of dy and dy * (x - mean) for the
// backward), then one thread per channel merges the partials in double and derives what the
// elementwise pass needs. Statistics are float (double for float64 inputs), also for 16-bit x.
// Reference: the composite batch_norm of ops/conv.hpp and its autograd backward.

#include "elementwise.cuh"

namespace nabla {
namespace cuda {

template <class T> struct norm_acc { using type = float; };
template <> struct norm_acc<double> { using type = double; };
template <class T> using norm_acc_t = typename norm_acc<T>::type;

inline DType norm_acc_dtype(DType x) { return x == kFloat64 ? kFloat64 : kFloat32; }

// ---- device code ---------------------------------------------------------------------------------

// Chan et al.'s merge of two (count, mean, M2) summaries into the first.
template <class A>
__device__ __forceinline__ void welford_merge(A& n, A& mean, A& m2, A nb, A mean_b, A m2_b) {
  if (nb == A(0)) return;
  if (n == A(0)) {
    n = nb, mean = mean_b, m2 = m2_b;
    return;
  }
  const A total = n + nb, delta = mean_b - mean, fb = nb / total;
  mean += delta * fb;
  m2 += m2_b + delta * delta * n * fb;
  n = total;
}

// Merges every thread's summary; the result is valid in thread 0. blockDim.x % 32 == 0.
template <class A>
__device__ void block_welford(A& n, A& mean, A& m2) {
  __shared__ A shared[3][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) {
    const A nb = __shfl_down_sync(0xffffffffu, n, off), mb = __shfl_down_sync(0xffffffffu, mean, off),
            m2b = __shfl_down_sync(0xffffffffu, m2, off);
    welford_merge(n, mean, m2, nb, mb, m2b);  // lane 0 only ever merges lanes below 32
  }
  if (lane == 0) shared[0][warp] = n, shared[1][warp] = mean, shared[2][warp] = m2;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  if (warp == 0) {
    n = lane < warps ? shared[0][lane] : A(0);
    mean = lane < warps ? shared[1][lane] : A(0);
    m2 = lane < warps ? shared[2][lane] : A(0);
    for (int off = 16; off > 0; off /= 2) {
      const A nb = __shfl_down_sync(0xffffffffu, n, off), mb = __shfl_down_sync(0xffffffffu, mean, off),
              m2b = __shfl_down_sync(0xffffffffu, m2, off);
      welford_merge(n, mean, m2, nb, mb, m2b);
    }
  }
  __syncthreads();
}

template <class A>
struct AddOp {
  __device__ A operator()(A a, A b) const { return a + b; }
};

// Grid (C, chunks): block (c, k) folds elements [k * chunk, (k + 1) * chunk) of channel c's
// N * S values (element i is x[i / S, c, i % S]) into partial[(c * chunks + k) * 3 + {0,1,2}].
template <class T, class A>
__global__ void bn_partial_stats_kernel(const T* __restrict__ x, int64_t C, int64_t S, int64_t L, int64_t chunk,
                                        A* __restrict__ partial) {
  const int64_t c = blockIdx.x, k = blockIdx.y, chunks = gridDim.y;
  const int64_t start = k * chunk, end = start + chunk < L ? start + chunk : L;
  A n = 0, mean = 0, m2 = 0;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const int64_t b = i / S;
    const A v = static_cast<A>(static_cast<compute_t<T>>(x[(b * C + c) * S + (i - b * S)]));
    n += A(1);
    const A d = v - mean;
    mean += d / n;
    m2 += d * (v - mean);
  }
  block_welford(n, mean, m2);
  if (threadIdx.x == 0) {
    A* out = partial + (c * chunks + k) * 3;
    out[0] = n, out[1] = mean, out[2] = m2;
  }
}

// One thread per channel: mean, 1 / sqrt(biased var + eps), and the running statistics
// r = (1 - momentum) r + momentum * stat with the unbiased variance (as the composite).
template <class A>
__global__ void bn_finalize_stats_kernel(const A* __restrict__ partial, int64_t C, int64_t chunks, double eps,
                                         double momentum, A* __restrict__ mean_out, A* __restrict__ invstd_out,
                                         A* __restrict__ running_mean, A* __restrict__ running_var) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    double n = 0, mean = 0, m2 = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      const A* p = partial + (c * chunks + k) * 3;
      welford_merge<double>(n, mean, m2, static_cast<double>(p[0]), static_cast<double>(p[1]), static_cast<double>(p[2]));
    }
    const double var = m2 / n;
    mean_out[c] = static_cast<A>(mean);
    invstd_out[c] = static_cast<A>(1.0 / ::sqrt(var + eps));
    if (running_mean)
      running_mean[c] = static_cast<A>((1.0 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
    if (running_var)
      running_var[c] =
          static_cast<A>((1.0 - momentum) * static_cast<double>(running_var[c]) + momentum * var * n / (n - 1.0));
  }
}

template <class A>
__global__ void bn_invstd_kernel(const A* __restrict__ var, int64_t C, double eps, A* __restrict__ invstd) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x)
    invstd[c] = static_cast<A>(1.0 / ::sqrt(static_cast<double>(var[c]) + eps));
}

// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]; weight / bias may be null (1 / 0).
template <class T, class A>
__global__ void bn_apply_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, int64_t C, int64_t S,
                                const A* __restrict__ mean, const A* __restrict__ invstd, const A* __restrict__ weight,
                                const A* __restrict__ bias) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    A v = (static_cast<A>(static_cast<compute_t<T>>(x[i])) - mean[c]) * invstd[c];
    if (weight) v = v * weight[c];
    if (bias) v = v + bias[c];
    y[i] = static_cast<T>(v);
  }
}

// Grid (C, chunks): partial[(c * chunks + k) * 2 + {0, 1}] = sums over the chunk of dy and of
// dy * (x - mean[c]); with x null only the first (conv2d's bias gradient).
template <class T, class A>
__global__ void channel_sums_kernel(const T* __restrict__ dy, const T* __restrict__ x, const A* __restrict__ mean,
                                    int64_t C, int64_t S, int64_t L, int64_t chunk, A* __restrict__ partial) {
  const int64_t c = blockIdx.x, k = blockIdx.y, chunks = gridDim.y;
  const int64_t start = k * chunk, end = start + chunk < L ? start + chunk : L;
  const A m = x ? mean[c] : A(0);
  A s0 = 0, s1 = 0;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    const int64_t b = i / S, off = (b * C + c) * S + (i - b * S);
    const A g = static_cast<A>(static_cast<compute_t<T>>(dy[off]));
    s0 += g;
    if (x) s1 += g * (static_cast<A>(static_cast<compute_t<T>>(x[off])) - m);
  }
  s0 = block_reduce(s0, AddOp<A>{});
  if (x) s1 = block_reduce(s1, AddOp<A>{});  // x is uniform across the block
  if (threadIdx.x == 0) {
    partial[(c * chunks + k) * 2] = s0;
    partial[(c * chunks + k) * 2 + 1] = s1;
  }
}

// One thread per channel: sum_dy and sum_dy_xmu from the partials, then
//   grad_bias = sum_dy, grad_weight = sum_dy_xmu * invstd, and for grad_x
//   coef = [sum_dy / L, invstd^2 * sum_dy_xmu / L, weight * invstd] (each [C]).
// Any output may be null.
template <class A>
__global__ void channel_sums_finalize_kernel(const A* __restrict__ partial, int64_t C, int64_t chunks, int64_t L,
                                             const A* __restrict__ invstd, const A* __restrict__ weight,
                                             A* __restrict__ grad_weight, A* __restrict__ grad_bias, A* __restrict__ coef) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    double sdy = 0, sdyx = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      sdy += static_cast<double>(partial[(c * chunks + k) * 2]);
      sdyx += static_cast<double>(partial[(c * chunks + k) * 2 + 1]);
    }
    if (grad_bias) grad_bias[c] = static_cast<A>(sdy);
    if (!invstd) continue;
    const double is = static_cast<double>(invstd[c]);
    if (grad_weight) grad_weight[c] = static_cast<A>(sdyx * is);
    if (coef) {
      const double w = weight ? static_cast<double>(weight[c]) : 1.0;
      coef[c] = static_cast<A>(sdy / static_cast<double>(L));
      coef[C + c] = static_cast<A>(is * is * sdyx / static_cast<double>(L));
      coef[2 * C + c] = static_cast<A>(w * is);
    }
  }
}

// grad_x = weight * invstd * (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean))).
template <class T, class A>
__global__ void bn_backward_input_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                                         int64_t total, int64_t C, int64_t S, const A* __restrict__ mean,
                                         const A* __restrict__ coef) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (i / S) % C;
    const A g = static_cast<A>(static_cast<compute_t<T>>(dy[i]));
    const A xm = static_cast<A>(static_cast<compute_t<T>>(x[i])) - mean[c];
    dx[i] = static_cast<T>(coef[2 * C + c] * (g - coef[c] - xm * coef[C + c]));
  }
}

// out[n, c, s] += bias[c] (conv2d's bias, after cuDNN wrote the convolution).
template <class T>
__global__ void add_channel_bias_kernel(T* __restrict__ out, const T* __restrict__ bias, int64_t total, int64_t C,
                                        int64_t S) {
  using Cm = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<T>(static_cast<Cm>(out[i]) + static_cast<Cm>(bias[(i / S) % C]));
}

// ---- host launchers -----------------------------------------------------------------------------

// t itself when it already has dtype dt (or is undefined), else a converted copy on its device.
inline Tensor with_dtype(const Tensor& t, DType dt) {
  if (!t.defined() || t.dtype() == dt) return t;
  Tensor c = empty(t.sizes(), TensorOptions(dt).device(t.device()));
  launch_copy(c, t);
  return c;
}
// Writes `value` into `dst` unless they are the same tensor (dtype conversion included).
inline void write_back(const Tensor& dst, const Tensor& value) {
  if (dst.defined() && !dst.is_same(value)) launch_copy(dst, value);
}
template <class A>
A* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<A*>(t.data_ptr()) : nullptr;
}

// How channel reductions split each channel's L values into chunks: enough blocks to fill the
// device, each thread folding a handful of values at least.
struct ChannelGrid {
  int64_t chunks, chunk;
};
inline ChannelGrid channel_grid(int64_t C, int64_t L, int dev) {
  const int64_t want = int64_t(detail::device_state(dev).sm_count) * 8;
  int64_t chunks = (want + C - 1) / C;
  const int64_t useful = (L + kThreads * 4 - 1) / (kThreads * 4);
  chunks = std::max<int64_t>(1, std::min<int64_t>({chunks, useful, 65535}));
  const int64_t chunk = (L + chunks - 1) / chunks;
  return {(L + chunk - 1) / chunk, chunk};
}

// The dims [N, C, S] of a batch-norm input; false when the kernels should not take it.
inline bool channel_dims(const Tensor& x, int64_t& N, int64_t& C, int64_t& S) {
  if (x.dim() < 2 || !is_floating_point(x.dtype())) return false;
  N = x.size(0), C = x.size(1);
  S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.size(d);
  return x.numel() > 0 && C <= int64_t{0x7fffffff};
}

inline bool launch_batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                                      const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      const Tensor& running_mean, const Tensor& running_var, bool training,
                                      double momentum, double eps) {
  int64_t N, C, S;
  if (!channel_dims(x, N, C, S) || out.dtype() != x.dtype()) return false;
  const int64_t L = N * S, total = x.numel();
  if (training && L <= 1) return false;  // the composite raises the error
  if (!training && !(running_mean.defined() && running_var.defined())) return false;
  const int dev = x.device().index;
  const cudaStream_t st = detail::stream(dev);
  const DType acc = norm_acc_dtype(x.dtype());
  const TensorOptions acc_opt = TensorOptions(acc).device(x.device());
  dispatch_floating(x.dtype(), "batch_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = norm_acc_t<T>;
    Tensor w = with_dtype(weight, acc), b = with_dtype(bias, acc), mean, invstd;
    if (training) {
      mean = save_mean.defined() && save_mean.dtype() == acc ? save_mean : empty({C}, acc_opt);
      invstd = save_invstd.defined() && save_invstd.dtype() == acc ? save_invstd : empty({C}, acc_opt);
      Tensor rm = with_dtype(running_mean, acc), rv = with_dtype(running_var, acc);
      const ChannelGrid g = channel_grid(C, L, dev);
      Storage partial = detail::allocate(static_cast<size_t>(C * g.chunks * 3) * sizeof(A), dev);
      bn_partial_stats_kernel<T, A><<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(g.chunks)), kThreads, 0, st>>>(
          static_cast<const T*>(x.data_ptr()), C, S, L, g.chunk, static_cast<A*>(partial->data));
      NABLA_CUDA_LAUNCH_CHECK();
      bn_finalize_stats_kernel<A><<<grid_for(C, dev), kThreads, 0, st>>>(
          static_cast<const A*>(partial->data), C, g.chunks, eps, momentum, static_cast<A*>(mean.data_ptr()),
          static_cast<A*>(invstd.data_ptr()), ptr_or_null<A>(rm), ptr_or_null<A>(rv));
      NABLA_CUDA_LAUNCH_CHECK();
      write_back(save_mean, mean);
      write_back(save_invstd, invstd);
      write_back(running_mean, rm);
      write_back(running_var, rv);
    } else {
      mean = with_dtype(running_mean, acc);
      Tensor var = with_dtype(running_var, acc);
      invstd = empty({C}, acc_opt);
      bn_invstd_kernel<A><<<grid_for(C, dev), kThreads, 0, st>>>(static_cast<const A*>(var.data_ptr()), C, eps,
                                                                   static_cast<A*>(invstd.data_ptr()));
      NABLA_CUDA_LAUNCH_CHECK();
    }
    bn_apply_kernel<T, A><<<grid_for(total, dev), kThreads, 0, st>>>(
        static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()), total, C, S,
        static_cast<const A*>(mean.data_ptr()), static_cast<const A*>(invstd.data_ptr()), ptr_or_null<const A>(w),
        ptr_or_null<const A>(b));
    NABLA_CUDA_LAUNCH_CHECK();
  });
  return true;
}

inline bool launch_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                                       const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                       const Tensor& save_mean, const Tensor& save_invstd) {
  int64_t N, C, S;
  if (!channel_dims(x, N, C, S) || grad_out.sizes() != x.sizes() || grad_out.dtype() != x.dtype()) return false;
  if (!save_mean.defined() || !save_invstd.defined()) return false;
  if (!grad_x.defined() && !grad_weight.defined() && !grad_bias.defined()) return true;
  const int64_t L = N * S, total = x.numel();
  const int dev = x.device().index;
  const cudaStream_t st = detail::stream(dev);
  const DType acc = norm_acc_dtype(x.dtype());
  const TensorOptions acc_opt = TensorOptions(acc).device(x.device());
  dispatch_floating(x.dtype(), "batch_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = norm_acc_t<T>;
    Tensor mean = with_dtype(save_mean, acc), invstd = with_dtype(save_invstd, acc), w = with_dtype(weight, acc);
    Tensor gw = grad_weight.defined() ? (grad_weight.dtype() == acc ? grad_weight : empty({C}, acc_opt)) : Tensor();
    Tensor gb = grad_bias.defined() ? (grad_bias.dtype() == acc ? grad_bias : empty({C}, acc_opt)) : Tensor();
    Tensor coef = grad_x.defined() ? empty({3, C}, acc_opt) : Tensor();
    const ChannelGrid g = channel_grid(C, L, dev);
    Storage partial = detail::allocate(static_cast<size_t>(C * g.chunks * 2) * sizeof(A), dev);
    channel_sums_kernel<T, A><<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(g.chunks)), kThreads, 0, st>>>(
        static_cast<const T*>(grad_out.data_ptr()), static_cast<const T*>(x.data_ptr()),
        static_cast<const A*>(mean.data_ptr()), C, S, L, g.chunk, static_cast<A*>(partial->data));
    NABLA_CUDA_LAUNCH_CHECK();
    channel_sums_finalize_kernel<A><<<grid_for(C, dev), kThreads, 0, st>>>(
        static_cast<const A*>(partial->data), C, g.chunks, L, static_cast<const A*>(invstd.data_ptr()),
        ptr_or_null<const A>(w), ptr_or_null<A>(gw), ptr_or_null<A>(gb), ptr_or_null<A>(coef));
    NABLA_CUDA_LAUNCH_CHECK();
    write_back(grad_weight, gw);
    write_back(grad_bias, gb);
    if (grad_x.defined()) {
      bn_backward_input_kernel<T, A><<<grid_for(total, dev), kThreads, 0, st>>>(
          static_cast<const T*>(grad_out.data_ptr()), static_cast<const T*>(x.data_ptr()),
          static_cast<T*>(grad_x.data_ptr()), total, C, S, static_cast<const A*>(mean.data_ptr()),
          static_cast<const A*>(coef.data_ptr()));
      NABLA_CUDA_LAUNCH_CHECK();
    }
  });
  return true;
}

// grad_bias [C] (overwritten) = the sum of dy [N, C, ...] over every dim but 1.
inline bool launch_channel_sum(const Tensor& grad_bias, const Tensor& dy) {
  int64_t N, C, S;
  if (!channel_dims(dy, N, C, S) || grad_bias.numel() != C) return false;
  const int64_t L = N * S;
  const int dev = dy.device().index;
  const cudaStream_t st = detail::stream(dev);
  const DType acc = norm_acc_dtype(dy.dtype());
  dispatch_floating(dy.dtype(), "conv2d_backward_bias", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = norm_acc_t<T>;
    Tensor gb = grad_bias.dtype() == acc ? grad_bias : empty({C}, TensorOptions(acc).device(dy.device()));
    const ChannelGrid g = channel_grid(C, L, dev);
    Storage partial = detail::allocate(static_cast<size_t>(C * g.chunks * 2) * sizeof(A), dev);
    channel_sums_kernel<T, A><<<dim3(static_cast<unsigned>(C), static_cast<unsigned>(g.chunks)), kThreads, 0, st>>>(
        static_cast<const T*>(dy.data_ptr()), nullptr, nullptr, C, S, L, g.chunk, static_cast<A*>(partial->data));
    NABLA_CUDA_LAUNCH_CHECK();
    channel_sums_finalize_kernel<A><<<grid_for(C, dev), kThreads, 0, st>>>(
        static_cast<const A*>(partial->data), C, g.chunks, L, nullptr, nullptr, nullptr, static_cast<A*>(gb.data_ptr()),
        nullptr);
    NABLA_CUDA_LAUNCH_CHECK();
    write_back(grad_bias, gb);
  });
  return true;
}

// out [N, C, ...] += bias [C] (converted to out's dtype if needed).
inline void launch_add_channel_bias(const Tensor& out, const Tensor& bias) {
  const int64_t C = out.size(1), total = out.numel(), S = total / std::max<int64_t>(1, out.size(0) * C);
  if (total == 0) return;
  const int dev = out.device().index;
  Tensor b = with_dtype(bias, out.dtype());
  dispatch_floating(out.dtype(), "conv2d_bias", [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_channel_bias_kernel<T><<<grid_for(total, dev), kThreads, 0, detail::stream(dev)>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(b.data_ptr()), total, C, S);
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

// ---- batch_norm's CUDA slots (ops/norm.hpp's batch_norm_kernels()) ------------------------------

inline bool batch_norm_forward_cuda(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                                    const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    const Tensor& running_mean, const Tensor& running_var, bool training,
                                    double momentum, double eps) {
  NoGradGuard no_grad;
  detail::DeviceGuard g(out.device().index);
  return launch_batch_norm_forward(out, save_mean, save_invstd, x, weight, bias, running_mean, running_var, training,
                                   momentum, eps);
}
inline bool batch_norm_backward_cuda(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                                     const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                     const Tensor& save_mean, const Tensor& save_invstd) {
  NoGradGuard no_grad;
  detail::DeviceGuard g(x.device().index);
  return launch_batch_norm_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, save_mean, save_invstd);
}
NABLA_FILL_KERNELS(batch_norm_cuda, batch_norm_kernels(), DeviceType::CUDA,
                   (DTypeSet{kFloat32, kFloat64, kFloat16, kBFloat16}),
                   (BatchNormKernels{&batch_norm_forward_cuda, &batch_norm_backward_cuda}));

}  // namespace cuda
}  // namespace nabla
