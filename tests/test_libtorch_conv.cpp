// Cross-checks of conv2d, conv_transpose2d (functional and nn::ConvTranspose2d), max_pool2d, avg_pool2d and batch_norm (forward, input/weight/bias
// gradients, running statistics) against LibTorch on the same float64 inputs, and the whole
// models::resnet18 against a torch::nn twin (tests/support/torch_resnet.hpp) with copied weights.
// Built with NABLA_HAVE_LIBTORCH when LibTorch is found; otherwise every case skips.
#include <gtest/gtest.h>

#define NABLA_LIBTORCH_CONV_CASES(X) X(Conv2dVariants) X(ConvTranspose2dVariants) X(ConvTranspose2dModule) X(MaxPool2dTies) X(AvgPool2d) X(BatchNormTrainEval) X(ResNet18MatchesATwin)

#ifndef NABLA_HAVE_LIBTORCH

#define NABLA_SKIP_CONV_CASE(name) \
  TEST(LibTorchConv, name) { GTEST_SKIP() << "LibTorch not found: the conv cross-checks need libtorch-dev"; }
NABLA_LIBTORCH_CONV_CASES(NABLA_SKIP_CONV_CASE)

#else

#include <torch/torch.h>

#include <vector>

#include <nabla/models/resnet.hpp>
#include <nabla/nabla.hpp>

#include "support/torch_resnet.hpp"

namespace nb = nabla;

namespace {

// float64 copies both ways (no shared memory).
torch::Tensor to_torch(const nb::Tensor& t) {
  std::vector<double> v = t.detach().contiguous().to_vector<double>();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  return torch::from_blob(v.data(), shape, torch::kDouble).clone();
}
void expect_close(const nb::Tensor& a, const torch::Tensor& b, const char* what, double tol = 1e-10) {
  ASSERT_TRUE(a.defined()) << what;
  std::vector<int64_t> shape(a.sizes().begin(), a.sizes().end());
  ASSERT_EQ(shape, b.sizes().vec()) << what;
  torch::Tensor at = to_torch(a);
  EXPECT_TRUE(torch::allclose(at, b.to(torch::kDouble), tol, tol))
      << what << ": max abs difference " << (at - b).abs().max().item<double>();
}

struct ConvCase {
  std::vector<int64_t> x, w;
  int64_t stride, pad, dil, groups;
  bool bias;
};

TEST(LibTorchConv, Conv2dVariants) {
  nb::manual_seed(11);
  std::vector<ConvCase> cases = {{{2, 3, 7, 6}, {4, 3, 3, 3}, 1, 0, 1, 1, true},
                                 {{2, 4, 9, 8}, {6, 2, 3, 2}, 2, 1, 1, 2, true},
                                 {{1, 2, 9, 9}, {3, 2, 3, 3}, 1, 2, 2, 1, false},
                                 {{3, 3, 5, 5}, {3, 1, 3, 3}, 1, 1, 1, 3, true}};
  for (const auto& c : cases) {
    nb::Tensor x = nb::randn(nb::Shape(c.x.begin(), c.x.end()), nb::kFloat64).requires_grad_();
    nb::Tensor w = nb::randn(nb::Shape(c.w.begin(), c.w.end()), nb::kFloat64).requires_grad_();
    nb::Tensor b = c.bias ? nb::randn({c.w[0]}, nb::kFloat64).requires_grad_() : nb::Tensor();
    torch::Tensor tx = to_torch(x).requires_grad_(), tw = to_torch(w).requires_grad_();
    torch::Tensor tb = c.bias ? to_torch(b).requires_grad_() : torch::Tensor();
    nb::Tensor y = nb::conv2d(x, w, b, c.stride, c.pad, c.dil, c.groups);
    torch::Tensor ty = torch::conv2d(tx, tw, tb, c.stride, c.pad, c.dil, c.groups);
    expect_close(y, ty, "conv2d forward");
    nb::Tensor g = nb::randn(y.sizes(), nb::kFloat64);
    y.backward(g);
    ty.backward(to_torch(g));
    expect_close(x.grad(), tx.grad(), "conv2d grad input");
    expect_close(w.grad(), tw.grad(), "conv2d grad weight");
    if (c.bias) expect_close(b.grad(), tb.grad(), "conv2d grad bias");
  }
  // padding="same" with an even kernel puts the extra pixel at the end, as PyTorch does
  nb::Tensor x = nb::randn({1, 2, 6, 5}, nb::kFloat64), w = nb::randn({3, 2, 4, 2}, nb::kFloat64);
  expect_close(nb::conv2d(x, w, nb::Tensor(), 1, "same"),
               torch::conv2d(to_torch(x), to_torch(w), {}, 1, "same"), "conv2d same");
}

struct ConvTransposeCase {
  std::vector<int64_t> x, w;
  int64_t stride, pad, out_pad, groups, dil;
  bool bias;
};

// LibTorch's conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups,
// dilation): the same call, through conv2d's kernels and through the composite (fused kernels
// off), forward and all three gradients.
TEST(LibTorchConv, ConvTranspose2dVariants) {
  nb::manual_seed(12);
  std::vector<ConvTransposeCase> cases = {{{2, 3, 4, 5}, {3, 4, 3, 3}, 1, 0, 0, 1, 1, true},
                                          {{2, 4, 5, 4}, {4, 3, 4, 4}, 2, 1, 0, 1, 1, false},   // DCGAN's layer
                                          {{1, 4, 3, 4}, {4, 2, 3, 3}, 2, 1, 1, 2, 1, true},    // output_padding, groups
                                          {{2, 2, 4, 3}, {2, 3, 3, 2}, 1, 1, 1, 1, 2, true},    // output_padding < dilation
                                          {{3, 5, 1, 1}, {5, 6, 4, 4}, 1, 0, 0, 1, 1, false}};  // noise -> 4x4
  for (bool fused : {true, false}) {
    nb::FusedKernelsGuard guard(fused);
    for (const auto& c : cases) {
      SCOPED_TRACE(testing::Message() << "x " << c.x[1] << "x" << c.x[2] << "x" << c.x[3] << " stride " << c.stride
                                      << " pad " << c.pad << " output_padding " << c.out_pad << " groups " << c.groups
                                      << " dilation " << c.dil << (fused ? " fused" : " composite"));
      nb::Tensor x = nb::randn(nb::Shape(c.x.begin(), c.x.end()), nb::kFloat64).requires_grad_();
      nb::Tensor w = nb::randn(nb::Shape(c.w.begin(), c.w.end()), nb::kFloat64).requires_grad_();
      nb::Tensor b = c.bias ? nb::randn({c.w[1] * c.groups}, nb::kFloat64).requires_grad_() : nb::Tensor();
      torch::Tensor tx = to_torch(x).requires_grad_(), tw = to_torch(w).requires_grad_();
      torch::Tensor tb = c.bias ? to_torch(b).requires_grad_() : torch::Tensor();
      const uint64_t hits = nb::conv2d_kernels().hits(nb::kCPU);
      nb::Tensor y = nb::conv_transpose2d(x, w, b, c.stride, c.pad, c.out_pad, c.groups, c.dil);
      torch::Tensor ty = torch::conv_transpose2d(tx, tw, tb, c.stride, c.pad, c.out_pad, c.groups, c.dil);
      expect_close(y, ty, "conv_transpose2d forward");
      nb::Tensor g = nb::randn(y.sizes(), nb::kFloat64);
      y.backward(g);
      ty.backward(to_torch(g));
      expect_close(x.grad(), tx.grad(), "conv_transpose2d grad input");
      expect_close(w.grad(), tw.grad(), "conv_transpose2d grad weight");
      if (c.bias) expect_close(b.grad(), tb.grad(), "conv_transpose2d grad bias");
      // output_padding past the stride (only below the dilation) is the composite's alone
      const bool kernel_case = fused && c.out_pad < c.stride;
      EXPECT_EQ(nb::conv2d_kernels().hits(nb::kCPU) > hits, kernel_case);
    }
  }
}

// nn::ConvTranspose2d against torch::nn::ConvTranspose2d: parameter names and shapes, the
// init's bounds, and the forward (also with output_size) on copied weights.
TEST(LibTorchConv, ConvTranspose2dModule) {
  nb::nn::ConvTranspose2d m(nb::nn::ConvTranspose2dOptions(6, 4, 3).stride(2).padding(1).output_padding(1).groups(2),
                            nb::TensorOptions(nb::kFloat64));
  torch::nn::ConvTranspose2d tm(torch::nn::ConvTranspose2dOptions(6, 4, 3).stride(2).padding(1).output_padding(1).groups(2));
  tm->to(torch::kDouble);
  auto ours = m.named_parameters();
  auto theirs = tm->named_parameters();
  ASSERT_EQ(ours.size(), theirs.size());
  for (const auto& item : theirs) {
    const nb::Tensor& p = ours.at(item.key());
    std::vector<int64_t> shape(p.sizes().begin(), p.sizes().end());
    EXPECT_EQ(shape, item.value().sizes().vec()) << item.key();
    // both draw U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.size(1) * 3 * 3 = 18
    const double bound = 1.0 / std::sqrt(18.0);
    EXPECT_LE(p.abs().max().item<double>(), bound + 1e-12) << item.key();
    EXPECT_LE(item.value().abs().max().item<double>(), bound + 1e-12) << item.key();
    EXPECT_GT(p.abs().max().item<double>(), 0.5 * bound) << item.key();  // not all zero or tiny
  }
  {
    torch::NoGradGuard ng;
    tm->weight.copy_(to_torch(m.weight));
    tm->bias.copy_(to_torch(m.bias));
  }
  nb::Tensor x = nb::randn({2, 6, 5, 4}, nb::kFloat64);
  expect_close(m.forward(x), tm->forward(to_torch(x)), "nn::ConvTranspose2d forward");
  // output_size {10, 8}: output_padding 0 instead of the options' 1
  expect_close(m.forward(x, {10, 8}), tm->forward(to_torch(x), std::vector<int64_t>{10, 8}),
               "nn::ConvTranspose2d forward with output_size");
  EXPECT_EQ(m.extra_repr(), "6, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1), groups=2");
}

TEST(LibTorchConv, MaxPool2dTies) {
  // integer-valued inputs make ties: both sides must send the gradient to the same element
  nb::Tensor x = nb::randint(0, 3, {2, 3, 7, 6}).to(nb::kFloat64).requires_grad_();
  torch::Tensor tx = to_torch(x).requires_grad_();
  for (auto [k, s, p] : std::vector<std::array<int64_t, 3>>{{2, 2, 0}, {3, 2, 1}, {3, 1, 1}}) {
    nb::Tensor y = nb::max_pool2d(x, k, s, p);
    torch::Tensor ty = torch::max_pool2d(tx, k, s, p);
    expect_close(y, ty, "max_pool2d forward");
    nb::Tensor g = nb::randn(y.sizes(), nb::kFloat64);
    auto gx = nb::autograd::grad({y}, {x}, {g});
    auto tgx = torch::autograd::grad({ty}, {tx}, {to_torch(g)});
    expect_close(gx[0], tgx[0], "max_pool2d grad");
  }
}

TEST(LibTorchConv, AvgPool2d) {
  nb::Tensor x = nb::randn({2, 2, 7, 6}, nb::kFloat64).requires_grad_();
  torch::Tensor tx = to_torch(x).requires_grad_();
  nb::Tensor y = nb::avg_pool2d(x, 3, 2, 1);
  torch::Tensor ty = torch::avg_pool2d(tx, 3, 2, 1);
  expect_close(y, ty, "avg_pool2d forward");
  expect_close(nb::adaptive_avg_pool2d(x, {3, 4}), torch::adaptive_avg_pool2d(tx, {3, 4}), "adaptive_avg_pool2d");
}

TEST(LibTorchConv, BatchNormTrainEval) {
  nb::Tensor x = (nb::randn({4, 3, 5, 5}, nb::kFloat64) * 2.0 + 0.5).requires_grad_();
  nb::Tensor w = nb::randn({3}, nb::kFloat64).requires_grad_(), b = nb::randn({3}, nb::kFloat64).requires_grad_();
  nb::Tensor rm = nb::randn({3}, nb::kFloat64), rv = nb::rand({3}, nb::kFloat64) + 0.5;
  torch::Tensor tx = to_torch(x).requires_grad_(), tw = to_torch(w).requires_grad_(), tb = to_torch(b).requires_grad_();
  torch::Tensor trm = to_torch(rm), trv = to_torch(rv);
  nb::Tensor y = nb::batch_norm(x, w, b, rm, rv, true, 0.1, 1e-5, false);
  torch::Tensor ty = torch::batch_norm(tx, tw, tb, trm, trv, true, 0.1, 1e-5, false);
  expect_close(y, ty, "batch_norm train forward", 1e-9);
  expect_close(rm, trm, "running_mean");
  expect_close(rv, trv, "running_var");
  nb::Tensor g = nb::randn(y.sizes(), nb::kFloat64);
  y.backward(g);
  ty.backward(to_torch(g));
  expect_close(x.grad(), tx.grad(), "batch_norm grad input", 1e-9);
  expect_close(w.grad(), tw.grad(), "batch_norm grad weight", 1e-9);
  expect_close(b.grad(), tb.grad(), "batch_norm grad bias", 1e-9);
  nb::Tensor ye = nb::batch_norm(x, w, b, rm, rv, false, 0.1, 1e-5, false);
  torch::Tensor tye = torch::batch_norm(tx, tw, tb, trm, trv, false, 0.1, 1e-5, false);
  expect_close(ye, tye, "batch_norm eval forward", 1e-9);
}

// ResNet-18 (both stems) with the same float64 weights: train-mode logits, the running
// statistics they leave, every parameter's gradient, and eval-mode logits, by name. LibTorch's
// net has torchvision's layout, so this is the "logits match" check that needs no Python.
TEST(LibTorchConv, ResNet18MatchesATwin) {
  for (bool cifar : {true, false}) {
    SCOPED_TRACE(cifar ? "CIFAR stem" : "ImageNet stem");
    nb::manual_seed(5);
    auto net = nb::models::resnet18({.num_classes = 10, .cifar_stem = cifar});
    net->to(nb::kFloat64);
    nabla_torch::ResNet twin = nabla_torch::resnet18(10, cifar);
    twin->to(torch::kDouble);
    {
      torch::NoGradGuard no_grad;
      auto params = twin->named_parameters(), buffers = twin->named_buffers();
      size_t copied = 0;
      for (const auto& [name, t] : net->state_dict()) {
        torch::Tensor* dst = params.find(name);
        if (!dst) dst = buffers.find(name);
        ASSERT_NE(dst, nullptr) << name << " is not in the LibTorch twin";
        ASSERT_EQ(dst->sizes().vec(), std::vector<int64_t>(t.sizes().begin(), t.sizes().end())) << name;
        if (t.dtype() == nb::kInt64) dst->fill_(t.item<int64_t>());
        else dst->copy_(to_torch(t));
        ++copied;
      }
      EXPECT_EQ(copied, params.size() + buffers.size());
    }
    const int64_t side = cifar ? 16 : 64;
    nb::Tensor x = nb::randn({3, 3, side, side}, nb::kFloat64);
    nb::Tensor target = nb::from_vector<int64_t>({1, 9, 4}, nb::Shape{3});
    nb::Tensor y = net->forward(x);
    torch::Tensor ty = twin->forward(to_torch(x));
    expect_close(y, ty, "train-mode logits", 1e-9);
    nb::cross_entropy(y, target).backward();
    torch::nn::functional::cross_entropy(ty, torch::tensor({1, 9, 4}, torch::kLong)).backward();
    auto tparams = twin->named_parameters();
    for (const auto& [name, p] : net->named_parameters()) expect_close(p.grad(), tparams[name].grad(), name.c_str(), 1e-8);
    auto tbuffers = twin->named_buffers();
    for (const auto& [name, b] : net->named_buffers())
      if (b.dtype() != nb::kInt64) expect_close(b, tbuffers[name], name.c_str(), 1e-10);
    net->eval();
    twin->eval();
    expect_close(net->forward(x), twin->forward(to_torch(x)), "eval-mode logits", 1e-9);
  }
}

}  // namespace

#endif
