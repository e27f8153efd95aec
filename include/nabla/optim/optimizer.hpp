#pragma once
// optim::Optimizer: the interface every optimizer implements (step, zero_grad, per-group
// hyperparameters by name, state_dict), OptimizerBase (param groups + per-parameter state
// shared by SGD/Adam/AdamW), NABLA_OPTION for LibTorch-style chainable options, and
// clip_grad_norm_.

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../nn/module.hpp"
#include "../nn/options.hpp"

// An option with LibTorch's accessors (NABLA_ARG) and its default: opts.lr() reads, opts.lr(0.1)
// sets and chains.
#define NABLA_OPTION(T, NAME, DEFAULT) NABLA_ARG(T, NAME) = DEFAULT

namespace nabla {
namespace optim {

using nn::OrderedDict;
using nn::StateDict;

namespace detail {
// Numbers read back from a state_dict (a file's, perhaps a stranger's): each a ValueError naming
// the entry unless well-formed, so a corrupt checkpoint never becomes a silent NaN or an
// undefined conversion.
inline double state_number(const Tensor& t, const std::string& key) {
  NABLA_CHECK(t.defined() && t.numel() == 1, ValueError, "load_state_dict: entry \"", key, "\" must hold one number, got ",
              t.defined() ? shape_str(t.sizes()) : std::string("an undefined tensor"));
  const double v = t.to(Device::cpu(), kFloat64).item<double>();
  NABLA_CHECK(std::isfinite(v), ValueError, "load_state_dict: entry \"", key, "\" is ", v, ", not a finite number");
  return v;
}
// A whole number in [lo, 2^53] (exact in the float64 it is stored as).
inline int64_t state_integer(const Tensor& t, const std::string& key, int64_t lo) {
  const double v = state_number(t, key);
  NABLA_CHECK(v == std::floor(v) && v >= static_cast<double>(lo) && v <= 9007199254740992.0, ValueError,
              "load_state_dict: entry \"", key, "\" is ", v, ", not a whole number in [", lo, ", 2^53]");
  return static_cast<int64_t>(v);
}
// The decimal index in a key such as "state.12.exp_avg": digits only, no sign, no overflow.
inline size_t state_index(std::string_view digits, const std::string& key) {
  size_t v = 0;
  bool ok = !digits.empty() && digits.size() <= 9;
  for (char c : digits) ok = ok && c >= '0' && c <= '9', v = v * 10 + static_cast<size_t>(c - '0');
  NABLA_CHECK(ok, ValueError, "load_state_dict: entry \"", key, "\": \"", std::string(digits), "\" is not an index");
  return v;
}
}  // namespace detail

// One set of parameters with its own hyperparameters; options left empty take the
// optimizer's defaults.
template <class Options>
struct ParamGroup {
  std::vector<Tensor> params;
  std::optional<Options> options;
  ParamGroup(std::vector<Tensor> p) : params(std::move(p)) {}  // NOLINT: a list of tensors is a group
  ParamGroup(std::vector<Tensor> p, Options o) : params(std::move(p)), options(std::move(o)) {}
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // PyTorch 2's default: gradients are dropped (set_to_none) rather than zeroed.
  virtual void zero_grad(bool set_to_none = true) = 0;

  virtual size_t num_param_groups() const = 0;
  virtual const std::vector<Tensor>& params(size_t group) const = 0;
  // Hyperparameters by name: "lr", "weight_decay", "momentum", "beta1", ... (what schedulers
  // and checkpoints use; the typed options are on the concrete optimizer).
  virtual bool has_option(size_t group, const std::string& name) const = 0;
  virtual double get_option(size_t group, const std::string& name) const = 0;
  virtual void set_option(size_t group, const std::string& name, double value) = 0;
  double lr(size_t group = 0) const { return get_option(group, "lr"); }
  void set_lr(size_t group, double value) { set_option(group, "lr", value); }

  // Per-parameter state: "momentum_buffer" (SGD), "step" "exp_avg" "exp_avg_sq"
  // "max_exp_avg_sq" (Adam); null when the parameter has none yet.
  virtual const OrderedDict<Tensor>* state(const Tensor& param) const = 0;

  // "state.<i>.<name>" (i counts parameters across groups in order, as PyTorch numbers them)
  // and "param_groups.<g>.<option>" as 0-dim float64 tensors.
  virtual StateDict state_dict() const = 0;
  virtual void load_state_dict(const StateDict& dict) = 0;
};

template <class Options>
class OptimizerBase : public Optimizer {
 public:
  struct Group {
    std::vector<Tensor> params;
    Options options;
  };

  OptimizerBase(std::vector<ParamGroup<Options>> groups, Options defaults) : defaults_(std::move(defaults)) {
    for (auto& g : groups) add_param_group(std::move(g));
  }
  void add_param_group(ParamGroup<Options> g) {
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      NABLA_CHECK(p.defined() && p.is_leaf(), ValueError, "optim: can only optimize defined leaf tensors, got ",
                  nabla::detail::describe(p));
      for (size_t j = 0; j < i; ++j)
        NABLA_CHECK(!g.params[j].is_same(p), ValueError, "optim: parameter ", i, " appears twice in one parameter group");
      for (const auto& other : groups_)
        for (const Tensor& q : other.params)
          NABLA_CHECK(!q.is_same(p), ValueError, "optim: a parameter appears in more than one parameter group");
    }
    groups_.push_back(Group{std::move(g.params), g.options.value_or(defaults_)});
  }

  std::vector<Group>& param_groups() { return groups_; }
  const std::vector<Group>& param_groups() const { return groups_; }
  const Options& defaults() const { return defaults_; }

  void zero_grad(bool set_to_none = true) override {
    for (auto& g : groups_)
      for (Tensor& p : g.params) {
        if (!p.grad().defined()) continue;
        if (set_to_none) p.set_grad(Tensor());
        else {
          NoGradGuard no_grad;
          p.mutable_grad().zero_();
        }
      }
  }

  size_t num_param_groups() const override { return groups_.size(); }
  const std::vector<Tensor>& params(size_t group) const override { return group_at(group).params; }
  bool has_option(size_t group, const std::string& name) const override {
    bool found = false;
    const_cast<Options&>(group_at(group).options).visit([&](const char* n, auto&) { found = found || name == n; });
    return found;
  }
  double get_option(size_t group, const std::string& name) const override {
    double out = 0;
    bool found = false;
    const_cast<Options&>(group_at(group).options).visit([&](const char* n, auto& v) {
      if (name == n) out = static_cast<double>(v), found = true;
    });
    NABLA_CHECK(found, ValueError, "optim: this optimizer has no option \"", name, "\"");
    return out;
  }
  void set_option(size_t group, const std::string& name, double value) override {
    bool found = false;
    group_at(group).options.visit([&](const char* n, auto& v) {
      if (name == n) v = static_cast<std::decay_t<decltype(v)>>(value), found = true;
    });
    NABLA_CHECK(found, ValueError, "optim: this optimizer has no option \"", name, "\"");
  }

  const OrderedDict<Tensor>* state(const Tensor& param) const override {
    auto it = state_.find(param.impl());
    return it == state_.end() ? nullptr : &it->second;
  }

  StateDict state_dict() const override {
    StateDict out;
    size_t i = 0;
    for (const auto& g : groups_)
      for (const Tensor& p : g.params) {
        if (const auto* s = state(p))
          for (const auto& [name, t] : *s) out.insert("state." + std::to_string(i) + "." + name, t.detach());
        ++i;
      }
    for (size_t gi = 0; gi < groups_.size(); ++gi)
      const_cast<Options&>(groups_[gi].options).visit([&](const char* n, auto& v) {
        out.insert("param_groups." + std::to_string(gi) + "." + n, scalar_tensor(static_cast<double>(v), kFloat64));
      });
    return out;
  }

  void load_state_dict(const StateDict& dict) override {
    std::vector<Tensor> flat;
    for (const auto& g : groups_) flat.insert(flat.end(), g.params.begin(), g.params.end());
    std::unordered_map<TensorImpl*, OrderedDict<Tensor>> loaded;
    std::vector<std::tuple<size_t, std::string, double>> options;  // applied once everything is checked
    for (const auto& item : dict) {
      const std::string& key = item.first;  // not a structured binding: lambdas capture it (clang < 16)
      const Tensor& t = item.second;
      auto bad = [&](const std::string& why) {
        return ValueError("nabla::optim::load_state_dict: entry \"" + key + "\": " + why);
      };
      size_t dot1 = key.find('.'), dot2 = dot1 == std::string::npos ? dot1 : key.find('.', dot1 + 1);
      if (dot1 == std::string::npos || dot2 == std::string::npos) throw bad("expected state.<i>.<name> or param_groups.<g>.<option>");
      std::string kind = key.substr(0, dot1), name = key.substr(dot2 + 1);
      const size_t idx = detail::state_index(std::string_view(key).substr(dot1 + 1, dot2 - dot1 - 1), key);
      if (kind == "state") {
        if (idx >= flat.size()) throw bad("the optimizer has only " + std::to_string(flat.size()) + " parameters");
        const Tensor& p = flat[idx];
        NABLA_CHECK(t.defined(), ValueError, "optim::load_state_dict: entry \"", key, "\" is undefined");
        if (name == "step") {  // kept as a float64 CPU number: a count, so a whole number >= 0
          loaded[p.impl()].insert(name, scalar_tensor(static_cast<double>(detail::state_integer(t, key, 0)), kFloat64));
          continue;
        }
        Tensor v = t.to(p.device(), state_dtype(p)).clone();
        if (v.sizes() != p.sizes()) throw bad("shape " + shape_str(v.sizes()) + " does not match the parameter's " + shape_str(p.sizes()));
        loaded[p.impl()].insert(name, v);
      } else if (kind == "param_groups") {
        if (idx >= groups_.size()) throw bad("the optimizer has only " + std::to_string(groups_.size()) + " groups");
        if (!has_option(idx, name)) throw bad("unknown option");
        options.emplace_back(idx, name, detail::state_number(t, key));
      } else {
        throw bad("unknown section \"" + kind + "\"");
      }
    }
    for (size_t i = 0; i < flat.size(); ++i)  // each parameter's state is complete, as step() needs it
      if (auto it = loaded.find(flat[i].impl()); it != loaded.end()) check_state(it->second, "state." + std::to_string(i));
    // the options as the constructor would accept them, or the optimizer is left as it was
    std::vector<Options> before;
    for (const auto& g : groups_) before.push_back(g.options);
    try {
      for (const auto& [g, name, value] : options) set_option(g, name, value);
      for (const auto& g : groups_) check_options(g.options);
    } catch (const Error& e) {
      for (size_t g = 0; g < groups_.size(); ++g) groups_[g].options = before[g];
      throw ValueError(std::string("nabla::optim::load_state_dict: the param_groups entries: ") + e.what());
    }
    state_ = std::move(loaded);
  }

 protected:
  // Throws ValueError unless the hyperparameters are valid (each optimizer says which are);
  // load_state_dict applies it to what a file holds, as the constructor does to what it is given.
  virtual void check_options(const Options&) const {}
  // Throws ValueError when one parameter's loaded state lacks what step() needs with it.
  virtual void check_state(const OrderedDict<Tensor>&, const std::string& /*prefix*/) const {}
  Group& group_at(size_t i) {
    NABLA_CHECK(i < groups_.size(), IndexError, "optim: parameter group ", i, " out of range (", groups_.size(), " groups)");
    return groups_[i];
  }
  const Group& group_at(size_t i) const { return const_cast<OptimizerBase*>(this)->group_at(i); }
  OrderedDict<Tensor>& state_for(const Tensor& p) { return state_[p.impl()]; }

  // ---- master weights (Options::master_weights) ----------------------------------------------
  // A float16 / bfloat16 parameter of a group with master_weights(true) is updated through a
  // float32 copy kept in its state as "master_param": the step runs on the copy with the
  // gradient in float32 (and float32 moments), and the parameter receives the copy rounded to its
  // dtype, so updates smaller than the 16-bit spacing accumulate instead of being lost.
  static bool low_precision(const Tensor& p) { return p.dtype() == kFloat16 || p.dtype() == kBFloat16; }
  bool group_master_weights(size_t group) const {
    return has_option(group, "master_weights") && get_option(group, "master_weights") != 0;
  }
  // The dtype of p's state tensors: float32 for a master-weights 16-bit parameter, else p's.
  DType state_dtype(const Tensor& p) const {
    for (size_t g = 0; g < groups_.size(); ++g)
      for (const Tensor& q : groups_[g].params)
        if (q.is_same(p)) return low_precision(p) && group_master_weights(g) ? kFloat32 : p.dtype();
    return p.dtype();
  }
  // What the update acts on: p itself, or (master weights) its float32 copy holding p's gradient
  // in float32; `masters` collects the pairs whose copies go back into the parameters after.
  Tensor update_target(const Tensor& p, bool master_weights, std::vector<std::pair<Tensor, Tensor>>& masters) {
    if (!master_weights || !low_precision(p)) return p;
    auto& st = state_for(p);
    Tensor* m = st.find("master_param");
    Tensor master = m ? *m : st.insert("master_param", p.detach().to(kFloat32));
    master.set_grad(p.grad().to(kFloat32));
    masters.emplace_back(p, master);
    return master;
  }
  static void write_back(std::vector<std::pair<Tensor, Tensor>>& masters) {
    for (auto& [p, master] : masters) {
      p.copy_(master);
      master.set_grad(Tensor());
    }
    masters.clear();
  }
  // The "step" counter of a parameter's state, incremented; created at 0 on first use.
  static double increment_step(OrderedDict<Tensor>& s) {
    Tensor* t = s.find("step");
    if (!t) t = &s.insert("step", scalar_tensor(0.0, kFloat64));
    double step = t->template item<double>() + 1;
    t->fill_(step);
    return step;
  }

  std::vector<Group> groups_;
  Options defaults_;
  std::unordered_map<TensorImpl*, OrderedDict<Tensor>> state_;
};

// clip_grad_norm_'s result: the total norm, kept on the gradients' device. Converting it to
// double reads it back (a synchronisation on a GPU); a caller that ignores it never pays that.
//   double n = clip_grad_norm_(params, 1.0);   // as LibTorch: reads the norm
//   clip_grad_norm_(params, 1.0);              // no host read at all
//   Tensor t = clip_grad_norm_(params, 1.0).tensor();  // float64 0-dim, on the device
class GradNorm {
 public:
  explicit GradNorm(Tensor total) : total_(std::move(total)) {}
  operator double() const { return total_.item<double>(); }  // NOLINT: implicit, as LibTorch's double
  double item() const { return total_.item<double>(); }
  const Tensor& tensor() const { return total_; }

 private:
  Tensor total_;
};

// Scales the gradients of `params` in place so that their joint norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_; returns the total norm before clipping. norm_type may be
// infinity. Parameters without a gradient are skipped. One norm over all gradients, computed on
// their device with the clip coefficient min(1, max_norm / (norm + 1e-6)) applied as a tensor:
// no host read, unless error_if_nonfinite is set (then the norm is read to check it) or the
// result is converted to double.
inline GradNorm clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                                bool error_if_nonfinite = false) {
  NABLA_CHECK(norm_type > 0, ValueError, "clip_grad_norm_: norm_type must be positive, got ", norm_type);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return GradNorm(zeros({}, kFloat64));
  const Device device = grads[0].device();
  const bool inf = std::isinf(norm_type);
  std::vector<Tensor> parts;  // one float64 0-dim tensor per gradient, on `device`
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    // 16-bit gradients are summed in float32: their squares overflow float16 long before the norm does
    Tensor a = (g.dtype() == kFloat16 || g.dtype() == kBFloat16 ? g.to(kFloat32) : g).abs();
    Tensor part = inf ? a.max() : norm_type == 2.0 ? (a * a).sum() : norm_type == 1.0 ? a.sum() : a.pow(norm_type).sum();
    parts.push_back(part.to(device, kFloat64));
  }
  if (parts.empty()) return GradNorm(zeros({}, TensorOptions(kFloat64).device(device)));
  Tensor all = stack(parts);
  Tensor total = inf ? all.max() : norm_type == 1.0 ? all.sum() : all.sum().pow(1.0 / norm_type);
  if (error_if_nonfinite) {
    const double t = total.item<double>();
    NABLA_CHECK(std::isfinite(t), ValueError, "clip_grad_norm_: the total norm of order ", norm_type,
                " of the gradients is ", t, ", so they cannot be clipped (error_if_nonfinite=true)");
  }
  Tensor coef = ((total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
  for (Tensor g : grads) {
    if (g.numel() == 0) continue;
    g.mul_(coef.to(g.device(), g.dtype()));
  }
  return GradNorm(total);
}

}  // namespace optim
}  // namespace nabla
