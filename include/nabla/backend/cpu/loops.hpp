#pragma once
// The strided N-operand loop every CPU elementwise, copy and index kernel runs on: the layout
// (backend/layout.hpp) walked row by row, in parallel chunks, so a contiguous or
// simply-broadcast problem becomes one flat inner loop that the compiler vectorises.

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>

#include "../../core/tensor.hpp"
#include "../layout.hpp"
#include "parallel.hpp"

namespace nabla {
namespace cpu {

using layout::broadcast_byte_strides;  // backend/layout.hpp: shared with the CUDA kernels
using layout::make_loop;
using layout::offset_of;
using layout::StridedLoop;

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
