#pragma once
// Convolution and pooling as composites: pad (its own small op), im2col (a gather of sliding
// windows through index_select on a flattened view), matmul, mean/argmax+gather, and
// batch_norm. Every piece is an existing op with a backward rule, so gradients (and double
// backward) come for free and the same code runs on every device.

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
  const int64_t N = x.size(0), C = x.size(1), O = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  int64_t top = padding.h, bottom = padding.h, left = padding.w, right = padding.w;
  if (padding.mode == "valid") top = bottom = left = right = 0;
  if (padding.mode == "same") {
    NABLA_CHECK(stride.h == 1 && stride.w == 1, ValueError, "conv2d: padding=\"same\" needs stride 1");
    const int64_t th = dilation.h * (kh - 1), tw = dilation.w * (kw - 1);
    top = th / 2, bottom = th - top, left = tw / 2, right = tw - left;  // the odd pixel goes last, as PyTorch
  }
  Tensor xp = top || bottom || left || right ? pad(x, {left, right, top, bottom}) : x;
  const int64_t Ho = detail::conv_out_size(xp.size(2), 0, kh, stride.h, dilation.h);
  const int64_t Wo = detail::conv_out_size(xp.size(3), 0, kw, stride.w, dilation.w);
  Tensor cols = detail::sliding_windows(xp, kh, kw, stride, dilation, "conv2d");  // [N, C, kk, L]
  const int64_t G = groups, ckk = C / G * kh * kw;
  Tensor y = matmul(weight.reshape({G, O / G, ckk}), cols.reshape({N, G, ckk, Ho * Wo}));  // [N, G, O/G, L]
  y = y.reshape({N, O, Ho, Wo});
  if (bias.defined()) y = y + bias.reshape({O, 1, 1});
  return channels_last ? y.permute({0, 2, 3, 1}) : y;
}

// Max over each window; the gradient goes to the first maximal element of the window, as
// PyTorch's (argmax + gather along the window dim). Padding counts as -inf.
inline Tensor max_pool2d(const Tensor& x, Pair2d kernel, std::optional<Pair2d> stride = std::nullopt, Pair2d padding = 0,
                         Pair2d dilation = 1) {
  detail::check_defined(x, "max_pool2d");
  Pair2d s = stride.value_or(kernel);
  NABLA_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, ValueError,
              "max_pool2d: padding should be at most half the kernel size, got padding ", padding.h, "x", padding.w,
              " for kernel ", kernel.h, "x", kernel.w);
  Tensor xp = padding.h || padding.w ? pad(x, {padding.w, padding.w, padding.h, padding.h}, -INFINITY) : x;
  Tensor win = detail::sliding_windows(xp, kernel.h, kernel.w, s, dilation, "max_pool2d");
  const int64_t Ho = detail::conv_out_size(xp.size(2), 0, kernel.h, s.h, dilation.h);
  const int64_t Wo = detail::conv_out_size(xp.size(3), 0, kernel.w, s.w, dilation.w);
  return win.gather(2, win.detach().argmax(2, true)).reshape({x.size(0), x.size(1), Ho, Wo});
}

// Mean over each window; zero padding counts toward the divisor (count_include_pad=True).
inline Tensor avg_pool2d(const Tensor& x, Pair2d kernel, std::optional<Pair2d> stride = std::nullopt, Pair2d padding = 0) {
  detail::check_defined(x, "avg_pool2d");
  Pair2d s = stride.value_or(kernel);
  NABLA_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, ValueError,
              "avg_pool2d: padding should be at most half the kernel size");
  Tensor xp = padding.h || padding.w ? pad(x, {padding.w, padding.w, padding.h, padding.h}) : x;
  Tensor win = detail::sliding_windows(xp, kernel.h, kernel.w, s, 1, "avg_pool2d");
  const int64_t Ho = detail::conv_out_size(xp.size(2), 0, kernel.h, s.h, 1);
  const int64_t Wo = detail::conv_out_size(xp.size(3), 0, kernel.w, s.w, 1);
  return win.mean({2}).reshape({x.size(0), x.size(1), Ho, Wo});
}

namespace detail {
// [out, in] averaging matrix of adaptive pooling: row o averages [floor(o*in/out), ceil((o+1)*in/out)).
inline Tensor adaptive_matrix(int64_t in, int64_t out, const TensorOptions& opt) {
  std::vector<double> m(static_cast<size_t>(in * out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t a = (o * in) / out, b = ((o + 1) * in + out - 1) / out;
    for (int64_t i = a; i < b; ++i) m[static_cast<size_t>(o * in + i)] = 1.0 / static_cast<double>(b - a);
  }
  return from_vector(m, {out, in}, TensorOptions(kFloat64)).to(opt.device_, opt.dtype_);
}
}  // namespace detail

// PyTorch's adaptive average pooling to output_size. A window is a rectangle, so its mean is
// separable: A_h @ x @ A_w^T with 1-D averaging matrices (a plain reshape + mean when the
// sizes divide).
inline Tensor adaptive_avg_pool2d(const Tensor& x, Pair2d output_size) {
  detail::check_defined(x, "adaptive_avg_pool2d");
  NABLA_CHECK(x.dim() == 4 || x.dim() == 3, ShapeError, "adaptive_avg_pool2d: expected a 3-D or 4-D input, got ",
              detail::describe(x));
  NABLA_CHECK(output_size.h > 0 && output_size.w > 0, ValueError, "adaptive_avg_pool2d: output size must be positive");
  NABLA_CHECK(x.is_floating_point(), DTypeError, "adaptive_avg_pool2d: expected a floating-point input, got ",
              detail::describe(x));
  const int64_t H = x.size(-2), W = x.size(-1), oh = output_size.h, ow = output_size.w;
  if (H % oh == 0 && W % ow == 0) {
    Shape s(x.sizes().begin(), x.sizes().end() - 2);
    Shape r = s;
    for (int64_t v : {oh, H / oh, ow, W / ow}) r.push_back(v);
    return x.reshape(r).mean({-3, -1});
  }
  Tensor ah = detail::adaptive_matrix(H, oh, x.options()), aw = detail::adaptive_matrix(W, ow, x.options());
  return matmul(matmul(ah, x), aw.t());
}

// Batch normalisation over dim 1 of x [N, C, ...]. training: normalise with the batch's
// mean and biased variance, and update running_mean / running_var in place (no history) with
// the unbiased variance, as PyTorch; eval: normalise with the running statistics.
inline Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                         double momentum = 0.1, double eps = 1e-5) {
  detail::check_defined(x, "batch_norm");
  NABLA_CHECK(x.dim() >= 2, ShapeError, "batch_norm: expected an input [N, C, ...], got ", detail::describe(x));
  const int64_t C = x.size(1);
  for (const Tensor* t : {&running_mean, &running_var, &weight, &bias})
    NABLA_CHECK(!t->defined() || (t->dim() == 1 && t->size(0) == C), ShapeError, "batch_norm: ", detail::describe(*t),
                " must be [", C, "] for input ", detail::describe(x));
  Shape bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = C;
  Dims dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  Tensor mean, var;
  if (training) {
    const int64_t n = x.numel() / std::max<int64_t>(C, 1);
    NABLA_CHECK(n > 1, ValueError, "batch_norm: expected more than 1 value per channel when training, got input ",
                detail::describe(x));
    mean = x.mean(dims, true);
    Tensor xc = x - mean;
    var = (xc * xc).mean(dims, true);
    if (running_mean.defined() || running_var.defined()) {
      NoGradGuard no_grad;
      if (running_mean.defined()) {
        Tensor rm = running_mean;
        rm.copy_(running_mean * (1.0 - momentum) + mean.detach().reshape({C}).to(running_mean.dtype()) * momentum);
      }
      if (running_var.defined()) {
        Tensor rv = running_var;
        const double unbias = static_cast<double>(n) / static_cast<double>(n - 1);
        rv.copy_(running_var * (1.0 - momentum) + var.detach().reshape({C}).to(running_var.dtype()) * (momentum * unbias));
      }
    }
    Tensor y = xc * (var + eps).rsqrt();
    if (weight.defined()) y = y * weight.reshape(bshape);
    if (bias.defined()) y = y + bias.reshape(bshape);
    return y;
  }
  NABLA_CHECK(running_mean.defined() && running_var.defined(), ValueError,
              "batch_norm: running_mean and running_var are needed in eval mode");
  Tensor y = (x - running_mean.reshape(bshape)) * (running_var.reshape(bshape) + eps).rsqrt();
  if (weight.defined()) y = y * weight.reshape(bshape);
  if (bias.defined()) y = y + bias.reshape(bshape);
  return y;
}

}  // namespace nabla
