// LibTorch spellings for ported code: module holders (NABLA_MODULE / TORCH_MODULE), data members
// registered in place, custom autograd functions (autograd::Function<T>), save/load of tensors,
// tensor lists and optimizers, BatchNorm2dOptions, F::...FuncOptions, grad_fn names, and
// datasets::MNIST finding NABLA_DATA. Each is checked against nabla's own spelling of the same
// computation; tests/dual and tests/test_libtorch*.cpp compare with LibTorch itself.
#include <gtest/gtest.h>

// TwoLayerImpl keeps LibTorch's `Tensor forward(Tensor x)`, which hides Module::forward(const
// Tensor&) on purpose (clang's -Wall says so); see tests/dual/dual_common.hpp.
#pragma GCC diagnostic ignored "-Woverloaded-virtual"

#include <cstdlib>
#include <filesystem>
#include <string>

#include "nabla/nabla.hpp"
#include "test_util.hpp"

using namespace nabla;
using namespace nabla_test;
namespace F = nabla::nn::functional;

namespace {

Tensor f64(const Shape& s, double lo, double hi, const std::string& seed) {
  auto g = rng_for(seed);
  return uniform(s, lo, hi, g).to(kFloat64);
}

// ---- module holders and members registered in place ---------------------------------------------

struct TwoLayerImpl : nn::Module {
  TwoLayerImpl(int64_t in, int64_t hidden) : fc1(in, hidden), fc2(hidden, 1) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("drop", drop);
  }
  Tensor forward(Tensor x) { return fc2->forward(drop->forward(relu(fc1->forward(x)))); }  // LibTorch's by-value forward
  nn::Linear fc1, fc2;
  nn::Dropout drop{0.5};
};
NABLA_MODULE(TwoLayer);

struct UsesTorchModuleImpl : nn::Module {
  UsesTorchModuleImpl() { inner = register_module("inner", TwoLayer(2, 3)); }
  Tensor forward(const Tensor& x) override { return inner(x); }
  TwoLayer inner{nullptr};
};
TORCH_MODULE(UsesTorchModule);

TEST(Porting, MembersRegisteredInPlaceAreTheModulesChildren) {
  TwoLayerImpl m(4, 3);
  auto names = m.named_parameters().keys();
  EXPECT_EQ(names, (std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  // the registered child is the member itself: same tensors, same train/eval flag
  EXPECT_TRUE(m.named_parameters()["fc1.weight"].is_same(m.fc1.weight));
  m.eval();
  EXPECT_FALSE(m.fc1.is_training());
  EXPECT_FALSE(m.drop.is_training());
  EXPECT_EQ(m.named_children()[0].second.get(), static_cast<nn::Module*>(&m.fc1));
}

TEST(Porting, AMoveRebindsMembersRegisteredInPlace) {
  TwoLayerImpl a(4, 3);
  Tensor w = a.fc1.weight;
  TwoLayerImpl b(std::move(a));
  EXPECT_EQ(b.named_children()[0].second.get(), static_cast<nn::Module*>(&b.fc1));
  EXPECT_EQ(b.named_children()[2].second.get(), static_cast<nn::Module*>(&b.drop));
  EXPECT_TRUE(b.named_parameters()["fc1.weight"].is_same(w));
  b.eval();
  EXPECT_FALSE(b.fc1.is_training());
  // moved into a container, then trained through it
  nn::Sequential seq(std::move(b));
  auto moved = seq.at<TwoLayerImpl>(0);
  EXPECT_EQ(moved->named_children()[1].second.get(), static_cast<nn::Module*>(&moved->fc2));
  seq.train();
  EXPECT_TRUE(moved->drop.is_training());
}

// LibTorch's most common spelling: empty members, assigned register_module's result.
struct EmptyMembers : nn::Module {
  EmptyMembers() {
    fc = register_module("fc", nn::Linear(3, 4));
    seq = register_module("seq", nn::Sequential(nn::Linear(4, 2), nn::ReLU()));
    auto extra = register_module("extra", nn::Linear(2, 2));  // kept as auto: a pointer with ->
    extra_weight = extra->weight;
  }
  Tensor forward(const Tensor& x) override { return seq->forward(fc->forward(x)); }
  nn::Linear fc{nullptr};
  nn::Sequential seq{nullptr};
  Tensor extra_weight;
};
// ... and members initialised from it.
struct InitialisedMembers : nn::Module {
  InitialisedMembers() : fc(register_module("fc", nn::Linear(3, 2))), bn(register_module("bn", nn::BatchNorm2d(2))) {}
  nn::Linear fc;
  nn::BatchNorm2d bn;
};

TEST(Porting, EmptyMembersAssignedRegisterModuleBecomeTheChildren) {
  EmptyMembers m;
  EXPECT_EQ(m.named_parameters().keys(),
            (std::vector<std::string>{"fc.weight", "fc.bias", "seq.0.weight", "seq.0.bias", "extra.weight", "extra.bias"}));
  EXPECT_EQ(m.named_children()[0].second.get(), static_cast<nn::Module*>(&m.fc));
  EXPECT_EQ(m.named_children()[1].second.get(), static_cast<nn::Module*>(&m.seq));
  EXPECT_TRUE(m.named_parameters()["fc.weight"].is_same(m.fc.weight));
  EXPECT_TRUE(m.named_parameters()["extra.weight"].is_same(m.extra_weight));
  EXPECT_EQ(m.fc.in_features, 3);
  EmptyMembers moved(std::move(m));
  EXPECT_EQ(moved.named_children()[1].second.get(), static_cast<nn::Module*>(&moved.seq));
  Tensor x = ones({2, 3});
  EXPECT_TRUE(all_close(moved.forward(x), relu(moved.seq.at<nn::Linear>(0)->forward(moved.fc(x))), 0, 0));
  InitialisedMembers init;
  EXPECT_EQ(init.named_children()[0].second.get(), static_cast<nn::Module*>(&init.fc));
  EXPECT_EQ(init.named_children()[1].second.get(), static_cast<nn::Module*>(&init.bn));
  EXPECT_EQ(init.named_buffers().keys()[0], "bn.running_mean");
  // assigning to something that is not a data member of the registering module is refused
  struct Bad : nn::Module {
    Bad() {
      nn::Linear local{nullptr};
      local = register_module("local", nn::Linear(2, 2));
    }
  };
  // (at once when the address cannot be a member; else at the first use, once the local is gone)
  EXPECT_TRUE(throws_with<ValueError>(
      [] {
        Bad b;
        (void)b.parameters();
      },
      {"local", "data member"}));
}

TEST(Porting, RegisteringSomethingOtherThanAMemberByReferenceIsRefused) {
  // a parent on the heap, a module on the stack: it cannot be a member, refused at once
  auto m = std::make_shared<TwoLayerImpl>(2, 2);
  nn::Linear local(2, 2);
  EXPECT_TRUE(throws_with<ValueError>([&] { m->register_module("local", local); },
                                      {"register_module", "local", "data member", "std::move"}));
  // a local the address check cannot tell from a member (both on the stack, where the compiler
  // or a sanitizer may place it just past the parent) is refused at the first use once it is gone
  TwoLayerImpl n(2, 2);
  bool accepted = false;
  {
    nn::Linear nearby(2, 2);
    try {
      n.register_module("gone", nearby);
      accepted = true;
    } catch (const ValueError&) {
    }
  }
  if (accepted) EXPECT_TRUE(throws_with<ValueError>([&] { (void)n.parameters(); }, {"gone", "no longer exists"}));
  else EXPECT_EQ(n.named_parameters().size(), 4u);
}

TEST(Porting, HolderForwardsConstructorSharesOnCopyAndCallsItsOwnForward) {
  manual_seed(3);
  TwoLayer net(4, 3);
  TwoLayer same = net;  // a copy shares the module
  EXPECT_EQ(same.get(), net.get());
  EXPECT_EQ(net->parameters().size(), 4u);
  net->eval();
  Tensor x = randn({5, 4});
  // operator() reaches TwoLayerImpl::forward(Tensor), which does not override Module::forward
  EXPECT_TRUE(all_close(net(x), net->fc2(relu(net->fc1(x))), 0, 0));
  // and so does Sequential, for a module added by holder or by value
  nn::Sequential seq(net, nn::ReLU());
  EXPECT_TRUE(all_close(seq->forward(x), relu(net(x)), 0, 0));
  EXPECT_TRUE(seq.named_children()[0].second.get() == net.get());
}

TEST(Porting, EmptyHoldersAndTorchModule) {
  TwoLayer empty{nullptr};
  EXPECT_TRUE(empty.is_empty());
  EXPECT_TRUE(throws_with<ValueError>([&] { (void)empty->parameters(); }, {"ModuleHolder", "empty"}));
  UsesTorchModule outer;
  EXPECT_FALSE(outer->inner.is_empty());
  EXPECT_EQ(outer->named_parameters().keys()[0], "inner.fc1.weight");
  EXPECT_TRUE(outer->named_parameters()["inner.fc1.weight"].is_same(outer->inner->fc1.weight));
}

// ---- custom autograd functions ------------------------------------------------------------------

struct LinearFn : autograd::Function<LinearFn> {
  static Tensor forward(autograd::AutogradContext* ctx, Tensor input, Tensor weight, Tensor bias = Tensor()) {
    EXPECT_FALSE(GradMode::is_enabled());  // forward runs without recording, as LibTorch's
    ctx->save_for_backward({input, weight, bias});
    Tensor out = input.mm(weight.t());
    if (bias.defined()) out += bias.unsqueeze(0).expand_as(out);
    return out;
  }
  static autograd::tensor_list backward(autograd::AutogradContext* ctx, autograd::tensor_list g) {
    auto s = ctx->get_saved_variables();
    Tensor gb = s[2].defined() ? g[0].sum(0) : Tensor();
    return {g[0].mm(s[1]), g[0].t().mm(s[0]), gb};
  }
};

struct ScaleFn : autograd::Function<ScaleFn> {
  static Tensor forward(autograd::AutogradContext* ctx, Tensor x, double c) {
    ctx->saved_data["c"] = c;
    ctx->saved_data["n"] = 2;
    return x * c;
  }
  static autograd::tensor_list backward(autograd::AutogradContext* ctx, autograd::tensor_list g) {
    EXPECT_EQ(ctx->saved_data["n"].toInt(), 2);
    return {g[0] * ctx->saved_data["c"].toDouble(), Tensor()};
  }
};

// Two outputs, one backward call: (x + y, x * y).
struct SumProdFn : autograd::Function<SumProdFn> {
  static int calls;
  static autograd::tensor_list forward(autograd::AutogradContext* ctx, Tensor x, Tensor y) {
    ctx->save_for_backward({x, y});
    return {x + y, x * y};
  }
  static autograd::tensor_list backward(autograd::AutogradContext* ctx, autograd::tensor_list g) {
    ++calls;
    auto s = ctx->get_saved_variables();
    return {g[0] + g[1] * s[1], g[0] + g[1] * s[0]};
  }
};
int SumProdFn::calls = 0;

// A non-tensor argument first: needs_input_grad counts tensor arguments only, as LibTorch's.
struct ScaleFirstFn : autograd::Function<ScaleFirstFn> {
  static Tensor forward(autograd::AutogradContext* ctx, double c, Tensor x, Tensor y) {
    ctx->saved_data["c"] = c;
    ctx->saved_data["need_x"] = ctx->needs_input_grad(0);
    ctx->saved_data["need_y"] = ctx->needs_input_grad(1);
    return x * c + y;
  }
  static autograd::tensor_list backward(autograd::AutogradContext* ctx, autograd::tensor_list g) {
    EXPECT_TRUE(ctx->saved_data["need_x"].toBool());
    EXPECT_FALSE(ctx->saved_data["need_y"].toBool());
    return {Tensor(), g[0] * ctx->saved_data["c"].toDouble(), Tensor()};
  }
};

struct WrongCountFn : autograd::Function<WrongCountFn> {
  static Tensor forward(autograd::AutogradContext*, Tensor x, Tensor y) { return x * y; }
  static autograd::tensor_list backward(autograd::AutogradContext*, autograd::tensor_list g) { return {g[0]}; }
};
struct GradForNonTensorFn : autograd::Function<GradForNonTensorFn> {
  static Tensor forward(autograd::AutogradContext*, Tensor x, double) { return x * 2; }
  static autograd::tensor_list backward(autograd::AutogradContext*, autograd::tensor_list g) { return {g[0] * 2, g[0]}; }
};

TEST(Porting, CustomFunctionMatchesFiniteDifferencesAndTheBuiltInOps) {
  Tensor x = f64({3, 4}, -1, 1, "fn.x").requires_grad_(), w = f64({2, 4}, -1, 1, "fn.w").requires_grad_(),
         b = f64({2}, -1, 1, "fn.b").requires_grad_();
  EXPECT_TRUE(gradcheck([](const TensorList& in) { return LinearFn::apply(in[0], in[1], in[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](const TensorList& in) { return LinearFn::apply(in[0], in[1]); }, {x, w}));
  EXPECT_TRUE(gradcheck([](const TensorList& in) { return ScaleFn::apply(in[0], 5.5); }, {x}));
  Tensor y = LinearFn::apply(x, w, b);
  EXPECT_STREQ(y.grad_fn()->name(), "torch::autograd::CppNode<(anonymous namespace)::LinearFn>");  // LibTorch's name
  EXPECT_TRUE(all_close(y, F::linear(x, w, b), 1e-12, 1e-12));
  y.sum().backward();
  Tensor gx = x.grad(), gw = w.grad();
  x.set_grad(Tensor()), w.set_grad(Tensor());
  F::linear(x, w, b).sum().backward();
  EXPECT_TRUE(all_close(gx, x.grad(), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(gw, w.grad(), 1e-12, 1e-12));
  Tensor y2 = f64({3, 4}, -1, 1, "fn.y2");
  Tensor s = ScaleFirstFn::apply(2.5, x, y2);
  x.set_grad(Tensor());
  s.sum().backward();
  EXPECT_TRUE(all_close(x.grad(), full({3, 4}, 2.5, kFloat64), 0, 0));
  // without an input that requires grad, nothing is recorded
  Tensor plain = LinearFn::apply(x.detach(), w.detach());
  EXPECT_FALSE(plain.requires_grad());
}

TEST(Porting, CustomFunctionWithSeveralOutputsRunsBackwardOnce) {
  Tensor x = f64({5}, -1, 1, "fn2.x").requires_grad_(), y = f64({5}, -1, 1, "fn2.y").requires_grad_();
  EXPECT_TRUE(gradcheck(
      [](const TensorList& in) {
        auto o = SumProdFn::apply(in[0], in[1]);
        return o[0] * 3 + o[1].sin();
      },
      {x, y}));
  SumProdFn::calls = 0;
  auto o = SumProdFn::apply(x, y);
  ASSERT_EQ(o.size(), 2u);
  EXPECT_TRUE(all_close(o[1], x.detach() * y.detach(), 0, 0));
  o[1].sum().backward();  // only the second output is used: the first's gradient arrives as zeros
  EXPECT_EQ(SumProdFn::calls, 1);
  EXPECT_TRUE(all_close(x.grad(), y.detach(), 0, 0));
}

TEST(Porting, CustomFunctionErrorsNameTheFunction) {
  Tensor x = f64({3}, -1, 1, "fn3.x").requires_grad_(), y = f64({3}, -1, 1, "fn3.y").requires_grad_();
  EXPECT_TRUE(throws_with<AutogradError>([&] { WrongCountFn::apply(x, y).sum().backward(); },
                                         {"WrongCountFn", "incorrect number of gradients", "expected 2, got 1"}));
  EXPECT_TRUE(throws_with<AutogradError>([&] { GradForNonTensorFn::apply(x, 1.0).sum().backward(); },
                                         {"GradForNonTensorFn", "position 1", "not a tensor"}));
  // a saved input changed in place before backward
  Tensor z = f64({2, 3}, -1, 1, "fn3.z").requires_grad_();
  Tensor w = f64({4, 3}, -1, 1, "fn3.w");
  Tensor out = LinearFn::apply(z, w);
  w.add_(1.0);
  EXPECT_TRUE(throws_with<AutogradError>([&] { out.sum().backward(); }, {"in-place", "version"}));
  autograd::IValue v = 2.5;
  EXPECT_TRUE(throws_with<ValueError>([&] { (void)v.toInt(); }, {"IValue", "int", "double"}));
}

// ---- grad_fn names ------------------------------------------------------------------------------

TEST(Porting, GradFnNamesAreLibTorchs) {
  Tensor x = ones({2, 2}, requires_grad());
  EXPECT_STREQ((x + 2).grad_fn()->name(), "AddBackward1");
  EXPECT_STREQ((x * x).grad_fn()->name(), "MulBackward0");
  EXPECT_STREQ((x + x).grad_fn()->name(), "AddBackward0");
  EXPECT_STREQ((x * 3).grad_fn()->name(), "MulBackward1");
  EXPECT_STREQ((2 - x).grad_fn()->name(), "SubBackward0");
  EXPECT_STREQ(x.mean().grad_fn()->name(), "MeanBackward0");
  EXPECT_STREQ(x.sum().grad_fn()->name(), "SumBackward0");
  EXPECT_STREQ(x.sum(1).grad_fn()->name(), "SumBackward1");
  EXPECT_STREQ(x.mm(x).grad_fn()->name(), "MmBackward0");
  EXPECT_STREQ(x.pow(2).grad_fn()->name(), "PowBackward0");
  EXPECT_STREQ(relu(x).grad_fn()->name(), "ReluBackward0");
}

// ---- save / load --------------------------------------------------------------------------------

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("nabla_porting_" + name)).string();
}

TEST(Porting, SaveAndLoadATensorAListAndAnOptimizer) {
  Tensor t = f64({2, 3}, -1, 1, "save.t");
  save(t, temp_path("t.pt"));
  Tensor back;
  load(back, temp_path("t.pt"));
  EXPECT_TRUE(all_equal(back, t));

  std::vector<Tensor> list{t, arange(5, kInt64), zeros({0})};
  save(list, temp_path("list.pt"));
  std::vector<Tensor> list_back;
  load(list_back, temp_path("list.pt"));
  ASSERT_EQ(list_back.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(all_equal(list_back[i], list[i]));

  // an optimizer's state round-trips: two Adam steps, save, a fresh Adam loads, both step alike
  manual_seed(5);
  TwoLayer net(3, 2);
  optim::Adam opt(net->parameters(), optim::AdamOptions(1e-2).betas(std::make_tuple(0.5, 0.9)));
  Tensor x = randn({4, 3});
  for (int i = 0; i < 2; ++i) {
    opt.zero_grad();
    net(x).pow(2).sum().backward();
    opt.step();
  }
  save(net, temp_path("net.pt"));
  save(opt, temp_path("opt.pt"));
  TwoLayer net2(3, 2);
  load(net2, temp_path("net.pt"));
  optim::Adam opt2(net2->parameters(), optim::AdamOptions(1.0));
  load(opt2, temp_path("opt.pt"));
  EXPECT_DOUBLE_EQ(opt2.lr(), 1e-2);
  net->eval(), net2->eval();
  for (auto* pair : {&opt, &opt2}) {
    auto& n = pair == &opt ? net : net2;
    pair->zero_grad();
    n(x).pow(2).sum().backward();
    pair->step();
  }
  for (size_t i = 0; i < net->parameters().size(); ++i)
    EXPECT_TRUE(all_equal(net->parameters()[i], net2->parameters()[i]));

  // a file of another kind is refused, naming the file
  EXPECT_TRUE(throws_with<IOError>([&] { load(back, temp_path("list.pt")); }, {"nabla_porting_list.pt", "tensors"}));
  EXPECT_TRUE(throws_with<IOError>([&] { load(opt2, temp_path("t.pt")); }, {"nabla_porting_t.pt", "optimizer"}));
  for (const char* f : {"t.pt", "list.pt", "net.pt", "opt.pt"}) std::filesystem::remove(temp_path(f));
}

// ---- options ------------------------------------------------------------------------------------

TEST(Porting, BatchNorm2dOptions) {
  nn::BatchNorm2d bn(nn::BatchNorm2dOptions(3).eps(1e-3).momentum(0.2).affine(false));
  EXPECT_EQ(bn.parameters().size(), 0u);
  EXPECT_EQ(bn.named_buffers().keys(), (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_DOUBLE_EQ(bn.eps, 1e-3);
  EXPECT_DOUBLE_EQ(bn.momentum, 0.2);
  // without running statistics: no buffers, and batch statistics in eval too
  nn::BatchNorm2d plain(nn::BatchNorm2dOptions(3).track_running_stats(false));
  EXPECT_EQ(plain.named_buffers().size(), 0u);
  EXPECT_EQ(plain.named_parameters().keys(), (std::vector<std::string>{"weight", "bias"}));
  plain.eval();
  Tensor x = f64({4, 3, 2, 2}, -2, 3, "bn.x").to(kFloat32);
  EXPECT_TRUE(all_close(plain(x), batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, false), 1e-6, 1e-6));
  EXPECT_NE(plain.str().find("track_running_stats=False"), std::string::npos);
}

TEST(Porting, FunctionalOptionsMeanThePositionalCalls) {
  Tensor x = f64({2, 3, 7, 7}, -1, 1, "F.x"), w = f64({4, 3, 3, 3}, -1, 1, "F.w"), b = f64({4}, -1, 1, "F.b");
  EXPECT_TRUE(all_equal(F::conv2d(x, w, F::Conv2dFuncOptions().bias(b).stride(2).padding(1)), conv2d(x, w, b, 2, 1)));
  Tensor wt = f64({3, 2, 3, 3}, -1, 1, "F.wt");
  EXPECT_TRUE(all_equal(F::conv_transpose2d(x, wt, F::ConvTranspose2dFuncOptions().stride(2).output_padding(1)),
                        conv_transpose2d(x, wt, Tensor(), 2, 0, 1)));
  EXPECT_TRUE(all_equal(F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2)), max_pool2d(x, 3, 2)));
  EXPECT_TRUE(all_equal(F::max_pool2d(x, F::MaxPool2dFuncOptions(2)), max_pool2d(x, 2)));
  EXPECT_TRUE(all_equal(F::avg_pool2d(x, F::AvgPool2dFuncOptions(2).padding(1)), avg_pool2d(x, 2, 2, 1)));
  EXPECT_TRUE(all_equal(F::log_softmax(x, F::LogSoftmaxFuncOptions(1)), log_softmax(x, 1)));
  EXPECT_TRUE(all_equal(F::leaky_relu(x, F::LeakyReLUFuncOptions().negative_slope(0.2)), leaky_relu(x, 0.2)));
  EXPECT_TRUE(all_equal(F::dropout(x, F::DropoutFuncOptions().p(0.3).training(false)), x));
  Tensor logits = f64({4, 5}, -1, 1, "F.l"), cw = f64({5}, 0.5, 1.5, "F.cw");
  Tensor target = from_vector<int64_t>({0, 4, 2, 2}, Shape{4});
  EXPECT_TRUE(all_equal(F::nll_loss(log_softmax(logits, 1), target, F::NLLLossFuncOptions().weight(cw).reduction(kSum)),
                        nll_loss(log_softmax(logits, 1), target, cw, kSum)));
  EXPECT_TRUE(all_equal(F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().label_smoothing(0.1)),
                        cross_entropy(logits, target, CrossEntropyOptions{Tensor(), kMean, -100, 0.1})));
  Tensor p = f64({6}, 0.05, 0.95, "F.p"), q = f64({6}, 0, 1, "F.q");
  EXPECT_TRUE(all_equal(F::binary_cross_entropy(p, q, F::BinaryCrossEntropyFuncOptions().reduction(kSum)),
                        binary_cross_entropy(p, q, Tensor(), kSum)));
  EXPECT_TRUE(all_equal(F::smooth_l1_loss(p, q, F::SmoothL1LossFuncOptions().beta(0.5)), smooth_l1_loss(p, q, kMean, 0.5)));
  // the positional torch::nll_loss(input, target, weight, reduction) and its `{}` weight
  EXPECT_TRUE(all_equal(nll_loss(log_softmax(logits, 1), target, {}, Reduction::Sum),
                        nll_loss(log_softmax(logits, 1), target, NllLossOptions{Tensor(), kSum, -100})));
}

// ---- printing -----------------------------------------------------------------------------------

TEST(Porting, EveryPrintableTypeHasOperatorShiftAndStr) {
  EXPECT_EQ(str(TensorOptions().dtype(kFloat64).requires_grad(true)),
            "TensorOptions(dtype=float64, device=cpu, requires_grad=true)");
  EXPECT_EQ(str(kCUDA, " ", Device::cuda(1), " ", kSum, " ", Pair2d(2, 3), " ", Padding2d("same")),
            "cuda cuda:1 sum (2, 3) same");
  EXPECT_EQ(str(autograd::IValue(2.5), autograd::IValue(int64_t{3}), autograd::IValue(true),
                autograd::IValue(std::vector<int64_t>{1, 2})),
            "2.53True[1, 2]");
  nn::Linear fc(2, 1);
  {
    NoGradGuard g;
    fc.weight.fill_(1);
    fc.bias.fill_(0);
  }
  EXPECT_EQ(str(fc.named_parameters()), "{weight: tensor([[1., 1.]], requires_grad=True), bias: tensor([0.], requires_grad=True)}");
  EXPECT_EQ(str(fc), "Linear(in_features=2, out_features=1, bias=True)");
  EXPECT_EQ(str(Shape{2, 3}, kBFloat16), "[2, 3]bfloat16");
}

// ---- data ---------------------------------------------------------------------------------------

TEST(Porting, TorchDataMnistFallsBackToNablaData) {
  const char* env = std::getenv("NABLA_DATA");
  if (!env || !std::filesystem::exists(std::filesystem::path(env) / "mnist"))
    GTEST_SKIP() << "NABLA_DATA/mnist is not present";
  auto set = data::datasets::MNIST(temp_path("no_such_dir"), data::datasets::MNIST::Mode::kTest);
  EXPECT_EQ(set.size().value(), 10000u);
  std::string saved = env;
  ::setenv("NABLA_DATA", temp_path("no_such_data").c_str(), 1);
  EXPECT_TRUE(throws_with<IOError>([&] { (void)data::datasets::MNIST(temp_path("no_such_dir")); },
                                   {"MNIST", "no_such_dir", "no_such_data", "NABLA_DATA", "train-images-idx3-ubyte"}));
  ::setenv("NABLA_DATA", saved.c_str(), 1);
}

}  // namespace
