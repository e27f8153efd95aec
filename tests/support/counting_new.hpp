#pragma once
// A counting global operator new/delete, for measuring exactly how much memory code allocates
// (rather than from the process's noisy RSS). It forwards to malloc/free; counting is off unless
// peak_new_bytes() turns it on.
//
// Replacement allocation functions may be defined once per program and may not be inline, so
// include this header from exactly ONE translation unit of a program (tests/test_untrusted.cpp
// for nabla_tests, benchmarks/hostile_headers.cpp for nabla_hostile_headers).
//
// Not replaced: the align_val_t forms (they keep the library's own pair, so no block crosses
// allocators). Replaced: the nothrow forms too (std::stable_sort's buffer uses them): under
// ASan an unreplaced one would come from ASan's allocator and reach counted_delete's free().

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace nabla_test::counting_new {
inline std::atomic<bool> counting{false};
inline std::atomic<int64_t> live{0}, peak{0};
constexpr size_t kHead = 16;  // keeps the block 16-byte aligned, as malloc's

inline void* counted_new(size_t n) {
  void* raw = std::malloc(n + kHead);
  if (!raw) throw std::bad_alloc();
  *static_cast<size_t*>(raw) = n;
  if (counting.load(std::memory_order_relaxed)) {
    const int64_t now = live.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed) + static_cast<int64_t>(n);
    int64_t p = peak.load(std::memory_order_relaxed);
    while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
    }
  }
  return static_cast<char*>(raw) + kHead;
}
inline void counted_delete(void* p) noexcept {
  if (!p) return;
  void* raw = static_cast<char*>(p) - kHead;
  // blocks from before counting started are subtracted too; the peak is measured from a baseline
  if (counting.load(std::memory_order_relaxed))
    live.fetch_sub(static_cast<int64_t>(*static_cast<size_t*>(raw)), std::memory_order_relaxed);
  std::free(raw);
}
}  // namespace nabla_test::counting_new

namespace nabla_test {
// Peak bytes allocated with operator new while f runs, above what was live when it started.
template <class F>
int64_t peak_new_bytes(F&& f) {
  namespace cn = counting_new;
  cn::live = 0;
  cn::peak = 0;
  cn::counting = true;
  try {
    f();
  } catch (...) {
    cn::counting = false;
    throw;
  }
  cn::counting = false;
  return cn::peak.load();
}
}  // namespace nabla_test

void* operator new(size_t n) { return nabla_test::counting_new::counted_new(n); }
void* operator new[](size_t n) { return nabla_test::counting_new::counted_new(n); }
void operator delete(void* p) noexcept { nabla_test::counting_new::counted_delete(p); }
void operator delete[](void* p) noexcept { nabla_test::counting_new::counted_delete(p); }
void operator delete(void* p, size_t) noexcept { nabla_test::counting_new::counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { nabla_test::counting_new::counted_delete(p); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return nabla_test::counting_new::counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { nabla_test::counting_new::counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { nabla_test::counting_new::counted_delete(p); }
