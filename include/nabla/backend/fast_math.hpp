#pragma once
// Branch-free float exp and tanh that GCC/Clang auto-vectorise (libm's expf / tanhf are scalar
// calls unless the build uses -ffast-math). Host code: the CPU kernels' hot loops (exp and
// softmax through cpu/vec_math.hpp, the flash attention kernels) and, through fn::tanh in
// functors.hpp, every float tanh on the host (tanh, GELU's tanh form).

#include <bit>
#include <cmath>
#include <cstdint>

namespace nabla {
namespace cpu {

// exp(x) for float, within 2 ulp of expf over the whole range: Cephes' degree-6 polynomial on
// r = x - n ln2, scaled by 2^n in two steps so that subnormal results come out right. Overflow
// gives inf, underflow 0, NaN stays NaN.
inline float vexp(float x) {
  const float xc = x > 88.7228394f ? 88.7228394f : (x < -103.972076f ? -103.972076f : x);
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float nf = (xc * 1.44269504088896341f + kRound) - kRound;
  float r = xc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t n = static_cast<int32_t>(nf);
  const int32_t n1 = n >> 1, n2 = n - n1;  // each within the normal exponent range
  const float s1 = std::bit_cast<float>((n1 + 127) << 23), s2 = std::bit_cast<float>((n2 + 127) << 23);
  float y = p * s1 * s2;
  y = x > 88.7228394f ? __builtin_inff() : y;
  return x != x ? x : y;
}

// tanh(x) for float, within 3 ulp of tanhf, branch-free so loops of it vectorise: an odd Taylor
// polynomial to x^11 for |x| < 0.3 (truncation below 2e-9 relative there), else
// (1 - e) / (1 + e) with e = exp(-2|x|) (e <= 0.55, so 1 - e keeps its precision). Saturates to
// +-1; NaN stays NaN.
inline float vtanh(float x) {
  const float a = x < 0 ? -x : x;
  const float x2 = x * x;
  const float small = x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f +
                          x2 * (62.0f / 2835.0f + x2 * (-1382.0f / 155925.0f))))));
  const float e = vexp(-2.0f * (a > 9.0f ? 9.0f : a));
  const float big = (1.0f - e) / (1.0f + e);
  const float r = a < 0.3f ? small : (x < 0 ? -big : big);
  return x != x ? x : r;
}

}  // namespace cpu
}  // namespace nabla
