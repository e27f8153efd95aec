// A second LibTorch-idiom program for the dual build (see idioms.cpp): module holders
// (TORCH_MODULE over NetImpl), data members registered by reference, BatchNorm2dOptions, F::
// functional options, the positional nll_loss with torch::Reduction::Sum, a gradient penalty
// through torch::autograd::grad, custom autograd functions, grad_fn names, and torch::save /
// torch::load of a tensor, a tensor list and an optimizer, nn::Functional, and the torch::data
// MNIST pipeline. Both builds print the same rows.
//
// Written for this test in the style of pytorch/examples' C++ programs; not copied from them.
#include "dual_common.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>
#include <string>
#include <vector>

namespace F = torch::nn::functional;

namespace {

using dual::label;
using dual::set_parameters;
using dual::show;

// The MNIST example's shape of network, smaller: members registered by reference, a holder.
struct NetImpl : torch::nn::Module {
  NetImpl()
      : conv1(torch::nn::Conv2dOptions(1, 4, 3)),
        bn(torch::nn::BatchNorm2dOptions(4).momentum(0.2).eps(1e-3)),
        conv2(torch::nn::Conv2dOptions(4, 6, 3).stride(1).padding(1).bias(false)),
        fc1(24, 10),
        fc2(torch::nn::LinearOptions(10, 3).bias(true)) {
    register_module("conv1", conv1);
    register_module("bn", bn);
    register_module("conv2", conv2);
    register_module("conv2_drop", conv2_drop);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = F::relu(F::max_pool2d(bn(conv1->forward(x)), F::MaxPool2dFuncOptions(2)));
    x = torch::relu(torch::max_pool2d(conv2_drop->forward(conv2->forward(x)), 2));
    x = x.view({-1, 24});
    x = F::leaky_relu(fc1->forward(x), F::LeakyReLUFuncOptions().negative_slope(0.1));
    x = F::dropout(x, F::DropoutFuncOptions().p(0.5).training(false));
    return F::log_softmax(fc2->forward(x), F::LogSoftmaxFuncOptions(1));
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn;
  torch::nn::Conv2d conv2;
  torch::nn::Dropout2d conv2_drop;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};
TORCH_MODULE(Net);

void holder_training() {
  Net net;
  net->to(torch::kFloat64);
  set_parameters(net, 0.4);
  net->conv2_drop->eval();  // no random draws: the comparison is exact
  for (const auto& item : net->named_parameters()) label("net.param." + item.key());
  for (const auto& item : net->named_buffers()) label("net.buffer." + item.key());

  torch::Tensor x = torch::sin(torch::arange(5 * 10 * 10, torch::kFloat64) * 0.11).reshape({5, 1, 10, 10});
  torch::Tensor y = torch::tensor({0, 2, 1, 1, 0}, torch::kInt64);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.5));
  for (int step = 0; step < 4; ++step) {
    opt.zero_grad();
    torch::Tensor loss = torch::nll_loss(net->forward(x), y);
    loss.backward();
    opt.step();
    show("net.loss." + std::to_string(step), loss);
  }
  show("net.fc2.weight", net->fc2->weight);
  show("net.bn.running_mean", net->bn->running_mean);
  show("net.bn.num_batches_tracked", net->bn->num_batches_tracked);
  net->eval();
  torch::Tensor out = net->forward(x);
  show("net.eval_out", out);
  show("net.sum_loss", torch::nll_loss(out, y, /*weight=*/{}, torch::Reduction::Sum));
  show("net.sum_loss_F", F::nll_loss(out, y, F::NLLLossFuncOptions().reduction(torch::kSum)));
}

// LibTorch's other member spelling: empty holders assigned register_module's result.
struct Regressor : torch::nn::Module {
  Regressor() {
    fc1 = register_module("fc1", torch::nn::Linear(3, 5));
    body = register_module("body", torch::nn::Sequential(torch::nn::Functional(torch::leaky_relu, 0.2),
                                                         torch::nn::Linear(5, 2)));
  }
  torch::Tensor forward(torch::Tensor x) { return body->forward(fc1->forward(x)); }
  torch::nn::Linear fc1{nullptr};
  torch::nn::Sequential body{nullptr};
};

void empty_members() {
  auto model = std::make_shared<Regressor>();
  model->to(torch::kFloat64);
  set_parameters(model, 0.6);
  for (const auto& item : model->named_parameters()) label("regressor.param." + item.key());
  torch::Tensor x = torch::cos(torch::arange(12, torch::kFloat64) * 0.4).reshape({4, 3});
  torch::Tensor y = torch::sin(torch::arange(8, torch::kFloat64)).reshape({4, 2});
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(0.05));
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    torch::Tensor loss = torch::mse_loss(model->forward(x), y);
    loss.backward();
    opt.step();
    show("regressor.loss." + std::to_string(step), loss);
  }
  show("regressor.fc1.weight", model->fc1->weight);
}

// A gradient penalty, as the autograd example computes one.
void gradient_penalty() {
  torch::nn::Linear model(4, 3);
  model->to(torch::kFloat64);
  set_parameters(model, 0.5);
  torch::Tensor input = torch::cos(torch::arange(12, torch::kFloat64) * 0.3).reshape({3, 4}).requires_grad_(true);
  torch::Tensor output = model(input);
  torch::Tensor target = torch::sin(torch::arange(9, torch::kFloat64)).reshape({3, 3});
  torch::Tensor loss = torch::nn::MSELoss()(output, target);
  torch::Tensor grad_output = torch::ones_like(output);
  // The fourth argument is retain_graph, the fifth create_graph, in both libraries.
  torch::Tensor g_retained = torch::autograd::grad({output}, {input}, {grad_output}, true)[0];
  torch::Tensor g = torch::autograd::grad({output}, {input}, {grad_output}, true, true)[0];
  show("penalty.requires_grad", g_retained.requires_grad() ? 1.0 : 0.0);
  torch::Tensor penalty = torch::pow((g.norm(2, 1) - 1), 2).mean();
  (loss + penalty).backward();
  show("penalty.value", penalty);
  show("penalty.input_grad", input.grad());
  show("penalty.weight_grad", model->weight.grad());
}

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor input, torch::Tensor weight,
                               torch::Tensor bias = torch::Tensor()) {
    ctx->save_for_backward({input, weight, bias});
    auto output = input.mm(weight.t());
    if (bias.defined()) output += bias.unsqueeze(0).expand_as(output);
    return output;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    auto grad_output = grad_outputs[0];
    torch::Tensor grad_bias;
    if (saved[2].defined()) grad_bias = grad_output.sum(0);
    return {grad_output.mm(saved[1]), grad_output.t().mm(saved[0]), grad_bias};
  }
};

class MulConstant : public torch::autograd::Function<MulConstant> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor tensor, double constant) {
    ctx->saved_data["constant"] = constant;
    return tensor * constant;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    return {grad_outputs[0] * ctx->saved_data["constant"].toDouble(), torch::Tensor()};
  }
};

void custom_functions() {
  torch::Tensor x = torch::sin(torch::arange(6, torch::kFloat64)).reshape({2, 3}).requires_grad_();
  torch::Tensor w = torch::cos(torch::arange(12, torch::kFloat64)).reshape({4, 3}).requires_grad_();
  torch::Tensor b = torch::arange(4, torch::kFloat64).requires_grad_();
  torch::Tensor y = LinearFunction::apply(x, w, b);
  (y * y).sum().backward();
  show("fn.linear", y);
  std::string node = y.grad_fn()->name();
  for (char& c : node)
    if (c == ' ') c = '_';
  label("fn.node_name." + node);
  show("fn.linear.grad_x", x.grad());
  show("fn.linear.grad_w", w.grad());
  show("fn.linear.grad_b", b.grad());
  torch::Tensor z = LinearFunction::apply(x, w);  // bias left to its default
  z.sum().backward();
  show("fn.linear_nobias.grad_w", w.grad());
  torch::Tensor v = torch::arange(3, torch::kFloat64).requires_grad_();
  torch::Tensor m = MulConstant::apply(v, 5.5);
  m.pow(2).sum().backward();
  show("fn.mul.grad", v.grad());
}

void grad_fn_names() {
  auto x = torch::ones({2, 2}, torch::dtype(torch::kFloat64).requires_grad(true));
  auto y = x + 2;
  label(std::string("gradfn.") + y.grad_fn()->name());
  auto z = y * y * 3;
  label(std::string("gradfn.") + z.grad_fn()->name());
  label(std::string("gradfn.") + z.mean().grad_fn()->name());
  label(std::string("gradfn.") + (x * x).sum().grad_fn()->name());
  label(std::string("gradfn.") + x.mm(x).grad_fn()->name());
  label(std::string("gradfn.") + torch::relu(x).grad_fn()->name());
  for (const torch::Tensor& t : {x - 1, 2 - x, x / 2, 2 / x, x + x, 2 * x, x.sum(1), x.mean(1), x.pow(2), x.exp(),
                                 x.view({-1}), torch::cat({x, x}), torch::sigmoid(x), torch::tanh(x), x.t(),
                                 torch::log_softmax(x, 1), x.transpose(0, 1), x.unsqueeze(0), x.narrow(0, 0, 1),
                                 x.select(0, 1), x.expand({3, 2, 2}), x.to(torch::kFloat32), x.clone(), x.abs(),
                                 x.matmul(x), x.norm(), torch::max_pool2d(x.reshape({1, 1, 2, 2}), 2)})
    label(std::string("gradfn.more.") + t.grad_fn()->name());
  // (not compared: reshape, whose node LibTorch 1.13 names ReshapeAliasBackward0 and later ones ViewBackward0)
}

void save_and_load() {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string tag = std::to_string(static_cast<long long>(getpid()));
  torch::Tensor t = torch::sin(torch::arange(6, torch::kFloat64)).reshape({2, 3});
  torch::save(t, dir + "/dual_t_" + tag + ".pt");
  torch::Tensor back;
  torch::load(back, dir + "/dual_t_" + tag + ".pt");
  show("save.tensor", back);
  std::vector<torch::Tensor> list{t * 2, torch::arange(3, torch::kFloat64)};
  torch::save(list, dir + "/dual_l_" + tag + ".pt");
  std::vector<torch::Tensor> list_back;
  torch::load(list_back, dir + "/dual_l_" + tag + ".pt");
  show("save.list.size", static_cast<double>(list_back.size()));
  show("save.list.1", list_back[1]);

  // two Adam steps, save model and optimizer, load both into fresh ones, one more step each
  torch::nn::Linear a(3, 2), b(3, 2);
  a->to(torch::kFloat64);
  b->to(torch::kFloat64);
  set_parameters(a, 0.3);
  set_parameters(b, -0.7);
  torch::Tensor in = torch::cos(torch::arange(12, torch::kFloat64)).reshape({4, 3});
  torch::optim::Adam opt_a(a->parameters(), torch::optim::AdamOptions(0.01).betas(std::make_tuple(0.5, 0.9)));
  for (int i = 0; i < 2; ++i) {
    opt_a.zero_grad();
    a(in).pow(2).sum().backward();
    opt_a.step();
  }
  torch::save(a, dir + "/dual_m_" + tag + ".pt");
  torch::save(opt_a, dir + "/dual_o_" + tag + ".pt");
  torch::load(b, dir + "/dual_m_" + tag + ".pt");
  // Built with opt_a's options: LibTorch 1.13 restores only the state, not the options (fixed
  // in LibTorch 2.4, pytorch/pytorch#125215; nabla restores both, as PyTorch does).
  torch::optim::Adam opt_b(b->parameters(), torch::optim::AdamOptions(0.01).betas(std::make_tuple(0.5, 0.9)));
  torch::load(opt_b, dir + "/dual_o_" + tag + ".pt");
  for (auto* pair : {&opt_a, &opt_b}) {
    auto& lin = pair == &opt_a ? a : b;
    pair->zero_grad();
    lin(in).pow(2).sum().backward();
    pair->step();
  }
  show("save.adam.a", a->weight);
  show("save.adam.b", b->weight);
  for (const char* f : {"t", "l", "m", "o"}) std::filesystem::remove(dir + "/dual_" + f + "_" + tag + ".pt");
}

// The torch::data pipeline of the MNIST example over the test split (when compare.py found one).
void data_pipeline() {
  const char* dir = std::getenv("DUAL_MNIST_DIR");
  if (dir == nullptr) return;
  auto dataset = torch::data::datasets::MNIST(dir, torch::data::datasets::MNIST::Mode::kTest)
                     .map(torch::data::transforms::Normalize<>(0.1307, 0.3081))
                     .map(torch::data::transforms::Stack<>());
  show("data.size", static_cast<double>(dataset.size().value()));
  auto loader = torch::data::make_data_loader<torch::data::samplers::SequentialSampler>(std::move(dataset), 1000);
  int batches = 0;
  double total = 0;
  for (auto& batch : *loader) {
    if (batches < 2) {
      show("data.batch" + std::to_string(batches) + ".shape",
           torch::tensor({static_cast<double>(batch.data.size(0)), static_cast<double>(batch.data.size(1)),
                          static_cast<double>(batch.data.size(2)), static_cast<double>(batch.data.size(3))},
                         torch::kFloat64));
      show("data.batch" + std::to_string(batches) + ".pixel_sum", batch.data.to(torch::kFloat64).sum());
      show("data.batch" + std::to_string(batches) + ".first_targets", batch.target.narrow(0, 0, 8));
    }
    total += batch.target.to(torch::kFloat64).sum().item<double>();
    ++batches;
  }
  show("data.batches", static_cast<double>(batches));
  show("data.target_sum", total);
}

}  // namespace

int main() {
  holder_training();
  empty_members();
  gradient_penalty();
  custom_functions();
  grad_fn_names();
  save_and_load();
  data_pipeline();
  return 0;
}
