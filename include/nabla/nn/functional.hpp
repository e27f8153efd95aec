#pragma once
// nn::functional: the stateless layer functions that nn modules call -- linear, batch_norm, layer_norm,
// dropout, embedding, flatten. Composites of nabla ops, so gradients (and higher derivatives)
// come from those ops' rules; linear with a bias records one node over a fused GEMM + bias.

#include <cmath>
#include <optional>
#include <vector>

#include "../backend/kernel_table.hpp"
#include "../ops/all.hpp"
#include "../ops/norm.hpp"

namespace nabla {
namespace nn {
namespace functional {

namespace fused {

// Shapes: x [M, K], w [N, K], bias [N], out [M, N], of one dtype, on the table's device; x,
// bias and out contiguous, w with any strides (a kernel that needs it contiguous makes it so).
// Overwrites out with x @ w^T + bias in one GEMM with the bias in its epilogue.
struct LinearKernels {
  bool (*forward)(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias) = nullptr;
};
inline KernelTable<LinearKernels>& linear_kernels() {
  static KernelTable<LinearKernels> table("linear");
  return table;
}

// x @ w^T + b through linear_kernels() (the CPU accumulates onto the bias, cuBLASLt fuses it),
// recording a LinearBackward node whose gradients are nabla ops (so double backward works).
// Undefined when there is no kernel for the case or it declines.
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const DType dt = x.dtype();
  if (weight.dtype() != dt || bias.dtype() != dt || weight.device() != x.device() || bias.device() != x.device() ||
      x.numel() == 0 || weight.numel() == 0)
    return Tensor();
  const LinearKernels* k = linear_kernels().find(x.device(), dt);
  if (!k || !k->forward) return Tensor();
  const int64_t K = weight.size(1), N = weight.size(0), M = x.numel() / K;
  Tensor out = empty({M, N}, x.options().requires_grad(false));
  // the weight goes as it is: a transposed view (GPT-2's Conv1D keeps [in, out]) is read through
  // its strides on the CPU, not copied on every call; kernels that need it contiguous copy it
  if (!k->forward(out, x.detach().reshape({M, K}).contiguous(), weight.detach(), bias.detach().contiguous()))
    return Tensor();
  linear_kernels().count(x.device());
  if (autograd::needs_grad(x, weight, bias))
    autograd::record(x.dim() != 2 ? "LinearBackward0" : bias.defined() ? "AddmmBackward0" : "MmBackward0", out, {x, weight, bias},
                     [xs = autograd::save(x), ws = autograd::save(weight), M, K](const Tensor& g, autograd::NeedsGrad needs) {
                       Tensor xv = xs.unpack();
                       TensorList grads(3);
                       if (needs[0]) grads[0] = matmul(g, ws.unpack()).reshape(xv.sizes());
                       if (needs[1]) grads[1] = matmul(g.t(), xv.reshape({M, K}));
                       if (needs[2]) grads[2] = g.sum({0});
                       return grads;
                     });
  Shape shape(x.sizes().begin(), x.sizes().end() - 1);
  shape.push_back(N);
  return out.reshape(shape);
}
}  // namespace fused

// y = x @ w^T + b, with PyTorch's layout: w is [out_features, in_features], b is [out_features].
// x may have any number of leading dims ([..., in_features] -> [..., out_features]).
inline Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor()) {
  nabla::detail::check_defined(x, "linear");
  nabla::detail::check_defined(weight, "linear");
  if (auto ac = NABLA_AUTOCAST(linear, x, weight, bias)) return linear(ac[0], ac[1], ac[2]);
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = linear(x, weight, bias);
    scope.record("Linear", {x, weight, bias}, {y});
    return y;
  }
  NABLA_CHECK(weight.dim() == 2, ShapeError, "linear: weight must be [out_features, in_features], got ",
              nabla::detail::describe(weight));
  NABLA_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), ShapeError, "linear: input ", nabla::detail::describe(x),
              " has ", x.dim() >= 1 ? x.size(-1) : 0, " features but weight ", nabla::detail::describe(weight), " expects ",
              weight.size(1));
  if (bias.defined()) {
    NABLA_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), ShapeError, "linear: bias ", nabla::detail::describe(bias),
                " must be [", weight.size(0), "] for weight ", nabla::detail::describe(weight));
    Tensor y = fused::linear(x, weight, bias);
    if (y.defined()) return y;
  }
  Tensor y = matmul(x, weight.t());
  return bias.defined() ? y + bias : y;
}

// Batch normalisation in Python's F.batch_norm order (input, running_mean, running_var, weight,
// bias, training, momentum, eps), as torch::nn::functional::batch_norm takes the running
// statistics first. The top-level nabla::batch_norm takes LibTorch's torch::batch_norm order
// (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled).
inline Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                         const Tensor& weight = Tensor(), const Tensor& bias = Tensor(), bool training = false,
                         double momentum = 0.1, double eps = 1e-5) {
  return nabla::batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, false);
}

// Normalises over the trailing dims named by normalized_shape (biased variance, as PyTorch),
// then applies the optional elementwise affine weight and bias (both of normalized_shape).
inline Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                         const Tensor& bias = Tensor(), double eps = 1e-5) {
  nabla::detail::check_defined(x, "layer_norm");
  if (auto ac = NABLA_AUTOCAST(layer_norm, x, weight, bias)) return layer_norm(ac[0], normalized_shape, ac[1], ac[2], eps);
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = layer_norm(x, normalized_shape, weight, bias, eps);
    scope.record("LayerNorm", {x, weight, bias}, {y},
                 {{"axis", -static_cast<int64_t>(normalized_shape.size())}, {"epsilon", eps}});
    return y;
  }
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  NABLA_CHECK(k >= 1 && x.dim() >= k, ShapeError, "layer_norm: normalized_shape ", shape_str(normalized_shape),
              " does not fit input ", nabla::detail::describe(x));
  for (int64_t i = 0; i < k; ++i)
    NABLA_CHECK(x.size(x.dim() - k + i) == normalized_shape[i], ShapeError, "layer_norm: input ", nabla::detail::describe(x),
                " does not end in normalized_shape ", shape_str(normalized_shape));
  for (const Tensor* p : {&weight, &bias})
    NABLA_CHECK(!p->defined() || p->sizes() == normalized_shape, ShapeError, "layer_norm: weight/bias ",
                nabla::detail::describe(*p), " must have shape ", shape_str(normalized_shape));
  if (x.dtype() == kFloat16 || x.dtype() == kBFloat16) {
    // as PyTorch's kernels: computed in float32, the result in the input's dtype, also with
    // float32 weight and bias (the mixed types autocast produces)
    auto f32 = [](const Tensor& t) { return t.defined() ? t.to(kFloat32) : t; };
    return layer_norm(x.to(kFloat32), normalized_shape, f32(weight), f32(bias), eps).to(x.dtype());
  }
  Dims dims;
  for (int64_t i = 0; i < k; ++i) dims.push_back(-1 - i);
  Tensor mu = x.mean(dims, true);
  Tensor xc = x - mu;
  Tensor var = (xc * xc).mean(dims, true);
  Tensor y = xc * (var + eps).rsqrt();
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

// The keep-mask dropout uses: true where a uniform Philox draw is >= p. rand() takes its
// numbers from the default generator, element i from (seed, offset, i) only, so the same
// seed gives the same mask on every device.
inline Tensor dropout_mask(const Shape& shape, double p, Device device = Device::cpu()) {
  NABLA_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: probability must be in [0, 1], got ", p);
  return rand(shape, TensorOptions(kFloat32).device(device)) >= p;
}

// Zeroes each element with probability p and scales the rest by 1 / (1 - p) in training;
// the identity otherwise. The gradient is mask * 1 / (1 - p) (it flows through the product).
inline Tensor dropout(const Tensor& x, double p = 0.5, bool training = true) {
  nabla::detail::check_defined(x, "dropout");
  NABLA_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: probability must be in [0, 1], got ", p);
  NABLA_CHECK(x.is_floating_point(), DTypeError, "dropout: expected a floating-point input, got ", nabla::detail::describe(x));
  if (!training || p == 0.0) return x;
  if (trace::active()) {  // random in training: not exportable (the exporter says so)
    trace::Scope scope;
    Tensor y = dropout(x, p, training);
    scope.record("Dropout", {x}, {y}, {{"p", p}});
    return y;
  }
  if (p == 1.0) return x * 0;
  // The scaled keep-mask (0 or 1 / (1 - p), same elements as dropout_mask) in one pass.
  Tensor mask = nabla::detail::random_tensor(x.sizes(), x.options().requires_grad(false),
                                             RandomParams{RandomKind::Dropout, 0, 0, p, 1.0 / (1.0 - p)}, "dropout");
  return x * mask;
}

// torch.nn.functional.dropout2d: zeroes whole channels, x [N, C, H, W] (or [C, H, W]), each with
// probability p, and scales the kept ones by 1 / (1 - p) in training; the identity otherwise.
inline Tensor dropout2d(const Tensor& x, double p = 0.5, bool training = true) {
  nabla::detail::check_defined(x, "dropout2d");
  NABLA_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout2d: probability must be in [0, 1], got ", p);
  NABLA_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, "dropout2d: expected a 3-D or 4-D input, got ",
              nabla::detail::describe(x));
  NABLA_CHECK(x.is_floating_point(), DTypeError, "dropout2d: expected a floating-point input, got ", nabla::detail::describe(x));
  if (!training || p == 0.0) return x;
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = dropout2d(x, p, training);
    scope.record("Dropout", {x}, {y}, {{"p", p}});
    return y;
  }
  if (p == 1.0) return x * 0;
  Shape channels = x.dim() == 4 ? Shape{x.size(0), x.size(1), 1, 1} : Shape{x.size(0), 1, 1};
  Tensor mask = nabla::detail::random_tensor(channels, x.options().requires_grad(false),
                                             RandomParams{RandomKind::Dropout, 0, 0, p, 1.0 / (1.0 - p)}, "dropout2d");
  return x * mask;
}

// Rows of weight [num_embeddings, dim] picked by integer indices of any shape:
// result indices.shape + [dim]. The gradient (EmbeddingBackward0) is an index_add of the output
// gradient into weight's shape, summing over repeated indices; with a padding_idx (negative counts
// from the end, as in PyTorch) that row gets no gradient, whatever its value.
inline Tensor embedding(const Tensor& indices, const Tensor& weight, std::optional<int64_t> padding_idx = std::nullopt) {
  nabla::detail::check_defined(indices, "embedding");
  nabla::detail::check_defined(weight, "embedding");
  if (trace::active()) {  // a Gather of rows
    trace::Scope scope;
    Tensor y = embedding(indices, weight, padding_idx);
    scope.record("Gather", {weight, indices}, {y}, {{"axis", int64_t{0}}});
    return y;
  }
  NABLA_CHECK(weight.dim() == 2, ShapeError, "embedding: weight must be [num_embeddings, embedding_dim], got ",
              nabla::detail::describe(weight));
  NABLA_CHECK(indices.dtype() == kInt64 || indices.dtype() == kInt32, DTypeError,
              "embedding: indices must be int64 or int32, got ", nabla::detail::describe(indices));
  const int64_t num = weight.size(0), dim = weight.size(1);
  if (padding_idx) {
    NABLA_CHECK(*padding_idx >= -num && *padding_idx < num, IndexError, "embedding: padding_idx ", *padding_idx,
                " must be within num_embeddings (", num, ") for weight ", nabla::detail::describe(weight));
    if (*padding_idx < 0) *padding_idx += num;
  }
  if (indices.numel() > 0) {
    int64_t lo = indices.min().to(kInt64).item<int64_t>(), hi = indices.max().to(kInt64).item<int64_t>();
    NABLA_CHECK(lo >= 0 && hi < num, IndexError, "embedding: indices must be in [0, ", num, "), got values in [", lo,
                ", ", hi, "] for weight ", nabla::detail::describe(weight));
  }
  const Tensor flat = indices.reshape({-1}).to(kInt64);
  Shape shape = indices.sizes();
  shape.push_back(dim);
  Tensor rows;
  {
    NoGradGuard no_grad;
    rows = weight.index_select(0, flat);
  }
  Tensor out = nabla::detail::make_tensor(rows.storage(), 0, shape, contiguous_strides(shape), rows.dtype());
  if (autograd::needs_grad(weight))
    autograd::record("EmbeddingBackward0", out, {weight},
                     [i = autograd::save(flat), num, dim, padding_idx](const Tensor& g, autograd::NeedsGrad) {
                       const Tensor idx = i.unpack();
                       Tensor g2 = g.reshape({-1, dim});
                       if (padding_idx)
                         g2 = where(idx.eq(*padding_idx).unsqueeze(1), nabla::detail::scalar_to_tensor(0, g2.dtype()), g2);
                       return TensorList{zeros({num, dim}, g.options()).index_add(0, idx, g2)};
                     });
  return out;
}

inline Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1) {
  nabla::detail::check_defined(x, "flatten");
  return x.flatten(start_dim, end_dim);
}

}  // namespace functional
namespace F = functional;
}  // namespace nn

// LibTorch's torch::dropout(input, p, train) and torch::feature_dropout.
using nn::functional::dropout;
inline Tensor feature_dropout(const Tensor& x, double p, bool training) { return nn::functional::dropout2d(x, p, training); }
}  // namespace nabla
