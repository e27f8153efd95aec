#pragma once
// Memory accounting on every device, like torch.cuda.memory_stats but for the CPU too: bytes in
// use, peak, reserved and the allocation count; a limit on the bytes in use (past it an
// allocation throws nabla::OutOfMemory and the program goes on); and MemoryScope tags that name
// what was allocating when the peak was reached, with set_memory_profiling(true).
//
//   nb::MemoryLimitGuard cap(nb::Device::cpu(), size_t{2} << 30);   // 2 GiB until scope end
//   nb::reset_peak_memory_stats(nb::Device::cpu());
//   train_step();
//   std::printf("peak %zu bytes\n", nb::memory_stats(nb::Device::cpu()).peak);
//
// The counters live in the allocators (core/storage.hpp for the CPU, backend/cuda/runtime.hpp
// for CUDA). Memory the user owns (from_blob) is not counted.

#include <atomic>
#include <cstddef>

#include "cuda/api.hpp"
#include "../core/device.hpp"
#include "../core/error.hpp"
#include "../core/storage.hpp"

namespace nabla {

namespace detail {
// The index of CUDA device `device`, or a DeviceError naming `fn` when there is no such device.
inline int checked_cuda_index(Device device, const char* fn) {
  NABLA_CHECK(cuda::is_available(), DeviceError, fn, ": ", device,
              " was asked for, but no CUDA device is available (no driver or no GPU, or the program does not "
              "link nabla::cuda)");
  const int n = cuda::device_count();
  NABLA_CHECK(device.index >= 0 && device.index < n, DeviceError, fn, ": ", device, " does not exist (", n,
              " CUDA device", n == 1 ? "" : "s", " visible)");
  return device.index;
}
}  // namespace detail

// in_use, peak, reserved, allocations, limit and (with profiling on) peak_tag of `device`.
inline MemoryStats memory_stats(Device device) {
  if (device.is_cpu()) {
    MemoryStats s = detail::cpu_memory_counters().snapshot();
    s.reserved = s.in_use + detail::cpu_block_cache().cached_bytes();
    return s;
  }
  return cuda::memory_stats(detail::checked_cuda_index(device, "memory_stats"));
}

// Sets the peak to the bytes in use now (and forgets its tag), to measure a phase of the program.
inline void reset_peak_memory_stats(Device device) {
  if (device.is_cpu()) return detail::cpu_memory_counters().reset_peak();
  cuda::reset_peak_memory_stats(detail::checked_cuda_index(device, "reset_peak_memory_stats"));
}

// Bounds the bytes in use on `device` (0: no bound). An allocation that would pass it throws
// nabla::OutOfMemory naming the device, the bytes requested, the bytes in use and the limit; the
// counters stay as they were and later allocations that fit succeed. Lowering the limit below
// what is in use frees nothing: it only refuses allocations until enough is freed.
inline void set_memory_limit(Device device, size_t bytes) {
  if (device.is_cpu()) return detail::cpu_memory_counters().limit.store(bytes, std::memory_order_relaxed);
  cuda::set_memory_limit(bytes, detail::checked_cuda_index(device, "set_memory_limit"));
}

inline size_t get_memory_limit(Device device) {
  if (device.is_cpu()) return detail::cpu_memory_counters().limit.load(std::memory_order_relaxed);
  return cuda::get_memory_limit(detail::checked_cuda_index(device, "get_memory_limit"));
}

// Sets a memory limit for its lifetime and puts the previous one back.
class MemoryLimitGuard {
 public:
  MemoryLimitGuard(Device device, size_t bytes) : device_(device), previous_(get_memory_limit(device)) {
    set_memory_limit(device, bytes);
  }
  ~MemoryLimitGuard() { set_memory_limit(device_, previous_); }
  MemoryLimitGuard(const MemoryLimitGuard&) = delete;
  MemoryLimitGuard& operator=(const MemoryLimitGuard&) = delete;

 private:
  Device device_;
  size_t previous_;
};

// With profiling on, each new peak (on any device) records the tag of the allocating thread's
// innermost MemoryScope in MemoryStats::peak_tag ("" when none). Off by default; it costs a
// mutex only when a peak is raised. Call reset_peak_memory_stats after turning it on, so the peak
// it tags is one reached with it on.
inline void set_memory_profiling(bool on) { detail::memory_profiling.store(on, std::memory_order_relaxed); }
inline bool memory_profiling_enabled() { return detail::memory_profiling.load(std::memory_order_relaxed); }

// Names what this thread allocates until the scope ends (the innermost scope wins): for
// MemoryStats::peak_tag and for the message of an OutOfMemory thrown at the limit. `tag` is not
// copied and must outlive the scope (a string literal does).
//
//   { nb::MemoryScope scope("conv2d"); y = conv2d(x, w); }
class MemoryScope {
 public:
  explicit MemoryScope(const char* tag) : previous_(detail::memory_tag) { detail::memory_tag = tag; }
  ~MemoryScope() { detail::memory_tag = previous_; }
  MemoryScope(const MemoryScope&) = delete;
  MemoryScope& operator=(const MemoryScope&) = delete;

  // The tag of this thread's innermost live scope, or null.
  static const char* current() { return detail::memory_tag; }

 private:
  const char* previous_;
};

}  // namespace nabla
