#pragma once
// CPU index kernels (index_select, gather, scatter_add, index_add) and batched matmul.
// Index kernels reuse the strided loop: the indexed operand is viewed with stride 0 along
// `dim`, and each element adds index * stride(dim) to its pointer.

#include <atomic>
#include <vector>

#include "elementwise.hpp"
#include "gemm.hpp"

namespace nabla {
namespace cpu {

using layout::along_dim_base;  // backend/layout.hpp
using layout::index_along;

[[noreturn]] inline void throw_bad_index(const char* op, int64_t bad, int64_t size, int64_t dim) {
  throw IndexError(detail::cat("nabla::", op, ": index ", bad, " is out of bounds for dimension ", dim,
                               " with size ", size, " (valid: [0, ", size, "))"));
}

// Throws IndexError for the first value of the int64 tensor `index` outside [0, size).
inline void check_index_range_kernel(const Tensor& index, int64_t size, const char* op, int64_t dim) {
  Tensor idx = index.contiguous();
  const auto* p = static_cast<const int64_t*>(idx.data_ptr());
  for (int64_t i = 0, n = idx.numel(); i < n; ++i)
    if (p[i] < 0 || p[i] >= size) throw_bad_index(op, p[i], size, dim);
}

// Runs a 3-operand loop where operand `idx_pos` holds int64 indices into a dimension of size
// `size`; body(p, s, i, index) does the element work. Out-of-range indices throw IndexError.
template <class Body>
void indexed_loop(const char* op, std::array<const Tensor*, 3> ops, const Shape& shape, int idx_pos, int64_t size,
                  int64_t dim, bool parallel, Body body) {
  std::atomic<bool> bad{false};
  std::atomic<int64_t> bad_value{0};
  auto L = make_loop<3>(ops, shape);
  run<3>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t ix = *reinterpret_cast<const int64_t*>(p[idx_pos] + i * s[idx_pos]);
      if (ix < 0 || ix >= size) {
        bad_value.store(ix);
        bad.store(true);
        return;
      }
      body(p, s, i, ix);
    }
  }, parallel ? kParallelGrain : INT64_MAX);
  if (bad.load()) throw_bad_index(op, bad_value.load(), size, dim);
}

inline void index_select_kernel(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) {
  Tensor base = along_dim_base(in, out.sizes(), dim), idx = index_along(index, out.sizes(), dim);
  dispatch_all(out.dtype(), "index_select", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t sd = in.stride(dim) * static_cast<int64_t>(sizeof(T));
    indexed_loop("index_select", {&out, &base, &idx}, out.sizes(), 2, in.size(dim), dim, true,
                 [sd](char* const* p, const int64_t* s, int64_t i, int64_t ix) {
                   *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[1] + i * s[1] + ix * sd);
                 });
  });
}

inline void gather_kernel(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) {
  Tensor base = along_dim_base(in, index.sizes(), dim);
  dispatch_all(out.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t sd = in.stride(dim) * static_cast<int64_t>(sizeof(T));
    indexed_loop("gather", {&out, &base, &index}, index.sizes(), 2, in.size(dim), dim, true,
                 [sd](char* const* p, const int64_t* s, int64_t i, int64_t ix) {
                   *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(p[1] + i * s[1] + ix * sd);
                 });
  });
}

// self[... index[i] ...] += src[i]; runs serially because different i may hit the same slot.
// `index_view` holds the indices shaped like src (gather layout for scatter_add, a 1-D index
// broadcast along dim for index_add).
inline void scatter_add_kernel(const Tensor& self, int64_t dim, const Tensor& index_view, const Tensor& src,
                               const char* op) {
  Tensor base = along_dim_base(self, index_view.sizes(), dim);
  dispatch_numeric(self.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t sd = self.stride(dim) * static_cast<int64_t>(sizeof(T));
    indexed_loop(op, {&base, &index_view, &src}, index_view.sizes(), 1, self.size(dim), dim, false,
                 [sd](char* const* p, const int64_t* s, int64_t i, int64_t ix) {
                   T* dst = reinterpret_cast<T*>(p[0] + i * s[0] + ix * sd);
                   *dst = static_cast<T>(static_cast<compute_t<T>>(*dst) +
                                         static_cast<compute_t<T>>(*reinterpret_cast<const T*>(p[2] + i * s[2])));
                 });
  });
}

// ---- matmul ------------------------------------------------------------------------------------

template <class T>
void matmul_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  const int64_t nd = out.dim(), M = out.size(-2), N = out.size(-1), K = a.size(-1);
  Shape batch(out.sizes().begin(), out.sizes().end() - 2);
  const int64_t B = numel_of(batch);
  Strides sa(a.strides().begin(), a.strides().end() - 2), sb(b.strides().begin(), b.strides().end() - 2),
      so(out.strides().begin(), out.strides().end() - 2);
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  T* po = static_cast<T*>(out.data_ptr());
  auto one = [&](int64_t i) {
    const T* A = pa + offset_of(i, batch, sa);
    const T* Bm = pb + offset_of(i, batch, sb);
    T* C = po + offset_of(i, batch, so);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      gemm<T>(M, N, K, A, a.stride(nd - 2), a.stride(nd - 1), Bm, b.stride(nd - 2), b.stride(nd - 1), C,
              out.stride(nd - 2), out.stride(nd - 1), false);
    } else {  // integer matmul: plain loops, int64 accumulation
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          acc_t<T> acc = 0;
          for (int64_t k = 0; k < K; ++k)
            acc += static_cast<acc_t<T>>(A[m * a.stride(nd - 2) + k * a.stride(nd - 1)]) *
                   static_cast<acc_t<T>>(Bm[k * b.stride(nd - 2) + n * b.stride(nd - 1)]);
          C[m * out.stride(nd - 2) + n * out.stride(nd - 1)] = static_cast<T>(acc);
        }
    }
  };
  // Many small products: spread the batch over threads (gemm then runs single-threaded).
  int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, M * N * K));
  parallel_for(0, B, grain, [&](int64_t b0, int64_t e0) {
    for (int64_t i = b0; i < e0; ++i) one(i);
  });
}

}  // namespace cpu
}  // namespace nabla
