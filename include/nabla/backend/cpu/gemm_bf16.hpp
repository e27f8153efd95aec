#pragma once
// bfloat16 GEMM on the CPU with float32 accumulation: C = round_bf16(sum_k A * B) (or the float32
// sums themselves), through gemm.hpp's blocked driver with one of these kernel families, picked
// at run time (NABLA_CPU_ISA caps the choice):
//   amx          AMX-BF16 tiles (_tile_dpbf16ps), 32x32 C blocks. COMPILED BUT UNVERIFIED on
//                hardware: written against Intel's documentation; the tests run the same code
//                through a scalar tile emulator, and at first use a self-check against the
//                AVX512-BF16 kernel turns it off if it disagrees.
//   avx512_bf16  vdpbf16ps (_mm512_dpbf16_ps): A and B packed as bf16 pairs interleaved along k.
//   avx512 / avx2 / scalar   no bf16 dot product: panels are widened to float32 while packing
//                and gemm.hpp's float micro-kernels run.
// Every path rounds once, at the end (round to nearest even, as nabla::BFloat16); only the order
// of the float32 additions differs. The dot-product instructions treat bf16 subnormal inputs as
// zero (their DAZ/FTZ rule); the conversion paths do not.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <type_traits>

#include "../../core/half.hpp"
#include "gemm.hpp"

#if defined(NABLA_GEMM_X86)
#include <cpuid.h>
#define NABLA_GEMM_AVX512BF16 \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,fma")))
#if defined(__x86_64__)
#define NABLA_GEMM_HAS_AMX 1
#define NABLA_GEMM_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,fma")))
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

// GCC 12's AVX-512 intrinsics seed their unused source operand with a self-initialised
// _mm512_undefined_* value, which -Wmaybe-uninitialized reports wherever they are inlined
// (GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace nabla::cpu {

namespace gemm_detail {

// The kernel families of the bf16 GEMM, in increasing capability; amx_emulated runs the AMX
// kernel's code on a scalar tile emulator (tests only, never picked by the dispatch).
enum class Bf16Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3, amx = 4, amx_emulated = 5 };

inline const char* name(Bf16Isa isa) {
  switch (isa) {
    case Bf16Isa::scalar: return "scalar";
    case Bf16Isa::avx2: return "avx2";
    case Bf16Isa::avx512: return "avx512";
    case Bf16Isa::avx512_bf16: return "avx512_bf16";
    case Bf16Isa::amx: return "amx";
    case Bf16Isa::amx_emulated: return "amx_emulated";
  }
  return "?";
}

inline uint16_t bf16_bits(BFloat16 x) { return x.bits; }

// ---- packing ---------------------------------------------------------------------------------

// bf16 pairs along k, the operand layout of vdpbf16ps and of AMX's B tiles:
//   dst[(k / 2) * 2R + 2r + k % 2] = src[r * rs + k * ks]   for r < valid, k < kc,
// zeros for rows r >= valid and for k in [kc, depth) (depth even), so padding never multiplies
// garbage (or NaN) into live results.
template <int64_t R>
inline void pack_pairs(int64_t valid, int64_t kc, int64_t depth, const BFloat16* src, int64_t rs,
                       int64_t ks, uint16_t* dst) {
  const int64_t kfull = kc & ~int64_t(1);  // k below this come in complete pairs
  int64_t k = 0;
#if defined(NABLA_GEMM_X86) && defined(__SSE2__)
  if (valid == R && rs == 1 && R % 8 == 0) {
    // Two k-rows of R contiguous values each: interleave their 16-bit lanes.
    for (; k < kfull; k += 2) {
      const BFloat16* s0 = src + k * ks;
      const BFloat16* s1 = s0 + ks;
      uint16_t* d = dst + k * R;
      for (int64_t r = 0; r < R; r += 8) {
        const __m128i x0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s0 + r));
        const __m128i x1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s1 + r));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 2 * r), _mm_unpacklo_epi16(x0, x1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 2 * r + 8), _mm_unpackhi_epi16(x0, x1));
      }
    }
  } else if (valid == R && ks == 1 && R % 4 == 0) {
    // Rows contiguous along k: a pair is one 32-bit word, so this is a transpose of words (4x4
    // register transposes; pure shuffles, so any bit pattern passes through unchanged).
    for (; k + 8 <= kfull; k += 8)
      for (int64_t r = 0; r < R; r += 4) {
        const BFloat16* s = src + r * rs + k;
        __m128 x0 = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
        __m128 x1 = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + rs)));
        __m128 x2 = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * rs)));
        __m128 x3 = _mm_castsi128_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 3 * rs)));
        _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
        uint16_t* d = dst + k * R + 2 * r;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_castps_si128(x0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 2 * R), _mm_castps_si128(x1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 4 * R), _mm_castps_si128(x2));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 6 * R), _mm_castps_si128(x3));
      }
  }
#endif
  for (; k < depth; k += 2) {
    uint16_t* d = dst + k * R;
    const int64_t live = k < kc ? valid : 0;
    const bool second = k + 1 < kc;
    for (int64_t r = 0; r < live; ++r) {
      d[2 * r] = bf16_bits(src[r * rs + k * ks]);
      d[2 * r + 1] = second ? bf16_bits(src[r * rs + (k + 1) * ks]) : uint16_t(0);
    }
    for (int64_t r = live; r < R; ++r) d[2 * r] = d[2 * r + 1] = 0;
  }
}

// The float kernels' sliver layout (gemm.hpp's pack_sliver), widening bf16 to float on the way:
//   dst[k * R + r] = float(src[r * rs + k * ks]), zero rows past `valid`.
template <int64_t R>
inline void pack_sliver_widen(int64_t valid, int64_t kc, const BFloat16* src, int64_t rs,
                              int64_t ks, float* dst) {
  if (valid == R && rs == 1) {
    for (int64_t k = 0; k < kc; ++k) {
      const BFloat16* s = src + k * ks;
      float* d = dst + k * R;
      for (int64_t r = 0; r < R; ++r) d[r] = detail::bf16_bits_to_float(s[r].bits);
    }
  } else if (valid == R && ks == 1) {
    for (int64_t r = 0; r < R; ++r) {
      const BFloat16* s = src + r * rs;
      for (int64_t k = 0; k < kc; ++k) dst[k * R + r] = detail::bf16_bits_to_float(s[k].bits);
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t r = 0; r < valid; ++r)
        dst[k * R + r] = detail::bf16_bits_to_float(src[r * rs + k * ks].bits);
      for (int64_t r = valid; r < R; ++r) dst[k * R + r] = 0.0f;
    }
  }
}

// AMX's A tiles: rows of 32 consecutive k (64 bytes). An R-row sliver is stored as depth / 32
// chunks, each [R rows][32 k]: dst[(k / 32) * 32R + 32r + k % 32] = src[r * rs + k * ks], zeros
// past `valid` rows and past kc (depth is a multiple of 32).
template <int64_t R>
inline void pack_rows32(int64_t valid, int64_t kc, int64_t depth, const BFloat16* src, int64_t rs,
                        int64_t ks, uint16_t* dst) {
  for (int64_t q = 0; q < depth; q += 32) {
    const int64_t n = std::clamp<int64_t>(kc - q, 0, 32);
    for (int64_t r = 0; r < R; ++r) {
      uint16_t* d = dst + q * R + 32 * r;
      const int64_t live = r < valid ? n : 0;
      if (ks == 1 && live > 0)
        std::memcpy(d, src + r * rs + q, sizeof(uint16_t) * size_t(live));
      else
        for (int64_t k = 0; k < live; ++k) d[k] = bf16_bits(src[r * rs + (q + k) * ks]);
      for (int64_t k = live; k < 32; ++k) d[k] = 0;
    }
  }
}

// ---- rounding float32 tiles to bf16 ----------------------------------------------------------

// C[i, j] = bf16(t[j * ldt + i] (+ C[i, j])) for i < m, j < n; the addition in float32.
inline void store_bf16_scalar(const float* t, int64_t ldt, BFloat16* C, int64_t rsC, int64_t csC,
                              int64_t m, int64_t n, bool acc) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      BFloat16& c = C[i * rsC + j * csC];
      const float v = t[j * ldt + i];
      c = BFloat16(acc ? v + float(c) : v);
    }
}

#ifdef NABLA_GEMM_X86
// Round to nearest even with the same bits as detail::float_to_bf16_bits (NaN: quieted, sign and
// top payload kept; subnormals rounded, not flushed), 16 lanes at a time.
NABLA_GEMM_AVX512 inline __m256i f32_to_bf16_avx512(__m512 v) {
  const __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x7fff));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}
NABLA_GEMM_AVX512 inline __m512 bf16_to_f32_avx512(__m256i x) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
}
NABLA_GEMM_AVX512 inline void store_bf16_avx512(const float* t, int64_t ldt, BFloat16* C,
                                                int64_t rsC, int64_t csC, int64_t m, int64_t n,
                                                bool acc) {
  if (rsC != 1) return store_bf16_scalar(t, ldt, C, rsC, csC, m, n, acc);
  for (int64_t j = 0; j < n; ++j) {
    const float* s = t + j * ldt;
    BFloat16* c = C + j * csC;
    for (int64_t i = 0; i < m; i += 16) {
      const __mmask16 k = m - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (m - i)) - 1);
      __m512 v = _mm512_maskz_loadu_ps(k, s + i);
      if (acc) v = _mm512_add_ps(v, bf16_to_f32_avx512(_mm256_maskz_loadu_epi16(k, c + i)));
      _mm256_mask_storeu_epi16(c + i, k, f32_to_bf16_avx512(v));
    }
  }
}

NABLA_GEMM_AVX2 inline __m128i f32_to_bf16_avx2(__m256 v) {
  const __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
  const __m256i bias = _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)),
                                        _mm256_set1_epi32(0x7fff));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
  // every lane holds a value below 2^16, so the saturating pack is a plain narrowing
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
NABLA_GEMM_AVX2 inline void store_bf16_avx2(const float* t, int64_t ldt, BFloat16* C, int64_t rsC,
                                            int64_t csC, int64_t m, int64_t n, bool acc) {
  if (rsC != 1) return store_bf16_scalar(t, ldt, C, rsC, csC, m, n, acc);
  for (int64_t j = 0; j < n; ++j) {
    const float* s = t + j * ldt;
    BFloat16* c = C + j * csC;
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {
      __m256 v = _mm256_loadu_ps(s + i);
      if (acc) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i));
        v = _mm256_add_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16)));
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i), f32_to_bf16_avx2(v));
    }
    if (i < m) store_bf16_scalar(s + i, ldt, c + i, 1, csC, m - i, 1, acc);
  }
}
#endif

// ---- kernels -----------------------------------------------------------------------------------

// A float kernel of gemm.hpp fed with bf16 panels widened to float while packing.
template <class K>
struct WidenKernel : K {
  using Src = BFloat16;
  using Packed = float;
  using Out = float;
  static constexpr int64_t depth(int64_t kc) { return kc; }
  static void pack_a(int64_t mc, int64_t kc, const BFloat16* A, int64_t rsA, int64_t csA, float* dst) {
    for (int64_t ir = 0; ir < mc; ir += K::MR)
      pack_sliver_widen<K::MR>(std::min(K::MR, mc - ir), kc, A + ir * rsA, rsA, csA, dst + ir * kc);
  }
  static void pack_b(int64_t kc, int64_t nr, const BFloat16* B, int64_t rsB, int64_t csB, float* dst) {
    pack_sliver_widen<K::NR>(nr, kc, B, csB, rsB, dst);
  }
};

// Any f32-output kernel, its tile rounded to bf16 by Store: for a single depth pass, so that C is
// rounded once (several passes sum into a float32 workspace instead: run_bf16_out).
template <class KT, void (*Store)(const float*, int64_t, BFloat16*, int64_t, int64_t, int64_t, int64_t, bool)>
struct RoundedToBf16 : KT {
  using Out = BFloat16;
  static void ukr(int64_t kc, const typename KT::Packed* A, const typename KT::Packed* B, BFloat16* C,
                  int64_t rsC, int64_t csC, int64_t m, int64_t n, bool acc) {
    alignas(64) float tile[KT::MR * KT::NR];
    KT::ukr(kc, A, B, tile, 1, KT::MR, KT::MR, n, false);  // packed rows past m are zeros
    Store(tile, KT::MR, C, rsC, csC, m, n, acc);
  }
};

#ifdef NABLA_GEMM_X86
// vdpbf16ps: acc[i] += a[2i] * b[2i] + a[2i + 1] * b[2i + 1] over 16 float lanes. A (2 x 16 rows)
// x NR tile of C lives in 2 * NR registers; each k-pair step loads two vectors of packed A pairs
// and broadcasts NR packed B pairs (32-bit words, folded into the instruction as {1to16}).
template <int NR, int BS, int PF>
NABLA_GEMM_AVX512BF16 void ukr_dpbf16(int64_t kc, const uint16_t* __restrict A,
                                      const uint16_t* __restrict B, float* C, int64_t rsC,
                                      int64_t csC, int64_t m, int64_t n, bool acc) {
  constexpr int W = 16;
  __m512 c0[NR], c1[NR];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) c0[j] = c1[j] = _mm512_setzero_ps();
  const bool full = (m == 2 * W) && (n == NR) && (rsC == 1);
  if (full) {
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(C + j * csC), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(C + j * csC + 2 * W - 1), _MM_HINT_T0);
    }
  }
  const int64_t kp = (kc + 1) / 2;
#pragma GCC unroll 4
  for (int64_t p = 0; p < kp; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(A + PF * 4 * W), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(A + PF * 4 * W + 2 * W), _MM_HINT_T0);
    const __m512bh a0 = (__m512bh)_mm512_loadu_si512(A);
    const __m512bh a1 = (__m512bh)_mm512_loadu_si512(A + 2 * W);
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      int32_t word;
      std::memcpy(&word, B + 2 * j, sizeof word);
      const __m512bh b = (__m512bh)_mm512_set1_epi32(word);
      c0[j] = _mm512_dpbf16_ps(c0[j], a0, b);
      c1[j] = _mm512_dpbf16_ps(c1[j], a1, b);
    }
    A += 4 * W;
    B += 2 * BS;
  }
  if (full) {
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      float* c = C + j * csC;
      if (acc) {
        c0[j] = _mm512_add_ps(c0[j], _mm512_loadu_ps(c));
        c1[j] = _mm512_add_ps(c1[j], _mm512_loadu_ps(c + W));
      }
      _mm512_storeu_ps(c, c0[j]);
      _mm512_storeu_ps(c + W, c1[j]);
    }
  } else {
    alignas(64) float tile[NR * 2 * W];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      _mm512_store_ps(tile + j * 2 * W, c0[j]);
      _mm512_store_ps(tile + j * 2 * W + W, c1[j]);
    }
    store_tile(tile, 2 * W, C, rsC, csC, m, n, acc);
  }
}

// Block sizes: the float kernel's bytes (KC 768 bf16 = 384 floats): the KC x NR sliver of B in
// L1, the MC x KC block of A in L2. KC is even, so only the last depth pass has an odd tail.
struct Dpbf16Kernel {
  static constexpr int64_t MR = 32, NR = 12, MC = 512, KC = 768, NC = 4080;
  using Src = BFloat16;
  using Packed = uint16_t;
  using Out = float;
  static constexpr int64_t depth(int64_t kc) { return round_up(kc, 2); }
  static void pack_a(int64_t mc, int64_t kc, const BFloat16* A, int64_t rsA, int64_t csA, uint16_t* dst) {
    const int64_t d = depth(kc);
    for (int64_t ir = 0; ir < mc; ir += MR)
      pack_pairs<MR>(std::min(MR, mc - ir), kc, d, A + ir * rsA, rsA, csA, dst + ir * d);
  }
  static void pack_b(int64_t kc, int64_t nr, const BFloat16* B, int64_t rsB, int64_t csB, uint16_t* dst) {
    pack_pairs<NR>(nr, kc, depth(kc), B, csB, rsB, dst);
  }
  static void ukr(int64_t kc, const uint16_t* A, const uint16_t* B, float* C, int64_t rsC, int64_t csC,
                  int64_t m, int64_t n, bool acc) {
    if (n <= 4) return ukr_dpbf16<4, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    if (n <= 8) return ukr_dpbf16<8, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
    ukr_dpbf16<12, 12, 8>(kc, A, B, C, rsC, csC, m, n, acc);
  }
};
#endif  // NABLA_GEMM_X86

// ---- AMX ---------------------------------------------------------------------------------------
// COMPILED BUT UNVERIFIED ON HARDWARE (written on a CPU without AMX). The tile arithmetic is
// exercised through AmxEmulator (Bf16Isa::amx_emulated) by tests/test_gemm.cpp, which checks the
// packing, tile addressing and epilogue; what only a Sapphire Rapids-class CPU can check is the
// mapping of the _tile_* intrinsics and the OS permission, which amx_usable() guards with a
// self-check before the dispatch ever picks this path.
//
// C block 32 x 32 = four 16 x 16 float32 tiles (0: rows 0-15 x cols 0-15, 1: rows 0-15 x 16-31,
// 2: rows 16-31 x 0-15, 3: rows 16-31 x 16-31); per 32-deep k chunk two A tiles (4, 5: 16 rows
// x 32 bf16, from pack_rows32) and two B tiles (6, 7: 16 pair-rows x 16 columns, from
// pack_pairs<32>, whose pair-rows are 32 columns = 128 bytes, so a B tile has stride 128 and the
// second starts 64 bytes in). TDPBF16PS: C[m][n] += sum over pairs p of A[m][2p] * B[p][2n] +
// A[m][2p + 1] * B[p][2n + 1].

// The tile palette: 8 tiles of 16 rows x 64 bytes.
struct alignas(64) AmxTileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
static_assert(sizeof(AmxTileConfig) == 64);

// The instructions' documented semantics on eight 1 KiB tiles, for tests on CPUs without AMX.
struct AmxEmulator {
  alignas(64) unsigned char tile[8][16 * 64];
  void zero(int t) { std::memset(tile[t], 0, sizeof tile[t]); }
  void load(int t, const void* base, int64_t stride) {
    for (int r = 0; r < 16; ++r) std::memcpy(tile[t] + r * 64, static_cast<const char*>(base) + r * stride, 64);
  }
  void store(int t, void* base, int64_t stride) const {
    for (int r = 0; r < 16; ++r) std::memcpy(static_cast<char*>(base) + r * stride, tile[t] + r * 64, 64);
  }
  void dpbf16ps(int c, int a, int b) {
    float acc[16][16];
    uint16_t x[16][32], y[16][32];
    std::memcpy(acc, tile[c], sizeof acc);
    std::memcpy(x, tile[a], sizeof x);
    std::memcpy(y, tile[b], sizeof y);
    for (int m = 0; m < 16; ++m)
      for (int p = 0; p < 16; ++p)
        for (int n = 0; n < 16; ++n)
          acc[m][n] += detail::bf16_bits_to_float(x[m][2 * p + 1]) * detail::bf16_bits_to_float(y[p][2 * n + 1]) +
                       detail::bf16_bits_to_float(x[m][2 * p]) * detail::bf16_bits_to_float(y[p][2 * n]);
    std::memcpy(tile[c], acc, sizeof acc);
  }
  static AmxEmulator& of_thread() {
    thread_local AmxEmulator e;
    return e;
  }
};

// A 32 x 32 row-major float tile into C (column j of row i at C[i * rsC + j * csC]).
inline void store_rows_tile(const float* t, float* C, int64_t rsC, int64_t csC, int64_t m, int64_t n,
                            bool acc) {
  for (int64_t i = 0; i < m; ++i) {
    float* c = C + i * rsC;
    const float* s = t + i * 32;
    if (acc)
      for (int64_t j = 0; j < n; ++j) c[j * csC] += s[j];
    else
      for (int64_t j = 0; j < n; ++j) c[j * csC] = s[j];
  }
}

// The micro-kernel, written once over four tile operations (macros, because the hardware's take
// literal tile numbers).
#define NABLA_AMX_UKR_BODY(ZERO, LOAD, DPBF16, STORE)                                  \
  ZERO(0);                                                                             \
  ZERO(1);                                                                             \
  ZERO(2);                                                                             \
  ZERO(3);                                                                             \
  for (int64_t q = 0; q < kc; q += 32) {                                               \
    const uint16_t* a = A + q * 32; /* chunk q / 32 of the [chunk][32 rows][32 k] sliver */ \
    const uint16_t* b = B + q * 32; /* pair-rows q / 2 .. q / 2 + 15, 64 values each */    \
    LOAD(4, a, 64);                                                                    \
    LOAD(5, a + 16 * 32, 64);                                                          \
    LOAD(6, b, 128);                                                                   \
    LOAD(7, b + 32, 128);                                                              \
    DPBF16(0, 4, 6);                                                                   \
    DPBF16(1, 4, 7);                                                                   \
    DPBF16(2, 5, 6);                                                                   \
    DPBF16(3, 5, 7);                                                                   \
  }                                                                                    \
  alignas(64) float t[32 * 32];                                                        \
  STORE(0, t, 128);                                                                    \
  STORE(1, t + 16, 128);                                                               \
  STORE(2, t + 16 * 32, 128);                                                          \
  STORE(3, t + 16 * 32 + 16, 128);                                                     \
  store_rows_tile(t, C, rsC, csC, m, n, acc);

#define NABLA_AMX_EMU_ZERO(i) emu.zero(i)
#define NABLA_AMX_EMU_LOAD(i, p, s) emu.load(i, p, s)
#define NABLA_AMX_EMU_DP(c, a, b) emu.dpbf16ps(c, a, b)
#define NABLA_AMX_EMU_STORE(i, p, s) emu.store(i, p, s)
inline void ukr_amx_emulated(int64_t kc, const uint16_t* A, const uint16_t* B, float* C, int64_t rsC,
                             int64_t csC, int64_t m, int64_t n, bool acc) {
  AmxEmulator& emu = AmxEmulator::of_thread();
  NABLA_AMX_UKR_BODY(NABLA_AMX_EMU_ZERO, NABLA_AMX_EMU_LOAD, NABLA_AMX_EMU_DP, NABLA_AMX_EMU_STORE)
}
#undef NABLA_AMX_EMU_ZERO
#undef NABLA_AMX_EMU_LOAD
#undef NABLA_AMX_EMU_DP
#undef NABLA_AMX_EMU_STORE

#ifdef NABLA_GEMM_HAS_AMX
#define NABLA_AMX_HW_ZERO(i) _tile_zero(i)
#define NABLA_AMX_HW_LOAD(i, p, s) _tile_loadd(i, p, s)
#define NABLA_AMX_HW_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#define NABLA_AMX_HW_STORE(i, p, s) _tile_stored(i, p, s)
NABLA_GEMM_AMX inline void ukr_amx(int64_t kc, const uint16_t* A, const uint16_t* B, float* C, int64_t rsC,
                                   int64_t csC, int64_t m, int64_t n, bool acc) {
  NABLA_AMX_UKR_BODY(NABLA_AMX_HW_ZERO, NABLA_AMX_HW_LOAD, NABLA_AMX_HW_DP, NABLA_AMX_HW_STORE)
}
#undef NABLA_AMX_HW_ZERO
#undef NABLA_AMX_HW_LOAD
#undef NABLA_AMX_HW_DP
#undef NABLA_AMX_HW_STORE
// The tile state belongs to the thread: configured around each thread's share of a GEMM and
// released after it (other libraries in the process, oneDNN say, load their own palettes).
NABLA_GEMM_AMX inline void amx_configure() {
  static const AmxTileConfig config{};
  _tile_loadconfig(&config);
}
NABLA_GEMM_AMX inline void amx_release() { _tile_release(); }
#endif
#undef NABLA_AMX_UKR_BODY

// Block sizes (guesses for a 2 MiB L2, unmeasured): A block 256 x 1024 bf16 = 512 KiB; a B
// sliver 1024 x 32 bf16 = 64 KiB. KC is a multiple of 32, so only the last pass is ragged.
template <bool Emulated>
struct AmxKernel {
  static constexpr int64_t MR = 32, NR = 32, MC = 256, KC = 1024, NC = 2048;
  using Src = BFloat16;
  using Packed = uint16_t;
  using Out = float;
  static constexpr int64_t depth(int64_t kc) { return round_up(kc, 32); }
  static void pack_a(int64_t mc, int64_t kc, const BFloat16* A, int64_t rsA, int64_t csA, uint16_t* dst) {
    const int64_t d = depth(kc);
    for (int64_t ir = 0; ir < mc; ir += MR)
      pack_rows32<MR>(std::min(MR, mc - ir), kc, d, A + ir * rsA, rsA, csA, dst + ir * d);
  }
  static void pack_b(int64_t kc, int64_t nr, const BFloat16* B, int64_t rsB, int64_t csB, uint16_t* dst) {
    pack_pairs<NR>(nr, kc, depth(kc), B, csB, rsB, dst);
  }
  static void ukr(int64_t kc, const uint16_t* A, const uint16_t* B, float* C, int64_t rsC, int64_t csC,
                  int64_t m, int64_t n, bool acc) {
    if constexpr (Emulated) {
      ukr_amx_emulated(kc, A, B, C, rsC, csC, m, n, acc);
    } else {
#ifdef NABLA_GEMM_HAS_AMX
      ukr_amx(kc, A, B, C, rsC, csC, m, n, acc);
#endif
    }
  }
  static void thread_begin() {
#ifdef NABLA_GEMM_HAS_AMX
    if constexpr (!Emulated) amx_configure();
#endif
  }
  static void thread_end() {
#ifdef NABLA_GEMM_HAS_AMX
    if constexpr (!Emulated) amx_release();
#endif
  }
};

// ---- driver ----------------------------------------------------------------------------------

// Float32 workspace for several depth passes into a bf16 C: at most this many bytes, in column
// blocks when M x N needs more.
constexpr int64_t kBf16WorkspaceBytes = int64_t(32) << 20;

// C (bf16) (+)= A B with kernel KT (float32 out): one depth pass rounds in the micro-kernel's
// epilogue; several sum into a float32 workspace W (column-major, seeded from C when
// accumulating), rounded into C at the end. Either way C is rounded once.
template <class KT, void (*Store)(const float*, int64_t, BFloat16*, int64_t, int64_t, int64_t, int64_t, bool)>
void run_bf16_out(int64_t M, int64_t N, int64_t K, const BFloat16* A, int64_t rsA, int64_t csA,
                  const BFloat16* B, int64_t rsB, int64_t csB, BFloat16* C, int64_t rsC, int64_t csC,
                  bool acc) {
  if (K <= KT::KC)
    return gemm_blocked_packed<RoundedToBf16<KT, Store>>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC,
                                                         csC, acc);
  const int64_t nb = std::clamp<int64_t>(kBf16WorkspaceBytes / int64_t(sizeof(float)) / M, 1, N);
  std::unique_ptr<float[]> W(new float[size_t(M * nb)]);
  for (int64_t j0 = 0; j0 < N; j0 += nb) {
    const int64_t n = std::min(nb, N - j0);
    BFloat16* Cj = C + j0 * csC;
    float* w = W.get();
    if (acc)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < M; ++i) w[j * M + i] = float(Cj[i * rsC + j * csC]);
    gemm_blocked_packed<KT>(M, n, K, A, rsA, csA, B + j0 * csB, rsB, csB, w, 1, M, acc);
    // the rounding pass over the block: cheap next to the K > KC products that filled it
#ifdef _OPENMP
    const int64_t cols_per_thread = std::max<int64_t>(1, (int64_t(1) << 16) / M);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && n > cols_per_thread)
#endif
    for (int64_t j = 0; j < n; ++j) Store(w + j * M, M, Cj + j * csC, rsC, csC, M, 1, false);
  }
}

template <class TC>
void gemm_bf16_isa(Bf16Isa isa, int64_t M, int64_t N, int64_t K, const BFloat16* A, int64_t rsA,
                   int64_t csA, const BFloat16* B, int64_t rsB, int64_t csB, TC* C, int64_t rsC,
                   int64_t csC, bool acc) {
  static_assert(std::is_same_v<TC, float> || std::is_same_v<TC, BFloat16>);
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!acc)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * rsC + j * csC] = TC(0.0f);
    return;
  }
  // The vector kernels store along C's rows (C^T = B^T A^T turns a row-major C around); AMX
  // tiles are row-major, so there it is the other way.
  const bool amx = isa == Bf16Isa::amx || isa == Bf16Isa::amx_emulated;
  if (amx ? (rsC == 1 && csC != 1) : (rsC != 1 && csC == 1)) {
    std::swap(M, N);
    std::swap(A, B);
    std::swap(rsA, csB);
    std::swap(csA, rsB);
    std::swap(rsC, csC);
  }
  auto run = [&](auto kernel, auto store) {
    using KT = typename decltype(kernel)::type;
    (void)store;
    if constexpr (std::is_same_v<TC, float>)
      gemm_blocked_packed<KT>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
    else
      run_bf16_out<KT, decltype(store)::value>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
  };
  using ScalarStore = std::integral_constant<decltype(&store_bf16_scalar), &store_bf16_scalar>;
  switch (isa) {
    case Bf16Isa::amx_emulated:
      return run(std::type_identity<AmxKernel<true>>{}, ScalarStore{});
#ifdef NABLA_GEMM_X86
    case Bf16Isa::amx:
#ifdef NABLA_GEMM_HAS_AMX
      return run(std::type_identity<AmxKernel<false>>{},
                 std::integral_constant<decltype(&store_bf16_avx512), &store_bf16_avx512>{});
#endif
    case Bf16Isa::avx512_bf16:
      return run(std::type_identity<Dpbf16Kernel>{},
                 std::integral_constant<decltype(&store_bf16_avx512), &store_bf16_avx512>{});
    case Bf16Isa::avx512:
      return run(std::type_identity<WidenKernel<Avx512Kernel<float>>>{},
                 std::integral_constant<decltype(&store_bf16_avx512), &store_bf16_avx512>{});
    case Bf16Isa::avx2:
      return run(std::type_identity<WidenKernel<Avx2Kernel<float>>>{},
                 std::integral_constant<decltype(&store_bf16_avx2), &store_bf16_avx2>{});
#endif
    default:
      return run(std::type_identity<WidenKernel<ScalarKernel<float>>>{}, ScalarStore{});
  }
}

// ---- what this CPU can run -----------------------------------------------------------------------

inline bool cpu_has_avx512_bf16() {
#ifdef NABLA_GEMM_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7 || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a >> 5) & 1u;  // CPUID.(7,1):EAX[5]; the ZMM state is covered by detect_isa's avx512 check
#else
  return false;
#endif
}

// AMX-BF16 and AMX-TILE reported, the tile state enabled by the OS (XCR0 bits 17, 18), Linux's
// permission to use it granted (ARCH_REQ_XCOMP_PERM), and a self-check against the AVX512-BF16
// kernel passed. Any "no" leaves the next path in charge.
inline bool amx_usable() {
#if defined(NABLA_GEMM_HAS_AMX) && defined(__linux__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7 || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!((d >> 22) & 1u) || !((d >> 24) & 1u)) return false;  // AMX-BF16, AMX-TILE
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1u)) return false;  // OSXSAVE
  uint32_t xcr0_lo, xcr0_hi;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if (((xcr0_lo >> 17) & 3u) != 3u) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  if (!cpu_has_avx512_bf16()) return false;  // the self-check's reference (and every AMX CPU has it)
  // Self-check: ragged edges, two depth passes, odd k, a strided C.
  const int64_t M = 37, N = 45, K = 1100;
  std::unique_ptr<BFloat16[]> x(new BFloat16[size_t(M * K)]), y(new BFloat16[size_t(K * N)]);
  uint32_t s = 12345;
  auto next = [&s] {
    s = s * 1664525u + 1013904223u;
    return float(int32_t(s >> 9) - (1 << 22)) / float(1 << 22);
  };
  for (int64_t i = 0; i < M * K; ++i) x[size_t(i)] = BFloat16(next());
  for (int64_t i = 0; i < K * N; ++i) y[size_t(i)] = BFloat16(next());
  std::unique_ptr<float[]> got(new float[size_t(M * N)]), want(new float[size_t(M * N)]);
  gemm_bf16_isa<float>(Bf16Isa::amx, M, N, K, x.get(), K, 1, y.get(), N, 1, got.get(), N, 1, false);
  gemm_bf16_isa<float>(Bf16Isa::avx512_bf16, M, N, K, x.get(), K, 1, y.get(), N, 1, want.get(), N, 1, false);
  for (int64_t i = 0; i < M * N; ++i)
    if (!(std::abs(got[size_t(i)] - want[size_t(i)]) <= 1e-3f)) {
      std::fprintf(stderr, "nabla: the AMX bf16 GEMM failed its self-check; using AVX512-BF16\n");
      return false;
    }
  return true;
#else
  return false;
#endif
}

inline Bf16Isa detect_bf16_isa(int cap) {
  const Isa f = detect_isa();
  if (f != Isa::avx512 || cap < int(Bf16Isa::avx512_bf16) || !cpu_has_avx512_bf16())
    return Bf16Isa(std::min(int(f), cap));
  if (cap >= int(Bf16Isa::amx) && amx_usable()) return Bf16Isa::amx;
  return Bf16Isa::avx512_bf16;
}

inline Bf16Isa best_bf16_isa() {
  static const Bf16Isa isa = detect_bf16_isa(isa_cap());
  return isa;
}

}  // namespace gemm_detail

// C[M,N] (+)= A[M,K] * B[K,N] for bfloat16 A and B with arbitrary element strides, summed in
// float32. C is float (the sums themselves: for fused epilogues and accumulation across calls) or
// BFloat16 (rounded once, after adding C's old value in float32 when accumulating).
template <class TC>
void gemm_bf16(int64_t M, int64_t N, int64_t K, const BFloat16* A, int64_t rsA, int64_t csA,
               const BFloat16* B, int64_t rsB, int64_t csB, TC* C, int64_t rsC, int64_t csC,
               bool accumulate) {
  gemm_detail::gemm_bf16_isa<TC>(gemm_detail::best_bf16_isa(), M, N, K, A, rsA, csA, B, rsB, csB,
                                 C, rsC, csC, accumulate);
}

}  // namespace nabla::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
