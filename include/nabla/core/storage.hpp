#pragma once
// Storage: ref-counted bytes on one device. Views share a Storage; its version counter is
// bumped by every in-place write so autograd can tell a saved tensor was modified.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "device.hpp"
#include "error.hpp"

namespace nabla {

inline constexpr size_t kCpuAlignment = 64;  // one cache line; also the widest SIMD load

struct StorageImpl {
  using FreeFn = void (*)(void* data, void* ctx);

  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  FreeFn free_fn = nullptr;  // releases `data`; null for memory nabla does not own
  void* free_ctx = nullptr;
  uint32_t version = 0;

  StorageImpl() = default;
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;
  ~StorageImpl() {
    if (free_fn) free_fn(data, free_ctx);
  }
};
using Storage = std::shared_ptr<StorageImpl>;

namespace detail {

// Freed CPU blocks of 1 MiB and more are kept (up to 256 MiB in all) and handed out again for
// the same size. A fresh block from the OS is paged in on first touch, which costs more than
// the op writing it: 64 MiB takes ~18 ms of page faults against ~5 ms to write (see
// docs/benchmarks.md). Small blocks are left to malloc, which already reuses them.
class CpuBlockCache {
 public:
  static constexpr size_t kMinBytes = size_t{1} << 20;
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kCapacity = 0;  // let ASan see every use after free
#else
  static constexpr size_t kCapacity = size_t{256} << 20;
#endif

  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = blocks_.size(); i-- > 0;)
      if (blocks_[i].bytes == bytes) {
        void* p = blocks_[i].ptr;
        cached_ -= bytes;
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    return nullptr;
  }
  void put(void* p, size_t bytes) {
    if (bytes > kCapacity) return std::free(p);
    std::lock_guard<std::mutex> lock(mu_);
    while (cached_ + bytes > kCapacity) {  // evict the oldest
      std::free(blocks_.front().ptr);
      cached_ -= blocks_.front().bytes;
      blocks_.erase(blocks_.begin());
    }
    blocks_.push_back({p, bytes});
    cached_ += bytes;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& b : blocks_) std::free(b.ptr);
    blocks_.clear();
    cached_ = 0;
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

 private:
  struct Block {
    void* ptr;
    size_t bytes;
  };
  std::mutex mu_;
  std::vector<Block> blocks_;
  size_t cached_ = 0;
};

// Never destroyed: tensors in static storage may be freed after it would have been.
inline CpuBlockCache& cpu_block_cache() {
  static auto* cache = new CpuBlockCache;
  return *cache;
}

inline void cpu_free(void* p, void*) { std::free(p); }
inline void cpu_free_cached(void* p, void* bytes) { cpu_block_cache().put(p, reinterpret_cast<uintptr_t>(bytes)); }

inline Storage cpu_allocate(size_t nbytes) {
  auto s = std::make_shared<StorageImpl>();
  s->nbytes = nbytes;
  s->device = Device::cpu();
  if (nbytes > 0) {
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    const bool cached = rounded >= CpuBlockCache::kMinBytes;
    s->data = cached ? cpu_block_cache().take(rounded) : nullptr;
    if (!s->data) s->data = std::aligned_alloc(kCpuAlignment, rounded);
    if (!s->data && cached) {  // out of memory: give the kept blocks back and retry once
      cpu_block_cache().clear();
      s->data = std::aligned_alloc(kCpuAlignment, rounded);
    }
    NABLA_CHECK(s->data != nullptr, OutOfMemory, "empty: could not allocate ", nbytes, " bytes on cpu");
    s->free_fn = cached ? cpu_free_cached : cpu_free;
    if (cached) s->free_ctx = reinterpret_cast<void*>(static_cast<uintptr_t>(rounded));
  }
  return s;
}

// Storage over memory the user owns (from_blob); `deleter`, if any, runs when the last
// tensor viewing it goes away.
inline Storage wrap_storage(void* data, size_t nbytes, Device device, std::function<void(void*)> deleter) {
  auto s = std::make_shared<StorageImpl>();
  s->data = data;
  s->nbytes = nbytes;
  s->device = device;
  if (deleter) {
    s->free_ctx = new std::function<void(void*)>(std::move(deleter));
    s->free_fn = [](void* p, void* ctx) {
      auto* fn = static_cast<std::function<void(void*)>*>(ctx);
      (*fn)(p);
      delete fn;
    };
  }
  return s;
}

}  // namespace detail

// Returns the CPU blocks nabla keeps for reuse to the system (like torch.cuda.empty_cache()).
inline void empty_cpu_cache() { detail::cpu_block_cache().clear(); }

}  // namespace nabla
