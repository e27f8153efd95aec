#pragma once
// Pooling and resampling: max_pool2d (with indices, ceil_mode), avg_pool2d (ceil_mode,
// count_include_pad, divisor_override), adaptive_avg_pool2d, interpolate (nearest, bilinear).
// max_pool2d runs its fused kernel when the device has one (max_pool2d_kernels(); the CPU's and
// CUDA's also return the argmax indices, and the backward is a scatter_add through them), else
// a composite of sliding windows and argmax. The rest are composites.

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "conv.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1,
          dilation_w = 1;
};

struct MaxPool2dKernels {
  // x [N, C, H, W] -> out [N, C, Ho, Wo] and indices (int64, same shape) = h * W + w of each
  // window's maximum within its input plane: the first maximum in window order, NaN counting as
  // the maximum. out's shape defines the windows (window (oh, ow) starts at oh * stride - pad);
  // elements outside the input (padding, or past the edge with ceil_mode) are skipped, so a
  // window whose inputs are all -inf names its first input element.
  bool (*forward)(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams&) = nullptr;
};
inline KernelTable<MaxPool2dKernels>& max_pool2d_kernels() {
  static KernelTable<MaxPool2dKernels> table("max_pool2d");
  return table;
}

namespace detail {

// PyTorch's pooling output size; with ceil_mode the last window must start inside the input or
// its left padding.
inline int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  int64_t out = (span + (ceil_mode ? s - 1 : 0)) / s + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// Shared checks of the 2-D pools; returns x as [N, C, H, W] (a 3-D [C, H, W] gains N = 1).
inline Tensor pool_input(const Tensor& x, Pair2d kernel, Pair2d stride, Pair2d padding, Pair2d dilation, const char* op) {
  check_defined(x, op);
  NABLA_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got ",
              describe(x));
  NABLA_CHECK(kernel.h > 0 && kernel.w > 0 && stride.h > 0 && stride.w > 0 && dilation.h > 0 && dilation.w > 0,
              ValueError, op, ": kernel, stride and dilation must be positive, got kernel ", kernel.h, "x", kernel.w,
              ", stride ", stride.h, "x", stride.w);
  NABLA_CHECK(padding.h >= 0 && padding.w >= 0 && 2 * padding.h <= kernel.h && 2 * padding.w <= kernel.w, ValueError, op,
              ": padding should be at most half the kernel size, got padding ", padding.h, "x", padding.w, " for kernel ",
              kernel.h, "x", kernel.w);
  Tensor x4 = x.dim() == 3 ? x.unsqueeze(0) : x;
  NABLA_CHECK(x4.size(2) + 2 * padding.h >= dilation.h * (kernel.h - 1) + 1 &&
                  x4.size(3) + 2 * padding.w >= dilation.w * (kernel.w - 1) + 1,
              ShapeError, op, ": the (padded) input ", describe(x), " is smaller than the kernel ", kernel.h, "x", kernel.w);
  return x4;
}

// The fused max-pool kernel: the device's, else the CPU's in float32 (half types, or a device
// without one), moving the result back. Undefined tensors when no kernel takes the case.
inline std::pair<Tensor, Tensor> max_pool2d_fused(const Tensor& x, const Pool2dParams& p, int64_t Ho, int64_t Wo) {
  const Shape shape{x.size(0), x.size(1), Ho, Wo};
  if (const MaxPool2dKernels* k = max_pool2d_kernels().find(x.device(), x.dtype()); k && k->forward) {
    Tensor out = empty(shape, x.options().requires_grad(false));
    Tensor idx = empty(shape, TensorOptions(kInt64).device(x.device()));
    if (out.numel() == 0 || k->forward(out, idx, x.detach().contiguous(), p)) {
      max_pool2d_kernels().count(x.device());
      return {out, idx};
    }
  }
  if (const MaxPool2dKernels* k = max_pool2d_kernels().find(Device::cpu(), kFloat32); k && k->forward) {
    Tensor xf = x.detach().to(Device::cpu(), kFloat32).contiguous();
    Tensor of = empty(shape, TensorOptions(kFloat32)), idf = empty(shape, TensorOptions(kInt64));
    if (of.numel() == 0 || k->forward(of, idf, xf, p)) {
      max_pool2d_kernels().count(Device::cpu());
      return {of.to(x.device(), x.dtype()), idf.to(x.device())};
    }
  }
  return {Tensor(), Tensor()};
}

// The composite: windows of the input padded with -inf, the first maximum of each (argmax), and
// its flat index from a map of window element -> input position. Differentiable through the
// gather; the reference of the fused kernels (which differ only for windows of -inf or NaN ties).
inline std::pair<Tensor, Tensor> max_pool2d_composite(const Tensor& x, const Pool2dParams& p, int64_t Ho, int64_t Wo) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = p.kernel_h * p.kernel_w;
  const int64_t extra_h = std::max<int64_t>(0, (Ho - 1) * p.stride_h + p.dilation_h * (p.kernel_h - 1) + 1 - (H + 2 * p.pad_h));
  const int64_t extra_w = std::max<int64_t>(0, (Wo - 1) * p.stride_w + p.dilation_w * (p.kernel_w - 1) + 1 - (W + 2 * p.pad_w));
  Tensor xp = pad(x, {p.pad_w, p.pad_w + extra_w, p.pad_h, p.pad_h + extra_h}, -INFINITY);
  Tensor windows = sliding_windows(xp, p.kernel_h, p.kernel_w, {p.stride_h, p.stride_w}, {p.dilation_h, p.dilation_w},
                                   "max_pool2d");  // [N, C, K, L]
  const int64_t Hw = conv_out_size(xp.size(2), 0, p.kernel_h, p.stride_h, p.dilation_h);
  const int64_t Ww = conv_out_size(xp.size(3), 0, p.kernel_w, p.stride_w, p.dilation_w);  // >= Ho, Wo
  windows = windows.reshape({N, C, K, Hw, Ww}).narrow(3, 0, Ho).narrow(4, 0, Wo);
  Tensor arg = windows.detach().argmax(2, true);  // [N, C, 1, Ho, Wo]
  Tensor out = windows.gather(2, arg).reshape({N, C, Ho, Wo});
  std::vector<int64_t> pos(static_cast<size_t>(K * Ho * Wo));
  for (int64_t i = 0; i < p.kernel_h; ++i)
    for (int64_t j = 0; j < p.kernel_w; ++j)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h, w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
          pos[static_cast<size_t>(((i * p.kernel_w + j) * Ho + oh) * Wo + ow)] = h * W + w;
        }
  Tensor map = from_vector(pos, {1, 1, K, Ho, Wo}, TensorOptions(kInt64)).to(x.device()).expand({N, C, K, Ho, Wo});
  return {out, map.gather(2, arg).reshape({N, C, Ho, Wo})};
}

}  // namespace detail

// Max over each window, and the flat index h * W + w of the maximum in its input plane (as
// PyTorch's return_indices). The gradient goes to that element. Padding counts as -inf.
inline std::tuple<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, Pair2d kernel,
                                                          std::optional<Pair2d> stride = std::nullopt,
                                                          Pair2d padding = 0, Pair2d dilation = 1,
                                                          bool ceil_mode = false) {
  const Pair2d s = stride.value_or(kernel);
  Tensor x4 = detail::pool_input(x, kernel, s, padding, dilation, "max_pool2d");
  NABLA_CHECK(x.is_floating_point(), DTypeError, "max_pool2d: expected a floating-point input, got ", detail::describe(x));
  const int64_t N = x4.size(0), C = x4.size(1), H = x4.size(2), W = x4.size(3);
  const int64_t Ho = detail::pool_out_size(H, kernel.h, s.h, padding.h, dilation.h, ceil_mode);
  const int64_t Wo = detail::pool_out_size(W, kernel.w, s.w, padding.w, dilation.w, ceil_mode);
  const Pool2dParams p{kernel.h, kernel.w, s.h, s.w, padding.h, padding.w, dilation.h, dilation.w};
  auto [out, idx] = detail::max_pool2d_fused(x4, p, Ho, Wo);
  if (!out.defined()) {
    std::tie(out, idx) = detail::max_pool2d_composite(x4, p, Ho, Wo);
    if (x.dim() == 3) return {out.squeeze(0), idx.squeeze(0)};
    return {out, idx};
  }
  if (autograd::needs_grad(x4))
    autograd::record("MaxPool2DWithIndicesBackward0", out, {x4},
                     [idx = idx, N, C, H, W](const Tensor& g, autograd::NeedsGrad) {
                       const int64_t L = g.size(2) * g.size(3);
                       Tensor flat = zeros({N * C, H * W}, g.options().requires_grad(false));
                       return TensorList{
                           scatter_add(flat, 1, idx.reshape({N * C, L}), g.reshape({N * C, L})).reshape({N, C, H, W})};
                     });
  if (x.dim() == 3) return {out.squeeze(0), idx.squeeze(0)};
  return {out, idx};
}

inline Tensor max_pool2d(const Tensor& x, Pair2d kernel, std::optional<Pair2d> stride = std::nullopt, Pair2d padding = 0,
                         Pair2d dilation = 1, bool ceil_mode = false) {
  trace::Scope scope;
  Tensor y = std::get<0>(max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode));
  const Pair2d s = stride.value_or(kernel);
  if (scope)
    scope.record("MaxPool", {x}, {y},
                 {{"kernel_shape", std::vector<int64_t>{kernel.h, kernel.w}}, {"strides", std::vector<int64_t>{s.h, s.w}},
                  {"pads", std::vector<int64_t>{padding.h, padding.w, padding.h, padding.w}},
                  {"dilations", std::vector<int64_t>{dilation.h, dilation.w}}, {"ceil_mode", int64_t{ceil_mode}}});
  return y;
}

// Mean over each window. count_include_pad: zero padding counts toward the divisor (PyTorch's
// default); windows that ceil_mode extends past the padding never count the overhang.
// divisor_override replaces the divisor. A composite: window sums divided by a divisor map.
inline Tensor avg_pool2d(const Tensor& x, Pair2d kernel, std::optional<Pair2d> stride = std::nullopt, Pair2d padding = 0,
                         bool ceil_mode = false, bool count_include_pad = true,
                         std::optional<int64_t> divisor_override = std::nullopt) {
  NABLA_NO_AUTOCAST();
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override);
    const Pair2d s = stride.value_or(kernel);
    scope.record("AveragePool", {x}, {y},
                 {{"kernel_shape", std::vector<int64_t>{kernel.h, kernel.w}}, {"strides", std::vector<int64_t>{s.h, s.w}},
                  {"pads", std::vector<int64_t>{padding.h, padding.w, padding.h, padding.w}},
                  {"ceil_mode", int64_t{ceil_mode}}, {"count_include_pad", int64_t{count_include_pad}},
                  {"divisor_override", divisor_override.value_or(0)}});
    return y;
  }
  const Pair2d s = stride.value_or(kernel);
  Tensor x4 = detail::pool_input(x, kernel, s, padding, 1, "avg_pool2d");
  NABLA_CHECK(!divisor_override || *divisor_override != 0, ValueError, "avg_pool2d: divisor_override must be non-zero");
  const int64_t N = x4.size(0), C = x4.size(1), H = x4.size(2), W = x4.size(3);
  const int64_t Ho = detail::pool_out_size(H, kernel.h, s.h, padding.h, 1, ceil_mode);
  const int64_t Wo = detail::pool_out_size(W, kernel.w, s.w, padding.w, 1, ceil_mode);
  // Pad enough on the bottom/right for the last (ceil_mode) window.
  const int64_t extra_h = std::max<int64_t>(0, (Ho - 1) * s.h + kernel.h - (H + 2 * padding.h));
  const int64_t extra_w = std::max<int64_t>(0, (Wo - 1) * s.w + kernel.w - (W + 2 * padding.w));
  Tensor xp = padding.h || padding.w || extra_h || extra_w
                  ? pad(x4, {padding.w, padding.w + extra_w, padding.h, padding.h + extra_h})
                  : x4;
  Tensor sums = detail::sliding_windows(xp, kernel.h, kernel.w, s, 1, "avg_pool2d").sum({2}).reshape({N, C, Ho, Wo});
  std::vector<double> div(static_cast<size_t>(Ho * Wo));
  for (int64_t oh = 0; oh < Ho; ++oh)
    for (int64_t ow = 0; ow < Wo; ++ow) {
      int64_t hs = oh * s.h - padding.h, ws = ow * s.w - padding.w;
      int64_t he = std::min(hs + kernel.h, H + padding.h), we = std::min(ws + kernel.w, W + padding.w);
      const int64_t pool_size = (he - hs) * (we - ws);
      hs = std::max<int64_t>(hs, 0), ws = std::max<int64_t>(ws, 0), he = std::min(he, H), we = std::min(we, W);
      const int64_t d = divisor_override ? *divisor_override : count_include_pad ? pool_size : (he - hs) * (we - ws);
      div[static_cast<size_t>(oh * Wo + ow)] = static_cast<double>(d);
    }
  Tensor divisor = from_vector(div, {Ho, Wo}, TensorOptions(kFloat64)).to(x.device(), x.dtype());
  Tensor y = sums / divisor;
  return x.dim() == 3 ? y.squeeze(0) : y;
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
  NABLA_NO_AUTOCAST();
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = adaptive_avg_pool2d(x, output_size);
    scope.record("AdaptiveAvgPool", {x}, {y}, {{"output_size", std::vector<int64_t>{output_size.h, output_size.w}}});
    return y;
  }
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

namespace detail {

// Source coordinate of output pixel o, as PyTorch's area_pixel_compute_source_index.
inline double interp_source(int64_t o, int64_t in, int64_t out, std::optional<double> scale, bool align_corners) {
  if (align_corners) return out > 1 ? static_cast<double>(o) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
  const double r = scale ? 1.0 / *scale : static_cast<double>(in) / static_cast<double>(out);
  return std::max(0.0, (static_cast<double>(o) + 0.5) * r - 0.5);
}

// [out, in] linear interpolation matrix along one axis.
inline Tensor linear_matrix(int64_t in, int64_t out, std::optional<double> scale, bool align_corners,
                            const TensorOptions& opt) {
  std::vector<double> m(static_cast<size_t>(in * out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    const double src = interp_source(o, in, out, scale, align_corners);
    const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1), i1 = std::min(i0 + 1, in - 1);
    const double l1 = src - static_cast<double>(i0);
    m[static_cast<size_t>(o * in + i0)] += 1.0 - l1;
    m[static_cast<size_t>(o * in + i1)] += l1;
  }
  return from_vector(m, {out, in}, TensorOptions(kFloat64)).to(opt.device_, opt.dtype_);
}

// Source index of each output pixel for mode "nearest" (PyTorch's floor(o * in / out)).
inline Tensor nearest_index(int64_t in, int64_t out, std::optional<double> scale, Device dev) {
  std::vector<int64_t> idx(static_cast<size_t>(out));
  const double r = scale ? 1.0 / *scale : static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o)
    idx[static_cast<size_t>(o)] = std::min<int64_t>(static_cast<int64_t>(std::floor(static_cast<double>(o) * r)), in - 1);
  return from_vector(idx, {out}, TensorOptions(kInt64)).to(dev);
}

}  // namespace detail

// Resizes the last two dims of x [N, C, H, W] (or [C, H, W]) to size, or by scale_factor, as
// torch.nn.functional.interpolate with mode "nearest" or "bilinear" (align_corners as there).
// Composites (index_select; two small matmuls), so gradients and double backward come free.
struct InterpolateOptions {
  std::optional<Pair2d> size;
  std::optional<std::pair<double, double>> scale_factor;
  std::string mode = "nearest";
  bool align_corners = false;
};

inline Tensor interpolate(const Tensor& x, const InterpolateOptions& o) {
  detail::check_defined(x, "interpolate");
  // PyTorch's upsample_* ops: float32 under CUDA autocast, in the input's dtype on the CPU
  if (auto ac = o.mode == "bilinear" ? NABLA_AUTOCAST(upsample_bilinear2d, x) : NABLA_AUTOCAST(upsample_nearest2d, x))
    return interpolate(ac[0], o);
  NABLA_NO_AUTOCAST();
  NABLA_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, "interpolate: expected a 3-D or 4-D input, got ",
              detail::describe(x));
  NABLA_CHECK(x.is_floating_point(), DTypeError, "interpolate: expected a floating-point input, got ", detail::describe(x));
  NABLA_CHECK(o.size.has_value() != o.scale_factor.has_value(), ValueError,
              "interpolate: give exactly one of size and scale_factor");
  NABLA_CHECK(o.mode == "nearest" || o.mode == "bilinear", ValueError, "interpolate: mode must be \"nearest\" or "
              "\"bilinear\", got \"", o.mode, "\"");
  NABLA_CHECK(!o.align_corners || o.mode == "bilinear", ValueError,
              "interpolate: align_corners only applies to mode \"bilinear\"");
  const int64_t H = x.size(-2), W = x.size(-1);
  std::optional<double> sh, sw;
  int64_t Ho, Wo;
  if (o.size) {
    Ho = o.size->h, Wo = o.size->w;
  } else {
    sh = o.scale_factor->first, sw = o.scale_factor->second;
    NABLA_CHECK(*sh > 0 && *sw > 0, ValueError, "interpolate: scale_factor must be positive");
    Ho = static_cast<int64_t>(std::floor(static_cast<double>(H) * *sh));
    Wo = static_cast<int64_t>(std::floor(static_cast<double>(W) * *sw));
  }
  NABLA_CHECK(Ho > 0 && Wo > 0 && H > 0 && W > 0, ValueError, "interpolate: input ", detail::describe(x),
              " and output size ", Ho, "x", Wo, " must be non-empty");
  if (o.mode == "nearest")
    return x.index_select(-2, detail::nearest_index(H, Ho, sh, x.device()))
        .index_select(-1, detail::nearest_index(W, Wo, sw, x.device()));
  Tensor ah = detail::linear_matrix(H, Ho, o.align_corners ? std::nullopt : sh, o.align_corners, x.options());
  Tensor aw = detail::linear_matrix(W, Wo, o.align_corners ? std::nullopt : sw, o.align_corners, x.options());
  return matmul(matmul(ah, x), aw.t());
}

inline Tensor interpolate(const Tensor& x, Pair2d size, const std::string& mode = "nearest", bool align_corners = false) {
  InterpolateOptions o;
  o.size = size, o.mode = mode, o.align_corners = align_corners;
  return interpolate(x, o);
}

}  // namespace nabla
