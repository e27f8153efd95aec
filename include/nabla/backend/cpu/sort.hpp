#pragma once
// CPU sort, topk and searchsorted along one dim (ops/sort.hpp). Each row along the dim is copied
// into a (value, index) buffer, ordered there and written back, rows in parallel. The order is
// PyTorch's: NaN above every number (so first when descending), -0.0 equal to 0.0, and equal
// values keep their input order (every sort here is stable; topk breaks ties by index).

#include <algorithm>
#include <utility>
#include <vector>

#include "../functors.hpp"
#include "loops.hpp"
#include "reduce.hpp"  // row_starts

namespace nabla {
namespace cpu {

// a < b with NaN the largest value (all NaNs equal): a strict weak order, unlike plain <.
template <class C>
inline bool nan_last_less(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) return a < b || (!fn::is_nan(a) && fn::is_nan(b));
  else return a < b;
}

template <class T>
using SortEntry = std::pair<compute_t<T>, int64_t>;

// Loads row `x` (D elements `sd` bytes apart) into buf.
template <class T>
inline void load_row(std::vector<SortEntry<T>>& buf, const char* x, int64_t D, int64_t sd) {
  buf.resize(static_cast<size_t>(D));
  for (int64_t k = 0; k < D; ++k) buf[k] = {static_cast<compute_t<T>>(*reinterpret_cast<const T*>(x + k * sd)), k};
}

// Writes the first n entries of buf to a values row and an indices row.
template <class T>
inline void store_row(const std::vector<SortEntry<T>>& buf, int64_t n, char* v, int64_t sv, char* ix, int64_t si) {
  for (int64_t k = 0; k < n; ++k) {
    *reinterpret_cast<T*>(v + k * sv) = static_cast<T>(buf[k].first);
    *reinterpret_cast<int64_t*>(ix + k * si) = buf[k].second;
  }
}

// values / indices: in's shape; stable along dim.
template <class T>
void sort_loop(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, bool descending) {
  const int64_t D = in.size(dim), es = static_cast<int64_t>(sizeof(T));
  const int64_t sd = in.stride(dim) * es, sv = values.stride(dim) * es, si = indices.stride(dim) * 8;
  Tensor vrow = row_starts(values, dim), irow = row_starts(indices, dim), xrow = row_starts(in, dim);
  auto L = make_loop<3>({&vrow, &irow, &xrow}, vrow.sizes());
  using E = SortEntry<T>;
  run<3>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    std::vector<E> buf;
    for (int64_t i = 0; i < n; ++i) {
      load_row<T>(buf, p[2] + i * s[2], D, sd);
      if (descending)
        std::stable_sort(buf.begin(), buf.end(), [](const E& a, const E& b) { return nan_last_less(b.first, a.first); });
      else
        std::stable_sort(buf.begin(), buf.end(), [](const E& a, const E& b) { return nan_last_less(a.first, b.first); });
      store_row<T>(buf, D, p[0] + i * s[0], sv, p[1] + i * s[1], si);
    }
  }, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(D, 1)));
}

// values / indices: in's shape with k at dim; the k largest (smallest) in order, ties by index.
// nth_element + sort of the first k: O(D + k log k) per row, not a full sort.
template <class T>
void topk_loop(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, int64_t k, bool largest) {
  const int64_t D = in.size(dim), es = static_cast<int64_t>(sizeof(T));
  const int64_t sd = in.stride(dim) * es, sv = values.stride(dim) * es, si = indices.stride(dim) * 8;
  Tensor vrow = row_starts(values, dim), irow = row_starts(indices, dim), xrow = row_starts(in, dim);
  auto L = make_loop<3>({&vrow, &irow, &xrow}, vrow.sizes());
  using E = SortEntry<T>;
  // a strict total order: by value, then by index
  auto before = [largest](const E& a, const E& b) {
    if (largest ? nan_last_less(b.first, a.first) : nan_last_less(a.first, b.first)) return true;
    if (largest ? nan_last_less(a.first, b.first) : nan_last_less(b.first, a.first)) return false;
    return a.second < b.second;
  };
  run<3>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    std::vector<E> buf;
    for (int64_t i = 0; i < n; ++i) {
      load_row<T>(buf, p[2] + i * s[2], D, sd);
      if (k < D) std::nth_element(buf.begin(), buf.begin() + k, buf.end(), before);
      std::sort(buf.begin(), buf.begin() + k, before);
      store_row<T>(buf, k, p[0] + i * s[0], sv, p[1] + i * s[1], si);
    }
  }, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(D, 1)));
}

// out[r, j] (int64, [R, S]) = how many of sorted[r, :] ([R, C], ascending) are <= values[r, j]
// (right) or < values[r, j] (left): the insertion point. All three dense.
template <class T>
void searchsorted_loop(const Tensor& out, const Tensor& sorted, const Tensor& values, bool right) {
  const int64_t R = out.size(0), S = out.size(1), C = sorted.size(1);
  const T* seq = static_cast<const T*>(sorted.data_ptr());
  const T* val = static_cast<const T*>(values.data_ptr());
  int64_t* o = static_cast<int64_t*>(out.data_ptr());
  parallel_for(0, R * S, std::max<int64_t>(1, kParallelGrain / 16), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* row = seq + (i / S) * C;
      const auto v = static_cast<compute_t<T>>(val[i]);
      int64_t lo = 0, hi = C;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        const auto m = static_cast<compute_t<T>>(row[mid]);
        if (right ? !nan_last_less(v, m) : nan_last_less(m, v)) lo = mid + 1;
        else hi = mid;
      }
      o[i] = lo;
    }
  });
}

}  // namespace cpu
}  // namespace nabla
