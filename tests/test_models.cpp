// nabla::models: ResNet against torchvision's architecture (state_dict names, shapes and order,
// parameter counts, initialisation, options), its forward and backward end to end, and a
// checkpoint round trip under torchvision's names. The blocks' numerics are parity rows
// (test_parity_conv.cpp); the whole net against LibTorch is in test_libtorch_conv.cpp.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <nabla/models/resnet.hpp>

#include "resnet_state_dicts.inc"
#include "support/temp_files.hpp"
#include "test_util.hpp"

namespace nabla_test {
namespace {

namespace models = nabla::models;

std::string state_dict_listing(const nn::Module& m) {
  std::string s;
  for (const auto& [name, t] : m.state_dict()) s += name + " " + shape_str(t.sizes()) + "\n";
  return s;
}
int64_t parameter_count(const nn::Module& m) {
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) n += p.numel();
  return n;
}
// Mean and standard deviation of a tensor's elements, in double.
std::pair<double, double> moments(const Tensor& t) {
  const std::vector<double> v = t.detach().to(kFloat64).contiguous().to_vector<double>();
  double s = 0, ss = 0;
  for (double x : v) s += x;
  const double mean = s / static_cast<double>(v.size());
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / static_cast<double>(v.size()))};
}

TEST(ResNet, StateDictMatchesTorchvision) {
  auto r18 = models::resnet18();
  EXPECT_EQ(state_dict_listing(*r18), kResNet18StateDict);
  EXPECT_EQ(r18->state_dict().size(), 122u);
  auto r50 = models::resnet50();
  EXPECT_EQ(state_dict_listing(*r50), kResNet50StateDict);
  EXPECT_EQ(r50->state_dict().size(), 320u);
  for (const auto& [name, t] : r18->state_dict()) {
    const bool counter = name.size() > 20 && name.ends_with("num_batches_tracked");
    EXPECT_EQ(t.dtype(), counter ? kInt64 : kFloat32) << name;
  }
}

TEST(ResNet, ParameterCountsAreTorchvisions) {
  EXPECT_EQ(parameter_count(*models::resnet18()), 11689512);
  EXPECT_EQ(parameter_count(*models::resnet34()), 21797672);
  EXPECT_EQ(parameter_count(*models::resnet50()), 25557032);
  EXPECT_EQ(parameter_count(*models::resnet101()), 44549160);
  // the classifier follows num_classes: 512 * 10 + 10 instead of 512 * 1000 + 1000
  EXPECT_EQ(parameter_count(*models::resnet18(10)), 11689512 - 513000 + 5130);
  // the CIFAR stem: conv1 is 64x3x3x3 instead of 64x3x7x7
  EXPECT_EQ(parameter_count(*models::resnet18({.num_classes = 10, .cifar_stem = true})),
            11689512 - 513000 + 5130 - 64 * 3 * 49 + 64 * 3 * 9);
}

TEST(ResNet, InitialisationIsTorchvisions) {
  manual_seed(7);
  auto net = models::resnet18();
  // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out_channels * kh * kw))
  for (const char* name : {"conv1.weight", "layer1.0.conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.conv2.weight"}) {
    const Tensor w = net->state_dict()[name];
    const double expect = std::sqrt(2.0 / static_cast<double>(w.size(0) * w.size(2) * w.size(3)));
    auto [mean, sd] = moments(w);
    EXPECT_NEAR(mean, 0.0, 4 * expect / std::sqrt(static_cast<double>(w.numel()))) << name;
    EXPECT_NEAR(sd, expect, 0.03 * expect) << name;
  }
  // BatchNorm: weight 1, bias 0, running stats 0 / 1
  for (const auto& [name, t] : net->state_dict()) {
    if (name.find("bn") == std::string::npos && name.find("downsample.1") == std::string::npos) continue;
    if (name.ends_with(".weight") || name.ends_with(".running_var")) {
      EXPECT_TRUE(all_equal(t, ones_like(t))) << name;
    }
    if (name.ends_with(".bias") || name.ends_with(".running_mean")) {
      EXPECT_TRUE(all_equal(t, zeros_like(t))) << name;
    }
  }
  // fc as nn.Linear: U(-1/sqrt(512), 1/sqrt(512)) for weight and bias
  const double bound = 1.0 / std::sqrt(512.0);
  EXPECT_LE(net->fc->weight.abs().max().item<double>(), bound);
  EXPECT_GT(net->fc->weight.abs().max().item<double>(), 0.99 * bound);
  EXPECT_LE(net->fc->bias.abs().max().item<double>(), bound);
}

TEST(ResNet, ZeroInitResidualZeroesTheLastBatchNormOfEachBlock) {
  auto r18 = models::resnet18({.zero_init_residual = true});
  auto r50 = models::resnet50({.zero_init_residual = true});
  for (const auto& [net, last] : {std::pair{std::static_pointer_cast<nn::Module>(r18), std::string(".bn2.weight")},
                                  std::pair{std::static_pointer_cast<nn::Module>(r50), std::string(".bn3.weight")}}) {
    int zeroed = 0;
    for (const auto& [name, t] : net->state_dict()) {
      if (!name.ends_with(".weight") || name.find("bn") == std::string::npos) continue;
      const bool expect_zero = name.ends_with(last) && name.starts_with("layer");
      EXPECT_TRUE(all_equal(t, expect_zero ? zeros_like(t) : ones_like(t))) << name;
      zeroed += expect_zero;
    }
    EXPECT_EQ(zeroed, net == r18 ? 8 : 16);
  }
  // A net whose every block is the identity: each block's output is relu(its input)
  r18->eval();
  Tensor x = randn({1, 64, 8, 8}).relu();
  EXPECT_TRUE(all_close(r18->layer1->forward(x), x, 1e-6, 1e-6));
}

TEST(ResNet, ForwardAndBackwardEndToEnd) {
  manual_seed(3);
  auto net = models::resnet18({.num_classes = 10, .cifar_stem = true});
  EXPECT_EQ(net->conv1->weight.sizes(), (Shape{64, 3, 3, 3}));
  EXPECT_EQ(net->maxpool->type_name(), "Identity");
  Tensor x = randn({2, 3, 32, 32});
  Tensor y = net->forward(x);
  EXPECT_EQ(y.sizes(), (Shape{2, 10}));
  cross_entropy(y, from_vector<int64_t>({3, 7}, Shape{2})).backward();
  for (const auto& [name, p] : net->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().sizes(), p.sizes()) << name;
    for (double g : p.grad().to(kFloat64).contiguous().to_vector<double>()) ASSERT_TRUE(std::isfinite(g)) << name;
  }
  EXPECT_GT(net->conv1->weight.grad().abs().sum().item<double>(), 0.0);
  // training mode counted one batch in every BatchNorm
  EXPECT_EQ(net->bn1->num_batches_tracked.item<int64_t>(), 1);
  EXPECT_EQ(net->layer4->at<models::BasicBlock>(1)->bn2->num_batches_tracked.item<int64_t>(), 1);
  // the CIFAR stem keeps 32x32 through layer1: layer4 sees 4x4
  net->eval();
  Tensor h = net->layer1->forward(net->relu->forward(net->bn1->forward(net->conv1->forward(x))));
  EXPECT_EQ(h.sizes(), (Shape{2, 64, 32, 32}));
  EXPECT_EQ(net->layer4->forward(net->layer3->forward(net->layer2->forward(h))).sizes(), (Shape{2, 512, 4, 4}));

  // the ImageNet stem: 7x7 stride 2 and the max-pool, on a small image
  auto r50 = models::resnet50();
  r50->eval();
  EXPECT_EQ(r50->forward(randn({1, 3, 64, 64})).sizes(), (Shape{1, 1000}));
}

TEST(ResNet, CheckpointRoundTripUnderTorchvisionNames) {
  TempDir tmp("nabla_models", "resnet");
  manual_seed(11);
  auto a = models::resnet18({.num_classes = 10, .cifar_stem = true});
  a->train();
  a->forward(randn({4, 3, 32, 32}));  // running statistics away from 0 / 1
  a->eval();
  save(*a, tmp / "r18.safetensors");
  manual_seed(12);
  auto b = models::resnet18({.num_classes = 10, .cifar_stem = true});
  b->eval();
  Tensor x = randn({2, 3, 32, 32});
  EXPECT_FALSE(all_close(a->forward(x), b->forward(x), 1e-3, 1e-3));
  load(*b, tmp / "r18.safetensors");
  EXPECT_TRUE(all_equal(a->forward(x), b->forward(x)));
  EXPECT_TRUE(all_equal(a->bn1->running_mean, b->bn1->running_mean));
  EXPECT_EQ(b->bn1->num_batches_tracked.item<int64_t>(), 1);
  // a file of another architecture is refused, naming the entry
  auto c = models::resnet34({.num_classes = 10, .cifar_stem = true});
  EXPECT_TRUE(throws_with<Error>([&] { load(*c, tmp / "r18.safetensors"); }, {"missing keys", "layer1.2.conv1.weight"}));
}

// Against torchvision itself, where PyTorch is (the GPU check runs tests/torchvision/make_reference.py
// and sets NABLA_TORCHVISION_REF): a state_dict torchvision saved with safetensors.torch.save_file
// loads unchanged (strict: every name, shape and dtype), and the eval-mode logits agree with
// torchvision's float64 ones, in float64 (to rounding), in float32, and on a GPU when there is one.
TEST(TorchvisionReference, ResNetStateDictLoadsAndLogitsMatch) {
  const char* dir = std::getenv("NABLA_TORCHVISION_REF");
  if (!dir || !*dir) GTEST_SKIP() << "set NABLA_TORCHVISION_REF to the output of tests/torchvision/make_reference.py";
  for (const std::string arch : {"resnet18", "resnet50"}) {
    SCOPED_TRACE(arch);
    auto net = arch == "resnet18" ? models::resnet18() : models::resnet50();
    load(*net, std::string(dir) + "/" + arch + ".safetensors");  // strict
    EXPECT_EQ(net->bn1->num_batches_tracked.item<int64_t>(), 3);
    net->eval();
    io::SafetensorsFile ref = io::load_safetensors(std::string(dir) + "/" + arch + "_io.safetensors");
    const Tensor x = ref.tensors.at("input"), want = ref.tensors.at("logits");
    ASSERT_EQ(want.dtype(), kFloat64);
    const double scale = want.abs().max().item<double>();
    auto error = [&](const Tensor& y) { return (y.to(Device::cpu()).to(kFloat64) - want).abs().max().item<double>() / scale; };
    NoGradGuard no_grad;
    const double err32 = error(net->forward(x));
    EXPECT_LT(err32, 1e-4) << "float32 logits vs torchvision's float64";
    if (cuda::is_available()) {
      net->to(Device::cuda());
      EXPECT_LT(error(net->forward(x.to(Device::cuda()))), 1e-3) << "CUDA float32 logits vs torchvision's float64";
      net->to(Device::cpu());
    }
    net->to(kFloat64);
    const double err64 = error(net->forward(x.to(kFloat64)));
    EXPECT_LT(err64, 1e-10) << "float64 logits vs torchvision's float64";
    std::printf("[ torchvision %s ] max |logit error| / max |logit|: float64 %.2e, float32 %.2e\n", arch.c_str(), err64, err32);
  }
}

TEST(ResNet, BadInputsGiveClearErrors) {
  auto net = models::resnet18(10);
  EXPECT_TRUE(throws_with<ShapeError>([&] { net->forward(randn({2, 1, 32, 32})); }, {"models::ResNet", "[N, 3, H, W]", "[2, 1, 32, 32]"}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { net->forward(randn({3, 32, 32})); }, {"models::ResNet", "[3, 32, 32]"}));
  EXPECT_THROW(models::resnet18(0), ValueError);
  EXPECT_THROW(models::BasicBlock(64, 64, 1, nullptr, 2), ValueError);
  std::ostringstream os;
  os << *net;
  EXPECT_NE(os.str().find("(layer1): Sequential"), std::string::npos) << os.str();
  EXPECT_NE(os.str().find("(downsample): Sequential"), std::string::npos);
}

}  // namespace
}  // namespace nabla_test
