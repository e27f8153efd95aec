#pragma once
// CPU matrix multiply behind nabla's matmul: a BLIS/GotoBLAS-style blocked GEMM with run-time
// selected AVX-512 / AVX2 / portable micro-kernels and OpenMP threading (gemm_native), plus a
// thin dispatcher (gemm) that forwards BLAS-compatible layouts to CBLAS when NABLA_HAS_CBLAS is set.
// The blocked driver is shared with the bfloat16 GEMM (gemm_bf16.hpp), whose kernels bring their
// own packing. NABLA_CPU_ISA (scalar, avx2, avx512, avx512_bf16, amx) caps the kernels picked.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NABLA_GEMM_X86 1
#include <immintrin.h>
// The SIMD kernels carry their own target attributes so that the header works when users
// compile without -march flags; the ISA is picked at run time.
#define NABLA_GEMM_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define NABLA_GEMM_AVX2 __attribute__((target("avx2,fma")))
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemv.hpp"  // after the ISA attributes: it compiles its loops once per ISA

#ifdef NABLA_HAS_CBLAS
#include <cblas.h>
#if defined(NABLA_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
#endif
#endif

namespace nabla::cpu {

namespace gemm_detail {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

inline Isa detect_isa() {
#ifdef NABLA_GEMM_X86
  __builtin_cpu_init();
  // libgcc's checks include the OS (XCR0) state, so a "supported" ISA is also usable.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::scalar;
}

// NABLA_CPU_ISA: the most capable kernel family the run-time dispatch may pick, so that tests and
// benchmarks can run every path a CPU supports (a cap, never a promise: a CPU without the ISA
// still gets what it has). Levels: scalar 0, avx2 1, avx512 2, avx512_bf16 3, amx 4; unset: no cap.
constexpr int kNoIsaCap = 1 << 20;
inline int parse_isa_cap(const char* s) {
  if (!s || !*s) return kNoIsaCap;
  const char* names[] = {"scalar", "avx2", "avx512", "avx512_bf16", "amx"};
  for (int i = 0; i < 5; ++i)
    if (std::strcmp(s, names[i]) == 0) return i;
  std::fprintf(stderr, "nabla: ignoring NABLA_CPU_ISA=%s (expected scalar, avx2, avx512, avx512_bf16 or amx)\n", s);
  return kNoIsaCap;
}
inline int isa_cap() {
  static const int cap = parse_isa_cap(std::getenv("NABLA_CPU_ISA"));
  return cap;
}

inline Isa best_isa() {
  static const Isa isa = Isa(std::min(int(detect_isa()), isa_cap()));
  return isa;
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Writes (or adds) an m x n tile held column-major with leading dimension ldt into C.
// Edge tiles and C layouts without a unit row stride go through here.
template <class T>
inline void store_tile(const T* t, int64_t ldt, T* C, int64_t rsC, int64_t csC, int64_t m,
                       int64_t n, bool acc) {
  for (int64_t j = 0; j < n; ++j) {
    T* c = C + j * csC;
    const T* s = t + j * ldt;
    if (acc)
      for (int64_t i = 0; i < m; ++i) c[i * rsC] += s[i];
    else
      for (int64_t i = 0; i < m; ++i) c[i * rsC] = s[i];
  }
}

// Portable micro-kernel; small enough tile that the compiler keeps it in SSE registers.
template <class T>
struct ScalarKernel {
  static constexpr int64_t MR = 8, NR = 4, MC = 256, KC = 256, NC = 4096;
  static void ukr(int64_t kc, const T* __restrict A, const T* __restrict B, T* C, int64_t rsC,
                  int64_t csC, int64_t m, int64_t n, bool acc) {
    T c[NR][MR] = {};
    for (int64_t k = 0; k < kc; ++k, A += MR, B += NR)
      for (int64_t j = 0; j < NR; ++j)
        for (int64_t i = 0; i < MR; ++i) c[j][i] += A[i] * B[j];
    store_tile(&c[0][0], MR, C, rsC, csC, m, n, acc);
  }
};

#ifdef NABLA_GEMM_X86
// Thin per-type vector wrappers so one kernel template serves float and double per ISA.
template <class T> struct V512;
template <> struct V512<float> {
  using V = __m512;
  static constexpr int W = 16;
  NABLA_GEMM_AVX512 static V zero() { return _mm512_setzero_ps(); }
  NABLA_GEMM_AVX512 static V load(const float* p) { return _mm512_loadu_ps(p); }
  NABLA_GEMM_AVX512 static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  NABLA_GEMM_AVX512 static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  NABLA_GEMM_AVX512 static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  NABLA_GEMM_AVX512 static V add(V a, V b) { return _mm512_add_ps(a, b); }
};
template <> struct V512<double> {
  using V = __m512d;
  static constexpr int W = 8;
  NABLA_GEMM_AVX512 static V zero() { return _mm512_setzero_pd(); }
  NABLA_GEMM_AVX512 static V load(const double* p) { return _mm512_loadu_pd(p); }
  NABLA_GEMM_AVX512 static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  NABLA_GEMM_AVX512 static V bcast(const double* p) { return _mm512_set1_pd(*p); }
  NABLA_GEMM_AVX512 static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  NABLA_GEMM_AVX512 static V add(V a, V b) { return _mm512_add_pd(a, b); }
};
template <class T> struct V256;
template <> struct V256<float> {
  using V = __m256;
  static constexpr int W = 8;
  NABLA_GEMM_AVX2 static V zero() { return _mm256_setzero_ps(); }
  NABLA_GEMM_AVX2 static V load(const float* p) { return _mm256_loadu_ps(p); }
  NABLA_GEMM_AVX2 static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  NABLA_GEMM_AVX2 static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  NABLA_GEMM_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  NABLA_GEMM_AVX2 static V add(V a, V b) { return _mm256_add_ps(a, b); }
};
template <> struct V256<double> {
  using V = __m256d;
  static constexpr int W = 4;
  NABLA_GEMM_AVX2 static V zero() { return _mm256_setzero_pd(); }
  NABLA_GEMM_AVX2 static V load(const double* p) { return _mm256_loadu_pd(p); }
  NABLA_GEMM_AVX2 static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  NABLA_GEMM_AVX2 static V bcast(const double* p) { return _mm256_broadcast_sd(p); }
  NABLA_GEMM_AVX2 static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  NABLA_GEMM_AVX2 static V add(V a, V b) { return _mm256_add_pd(a, b); }
};

// The micro-kernel body: a (2*W) x NR tile of C lives in 2*NR vector registers for the whole
// k loop; each step loads two vectors of packed A and broadcasts NR packed B values. The body
// is a macro because GCC only inlines the intrinsics into functions with a matching target.
#define NABLA_GEMM_UKR_BODY(VT)                                                              \
  using V = typename VT::V;                                                                  \
  constexpr int W = VT::W;                                                                   \
  V c0[NR], c1[NR];                                                                          \
  _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) c0[j] = c1[j] = VT::zero();          \
  const bool full = (m == 2 * W) && (n == NR) && (rsC == 1);                                 \
  if (full) {                                                                                \
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {                                  \
      _mm_prefetch(reinterpret_cast<const char*>(C + j * csC), _MM_HINT_T0);                 \
      _mm_prefetch(reinterpret_cast<const char*>(C + j * csC + 2 * W - 1), _MM_HINT_T0);     \
    }                                                                                        \
  }                                                                                          \
  _Pragma("GCC unroll 4") for (int64_t k = 0; k < kc; ++k) {                                 \
    _mm_prefetch(reinterpret_cast<const char*>(A + PF * 2 * W), _MM_HINT_T0);                \
    _mm_prefetch(reinterpret_cast<const char*>(A + PF * 2 * W + W), _MM_HINT_T0);            \
    const V a0 = VT::load(A), a1 = VT::load(A + W);                                          \
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {                                  \
      const V b = VT::bcast(B + j);                                                          \
      c0[j] = VT::fma(a0, b, c0[j]);                                                         \
      c1[j] = VT::fma(a1, b, c1[j]);                                                         \
    }                                                                                        \
    A += 2 * W;                                                                              \
    B += BS;                                                                                 \
  }                                                                                          \
  if (full) {                                                                                \
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {                                  \
      T* c = C + j * csC;                                                                    \
      if (acc) {                                                                             \
        c0[j] = VT::add(c0[j], VT::load(c));                                                 \
        c1[j] = VT::add(c1[j], VT::load(c + W));                                             \
      }                                                                                      \
      VT::store(c, c0[j]);                                                                   \
      VT::store(c + W, c1[j]);                                                               \
    }                                                                                        \
  } else {                                                                                   \
    alignas(64) T tile[NR * 2 * W];                                                          \
    _Pragma("GCC unroll 16") for (int j = 0; j < NR; ++j) {                                  \
      VT::store(tile + j * 2 * W, c0[j]);                                                    \
      VT::store(tile + j * 2 * W + W, c1[j]);                                                \
    }                                                                                        \
    store_tile(tile, 2 * W, C, rsC, csC, m, n, acc);                                         \
  }

// NR is the number of C columns computed, BS the column count of the packed B sliver (they
// differ only for narrow edge panels, which then cost a fraction of a full tile).
template <class T, int NR, int BS, int PF>
NABLA_GEMM_AVX512 void ukr_avx512(int64_t kc, const T* __restrict A, const T* __restrict B, T* C,
                                  int64_t rsC, int64_t csC, int64_t m, int64_t n, bool acc) {
  NABLA_GEMM_UKR_BODY(V512<T>)
}

template <class T, int NR, int BS, int PF>
NABLA_GEMM_AVX2 void ukr_avx2(int64_t kc, const T* __restrict A, const T* __restrict B, T* C,
                              int64_t rsC, int64_t csC, int64_t m, int64_t n, bool acc) {
  NABLA_GEMM_UKR_BODY(V256<T>)
}
#undef NABLA_GEMM_UKR_BODY

// Block sizes: the KC x NR sliver of B stays in L1 (48 KiB here), the MC x KC block of A in
// the per-core L2 (2 MiB), and the KC x NC panel of B in L3.
template <class T> struct Avx512Kernel;
template <> struct Avx512Kernel<float> {
  static constexpr int64_t MR = 32, NR = 12, MC = 512, KC = 384, NC = 4080;
  static void ukr(int64_t kc, const float* A, const float* B, float* C, int64_t rsC, int64_t csC,
                  int64_t m, int64_t n, bool acc) {
    if (n <= 4) return ukr_avx512<float, 4, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    if (n <= 8) return ukr_avx512<float, 8, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    ukr_avx512<float, 12, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
  }
};
template <> struct Avx512Kernel<double> {
  static constexpr int64_t MR = 16, NR = 12, MC = 512, KC = 256, NC = 4080;
  static void ukr(int64_t kc, const double* A, const double* B, double* C, int64_t rsC,
                  int64_t csC, int64_t m, int64_t n, bool acc) {
    if (n <= 4) return ukr_avx512<double, 4, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    if (n <= 8) return ukr_avx512<double, 8, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    ukr_avx512<double, 12, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
  }
};
template <class T> struct Avx2Kernel;
template <> struct Avx2Kernel<float> {
  static constexpr int64_t MR = 16, NR = 6, MC = 384, KC = 384, NC = 4080;
  static void ukr(int64_t kc, const float* A, const float* B, float* C, int64_t rsC, int64_t csC,
                  int64_t m, int64_t n, bool acc) {
    ukr_avx2<float, 6, 6, 8>(kc, A, B, C, rsC, csC, m, n, acc);
  }
};
template <> struct Avx2Kernel<double> {
  static constexpr int64_t MR = 8, NR = 6, MC = 256, KC = 256, NC = 4080;
  static void ukr(int64_t kc, const double* A, const double* B, double* C, int64_t rsC,
                  int64_t csC, int64_t m, int64_t n, bool acc) {
    ukr_avx2<double, 6, 6, 8>(kc, A, B, C, rsC, csC, m, n, acc);
  }
};
#endif  // NABLA_GEMM_X86

// Transposing copy dst[k * R + r] = src[r * ld + k] for r < R, k < kc: the packing case where
// the source is contiguous along k. SSE2 4x4 / 2x2 register transposes (x86-64 baseline, so no
// dispatch needed) run several times faster than the scalar strided-store loop.
template <class T, int64_t R>
inline void transpose_pack(int64_t kc, const T* src, int64_t ld, T* dst) {
  int64_t k = 0;
#if defined(NABLA_GEMM_X86) && defined(__SSE2__)
  if constexpr (std::is_same_v<T, float> && R % 4 == 0) {
    for (; k + 4 <= kc; k += 4)
      for (int64_t r = 0; r < R; r += 4) {
        const float* s = src + r * ld + k;
        __m128 x0 = _mm_loadu_ps(s), x1 = _mm_loadu_ps(s + ld);
        __m128 x2 = _mm_loadu_ps(s + 2 * ld), x3 = _mm_loadu_ps(s + 3 * ld);
        _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
        float* d = dst + k * R + r;
        _mm_storeu_ps(d, x0);
        _mm_storeu_ps(d + R, x1);
        _mm_storeu_ps(d + 2 * R, x2);
        _mm_storeu_ps(d + 3 * R, x3);
      }
  } else if constexpr (std::is_same_v<T, double> && R % 2 == 0) {
    for (; k + 2 <= kc; k += 2)
      for (int64_t r = 0; r < R; r += 2) {
        const double* s = src + r * ld + k;
        const __m128d x0 = _mm_loadu_pd(s), x1 = _mm_loadu_pd(s + ld);
        double* d = dst + k * R + r;
        _mm_storeu_pd(d, _mm_unpacklo_pd(x0, x1));
        _mm_storeu_pd(d + R, _mm_unpackhi_pd(x0, x1));
      }
  }
#endif
  for (; k < kc; ++k)
    for (int64_t r = 0; r < R; ++r) dst[k * R + r] = src[r * ld + k];
}

// Packs `valid` (<= R) rows of a kc-deep sliver: dst[k * R + r] = src[r * rs + k * ks], with the
// missing rows zero-filled so the kernel never multiplies garbage (or NaN) into live results.
// Any strides work, so transposed views are just another access pattern.
template <class T, int64_t R>
inline void pack_sliver(int64_t valid, int64_t kc, const T* src, int64_t rs, int64_t ks, T* dst) {
  if (valid == R && rs == 1) {
    for (int64_t k = 0; k < kc; ++k) std::memcpy(dst + k * R, src + k * ks, sizeof(T) * R);
  } else if (valid == R && ks == 1) {
    transpose_pack<T, R>(kc, src, rs, dst);
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t r = 0; r < valid; ++r) dst[k * R + r] = src[r * rs + k * ks];
      for (int64_t r = valid; r < R; ++r) dst[k * R + r] = T(0);
    }
  }
}

// Packs an mc x kc block of A into MR-row slivers, each kc x MR (k-major).
template <class T, int64_t MR>
inline void pack_a(int64_t mc, int64_t kc, const T* A, int64_t rsA, int64_t csA, T* dst) {
  if (rsA == 1 && mc % MR == 0) {
    // Walk each source column end to end (one long contiguous read per k, friendly to the
    // streamer and the TLB) and scatter its MR-chunks into the slivers.
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t ir = 0; ir < mc; ir += MR)
        std::memcpy(dst + ir * kc + k * MR, A + k * csA + ir, sizeof(T) * MR);
    return;
  }
  for (int64_t ir = 0; ir < mc; ir += MR)
    pack_sliver<T, MR>(std::min(MR, mc - ir), kc, A + ir * rsA, rsA, csA, dst + ir * kc);
}

// Packs one kc x nr sliver of B (NR columns, k-major).
template <class T, int64_t NR>
inline void pack_b(int64_t kc, int64_t nr, const T* B, int64_t rsB, int64_t csB, T* dst) {
  pack_sliver<T, NR>(nr, kc, B, csB, rsB, dst);
}

// Packing buffers are cached per thread: re-faulting megabytes of fresh pages on every call
// costs as much as a small GEMM. Size is bounded by the block sizes, freed at thread exit.
class Scratch {
 public:
  ~Scratch() { release(); }
  void* get(size_t bytes) {
    if (bytes > size_) {
      release();
      ptr_ = ::operator new(bytes, std::align_val_t(64));
      size_ = bytes;
    }
    return ptr_;
  }

 private:
  void release() {
    if (ptr_) ::operator delete(ptr_, std::align_val_t(64));
    ptr_ = nullptr;
    size_ = 0;
  }
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

inline void* scratch(size_t bytes) {
  thread_local Scratch s;
  return s.get(bytes);
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// When other processes occupy the cores, libgomp's spin-waiting fork/join costs whole
// scheduler time slices (measured with one busy core: a 256^3 call went from 0.13 ms to 7 ms,
// while serial took 0.3 ms). A worker that starts late is the symptom; after seeing one,
// mid-sized problems run serially for a while before trying threads again.
// Kept on measurement (benchmarks/gemm_backoff.cpp, figures and command in docs/benchmarks.md):
// on 2 shared, oversubscribed cores with OMP_NUM_THREADS=2, 128^3..384^3 ran 4-25x faster with
// the back-off than without it, 512^3 1.4x; the cost is that after one late start on an idle
// machine, calls below 768^3 run on one core for up to 100 ms (process-wide state).
inline std::atomic<int64_t>& contended_until_ns() {
  static std::atomic<int64_t> t{0};
  return t;
}
constexpr int64_t kLateStartNs = 500'000, kContentionBackoffNs = 100'000'000;

inline int gemm_threads(int64_t M, int64_t N, int64_t K) {
#ifdef _OPENMP
  // Nested calls run serially: the caller already owns the cores.
  if (omp_in_parallel()) return 1;
  const double work = double(M) * double(N) * double(K);
  if (work < 64.0 * 64.0 * 64.0) return 1;
  // Large problems amortise even slow fork/joins, so only mid-sized ones back off.
  if (work < 768.0 * 768.0 * 768.0 &&
      now_ns() < contended_until_ns().load(std::memory_order_relaxed))
    return 1;
  // Keep at least ~1 MFLOP-ish per thread so fork/join stays in the noise.
  const int64_t cap = std::max<int64_t>(1, int64_t(work / (48.0 * 48.0 * 48.0)));
  return int(std::min<int64_t>(omp_get_max_threads(), cap));
#else
  (void)M, (void)N, (void)K;
  return 1;
#endif
}

inline void split_range(int64_t n, int nt, int t, int64_t& b, int64_t& e) {
  b = n * t / nt;
  e = n * (t + 1) / nt;
}

// Barrier that yields the CPU after a short spin. libgomp's barriers spin on `pause` for
// milliseconds, which turns into whole scheduler time slices when another process shares the
// cores; yielding lets a co-scheduled teammate run. (libgomp's own fork/join still spins, so
// on an oversubscribed machine OMP_WAIT_POLICY=passive is the real cure.)
class YieldBarrier {
 public:
  explicit YieldBarrier(int n) : n_(n) {}
  void wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < 256) {
#ifdef NABLA_GEMM_X86
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
  int n_;
};

// What the blocked driver needs of a kernel KT besides its block sizes (MR, NR, MC, KC, NC) and
// micro-kernel ukr(kc, packed A sliver, packed B sliver, C, rsC, csC, m, n, accumulate):
//   Src, Packed, Out   element types of A/B, of the packed slivers, and of C;
//   depth(kc)          packed depth of a kc-deep pass (kc, or kc rounded up to the kernel's k
//                      granule: bf16 pairs, AMX tiles), so an MR sliver holds MR * depth(kc);
//   pack_a(mc, kc, A, rsA, csA, dst)   an mc x kc block of A into MR-row slivers;
//   pack_b(kc, nr, B, rsB, csB, dst)   one kc x nr sliver of B (nr <= NR);
//   optionally thread_begin() / thread_end(), run by each thread around its share (AMX tile
//   configuration).
// PackedAs adapts the float and double kernels (their packing is pack_a / pack_b above).
template <class T, class K>
struct PackedAs : K {
  using Src = T;
  using Packed = T;
  using Out = T;
  static constexpr int64_t depth(int64_t kc) { return kc; }
  static void pack_a(int64_t mc, int64_t kc, const T* A, int64_t rsA, int64_t csA, T* dst) {
    gemm_detail::pack_a<T, K::MR>(mc, kc, A, rsA, csA, dst);
  }
  static void pack_b(int64_t kc, int64_t nr, const T* B, int64_t rsB, int64_t csB, T* dst) {
    gemm_detail::pack_b<T, K::NR>(kc, nr, B, rsB, csB, dst);
  }
};

// Loop nest (BLIS order): jc over NC columns of B, pc over KC of the depth (pack the KC x NC
// panel of B), ic over MC rows of A (each thread packs its own A block into its L2), then
// jr/ir over micro-tiles, the B sliver staying in L1 across the ir loop.
template <class KT>
void gemm_blocked_packed(int64_t M, int64_t N, int64_t K, const typename KT::Src* A, int64_t rsA,
                         int64_t csA, const typename KT::Src* B, int64_t rsB, int64_t csB,
                         typename KT::Out* C, int64_t rsC, int64_t csC, bool acc) {
  using P = typename KT::Packed;
  using TC = typename KT::Out;
  constexpr int64_t MR = KT::MR, NR = KT::NR, MC = KT::MC, KC = KT::KC, NC = KT::NC;
  const int nt = gemm_threads(M, N, K);
  const int64_t kcmax = std::min(K, KC), dmax = KT::depth(kcmax);
  const int64_t ncmax = round_up(std::min(N, NC), NR);
  const int64_t mcmax = std::min(round_up(M, MR), MC);
  const int64_t bsz = round_up(dmax * ncmax, 64);
  const int64_t asz = round_up(dmax * mcmax, 64);
  P* buf = static_cast<P*>(scratch(size_t(bsz + nt * asz) * sizeof(P)));

  const int64_t mpanels = ceil_div(M, MR);

  YieldBarrier barrier(nt);

  auto body = [&](int tid, int nth) {
    // Splitting columns keeps each thread on B panels it packed itself (hot in its own L2) and
    // needs no barriers; the price is packing the A block once per thread, which is small
    // next to the compute when every thread gets several panels. Otherwise split rows and share
    // a cooperatively packed B panel.
    const bool split_rows = ncmax / NR < 4 * nth;
    if constexpr (requires { KT::thread_begin(); }) KT::thread_begin();
    // Panel slots are spaced by the full KC, not this pass's kc: without barriers a thread may
    // already pack its panels for a shorter final pass while another still reads the last one.
    P* Bp = buf;
    P* Ap = buf + bsz + tid * asz;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = std::min(NC, N - jc);
      const int64_t npanels = ceil_div(nc, NR);
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        const bool beta = acc || pc > 0;
        int64_t p0, p1;
        split_range(npanels, nth, tid, p0, p1);
        if (nth > 1 && split_rows) barrier.wait();
        for (int64_t p = p0; p < p1; ++p)
          KT::pack_b(kc, std::min(NR, nc - p * NR), B + pc * rsB + (jc + p * NR) * csB, rsB, csB,
                     Bp + p * NR * dmax);
        if (nth > 1 && split_rows) barrier.wait();
        int64_t r0 = 0, r1 = M, q0 = 0, q1 = npanels;
        if (split_rows) {
          split_range(mpanels, nth, tid, r0, r1);
          r0 *= MR;
          r1 = std::min(M, r1 * MR);
        } else {
          q0 = p0, q1 = p1;
        }
        if (r1 <= r0 || q1 <= q0) continue;  // still take part in the barriers
        // Equal-sized row blocks avoid a thin, inefficient last block.
        const int64_t nblk = ceil_div(r1 - r0, MC);
        const int64_t mcb = round_up(ceil_div(r1 - r0, nblk), MR);
        const int64_t d = KT::depth(kc);
        for (int64_t ic = r0; ic < r1; ic += mcb) {
          const int64_t mc = std::min(mcb, r1 - ic);
          KT::pack_a(mc, kc, A + ic * rsA + pc * csA, rsA, csA, Ap);
          for (int64_t q = q0; q < q1; ++q) {
            const P* bp = Bp + q * NR * dmax;
            const int64_t nr = std::min(NR, nc - q * NR);
            TC* cq = C + ic * rsC + (jc + q * NR) * csC;
            for (int64_t ir = 0; ir < mc; ir += MR)
              KT::ukr(kc, Ap + ir * d, bp, cq + ir * rsC, rsC, csC, std::min(MR, mc - ir), nr,
                      beta);
          }
        }
      }
    }
    if constexpr (requires { KT::thread_end(); }) KT::thread_end();
  };

  if (nt <= 1) {
    body(0, 1);
    return;
  }
#ifdef _OPENMP
  const int64_t fork_ns = now_ns();
#pragma omp parallel num_threads(nt)
  {
    const int nth = omp_get_num_threads();
    if (omp_get_thread_num() != 0 && now_ns() - fork_ns > kLateStartNs)
      contended_until_ns().store(now_ns() + kContentionBackoffNs, std::memory_order_relaxed);
    if (nth == nt)
      body(omp_get_thread_num(), nth);
    else if (omp_get_thread_num() == 0)
      body(0, 1);  // the runtime gave us fewer threads than asked: run serially
  }
#endif
}

template <class T, class KT>
void gemm_blocked(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA, int64_t csA,
                  const T* B, int64_t rsB, int64_t csB, T* C, int64_t rsC, int64_t csC, bool acc) {
  gemm_blocked_packed<PackedAs<T, KT>>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
}

template <class T>
void gemm_native_isa(Isa isa, int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA,
                     int64_t csA, const T* B, int64_t rsB, int64_t csB, T* C, int64_t rsC,
                     int64_t csC, bool acc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!acc)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * rsC + j * csC] = T(0);
    return;
  }
  // The kernels vectorise along C's rows, so a row-major C is handled as C^T = B^T A^T.
  if (rsC != 1 && csC == 1) {
    std::swap(M, N);
    std::swap(A, B);
    std::swap(rsA, csB);
    std::swap(csA, rsB);
    std::swap(rsC, csC);
  }
  switch (isa) {
#ifdef NABLA_GEMM_X86
    case Isa::avx512:
      return gemm_blocked<T, Avx512Kernel<T>>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC,
                                              acc);
    case Isa::avx2:
      return gemm_blocked<T, Avx2Kernel<T>>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
#endif
    default:
      return gemm_blocked<T, ScalarKernel<T>>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC,
                                              acc);
  }
}

#ifdef NABLA_HAS_CBLAS
// Can a rows x cols matrix with these strides be described as row-major with some ld?
// Strides of extent-1 dimensions are never dereferenced, so they do not constrain ld.
inline bool blas_rowmajor(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t& ld) {
  if (!(cols <= 1 || cs == 1)) return false;
  ld = rows <= 1 ? std::max<int64_t>(1, cols) : rs;
  return ld >= std::max<int64_t>(1, cols) && ld <= INT_MAX;
}

inline void cblas_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float* A,
                       int lda, const float* B, int ldb, float* C, int ldc, bool acc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
}
inline void cblas_call(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                       const double* A, int lda, const double* B, int ldb, double* C, int ldc,
                       bool acc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, A, lda, B, ldb, acc ? 1.0 : 0.0, C, ldc);
}

// Row-major CBLAS call if C is row-major-compatible and A, B are (possibly transposed) too.
template <class T>
inline bool try_cblas_rowmajor(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA,
                               int64_t csA, const T* B, int64_t rsB, int64_t csB, T* C,
                               int64_t rsC, int64_t csC, bool acc, bool dry_run = false) {
  int64_t ldc, lda, ldb;
  if (!blas_rowmajor(M, N, rsC, csC, ldc)) return false;
  CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
  if (!blas_rowmajor(M, K, rsA, csA, lda)) {
    if (!blas_rowmajor(K, M, csA, rsA, lda)) return false;
    ta = CblasTrans;
  }
  if (!blas_rowmajor(K, N, rsB, csB, ldb)) {
    if (!blas_rowmajor(N, K, csB, rsB, ldb)) return false;
    tb = CblasTrans;
  }
  if (!dry_run) cblas_call(ta, tb, int(M), int(N), int(K), A, int(lda), B, int(ldb), C, int(ldc), acc);
  return true;
}
#endif

// C[M,N] (+)= A[M,K] B[K,N] when M or N is 1: a matrix-vector product, one pass over B in its
// own layout (gemv.hpp's loops, for the best ISA here), split over threads by output. False when
// the strides fit neither layout (then the blocked GEMM takes it). Used with or without CBLAS:
// OpenBLAS 0.3.21's ?gemv measured no faster, and one path gives one set of roundings.
template <class T>
bool try_gemv(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA, int64_t csA, const T* B, int64_t rsB, int64_t csB,
              T* C, int64_t rsC, int64_t csC, bool acc) {
  if (M <= 0 || N <= 0 || K <= 0 || (M != 1 && N != 1)) return false;
  if (M != 1) {  // a column: C^T [1, M] = B^T [1, K] A^T [K, M]
    std::swap(M, N);
    std::swap(A, B);
    std::swap(rsA, csB);
    std::swap(csA, rsB);
    std::swap(rsC, csC);
  }
  // Now y[n] = C[n * csC] (n < N), x[k] = A[k * csA] (k < K), and B(k, n) = B[k * rsB + n * csB].
  const bool dot = K == 1 || rsB == 1;   // each output reads a contiguous run of B
  const bool axpy = N == 1 || csB == 1;  // each x[k] scales a contiguous run of B
  if (!dot && !axpy) return false;
  const int64_t ld = dot ? (N == 1 ? K : csB) : (K == 1 ? N : rsB);
  if (ld < 1) return false;
  const int nt = gemm_threads(1, N, K);
  const int64_t chunk = (N + nt - 1) / std::max(nt, 1);
  // The loops want x contiguous, and (for axpy) y contiguous: copies when they are not.
  std::vector<T> xs;
  const T* x = A;
  if (K > 1 && csA != 1) {
    xs.resize(size_t(K));
    for (int64_t k = 0; k < K; ++k) xs[size_t(k)] = A[k * csA];
    x = xs.data();
  }
  const int64_t incy = N == 1 ? 1 : csC;
  const bool y_direct = dot || incy == 1;
  std::vector<T> ys;
  if (!y_direct) {
    ys.resize(size_t(N));
    if (acc)
      for (int64_t n = 0; n < N; ++n) ys[size_t(n)] = C[n * incy];
  }
  const Isa isa = best_isa();
  auto piece = [&](int64_t lo, int64_t hi) {
    const T* b = B + (dot ? lo * ld : lo);
    T* y = dot ? C + lo * incy : (y_direct ? C + lo : ys.data() + lo);
    switch (isa) {
#ifdef NABLA_GEMM_X86
      case Isa::avx512: return gemv_detail::gemv_avx512<T>(dot, hi - lo, K, b, ld, x, y, incy, acc);
      case Isa::avx2: return gemv_detail::gemv_avx2<T>(dot, hi - lo, K, b, ld, x, y, incy, acc);
#endif
      default: return gemv_detail::gemv_baseline<T>(dot, hi - lo, K, b, ld, x, y, incy, acc);
    }
  };
#if defined(_OPENMP)
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int64_t lo = 0; lo < N; lo += chunk) piece(lo, std::min(N, lo + chunk));
  } else {
    piece(0, N);
  }
#else
  piece(0, N);
#endif
  if (!y_direct)
    for (int64_t n = 0; n < N; ++n) C[n * incy] = ys[size_t(n)];
  return true;
}

}  // namespace gemm_detail

// C[M,N] (+)= A[M,K] * B[K,N] with arbitrary element strides, using the library's own kernel.
template <class T>
void gemm_native(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA, int64_t csA,
                 const T* B, int64_t rsB, int64_t csB, T* C, int64_t rsC, int64_t csC,
                 bool accumulate) {
  gemm_detail::gemm_native_isa<T>(gemm_detail::best_isa(), M, N, K, A, rsA, csA, B, rsB, csB, C,
                                  rsC, csC, accumulate);
}

// C[M,N] (+)= A[M,K] * B[K,N]: CBLAS when available and the strides form a BLAS layout
// (column-major C is row-major C^T = B^T A^T), otherwise gemm_native.
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, const T* A, int64_t rsA, int64_t csA, const T* B,
          int64_t rsB, int64_t csB, T* C, int64_t rsC, int64_t csC, bool accumulate) {
  if ((M == 1 || N == 1) &&
      gemm_detail::try_gemv<T>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, accumulate))
    return;
#ifdef NABLA_HAS_CBLAS
  if (M > 0 && N > 0 && K > 0 && M <= INT_MAX && N <= INT_MAX && K <= INT_MAX) {
    using gemm_detail::try_cblas_rowmajor;
    auto call = [&](int64_t m, int64_t n, const T* a, const T* b, T* c, bool dry = false) {
      return try_cblas_rowmajor<T>(m, n, K, a, rsA, csA, b, rsB, csB, c, rsC, csC, accumulate, dry) ||
             try_cblas_rowmajor<T>(n, m, K, b, csB, rsB, a, csA, rsA, c, csC, rsC, accumulate, dry);
    };
#if defined(NABLA_OPENBLAS) && defined(_OPENMP)
    // OpenBLAS runs single-threaded and nabla splits large products over its own OpenMP threads:
    // OpenBLAS's pthread pool otherwise spins (sched_yield) on the cores the OpenMP kernels run
    // on between calls (measured: a 2-core MNIST epoch 20% slower).
    static const bool single = (openblas_set_num_threads(1), true);
    (void)single;
    const int nt = gemm_detail::gemm_threads(M, N, K);
    const bool by_rows = M >= N;
    const int64_t extent = by_rows ? M : N, chunk = (extent + nt - 1) / std::max(nt, 1);
    // Split only when the whole product and every piece have a BLAS layout (checked first, so a
    // product is never half done by BLAS and then redone).
    auto piece = [&](int64_t lo, int64_t hi, bool dry) {
      return by_rows ? call(hi - lo, N, A + lo * rsA, B, C + lo * rsC, dry)
                     : call(M, hi - lo, A, B + lo * csB, C + lo * csC, dry);
    };
    bool splittable = nt > 1 && call(M, N, A, B, C, true);
    for (int64_t lo = 0; splittable && lo < extent; lo += chunk) splittable = piece(lo, std::min(extent, lo + chunk), true);
    if (splittable) {
#pragma omp parallel for num_threads(nt) schedule(static, 1)
      for (int64_t lo = 0; lo < extent; lo += chunk) piece(lo, std::min(extent, lo + chunk), false);
      return;
    }
#endif
    if (call(M, N, A, B, C)) return;
  }
#endif
  gemm_native<T>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, accumulate);
}

}  // namespace nabla::cpu
