// int8 post-training quantization (quantization/quantize.hpp): dynamic and static, against the
// float model, which stays untouched.

#include <nabla/quantization/quantize.hpp>

#include "test_util.hpp"

namespace {

using namespace nabla;
namespace q = nabla::quantization;

double rel_err(const Tensor& a, const Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-12, b.abs().max().item<double>());
}

std::shared_ptr<nn::Sequential> cnn() {
  return std::make_shared<nn::Sequential>(nn::Conv2d(1, 8, 3, 1, 1), nn::ReLU(), nn::Conv2d(8, 16, 3, 2), nn::ReLU(),
                                          nn::Flatten(), nn::Linear(16 * 6 * 6, 32), nn::ReLU(), nn::Linear(32, 10));
}

TEST(Quantization, DynamicLinearIsCloseAndLeavesTheFloatModel) {
  manual_seed(1);
  auto net = std::make_shared<nn::Sequential>(nn::Linear(64, 128), nn::ReLU(), nn::Linear(128, 10));
  net->eval();
  Tensor x = randn({16, 64});
  Tensor want;
  {
    NoGradGuard ng;
    want = net->forward(x);
  }
  auto qnet = q::quantize_dynamic(net);
  EXPECT_EQ(qnet->quantized_layers(), 2u);
  Tensor got = qnet->forward(x);
  EXPECT_LT(rel_err(got, want), 0.03);
  EXPECT_GT(rel_err(got, want), 0.0);  // it did run in int8
  NoGradGuard ng;
  EXPECT_TRUE(net->forward(x).equal(want));  // the float model is untouched
}

TEST(Quantization, StaticConvAndLinearAreClose) {
  manual_seed(2);
  auto net = cnn();
  std::vector<Tensor> calib;
  for (int i = 0; i < 4; ++i) calib.push_back(randn({8, 1, 14, 14}));
  net->train();
  auto qnet = q::quantize(net, calib);
  EXPECT_TRUE(net->is_training());  // mode restored
  EXPECT_EQ(qnet->quantized_layers(), 4u);
  Tensor x = randn({5, 1, 14, 14});
  Tensor want;
  {
    NoGradGuard ng;
    net->eval();
    want = net->forward(x);
  }
  Tensor got = qnet->forward(x);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT(rel_err(got, want), 0.05);
}

TEST(Quantization, ChooseQparamsKeepsZeroExact) {
  q::QParams p = q::choose_qparams(-1.0, 3.0);
  EXPECT_NEAR(p.scale, 4.0 / 255.0, 1e-7);
  EXPECT_EQ(p.zero_point, 64);  // round(1 / (4 / 255)) = round(63.75)
  q::QParams pos = q::choose_qparams(0.5, 2.0);  // widened to include 0
  EXPECT_EQ(pos.zero_point, 0);
}

}  // namespace
