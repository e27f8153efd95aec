#pragma once
// Host side of the CUDA backend (host code; needs the CUDA runtime headers, included only by
// backend.cu): status checks with file:line, device discovery, one stream per device, the
// stream-ordered memory pool with statistics and out-of-memory recovery, and the pinned ring
// that makes host-to-device copies asynchronous. Every piece of shared state is set up under a
// mutex, so a second host thread (a DataLoader's prefetch thread) may allocate and copy too.

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/storage.hpp"
#include "api.hpp"

#define NABLA_CUDA_CHECK(expr) ::nabla::cuda::detail::check_status((expr), #expr, __FILE__, __LINE__)

namespace nabla {
namespace cuda {
namespace detail {

inline void check_status(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear the sticky-free error so later calls are not blamed
  throw Error(::nabla::detail::cat("nabla::cuda: ", expr, " failed with ", cudaGetErrorName(e), " (",
                                   cudaGetErrorString(e), ") at ", file, ":", line));
}

// Number of usable devices; 0 when there is no driver or no device (never an exception).
inline int probe_device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

// What cuda::fused_stats() reports: how often the cuDNN / cuBLASLt paths ran or handed a call
// back to the composite, and the cuDNN algorithm of each direction's last run. Relaxed atomics:
// they order nothing, they only count.
struct FusedCounters {
  std::atomic<uint64_t> conv_cudnn{0}, conv_declined{0}, linear_cublaslt{0}, linear_declined{0};
  std::atomic<int> last_conv_algo[3] = {-1, -1, -1};
};
inline FusedCounters& fused_counters() {
  static FusedCounters counters;
  return counters;
}
inline void count(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

// NABLA_LOG=1: the backend says on stderr why a library declined a problem (once per problem).
inline bool log_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("NABLA_LOG");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

struct DeviceState {
  int index = 0;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  ::nabla::detail::MemoryCounters memory;  // in use, peak, count and limit (bytes as requested)
  int sm_count = 1;
};

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    NABLA_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device) NABLA_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != prev_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
};

inline DeviceState& device_state(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceState>> states;
  std::lock_guard<std::mutex> lock(mu);
  const int n = probe_device_count();
  NABLA_CHECK(device >= 0 && device < n, DeviceError, "cuda: device cuda:", device, " does not exist (",
              n, " CUDA device", n == 1 ? "" : "s", " visible)");
  if (states.empty()) states.resize(static_cast<size_t>(n));
  auto& s = states[static_cast<size_t>(device)];
  if (!s) {
    s = std::make_unique<DeviceState>();
    s->index = device;
    DeviceGuard guard(device);
    NABLA_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    NABLA_CUDA_CHECK(cudaMemPoolCreate(&s->pool, &props));
    uint64_t keep = UINT64_MAX;  // keep freed blocks cached instead of returning them at each sync
    NABLA_CUDA_CHECK(cudaMemPoolSetAttribute(s->pool, cudaMemPoolAttrReleaseThreshold, &keep));
    NABLA_CUDA_CHECK(cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, device));
  }
  return *s;
}

inline cudaStream_t stream(int device) { return device_state(device).stream; }

// Storage's free function gets (pointer, context); the context packs the byte count (low 48
// bits) and the device index (high 16) so no allocation is needed to remember them.
inline void* pack_ctx(size_t nbytes, int device) {
  return reinterpret_cast<void*>((static_cast<uintptr_t>(device) << 48) | (nbytes & ((uintptr_t{1} << 48) - 1)));
}

inline void free_device(void* p, void* ctx) {
  auto bits = reinterpret_cast<uintptr_t>(ctx);
  int device = static_cast<int>(bits >> 48);
  size_t nbytes = static_cast<size_t>(bits & ((uintptr_t{1} << 48) - 1));
  DeviceState& s = device_state(device);
  cudaFreeAsync(p, s.stream);  // no throw from a destructor path; errors surface at the next sync
  s.memory.release(nbytes);
}

inline std::string format_bytes(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return buf;
}

// Host-to-device copies go through a per-device ring of page-locked (pinned) buffers: the
// caller's bytes are memcpy'd into the next slot, the DMA copy is enqueued on the device's
// stream and an event is recorded, and the call returns without synchronising. A slot is
// reused only after its event has fired, so the host never overwrites bytes a copy has yet to
// read and the caller may free its buffer on return. Copies larger than a slot go in pieces
// (the memcpy of one piece overlaps the DMA of the previous). One mutex guards the ring, so a
// DataLoader thread calling tensor.to(cuda) while the main thread launches work is safe; the
// copy is ordered on the same stream as the work that will read the tensor.
class PinnedRing {
 public:
  static constexpr int kSlots = 8;
  static constexpr size_t kMaxSlotBytes = size_t{16} << 20;  // bounds the ring at 128 MiB pinned
  static constexpr size_t kMinSlotBytes = size_t{64} << 10;

  explicit PinnedRing(int device) : device_(device) {}
  // Never freed: the ring lives as long as the process (the driver may be gone at exit).
  PinnedRing(const PinnedRing&) = delete;
  PinnedRing& operator=(const PinnedRing&) = delete;

  // Enqueues dst[0, bytes) = src[0, bytes) on `s` (a stream of this ring's device). `src` is
  // ordinary host memory and may be reused by the caller as soon as this returns.
  void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceGuard guard(device_);  // events belong to the device that is current when created
    const char* from = static_cast<const char*>(src);
    char* to = static_cast<char*>(dst);
    while (bytes > 0) {
      const size_t piece = bytes < kMaxSlotBytes ? bytes : kMaxSlotBytes;
      Slot& slot = slots_[next_];
      next_ = (next_ + 1) % kSlots;
      if (!slot.event) {
        NABLA_CUDA_CHECK(cudaEventCreateWithFlags(&slot.event, cudaEventDisableTiming));
      } else {
        NABLA_CUDA_CHECK(cudaEventSynchronize(slot.event));  // the slot's previous copy has read it
      }
      if (piece > slot.capacity) {
        if (slot.buffer) NABLA_CUDA_CHECK(cudaFreeHost(slot.buffer));
        slot.buffer = nullptr;
        slot.capacity = 0;
        size_t cap = kMinSlotBytes;
        while (cap < piece) cap *= 2;
        if (cap > kMaxSlotBytes) cap = kMaxSlotBytes;
        if (cudaMallocHost(&slot.buffer, cap) != cudaSuccess) {  // e.g. a low locked-memory limit
          cudaGetLastError();
          slot.buffer = nullptr;
        } else {
          slot.capacity = cap;
        }
      }
      if (slot.buffer) {
        std::memcpy(slot.buffer, from, piece);
        NABLA_CUDA_CHECK(cudaMemcpyAsync(to, slot.buffer, piece, cudaMemcpyHostToDevice, s));
      } else {  // no pinned memory to be had: a synchronous copy from the caller's memory
        NABLA_CUDA_CHECK(cudaMemcpyAsync(to, from, piece, cudaMemcpyHostToDevice, s));
        NABLA_CUDA_CHECK(cudaStreamSynchronize(s));
      }
      NABLA_CUDA_CHECK(cudaEventRecord(slot.event, s));
      from += piece;
      to += piece;
      bytes -= piece;
    }
  }

 private:
  struct Slot {
    void* buffer = nullptr;
    size_t capacity = 0;
    cudaEvent_t event = nullptr;
  };
  std::mutex mu_;
  int device_;
  int next_ = 0;
  Slot slots_[kSlots];
};

inline PinnedRing& pinned_ring(int device) {
  static std::mutex mu;
  static std::vector<PinnedRing*> rings;  // never destroyed: the driver may be gone at exit
  std::lock_guard<std::mutex> lock(mu);
  const int n = probe_device_count();
  NABLA_CHECK(device >= 0 && device < n, DeviceError, "cuda: device cuda:", device, " does not exist");
  if (rings.empty()) rings.resize(static_cast<size_t>(n), nullptr);
  PinnedRing*& r = rings[static_cast<size_t>(device)];
  if (!r) r = new PinnedRing(device);
  return *r;
}

inline Storage allocate(size_t nbytes, int device) {
  DeviceState& s = device_state(device);
  auto st = std::make_shared<StorageImpl>();
  st->nbytes = nbytes;
  st->device = Device::cuda(device);
  if (nbytes == 0) return st;
  DeviceGuard guard(device);
  // Counted before the pool is asked, so the limit holds across threads; every way out below
  // but success gives the bytes back.
  const size_t now = s.memory.reserve(nbytes, Device::cuda(device));  // throws past the limit
  struct Unreserve {
    ::nabla::detail::MemoryCounters& memory;
    size_t nbytes;
    bool armed = true;
    ~Unreserve() {
      if (armed) memory.release(nbytes);
    }
  } unreserve{s.memory, nbytes};
  void* p = nullptr;
  cudaError_t e = cudaMallocFromPoolAsync(&p, nbytes, s.pool, s.stream);
  if (e == cudaErrorMemoryAllocation) {  // give cached blocks back to the driver and try once more
    cudaGetLastError();
    NABLA_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    NABLA_CUDA_CHECK(cudaMemPoolTrimTo(s.pool, 0));
    e = cudaMallocFromPoolAsync(&p, nbytes, s.pool, s.stream);
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    const size_t others = s.memory.in_use.load(std::memory_order_relaxed) - nbytes;  // less this attempt
    throw OutOfMemory(::nabla::detail::cat("nabla::cuda: out of memory on cuda:", device, ": tried to allocate ",
                                           format_bytes(nbytes), "; in use by nabla ", format_bytes(others),
                                           ", free ", format_bytes(free_b), " of ", format_bytes(total_b), " total"));
  }
  NABLA_CUDA_CHECK(e);
  unreserve.armed = false;
  s.memory.commit(now);
  st->data = p;
  st->free_fn = free_device;
  st->free_ctx = pack_ctx(nbytes, device);
  return st;
}

}  // namespace detail
}  // namespace cuda
}  // namespace nabla
