#pragma once
// 16-bit float types. Half (IEEE binary16) and BFloat16 store raw bits and convert to and from
// float with round-to-nearest-even. The host converts in software; device code uses the
// hardware conversions, with NaN pinned to the software path's bits so both devices agree.

#include <cstdint>
#include <cstring>
#include <ostream>

#include "macros.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace nabla {
namespace detail {

NABLA_HOST_DEVICE inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
NABLA_HOST_DEVICE inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float -> binary16, round to nearest even; overflow gives inf, NaN stays a (quiet) NaN.
NABLA_HOST_DEVICE inline uint16_t float_to_half_bits(float value) {
#if defined(__CUDA_ARCH__)
  // cvt.rn.f16.f32 rounds the same way but writes NaN as 0x7fff; keep the sign-preserving 0x7e00
  if (value != value) return static_cast<uint16_t>(0x7e00u | ((__float_as_uint(value) >> 16) & 0x8000u));
  return __half_as_ushort(__float2half_rn(value));
#else
  uint32_t f = float_bits(value);
  const uint32_t sign = f & 0x80000000u;
  f ^= sign;
  uint16_t out;
  if (f >= (143u << 23)) {  // >= 65536: beyond the largest finite half (or inf / NaN)
    out = f > (255u << 23) ? 0x7e00 : 0x7c00;
  } else if (f < (113u << 23)) {  // result is subnormal or zero
    // Adding a magic constant lines the 10 mantissa bits up at the bottom of a float; the FPU
    // then does the round-to-nearest-even for us.
    const uint32_t denorm_magic = ((127 - 15) + (23 - 10) + 1) << 23;
    float r = bits_float(f) + bits_float(denorm_magic);
    out = static_cast<uint16_t>(float_bits(r) - denorm_magic);
  } else {
    uint32_t mant_odd = (f >> 13) & 1u;
    f += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    f += mant_odd;
    out = static_cast<uint16_t>(f >> 13);  // may carry into the exponent: rounds up to inf at 65520
  }
  return static_cast<uint16_t>(out | (sign >> 16));
#endif
}

NABLA_HOST_DEVICE inline float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  // widening is exact; only NaN goes the software way (its payload moves up, sign kept)
  if ((h & 0x7fffu) <= 0x7c00u) return __half2float(__ushort_as_half(h));
#endif
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += static_cast<uint32_t>(127 - 15) << 23;
  if (exp == shifted_exp) {
    o += static_cast<uint32_t>(128 - 16) << 23;  // inf / NaN
  } else if (exp == 0) {                          // zero / subnormal: renormalise via the FPU
    o += 1u << 23;
    o = float_bits(bits_float(o) - bits_float(113u << 23));
  }
  o |= (static_cast<uint32_t>(h) & 0x8000u) << 16;
  return bits_float(o);
}

NABLA_HOST_DEVICE inline uint16_t float_to_bf16_bits(float value) {
  uint32_t u = float_bits(value);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
#if defined(__CUDA_ARCH__)
  return __bfloat16_as_ushort(__float2bfloat16_rn(value));  // one cvt.rn.bf16.f32 (sm_80+)
#else
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
#endif
}

// Exact and a single shift on either device (what __bfloat162float compiles to as well).
NABLA_HOST_DEVICE inline float bf16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace detail

struct Half {
  uint16_t bits = 0;
  Half() = default;
  NABLA_HOST_DEVICE Half(float f) : bits(detail::float_to_half_bits(f)) {}  // NOLINT: implicit like CUDA's __half
  NABLA_HOST_DEVICE Half(double d) : Half(static_cast<float>(d)) {}
  NABLA_HOST_DEVICE Half(int i) : Half(static_cast<float>(i)) {}
  NABLA_HOST_DEVICE Half(int64_t i) : Half(static_cast<float>(i)) {}
  NABLA_HOST_DEVICE operator float() const { return detail::half_bits_to_float(bits); }
  NABLA_HOST_DEVICE static Half from_bits(uint16_t b) {
    Half h;
    h.bits = b;
    return h;
  }
};

struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  NABLA_HOST_DEVICE BFloat16(float f) : bits(detail::float_to_bf16_bits(f)) {}  // NOLINT
  NABLA_HOST_DEVICE BFloat16(double d) : BFloat16(static_cast<float>(d)) {}
  NABLA_HOST_DEVICE BFloat16(int i) : BFloat16(static_cast<float>(i)) {}
  NABLA_HOST_DEVICE BFloat16(int64_t i) : BFloat16(static_cast<float>(i)) {}
  NABLA_HOST_DEVICE operator float() const { return detail::bf16_bits_to_float(bits); }
  NABLA_HOST_DEVICE static BFloat16 from_bits(uint16_t b) {
    BFloat16 h;
    h.bits = b;
    return h;
  }
};

inline std::ostream& operator<<(std::ostream& os, Half h) { return os << static_cast<float>(h); }
inline std::ostream& operator<<(std::ostream& os, BFloat16 h) { return os << static_cast<float>(h); }

}  // namespace nabla
