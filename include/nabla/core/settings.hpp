#pragma once
// Process-wide numeric settings shared by the backends.

#include <atomic>
#include <string>

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(__GNUC__)
#include <xmmintrin.h>  // _mm_getcsr/_mm_setcsr; GCC and Clang use their builtins (no intrinsics header)
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "error.hpp"

namespace nabla {

enum class MatmulPrecision : int { Highest = 0, High = 1, Medium = 2 };

namespace detail {
inline std::atomic<int>& matmul_precision_ref() {
  static std::atomic<int> p{0};
  return p;
}
}  // namespace detail

// Like torch.set_float32_matmul_precision: "highest" (default) keeps float32 matmuls exact
// float32; "high" and "medium" let the CUDA backend use TF32 tensor cores for them.
inline void set_float32_matmul_precision(const std::string& precision) {
  int p = precision == "highest" ? 0 : precision == "high" ? 1 : precision == "medium" ? 2 : -1;
  NABLA_CHECK(p >= 0, ValueError, "set_float32_matmul_precision: expected 'highest', 'high' or 'medium', got '",
              precision, "'");
  detail::matmul_precision_ref().store(p);
}
inline MatmulPrecision float32_matmul_precision() {
  return static_cast<MatmulPrecision>(detail::matmul_precision_ref().load());
}

// Like torch.set_flush_denormal: on x86, denormal float32/float64 values are read as zero and
// results that would be denormal are flushed to zero (MXCSR FTZ + DAZ), on the calling thread and
// on the OpenMP worker threads (each thread has its own flags; a thread pool created later with
// more threads starts without them). Denormals make each arithmetic instruction that touches
// one ~100x slower, and training produces them (Adam's squared-gradient averages of tiny
// gradients). Returns false on CPUs where it is not supported (nothing changes there).
inline bool set_flush_denormal(bool on) {
#if defined(__x86_64__) || defined(_M_X64)
  auto apply = [on] {
    const unsigned bits = 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
#if defined(__GNUC__)
    const unsigned csr = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(on ? (csr | bits) : (csr & ~bits));
#else
    _mm_setcsr(on ? (_mm_getcsr() | bits) : (_mm_getcsr() & ~bits));
#endif
  };
  apply();
#if defined(_OPENMP)
#pragma omp parallel
  apply();
#endif
  return true;
#else
  (void)on;
  return false;
#endif
}

}  // namespace nabla
