#pragma once
// The NCCL transport of nabla::distributed (init_process_group("nccl")): CUDA tensors' collectives
// as NCCL calls. Compiled where nabla::distributed links NCCL (NABLA_HAS_NCCL: nabla::cuda is
// linked and NCCL was found; see docs/distributed.md); elsewhere this header is empty.
//
// How a collective runs, and why:
//   - The caller's thread records an event on nabla's stream for the tensor's device when it
//     calls the collective (ReadyEvent): the NCCL call waits for exactly the work that produced
//     the tensor, not for whatever the caller queues afterwards (the rest of backward, for
//     DistributedDataParallel's buckets).
//   - The process group's worker thread issues the NCCL call on a stream of its own, so the
//     communication overlaps nabla's computation, then polls it (ncclCommGetAsyncError, then an
//     event) until it is done. The Work completes only then, so after wait() the result is in the
//     tensor for any later work, the tensors stay alive while NCCL uses them, and a collective
//     that never finishes ends in the group's timeout instead of a hang.
//   - The communicator is non-blocking (ncclConfig_t::blocking = 0): every NCCL call returns at
//     once, and a timeout or a failed peer aborts it (ncclCommAbort), which also stops the
//     kernels waiting on the dead rank.

#include <chrono>
#include <memory>
#include <string>
#include <thread>

namespace nabla {
namespace distributed {
namespace detail {
// Where a polled operation stands: done, still running, or failed with a message.
struct PollState {
  enum { Running, Done, Failed } state = Running;
  std::string error;
};
}  // namespace detail
}  // namespace distributed
}  // namespace nabla

#if defined(NABLA_HAS_NCCL)

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "../backend/cuda/api.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace nabla {
namespace distributed {
namespace detail {

inline void cuda_ok(cudaError_t e, const char* what) {
  NABLA_CHECK(e == cudaSuccess, DistributedError, "distributed (nccl): ", what, " failed: ", cudaGetErrorString(e));
}

// Makes `device` current for its lifetime and restores the caller's device after (a synchronous
// collective may run on the caller's own thread).
class DeviceScope {
 public:
  explicit DeviceScope(int device, bool check = true) {
    if (cudaGetDevice(&prev_) != cudaSuccess) prev_ = -1;
    if (prev_ == device) return;
    const cudaError_t e = cudaSetDevice(device);
    if (check) cuda_ok(e, "cudaSetDevice");
  }
  ~DeviceScope() {
    int cur = -1;
    if (prev_ >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != prev_) cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = -1;
};

inline std::string nccl_last_error(ncclComm_t comm) {
  const char* s = comm ? ncclGetLastError(comm) : nullptr;
  return s ? s : "";
}

inline ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case kFloat32: return ncclFloat32;
    case kFloat64: return ncclFloat64;
    case kFloat16: return ncclFloat16;
    case kBFloat16: return ncclBfloat16;
    case kInt32: return ncclInt32;
    case kInt64: return ncclInt64;
    case kUInt8:
    case kBool: return ncclUint8;
  }
  return ncclUint8;
}

// NCCL calls made as one group (ncclGroupStart / ncclGroupEnd), as point-to-point exchanges must
// be: `calls()` returns its first failure or ncclSuccess; the group's result otherwise.
template <class Calls>
ncclResult_t nccl_group(Calls&& calls) {
  ncclResult_t r = ncclGroupStart();
  if (r != ncclSuccess) return r;
  const ncclResult_t first = calls();
  const ncclResult_t end = ncclGroupEnd();
  return first != ncclSuccess && first != ncclInProgress ? first : end;
}

// An event recorded on nabla's stream of `device` when a collective is called: what the NCCL
// call must wait for. Destroyed by the worker once the NCCL stream has waited on it.
class ReadyEvent {
 public:
  explicit ReadyEvent(int device) : device_(device) {
    DeviceScope scope(device);
    cuda_ok(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    cuda_ok(cudaEventRecord(event_, static_cast<cudaStream_t>(::nabla::cuda::current_stream(device))),
            "recording the collective's start on nabla's stream");
  }
  ~ReadyEvent() {
    if (event_) cudaEventDestroy(event_);
  }
  ReadyEvent(const ReadyEvent&) = delete;
  ReadyEvent& operator=(const ReadyEvent&) = delete;
  int device() const { return device_; }
  cudaEvent_t event() const { return event_; }

 private:
  int device_;
  cudaEvent_t event_ = nullptr;
};
using ReadyHandle = std::shared_ptr<ReadyEvent>;
inline ReadyHandle ready_on(const Tensor& t) { return std::make_shared<ReadyEvent>(t.device().index); }

// One NCCL communicator, bound to one device, with its own stream.
class NcclComm {
 public:
  // Collective over the ranks: each calls it with the id rank 0 made. `poll(op, test, abort)`
  // is the process group's loop (timeout, failed peers); `test` returns a PollState.
  template <class Poll>
  NcclComm(int device, int rank, int world, const ncclUniqueId& id, Poll&& poll) : device_(device) {
    DeviceScope scope(device);
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    cuda_ok(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&comm_, world, id, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
      comm_ = nullptr;
      throw DistributedError(::nabla::detail::cat("nabla::distributed::init_process_group(\"nccl\") on rank ", rank, ": ncclCommInitRankConfig on cuda:",
                                                  device, " failed: ", ncclGetErrorString(r)));
    }
    poll("init_process_group(\"nccl\")", [&] { return settled("ncclCommInitRankConfig"); }, [&] { abort(); });
  }
  ~NcclComm() {
    if (comm_) {
      // A clean end: finish what is queued, then free. Bounded: a communicator that does not
      // settle within a few seconds is aborted instead (its peers are gone).
      DeviceScope scope(device_, /*check=*/false);
      if (ncclCommFinalize(comm_) == ncclInProgress) {
        for (int i = 0; i < 5000; ++i) {
          ncclResult_t s = ncclSuccess;
          if (ncclCommGetAsyncError(comm_, &s) != ncclSuccess || s != ncclInProgress) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
      ncclResult_t s = ncclSuccess;
      ncclCommGetAsyncError(comm_, &s);
      if (s == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int device() const { return device_; }

  // Runs `launch(comm, stream)` (an NCCL call) after `ready`, and polls it until it is done.
  template <class Launch, class Poll>
  void run(const char* op, const ReadyHandle& ready, Launch&& launch, Poll&& poll) {
    NABLA_CHECK(comm_ != nullptr, DistributedError, "nabla::distributed::", op, ": the NCCL communicator was aborted by an earlier failure");
    DeviceScope scope(device_);
    if (ready) cuda_ok(cudaStreamWaitEvent(stream_, ready->event(), 0), "cudaStreamWaitEvent");
    const ncclResult_t r = launch(comm_, stream_);
    if (r != ncclSuccess && r != ncclInProgress) {
      std::string last = nccl_last_error(comm_);
      throw DistributedError(::nabla::detail::cat("nabla::distributed::", op, " (nccl, cuda:", device_, "): ", ncclGetErrorString(r),
                                                  last.empty() ? "" : ": ", last));
    }
    bool recorded = false;
    poll(op,
         [&]() -> PollState {
           if (!recorded) {  // non-blocking NCCL: the call is on the stream once the communicator settles
             PollState s = settled(op);
             if (s.state != PollState::Done) return s;
             cudaError_t e = cudaEventRecord(done_, stream_);
             if (e != cudaSuccess) return {PollState::Failed, ::nabla::detail::cat("cudaEventRecord: ", cudaGetErrorString(e))};
             recorded = true;
           }
           cudaError_t e = cudaEventQuery(done_);
           if (e == cudaSuccess) return {PollState::Done, {}};
           if (e == cudaErrorNotReady) {
             ncclResult_t s = ncclSuccess;
             ncclCommGetAsyncError(comm_, &s);  // a peer's failure shows here while the kernel waits
             if (s != ncclSuccess && s != ncclInProgress)
               return {PollState::Failed, ::nabla::detail::cat("NCCL: ", ncclGetErrorString(s), " ", nccl_last_error(comm_))};
             return {};
           }
           return {PollState::Failed, ::nabla::detail::cat("CUDA: ", cudaGetErrorString(e))};
         },
         [&] { abort(); });
  }

  // Ends the communicator at once (a timeout or a failed peer): the kernels waiting on it stop.
  void abort() {
    if (!comm_) return;
    DeviceScope scope(device_);
    ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  // Whether the communicator's last non-blocking call has finished (Done), is still in progress
  // (Running) or failed.
  PollState settled(const char* what) {
    ncclResult_t s = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm_, &s);
    if (r != ncclSuccess) return {PollState::Failed, ::nabla::detail::cat(what, ": ncclCommGetAsyncError: ", ncclGetErrorString(r))};
    if (s == ncclInProgress) return {};
    if (s != ncclSuccess) return {PollState::Failed, ::nabla::detail::cat(what, ": ", ncclGetErrorString(s), " ", nccl_last_error(comm_))};
    return {PollState::Done, {}};
  }

  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
};

}  // namespace detail
}  // namespace distributed
}  // namespace nabla

#else  // no NCCL: nothing waits on a device stream

namespace nabla {
namespace distributed {
namespace detail {
using ReadyHandle = std::shared_ptr<void>;
}  // namespace detail
}  // namespace distributed
}  // namespace nabla

#endif  // NABLA_HAS_NCCL
