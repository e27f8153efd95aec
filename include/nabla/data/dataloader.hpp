#pragma once
// DataLoader: one epoch of batches of a Dataset per `for (Batch& b : loader)`, in an order that is
// a pure function of (seed, epoch), with an optional background thread that prepares the next
// `prefetch` batches (indexing, transform, copy to the device) while the training step runs.

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../autograd/grad_mode.hpp"
#include "../core/device.hpp"
#include "../core/tensor.hpp"
#include "../ops/all.hpp"
#include "../nn/options.hpp"
#include "dataset.hpp"
#include "sampler.hpp"
#include "transforms.hpp"

// Chainable options as in nn and optim (NABLA_ARG): `DataLoaderOptions().batch_size(128).shuffle(true)`.
#define NABLA_DATA_OPTION(T, NAME, DEFAULT) NABLA_ARG(T, NAME) = DEFAULT

namespace nabla {
namespace data {

struct DataLoaderOptions {
  DataLoaderOptions() = default;
  DataLoaderOptions(int64_t batch_size) : batch_size_(batch_size) {}  // NOLINT: LibTorch's implicit form
  // LibTorch's workers(n): nabla makes batches in one prefetch thread; n becomes the OpenMP
  // threads that thread's ops use (the batch gather, the transforms).
  DataLoaderOptions& workers(int n) {
    prefetch_threads_ = n;
    return *this;
  }
  NABLA_DATA_OPTION(int64_t, batch_size, 64);
  NABLA_DATA_OPTION(bool, shuffle, false);
  NABLA_DATA_OPTION(bool, drop_last, false);  // drop a last batch smaller than batch_size
  NABLA_DATA_OPTION(uint64_t, seed, 0);       // keys the shuffle and the transforms' BatchRng
  NABLA_DATA_OPTION(int64_t, prefetch, 2);    // batches prepared ahead; 0: no thread, all inline
  NABLA_DATA_OPTION(int, prefetch_threads, 1);  // OpenMP threads for the prefetch thread's ops
  NABLA_DATA_OPTION(Device, device, Device::cpu());  // batches are moved here (after the transform)
  NABLA_DATA_OPTION(Transform, transform, nullptr);  // applied to each batch before the move
  // Which examples, in what order (e.g. a DistributedSampler): replaces shuffle, which must be
  // off; the loader asks it for the order of its own epoch.
  NABLA_DATA_OPTION(std::shared_ptr<const Sampler>, sampler, nullptr);
};

#undef NABLA_DATA_OPTION

namespace detail {

// One pass over one epoch: the batches from `first` on, made inline or by a worker thread that
// keeps up to `prefetch` finished batches queued. Destroying it stops and joins the worker.
class LoaderRun {
 public:
  LoaderRun(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options, int64_t epoch, int64_t num_batches,
            int64_t first)
      : dataset_(std::move(dataset)),
        options_(std::move(options)),
        epoch_(epoch),
        num_batches_(num_batches),
        next_(first),
        produced_(first) {
    order_ = options_.sampler() ? options_.sampler()->indices(epoch_)
                                : epoch_order(dataset_->size(), options_.shuffle(), options_.seed(), epoch_);
    n_ = static_cast<int64_t>(order_.size());
    if (options_.prefetch() > 0 && first < num_batches_) worker_ = std::thread([this] { work(); });
  }
  ~LoaderRun() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    space_.notify_all();
    if (worker_.joinable()) worker_.join();
  }
  LoaderRun(const LoaderRun&) = delete;
  LoaderRun& operator=(const LoaderRun&) = delete;

  // Moves to the next batch; false after the last. A failure making that batch is rethrown here
  // (and ends the run).
  bool next() {
    if (finished_ || next_ >= num_batches_) return finish();
    const int64_t b = next_++;
    if (!worker_.joinable()) {
      try {
        current_ = make(b);
      } catch (...) {
        finish();
        throw;
      }
    } else {
      Slot slot;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [&] { return !queue_.empty(); });
        slot = std::move(queue_.front());
        queue_.pop_front();
      }
      space_.notify_one();
      if (slot.error) {
        finish();
        std::rethrow_exception(slot.error);
      }
      current_ = std::move(slot.batch);
    }
    index_ = b;
    return true;
  }

  bool finished() const { return finished_; }
  Batch& current() { return current_; }
  int64_t index() const { return index_; }
  int64_t epoch() const { return epoch_; }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  bool finish() {
    finished_ = true;
    current_ = Batch{};
    return false;
  }

  // Batch b of the epoch: index, transform with BatchRng(seed, epoch, b), move to the device.
  Batch make(int64_t b) const {
    NoGradGuard no_grad;
    const int64_t bs = options_.batch_size();
    const int64_t begin = b * bs, end = std::min(begin + bs, n_);
    std::vector<int64_t> indices(order_.begin() + begin, order_.begin() + end);
    Batch batch = dataset_->get_batch(indices);
    if (options_.transform()) {
      BatchRng rng(options_.seed(), epoch_, b);
      batch = options_.transform()(std::move(batch), rng);
    }
    if (batch.data.defined()) batch.data = batch.data.to(options_.device());
    if (batch.target.defined()) batch.target = batch.target.to(options_.device());
    return batch;
  }

  void work() {
#if defined(_OPENMP)
    omp_set_num_threads(std::max(1, options_.prefetch_threads()));  // this thread's own setting
#endif
    for (int64_t b = produced_; b < num_batches_; ++b) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        space_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < options_.prefetch(); });
        if (stop_) return;
      }
      Slot slot;
      try {
        slot.batch = make(b);
      } catch (...) {
        slot.error = std::current_exception();
      }
      const bool failed = slot.error != nullptr;
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(slot));
      }
      ready_.notify_one();
      if (failed) return;
    }
  }

  std::shared_ptr<const Dataset> dataset_;
  const DataLoaderOptions options_;
  const int64_t epoch_, num_batches_;
  int64_t n_ = 0;
  std::vector<int64_t> order_;
  // consumer side
  int64_t next_;        // batch the next call to next() returns
  int64_t index_ = -1;  // batch in current_
  bool finished_ = false;
  Batch current_;
  // worker side (the queue and stop_ under mu_)
  const int64_t produced_;  // first batch the worker makes
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Slot> queue_;
  bool stop_ = false;
  std::thread worker_;  // last: started once everything above exists
};

}  // namespace detail

// Batches of `dataset` an epoch at a time:
//
//   data::DataLoader loader(data::mnist_dataset(dir, true), data::DataLoaderOptions().shuffle(true));
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.set_epoch(epoch);
//     for (data::Batch& b : loader) { ... b.data, b.target ... }
//   }
//
// Each begin() starts one epoch: the one given to set_epoch, else the one after the last begun
// (0 first). The Batch& stays valid until the iterator moves on. Leaving the loop early, or
// destroying the iterator, stops the prefetch thread; the iterator keeps the dataset alive, so it
// may outlive the loader.
class DataLoader {
 public:
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    using pointer = Batch*;
    using reference = Batch&;

    Iterator() = default;  // the end
    Batch& operator*() const { return run_->current(); }
    Batch* operator->() const { return &run_->current(); }
    Iterator& operator++() {
      if (run_ && !run_->next()) run_.reset();  // the worker is joined here, at the latest
      return *this;
    }
    void operator++(int) { ++*this; }
    int64_t index() const { return at_end() ? -1 : run_->index(); }  // batch number in the epoch
    int64_t epoch() const { return at_end() ? -1 : run_->epoch(); }
    friend bool operator==(const Iterator& a, const Iterator& b) {
      return a.at_end() == b.at_end() && (a.at_end() || a.run_ == b.run_);
    }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<detail::LoaderRun> run) : run_(std::move(run)) {}
    bool at_end() const { return !run_ || run_->finished(); }
    std::shared_ptr<detail::LoaderRun> run_;
  };

  explicit DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {})
      : dataset_(std::move(dataset)), options_(std::move(options)) {
    NABLA_CHECK(dataset_ != nullptr, ValueError, "data::DataLoader: the dataset is null");
    NABLA_CHECK(options_.batch_size() > 0, ValueError, "data::DataLoader: batch_size must be positive, got ",
                options_.batch_size());
    NABLA_CHECK(options_.prefetch() >= 0, ValueError, "data::DataLoader: prefetch must be >= 0 (0: no thread), got ",
                options_.prefetch());
    NABLA_CHECK(dataset_->size() >= 0, ValueError, "data::DataLoader: the dataset reports a negative size ",
                dataset_->size());
    NABLA_CHECK(!(options_.sampler() && options_.shuffle()), ValueError,
                "data::DataLoader: sampler option is mutually exclusive with shuffle (the sampler decides the order)");
  }

  const DataLoaderOptions& options() const { return options_; }
  const std::shared_ptr<const Dataset>& dataset() const { return dataset_; }

  // Batches per epoch.
  int64_t size() const {
    const int64_t n = options_.sampler() ? options_.sampler()->size() : dataset_->size(), bs = options_.batch_size();
    return options_.drop_last() ? n / bs : (n + bs - 1) / bs;
  }

  // The next begin() runs `epoch`, starting at batch `skip` (resuming mid-epoch: the skipped
  // batches are neither indexed nor transformed, and later ones are the same as in a full epoch).
  void set_epoch(int64_t epoch, int64_t skip = 0) {
    NABLA_CHECK(epoch >= 0 && skip >= 0, ValueError, "data::DataLoader::set_epoch: epoch and skip must be >= 0, got ",
                epoch, " and ", skip);
    next_epoch_ = epoch;
    pending_skip_ = skip;
  }
  int64_t epoch() const { return next_epoch_; }  // the epoch the next begin() runs

  // The example order of `epoch` (before batching).
  std::vector<int64_t> epoch_indices(int64_t epoch) const {
    if (options_.sampler()) return options_.sampler()->indices(epoch);
    return epoch_order(dataset_->size(), options_.shuffle(), options_.seed(), epoch);
  }

  // Starts the next epoch; blocks until its first batch is ready, and throws if making it failed.
  Iterator begin() { return begin(pending_skip_); }
  Iterator begin(int64_t skip) {
    const int64_t n = size();
    NABLA_CHECK(skip >= 0 && skip <= n, ValueError, "data::DataLoader::begin: cannot skip ", skip, " batches of an epoch of ",
                n);
    const int64_t epoch = next_epoch_++;
    pending_skip_ = 0;
    Iterator it(std::make_shared<detail::LoaderRun>(dataset_, options_, epoch, n, skip));
    ++it;
    return it;
  }
  Iterator end() const { return Iterator(); }

 private:
  std::shared_ptr<const Dataset> dataset_;
  DataLoaderOptions options_;
  int64_t next_epoch_ = 0;
  int64_t pending_skip_ = 0;
};

}  // namespace data
}  // namespace nabla
