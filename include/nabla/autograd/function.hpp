#pragma once
// Custom differentiable functions with LibTorch's spelling:
//
//   struct MulConstant : autograd::Function<MulConstant> {
//     static Tensor forward(autograd::AutogradContext* ctx, Tensor x, double c) {
//       ctx->saved_data["c"] = c;
//       return x * c;
//     }
//     static autograd::tensor_list backward(autograd::AutogradContext* ctx, autograd::tensor_list g) {
//       return {g[0] * ctx->saved_data["c"].toDouble(), Tensor()};
//     }
//   };
//   Tensor y = MulConstant::apply(x, 5.5);
//
// As in LibTorch: forward runs with gradient recording off; backward returns one gradient per
// forward argument (each tensor of a tensor-list argument counts as one), undefined for
// arguments that are not tensors or need none; save_for_backward keeps tensors with their
// version (an in-place change before backward is an error); saved_data holds anything else;
// several outputs (forward returning a tensor_list) share one backward call. The lower level,
// autograd::record, is what this is built on.

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>
#if defined(__GNUG__)
#include <cxxabi.h>
#include <cstdlib>
#endif

#include "../ops/all.hpp"
#include "node.hpp"

namespace nabla {
namespace autograd {

using tensor_list = TensorList;
using variable_list = TensorList;

// What AutogradContext::saved_data holds: LibTorch's IValue, for the kinds custom functions keep.
class IValue {
 public:
  IValue() = default;
  IValue(bool v) : v_(v) {}                          // NOLINT: implicit, as LibTorch's
  IValue(double v) : v_(v) {}                        // NOLINT
  IValue(float v) : v_(static_cast<double>(v)) {}    // NOLINT
  template <class I>
    requires(std::is_integral_v<I> && !std::is_same_v<I, bool>)
  IValue(I v) : v_(static_cast<int64_t>(v)) {}       // NOLINT
  IValue(std::string v) : v_(std::move(v)) {}        // NOLINT
  IValue(const char* v) : v_(std::string(v)) {}      // NOLINT
  IValue(Tensor v) : v_(std::move(v)) {}             // NOLINT
  IValue(TensorList v) : v_(std::move(v)) {}         // NOLINT
  IValue(std::vector<int64_t> v) : v_(std::move(v)) {}  // NOLINT
  IValue(std::vector<double> v) : v_(std::move(v)) {}   // NOLINT

  bool isNone() const { return v_.index() == 0; }
  bool isBool() const { return std::holds_alternative<bool>(v_); }
  bool isInt() const { return std::holds_alternative<int64_t>(v_); }
  bool isDouble() const { return std::holds_alternative<double>(v_); }
  bool isString() const { return std::holds_alternative<std::string>(v_); }
  bool isTensor() const { return std::holds_alternative<Tensor>(v_); }
  bool isTensorList() const { return std::holds_alternative<TensorList>(v_); }
  bool isIntList() const { return std::holds_alternative<std::vector<int64_t>>(v_); }
  bool isDoubleList() const { return std::holds_alternative<std::vector<double>>(v_); }

  // Each accessor wants exactly its kind (LibTorch's toDouble() of an int is an error too).
  bool toBool() const { return get<bool>("bool"); }
  int64_t toInt() const { return get<int64_t>("int"); }
  double toDouble() const { return get<double>("double"); }
  const std::string& toStringRef() const { return get<std::string>("string"); }
  Tensor toTensor() const { return get<Tensor>("Tensor"); }
  TensorList toTensorList() const { return get<TensorList>("TensorList"); }
  TensorList toTensorVector() const { return toTensorList(); }
  std::vector<int64_t> toIntVector() const { return get<std::vector<int64_t>>("int list"); }
  std::vector<double> toDoubleVector() const { return get<std::vector<double>>("double list"); }

  const char* kind() const {
    static constexpr const char* names[] = {"None", "bool", "int", "double", "string", "Tensor", "TensorList",
                                            "int list", "double list"};
    return names[v_.index()];
  }

 private:
  template <class T>
  const T& get(const char* want) const {
    const T* p = std::get_if<T>(&v_);
    NABLA_CHECK(p != nullptr, ValueError, "autograd::IValue: expected a ", want, ", but it holds ", kind());
    return *p;
  }
  std::variant<std::monostate, bool, int64_t, double, std::string, Tensor, TensorList, std::vector<int64_t>,
               std::vector<double>>
      v_;
};

inline std::ostream& operator<<(std::ostream& os, const IValue& v) {
  if (v.isNone()) return os << "None";
  if (v.isBool()) return os << (v.toBool() ? "True" : "False");
  if (v.isInt()) return os << v.toInt();
  if (v.isDouble()) return os << v.toDouble();
  if (v.isString()) return os << v.toStringRef();
  if (v.isTensor()) return os << v.toTensor();
  auto list = [&os](const auto& xs) -> std::ostream& {
    os << "[";
    for (size_t i = 0; i < xs.size(); ++i) os << (i ? ", " : "") << xs[i];
    return os << "]";
  };
  if (v.isTensorList()) return list(v.toTensorList());
  if (v.isIntList()) return list(v.toIntVector());
  return list(v.toDoubleVector());
}

template <class T>
struct Function;

// The per-call state a custom function's forward hands its backward.
class AutogradContext {
 public:
  std::unordered_map<std::string, IValue> saved_data;

  // Tensors for backward (undefined ones allowed). Saved once, in forward.
  void save_for_backward(TensorList to_save) { to_save_ = std::move(to_save); }
  // The saved tensors, in order; a tensor changed in place since it was saved is an error.
  TensorList get_saved_variables() const {
    NABLA_CHECK(!released_, AutogradError,
                "autograd::AutogradContext::get_saved_variables: the saved tensors were freed after the first backward; "
                "pass retain_graph=true to run backward twice");
    TensorList out;
    out.reserve(saved_.size());
    for (const SavedTensor& s : saved_) out.push_back(s.unpack());
    return out;
  }
  // Outputs that have no gradient (integer results, masks): they do not require grad, and their
  // gradient reaches backward as zeros.
  void mark_non_differentiable(const TensorList& outputs) {
    for (const Tensor& t : outputs)
      if (t.defined()) non_differentiable_.push_back(t.impl());
  }
  // With false, an output whose gradient is undefined reaches backward undefined instead of zeros.
  void set_materialize_grads(bool value) { materialize_grads_ = value; }
  // Whether the i-th tensor argument of forward wants a gradient. As LibTorch's, i counts the
  // tensor arguments only (each element of a tensor list is one), not the others.
  bool needs_input_grad(size_t i) const { return i < needs_input_grad_.size() && needs_input_grad_[i]; }

 private:
  template <class T>
  friend struct Function;

  TensorList to_save_;
  std::vector<SavedTensor> saved_;
  std::vector<const TensorImpl*> non_differentiable_;
  std::vector<bool> needs_input_grad_;
  bool materialize_grads_ = true;
  bool released_ = false;
};

namespace detail {

// One forward argument as backward sees it: a tensor (or one element of a tensor list) or
// something else.
struct ArgSlot {
  bool is_tensor = false;
  Tensor tensor;
};
inline void collect_arg(std::vector<ArgSlot>& out, const Tensor& t) { out.push_back({true, t}); }
inline void collect_arg(std::vector<ArgSlot>& out, const TensorList& ts) {
  for (const Tensor& t : ts) out.push_back({true, t});
}
template <class A>
  requires(!std::is_convertible_v<const A&, const Tensor&> && !std::is_convertible_v<const A&, const TensorList&>)
void collect_arg(std::vector<ArgSlot>& out, const A&) {
  out.push_back({false, Tensor()});
}

template <class T>
std::string class_name() {
  const char* mangled = typeid(T).name();
#if defined(__GNUG__)
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  return s;
#else
  return std::string(mangled);
#endif
}
// The node's name, LibTorch's: "torch::autograd::CppNode<" + the demangled class name + ">".
template <class T>
const char* function_name() {
  static const std::string name = [] { return "torch::autograd::CppNode<" + class_name<T>() + ">"; }();
  return name.c_str();
}

}  // namespace detail

// CRTP base of a custom function: T has static forward(AutogradContext*, args...) returning a
// Tensor or a tensor_list, and static backward(AutogradContext*, tensor_list) returning one
// gradient per argument.
template <class T>
struct Function {
  template <class X = T, class... Args>
  static auto apply(Args&&... args) {
    using Out = decltype(X::forward(static_cast<AutogradContext*>(nullptr), std::forward<Args>(args)...));
    static_assert(std::is_same_v<std::decay_t<Out>, Tensor> || std::is_same_v<std::decay_t<Out>, TensorList>,
                  "autograd::Function: forward must return a Tensor or a tensor_list");
    const char* name = nabla::autograd::detail::function_name<T>();
    auto ctx = std::make_shared<AutogradContext>();
    std::vector<detail::ArgSlot> slots;
    (detail::collect_arg(slots, args), ...);

    TensorList inputs;
    std::vector<size_t> input_slot;  // slot of each recorded input
    bool any_grad = GradMode::is_enabled();
    bool wants = false;
    for (size_t i = 0; i < slots.size(); ++i) {
      bool need = slots[i].is_tensor && input_requires_grad(slots[i].tensor);
      if (slots[i].is_tensor) {
        ctx->needs_input_grad_.push_back(any_grad && need);
        inputs.push_back(slots[i].tensor);
        input_slot.push_back(i);
      }
      wants = wants || need;
    }
    wants = wants && any_grad;

    Out result = [&] {
      NoGradGuard no_grad;
      return X::forward(ctx.get(), std::forward<Args>(args)...);
    }();
    TensorList outputs;
    if constexpr (std::is_same_v<std::decay_t<Out>, Tensor>) outputs = {result};
    else outputs = result;

    // An output that is an input (returned as is) becomes an alias, so the input keeps its history.
    for (Tensor& o : outputs) {
      if (!o.defined()) continue;
      for (const Tensor& in : inputs)
        if (in.defined() && o.is_same(in)) {
          o = nabla::detail::make_tensor(o.storage(), o.storage_offset(), o.sizes(), o.strides(), o.dtype());
          break;
        }
    }
    for (const Tensor& t : ctx->to_save_) {
      bool is_output = false;
      for (const Tensor& o : outputs) is_output = is_output || (t.defined() && o.defined() && t.is_same(o));
      ctx->saved_.emplace_back(t, is_output);
    }
    ctx->to_save_.clear();

    if (wants) connect(name, ctx, outputs, inputs, input_slot, slots.size());
    if constexpr (std::is_same_v<std::decay_t<Out>, Tensor>) return outputs[0];
    else return outputs;
  }

 private:
  static bool differentiable(const AutogradContext& ctx, const Tensor& o) {
    if (!o.defined() || !o.is_floating_point()) return false;
    for (const TensorImpl* p : ctx.non_differentiable_)
      if (p == o.impl()) return false;
    return true;
  }

  // backward's results, checked and mapped to the recorded inputs.
  static TensorList call_backward(const std::shared_ptr<AutogradContext>& ctx, const TensorList& grads,
                                  const std::vector<size_t>& input_slot, size_t num_slots) {
    TensorList g = T::backward(ctx.get(), grads);
    const char* name = nabla::autograd::detail::function_name<T>();
    // Extra trailing undefined gradients are dropped (an argument left to its default), as LibTorch does.
    if (g.size() > num_slots) {
      bool all_undefined = true;
      for (size_t i = num_slots; i < g.size(); ++i) all_undefined = all_undefined && !g[i].defined();
      if (all_undefined) g.resize(num_slots);
    }
    NABLA_CHECK(g.size() == num_slots, AutogradError, "autograd::Function ", name,
                ": backward returned an incorrect number of gradients (expected ", num_slots, ", got ", g.size(), ")");
    std::vector<bool> is_input(num_slots, false);
    for (size_t s : input_slot) is_input[s] = true;
    for (size_t i = 0; i < num_slots; ++i)
      NABLA_CHECK(is_input[i] || !g[i].defined(), AutogradError, "autograd::Function ", name,
                  ": backward returned a defined gradient at position ", i,
                  ", but the corresponding forward argument is not a tensor");
    TensorList out;
    out.reserve(input_slot.size());
    for (size_t s : input_slot) out.push_back(g[s]);
    return out;
  }

  static void connect(const char* name, const std::shared_ptr<AutogradContext>& ctx, TensorList& outputs,
                      const TensorList& inputs, const std::vector<size_t>& input_slot, size_t num_slots) {
    std::vector<size_t> diff;  // the outputs that get a gradient
    for (size_t i = 0; i < outputs.size(); ++i)
      if (differentiable(*ctx, outputs[i])) diff.push_back(i);
    if (diff.empty()) return;

    if (outputs.size() == 1) {
      record(name, outputs[0], inputs,
             [ctx, input_slot, num_slots](const Tensor& g, NeedsGrad) {
               return call_backward(ctx, TensorList{g}, input_slot, num_slots);
             });
      return;
    }
    // Several outputs, one backward: the node's output is all differentiable outputs, flattened
    // and joined; each is re-made as a view of it, so the engine hands the node the gradients of
    // every output together (zeros for one that was not used).
    struct OutMeta {
      Shape shape;
      DType dtype = kFloat32;
      Device device = Device::cpu();
      bool defined = false;
      bool differentiable = false;
      int64_t offset = 0;
    };
    std::vector<OutMeta> meta(outputs.size());
    TensorList parts;
    int64_t at = 0;
    const Tensor& first = outputs[diff[0]];
    for (size_t i = 0; i < outputs.size(); ++i) {
      const Tensor& o = outputs[i];
      if (!o.defined()) continue;
      meta[i] = OutMeta{o.sizes(), o.dtype(), o.device(), true, false, 0};
    }
    for (size_t i : diff) {
      const Tensor& o = outputs[i];
      NABLA_CHECK(o.dtype() == first.dtype() && o.device() == first.device(), AutogradError, "autograd::Function ",
                  name, ": outputs that take a gradient must share a dtype and device, got ",
                  nabla::detail::describe(first), " and ", nabla::detail::describe(o));
      meta[i].differentiable = true;
      meta[i].offset = at;
      at += o.numel();
      parts.push_back(o.reshape({-1}));
    }
    Tensor joined = [&] {
      NoGradGuard no_grad;
      return cat(parts, 0);
    }();
    record(name, joined, inputs, [ctx, input_slot, num_slots, meta](const Tensor& g, NeedsGrad) {
      TensorList grads(meta.size());
      for (size_t i = 0; i < meta.size(); ++i) {
        const OutMeta& m = meta[i];
        if (m.differentiable) {
          int64_t n = 1;
          for (int64_t s : m.shape) n *= s;
          grads[i] = g.narrow(0, m.offset, n).reshape(m.shape);
        } else if (m.defined && ctx->materialize_grads_) {
          grads[i] = zeros(m.shape, TensorOptions().dtype(m.dtype).device(m.device));
        }
      }
      return call_backward(ctx, grads, input_slot, num_slots);
    });
    for (size_t i : diff) outputs[i] = joined.narrow(0, meta[i].offset, outputs[i].numel()).reshape(meta[i].shape);
  }
};

}  // namespace autograd
}  // namespace nabla
