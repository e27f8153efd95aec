#pragma once
// Layers: Linear Embedding LayerNorm Dropout Dropout2d ReLU LeakyReLU GELU Tanh Sigmoid Flatten
// Identity, each a Module over the functions of functional.hpp, initialised as PyTorch
// initialises them, with LibTorch's options where it has them (LinearOptions, DropoutOptions,
// LeakyReLUOptions, EmbeddingOptions).
// New layers (Conv2d, BatchNorm2d, pools) follow the same pattern: register parameters and
// buffers in the constructor, reset_parameters() with PyTorch's init, forward via functional.

#include <cmath>
#include <functional>
#include <optional>
#include <string>

#include "functional.hpp"
#include "init.hpp"
#include "module.hpp"
#include "options.hpp"

namespace nabla {
namespace nn {

namespace detail {
inline const char* py_bool(bool b) { return b ? "True" : "False"; }
}  // namespace detail

// LibTorch's torch::nn::LinearOptions(in, out).bias(false).
struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features) : in_features_(in_features), out_features_(out_features) {}
  NABLA_ARG(int64_t, in_features);
  NABLA_ARG(int64_t, out_features);
  NABLA_ARG(bool, bias) = true;
};
struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT: LibTorch converts a double too
  NABLA_ARG(double, p);
};
struct LeakyReLUOptions {
  NABLA_ARG(double, negative_slope) = 0.01;
};

// y = x @ weight^T + bias; weight [out_features, in_features].
class Linear : public Module {
 public:
  NABLA_MODULE_ARROW(Linear)
  Tensor weight, bias;
  int64_t in_features = 0, out_features = 0;

  Linear(int64_t in, int64_t out, bool with_bias = true, TensorOptions options = {}) : in_features(in), out_features(out) {
    NABLA_CHECK(in >= 0 && out >= 0, ValueError, "nn::Linear: feature counts must be non-negative, got ", in, " and ", out);
    weight = register_parameter("weight", empty({out, in}, options.requires_grad(false)));
    if (with_bias) bias = register_parameter("bias", empty({out}, options.requires_grad(false)));
    bind_slot("weight", weight);
    bind_slot("bias", bias);
    reset_parameters();
  }
  explicit Linear(const LinearOptions& o, TensorOptions options = {})
      : Linear(o.in_features(), o.out_features(), o.bias(), options) {}
  // PyTorch: kaiming_uniform_(a = sqrt(5)) for weight, i.e. U(-1/sqrt(in), 1/sqrt(in)), and the
  // same bound for bias.
  void reset_parameters() {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      double bound = in_features > 0 ? 1.0 / std::sqrt(static_cast<double>(in_features)) : 0.0;
      init::uniform_(bias, -bound, bound);
    }
  }
  Tensor forward(const Tensor& x) override {
    run_forward_pre_hooks();
    if (auto y = intercepted(x)) return *y;
    return functional::linear(x, weight, bias);
  }
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override {
    return nabla::detail::cat("in_features=", in_features, ", out_features=", out_features,
                              ", bias=", detail::py_bool(bias.defined()));
  }
};

// LibTorch's torch::nn::EmbeddingOptions(num_embeddings, embedding_dim).padding_idx(i).
struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  NABLA_ARG(int64_t, num_embeddings);
  NABLA_ARG(int64_t, embedding_dim);
  NABLA_ARG(std::optional<int64_t>, padding_idx) = std::nullopt;
};

// A lookup table: forward(indices) -> indices.shape + [embedding_dim]. weight ~ N(0, 1). With a
// padding_idx (negative counts from the end), that row starts at zero and gets no gradient.
class Embedding : public Module {
 public:
  NABLA_MODULE_ARROW(Embedding)
  Tensor weight;
  int64_t num_embeddings = 0, embedding_dim = 0;
  std::optional<int64_t> padding_idx;

  Embedding(int64_t num, int64_t dim, TensorOptions options = {}) : Embedding(EmbeddingOptions(num, dim), options) {}
  explicit Embedding(const EmbeddingOptions& o, TensorOptions options = {})
      : num_embeddings(o.num_embeddings()), embedding_dim(o.embedding_dim()), padding_idx(o.padding_idx()) {
    NABLA_CHECK(num_embeddings >= 0 && embedding_dim >= 0, ValueError, "nn::Embedding: sizes must be non-negative, got ",
                num_embeddings, " and ", embedding_dim);
    if (padding_idx) {
      NABLA_CHECK(*padding_idx >= -num_embeddings && *padding_idx < num_embeddings, ValueError, "nn::Embedding: padding_idx ",
                  *padding_idx, " must be within num_embeddings (", num_embeddings, ")");
      if (*padding_idx < 0) *padding_idx += num_embeddings;
    }
    weight = register_parameter("weight", empty({num_embeddings, embedding_dim}, options.requires_grad(false)));
    bind_slot("weight", weight);
    reset_parameters();
  }
  void reset_parameters() {
    init::normal_(weight, 0.0, 1.0);
    if (padding_idx) {
      NoGradGuard no_grad;
      weight[*padding_idx].fill_(0);
    }
  }
  Tensor forward(const Tensor& indices) override {
    run_forward_pre_hooks();
    return functional::embedding(indices, weight, padding_idx);
  }
  std::string type_name() const override { return "Embedding"; }
  std::string extra_repr() const override {
    std::string s = nabla::detail::cat(num_embeddings, ", ", embedding_dim);
    if (padding_idx) s += nabla::detail::cat(", padding_idx=", *padding_idx);
    return s;
  }
};

// Normalises over the trailing normalized_shape dims; weight = 1, bias = 0 initially.
class LayerNorm : public Module {
 public:
  NABLA_MODULE_ARROW(LayerNorm)
  Tensor weight, bias;
  Shape normalized_shape;
  double eps = 0;

  explicit LayerNorm(Shape shape, double eps_ = 1e-5, bool elementwise_affine = true, TensorOptions options = {})
      : normalized_shape(std::move(shape)), eps(eps_) {
    if (elementwise_affine) {
      weight = register_parameter("weight", ones(normalized_shape, options.requires_grad(false)));
      bias = register_parameter("bias", zeros(normalized_shape, options.requires_grad(false)));
    }
  }
  explicit LayerNorm(int64_t features, double eps_ = 1e-5, bool elementwise_affine = true, TensorOptions options = {})
      : LayerNorm(Shape{features}, eps_, elementwise_affine, options) {}
  void reset_parameters() {
    if (weight.defined()) init::ones_(weight);
    if (bias.defined()) init::zeros_(bias);
  }
  Tensor forward(const Tensor& x) override { return functional::layer_norm(x, normalized_shape, weight, bias, eps); }
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override {
    std::string s = "(";
    for (size_t i = 0; i < normalized_shape.size(); ++i) s += std::to_string(normalized_shape[i]) + ",";
    if (normalized_shape.size() > 1) s.pop_back();
    return nabla::detail::cat(s, "), eps=", eps, ", elementwise_affine=", detail::py_bool(weight.defined()));
  }
};

// Active in training mode only (module.train() / eval()).
class Dropout : public Module {
 public:
  NABLA_MODULE_ARROW(Dropout)
  double p = 0;
  explicit Dropout(double p_ = 0.5) : p(p_) {
    NABLA_CHECK(p >= 0.0 && p <= 1.0, ValueError, "nn::Dropout: probability must be in [0, 1], got ", p);
  }
  explicit Dropout(const DropoutOptions& o) : Dropout(o.p()) {}
  Tensor forward(const Tensor& x) override { return functional::dropout(x, p, is_training()); }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override { return nabla::detail::cat("p=", p, ", inplace=False"); }
};

// Zeroes whole channels in training (functional::dropout2d).
class Dropout2d : public Module {
 public:
  NABLA_MODULE_ARROW(Dropout2d)
  double p = 0;
  explicit Dropout2d(double p_ = 0.5) : p(p_) {
    NABLA_CHECK(p >= 0.0 && p <= 1.0, ValueError, "nn::Dropout2d: probability must be in [0, 1], got ", p);
  }
  explicit Dropout2d(const DropoutOptions& o) : Dropout2d(o.p()) {}
  Tensor forward(const Tensor& x) override { return functional::dropout2d(x, p, is_training()); }
  std::string type_name() const override { return "Dropout2d"; }
  std::string extra_repr() const override { return nabla::detail::cat("p=", p, ", inplace=False"); }
};

class LeakyReLU : public Module {
 public:
  NABLA_MODULE_ARROW(LeakyReLU)
  double negative_slope = 0;
  explicit LeakyReLU(double slope = 0.01) : negative_slope(slope) {}
  explicit LeakyReLU(const LeakyReLUOptions& o) : negative_slope(o.negative_slope()) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override { return nabla::detail::cat("negative_slope=", negative_slope); }
};

// LibTorch's nn::Functional: a function of the input as a module, with bound trailing
// arguments: nn::Functional(relu), nn::Functional(leaky_relu, 0.2).
class Functional : public Module {
 public:
  NABLA_MODULE_ARROW(Functional)
  template <class F, class... Args>
  explicit Functional(F f, Args... args) : fn_([f, args...](const Tensor& x) { return f(x, args...); }) {}
  Tensor forward(const Tensor& x) override { return fn_(x); }
  std::string type_name() const override { return "Functional"; }

 private:
  std::function<Tensor(const Tensor&)> fn_;
};

class ReLU : public Module {
 public:
  NABLA_MODULE_ARROW(ReLU)
  ReLU() = default;
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class GELU : public Module {
 public:
  NABLA_MODULE_ARROW(GELU)
  std::string approximate;
  explicit GELU(std::string approx = "none") : approximate(std::move(approx)) {}
  Tensor forward(const Tensor& x) override { return gelu(x, approximate); }
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return "approximate='" + approximate + "'"; }
};

class Tanh : public Module {
 public:
  NABLA_MODULE_ARROW(Tanh)
  Tanh() = default;
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string type_name() const override { return "Tanh"; }
};

class Sigmoid : public Module {
 public:
  NABLA_MODULE_ARROW(Sigmoid)
  Sigmoid() = default;
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string type_name() const override { return "Sigmoid"; }
};

class Identity : public Module {
 public:
  NABLA_MODULE_ARROW(Identity)
  Identity() = default;
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

// Flattens dims start_dim..end_dim (default: all but the batch dim, as nn.Flatten).
class Flatten : public Module {
 public:
  NABLA_MODULE_ARROW(Flatten)
  int64_t start_dim = 0, end_dim = 0;
  explicit Flatten(int64_t start = 1, int64_t end = -1) : start_dim(start), end_dim(end) {}
  Tensor forward(const Tensor& x) override { return functional::flatten(x, start_dim, end_dim); }
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override { return nabla::detail::cat("start_dim=", start_dim, ", end_dim=", end_dim); }
};

}  // namespace nn
}  // namespace nabla
