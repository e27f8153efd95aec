#pragma once
// nn::Module: the base of every layer -- registered parameters, buffers and child modules,
// train/eval, to(device/dtype), zero_grad, and state_dict / load_state_dict with PyTorch's
// names ("0.weight", "layer1.0.conv1.weight"). Also OrderedDict and the containers
// Sequential and ModuleList. Layers live in layers.hpp.
//
// Ownership, in one rule: a parent holds its children through std::shared_ptr. Modules are
// ordinary classes (no Impl/holder pair, no macro); hand one to a container or to
// register_module by value (it is moved into a shared_ptr) or as a shared_ptr (shared).
// Copying a module is disabled: a copy would share the parameter tensors but not the
// train/eval flag, a silent bug; move it, or hold it in a shared_ptr.

#include <algorithm>
#include <concepts>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../ops/all.hpp"

namespace nabla {
namespace nn {

// Insertion-ordered map from names to values (LibTorch's OrderedDict, reduced).
template <class V>
class OrderedDict {
 public:
  using Item = std::pair<std::string, V>;

  // Adds key (or replaces its value, keeping its position).
  V& insert(const std::string& key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) return items_[it->second].second = std::move(value);
    index_.emplace(key, items_.size());
    items_.emplace_back(key, std::move(value));
    return items_.back().second;
  }
  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  const V* find(const std::string& key) const {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  V* find(const std::string& key) {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &items_[it->second].second;
  }
  const V& at(const std::string& key) const {
    const V* v = find(key);
    NABLA_CHECK(v != nullptr, IndexError, "OrderedDict: no key \"", key, "\"");
    return *v;
  }
  V& at(const std::string& key) { return const_cast<V&>(static_cast<const OrderedDict&>(*this).at(key)); }
  const V& operator[](const std::string& key) const { return at(key); }
  V& operator[](const std::string& key) { return at(key); }
  // By position. The non-const overload exists so that d[0] on a non-const dict is not ambiguous
  // with operator[](const std::string&) (clang rejects it otherwise); the key stays read-only.
  const Item& operator[](size_t i) const {
    NABLA_CHECK(i < items_.size(), IndexError, "OrderedDict: index ", i, " out of range (", items_.size(), " items)");
    return items_[i];
  }
  const Item& operator[](size_t i) { return static_cast<const OrderedDict&>(*this)[i]; }

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  std::vector<std::string> keys() const {
    std::vector<std::string> k;
    for (const auto& [name, v] : items_) k.push_back(name);
    return k;
  }
  std::vector<V> values() const {
    std::vector<V> out;
    for (const auto& [name, v] : items_) out.push_back(v);
    return out;
  }

 private:
  std::vector<Item> items_;
  std::unordered_map<std::string, size_t> index_;
};

// Name -> tensor, in PyTorch's order: each module's parameters, then its buffers, then its
// children's entries under "child.".
using StateDict = OrderedDict<Tensor>;

struct LoadStateDictResult {
  std::vector<std::string> missing_keys;     // in the module, not in the dict
  std::vector<std::string> unexpected_keys;  // in the dict, not in the module
};

class Module;

// LibTorch's built-in layers are holders used through `->` (fc->weight, seq->forward(x)); nabla's
// are values, and each gives `->` to itself so that ported code keeps its arrows.
#define NABLA_MODULE_ARROW(Name)                 \
  Name* operator->() { return this; }             \
  const Name* operator->() const { return this; }
template <class M>
concept ModuleType = std::derived_from<M, Module>;

namespace detail {
// Points `dst`'s TensorImpl at src's memory and metadata, so every handle to dst (the
// module's member, optimizers) sees the converted tensor -- PyTorch's `param.data = ...`.
inline void replace_data(const Tensor& dst, const Tensor& src) {
  TensorImpl* d = dst.impl();
  d->storage = src.storage();
  d->offset = src.storage_offset();
  d->shape = src.sizes();
  d->strides = src.strides();
  d->numel = src.numel();
  d->dtype = src.dtype();
}
inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
  return s;
}
}  // namespace detail

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;

  // The layer's computation. Modules whose forward takes something else add their own
  // overloads; this one is what containers such as Sequential call.
  virtual Tensor forward(const Tensor& /*input*/) {
    throw ValueError("nabla::nn::" + type_name() + ": this module has no forward(Tensor)");
  }
  Tensor operator()(const Tensor& input) { return forward(input); }

  // "Linear", "Sequential", ... (used in printing and error messages).
  virtual std::string type_name() const { return "Module"; }
  // The part inside the parentheses when printed, e.g. "in_features=4, out_features=2, bias=True".
  virtual std::string extra_repr() const { return ""; }

  // ---- registration ---------------------------------------------------------------------------
  // Registers t as a parameter (a leaf that requires grad unless told otherwise) and returns
  // it; an undefined tensor (e.g. a layer built without bias) is not registered.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true) {
    check_new_name(name);
    if (!t.defined()) return t;
    if (!t.is_leaf()) t = t.detach();
    t.requires_grad_(requires_grad);
    parameters_.insert(name, t);
    return t;
  }
  // Buffers are state that is not trained (running statistics, masks); persistent ones are
  // part of state_dict.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = true) {
    check_new_name(name);
    buffers_.insert(name, t);
    if (!persistent) non_persistent_.insert(name);
    return t;
  }
  template <ModuleType M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    NABLA_CHECK(module != nullptr, ValueError, "nn::Module::register_module: module \"", name, "\" is null");
    children_.insert(name, module);
    return module;
  }
  template <class M>
    requires ModuleType<std::remove_cvref_t<M>>
  std::shared_ptr<std::remove_cvref_t<M>> register_module(const std::string& name, M&& module) {
    static_assert(!std::is_lvalue_reference_v<M>,
                  "nn::Module::register_module: modules cannot be copied; pass std::move(m) or a std::shared_ptr");
    return register_module(name, std::make_shared<std::remove_cvref_t<M>>(std::move(module)));
  }

  // ---- traversal ------------------------------------------------------------------------------
  // Each parameter once (shared parameters are listed at their first name), in PyTorch's order.
  OrderedDict<Tensor> named_parameters(bool recurse = true) const {
    OrderedDict<Tensor> out;
    std::unordered_set<const TensorImpl*> seen;
    collect(out, seen, "", recurse, &Module::parameters_, false);
    return out;
  }
  std::vector<Tensor> parameters(bool recurse = true) const { return named_parameters(recurse).values(); }
  OrderedDict<Tensor> named_buffers(bool recurse = true) const {
    OrderedDict<Tensor> out;
    std::unordered_set<const TensorImpl*> seen;
    collect(out, seen, "", recurse, &Module::buffers_, false);
    return out;
  }
  std::vector<Tensor> buffers(bool recurse = true) const { return named_buffers(recurse).values(); }
  const OrderedDict<std::shared_ptr<Module>>& named_children() const { return children_; }
  std::vector<std::shared_ptr<Module>> children() const { return children_.values(); }
  // This module's descendants in pre-order ("" is not included; names are dotted paths).
  OrderedDict<std::shared_ptr<Module>> named_modules() const {
    OrderedDict<std::shared_ptr<Module>> out;
    for (const auto& [name, child] : children_) {
      out.insert(name, child);
      for (const auto& [sub, m] : child->named_modules()) out.insert(name + "." + sub, m);
    }
    return out;
  }

  // ---- modes and conversion -------------------------------------------------------------------
  virtual void train(bool on = true) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves / converts every parameter and buffer in place (the tensors keep their identity, so
  // an optimizer built before the move still updates them). to(dtype) converts floating-point
  // tensors only, as PyTorch does.
  void to(Device device) { convert([&](const Tensor& t) { return t.to(device); }); }
  void to(DType dtype) {
    NABLA_CHECK(is_floating_point(dtype), DTypeError, "nn::Module::to: expected a floating-point dtype, got ", dtype);
    convert([&](const Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; });
  }
  void to(Device device, DType dtype) {
    to(device);
    to(dtype);
  }

  // PyTorch 2's default: gradients are dropped (set_to_none), not filled with zeros.
  void zero_grad(bool set_to_none = true) {
    for (Tensor& p : parameters()) {
      if (!p.grad().defined()) continue;
      if (set_to_none) p.set_grad(Tensor());
      else {
        NoGradGuard no_grad;
        p.mutable_grad().zero_();
      }
    }
  }

  // ---- state ----------------------------------------------------------------------------------
  // Name -> tensor (detached aliases of the module's own memory; no copy).
  StateDict state_dict() const {
    StateDict out;
    state_dict_into(out, "");
    return out;
  }
  // Copies every entry of `dict` into the matching parameter or buffer. Shapes must match
  // (checked for all entries before anything is written); with strict, missing and unexpected
  // keys are an error too. dtype and device are converted as by copy_.
  LoadStateDictResult load_state_dict(const StateDict& dict, bool strict = true) {
    StateDict own = state_dict();
    LoadStateDictResult r;
    for (const auto& [name, t] : own) {
      const Tensor* src = dict.find(name);
      if (!src) {
        r.missing_keys.push_back(name);
        continue;
      }
      NABLA_CHECK(src->sizes() == t.sizes(), ShapeError, "nn::Module::load_state_dict: size mismatch for \"", name,
                  "\": the checkpoint has ", nabla::detail::describe(*src), ", the module has ",
                  nabla::detail::describe(t));
    }
    for (const auto& [name, t] : dict)
      if (!own.contains(name)) r.unexpected_keys.push_back(name);
    if (strict && (!r.missing_keys.empty() || !r.unexpected_keys.empty()))
      throw ValueError("nabla::nn::Module::load_state_dict: error(s) loading state_dict for " + type_name() +
                       (r.missing_keys.empty() ? "" : ": missing keys " + detail::join(r.missing_keys)) +
                       (r.unexpected_keys.empty() ? "" : ": unexpected keys " + detail::join(r.unexpected_keys)));
    NoGradGuard no_grad;
    for (auto& [name, t] : own)
      if (const Tensor* src = dict.find(name)) t.copy_(*src);
    return r;
  }

  // PyTorch-style printout: Sequential(\n  (0): Linear(in_features=784, ...)\n ...).
  std::string str() const {
    std::ostringstream os;
    os << type_name() << "(";
    if (children_.empty()) {
      os << extra_repr() << ")";
      return os.str();
    }
    std::string extra = extra_repr();
    if (!extra.empty()) os << "\n  " << extra;
    for (const auto& [name, child] : children_) {
      std::string s = child->str(), indented;
      for (char c : s) indented += c == '\n' ? std::string("\n  ") : std::string(1, c);
      os << "\n  (" << name << "): " << indented;
    }
    os << "\n)";
    return os.str();
  }

 protected:
  void check_new_name(const std::string& name) const {
    NABLA_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError, "nn::", type_name(),
                ": attribute name \"", name, "\" must be non-empty and contain no \".\"");
    NABLA_CHECK(!parameters_.contains(name) && !buffers_.contains(name) && !children_.contains(name), ValueError,
                "nn::", type_name(), ": attribute \"", name, "\" is already registered");
  }

 private:
  using Slot = OrderedDict<Tensor> Module::*;
  void collect(OrderedDict<Tensor>& out, std::unordered_set<const TensorImpl*>& seen, const std::string& prefix,
               bool recurse, Slot slot, bool persistent_only) const {
    for (const auto& [name, t] : this->*slot) {
      if (!t.defined() || (persistent_only && non_persistent_.count(name))) continue;
      if (seen.insert(t.impl()).second) out.insert(prefix + name, t);
    }
    if (!recurse) return;
    for (const auto& [name, child] : children_)
      child->collect(out, seen, prefix + name + ".", true, slot, persistent_only);
  }
  void state_dict_into(StateDict& out, const std::string& prefix) const {
    for (const auto& [name, t] : parameters_)
      if (t.defined()) out.insert(prefix + name, t.detach());
    for (const auto& [name, t] : buffers_)
      if (t.defined() && !non_persistent_.count(name)) out.insert(prefix + name, t.detach());
    for (const auto& [name, child] : children_) child->state_dict_into(out, prefix + name + ".");
  }
  template <class F>
  void convert(F&& f) {
    NoGradGuard no_grad;
    for (auto* dict : {&parameters_, &buffers_})
      for (auto& [name, t] : *dict) {
        if (!t.defined()) continue;
        Tensor c = f(t);
        if (!c.is_same(t)) detail::replace_data(t, c);
        if (t.grad().defined()) {
          Tensor g = f(t.grad());
          if (!g.is_same(t.grad())) t.set_grad(g);
        }
      }
    for (auto& [name, child] : children_) child->convert(f);
  }

  OrderedDict<Tensor> parameters_;
  OrderedDict<Tensor> buffers_;
  std::unordered_set<std::string> non_persistent_;
  OrderedDict<std::shared_ptr<Module>> children_;
  bool training_ = true;
};

// ---- containers -------------------------------------------------------------------------------

namespace detail {
template <class T> struct is_module_ptr : std::false_type {};
template <ModuleType M> struct is_module_ptr<std::shared_ptr<M>> : std::true_type {};
}  // namespace detail
// What containers accept: a module (moved in) or a std::shared_ptr to one (shared).
template <class T>
concept ModuleArg = ModuleType<std::remove_cvref_t<T>> || detail::is_module_ptr<std::remove_cvref_t<T>>::value;

// Children named "0", "1", ... in the order added; indexable. Base of ModuleList and Sequential.
class ModuleList : public Module {
 public:
  NABLA_MODULE_ARROW(ModuleList)
  ModuleList() = default;
  template <ModuleArg... Ms>
    requires(sizeof...(Ms) > 0)
  explicit ModuleList(Ms&&... modules) {
    (push_back(std::forward<Ms>(modules)), ...);
  }
  std::string type_name() const override { return "ModuleList"; }

  template <ModuleArg M>
  void push_back(M&& module) {
    if constexpr (ModuleType<std::remove_cvref_t<M>>) register_module(std::to_string(size()), std::forward<M>(module));
    else register_module(std::to_string(size()), std::shared_ptr<Module>(std::forward<M>(module)));
  }
  size_t size() const { return named_children().size(); }
  bool empty() const { return size() == 0; }
  std::shared_ptr<Module> operator[](size_t i) const {
    NABLA_CHECK(i < size(), IndexError, "nn::", type_name(), ": index ", i, " is out of range for ", size(), " modules");
    return named_children()[i].second;
  }
  // The i-th module as its own type: net.at<nn::Linear>(0)->weight.
  template <ModuleType M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    NABLA_CHECK(m != nullptr, ValueError, "nn::", type_name(), "::at: module ", i, " is a ", (*this)[i]->type_name(),
                ", not the requested type");
    return m;
  }
  auto begin() const { return named_children().begin(); }
  auto end() const { return named_children().end(); }
};

// Runs its children one after another: Sequential(Linear(784, 128), ReLU(), Linear(128, 10)).
class Sequential : public ModuleList {
 public:
  NABLA_MODULE_ARROW(Sequential)
  using ModuleList::ModuleList;
  std::string type_name() const override { return "Sequential"; }
  Tensor forward(const Tensor& input) override {
    Tensor x = input;
    for (const auto& [name, m] : named_children()) x = m->forward(x);
    return x;
  }
};

inline std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.str(); }

}  // namespace nn
}  // namespace nabla
