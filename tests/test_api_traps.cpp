// LibTorch idioms that used to compile in nabla and compute something else, and the other
// API hazards of issue 10 (autograd::grad on long chains, the portable atomic write). These
// run without LibTorch; test_libtorch_api.cpp runs the same calls against LibTorch too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if __has_include(<pthread.h>)
#include <pthread.h>
#endif

#include <nabla/nabla.hpp>

#include "test_util.hpp"

using namespace nabla_test;

namespace {

Tensor tensor_from(std::initializer_list<double> v) {
  return from_vector(std::vector<double>(v), {static_cast<int64_t>(v.size())});
}

double scalar(const Tensor& t) { return t.item<double>(); }

// Runs f on a thread with a stack of `bytes` (8 MiB is the usual default), so that a recursion
// over a long graph overflows there whatever `ulimit -s` the test runner has.
template <class F>
void on_stack(size_t bytes, F f) {
#if __has_include(<pthread.h>)
  struct Box {
    F* f;
    std::string error;
  } box{&f, {}};
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, bytes), 0);
  pthread_t th;
  auto run = [](void* p) -> void* {
    auto* b = static_cast<Box*>(p);
    try {
      (*b->f)();
    } catch (const std::exception& e) {
      b->error = e.what();
    }
    return nullptr;
  };
  ASSERT_EQ(pthread_create(&th, &attr, run, &box), 0);
  pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
  EXPECT_EQ(box.error, "");
#else
  (void)bytes;
  f();
#endif
}
constexpr size_t k8MiB = size_t{8} << 20, k1MiB = size_t{1} << 20;

}  // namespace

// ---- x.var(1) / x.std(1): an integer is a dim, a bool is `unbiased` ----------------------------

TEST(ApiTraps, VarStdIntegerArgumentIsADim) {
  manual_seed(3);
  Tensor x = randn({4, 5}, kFloat64);
  // Used to pick var(bool unbiased) and return the whole-tensor variance (a 0-dim tensor).
  Tensor v1 = x.var(1);
  ASSERT_EQ(v1.sizes(), Shape({4}));
  EXPECT_TRUE(all_close(v1, x.var(Dims{1}, true), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(x.std(0), x.var(Dims{0}).sqrt(), 1e-12, 1e-12));
  EXPECT_EQ(x.std(0).sizes(), Shape({5}));
  EXPECT_EQ(x.var(int64_t{-1}).sizes(), Shape({4}));
  EXPECT_EQ(x.var(size_t{0}).sizes(), Shape({5}));
  EXPECT_EQ(x.var(1L).sizes(), Shape({4}));

  // A bool still means unbiased, over all elements.
  const double n = 20.0;
  Tensor d = x - x.mean();
  const double ss = scalar((d * d).sum());
  EXPECT_EQ(x.var(true).dim(), 0);
  EXPECT_NEAR(scalar(x.var(true)), ss / (n - 1), 1e-12);
  EXPECT_NEAR(scalar(x.var(false)), ss / n, 1e-12);
  EXPECT_NEAR(scalar(x.std(false)), std::sqrt(ss / n), 1e-12);
  EXPECT_NEAR(scalar(x.var()), ss / (n - 1), 1e-12);
}

TEST(ApiTraps, FreeVarStdFollowLibTorchOverloads) {
  manual_seed(4);
  Tensor x = randn({3, 6}, kFloat64);
  Tensor d = x - x.mean();
  const double ss = scalar((d * d).sum());
  // nabla::var(x, false) used to convert false -> int -> Dims{0} and reduce over dim 0.
  EXPECT_EQ(nabla::var(x, false).dim(), 0);
  EXPECT_NEAR(scalar(nabla::var(x, false)), ss / 18.0, 1e-12);
  EXPECT_NEAR(scalar(nabla::var(x, true)), ss / 17.0, 1e-12);
  EXPECT_NEAR(scalar(nabla::std(x)), std::sqrt(ss / 17.0), 1e-12);
  EXPECT_TRUE(all_close(nabla::var(x, 1), x.var(Dims{1}), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(nabla::std(x, 0), x.std(Dims{0}), 1e-12, 1e-12));
  auto [v, m] = nabla::var_mean(x, 1);
  EXPECT_TRUE(all_close(v, x.var(Dims{1}), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(m, x.mean(Dims{1}), 1e-12, 1e-12));
  auto [s, m0] = nabla::std_mean(x, false);
  EXPECT_NEAR(scalar(s), std::sqrt(ss / 18.0), 1e-12);
  EXPECT_NEAR(scalar(m0), scalar(x.mean()), 1e-12);
}

TEST(ApiTraps, VarCorrection) {
  manual_seed(5);
  Tensor x = randn({4, 7}, kFloat64);
  Tensor d = x - x.mean(Dims{1}, true);
  Tensor ss = (d * d).sum(Dims{1});
  EXPECT_TRUE(all_close(x.var(Dims{1}, std::optional<int64_t>(0)), ss / 7.0, 1e-12, 1e-12));
  EXPECT_TRUE(all_close(x.var(Dims{1}, std::optional<int64_t>(2)), ss / 5.0, 1e-12, 1e-12));
  EXPECT_TRUE(all_close(x.std(Dims{1}, std::optional<int64_t>(), true), (ss / 6.0).sqrt().unsqueeze(1), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(nabla::var(x, Dims{1}, std::optional<int64_t>(3)), ss / 4.0, 1e-12, 1e-12));
  // An int in the second place is `unbiased` (converted to bool), as in LibTorch.
  EXPECT_TRUE(all_close(x.var(Dims{1}, 0), ss / 7.0, 1e-12, 1e-12));
}

// ---- batch_norm: torch::batch_norm's order at the top level, F.batch_norm's in F:: -------------

// The old 8-argument call in Python's order no longer compiles (every argument is required, as
// in LibTorch), so a caller that was not updated fails to build instead of swapping tensors.
template <class... A>
concept BatchNormCallable = requires(A... a) { nabla::batch_norm(a...); };
static_assert(!BatchNormCallable<Tensor, Tensor, Tensor, Tensor, Tensor, bool, double, double>);
static_assert(BatchNormCallable<Tensor, Tensor, Tensor, Tensor, Tensor, bool, double, double, bool>);

TEST(ApiTraps, BatchNormTakesLibTorchOrder) {
  manual_seed(6);
  Tensor x = randn({4, 3, 2, 2}, kFloat64);
  Tensor w = randn({3}, kFloat64), b = randn({3}, kFloat64);
  Tensor rm = randn({3}, kFloat64), rv = rand({3}, kFloat64) + 0.5;
  for (bool training : {true, false}) {
    Tensor rm1 = rm.clone(), rv1 = rv.clone(), rm2 = rm.clone(), rv2 = rv.clone(), rm3 = rm.clone(), rv3 = rv.clone();
    Tensor w1 = w.clone(), b1 = b.clone();
    Tensor y = nabla::batch_norm(x, w1, b1, rm1, rv1, training, 0.2, 1e-3, /*cudnn_enabled=*/true);
    Tensor ref = batch_norm_reference(x, rm2, rv2, w, b, training, 0.2, 1e-3);
    Tensor yf = nn::functional::batch_norm(x, rm3, rv3, w, b, training, 0.2, 1e-3);
    EXPECT_TRUE(all_close(y, ref, 1e-10, 1e-10)) << "training=" << training;
    EXPECT_TRUE(all_close(yf, ref, 1e-10, 1e-10)) << "training=" << training;
    // the running statistics are the ones updated, never weight and bias
    EXPECT_TRUE(all_close(rm1, rm2, 1e-12, 1e-12));
    EXPECT_TRUE(all_close(rv1, rv2, 1e-12, 1e-12));
    EXPECT_TRUE(all_close(rm3, rm2, 1e-12, 1e-12));
    EXPECT_TRUE(all_close(w1, w, 0, 0));
    EXPECT_TRUE(all_close(b1, b, 0, 0));
    if (training) {
      EXPECT_FALSE(all_close(rm1, rm, 1e-6, 1e-6));
    }
  }
  // the module goes through the LibTorch-order call too
  nn::BatchNorm2d bn(3, 1e-3, 0.2, true, kFloat64);
  bn.weight.detach().copy_(w);
  bn.bias.detach().copy_(b);
  bn.running_mean.copy_(rm);
  bn.running_var.copy_(rv);
  Tensor rm2 = rm.clone(), rv2 = rv.clone();
  EXPECT_TRUE(all_close(bn.forward(x), batch_norm_reference(x, rm2, rv2, w, b, true, 0.2, 1e-3), 1e-10, 1e-10));
  EXPECT_TRUE(all_close(bn.running_mean, rm2, 1e-12, 1e-12));
}

// ---- in-place methods on a const handle -------------------------------------------------------

static_assert(std::is_same_v<decltype(std::declval<const Tensor&>().zero_()), const Tensor&>);
static_assert(std::is_same_v<decltype(std::declval<const Tensor&>().add_(std::declval<Tensor>())), const Tensor&>);
static_assert(std::is_same_v<decltype(std::declval<const Tensor&>().mutable_grad()), Tensor&>);

TEST(ApiTraps, InPlaceOnConstHandle) {
  Tensor w = tensor_from({1.0, -2.0, 3.0}).requires_grad_();
  (w * w).sum().backward();
  EXPECT_TRUE(all_close(w.grad(), tensor_from({2.0, -4.0, 6.0}), 0, 0));
  const Tensor& ret = w.grad().zero_();  // only mutable_grad().zero_() used to compile
  EXPECT_TRUE(ret.is_same(w.grad()));
  EXPECT_TRUE(all_close(w.grad(), tensor_from({0.0, 0.0, 0.0}), 0, 0));

  const Tensor c = tensor_from({1.0, 2.0, 3.0});
  c.add_(1).mul_(2);
  EXPECT_TRUE(all_close(c, tensor_from({4.0, 6.0, 8.0}), 0, 0));
  c.clamp_(5.0, 7.0).sub_(tensor_from({1.0, 1.0, 1.0}), 2);
  EXPECT_TRUE(all_close(c, tensor_from({3.0, 4.0, 5.0}), 0, 0));
  c.copy_(tensor_from({9.0, 9.0, 9.0}));
  c.fill_(4).sqrt_().neg_().abs_().pow_(3).div_(2);
  EXPECT_TRUE(all_close(c, tensor_from({4.0, 4.0, 4.0}), 0, 0));
  c.masked_fill_(tensor_from({1.0, 0.0, 1.0}) > 0.5, 0.0);
  EXPECT_TRUE(all_close(c, tensor_from({0.0, 4.0, 0.0}), 0, 0));

  const Tensor leaf = zeros({2}, kFloat64);
  leaf.requires_grad_();
  EXPECT_TRUE(leaf.requires_grad());
  leaf.mutable_grad() = ones({2}, kFloat64);  // as LibTorch: the grad slot is writable through a const handle
  EXPECT_TRUE(all_close(leaf.grad(), ones({2}, kFloat64), 0, 0));

  // compound assignment still works on (non-const) handles and returns the handle
  Tensor t = ones({2}, kFloat64);
  (t += 2) *= 3;
  EXPECT_TRUE(all_close(t, full({2}, 9.0, kFloat64), 0, 0));
}

// ---- autograd::grad and graph destruction on long chains ---------------------------------------

// The graphs are built on the main thread; grad and destruction run on small stacks. The old
// recursive walk in grad() overflowed near 60,000 nodes on 8 MiB in some builds; at 1 MiB a
// recursion of even 16 bytes per node cannot fit 120,000 nodes, so the 1 MiB runs fail for any
// per-node recursion.
TEST(ApiTraps, GradOnA120kNodeChainDoesNotOverflowTheStack) {
  Tensor x = tensor_from({0.5}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 120000; ++i) y = y + 1.0;
  Tensor out = y.sum();
  for (size_t stack : {k8MiB, k1MiB})
    on_stack(stack, [&] {
      auto g = autograd::grad({out}, {x}, {}, /*retain_graph=*/true);
      ASSERT_EQ(g.size(), 1u);
      EXPECT_EQ(g[0].item<double>(), 1.0);
    });
  EXPECT_EQ(y.item<double>(), 120000.5);
}

TEST(ApiTraps, GradOnLongChainOnlyRunsNeededBranch) {
  // a long chain to x, and a second input z joined at the end
  Tensor x = tensor_from({0.25}).requires_grad_(), z = tensor_from({2.0}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 120000; ++i) y = y * 1.0;
  Tensor out = (y * z).sum();
  on_stack(k1MiB, [&] {
    auto g = autograd::grad({out}, {z, x});
    EXPECT_EQ(g[0].item<double>(), 0.25);
    EXPECT_EQ(g[1].item<double>(), 2.0);
  });
}

TEST(ApiTraps, DestroyingA120kNodeGraphDoesNotRecurse) {
  Tensor x = tensor_from({0.1}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 120000; ++i) y = (i % 2 ? y.sin() : y * y.detach() + 0.5);  // sin saves its input
  ASSERT_TRUE(y.requires_grad());
  on_stack(k1MiB, [&] { y = Tensor(); });  // the only owner of the 120k nodes lets go here
  Tensor t = x;
  for (int i = 0; i < 120000; ++i) t = t.tanh();
  on_stack(k1MiB, [&] {
    t.sum().backward();  // frees the saved tensors as it goes
    t = Tensor();
  });
  EXPECT_TRUE(x.grad().defined());
}

// ---- io: the portable atomic write (no POSIX headers) ------------------------------------------

TEST(ApiTraps, PortableAtomicWriteReplacesOrKeepsTheOldFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("nabla_api_traps_" + std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())));
  fs::create_directories(dir);
  const std::string path = (dir / "f.bin").string();
  auto read = [&] {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  io::detail::atomic_write_portable(path, [](auto&& write) { write("hello", 5); });
  EXPECT_EQ(read(), "hello");
  io::detail::atomic_write_portable(path, [](auto&& write) {
    write("new ", 4);
    write("data", 4);
  });
  EXPECT_EQ(read(), "new data");
  EXPECT_THROW(io::detail::atomic_write_portable(path,
                                                 [](auto&& write) {
                                                   write("partial", 7);
                                                   throw std::runtime_error("producer failed");
                                                 }),
               IOError);
  EXPECT_EQ(read(), "new data");  // the old contents survive a failed write
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROW(io::detail::atomic_write_portable((dir / "missing" / "f.bin").string(), [](auto&&) {}), IOError);
  fs::remove_all(dir);
}
