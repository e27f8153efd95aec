#pragma once
// The autograd graph. Every differentiable op that sees an input requiring grad records one
// Node: edges to the nodes that produced its inputs, the inputs' metadata, and its vjp as a
// lambda written in nabla ops (so create_graph gives higher-order gradients for free).
// Each node has exactly one output; ops with several outputs are built from single-output ones.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"
#include "grad_mode.hpp"

namespace nabla {
namespace autograd {

struct InputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

struct Node : std::enable_shared_from_this<Node> {
  std::vector<std::shared_ptr<Node>> next;  // producer of input i; null if input i needs no grad
  std::vector<InputMeta> inputs;            // what the gradient for input i must look like
  uint64_t sequence_nr = 0;                 // creation order; the engine runs newer nodes first
  std::weak_ptr<TensorImpl> retained;       // non-leaf output that asked for retain_grad()

  // Frees a chain of nodes that die with this one iteratively: the default destructor would
  // recurse once per node (a 20000-op graph overflows the stack under ASan).
  virtual ~Node() {
    std::vector<std::shared_ptr<Node>> dying;
    auto take_edges = [&dying](Node& n) {
      for (auto& e : n.next)
        if (e.use_count() == 1) dying.push_back(std::move(e));
      n.next.clear();
    };
    take_edges(*this);
    while (!dying.empty()) {
      std::shared_ptr<Node> n = std::move(dying.back());
      dying.pop_back();
      n->release_saved();  // saved inputs co-own their producers; drop them before counting owners
      take_edges(*n);
    }  // n dies here without edges, so its destructor does not recurse
  }
  virtual const char* name() const = 0;
  // Renames the node (a static string): an op that reuses another's recording under its own name.
  virtual void set_name(const char* /*name*/) {}
  // Gradients for each input given the gradient of the output (undefined = no gradient).
  virtual TensorList apply(const Tensor& grad_output) = 0;
  // Drops saved tensors after a backward pass without retain_graph.
  virtual void release_saved() {}
  virtual bool released() const { return false; }
  bool needs_input_grad(size_t i) const { return i < next.size() && next[i] != nullptr; }

  static uint64_t next_sequence_nr() {
    static std::atomic<uint64_t> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }
};

// Which inputs of the node want a gradient; passed to every backward lambda so it can skip work.
class NeedsGrad {
 public:
  explicit NeedsGrad(const Node& n) : node_(n) {}
  bool operator[](size_t i) const { return node_.needs_input_grad(i); }

 private:
  const Node& node_;
};

// Leaves: the sink that sums incoming gradients into tensor.grad().
struct AccumulateGrad final : Node {
  Tensor variable;
  explicit AccumulateGrad(Tensor v) : variable(std::move(v)) {}
  const char* name() const override { return "AccumulateGrad"; }
  TensorList apply(const Tensor& grad) override;  // defined in engine.hpp (needs ops)
};

// The node currently running its backward; lets saved outputs reconnect to their producer
// when a higher-order graph is built.
inline Node*& current_node() {
  thread_local Node* node = nullptr;
  return node;
}

// Saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks): while a SavedTensorHooks object
// is installed on this thread (SavedTensorHooksGuard), every tensor an op saves for backward is
// handed to its pack(), and the op keeps only the handle it returns; unpack() gives the tensor
// back when backward needs it. Checkpointing uses this to keep nothing of a region's
// activations and recompute them on first use (autograd/checkpoint.hpp).
struct SavedHandle {
  virtual ~SavedHandle() = default;
  virtual Tensor unpack() = 0;
};
class SavedTensorHooks {
 public:
  virtual ~SavedTensorHooks() = default;
  // `is_output`: t is the output of the op saving it (see SavedTensor). Null: keep t as usual.
  virtual std::shared_ptr<SavedHandle> pack(const Tensor& t, bool is_output) = 0;
};
inline SavedTensorHooks*& current_saved_tensor_hooks() {
  thread_local SavedTensorHooks* hooks = nullptr;
  return hooks;
}
// Installs `hooks` for its lifetime (nullptr: none); the previous hooks come back after.
class SavedTensorHooksGuard {
 public:
  explicit SavedTensorHooksGuard(SavedTensorHooks* hooks) : prev_(current_saved_tensor_hooks()) {
    current_saved_tensor_hooks() = hooks;
  }
  ~SavedTensorHooksGuard() { current_saved_tensor_hooks() = prev_; }
  SavedTensorHooksGuard(const SavedTensorHooksGuard&) = delete;
  SavedTensorHooksGuard& operator=(const SavedTensorHooksGuard&) = delete;

 private:
  SavedTensorHooks* prev_;
};

// True while a checkpointed region is being run again to recompute what backward needs
// (autograd/checkpoint.hpp). Ops with side effects consult it: batch_norm does not update its
// running statistics a second time for the same batch.
inline bool& checkpoint_recomputing() {
  thread_local bool recomputing = false;
  return recomputing;
}

// A tensor kept for the backward pass, with the version it had when saved. Outputs are kept
// as a detached alias (no reference cycle through their own grad_fn) and re-attached to the
// running node on unpack when create_graph is on. Under saved-tensor hooks only the hook's
// handle is kept.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, bool is_output) : is_output_(is_output) {
    if (!t.defined()) return;
    if (SavedTensorHooks* hooks = current_saved_tensor_hooks()) {
      handle_ = hooks->pack(t, is_output);
      if (handle_) return;
    }
    version_ = t._version();
    if (is_output) {
      data_ = detail::make_tensor(t.storage(), t.storage_offset(), t.sizes(), t.strides(), t.dtype());
    } else {
      data_ = t;
    }
  }

  Tensor unpack() const {
    Tensor data = data_;
    if (handle_) {
      data = handle_->unpack();  // the hook checks what it hands back
    } else {
      if (!data.defined()) return data;
      if (data._version() != version_) {
        Node* n = current_node();
        throw AutogradError(detail::cat(
            "nabla::backward: a tensor needed for the gradient of ", n ? n->name() : "an op",
            " was modified by an in-place operation: the saved ", detail::describe(data), " tensor is at version ",
            data._version(), ", expected version ", version_,
            ". Use an out-of-place op, or clone() the tensor before changing it."));
      }
    }
    if (is_output_ && GradMode::is_enabled() && current_node()) {
      Tensor t = detail::make_tensor(data.storage(), data.storage_offset(), data.sizes(), data.strides(), data.dtype());
      auto& meta = t.impl()->autograd_meta();
      meta.requires_grad = true;
      meta.grad_fn = current_node()->shared_from_this();
      return t;
    }
    return data;
  }
  bool defined() const { return data_.defined() || handle_ != nullptr; }

 private:
  Tensor data_;
  std::shared_ptr<SavedHandle> handle_;
  uint32_t version_ = 0;
  bool is_output_ = false;
};

inline SavedTensor save(const Tensor& input) { return SavedTensor(input, false); }
inline SavedTensor save_output(const Tensor& output) { return SavedTensor(output, true); }

template <class F>
struct LambdaNode final : Node {
  const char* name_;
  std::optional<F> fn;
  LambdaNode(const char* name, F f) : name_(name), fn(std::move(f)) {}
  const char* name() const override { return name_; }
  void set_name(const char* name) override { name_ = name; }
  TensorList apply(const Tensor& grad) override {
    if (!fn) {
      throw AutogradError(detail::cat(
          "nabla::backward: trying to backward through ", name_,
          " a second time, but its saved tensors were freed after the first backward. Pass retain_graph=true to "
          "the first backward() if you need to run it again."));
    }
    return (*fn)(grad, NeedsGrad(*this));
  }
  void release_saved() override { fn.reset(); }
  bool released() const override { return !fn.has_value(); }
};

inline bool input_requires_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }

// True when an op on these inputs must record history.
template <class... Ts>
bool needs_grad(const Ts&... inputs) {
  return GradMode::is_enabled() && (input_requires_grad(inputs) || ...);
}
inline bool needs_grad_list(const TensorList& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const auto& t : inputs)
    if (input_requires_grad(t)) return true;
  return false;
}

// The node that receives the gradient of `t`: its grad_fn, or for a leaf its accumulator.
inline std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  if (!input_requires_grad(t)) return nullptr;
  auto& meta = t.impl()->autograd_meta();
  if (meta.grad_fn) return meta.grad_fn;
  if (auto acc = meta.grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(t);
  meta.grad_accumulator = acc;
  return acc;
}

// Connects `out` to a new node whose vjp is `backward(grad, needs)` -> one gradient per input.
template <class Inputs, class F>
void record_node(const char* name, const Tensor& out, const Inputs& inputs, F&& backward) {
  auto node = std::make_shared<LambdaNode<std::decay_t<F>>>(name, std::forward<F>(backward));
  node->sequence_nr = Node::next_sequence_nr();
  node->next.reserve(inputs.size());
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next.push_back(gradient_edge(t));
    if (t.defined()) node->inputs.push_back(InputMeta{t.sizes(), t.dtype(), t.device()});
    else node->inputs.push_back(InputMeta{Shape{}, kFloat32, Device::cpu()});
  }
  auto& meta = out.impl()->autograd_meta();
  meta.grad_fn = std::move(node);
  meta.requires_grad = true;
}

template <class F>
void record(const char* name, const Tensor& out, std::initializer_list<Tensor> inputs, F&& backward) {
  record_node(name, out, inputs, std::forward<F>(backward));
}
template <class F>
void record(const char* name, const Tensor& out, const TensorList& inputs, F&& backward) {
  record_node(name, out, inputs, std::forward<F>(backward));
}

}  // namespace autograd
}  // namespace nabla
