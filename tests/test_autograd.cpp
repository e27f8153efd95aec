// Autograd engine behaviour: accumulation, retain_graph, create_graph and double backward,
// grad(), NoGradGuard, detach, retain_grad, version counters, dtype/shape of gradients,
// and graphs too deep for recursion.

#include "test_util.hpp"

namespace nabla_test {
namespace {

TEST(Autograd, GradientsAccumulateIntoLeaves) {
  Tensor x = tensor({1.0, 2.0, 3.0}, kFloat64).requires_grad_();
  (x * x).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
  (x * 3).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 7, 9}));
  x.mutable_grad().zero_();
  x.sum().backward();  // a leaf as the root
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1, 1}));
}

TEST(Autograd, SharedSubexpressionsAndBroadcastGradients) {
  Tensor a = tensor({2.0}, kFloat64).requires_grad_();
  Tensor b = ones({3, 4}, kFloat64).requires_grad_();
  Tensor y = a * b;            // a broadcast to [3, 4]
  Tensor z = (y * y + y).sum();  // y used twice
  z.backward();
  EXPECT_EQ(a.grad().sizes(), (Shape{1}));
  EXPECT_DOUBLE_EQ(a.grad().item<double>(), 12 * (2 * 2.0 + 1));  // dz/da = sum(2ab*b + b)
  EXPECT_EQ(b.grad().sizes(), (Shape{3, 4}));
  EXPECT_DOUBLE_EQ(b.grad()[1][2].item<double>(), 2 * 2.0 * 2.0 + 2.0);
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = tensor({1.5}, kFloat64).requires_grad_();
  Tensor y = (x.exp() * x).sum();
  y.backward();
  EXPECT_TRUE(throws_with<AutogradError>([&] { y.backward(); }, {"second time", "retain_graph"}));
  Tensor w = tensor({1.5}, kFloat64).requires_grad_();
  Tensor v = (w.exp() * w).sum();
  v.backward({}, true);
  v.backward();
  EXPECT_NEAR(w.grad().item<double>(), 2 * (std::exp(1.5) * 2.5), 1e-12);
}

TEST(Autograd, DoubleBackwardThroughCreateGraph) {
  Tensor x = tensor({0.7}, kFloat64).requires_grad_();
  Tensor y = (x * x * x).sum();
  Tensor g = autograd::grad({y}, {x}, {}, std::nullopt, true)[0];  // 3x^2, differentiable
  EXPECT_NEAR(g.item<double>(), 3 * 0.49, 1e-12);
  Tensor gg = autograd::grad({g.sum()}, {x})[0];  // 6x
  EXPECT_NEAR(gg.item<double>(), 6 * 0.7, 1e-12);
  // through ops that save their output (tanh): d2/dx2 tanh = -2 tanh (1 - tanh^2)
  Tensor t = tensor({0.3}, kFloat64).requires_grad_();
  Tensor dt = autograd::grad({t.tanh().sum()}, {t}, {}, std::nullopt, true)[0];
  Tensor d2 = autograd::grad({dt.sum()}, {t})[0];
  double th = std::tanh(0.3);
  EXPECT_NEAR(d2.item<double>(), -2 * th * (1 - th * th), 1e-12);
  // backward(create_graph) fills .grad with a differentiable tensor
  Tensor u = tensor({2.0}, kFloat64).requires_grad_();
  (u * u * u).sum().backward({}, false, true);
  EXPECT_TRUE(u.grad().requires_grad());
  u.set_grad(Tensor());  // u.grad's graph saves u: a cycle (as in PyTorch) unless .grad is reset
}

TEST(Autograd, GradReturnsWithoutTouchingDotGrad) {
  Tensor a = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor b = tensor({3.0, 4.0}, kFloat64).requires_grad_();
  Tensor unused = ones({2}, kFloat64).requires_grad_();
  Tensor y = (a * b).sum();
  auto g = autograd::grad({y}, {a, unused}, {}, true, false, true);
  EXPECT_EQ(g[0].to_vector<double>(), (std::vector<double>{3, 4}));
  EXPECT_FALSE(g[1].defined());
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
  EXPECT_THROW(autograd::grad({y}, {unused}), AutogradError);
  // gradient w.r.t. an intermediate
  Tensor h = a * 2;
  Tensor z = (h * h).sum();
  EXPECT_EQ(autograd::grad({z}, {h})[0].to_vector<double>(), (std::vector<double>{4, 8}));
}

TEST(Autograd, NoGradDetachAndRequiresGradPropagation) {
  Tensor x = ones({2}).requires_grad_();
  {
    NoGradGuard guard;
    Tensor y = x * 2;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(y.grad_fn());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.storage(), x.storage());
  Tensor z = x * 2 + d;
  EXPECT_TRUE(z.requires_grad());
  EXPECT_FALSE(z.is_leaf());
  EXPECT_STREQ(z.grad_fn()->name(), "AddBackward0");
  EXPECT_FALSE((x > 0).requires_grad());         // bool results never require grad
  EXPECT_FALSE(x.argmax().requires_grad());
  EXPECT_THROW(ones({2}, kInt64).requires_grad_(), DTypeError);
}

TEST(Autograd, RetainGradOnIntermediates) {
  Tensor x = tensor({1.0, -2.0}, kFloat64).requires_grad_();
  Tensor h = x * 3;
  h.retain_grad();
  (h * h).sum().backward();
  ASSERT_TRUE(h.grad().defined());
  EXPECT_EQ(h.grad().to_vector<double>(), (std::vector<double>{6, -12}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{18, -36}));
}

TEST(Autograd, InPlaceOpsRebaseHistoryAndVersionCountersCatchStaleSaves) {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor y = x * 2;
  y.add_(1);  // non-leaf: allowed, history continues
  y.mul_(x);  // y = (2x + 1) x
  y.sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 9}));  // 4x + 1
  // like PyTorch, y.mul_(y) on a tensor in the graph is refused at backward: the saved y changed
  Tensor w = x * 2;
  w.mul_(w);
  EXPECT_TRUE(throws_with<AutogradError>([&] { w.sum().backward(); }, {"MulBackward", "in-place"}));

  Tensor a = tensor({0.5}, kFloat64).requires_grad_();
  Tensor e = a.exp();  // saves its output
  Tensor loss = e.sum();
  {
    NoGradGuard g;
    e.add_(1);  // changes the saved output behind autograd's back
  }
  EXPECT_TRUE(throws_with<AutogradError>([&] { loss.backward(); }, {"in-place", "ExpBackward", "version"}));

  Tensor leaf = ones({2}).requires_grad_();
  EXPECT_TRUE(throws_with<AutogradError>([&] { leaf.add_(1); }, {"add_", "leaf"}));
  {
    NoGradGuard g;
    leaf.add_(1);  // fine without grad mode: how optimizers update parameters
  }
  EXPECT_EQ(leaf.to_vector<float>(), (std::vector<float>{2, 2}));
  EXPECT_EQ(leaf._version(), 1u);
}

TEST(Autograd, GradientsKeepInputDtypeAndDevice) {
  Tensor h = ones({3}, kFloat16).requires_grad_();
  Tensor f = ones({3}, kFloat32).requires_grad_();
  Tensor y = (h * f).sum();  // computed in float32
  EXPECT_EQ(y.dtype(), kFloat32);
  y.backward();
  EXPECT_EQ(h.grad().dtype(), kFloat16);
  EXPECT_EQ(f.grad().dtype(), kFloat32);
}

TEST(Autograd, NonScalarRootsNeedAGradient) {
  Tensor x = ones({3}).requires_grad_();
  Tensor y = x * 2;
  EXPECT_TRUE(throws_with<AutogradError>([&] { y.backward(); }, {"scalar"}));
  y.backward(tensor({1.f, 0.f, 2.f}));
  EXPECT_EQ(x.grad().to_vector<float>(), (std::vector<float>{2, 0, 4}));
  EXPECT_TRUE(throws_with<AutogradError>([&] { ones({2}).sum().backward(); }, {"does not require grad"}));
}

TEST(Autograd, DeepGraphsNeitherRecurseInBackwardNorInDestruction) {
  Tensor x = tensor({1.0}, kFloat64).requires_grad_();
  {
    Tensor y = x;
    for (int i = 0; i < 20000; ++i) y = y * 1.0 + 0.0;
    y.sum().backward();
  }
  EXPECT_DOUBLE_EQ(x.grad().item<double>(), 1.0);
  {  // a graph dropped without running backward must also free without deep recursion
    Tensor y = x;
    for (int i = 0; i < 20000; ++i) y = (y * 1.0).exp().log();
  }
  SUCCEED();
}

TEST(Gradcheck, CatchesAWrongGradient) {
  // A deliberately wrong backward rule must be reported (so gradcheck is not vacuous).
  auto wrong = [](const TensorList& in) {
    Tensor out = in[0].detach() * in[0].detach();
    autograd::record("WrongSquareBackward", out, {in[0]},
                     [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g * 3}; });
    return out;
  };
  Tensor x = tensor({0.3, 0.8}, kFloat64).requires_grad_();
  EXPECT_THROW(gradcheck(wrong, {x}), AutogradError);
  GradcheckOptions quiet;
  quiet.raise = false;
  EXPECT_FALSE(gradcheck(wrong, {x}, quiet));
  EXPECT_TRUE(gradcheck([](const TensorList& in) { return in[0] * in[0]; }, {x}));
}

}  // namespace
}  // namespace nabla_test
