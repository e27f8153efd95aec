#pragma once
// LibTorch's functional options: F::conv2d(x, w, F::Conv2dFuncOptions().stride(2).padding(1)),
// F::max_pool2d(x, F::MaxPool2dFuncOptions(2)), F::dropout(x, F::DropoutFuncOptions().p(0.2)
// .training(is_training())), F::nll_loss(x, t, F::NLLLossFuncOptions().reduction(torch::kSum)), ...
// with `namespace F = torch::nn::functional;`. Each options overload sits beside nabla's
// positional form, which stays (F::conv2d(x, w, b, stride, padding) and F::max_pool2d(x, 2) mean
// what nabla::conv2d / nabla::max_pool2d mean). Where LibTorch's FuncOptions is its module's
// options (the losses, LeakyReLU), the name is an alias here too.

#include <optional>
#include <string>
#include <vector>

#include "conv_layers.hpp"
#include "functional.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "options.hpp"

namespace nabla {
namespace nn {
namespace functional {

// The activations' positional forms (the losses' and the convolutions' come from loss.hpp and
// conv_layers.hpp).
using nabla::gelu;
using nabla::leaky_relu;
using nabla::log_softmax;
using nabla::relu;
using nabla::sigmoid;
using nabla::softmax;
using nabla::tanh;

// ---- convolution and pooling ------------------------------------------------------------------
struct Conv2dFuncOptions {
  NABLA_ARG(Tensor, bias);
  NABLA_ARG(Pair2d, stride) = 1;
  NABLA_ARG(Padding2d, padding) = 0;
  NABLA_ARG(Pair2d, dilation) = 1;
  NABLA_ARG(int64_t, groups) = 1;
};
inline Tensor conv2d(const Tensor& input, const Tensor& weight, const Conv2dFuncOptions& o) {
  return nabla::conv2d(input, weight, o.bias(), o.stride(), o.padding(), o.dilation(), o.groups());
}

struct ConvTranspose2dFuncOptions {
  NABLA_ARG(Tensor, bias);
  NABLA_ARG(Pair2d, stride) = 1;
  NABLA_ARG(Pair2d, padding) = 0;
  NABLA_ARG(Pair2d, output_padding) = 0;
  NABLA_ARG(int64_t, groups) = 1;
  NABLA_ARG(Pair2d, dilation) = 1;
};
inline Tensor conv_transpose2d(const Tensor& input, const Tensor& weight, const ConvTranspose2dFuncOptions& o) {
  return nabla::conv_transpose2d(input, weight, o.bias(), o.stride(), o.padding(), o.output_padding(), o.groups(),
                                 o.dilation());
}

// Explicit, so that F::max_pool2d(x, 2) stays the positional call (the same meaning).
struct MaxPool2dFuncOptions {
  explicit MaxPool2dFuncOptions(Pair2d kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}
  NABLA_ARG(Pair2d, kernel_size);
  NABLA_ARG(Pair2d, stride);  // the kernel size unless set, as LibTorch's
  NABLA_ARG(Pair2d, padding) = 0;
  NABLA_ARG(Pair2d, dilation) = 1;
  NABLA_ARG(bool, ceil_mode) = false;
};
inline Tensor max_pool2d(const Tensor& input, const MaxPool2dFuncOptions& o) {
  return nabla::max_pool2d(input, o.kernel_size(), o.stride(), o.padding(), o.dilation(), o.ceil_mode());
}

struct AvgPool2dFuncOptions {
  explicit AvgPool2dFuncOptions(Pair2d kernel_size) : kernel_size_(kernel_size), stride_(kernel_size) {}
  NABLA_ARG(Pair2d, kernel_size);
  NABLA_ARG(Pair2d, stride);
  NABLA_ARG(Pair2d, padding) = 0;
  NABLA_ARG(bool, ceil_mode) = false;
  NABLA_ARG(bool, count_include_pad) = true;
};
inline Tensor avg_pool2d(const Tensor& input, const AvgPool2dFuncOptions& o) {
  return nabla::avg_pool2d(input, o.kernel_size(), o.stride(), o.padding(), o.ceil_mode(), o.count_include_pad());
}

struct AdaptiveAvgPool2dFuncOptions {
  explicit AdaptiveAvgPool2dFuncOptions(Pair2d output_size) : output_size_(output_size) {}
  NABLA_ARG(Pair2d, output_size);
};
inline Tensor adaptive_avg_pool2d(const Tensor& input, const AdaptiveAvgPool2dFuncOptions& o) {
  return nabla::adaptive_avg_pool2d(input, o.output_size());
}

// ---- normalisation ----------------------------------------------------------------------------
struct BatchNormFuncOptions {
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(Tensor, bias);
  NABLA_ARG(bool, training) = false;
  NABLA_ARG(double, momentum) = 0.1;
  NABLA_ARG(double, eps) = 1e-5;
};
inline Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormFuncOptions& o) {
  return nabla::batch_norm(input, o.weight(), o.bias(), running_mean, running_var, o.training(), o.momentum(), o.eps(),
                           false);
}

struct LayerNormFuncOptions {
  LayerNormFuncOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT
  NABLA_ARG(Shape, normalized_shape);
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(Tensor, bias);
  NABLA_ARG(double, eps) = 1e-5;
};
inline Tensor layer_norm(const Tensor& input, const LayerNormFuncOptions& o) {
  return layer_norm(input, o.normalized_shape(), o.weight(), o.bias(), o.eps());
}

// ---- activations and dropout ------------------------------------------------------------------
struct DropoutFuncOptions {
  NABLA_ARG(double, p) = 0.5;
  NABLA_ARG(bool, training) = true;
  NABLA_ARG(bool, inplace) = false;
};
using Dropout2dFuncOptions = DropoutFuncOptions;
namespace detail {
inline Tensor dropout_result(const Tensor& input, const Tensor& out, bool inplace) {
  if (!inplace) return out;
  NoGradGuard no_grad;
  input.copy_(out);
  return input;
}
}  // namespace detail
inline Tensor dropout(const Tensor& input, const DropoutFuncOptions& o) {
  return detail::dropout_result(input, dropout(input, o.p(), o.training()), o.inplace());
}
inline Tensor dropout2d(const Tensor& input, const Dropout2dFuncOptions& o) {
  return detail::dropout_result(input, dropout2d(input, o.p(), o.training()), o.inplace());
}

// inplace(true) overwrites the input with the result (outside autograd), as LibTorch's.
struct ReLUFuncOptions {
  ReLUFuncOptions(bool inplace = false) : inplace_(inplace) {}  // NOLINT: LibTorch's F::relu(x, true)
  NABLA_ARG(bool, inplace);
};
inline Tensor relu(const Tensor& input, const ReLUFuncOptions& o) {
  return detail::dropout_result(input, nabla::relu(input), o.inplace());
}
using LeakyReLUFuncOptions = LeakyReLUOptions;
inline Tensor leaky_relu(const Tensor& input, const LeakyReLUFuncOptions& o) {
  return nabla::leaky_relu(input, o.negative_slope());
}
struct GELUFuncOptions {
  NABLA_ARG(std::string, approximate) = "none";
};
inline Tensor gelu(const Tensor& input, const GELUFuncOptions& o) { return nabla::gelu(input, o.approximate()); }

struct SoftmaxFuncOptions {
  explicit SoftmaxFuncOptions(int64_t dim) : dim_(dim) {}
  NABLA_ARG(int64_t, dim);
};
using LogSoftmaxFuncOptions = SoftmaxFuncOptions;
inline Tensor softmax(const Tensor& input, const SoftmaxFuncOptions& o) { return nabla::softmax(input, o.dim()); }
inline Tensor log_softmax(const Tensor& input, const LogSoftmaxFuncOptions& o) {
  return nabla::log_softmax(input, o.dim());
}

// ---- embedding --------------------------------------------------------------------------------
// F::embedding(input, weight, F::EmbeddingFuncOptions().padding_idx(0)). Of LibTorch's options only
// padding_idx exists (no max_norm, scale_grad_by_freq or sparse).
struct EmbeddingFuncOptions {
  NABLA_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};
inline Tensor embedding(const Tensor& input, const Tensor& weight, const EmbeddingFuncOptions& o) {
  return embedding(input, weight, o.padding_idx());
}

// ---- losses -----------------------------------------------------------------------------------
using MSELossFuncOptions = MSELossOptions;
using L1LossFuncOptions = L1LossOptions;
using SmoothL1LossFuncOptions = SmoothL1LossOptions;
using HuberLossFuncOptions = HuberLossOptions;
using BinaryCrossEntropyFuncOptions = BCELossOptions;
using BinaryCrossEntropyWithLogitsFuncOptions = BCEWithLogitsLossOptions;
using NLLLossFuncOptions = NLLLossOptions;
using CrossEntropyFuncOptions = CrossEntropyLossOptions;

inline Tensor mse_loss(const Tensor& input, const Tensor& target, const MSELossFuncOptions& o) {
  return nabla::mse_loss(input, target, o.reduction());
}
inline Tensor l1_loss(const Tensor& input, const Tensor& target, const L1LossFuncOptions& o) {
  return nabla::l1_loss(input, target, o.reduction());
}
inline Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, const SmoothL1LossFuncOptions& o) {
  return nabla::smooth_l1_loss(input, target, o.reduction(), o.beta());
}
inline Tensor huber_loss(const Tensor& input, const Tensor& target, const HuberLossFuncOptions& o) {
  return nabla::huber_loss(input, target, o.reduction(), o.delta());
}
inline Tensor binary_cross_entropy(const Tensor& input, const Tensor& target, const BinaryCrossEntropyFuncOptions& o) {
  return nabla::binary_cross_entropy(input, target, o.weight(), o.reduction());
}
inline Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                               const BinaryCrossEntropyWithLogitsFuncOptions& o) {
  return nabla::binary_cross_entropy_with_logits(input, target, o.weight(), o.pos_weight(), o.reduction());
}
inline Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossFuncOptions& o) {
  return nabla::nll_loss(input, target, NllLossOptions{o.weight(), o.reduction(), o.ignore_index()});
}
inline Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyFuncOptions& o) {
  return nabla::cross_entropy(input, target,
                              CrossEntropyOptions{o.weight(), o.reduction(), o.ignore_index(), o.label_smoothing()});
}

}  // namespace functional
}  // namespace nn
}  // namespace nabla
