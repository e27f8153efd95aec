#pragma once
// max_pool2d's fused CPU kernel (ops/pool.hpp's max_pool2d_kernels()): each window's maximum
// and its index, the backward being a scatter_add through the indices. float32, float64 and
// bfloat16 (compared as float; a maximum is one of the inputs, so nothing is rounded).

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../ops/pool.hpp"  // the table this file fills
#include "parallel.hpp"

namespace nabla {
namespace cpu {

// -inf of T (numeric_limits knows nothing of BFloat16), and the type T's values compare in.
template <class T>
inline T pool_lowest() {
  return static_cast<T>(-std::numeric_limits<double>::infinity());
}
template <class T>
using pool_compare_t = std::conditional_t<std::is_arithmetic_v<T>, T, float>;

// out / idx [planes, Ho, Wo]: the maximum of each window of x [planes, H, W] and its flat index
// h * W + w in the plane; the first maximum in window order wins, NaN beats every number, and
// window elements outside the input (padding, or past the edge with ceil_mode) are skipped.
// best[ow] / win[ow] take src[ow * stride] (and its window position k) where it is larger, or
// the first NaN. Separate restrict pointers and an int32 position let the loop vectorise.
template <class T>
inline void max_select(const T* __restrict src, int64_t stride, T* __restrict best, int32_t* __restrict win, int64_t c0,
                       int64_t c1, int32_t k) {
  for (int64_t ow = c0; ow < c1; ++ow) {
    const T v = src[ow * stride], cur = best[ow];
    const pool_compare_t<T> a = v, c = cur;
    const bool take = (a > c) | ((a != a) & (c == c));
    best[ow] = take ? v : cur;
    win[ow] = take ? k : win[ow];
  }
}

// bfloat16 as its bits, widened by a shift: the class-typed loop above did not vectorise (the
// MNIST CNN's bf16 max_pool2d took twice the float32 one's time).
inline void max_select(const BFloat16* __restrict src, int64_t stride, BFloat16* __restrict best, int32_t* __restrict win,
                       int64_t c0, int64_t c1, int32_t k) {
  const auto* s = reinterpret_cast<const uint16_t*>(src);
  auto* b = reinterpret_cast<uint16_t*>(best);
  auto widen = [](uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); };
  for (int64_t ow = c0; ow < c1; ++ow) {
    const uint16_t v = s[ow * stride], cur = b[ow];
    const float a = widen(v), c = widen(cur);
    const bool take = (a > c) | ((a != a) & (c == c));
    b[ow] = take ? v : cur;
    win[ow] = take ? k : win[ow];
  }
}

template <class T>
void max_pool2d_kernel(T* out, int64_t* idx, const T* x, int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo,
                       int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  // The window rows i (columns j) whose input row lies inside [0, H): [lo, hi).
  auto clip = [](int64_t start, int64_t k, int64_t d, int64_t n, int64_t& lo, int64_t& hi) {
    lo = start >= 0 ? 0 : (-start + d - 1) / d;
    hi = n - start <= 0 ? 0 : std::min<int64_t>(k, (n - start + d - 1) / d);
  };
  // Clipped window ranges, the same for every plane (integer division is too slow per window).
  std::vector<int64_t> rows(static_cast<size_t>(2 * Ho)), cols(static_cast<size_t>(2 * Wo));
  for (int64_t oh = 0; oh < Ho; ++oh) clip(oh * sh - ph, kh, dh, H, rows[2 * oh], rows[2 * oh + 1]);
  for (int64_t ow = 0; ow < Wo; ++ow) clip(ow * sw - pw, kw, dw, W, cols[2 * ow], cols[2 * ow + 1]);
  int64_t c0 = 0, c1 = 0;  // [c0, c1): the columns whose window lies inside the input
  while (c0 < Wo && !(cols[2 * c0] == 0 && cols[2 * c0 + 1] == kw)) ++c0;
  for (c1 = c0; c1 < Wo && cols[2 * c1] == 0 && cols[2 * c1 + 1] == kw;) ++c1;
  std::vector<int64_t> offset(static_cast<size_t>(kh * kw));  // window position -> flat offset
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t j = 0; j < kw; ++j) offset[static_cast<size_t>(i * kw + j)] = i * dh * W + j * dw;
  const int64_t work = std::max<int64_t>(1, Ho * Wo * kh * kw);
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / work), [&](int64_t b, int64_t e) {
    std::vector<int32_t> window_pos(static_cast<size_t>(Wo));
    for (int64_t p = b; p < e; ++p) {
      const T* src = x + p * H * W;
      T* dst = out + p * Ho * Wo;
      int64_t* di = idx + p * Ho * Wo;
      for (int64_t oh = 0; oh < Ho; ++oh) {
        const int64_t hs = oh * sh - ph, ilo = rows[2 * oh], ihi = rows[2 * oh + 1];
        // Interior columns (whole window inside the row): one output column per SIMD lane, the
        // window loop outside, the winner kept as its window position k (int32, so the select
        // vectorises next to the float one) and turned into a flat index at the end.
        T* best_row = dst + oh * Wo;
        int64_t* idx_row = di + oh * Wo;
        if (c0 < c1) {
          int32_t* win = window_pos.data();
          for (int64_t ow = c0; ow < c1; ++ow) best_row[ow] = pool_lowest<T>(), win[ow] = int32_t(ilo * kw);
          for (int64_t i = ilo; i < ihi; ++i)
            for (int64_t j = 0; j < kw; ++j)
              max_select(src + (hs + i * dh) * W + j * dw - pw, sw, best_row, win, c0, c1, int32_t(i * kw + j));
          for (int64_t ow = c0; ow < c1; ++ow) idx_row[ow] = hs * W + ow * sw - pw + offset[static_cast<size_t>(win[ow])];
        }
        for (int64_t ow = 0; ow < Wo; ++ow) {
          if (ow == c0) ow = std::max(c0, c1);  // the interior is done
          if (ow >= Wo) break;
          const int64_t ws = ow * sw - pw, jlo = cols[2 * ow], jhi = cols[2 * ow + 1];
          T best = pool_lowest<T>();
          int64_t best_i = 0;
          bool first = true;
          // Branch-free select (random data mispredicts a compare-and-branch half the time):
          // take v if it is the window's first element, larger, or the first NaN.
          for (int64_t i = ilo; i < ihi; ++i) {
            const int64_t row = (hs + i * dh) * W;
            for (int64_t j = jlo; j < jhi; ++j) {
              const int64_t at = row + ws + j * dw;
              const T v = src[at];
              const pool_compare_t<T> a = v, b = best;
              const bool take = first | (a > b) | ((a != a) & (b == b));
              best = take ? v : best;
              best_i = take ? at : best_i;
              first = false;
            }
          }
          dst[oh * Wo + ow] = best;
          di[oh * Wo + ow] = best_i;
        }
      }
    }
  });
}

inline bool max_pool2d_forward_cpu(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  auto run = [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    max_pool2d_kernel<T>(out.data_ptr<T>(), indices.data_ptr<int64_t>(), x.data_ptr<T>(), x.size(0) * x.size(1),
                         x.size(2), x.size(3), out.size(2), out.size(3), p.kernel_h, p.kernel_w, p.stride_h,
                         p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w);
  };
  if (x.dtype() == kFloat64) run(static_cast<double*>(nullptr));
  else if (x.dtype() == kBFloat16) run(static_cast<BFloat16*>(nullptr));
  else run(static_cast<float*>(nullptr));
  return true;
}
NABLA_FILL_KERNELS(max_pool2d_cpu, max_pool2d_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64, kBFloat16}),
                   MaxPool2dKernels{&max_pool2d_forward_cpu});

}  // namespace cpu
}  // namespace nabla
