#pragma once
// Storage: ref-counted bytes on one device. Views share a Storage; its version counter is
// bumped by every in-place write so autograd can tell a saved tensor was modified. Also the CPU
// allocator and the byte accounting (in use, peak, count, limit) that each device's allocator
// keeps; the calls a user makes on it are in memory.hpp.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
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

// What nabla::memory_stats(device) reports (nabla::cuda::MemoryStats is the same struct).
struct MemoryStats {
  size_t in_use = 0;         // bytes held by live tensors, as allocated (CPU: rounded to 64 bytes)
  size_t peak = 0;           // most bytes in use at once since the start or reset_peak_memory_stats
  size_t reserved = 0;       // bytes the allocator holds: in use + cached (CpuBlockCache, CUDA pool)
  uint64_t allocations = 0;  // allocations made since the start (not reset with the peak)
  size_t limit = 0;          // set_memory_limit's bound on in_use; 0 = none
  std::string peak_tag;      // with memory profiling on: the MemoryScope allocating at the peak
};

namespace detail {

// "1.50 MiB (1572864 bytes)", for out-of-memory messages.
inline std::string describe_bytes(size_t bytes) {
  static constexpr const char* kUnits[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024.0 && unit < 4) {
    v /= 1024.0;
    ++unit;
  }
  if (unit == 0) return std::to_string(bytes) + " bytes";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  return std::string(buf) + " (" + std::to_string(bytes) + " bytes)";
}

// The tag of this thread's innermost live nabla::MemoryScope (null: none), and whether a new
// peak records it. Both are read off the hot path only: on a new peak, or when throwing.
inline thread_local const char* memory_tag = nullptr;
inline std::atomic<bool> memory_profiling{false};

// One device's byte accounting. Per allocation: a relaxed load of the limit, one relaxed add to
// in_use (a compare-exchange loop only while a limit is set, so a thread never fails on another's
// attempt that is about to be rolled back), one to the count, and a relaxed load of the peak,
// which is written only when it grows.
struct MemoryCounters {
  std::atomic<size_t> in_use{0};
  std::atomic<size_t> peak{0};
  std::atomic<uint64_t> allocations{0};
  std::atomic<size_t> limit{0};  // 0: none
  std::mutex tag_mu;             // guards peak_tag
  std::string peak_tag;

  // Counts `bytes` as in use before the memory is taken and returns the new total; throws
  // OutOfMemory, leaving the counters as they were, when that would pass the limit.
  size_t reserve(size_t bytes, Device device) {
    const size_t lim = limit.load(std::memory_order_relaxed);
    if (lim == 0) [[likely]]
      return in_use.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    size_t cur = in_use.load(std::memory_order_relaxed);
    do {
      if (bytes > lim || cur > lim - bytes) throw_over_limit(bytes, cur, lim, device);
    } while (!in_use.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
    return cur + bytes;
  }
  // The memory was taken: count the allocation and raise the peak to `now` (reserve's result).
  void commit(size_t now) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    size_t prev = peak.load(std::memory_order_relaxed);
    if (now > prev) [[unlikely]]
      raise_peak(now, prev);
  }
  // Takes back what reserve counted: the memory was freed, or could not be had.
  void release(size_t bytes) { in_use.fetch_sub(bytes, std::memory_order_relaxed); }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(tag_mu);
    peak.store(in_use.load(std::memory_order_relaxed), std::memory_order_relaxed);
    peak_tag.clear();
  }
  // Everything but `reserved`, which only the allocator knows.
  MemoryStats snapshot() {
    MemoryStats s;
    s.in_use = in_use.load(std::memory_order_relaxed);
    s.peak = peak.load(std::memory_order_relaxed);
    s.allocations = allocations.load(std::memory_order_relaxed);
    s.limit = limit.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(tag_mu);
    s.peak_tag = peak_tag;
    return s;
  }

 private:
  void raise_peak(size_t now, size_t prev) {
    while (now > prev) {
      if (!peak.compare_exchange_weak(prev, now, std::memory_order_relaxed)) continue;
      if (memory_profiling.load(std::memory_order_relaxed)) {
        std::lock_guard<std::mutex> lock(tag_mu);
        if (now >= peak.load(std::memory_order_relaxed))  // not passed by another thread meanwhile
          peak_tag = memory_tag ? memory_tag : "";
      }
      return;
    }
  }
  [[noreturn]] static void throw_over_limit(size_t bytes, size_t used, size_t lim, Device device) {
    throw OutOfMemory(cat("nabla: out of memory on ", device, ": tried to allocate ", describe_bytes(bytes), " with ",
                          describe_bytes(used), " in use, which would pass the memory limit of ",
                          describe_bytes(lim), " (nabla::set_memory_limit)",
                          memory_tag ? cat(", allocating for \"", memory_tag, "\"") : std::string()));
  }
};

// Never destroyed: tensors in static storage may be freed after it would have been.
inline MemoryCounters& cpu_memory_counters() {
  static auto* counters = new MemoryCounters;
  return *counters;
}

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

// The free functions get the rounded size the allocation counted as their context, so a block
// gives back exactly what it added, whether it goes to the system or to the cache.
inline void cpu_free(void* p, void* bytes) {
  cpu_memory_counters().release(reinterpret_cast<uintptr_t>(bytes));
  std::free(p);
}
inline void cpu_free_cached(void* p, void* bytes) {
  cpu_memory_counters().release(reinterpret_cast<uintptr_t>(bytes));
  cpu_block_cache().put(p, reinterpret_cast<uintptr_t>(bytes));
}

inline Storage cpu_allocate(size_t nbytes) {
  auto s = std::make_shared<StorageImpl>();
  s->nbytes = nbytes;
  s->device = Device::cpu();
  if (nbytes > 0) {
    NABLA_CHECK(nbytes <= SIZE_MAX - kCpuAlignment, OutOfMemory, "empty: cannot allocate ", nbytes,
                " bytes on cpu");
    const size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    MemoryCounters& counters = cpu_memory_counters();
    const size_t now = counters.reserve(rounded, Device::cpu());  // throws past the memory limit
    const bool cached = rounded >= CpuBlockCache::kMinBytes;
    s->data = cached ? cpu_block_cache().take(rounded) : nullptr;
    if (!s->data) s->data = std::aligned_alloc(kCpuAlignment, rounded);
    if (!s->data && cached) {  // out of memory: give the kept blocks back and retry once
      cpu_block_cache().clear();
      s->data = std::aligned_alloc(kCpuAlignment, rounded);
    }
    if (!s->data) [[unlikely]] {
      counters.release(rounded);
      throw OutOfMemory(cat("nabla::empty: could not allocate ", describe_bytes(rounded), " on cpu; ",
                            describe_bytes(counters.in_use.load(std::memory_order_relaxed)), " in use by nabla"));
    }
    counters.commit(now);
    s->free_fn = cached ? cpu_free_cached : cpu_free;
    s->free_ctx = reinterpret_cast<void*>(static_cast<uintptr_t>(rounded));
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
