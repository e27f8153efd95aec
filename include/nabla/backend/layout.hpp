#pragma once
// Strided layouts, computed on the host and shared by the CPU loops and the CUDA kernels'
// argument packs: N operands broadcast to one iteration shape (operand 0 defines it, the others
// get stride 0), dims reordered by operand 0's strides and adjacent dims merged, so that a
// contiguous or simply-broadcast problem becomes one flat run. Plus the views the index
// kernels iterate over (an operand or an index with stride 0 along `dim`).

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>

#include "../core/tensor.hpp"

namespace nabla {
namespace layout {

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

// t viewed with `shape`, t's strides, and stride 0 along dim.
inline Tensor along_dim_base(const Tensor& t, const Shape& shape, int64_t dim) {
  Strides st = t.strides();
  st[static_cast<size_t>(dim)] = 0;
  return detail::make_tensor(t.storage(), t.storage_offset(), shape, st, t.dtype());
}
// A 1-D index viewed as `shape`, varying along dim only.
inline Tensor index_along(const Tensor& index, const Shape& shape, int64_t dim) {
  Strides st(shape.size(), 0);
  if (index.dim() == 1) st[static_cast<size_t>(dim)] = index.stride(0);
  return detail::make_tensor(index.storage(), index.storage_offset(), shape, st, index.dtype());
}

}  // namespace layout
}  // namespace nabla
