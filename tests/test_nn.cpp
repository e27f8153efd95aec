// nn::Module and layers (names, traversal, modes, conversion, state_dict), nn::init's PyTorch
// defaults, optimizers' update rules, param groups and state, LR schedules against PyTorch's
// closed forms, and clip_grad_norm_.

#include <cmath>
#include <numbers>

#include "test_util.hpp"

namespace nabla_test {
namespace {

namespace optim = nabla::optim;

// A ResNet-like nesting, to check dotted names: layer1.0.conv1.weight and a buffer.
struct Block : nn::Module {
  std::shared_ptr<nn::Linear> conv1, conv2;
  Tensor running_mean;
  Block() {
    conv1 = register_module("conv1", nn::Linear(3, 3));
    conv2 = register_module("conv2", nn::Linear(3, 3, false));
    running_mean = register_buffer("running_mean", zeros({3}));
    register_buffer("scratch", zeros({1}), /*persistent=*/false);
  }
  std::string type_name() const override { return "Block"; }
  Tensor forward(const Tensor& x) override { return conv2->forward(relu(conv1->forward(x))) + running_mean; }
};
struct Net : nn::Module {
  std::shared_ptr<nn::Linear> stem;
  std::shared_ptr<nn::Sequential> layer1;
  Net() {
    stem = register_module("stem", nn::Linear(2, 3));
    layer1 = register_module("layer1", nn::Sequential(Block(), Block()));
  }
  Tensor forward(const Tensor& x) override { return layer1->forward(stem->forward(x)); }
};

TEST(Module, SequentialNamesMatchPyTorch) {
  auto net = nn::Sequential(nn::Linear(784, 128), nn::ReLU(), nn::Linear(128, 10));
  EXPECT_EQ(net.state_dict().keys(), (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(net.size(), 3u);
  EXPECT_EQ(net.at<nn::Linear>(2)->weight.sizes(), (Shape{10, 128}));
  EXPECT_EQ(net[1]->type_name(), "ReLU");
  EXPECT_THROW(net.at<nn::Linear>(1), ValueError);
  EXPECT_THROW(net[3], IndexError);
  EXPECT_EQ(net.forward(randn({5, 784})).sizes(), (Shape{5, 10}));
  EXPECT_EQ(net.parameters().size(), 4u);
  for (const Tensor& p : net.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
}

TEST(Module, NestedNamesBuffersAndOrder) {
  Net net;
  // PyTorch's order: a module's own parameters, then its own buffers, then its children
  std::vector<std::string> want = {"stem.weight", "stem.bias",
                                   "layer1.0.running_mean",
                                   "layer1.0.conv1.weight", "layer1.0.conv1.bias", "layer1.0.conv2.weight",
                                   "layer1.1.running_mean",
                                   "layer1.1.conv1.weight", "layer1.1.conv1.bias", "layer1.1.conv2.weight"};
  EXPECT_EQ(net.state_dict().keys(), want);  // non-persistent buffers are left out
  EXPECT_EQ(net.named_parameters().size(), 8u);
  EXPECT_EQ(net.named_buffers().keys(), (std::vector<std::string>{"layer1.0.running_mean", "layer1.0.scratch",
                                                                   "layer1.1.running_mean", "layer1.1.scratch"}));
  EXPECT_EQ(net.children().size(), 2u);
  EXPECT_TRUE(net.named_modules().contains("layer1.1.conv2"));
  EXPECT_EQ(net.forward(randn({4, 2})).sizes(), (Shape{4, 3}));
}

TEST(Module, SharedChildAndParameterListedOnce) {
  auto shared = std::make_shared<nn::Linear>(3, 3);
  nn::Sequential net(shared, nn::ReLU(), shared);
  EXPECT_EQ(net.parameters().size(), 2u);
  EXPECT_EQ(net.named_parameters().keys(), (std::vector<std::string>{"0.weight", "0.bias"}));
  EXPECT_TRUE(net.at<nn::Linear>(2).get() == shared.get());
}

// The layers LibTorch ports use (issue 13): options builders, Dropout2d, LeakyReLU.
TEST(Layers, OptionsDropout2dLeakyReLU) {
  nn::Linear l(nn::LinearOptions(5, 3).bias(false));
  EXPECT_EQ(l.weight.sizes(), (Shape{3, 5}));
  EXPECT_FALSE(l.bias.defined());
  EXPECT_EQ(nn::Dropout(nn::DropoutOptions().p(0.25)).p, 0.25);
  EXPECT_EQ(nn::Dropout(nn::DropoutOptions(0.3)).p, 0.3);

  // Dropout2d: each (n, c) channel is all zero or all scaled by 1 / (1 - p)
  manual_seed(5);
  nn::Dropout2d d(nn::DropoutOptions(0.5));
  Tensor x = ones({8, 16, 3, 4});
  std::vector<double> v = d.forward(x).to_vector<double>();
  int zero = 0, kept = 0;
  for (size_t ch = 0; ch < 8 * 16; ++ch) {
    const double first = v[ch * 12];
    for (size_t i = 1; i < 12; ++i) ASSERT_EQ(v[ch * 12 + i], first) << "channel " << ch;
    if (first == 0.0) ++zero;
    else if (std::fabs(first - 2.0) < 1e-6) ++kept;
  }
  EXPECT_EQ(zero + kept, 128);
  EXPECT_GT(zero, 30);  // Binomial(128, 0.5): 64 +- 5.7; far outside means the mask is wrong
  EXPECT_GT(kept, 30);
  Tensor xg = randn({2, 3, 4, 4}).requires_grad_();
  Tensor y = d.forward(xg);
  y.sum().backward();
  EXPECT_TRUE(all_close(xg.grad(), (y.detach() != 0).to(kFloat32) * 2.0, 1e-6, 1e-6));  // the mask, 0 or 2
  d.eval();
  EXPECT_TRUE(all_equal(d.forward(x), x));
  EXPECT_EQ(nn::Dropout2d(0.2).forward(randn({3, 4, 5})).sizes(), (Shape{3, 4, 5}));  // [C, H, W]
  EXPECT_THROW(nn::Dropout2d(0.5).forward(randn({3, 4})), ShapeError);

  nn::Functional fr(nabla::relu), fl(nabla::leaky_relu, 0.2);
  EXPECT_TRUE(all_close(fr.forward(tensor({-1.0, 2.0})), tensor({0.0, 2.0}), 0, 0));
  EXPECT_TRUE(all_close(fl.forward(tensor({-1.0, 2.0})), tensor({-0.2, 2.0}), 1e-6, 1e-6));
  nn::Sequential seq(nn::Linear(nn::LinearOptions(3, 2)), nn::Functional(nabla::sigmoid));
  EXPECT_EQ(seq.forward(randn({4, 3})).sizes(), (Shape{4, 2}));
  EXPECT_EQ(randn({2, 3}).view(-1).sizes(), (Shape{6}));
  EXPECT_EQ(randn({2, 3}).reshape(6).sizes(), (Shape{6}));

  nn::LeakyReLU lr(nn::LeakyReLUOptions().negative_slope(0.2));
  EXPECT_TRUE(all_close(lr.forward(tensor({-1.0, 2.0})), tensor({-0.2, 2.0}), 1e-6, 1e-6));
  EXPECT_EQ(lr.extra_repr(), "negative_slope=0.2");
}

TEST(Module, RegistrationErrors) {
  nn::Module m;
  m.register_parameter("w", zeros({2}));
  EXPECT_THROW(m.register_parameter("w", zeros({2})), ValueError);
  EXPECT_THROW(m.register_buffer("a.b", zeros({2})), ValueError);
  EXPECT_THROW(m.forward(zeros({2})), ValueError);
}

TEST(Module, TrainEvalPropagates) {
  Net net;
  EXPECT_TRUE(net.is_training());
  net.eval();
  EXPECT_FALSE(net.is_training());
  EXPECT_FALSE(net.layer1->at<Block>(1)->conv1->is_training());
  net.train();
  EXPECT_TRUE(net.layer1->at<Block>(0)->is_training());
}

TEST(Module, ToDtypeKeepsIdentityForOptimizers) {
  auto net = nn::Sequential(nn::Linear(3, 2), nn::Embedding(4, 3));
  Tensor w = net.at<nn::Linear>(0)->weight;
  optim::SGD opt(net.parameters(), optim::SGDOptions(0.1));
  net.to(kFloat64);
  EXPECT_EQ(w.dtype(), kFloat64);  // the same handle sees the converted data
  EXPECT_EQ(net.at<nn::Embedding>(1)->weight.dtype(), kFloat64);
  Tensor before = w.clone();
  net.at<nn::Linear>(0)->forward(randn({2, 3}, kFloat64)).sum().backward();
  opt.step();
  EXPECT_FALSE(all_equal(w, before)) << "the optimizer built before to() still updates the parameter";
  EXPECT_THROW(net.to(kInt32), DTypeError);
}

TEST(Module, ZeroGradAndLoadStateDict) {
  auto a = nn::Sequential(nn::Linear(3, 2), nn::LayerNorm(2));
  auto b = nn::Sequential(nn::Linear(3, 2), nn::LayerNorm(2));
  a.forward(randn({4, 3})).sum().backward();
  EXPECT_TRUE(a.parameters()[0].grad().defined());
  a.zero_grad(false);
  EXPECT_EQ(a.parameters()[0].grad().abs().sum().item<float>(), 0.0f);
  a.zero_grad();
  EXPECT_FALSE(a.parameters()[0].grad().defined());

  b.load_state_dict(a.state_dict());
  for (const auto& [k, v] : a.state_dict()) EXPECT_TRUE(all_equal(b.state_dict()[k], v)) << k;
  EXPECT_FALSE(b.state_dict()["0.weight"].is_same(a.state_dict()["0.weight"]));

  nn::StateDict partial = a.state_dict();
  nn::StateDict extra;
  for (const auto& [k, v] : partial)
    if (k != "1.bias") extra.insert(k, v);
  extra.insert("2.weight", zeros({1}));
  EXPECT_TRUE(throws_with<ValueError>([&] { b.load_state_dict(extra); }, {"missing keys \"1.bias\"", "unexpected keys \"2.weight\""}));
  auto r = b.load_state_dict(extra, /*strict=*/false);
  EXPECT_EQ(r.missing_keys, (std::vector<std::string>{"1.bias"}));
  EXPECT_EQ(r.unexpected_keys, (std::vector<std::string>{"2.weight"}));
  nn::StateDict wrong = a.state_dict();
  wrong.insert("0.weight", zeros({3, 2}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { b.load_state_dict(wrong); }, {"size mismatch for \"0.weight\""}));
}

TEST(Module, PrintsLikePyTorch) {
  auto net = nn::Sequential(nn::Linear(784, 128), nn::ReLU(), nn::Dropout(0.2), nn::Flatten());
  EXPECT_EQ(net.str(),
            "Sequential(\n  (0): Linear(in_features=784, out_features=128, bias=True)\n  (1): ReLU()\n"
            "  (2): Dropout(p=0.2, inplace=False)\n  (3): Flatten(start_dim=1, end_dim=-1)\n)");
}

// ---- init ----------------------------------------------------------------------------------------

TEST(Init, LayerDefaultsFollowPyTorch) {
  manual_seed(3);
  nn::Linear lin(400, 300);
  const double bound = 1.0 / std::sqrt(400.0);  // kaiming_uniform_(a=sqrt(5)) on fan_in 400
  auto w = lin.weight.to_vector<double>();
  double lo = 1e9, hi = -1e9, mean = 0, sq = 0;
  for (double x : w) lo = std::min(lo, x), hi = std::max(hi, x), mean += x, sq += x * x;
  mean /= static_cast<double>(w.size());
  EXPECT_GE(lo, -bound);
  EXPECT_LT(hi, bound);
  EXPECT_GT(hi, 0.99 * bound);
  EXPECT_NEAR(mean, 0.0, 0.01 * bound);
  EXPECT_NEAR(std::sqrt(sq / static_cast<double>(w.size())), bound / std::sqrt(3.0), 0.01 * bound);  // uniform's std
  EXPECT_LE(lin.bias.abs().max().item<float>(), bound);

  nn::Embedding emb(1000, 100);
  EXPECT_NEAR(emb.weight.mean().item<float>(), 0.0, 0.02);
  EXPECT_NEAR(emb.weight.std().item<float>(), 1.0, 0.02);
  nn::LayerNorm ln(Shape{2, 5});
  EXPECT_TRUE(all_equal(ln.weight, ones({2, 5})));
  EXPECT_TRUE(all_equal(ln.bias, zeros({2, 5})));
}

TEST(Init, FormulasAndGains) {
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(nn::init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_THROW(nn::init::calculate_gain("swish"), ValueError);
  Tensor t = empty({64, 16, 3, 3});
  auto [fi, fo] = nn::init::calculate_fan_in_and_fan_out(t);
  EXPECT_EQ(fi, 16 * 9);
  EXPECT_EQ(fo, 64 * 9);
  manual_seed(9);
  nn::init::xavier_uniform_(t);
  EXPECT_LE(t.abs().max().item<float>(), std::sqrt(6.0 / (fi + fo)));
  nn::init::kaiming_normal_(t, 0.0, nn::init::FanMode::FanOut, "relu");
  EXPECT_NEAR(t.std().item<float>(), std::sqrt(2.0 / fo), 0.05 * std::sqrt(2.0 / fo));
  nn::init::kaiming_uniform_(t, 0.0, nn::init::FanMode::FanIn, "relu");
  EXPECT_LE(t.abs().max().item<float>(), std::sqrt(6.0 / fi));
  nn::init::ones_(t);
  EXPECT_EQ(t.sum().item<float>(), static_cast<float>(t.numel()));
  nn::init::zeros_(t);
  EXPECT_EQ(t.abs().sum().item<float>(), 0.0f);
  EXPECT_THROW(nn::init::normal_(zeros({2}, kInt64)), DTypeError);
}

// ---- optimizers (formulas by hand; LibTorch comparisons are in test_libtorch_optim.cpp) ---------

TEST(Optim, SgdMomentumNesterovWeightDecayByHand) {
  Tensor p = tensor({1.0, -2.0}, kFloat64).requires_grad_();
  optim::SGD opt({p}, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(0.01));
  double pv[2] = {1.0, -2.0}, buf[2] = {0, 0};
  const double g[2] = {0.5, 0.25};
  for (int step = 0; step < 3; ++step) {
    p.set_grad(tensor({g[0], g[1]}, kFloat64));
    opt.step();
    for (int i = 0; i < 2; ++i) {
      double d = g[i] + 0.01 * pv[i];
      buf[i] = step == 0 ? d : 0.9 * buf[i] + d;
      pv[i] -= 0.1 * (d + 0.9 * buf[i]);
    }
    EXPECT_NEAR(p.to_vector<double>()[0], pv[0], 1e-14);
    EXPECT_NEAR(p.to_vector<double>()[1], pv[1], 1e-14);
  }
  ASSERT_NE(opt.state(p), nullptr);
  EXPECT_TRUE(opt.state(p)->contains("momentum_buffer"));
  EXPECT_THROW(optim::SGD({p}, optim::SGDOptions(0.1).nesterov(true)), ValueError);
}

TEST(Optim, AdamByHandWithParamGroups) {
  Tensor a = tensor({0.5}, kFloat64).requires_grad_(), b = tensor({0.5}, kFloat64).requires_grad_();
  optim::Adam opt({optim::ParamGroup<optim::AdamOptions>({a}), optim::ParamGroup<optim::AdamOptions>({b}, optim::AdamOptions(0.01))},
                  optim::AdamOptions(0.1));
  double m = 0, v = 0, pa = 0.5, pb = 0.5, mb = 0, vb = 0;
  for (int t = 1; t <= 4; ++t) {
    const double g = 0.3 * t;
    a.set_grad(tensor({g}, kFloat64));
    b.set_grad(tensor({g}, kFloat64));
    opt.step();
    m = 0.9 * m + 0.1 * g, v = 0.999 * v + 0.001 * g * g;
    mb = m, vb = v;
    double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
    pa -= 0.1 / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + 1e-8);
    pb -= 0.01 / bc1 * mb / (std::sqrt(vb) / std::sqrt(bc2) + 1e-8);
    EXPECT_NEAR(a.item<double>(), pa, 1e-14);
    EXPECT_NEAR(b.item<double>(), pb, 1e-14);
  }
  EXPECT_EQ(opt.lr(0), 0.1);
  EXPECT_EQ(opt.lr(1), 0.01);
  EXPECT_EQ(opt.state(a)->at("step").item<double>(), 4.0);
  EXPECT_TRUE(opt.state(a)->contains("exp_avg_sq"));
  EXPECT_THROW(optim::Adam({a, a}), ValueError) << "one tensor in two groups";
}

TEST(Optim, StateDictRoundTripContinuesIdentically) {
  manual_seed(11);
  auto make = [] { return nn::Sequential(nn::Linear(3, 4), nn::GELU(), nn::Linear(4, 1)); };
  auto net = make();
  optim::AdamW opt(net.parameters(), optim::AdamWOptions(0.05).amsgrad(true));
  Tensor x = randn({8, 3});
  auto train_step = [&](nn::Module& n, optim::Optimizer& o) {
    o.zero_grad();
    n.forward(x).square().mean().backward();
    o.step();
  };
  for (int i = 0; i < 3; ++i) train_step(net, opt);

  auto net2 = make();
  net2.load_state_dict(net.state_dict());
  optim::AdamW opt2(net2.parameters(), optim::AdamWOptions(1.0));
  opt2.load_state_dict(opt.state_dict());
  EXPECT_EQ(opt2.lr(), 0.05);
  EXPECT_TRUE(opt2.get_option(0, "amsgrad"));
  train_step(net, opt);
  train_step(net2, opt2);
  for (const auto& [k, v] : net.state_dict()) EXPECT_TRUE(all_equal(net2.state_dict()[k], v)) << k;
}

TEST(Optim, ClipGradNorm) {
  Tensor a = zeros({2}).requires_grad_(), b = zeros({1}).requires_grad_(), c = zeros({1}).requires_grad_();
  a.set_grad(tensor({3.0f, 0.0f}));
  b.set_grad(tensor({4.0f}));  // c has no grad: skipped
  double total = optim::clip_grad_norm_({a, b, c}, 1.0);
  EXPECT_NEAR(total, 5.0, 1e-6);
  EXPECT_NEAR(a.grad().to_vector<float>()[0], 3.0 / (5.0 + 1e-6), 1e-6);
  EXPECT_NEAR(b.grad().item<float>(), 4.0 / (5.0 + 1e-6), 1e-6);
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 10.0), 1.0, 1e-5);  // below max_norm: unchanged
  EXPECT_NEAR(b.grad().item<float>(), 4.0 / (5.0 + 1e-6), 1e-6);
  a.set_grad(tensor({-7.0f, 2.0f}));
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 1.0, INFINITY), 7.0, 1e-6);
  a.set_grad(tensor({-1.0f, 2.0f}));
  b.set_grad(tensor({3.0f}));
  EXPECT_NEAR(optim::clip_grad_norm_({a, b}, 100.0, 1.0), 6.0, 1e-6);
}

// ---- schedules: PyTorch's closed forms, written out independently ---------------------------------

struct SchedFixture {
  Tensor p = zeros({1}).requires_grad_();
  optim::SGD opt{std::vector<Tensor>{p}, optim::SGDOptions(0.5).momentum(0.9)};
};

template <class Sched, class Expected>
void expect_schedule(Sched& s, optim::Optimizer& opt, int steps, Expected f) {
  for (int e = 0; e < steps; ++e) {
    EXPECT_NEAR(opt.lr(), f(e), 1e-12) << "epoch " << e;
    EXPECT_NEAR(s.get_last_lr()[0], f(e), 1e-12);
    s.step();
  }
}

TEST(LRScheduler, StepMultiStepExponentialCosine) {
  {
    SchedFixture fx;
    optim::StepLR s(fx.opt, 3, 0.5);
    expect_schedule(s, fx.opt, 10, [](int e) { return 0.5 * std::pow(0.5, e / 3); });
  }
  {
    SchedFixture fx;
    optim::MultiStepLR s(fx.opt, {5, 2, 7}, 0.1);
    expect_schedule(s, fx.opt, 10, [](int e) { return 0.5 * std::pow(0.1, (e >= 2) + (e >= 5) + (e >= 7)); });
  }
  {
    SchedFixture fx;
    optim::ExponentialLR s(fx.opt, 0.9);
    expect_schedule(s, fx.opt, 10, [](int e) { return 0.5 * std::pow(0.9, e); });
  }
  {
    SchedFixture fx;
    optim::CosineAnnealingLR s(fx.opt, 8, 0.01);
    expect_schedule(s, fx.opt, 12,
                    [](int e) { return 0.01 + (0.5 - 0.01) * (1 + std::cos(std::numbers::pi * e / 8)) / 2; });
  }
}

TEST(LRScheduler, LinearWarmupThenCosine) {
  SchedFixture fx;
  auto cosine = std::make_shared<optim::CosineAnnealingLR>(fx.opt, 10);
  optim::LinearWarmup s(fx.opt, 4, 0.1, cosine);
  // SequentialLR([LinearLR(0.1, 1.0, 4), CosineAnnealingLR(T_max=10)], milestones=[4])
  expect_schedule(s, fx.opt, 14, [](int e) {
    if (e < 4) return 0.5 * (0.1 + 0.9 * e / 4.0);
    return 0.5 * (1 + std::cos(std::numbers::pi * (e - 4) / 10)) / 2;
  });
}

TEST(LRScheduler, OneCycleMatchesPyTorch) {
  for (bool three : {false, true}) {
    for (std::string strategy : {"cos", "linear"}) {
      SchedFixture fx;
      const int T = 20;
      optim::OneCycleLR s(fx.opt, 1.0, T, optim::OneCycleOptions().three_phase(three).anneal_strategy(strategy));
      auto anneal = [&](double a, double b, double pct) {
        return strategy == "cos" ? b + (a - b) / 2 * (std::cos(std::numbers::pi * pct) + 1) : (b - a) * pct + a;
      };
      const double init = 1.0 / 25, lo = init / 1e4;
      // torch.optim.lr_scheduler.OneCycleLR.get_lr, phase table written out
      struct Ph { double end, lr0, lr1, m0, m1; };
      std::vector<Ph> ph = three ? std::vector<Ph>{{0.3 * T - 1, init, 1.0, 0.95, 0.85}, {0.6 * T - 2, 1.0, init, 0.85, 0.95}, {T - 1.0, init, lo, 0.95, 0.95}}
                                 : std::vector<Ph>{{0.3 * T - 1, init, 1.0, 0.95, 0.85}, {T - 1.0, 1.0, lo, 0.85, 0.95}};
      for (int e = 0; e <= T; ++e) {
        double start = 0, lr = 0, mom = 0;
        for (size_t i = 0; i < ph.size(); ++i) {
          if (e <= ph[i].end || i + 1 == ph.size()) {
            double pct = (e - start) / (ph[i].end - start);
            lr = anneal(ph[i].lr0, ph[i].lr1, pct);
            mom = anneal(ph[i].m0, ph[i].m1, pct);
            break;
          }
          start = ph[i].end;
        }
        EXPECT_NEAR(fx.opt.lr(), lr, 1e-12) << "step " << e << " three_phase " << three << " " << strategy;
        EXPECT_NEAR(fx.opt.get_option(0, "momentum"), mom, 1e-12) << "step " << e;
        if (e < T) s.step();
      }
      EXPECT_THROW(s.step(), ValueError) << "stepping past total_steps";
    }
  }
  Tensor p = zeros({1}).requires_grad_();
  optim::Adam adam({p}, 1e-3);
  optim::OneCycleLR s(adam, 0.1, 10);
  EXPECT_NEAR(adam.get_option(0, "beta1"), 0.95, 1e-12) << "Adam cycles beta1";
}

TEST(LRScheduler, StateDictResumes) {
  SchedFixture a, b;
  optim::StepLR sa(a.opt, 2, 0.5), sb(b.opt, 2, 0.5);
  for (int i = 0; i < 5; ++i) sa.step();
  sb.load_state_dict(sa.state_dict());
  EXPECT_EQ(sb.last_epoch(), 5);
  EXPECT_DOUBLE_EQ(b.opt.lr(), a.opt.lr());
}

}  // namespace
}  // namespace nabla_test
