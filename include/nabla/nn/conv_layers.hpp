#pragma once
// Convolution layers: Conv2d ConvTranspose2d BatchNorm2d MaxPool2d AvgPool2d AdaptiveAvgPool2d,
// over the ops of ops/conv.hpp, pool.hpp and norm.hpp, with PyTorch's initialisation and
// state_dict names, and LibTorch's options (Conv2dOptions, ConvTranspose2dOptions).

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "../ops/conv.hpp"
#include "../ops/norm.hpp"
#include "../ops/pool.hpp"
#include "layers.hpp"
#include "options.hpp"

namespace nabla {
namespace nn {

namespace functional {
using nabla::adaptive_avg_pool2d;
using nabla::avg_pool2d;
using nabla::batch_norm;
using nabla::conv2d;
using nabla::conv_transpose2d;
using nabla::im2col;
using nabla::interpolate;
using nabla::max_pool2d;
using nabla::max_pool2d_with_indices;
using nabla::pad;
}  // namespace functional

namespace detail {
inline std::string pair_str(Pair2d p) { return nabla::detail::cat("(", p.h, ", ", p.w, ")"); }
}  // namespace detail

// LibTorch's torch::nn::Conv2dOptions(in, out, kernel).stride(..).padding(..).bias(false)...
struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, Pair2d kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  NABLA_ARG(int64_t, in_channels);
  NABLA_ARG(int64_t, out_channels);
  NABLA_ARG(Pair2d, kernel_size);
  NABLA_ARG(Pair2d, stride) = 1;
  NABLA_ARG(Padding2d, padding) = 0;
  NABLA_ARG(Pair2d, dilation) = 1;
  NABLA_ARG(int64_t, groups) = 1;
  NABLA_ARG(bool, bias) = true;
};

// LibTorch's torch::nn::ConvTranspose2dOptions(in, out, kernel).stride(..).output_padding(..)...
struct ConvTranspose2dOptions {
  ConvTranspose2dOptions(int64_t in_channels, int64_t out_channels, Pair2d kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  NABLA_ARG(int64_t, in_channels);
  NABLA_ARG(int64_t, out_channels);
  NABLA_ARG(Pair2d, kernel_size);
  NABLA_ARG(Pair2d, stride) = 1;
  NABLA_ARG(Pair2d, padding) = 0;
  NABLA_ARG(Pair2d, output_padding) = 0;
  NABLA_ARG(int64_t, groups) = 1;
  NABLA_ARG(bool, bias) = true;
  NABLA_ARG(Pair2d, dilation) = 1;
};

// weight [out, in / groups, kh, kw], bias [out].
class Conv2d : public Module {
 public:
  NABLA_MODULE_ARROW(Conv2d)
  Tensor weight, bias;
  int64_t in_channels = 0, out_channels = 0, groups = 0;
  Pair2d kernel_size, stride, dilation;
  Padding2d padding;

  Conv2d(int64_t in, int64_t out, Pair2d kernel, Pair2d stride_ = 1, Padding2d padding_ = 0, Pair2d dilation_ = 1,
         int64_t groups_ = 1, bool with_bias = true, TensorOptions options = {})
      : in_channels(in), out_channels(out), groups(groups_), kernel_size(kernel), stride(stride_), dilation(dilation_),
        padding(std::move(padding_)) {
    NABLA_CHECK(in > 0 && out > 0 && groups > 0 && in % groups == 0 && out % groups == 0, ValueError,
                "nn::Conv2d: channels (", in, ", ", out, ") must be positive and divisible by groups=", groups);
    weight = register_parameter("weight", empty({out, in / groups, kernel.h, kernel.w}, options.requires_grad(false)));
    if (with_bias) bias = register_parameter("bias", empty({out}, options.requires_grad(false)));
    bind_slot("weight", weight);
    bind_slot("bias", bias);
    reset_parameters();
  }
  explicit Conv2d(const Conv2dOptions& o, TensorOptions options = {})
      : Conv2d(o.in_channels(), o.out_channels(), o.kernel_size(), o.stride(), o.padding(), o.dilation(), o.groups(),
               o.bias(), options) {}
  // PyTorch: kaiming_uniform_(a = sqrt(5)) -> U(+-1/sqrt(fan_in)); bias U(+-1/sqrt(fan_in)).
  void reset_parameters() {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double fan_in = static_cast<double>(in_channels / groups * kernel_size.h * kernel_size.w);
      init::uniform_(bias, -1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in));
    }
  }
  Tensor forward(const Tensor& x) override {
    run_forward_pre_hooks();
    if (auto y = intercepted(x)) return *y;
    return conv2d(x, weight, bias, stride, padding, dilation, groups);
  }
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override {
    std::string s = nabla::detail::cat(in_channels, ", ", out_channels, ", kernel_size=", detail::pair_str(kernel_size),
                                       ", stride=", detail::pair_str(stride));
    if (!padding.mode.empty()) s += ", padding=" + padding.mode;
    else if (padding.h || padding.w) s += ", padding=" + detail::pair_str({padding.h, padding.w});
    if (dilation.h != 1 || dilation.w != 1) s += ", dilation=" + detail::pair_str(dilation);
    if (groups != 1) s += nabla::detail::cat(", groups=", groups);
    if (!bias.defined()) s += ", bias=False";
    return s;
  }
};

// The transposed convolution (PyTorch's nn.ConvTranspose2d, its positional order): weight
// [in, out / groups, kh, kw], bias [out]. forward(x, output_size) picks the output_padding that
// gives that size, as PyTorch does.
class ConvTranspose2d : public Module {
 public:
  NABLA_MODULE_ARROW(ConvTranspose2d)
  Tensor weight, bias;
  int64_t in_channels = 0, out_channels = 0, groups = 0;
  Pair2d kernel_size, stride, padding, output_padding, dilation;

  ConvTranspose2d(int64_t in, int64_t out, Pair2d kernel, Pair2d stride_ = 1, Pair2d padding_ = 0,
                  Pair2d output_padding_ = 0, int64_t groups_ = 1, bool with_bias = true, Pair2d dilation_ = 1,
                  TensorOptions options = {})
      : in_channels(in), out_channels(out), groups(groups_), kernel_size(kernel), stride(stride_), padding(padding_),
        output_padding(output_padding_), dilation(dilation_) {
    NABLA_CHECK(in > 0 && out > 0 && groups > 0 && in % groups == 0 && out % groups == 0, ValueError,
                "nn::ConvTranspose2d: channels (", in, ", ", out, ") must be positive and divisible by groups=", groups);
    weight = register_parameter("weight", empty({in, out / groups, kernel.h, kernel.w}, options.requires_grad(false)));
    if (with_bias) bias = register_parameter("bias", empty({out}, options.requires_grad(false)));
    bind_slot("weight", weight);
    bind_slot("bias", bias);
    reset_parameters();
  }
  explicit ConvTranspose2d(const ConvTranspose2dOptions& o, TensorOptions options = {})
      : ConvTranspose2d(o.in_channels(), o.out_channels(), o.kernel_size(), o.stride(), o.padding(), o.output_padding(),
                        o.groups(), o.bias(), o.dilation(), options) {}
  // PyTorch's _ConvNd init: kaiming_uniform_(a = sqrt(5)) with fan_in = weight.size(1) * kh * kw
  // (out / groups * kh * kw for a transposed weight), bias U(+-1/sqrt(that fan_in)).
  void reset_parameters() {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double fan_in = static_cast<double>(out_channels / groups * kernel_size.h * kernel_size.w);
      init::uniform_(bias, -1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in));
    }
  }
  Tensor forward(const Tensor& x) override {
    run_forward_pre_hooks();
    return conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation);
  }
  // output_size: {H, W} or the full {N, C, H, W}; must be reachable with an output_padding below
  // the stride (or dilation).
  Tensor forward(const Tensor& x, const std::vector<int64_t>& output_size) {
    NABLA_CHECK(x.dim() == 4, ShapeError, "nn::ConvTranspose2d: expected a 4-D input, got ", nabla::detail::describe(x));
    run_forward_pre_hooks();
    NABLA_CHECK(output_size.size() == 2 || output_size.size() == 4, ValueError,
                "nn::ConvTranspose2d: output_size must be {H, W} or {N, C, H, W}, got ", output_size.size(), " values");
    const int64_t oh = output_size[output_size.size() - 2], ow = output_size.back();
    const int64_t min_h = (x.size(2) - 1) * stride.h - 2 * padding.h + dilation.h * (kernel_size.h - 1) + 1;
    const int64_t min_w = (x.size(3) - 1) * stride.w - 2 * padding.w + dilation.w * (kernel_size.w - 1) + 1;
    NABLA_CHECK(oh >= min_h && ow >= min_w, ValueError, "nn::ConvTranspose2d: output_size ", oh, "x", ow,
                " is below the smallest this input gives, ", min_h, "x", min_w);
    return conv_transpose2d(x, weight, bias, stride, padding, Pair2d(oh - min_h, ow - min_w), groups, dilation);
  }
  std::string type_name() const override { return "ConvTranspose2d"; }
  std::string extra_repr() const override {
    std::string s = nabla::detail::cat(in_channels, ", ", out_channels, ", kernel_size=", detail::pair_str(kernel_size),
                                       ", stride=", detail::pair_str(stride));
    if (padding.h || padding.w) s += ", padding=" + detail::pair_str(padding);
    if (dilation.h != 1 || dilation.w != 1) s += ", dilation=" + detail::pair_str(dilation);
    if (output_padding.h || output_padding.w) s += ", output_padding=" + detail::pair_str(output_padding);
    if (groups != 1) s += nabla::detail::cat(", groups=", groups);
    if (!bias.defined()) s += ", bias=False";
    return s;
  }
};

// LibTorch's torch::nn::BatchNorm2dOptions(features).eps(..).momentum(..).affine(..).track_running_stats(..).
struct BatchNorm2dOptions {
  BatchNorm2dOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT: as LibTorch's
  NABLA_ARG(int64_t, num_features);
  NABLA_ARG(double, eps) = 1e-5;
  NABLA_ARG(double, momentum) = 0.1;
  NABLA_ARG(bool, affine) = true;
  NABLA_ARG(bool, track_running_stats) = true;
};

// Per-channel normalisation with learned affine (weight 1, bias 0) and running statistics
// (running_mean 0, running_var 1, num_batches_tracked int64), PyTorch's names. Without
// track_running_stats there are no running buffers and batch statistics are used in eval too.
class BatchNorm2d : public Module {
 public:
  NABLA_MODULE_ARROW(BatchNorm2d)
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  int64_t num_features = 0;
  double eps = 0, momentum = 0;

  explicit BatchNorm2d(int64_t features, double eps_ = 1e-5, double momentum_ = 0.1, bool affine = true,
                       TensorOptions options = {}, bool track_running_stats = true)
      : num_features(features), eps(eps_), momentum(momentum_) {
    if (affine) {
      weight = register_parameter("weight", ones({features}, options.requires_grad(false)));
      bias = register_parameter("bias", zeros({features}, options.requires_grad(false)));
    }
    if (track_running_stats) {
      running_mean = register_buffer("running_mean", zeros({features}, options.requires_grad(false)));
      running_var = register_buffer("running_var", ones({features}, options.requires_grad(false)));
      num_batches_tracked =
          register_buffer("num_batches_tracked", zeros({}, TensorOptions(kInt64).device(options.device_)));
    }
  }
  explicit BatchNorm2d(const BatchNorm2dOptions& o, TensorOptions options = {})
      : BatchNorm2d(o.num_features(), o.eps(), o.momentum(), o.affine(), options, o.track_running_stats()) {}
  Tensor forward(const Tensor& x) override {
    NABLA_CHECK(x.dim() == 4, ShapeError, "nn::BatchNorm2d: expected a 4-D input, got ", nabla::detail::describe(x));
    const bool tracking = running_mean.defined();
    if (is_training() && tracking && !autograd::checkpoint_recomputing()) {  // once per batch, not again in a rerun
      NoGradGuard no_grad;
      num_batches_tracked.add_(1);
    }
    return nabla::batch_norm(x, weight, bias, running_mean, running_var, is_training() || !tracking, momentum, eps,
                             false);
  }
  std::string type_name() const override { return "BatchNorm2d"; }
  std::string extra_repr() const override {
    return nabla::detail::cat(num_features, ", eps=", eps, ", momentum=", momentum, ", affine=",
                              detail::py_bool(weight.defined()),
                              ", track_running_stats=", detail::py_bool(running_mean.defined()));
  }
};

class MaxPool2d : public Module {
 public:
  NABLA_MODULE_ARROW(MaxPool2d)
  Pair2d kernel_size, stride, padding, dilation;
  bool ceil_mode = false;
  explicit MaxPool2d(Pair2d kernel, std::optional<Pair2d> stride_ = std::nullopt, Pair2d padding_ = 0, Pair2d dilation_ = 1,
                     bool ceil_mode_ = false)
      : kernel_size(kernel), stride(stride_.value_or(kernel)), padding(padding_), dilation(dilation_),
        ceil_mode(ceil_mode_) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode); }
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override {
    return "kernel_size=" + detail::pair_str(kernel_size) + ", stride=" + detail::pair_str(stride) +
           ", padding=" + detail::pair_str(padding) + ", dilation=" + detail::pair_str(dilation) +
           ", ceil_mode=" + detail::py_bool(ceil_mode);
  }
};

class AvgPool2d : public Module {
 public:
  NABLA_MODULE_ARROW(AvgPool2d)
  Pair2d kernel_size, stride, padding;
  bool ceil_mode = false, count_include_pad = false;
  explicit AvgPool2d(Pair2d kernel, std::optional<Pair2d> stride_ = std::nullopt, Pair2d padding_ = 0,
                     bool ceil_mode_ = false, bool count_include_pad_ = true)
      : kernel_size(kernel), stride(stride_.value_or(kernel)), padding(padding_), ceil_mode(ceil_mode_),
        count_include_pad(count_include_pad_) {}
  Tensor forward(const Tensor& x) override {
    return avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad);
  }
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override {
    return "kernel_size=" + detail::pair_str(kernel_size) + ", stride=" + detail::pair_str(stride) +
           ", padding=" + detail::pair_str(padding) + ", ceil_mode=" + detail::py_bool(ceil_mode) +
           ", count_include_pad=" + detail::py_bool(count_include_pad);
  }
};

class AdaptiveAvgPool2d : public Module {
 public:
  NABLA_MODULE_ARROW(AdaptiveAvgPool2d)
  Pair2d output_size;
  explicit AdaptiveAvgPool2d(Pair2d out) : output_size(out) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, output_size); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override { return "output_size=" + detail::pair_str(output_size); }
};

}  // namespace nn
}  // namespace nabla
