#pragma once
// Storage: ref-counted bytes on one device. Views share a Storage; its version counter is
// bumped by every in-place write so autograd can tell a saved tensor was modified.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

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

inline void cpu_free(void* p, void*) { std::free(p); }

inline Storage cpu_allocate(size_t nbytes) {
  auto s = std::make_shared<StorageImpl>();
  s->nbytes = nbytes;
  s->device = Device::cpu();
  if (nbytes > 0) {
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    s->data = std::aligned_alloc(kCpuAlignment, rounded);
    NABLA_CHECK(s->data != nullptr, OutOfMemory, "empty: could not allocate ", nbytes, " bytes on cpu");
    s->free_fn = cpu_free;
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
}  // namespace nabla
