// Gradient checkpointing (issue 14): the gradients of a checkpointed region are bit-identical to
// an ordinary run's, with dropout inside (the rerun draws the same mask), nested regions, under
// autocast, through autograd::grad, checkpoint_sequential and Module::gradient_checkpointing;
// and the errors it gives instead of wrong numbers.

#include "test_util.hpp"

using namespace nabla_test;

namespace {

std::shared_ptr<nn::Sequential> mlp() {
  return std::make_shared<nn::Sequential>(nn::Linear(12, 32), nn::ReLU(), nn::Dropout(0.3), nn::Linear(32, 32),
                                          nn::Tanh(), nn::Dropout(0.2), nn::Linear(32, 32), nn::ReLU(),
                                          nn::Linear(32, 5));
}

// Gradients of every parameter and of the input after one backward of run(x).sum() (after a
// fixed seed, so dropout draws the same numbers in every variant).
std::vector<Tensor> grads_of(const std::shared_ptr<nn::Sequential>& net, const Tensor& x0,
                             const std::function<Tensor(const Tensor&)>& run) {
  for (auto& p : net->parameters()) p.set_grad(Tensor());
  Tensor x = x0.detach().clone().requires_grad_();
  manual_seed(1234);
  Tensor y = run(x);
  (y * y).sum().backward();
  std::vector<Tensor> g{x.grad()};
  for (auto& p : net->parameters()) g.push_back(p.grad());
  // the generator ends where an ordinary run leaves it (the rerun's draws are not extra draws)
  g.push_back(rand({4}));
  return g;
}

void expect_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].defined() && b[i].defined()) << "gradient " << i;
    EXPECT_TRUE(equal(a[i], b[i])) << "gradient " << i << " differs";
  }
}

}  // namespace

TEST(GradientCheckpoint, BitIdenticalWithDropout) {
  auto net = mlp();
  const Tensor x = randn({16, 12});
  const auto plain = grads_of(net, x, [&](const Tensor& in) { return net->forward(in); });
  const auto whole = grads_of(net, x, [&](const Tensor& in) {
    return checkpoint([net](const std::vector<Tensor>& v) { return net->forward(v[0]); }, {in});
  });
  expect_identical(plain, whole);
  // the region really ran twice: once forward, once more when backward needed what it saved
  auto calls = std::make_shared<int>(0);
  Tensor xi = x.detach().clone().requires_grad_();
  Tensor y = checkpoint([net, calls](const std::vector<Tensor>& v) { return ++*calls, net->forward(v[0]); }, {xi});
  EXPECT_EQ(*calls, 1);
  y.sum().backward();
  EXPECT_EQ(*calls, 2);
  // the variadic form, and a region that is only part of the network
  const auto part = grads_of(net, x, [&](const Tensor& in) {
    Tensor h = net->forward_range(0, 3, in);
    h = checkpoint([net](const Tensor& t) { return net->forward_range(3, 7, t); }, h);
    return net->forward_range(7, net->size(), h);
  });
  expect_identical(plain, part);
}

TEST(GradientCheckpoint, SequentialSegmentsAndModuleFlag) {
  auto net = mlp();
  const Tensor x = randn({8, 12});
  const auto plain = grads_of(net, x, [&](const Tensor& in) { return net->forward(in); });
  for (int64_t segments : {1, 2, 3, 9}) {
    SCOPED_TRACE("segments " + std::to_string(segments));
    expect_identical(plain, grads_of(net, x, [&](const Tensor& in) { return checkpoint_sequential(net, segments, in); }));
  }
  EXPECT_THROW(checkpoint_sequential(net, 10, x), ValueError);
  EXPECT_THROW(checkpoint_sequential(net, 0, x), ValueError);
  // opting modules in: the Sequential checkpoints them as it runs them
  for (size_t i : {0, 2, 3}) (*net)[i]->gradient_checkpointing(true);
  EXPECT_TRUE((*net)[2]->gradient_checkpointing());
  expect_identical(plain, grads_of(net, x, [&](const Tensor& in) { return net->forward(in); }));
}

TEST(GradientCheckpoint, Nested) {
  auto net = mlp();
  const Tensor x = randn({8, 12});
  const auto plain = grads_of(net, x, [&](const Tensor& in) { return net->forward(in); });
  const auto nested = grads_of(net, x, [&](const Tensor& in) {
    return checkpoint(
        [net](const std::vector<Tensor>& v) {
          Tensor h = checkpoint([net](const Tensor& t) { return net->forward_range(0, 3, t); }, v[0]);
          h = checkpoint([net](const Tensor& t) { return net->forward_range(3, 6, t); }, h);
          return net->forward_range(6, net->size(), h);
        },
        {in});
  });
  expect_identical(plain, nested);
}

TEST(GradientCheckpoint, UnderAutocast) {
  auto net = mlp();
  const Tensor x = randn({8, 12});
  auto run_amp = [&](bool ck) {
    return [&, ck](const Tensor& in) {
      amp::autocast ac(kCPU);
      if (!ck) return net->forward(in).to(kFloat32);
      return checkpoint([net](const std::vector<Tensor>& v) { return net->forward(v[0]); }, {in}).to(kFloat32);
    };
  };
  const auto plain = grads_of(net, x, run_amp(false));
  const auto ck = grads_of(net, x, run_amp(true));
  EXPECT_EQ(plain[1].dtype(), kFloat32);
  expect_identical(plain, ck);
  // backward outside the region: the rerun still runs under the autocast state of the first run
  for (auto& p : net->parameters()) p.set_grad(Tensor());
  manual_seed(1234);
  Tensor xr = x.detach().clone().requires_grad_();
  Tensor y;
  {
    amp::autocast ac(kCPU);
    y = checkpoint([net](const std::vector<Tensor>& v) { return net->forward(v[0]); }, {xr}).to(kFloat32);
  }
  (y * y).sum().backward();
  EXPECT_TRUE(equal(xr.grad(), plain[0]));
  EXPECT_TRUE(equal(net->parameters()[0].grad(), plain[1]));
}

TEST(GradientCheckpoint, AutogradGradAndRetainGraph) {
  auto net = mlp();
  net->eval();  // no dropout: the two passes below must see the same function
  const Tensor x = randn({6, 12}).requires_grad_();
  const auto params = net->parameters();
  TensorList inputs{x, params[0], params[2]};
  Tensor y_plain = net->forward(x);
  TensorList g_plain = autograd::grad({(y_plain * y_plain).sum()}, inputs);
  Tensor y = checkpoint([net](const std::vector<Tensor>& v) { return net->forward(v[0]); }, {x});
  Tensor loss = (y * y).sum();
  TensorList g1 = autograd::grad({loss}, inputs, {}, /*retain_graph=*/true);
  TensorList g2 = autograd::grad({loss}, inputs);
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_TRUE(equal(g1[i], g_plain[i])) << i;
    EXPECT_TRUE(equal(g2[i], g_plain[i])) << i;
  }
  EXPECT_FALSE(params[0].grad().defined()) << "autograd::grad wrote .grad()";
}

TEST(GradientCheckpoint, NoGradJustRuns) {
  auto net = mlp();
  net->eval();
  const Tensor x = randn({4, 12});
  NoGradGuard ng;
  Tensor y = checkpoint([net](const std::vector<Tensor>& v) { return net->forward(v[0]); }, {x});
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(equal(y, net->forward(x)));
}

TEST(GradientCheckpoint, ErrorsInsteadOfWrongNumbers) {
  const Tensor w = randn({5, 5}).requires_grad_();
  // an input changed in place before backward
  Tensor x = randn({3, 5}).requires_grad_();
  Tensor h = x * 1.0;
  Tensor y = checkpoint([w](const Tensor& t) { return matmul(t, w).tanh(); }, h);
  {
    NoGradGuard ng;
    h.add_(1.0);
  }
  EXPECT_THROW(y.sum().backward(), AutogradError);
  // double backward through a region
  Tensor z = checkpoint([w](const Tensor& t) { return matmul(t, w).tanh(); }, x);
  TensorList g = autograd::grad({z.sum()}, {x}, {}, std::nullopt, /*create_graph=*/false);
  EXPECT_TRUE(g[0].defined());
  Tensor z2 = checkpoint([w](const Tensor& t) { return matmul(t, w).tanh(); }, x);
  EXPECT_THROW(autograd::grad({z2.sum()}, {x}, {}, std::nullopt, /*create_graph=*/true), AutogradError);
  // a function that saves a different number of tensors when run again
  int calls = 0;
  auto counter = std::make_shared<int>(0);
  Tensor q = checkpoint(
      [w, counter](const Tensor& t) { return ++*counter == 1 ? matmul(t, w).tanh() : matmul(t, w); }, x);
  (void)calls;
  EXPECT_THROW(q.sum().backward(), AutogradError);
}

TEST(GradientCheckpoint, OnTheGpuWithDropout) {
  NABLA_REQUIRE_GPU();
  auto net = mlp();
  net->to(Device::cuda(0));
  const Tensor x = randn({16, 12}).to(Device::cuda(0));
  const auto plain = grads_of(net, x, [&](const Tensor& in) { return net->forward(in); });
  const auto ck = grads_of(net, x, [&](const Tensor& in) { return checkpoint_sequential(net, 3, in); });
  expect_identical(plain, ck);
}

// batch_norm in a checkpointed region: the rerun computes the same batch statistics (so the
// gradients match) and leaves the running statistics as the first run left them.
TEST(GradientCheckpoint, BatchNormRunningStatsUpdatedOnce) {
  auto make = [] {
    manual_seed(5);
    return std::make_shared<nn::Sequential>(nn::Conv2d(3, 8, 3, 1, 1), nn::BatchNorm2d(8), nn::ReLU(),
                                            nn::Conv2d(8, 4, 3, 1, 1), nn::BatchNorm2d(4));
  };
  auto a = make(), b = make();
  const Tensor x = randn({4, 3, 6, 6});
  const auto ga = grads_of(a, x, [&](const Tensor& in) { return a->forward(in); });
  const auto gb = grads_of(b, x, [&](const Tensor& in) { return checkpoint_sequential(b, 2, in); });
  expect_identical(ga, gb);
  const auto sa = a->state_dict(), sb = b->state_dict();
  for (const auto& [k, t] : sa) EXPECT_TRUE(equal(t, sb.at(k))) << k;
  EXPECT_EQ(sb.at("1.num_batches_tracked").item<int64_t>(), 1);
}

// What checkpointing is for: the activations held between forward and backward. A 48-layer
// MLP keeps only its 10 segment inputs plus one segment's activations (counted by nabla's CPU
// allocator, deterministic); and once the step's tensors are gone, nothing is left behind.
TEST(GradientCheckpoint, HoldsLessMemoryAndLeavesNothingBehind) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>();
  for (int i = 0; i < 48; ++i) {
    net->push_back(nn::Linear(32, 32));
    net->push_back(nn::ReLU());
  }
  const Tensor x = randn({2048, 32});
  const Device cpu = Device::cpu();
  auto peak_of = [&](const std::function<Tensor()>& forward) {
    for (auto& p : net->parameters()) p.set_grad(Tensor());
    const size_t before = memory_stats(cpu).in_use;
    reset_peak_memory_stats(cpu);
    {
      Tensor y = forward();
      (y * y).mean().backward();
    }
    for (auto& p : net->parameters()) p.set_grad(Tensor());
    EXPECT_EQ(memory_stats(cpu).in_use, before) << "the step left tensors behind";
    return memory_stats(cpu).peak - before;
  };
  const size_t plain = peak_of([&] { return net->forward(x); });
  const size_t ck = peak_of([&] { return checkpoint_sequential(net, 10, x); });
  // each layer keeps one 256 KiB activation in the plain run (12 MiB in all)
  EXPECT_GT(plain, size_t{12} << 20);
  EXPECT_LT(static_cast<double>(ck), 0.5 * static_cast<double>(plain)) << "plain " << plain << " checkpointed " << ck;
}
