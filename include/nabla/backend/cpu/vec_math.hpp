#pragma once
// Branch-free float math that GCC/Clang auto-vectorise (libm's expf is a scalar call unless the
// build uses -ffast-math). Used by the CPU backend's hot loops: exp and softmax on float32.

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

// exp in the compute type: vexp for float (and so for float16 / bfloat16), libm for double.
struct FastExp {
  float operator()(float x) const { return vexp(x); }
  double operator()(double x) const { return std::exp(x); }
};

// Sum and NaN-propagating max of n contiguous values with 16 independent lanes, so the loops
// vectorise without -ffast-math (a single running sum would have to stay serial).
template <class C>
C lane_sum(const C* x, int64_t n) {
  constexpr int kLanes = 16;
  C lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lanes[j] += x[i + j];
  C acc = 0;
  for (int j = 0; j < kLanes; ++j) acc += lanes[j];
  for (; i < n; ++i) acc += x[i];
  return acc;
}
template <class C>
C lane_max(const C* x, int64_t n) {
  constexpr int kLanes = 16;
  C lanes[kLanes];
  for (auto& l : lanes) l = -__builtin_inf();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      C v = x[i + j];
      lanes[j] = (v != v || v > lanes[j]) ? v : lanes[j];
    }
  C acc = lanes[0];
  for (int j = 1; j < kLanes; ++j) acc = (lanes[j] != lanes[j] || lanes[j] > acc) ? lanes[j] : acc;
  for (; i < n; ++i) acc = (x[i] != x[i] || x[i] > acc) ? x[i] : acc;
  return acc;
}

}  // namespace cpu
}  // namespace nabla
