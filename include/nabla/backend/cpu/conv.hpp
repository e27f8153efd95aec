#pragma once
// CPU convolution and pooling kernels.
// - im2col_kernel / col2im_kernel: the column layout of ops/conv.hpp's composite path ([N, C,
//   kh * kw, Ho * Wo] over an already padded input); the composite is the reference and what
//   double backward differentiates.
// - conv2d_*_kernel: conv2d's fused CPU kernels (ops/conv.hpp's conv2d_kernels()): GEMMs of about
//   256 output pixels (several small images side by side, or a band of rows of a large one;
//   chunks spread over the threads), im2col of the slice into a per-thread buffer, then one
//   single-threaded GEMM per group; padding is handled inside im2col, a single image's 1x1
//   convolution skips it.
// - bfloat16 overloads of the three: the same chunks through the bf16 GEMM (gemm_bf16.hpp),
//   im2col in bf16, float32 sums; the bias joins them before the one rounding, and the input
//   gradient's col2im and the weight gradient's sum over chunks run in float32, rounded once at
//   the end. No Winograd for bf16.
// At the end: the slots of ops/conv.hpp's kernel tables they fill.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../ops/conv.hpp"  // the tables this file fills
#include "gemm.hpp"
#include "gemm_bf16.hpp"
#include "parallel.hpp"
#include "winograd.hpp"

namespace nabla {
namespace cpu {

// x [N, C, H, W] contiguous -> cols [N, C, kh * kw, Ho * Wo] contiguous.
template <class T>
void im2col_kernel(const T* x, T* cols, int64_t planes, int64_t H, int64_t W, const WindowGeometry& g) {
  const int64_t L = g.Ho * g.Wo, K = g.kh * g.kw;
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, K * L)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = x + p * H * W;
      T* dst = cols + p * K * L;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            const T* row = src + (oh * g.sh + i * g.dh) * W + j * g.dw;
            T* out = dst + ((i * g.kw + j) * g.Ho + oh) * g.Wo;
            if (g.sw == 1)
              for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = row[ow];
            else
              for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = row[ow * g.sw];
          }
    }
  });
}

// The adjoint: x [N, C, H, W] (zeroed by the caller) += the window elements of cols.
template <class T>
void col2im_kernel(const T* cols, T* x, int64_t planes, int64_t H, int64_t W, const WindowGeometry& g) {
  const int64_t L = g.Ho * g.Wo, K = g.kh * g.kw;
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, K * L)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* dst = x + p * H * W;
      const T* src = cols + p * K * L;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            T* row = dst + (oh * g.sh + i * g.dh) * W + j * g.dw;
            const T* in = src + ((i * g.kw + j) * g.Ho + oh) * g.Wo;
            for (int64_t ow = 0; ow < g.Wo; ++ow) row[ow * g.sw] += in[ow];
          }
    }
  });
}

// ---- Fused convolution -------------------------------------------------------------------

struct ConvShape {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo;
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t Cg() const { return C / groups; }
  int64_t Og() const { return O / groups; }
  int64_t ckk() const { return Cg() * kh * kw; }
  int64_t L() const { return Ho * Wo; }
  // A 1x1 window with unit stride and no padding: the image itself is the column matrix.
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

namespace conv_detail {

// The output columns [lo, hi) whose input column ow * s - p + j * d lies inside [0, W).
inline void valid_range(int64_t Wo, int64_t W, int64_t s, int64_t p, int64_t off, int64_t& lo, int64_t& hi) {
  const int64_t first = off - p;  // input column of output column 0
  lo = first >= 0 ? 0 : (-first + s - 1) / s;
  hi = W - first <= 0 ? 0 : std::min<int64_t>(Wo, (W - first + s - 1) / s);
  lo = std::min(lo, hi);
}

// Per-thread scratch for a chunk's columns; grows, never shrinks, freed at thread exit.
template <class T>
T* column_buffer(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Per-thread scratch for a chunk's [Og, columns] output or output gradient (a second buffer
// beside column_buffer's).
template <class T>
T* rows_buffer(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Each GEMM covers about kChunkColumns output pixels. Small maps: the columns of B images side
// by side make one [ckk, B * L] matrix, so a late layer's 4x4 map is not a 16-column product
// that repacks the whole weight for each image (ResNet-18's 512-channel layers ran at a third
// of the GEMM's rate that way); B is the fewest images whose columns reach kChunkColumns, but
// no more than an even share of the images per thread, so that the chunks still spread over
// the threads. Large maps: one image in bands of output rows, so that a band's columns stay in
// L2 between im2col and the GEMM (a 32x32 map's [576, 1024] columns are 2.3 MiB). 256 columns:
// 128-1024 measured alike within this machine's noise on the 4x4 and 8x8 layers
// (benchmarks/bench_conv.cpp resnet_conv_*).
inline constexpr int64_t kChunkColumns = 256;

struct Chunks {
  int64_t per = 1, count = 1;  // images per chunk, chunks
  int64_t band = 1;            // output rows per GEMM (all of them when a chunk has several images)
  int threads = 1;             // chunks run side by side, each GEMM single-threaded; or 1
};

inline Chunks image_chunks(int64_t N, int64_t Ho, int64_t Wo) {
  const int nt = num_threads();
  const int64_t L = std::max<int64_t>(Ho * Wo, 1);
  Chunks c;
  c.per = std::max<int64_t>(1, (kChunkColumns + L - 1) / L);
  c.per = std::min(c.per, std::max<int64_t>(1, (N + nt - 1) / nt));
  c.count = (N + c.per - 1) / c.per;
  c.band = c.per > 1 ? Ho : std::clamp<int64_t>((kChunkColumns + Wo - 1) / std::max<int64_t>(Wo, 1), 1, std::max<int64_t>(Ho, 1));
  c.threads = c.count >= nt ? nt : 1;  // too few chunks: one after another, the GEMM threads
  return c;
}

// Runs body(first image, image count, thread) over the chunks; a chunk's images stay on one
// thread (their bands write overlapping input rows in the input gradient).
template <class F>
void for_each_chunk(int64_t N, const Chunks& c, F&& body) {
  auto run = [&](int64_t k, int t) { body(k * c.per, std::min(c.per, N - k * c.per), t); };
#if defined(_OPENMP)
  if (c.threads > 1) {
#pragma omp parallel num_threads(c.threads)
    {
      const int t = omp_get_thread_num(), count = omp_get_num_threads();
      for (int64_t k = t; k < c.count; k += count) run(k, t);
    }
    return;
  }
#endif
  for (int64_t k = 0; k < c.count; ++k) run(k, 0);
}

// One GEMM's share: images [n0, n0 + B), output rows [oh0, oh0 + rows) of each.
struct Slice {
  int64_t n0, B, oh0, rows;
};

template <class T>
struct Operand {
  T* p;
  int64_t ld;  // row stride
};

}  // namespace conv_detail

// x: one image's group [Cg, H, W] -> cols [Cg * kh * kw, (oh1 - oh0) * Wo] (rows ld apart) for
// output rows [oh0, oh1), zero where the window hangs over the padding.
template <class T>
void im2col_padded(const T* x, T* cols, const ConvShape& s, int64_t ld, int64_t oh0, int64_t oh1) {
  if constexpr (std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>) {
    // a copy of bits (0 is +0.0): as uint16_t the loops vectorise, as the class they did not
    // (the bf16 im2col took 1.7x the float32 one's time in the MNIST CNN's profile)
    return im2col_padded(reinterpret_cast<const uint16_t*>(x), reinterpret_cast<uint16_t*>(cols), s, ld, oh0, oh1);
  }
  for (int64_t c = 0; c < s.Cg(); ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* dst = cols + ((c * s.kh + i) * s.kw + j) * ld;
        int64_t lo, hi;
        conv_detail::valid_range(s.Wo, s.W, s.sw, s.pw, j * s.dw, lo, hi);
        for (int64_t oh = oh0; oh < oh1; ++oh, dst += s.Wo) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.H) {
            std::fill(dst, dst + s.Wo, T(0));
            continue;
          }
          const T* row = x + (c * s.H + ih) * s.W + j * s.dw - s.pw;
          // Plain loops: rows are short (tens of elements), where memmove/memset calls cost more
          // than the copy.
          for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = T(0);
          if (s.sw == 1)
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = row[ow];
          else
            for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = row[ow * s.sw];
          for (int64_t ow = hi; ow < s.Wo; ++ow) dst[ow] = T(0);
        }
      }
}

// The adjoint of im2col_padded: x [Cg, H, W] += the in-bounds window elements of cols.
template <class T>
void col2im_padded(const T* cols, T* x, const ConvShape& s, int64_t ld, int64_t oh0, int64_t oh1) {
  for (int64_t c = 0; c < s.Cg(); ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* src = cols + ((c * s.kh + i) * s.kw + j) * ld;
        int64_t lo, hi;
        conv_detail::valid_range(s.Wo, s.W, s.sw, s.pw, j * s.dw, lo, hi);
        for (int64_t oh = oh0; oh < oh1; ++oh, src += s.Wo) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.H) continue;
          T* row = x + (c * s.H + ih) * s.W + j * s.dw - s.pw;
          for (int64_t ow = lo; ow < hi; ++ow) row[ow * s.sw] += src[ow];
        }
      }
}

namespace conv_detail {

// 3x3, stride 1, one group, 16+ channels: Winograd F(2x2, 3x3) (winograd.hpp) instead of im2col.
inline bool use_winograd(const ConvShape& s) {
  return winograd::eligible(s.kh, s.kw, s.sh, s.sw, s.dh, s.dw, s.groups, s.ph, s.pw, s.C, s.O, s.Ho, s.Wo) &&
         s.Ho == s.H + 2 * s.ph - 2 && s.Wo == s.W + 2 * s.pw - 2;
}
inline winograd::Shape winograd_shape(const ConvShape& s) { return {s.N, s.C, s.H, s.W, s.O, s.ph, s.pw}; }

// The columns of a slice for group g: [ckk, B * rows * Wo]. A single image's 1x1 convolution
// needs none (the image is its own column matrix, rows L apart).
template <class T>
Operand<const T> chunk_columns(const T* x, const ConvShape& s, const Slice& c, int64_t g) {
  const int64_t width = c.rows * s.Wo, ld = c.B * width;
  if (c.B == 1 && s.pointwise()) return {x + (c.n0 * s.C + g * s.Cg()) * s.H * s.W + c.oh0 * s.Wo, s.L()};
  T* cols = column_buffer<T>(static_cast<size_t>(s.ckk() * ld));
  for (int64_t b = 0; b < c.B; ++b)
    im2col_padded(x + ((c.n0 + b) * s.C + g * s.Cg()) * s.H * s.W, cols + b * width, s, ld, c.oh0, c.oh0 + c.rows);
  return {cols, ld};
}

// gy [N, O, L] over a slice for group g, as [Og, B * rows * Wo]: the image's own rows (L apart)
// when B is 1, else gathered (a chunk of several images covers all their rows).
template <class T>
Operand<const T> chunk_rows(const T* gy, const ConvShape& s, const Slice& c, int64_t g) {
  const int64_t L = s.L(), Og = s.Og(), ld = c.B * L;
  if (c.B == 1) return {gy + (c.n0 * s.O + g * Og) * L + c.oh0 * s.Wo, L};
  T* rows = rows_buffer<T>(static_cast<size_t>(Og * ld));
  for (int64_t o = 0; o < Og; ++o)
    for (int64_t b = 0; b < c.B; ++b) std::copy_n(gy + ((c.n0 + b) * s.O + g * Og + o) * L, L, rows + o * ld + b * L);
  return {rows, ld};
}

// Runs body(slice) over the bands of the images [n0, n0 + B).
template <class F>
void for_each_band(const Chunks& ch, int64_t n0, int64_t B, int64_t Ho, F&& body) {
  for (int64_t oh0 = 0; oh0 < Ho; oh0 += ch.band) body(Slice{n0, B, oh0, std::min(ch.band, Ho - oh0)});
}

}  // namespace conv_detail

// out [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, Cg, kh, kw]) + bias [O] (bias may be null).
template <class T>
void conv2d_forward_kernel(T* out, const T* x, const T* w, const T* bias, const ConvShape& s) {
  if (conv_detail::use_winograd(s)) return winograd::forward(out, x, w, bias, conv_detail::winograd_shape(s));
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og();
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int) {
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t width = c.rows * s.Wo, ncols = B * width;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto cols = conv_detail::chunk_columns(x, s, c, g);
        // One image writes its rows in place; several go through a buffer, then to [B, O, L].
        T* y = B == 1 ? out + (n0 * s.O + g * Og) * L + c.oh0 * s.Wo
                      : conv_detail::rows_buffer<T>(static_cast<size_t>(Og * ncols));
        const int64_t ldy = B == 1 ? L : ncols;
        gemm_native<T>(Og, ncols, ckk, w + g * Og * ckk, ckk, 1, cols.p, cols.ld, 1, y, ldy, 1, false);
        for (int64_t o = 0; o < Og; ++o) {
          const T b = bias ? bias[g * Og + o] : T(0);
          if (B == 1) {
            if (bias)
              for (int64_t l = 0; l < width; ++l) y[o * L + l] += b;
            continue;
          }
          for (int64_t i = 0; i < B; ++i) {
            T* dst = out + ((n0 + i) * s.O + g * Og + o) * L;
            const T* src = y + o * ncols + i * L;
            for (int64_t l = 0; l < L; ++l) dst[l] = src[l] + b;
          }
        }
      }
    });
  });
}

// gx [N, C, H, W] = the input gradient for gy [N, O, Ho, Wo]: per slice and group,
// cols = w_g^T @ gy_g, then col2im.
template <class T>
void conv2d_backward_input_kernel(T* gx, const T* gy, const T* w, const ConvShape& s) {
  if (conv_detail::use_winograd(s)) return winograd::backward_input(gx, gy, w, conv_detail::winograd_shape(s));
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), Cg = s.Cg(), image = s.C * s.H * s.W;
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int) {
    const bool direct = B == 1 && s.pointwise();  // the GEMM writes the image's gradient itself
    if (!direct) std::fill(gx + n0 * image, gx + (n0 + B) * image, T(0));
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t width = c.rows * s.Wo, ncols = B * width;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto rows = conv_detail::chunk_rows(gy, s, c, g);
        T* xg = gx + (n0 * s.C + g * Cg) * s.H * s.W;
        if (direct) {
          gemm_native<T>(ckk, ncols, Og, w + g * Og * ckk, 1, ckk, rows.p, rows.ld, 1, xg + c.oh0 * s.Wo, L, 1, false);
          continue;
        }
        T* cols = conv_detail::column_buffer<T>(static_cast<size_t>(ckk * ncols));
        gemm_native<T>(ckk, ncols, Og, w + g * Og * ckk, 1, ckk, rows.p, rows.ld, 1, cols, ncols, 1, false);
        for (int64_t b = 0; b < B; ++b) col2im_padded(cols + b * width, xg + b * image, s, ncols, c.oh0, c.oh0 + c.rows);
      }
    });
  });
}

// gw [O, Cg, kh, kw] = sum over images of gy_g @ cols^T; gb [O] (may be null) = sum of gy over
// N, Ho, Wo. Each thread accumulates its chunks into its own partial sums, added up at the end;
// a slice is one GEMM whose dot products run over all its columns.
template <class T>
void conv2d_backward_weight_kernel(T* gw, T* gb, const T* gy, const T* x, const ConvShape& s) {
  if (conv_detail::use_winograd(s)) return winograd::backward_weight(gw, gb, gy, x, conv_detail::winograd_shape(s));
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), wsize = s.O * ckk;
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  const int nt = chunks.threads;
  std::vector<T> partial(static_cast<size_t>(std::max(nt - 1, 0) * (wsize + s.O)), T(0));
  std::fill(gw, gw + wsize, T(0));
  std::vector<T> bias_acc(static_cast<size_t>(s.O), T(0));
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int t) {
    T* acc_w = t == 0 ? gw : partial.data() + (t - 1) * (wsize + s.O);
    T* acc_b = t == 0 ? bias_acc.data() : partial.data() + (t - 1) * (wsize + s.O) + wsize;
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t ncols = B * c.rows * s.Wo;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto cols = conv_detail::chunk_columns(x, s, c, g);
        const auto rows = conv_detail::chunk_rows(gy, s, c, g);
        gemm_native<T>(Og, ckk, ncols, rows.p, rows.ld, 1, cols.p, 1, cols.ld, acc_w + g * Og * ckk, ckk, 1, true);
      }
    });
    if (gb)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < s.O; ++o) {
          const T* y = gy + ((n0 + b) * s.O + o) * L;
          T sum = T(0);
          for (int64_t l = 0; l < L; ++l) sum += y[l];
          acc_b[o] += sum;
        }
  });
  for (int t = 1; t < nt; ++t) {
    const T* p = partial.data() + (t - 1) * (wsize + s.O);
    for (int64_t k = 0; k < wsize; ++k) gw[k] += p[k];
    for (int64_t o = 0; o < s.O; ++o) bias_acc[o] += p[wsize + o];
  }
  if (gb) std::copy(bias_acc.begin(), bias_acc.end(), gb);
}

// ---- bfloat16 ----------------------------------------------------------------------------

namespace conv_detail {
// Per-thread float32 scratch: a chunk's input gradient, summed before it is rounded.
inline float* sums_buffer(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
}  // namespace conv_detail

inline void conv2d_forward_kernel(BFloat16* out, const BFloat16* x, const BFloat16* w, const BFloat16* bias,
                                  const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og();
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int) {
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t width = c.rows * s.Wo, ncols = B * width;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto cols = conv_detail::chunk_columns(x, s, c, g);
        // One image writes its rows in place; several go through a buffer, then to [B, O, L].
        BFloat16* y = B == 1 ? out + (n0 * s.O + g * Og) * L + c.oh0 * s.Wo
                             : conv_detail::rows_buffer<BFloat16>(static_cast<size_t>(Og * ncols));
        const int64_t ldy = B == 1 ? L : ncols;
        // The bias seeds the rows and the GEMM adds its float32 sums to it before rounding.
        if (bias)
          for (int64_t o = 0; o < Og; ++o) std::fill_n(y + o * ldy, ncols, bias[g * Og + o]);
        gemm_bf16<BFloat16>(Og, ncols, ckk, w + g * Og * ckk, ckk, 1, cols.p, cols.ld, 1, y, ldy, 1, bias != nullptr);
        if (B > 1)
          for (int64_t o = 0; o < Og; ++o)
            for (int64_t i = 0; i < B; ++i)
              std::copy_n(y + o * ncols + i * L, L, out + ((n0 + i) * s.O + g * Og + o) * L);
      }
    });
  });
}

inline void conv2d_backward_input_kernel(BFloat16* gx, const BFloat16* gy, const BFloat16* w, const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), Cg = s.Cg(), image = s.C * s.H * s.W;
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int) {
    const bool direct = B == 1 && s.pointwise();  // the GEMM writes (and rounds) the image's gradient itself
    float* sums = direct ? nullptr : conv_detail::sums_buffer(static_cast<size_t>(B * image));
    if (!direct) std::fill(sums, sums + B * image, 0.0f);
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t width = c.rows * s.Wo, ncols = B * width;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto rows = conv_detail::chunk_rows(gy, s, c, g);
        if (direct) {
          gemm_bf16<BFloat16>(ckk, ncols, Og, w + g * Og * ckk, 1, ckk, rows.p, rows.ld, 1,
                              gx + (n0 * s.C + g * Cg) * s.H * s.W + c.oh0 * s.Wo, L, 1, false);
          continue;
        }
        float* cols = conv_detail::column_buffer<float>(static_cast<size_t>(ckk * ncols));
        gemm_bf16<float>(ckk, ncols, Og, w + g * Og * ckk, 1, ckk, rows.p, rows.ld, 1, cols, ncols, 1, false);
        for (int64_t b = 0; b < B; ++b)
          col2im_padded(cols + b * width, sums + b * image + g * Cg * s.H * s.W, s, ncols, c.oh0, c.oh0 + c.rows);
      }
    });
    if (!direct)
      for (int64_t i = 0; i < B * image; ++i) gx[n0 * image + i] = BFloat16(sums[i]);
  });
}

inline void conv2d_backward_weight_kernel(BFloat16* gw, BFloat16* gb, const BFloat16* gy, const BFloat16* x,
                                          const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), wsize = s.O * ckk, stride = wsize + s.O;
  const auto chunks = conv_detail::image_chunks(s.N, s.Ho, s.Wo);
  const int nt = std::max(chunks.threads, 1);
  // Each thread's float32 partial sums [weight | bias], the GEMMs accumulating onto them.
  std::vector<float> partial(static_cast<size_t>(nt * stride), 0.0f);
  conv_detail::for_each_chunk(s.N, chunks, [&](int64_t n0, int64_t B, int t) {
    float* acc_w = partial.data() + t * stride;
    float* acc_b = acc_w + wsize;
    conv_detail::for_each_band(chunks, n0, B, s.Ho, [&](const conv_detail::Slice& c) {
      const int64_t ncols = B * c.rows * s.Wo;
      for (int64_t g = 0; g < s.groups; ++g) {
        const auto cols = conv_detail::chunk_columns(x, s, c, g);
        const auto rows = conv_detail::chunk_rows(gy, s, c, g);
        gemm_bf16<float>(Og, ckk, ncols, rows.p, rows.ld, 1, cols.p, 1, cols.ld, acc_w + g * Og * ckk, ckk, 1, true);
      }
    });
    if (gb)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < s.O; ++o) {
          const BFloat16* y = gy + ((n0 + b) * s.O + o) * L;
          float sum = 0.0f;
          for (int64_t l = 0; l < L; ++l) sum += float(y[l]);
          acc_b[o] += sum;
        }
  });
  for (int t = 1; t < nt; ++t)
    for (int64_t k = 0; k < stride; ++k) partial[static_cast<size_t>(k)] += partial[static_cast<size_t>(t * stride + k)];
  for (int64_t k = 0; k < wsize; ++k) gw[k] = BFloat16(partial[static_cast<size_t>(k)]);
  if (gb)
    for (int64_t o = 0; o < s.O; ++o) gb[o] = BFloat16(partial[static_cast<size_t>(wsize + o)]);
}

// ---- conv2d's CPU slots (float32, float64, bfloat16) and sliding_windows' (float32, float64) --

inline ConvShape conv_shape(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), y.size(2), y.size(3),
          p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
}

// Calls f with a null T* for x's dtype (float32 or float64: what the table lists).
template <class F>
void float_or_double(const Tensor& x, F&& f) {
  if (x.dtype() == kFloat64) f(static_cast<double*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

// conv2d's: float32, float64 (the templates above) or bfloat16 (their overloads).
template <class F>
void conv_dtype(const Tensor& x, F&& f) {
  if (x.dtype() == kBFloat16) f(static_cast<BFloat16*>(nullptr));
  else float_or_double(x, f);
}

inline bool conv2d_forward_cpu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                               const Conv2dParams& p) {
  conv_dtype(out, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_forward_kernel(out.data_ptr<T>(), x.data_ptr<T>(), w.data_ptr<T>(),
                             bias.defined() ? bias.data_ptr<T>() : nullptr, conv_shape(x, w, out, p));
  });
  return true;
}
inline bool conv2d_backward_input_cpu(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                                      const Conv2dParams& p) {
  conv_dtype(grad_x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_backward_input_kernel(grad_x.data_ptr<T>(), grad_out.data_ptr<T>(), w.data_ptr<T>(),
                                    conv_shape(grad_x, w, grad_out, p));
  });
  return true;
}
inline bool conv2d_backward_weight_cpu(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out,
                                       const Tensor& x, const Conv2dParams& p) {
  conv_dtype(grad_w, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_backward_weight_kernel(grad_w.data_ptr<T>(), grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr,
                                     grad_out.data_ptr<T>(), x.data_ptr<T>(), conv_shape(x, grad_w, grad_out, p));
  });
  return true;
}
NABLA_FILL_KERNELS(conv2d_cpu, conv2d_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64, kBFloat16}),
                   (Conv2dKernels{&conv2d_forward_cpu, &conv2d_backward_input_cpu, &conv2d_backward_weight_cpu}));

inline void im2col_cpu(const Tensor& cols, const Tensor& x, const WindowGeometry& g) {
  float_or_double(x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    im2col_kernel(x.data_ptr<T>(), cols.data_ptr<T>(), x.size(0) * x.size(1), x.size(2), x.size(3), g);
  });
}
inline void col2im_cpu(const Tensor& x, const Tensor& cols, const WindowGeometry& g) {
  float_or_double(x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    col2im_kernel(cols.data_ptr<T>(), x.data_ptr<T>(), x.size(0) * x.size(1), x.size(2), x.size(3), g);
  });
}
NABLA_FILL_KERNELS(sliding_windows_cpu, sliding_window_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
                   (SlidingWindowKernels{&im2col_cpu, &col2im_cpu}));

}  // namespace cpu
}  // namespace nabla
