#pragma once
// The CPU backend: maps each Backend primitive to a typed CPU kernel, dispatching on dtype. (The
// fused kernels fill their ops' CPU slots from their own files: conv.hpp, pool.hpp, norm.hpp,
// linear.hpp, optim.hpp.)
// Kernels run on the calling thread plus OpenMP workers for large problems.

#include "../backend.hpp"
#include "../op_dispatch.hpp"
#include "elementwise.hpp"
#include "gemm_bf16.hpp"
#include "index.hpp"
#include "reduce.hpp"
#include "sort.hpp"

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

  void cumsum(const Tensor& out, const Tensor& in, int64_t dim, bool reverse) override {
    dispatch_numeric(in.dtype(), "cumsum", [&](auto tag) { cumsum_loop<typename decltype(tag)::type>(out, in, dim, reverse); });
  }

  void sort(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, bool descending) override {
    dispatch_all(in.dtype(), "sort", [&](auto tag) { sort_loop<typename decltype(tag)::type>(values, indices, in, dim, descending); });
  }
  void topk(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, int64_t k, bool largest) override {
    dispatch_all(in.dtype(), "topk", [&](auto tag) { topk_loop<typename decltype(tag)::type>(values, indices, in, dim, k, largest); });
  }
  void searchsorted(const Tensor& out, const Tensor& sorted, const Tensor& values, bool right) override {
    dispatch_numeric(sorted.dtype(), "searchsorted", [&](auto tag) {
      searchsorted_loop<typename decltype(tag)::type>(out, sorted, values, right);
    });
  }

  void matmul(const Tensor& out, const Tensor& a, const Tensor& b) override {
    DType t = out.dtype();
    if (t == kBFloat16) {  // bf16 GEMM (gemm_bf16.hpp): float32 sums, each output rounded once
      const int64_t nd = out.dim(), M = out.size(-2), N = out.size(-1), K = a.size(-1);
      const Shape batch(out.sizes().begin(), out.sizes().end() - 2);
      const Strides sa(a.strides().begin(), a.strides().end() - 2), sb(b.strides().begin(), b.strides().end() - 2),
          so(out.strides().begin(), out.strides().end() - 2);
      const auto* pa = static_cast<const BFloat16*>(a.data_ptr());
      const auto* pb = static_cast<const BFloat16*>(b.data_ptr());
      auto* po = static_cast<BFloat16*>(out.data_ptr());
      // Many small products: spread the batch over threads (each GEMM then runs single-threaded).
      const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, M * N * K));
      parallel_for(0, numel_of(batch), grain, [&](int64_t b0, int64_t e0) {
        for (int64_t i = b0; i < e0; ++i)
          gemm_bf16<BFloat16>(M, N, K, pa + offset_of(i, batch, sa), a.stride(nd - 2), a.stride(nd - 1),
                              pb + offset_of(i, batch, sb), b.stride(nd - 2), b.stride(nd - 1),
                              po + offset_of(i, batch, so), out.stride(nd - 2), out.stride(nd - 1), false);
      });
      return;
    }
    if (t == kFloat16) {  // no float16 GEMM on the CPU: compute in float32
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

 private:
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
