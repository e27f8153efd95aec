#pragma once
// Pruning with torch.nn.utils.prune's API and semantics (nabla::nn::utils::prune):
//
//   prune::l1_unstructured(*fc, "weight", 0.5);        // zero the 50% smallest |w|
//   prune::ln_structured(*conv, "weight", 0.25, 2, 0);  // zero the 25% output channels of least L2 norm
//   prune::global_unstructured({{fc1, "weight"}, {fc2, "weight"}}, prune::L1Unstructured, 0.8);
//   prune::remove(*fc, "weight");                       // make it permanent
//
// Pruning `name` moves the parameter to `name_orig` (the same tensor, so an optimizer built
// before keeps training it), adds the buffer `name_mask`, and makes the module's `name` the
// product name_orig * name_mask, recomputed by a forward pre-hook before every forward: the
// pruned entries are zero in the forward and get no gradient. state_dict holds name_orig and
// name_mask as PyTorch's does; after remove() it holds `name` again, so the model loads into
// an unpruned PyTorch module. Pruning a pruned tensor again prunes among what is left (the
// amount is a fraction of the remaining entries or channels), as PyTorch's PruningContainer.
// Modules with bound slots (Linear, Conv2d, ConvTranspose2d, Embedding, GPT-2's Conv1D) can be
// pruned; a module of your own binds its tensors with bind_slot and runs
// run_forward_pre_hooks() at the top of its forward.
//
// Masks zero entries but keep the shapes, so by themselves they save no time. remove_channels
// turns channels pruned whole (ln_structured on dim 0) into smaller layers: a Sequential of
// Conv2d / BatchNorm2d / Linear and shape-keeping layers gets narrower convolutions and
// matmuls, and runs faster.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/random.hpp"
#include "conv_layers.hpp"
#include "layers.hpp"
#include "module.hpp"

namespace nabla {
namespace nn {
namespace utils {
namespace prune {

// How much to prune: a fraction in [0, 1] (a double) or a number of entries or channels (an
// integer), as PyTorch's float / int amount.
struct Amount {
  Amount(double fraction) : fraction_(fraction) {}  // NOLINT: implicit, as Python's float
  template <std::integral I>
  Amount(I count) : count_(static_cast<int64_t>(count)), is_count_(true) {}  // NOLINT
  // How many of n to prune. A fraction rounds half to even (Python's round()).
  int64_t of(int64_t n, const char* fn) const {
    if (is_count_) {
      NABLA_CHECK(count_ >= 0 && count_ <= n, ValueError, "prune::", fn, ": amount=", count_,
                  " must be between 0 and the number of units to prune (", n, ")");
      return count_;
    }
    NABLA_CHECK(fraction_ >= 0.0 && fraction_ <= 1.0, ValueError, "prune::", fn, ": amount=", fraction_,
                " must be a fraction in [0, 1] or an integer count");
    return static_cast<int64_t>(std::nearbyint(fraction_ * static_cast<double>(n)));
  }

 private:
  double fraction_ = 0.0;
  int64_t count_ = 0;
  bool is_count_ = false;
};

namespace detail {

inline std::string tag(const std::string& name) { return "prune:" + name; }

inline std::vector<double> values_of(const Tensor& t) {
  Tensor c = t.detach().to(Device::cpu(), kFloat64).contiguous();
  const double* p = c.data<double>();
  return std::vector<double>(p, p + c.numel());
}

// The tensor a pruning method scores: the module's current `name` (the masked weight once
// pruned), or the given importance scores.
inline Tensor target(Module& m, const std::string& name, const char* fn) {
  Tensor* slot = m.tensor_slot(name);
  NABLA_CHECK(slot != nullptr, ValueError, "prune::", fn, ": nn::", m.type_name(), " has no tensor \"", name,
              "\" it can prune (prunable: the tensors a layer binds with bind_slot, e.g. Linear/Conv2d weight and bias)");
  NABLA_CHECK(slot->defined(), ValueError, "prune::", fn, ": nn::", m.type_name(), "'s \"", name, "\" is not defined");
  return *slot;
}

inline bool pruned(const Module& m, const std::string& name) { return m.find_forward_pre_hook(tag(name)) >= 0; }

// The current mask of module.name (all ones when it is not pruned), as float64 values.
inline std::vector<double> current_mask(Module& m, const std::string& name, int64_t n) {
  if (!pruned(m, name)) return std::vector<double>(static_cast<size_t>(n), 1.0);
  return values_of(m.named_buffers(false)[name + "_mask"]);
}

// The forward pre-hook: name = name_orig * name_mask (a product autograd sees, so the pruned
// entries get no gradient).
inline void recompute(Module& m, const std::string& name) {
  Tensor orig = m.named_parameters(false)[name + "_orig"];
  Tensor mask = m.named_buffers(false)[name + "_mask"];
  *m.tensor_slot(name) = orig * mask;
}

// Installs `mask` (values in {0, 1}, the shape of name) as module.name's mask: the first time
// it moves name to name_orig, registers name_mask and the hook; later it replaces the mask.
inline void apply_mask(Module& m, const std::string& name, const std::vector<double>& mask_values) {
  Tensor current = target(m, name, "apply");
  Tensor mask = from_vector(mask_values, current.sizes(), TensorOptions(kFloat64)).to(current.device(), current.dtype());
  if (!pruned(m, name)) {
    Tensor orig = m.unregister_parameter(name);  // the same tensor becomes name_orig
    m.register_parameter(name + "_orig", orig, orig.requires_grad());
    m.register_buffer(name + "_mask", mask);
    m.register_forward_pre_hook([name](Module& mod) { recompute(mod, name); }, tag(name));
  } else {
    NoGradGuard ng;
    m.named_buffers(false)[name + "_mask"].copy_(mask);
  }
  NoGradGuard ng;  // the attribute now, as PyTorch's setattr after apply; forward recomputes it with grad
  recompute(m, name);
}

// Indices of the k smallest (largest) scores, ties to the lower index (deterministic).
inline std::vector<int64_t> extreme_k(const std::vector<double>& score, const std::vector<int64_t>& among, int64_t k,
                                      bool smallest) {
  std::vector<int64_t> idx = among;
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    return smallest ? score[static_cast<size_t>(a)] < score[static_cast<size_t>(b)]
                    : score[static_cast<size_t>(a)] > score[static_cast<size_t>(b)];
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

// Unstructured: prunes `amount` of the entries still unpruned, those with the smallest score.
inline std::vector<double> unstructured_mask(const std::vector<double>& score, std::vector<double> mask, const Amount& amount,
                                             const char* fn) {
  std::vector<int64_t> alive;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] != 0.0) alive.push_back(static_cast<int64_t>(i));
  const int64_t k = amount.of(static_cast<int64_t>(alive.size()), fn);
  for (int64_t i : extreme_k(score, alive, k, true)) mask[static_cast<size_t>(i)] = 0.0;
  return mask;
}

// Structured along dim: prunes `amount` of the channels still unpruned, those with the
// smallest channel score.
inline std::vector<double> structured_mask(const Shape& shape, int64_t dim, const std::vector<double>& channel_score,
                                           std::vector<double> mask, const Amount& amount, const char* fn) {
  const int64_t C = shape[static_cast<size_t>(dim)];
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) inner *= shape[d];
  auto channel = [&](size_t flat) { return static_cast<int64_t>(flat / static_cast<size_t>(inner)) % C; };
  std::vector<bool> alive(static_cast<size_t>(C), false);
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] != 0.0) alive[static_cast<size_t>(channel(i))] = true;
  std::vector<int64_t> alive_idx;
  for (int64_t c = 0; c < C; ++c)
    if (alive[static_cast<size_t>(c)]) alive_idx.push_back(c);
  const int64_t k = amount.of(static_cast<int64_t>(alive_idx.size()), fn);
  std::vector<bool> cut(static_cast<size_t>(C), false);
  for (int64_t c : extreme_k(channel_score, alive_idx, k, true)) cut[static_cast<size_t>(c)] = true;
  for (size_t i = 0; i < mask.size(); ++i)
    if (cut[static_cast<size_t>(channel(i))]) mask[i] = 0.0;
  return mask;
}

// The Ln norm of each slice along dim (over all other dims); n = inf is the max norm.
inline std::vector<double> channel_norms(const Tensor& t, double n, int64_t dim) {
  const std::vector<double> v = values_of(t);
  const Shape& shape = t.sizes();
  const int64_t C = shape[static_cast<size_t>(dim)];
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) inner *= shape[d];
  std::vector<double> acc(static_cast<size_t>(C), 0.0);
  for (size_t i = 0; i < v.size(); ++i) {
    auto c = static_cast<size_t>(static_cast<int64_t>(i / static_cast<size_t>(inner)) % C);
    const double a = std::abs(v[i]);
    if (std::isinf(n)) acc[c] = std::max(acc[c], a);
    else if (n == 0) acc[c] += a != 0.0 ? 1.0 : 0.0;
    else acc[c] += std::pow(a, n);
  }
  if (!std::isinf(n) && n > 0)
    for (auto& x : acc) x = std::pow(x, 1.0 / n);
  return acc;
}

inline int64_t check_dim(const Tensor& t, int64_t dim, const char* fn) {
  NABLA_CHECK(t.dim() >= 1 && dim >= -t.dim() && dim < t.dim(), ValueError, "prune::", fn, ": dim ", dim,
              " is out of range for ", nabla::detail::describe(t));
  return dim < 0 ? dim + t.dim() : dim;
}

inline std::vector<double> uniform_scores(int64_t n) {
  std::vector<double> v = values_of(rand({n}, TensorOptions(kFloat64)));
  return v;
}

inline Tensor scores_or(const Tensor& importance_scores, const Tensor& t, const char* fn) {
  if (!importance_scores.defined()) return t;
  NABLA_CHECK(importance_scores.sizes() == t.sizes(), ShapeError, "prune::", fn, ": importance_scores ",
              nabla::detail::describe(importance_scores), " must have the shape of the pruned tensor ",
              nabla::detail::describe(t));
  return importance_scores;
}

}  // namespace detail

// True when any tensor of module (or of a submodule) is pruned.
inline bool is_pruned(const Module& module) {
  for (const auto& t : module.forward_pre_hook_tags())
    if (t.rfind("prune:", 0) == 0) return true;
  for (const auto& [name, child] : module.named_children())
    if (is_pruned(*child)) return true;
  return false;
}

// A mask of ones: the reparametrization without pruning anything.
inline void identity(Module& module, const std::string& name) {
  Tensor t = detail::target(module, name, "identity");
  detail::apply_mask(module, name, detail::current_mask(module, name, t.numel()));
}

// Zeroes `amount` of the entries with the smallest absolute value (importance_scores: rank by
// these instead of the tensor's own values).
inline void l1_unstructured(Module& module, const std::string& name, Amount amount, const Tensor& importance_scores = {}) {
  Tensor t = detail::target(module, name, "l1_unstructured");
  std::vector<double> score = detail::values_of(detail::scores_or(importance_scores, t, "l1_unstructured"));
  for (auto& x : score) x = std::abs(x);
  detail::apply_mask(module, name,
                     detail::unstructured_mask(score, detail::current_mask(module, name, t.numel()), amount, "l1_unstructured"));
}

// Zeroes `amount` of the entries chosen at random (nabla's generator: manual_seed makes it repeatable).
inline void random_unstructured(Module& module, const std::string& name, Amount amount) {
  Tensor t = detail::target(module, name, "random_unstructured");
  detail::apply_mask(module, name,
                     detail::unstructured_mask(detail::uniform_scores(t.numel()), detail::current_mask(module, name, t.numel()),
                                               amount, "random_unstructured"));
}

// Zeroes `amount` of the slices along dim (output channels for dim 0) with the smallest Ln norm
// (n = 1, 2, INFINITY, ...; PyTorch's "fro" is 2).
inline void ln_structured(Module& module, const std::string& name, Amount amount, double n, int64_t dim,
                          const Tensor& importance_scores = {}) {
  Tensor t = detail::target(module, name, "ln_structured");
  dim = detail::check_dim(t, dim, "ln_structured");
  Tensor s = detail::scores_or(importance_scores, t, "ln_structured");
  detail::apply_mask(module, name,
                     detail::structured_mask(t.sizes(), dim, detail::channel_norms(s, n, dim),
                                             detail::current_mask(module, name, t.numel()), amount, "ln_structured"));
}

// Zeroes `amount` of the slices along dim chosen at random.
inline void random_structured(Module& module, const std::string& name, Amount amount, int64_t dim) {
  Tensor t = detail::target(module, name, "random_structured");
  dim = detail::check_dim(t, dim, "random_structured");
  detail::apply_mask(module, name,
                     detail::structured_mask(t.sizes(), dim, detail::uniform_scores(t.size(dim)),
                                             detail::current_mask(module, name, t.numel()), amount, "random_structured"));
}

// Applies a given mask (1 keeps, 0 prunes), combined with any mask already there.
inline void custom_from_mask(Module& module, const std::string& name, const Tensor& mask) {
  Tensor t = detail::target(module, name, "custom_from_mask");
  NABLA_CHECK(mask.sizes() == t.sizes(), ShapeError, "prune::custom_from_mask: mask ", nabla::detail::describe(mask),
              " must have the shape of ", name, " ", nabla::detail::describe(t));
  std::vector<double> m = detail::current_mask(module, name, t.numel());
  const std::vector<double> given = detail::values_of(mask);
  for (size_t i = 0; i < m.size(); ++i) m[i] *= given[i] != 0.0 ? 1.0 : 0.0;
  detail::apply_mask(module, name, m);
}

// Makes the pruning permanent: name becomes a plain parameter again (the name_orig tensor,
// holding name_orig * name_mask), name_orig, name_mask and the hook go.
inline void remove(Module& module, const std::string& name) {
  NABLA_CHECK(detail::pruned(module, name), ValueError, "prune::remove: parameter \"", name, "\" of nn::",
              module.type_name(), " has to be pruned before pruning can be removed");
  NoGradGuard ng;
  detail::recompute(module, name);
  Tensor weight = *module.tensor_slot(name);
  Tensor orig = module.unregister_parameter(name + "_orig");
  module.unregister_buffer(name + "_mask");
  module.remove_forward_pre_hook(module.find_forward_pre_hook(detail::tag(name)));
  orig.copy_(weight);
  module.register_parameter(name, orig, orig.requires_grad());
  *module.tensor_slot(name) = orig;
}

// The methods global_unstructured ranks with (PyTorch passes the class).
enum PruningMethod { L1Unstructured, RandomUnstructured };

// Prunes `amount` of all the listed tensors together: one ranking over their concatenation
// (by |value| for L1Unstructured), so layers lose different fractions.
inline void global_unstructured(const std::vector<std::pair<std::shared_ptr<Module>, std::string>>& parameters,
                                PruningMethod method, Amount amount) {
  NABLA_CHECK(!parameters.empty(), ValueError, "prune::global_unstructured: no parameters given");
  std::vector<double> score, mask;
  std::vector<int64_t> sizes;
  for (const auto& [m, name] : parameters) {
    NABLA_CHECK(m != nullptr, ValueError, "prune::global_unstructured: a module is null");
    Tensor t = detail::target(*m, name, "global_unstructured");
    std::vector<double> s = detail::values_of(t);
    std::vector<double> mk = detail::current_mask(*m, name, t.numel());
    score.insert(score.end(), s.begin(), s.end());
    mask.insert(mask.end(), mk.begin(), mk.end());
    sizes.push_back(t.numel());
  }
  if (method == L1Unstructured) {
    for (auto& x : score) x = std::abs(x);
  } else {
    score = detail::uniform_scores(static_cast<int64_t>(score.size()));
  }
  mask = detail::unstructured_mask(score, mask, amount, "global_unstructured");
  size_t at = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    std::vector<double> part(mask.begin() + static_cast<std::ptrdiff_t>(at),
                             mask.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(sizes[i])));
    at += static_cast<size_t>(sizes[i]);
    detail::apply_mask(*parameters[i].first, parameters[i].second, part);  // the combined mask already includes the old one
  }
}


namespace detail {
// Output channels (rows of dim 0) of w that hold a non-zero weight; at least one survives.
inline std::vector<int64_t> live_channels(const Tensor& w) {
  const std::vector<double> v = values_of(w);
  const int64_t C = w.size(0), per = C ? w.numel() / C : 0;
  std::vector<int64_t> keep;
  for (int64_t c = 0; c < C; ++c) {
    bool live = false;
    for (int64_t j = 0; j < per && !live; ++j) live = v[static_cast<size_t>(c * per + j)] != 0.0;
    if (live) keep.push_back(c);
  }
  if (keep.empty() && C > 0) keep.push_back(0);
  return keep;
}
inline Tensor pick(const Tensor& t, int64_t dim, const std::vector<int64_t>& idx) {
  return t.detach().index_select(dim, from_vector(idx, Shape{static_cast<int64_t>(idx.size())}, TensorOptions(kInt64)).to(t.device()));
}
inline std::vector<int64_t> all_of(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}
}  // namespace detail

// Structured pruning made physical: a new Sequential in which every Conv2d and Linear loses the
// output channels whose weights are all zero (as ln_structured(m, "weight", amount, n, 0) leaves
// them), the BatchNorm2d after it keeps only the surviving channels, and the next Conv2d or
// Linear (after a Flatten: the blocks of those channels) loses the matching inputs. A removed
// channel goes with its bias, as channel-pruning tools remove it (its output was a constant);
// the last layer keeps all its outputs. Layers that keep channels in between (ReLU, LeakyReLU,
// GELU, Tanh, Sigmoid, Dropout, Dropout2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Identity)
// are shared with the input; anything else between two pruned layers is an error. Pruning
// masks are folded in: the new layers are not pruned. Conv2d with groups > 1 is not narrowed.
inline std::shared_ptr<Sequential> remove_channels(const Sequential& net) {
  NoGradGuard ng;
  const size_t n = net.size();
  auto producer = [](const std::shared_ptr<Module>& m) {
    return std::dynamic_pointer_cast<Linear>(m) != nullptr ||
           (std::dynamic_pointer_cast<Conv2d>(m) != nullptr && std::dynamic_pointer_cast<Conv2d>(m)->groups == 1);
  };
  static const std::vector<std::string> passing = {"ReLU", "LeakyReLU", "GELU", "Tanh", "Sigmoid", "Dropout",
                                                   "Dropout2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Identity"};
  auto out = std::make_shared<Sequential>();
  std::vector<int64_t> keep;  // surviving channels of the last producer (empty: no producer yet)
  int64_t total = 0;          // its channel count before
  bool flattened = false;
  for (size_t i = 0; i < n; ++i) {
    std::shared_ptr<Module> m = net[i];
    bool later_producer = false;
    for (size_t j = i + 1; j < n; ++j) later_producer = later_producer || producer(net[j]);
    const bool narrowed = !keep.empty() && static_cast<int64_t>(keep.size()) != total;
    auto inputs = [&](int64_t in_features) {  // the input columns the surviving channels feed
      if (keep.empty()) return detail::all_of(in_features);
      if (!flattened) return keep;
      const int64_t per = in_features / total;
      std::vector<int64_t> cols;
      for (int64_t c : keep)
        for (int64_t j = 0; j < per; ++j) cols.push_back(c * per + j);
      return cols;
    };
    if (auto conv = std::dynamic_pointer_cast<Conv2d>(m); conv && conv->groups == 1) {
      NABLA_CHECK(!flattened, ValueError, "prune::remove_channels: a Conv2d after a Flatten");
      Tensor w = conv->weight.detach(), b = conv->bias.defined() ? conv->bias.detach() : Tensor();
      std::vector<int64_t> in = inputs(conv->in_channels);
      std::vector<int64_t> outc = later_producer ? detail::live_channels(w) : detail::all_of(conv->out_channels);
      auto c = std::make_shared<Conv2d>(static_cast<int64_t>(in.size()), static_cast<int64_t>(outc.size()), conv->kernel_size,
                                        conv->stride, conv->padding, conv->dilation, 1, b.defined(), w.options());
      c->weight.copy_(detail::pick(detail::pick(w, 0, outc), 1, in));
      if (b.defined()) c->bias.copy_(detail::pick(b, 0, outc));
      c->train(conv->is_training());
      out->push_back(std::shared_ptr<Module>(c));
      keep = outc, total = conv->out_channels;
    } else if (auto fc = std::dynamic_pointer_cast<Linear>(m)) {
      Tensor w = fc->weight.detach(), b = fc->bias.defined() ? fc->bias.detach() : Tensor();
      std::vector<int64_t> in = inputs(fc->in_features);
      std::vector<int64_t> outc = later_producer ? detail::live_channels(w) : detail::all_of(fc->out_features);
      auto l = std::make_shared<Linear>(static_cast<int64_t>(in.size()), static_cast<int64_t>(outc.size()), b.defined(), w.options());
      l->weight.copy_(detail::pick(detail::pick(w, 0, outc), 1, in));
      if (b.defined()) l->bias.copy_(detail::pick(b, 0, outc));
      l->train(fc->is_training());
      out->push_back(std::shared_ptr<Module>(l));
      keep = outc, total = fc->out_features, flattened = false;
    } else if (auto bn = std::dynamic_pointer_cast<BatchNorm2d>(m); bn && narrowed && !flattened) {
      const bool affine = bn->weight.defined(), track = bn->running_mean.defined();
      const Tensor& like = affine ? bn->weight : bn->running_mean;
      auto nb = std::make_shared<BatchNorm2d>(static_cast<int64_t>(keep.size()), bn->eps, bn->momentum, affine,
                                              like.defined() ? like.options().requires_grad(false) : TensorOptions(), track);
      const std::pair<const Tensor*, Tensor*> pairs[] = {{&bn->weight, &nb->weight},
                                                         {&bn->bias, &nb->bias},
                                                         {&bn->running_mean, &nb->running_mean},
                                                         {&bn->running_var, &nb->running_var}};
      for (const auto& [src, dst] : pairs)
        if (src->defined()) dst->copy_(detail::pick(*src, 0, keep));
      if (bn->num_batches_tracked.defined()) nb->num_batches_tracked.copy_(bn->num_batches_tracked);
      nb->train(bn->is_training());
      out->push_back(std::shared_ptr<Module>(nb));
    } else if (m->type_name() == "Flatten") {
      flattened = true;
      out->push_back(m);
    } else {
      const bool passes = std::find(passing.begin(), passing.end(), m->type_name()) != passing.end();
      NABLA_CHECK(passes || !narrowed, ValueError, "prune::remove_channels: layer ", i, " (nn::", m->type_name(),
                  ") sits between a layer that lost channels and the next Conv2d/Linear; only layers that keep "
                  "channels (ReLU, BatchNorm2d, pooling, Dropout, Flatten, ...) can");
      if (!passes) keep.clear(), total = 0;
      out->push_back(m);
    }
  }
  return out;
}

}  // namespace prune
}  // namespace utils
}  // namespace nn
}  // namespace nabla
