// nn::utils::prune: PyTorch's names, masks and semantics (torch.nn.utils.prune), the mask in
// forward and in the gradient, iterative and global pruning, remove(), and remove_channels.

#include <nabla/nn/prune.hpp>

#include "test_util.hpp"

namespace {

using namespace nabla;
namespace prune = nabla::nn::utils::prune;

std::vector<std::string> keys(const nn::OrderedDict<Tensor>& d) {
  std::vector<std::string> k;
  for (const auto& [name, t] : d) k.push_back(name);
  return k;
}
int64_t zeros_in(const Tensor& t) { return (t == 0).sum().item().to<int64_t>(); }

TEST(Prune, L1UnstructuredHasPyTorchsNamesAndMask) {
  manual_seed(1);
  nn::Linear fc(4, 3);
  Tensor w = fc.weight.detach().clone();
  prune::l1_unstructured(fc, "weight", 0.5);
  // torch: _parameters [bias, weight_orig], _buffers [weight_mask]; state_dict in that order
  EXPECT_EQ(keys(fc.named_parameters()), (std::vector<std::string>{"bias", "weight_orig"}));
  EXPECT_EQ(keys(fc.named_buffers()), (std::vector<std::string>{"weight_mask"}));
  EXPECT_EQ(keys(fc.state_dict()), (std::vector<std::string>{"bias", "weight_orig", "weight_mask"}));
  Tensor mask = fc.named_buffers()["weight_mask"];
  EXPECT_EQ(zeros_in(mask), 6);  // round(0.5 * 12)
  // the zeros are the six smallest |w|
  std::vector<double> a;
  for (int64_t i = 0; i < 12; ++i) a.push_back(std::abs(w.reshape({-1})[i].item().to<double>()));
  std::vector<double> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 12; ++i)
    EXPECT_EQ(mask.reshape({-1})[i].item().to<double>() == 0.0, a[static_cast<size_t>(i)] <= sorted[5]) << i;
  EXPECT_TRUE(fc.weight.equal(w * mask));
  EXPECT_TRUE(fc.named_parameters()["weight_orig"].equal(w));  // the original values stay
  EXPECT_TRUE(prune::is_pruned(fc));
}

TEST(Prune, TheMaskAppliesInForwardAndInTheGradient) {
  manual_seed(2);
  auto net = std::make_shared<nn::Sequential>(nn::Linear(5, 4), nn::ReLU(), nn::Linear(4, 2));
  auto fc = net->at<nn::Linear>(0);
  prune::random_unstructured(*fc, "weight", 0.4);
  Tensor orig = fc->named_parameters()["weight_orig"];
  Tensor mask = fc->named_buffers()["weight_mask"];
  EXPECT_EQ(zeros_in(mask), 8);
  // the hook recomputes weight from weight_orig: change the original and forward sees it, masked
  {
    NoGradGuard ng;
    orig.add_(1.0);
  }
  Tensor x = randn({3, 5});
  Tensor y = net->forward(x);
  Tensor want = nn::functional::linear(x, orig.detach() * mask, fc->bias.detach()).relu();
  EXPECT_TRUE(allclose(fc->forward(x).relu(), want));
  y.sum().backward();
  ASSERT_TRUE(orig.grad().defined());
  EXPECT_TRUE((orig.grad() * (1 - mask)).abs().sum().item().to<double>() == 0.0);  // no gradient where pruned
  EXPECT_GT(orig.grad().abs().sum().item().to<double>(), 0.0);
}

TEST(Prune, AnOptimizerBuiltBeforePruningKeepsTrainingTheSameTensor) {
  manual_seed(3);
  nn::Linear fc(6, 3);
  optim::SGD opt(fc.parameters(), optim::SGDOptions(0.1));
  prune::l1_unstructured(fc, "weight", 0.5);
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    fc.forward(randn({4, 6})).pow(2).sum().backward();
    opt.step();
  }
  Tensor mask = fc.named_buffers()["weight_mask"];
  fc.forward(randn({1, 6}));  // recomputed from the trained weight_orig
  EXPECT_TRUE((fc.weight * (1 - mask)).abs().sum().item().to<double>() == 0.0);
  EXPECT_FALSE(fc.named_parameters()["weight_orig"].equal(fc.weight));  // trained entries under the mask too
}

TEST(Prune, PruningAgainPrunesAmongWhatIsLeft) {
  manual_seed(4);
  nn::Linear fc(10, 10);
  prune::l1_unstructured(fc, "weight", 0.5);
  prune::l1_unstructured(fc, "weight", 0.5);  // half of the 50 left
  EXPECT_EQ(zeros_in(fc.named_buffers()["weight_mask"]), 75);
  prune::l1_unstructured(fc, "weight", 5);  // an integer: a count
  EXPECT_EQ(zeros_in(fc.named_buffers()["weight_mask"]), 80);
  EXPECT_EQ(keys(fc.state_dict()), (std::vector<std::string>{"bias", "weight_orig", "weight_mask"}));
  // Python's round: half to even (0.25 * 10 = 2.5 -> 2)
  nn::Linear g(10, 1);
  prune::l1_unstructured(g, "weight", 0.25);
  EXPECT_EQ(zeros_in(g.named_buffers()["weight_mask"]), 2);
}

TEST(Prune, LnStructuredZeroesWholeChannelsOfLeastNorm) {
  nn::Conv2d conv(2, 4, 3);
  {
    NoGradGuard ng;
    for (int64_t c = 0; c < 4; ++c) conv.weight[c].fill_(static_cast<double>(c == 2 ? 0.1 : c + 1));  // channel 2 smallest
  }
  prune::ln_structured(conv, "weight", 0.25, 2, 0);
  Tensor mask = conv.named_buffers()["weight_mask"];
  EXPECT_EQ(mask[2].sum().item().to<double>(), 0.0);
  EXPECT_EQ(zeros_in(mask), 18);  // one channel of 2 x 3 x 3
  // again, among the three left: channel 0 (norm 1 x sqrt(18)) goes next
  prune::ln_structured(conv, "weight", 1, 1, 0);
  EXPECT_EQ(mask.sum().item().to<double>(), 36.0);
  EXPECT_EQ(conv.named_buffers()["weight_mask"][0].sum().item().to<double>(), 0.0);
  // dim 1: input channels
  nn::Conv2d c2(2, 3, 1);
  prune::ln_structured(c2, "weight", 0.5, 1, 1);
  EXPECT_EQ(zeros_in(c2.named_buffers()["weight_mask"]), 3);
}

TEST(Prune, GlobalUnstructuredRanksAllTensorsTogether) {
  auto a = std::make_shared<nn::Linear>(4, 4), b = std::make_shared<nn::Linear>(4, 4);
  {
    NoGradGuard ng;
    a->weight.fill_(1.0);  // a holds the small weights: global pruning takes them first
    b->weight.fill_(5.0);
    b->weight[0][0].fill_(0.5);
  }
  prune::global_unstructured({{a, "weight"}, {b, "weight"}}, prune::L1Unstructured, 0.5);
  EXPECT_EQ(zeros_in(a->named_buffers()["weight_mask"]) + zeros_in(b->named_buffers()["weight_mask"]), 16);
  EXPECT_EQ(zeros_in(a->named_buffers()["weight_mask"]), 15);  // 0.5 beats a's ones
  EXPECT_EQ(b->named_buffers()["weight_mask"][0][0].item().to<double>(), 0.0);
}

TEST(Prune, RemoveMakesItPermanentWithTheOriginalNames) {
  manual_seed(5);
  nn::Linear fc(4, 3);
  Tensor orig = fc.weight;
  prune::l1_unstructured(fc, "weight", 0.5);
  Tensor masked = fc.weight.detach().clone();
  prune::remove(fc, "weight");
  // torch: weight is a parameter again (re-registered last), holding orig * mask; nothing else left
  EXPECT_EQ(keys(fc.state_dict()), (std::vector<std::string>{"bias", "weight"}));
  EXPECT_TRUE(fc.named_buffers().empty());
  EXPECT_FALSE(prune::is_pruned(fc));
  EXPECT_TRUE(fc.weight.equal(masked));
  EXPECT_TRUE(fc.weight.is_same(orig));  // the same tensor as before pruning (optimizers keep it)
  EXPECT_TRUE(fc.weight.requires_grad());
  // so it loads where an unpruned Linear(4, 3) loads: same names and shapes
  nn::Linear fresh(4, 3);
  fresh.load_state_dict(fc.state_dict());
  EXPECT_TRUE(fresh.weight.equal(masked));
}

TEST(Prune, CustomMaskAndIdentity) {
  nn::Linear fc(2, 2);
  prune::identity(fc, "bias");
  EXPECT_EQ(zeros_in(fc.named_buffers()["bias_mask"]), 0);
  prune::custom_from_mask(fc, "weight", from_vector(std::vector<float>{1, 0, 0, 1}, {2, 2}));
  EXPECT_EQ(fc.weight[0][1].item().to<double>(), 0.0);
  EXPECT_EQ(keys(fc.named_parameters()), (std::vector<std::string>{"bias_orig", "weight_orig"}));
}

TEST(Prune, BadCallsAreClearErrors) {
  nn::Linear fc(2, 2);
  nn::ReLU relu;
  EXPECT_THROW(prune::l1_unstructured(fc, "nope", 0.5), ValueError);
  EXPECT_THROW(prune::l1_unstructured(relu, "weight", 0.5), ValueError);
  EXPECT_THROW(prune::l1_unstructured(fc, "weight", 1.5), ValueError);
  EXPECT_THROW(prune::l1_unstructured(fc, "weight", 5), ValueError);  // 4 entries
  EXPECT_THROW(prune::remove(fc, "weight"), ValueError);
  EXPECT_THROW(prune::ln_structured(fc, "weight", 0.5, 2, 3), ValueError);
  try {
    prune::remove(fc, "weight");
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("has to be pruned before"), std::string::npos) << e.what();
  }
}

TEST(Prune, RemoveChannelsGivesSmallerLayersAndTheSameOutputs) {
  manual_seed(6);
  auto net = std::make_shared<nn::Sequential>(nn::Conv2d(1, 8, 3), nn::BatchNorm2d(8), nn::ReLU(), nn::Conv2d(8, 6, 3),
                                              nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(6 * 2 * 2, 5),
                                              nn::ReLU(), nn::Linear(5, 3));
  net->train();
  {
    NoGradGuard ng;
    for (int i = 0; i < 3; ++i) net->forward(randn({4, 1, 8, 8}));  // running statistics
  }
  net->eval();
  auto c1 = net->at<nn::Conv2d>(0), c2 = net->at<nn::Conv2d>(3);
  auto f1 = net->at<nn::Linear>(7);
  prune::ln_structured(*c1, "weight", 0.5, 2, 0);
  prune::ln_structured(*c2, "weight", 2, 1, 0);
  prune::ln_structured(*f1, "weight", 0.4, 2, 0);
  // a removed channel goes with its bias; with the bias pruned too the outputs are unchanged
  prune::custom_from_mask(*c1, "bias", (c1->weight.reshape({8, -1}).abs().sum({1}) != 0).to(kFloat32));
  prune::custom_from_mask(*c2, "bias", (c2->weight.reshape({6, -1}).abs().sum({1}) != 0).to(kFloat32));
  prune::custom_from_mask(*f1, "bias", (f1->weight.abs().sum({1}) != 0).to(kFloat32));
  {  // BatchNorm of a removed channel: its output is a constant, removed with it; make it 0 too
    auto bn = net->at<nn::BatchNorm2d>(1);
    NoGradGuard ng;
    Tensor dead = c1->weight.reshape({8, -1}).abs().sum({1}) == 0;
    bn->bias.copy_(where(dead, zeros({8}), bn->bias));
    bn->running_mean.copy_(where(dead, zeros({8}), bn->running_mean));
  }
  auto small = prune::remove_channels(*net);
  EXPECT_EQ(small->at<nn::Conv2d>(0)->out_channels, 4);
  EXPECT_EQ(small->at<nn::BatchNorm2d>(1)->num_features, 4);
  EXPECT_EQ(small->at<nn::Conv2d>(3)->in_channels, 4);
  EXPECT_EQ(small->at<nn::Conv2d>(3)->out_channels, 4);
  EXPECT_EQ(small->at<nn::Linear>(7)->in_features, 16);
  EXPECT_EQ(small->at<nn::Linear>(7)->out_features, 3);
  EXPECT_EQ(small->at<nn::Linear>(9)->in_features, 3);
  EXPECT_EQ(small->at<nn::Linear>(9)->out_features, 3);  // the output layer keeps its outputs
  EXPECT_FALSE(prune::is_pruned(*small));
  small->eval();
  NoGradGuard ng;
  Tensor x = randn({5, 1, 8, 8});
  EXPECT_TRUE(allclose(small->forward(x), net->forward(x), 1e-5, 1e-6));
}

TEST(Prune, RemoveChannelsRefusesALayerItCannotCarryChannelsThrough) {
  auto net = std::make_shared<nn::Sequential>(nn::Linear(4, 4), nn::LayerNorm(4), nn::Linear(4, 2));
  prune::ln_structured(*net->at<nn::Linear>(0), "weight", 0.5, 2, 0);
  EXPECT_THROW(prune::remove_channels(*net), ValueError);
}

}  // namespace
