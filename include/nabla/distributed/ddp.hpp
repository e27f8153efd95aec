#pragma once
// nabla::distributed::DistributedDataParallel: PyTorch's DDP for a nabla module.
//
//   nabla::distributed::init_process_group("mpi");
//   auto model = std::make_shared<Net>();
//   nabla::distributed::DistributedDataParallel ddp(model);   // rank 0's weights everywhere
//   auto loss = nabla::nll_loss(ddp.forward(x), y);           // x: this rank's share of the batch
//   loss.backward();                                           // gradients averaged over the ranks
//   optimizer.step();
//
// As PyTorch's Reducer: the parameters that require grad are split into buckets (reverse
// registration order, the first bucket capped at 1 MiB and the others at bucket_cap_mb, one
// dtype and device per bucket). A hook on each parameter copies its gradient into its bucket
// the moment autograd has accumulated it; a bucket whose gradients are all in is all-reduced
// (average) asynchronously on the process group's worker thread while backward goes on, buckets
// launching in order. At the end of backward (an autograd callback) DDP waits for the buckets
// and writes the averages back into .grad(), so the optimizer step sees what a single process
// would on the whole batch. After the first iteration the buckets are rebuilt in the order the
// gradients actually became ready (rank 0's order, broadcast), so the first bucket to fill is
// the first to go.
//
// no_sync() skips the reduction (gradients accumulate locally, and the next synchronised
// backward averages the sum); find_unused_parameters(true) walks the autograd graph after each
// forward and counts the parameters it does not reach as ready (their share is zero; a
// parameter no rank used keeps its .grad() untouched); gradient_as_bucket_view(true) makes each
// .grad() a view into its bucket, saving the copy back and a gradient's worth of memory.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../autograd/engine.hpp"
#include "../data/sampler.hpp"
#include "../nn/module.hpp"
#include "../nn/options.hpp"
#include "collectives.hpp"

namespace nabla {
namespace distributed {

// What the last backward passes cost in communication (DistributedDataParallel::comm_stats).
struct CommStats {
  int64_t iterations = 0;       // synchronised backward passes
  int64_t bytes = 0;            // gradient bytes all-reduced, summed over iterations
  int64_t buckets = 0;          // all-reduces launched
  double wait_seconds = 0;      // time backward's end spent waiting for the all-reduces
};

struct DistributedDataParallelOptions {
  NABLA_ARG(double, bucket_cap_mb) = 25;        // PyTorch's default
  NABLA_ARG(double, first_bucket_cap_mb) = 1;   // dist._DEFAULT_FIRST_BUCKET_BYTES
  NABLA_ARG(bool, broadcast_buffers) = true;    // rank 0's buffers (BatchNorm statistics) before each forward
  NABLA_ARG(bool, find_unused_parameters) = false;
  NABLA_ARG(bool, gradient_as_bucket_view) = false;
};

namespace detail {

// Broadcasts `tensors` from src, one flat message per dtype and device (a CUDA group stays on
// its device: NCCL sends it from there, MPI stages it through host memory).
inline void broadcast_coalesced(const std::vector<Tensor>& tensors, int src) {
  std::vector<std::pair<DType, Device>> groups;
  for (const Tensor& t : tensors)
    if (std::find(groups.begin(), groups.end(), std::make_pair(t.dtype(), t.device())) == groups.end())
      groups.emplace_back(t.dtype(), t.device());
  NoGradGuard no_grad;
  for (const auto& key : groups) {
    auto in_group = [&](const Tensor& t) { return t.dtype() == key.first && t.device() == key.second; };
    std::vector<Tensor> parts;
    for (const Tensor& t : tensors)
      if (in_group(t)) parts.push_back(t.detach().reshape({-1}));
    Tensor flat = cat(parts, 0).contiguous();
    broadcast(flat, src);
    int64_t off = 0;
    for (const Tensor& t : tensors) {
      if (!in_group(t)) continue;
      t.detach().copy_(flat.slice(0, off, off + t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
}

// The leaves (by TensorImpl) the autograd graph of `outputs` reaches.
inline std::unordered_set<const TensorImpl*> reachable_leaves(const std::vector<Tensor>& outputs) {
  std::unordered_set<const TensorImpl*> leaves;
  std::unordered_set<autograd::Node*> seen;
  std::vector<std::shared_ptr<autograd::Node>> stack;
  for (const Tensor& o : outputs) {
    if (!o.defined() || !o.requires_grad()) continue;
    if (o.is_leaf()) {
      leaves.insert(o.impl());
      continue;
    }
    if (auto n = autograd::gradient_edge(o); n && seen.insert(n.get()).second) stack.push_back(n);
  }
  while (!stack.empty()) {
    auto n = stack.back();
    stack.pop_back();
    if (auto* acc = dynamic_cast<autograd::AccumulateGrad*>(n.get())) leaves.insert(acc->variable.impl());
    for (auto& nx : n->next)
      if (nx && seen.insert(nx.get()).second) stack.push_back(nx);
  }
  return leaves;
}

// The tensors in whatever a forward returned (a Tensor, a vector of them, a pair / tuple).
inline void collect_tensors(const Tensor& t, std::vector<Tensor>& out) { out.push_back(t); }
inline void collect_tensors(const std::vector<Tensor>& v, std::vector<Tensor>& out) { out.insert(out.end(), v.begin(), v.end()); }
template <class... Ts>
void collect_tensors(const std::tuple<Ts...>& t, std::vector<Tensor>& out) {
  std::apply([&](const auto&... x) { (collect_tensors(x, out), ...); }, t);
}
template <class A, class B>
void collect_tensors(const std::pair<A, B>& p, std::vector<Tensor>& out) {
  collect_tensors(p.first, out);
  collect_tensors(p.second, out);
}
template <class T>
void collect_tensors(const T&, std::vector<Tensor>&) {}  // anything else holds no tensor we can see

// The bucketed gradient all-reduce (PyTorch's Reducer).
class Reducer {
 public:
  Reducer(std::vector<Tensor> params, std::vector<std::string> names, DistributedDataParallelOptions options)
      : params_(std::move(params)), names_(std::move(names)), options_(options) {
    std::vector<size_t> order(params_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = order.size() - 1 - i;  // reverse registration order
    build_buckets(order);
    for (size_t i = 0; i < params_.size(); ++i)
      hooks_.push_back(autograd::register_post_accumulate_grad_hook(params_[i], [this, i](const Tensor&) { on_grad_ready(i); }));
  }
  ~Reducer() {
    for (size_t i = 0; i < params_.size(); ++i) autograd::remove_post_accumulate_grad_hook(params_[i], hooks_[i]);
  }
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Before a forward: after the first synchronised iteration, rebuild the buckets once.
  void prepare_for_forward() {
    if (!rebuilt_ && iterations_ >= 1) rebuild_buckets();
  }

  // After a forward whose outputs will be back-propagated: arm the hooks (unless no_sync).
  void prepare_for_backward(const std::vector<Tensor>& outputs, bool sync) {
    armed_ = sync && GradMode::is_enabled();
    if (!armed_) return;
    ready_.assign(params_.size(), 0);
    used_.assign(params_.size(), 0);
    for (auto& b : buckets_) {
      b.pending = b.vars.size();
      b.work.reset();
    }
    next_bucket_ = 0;
    finalize_queued_ = false;
    if (options_.find_unused_parameters()) {
      auto reached = reachable_leaves(outputs);
      NABLA_CHECK(!outputs.empty(), ValueError, "distributed::DistributedDataParallel: find_unused_parameters needs the "
                  "forward's outputs, but it returned no tensor DDP can see (return a Tensor, a vector, a pair or a tuple)");
      for (size_t i = 0; i < params_.size(); ++i)
        if (!reached.count(params_[i].impl())) mark_ready(i, /*used=*/false);
    }
  }

  bool armed() const { return armed_; }
  const CommStats& stats() const { return stats_; }
  std::vector<std::vector<size_t>> bucket_indices() const {
    std::vector<std::vector<size_t>> out;
    for (const auto& b : buckets_) out.push_back(b.vars);
    return out;
  }

 private:
  struct Bucket {
    DType dtype = kFloat32;
    Device device = Device::cpu();
    std::vector<size_t> vars;      // parameter indices
    std::vector<int64_t> offsets;  // into flat
    Tensor flat;                   // the gradients, contiguous
    size_t pending = 0;
    WorkHandle work;
  };

  // PyTorch's compute_bucket_assignment_by_size: in `order`, one open bucket per (dtype,
  // device), closed once it reaches its cap (the first cap, then bucket_cap_mb).
  void build_buckets(const std::vector<size_t>& order) {
    buckets_.clear();
    loc_.assign(params_.size(), {0, 0});
    const double first_cap = options_.first_bucket_cap_mb() * 1024 * 1024, cap = options_.bucket_cap_mb() * 1024 * 1024;
    struct Open {
      Bucket b;
      int64_t bytes = 0;
    };
    std::vector<Open> open;
    bool first_closed = false;
    auto close = [&](Open& o) {
      buckets_.push_back(std::move(o.b));
      o = Open{};
    };
    for (size_t i : order) {
      const Tensor& p = params_[i];
      auto it = std::find_if(open.begin(), open.end(), [&](const Open& o) {
        return o.b.dtype == p.dtype() && o.b.device == p.device() && !o.b.vars.empty();
      });
      if (it == open.end()) {
        open.push_back(Open{});
        it = open.end() - 1;
        it->b.dtype = p.dtype();
        it->b.device = p.device();
      }
      it->b.offsets.push_back(it->bytes / static_cast<int64_t>(element_size(p.dtype())));
      it->b.vars.push_back(i);
      it->bytes += p.numel() * static_cast<int64_t>(element_size(p.dtype()));
      if (static_cast<double>(it->bytes) >= (first_closed ? cap : first_cap)) {
        close(*it);
        open.erase(it);
        first_closed = true;
      }
    }
    for (auto& o : open)
      if (!o.b.vars.empty()) close(o);
    for (size_t bi = 0; bi < buckets_.size(); ++bi) {
      Bucket& b = buckets_[bi];
      int64_t n = 0;
      for (size_t k = 0; k < b.vars.size(); ++k) {
        loc_[b.vars[k]] = {bi, k};
        n += params_[b.vars[k]].numel();
      }
      b.flat = zeros({n}, TensorOptions().dtype(b.dtype).device(b.device));
      b.pending = b.vars.size();
    }
  }

  // Once, before the second forward: buckets in the order gradients became ready in the first
  // backward (rank 0's order, so every rank buckets alike).
  void rebuild_buckets() {
    rebuilt_ = true;
    std::vector<int64_t> order(ready_order_.begin(), ready_order_.end());
    std::vector<uint8_t> seen(params_.size(), 0);
    for (int64_t i : order) seen[static_cast<size_t>(i)] = 1;
    for (size_t i = params_.size(); i-- > 0;)
      if (!seen[i]) order.push_back(static_cast<int64_t>(i));
    Tensor t = from_vector(order, {static_cast<int64_t>(order.size())}, kInt64);
    broadcast(t, 0);
    std::vector<size_t> rank0_order;
    for (int64_t v : t.to_vector<int64_t>()) rank0_order.push_back(static_cast<size_t>(v));
    std::vector<Tensor> old_grads;
    if (options_.gradient_as_bucket_view())
      for (const Tensor& p : params_) old_grads.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
    build_buckets(rank0_order);
    if (options_.gradient_as_bucket_view())  // keep the values, point .grad() into the new buckets
      for (size_t i = 0; i < params_.size(); ++i)
        if (old_grads[i].defined()) {
          Tensor v = slot(i);
          NoGradGuard no_grad;
          v.copy_(old_grads[i].reshape({-1}).to(v.device(), v.dtype()));
          params_[i].set_grad(v.view(params_[i].sizes()));
        }
  }

  Tensor slot(size_t i) const {
    const auto [bi, k] = loc_[i];
    const Bucket& b = buckets_[bi];
    return b.flat.slice(0, b.offsets[k], b.offsets[k] + params_[i].numel());
  }

  void on_grad_ready(size_t i) {
    if (!armed_) return;  // no_sync, or a backward DDP's forward did not arm
    NABLA_CHECK(!ready_[i], DistributedError, "distributed::DistributedDataParallel: parameter \"", names_[i],
                "\" received a gradient twice in one backward, or after it was counted unused (run one backward per forward; "
                "with find_unused_parameters, a parameter must not be reached from outside the forward's outputs)");
    mark_ready(i, /*used=*/true);
  }

  void mark_ready(size_t i, bool used) {
    if (!finalize_queued_) {
      finalize_queued_ = true;
      if (used) autograd::queue_callback([this] { finalize(); });
      else pending_finalize_ = true;  // unused ones are marked from forward: queue at the first hook
    } else if (pending_finalize_ && used) {
      pending_finalize_ = false;
      autograd::queue_callback([this] { finalize(); });
    }
    ready_[i] = 1;
    used_[i] = used;
    if (iterations_ == 0) ready_order_.push_back(i);
    Tensor s = slot(i);
    const Tensor& g = params_[i].grad();
    NoGradGuard no_grad;
    if (!used || !g.defined()) {
      s.zero_();
    } else if (!(options_.gradient_as_bucket_view() && g.data_ptr() == s.data_ptr())) {
      s.copy_(g.detach().reshape({-1}).to(s.device(), s.dtype()));
    }
    Bucket& b = buckets_[loc_[i].first];
    if (--b.pending == 0) launch_ready_buckets();
  }

  void launch_ready_buckets() {
    while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) {
      Bucket& b = buckets_[next_bucket_++];
      b.work = all_reduce_async(b.flat, ReduceOp::AVG);
      stats_.bytes += b.flat.numel() * static_cast<int64_t>(element_size(b.dtype));
      ++stats_.buckets;
    }
  }

  // End of backward: wait for the buckets, write the averages into .grad().
  void finalize() {
    armed_ = false;
    pending_finalize_ = false;
    std::vector<std::string> missing;
    for (size_t i = 0; i < params_.size(); ++i)
      if (!ready_[i]) missing.push_back(names_[i]);
    if (!missing.empty()) {
      std::string list;
      for (size_t k = 0; k < missing.size() && k < 8; ++k) list += (k ? ", " : "") + missing[k];
      if (missing.size() > 8) list += ", ...";
      throw DistributedError(::nabla::detail::cat(
          "nabla::distributed::DistributedDataParallel: ", missing.size(), " parameter(s) received no gradient in this backward: ",
          list, ". Either they were not used to compute the loss (construct DistributedDataParallel with "
          "DistributedDataParallelOptions().find_unused_parameters(true)), or the loss was not computed from the outputs of "
          "ddp.forward()"));
    }
    Tensor global_used;
    WorkHandle used_work;
    if (options_.find_unused_parameters()) {
      std::vector<int32_t> u(used_.begin(), used_.end());
      global_used = from_vector(u, {static_cast<int64_t>(u.size())}, kInt32);
      used_work = all_reduce_async(global_used, ReduceOp::MAX);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& b : buckets_) b.work->wait();
    if (used_work) used_work->wait();
    stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++stats_.iterations;
    std::vector<int32_t> used_anywhere = global_used.defined() ? global_used.to_vector<int32_t>() : std::vector<int32_t>();
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!used_anywhere.empty() && !used_anywhere[i]) continue;  // no rank used it: .grad() untouched
      Tensor v = slot(i).view(params_[i].sizes());
      Tensor g = params_[i].grad();
      if (options_.gradient_as_bucket_view() && v.device() == params_[i].device() && v.dtype() == params_[i].dtype()) {
        if (!g.defined() || g.data_ptr() != v.data_ptr()) params_[i].set_grad(v);
      } else if (g.defined() && !g.requires_grad()) {
        g.copy_(v);
      } else {
        params_[i].set_grad(v.clone().to(params_[i].device(), params_[i].dtype()));
      }
    }
    ++iterations_;
  }

  std::vector<Tensor> params_;
  std::vector<std::string> names_;
  DistributedDataParallelOptions options_;
  std::vector<uint64_t> hooks_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, size_t>> loc_;  // parameter -> (bucket, position)
  std::vector<uint8_t> ready_, used_;
  std::vector<size_t> ready_order_;
  size_t next_bucket_ = 0;
  bool armed_ = false, finalize_queued_ = false, pending_finalize_ = false, rebuilt_ = false;
  int64_t iterations_ = 0;
  CommStats stats_;
};

}  // namespace detail

// PyTorch's DistributedDataParallel around `module` (which it registers as "module", so its
// state_dict names carry PyTorch's "module." prefix).
template <class M = nn::Module>
class DistributedDataParallel : public nn::Module {
 public:
  explicit DistributedDataParallel(std::shared_ptr<M> module, DistributedDataParallelOptions options = {})
      : options_(options) {
    NABLA_CHECK(module != nullptr, ValueError, "distributed::DistributedDataParallel: the module is null");
    auto& g = detail::group("DistributedDataParallel");
    module_ = register_module("module", module).ptr();
    std::vector<Tensor> params;
    std::vector<std::string> names;
    for (const auto& [name, p] : module_->named_parameters())
      if (p.requires_grad()) {
        params.push_back(p);
        names.push_back(name);
      }
    verify_same_model(g);
    std::vector<Tensor> state = module_->parameters();
    for (const Tensor& b : module_->buffers()) state.push_back(b);
    if (!state.empty()) detail::broadcast_coalesced(state, 0);
    reducer_ = std::make_unique<detail::Reducer>(std::move(params), std::move(names), options_);
  }
  template <class Impl>
  explicit DistributedDataParallel(const nn::ModuleHolder<Impl>& holder, DistributedDataParallelOptions options = {})
      : DistributedDataParallel(holder.ptr(), options) {}

  std::string type_name() const override { return "DistributedDataParallel"; }

  // The wrapped module's forward on this rank's inputs.
  Tensor forward(const Tensor& input) override {
    if constexpr (requires(M& m) { { m.forward(input) } -> std::convertible_to<Tensor>; }) {
      return forward<const Tensor&>(input);
    } else {
      throw ValueError("nabla::distributed::DistributedDataParallel: the wrapped module has no Tensor forward(Tensor); call "
                       "ddp.forward(...) with its own arguments");
    }
  }
  template <class... Args>
  auto forward(Args&&... args) {
    reducer_->prepare_for_forward();
    if (options_.broadcast_buffers()) {
      auto bufs = module_->buffers();
      if (!bufs.empty()) detail::broadcast_coalesced(bufs, 0);
    }
    auto out = module_->forward(std::forward<Args>(args)...);
    std::vector<Tensor> outs;
    detail::collect_tensors(out, outs);
    reducer_->prepare_for_backward(outs, sync_);
    return out;
  }
  template <class... Args>
  auto operator()(Args&&... args) {
    return forward(std::forward<Args>(args)...);
  }

  M& module() { return *module_; }
  const std::shared_ptr<M>& module_ptr() const { return module_; }
  const DistributedDataParallelOptions& options() const { return options_; }
  // The parameter indices (into module().parameters() that require grad) of each bucket, in launch order.
  std::vector<std::vector<size_t>> bucket_indices() const { return reducer_->bucket_indices(); }
  // Communication so far: bytes and buckets all-reduced, time backward waited for them.
  const CommStats& comm_stats() const { return reducer_->stats(); }

  // Gradient accumulation: while the guard lives, backward accumulates into .grad() without
  // communicating; the first synchronised backward after it averages the accumulated sum.
  class NoSyncGuard {
   public:
    explicit NoSyncGuard(DistributedDataParallel& d) : d_(d), prev_(d.sync_) { d_.sync_ = false; }
    ~NoSyncGuard() { d_.sync_ = prev_; }
    NoSyncGuard(const NoSyncGuard&) = delete;
    NoSyncGuard& operator=(const NoSyncGuard&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  [[nodiscard]] NoSyncGuard no_sync() { return NoSyncGuard(*this); }

 private:
  // Every rank must wrap the same architecture: names, shapes and dtypes hashed and compared.
  void verify_same_model(detail::ProcessGroup& g) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (const auto& [name, p] : module_->named_parameters()) {
      for (char c : name) mix(static_cast<uint8_t>(c));
      for (int64_t s : p.sizes()) mix(static_cast<uint64_t>(s));
      mix(static_cast<uint64_t>(p.dtype()));
    }
    std::vector<Tensor> all;
    all_gather(all, from_vector(std::vector<int64_t>{static_cast<int64_t>(h >> 1)}, {1}, kInt64));
    for (size_t r = 1; r < all.size(); ++r)
      NABLA_CHECK(all[r].item<int64_t>() == all[0].item<int64_t>(), DistributedError,
                  "distributed::DistributedDataParallel: rank ", r, "'s module has different parameter names, shapes or dtypes than "
                  "rank 0's (this is rank ", g.rank(), "); every rank must wrap the same model");
  }

  std::shared_ptr<M> module_;
  DistributedDataParallelOptions options_;
  std::unique_ptr<detail::Reducer> reducer_;
  bool sync_ = true;
};

template <class M>
DistributedDataParallel(std::shared_ptr<M>) -> DistributedDataParallel<M>;
template <class M>
DistributedDataParallel(std::shared_ptr<M>, DistributedDataParallelOptions) -> DistributedDataParallel<M>;
template <class Impl>
DistributedDataParallel(const nn::ModuleHolder<Impl>&) -> DistributedDataParallel<Impl>;
template <class Impl>
DistributedDataParallel(const nn::ModuleHolder<Impl>&, DistributedDataParallelOptions) -> DistributedDataParallel<Impl>;

using DistributedSampler = data::DistributedSampler;

}  // namespace distributed
}  // namespace nabla
