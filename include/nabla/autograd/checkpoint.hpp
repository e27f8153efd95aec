#pragma once
// Gradient checkpointing with PyTorch's non-reentrant semantics (torch.utils.checkpoint,
// use_reentrant=False): the region runs normally and builds its graph, but every tensor an op in
// it saves for backward is replaced by a handle (saved-tensor hooks, autograd/node.hpp). The
// first time backward needs one, the region runs again from its saved inputs, with the random
// generator and the autocast state it first ran with, and the recomputed tensors are handed out
// in the order they were saved. So only the region's inputs stay in memory between forward and
// backward; gradients are bit-identical to an ordinary run (the same ops, in the same order, on
// the same numbers), parameters used inside get theirs, autograd::grad works, and regions nest.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "../amp/autocast.hpp"
#include "../core/random.hpp"
#include "../ops/copy.hpp"
#include "node.hpp"
#include "trace.hpp"

namespace nabla {
namespace autograd {
namespace detail {

// One checkpointed call: what it needs to run again, and what the rerun saved.
class CheckpointFrame : public std::enable_shared_from_this<CheckpointFrame> {
 public:
  CheckpointFrame(std::function<void(const std::vector<Tensor>&)> run, bool preserve_rng_state)
      : run_(std::move(run)), preserve_rng_(preserve_rng_state) {}

  // Called once, before the region first runs: keeps the inputs (through the enclosing
  // checkpoint's hooks, if any, so nested regions keep nothing either) and the states.
  void save_inputs(const std::vector<Tensor>& inputs) {
    for (const Tensor& t : inputs) {
      inputs_.emplace_back(t, false);
      requires_grad_.push_back(t.defined() && t.requires_grad());
    }
    if (preserve_rng_) rng_ = default_generator().state();
    autocast_ = amp::autocast_snapshot();
  }

  // The pack hook of the first run: a handle per saved tensor, numbered in saving order.
  class Packer final : public SavedTensorHooks {
   public:
    explicit Packer(CheckpointFrame& f) : frame_(f) {}
    std::shared_ptr<SavedHandle> pack(const Tensor&, bool) override {
      return std::make_shared<Handle>(frame_.shared_from_this(), frame_.saved_count_++);
    }

   private:
    CheckpointFrame& frame_;
  };

 private:
  // Stands for the index-th tensor the region saved; recomputes the region on first unpack.
  class Handle final : public SavedHandle {
   public:
    Handle(std::shared_ptr<CheckpointFrame> frame, size_t index) : frame_(std::move(frame)), index_(index) {}
    Tensor unpack() override {
      if (value_.defined()) return value_;  // a second backward (retain_graph) finds it here
      value_ = frame_->take(index_);
      return value_;
    }

   private:
    std::shared_ptr<CheckpointFrame> frame_;
    size_t index_;
    Tensor value_;
  };

  // The pack hook of the rerun: keeps each saved tensor (as the op would have) in order.
  class Recorder final : public SavedTensorHooks {
   public:
    explicit Recorder(std::vector<Tensor>& out) : out_(out) {}
    std::shared_ptr<SavedHandle> pack(const Tensor& t, bool is_output) override {
      // detached: the value is what backward needs; the rerun's own graph is thrown away
      out_.push_back(is_output ? ::nabla::detail::make_tensor(t.storage(), t.storage_offset(), t.sizes(), t.strides(),
                                                              t.dtype())
                               : t.detach());
      return nullptr;
    }

   private:
    std::vector<Tensor>& out_;
  };

  Tensor take(size_t index) {
    NABLA_CHECK(!GradMode::is_enabled(), AutogradError,
                "checkpoint: backward with create_graph=true (a double backward) through a checkpointed region is not "
                "supported; run the region without checkpoint for higher-order gradients");
    if (!recomputed_) recompute();
    NABLA_CHECK(index < values_.size() && values_[index].defined(), AutogradError,
                "checkpoint: saved tensor ", index, " of the region is no longer available");
    return std::move(values_[index]);
  }

  void recompute() {
    std::vector<Tensor> inputs;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      Tensor t = inputs_[i].unpack();  // version-checked: an input changed in place is an error
      if (t.defined()) {
        t = t.detach();
        if (requires_grad_[i]) t.requires_grad_(true);
      }
      inputs.push_back(t);
    }
    std::vector<Tensor> values;
    {
      EnableGradGuard grad;  // backward runs without grad mode; the rerun must record as the first run did
      auto rng_now = default_generator().state();
      if (preserve_rng_) default_generator().set_state(rng_);
      struct RestoreRng {
        bool on;
        std::pair<uint64_t, uint64_t> state;
        ~RestoreRng() {
          if (on) default_generator().set_state(state);
        }
      } restore_rng{preserve_rng_, rng_now};
      AutocastAs autocast(autocast_);
      struct Recomputing {
        bool prev = checkpoint_recomputing();
        Recomputing() { checkpoint_recomputing() = true; }
        ~Recomputing() { checkpoint_recomputing() = prev; }
      } recomputing;
      Recorder recorder(values);
      SavedTensorHooksGuard hooks(&recorder);
      run_(inputs);
    }
    NABLA_CHECK(values.size() == saved_count_, AutogradError, "checkpoint: the recomputed region saved ", values.size(),
                " tensors for backward, the first run ", saved_count_,
                "; the function must compute the same thing both times (same ops, no branching on changed state)");
    values_ = std::move(values);
    recomputed_ = true;
  }

  // The autocast state of the first run while it lives (the engine switched autocast off).
  class AutocastAs {
   public:
    explicit AutocastAs(const amp::AutocastSnapshot& s) : saved_(amp::detail::state()) {
      auto& st = amp::detail::state();
      st.enabled = s.enabled;
      st.dtype = s.dtype;
      st.cache_enabled = s.cache_enabled;
      st.excluded = {false, false};
      ++st.nesting;
      st.refresh();
    }
    ~AutocastAs() {
      auto& st = amp::detail::state();
      if (--st.nesting == 0) amp::clear_autocast_cache();
      const int nesting = st.nesting;
      st = saved_;
      st.nesting = nesting;
    }
    AutocastAs(const AutocastAs&) = delete;
    AutocastAs& operator=(const AutocastAs&) = delete;

   private:
    amp::detail::AutocastState saved_;
  };

  std::function<void(const std::vector<Tensor>&)> run_;
  bool preserve_rng_;
  std::vector<SavedTensor> inputs_;
  std::vector<bool> requires_grad_;
  std::pair<uint64_t, uint64_t> rng_{0, 0};
  amp::AutocastSnapshot autocast_;
  size_t saved_count_ = 0;
  bool recomputed_ = false;
  std::vector<Tensor> values_;
};

template <class R>
inline constexpr bool is_checkpoint_result_v = std::is_same_v<R, Tensor> || std::is_same_v<R, std::vector<Tensor>>;

// Runs call() (which calls fn on `inputs`) as a checkpointed region and returns its result.
template <class Call>
auto run_checkpointed(Call call, const std::vector<Tensor>& inputs, bool preserve_rng_state) {
  // nothing will run backward, or a trace (ONNX export) records the forward: just run it
  if (!GradMode::is_enabled() || trace::detail::state().tracer != nullptr) return call(inputs);
  auto frame = std::make_shared<CheckpointFrame>([call](const std::vector<Tensor>& in) { (void)call(in); },
                                                 preserve_rng_state);
  frame->save_inputs(inputs);
  CheckpointFrame::Packer packer(*frame);
  SavedTensorHooksGuard hooks(&packer);
  return call(inputs);
}

}  // namespace detail

// torch.utils.checkpoint.checkpoint(fn, *inputs, use_reentrant=False): fn(inputs) -> Tensor or
// std::vector<Tensor>. fn runs again during backward, so whatever it captures must still be
// alive then (capture modules by std::shared_ptr or by value, not references to locals).
// preserve_rng_state: the rerun draws the same random numbers (dropout masks) as the first
// run, on the CPU and CUDA alike (nabla's generator is one counter-based stream for both).
// Under NoGradGuard it just runs fn.
//   Tensor h = nabla::checkpoint([block](const std::vector<Tensor>& in) { return block->forward(in[0]); }, {x});
template <class F>
  requires std::is_invocable_v<const F&, const std::vector<Tensor>&> &&
           detail::is_checkpoint_result_v<std::invoke_result_t<const F&, const std::vector<Tensor>&>>
auto checkpoint(F fn, const std::vector<Tensor>& inputs, bool preserve_rng_state = true) {
  return detail::run_checkpointed([fn = std::move(fn)](const std::vector<Tensor>& in) { return fn(in); }, inputs,
                                  preserve_rng_state);
}

// The variadic form: checkpoint(fn, x, y) calls fn(x, y) (fn returns a Tensor or a vector).
template <class F, class... Ts>
  requires(sizeof...(Ts) > 0 && (std::is_same_v<Ts, Tensor> && ...) && std::is_invocable_v<const F&, const Ts&...>)
auto checkpoint(F fn, const Ts&... inputs) {
  return detail::run_checkpointed(
      [fn = std::move(fn)](const std::vector<Tensor>& in) {
        return [&]<size_t... I>(std::index_sequence<I...>) { return fn(in[I]...); }(std::index_sequence_for<Ts...>{});
      },
      std::vector<Tensor>{inputs...}, true);
}

}  // namespace autograd

using autograd::checkpoint;

}  // namespace nabla
