#pragma once
// The backward engine: finds the nodes reachable from the roots, counts their dependencies,
// runs each node once all gradients for its output have arrived (newest first), and hands each
// input its gradient in the input's own shape, dtype and device. Also nabla::autograd::grad,
// which returns gradients instead of accumulating them into .grad().

#include <atomic>
#include <functional>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../amp/autocast.hpp"
#include "../ops/factory.hpp"
#include "../ops/operators.hpp"
#include "../ops/reduce.hpp"
#include "node.hpp"

namespace nabla {
namespace autograd {

inline TensorList AccumulateGrad::apply(const Tensor& grad) {
  auto& meta = variable.impl()->autograd_meta();
  if (!meta.grad.defined()) {
    if (GradMode::is_enabled()) {
      meta.grad = grad;  // create_graph: keep the history so the gradient can be differentiated
    } else if (grad.use_count() == 1 && grad.is_contiguous() && grad.storage().use_count() == 1 &&
               grad.sizes() == variable.sizes()) {
      meta.grad = grad.detach();  // nobody else holds it: take it without copying
    } else {
      meta.grad = grad.detach().clone();
    }
  } else if (GradMode::is_enabled() || meta.grad.requires_grad()) {
    meta.grad = meta.grad + grad;
  } else {
    meta.grad.add_(grad);
  }
  if (!meta.post_accumulate_grad_hooks.empty()) {
    auto hooks = meta.post_accumulate_grad_hooks;  // a hook may remove itself
    for (auto& [id, hook] : hooks) hook(variable);
  }
  return {};
}

// Runs `hook(leaf)` each time a gradient has been accumulated into leaf.grad() by backward
// (torch.Tensor.register_post_accumulate_grad_hook); returns a handle for
// remove_post_accumulate_grad_hook. Only leaves that require grad accumulate gradients.
inline uint64_t register_post_accumulate_grad_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook) {
  ::nabla::detail::check_defined(leaf, "register_post_accumulate_grad_hook");
  NABLA_CHECK(leaf.requires_grad() && leaf.is_leaf(), AutogradError,
              "register_post_accumulate_grad_hook: only a leaf tensor that requires grad accumulates gradients, got ",
              ::nabla::detail::describe(leaf), leaf.requires_grad() ? " (not a leaf)" : " (requires_grad is false)");
  static std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id++;
  leaf.impl()->autograd_meta().post_accumulate_grad_hooks.emplace_back(id, std::move(hook));
  return id;
}
inline void remove_post_accumulate_grad_hook(const Tensor& leaf, uint64_t handle) {
  if (!leaf.defined() || !leaf.impl()->autograd) return;
  auto& hooks = leaf.impl()->autograd->post_accumulate_grad_hooks;
  std::erase_if(hooks, [&](const auto& h) { return h.first == handle; });
}

namespace detail {
// The callbacks queued during the backward pass running on this thread (null: none running).
inline std::vector<std::function<void()>>*& backward_callbacks() {
  thread_local std::vector<std::function<void()>>* callbacks = nullptr;
  return callbacks;
}
}  // namespace detail

// Queues `callback` to run once the backward pass now running on this thread has finished
// (PyTorch's Variable._execution_engine.queue_callback; DistributedDataParallel waits for its
// all-reduces there). Outside a backward pass it is an error.
inline void queue_callback(std::function<void()> callback) {
  auto* callbacks = detail::backward_callbacks();
  NABLA_CHECK(callbacks != nullptr, AutogradError, "autograd::queue_callback: no backward pass is running on this thread");
  callbacks->push_back(std::move(callback));
}

namespace detail {

// Brings a gradient to the shape, dtype and device its input had in the forward pass.
inline Tensor fit_gradient(const Tensor& g, const InputMeta& meta, const Node& node, size_t i) {
  Tensor r = g;
  if (r.sizes() != meta.shape) {
    NABLA_CHECK(is_expandable_to(meta.shape, r.sizes()), AutogradError, "backward: ", node.name(), " returned a gradient of shape ",
                shape_str(r.sizes()), " for input ", i, " of shape ", shape_str(meta.shape));
    r = sum_to(r, meta.shape);
  }
  if (r.device() != meta.device || r.dtype() != meta.dtype) r = r.to(meta.device, meta.dtype);
  return r;
}

struct ByNewest {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

}  // namespace detail

// Runs backward from `roots` (with gradients `grad_roots`; undefined means ones for a scalar).
// With `inputs`, only the graph needed to reach them runs and their gradients are returned
// instead of being accumulated into .grad().
inline TensorList run_backward(const TensorList& roots, const TensorList& grad_roots, bool retain_graph, bool create_graph,
                               const TensorList* inputs = nullptr, bool allow_unused = false) {
  NABLA_CHECK(roots.size() == grad_roots.size(), ValueError, "backward: got ", roots.size(), " outputs but ",
              grad_roots.size(), " gradients");
  std::unordered_map<Node*, Tensor> buffers;
  std::vector<std::shared_ptr<Node>> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    ::nabla::detail::check_defined(r, "backward");
    NABLA_CHECK(r.requires_grad(), AutogradError, "backward: output ", i, " (", ::nabla::detail::describe(r),
                ") does not require grad and has no grad_fn; did you forget requires_grad_() or run under NoGradGuard?");
    Tensor g = grad_roots[i];
    if (!g.defined()) {
      NABLA_CHECK(r.numel() == 1, AutogradError, "backward: a gradient can only be created implicitly for a scalar output, but ",
                  "output ", i, " is ", ::nabla::detail::describe(r), "; pass a gradient tensor");
      g = ones(r.sizes(), r.options());
    } else {
      NABLA_CHECK(g.sizes() == r.sizes(), ShapeError, "backward: gradient ", ::nabla::detail::describe(g),
                  " does not match output ", ::nabla::detail::describe(r));
    }
    std::shared_ptr<Node> n = gradient_edge(r);
    auto it = buffers.find(n.get());
    if (it == buffers.end()) buffers.emplace(n.get(), g);
    else it->second = it->second + g;
    root_nodes.push_back(std::move(n));
  }

  // Discover the graph and count, for every node, the edges that will deliver a gradient.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& n : root_nodes)
    if (seen.insert(n.get()).second) stack.push_back(n.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& nx : n->next) {
      if (!nx) continue;
      ++deps[nx.get()];
      if (seen.insert(nx.get()).second) stack.push_back(nx.get());
    }
  }

  // grad(): where each requested gradient is captured, and which nodes must run to get there.
  std::unordered_map<Node*, std::vector<size_t>> capture_at;
  std::unordered_set<Node*> needed;
  TensorList captured;
  if (inputs) {
    captured.resize(inputs->size());
    std::vector<std::shared_ptr<Node>> keep_alive;
    for (size_t i = 0; i < inputs->size(); ++i) {
      const Tensor& t = (*inputs)[i];
      NABLA_CHECK(t.defined() && t.requires_grad(), AutogradError, "grad: input ", i, " does not require grad");
      auto n = gradient_edge(t);
      capture_at[n.get()].push_back(i);
      keep_alive.push_back(n);
    }
    // A node is needed if a capture point is reachable from it: a post-order walk over the DAG
    // with an explicit stack (a recursive walk overflows the call stack on long chains). A node
    // is finished once all its producers are; memo holds every node seen, true once it is known
    // to reach a capture point.
    std::unordered_map<Node*, bool> memo;
    std::vector<std::pair<Node*, size_t>> walk;  // node, index of the next edge to visit
    for (auto& root : root_nodes) {
      if (!memo.emplace(root.get(), false).second) continue;
      walk.emplace_back(root.get(), 0);
      while (!walk.empty()) {
        Node* n = walk.back().first;
        size_t& i = walk.back().second;
        if (i < n->next.size()) {
          Node* nx = n->next[i++].get();
          if (nx && memo.emplace(nx, false).second) walk.emplace_back(nx, 0);  // may invalidate i
          continue;
        }
        bool r = capture_at.count(n) > 0;
        for (auto& nx : n->next)
          if (nx && memo.find(nx.get())->second) r = true;
        memo[n] = r;
        walk.pop_back();
      }
    }
    for (auto& [n, r] : memo)
      if (r) needed.insert(n);
  }

  std::priority_queue<Node*, std::vector<Node*>, detail::ByNewest> ready;
  for (auto& n : root_nodes)
    if (deps[n.get()] == 0) {
      ready.push(n.get());
      deps[n.get()] = -1;  // queued
    }
  // Hands node's gradients to its producers; a producer runs once all its edges reported.
  auto deliver = [&](Node* node, const TensorList& grads) {
    for (size_t i = 0; i < node->next.size(); ++i) {
      Node* nx = node->next[i].get();
      if (!nx) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor g = detail::fit_gradient(grads[i], node->inputs[i], *node, i);
        auto it = buffers.find(nx);
        if (it == buffers.end()) buffers.emplace(nx, std::move(g));
        else it->second = it->second + g;
      }
      if (--deps[nx] == 0) {
        ready.push(nx);
        deps[nx] = -1;
      }
    }
  };

  std::vector<std::function<void()>> callbacks;
  struct CallbackScope {
    std::vector<std::function<void()>>*& slot;
    std::vector<std::function<void()>>* prev;
    ~CallbackScope() { slot = prev; }
  } callback_scope{detail::backward_callbacks(), detail::backward_callbacks()};
  detail::backward_callbacks() = &callbacks;

  AutoGradMode mode(create_graph);
  // Backward ops run in the dtypes autocast chose for the forward ones, not cast again (PyTorch
  // recommends running backward outside autocast; here it makes no difference where it runs).
  amp::detail::AutocastExcluded no_autocast;
  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Tensor grad;
    if (auto b = buffers.find(node); b != buffers.end()) {
      grad = std::move(b->second);
      buffers.erase(b);
    }
    if (!grad.defined() || (inputs && !needed.count(node) && !capture_at.count(node))) {
      deliver(node, {});  // nothing flows through here
      continue;
    }
    if (inputs) {
      auto c = capture_at.find(node);
      if (c != capture_at.end()) {
        for (size_t i : c->second) captured[i] = grad;
        if (dynamic_cast<AccumulateGrad*>(node)) continue;  // grad() never writes .grad()
      }
      if (!needed.count(node)) {
        deliver(node, {});
        continue;
      }
    }
    if (auto kept = node->retained.lock()) {
      Tensor owner(kept);
      auto& m = owner.impl()->autograd_meta();
      m.grad = m.grad.defined() ? m.grad + grad : (create_graph ? grad : grad.detach());
    }

    TensorList grads;
    {
      Node*& current = current_node();
      struct Restore {
        Node*& slot;
        Node* prev;
        ~Restore() { slot = prev; }
      } restore{current, current};
      current = node;
      grads = node->apply(grad);
    }
    if (!retain_graph) node->release_saved();
    deliver(node, grads);
  }
  for (size_t i = 0; i < callbacks.size(); ++i) {  // a callback may queue another
    auto cb = std::move(callbacks[i]);
    cb();
  }

  if (inputs) {
    for (size_t i = 0; i < captured.size(); ++i) {
      NABLA_CHECK(captured[i].defined() || allow_unused, AutogradError, "grad: input ", i,
                  " was not used to compute the outputs; pass allow_unused=true to get an undefined gradient for it");
      if (captured[i].defined() && !create_graph) captured[i] = captured[i].detach();
    }
  }
  return captured;
}

// Gradients of outputs with respect to inputs, returned rather than accumulated (torch.autograd.grad).
inline TensorList grad(const TensorList& outputs, const TensorList& inputs, const TensorList& grad_outputs = {},
                       std::optional<bool> retain_graph = std::nullopt, bool create_graph = false, bool allow_unused = false) {
  TensorList go = grad_outputs;
  if (go.empty()) go.resize(outputs.size());
  return run_backward(outputs, go, retain_graph.value_or(create_graph), create_graph, &inputs, allow_unused);
}

}  // namespace autograd

inline void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const {
  autograd::run_backward({*this}, {gradient}, retain_graph || create_graph, create_graph);
}

}  // namespace nabla

