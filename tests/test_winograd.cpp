// The CPU Winograd F(2x2, 3x3) kernels (backend/cpu/winograd.hpp) called directly, below the
// 128-channel threshold at which conv2d starts using them, so their gradients can be checked
// against the composite conv2d_reference's autograd in float64 (and its forward in float32):
// odd output sizes, paddings 0-2 (each side on its own), several images per chunk.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nabla/backend/cpu/winograd.hpp>
#include <nabla/nabla.hpp>

namespace {

using namespace nabla;
namespace wg = nabla::cpu::winograd;

struct Case {
  int64_t N, C, H, W, O, ph, pw;
};

const Case kCases[] = {
    {2, 16, 5, 6, 17, 1, 1},  // odd output rows
    {3, 16, 6, 5, 16, 0, 0},  // odd output columns, no padding
    {1, 17, 3, 4, 16, 2, 2},  // padding 2: output larger than the input
    {2, 16, 7, 7, 19, 1, 0},  // different padding per side
    {9, 16, 2, 3, 16, 2, 1},  // tiny maps: many images per chunk, a shorter last chunk
};

std::string name(const Case& c) {
  return std::to_string(c.N) + "x" + std::to_string(c.C) + "x" + std::to_string(c.H) + "x" + std::to_string(c.W) +
         " -> " + std::to_string(c.O) + " pad " + std::to_string(c.ph) + "," + std::to_string(c.pw);
}

// max |a - b| / max(1, max |b|)
double rel_diff(const Tensor& a, const Tensor& b) {
  const Tensor ad = a.to(kFloat64).contiguous(), bd = b.to(kFloat64).contiguous();
  const double* p = ad.data_ptr<double>();
  const double* q = bd.data_ptr<double>();
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < ad.numel(); ++i) {
    worst = std::max(worst, std::abs(p[i] - q[i]));
    scale = std::max(scale, std::abs(q[i]));
  }
  return worst / scale;
}

template <class T>
void check_case(const Case& c, DType dt, double tol) {
  SCOPED_TRACE(name(c) + (dt == kFloat32 ? " float32" : " float64"));
  const wg::Shape s{c.N, c.C, c.H, c.W, c.O, c.ph, c.pw};
  Tensor x = randn({c.N, c.C, c.H, c.W}, kFloat64).requires_grad_();
  Tensor w = randn({c.O, c.C, 3, 3}, kFloat64).requires_grad_();
  Tensor b = randn({c.O}, kFloat64).requires_grad_();
  Tensor y = conv2d_reference(x, w, b, 1, Padding2d(c.ph, c.pw));
  ASSERT_EQ(y.size(2), s.Ho());
  ASSERT_EQ(y.size(3), s.Wo());
  Tensor gy = randn(y.sizes(), kFloat64);
  const TensorList ref = autograd::grad({y}, {x, w, b}, {gy});

  const Tensor xt = x.detach().to(dt).contiguous(), wt = w.detach().to(dt).contiguous(),
               bt = b.detach().to(dt).contiguous(), gyt = gy.to(dt).contiguous();
  Tensor out = empty(y.sizes(), dt), gx = empty(x.sizes(), dt), gw = empty(w.sizes(), dt),
         gb = empty(b.sizes(), dt);
  wg::forward(out.data_ptr<T>(), xt.data_ptr<T>(), wt.data_ptr<T>(), bt.data_ptr<T>(), s);
  wg::backward_input(gx.data_ptr<T>(), gyt.data_ptr<T>(), wt.data_ptr<T>(), s);
  wg::backward_weight(gw.data_ptr<T>(), gb.data_ptr<T>(), gyt.data_ptr<T>(), xt.data_ptr<T>(), s);
  EXPECT_LT(rel_diff(out, y.detach()), tol) << "forward";
  EXPECT_LT(rel_diff(gx, ref[0]), tol) << "input gradient";
  EXPECT_LT(rel_diff(gw, ref[1]), tol) << "weight gradient";
  EXPECT_LT(rel_diff(gb, ref[2]), tol) << "bias gradient";

  // Without a bias: the forward adds nothing, backward_weight leaves the bias alone.
  Tensor out_nb = empty(y.sizes(), dt);
  wg::forward(out_nb.data_ptr<T>(), xt.data_ptr<T>(), wt.data_ptr<T>(), static_cast<const T*>(nullptr), s);
  EXPECT_LT(rel_diff(out_nb, (y - b.view({1, c.O, 1, 1})).detach()), tol) << "forward without bias";
  wg::backward_weight(gw.data_ptr<T>(), static_cast<T*>(nullptr), gyt.data_ptr<T>(), xt.data_ptr<T>(), s);
  EXPECT_LT(rel_diff(gw, ref[1]), tol) << "weight gradient without a bias";
}

TEST(Winograd, MatchesTheCompositeInFloat64) {
  for (const Case& c : kCases) check_case<double>(c, kFloat64, 1e-12);
}

TEST(Winograd, MatchesTheCompositeInFloat32) {
  for (const Case& c : kCases) check_case<float>(c, kFloat32, 2e-5);
}

TEST(Winograd, EligibleOnlyForWhatItComputes) {
  auto ok = [](int64_t k, int64_t stride, int64_t dil, int64_t groups, int64_t pad, int64_t C, int64_t O) {
    return wg::eligible(k, k, stride, stride, dil, dil, groups, pad, pad, C, O, 8, 8);
  };
  EXPECT_TRUE(ok(3, 1, 1, 1, 1, 128, 128));
  EXPECT_FALSE(ok(3, 2, 1, 1, 1, 128, 128));  // stride
  EXPECT_FALSE(ok(3, 1, 2, 1, 1, 128, 128));  // dilation
  EXPECT_FALSE(ok(3, 1, 1, 2, 1, 128, 128));  // groups
  EXPECT_FALSE(ok(5, 1, 1, 1, 1, 128, 128));  // kernel
  EXPECT_FALSE(ok(3, 1, 1, 1, 3, 128, 128));  // padding past 2
  EXPECT_FALSE(ok(3, 1, 1, 1, 1, 64, 128));   // below the channel threshold
  EXPECT_FALSE(ok(3, 1, 1, 1, 1, 128, 64));
}

}  // namespace
