// The CUDA backend: the one translation unit that nabla::cuda compiles (with nvcc, once per
// build tree). It defines nabla::cuda::backend() and the runtime API declared in api.hpp;
// headers reach it only through those functions, so user code never needs nvcc.
// Without CMake: nvcc -std=c++20 -DNABLA_WITH_CUDA -I<prefix>/include -I<prefix>/include/nabla
//                -c backend.cu, and link with -lcudart -lcublas -lcublasLt (add -DNABLA_HAS_CUDNN
//                and -lcudnn for cuDNN convolutions).

#ifndef NABLA_WITH_CUDA
#define NABLA_WITH_CUDA 1
#endif

#include <climits>

#include <kernels/elementwise.cuh>
#include <kernels/index.cuh>
#include <kernels/matmul.cuh>
#include <kernels/norm.cuh>
#include <kernels/optim.cuh>
#include <kernels/pool.cuh>
#include <kernels/reduce.cuh>
#include <nabla/backend/cuda/cublaslt.hpp>
#include <nabla/backend/op_dispatch.hpp>
#if defined(NABLA_HAS_CUDNN)
#include <nabla/backend/cuda/cudnn.hpp>
#endif

namespace nabla {
namespace cuda {
namespace {

class CudaBackend final : public Backend {
 public:
  Storage allocate(size_t nbytes, Device device) override { return detail::allocate(nbytes, device.index); }

  void copy(const Tensor& dst, const Tensor& src) override {
    NoGradGuard no_grad;
    if (dst.numel() == 0) return;
    if (dst.is_cuda() && src.is_cuda() && dst.device() == src.device()) {
      detail::DeviceGuard g(dst.device().index);
      launch_copy(dst, src);
    } else if (dst.is_cuda() && src.is_cuda()) {  // across GPUs: through the host (rare)
      copy(dst, src.to(Device::cpu()));
    } else if (dst.is_cuda()) {
      to_device(dst, src);
    } else {
      to_host(dst, src);
    }
  }

  void fill(const Tensor& dst, const Scalar& value) override {
    detail::DeviceGuard g(dst.device().index);
    launch_fill(dst, value);
  }
  void arange(const Tensor& out, double start, double step) override {
    detail::DeviceGuard g(out.device().index);
    launch_arange(out, start, step);
  }
  void random(const Tensor& out, const RandomParams& params) override {
    detail::DeviceGuard g(out.device().index);
    launch_random(out, params);
  }

  void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& p) override {
    detail::DeviceGuard g(out.device().index);
    visit_unary(op, p, out.dtype(), [&](auto f, auto tag) { launch_unary<typename decltype(tag)::type>(out, in, f); });
  }

  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    visit_binary(op, a.dtype(), [&](auto f, auto tag, auto out_tag) {
      launch_binary<typename decltype(tag)::type, typename decltype(out_tag)::type>(out, a, b, f);
    });
  }

  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    dispatch_all(out.dtype(), "where", [&](auto tag) { launch_where<typename decltype(tag)::type>(out, cond, a, b); });
  }

  void reduce(ReduceOp op, const Tensor& out, const Tensor& in) override {
    detail::DeviceGuard g(out.device().index);
    launch_reduce(op, out, in);
  }
  void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) override {
    detail::DeviceGuard g(out.device().index);
    launch_arg_reduce(op == ArgReduceOp::ArgMax, out, in, dim);
  }
  void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) override {
    detail::DeviceGuard g(out.device().index);
    launch_softmax(out, in, dim, log);
  }
  void matmul(const Tensor& out, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    launch_matmul(out, a, b);
  }

  void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    detail::DeviceGuard g(out.device().index);
    launch_gather_like("index_select", out, cpu::along_dim_base(in, out.sizes(), dim),
                       cpu::index_along(index, out.sizes(), dim), dim, in.size(dim), in.stride(dim));
  }
  void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    detail::DeviceGuard g(out.device().index);
    launch_gather_like("gather", out, cpu::along_dim_base(in, index.sizes(), dim), index, dim, in.size(dim),
                       in.stride(dim));
  }
  void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    detail::DeviceGuard g(self.device().index);
    launch_scatter_add("scatter_add", self, dim, index, src);
  }
  void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    detail::DeviceGuard g(self.device().index);
    launch_scatter_add("index_add", self, dim, cpu::index_along(index, src.sizes(), dim), src);
  }
  void check_index_range(const Tensor& index, int64_t size, const char* op, int64_t dim) override {
    detail::DeviceGuard g(index.device().index);
    launch_index_range_check(index, size, op, dim);
  }

  // Every synchronisation also reports a bad index that a kernel recorded since the last one.
  void synchronize(Device d) override { detail::deferred_index_errors(d.index).synchronize_and_check(); }

  // ---- fused kernels (see backend.hpp): false hands the case back to the composite ----------

  bool conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Conv2dParams& p) override {
#if defined(NABLA_HAS_CUDNN)
    NoGradGuard no_grad;
    if (!same_device(out, {&x, &w, &bias})) return false;
    detail::DeviceGuard g(out.device().index);
    detail::ConvProblem pb{};
    if (!conv_problem(x, w, out, p, pb)) return false;
    if (bias.defined() && (bias.numel() != out.size(1) || !bias.is_contiguous() || !is_floating_point(bias.dtype())))
      return false;
    Tensor xa = aligned_input(x), wa = aligned_input(w), ya = aligned_output(out);
    if (!detail::cudnn_convolution(detail::ConvKind::Forward, pb, xa.data_ptr(), wa.data_ptr(), ya.data_ptr()))
      return false;
    if (bias.defined()) launch_add_channel_bias(ya, bias);
    if (!ya.is_same(out)) launch_copy(out, ya);
    return true;
#else
    return false;
#endif
  }

  bool conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                             const Conv2dParams& p) override {
#if defined(NABLA_HAS_CUDNN)
    NoGradGuard no_grad;
    if (!same_device(grad_x, {&grad_out, &w})) return false;
    detail::DeviceGuard g(grad_x.device().index);
    detail::ConvProblem pb{};
    if (!conv_problem(grad_x, w, grad_out, p, pb)) return false;
    Tensor gya = aligned_input(grad_out), wa = aligned_input(w), gxa = aligned_output(grad_x);
    if (!detail::cudnn_convolution(detail::ConvKind::BackwardData, pb, gxa.data_ptr(), wa.data_ptr(), gya.data_ptr()))
      return false;
    if (!gxa.is_same(grad_x)) launch_copy(grad_x, gxa);
    return true;
#else
    return false;
#endif
  }

  bool conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                              const Conv2dParams& p) override {
#if defined(NABLA_HAS_CUDNN)
    NoGradGuard no_grad;
    if (!grad_w.defined() || !same_device(grad_w, {&grad_bias, &grad_out, &x})) return false;
    detail::DeviceGuard g(grad_w.device().index);
    detail::ConvProblem pb{};
    if (!conv_problem(x, grad_w, grad_out, p, pb)) return false;
    if (grad_bias.defined() && (grad_bias.numel() != grad_out.size(1) || !grad_bias.is_contiguous() ||
                                !is_floating_point(grad_bias.dtype())))
      return false;
    Tensor xa = aligned_input(x), gya = aligned_input(grad_out), gwa = aligned_output(grad_w);
    if (!detail::cudnn_convolution(detail::ConvKind::BackwardFilter, pb, xa.data_ptr(), gwa.data_ptr(), gya.data_ptr()))
      return false;
    if (!gwa.is_same(grad_w)) launch_copy(grad_w, gwa);
    if (grad_bias.defined()) launch_channel_sum(grad_bias, grad_out);  // accepts every shape checked above
    return true;
#else
    return false;
#endif
  }

  bool max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) override {
    NoGradGuard no_grad;
    if (!same_device(out, {&indices, &x}) || !out.is_contiguous() || !indices.is_contiguous() || !x.is_contiguous())
      return false;
    detail::DeviceGuard g(out.device().index);
    return launch_max_pool2d(out, indices, x, p);
  }

  bool batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                          const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, bool training, double momentum, double eps) override {
    NoGradGuard no_grad;
    if (!same_device(out, {&save_mean, &save_invstd, &x, &weight, &bias, &running_mean, &running_var}) ||
        !all_contiguous({&out, &save_mean, &save_invstd, &x, &weight, &bias, &running_mean, &running_var}) ||
        out.sizes() != x.sizes() || !per_channel({&save_mean, &save_invstd, &weight, &bias, &running_mean, &running_var}, x))
      return false;
    detail::DeviceGuard g(out.device().index);
    return launch_batch_norm_forward(out, save_mean, save_invstd, x, weight, bias, running_mean, running_var, training,
                                     momentum, eps);
  }

  bool batch_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                           const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd) override {
    NoGradGuard no_grad;
    if (!same_device(x, {&grad_x, &grad_weight, &grad_bias, &grad_out, &weight, &save_mean, &save_invstd}) ||
        !all_contiguous({&grad_x, &grad_weight, &grad_bias, &grad_out, &x, &weight, &save_mean, &save_invstd}) ||
        (grad_x.defined() && (grad_x.sizes() != x.sizes() || grad_x.dtype() != x.dtype())) ||
        !per_channel({&grad_weight, &grad_bias, &weight, &save_mean, &save_invstd}, x))
      return false;
    detail::DeviceGuard g(x.device().index);
    return launch_batch_norm_backward(grad_x, grad_weight, grad_bias, grad_out, x, weight, save_mean, save_invstd);
  }

  bool linear_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) override {
    NoGradGuard no_grad;
    if (!bias.defined() || !same_device(out, {&x, &w, &bias}) || !all_contiguous({&out, &x, &w, &bias})) return false;
    const DType t = out.dtype();
    if ((t != kFloat32 && t != kFloat16 && t != kBFloat16) || x.dtype() != t || w.dtype() != t || bias.dtype() != t)
      return false;
    if (out.dim() != 2 || x.dim() != 2 || w.dim() != 2 || bias.dim() != 1) return false;
    const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
    if (w.size(1) != K || out.size(0) != M || out.size(1) != N || bias.size(0) != N) return false;
    if (M == 0 || N == 0 || K == 0) return false;  // nothing to gain; the composite handles it
    detail::DeviceGuard g(out.device().index);
    detail::LinearProblem pb{};
    pb.device = out.device().index;
    pb.dtype = t == kFloat32 ? CUDA_R_32F : t == kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
    pb.allow_tf32 = t == kFloat32 && float32_matmul_precision() != MatmulPrecision::Highest;
    pb.M = M, pb.N = N, pb.K = K;
    pb.align_x = detail::pointer_alignment(x.data_ptr());
    pb.align_w = detail::pointer_alignment(w.data_ptr());
    pb.align_out = detail::pointer_alignment(out.data_ptr());
    pb.align_bias = detail::pointer_alignment(bias.data_ptr());
    return detail::cublaslt_linear(pb, x.data_ptr(), w.data_ptr(), bias.data_ptr(), out.data_ptr());
  }

  bool adam_step(const TensorList& params, const TensorList& grads, const TensorList& exp_avg,
                 const TensorList& exp_avg_sq, const TensorList& max_exp_avg_sq, const AdamStepParams& p) override {
    return launch_adam_step(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, p);
  }

  bool sgd_step(const TensorList& params, const TensorList& grads, const TensorList& momentum_buffers,
                const SgdStepParams& p) override {
    return launch_sgd_step(params, grads, momentum_buffers, p);
  }

 private:
  // Every defined tensor in `others` lives on `ref`'s CUDA device.
  static bool same_device(const Tensor& ref, std::initializer_list<const Tensor*> others) {
    if (!ref.defined() || !ref.is_cuda()) return false;
    for (const Tensor* t : others)
      if (t->defined() && (!t->is_cuda() || t->device() != ref.device())) return false;
    return true;
  }
  static bool all_contiguous(std::initializer_list<const Tensor*> ts) {
    for (const Tensor* t : ts)
      if (t->defined() && !t->is_contiguous()) return false;
    return true;
  }
  // Every defined tensor is a floating [C] vector for x [N, C, ...].
  static bool per_channel(std::initializer_list<const Tensor*> ts, const Tensor& x) {
    if (x.dim() < 2) return false;
    for (const Tensor* t : ts)
      if (t->defined() && (t->dim() != 1 || t->size(0) != x.size(1) || !is_floating_point(t->dtype()))) return false;
    return true;
  }

  // cuDNN's fast kernels want 16-byte aligned operands: a view at an odd offset is copied (an
  // output is written to a fresh tensor and copied back).
  static Tensor aligned_input(const Tensor& t) {
    if (aligned16(t.data_ptr())) return t;
    Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
    launch_copy(c, t);
    return c;
  }
  static Tensor aligned_output(const Tensor& t) {
    return aligned16(t.data_ptr()) ? t : empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  }

#if defined(NABLA_HAS_CUDNN)
  // The cuDNN problem for x [N, C, H, W], w [O, C / groups, kh, kw], y [N, O, Ho, Wo]; false
  // for anything cuDNN should not be asked (mismatched shapes, sizes past int, empty tensors).
  static bool conv_problem(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p,
                           detail::ConvProblem& pb) {
    if (!x.defined() || !w.defined() || !y.defined() || x.dim() != 4 || w.dim() != 4 || y.dim() != 4) return false;
    if (x.dtype() != w.dtype() || x.dtype() != y.dtype()) return false;
    switch (x.dtype()) {
      case DType::Float32: pb.dtype = CUDNN_DATA_FLOAT; break;
      case DType::Float64: pb.dtype = CUDNN_DATA_DOUBLE; break;
      case DType::Float16: pb.dtype = CUDNN_DATA_HALF; break;
      case DType::BFloat16: pb.dtype = CUDNN_DATA_BFLOAT16; break;
      default: return false;
    }
    for (const Tensor* t : {&x, &w, &y})
      if (!t->is_contiguous() || t->numel() == 0 || t->numel() > INT_MAX) return false;
    auto fits = [](int64_t v, int64_t lo) { return v >= lo && v <= INT_MAX; };
    if (!fits(p.stride_h, 1) || !fits(p.stride_w, 1) || !fits(p.dilation_h, 1) || !fits(p.dilation_w, 1) ||
        !fits(p.pad_h, 0) || !fits(p.pad_w, 0) || !fits(p.groups, 1))
      return false;
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0), kh = w.size(2),
                  kw = w.size(3), Ho = y.size(2), Wo = y.size(3);
    if (y.size(0) != N || y.size(1) != O || C % p.groups != 0 || O % p.groups != 0 || w.size(1) * p.groups != C)
      return false;
    if (Ho != (H + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1 ||
        Wo != (W + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1)
      return false;
    pb.n = static_cast<int>(N), pb.c = static_cast<int>(C), pb.h = static_cast<int>(H), pb.w = static_cast<int>(W);
    pb.o = static_cast<int>(O), pb.kh = static_cast<int>(kh), pb.kw = static_cast<int>(kw);
    pb.ho = static_cast<int>(Ho), pb.wo = static_cast<int>(Wo);
    pb.stride_h = static_cast<int>(p.stride_h), pb.stride_w = static_cast<int>(p.stride_w);
    pb.pad_h = static_cast<int>(p.pad_h), pb.pad_w = static_cast<int>(p.pad_w);
    pb.dilation_h = static_cast<int>(p.dilation_h), pb.dilation_w = static_cast<int>(p.dilation_w);
    pb.groups = static_cast<int>(p.groups);
    pb.allow_tf32 = x.dtype() == kFloat32 && float32_matmul_precision() != MatmulPrecision::Highest;
    pb.device = y.device().index;
    return true;
  }
#endif
  // host -> device: convert and densify on the host, copy through the pinned ring (asynchronous:
  // the host bytes are in pinned memory when this returns), then broadcast on the device
  static void to_device(const Tensor& dst, const Tensor& src) {
    const int dev = dst.device().index;
    detail::DeviceGuard g(dev);
    Tensor host = ::nabla::detail::cast(src, dst.dtype()).contiguous();
    const bool direct = dst.is_contiguous() && dst.sizes() == src.sizes();
    Tensor target = direct ? dst : empty(src.sizes(), dst.options());
    detail::pinned_ring(dev).copy_to_device(target.data_ptr(), host.data_ptr(), host.nbytes(), detail::stream(dev));
    if (!direct) launch_copy(dst, target);
  }

  // device -> host: convert and densify on the device, one memcpy, synchronise
  static void to_host(const Tensor& dst, const Tensor& src) {
    const int dev = src.device().index;
    detail::DeviceGuard g(dev);
    Tensor dense = src;
    if (src.dtype() != dst.dtype() || !src.is_contiguous()) {
      dense = empty(src.sizes(), TensorOptions(dst.dtype()).device(src.device()));
      launch_copy(dense, src);
    }
    const bool direct = dst.is_contiguous() && dst.sizes() == src.sizes();
    Tensor host = direct ? dst : empty(src.sizes(), dst.dtype());
    NABLA_CUDA_CHECK(cudaMemcpyAsync(host.data_ptr(), dense.data_ptr(), dense.nbytes(), cudaMemcpyDeviceToHost,
                                     detail::stream(dev)));
    detail::deferred_index_errors(dev).synchronize_and_check();
    if (!direct) cpu::copy_kernel(dst, host);
  }
};

}  // namespace

Backend& backend() {
  NABLA_CHECK(is_available(), DeviceError,
              "cuda: a CUDA tensor was requested but no CUDA device is available (no driver or no GPU)");
  static CudaBackend instance;
  return instance;
}

bool is_available() { return detail::probe_device_count() > 0; }
int device_count() { return detail::probe_device_count(); }

void synchronize(int device) {
  if (!is_available()) return;
  if (device < 0) NABLA_CUDA_CHECK(cudaGetDevice(&device));
  backend().synchronize(Device::cuda(device));
}

MemoryStats memory_stats(int device) {
  MemoryStats m;
  if (!is_available()) return m;
  auto& s = detail::device_state(device);
  m.in_use = s.in_use.load();
  m.peak = s.peak.load();
  uint64_t reserved = 0;
  NABLA_CUDA_CHECK(cudaMemPoolGetAttribute(s.pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  m.reserved = static_cast<size_t>(reserved);
  return m;
}

void reset_peak_memory_stats(int device) {
  if (!is_available()) return;
  auto& s = detail::device_state(device);
  s.peak = s.in_use.load();
}

void empty_cache(int device) {
  if (!is_available()) return;
  auto& s = detail::device_state(device);
  NABLA_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  NABLA_CUDA_CHECK(cudaMemPoolTrimTo(s.pool, 0));
}

FusedStats fused_stats() {
  const auto& c = detail::fused_counters();
  FusedStats s;
  s.conv_cudnn = c.conv_cudnn.load(std::memory_order_relaxed);
  s.conv_declined = c.conv_declined.load(std::memory_order_relaxed);
  s.linear_cublaslt = c.linear_cublaslt.load(std::memory_order_relaxed);
  s.linear_declined = c.linear_declined.load(std::memory_order_relaxed);
  for (int k = 0; k < 3; ++k) s.last_conv_algo[k] = c.last_conv_algo[k].load(std::memory_order_relaxed);
  return s;
}

void reset_fused_stats() {
  auto& c = detail::fused_counters();
  for (auto* counter : {&c.conv_cudnn, &c.conv_declined, &c.linear_cublaslt, &c.linear_declined})
    counter->store(0, std::memory_order_relaxed);
  for (auto& algo : c.last_conv_algo) algo.store(-1, std::memory_order_relaxed);
}

}  // namespace cuda
}  // namespace nabla
