#pragma once
// Shared test helpers: a seeded RNG whose seed is printed (set NABLA_TEST_SEED to replay a
// run), tensor comparison with readable failure messages, and non-contiguous variants of inputs.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

namespace nabla_test {

using namespace nabla;

// GPU tests skip, saying why, where there is no GPU (or no CUDA in the build).
#define NABLA_REQUIRE_GPU() \
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device (this build or machine has none)"

// Whether this build's nabla::cuda has cuDNN (NABLA_HAS_CUDNN comes with the nabla::cuda target).
inline bool cudnn_in_build() {
#if defined(NABLA_HAS_CUDNN)
  return true;
#else
  return false;
#endif
}
#define NABLA_REQUIRE_CUDNN() \
  NABLA_REQUIRE_GPU();        \
  if (!cudnn_in_build()) GTEST_SKIP() << "this build of nabla::cuda has no cuDNN (NABLA_HAS_CUDNN unset)"

// One seed per test program run: random unless NABLA_TEST_SEED is set; printed once.
inline uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("NABLA_TEST_SEED");
    uint64_t s = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::cout << "[nabla] test seed " << s << " (replay with NABLA_TEST_SEED=" << s << ")" << std::endl;
    return s;
  }();
  return seed;
}

// A generator for one test, derived from the run seed and the test's name.
inline std::mt19937_64 rng_for(const std::string& name) {
  uint64_t h = test_seed();
  for (char c : name) h = h * 1099511628211ull ^ static_cast<uint8_t>(c);
  return std::mt19937_64(h);
}

// Values in [lo, hi) as a float64 CPU tensor.
inline Tensor uniform(const Shape& shape, double lo, double hi, std::mt19937_64& g) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(numel_of(shape)));
  for (auto& x : v) x = d(g);
  return from_vector(v, shape, kFloat64);
}

// A tensor equal to t but laid out non-contiguously (a transposed copy, transposed back).
inline Tensor non_contiguous(const Tensor& t) {
  if (t.dim() < 2) {
    // every other element of a twice-as-long buffer
    Shape big = t.sizes();
    if (big.empty()) return t;
    big[0] *= 2;
    Tensor b = zeros(big, t.options());
    Tensor v = b.slice(0, 0, std::nullopt, 2);
    v.copy_(t);
    return v;
  }
  Tensor tt = t.transpose(0, t.dim() - 1).contiguous();
  return tt.transpose(0, t.dim() - 1);
}

struct Tolerance {
  double atol, rtol;
};
inline Tolerance tolerance_for(DType dt) {
  switch (dt) {
    case DType::Float64: return {1e-10, 1e-9};
    case DType::Float32: return {1e-5, 1e-4};
    case DType::Float16: return {2e-3, 2e-2};
    case DType::BFloat16: return {1e-2, 5e-2};
    default: return {0, 0};
  }
}

// Checks |actual - expected| <= atol + rtol * |expected| elementwise (NaNs must match).
inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.sizes()) << " vs expected "
                                         << shape_str(expected.sizes());
  auto a = actual.detach().to(Device::cpu()).to_vector<double>();
  auto e = expected.detach().to(Device::cpu()).to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    bool same_inf = std::isinf(a[i]) && a[i] == e[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(a[i] - e[i]) <= atol + rtol * std::abs(e[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs expected " << e[i]
                                           << " (atol " << atol << ", rtol " << rtol << ", shape "
                                           << shape_str(actual.sizes()) << ")";
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult all_equal(const Tensor& actual, const Tensor& expected) {
  if (actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << "dtype " << actual.dtype() << " vs expected " << expected.dtype();
  return all_close(actual, expected, 0, 0);
}

// Runs f and checks it throws E with a message containing every fragment.
template <class E, class F>
::testing::AssertionResult throws_with(F&& f, std::vector<std::string> fragments) {
  try {
    f();
  } catch (const E& e) {
    std::string msg = e.what();
    for (const auto& frag : fragments)
      if (msg.find(frag) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << msg << "\" lacks \"" << frag << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a different exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace nabla_test
