#pragma once
// nabla::distributed's process group (torch.distributed's API): init_process_group, get_rank /
// get_world_size, and what the collectives (collectives.hpp, scatter_gather.hpp) and the
// point-to-point messages (point_to_point.hpp) run on; each has an async form returning a Work.
//
// How it runs. One worker thread per process owns the MPI traffic and runs the collectives in
// the order they were called (every rank calls them in the same order, so they match up); the
// caller's thread only enqueues, so an async all-reduce overlaps with the caller's computation
// (DistributedDataParallel's buckets during backward). Each collective is a non-blocking MPI
// call the worker polls, which is what makes failures finite:
//   - a timeout (ProcessGroupOptions::timeout, NABLA_DIST_TIMEOUT seconds) raises
//     DistributedError naming the collective, the rank and how long it waited;
//   - a rank that fails with an uncaught exception tells the others over a separate
//     communicator before it dies (a std::terminate handler installed by init_process_group), and
//     their pending and later collectives raise DistributedError naming that rank and its error;
//   - before each collective the ranks exchange a small descriptor (op, dtype, shape, root), so
//     ranks that call different collectives or pass different shapes raise DistributedError
//     naming every rank's shape instead of corrupting memory or hanging.
// After any of these the group is broken: every later collective fails at once with the first
// error, and the process does not call MPI_Finalize (it would wait for the dead rank).
//
// Tensors: CPU tensors of every dtype go to MPI directly (float16 / bfloat16 reduce through
// user-defined MPI ops computing in float32). CUDA tensors go over NCCL under the "nccl" backend
// (nccl.hpp: on their own stream, polled like MPI requests), else staged through host memory.
// Booleans reduce as PyTorch's NCCL does: SUM and MAX are logical or, PRODUCT and MIN logical
// and. AVG is SUM divided by the world size (integers truncate, as NCCL's ncclAvg).

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../core/error.hpp"
#include "../core/half.hpp"
#include "../core/tensor.hpp"
#include "../ops/all.hpp"
#include "nccl.hpp"

namespace nabla {
namespace distributed {

enum class ReduceOp { SUM, AVG, PRODUCT, MIN, MAX };

inline const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::SUM: return "SUM";
    case ReduceOp::AVG: return "AVG";
    case ReduceOp::PRODUCT: return "PRODUCT";
    case ReduceOp::MIN: return "MIN";
    case ReduceOp::MAX: return "MAX";
  }
  return "?";
}

struct ProcessGroupOptions {
  // How long one collective may wait for the other ranks (PyTorch's default is 30 minutes).
  // NABLA_DIST_TIMEOUT (seconds) overrides the default when the options leave it unset.
  std::chrono::milliseconds timeout{0};
  // Exchange (op, dtype, shape) before each collective and refuse mismatches (a tiny extra
  // all-gather; off trades that safety for latency).
  bool check_shapes = true;
};

// Rank and world size as the launcher's environment gives them (Open MPI, PMI / PMIx, Slurm),
// or -1 when none is set: what a program can learn before init_process_group.
namespace detail {
inline int env_int(std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (const char* v = std::getenv(n); v && *v) {
      char* end = nullptr;
      long x = std::strtol(v, &end, 10);
      if (end && *end == '\0' && x >= 0) return static_cast<int>(x);
    }
  return -1;
}
}  // namespace detail
inline int env_rank() { return detail::env_int({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}); }
inline int env_world_size() { return detail::env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}); }
inline int env_local_rank() {
  return detail::env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"});
}

// A collective in flight: wait() blocks until it is done (and the result is in the tensors),
// or throws DistributedError if it failed.
class Work {
 public:
  void wait() {
    if (progress_ && !done_flag_.load(std::memory_order_acquire)) {  // point-to-point: driven by the waiter
      try {
        progress_(true);
        complete();
      } catch (...) {
        complete(std::current_exception());
      }
    }
    // the result usually arrives within microseconds to milliseconds: spin briefly before sleeping
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
    while (!done_flag_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return done_; });
    if (error_) std::rethrow_exception(error_);
    if (finish_) {
      auto f = std::move(finish_);
      finish_ = nullptr;
      lock.unlock();
      f();  // on the waiting thread: copy back into non-contiguous / CUDA tensors
    }
  }
  bool is_completed() {
    if (progress_ && !done_flag_.load(std::memory_order_acquire)) {
      try {
        if (progress_(false)) complete();
      } catch (...) {
        complete(std::current_exception());
      }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }
  bool is_success() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_ && !error_;
  }

  // The worker's side.
  void complete(std::exception_ptr error = nullptr) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
      error_ = std::move(error);
    }
    done_flag_.store(true, std::memory_order_release);
    cv_.notify_all();
  }
  void on_finish(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mutex_);
    finish_ = std::move(f);
  }
  // A Work no worker completes (point-to-point, started on the caller's thread): progress(block)
  // tests it once (block = false, returns whether it is done) or waits for it (block = true); it
  // throws DistributedError on failure. Set once, before the Work is handed out.
  void set_progress(std::function<bool(bool)> progress) { progress_ = std::move(progress); }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> done_flag_{false};
  std::exception_ptr error_;
  std::function<void()> finish_;
  std::function<bool(bool)> progress_;
};
using WorkHandle = std::shared_ptr<Work>;

namespace detail {

// "MPI error 15 (MPI_ERR_TRUNCATE: message truncated)"
inline std::string mpi_error(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  return ::nabla::detail::cat("MPI error ", rc, len > 0 ? " (" : "", std::string(text, static_cast<size_t>(len)), len > 0 ? ")" : "");
}

// While alive, collectives started on this thread may run inline (the synchronous forms).
struct SyncCall {
  bool prev;
  SyncCall();
  ~SyncCall();
};

// ---- float16 / bfloat16 reductions as user-defined MPI ops (float32 arithmetic) -------------
template <class T, int Op>
void mpi_half_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const T* a = static_cast<const T*>(in);
  T* b = static_cast<T*>(inout);
  for (int i = 0; i < *len; ++i) {
    float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    float r = Op == 0 ? x + y : Op == 1 ? x * y : Op == 2 ? (y < x ? y : x) : (y > x ? y : x);
    b[i] = T(r);
  }
}

class ProcessGroup {
 public:
  ProcessGroup(const std::string& backend, ProcessGroupOptions options) : backend_(backend), options_(options) {
    if (options_.timeout.count() <= 0) {
      options_.timeout = std::chrono::minutes(30);
      if (const char* v = std::getenv("NABLA_DIST_TIMEOUT"); v && *v) {
        char* end = nullptr;
        double s = std::strtod(v, &end);
        NABLA_CHECK(end && *end == '\0' && s > 0, ValueError, "distributed::init_process_group: NABLA_DIST_TIMEOUT=\"", v,
                    "\" is not a positive number of seconds");
        options_.timeout = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
      }
    }
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      owns_mpi_ = true;
      NABLA_CHECK(provided >= MPI_THREAD_SERIALIZED, DistributedError,
                  "distributed::init_process_group: this MPI gives thread level ", provided,
                  "; nabla needs MPI_THREAD_SERIALIZED (its collectives run on a worker thread)");
    } else {
      int provided = 0;
      MPI_Query_thread(&provided);
      NABLA_CHECK(provided >= MPI_THREAD_SERIALIZED, DistributedError,
                  "distributed::init_process_group: MPI was initialised with thread level ", provided,
                  " before init_process_group; initialise it with MPI_Init_thread(..., MPI_THREAD_SERIALIZED or higher)");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_dup(MPI_COMM_WORLD, &abort_comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(abort_comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
    if (int er = env_rank(); er >= 0 && er != rank_ && env_world_size() == world_) {
      throw DistributedError(::nabla::detail::cat("nabla::distributed::init_process_group: MPI says rank ", rank_,
                                                  " but the launcher's environment says rank ", er));
    }
    MPI_Op_create(&mpi_half_op<Half, 0>, 1, &half_ops_[0]);
    MPI_Op_create(&mpi_half_op<Half, 1>, 1, &half_ops_[1]);
    MPI_Op_create(&mpi_half_op<Half, 2>, 1, &half_ops_[2]);
    MPI_Op_create(&mpi_half_op<Half, 3>, 1, &half_ops_[3]);
    MPI_Op_create(&mpi_half_op<BFloat16, 0>, 1, &bf16_ops_[0]);
    MPI_Op_create(&mpi_half_op<BFloat16, 1>, 1, &bf16_ops_[1]);
    MPI_Op_create(&mpi_half_op<BFloat16, 2>, 1, &bf16_ops_[2]);
    MPI_Op_create(&mpi_half_op<BFloat16, 3>, 1, &bf16_ops_[3]);
    MPI_Irecv(abort_msg_, sizeof(abort_msg_) - 1, MPI_CHAR, MPI_ANY_SOURCE, kAbortTag, abort_comm_, &abort_req_);
    worker_ = std::thread([this] { run(); });
  }

  ~ProcessGroup() { shutdown(); }

  // Stops the worker (after the queued collectives) and finalizes MPI if this group started it
  // and nothing went wrong; a broken group leaves MPI as it is (MPI_Finalize would wait for the
  // failed rank).
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
#if defined(NABLA_HAS_NCCL)
    if (nccl_ && broken()) nccl_->abort();
    nccl_.reset();
#endif
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (broken() || finalized) return;  // a failed group, or MPI already ended by the program
    {
      std::lock_guard<std::mutex> lock(mpi_mutex_);
      // Every rank reaches here in step: the pending abort receive is completed by a message
      // each rank sends itself, then the communicators go.
      char bye = 0;
      MPI_Send(&bye, 1, MPI_CHAR, rank_, kAbortTag, abort_comm_);
      MPI_Wait(&abort_req_, MPI_STATUS_IGNORE);
      for (auto* ops : {half_ops_, bf16_ops_})
        for (int i = 0; i < 4; ++i) MPI_Op_free(&ops[i]);
      MPI_Comm_free(&comm_);
      MPI_Comm_free(&abort_comm_);
      if (owns_mpi_) MPI_Finalize();
    }
  }

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int local_rank() const { return local_rank_; }
  const std::string& backend() const { return backend_; }
  const ProcessGroupOptions& options() const { return options_; }
  bool broken() const { return broken_.load(); }

  // Runs `body` on the worker after everything queued before it; the Work completes when it
  // returns (or with its exception).
  // A blocking call (inline_allowed(), set by the synchronous forms) runs on the caller's
  // thread when nothing is queued: no hand-off to the worker and back.
  WorkHandle enqueue(std::function<void()> body) {
    auto work = std::make_shared<Work>();
    {
      std::unique_lock<std::mutex> lock(queue_mutex_);
      NABLA_CHECK(!stopping_, DistributedError, "distributed: the process group was destroyed");
      if (inline_allowed() && queue_.empty() && !running_) {
        inline_running_ = true;
        lock.unlock();
        try {
          body();
          work->complete();
        } catch (...) {
          work->complete(std::current_exception());
        }
        {
          std::lock_guard<std::mutex> relock(queue_mutex_);
          inline_running_ = false;
        }
        queue_cv_.notify_one();
        return work;
      }
      queue_.push_back({work, std::move(body)});
    }
    queue_cv_.notify_one();
    return work;
  }
  static bool& inline_allowed() {
    thread_local bool allowed = false;
    return allowed;
  }

  // ---- the worker's tools ----------------------------------------------------------------
  // Fails at once when the group is broken.
  void check_not_broken(const char* op) {
    if (broken()) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      throw DistributedError(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_,
                                                  ": the process group is broken by an earlier failure: ", first_error_));
    }
  }
  // Polls `test` (a PollState) until it is done, fails, a peer reports a failure, or the
  // timeout passes; on any failure `on_fail` runs first (the NCCL transport aborts its
  // communicator there), then the group breaks with DistributedError.
  template <class Test>
  void poll(const char* op, Test&& test, const std::function<void()>& on_fail = nullptr) {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + options_.timeout;
    auto give_up = [&](const std::string& message) {
      if (on_fail) on_fail();
      fail(message);
    };
    while (true) {
      const PollState s = test();
      if (s.state == PollState::Done) return;
      if (s.state == PollState::Failed) give_up(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": ", s.error));
      int aborted = 0, source = -1;
      {
        // two threads may poll (the worker, and a point-to-point waiter): the first to see the
        // notice keeps its sender, since the completed request is then null for the other
        std::lock_guard<std::mutex> lock(mpi_mutex_);
        MPI_Status abort_status;
        MPI_Test(&abort_req_, &aborted, &abort_status);
        if (aborted && abort_source_ < 0) abort_source_ = abort_status.MPI_SOURCE;
        source = abort_source_;
      }
      if (aborted) {
        abort_msg_[sizeof(abort_msg_) - 1] = '\0';
        give_up(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, " of ", world_, ": rank ",
                                     source, " failed: ", abort_msg_));
      }
      const auto now = std::chrono::steady_clock::now();
      if (now > deadline) {
        give_up(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, " of ", world_, " timed out after ",
                                     std::chrono::duration<double>(now - start).count(),
                                     " s waiting for the other ranks (a rank may have died, hung, or skipped this collective; "
                                     "timeout ", options_.timeout.count() / 1000.0, " s: ProcessGroupOptions::timeout or NABLA_DIST_TIMEOUT)"));
      }
      // MPI progresses only inside MPI calls: poll hot for the first 20 ms (a collective whose
      // peers are there finishes well within it), then back off to spare the CPU while a peer
      // is still computing.
      if (now - start < std::chrono::milliseconds(2)) continue;  // spin: a yield costs a time slice on a busy machine
      if (now - start < std::chrono::milliseconds(20)) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(now - start < std::chrono::seconds(1) ? 50 : 500));
    }
  }
  // Polls `req` until it completes, a peer reports a failure, or the timeout passes.
  void wait_request(MPI_Request& req, const char* op, MPI_Status* status = MPI_STATUS_IGNORE) {
    poll(op, [&]() -> PollState {
      std::lock_guard<std::mutex> lock(mpi_mutex_);
      int done = 0;
      int rc = MPI_Test(&req, &done, status);
      if (rc != MPI_SUCCESS) return {PollState::Failed, mpi_error(rc)};
      return {done ? PollState::Done : PollState::Running, {}};
    });
  }
  // Starts an MPI non-blocking call under the MPI lock (on any thread) and returns its request.
  template <class Start>
  MPI_Request start_request(const char* op, Start&& start) {
    MPI_Request req;
    std::lock_guard<std::mutex> lock(mpi_mutex_);
    int rc = start(&req);
    if (rc != MPI_SUCCESS) fail(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": ", mpi_error(rc)));
    return req;
  }
  // One MPI_Test of `req`: whether it is done (status filled in then).
  bool test_request(MPI_Request& req, MPI_Status* status, const char* op) {
    std::lock_guard<std::mutex> lock(mpi_mutex_);
    int done = 0;
    int rc = MPI_Test(&req, &done, status);
    if (rc != MPI_SUCCESS) fail(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": ", mpi_error(rc)));
    return done != 0;
  }
  // Starts an MPI non-blocking call under the MPI lock and waits for it.
  template <class Start>
  void run_mpi(const char* op, Start&& start) {
    MPI_Request req;
    {
      std::lock_guard<std::mutex> lock(mpi_mutex_);
      int rc = start(&req);
      if (rc != MPI_SUCCESS) fail(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": ", mpi_error(rc)));
    }
    wait_request(req, op);
  }
  // The collective itself. Once the descriptor exchange has shown every rank is at this very
  // collective, it runs as MPI's blocking call (MPI's tuned algorithms, 2-3x faster than the
  // non-blocking ones for megabytes); without that exchange it is polled like everything else,
  // so a missing rank still ends in a timeout.
  template <class Start, class Blocking>
  void run_collective(const char* op, Start&& start, Blocking&& blocking) {
    if (options_.check_shapes && world_ > 1) {
      std::lock_guard<std::mutex> lock(mpi_mutex_);
      int rc = blocking();
      if (rc != MPI_SUCCESS) fail(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": ", mpi_error(rc)));
      return;
    }
    run_mpi(op, std::forward<Start>(start));
  }
  [[noreturn]] void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (first_error_.empty()) first_error_ = message;
    }
    broken_ = true;
    throw DistributedError(message);
  }
  MPI_Comm comm() const { return comm_; }
#if defined(NABLA_HAS_NCCL)
  // The NCCL communicator (backend "nccl"), made at the first CUDA collective on that tensor's
  // device: every rank reaches it at the same point of the same call order. Rank 0's unique id
  // goes to the others over MPI. One device per process, as with PyTorch's NCCL groups.
  NcclComm& nccl(int device, const char* op) {
    if (!nccl_) {
      ncclUniqueId id{};
      if (rank_ == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) fail(::nabla::detail::cat("nabla::distributed::", op, " on rank 0: ncclGetUniqueId failed: ", ncclGetErrorString(r)));
      }
      run_mpi(op, [&](MPI_Request* r) { return MPI_Ibcast(&id, static_cast<int>(sizeof id), MPI_BYTE, 0, comm_, r); });
      try {
        nccl_ = std::make_unique<NcclComm>(device, rank_, world_, id,
                                           [this](const char* what, auto&& test, const std::function<void()>& on_fail) {
                                             poll(what, test, on_fail);
                                           });
      } catch (const DistributedError& e) {
        if (!broken()) fail(e.what());
        throw;
      }
    }
    if (nccl_->device() != device)
      fail(::nabla::detail::cat("nabla::distributed::", op, " on rank ", rank_, ": this process group's NCCL communicator is on cuda:",
                                nccl_->device(), " (the device of its first CUDA collective) but this tensor is on cuda:", device,
                                "; keep every CUDA tensor of one rank on one device"));
    return *nccl_;
  }
#endif
  MPI_Op half_op(DType dt, int which) const { return dt == kFloat16 ? half_ops_[which] : bf16_ops_[which]; }

  // Tells every other rank that this one failed (best effort: small eager sends, waited on for
  // at most a second), so their collectives raise instead of waiting out the timeout.
  void notify_failure(const std::string& what) {
    if (notified_.exchange(true)) return;
    std::unique_lock<std::mutex> lock(mpi_mutex_, std::defer_lock);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!lock.try_lock()) {
      if (std::chrono::steady_clock::now() > until) return;  // the worker is stuck inside MPI
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string msg = what.substr(0, sizeof(abort_msg_) - 2);
    std::vector<MPI_Request> reqs;
    for (int r = 0; r < world_; ++r) {
      if (r == rank_) continue;
      reqs.emplace_back();
      MPI_Isend(msg.c_str(), static_cast<int>(msg.size() + 1), MPI_CHAR, r, kAbortTag, abort_comm_, &reqs.back());
    }
    int all = 0;
    while (!all && std::chrono::steady_clock::now() < until) {
      MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &all, MPI_STATUSES_IGNORE);
      if (!all) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    broken_ = true;
  }

 private:
  static constexpr int kAbortTag = 7001;
  struct Item {
    WorkHandle work;
    std::function<void()> body;
  };

  void run() {
    while (true) {
      Item item;
      {
        std::unique_lock<std::mutex> lock(queue_mutex_);
        queue_cv_.wait(lock, [&] { return (stopping_ && !inline_running_) || (!queue_.empty() && !inline_running_); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
        running_ = true;
      }
      try {
        item.body();
        item.work->complete();
      } catch (...) {
        item.work->complete(std::current_exception());
      }
      std::lock_guard<std::mutex> lock(queue_mutex_);
      running_ = false;
    }
  }

  std::string backend_;
  ProcessGroupOptions options_;
  bool owns_mpi_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL, abort_comm_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1, local_rank_ = 0;
  MPI_Op half_ops_[4]{}, bf16_ops_[4]{};
  MPI_Request abort_req_ = MPI_REQUEST_NULL;
  int abort_source_ = -1;
  char abort_msg_[1024]{};
  std::mutex mpi_mutex_;  // every MPI call after init holds it (MPI_THREAD_SERIALIZED)
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Item> queue_;
  bool stopping_ = false, running_ = false, inline_running_ = false;
  std::thread worker_;
  std::atomic<bool> broken_{false}, notified_{false};
  std::mutex error_mutex_;
  std::string first_error_;
#if defined(NABLA_HAS_NCCL)
  std::unique_ptr<NcclComm> nccl_;  // used by the worker thread only
#endif
};

inline SyncCall::SyncCall() : prev(ProcessGroup::inline_allowed()) { ProcessGroup::inline_allowed() = true; }
inline SyncCall::~SyncCall() { ProcessGroup::inline_allowed() = prev; }

// PyTorch's async_op convention: start the collective (inline when it is synchronous), then
// either hand back the Work or wait for it and return null.
template <class Start>
WorkHandle start_or_wait(bool async_op, Start&& start) {
  WorkHandle w;
  {
    std::optional<SyncCall> sync;
    if (!async_op) sync.emplace();
    w = start();
  }
  if (async_op) return w;
  w->wait();
  return nullptr;
}

inline std::unique_ptr<ProcessGroup>& default_group() {
  static std::unique_ptr<ProcessGroup> group;
  return group;
}
inline ProcessGroup& group(const char* op) {
  auto& g = default_group();
  NABLA_CHECK(g != nullptr, DistributedError, "distributed::", op,
              ": the default process group is not initialised; call nabla::distributed::init_process_group(\"mpi\") first");
  return *g;
}

inline std::terminate_handler& previous_terminate() {
  static std::terminate_handler h = nullptr;
  return h;
}
// Installed by init_process_group: a rank dying of an uncaught exception tells the others why.
inline void terminate_with_notice() {
  std::string what = "terminated";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ::nabla::detail::cat("uncaught exception: ", ex.what());
    } catch (...) {
      what = "uncaught exception of unknown type";
    }
  }
  if (auto& g = default_group()) {
    g->notify_failure(what);
    // a moment for the others to report the failure before the launcher kills the job
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(g->options().timeout, std::chrono::seconds(5)));
  }
  if (auto prev = previous_terminate()) prev();
  std::abort();
}

}  // namespace detail

// ---- the process group ----------------------------------------------------------------------

// Starts the default process group; every rank is launched by mpirun / srun. backend "mpi": the
// collectives run over MPI (CPU tensors directly, CUDA tensors staged through host memory).
// "nccl" (where nabla::distributed was built with NCCL, docs/distributed.md): CUDA tensors'
// collectives run over NCCL (its unique id sent over MPI), CPU tensors' still over MPI.
inline void init_process_group(const std::string& backend = "mpi", ProcessGroupOptions options = {}) {
  NABLA_CHECK(detail::default_group() == nullptr, DistributedError,
              "distributed::init_process_group: the default process group is already initialised");
  NABLA_CHECK(backend == "mpi" || backend == "nccl", ValueError, "distributed::init_process_group: unknown backend \"", backend,
              "\" (expected \"mpi\" or \"nccl\")");
#if defined(NABLA_HAS_NCCL)
  NABLA_CHECK(backend != "nccl" || ::nabla::cuda::is_available(), DistributedError,
              "distributed::init_process_group: backend \"nccl\" needs a CUDA device, and this process sees none (use \"mpi\")");
#else
  NABLA_CHECK(backend != "nccl", DistributedError,
              "distributed::init_process_group: backend \"nccl\": this program's nabla::distributed was built without NCCL "
              "(it needs nabla::cuda and NCCL when CMake configures it: docs/distributed.md); use \"mpi\", which stages CUDA "
              "tensors through host memory");
#endif
  detail::default_group() = std::make_unique<detail::ProcessGroup>(backend, options);
  if (!detail::previous_terminate()) detail::previous_terminate() = std::set_terminate(&detail::terminate_with_notice);
}
inline void init_process_group(const std::string& backend, std::chrono::milliseconds timeout) {
  ProcessGroupOptions o;
  o.timeout = timeout;
  init_process_group(backend, o);
}

inline bool is_initialized() { return detail::default_group() != nullptr; }
inline bool is_available() { return true; }
inline int get_rank() { return detail::group("get_rank").rank(); }
inline int get_world_size() { return detail::group("get_world_size").world_size(); }
// This rank's index among the ranks on its node (choose a GPU with it).
inline int get_local_rank() { return detail::group("get_local_rank").local_rank(); }
inline std::string get_backend() { return detail::group("get_backend").backend(); }

// Ends the default process group (waits for queued collectives, finalizes MPI if
// init_process_group started it). After a failure it only drops the group.
inline void destroy_process_group() {
  auto& g = detail::default_group();
  if (!g) return;
  g->shutdown();
  g.reset();
}

// Tells the other ranks this one failed (their collectives raise DistributedError naming this
// rank and `reason`) and marks the group broken. For code that catches an error it cannot
// recover from and wants the peers to stop at once rather than time out.
inline void abort(const std::string& reason) {
  if (auto& g = detail::default_group()) g->notify_failure(reason);
}

}  // namespace distributed
}  // namespace nabla
