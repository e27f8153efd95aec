#pragma once
// CPU convolution and pooling kernels.
// - im2col_kernel / col2im_kernel: the column layout of ops/conv.hpp's composite path ([N, C,
//   kh * kw, Ho * Wo] over an already padded input); the composite is the reference and what
//   double backward differentiates.
// - conv2d_*_kernel: conv2d's fused CPU kernels (ops/conv.hpp's conv2d_kernels()): one image at a time (images spread
//   over the threads), im2col of that image into a per-thread buffer that stays in L2, then one
//   single-threaded GEMM per group; padding is handled inside im2col, 1x1 convolutions skip it.
// At the end: the slots of ops/conv.hpp's kernel tables they fill.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../ops/conv.hpp"  // the tables this file fills
#include "gemm.hpp"
#include "parallel.hpp"

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

// Per-thread scratch for one image's columns; grows, never shrinks, freed at thread exit.
template <class T>
T* column_buffer(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Runs body(image, thread) over the N images: spread over the threads when there are enough
// images (each GEMM then runs single-threaded), one after another otherwise (the GEMM threads).
template <class F>
void for_each_image(int64_t N, int nt, F&& body) {
#if defined(_OPENMP)
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), count = omp_get_num_threads();
      for (int64_t n = t; n < N; n += count) body(n, t);
    }
    return;
  }
#endif
  (void)nt;  // without OpenMP there is one thread
  for (int64_t n = 0; n < N; ++n) body(n, 0);
}

inline int image_threads(int64_t N) {
  const int nt = num_threads();
  return N >= nt ? nt : 1;
}

}  // namespace conv_detail

// x: one image's group [Cg, H, W] -> cols [Cg * kh * kw, Ho * Wo], zero where the window hangs
// over the padding.
template <class T>
void im2col_padded(const T* x, T* cols, const ConvShape& s) {
  const int64_t L = s.L();
  for (int64_t c = 0; c < s.Cg(); ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* dst = cols + ((c * s.kh + i) * s.kw + j) * L;
        int64_t lo, hi;
        conv_detail::valid_range(s.Wo, s.W, s.sw, s.pw, j * s.dw, lo, hi);
        for (int64_t oh = 0; oh < s.Ho; ++oh, dst += s.Wo) {
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
void col2im_padded(const T* cols, T* x, const ConvShape& s) {
  const int64_t L = s.L();
  for (int64_t c = 0; c < s.Cg(); ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* src = cols + ((c * s.kh + i) * s.kw + j) * L;
        int64_t lo, hi;
        conv_detail::valid_range(s.Wo, s.W, s.sw, s.pw, j * s.dw, lo, hi);
        for (int64_t oh = 0; oh < s.Ho; ++oh, src += s.Wo) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.H) continue;
          T* row = x + (c * s.H + ih) * s.W + j * s.dw - s.pw;
          for (int64_t ow = lo; ow < hi; ++ow) row[ow * s.sw] += src[ow];
        }
      }
}

// out [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, Cg, kh, kw]) + bias [O] (bias may be null).
template <class T>
void conv2d_forward_kernel(T* out, const T* x, const T* w, const T* bias, const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), Cg = s.Cg();
  conv_detail::for_each_image(s.N, conv_detail::image_threads(s.N), [&](int64_t n, int) {
    T* cols = s.pointwise() ? nullptr : conv_detail::column_buffer<T>(static_cast<size_t>(ckk * L));
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = x + (n * s.C + g * Cg) * s.H * s.W;
      if (cols) im2col_padded(xg, cols, s);
      T* y = out + (n * s.O + g * Og) * L;
      gemm_native<T>(Og, L, ckk, w + g * Og * ckk, ckk, 1, cols ? cols : xg, L, 1, y, L, 1, false);
    }
    if (bias)
      for (int64_t o = 0; o < s.O; ++o) {
        T* y = out + (n * s.O + o) * L;
        const T b = bias[o];
        for (int64_t l = 0; l < L; ++l) y[l] += b;
      }
  });
}

// gx [N, C, H, W] = the input gradient for gy [N, O, Ho, Wo]: per image and group,
// cols = w_g^T @ gy_g, then col2im.
template <class T>
void conv2d_backward_input_kernel(T* gx, const T* gy, const T* w, const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), Cg = s.Cg();
  conv_detail::for_each_image(s.N, conv_detail::image_threads(s.N), [&](int64_t n, int) {
    T* cols = s.pointwise() ? nullptr : conv_detail::column_buffer<T>(static_cast<size_t>(ckk * L));
    for (int64_t g = 0; g < s.groups; ++g) {
      T* xg = gx + (n * s.C + g * Cg) * s.H * s.W;
      const T* yg = gy + (n * s.O + g * Og) * L;
      gemm_native<T>(ckk, L, Og, w + g * Og * ckk, 1, ckk, yg, L, 1, cols ? cols : xg, L, 1, false);
      if (cols) {
        std::fill(xg, xg + Cg * s.H * s.W, T(0));
        col2im_padded(cols, xg, s);
      }
    }
  });
}

// gw [O, Cg, kh, kw] = sum over images of gy_g @ cols^T; gb [O] (may be null) = sum of gy over
// N, Ho, Wo. Each thread accumulates its images into its own partial sums, added up at the end.
template <class T>
void conv2d_backward_weight_kernel(T* gw, T* gb, const T* gy, const T* x, const ConvShape& s) {
  const int64_t L = s.L(), ckk = s.ckk(), Og = s.Og(), Cg = s.Cg(), wsize = s.O * ckk;
  const int nt = conv_detail::image_threads(s.N);
  std::vector<T> partial(static_cast<size_t>(std::max(nt - 1, 0) * (wsize + s.O)), T(0));
  std::fill(gw, gw + wsize, T(0));
  std::vector<T> bias_acc(static_cast<size_t>(s.O), T(0));
  conv_detail::for_each_image(s.N, nt, [&](int64_t n, int t) {
    T* acc_w = t == 0 ? gw : partial.data() + (t - 1) * (wsize + s.O);
    T* acc_b = t == 0 ? bias_acc.data() : partial.data() + (t - 1) * (wsize + s.O) + wsize;
    T* cols = s.pointwise() ? nullptr : conv_detail::column_buffer<T>(static_cast<size_t>(ckk * L));
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* xg = x + (n * s.C + g * Cg) * s.H * s.W;
      if (cols) im2col_padded(xg, cols, s);
      const T* yg = gy + (n * s.O + g * Og) * L;
      gemm_native<T>(Og, ckk, L, yg, L, 1, cols ? cols : xg, 1, L, acc_w + g * Og * ckk, ckk, 1, true);
    }
    if (gb)
      for (int64_t o = 0; o < s.O; ++o) {
        const T* y = gy + (n * s.O + o) * L;
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

// ---- conv2d's and sliding_windows' CPU slots (float32 and float64) ---------------------------

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

inline bool conv2d_forward_cpu(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                               const Conv2dParams& p) {
  float_or_double(out, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_forward_kernel<T>(out.data_ptr<T>(), x.data_ptr<T>(), w.data_ptr<T>(),
                             bias.defined() ? bias.data_ptr<T>() : nullptr, conv_shape(x, w, out, p));
  });
  return true;
}
inline bool conv2d_backward_input_cpu(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                                      const Conv2dParams& p) {
  float_or_double(grad_x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_backward_input_kernel<T>(grad_x.data_ptr<T>(), grad_out.data_ptr<T>(), w.data_ptr<T>(),
                                    conv_shape(grad_x, w, grad_out, p));
  });
  return true;
}
inline bool conv2d_backward_weight_cpu(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out,
                                       const Tensor& x, const Conv2dParams& p) {
  float_or_double(grad_w, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    conv2d_backward_weight_kernel<T>(grad_w.data_ptr<T>(), grad_bias.defined() ? grad_bias.data_ptr<T>() : nullptr,
                                     grad_out.data_ptr<T>(), x.data_ptr<T>(), conv_shape(x, grad_w, grad_out, p));
  });
  return true;
}
NABLA_FILL_KERNELS(conv2d_cpu, conv2d_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
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
