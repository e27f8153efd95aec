#pragma once
// Host side of the CUDA backend (host code; needs the CUDA runtime headers, included only by
// backend.cu): status checks with file:line, device discovery, one stream per device, and the
// stream-ordered memory pool with statistics and out-of-memory recovery.

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstring>
#include <cstdint>
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

struct DeviceState {
  int index = 0;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  std::atomic<size_t> in_use{0};
  std::atomic<size_t> peak{0};
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
  s.in_use -= nbytes;
}

inline std::string format_bytes(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return buf;
}

// A reusable page-locked host buffer for large host-to-device copies: pinned memory is copied
// by DMA at full bus speed, where pageable memory goes through the driver's own bounce buffer.
class PinnedStaging {
 public:
  static constexpr size_t kMinBytes = size_t{1} << 20;  // below this the bounce costs nothing
  // Copies `bytes` from host memory `src` to device memory `dst` on `s`, and waits for it.
  void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes > capacity_) {
      if (buffer_) NABLA_CUDA_CHECK(cudaFreeHost(buffer_));
      buffer_ = nullptr;
      capacity_ = 0;
      NABLA_CUDA_CHECK(cudaMallocHost(&buffer_, bytes));
      capacity_ = bytes;
    }
    std::memcpy(buffer_, src, bytes);
    NABLA_CUDA_CHECK(cudaMemcpyAsync(dst, buffer_, bytes, cudaMemcpyHostToDevice, s));
    NABLA_CUDA_CHECK(cudaStreamSynchronize(s));  // the buffer is reused by the next copy
  }

 private:
  std::mutex mu_;
  void* buffer_ = nullptr;
  size_t capacity_ = 0;
};

inline PinnedStaging& pinned_staging() {
  static auto* staging = new PinnedStaging;  // never destroyed: the driver may be gone at exit
  return *staging;
}

inline Storage allocate(size_t nbytes, int device) {
  DeviceState& s = device_state(device);
  auto st = std::make_shared<StorageImpl>();
  st->nbytes = nbytes;
  st->device = Device::cuda(device);
  if (nbytes == 0) return st;
  DeviceGuard guard(device);
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
    throw OutOfMemory(::nabla::detail::cat("nabla::cuda: out of memory on cuda:", device, ": tried to allocate ",
                                           format_bytes(nbytes), "; in use by nabla ", format_bytes(s.in_use.load()),
                                           ", free ", format_bytes(free_b), " of ", format_bytes(total_b), " total"));
  }
  NABLA_CUDA_CHECK(e);
  size_t now = (s.in_use += nbytes);
  size_t prev = s.peak.load();
  while (now > prev && !s.peak.compare_exchange_weak(prev, now)) {
  }
  st->data = p;
  st->free_fn = free_device;
  st->free_ctx = pack_ctx(nbytes, device);
  return st;
}

}  // namespace detail
}  // namespace cuda
}  // namespace nabla
