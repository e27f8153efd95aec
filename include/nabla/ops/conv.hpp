#pragma once
// Convolution: pad, im2col / col2im, conv2d. conv2d runs its fused kernels when the device has
// them (conv2d_kernels(): im2col + GEMM per image on the CPU, cuDNN on CUDA), else as a
// composite of existing ops (pad, a gather of sliding windows, matmul), which also serves as the
// reference in tests and is what double backward differentiates. The sliding-window gather has
// fused kernels of its own (sliding_window_kernels(): direct loops on the CPU).

#include <optional>
#include <cmath>
#include <string>
#include <vector>

#include "all.hpp"
#include "../backend/kernel_table.hpp"

namespace nabla {

// (height, width) hyper-parameter: `2` means {2, 2}, `{2, 3}` means height 2, width 3.
struct Pair2d {
  int64_t h = 0, w = 0;
  Pair2d() = default;
  Pair2d(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose, as PyTorch's int-or-pair
  Pair2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

inline std::ostream& operator<<(std::ostream& os, Pair2d p) { return os << "(" << p.h << ", " << p.w << ")"; }

// Conv padding: ints (as Pair2d) or "same" / "valid" like torch.nn.functional.conv2d.
struct Padding2d {
  int64_t h = 0, w = 0;
  std::string mode;  // "" (explicit), "same" or "valid"
  Padding2d() = default;
  Padding2d(int64_t v) : h(v), w(v) {}  // NOLINT
  Padding2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  template <size_t N>
  Padding2d(const char (&m)[N]) : Padding2d(std::string(m)) {}  // NOLINT
  Padding2d(const std::string& m) : mode(m) {  // NOLINT
    NABLA_CHECK(mode == "same" || mode == "valid", ValueError, "conv2d: padding string must be \"same\" or \"valid\", got \"",
                mode, "\"");
  }
};

inline std::ostream& operator<<(std::ostream& os, const Padding2d& p) {
  if (!p.mode.empty()) return os << p.mode;
  return os << "(" << p.h << ", " << p.w << ")";
}

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
    autograd::record("ConstantPadNdBackward0", out, {x}, [interior](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{interior(g)};
    });
  return out;
}

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

// conv2d's slots. Every tensor is contiguous, on the table's device, of one dtype the device's
// entry lists; each kernel overwrites its outputs and returns false to decline a case (the op
// then runs the composite).
struct Conv2dKernels {
  // x [N, C, H, W], w [O, C / groups, kh, kw], bias [O] or undefined -> out [N, O, Ho, Wo];
  // zero padding of pad_h rows / pad_w columns on each side.
  bool (*forward)(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams&) = nullptr;
  // grad_x [N, C, H, W] = the input gradient for grad_out [N, O, Ho, Wo].
  bool (*backward_input)(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w, const Conv2dParams&) = nullptr;
  // grad_w [O, C / groups, kh, kw]; grad_bias [O] (the sum of grad_out over N, Ho, Wo) or
  // undefined when the bias needs no gradient.
  bool (*backward_weight)(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                          const Conv2dParams&) = nullptr;
};
inline KernelTable<Conv2dKernels>& conv2d_kernels() {
  static KernelTable<Conv2dKernels> table("conv2d");
  return table;
}

// The window layout of the composite: kh x kw windows with stride and dilation, Ho x Wo of them.
struct WindowGeometry {
  int64_t kh, kw, sh, sw, dh, dw, Ho, Wo;
};
// The sliding-window gather and its adjoint (the composite conv2d's im2col / col2im).
struct SlidingWindowKernels {
  // x [N, C, H, W] (already padded) -> cols [N, C, kh * kw, Ho * Wo]
  void (*im2col)(const Tensor& cols, const Tensor& x, const WindowGeometry&) = nullptr;
  // x [N, C, H, W] (zeroed by the caller) += every window element of cols
  void (*col2im)(const Tensor& x, const Tensor& cols, const WindowGeometry&) = nullptr;
};
inline KernelTable<SlidingWindowKernels>& sliding_window_kernels() {
  static KernelTable<SlidingWindowKernels> table("sliding_windows");
  return table;
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

// The fused path of sliding_windows: the device's kernels. im2col and col2im are each other's
// adjoint, so each records the other as its backward (double backward works).
inline Tensor col2im_fused(const SlidingWindowKernels& k, const Tensor& cols, const Shape& x_shape,
                           const WindowGeometry& g);
inline Tensor im2col_fused(const SlidingWindowKernels& k, const Tensor& x, const WindowGeometry& g) {
  Tensor xc = x.detach().contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  Tensor out = empty({N, C, g.kh * g.kw, g.Ho * g.Wo}, TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() > 0) k.im2col(out, xc, g);
  sliding_window_kernels().count(x.device());
  if (autograd::needs_grad(x))
    autograd::record("Im2colBackward0", out, {x}, [k, shape = x.sizes(), g](const Tensor& grad, autograd::NeedsGrad) {
      return TensorList{col2im_fused(k, grad, shape, g)};
    });
  return out;
}
inline Tensor col2im_fused(const SlidingWindowKernels& k, const Tensor& cols, const Shape& x_shape,
                           const WindowGeometry& g) {
  Tensor cc = cols.detach().contiguous();
  Tensor out = zeros(x_shape, TensorOptions(cols.dtype()).device(cols.device()));
  if (out.numel() > 0 && cc.numel() > 0) k.col2im(out, cc, g);
  sliding_window_kernels().count(cols.device());
  if (autograd::needs_grad(cols))
    autograd::record("Col2imBackward0", out, {cols}, [k, g](const Tensor& grad, autograd::NeedsGrad) {
      return TensorList{im2col_fused(k, grad, g)};
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
  if (const auto* k = sliding_window_kernels().find(x.device(), x.dtype()))
    return im2col_fused(*k, x, {kh, kw, stride.h, stride.w, dilation.h, dilation.w, Ho, Wo});
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
// [N, C, H, W] (padded size). The device's col2im kernel, else index_add; both differentiable.
inline Tensor fold_windows(const Tensor& cols, int64_t H, int64_t W, int64_t kh, int64_t kw, Pair2d stride,
                           Pair2d dilation) {
  const int64_t N = cols.size(0), C = cols.size(1);
  const int64_t Ho = conv_out_size(H, 0, kh, stride.h, dilation.h), Wo = conv_out_size(W, 0, kw, stride.w, dilation.w);
  if (const auto* k = sliding_window_kernels().find(cols.device(), cols.dtype()))
    return col2im_fused(*k, cols, Shape{N, C, H, W}, {kh, kw, stride.h, stride.w, dilation.h, dilation.w, Ho, Wo});
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

// The fused path: a Conv2dBackward node whose gradients come from the device's kernels, or from
// the composite above under create_graph. Returns an undefined tensor when there is no kernel
// for the case (device, dtype, fused kernels off) or the kernel declines it. This is the one
// place that decides conv2d's eligibility.
inline Tensor conv2d_fused(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p, int64_t Ho,
                           int64_t Wo) {
  const DType dt = x.dtype();
  if (w.dtype() != dt || (bias.defined() && bias.dtype() != dt) || w.device() != x.device() ||
      (bias.defined() && bias.device() != x.device()) || x.numel() == 0 || w.numel() == 0)
    return Tensor();
  const Conv2dKernels* k = conv2d_kernels().find(x.device(), dt);
  if (!k || !k->forward) return Tensor();
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  Tensor bc = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor out = empty({x.size(0), w.size(0), Ho, Wo}, x.options().requires_grad(false));
  if (!k->forward(out, xc, wc, bc, p)) return Tensor();
  conv2d_kernels().count(x.device());
  if (autograd::needs_grad(x, w, bias))
    autograd::record("ConvolutionBackward0", out, {x, w, bias},
                     [xs = autograd::save(x), ws = autograd::save(w), p, k](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor xv = xs.unpack(), wv = ws.unpack();
                       if (GradMode::is_enabled() || !fused_kernels_enabled() || !k->backward_input ||
                           !k->backward_weight)
                         return conv2d_backward_composite(xv, wv, g, p, needs);
                       Tensor gc = g.contiguous();
                       TensorList out(3);
                       if (needs[0]) {
                         out[0] = empty(xv.sizes(), xv.options().requires_grad(false));
                         if (!k->backward_input(out[0], gc, wv.detach().contiguous(), p))
                           return conv2d_backward_composite(xv, wv, g, p, needs);
                       }
                       if (needs[1] || needs[2]) {
                         Tensor gw = empty(wv.sizes(), wv.options().requires_grad(false));
                         Tensor gb = needs[2] ? empty({wv.size(0)}, wv.options().requires_grad(false)) : Tensor();
                         if (!k->backward_weight(gw, gb, gc, xv.detach().contiguous(), p))
                           return conv2d_backward_composite(xv, wv, g, p, needs);
                         if (needs[1]) out[1] = gw;
                         out[2] = gb;
                       }
                       conv2d_kernels().count(g.device());
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
  if (auto ac = NABLA_AUTOCAST(conv2d, input, weight, bias))
    return conv2d(ac[0], ac[1], ac[2], stride, padding, dilation, groups, channels_last);
  if (trace::active()) {  // one Conv record; the ops inside do not report
    trace::Scope scope;
    Tensor y = conv2d(input, weight, bias, stride, padding, dilation, groups, channels_last);
    int64_t t = padding.h, l = padding.w, b = padding.h, r = padding.w;
    if (padding.mode == "valid") t = l = b = r = 0;
    if (padding.mode == "same") {
      const int64_t th = dilation.h * (weight.size(2) - 1), tw = dilation.w * (weight.size(3) - 1);
      t = th / 2, b = th - t, l = tw / 2, r = tw - l;
    }
    scope.record("Conv", {input, weight, bias}, {y},
                 {{"strides", std::vector<int64_t>{stride.h, stride.w}}, {"pads", std::vector<int64_t>{t, l, b, r}},
                  {"dilations", std::vector<int64_t>{dilation.h, dilation.w}}, {"group", groups},
                  {"channels_last", int64_t{channels_last}}});
    return y;
  }
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
  {
    // The fused kernels pad symmetrically; padding="same" with an even kernel puts its odd row or
    // column at the bottom / right, which an explicit pad adds first.
    Tensor xs = bottom > top || right > left ? pad(x, {0, right - left, 0, bottom - top}) : x;
    Tensor y = detail::conv2d_fused(xs, weight, bias, {stride.h, stride.w, top, left, dilation.h, dilation.w, groups}, Ho, Wo);
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

// ---- conv_transpose2d ----------------------------------------------------------------------------
// The adjoint of conv2d: a transposed convolution is conv2d's input gradient, its input gradient
// is conv2d, its weight gradient is conv2d's weight gradient with the roles of input and output
// gradient swapped. So it shares conv2d's kernel table (cuDNN backward-data on CUDA, the CPU's
// col2im + GEMM kernels) and, without a kernel, is a composite of the same differentiable ops.

namespace detail {

// x [N, Cin, H, W], w [Cin, Cout / G, kh, kw] -> [N, Cout, Ho, Wo]: each input pixel scatters its
// w-weighted kernel window into a canvas that covers every window exactly, then the canvas is
// widened by output_padding (rows no window reaches: zeros) and cropped by the padding.
inline Tensor conv_transpose2d_composite(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
                                         int64_t Ho, int64_t Wo) {
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3), G = p.groups;
  const int64_t Cg = w.size(1), kh = w.size(2), kw = w.size(3), Cout = Cg * G;
  const Pair2d stride(p.stride_h, p.stride_w), dilation(p.dilation_h, p.dilation_w);
  Tensor cols = matmul(w.reshape({G, Cin / G, Cg * kh * kw}).transpose(-1, -2), x.reshape({N, G, Cin / G, H * W}))
                    .reshape({N, Cout, kh * kw, H * W});
  const int64_t Hc = (H - 1) * p.stride_h + p.dilation_h * (kh - 1) + 1, Wc = (W - 1) * p.stride_w + p.dilation_w * (kw - 1) + 1;
  Tensor canvas = fold_windows(cols, Hc, Wc, kh, kw, stride, dilation);
  const int64_t extra_h = Ho + 2 * p.pad_h - Hc, extra_w = Wo + 2 * p.pad_w - Wc;  // output_padding
  if (extra_h || extra_w) canvas = pad(canvas, {0, extra_w, 0, extra_h});
  Tensor y = canvas.narrow(2, p.pad_h, Ho).narrow(3, p.pad_w, Wo);
  return bias.defined() ? y + bias.reshape({Cout, 1, 1}) : y;
}

// The gradients in differentiable ops (create_graph, or a kernel that declines): the input's is
// conv2d of g, the weight's pairs x with g's windows.
inline TensorList conv_transpose2d_backward_composite(const Tensor& x, const Tensor& w, const Tensor& g,
                                                      const Conv2dParams& p, autograd::NeedsGrad needs) {
  const Pair2d stride(p.stride_h, p.stride_w), dilation(p.dilation_h, p.dilation_w);
  TensorList out(3);
  if (needs[0]) out[0] = conv2d(g, w, Tensor(), stride, Padding2d(p.pad_h, p.pad_w), dilation, p.groups);
  if (needs[1]) {
    const int64_t N = x.size(0), Cin = x.size(1), G = p.groups, Cg = w.size(1), kh = w.size(2), kw = w.size(3);
    const int64_t L = x.size(2) * x.size(3);
    Tensor gp = p.pad_h || p.pad_w ? pad(g, {p.pad_w, p.pad_w, p.pad_h, p.pad_h}) : g;
    Tensor cols = sliding_windows(gp, kh, kw, stride, dilation, "conv_transpose2d").reshape({N, G, Cg * kh * kw, L});
    out[1] = matmul(x.reshape({N, G, Cin / G, L}), cols.transpose(-1, -2)).sum({0}).reshape(w.sizes());
  }
  if (needs[2]) out[2] = g.sum({0, 2, 3});
  return out;
}

// The fused path through conv2d's kernels; undefined when there is none or it declines. Only for
// output sizes conv2d maps back onto x exactly (output_padding below the stride), which is the
// shape contract of conv2d's kernels.
inline Tensor conv_transpose2d_fused(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
                                     int64_t Ho, int64_t Wo) {
  const DType dt = x.dtype();
  if (w.dtype() != dt || (bias.defined() && bias.dtype() != dt) || w.device() != x.device() ||
      (bias.defined() && bias.device() != x.device()) || x.numel() == 0 || w.numel() == 0)
    return Tensor();
  if (conv_out_size(Ho, 2 * p.pad_h, w.size(2), p.stride_h, p.dilation_h) != x.size(2) ||
      conv_out_size(Wo, 2 * p.pad_w, w.size(3), p.stride_w, p.dilation_w) != x.size(3))
    return Tensor();
  const Conv2dKernels* k = conv2d_kernels().find(x.device(), dt);
  if (!k || !k->forward || !k->backward_input || !k->backward_weight) return Tensor();
  Tensor xc = x.detach().contiguous(), wc = w.detach().contiguous();
  const int64_t Cout = w.size(1) * p.groups;
  Tensor out = empty({x.size(0), Cout, Ho, Wo}, x.options().requires_grad(false));
  if (!k->backward_input(out, xc, wc, p)) return Tensor();
  if (bias.defined()) out.add_(bias.detach().reshape({Cout, 1, 1}));
  conv2d_kernels().count(x.device());
  if (autograd::needs_grad(x, w, bias))
    autograd::record("ConvolutionBackward0", out, {x, w, bias},
                     [xs = autograd::save(x), ws = autograd::save(w), p, k](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor xv = xs.unpack(), wv = ws.unpack();
                       if (GradMode::is_enabled() || !fused_kernels_enabled())
                         return conv_transpose2d_backward_composite(xv, wv, g, p, needs);
                       Tensor gc = g.contiguous();
                       TensorList out(3);
                       if (needs[0]) {
                         out[0] = empty(xv.sizes(), xv.options().requires_grad(false));
                         if (!k->forward(out[0], gc, wv.detach().contiguous(), Tensor(), p))
                           return conv_transpose2d_backward_composite(xv, wv, g, p, needs);
                       }
                       if (needs[1]) {
                         out[1] = empty(wv.sizes(), wv.options().requires_grad(false));
                         if (!k->backward_weight(out[1], Tensor(), xv.detach().contiguous(), gc, p))
                           return conv_transpose2d_backward_composite(xv, wv, g, p, needs);
                       }
                       if (needs[2]) out[2] = g.sum({0, 2, 3});
                       conv2d_kernels().count(g.device());
                       return out;
                     });
  return out;
}

inline Conv2dParams conv_transpose2d_check(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair2d stride,
                                          Pair2d padding, Pair2d output_padding, int64_t groups, Pair2d dilation,
                                          int64_t& Ho, int64_t& Wo) {
  NABLA_CHECK(x.dim() == 4, ShapeError, "conv_transpose2d: expected a 4-D input [N, C, H, W], got ", describe(x));
  NABLA_CHECK(weight.dim() == 4, ShapeError, "conv_transpose2d: weight must be [in, out / groups, kh, kw], got ",
              describe(weight));
  NABLA_CHECK(groups > 0 && x.size(1) % groups == 0, ValueError, "conv_transpose2d: groups=", groups,
              " must divide the input channels of ", describe(x));
  NABLA_CHECK(weight.size(0) == x.size(1), ShapeError, "conv_transpose2d: input ", describe(x), " has ", x.size(1),
              " channels but weight ", describe(weight), " is for ", weight.size(0),
              " (a transposed convolution's weight is [in, out / groups, kh, kw])");
  NABLA_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(1) * groups), ShapeError,
              "conv_transpose2d: bias ", describe(bias), " must be [", weight.size(1) * groups, "]");
  NABLA_CHECK(stride.h > 0 && stride.w > 0 && dilation.h > 0 && dilation.w > 0, ValueError,
              "conv_transpose2d: stride and dilation must be positive, got stride ", stride.h, "x", stride.w,
              ", dilation ", dilation.h, "x", dilation.w);
  NABLA_CHECK(padding.h >= 0 && padding.w >= 0 && output_padding.h >= 0 && output_padding.w >= 0, ValueError,
              "conv_transpose2d: negative padding ", padding.h, "x", padding.w, " or output_padding ", output_padding.h,
              "x", output_padding.w);
  NABLA_CHECK((output_padding.h < stride.h || output_padding.h < dilation.h) &&
                  (output_padding.w < stride.w || output_padding.w < dilation.w),
              ValueError, "conv_transpose2d: output_padding ", output_padding.h, "x", output_padding.w,
              " must be smaller than either the stride ", stride.h, "x", stride.w, " or the dilation ", dilation.h, "x",
              dilation.w);
  Ho = (x.size(2) - 1) * stride.h - 2 * padding.h + dilation.h * (weight.size(2) - 1) + output_padding.h + 1;
  Wo = (x.size(3) - 1) * stride.w - 2 * padding.w + dilation.w * (weight.size(3) - 1) + output_padding.w + 1;
  NABLA_CHECK(Ho > 0 && Wo > 0, ShapeError, "conv_transpose2d: input ", describe(x), " with weight ", describe(weight),
              ", stride ", stride.h, "x", stride.w, " and padding ", padding.h, "x", padding.w, " gives an empty output ",
              Ho, "x", Wo);
  return {stride.h, stride.w, padding.h, padding.w, dilation.h, dilation.w, groups};
}

}  // namespace detail

// 2-D transposed convolution, torch.nn.functional.conv_transpose2d with LibTorch's argument
// order (groups before dilation): x [N, Cin, H, W], weight [Cin, Cout / groups, kh, kw], bias
// [Cout] or undefined -> [N, Cout, Ho, Wo] with
// Ho = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1.
inline Tensor conv_transpose2d(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(), Pair2d stride = 1,
                               Pair2d padding = 0, Pair2d output_padding = 0, int64_t groups = 1, Pair2d dilation = 1) {
  detail::check_defined(input, "conv_transpose2d");
  detail::check_defined(weight, "conv_transpose2d");
  if (auto ac = NABLA_AUTOCAST(conv_transpose2d, input, weight, bias))
    return conv_transpose2d(ac[0], ac[1], ac[2], stride, padding, output_padding, groups, dilation);
  int64_t Ho = 0, Wo = 0;
  const Conv2dParams p =
      detail::conv_transpose2d_check(input, weight, bias, stride, padding, output_padding, groups, dilation, Ho, Wo);
  Tensor y = detail::conv_transpose2d_fused(input, weight, bias, p, Ho, Wo);
  return y.defined() ? y : detail::conv_transpose2d_composite(input, weight, bias, p, Ho, Wo);
}

// The composite, bypassing backend kernels: the reference the fused path is tested against.
inline Tensor conv_transpose2d_reference(const Tensor& input, const Tensor& weight, const Tensor& bias = Tensor(),
                                         Pair2d stride = 1, Pair2d padding = 0, Pair2d output_padding = 0,
                                         int64_t groups = 1, Pair2d dilation = 1) {
  detail::check_defined(input, "conv_transpose2d");
  detail::check_defined(weight, "conv_transpose2d");
  int64_t Ho = 0, Wo = 0;
  const Conv2dParams p =
      detail::conv_transpose2d_check(input, weight, bias, stride, padding, output_padding, groups, dilation, Ho, Wo);
  return detail::conv_transpose2d_composite(input, weight, bias, p, Ho, Wo);
}

}  // namespace nabla
