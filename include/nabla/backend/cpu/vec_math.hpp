#pragma once
// Branch-free float math that GCC/Clang auto-vectorise (libm's expf is a scalar call unless the
// build uses -ffast-math). Used by the CPU backend's hot loops: exp and softmax on float32.

#include <bit>
#include <cmath>
#include <cstdint>

#include "../fast_math.hpp"  // vexp, vtanh

namespace nabla {
namespace cpu {

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
