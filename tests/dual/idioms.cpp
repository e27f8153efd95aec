// LibTorch-idiom programs, compiled twice by tests/dual/CMakeLists.txt: against LibTorch, and
// against nabla with only the include swapped and `namespace torch = nabla;`. Both print the
// same labelled numbers (float64 throughout, parameters set from a formula, no random draws),
// and tests/dual/compare.py checks that they agree. A call that compiles in both and means
// different things shows up here as a difference.
//
// Written for this test in the style of pytorch/examples' C++ programs (a regression, a DCGAN
// step, loss modules, small tensor methods); not copied from them.
#include "dual_common.hpp"

#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

namespace {

using dual::set_parameters;
using dual::show;

// A polynomial fitted by a Linear layer with SGD (momentum) and MSELoss.
void regression() {
  torch::Tensor x = torch::linspace(-1, 1, 24, torch::kFloat64).unsqueeze(1);
  torch::Tensor features = torch::cat({x, x.pow(2), x.pow(3), x.pow(4)}, 1);
  torch::Tensor target = features.matmul(torch::tensor({0.5, -1.0, 2.0, 0.25}, torch::kFloat64).unsqueeze(1)) + 0.3;
  torch::nn::Linear fc(torch::nn::LinearOptions(4, 1));
  fc->to(torch::kFloat64);
  set_parameters(fc, 0.2);
  torch::optim::SGD opt(fc->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::nn::MSELoss mse;
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    torch::Tensor loss = mse(fc->forward(features), target);
    loss.backward();
    opt.step();
    if (step % 5 == 4) show("regression.loss." + std::to_string(step), loss);
  }
  show("regression.weight", fc->weight);
  show("regression.bias", fc->bias);
}

// One DCGAN-shaped training step: a ConvTranspose2d generator, a Conv2d discriminator,
// BCELoss on sigmoid outputs, Adam with betas (0.5, 0.999).
void dcgan_step() {
  torch::nn::Sequential generator(
      torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(6, 8, 4).bias(false)),
      torch::nn::BatchNorm2d(8), torch::nn::ReLU(),
      torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(8, 4, 4).stride(2).padding(1).bias(false)),
      torch::nn::BatchNorm2d(4), torch::nn::ReLU(),
      torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(4, 1, 3).stride(2).padding(1).output_padding(1)),
      torch::nn::Tanh());
  torch::nn::Sequential discriminator(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 4).stride(2).padding(1).bias(false)),
      torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 8, 4).stride(2).padding(1).bias(false)),
      torch::nn::BatchNorm2d(8), torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)),
      torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 1, 4).stride(1).padding(0).bias(false)), torch::nn::Sigmoid());
  generator->to(torch::kFloat64);
  discriminator->to(torch::kFloat64);
  set_parameters(generator, 0.3);
  set_parameters(discriminator, 0.3);
  torch::optim::Adam g_opt(generator->parameters(), torch::optim::AdamOptions(2e-4).betas(std::make_tuple(0.5, 0.999)));
  torch::optim::Adam d_opt(discriminator->parameters(), torch::optim::AdamOptions(2e-4).betas(std::make_tuple(0.5, 0.999)));
  torch::nn::BCELoss bce;

  const int64_t batch = 3;
  torch::Tensor noise = torch::cos(torch::arange(batch * 6, torch::kFloat64) * 0.7).reshape({batch, 6, 1, 1});
  torch::Tensor real = torch::sin(torch::arange(batch * 16 * 16, torch::kFloat64) * 0.05).reshape({batch, 1, 16, 16});
  torch::Tensor fake = generator->forward(noise);
  show("dcgan.fake_shape", torch::tensor({static_cast<double>(fake.size(2)), static_cast<double>(fake.size(3))}, torch::kFloat64));

  discriminator->zero_grad();
  torch::Tensor real_labels = torch::full({batch, 1, 1, 1}, 0.9, torch::kFloat64);
  torch::Tensor fake_labels = torch::zeros({batch, 1, 1, 1}, torch::kFloat64);
  torch::Tensor d_loss = bce(discriminator->forward(real), real_labels) + bce(discriminator->forward(fake.detach()), fake_labels);
  d_loss.backward();
  d_opt.step();
  show("dcgan.d_loss", d_loss);

  generator->zero_grad();
  fake_labels.fill_(1);
  torch::Tensor g_loss = bce(discriminator->forward(fake), fake_labels);
  g_loss.backward();
  show("dcgan.generator_grad_norm", generator->parameters()[0].grad().norm());
  g_opt.step();
  show("dcgan.g_loss", g_loss);
  show("dcgan.generator_first_weight_after", generator->parameters()[0].narrow(0, 0, 1));
  show("dcgan.sample", generator->forward(noise).narrow(2, 0, 2));
}

// The other losses, as modules with options and as functions, and their input gradients.
void losses() {
  torch::Tensor x = torch::sin(torch::arange(12, torch::kFloat64) * 1.3).reshape({3, 4}).requires_grad_();
  torch::Tensor y = torch::cos(torch::arange(12, torch::kFloat64) * 0.9).reshape({3, 4});
  torch::Tensor p = torch::sigmoid(x), q = (y + 1) * 0.5;
  torch::Tensor cls = torch::tensor({2, 0, 3}, torch::kInt64);
  torch::Tensor w = torch::tensor({1.0, 0.5, 2.0, 1.5}, torch::kFloat64);
  std::vector<std::tuple<std::string, torch::Tensor>> values = {
      {"l1", torch::nn::L1Loss()(x, y)},
      {"smooth_l1", torch::nn::SmoothL1Loss(torch::nn::SmoothL1LossOptions().beta(0.5))(x, y)},
      {"huber", torch::nn::HuberLoss(torch::nn::HuberLossOptions().delta(0.4).reduction(torch::kSum))(x, y)},
      {"mse_none", torch::nn::MSELoss(torch::nn::MSELossOptions().reduction(torch::kNone))(x, y)},
      {"bce_weight", torch::nn::BCELoss(torch::nn::BCELossOptions().weight(w))(p, q)},
      {"bce_logits_pos_weight", torch::nn::BCEWithLogitsLoss(torch::nn::BCEWithLogitsLossOptions().pos_weight(w))(x, q)},
      {"cross_entropy", torch::nn::CrossEntropyLoss(torch::nn::CrossEntropyLossOptions().label_smoothing(0.1))(x, cls)},
      {"nll_weight", torch::nn::NLLLoss(torch::nn::NLLLossOptions().weight(w))(torch::log_softmax(x, 1), cls)},
      {"f_smooth_l1", torch::smooth_l1_loss(x, y)},  // LibTorch's at:: level takes at::Reduction ints
      {"f_bce_logits", torch::binary_cross_entropy_with_logits(x * 20, q)},
  };
  torch::Tensor total = torch::zeros({}, torch::kFloat64);
  for (auto& [name, v] : values) {
    show("loss." + name, v);
    total = total + v.sum();
  }
  total.backward();
  show("loss.grad_x", x.grad());
}

// Small tensor methods ported code calls.
void tensor_methods() {
  torch::Tensor x = torch::sin(torch::arange(24, torch::kFloat64)).reshape({2, 3, 4});
  show("norm", x.norm());
  show("norm_p3_dim1_keep", x.norm(3, {1}, true));
  show("norm_inf", x.norm(INFINITY));
  show("repeat", x.narrow(2, 0, 2).repeat({2, 1, 2}));
  show("all_any", torch::stack({x.gt(-2).all().to(torch::kFloat64), x.gt(0.99).any().to(torch::kFloat64)}));
  show("allclose", torch::allclose(x, x + 1e-9) ? 1.0 : 0.0);
  show("isclose", torch::isclose(x, x * 1.0001).to(torch::kFloat64));
  show("equal", torch::equal(x, x.clone()) ? 1.0 : 0.0);
  show("zeros_n", torch::zeros(3, torch::kFloat64));
  show("view_flat", x.view(-1).narrow(0, 0, 5));
  torch::Tensor a = torch::arange(6, torch::kFloat64).reshape({2, 3}).requires_grad_();
  torch::Tensor b = torch::conv_transpose2d(a.reshape({1, 1, 2, 3}), torch::ones({1, 2, 3, 3}, torch::kFloat64), {},
                                            2, 1, 1);
  show("conv_transpose2d", b);
  b.sum().backward();
  show("conv_transpose2d_grad", a.grad());
}

}  // namespace

int main() {
  regression();
  dcgan_step();
  losses();
  tensor_methods();
  return 0;
}
