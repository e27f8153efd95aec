#pragma once
// Convolution: pad, im2col / col2im, conv2d. conv2d runs as a fused backend kernel when the
// device has one (Backend::conv2d_*: im2col + GEMM per image on the CPU, cuDNN on CUDA), else
// as a composite of existing ops (pad, a gather of sliding windows, matmul), which also serves
// as the reference in tests and is what double backward differentiates.

#include <optional>
#include <cmath>
#include <string>
#include <vector>

#include "all.hpp"
#include "../backend/cpu/conv.hpp"

namespace nabla {

// (height, width) hyper-parameter: `2` means {2, 2}, `{2, 3}` means height 2, width 3.
struct Pair2d {
  int64_t h = 0, w = 0;
  Pair2d(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose, as PyTorch's int-or-pair
  Pair2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

// Conv padding: ints (as Pair2d) or "same" / "valid" like torch.nn.functional.conv2d.
struct Padding2d {
  int64_t h = 0, w = 0;
  std::string mode;  // "" (explicit), "same" or "valid"
  Padding2d(int64_t v) : h(v), w(v) {}  // NOLINT
  Padding2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  template <size_t N>
  Padding2d(const char (&m)[N]) : Padding2d(std::string(m)) {}  // NOLINT
  Padding2d(const std::string& m) : mode(m) {  // NOLINT
    NABLA_CHECK(mode == "same" || mode == "valid", ValueError, "conv2d: padding string must be \"same\" or \"valid\", got \"",
                mode, "\"");
  }
};

// Constant padding of the trailing dims, PyTorch's F.pad order: {left, right} pads the last
// dim, {left, right, top, bottom} the last two, and so on. Pads must be non-negative.
// The gradient is the matching slice of the output gradient (a view, so double backward works).
inline Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0) {
  detail::check_defined(x, "pad");
  NABLA_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(), ValueError,
              "pad: expected an even number of pads, at most two per dimension, got ", pads.size(), " for ",
              detail::describe(x));
  for (int64_t p : pads) NABLA_CHECK(p >= 0, ValueError, "pad: negative padding ", p, " is not supported");
  Shape shape = x.sizes();
  const int64_t k = static_cast<int64_t>(pads.size()) / 2;
  for (int64_t i = 0; i < k; ++i) shape[x.dim() - 1 - i] += pads[2 * i] + pads[2 * i + 1];
  Tensor out = full(shape, value, x.options().requires_grad(false));
  auto interior = [pads, k](Tensor t) {
    for (int64_t i = 0; i < k; ++i) {
      const int64_t d = t.dim() - 1 - i, n = t.size(d) - pads[2 * i] - pads[2 * i + 1];
      t = t.narrow(d, pads[2 * i], n);
    }
    return t;
  };
  if (x.numel() > 0) backend(x.device()).copy(interior(out), x.detach());
  if (autograd::needs_grad(x))
    autograd::record("PadBackward", out, {x}, [interior](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{interior(g)};
    });
  return out;
}

namespace detail {

inline int64_t conv_out_size(int64_t in, int64_t pad_total, int64_t k, int64_t s, int64_t d) {
  return (in + pad_total - d * (k - 1) - 1) / s + 1;
}

// Flat positions (into a flattened [H, Wp] image) of every (kh, kw, oh, ow) window element, ordered so
// that index_select + reshape gives columns [(c, kh, kw), (oh, ow)].
inline Tensor window_index(int64_t Wp, int64_t kh, int64_t kw, Pair2d s, Pair2d d, int64_t Ho, int64_t Wo,
                           Device dev) {
  std::vector<int64_t> idx(static_cast<size_t>(kh * kw * Ho * Wo));
  size_t n = 0;
  for (int64_t i = 0; i < kh; ++i)
    for (int64_t j = 0; j < kw; ++j)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) idx[n++] = (oh * s.h + i * d.h) * Wp + ow * s.w + j * d.w;
  return from_vector(idx, {static_cast<int64_t>(idx.size())}, TensorOptions(kInt64)).to(dev);
}

// The CPU fast path of sliding_windows: direct loops (backend/cpu/conv.hpp). im2col and col2im
// are each other's adjoint, so each records the other as its backward (double backward works).
inline Tensor col2im_cpu(const Tensor& cols, const Shape& x_shape, const cpu::WindowGeometry& g);
inline Tensor im2col_cpu(const Tensor& x, const cpu::WindowGeometry& g) {
  Tensor xc = x.detach().contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor out = empty({N, C, g.kh * g.kw, g.Ho * g.Wo}, TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() > 0) {
    if (x.dtype() == kFloat32) cpu::im2col_kernel(xc.data_ptr<float>(), out.data_ptr<float>(), N * C, H, W, g);
    else cpu::im2col_kernel(xc.data_ptr<double>(), out.data_ptr<double>(), N * C, H, W, g);
  }
  if (autograd::needs_grad(x))
    autograd::record("Im2colBackward", out, {x}, [shape = x.sizes(), g](const Tensor& grad, autograd::NeedsGrad) {
      return TensorList{col2im_cpu(grad, shape, g)};
    });
  return out;
}
inline Tensor col2im_cpu(const Tensor& cols, const Shape& x_shape, const cpu::WindowGeometry& g) {
  Tensor cc = cols.detach().contiguous();
  Tensor out = zeros(x_shape, TensorOptions(cols.dtype()).device(cols.device()));
  if (out.numel() > 0 && cc.numel() > 0) {
    const int64_t planes = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
    if (cols.dtype() == kFloat32) cpu::col2im_kernel(cc.data_ptr<float>(), out.data_ptr<float>(), planes, H, W, g);
    else cpu::col2im_kernel(cc.data_ptr<double>(), out.data_ptr<double>(), planes, H, W, g);
  }
  if (autograd::needs_grad(cols))
    autograd::record("Col2imBackward", out, {cols}, [g](const Tensor& grad, autograd::NeedsGrad) {
      return TensorList{im2col_cpu(grad, g)};
    });
  return out;
}

// x [N, C, H, W] (already padded) -> windows [N, C, kh * kw, Ho * Wo]. On the CPU (float32 and
// float64) direct loops; elsewhere a gather through index_select, whose gradient is index_add.
inline Tensor sliding_windows(const Tensor& x, int64_t kh, int64_t kw, Pair2d stride, Pair2d dilation, const char* op) {
  NABLA_CHECK(x.dim() == 4, ShapeError, op, ": expected a 4-D input [N, C, H, W], got ", describe(x));
  NABLA_CHECK(stride.h > 0 && stride.w > 0 && dilation.h > 0 && dilation.w > 0 && kh > 0 && kw > 0, ValueError, op,
              ": kernel, stride and dilation must be positive");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = conv_out_size(H, 0, kh, stride.h, dilation.h), Wo = conv_out_size(W, 0, kw, stride.w, dilation.w);
  NABLA_CHECK(H >= dilation.h * (kh - 1) + 1 && W >= dilation.w * (kw - 1) + 1, ShapeError, op, ": the (padded) input ",
              describe(x), " is smaller than the kernel ", kh, "x", kw, " (dilation ", dilation.h, "x", dilation.w, ")");
  if (x.is_cpu() && (x.dtype() == kFloat32 || x.dtype() == kFloat64))
    return im2col_cpu(x, {kh, kw, stride.h, stride.w, dilation.h, dilation.w, Ho, Wo});
  Tensor idx = window_index(W, kh, kw, stride, dilation, Ho, Wo, x.device());
  return x.reshape({N, C, H * W}).index_select(2, idx).reshape({N, C, kh * kw, Ho * Wo});
}

}  // namespace detail

// torch.nn.functional.unfold: x [N, C, H, W] -> columns [N, C * kh * kw, L].
inline Tensor im2col(const Tensor& x, Pair2d kernel, Pair2d dilation = 1, Pair2d padding = 0, Pair2d stride = 1) {
  detail::check_defined(x, "im2col");
  Tensor xp = padding.h || padding.w ? pad(x, {padding.w, padding.w, padding.h, padding.h}) : x;
  Tensor cols = detail::sliding_windows(xp, kernel.h, kernel.w, stride, dilation, "im2col");
  return cols.reshape({x.size(0), x.size(1) * kernel.h * kernel.w, -1});
}

namespace detail {

// The adjoint of sliding_windows: windows [N, C, kh * kw, Ho * Wo] summed back into an image of
// [N, C, H, W] (padded size). col2im on the CPU, index_add elsewhere; both differentiable.
inline Tensor fold_windows(const Tensor& cols, int64_t H, int64_t W, int64_t kh, int64_t kw, Pair2d stride,
                           Pair2d dilation) {
  const int64_t N = cols.size(0), C = cols.size(1);
  const int64_t Ho = conv_out_size(H, 0, kh, stride.h, dilation.h), Wo = conv_out_size(W, 0, kw, stride.w, dilation.w);
  if (cols.is_cpu() && (cols.dtype() == kFloat32 || cols.dtype() == kFloat64))
    return col2im_cpu(cols, Shape{N, C, H, W}, {kh, kw, stride.h, stride.w, dilation.h, dilation.w, Ho, Wo});
  Tensor idx = window_index(W, kh, kw, stride, dilation, Ho, Wo, cols.device());
  return zeros({N, C, H * W}, cols.options().requires_grad(false))
      .index_add(2, idx, cols.reshape({N, C, kh * kw * Ho * Wo}))
      .reshape({N, C, H, W});
}

// The composite convolution of an already padded input: windows, one batched matmul, bias.
inline Tensor conv2d_composite(const Tensor& xp, const Tensor& weight, const Tensor& bias, Pair2d stride,
                               Pair2d dilation, int64_t groups) {
  const int64_t N = xp.size(0), C = xp.size(1), O = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  Tensor cols = sliding_windows(xp, kh, kw, stride, dilation, "conv2d");  // [N, C, kh * kw, L]
  const int64_t Ho = conv_out_size(xp.size(2), 0, kh, stride.h, dilation.h);
  const int64_t Wo = conv_out_size(xp.size(3), 0, kw, stride.w, dilation.w);
  const int64_t ckk = C / groups * kh * kw;
  Tensor y = matmul(weight.reshape({groups, O / groups, ckk}), cols.reshape({N, groups, ckk, Ho * Wo}));
  y = y.reshape({N, O, Ho, Wo});
  return bias.defined() ? y + bias.reshape({O, 1, 1}) : y;
}

// conv2d's gradients written in differentiable ops: the backward of the fused path when a
// higher-order graph is being built (create_graph), so double backward works on every device.
inline TensorList conv2d_backward_composite(const Tensor& x, const Tensor& w, const Tensor& g, const Conv2dParams& p,
                                            autograd::NeedsGrad needs) {
  const int64_t N = x.size(0), C = x.size(1), O = w.size(0), kh = w.size(2), kw = w.size(3), G = p.groups;
  const int64_t Og = O / G, ckk = C / G * kh * kw, L = g.size(2) * g.size(3);
  const Pair2d stride(p.stride_h, p.stride_w), dilation(p.dilation_h, p.dilation_w);
  Tensor gg = g.reshape({N, G, Og, L});
  TensorList out(3);
  if (needs[0]) {
    Tensor cols = matmul(w.reshape({G, Og, ckk}).transpose(-1, -2), gg).reshape({N, C, kh * kw, L});
    Tensor gxp = fold_windows(cols, x.size(2) + 2 * p.pad_h, x.size(3) + 2 * p.pad_w, kh, kw, stride, dilation);
    out[0] = gxp.narrow(2, p.pad_h, x.size(2)).narrow(3, p.pad_w, x.size(3));
  }
  if (needs[1]) {
    Tensor xp = p.pad_h || p.pad_w ? pad(x, {p.pad_w, p.pad_w, p.pad_h, p.pad_h}) : x;
    Tensor cols = sliding_windows(xp, kh, kw, stride, dilation, "conv2d").reshape({N, G, ckk, L});
    out[1] = matmul(gg, cols.transpose(-1, -2)).sum({0}).reshape(w.sizes());
  }
  if (needs[2]) out[2] = g.sum({0, 2, 3});
  return out;
}

// The fused path: a Conv2dBackward node whose gradients come from the backend's kernels, or
// from the composite above under create_graph. Returns an undefined tensor when the backend
// has no kernel for the case.
inline Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, int64_t Ho,
                           int64_t Wo) {
  const DType dt = x.dtype();
  if (!is_floating_point(dt) || w.dtype() != dt || (bias.defined() && bias.dtype() != dt) || w.device() != x.device() ||
      (bias.defined() && bias.device() != x.device()) || x.numel() == 0 || w.numel() == 0)
    return Tensor();
  Backend& be = backend(x.device());
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({x.size(0), w.size(0), Ho, Wo}, x.options().requires_grad(false));
  if (!be.conv2d_forward(out, xc, wc, bc, p)) return Tensor();
  if (autograd::needs_grad(x, w, bias))
    autograd::record("Conv2dBackward", out, {x, w, bias},
                     [xs = autograd::save(x), ws = autograd::save(w), p](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor xv = xs.unpack(), wv = ws.unpack();
                       if (GradMode::is_enabled()) return conv2d_backward_composite(xv, wv, g, p, needs);
                       Backend& be = backend(g.device());
                       Tensor gc = g.contiguous();
                       TensorList out(3);
                       if (needs[0]) {
                         out[0] = empty(xv.sizes(), xv.options().requires_grad(false));
                         if (!be.conv2d_backward_input(out[0], gc, wv.detach().contiguous(), p))
                           return conv2d_backward_composite(xv, wv, g, p, needs);
                       }
                       if (needs[1] || needs[2]) {
                         Tensor gw = empty(wv.sizes(), wv.options().requires_grad(false));
                         Tensor gb = needs[2] ? empty({wv.size(0)}, wv.options().requires_grad(false)) : Tensor();
                         if (!be.conv2d_backward_weight(gw, gb, gc, xv.detach().contiguous(), p))
                           return conv2d_backward_composite(xv, wv, g, p, needs);
                         if (needs[1]) out[1] = gw;
                         out[2] = gb;
                       }
                       return out;
                     });
  return out;
}

}  // namespace detail

// 2-D convolution (cross-correlation, as PyTorch): x [N, C, H, W], weight [O, C / groups, kh, kw],
// bias [O] or undefined -> [N, O, Ho, Wo]. channels_last: x is [N, H, W, C] and so is the result.
inline Tensor conv2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Pair2d stride = 1,
                     Padding2d padding = 0, Pair2d dilation = 1, int64_t groups = 1, bool channels_last = false) {
  detail::check_defined(input, "conv2d");
  detail::check_defined(weight, "conv2d");
  Tensor x = channels_last && input.dim() == 4 ? input.permute({0, 3, 1, 2}) : input;
  NABLA_CHECK(x.dim() == 4, ShapeError, "conv2d: expected a 4-D input, got ", detail::describe(input));
  NABLA_CHECK(weight.dim() == 4, ShapeError, "conv2d: weight must be [out, in / groups, kh, kw], got ",
              detail::describe(weight));
  NABLA_CHECK(groups > 0 && x.size(1) % groups == 0 && weight.size(0) % groups == 0, ValueError, "conv2d: groups=", groups,
              " must divide both the input channels of ", detail::describe(x), " and the output channels of ",
              detail::describe(weight));
  NABLA_CHECK(weight.size(1) * groups == x.size(1), ShapeError, "conv2d: input ", detail::describe(x), " has ", x.size(1),
              " channels but weight ", detail::describe(weight), " with groups=", groups, " expects ",
              weight.size(1) * groups);
  NABLA_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)), ShapeError, "conv2d: bias ",
              detail::describe(bias), " must be [", weight.size(0), "]");
  NABLA_CHECK(stride.h > 0 && stride.w > 0 && dilation.h > 0 && dilation.w > 0, ValueError,
              "conv2d: stride and dilation must be positive, got stride ", stride.h, "x", stride.w, ", dilation ",
              dilation.h, "x", dilation.w);
  NABLA_CHECK(padding.h >= 0 && padding.w >= 0, ValueError, "conv2d: negative padding ", padding.h, "x", padding.w);
  const int64_t kh = weight.size(2), kw = weight.size(3);
  int64_t top = padding.h, bottom = padding.h, left = padding.w, right = padding.w;
  if (padding.mode == "valid") top = bottom = left = right = 0;
  if (padding.mode == "same") {
    NABLA_CHECK(stride.h == 1 && stride.w == 1, ValueError, "conv2d: padding=\"same\" needs stride 1");
    const int64_t th = dilation.h * (kh - 1), tw = dilation.w * (kw - 1);
    top = th / 2, bottom = th - top, left = tw / 2, right = tw - left;  // the odd pixel goes last, as PyTorch
  }
  const int64_t Hp = x.size(2) + top + bottom, Wp = x.size(3) + left + right;
  NABLA_CHECK(Hp >= dilation.h * (kh - 1) + 1 && Wp >= dilation.w * (kw - 1) + 1, ShapeError, "conv2d: the (padded) input ",
              detail::describe(x), " is smaller than the kernel ", kh, "x", kw, " (dilation ", dilation.h, "x",
              dilation.w, ")");
  const int64_t Ho = detail::conv_out_size(Hp, 0, kh, stride.h, dilation.h);
  const int64_t Wo = detail::conv_out_size(Wp, 0, kw, stride.w, dilation.w);
  if (top == bottom && left == right) {
    Tensor y = detail::conv2d_fused(x, weight, bias, {stride.h, stride.w, top, left, dilation.h, dilation.w, groups}, Ho, Wo);
    if (y.defined()) return channels_last ? y.permute({0, 2, 3, 1}) : y;
  }
  Tensor xp = top || bottom || left || right ? pad(x, {left, right, top, bottom}) : x;
  Tensor y = detail::conv2d_composite(xp, weight, bias, stride, dilation, groups);
  return channels_last ? y.permute({0, 2, 3, 1}) : y;
}

// The composite convolution, bypassing backend kernels: the reference the fused path is tested
// against (tests, benchmarks).
inline Tensor conv2d_reference(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Pair2d stride = 1,
                               Padding2d padding = 0, Pair2d dilation = 1, int64_t groups = 1) {
  detail::check_defined(input, "conv2d");
  NABLA_CHECK(padding.mode.empty(), ValueError, "conv2d_reference: explicit padding only");
  Tensor xp = padding.h || padding.w ? pad(input, {padding.w, padding.w, padding.h, padding.h}) : input;
  return detail::conv2d_composite(xp, weight, bias, stride, dilation, groups);
}

}  // namespace nabla

#include "pool.hpp"  // NOLINT: pooling builds on the windows above
#include "norm.hpp"  // NOLINT
