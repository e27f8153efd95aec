// The int8 GEMM (backend/cpu/gemm_int8.hpp) against an exact reference: every kernel family this
// CPU has (scalar, AVX2, AVX512-VNNI), ragged shapes (rows, columns and depth not multiples of
// the tiles), zero points, per-channel scales, bias and ReLU, and saturating inputs.

#include <nabla/backend/cpu/gemm_int8.hpp>

#include <random>

#include "test_util.hpp"

namespace {

using nabla::cpu::Int8Epilogue;
using nabla::cpu::Int8Isa;

struct Case {
  int64_t M, N, K;
};

void check(const Case& s, Int8Isa isa, bool relu, std::mt19937_64& g) {
  std::uniform_real_distribution<float> ux(-3.0f, 5.0f), us(0.001f, 0.05f);
  std::uniform_int_distribution<int> uw(-127, 127);
  std::vector<float> x(static_cast<size_t>(s.M * s.K)), bias(static_cast<size_t>(s.N)), sb(static_cast<size_t>(s.N));
  std::vector<int8_t> w(static_cast<size_t>(s.N * s.K));
  for (auto& v : x) v = ux(g);
  for (auto& v : w) v = static_cast<int8_t>(uw(g));
  for (auto& v : bias) v = ux(g);
  for (auto& v : sb) v = us(g);
  if (s.K > 2) x[1] = 1e6f, x[2] = -1e6f;  // clamped to 255 and 0
  Int8Epilogue e;
  e.a_scale = 8.0f / 255.0f, e.a_zero_point = 96, e.b_scale = sb.data(), e.bias = bias.data(), e.relu = relu;
  const auto packed = nabla::cpu::pack_int8(w.data(), s.N, s.K);
  std::vector<float> y(static_cast<size_t>(s.M * s.N), -7.0f);
  nabla::cpu::gemm_int8(s.M, x.data(), s.K, packed, e, y.data(), s.N, isa);
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      int64_t acc = 0;
      for (int64_t k = 0; k < s.K; ++k) {
        const int64_t q = nabla::cpu::quantize_u8(x[static_cast<size_t>(m * s.K + k)], 1.0f / e.a_scale, e.a_zero_point);
        acc += (q - e.a_zero_point) * w[static_cast<size_t>(n * s.K + k)];
      }
      double want = static_cast<double>(acc) * e.a_scale * sb[static_cast<size_t>(n)] + bias[static_cast<size_t>(n)];
      if (relu) want = std::max(want, 0.0);
      const double got = y[static_cast<size_t>(m * s.N + n)];
      ASSERT_NEAR(got, want, 1e-5 * (1 + std::abs(want)))
          << nabla::cpu::int8_isa_name(isa) << " M=" << s.M << " N=" << s.N << " K=" << s.K << " at (" << m << ", " << n << ")";
    }
}

TEST(GemmInt8, EveryKernelFamilyMatchesTheExactReference) {
  auto g = nabla_test::rng_for("GemmInt8");
  const Case cases[] = {{1, 1, 1}, {3, 5, 7}, {8, 16, 4}, {9, 33, 13}, {17, 32, 64}, {70, 130, 257}, {64, 10, 9216}};
  std::vector<Int8Isa> isas{Int8Isa::scalar};
  if (nabla::cpu::best_int8_isa() >= Int8Isa::avx2) isas.push_back(Int8Isa::avx2);
  if (nabla::cpu::best_int8_isa() >= Int8Isa::avx512_vnni) isas.push_back(Int8Isa::avx512_vnni);
  std::cout << "[nabla] int8 kernel families on this CPU: " << isas.size() << " (best "
            << nabla::cpu::int8_isa_name(nabla::cpu::best_int8_isa()) << ")" << std::endl;
  for (Int8Isa isa : isas)
    for (const Case& c : cases)
      for (bool relu : {false, true}) check(c, isa, relu, g);
}

TEST(GemmInt8, PackingKeepsColumnSumsAndPadsWithZeros) {
  std::vector<int8_t> w{1, -2, 3, 4, 5, -128, 127, 0, 1, 1};  // N = 2, K = 5
  auto p = nabla::cpu::pack_int8(w.data(), 2, 5);
  EXPECT_EQ(p.Kp, 8);
  EXPECT_EQ(p.panels, 1);
  EXPECT_EQ(p.colsum[0], 11);
  EXPECT_EQ(p.colsum[1], 1);
  EXPECT_EQ(p.data[0 * 64 + 1 * 4 + 0], -128);  // column 1, k 0
  EXPECT_EQ(p.data[1 * 64 + 0 * 4 + 0], 5);     // column 0, k 4 (second group)
  EXPECT_EQ(p.data[1 * 64 + 0 * 4 + 1], 0);     // k 5: padding
}

}  // namespace
