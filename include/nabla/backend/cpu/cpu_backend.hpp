#pragma once
// The CPU backend: maps each Backend entry point to a typed CPU kernel, dispatching on dtype.
// Kernels run on the calling thread plus OpenMP workers for large problems.

#include "../backend.hpp"
#include "../op_dispatch.hpp"
#include "conv.hpp"
#include "elementwise.hpp"
#include "index.hpp"
#include "norm.hpp"
#include "optim.hpp"
#include "reduce.hpp"

namespace nabla {
namespace cpu {

class CpuBackend final : public Backend {
 public:
  Storage allocate(size_t nbytes, Device) override { return detail::cpu_allocate(nbytes); }

  void copy(const Tensor& dst, const Tensor& src) override { copy_kernel(dst, src); }
  void fill(const Tensor& dst, const Scalar& value) override { fill_kernel(dst, value); }
  void arange(const Tensor& out, double start, double step) override { arange_kernel(out, start, step); }
  void random(const Tensor& out, const RandomParams& params) override { random_kernel(out, params); }

  void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& p) override {
    if (op == UnaryOp::Exp) return unary_float(out, in, FastExp{});  // vectorisable float exp
    visit_unary(op, p, out.dtype(), [&](auto f, auto tag) { unary_loop<typename decltype(tag)::type>(out, in, f); });
  }

  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    visit_binary(op, a.dtype(), [&](auto f, auto tag, auto out_tag) {
      binary_loop<typename decltype(tag)::type, typename decltype(out_tag)::type>(out, a, b, f);
    });
  }

  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    dispatch_all(out.dtype(), "where", [&](auto tag) { where_loop<typename decltype(tag)::type>(out, cond, a, b); });
  }

  void reduce(ReduceOp op, const Tensor& out, const Tensor& in) override {
    dispatch_all(in.dtype(), "reduce", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using Wide = std::conditional_t<std::is_integral_v<T>, int64_t, T>;  // integer sums write int64
      switch (op) {
        case ReduceOp::Sum: return reduce_loop<T, Wide>(out, in, SumReducer<T>{});
        case ReduceOp::Mean: return reduce_loop<T, Wide>(out, in, MeanReducer<T>{});
        case ReduceOp::Prod: return reduce_loop<T, Wide>(out, in, ProdReducer<T>{});
        case ReduceOp::Max: return reduce_loop<T, T>(out, in, ExtremumReducer<T, true>{});
        case ReduceOp::Min: return reduce_loop<T, T>(out, in, ExtremumReducer<T, false>{});
      }
    });
  }

  void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) override {
    dispatch_all(in.dtype(), "argmax", [&](auto tag) {
      arg_reduce_loop<typename decltype(tag)::type>(op == ArgReduceOp::ArgMax, out, in, dim);
    });
  }

  void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) override {
    dispatch_floating(in.dtype(), "softmax", [&](auto tag) { softmax_loop<typename decltype(tag)::type>(out, in, dim, log); });
  }

  void matmul(const Tensor& out, const Tensor& a, const Tensor& b) override {
    DType t = out.dtype();
    if (t == kFloat16 || t == kBFloat16) {  // no 16-bit GEMM on the CPU: compute in float32
      auto to_float = [&](const Tensor& x) {
        Tensor f = detail::make_tensor(allocate(x.numel() * 4, Device::cpu()), 0, x.sizes(),
                                       contiguous_strides(x.sizes()), kFloat32);
        copy_kernel(f, x);
        return f;
      };
      Tensor fo = to_float(out);
      matmul_typed<float>(fo, to_float(a), to_float(b));
      copy_kernel(out, fo);
      return;
    }
    dispatch_numeric(t, "matmul", [&](auto tag) {
      using T = typename decltype(tag)::type;
      if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) return;
      else matmul_typed<T>(out, a, b);
    });
  }

  void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    index_select_kernel(out, in, dim, index);
  }
  void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    gather_kernel(out, in, dim, index);
  }
  void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    scatter_add_kernel(self, dim, index, src, "scatter_add");
  }
  void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    scatter_add_kernel(self, dim, index_along(index, src.sizes(), dim), src, "index_add");
  }
  void check_index_range(const Tensor& index, int64_t size, const char* op, int64_t dim) override {
    check_index_range_kernel(index, size, op, dim);
  }

  // ---- Fused kernels (float32 and float64; everything else takes the composite path) ----

  bool conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                      const Conv2dParams& p) override {
    return float_case(out, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      conv2d_forward_kernel<T>(out.data_ptr<T>(), x.data_ptr<T>(), w.data_ptr<T>(),
                               bias.defined() ? bias.data_ptr<T>() : nullptr, conv_shape(x, w, out, p));
    });
  }
  bool conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                             const Conv2dParams& p) override {
    return float_case(grad_x, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      conv2d_backward_input_kernel<T>(grad_x.data_ptr<T>(), grad_out.data_ptr<T>(), w.data_ptr<T>(),
                                      conv_shape(grad_x, w, grad_out, p));
    });
  }
  bool conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                              const Conv2dParams& p) override {
    return float_case(grad_w, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      conv2d_backward_weight_kernel<T>(grad_w.data_ptr<T>(), grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr,
                                       grad_out.data_ptr<T>(), x.data_ptr<T>(), conv_shape(x, grad_w, grad_out, p));
    });
  }
  bool max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) override {
    return float_case(out, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      const int64_t planes = x.size(0) * x.size(1);
      max_pool2d_kernel<T>(out.data_ptr<T>(), indices.data_ptr<int64_t>(), x.data_ptr<T>(), planes, x.size(2),
                           x.size(3), out.size(2), out.size(3), p.kernel_h, p.kernel_w, p.stride_h, p.stride_w,
                           p.pad_h, p.pad_w, p.dilation_h, p.dilation_w);
    });
  }
  bool batch_norm_forward(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& x,
                          const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                          const Tensor& running_var, bool training, double momentum, double eps) override {
    return float_case(out, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      auto ptr = [](const Tensor& u) { return u.defined() ? u.data_ptr<T>() : nullptr; };
      batch_norm_forward_kernel<T>(out.data_ptr<T>(), ptr(save_mean), ptr(save_invstd), x.data_ptr<T>(), ptr(weight),
                                   ptr(bias), ptr(running_mean), ptr(running_var), norm_shape(x), training, momentum,
                                   eps);
    });
  }
  bool batch_norm_backward(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                           const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& save_mean,
                           const Tensor& save_invstd) override {
    return float_case(x, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      auto ptr = [](const Tensor& u) { return u.defined() ? u.data_ptr<T>() : nullptr; };
      batch_norm_backward_kernel<T>(ptr(grad_x), ptr(grad_weight), ptr(grad_bias), grad_out.data_ptr<T>(),
                                    x.data_ptr<T>(), ptr(weight), save_mean.data_ptr<T>(), save_invstd.data_ptr<T>(),
                                    norm_shape(x));
    });
  }
  bool linear_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) override {
    return float_case(out, [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
      T* o = out.data_ptr<T>();
      const T* b = bias.data_ptr<T>();
      for (int64_t i = 0; i < M; ++i) std::copy(b, b + N, o + i * N);  // the GEMM accumulates onto the bias
      gemm<T>(M, N, K, x.data_ptr<T>(), K, 1, w.data_ptr<T>(), 1, K, o, N, 1, true);
    });
  }
  bool adam_step(const TensorList& params, const TensorList& grads, const TensorList& exp_avg,
                 const TensorList& exp_avg_sq, const TensorList& max_exp_avg_sq, const AdamStepParams& a) override {
    for (const Tensor& p : params)
      if (p.dtype() != kFloat32 && p.dtype() != kFloat64) return false;
    for (size_t i = 0; i < params.size(); ++i)
      float_case(params[i], [&](auto* t) {
        using T = std::remove_pointer_t<decltype(t)>;
        adam_step_kernel<T>(params[i].data_ptr<T>(), grads[i].data_ptr<T>(), exp_avg[i].data_ptr<T>(),
                            exp_avg_sq[i].data_ptr<T>(), a.amsgrad ? max_exp_avg_sq[i].data_ptr<T>() : nullptr,
                            params[i].numel(), a);
      });
    return true;
  }
  bool sgd_step(const TensorList& params, const TensorList& grads, const TensorList& momentum_buffers,
                const SgdStepParams& s) override {
    for (const Tensor& p : params)
      if (p.dtype() != kFloat32 && p.dtype() != kFloat64) return false;
    for (size_t i = 0; i < params.size(); ++i)
      float_case(params[i], [&](auto* t) {
        using T = std::remove_pointer_t<decltype(t)>;
        sgd_step_kernel<T>(params[i].data_ptr<T>(), grads[i].data_ptr<T>(),
                           momentum_buffers.empty() ? nullptr : momentum_buffers[i].data_ptr<T>(), params[i].numel(),
                           s);
      });
    return true;
  }

 private:
  // Runs f with a T* tag for float32 / float64 and returns true; false for other dtypes.
  template <class F>
  static bool float_case(const Tensor& t, F&& f) {
    if (t.dtype() == kFloat32) return f(static_cast<float*>(nullptr)), true;
    if (t.dtype() == kFloat64) return f(static_cast<double*>(nullptr)), true;
    return false;
  }
  static ConvShape conv_shape(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
    return {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), y.size(2), y.size(3),
            p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
  }
  static NormShape norm_shape(const Tensor& x) {
    int64_t inner = 1;
    for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
    return {x.size(0), x.size(1), inner};
  }

  template <class F>
  static void unary_float(const Tensor& out, const Tensor& in, F f) {
    dispatch_floating(out.dtype(), "unary", [&](auto tag) { unary_loop<typename decltype(tag)::type>(out, in, f); });
  }
};

}  // namespace cpu

#if !defined(NABLA_CPU_BACKEND_COMPILED)  // else backend/cpu/cpu_backend.cpp holds the instance
inline Backend& cpu_backend() {
  static cpu::CpuBackend instance;
  return instance;
}
#endif

}  // namespace nabla
