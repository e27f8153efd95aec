#pragma once
// The examples' --distributed: one process per rank (`mpirun -np N <example> --distributed`),
// DistributedDataParallel around the model, a DistributedSampler for the training set, each rank
// scoring a slice of the test set, sums across ranks for the epoch line, and rank 0 alone
// writing. Built with MPI when the example links nabla::distributed (NABLA_EXAMPLE_DISTRIBUTED);
// without it --distributed is a clear error.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nabla/data.hpp>
#include <nabla/nabla.hpp>
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
#include <nabla/distributed.hpp>
#endif

#include "example_cli.hpp"

namespace nabla_example {

#if defined(NABLA_EXAMPLE_DISTRIBUTED)
// A module whose forward is `body` over `inner`'s parameters (inner registered as "inner"): what
// DistributedDataParallel wraps when the training forward is not the model's own.
class Through : public nabla::nn::Module {
 public:
  Through(std::shared_ptr<nabla::nn::Module> inner, std::function<nabla::Tensor(const nabla::Tensor&)> body) : body_(std::move(body)) {
    register_module("inner", std::move(inner));
  }
  nabla::Tensor forward(const nabla::Tensor& x) override { return body_(x); }

 private:
  std::function<nabla::Tensor(const nabla::Tensor&)> body_;
};
#endif

class Ranks {
 public:
  // Starts the process group when `distributed` (the program's name goes into errors). The
  // backend: NCCL when the model goes to a GPU (`device` "cuda", or "auto" with one present) and
  // nabla::distributed was built with NCCL, else MPI; NABLA_DIST_BACKEND=mpi|nccl overrides.
  Ranks(bool distributed, const std::string& program, const std::string& device = "cpu") : program_(program) {
    if (!distributed) return;
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    std::string backend = "mpi";
#if defined(NABLA_HAS_NCCL)
    if (device == "cuda" || (device == "auto" && nabla::cuda::is_available())) backend = "nccl";
#else
    (void)device;
#endif
    if (const char* b = std::getenv("NABLA_DIST_BACKEND"); b && *b) backend = b;
    nabla::distributed::init_process_group(backend);
    backend_ = backend == "nccl" ? "NCCL" : "MPI";
    enabled_ = true;
    rank_ = nabla::distributed::get_rank();
    world_ = nabla::distributed::get_world_size();
    local_rank_ = nabla::distributed::get_local_rank();
#else
    (void)device;
    throw nabla::ValueError(program + ": --distributed: this " + program +
                            " was built without MPI (install libopenmpi-dev and rebuild)");
#endif
  }
  // Unwinding from an error on this rank: the others are told (they raise DistributedError
  // instead of waiting out the timeout) and MPI is left unfinalised (it would wait for them).
  ~Ranks() {
    if (enabled_ && std::uncaught_exceptions() > 0) abort(program_ + " stopped by an error on rank " + std::to_string(rank_));
    finish();
  }
  Ranks(const Ranks&) = delete;
  Ranks& operator=(const Ranks&) = delete;

  bool enabled() const { return enabled_; }
  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }
  // "MPI" or "NCCL": what the gradients travel over (for the start-up line).
  const char* backend() const { return backend_; }
  bool lead() const { return rank_ == 0; }  // writes checkpoints and CSV, prints the progress

  // The training order: every rank the same permutation, each taking every world-th example.
  void shard(nabla::data::DataLoaderOptions& options, int64_t dataset_size, uint64_t seed) const {
    if (!enabled_) {
      options.shuffle(true);
      return;
    }
    options.sampler(std::make_shared<nabla::data::DistributedSampler>(dataset_size, world_, rank_, true, seed));
  }
  // This rank's contiguous slice [from, to) of n evaluation examples.
  std::pair<int64_t, int64_t> slice(int64_t n) const { return {n * rank_ / world_, n * (rank_ + 1) / world_}; }

  // What training calls for the model's forward: `body` (default: the model's own forward;
  // --checkpointing passes checkpoint_sequential over the model), or DistributedDataParallel
  // around it (rank 0's weights everywhere; gradients averaged over the ranks during backward).
  template <class M>
  std::function<nabla::Tensor(const nabla::Tensor&)> wrap(const std::shared_ptr<M>& model,
                                                          std::function<nabla::Tensor(const nabla::Tensor&)> body = nullptr) {
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    if (enabled_ && !body) {
      auto ddp = std::make_shared<nabla::distributed::DistributedDataParallel<M>>(model);
      stats_ = [ddp] { return ddp->comm_stats(); };
      return [ddp](const nabla::Tensor& x) { return ddp->forward(x); };
    }
    if (enabled_) {  // DDP's forward must run the body: it arms the gradient hooks after it
      auto through = std::make_shared<Through>(model, body);
      auto ddp = std::make_shared<nabla::distributed::DistributedDataParallel<Through>>(through);
      stats_ = [ddp] { return ddp->comm_stats(); };
      return [ddp](const nabla::Tensor& x) { return ddp->forward(x); };
    }
#endif
    if (body) return body;
    return [model](const nabla::Tensor& x) { return model->forward(x); };
  }

  // values summed over the ranks (unchanged on one process).
  std::vector<double> sum(std::vector<double> values) const {
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    if (enabled_) {
      nabla::Tensor t = nabla::from_vector(values, {static_cast<int64_t>(values.size())}, nabla::kFloat64);
      nabla::distributed::all_reduce(t);
      return t.to_vector<double>();
    }
#endif
    return values;
  }

  // Each rank's line after an epoch: its throughput and the time backward waited for the
  // gradient all-reduces (in rank order).
  void report(double images_per_second, double seconds) const {
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    if (!enabled_) return;
    const auto s = stats_ ? stats_() : nabla::distributed::CommStats{};
    for (int r = 0; r < world_; ++r) {
      if (r == rank_)
        std::printf("rank %d: %.0f img/s, %.2f s of %.1f s waiting for gradient all-reduces (%.1f%%), %.1f MB all-reduced\n",
                    rank_, images_per_second, s.wait_seconds, seconds, 100 * s.wait_seconds / seconds, s.bytes / 1e6);
      std::fflush(stdout);
      nabla::distributed::barrier();
    }
#else
    (void)images_per_second, (void)seconds;
#endif
  }

  // After an epoch: each rank's line, then this rank's figures turned into the run's: the test
  // loss and accuracy over every rank's slice (test_size: this rank's), the throughputs summed,
  // the train losses averaged. Nothing on one process.
  void combine_epoch(Eval& eval, int64_t test_size, double& throughput, double& train_loss, double seconds) const {
    if (!enabled_ || world_ == 1) return;
    report(throughput, seconds);
    const double n = static_cast<double>(test_size);
    auto v = sum({eval.loss * n, eval.accuracy * n, n, throughput, train_loss});
    if (v[2] > 0) eval = {v[0] / v[2], v[1] / v[2]};
    throughput = v[3];
    train_loss = v[4] / world_;
  }

  // Ends the process group (all ranks, after the last collective).
  void finish() {
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    if (enabled_) nabla::distributed::destroy_process_group();
    enabled_ = false;
#endif
  }
  // After an error on this rank: the others stop with its message instead of timing out.
  static void abort(const std::string& why) {
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
    nabla::distributed::abort(why);
#else
    (void)why;
#endif
  }

 private:
  std::string program_;
  bool enabled_ = false;
  int rank_ = 0, world_ = 1, local_rank_ = 0;
  const char* backend_ = "MPI";
#if defined(NABLA_EXAMPLE_DISTRIBUTED)
  std::function<nabla::distributed::CommStats()> stats_;
#endif
};

}  // namespace nabla_example
