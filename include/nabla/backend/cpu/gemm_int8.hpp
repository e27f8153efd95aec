#pragma once
// int8 GEMM on the CPU, the kernel of quantized linear and conv layers:
//
//   y[m, n] = (sum_k qa[m, k] * qb[n, k] - za * colsum[n]) * sa * sb[n] + bias[n]   (ReLU optional)
//
// with qa uint8 activations (affine: zero point za, scale sa), qb int8 weights (symmetric, one
// scale sb[n] per output channel), exact int32 accumulation, and the dequantizing epilogue
// fused into the store (float32 out). The activations are quantized inside the call
// (round half to even, clamped to [0, 255]); the weights are packed once.
//
// Kernel families, picked at run time (NABLA_CPU_ISA caps them as for the float GEMM):
//   avx512_vnni  vpdpbusd: four u8 x s8 products summed into each int32 lane, 8 rows x 32 columns
//                per step. Never saturates (4 x 255 x 127 fits easily).
//   avx2         vpmaddwd on values widened to int16 (exact; vpmaddubsw would saturate)
//   scalar       the reference loops
// AMX-INT8 tiles are not written: no AMX CPU to run them on here.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.hpp"
#include "parallel.hpp"

#if defined(NABLA_GEMM_X86)
#define NABLA_GEMM_AVX512VNNI __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512vnni,fma")))
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // the same GCC 12 intrinsics (PR 105593)
#endif

namespace nabla::cpu {

enum class Int8Isa { scalar = 0, avx2 = 1, avx512_vnni = 2 };

namespace gemm_detail {
inline bool cpu_has_avx512_vnni() {
#ifdef NABLA_GEMM_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}
inline Int8Isa detect_int8_isa(int cap) {
  const Isa f = detect_isa();
  if (f == Isa::avx512 && cap >= int(Isa::avx512) && cpu_has_avx512_vnni()) return Int8Isa::avx512_vnni;
  if (f >= Isa::avx2 && cap >= int(Isa::avx2)) return Int8Isa::avx2;
  return Int8Isa::scalar;
}
}  // namespace gemm_detail

// The kernel family this CPU runs (under NABLA_CPU_ISA).
inline Int8Isa best_int8_isa() {
  static const Int8Isa isa = gemm_detail::detect_int8_isa(gemm_detail::isa_cap());
  return isa;
}
inline const char* int8_isa_name(Int8Isa i) {
  return i == Int8Isa::avx512_vnni ? "avx512_vnni" : i == Int8Isa::avx2 ? "avx2" : "scalar";
}

// Weights [N, K] int8, packed: panels of 16 output channels; in each, K in groups of 4 (zero
// padded), each group 16 x 4 bytes (channel-major), so one 64-byte load feeds vpdpbusd.
struct PackedInt8 {
  int64_t N = 0, K = 0, Kp = 0, panels = 0;
  std::vector<int8_t> data;
  std::vector<int32_t> colsum;  // sum_k qb[n, k]: the zero point's correction
};

inline PackedInt8 pack_int8(const int8_t* b, int64_t N, int64_t K) {
  PackedInt8 p;
  p.N = N, p.K = K, p.Kp = (K + 3) / 4 * 4, p.panels = (N + 15) / 16;
  p.data.assign(static_cast<size_t>(p.panels * p.Kp * 16), 0);
  p.colsum.assign(static_cast<size_t>(p.panels * 16), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int8_t v = b[n * K + k];
      const int64_t panel = n / 16, col = n % 16, group = k / 4;
      p.data[static_cast<size_t>(panel * p.Kp * 16 + group * 64 + col * 4 + k % 4)] = v;
      p.colsum[static_cast<size_t>(n)] += v;
    }
  return p;
}

struct Int8Epilogue {
  float a_scale = 1.0f;
  int32_t a_zero_point = 0;
  const float* b_scale = nullptr;  // [N]
  const float* bias = nullptr;     // [N] or null
  bool relu = false;
  // uint8 output (the GEMMs writing uint8_t): y requantized as round(y / out_scale) + out_zero_point,
  // clamped to [0, 255]; a fused ReLU then clamps at out_zero_point (0.0) from below
  float out_scale = 1.0f;
  int32_t out_zero_point = 0;
};

// Round half to even, clamp to [0, 255] (as torch.quantize_per_tensor's quint8).
inline uint8_t quantize_u8(float x, float inv_scale, int32_t zero_point) {
  const float q = std::nearbyint(x * inv_scale) + static_cast<float>(zero_point);
  return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, q)));
}

// quantize_u8 over n contiguous values. The restrict-qualified locals matter: a uint8 store may
// alias anything, and without them the compiler reloads the pointers each iteration and does
// not vectorize (13x slower on MNIST fc1's activations).
inline void quantize_u8_row(const float* __restrict x, int64_t n, float inv_scale, int32_t zero_point,
                            uint8_t* __restrict out) {
  const float zp = static_cast<float>(zero_point);
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, std::nearbyint(x[i] * inv_scale) + zp)));
}

namespace gemm_detail {

inline float int8_epilogue(int32_t acc, int64_t n, const PackedInt8& b, const Int8Epilogue& e) {
  float y = static_cast<float>(acc - e.a_zero_point * b.colsum[static_cast<size_t>(n)]) * (e.a_scale * e.b_scale[n]);
  if (e.bias) y += e.bias[n];
  return e.relu ? std::max(y, 0.0f) : y;
}
inline void int8_put(float y, const Int8Epilogue&, float* c) { *c = y; }
inline void int8_put(float y, const Int8Epilogue& e, uint8_t* c) { *c = quantize_u8(y, 1.0f / e.out_scale, e.out_zero_point); }

// Rows [m0, m0 + rows) x panels [p0, p1) of the product, scalar.
template <typename Out>
void int8_block_scalar(const uint8_t* a, int64_t lda, int64_t rows, int64_t p0, int64_t p1, const PackedInt8& b,
                       const Int8Epilogue& e, Out* c, int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t col = 0; col < 16 && p * 16 + col < b.N; ++col) {
        int32_t acc = 0;
        const int8_t* w = b.data.data() + p * b.Kp * 16 + col * 4;
        for (int64_t g = 0; g < b.Kp / 4; ++g)
          for (int j = 0; j < 4; ++j) acc += int32_t{a[r * lda + g * 4 + j]} * int32_t{w[g * 64 + j]};
        int8_put(int8_epilogue(acc, p * 16 + col, b, e), e, c + r * ldc + p * 16 + col);
      }
}

#ifdef NABLA_GEMM_X86
// The epilogue of 16 columns of one row, vectorized; masked store for the last panel.
template <typename Out>
NABLA_GEMM_AVX512VNNI void int8_store16(__m512i acc, int64_t n0, const PackedInt8& b, const Int8Epilogue& e, Out* out) {
  const int64_t left = std::min<int64_t>(16, b.N - n0);
  const __mmask16 mask = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
  __m512i corr = _mm512_mullo_epi32(_mm512_set1_epi32(e.a_zero_point), _mm512_loadu_si512(b.colsum.data() + n0));
  __m512 y = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, corr));
  __m512 scale = _mm512_mul_ps(_mm512_set1_ps(e.a_scale), _mm512_maskz_loadu_ps(mask, e.b_scale + n0));
  y = _mm512_mul_ps(y, scale);
  if (e.bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, e.bias + n0));
  if (e.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
  if constexpr (std::is_same_v<Out, float>) {
    _mm512_mask_storeu_ps(out, mask, y);
  } else {  // requantize: round half to even (the default rounding mode), add the zero point, clamp
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(y, _mm512_set1_ps(1.0f / e.out_scale)));
    q = _mm512_add_epi32(q, _mm512_set1_epi32(e.out_zero_point));
    q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), _mm512_set1_epi32(255));
    _mm_mask_storeu_epi8(out, mask, _mm512_cvtepi32_epi8(q));
  }
}

// MR rows x 2 panels (32 columns): 2 * MR accumulators, vpdpbusd over K in groups of 4.
template <int MR, typename Out>
NABLA_GEMM_AVX512VNNI void int8_tile_vnni(const uint8_t* a, int64_t lda, int64_t p, int64_t np, const PackedInt8& b,
                                          const Int8Epilogue& e, Out* c, int64_t ldc) {
  __m512i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  const int8_t* w0 = b.data.data() + p * b.Kp * 16;
  const int8_t* w1 = w0 + b.Kp * 16;
  const int64_t groups = b.Kp / 4;
  for (int64_t g = 0; g < groups; ++g) {
    const __m512i b0 = _mm512_loadu_si512(w0 + g * 64);
    const __m512i b1 = np > 1 ? _mm512_loadu_si512(w1 + g * 64) : _mm512_setzero_si512();
    for (int r = 0; r < MR; ++r) {
      int32_t four;
      std::memcpy(&four, a + r * lda + g * 4, 4);
      const __m512i av = _mm512_set1_epi32(four);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      if (np > 1) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < MR; ++r) {
    int8_store16(acc[r][0], p * 16, b, e, c + r * ldc + p * 16);
    if (np > 1) int8_store16(acc[r][1], (p + 1) * 16, b, e, c + r * ldc + (p + 1) * 16);
  }
}

template <typename Out>
NABLA_GEMM_AVX512VNNI void int8_block_vnni(const uint8_t* a, int64_t lda, int64_t rows, int64_t p0, int64_t p1,
                                           const PackedInt8& b, const Int8Epilogue& e, Out* c, int64_t ldc) {
  for (int64_t p = p0; p < p1; p += 2) {
    const int64_t np = std::min<int64_t>(2, p1 - p);
    int64_t r = 0;
    for (; r + 8 <= rows; r += 8) int8_tile_vnni<8>(a + r * lda, lda, p, np, b, e, c + r * ldc, ldc);
    for (; r + 4 <= rows; r += 4) int8_tile_vnni<4>(a + r * lda, lda, p, np, b, e, c + r * ldc, ldc);
    for (; r < rows; ++r) int8_tile_vnni<1>(a + r * lda, lda, p, np, b, e, c + r * ldc, ldc);
  }
}

// AVX2: a 64-byte group of 16 columns is four 16-byte chunks (4 columns x 4 k); widened to int16,
// vpmaddwd gives per column two int32 partial sums, added pairwise at the end.
template <typename Out>
NABLA_GEMM_AVX2 void int8_block_avx2(const uint8_t* a, int64_t lda, int64_t rows, int64_t p0, int64_t p1,
                                     const PackedInt8& b, const Int8Epilogue& e, Out* c, int64_t ldc) {
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* w = b.data.data() + p * b.Kp * 16;
    for (int64_t r = 0; r < rows; ++r) {
      __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int64_t g = 0; g < b.Kp / 4; ++g) {
        int32_t four;
        std::memcpy(&four, a + r * lda + g * 4, 4);
        const __m256i av = _mm256_cvtepu8_epi16(_mm_set1_epi32(four));  // a0..a3 repeated, as int16
        for (int q = 0; q < 4; ++q) {
          const __m256i bv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * 64 + q * 16)));
          acc[q] = _mm256_add_epi32(acc[q], _mm256_madd_epi16(av, bv));
        }
      }
      alignas(32) int32_t part[4][8];
      for (int q = 0; q < 4; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(part[q]), acc[q]);
      for (int col = 0; col < 16 && p * 16 + col < b.N; ++col) {
        const int32_t s = part[col / 4][(col % 4) * 2] + part[col / 4][(col % 4) * 2 + 1];
        int8_put(int8_epilogue(s, p * 16 + col, b, e), e, c + r * ldc + p * 16 + col);
      }
    }
  }
}
#endif  // NABLA_GEMM_X86

}  // namespace gemm_detail

// c[M, N] (row stride ldc) from already quantized activation rows qa[M, Kp] (row stride Kp; the
// columns past K meet zero weights, so any value will do) times the packed weights; c is float32
// or, requantized by the epilogue, uint8.
template <typename Out>
void gemm_int8_rows(int64_t M, const uint8_t* qa, const PackedInt8& b, const Int8Epilogue& e, Out* c, int64_t ldc,
                    Int8Isa isa = best_int8_isa()) {
  static_assert(std::is_same_v<Out, float> || std::is_same_v<Out, uint8_t>);
  if (M <= 0 || b.N <= 0) return;
  isa = static_cast<Int8Isa>(std::min(static_cast<int>(isa), static_cast<int>(best_int8_isa())));
  // blocks of 64 rows x 4 panels, shared out over the threads when the product is large enough
  const int64_t mb = 64, pb = 4;
  const int64_t row_blocks = (M + mb - 1) / mb, panel_blocks = (b.panels + pb - 1) / pb, tiles = row_blocks * panel_blocks;
  const bool parallel = M * b.N * b.Kp > (int64_t{1} << 18);
  parallel_for(0, tiles, parallel ? 1 : tiles, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rb = t / panel_blocks, q = t % panel_blocks;
      const int64_t m0 = rb * mb, rows = std::min(mb, M - m0);
      const int64_t p0 = q * pb, p1 = std::min(b.panels, p0 + pb);
      const uint8_t* a = qa + m0 * b.Kp;
      Out* out = c + m0 * ldc;
#ifdef NABLA_GEMM_X86
      if (isa == Int8Isa::avx512_vnni) {
        gemm_detail::int8_block_vnni(a, b.Kp, rows, p0, p1, b, e, out, ldc);
        continue;
      }
      if (isa == Int8Isa::avx2) {
        gemm_detail::int8_block_avx2(a, b.Kp, rows, p0, p1, b, e, out, ldc);
        continue;
      }
#endif
      gemm_detail::int8_block_scalar(a, b.Kp, rows, p0, p1, b, e, out, ldc);
    }
  });
}

// c[M, N] (row stride ldc) from float activations x[M, K] (row stride ldx), quantized with
// (a_scale, a_zero_point) from the epilogue, times the packed weights; `isa` picks the kernel
// (best_int8_isa() unless a test asks for another; a family the CPU lacks falls back).
inline void gemm_int8(int64_t M, const float* x, int64_t ldx, const PackedInt8& b, const Int8Epilogue& e, float* c,
                      int64_t ldc, Int8Isa isa = best_int8_isa()) {
  if (M <= 0 || b.N <= 0) return;
  std::vector<uint8_t> qa(static_cast<size_t>(M * b.Kp), 0);
  const float inv = 1.0f / e.a_scale;
  const int64_t K = b.K;
  const int64_t Kp = b.Kp;
  parallel_for(0, M, std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) quantize_u8_row(x + m * ldx, K, inv, e.a_zero_point, qa.data() + m * Kp);
  });
  gemm_int8_rows(M, qa.data(), b, e, c, ldc, isa);
}

// A 2-D convolution in int8 on channels-last activations: x uint8 [N, H, W, C] (affine, zero
// point zp), weights packed as [O, kh * kw * C] (window_order below), out [N, Ho, Wo, O], float32
// or requantized uint8 (Out). Each image's windows are gathered into GEMM rows, one row per
// output pixel; a window row inside the image is one memcpy of kw * C bytes, and the zero
// padding is the zero point (exactly 0.0).
struct Conv2dGeometry {
  int64_t C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
};

// Weights [O, C, kh, kw] (PyTorch's layout) reordered to [O, kh, kw, C]: the byte order of a
// channels-last window.
inline std::vector<int8_t> window_order(const int8_t* w, int64_t O, int64_t C, int64_t kh, int64_t kw) {
  std::vector<int8_t> r(static_cast<size_t>(O * C * kh * kw));
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j)
          r[static_cast<size_t>(((o * kh + i) * kw + j) * C + c)] = w[((o * C + c) * kh + i) * kw + j];
  return r;
}

// x float32 [N, C, H, W] quantized into uint8 [N, H, W, C].
inline void quantize_nchw_to_nhwc(const float* x, int64_t N, int64_t C, int64_t H, int64_t W, float scale,
                                  int32_t zero_point, uint8_t* out) {
  const float inv = 1.0f / scale;
  const int64_t HW = H * W;
  parallel_for(0, N, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(C * HW, 1)), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      if (C == 1) {  // the same layout
        quantize_u8_row(x + n * HW, HW, inv, zero_point, out + n * HW);
        continue;
      }
      for (int64_t c = 0; c < C; ++c) {
        const float* src = x + (n * C + c) * HW;
        uint8_t* dst = out + n * HW * C + c;
        for (int64_t p = 0; p < HW; ++p) dst[p * C] = quantize_u8(src[p], inv, zero_point);
      }
    }
  });
}

template <typename Out>
void conv2d_int8(const uint8_t* x, int64_t N, const Conv2dGeometry& g, uint8_t zp, const PackedInt8& b,
                 const Int8Epilogue& e, Out* out, Int8Isa isa = best_int8_isa()) {
  const int64_t P = g.Ho * g.Wo, O = b.N, Kp = b.Kp, C = g.C, HWC = g.H * g.W * g.C, run = g.kw * C;
  // images shared out over the threads (the GEMM inside then runs on one); with a single image
  // the GEMM's own threads do the work
  auto images = [&](int64_t n0, int64_t n1) {
    std::vector<uint8_t> rows(static_cast<size_t>(P * Kp), zp);
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* img = x + n * HWC;
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow) {
          uint8_t* r = rows.data() + (oh * g.Wo + ow) * Kp;
          const int64_t iw0 = ow * g.sw - g.pw;
          const bool run_inside = g.dw == 1 && iw0 >= 0 && iw0 + g.kw <= g.W;
          for (int64_t i = 0; i < g.kh; ++i, r += run) {
            const int64_t ih = oh * g.sh - g.ph + i * g.dh;
            if (ih < 0 || ih >= g.H) {
              std::memset(r, zp, static_cast<size_t>(run));
            } else if (run_inside) {
              std::memcpy(r, img + (ih * g.W + iw0) * C, static_cast<size_t>(run));
            } else {
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iw = iw0 + j * g.dw;
                if (iw >= 0 && iw < g.W) std::memcpy(r + j * C, img + (ih * g.W + iw) * C, static_cast<size_t>(C));
                else std::memset(r + j * C, zp, static_cast<size_t>(C));
              }
            }
          }
        }
      gemm_int8_rows(P, rows.data(), b, e, out + n * P * O, O, isa);
    }
  };
  if (N == 1) images(0, 1);
  else parallel_for(0, N, 1, images);
}

// Max pooling on uint8 [N, H, W, C] (exact: the affine map is increasing, so the max of the
// codes is the code of the max); padding never wins (-inf in float).
inline void max_pool2d_u8(const uint8_t* x, int64_t N, const Conv2dGeometry& g, uint8_t* out) {
  const int64_t C = g.C;
  parallel_for(0, N * g.Ho, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(g.Wo * C * g.kh * g.kw, 1)),
               [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.Ho, oh = r % g.Ho;
      const uint8_t* img = x + n * g.H * g.W * C;
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        uint8_t* o = out + ((n * g.Ho + oh) * g.Wo + ow) * C;
        std::memset(o, 0, static_cast<size_t>(C));
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t iw = ow * g.sw - g.pw + j * g.dw;
            if (iw < 0 || iw >= g.W) continue;
            const uint8_t* src = img + (ih * g.W + iw) * C;
            for (int64_t c = 0; c < C; ++c) o[c] = std::max(o[c], src[c]);
          }
        }
      }
    }
  });
}

}  // namespace nabla::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
