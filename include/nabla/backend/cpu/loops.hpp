#pragma once
// The strided N-operand loop every CPU elementwise, copy and index kernel runs on. Operand 0
// defines the iteration shape; the others are broadcast to it (stride 0). Dims are reordered
// by operand 0's strides and adjacent dims merged, so a contiguous or simply-broadcast problem
// becomes one flat inner loop that the compiler vectorises.

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>

#include "../../core/tensor.hpp"
#include "parallel.hpp"

namespace nabla {
namespace cpu {

template <int N>
struct StridedLoop {
  Shape shape;                      // iteration shape after merging, outermost first
  std::array<Strides, N> strides;   // byte strides per operand, aligned with shape
  std::array<char*, N> base;
  int64_t numel = 1;
};

// Broadcast strides (in bytes) of t viewed with `shape` (right-aligned, stride 0 where t has 1).
inline Strides broadcast_byte_strides(const Tensor& t, const Shape& shape) {
  Strides out(shape.size(), 0);
  size_t off = shape.size() - static_cast<size_t>(t.dim());
  int64_t es = static_cast<int64_t>(t.element_size());
  for (size_t i = 0; i < static_cast<size_t>(t.dim()); ++i)
    out[off + i] = (t.sizes()[i] == 1 && shape[off + i] != 1) ? 0 : t.strides()[i] * es;
  return out;
}

template <int N>
StridedLoop<N> make_loop(const std::array<const Tensor*, N>& ops, const Shape& shape) {
  StridedLoop<N> L;
  size_t nd = shape.size();
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) {
    st[k] = broadcast_byte_strides(*ops[k], shape);
    L.base[k] = static_cast<char*>(ops[k]->data_ptr());
  }
  // Order dims by operand 0's stride (largest outermost) so writes are sequential.
  SmallVector<int64_t, 6> perm(nd);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t x, int64_t y) {
    int64_t sx = st[0][x] < 0 ? -st[0][x] : st[0][x], sy = st[0][y] < 0 ? -st[0][y] : st[0][y];
    return sx > sy;
  });
  for (size_t j = 0; j < nd; ++j) {
    int64_t d = perm[j];
    if (shape[d] == 1) continue;  // size-1 dims contribute nothing
    bool merged = false;
    if (!L.shape.empty()) {
      // merge into the previous (outer) dim if every operand is contiguous across the pair
      merged = true;
      for (int k = 0; k < N; ++k)
        if (L.strides[k].back() != st[k][d] * shape[d]) merged = false;
      if (merged) {
        L.shape.back() *= shape[d];
        for (int k = 0; k < N; ++k) L.strides[k].back() = st[k][d];
      }
    }
    if (!merged) {
      L.shape.push_back(shape[d]);
      for (int k = 0; k < N; ++k) L.strides[k].push_back(st[k][d]);
    }
  }
  if (L.shape.empty()) {  // 0-dim (or all size-1): one element
    L.shape.push_back(1);
    for (int k = 0; k < N; ++k) L.strides[k].push_back(0);
  }
  L.numel = numel_of(L.shape);
  return L;
}

// Offset of row-major linear index `linear` in a (shape, strides) layout.
inline int64_t offset_of(int64_t linear, const Shape& shape, const Strides& st) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (linear % shape[d]) * st[d];
    linear /= shape[d];
  }
  return off;
}

// Runs inner(ptrs, inner_strides, n) over linear elements [begin, end) of the loop.
template <int N, class Inner>
void run_range(const StridedLoop<N>& L, int64_t begin, int64_t end, Inner& inner) {
  const size_t nd = L.shape.size();
  const int64_t inner_n = L.shape[nd - 1];
  std::array<int64_t, N> inner_stride;
  for (int k = 0; k < N; ++k) inner_stride[k] = L.strides[k][nd - 1];
  SmallVector<int64_t, 6> idx(nd, 0);
  int64_t rem = begin;
  for (size_t d = nd; d-- > 0;) {
    idx[d] = rem % L.shape[d];
    rem /= L.shape[d];
  }
  std::array<char*, N> ptr;
  for (int k = 0; k < N; ++k) {
    int64_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += idx[d] * L.strides[k][d];
    ptr[k] = L.base[k] + off;
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t n = std::min(inner_n - idx[nd - 1], end - pos);
    inner(ptr.data(), inner_stride.data(), n);
    pos += n;
    if (pos >= end) break;
    // advance to the start of the next row
    for (int k = 0; k < N; ++k) ptr[k] += n * inner_stride[k];
    idx[nd - 1] += n;
    for (size_t d = nd - 1; d > 0 && idx[d] == L.shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
      for (int k = 0; k < N; ++k) ptr[k] += L.strides[k][d - 1] - L.shape[d] * L.strides[k][d];
    }
  }
}

// Iterates every element of the loop, in parallel chunks when it has at least `grain` elements.
template <int N, class Inner>
void run(const StridedLoop<N>& L, Inner&& inner, int64_t grain = kParallelGrain) {
  if (L.numel == 0) return;
  parallel_for(0, L.numel, grain, [&](int64_t b, int64_t e) { run_range<N>(L, b, e, inner); });
}

}  // namespace cpu
}  // namespace nabla
