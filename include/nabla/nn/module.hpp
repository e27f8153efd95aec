#pragma once
// nn::Module: the base of every layer -- registered parameters, buffers and child modules,
// train/eval, to(device/dtype), zero_grad, and state_dict / load_state_dict with PyTorch's
// names ("0.weight", "layer1.0.conv1.weight"). Also OrderedDict and the containers
// Sequential and ModuleList. Layers live in layers.hpp.
//
// Ownership, in one rule: a parent holds its children through std::shared_ptr. Modules are
// ordinary classes (no Impl/holder pair needed); hand one to a container or to
// register_module by value (it is moved into a shared_ptr) or as a shared_ptr (shared).
// Copying a module is disabled: a copy would share the parameter tensors but not the
// train/eval flag, a silent bug; move it, or hold it in a shared_ptr.
//
// Two LibTorch spellings on top of that rule, so ported code compiles unchanged:
//   - register_module("fc", fc) with fc a data member of this module registers that member
//     in place (no copy): the parent refers to it and rebinds it when the parent is moved;
//   - NABLA_MODULE(Net) (or LibTorch's TORCH_MODULE) over `struct NetImpl : nn::Module` makes
//     Net a ModuleHolder: a shared_ptr<NetImpl> used through `->`, copied by sharing.

#include <algorithm>
#include <concepts>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../autograd/checkpoint.hpp"
#include "../ops/all.hpp"

namespace nabla {
namespace nn {

// Insertion-ordered map from names to values (LibTorch's OrderedDict, reduced).
template <class V>
class OrderedDict {
 public:
  // A name and its value: item.key() / item.value() as LibTorch's, also item.first / item.second
  // and `auto& [name, value] = item`.
  struct Item {
    std::string first;
    V second;
    Item(std::string k, V v) : first(std::move(k)), second(std::move(v)) {}
    const std::string& key() const noexcept { return first; }
    V& value() noexcept { return second; }
    const V& value() const noexcept { return second; }
  };

  // Adds key (or replaces its value, keeping its position).
  V& insert(const std::string& key, V value) {
    auto it = index_.find(key);
    if (it != index_.end()) return items_[it->second].second = std::move(value);
    index_.emplace(key, items_.size());
    items_.emplace_back(key, std::move(value));
    return items_.back().second;
  }
  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  // Removes key (later items move up one place); false when it is not there.
  bool erase(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    const size_t pos = it->second;
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(pos));
    index_.erase(it);
    for (auto& [k, i] : index_)
      if (i > pos) --i;
    return true;
  }
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
template <class M>
concept ModuleType = std::derived_from<M, Module>;
template <ModuleType Impl>
class ModuleHolder;

// What register_module returns: the registered module as a std::shared_ptr (it converts to one,
// and has `->`), remembering where it was registered, so that LibTorch's
//   nn::Linear fc{nullptr};  ...  fc = register_module("fc", nn::Linear(3, 4));
// can make the data member fc the registered child (see NABLA_MODULE_ARROW).
template <class M>  // unconstrained: NABLA_MODULE_ARROW names it inside M's own (incomplete) class
class Registered {
 public:
  Registered(Module* parent, std::string name, std::shared_ptr<M> module)
      : parent_(parent), name_(std::move(name)), module_(std::move(module)) {}
  template <ModuleType B>
    requires std::convertible_to<M*, B*>
  operator std::shared_ptr<B>() const {  // NOLINT: used where register_module's pointer went
    return module_;
  }
  M* operator->() const { return module_.get(); }
  M& operator*() const { return *module_; }
  M* get() const { return module_.get(); }
  const std::shared_ptr<M>& ptr() const { return module_; }
  explicit operator bool() const noexcept { return module_ != nullptr; }

  // Moves the registered module into `member` (a data member of the parent) and makes the
  // parent's child that member.
  void move_into(M& member) &&;

 private:
  Module* parent_;
  std::string name_;
  std::shared_ptr<M> module_;
};

// LibTorch's built-in layers are holders used through `->` (fc->weight, seq->forward(x)); nabla's
// are values, and each gives `->` to itself so that ported code keeps its arrows. `Name fc{nullptr}`
// is an empty layer, to be assigned the result of register_module("fc", Name(...)); a data member
// may also be initialised from that result (`fc(register_module("fc", Name(...)))`).
#define NABLA_MODULE_ARROW(Name)                                   \
  Name* operator->() { return this; }                               \
  const Name* operator->() const { return this; }                   \
  explicit Name(std::nullptr_t) {}                                  \
  Name(::nabla::nn::Registered<Name>&& registered) /* NOLINT */ {   \
    std::move(registered).move_into(*this);                         \
  }                                                                 \
  Name& operator=(::nabla::nn::Registered<Name>&& registered) {     \
    std::move(registered).move_into(*this);                         \
    return *this;                                                   \
  }

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
// The addresses of the modules that exist now: how a parent knows that a child it refers to
// without owning it (a data member registered in place) is still there.
class LiveModules {
 public:
  void add(const Module* m) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.insert(m);
  }
  void remove(const Module* m) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(m);
  }
  bool contains(const Module* m) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_.count(m) != 0;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_set<const Module*> live_;
};
inline LiveModules& live_modules() {
  static LiveModules* registry = new LiveModules();  // never destroyed: modules may outlive static destruction
  return *registry;
}
inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "\"" : ", \"") + x + "\"";
  return s;
}
}  // namespace detail

class Module;
namespace detail {
// A forward interceptor: while one is installed on a thread, the built-in layers (Linear, Conv2d)
// offer it their input first thing in forward; a result replaces the layer's own computation.
// Quantization uses it: calibration observes the inputs, a quantized model runs the layers' int8
// versions, and the float model itself is never modified.
struct ForwardInterceptor {
  virtual ~ForwardInterceptor() = default;
  virtual std::optional<Tensor> intercept(Module& m, const Tensor& x) = 0;
};
inline ForwardInterceptor*& forward_interceptor() {
  thread_local ForwardInterceptor* active = nullptr;
  return active;
}
// Installs an interceptor on this thread for its lifetime.
class InterceptorGuard {
 public:
  explicit InterceptorGuard(ForwardInterceptor& i) : prev_(forward_interceptor()) { forward_interceptor() = &i; }
  ~InterceptorGuard() { forward_interceptor() = prev_; }
  InterceptorGuard(const InterceptorGuard&) = delete;
  InterceptorGuard& operator=(const InterceptorGuard&) = delete;

 private:
  ForwardInterceptor* prev_;
};
}  // namespace detail

class Module {
 public:
  Module() { detail::live_modules().add(this); }
  virtual ~Module() { detail::live_modules().remove(this); }
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&& other) noexcept {
    detail::live_modules().add(this);
    take(std::move(other));
  }
  Module& operator=(Module&& other) noexcept {
    if (this != &other) take(std::move(other));
    return *this;
  }

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
  Registered<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    NABLA_CHECK(module != nullptr, ValueError, "nn::Module::register_module: module \"", name, "\" is null");
    children_.insert(name, module);
    return Registered<M>(this, name, std::move(module));
  }
  template <class M>
    requires ModuleType<std::remove_cvref_t<M>> && (!std::is_lvalue_reference_v<M>)
  Registered<std::remove_cvref_t<M>> register_module(const std::string& name, M&& module) {
    return register_module(name, std::make_shared<std::remove_cvref_t<M>>(std::move(module)));
  }
  // A holder (NABLA_MODULE / TORCH_MODULE): its module, shared.
  template <ModuleType M>
  Registered<M> register_module(const std::string& name, const ModuleHolder<M>& holder) {
    return register_module(name, holder.ptr());
  }
  // LibTorch's register_module("conv1", conv1) on a data member: the member itself becomes the
  // child (its parameters are this module's "conv1.*"), with no copy. The parent refers to it
  // without owning it, and a move of the parent rebinds the reference to the moved-to member.
  // Anything but a data member of this module (a local, another module's member) is refused:
  // the parent could outlive it; pass it with std::move or as a std::shared_ptr instead.
  template <ModuleType M>
  Registered<M> register_module(const std::string& name, M& member) {
    check_new_name(name);
    adopt_member(name, member, "register_module");
    return Registered<M>(this, name, std::shared_ptr<M>(std::shared_ptr<M>(), &member));
  }
  // Makes the child `name` the data member `member` (registered in place; see above).
  void adopt_member(const std::string& name, Module& member, const char* what) {
    const std::ptrdiff_t offset = reinterpret_cast<char*>(&member) - reinterpret_cast<char*>(this);
    NABLA_CHECK(offset >= static_cast<std::ptrdiff_t>(sizeof(Module)) && offset < kMaxMemberOffset, ValueError,
                "nn::", type_name(), "::", what, "(\"", name, "\", ", member.type_name(),
                "): a module held by value must be a data member of this module (it is registered in place); "
                "pass std::move(m) or a std::shared_ptr to register anything else, or keep register_module's "
                "result as auto / std::shared_ptr");
    children_.insert(name, std::shared_ptr<Module>(std::shared_ptr<Module>(), &member));
    member_offsets_.insert(name, offset);
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
    check_in_place_children();
    OrderedDict<std::shared_ptr<Module>> out;
    for (const auto& [name, child] : children_) {
      out.insert(name, child);
      for (const auto& [sub, m] : child->named_modules()) out.insert(name + "." + sub, m);
    }
    return out;
  }

  // ---- re-parametrization (nn::utils::prune) ---------------------------------------------------
  // A data member holding a parameter (a layer's weight, bias), named so that a utility can
  // replace what forward reads: pruning makes "weight" the product weight_orig * weight_mask,
  // recomputed by a forward pre-hook. Built-in layers bind theirs; nullptr when `name` is not bound.
  Tensor* tensor_slot(const std::string& name) {
    const std::ptrdiff_t* off = slot_offsets_.find(name);
    return off ? reinterpret_cast<Tensor*>(reinterpret_cast<char*>(this) + *off) : nullptr;
  }
  // Hooks run before forward (PyTorch's register_forward_pre_hook, given the module). The
  // built-in layers run them first thing in forward(); a module of your own runs them by calling
  // run_forward_pre_hooks() at the top of its forward. `tag` names a hook for a utility to find
  // ("prune:weight"). Returns an id for remove_forward_pre_hook.
  using ForwardPreHook = std::function<void(Module&)>;
  int64_t register_forward_pre_hook(ForwardPreHook hook, std::string tag = "") {
    pre_hooks_.push_back({next_hook_id_, std::move(tag), std::move(hook)});
    return next_hook_id_++;
  }
  bool remove_forward_pre_hook(int64_t id) {
    for (auto it = pre_hooks_.begin(); it != pre_hooks_.end(); ++it)
      if (it->id == id) {
        pre_hooks_.erase(it);
        return true;
      }
    return false;
  }
  // The id of the hook tagged `tag`, or -1.
  int64_t find_forward_pre_hook(const std::string& tag) const {
    for (const auto& h : pre_hooks_)
      if (h.tag == tag) return h.id;
    return -1;
  }
  std::vector<std::string> forward_pre_hook_tags() const {
    std::vector<std::string> tags;
    for (const auto& h : pre_hooks_) tags.push_back(h.tag);
    return tags;
  }
  void run_forward_pre_hooks() {
    for (size_t i = 0; i < pre_hooks_.size(); ++i) pre_hooks_[i].fn(*this);
  }
  // What the forward interceptor installed on this thread returns for this module and input, if
  // any (see detail::ForwardInterceptor); built-in layers return it instead of computing.
  std::optional<Tensor> intercepted(const Tensor& x) {
    detail::ForwardInterceptor* i = detail::forward_interceptor();
    return i ? i->intercept(*this, x) : std::nullopt;
  }
  // Takes a parameter or buffer out of the module (it is no longer listed, saved or converted)
  // and returns it; the data member that held it, if any, is left as it was.
  Tensor unregister_parameter(const std::string& name) { return take_entry(parameters_, name, "parameter"); }
  Tensor unregister_buffer(const std::string& name) {
    non_persistent_.erase(name);
    return take_entry(buffers_, name, "buffer");
  }

  // ---- modes and conversion -------------------------------------------------------------------
  virtual void train(bool on = true) {
    check_in_place_children();
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Gradient checkpointing of this module: a container that runs it (Sequential, and the
  // models' blocks) runs it through nabla::checkpoint when grad mode is on, so its activations
  // are recomputed in backward instead of kept. Off by default; the module's own forward is
  // unchanged (call nabla::checkpoint yourself to checkpoint any other code).
  Module& gradient_checkpointing(bool on) {
    checkpointing_ = on;
    return *this;
  }
  bool gradient_checkpointing() const { return checkpointing_; }

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
    check_in_place_children();
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
  // Binds a data member that holds a parameter under its name (see tensor_slot).
  void bind_slot(const std::string& name, Tensor& member) {
    const std::ptrdiff_t offset = reinterpret_cast<char*>(&member) - reinterpret_cast<char*>(this);
    NABLA_CHECK(offset >= static_cast<std::ptrdiff_t>(sizeof(Module)) && offset < kMaxMemberOffset, ValueError, "nn::",
                type_name(), "::bind_slot(\"", name, "\"): not a data member of this module");
    slot_offsets_.insert(name, offset);
  }
  void check_new_name(const std::string& name) const {
    NABLA_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError, "nn::", type_name(),
                ": attribute name \"", name, "\" must be non-empty and contain no \".\"");
    NABLA_CHECK(!parameters_.contains(name) && !buffers_.contains(name) && !children_.contains(name), ValueError,
                "nn::", type_name(), ": attribute \"", name, "\" is already registered");
  }

 private:
  Tensor take_entry(OrderedDict<Tensor>& dict, const std::string& name, const char* what) {
    const Tensor* t = dict.find(name);
    NABLA_CHECK(t != nullptr, ValueError, "nn::", type_name(), ": no ", what, " named \"", name, "\"");
    Tensor out = *t;
    dict.erase(name);
    return out;
  }
  using Slot = OrderedDict<Tensor> Module::*;
  void collect(OrderedDict<Tensor>& out, std::unordered_set<const TensorImpl*>& seen, const std::string& prefix,
               bool recurse, Slot slot, bool persistent_only) const {
    check_in_place_children();
    for (const auto& [name, t] : this->*slot) {
      if (!t.defined() || (persistent_only && non_persistent_.count(name))) continue;
      if (seen.insert(t.impl()).second) out.insert(prefix + name, t);
    }
    if (!recurse) return;
    for (const auto& [name, child] : children_)
      child->collect(out, seen, prefix + name + ".", true, slot, persistent_only);
  }
  void state_dict_into(StateDict& out, const std::string& prefix) const {
    check_in_place_children();
    for (const auto& [name, t] : parameters_)
      if (t.defined()) out.insert(prefix + name, t.detach());
    for (const auto& [name, t] : buffers_)
      if (t.defined() && !non_persistent_.count(name)) out.insert(prefix + name, t.detach());
    for (const auto& [name, child] : children_) child->state_dict_into(out, prefix + name + ".");
  }
  template <class F>
  void convert(F&& f) {
    check_in_place_children();
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

  // A move: everything is taken over, and children registered in place (data members, see
  // register_module) are re-pointed at the same member of this object.
  void take(Module&& other) noexcept {
    parameters_ = std::move(other.parameters_);
    buffers_ = std::move(other.buffers_);
    non_persistent_ = std::move(other.non_persistent_);
    children_ = std::move(other.children_);
    member_offsets_ = std::move(other.member_offsets_);
    slot_offsets_ = std::move(other.slot_offsets_);
    pre_hooks_ = std::move(other.pre_hooks_);
    next_hook_id_ = other.next_hook_id_;
    training_ = other.training_;
    checkpointing_ = other.checkpointing_;
    for (const auto& [name, offset] : member_offsets_) {
      auto* member = reinterpret_cast<Module*>(reinterpret_cast<char*>(this) + offset);
      *children_.find(name) = std::shared_ptr<Module>(std::shared_ptr<Module>(), member);
    }
  }
  // A child registered in place must still exist: a data member always does while its parent
  // lives, so a gone one was something else passed by reference (a local of a constructor).
  void check_in_place_children() const {
    for (const auto& [name, offset] : member_offsets_) {
      const Module* child = children_.at(name).get();
      NABLA_CHECK(detail::live_modules().contains(child), ValueError, "nn::", type_name(), ": child \"", name,
                  "\" was registered in place (by reference, or by assigning register_module's result to it) but no "
                  "longer exists: only a data member of this module can be registered that way; pass std::move(m) or "
                  "a std::shared_ptr, or keep register_module's result as auto / std::shared_ptr");
    }
  }
  // How far past the start of a module a data member may lie (a sanity bound, not a layout rule).
  static constexpr std::ptrdiff_t kMaxMemberOffset = std::ptrdiff_t(1) << 20;

  OrderedDict<Tensor> parameters_;
  OrderedDict<Tensor> buffers_;
  std::unordered_set<std::string> non_persistent_;
  OrderedDict<std::shared_ptr<Module>> children_;
  OrderedDict<std::ptrdiff_t> member_offsets_;  // children that are data members, by offset from this
  OrderedDict<std::ptrdiff_t> slot_offsets_;    // data members holding parameters, by offset (bind_slot)
  struct PreHook {
    int64_t id;
    std::string tag;
    ForwardPreHook fn;
  };
  std::vector<PreHook> pre_hooks_;
  int64_t next_hook_id_ = 0;
  bool training_ = true;
  bool checkpointing_ = false;
};

template <class M>
void Registered<M>::move_into(M& member) && {
  if (module_.get() == &member) return;  // registered in place already
  NABLA_CHECK(parent_ != nullptr && module_ != nullptr, ValueError,
              "nn::Registered: assigning a register_module result that was already used");
  member = std::move(*module_);
  parent_->adopt_member(name_, member, "register_module");
  module_.reset();
  parent_ = nullptr;
}

// ---- holders ----------------------------------------------------------------------------------

// LibTorch's ModuleHolder: a std::shared_ptr<Impl> with `->`, built by forwarding its arguments
// to Impl's constructor. NABLA_MODULE(Net) (or TORCH_MODULE(Net)) declares Net as the holder
// of NetImpl. Copies share one module; Net(nullptr) is empty until assigned.
template <ModuleType Impl>
class ModuleHolder {
 public:
  using ContainedType = Impl;

  // A default-constructed Impl (as LibTorch: the holder of a module with a default constructor).
  ModuleHolder()
    requires std::default_initializable<Impl>
      : impl_(std::make_shared<Impl>()) {}
  ModuleHolder(std::nullptr_t) {}  // NOLINT: LibTorch's `Net net{nullptr};`
  ModuleHolder(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}  // NOLINT: a module to share
  ModuleHolder(const Registered<Impl>& r) : impl_(r.ptr()) {}              // NOLINT: register_module's result
  template <class Head, class... Tail>
    requires(!std::is_same_v<std::remove_cvref_t<Head>, std::nullptr_t> &&
             !std::is_same_v<std::remove_cvref_t<Head>, std::shared_ptr<Impl>> &&
             !std::is_base_of_v<ModuleHolder, std::remove_cvref_t<Head>> &&
             std::constructible_from<Impl, Head, Tail...>)
  explicit ModuleHolder(Head&& head, Tail&&... tail)
      : impl_(std::make_shared<Impl>(std::forward<Head>(head), std::forward<Tail>(tail)...)) {}

  Impl* operator->() { return get(); }
  const Impl* operator->() const { return get(); }
  Impl& operator*() { return *get(); }
  const Impl& operator*() const { return *get(); }
  Impl* get() { return checked(); }
  const Impl* get() const { return checked(); }
  const std::shared_ptr<Impl>& ptr() const {
    checked();
    return impl_;
  }
  bool is_empty() const noexcept { return impl_ == nullptr; }
  explicit operator bool() const noexcept { return !is_empty(); }
  operator std::shared_ptr<Impl>() const { return ptr(); }  // NOLINT: pass a holder where a pointer goes

  // Calls Impl's own forward (whatever its signature), as LibTorch's holder does.
  template <class... Args>
  decltype(auto) operator()(Args&&... args) {
    return get()->forward(std::forward<Args>(args)...);
  }

 private:
  Impl* checked() const {
    NABLA_CHECK(impl_ != nullptr, ValueError,
                "nn::ModuleHolder: accessing an empty holder (built from nullptr and never assigned a module)");
    return impl_.get();
  }
  std::shared_ptr<Impl> impl_;
};

// NABLA_MODULE(Name): Name is the holder of NameImpl (LibTorch's TORCH_MODULE).
#define NABLA_MODULE(Name)                                        \
  class Name : public ::nabla::nn::ModuleHolder<Name##Impl> {     \
   public:                                                        \
    using ::nabla::nn::ModuleHolder<Name##Impl>::ModuleHolder;    \
    using Impl [[maybe_unused]] = Name##Impl;                     \
  }

namespace detail {
template <class T> struct is_module_holder : std::false_type {};
template <class T>
  requires requires { typename T::ContainedType; } && std::is_base_of_v<ModuleHolder<typename T::ContainedType>, T>
struct is_module_holder<T> : std::true_type {};
}  // namespace detail
template <class T>
concept HolderType = detail::is_module_holder<std::remove_cvref_t<T>>::value;

// ---- containers -------------------------------------------------------------------------------

namespace detail {
template <class T> struct is_module_ptr : std::false_type {};
template <ModuleType M> struct is_module_ptr<std::shared_ptr<M>> : std::true_type {};
}  // namespace detail
// What containers accept: a module (moved in), a std::shared_ptr to one or a holder (shared).
template <class T>
concept ModuleArg = ModuleType<std::remove_cvref_t<T>> || detail::is_module_ptr<std::remove_cvref_t<T>>::value ||
                    HolderType<T>;

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
    if constexpr (ModuleType<std::remove_cvref_t<M>>) {
      static_assert(!std::is_lvalue_reference_v<M>,
                    "nn::ModuleList/Sequential: modules cannot be copied; pass std::move(m) or a std::shared_ptr");
      add(register_module(std::to_string(size()), std::forward<M>(module)).ptr());
    } else if constexpr (HolderType<M>) {
      add(register_module(std::to_string(size()), module.ptr()).ptr());
    } else {
      add(register_module(std::to_string(size()), std::forward<M>(module)).ptr());
    }
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

 protected:
  // The i-th child's own forward(Tensor), found at its static type when it was added: a user
  // module declaring `Tensor forward(Tensor x)` (LibTorch's spelling, which does not override
  // Module::forward(const Tensor&)) runs its own forward here too. A child registered some other
  // way runs the virtual forward.
  Tensor forward_child(size_t i, const Tensor& x) const {
    const std::shared_ptr<Module>& m = (*this)[i];
    auto it = forwards_.find(m.get());
    if (m->gradient_checkpointing() && GradMode::is_enabled()) {
      std::function<Tensor(const Tensor&)> f = it != forwards_.end() ? it->second : [p = m.get()](const Tensor& t) {
        return p->forward(t);
      };
      return checkpoint([f, keep = m](const std::vector<Tensor>& in) { return f(in[0]); }, {x});
    }
    return it != forwards_.end() ? it->second(x) : m->forward(x);
  }

 private:
  template <ModuleType M>
  void add(const std::shared_ptr<M>& m) {
    if constexpr (requires(M& mm, const Tensor& t) {
                    { mm.forward(t) } -> std::convertible_to<Tensor>;
                  })
      forwards_[m.get()] = [p = m.get()](const Tensor& x) -> Tensor { return p->forward(x); };
  }
  std::unordered_map<const Module*, std::function<Tensor(const Tensor&)>> forwards_;
};

// Runs its children one after another: Sequential(Linear(784, 128), ReLU(), Linear(128, 10)).
class Sequential : public ModuleList {
 public:
  NABLA_MODULE_ARROW(Sequential)
  using ModuleList::ModuleList;
  std::string type_name() const override { return "Sequential"; }
  Tensor forward(const Tensor& input) override {
    if (auto y = intercepted(input)) return *y;
    return forward_range(0, size(), input);
  }
  // Runs children [first, last) on x (checkpoint_sequential's segments).
  Tensor forward_range(size_t first, size_t last, const Tensor& x) const {
    Tensor y = x;
    for (size_t i = first; i < last && i < size(); ++i) y = forward_child(i, y);
    return y;
  }
};

// torch.utils.checkpoint.checkpoint_sequential: splits `sequential` into `segments` runs of
// size() / segments children; every run but the last is checkpointed (only its input is kept),
// the last runs normally, as PyTorch does. The Sequential must outlive the backward pass.
inline Tensor checkpoint_sequential(const std::shared_ptr<Sequential>& sequential, int64_t segments, const Tensor& input,
                                    bool preserve_rng_state = true) {
  NABLA_CHECK(sequential != nullptr, ValueError, "checkpoint_sequential: the Sequential is null");
  const auto n = static_cast<int64_t>(sequential->size());
  NABLA_CHECK(segments >= 1 && segments <= std::max<int64_t>(n, 1), ValueError, "checkpoint_sequential: segments must be in [1, ",
              n, "] for a Sequential of ", n, " modules, got ", segments);
  const int64_t size = n / segments;
  Tensor x = input;
  int64_t end = 0;
  for (int64_t start = 0; start < size * (segments - 1); start += size) {
    end = start + size;
    auto run = [seq = sequential, start, end](const std::vector<Tensor>& in) {
      return seq->forward_range(static_cast<size_t>(start), static_cast<size_t>(end), in[0]);
    };
    x = checkpoint(run, {x}, preserve_rng_state);
  }
  return sequential->forward_range(static_cast<size_t>(end), static_cast<size_t>(n), x);
}
inline Tensor checkpoint_sequential(Sequential& sequential, int64_t segments, const Tensor& input,
                                    bool preserve_rng_state = true) {
  return checkpoint_sequential(std::shared_ptr<Sequential>(std::shared_ptr<Sequential>(), &sequential), segments, input,
                               preserve_rng_state);
}

inline std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.str(); }
// {key: value, ...}, each value as its own operator<< prints it.
template <class V>
std::ostream& operator<<(std::ostream& os, const OrderedDict<V>& d) {
  os << "{";
  bool first = true;
  for (const auto& item : d) {
    os << (first ? "" : ", ") << item.key() << ": " << item.value();
    first = false;
  }
  return os << "}";
}

}  // namespace nn

using nn::checkpoint_sequential;

}  // namespace nabla
