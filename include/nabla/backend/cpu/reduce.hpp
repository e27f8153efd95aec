#pragma once
// CPU reductions (sum, mean, prod, max, min over any set of dims), arg-reductions, softmax and
// cumsum.
// Two loop shapes cover the cases that matter: "inner" (the reduced elements of one output are
// contiguous: lane-parallel accumulators) and "outer" (reducing over leading dims: whole rows
// of contiguous outputs accumulate at once). Sums accumulate in double for float inputs.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "../functors.hpp"
#include "loops.hpp"
#include "vec_math.hpp"

namespace nabla {
namespace cpu {

template <class T> struct SumReducer {
  using acc = acc_t<T>;
  acc init() const { return acc(0); }
  acc combine(acc a, T x) const { return a + static_cast<acc>(static_cast<compute_t<T>>(x)); }
  acc merge(acc a, acc b) const { return a + b; }
  acc finish(acc a, int64_t) const { return a; }
};
template <class T> struct MeanReducer : SumReducer<T> {
  acc_t<T> finish(acc_t<T> a, int64_t n) const { return a / static_cast<acc_t<T>>(n); }
};
template <class T> struct ProdReducer {
  using acc = acc_t<T>;
  acc init() const { return acc(1); }
  acc combine(acc a, T x) const { return a * static_cast<acc>(static_cast<compute_t<T>>(x)); }
  acc merge(acc a, acc b) const { return a * b; }
  acc finish(acc a, int64_t) const { return a; }
};
template <class T, bool IsMax> struct ExtremumReducer {  // NaN-propagating max / min
  using acc = compute_t<T>;
  acc init() const {
    if constexpr (std::numeric_limits<acc>::has_infinity)
      return IsMax ? -std::numeric_limits<acc>::infinity() : std::numeric_limits<acc>::infinity();
    else return IsMax ? std::numeric_limits<acc>::lowest() : std::numeric_limits<acc>::max();
  }
  acc combine(acc a, T xv) const {
    acc x = static_cast<acc>(xv);
    if constexpr (IsMax) return (fn::is_nan(x) || x > a) ? x : a;
    else return (fn::is_nan(x) || x < a) ? x : a;
  }
  acc merge(acc a, acc b) const { return combine(a, static_cast<T>(b)); }
  acc finish(acc a, int64_t) const { return a; }
};

// Reduces n elements at byte stride `stride`.
template <class T, class R>
typename R::acc reduce_segment(const char* p, int64_t stride, int64_t n, const R& r) {
  using A = typename R::acc;
  if (stride == static_cast<int64_t>(sizeof(T))) {
    const T* x = reinterpret_cast<const T*>(p);
    constexpr int kLanes = 16;  // independent accumulators: vectorisable and fewer rounding steps
    A lanes[kLanes];
    for (auto& l : lanes) l = r.init();
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lanes[j] = r.combine(lanes[j], x[i + j]);
    A acc = lanes[0];
    for (int j = 1; j < kLanes; ++j) acc = r.merge(acc, lanes[j]);
    for (; i < n; ++i) acc = r.combine(acc, x[i]);
    return acc;
  }
  A acc = r.init();
  for (int64_t i = 0; i < n; ++i) acc = r.combine(acc, *reinterpret_cast<const T*>(p + i * stride));
  return acc;
}

// Reduces the linear range [r0, r1) of the reduced index space (shape, byte strides).
template <class T, class R>
typename R::acc reduce_range(const char* base, const Shape& shape, const Strides& st, int64_t r0, int64_t r1,
                             const R& r) {
  const size_t nd = shape.size();
  if (nd == 0) return r.combine(r.init(), *reinterpret_cast<const T*>(base));
  SmallVector<int64_t, 6> idx(nd, 0);
  int64_t rem = r0;
  for (size_t d = nd; d-- > 0;) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
  }
  typename R::acc acc = r.init();
  int64_t pos = r0;
  while (pos < r1) {
    int64_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += idx[d] * st[d];
    int64_t n = std::min(shape[nd - 1] - idx[nd - 1], r1 - pos);
    acc = r.merge(acc, reduce_segment<T>(base + off, st[nd - 1], n, r));
    pos += n;
    idx[nd - 1] += n;
    for (size_t d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
  return acc;
}

// Merges adjacent dims of a (shape, strides...) group when every stride list is contiguous across them.
template <int N>
void coalesce(Shape& shape, std::array<Strides*, N> st) {
  Shape s;
  std::array<Strides, N> out;
  for (size_t d = 0; d < shape.size(); ++d) {
    bool merge = !s.empty();
    for (int k = 0; k < N && merge; ++k)
      if (out[k].back() != (*st[k])[d] * shape[d]) merge = false;
    if (merge) {
      s.back() *= shape[d];
      for (int k = 0; k < N; ++k) out[k].back() = (*st[k])[d];
    } else {
      s.push_back(shape[d]);
      for (int k = 0; k < N; ++k) out[k].push_back((*st[k])[d]);
    }
  }
  shape = s;
  for (int k = 0; k < N; ++k) *st[k] = out[k];
}

template <class T, class Out, class R>
void reduce_loop(const Tensor& out, const Tensor& in, const R& r) {
  Shape kshape, rshape;
  Strides kin, kout, rin;
  const int64_t es = sizeof(T), eo = sizeof(Out);
  for (int64_t d = 0; d < in.dim(); ++d) {
    int64_t n = in.sizes()[d];
    if (n == 1) continue;
    if (out.sizes()[d] == 1) {
      rshape.push_back(n);
      rin.push_back(in.strides()[d] * es);
    } else {
      kshape.push_back(n);
      kin.push_back(in.strides()[d] * es);
      kout.push_back(out.strides()[d] * eo);
    }
  }
  coalesce<2>(kshape, {&kin, &kout});
  coalesce<1>(rshape, {&rin});
  const int64_t K = numel_of(kshape), R_ = numel_of(rshape);
  if (K == 0) return;
  const char* ib = static_cast<const char*>(in.data_ptr());
  char* ob = static_cast<char*>(out.data_ptr());
  auto store = [&](int64_t o, typename R::acc a) {
    *reinterpret_cast<Out*>(ob + offset_of(o, kshape, kout)) = static_cast<Out>(r.finish(a, R_));
  };
  if (R_ == 0) {
    for (int64_t o = 0; o < K; ++o) store(o, r.init());
    return;
  }
  const bool inner_contiguous = !rshape.empty() && rin.back() == es;
  if (!inner_contiguous && !kshape.empty() && kin.back() == es && kshape.back() >= 16) {
    // Outer reduction: for a tile of contiguous outputs, add whole input rows into accumulators.
    constexpr int64_t kTile = 256;
    const int64_t kl = kshape.back(), ko = K / kl, tiles = (kl + kTile - 1) / kTile;
    Shape oshape(kshape.begin(), kshape.end() - 1);
    Strides oin(kin.begin(), kin.end() - 1), oout(kout.begin(), kout.end() - 1);
    const int64_t kout_last = kout.back();
    parallel_for(0, ko * tiles, std::max<int64_t>(1, kParallelGrain / (R_ * kTile)), [&](int64_t b, int64_t e) {
      typename R::acc acc[kTile];
      for (int64_t item = b; item < e; ++item) {
        int64_t o = item / tiles, t0 = (item % tiles) * kTile, len = std::min(kTile, kl - t0);
        const char* src = ib + offset_of(o, oshape, oin) + t0 * es;
        for (int64_t j = 0; j < len; ++j) acc[j] = r.init();
        for (int64_t q = 0; q < R_; ++q) {
          const T* row = reinterpret_cast<const T*>(src + offset_of(q, rshape, rin));
          for (int64_t j = 0; j < len; ++j) acc[j] = r.combine(acc[j], row[j]);
        }
        char* dst = ob + offset_of(o, oshape, oout) + t0 * kout_last;
        for (int64_t j = 0; j < len; ++j) *reinterpret_cast<Out*>(dst + j * kout_last) = static_cast<Out>(r.finish(acc[j], R_));
      }
    });
    return;
  }
  const int nt = num_threads();
  if (K >= nt || R_ < kParallelGrain) {
    parallel_for(0, K, std::max<int64_t>(1, kParallelGrain / R_), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) store(o, reduce_range<T>(ib + offset_of(o, kshape, kin), rshape, rin, 0, R_, r));
    });
    return;
  }
  // Few outputs, long reductions: split each reduction across threads and merge the partials.
  for (int64_t o = 0; o < K; ++o) {
    const char* base = ib + offset_of(o, kshape, kin);
    std::vector<typename R::acc> partial(static_cast<size_t>(nt), r.init());
    parallel_for(0, nt, 0, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        int64_t per = (R_ + nt - 1) / nt, r0 = t * per, r1 = std::min(R_, r0 + per);
        if (r0 < r1) partial[static_cast<size_t>(t)] = reduce_range<T>(base, rshape, rin, r0, r1, r);
      }
    });
    typename R::acc acc = partial[0];
    for (int t = 1; t < nt; ++t) acc = r.merge(acc, partial[static_cast<size_t>(t)]);
    store(o, acc);
  }
}

// A view of t with size 1 at `dim` (the start of each row along dim).
inline Tensor row_starts(const Tensor& t, int64_t dim) {
  Shape s = t.sizes();
  s[static_cast<size_t>(dim)] = 1;
  return detail::make_tensor(t.storage(), t.storage_offset(), s, t.strides(), t.dtype());
}

template <class T>
void arg_reduce_loop(bool is_max, const Tensor& out, const Tensor& in, int64_t dim) {
  const int64_t D = in.size(dim), sd = in.stride(dim) * static_cast<int64_t>(sizeof(T));
  Tensor rows = row_starts(in, dim);
  auto L = make_loop<2>({&out, &rows}, out.sizes());
  run<2>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const char* x = p[1] + i * s[1];
      auto best = static_cast<compute_t<T>>(*reinterpret_cast<const T*>(x));
      int64_t bi = 0;
      for (int64_t k = 1; k < D && !fn::is_nan(best); ++k) {
        auto v = static_cast<compute_t<T>>(*reinterpret_cast<const T*>(x + k * sd));
        if (fn::is_nan(v) || (is_max ? v > best : v < best)) {
          best = v;
          bi = k;
        }
      }
      *reinterpret_cast<int64_t*>(p[0] + i * s[0]) = bi;
    }
  }, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(D, 1)));
}

// One contiguous row: max, exp into y, sum, then scale (or x - logsumexp for log_softmax).
template <class C>
void softmax_row(const C* x, C* y, int64_t D, bool log) {
  const C mx = lane_max(x, D);
  for (int64_t k = 0; k < D; ++k) y[k] = FastExp{}(x[k] - mx);
  const C sum = lane_sum(y, D);
  if (log) {
    // (x - max) - log(sum), not x - (max + log(sum)): with logits near 256 the sum max + log(sum)
    // rounds away ~3e-5, more than float32's tolerance for a result near 0
    const C log_sum = fn::log(sum);
    for (int64_t k = 0; k < D; ++k) y[k] = (x[k] - mx) - log_sum;
  } else {
    const C inv = C(1) / sum;
    for (int64_t k = 0; k < D; ++k) y[k] *= inv;
  }
}

template <class T>
void softmax_loop(const Tensor& out, const Tensor& in, int64_t dim, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t D = in.size(dim);
  const int64_t si = in.stride(dim) * static_cast<int64_t>(sizeof(T));
  const int64_t so = out.stride(dim) * static_cast<int64_t>(sizeof(T));
  constexpr int64_t kElem = static_cast<int64_t>(sizeof(T));
  Tensor orow = row_starts(out, dim), irow = row_starts(in, dim);
  auto L = make_loop<2>({&orow, &irow}, orow.sizes());
  run<2>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const char* x = p[1] + i * s[1];
      char* y = p[0] + i * s[0];
      if constexpr (std::is_same_v<T, C>) {
        if (si == kElem && so == kElem) {  // contiguous rows: vectorised passes over one row in cache
          softmax_row(reinterpret_cast<const C*>(x), reinterpret_cast<C*>(y), D, log);
          continue;
        }
      }
      auto xv = [&](int64_t k) { return static_cast<C>(*reinterpret_cast<const T*>(x + k * si)); };
      C mx = -std::numeric_limits<C>::infinity();
      for (int64_t k = 0; k < D; ++k) {
        C v = xv(k);
        mx = (fn::is_nan(v) || v > mx) ? v : mx;
      }
      C sum = 0;
      for (int64_t k = 0; k < D; ++k) sum += FastExp{}(xv(k) - mx);
      if (log) {
        const C log_sum = fn::log(sum);  // (x - max) - log(sum), as softmax_row
        for (int64_t k = 0; k < D; ++k) *reinterpret_cast<T*>(y + k * so) = static_cast<T>((xv(k) - mx) - log_sum);
      } else {
        C inv = C(1) / sum;
        for (int64_t k = 0; k < D; ++k) *reinterpret_cast<T*>(y + k * so) = static_cast<T>(FastExp{}(xv(k) - mx) * inv);
      }
    }
  }, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(D, 1)));
}

// Inclusive prefix sums along dim (reverse: from the end, out[i] = sum of in[i:]), accumulated in
// acc_t<T> (double for float inputs, as PyTorch's CPU kernel). Rows far apart in memory (the dim
// is the innermost one) are scanned one at a time; rows next to each other (a leading dim) are
// scanned a block of rows at a time, so the inner loop runs over contiguous memory.
template <class T>
void cumsum_loop(const Tensor& out, const Tensor& in, int64_t dim, bool reverse) {
  using A = acc_t<T>;
  const int64_t D = in.size(dim), es = static_cast<int64_t>(sizeof(T));
  const int64_t si = in.stride(dim) * es, so = out.stride(dim) * es;
  Tensor orow = row_starts(out, dim), irow = row_starts(in, dim);
  auto L = make_loop<2>({&orow, &irow}, orow.sizes());
  auto at = [](const char* p) { return static_cast<A>(static_cast<compute_t<T>>(*reinterpret_cast<const T*>(p))); };
  run<2>(L, [&](char* const* p, const int64_t* s, int64_t n) {
    const int64_t first = reverse ? D - 1 : 0, step = reverse ? -1 : 1;
    if (std::abs(s[1]) <= std::abs(si)) {  // neighbouring rows are closer than a row's elements
      constexpr int64_t kBlock = 256;
      A acc[kBlock];
      for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t m = std::min(kBlock, n - b);
        std::fill(acc, acc + m, A(0));
        for (int64_t k = first, c = 0; c < D; k += step, ++c)
          for (int64_t i = 0; i < m; ++i) {
            acc[i] += at(p[1] + (b + i) * s[1] + k * si);
            *reinterpret_cast<T*>(p[0] + (b + i) * s[0] + k * so) = static_cast<T>(acc[i]);
          }
      }
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      const char* x = p[1] + i * s[1];
      char* y = p[0] + i * s[0];
      A acc = 0;
      for (int64_t k = first, c = 0; c < D; k += step, ++c) {
        acc += at(x + k * si);
        *reinterpret_cast<T*>(y + k * so) = static_cast<T>(acc);
      }
    }
  }, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(D, 1)));
}

}  // namespace cpu
}  // namespace nabla
