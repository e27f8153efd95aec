#pragma once
// Loss modules, as PyTorch's nn.*Loss and LibTorch's torch::nn::*Loss: MSELoss L1Loss SmoothL1Loss
// HuberLoss BCELoss BCEWithLogitsLoss NLLLoss CrossEntropyLoss. Each holds its options
// (LibTorch's XOptions, chainable: `nn::CrossEntropyLoss(nn::CrossEntropyLossOptions()
// .label_smoothing(0.1))`), registers a given class weight / pos_weight as a buffer named as
// PyTorch names it, and computes `forward(input, target)` with the functional loss of
// ops/loss.hpp.

#include <string>

#include "../ops/loss.hpp"
#include "module.hpp"
#include "options.hpp"

namespace nabla {
namespace nn {

namespace functional {
using nabla::binary_cross_entropy;
using nabla::binary_cross_entropy_with_logits;
using nabla::cross_entropy;
using nabla::huber_loss;
using nabla::l1_loss;
using nabla::mse_loss;
using nabla::nll_loss;
using nabla::smooth_l1_loss;
}  // namespace functional

namespace detail {
using nabla::detail::reduction_name;

// The shared shape of a loss module: options, an optional buffer, forward(input, target).
class LossModule : public Module {
 public:
  NABLA_MODULE_ARROW(LossModule)
  LossModule() = default;
  using Module::forward;
  using Module::operator();
  virtual Tensor forward(const Tensor& input, const Tensor& target) = 0;
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
};
}  // namespace detail

struct MSELossOptions {
  MSELossOptions(Reduction reduction = kMean) : reduction_(reduction) {}  // NOLINT: LibTorch converts too
  NABLA_ARG(Reduction, reduction);
};
struct L1LossOptions {
  L1LossOptions(Reduction reduction = kMean) : reduction_(reduction) {}  // NOLINT
  NABLA_ARG(Reduction, reduction);
};
struct SmoothL1LossOptions {
  SmoothL1LossOptions(Reduction reduction = kMean) : reduction_(reduction) {}  // NOLINT
  NABLA_ARG(Reduction, reduction);
  NABLA_ARG(double, beta) = 1.0;
};
struct HuberLossOptions {
  HuberLossOptions(Reduction reduction = kMean) : reduction_(reduction) {}  // NOLINT
  NABLA_ARG(Reduction, reduction);
  NABLA_ARG(double, delta) = 1.0;
};
struct BCELossOptions {
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(Reduction, reduction) = kMean;
};
struct BCEWithLogitsLossOptions {
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(Reduction, reduction) = kMean;
  NABLA_ARG(Tensor, pos_weight);
};
struct NLLLossOptions {
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(int64_t, ignore_index) = -100;
  NABLA_ARG(Reduction, reduction) = kMean;
};
struct CrossEntropyLossOptions {
  NABLA_ARG(Tensor, weight);
  NABLA_ARG(int64_t, ignore_index) = -100;
  NABLA_ARG(Reduction, reduction) = kMean;
  NABLA_ARG(double, label_smoothing) = 0.0;
};

// (input - target)^2
class MSELoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(MSELoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  MSELossOptions options;
  explicit MSELoss(MSELossOptions o = {}) : options(std::move(o)) {}
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return mse_loss(input, target, options.reduction());
  }
  std::string type_name() const override { return "MSELoss"; }
  std::string extra_repr() const override { return std::string("reduction=") + detail::reduction_name(options.reduction()); }
};

// |input - target|
class L1Loss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(L1Loss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  L1LossOptions options;
  explicit L1Loss(L1LossOptions o = {}) : options(std::move(o)) {}
  Tensor forward(const Tensor& input, const Tensor& target) override { return l1_loss(input, target, options.reduction()); }
  std::string type_name() const override { return "L1Loss"; }
  std::string extra_repr() const override { return std::string("reduction=") + detail::reduction_name(options.reduction()); }
};

class SmoothL1Loss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(SmoothL1Loss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  SmoothL1LossOptions options;
  explicit SmoothL1Loss(SmoothL1LossOptions o = {}) : options(std::move(o)) {}
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return smooth_l1_loss(input, target, options.reduction(), options.beta());
  }
  std::string type_name() const override { return "SmoothL1Loss"; }
};

class HuberLoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(HuberLoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  HuberLossOptions options;
  explicit HuberLoss(HuberLossOptions o = {}) : options(std::move(o)) {}
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return huber_loss(input, target, options.reduction(), options.delta());
  }
  std::string type_name() const override { return "HuberLoss"; }
};

// -w (t log p + (1 - t) log(1 - p)) on probabilities; weight is the buffer "weight".
class BCELoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(BCELoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  BCELossOptions options;
  explicit BCELoss(BCELossOptions o = {}) : options(std::move(o)) {
    if (options.weight().defined()) options.weight() = register_buffer("weight", options.weight());
  }
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return binary_cross_entropy(input, target, options.weight(), options.reduction());
  }
  std::string type_name() const override { return "BCELoss"; }
};

// binary_cross_entropy_with_logits; buffers "weight" and "pos_weight" when given.
class BCEWithLogitsLoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(BCEWithLogitsLoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  BCEWithLogitsLossOptions options;
  explicit BCEWithLogitsLoss(BCEWithLogitsLossOptions o = {}) : options(std::move(o)) {
    if (options.weight().defined()) options.weight() = register_buffer("weight", options.weight());
    if (options.pos_weight().defined()) options.pos_weight() = register_buffer("pos_weight", options.pos_weight());
  }
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return binary_cross_entropy_with_logits(input, target, options.weight(), options.pos_weight(), options.reduction());
  }
  std::string type_name() const override { return "BCEWithLogitsLoss"; }
};

class NLLLoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(NLLLoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  NLLLossOptions options;
  explicit NLLLoss(NLLLossOptions o = {}) : options(std::move(o)) {
    if (options.weight().defined()) options.weight() = register_buffer("weight", options.weight());
  }
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return nll_loss(input, target, NllLossOptions{options.weight(), options.reduction(), options.ignore_index()});
  }
  std::string type_name() const override { return "NLLLoss"; }
};

class CrossEntropyLoss : public detail::LossModule {
 public:
  NABLA_MODULE_ARROW(CrossEntropyLoss)
  using detail::LossModule::forward;  // forward(input) stays visible (and not hidden)
  CrossEntropyLossOptions options;
  explicit CrossEntropyLoss(CrossEntropyLossOptions o = {}) : options(std::move(o)) {
    if (options.weight().defined()) options.weight() = register_buffer("weight", options.weight());
  }
  Tensor forward(const Tensor& input, const Tensor& target) override {
    return cross_entropy(input, target,
                         CrossEntropyOptions{options.weight(), options.reduction(), options.ignore_index(),
                                             options.label_smoothing()});
  }
  std::string type_name() const override { return "CrossEntropyLoss"; }
};

}  // namespace nn
}  // namespace nabla
