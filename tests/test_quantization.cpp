// int8 post-training quantization (quantization/quantize.hpp): dynamic and static, against the
// float model, which stays untouched.

#include <nabla/models/gpt2.hpp>
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

Tensor float_forward(nn::Module& net, const Tensor& x) {
  NoGradGuard ng;
  const bool was = net.is_training();
  net.eval();
  Tensor y = net.forward(x);
  net.train(was);
  return y;
}

TEST(Quantization, StaticConvAndLinearAreCloseFusedOrNot) {
  manual_seed(2);
  auto net = cnn();
  std::vector<Tensor> calib;
  for (int i = 0; i < 4; ++i) calib.push_back(randn({8, 1, 14, 14}));
  Tensor x = randn({5, 1, 14, 14});
  const Tensor want = float_forward(*net, x);
  for (bool fuse : {true, false})
    for (auto obs : {q::ObserverKind::min_max, q::ObserverKind::histogram}) {
      SCOPED_TRACE(std::string(fuse ? "fused" : "layer by layer") + (obs == q::ObserverKind::min_max ? ", min/max" : ", histogram"));
      net->train();
      q::QuantizeOptions o;
      o.fuse = fuse, o.observer = obs;
      auto qnet = q::quantize(net, calib, o);
      EXPECT_TRUE(net->is_training());  // mode restored
      EXPECT_EQ(qnet->quantized_layers(), 4u);
      EXPECT_EQ(qnet->int8_weight_bytes(), size_t(8 * 9 + 16 * 8 * 9 + 576 * 32 + 32 * 10));
      Tensor got = qnet->forward(x);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT(rel_err(got, want), 0.05);
      EXPECT_GT(rel_err(got, want), 0.0);
    }
  EXPECT_TRUE(float_forward(*net, x).equal(want));  // the float model is untouched
}

// Batch norm folded into the conv, max pooling and ReLU on the codes, the Flatten of channels-last
// codes (the Linear's columns permuted), dropout dropped: the fused path against the float model
// and against the unfused one.
TEST(Quantization, FusedSequentialFoldsBatchNormAndPoolsOnCodes) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>(nn::Conv2d(3, 16, 3, 1, 1), nn::BatchNorm2d(16), nn::ReLU(),
                                              nn::MaxPool2d(2), nn::Conv2d(16, 24, 3, 1, 1, 1, 1, false),
                                              nn::BatchNorm2d(24), nn::ReLU(), nn::Dropout(0.3), nn::Flatten(),
                                              nn::Linear(24 * 5 * 5, 40), nn::ReLU(), nn::Linear(40, 7),
                                              nn::Functional([](const Tensor& t) { return log_softmax(t, 1); }));
  {  // BN statistics that are not the identity
    net->train();
    NoGradGuard ng;
    for (int i = 0; i < 5; ++i) net->forward(randn({16, 3, 10, 10}) * 2.0 + 0.5);
  }
  std::vector<Tensor> calib;
  for (int i = 0; i < 4; ++i) calib.push_back(randn({16, 3, 10, 10}) * 2.0 + 0.5);
  Tensor x = randn({6, 3, 10, 10}) * 2.0 + 0.5;
  const Tensor want = float_forward(*net, x);
  auto fused = q::quantize(net, calib);
  q::QuantizeOptions plain;
  plain.fuse = false;
  auto layered = q::quantize(net, calib, plain);
  EXPECT_EQ(fused->quantized_layers(), 4u);
  EXPECT_EQ(layered->quantized_layers(), 4u);
  EXPECT_EQ(fused->plan(), (std::vector<std::string>{"[0:3] Conv2d+BatchNorm2d+ReLU int8 -> uint8",
                                                     "[3:4] MaxPool2d on uint8",
                                                     "[4:7] Conv2d+BatchNorm2d+ReLU int8 -> uint8",
                                                     "[8:9] Flatten on uint8",
                                                     "[9:11] Linear+ReLU int8 -> uint8",
                                                     "[11:12] Linear int8 -> float",
                                                     "[12:13] Functional float"}));
  EXPECT_EQ(layered->plan(), (std::vector<std::string>{"0 Conv2d int8 -> float", "4 Conv2d int8 -> float",
                                                       "9 Linear int8 -> float", "11 Linear int8 -> float"}));
  const Tensor a = fused->forward(x), b = layered->forward(x);
  EXPECT_LT(rel_err(a, want), 0.05);
  EXPECT_LT(rel_err(b, want), 0.05);
  EXPECT_TRUE(a.argmax(1).equal(want.argmax(1)) || rel_err(a, want) < 0.02);
  EXPECT_EQ(fused->forward(x.narrow(0, 2, 1)).sizes(), (Shape{1, 7}));  // batch 1
}

// A model that is not a Sequential (residual add between its layers): each layer runs alone.
struct Residual : nn::Module {
  std::shared_ptr<nn::Conv2d> a, b;
  std::shared_ptr<nn::Linear> fc;
  Residual() {
    a = register_module("a", std::make_shared<nn::Conv2d>(4, 4, 3, 1, 1));
    b = register_module("b", std::make_shared<nn::Conv2d>(4, 4, 3, 1, 1));
    fc = register_module("fc", std::make_shared<nn::Linear>(4 * 6 * 6, 5));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x + b->forward(a->forward(x).relu());
    return fc->forward(h.relu().flatten(1));
  }
};

TEST(Quantization, ArbitraryModulesQuantizeLayerByLayer) {
  manual_seed(4);
  auto net = std::make_shared<Residual>();
  std::vector<Tensor> calib{randn({8, 4, 6, 6}), randn({8, 4, 6, 6})};
  auto qnet = q::quantize(net, calib);
  EXPECT_EQ(qnet->quantized_layers(), 3u);
  Tensor x = randn({3, 4, 6, 6});
  EXPECT_LT(rel_err(qnet->forward(x), float_forward(*net, x)), 0.05);
}

TEST(Quantization, BadInputsAreClearErrors) {
  auto net = cnn();
  EXPECT_THROW(q::quantize(net, {}), Error);
  EXPECT_THROW(q::quantize(nullptr, {randn({1, 1, 14, 14})}), Error);
  auto qnet = q::quantize(net, {randn({2, 1, 14, 14})});
  try {
    qnet->forward(randn({2, 1, 14, 14}, TensorOptions(kFloat64)));
    ADD_FAILURE() << "a float64 input was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("float32 CPU"), std::string::npos) << e.what();
  }
  EXPECT_THROW(qnet->forward(randn({2, 3, 14, 14})), Error);  // wrong channel count
}

// GPT-2's projections are Hugging Face Conv1D layers (weight [in, out]): quantize_dynamic takes
// them as Linear layers; the tied lm_head (a matmul with the embedding) stays float.
TEST(Quantization, DynamicGpt2QuantizesItsConv1DLayers) {
  manual_seed(5);
  models::GPT2Config c;
  c.vocab_size = 97, c.n_positions = 32, c.n_embd = 48, c.n_layer = 2, c.n_head = 4;
  auto net = std::make_shared<models::GPT2LMHeadModel>(c);
  Tensor ids = randint(0, c.vocab_size, {3, 12}, TensorOptions(kInt64));
  const Tensor want = float_forward(*net, ids);
  auto qnet = q::quantize_dynamic(net);
  EXPECT_EQ(qnet->quantized_layers(), 8u);  // c_attn, attn.c_proj, c_fc, mlp.c_proj per block
  EXPECT_EQ(qnet->plan()[0], "transformer.h.0.attn.c_attn Conv1D int8 (dynamic) -> float");
  const Tensor got = qnet->forward(ids);
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LT(rel_err(got, want), 0.05);
  EXPECT_GT(rel_err(got, want), 0.0);
  EXPECT_TRUE(float_forward(*net, ids).equal(want));
}

TEST(Quantization, ChooseQparamsKeepsZeroExact) {
  q::QParams p = q::choose_qparams(-1.0, 3.0);
  EXPECT_NEAR(p.scale, 4.0 / 255.0, 1e-7);
  EXPECT_EQ(p.zero_point, 64);  // round(1 / (4 / 255)) = round(63.75)
  q::QParams pos = q::choose_qparams(0.5, 2.0);  // widened to include 0
  EXPECT_EQ(pos.zero_point, 0);
}

}  // namespace
