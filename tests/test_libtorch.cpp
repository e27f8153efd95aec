// Cross-checks of nabla against LibTorch on the same inputs: type promotion, activations,
// softmax family, reductions, losses, broadcasting matmul, MLP gradients, NaN and tie rules.
// Built with NABLA_HAVE_LIBTORCH when LibTorch is found; otherwise every case skips.
#include <gtest/gtest.h>

#define NABLA_LIBTORCH_CASES(X)                                                                  \
  X(PromotionMixedDtypes) X(PromotionScalarsAndZeroDim) X(Gelu) X(SoftmaxLogSoftmax) X(Logsumexp) \
  X(VarStd) X(CrossEntropy) X(NllLoss) X(ElementwiseLosses) X(LossModules) X(NormAllAnyCloseRepeat) X(MatmulBroadcast) X(MlpGradients) X(MaxMinArgmaxTiesNaN)  \
  X(ClampNaN) X(PowNegativeBase) X(IntDivisionGivesFloat) X(IntSumGivesInt64) X(PrintFormat)

#ifndef NABLA_HAVE_LIBTORCH

#define NABLA_SKIP_CASE(name) \
  TEST(LibTorch, name) { GTEST_SKIP() << "LibTorch not found"; }
NABLA_LIBTORCH_CASES(NABLA_SKIP_CASE)

#else

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

c10::ScalarType to_torch(nb::DType d) {
  switch (d) {
    case nb::kFloat32: return torch::kFloat;
    case nb::kFloat64: return torch::kDouble;
    case nb::kFloat16: return torch::kHalf;
    case nb::kBFloat16: return torch::kBFloat16;
    case nb::kInt32: return torch::kInt;
    case nb::kInt64: return torch::kLong;
    case nb::kUInt8: return torch::kByte;
    case nb::kBool: return torch::kBool;
  }
  return torch::kFloat;
}

// Copies (no shared memory, so neither side can see the other's later writes).
torch::Tensor T(const nb::Tensor& t) {
  nb::Tensor c = t.detach().contiguous();
  std::vector<int64_t> sizes(c.sizes().begin(), c.sizes().end());
  return torch::from_blob(c.data_ptr(), sizes, torch::TensorOptions().dtype(to_torch(c.dtype()))).clone();
}

std::string show(const torch::Tensor& t) {
  std::ostringstream os;
  os << t;
  return os.str();
}

// Same dtype, shape and values (NaN == NaN) within tolerance.
void expect_same(const nb::Tensor& got, const torch::Tensor& want, double rtol = 1e-5, double atol = 1e-6,
                 bool check_dtype = true) {
  torch::Tensor g = T(got);
  if (check_dtype) {
    EXPECT_EQ(g.scalar_type(), want.scalar_type()) << "nabla dtype " << nb::dtype_name(got.dtype()) << " vs torch "
                                                   << c10::toString(want.scalar_type());
  }
  ASSERT_EQ(g.sizes(), want.sizes()) << "nabla " << got.str() << "\ntorch " << show(want);
  torch::Tensor gd = g.to(torch::kDouble), wd = want.detach().to(torch::kDouble);
  EXPECT_TRUE(torch::allclose(gd, wd, rtol, atol, /*equal_nan=*/true)) << "nabla " << got.str() << "\ntorch " << show(want);
}

nb::Tensor randn_nb(const nb::Shape& s, nb::DType dt = nb::kFloat32) { return nb::randn(s, nb::kFloat64).to(dt); }

}  // namespace

// ---- type promotion ----------------------------------------------------------------------------

TEST(LibTorch, PromotionMixedDtypes) {
  auto pair = [](nb::DType da, nb::DType db) {
    nb::Tensor a = (nb::rand({3}, nb::kFloat64) * 5).to(da), b = (nb::rand({2, 3}, nb::kFloat64) * 5).to(db);
    SCOPED_TRACE(std::string(nb::dtype_name(da)) + " + " + nb::dtype_name(db));
    expect_same(a + b, T(a) + T(b), 1e-2, 1e-2);
    expect_same(a * b, T(a) * T(b), 1e-2, 1e-2);
  };
  pair(nb::kInt32, nb::kFloat16);
  pair(nb::kUInt8, nb::kInt64);
  pair(nb::kBool, nb::kInt32);
  pair(nb::kFloat16, nb::kBFloat16);
  pair(nb::kUInt8, nb::kInt32);
  pair(nb::kBool, nb::kFloat16);
  pair(nb::kInt64, nb::kBFloat16);
  pair(nb::kFloat32, nb::kFloat64);
}

TEST(LibTorch, PromotionScalarsAndZeroDim) {
  nb::Tensor i = nb::tensor({1, -2, 3}, nb::kInt32);
  expect_same(i + 2.5, T(i) + 2.5);   // int tensor + float scalar -> float32
  expect_same(i * 2, T(i) * 2);       // stays int32
  nb::Tensor u = nb::tensor({1, 2, 250}, nb::kUInt8);
  expect_same(u + 10, T(u) + 10);     // uint8 wraps like torch
  nb::Tensor h = nb::tensor({1.5, -2.0}, nb::kFloat16);
  expect_same(h * 3.0, T(h) * 3.0, 1e-3, 1e-3);  // stays float16
  // 0-dim tensors only lift the category
  nb::Tensor z64 = nb::scalar_tensor(7, nb::kInt64), zf = nb::scalar_tensor(0.5, nb::kFloat64);
  expect_same(i + z64, T(i) + T(z64));
  expect_same(i + zf, T(i) + T(zf));
  expect_same(h + zf, T(h) + T(zf), 1e-3, 1e-3);
  nb::Tensor b = nb::tensor({true, false}, nb::kBool);
  expect_same(b + 1, T(b) + 1);
  expect_same(b * 1.5, T(b) * 1.5);
}

// ---- activations, softmax family, reductions -------------------------------------------------------

TEST(LibTorch, Gelu) {
  for (std::string approx : {"none", "tanh"}) {
    SCOPED_TRACE(approx);
    nb::Tensor x = (randn_nb({64}, nb::kFloat64) * 3).requires_grad_();
    nb::Tensor y = nb::gelu(x, approx);
    torch::Tensor tx = T(x).requires_grad_();
    torch::Tensor ty = torch::gelu(tx, approx);
    expect_same(y, ty, 1e-10, 1e-12);
    (y * y).sum().backward();
    (ty * ty).sum().backward();
    expect_same(x.grad(), tx.grad(), 1e-9, 1e-12);
    nb::Tensor xf = x.detach().to(nb::kFloat32);
    expect_same(nb::gelu(xf, approx), torch::gelu(T(xf), approx), 1e-5, 1e-6);
  }
}

TEST(LibTorch, SoftmaxLogSoftmax) {
  nb::Tensor x = randn_nb({5, 7}) * 20;
  x = nb::where(nb::arange(7).eq(nb::scalar_tensor(3, nb::kInt64)), nb::scalar_tensor(1000.0), x);  // large values
  for (int64_t dim : {0, 1, -1}) {
    SCOPED_TRACE(dim);
    expect_same(nb::softmax(x, dim), torch::softmax(T(x), dim));
    expect_same(nb::log_softmax(x, dim), torch::log_softmax(T(x), dim), 1e-5, 1e-4);
  }
  nb::Tensor i = nb::tensor({1, 2, 3}, nb::kInt64);  // integer input -> float32
  expect_same(nb::softmax(i, 0), torch::softmax(T(i), 0, torch::kFloat));
}

TEST(LibTorch, Logsumexp) {
  const double inf = std::numeric_limits<double>::infinity();
  nb::Tensor x = randn_nb({4, 6}, nb::kFloat64) * 50;
  expect_same(nb::logsumexp(x, {1}), torch::logsumexp(T(x), std::vector<int64_t>{1}), 1e-12, 1e-12);
  expect_same(nb::logsumexp(x, {0, 1}, true), torch::logsumexp(T(x), std::vector<int64_t>{0, 1}, true), 1e-12, 1e-12);
  nb::Tensor e = nb::tensor({-inf, -inf, 1.0, inf, -inf, 2.0}, nb::kFloat64).reshape({3, 2});
  expect_same(nb::logsumexp(e, {1}), torch::logsumexp(T(e), std::vector<int64_t>{1}));
}

TEST(LibTorch, VarStd) {
  nb::Tensor x = randn_nb({4, 5, 3}, nb::kFloat64) * 3 + 10;
  for (bool unbiased : {true, false}) {
    SCOPED_TRACE(unbiased);
    expect_same(x.var(unbiased), T(x).var(unbiased), 1e-12, 1e-12);
    expect_same(x.std(unbiased), T(x).std(unbiased), 1e-12, 1e-12);
    expect_same(x.var({1}, unbiased), T(x).var(std::vector<int64_t>{1}, unbiased), 1e-12, 1e-12);
    expect_same(x.std({0, 2}, unbiased, true), T(x).std(std::vector<int64_t>{0, 2}, unbiased, true), 1e-12, 1e-12);
  }
  nb::Tensor one = nb::tensor({2.0}, nb::kFloat64);  // N - 1 == 0: NaN like torch
  expect_same(one.var(), T(one).var());
}

// ---- losses ----------------------------------------------------------------------------------

TEST(LibTorch, CrossEntropy) {
  nb::Tensor x = randn_nb({6, 4}, nb::kFloat64);
  nb::Tensor t = nb::tensor({0, 3, 1, -100, 2, 3}, nb::kInt64);
  nb::Tensor w = nb::tensor({0.5, 2.0, 1.0, 3.0}, nb::kFloat64);
  for (auto red : {nb::kMean, nb::kSum, nb::kNone}) {
    for (double ls : {0.0, 0.2}) {
      for (bool use_w : {false, true}) {
        SCOPED_TRACE(std::to_string(int(red)) + " smoothing " + std::to_string(ls) + " weight " + std::to_string(use_w));
        nb::Tensor xn = x.detach().requires_grad_();
        nb::CrossEntropyOptions o;
        o.reduction = red;
        o.label_smoothing = ls;
        o.ignore_index = -100;
        if (use_w) o.weight = w;
        nb::Tensor l = nb::cross_entropy(xn, t, o);
        torch::Tensor tx = T(x).requires_grad_();
        auto to = torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100).label_smoothing(ls);
        if (red == nb::kMean) to.reduction(torch::kMean);
        else if (red == nb::kSum) to.reduction(torch::kSum);
        else to.reduction(torch::kNone);
        if (use_w) to.weight(T(w));
        torch::Tensor tl = torch::nn::functional::cross_entropy(tx, T(t), to);
        expect_same(l, tl, 1e-10, 1e-12);
        l.sum().backward();
        tl.sum().backward();
        expect_same(xn.grad(), tx.grad(), 1e-10, 1e-12);
      }
    }
  }
  // soft (probability) targets with smoothing
  nb::Tensor p = nb::softmax(randn_nb({6, 4}, nb::kFloat64), 1);
  nb::CrossEntropyOptions o;
  o.label_smoothing = 0.1;
  expect_same(nb::cross_entropy(x, p, o),
              torch::nn::functional::cross_entropy(T(x), T(p), torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1)),
              1e-10, 1e-12);
}

TEST(LibTorch, NllLoss) {
  nb::Tensor lp = nb::log_softmax(randn_nb({5, 3}, nb::kFloat64), 1);
  nb::Tensor t = nb::tensor({2, 0, 1, 1, 0}, nb::kInt64);
  nb::Tensor w = nb::tensor({1.0, 0.25, 4.0}, nb::kFloat64);
  namespace F = torch::nn::functional;
  expect_same(nb::nll_loss(lp, t), F::nll_loss(T(lp), T(t)), 1e-12, 1e-12);
  expect_same(nb::nll_loss(lp, t, {w, nb::kMean, 1}), F::nll_loss(T(lp), T(t), F::NLLLossFuncOptions().weight(T(w)).ignore_index(1)),
              1e-12, 1e-12);
  expect_same(nb::nll_loss(lp, t, {w, nb::kNone, -100}), F::nll_loss(T(lp), T(t), F::NLLLossFuncOptions().weight(T(w)).reduction(torch::kNone)),
              1e-12, 1e-12);
  expect_same(nb::nll_loss(lp, t, {nb::Tensor(), nb::kSum, 0}), F::nll_loss(T(lp), T(t), F::NLLLossFuncOptions().ignore_index(0).reduction(torch::kSum)),
              1e-12, 1e-12);
  // [N, C, d] input
  nb::Tensor lp3 = nb::log_softmax(randn_nb({2, 3, 4}, nb::kFloat64), 1);
  nb::Tensor t3 = nb::tensor({0, 1, 2, 1, 2, 2, 0, 1}, nb::kInt64).reshape({2, 4});
  expect_same(nb::nll_loss(lp3, t3), F::nll_loss(T(lp3), T(t3)), 1e-12, 1e-12);
}

// l1, smooth_l1 (beta), huber (delta), binary cross-entropy (weight, saturated probabilities)
// and its logits form (weight, pos_weight, huge logits): values and input gradients, in
// LibTorch's argument order, under each reduction.
TEST(LibTorch, ElementwiseLosses) {
  nb::manual_seed(21);
  nb::Tensor x = nb::randn({4, 3}, nb::kFloat64), y = nb::randn({4, 3}, nb::kFloat64);
  nb::Tensor p = nb::rand({4, 3}, nb::kFloat64) * 0.9 + 0.05, q = nb::rand({4, 3}, nb::kFloat64);
  nb::Tensor w = nb::rand({3}, nb::kFloat64) + 0.5, pw = nb::rand({3}, nb::kFloat64) * 3;
  const std::vector<std::pair<nb::Reduction, at::Reduction::Reduction>> reds = {
      {nb::kMean, at::Reduction::Mean}, {nb::kSum, at::Reduction::Sum}, {nb::kNone, at::Reduction::None}};
  // value and d(sum of the loss * a fixed random cotangent) / d(first argument), on both sides
  auto check = [](const char* what, auto nb_fn, auto torch_fn, const nb::Tensor& a, const nb::Tensor& b) {
    SCOPED_TRACE(what);
    nb::Tensor an = a.detach().requires_grad_();
    torch::Tensor at = T(a).requires_grad_();
    nb::Tensor ln = nb_fn(an, b);
    torch::Tensor lt = torch_fn(at, T(b));
    expect_same(ln, lt, 1e-12, 1e-12);
    nb::Tensor cot = nb::randn(ln.sizes(), nb::kFloat64);
    (ln * cot).sum().backward();
    (lt * T(cot)).sum().backward();
    expect_same(an.grad(), at.grad(), 1e-10, 1e-12);
  };
  for (auto [r, tr] : reds) {
    check("l1_loss", [r = r](auto a, auto b) { return nb::l1_loss(a, b, r); },
          [tr = tr](auto a, auto b) { return torch::l1_loss(a, b, tr); }, x, y);
    for (double beta : {1.0, 0.3, 0.0})
      check("smooth_l1_loss", [r = r, beta](auto a, auto b) { return nb::smooth_l1_loss(a, b, r, beta); },
            [tr = tr, beta](auto a, auto b) { return torch::smooth_l1_loss(a, b, tr, beta); }, x, y);
    for (double delta : {1.0, 0.3})
      check("huber_loss", [r = r, delta](auto a, auto b) { return nb::huber_loss(a, b, r, delta); },
            [tr = tr, delta](auto a, auto b) { return torch::huber_loss(a, b, tr, delta); }, x, y);
    check("binary_cross_entropy", [r = r, w](auto a, auto b) { return nb::binary_cross_entropy(a, b, w, r); },
          [tr = tr, w](auto a, auto b) { return torch::binary_cross_entropy(a, b, T(w), tr); }, p, q);
    check("binary_cross_entropy_with_logits",
          [r = r, w, pw](auto a, auto b) { return nb::binary_cross_entropy_with_logits(a, b, w, pw, r); },
          [tr = tr, w, pw](auto a, auto b) { return torch::binary_cross_entropy_with_logits(a, b, T(w), T(pw), tr); },
          x * 30.0, q);
  }
  // probabilities of exactly 0 and 1 (a saturated sigmoid): finite loss and gradient, as PyTorch's
  nb::Tensor sat = nb::tensor({0.0, 1.0, 0.0, 1.0, 0.5}, nb::kFloat64), lab = nb::tensor({0.0, 1.0, 1.0, 0.0, 0.3}, nb::kFloat64);
  check("binary_cross_entropy saturated", [](auto a, auto b) { return nb::binary_cross_entropy(a, b); },
        [](auto a, auto b) { return torch::binary_cross_entropy(a, b); }, sat, lab);
  EXPECT_THROW(nb::binary_cross_entropy(nb::tensor({1.5, 0.5}), nb::tensor({1.0, 0.0})), nb::ValueError);
  // logits of exactly 0 (zero-initialised heads): sigmoid(0) - t, where the stable form's |x| and
  // max(-x, 0) kinks would give one-sided derivatives (found by tests/dual)
  nb::Tensor z = nb::zeros({4}, nb::kFloat64), zt = nb::tensor({0.0, 1.0, 0.25, 0.5}, nb::kFloat64);
  check("binary_cross_entropy_with_logits at 0", [](auto a, auto b) { return nb::binary_cross_entropy_with_logits(a, b); },
        [](auto a, auto b) { return torch::binary_cross_entropy_with_logits(a, b); }, z, zt);
  check("binary_cross_entropy_with_logits at 0, pos_weight",
        [pw](auto a, auto b) { return nb::binary_cross_entropy_with_logits(a, b, {}, pw.narrow(0, 0, 1)); },
        [pw](auto a, auto b) { return torch::binary_cross_entropy_with_logits(a, b, {}, T(pw.narrow(0, 0, 1))); }, z, zt);
}

// The loss modules with their options, beside torch::nn's: same values, same buffers.
TEST(LibTorch, LossModules) {
  nb::manual_seed(22);
  nb::Tensor x = nb::randn({6, 4}, nb::kFloat64), y = nb::randn({6, 4}, nb::kFloat64);
  nb::Tensor p = nb::rand({6, 4}, nb::kFloat64) * 0.9 + 0.05, q = nb::rand({6, 4}, nb::kFloat64);
  nb::Tensor cls = nb::tensor({0, 3, 1, 1, 2, 0}, nb::kInt64), w = nb::rand({4}, nb::kFloat64) + 0.5;
  expect_same(nb::nn::MSELoss(nb::nn::MSELossOptions().reduction(nb::kSum))(x, y),
              torch::nn::MSELoss(torch::nn::MSELossOptions().reduction(torch::kSum))(T(x), T(y)), 1e-12, 1e-12);
  expect_same(nb::nn::L1Loss()(x, y), torch::nn::L1Loss()(T(x), T(y)), 1e-12, 1e-12);
  expect_same(nb::nn::SmoothL1Loss(nb::nn::SmoothL1LossOptions().beta(0.5))(x, y),
              torch::nn::SmoothL1Loss(torch::nn::SmoothL1LossOptions().beta(0.5))(T(x), T(y)), 1e-12, 1e-12);
  expect_same(nb::nn::HuberLoss(nb::nn::HuberLossOptions().delta(0.5).reduction(nb::kNone))(x, y),
              torch::nn::HuberLoss(torch::nn::HuberLossOptions().delta(0.5).reduction(torch::kNone))(T(x), T(y)), 1e-12,
              1e-12);
  expect_same(nb::nn::BCELoss(nb::nn::BCELossOptions().weight(w))(p, q),
              torch::nn::BCELoss(torch::nn::BCELossOptions().weight(T(w)))(T(p), T(q)), 1e-12, 1e-12);
  nb::nn::BCEWithLogitsLoss bl(nb::nn::BCEWithLogitsLossOptions().pos_weight(w));
  torch::nn::BCEWithLogitsLoss tbl(torch::nn::BCEWithLogitsLossOptions().pos_weight(T(w)));
  expect_same(bl(x, q), tbl(T(x), T(q)), 1e-12, 1e-12);
  EXPECT_EQ(bl.named_buffers().keys(), (std::vector<std::string>{"pos_weight"}));
  nb::nn::CrossEntropyLoss ce(nb::nn::CrossEntropyLossOptions().weight(w).label_smoothing(0.1).ignore_index(1));
  torch::nn::CrossEntropyLoss tce(torch::nn::CrossEntropyLossOptions().weight(T(w)).label_smoothing(0.1).ignore_index(1));
  expect_same(ce(x, cls), tce(T(x), T(cls)), 1e-12, 1e-12);
  EXPECT_EQ(ce.named_buffers().keys(), (std::vector<std::string>{"weight"}));
  nb::Tensor lp = nb::log_softmax(x, 1);
  expect_same(nb::nn::NLLLoss(nb::nn::NLLLossOptions().reduction(nb::kSum))(lp, cls),
              torch::nn::NLLLoss(torch::nn::NLLLossOptions().reduction(torch::kSum))(T(lp), T(cls)), 1e-12, 1e-12);
  EXPECT_EQ(nb::nn::CrossEntropyLoss().named_buffers().size(), 0u);  // no weight: no buffer, as PyTorch's None
}

// The small tensor methods LibTorch code calls (issue 13): norm (p, dims, keepdim), all / any,
// isclose / allclose / equal with NaN and infinities, repeat, single-int factory sizes.
TEST(LibTorch, NormAllAnyCloseRepeat) {
  nb::manual_seed(23);
  nb::Tensor x = nb::randn({3, 4, 2}, nb::kFloat64);
  const double inf_ = std::numeric_limits<double>::infinity();
  for (double p : {2.0, 1.0, 3.0, 0.5, inf_, -inf_, 0.0}) {
    SCOPED_TRACE(p);
    expect_same(x.norm(p), T(x).norm(p), 1e-12, 1e-12);
    expect_same(x.norm(p, {1}, true), T(x).norm(p, std::vector<int64_t>{1}, true), 1e-12, 1e-12);
    expect_same(x.norm(p, {0, 2}), T(x).norm(p, std::vector<int64_t>{0, 2}), 1e-12, 1e-12);
  }
  // gradients, also at an all-zero row (0, not NaN, on both sides)
  nb::Tensor xz = nb::cat({x.reshape({6, 4}), nb::zeros({1, 4}, nb::kFloat64)}, 0).requires_grad_();
  torch::Tensor tz = T(xz).requires_grad_();
  for (double p : {2.0, 3.0}) {
    nb::Tensor g = nb::randn({7}, nb::kFloat64);
    (xz.norm(p, {1}) * g).sum().backward();
    (tz.norm(p, std::vector<int64_t>{1}) * T(g)).sum().backward();
    expect_same(xz.grad(), tz.grad(), 1e-10, 1e-12);
    xz.grad().zero_();
    tz.grad().zero_();
  }
  nb::Tensor b = nb::tensor({1.0, 0.0, 2.0, 0.0, 0.0, 0.0}, nb::kFloat64).reshape({2, 3});
  expect_same(b.all(), T(b).all());
  expect_same(b.any(), T(b).any());
  expect_same(b.any(1), T(b).any(1));
  expect_same(b.all(0, true), T(b).all(0, true));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  nb::Tensor u = nb::tensor({1.0, 1.0 + 1e-6, inf, inf, -inf, nan, nan, 1e10}, nb::kFloat64);
  nb::Tensor v = nb::tensor({1.0, 1.0, inf, -inf, -inf, nan, 1.0, 1e10 + 1e4}, nb::kFloat64);
  for (bool en : {false, true}) {
    expect_same(nb::isclose(u, v, 1e-5, 1e-8, en), torch::isclose(T(u), T(v), 1e-5, 1e-8, en));
    EXPECT_EQ(nb::allclose(u, v, 1e-5, 1e-8, en), torch::allclose(T(u), T(v), 1e-5, 1e-8, en));
  }
  expect_same(u.isclose(v, 0.0, 0.0), T(u).isclose(T(v), 0.0, 0.0));
  EXPECT_EQ(nb::allclose(x, x + 1e-9), torch::allclose(T(x), T(x) + 1e-9));
  EXPECT_EQ(nb::equal(x, x.clone()), torch::equal(T(x), T(x).clone()));
  EXPECT_EQ(nb::equal(u, u), torch::equal(T(u), T(u)));  // NaN != NaN: false on both
  EXPECT_EQ(x.equal(x.reshape({3, 8})), torch::equal(T(x), T(x).reshape({3, 8})));
  expect_same(x.repeat({2, 1, 3}), T(x).repeat({2, 1, 3}));
  expect_same(x.repeat({2, 1, 1, 3}), T(x).repeat({2, 1, 1, 3}));
  expect_same(nb::zeros(5), torch::zeros(5));
  expect_same(nb::ones(3, nb::kFloat64), torch::ones(3, torch::kDouble));
  EXPECT_EQ(nb::randn(4, nb::requires_grad()).requires_grad(), torch::randn(4, torch::requires_grad()).requires_grad());
  nb::Tensor e = nb::empty(1000).uniform_(0.8, 1.0);
  EXPECT_GE(e.min().item<double>(), 0.8);
  EXPECT_LT(e.max().item<double>(), 1.0);
  EXPECT_NEAR(e.mean().item<double>(), 0.9, 0.01);  // 1000 draws: sd of the mean 0.0018
  nb::Tensor nrm = nb::empty(4000, nb::kFloat64).normal_(5.0, 2.0);
  EXPECT_NEAR(nrm.mean().item<double>(), 5.0, 0.15);  // sd of the mean 0.032
  EXPECT_NEAR(nrm.std().item<double>(), 2.0, 0.15);
}

// ---- matmul and gradients ----------------------------------------------------------------------

TEST(LibTorch, MatmulBroadcast) {
  auto check = [](const nb::Shape& sa, const nb::Shape& sb) {
    SCOPED_TRACE(nb::shape_str(sa) + " @ " + nb::shape_str(sb));
    nb::Tensor a = randn_nb(sa, nb::kFloat64).requires_grad_(), b = randn_nb(sb, nb::kFloat64).requires_grad_();
    torch::Tensor ta = T(a).requires_grad_(), tb = T(b).requires_grad_();
    nb::Tensor y = nb::matmul(a, b);
    torch::Tensor ty = torch::matmul(ta, tb);
    expect_same(y, ty, 1e-12, 1e-12);
    (y * y).sum().backward();
    (ty * ty).sum().backward();
    expect_same(a.grad(), ta.grad(), 1e-10, 1e-10);
    expect_same(b.grad(), tb.grad(), 1e-10, 1e-10);
  };
  check({2, 1, 3, 4}, {5, 4, 2});
  check({3, 4}, {2, 4, 5});
  check({4}, {2, 4, 3});
  check({2, 3, 4}, {4});
  check({4}, {4});
  check({1, 3, 4}, {2, 4, 2});
  nb::Tensor i = nb::tensor({1, 2, 3, 4}, nb::kInt32).reshape({2, 2});  // integer matmul stays int
  expect_same(nb::matmul(i, i), torch::matmul(T(i), T(i)));
}

TEST(LibTorch, MlpGradients) {
  // x[8,5] -> Linear(5,16) -> gelu -> Linear(16,3) -> cross_entropy(label_smoothing 0.1)
  nb::Tensor x = randn_nb({8, 5}, nb::kFloat64);
  nb::Tensor y = nb::tensor({0, 1, 2, 2, 1, 0, 1, 2}, nb::kInt64);
  std::vector<nb::Tensor> p = {randn_nb({5, 16}, nb::kFloat64) * 0.5, randn_nb({16}, nb::kFloat64) * 0.1,
                               randn_nb({16, 3}, nb::kFloat64) * 0.5, randn_nb({3}, nb::kFloat64) * 0.1};
  std::vector<torch::Tensor> tp;
  for (auto& t : p) {
    tp.push_back(T(t).requires_grad_());
    t.requires_grad_();
  }
  nb::CrossEntropyOptions o;
  o.label_smoothing = 0.1;
  nb::Tensor loss = nb::cross_entropy(nb::matmul(nb::gelu(nb::matmul(x, p[0]) + p[1]), p[2]) + p[3], y, o);
  torch::Tensor tloss = torch::nn::functional::cross_entropy(
      torch::matmul(torch::gelu(torch::matmul(T(x), tp[0]) + tp[1]), tp[2]) + tp[3], T(y),
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1));
  expect_same(loss, tloss, 1e-12, 1e-12);
  loss.backward();
  tloss.backward();
  for (size_t k = 0; k < p.size(); ++k) {
    SCOPED_TRACE(k);
    expect_same(p[k].grad(), tp[k].grad(), 1e-9, 1e-12);
  }
}

// ---- NaN, ties, integer semantics --------------------------------------------------------------

TEST(LibTorch, MaxMinArgmaxTiesNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  nb::Tensor ties = nb::tensor({1.0, 3.0, 3.0, 2.0, 1.0, 1.0}, nb::kFloat32).reshape({2, 3});
  nb::Tensor withnan = nb::tensor({1.0, nan, 3.0, 2.0, 5.0, nan}, nb::kFloat32).reshape({2, 3});
  for (const nb::Tensor& x : {ties, withnan}) {
    SCOPED_TRACE(x.str());
    torch::Tensor tx = T(x);
    expect_same(x.max(), tx.max());
    expect_same(x.min(), tx.min());
    expect_same(x.argmax(), tx.argmax(), 0, 0);
    expect_same(x.argmin(), tx.argmin(), 0, 0);
    for (int64_t d : {0, 1}) {
      auto [v, i] = x.max(d);
      auto [tv, ti] = tx.max(d);
      expect_same(v, tv);
      expect_same(i, ti, 0, 0);
      auto [v2, i2] = x.min(d);
      auto [tv2, ti2] = tx.min(d);
      expect_same(v2, tv2);
      expect_same(i2, ti2, 0, 0);
      expect_same(x.argmax(d), tx.argmax(d), 0, 0);
      expect_same(x.amax({d}), tx.amax({d}));
    }
  }
  nb::Tensor a = nb::tensor({1.0, nan, 2.0}, nb::kFloat32), b = nb::tensor({nan, 0.0, 3.0}, nb::kFloat32);
  expect_same(nb::maximum(a, b), torch::maximum(T(a), T(b)));
  expect_same(nb::minimum(a, b), torch::minimum(T(a), T(b)));
}

TEST(LibTorch, ClampNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  nb::Tensor x = nb::tensor({nan, -2.0, 0.5, 5.0}, nb::kFloat32);
  expect_same(x.clamp(-1.0, 1.0), T(x).clamp(-1.0, 1.0));
  expect_same(x.clamp_min(0.0), T(x).clamp_min(0.0));
  expect_same(x.clamp_max(0.0), T(x).clamp_max(0.0));
  nb::Tensor i = nb::tensor({-5, 0, 7}, nb::kInt32);
  expect_same(i.clamp(-1, 3), T(i).clamp(-1, 3));
}

TEST(LibTorch, PowNegativeBase) {
  nb::Tensor x = nb::tensor({-2.0, -0.5, 0.0, 3.0}, nb::kFloat32);
  for (double e : {2.0, 3.0, 0.5, -1.0, 0.0}) {
    SCOPED_TRACE(e);
    expect_same(x.pow(e), T(x).pow(e));
  }
  nb::Tensor e = nb::tensor({2.0, 0.5, -2.0, 1.5}, nb::kFloat32);
  expect_same(x.pow(e), T(x).pow(T(e)));
  nb::Tensor i = nb::tensor({-2, 3, -1}, nb::kInt64);
  expect_same(i.pow(3), T(i).pow(3));
  expect_same(nb::pow(2.0, x), torch::pow(2.0, T(x)));
}

TEST(LibTorch, IntDivisionGivesFloat) {
  nb::Tensor a = nb::tensor({7, -7, 6}, nb::kInt32), b = nb::tensor({2, 2, 3}, nb::kInt32);
  expect_same(a / b, T(a) / T(b));
  expect_same(a / 4, T(a) / 4);
  nb::Tensor u = nb::tensor({7, 9}, nb::kUInt8);
  expect_same(u / nb::tensor({2, 4}, nb::kInt64), T(u) / torch::tensor({2, 4}, torch::kLong));
}

TEST(LibTorch, IntSumGivesInt64) {
  nb::Tensor i = nb::tensor({2000000000, 2000000000, 5}, nb::kInt32);  // overflows int32
  expect_same(i.sum(), T(i).sum());
  expect_same(i.reshape({3, 1}).sum({1}), T(i).reshape({3, 1}).sum({1}));
  nb::Tensor b = nb::tensor({true, true, false}, nb::kBool);
  expect_same(b.sum(), T(b).sum());
  nb::Tensor u = nb::tensor({200, 200}, nb::kUInt8);
  expect_same(u.sum(), T(u).sum());
  expect_same(i.prod(), T(i).prod());
}

// LibTorch's C++ printing differs from Python's; nabla follows Python's layout, so compare with
// what `print(torch.tensor(...))` shows -- except that the dtype is named without "torch.".
TEST(LibTorch, PrintFormat) {
  EXPECT_EQ(nb::tensor({1.0, 2.0, 3.0}, nb::kFloat32).str(), "tensor([1., 2., 3.])");
  EXPECT_EQ(nb::tensor({1, 2, 3}, nb::kInt64).str(), "tensor([1, 2, 3])");
  EXPECT_EQ(nb::tensor({1, -20}, nb::kInt32).str(), "tensor([  1, -20], dtype=int32)");
  EXPECT_EQ(nb::tensor({0.5, -1.25}, nb::kFloat64).str(), "tensor([ 0.5000, -1.2500], dtype=float64)");
  EXPECT_EQ(nb::tensor({true, false}, nb::kBool).str(), "tensor([ True, False])");
  EXPECT_EQ(nb::scalar_tensor(2.5).str(), "tensor(2.5000)");
}

#endif  // NABLA_HAVE_LIBTORCH
