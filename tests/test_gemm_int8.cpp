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

std::vector<Int8Isa> families() {
  std::vector<Int8Isa> isas{Int8Isa::scalar};
  if (nabla::cpu::best_int8_isa() >= Int8Isa::avx2) isas.push_back(Int8Isa::avx2);
  if (nabla::cpu::best_int8_isa() >= Int8Isa::avx512_vnni) isas.push_back(Int8Isa::avx512_vnni);
  return isas;
}

TEST(GemmInt8, EveryKernelFamilyMatchesTheExactReference) {
  auto g = nabla_test::rng_for("GemmInt8");
  const Case cases[] = {{1, 1, 1}, {3, 5, 7}, {8, 16, 4}, {9, 33, 13}, {17, 32, 64}, {70, 130, 257}, {64, 10, 9216}};
  const std::vector<Int8Isa> isas = families();
  std::cout << "[nabla] int8 kernel families on this CPU: " << isas.size() << " (best "
            << nabla::cpu::int8_isa_name(nabla::cpu::best_int8_isa()) << ")" << std::endl;
  for (Int8Isa isa : isas)
    for (const Case& c : cases)
      for (bool relu : {false, true}) check(c, isa, relu, g);
}

// uint8 out: every family's requantized codes equal those of the float epilogue requantized in
// scalar code (off by one only at a rounding tie), ReLU clamping at the zero point.
TEST(GemmInt8, RequantizedOutputMatchesTheFloatEpilogue) {
  auto g = nabla_test::rng_for("GemmInt8Requant");
  std::uniform_int_distribution<int> ua(0, 255), uw(-127, 127);
  std::uniform_real_distribution<float> us(0.001f, 0.05f), ub(-2.0f, 2.0f);
  for (const Case& s : {Case{1, 1, 1}, Case{9, 33, 13}, Case{70, 130, 260}}) {
    const int64_t Kp = (s.K + 3) / 4 * 4;
    std::vector<uint8_t> a(static_cast<size_t>(s.M * Kp));
    std::vector<int8_t> w(static_cast<size_t>(s.N * s.K));
    std::vector<float> sb(static_cast<size_t>(s.N)), bias(static_cast<size_t>(s.N));
    for (auto& v : a) v = static_cast<uint8_t>(ua(g));
    for (auto& v : w) v = static_cast<int8_t>(uw(g));
    for (auto& v : sb) v = us(g);
    for (auto& v : bias) v = ub(g);
    const auto packed = nabla::cpu::pack_int8(w.data(), s.N, s.K);
    for (bool relu : {false, true}) {
      Int8Epilogue e;
      e.a_scale = 0.02f, e.a_zero_point = 100, e.b_scale = sb.data(), e.bias = bias.data(), e.relu = relu;
      e.out_scale = 0.05f, e.out_zero_point = 77;
      std::vector<float> f(static_cast<size_t>(s.M * s.N));
      nabla::cpu::gemm_int8_rows(s.M, a.data(), packed, e, f.data(), s.N, Int8Isa::scalar);
      for (Int8Isa isa : families()) {
        std::vector<uint8_t> q(static_cast<size_t>(s.M * s.N), 1);
        nabla::cpu::gemm_int8_rows(s.M, a.data(), packed, e, q.data(), s.N, isa);
        int at_zero = 0;
        for (size_t i = 0; i < q.size(); ++i) {
          const uint8_t want = nabla::cpu::quantize_u8(f[i], 1.0f / e.out_scale, e.out_zero_point);
          if (q[i] != want) {  // only at a rounding tie, where a contracted multiply-add may tip it
            const double t = static_cast<double>(f[i]) / e.out_scale;
            ASSERT_EQ(std::abs(int{q[i]} - int{want}), 1) << nabla::cpu::int8_isa_name(isa) << " at " << i;
            ASSERT_LT(std::abs(std::abs(t - std::floor(t)) - 0.5), 1e-3) << nabla::cpu::int8_isa_name(isa) << " at " << i;
          }
          if (relu) {
            ASSERT_GE(int{q[i]}, e.out_zero_point);
          }
          at_zero += q[i] == e.out_zero_point;
        }
        if (relu && s.M * s.N > 100) {
          EXPECT_GT(at_zero, 0);  // the clamp was exercised
        }
      }
    }
  }
}

// conv2d_int8 on channels-last codes equals a direct convolution of the same codes (integer sums
// in the reference), with padding, stride, dilation and a ragged channel count.
TEST(GemmInt8, ChannelsLastConvMatchesADirectConvolution) {
  auto g = nabla_test::rng_for("ConvInt8");
  std::uniform_int_distribution<int> ua(0, 255), uw(-127, 127);
  const int64_t N = 3, C = 5, H = 9, W = 8, O = 19, kh = 3, kw = 2;
  nabla::cpu::Conv2dGeometry geo{C, H, W, kh, kw, 2, 1, 1, 1, 2, 1, 0, 0};
  geo.Ho = (H + 2 * geo.ph - geo.dh * (kh - 1) - 1) / geo.sh + 1;
  geo.Wo = (W + 2 * geo.pw - geo.dw * (kw - 1) - 1) / geo.sw + 1;
  std::vector<uint8_t> x(static_cast<size_t>(N * H * W * C));
  std::vector<int8_t> w(static_cast<size_t>(O * C * kh * kw));
  for (auto& v : x) v = static_cast<uint8_t>(ua(g));
  for (auto& v : w) v = static_cast<int8_t>(uw(g));
  std::vector<float> sb(static_cast<size_t>(O), 0.01f);
  const auto ordered = nabla::cpu::window_order(w.data(), O, C, kh, kw);
  const auto packed = nabla::cpu::pack_int8(ordered.data(), O, C * kh * kw);
  Int8Epilogue e;
  e.a_scale = 0.5f, e.a_zero_point = 30, e.b_scale = sb.data();
  for (Int8Isa isa : families()) {
    std::vector<float> y(static_cast<size_t>(N * geo.Ho * geo.Wo * O));
    nabla::cpu::conv2d_int8(x.data(), N, geo, 30, packed, e, y.data(), isa);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oh = 0; oh < geo.Ho; ++oh)
        for (int64_t ow = 0; ow < geo.Wo; ++ow)
          for (int64_t o = 0; o < O; ++o) {
            int64_t acc = 0;
            for (int64_t c = 0; c < C; ++c)
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                  const int64_t ih = oh * geo.sh - geo.ph + i * geo.dh, iw = ow * geo.sw - geo.pw + j * geo.dw;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;  // padding: the zero point, 0 after the shift
                  acc += (x[static_cast<size_t>(((n * H + ih) * W + iw) * C + c)] - 30) *
                         w[static_cast<size_t>(((o * C + c) * kh + i) * kw + j)];
                }
            const double want = static_cast<double>(acc) * 0.5 * 0.01;
            ASSERT_NEAR(y[static_cast<size_t>(((n * geo.Ho + oh) * geo.Wo + ow) * O + o)], want, 1e-5 * (1 + std::abs(want)))
                << nabla::cpu::int8_isa_name(isa) << " at n=" << n << " oh=" << oh << " ow=" << ow << " o=" << o;
          }
  }
  std::vector<uint8_t> pooled(static_cast<size_t>(N * 4 * 4 * C));
  nabla::cpu::Conv2dGeometry pg{C, H, W, 2, 2, 2, 2, 0, 0, 1, 1, 4, 4};
  nabla::cpu::max_pool2d_u8(x.data(), N, pg, pooled.data());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < 4; ++oh)
      for (int64_t ow = 0; ow < 4; ++ow)
        for (int64_t c = 0; c < C; ++c) {
          uint8_t want = 0;
          for (int64_t i = 0; i < 2; ++i)
            for (int64_t j = 0; j < 2; ++j)
              want = std::max(want, x[static_cast<size_t>(((n * H + oh * 2 + i) * W + ow * 2 + j) * C + c)]);
          ASSERT_EQ(pooled[static_cast<size_t>(((n * 4 + oh) * 4 + ow) * C + c)], want);
        }
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
