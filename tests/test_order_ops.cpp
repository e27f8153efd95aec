// The edges of the ops GPT-2 sampling and attention need (issue 16) that the parity table does
// not reach: NaN and tie order of sort / topk, stability, k = 0, 0-dim and empty inputs,
// diagonals beyond the size, integer and bool cumsum, node names, errors, autocast, embedding's
// padding_idx, and multinomial: exact reproduction under manual_seed and a generator, and
// chi-square checks of its distributions with replacement, without, and of ordered pairs.

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "test_util.hpp"

namespace nabla_test {
namespace {

namespace amp = nabla::amp;
#define EXPECT_THROWS(E, expr, ...) EXPECT_TRUE(throws_with<E>([&] { (void)(expr); }, {__VA_ARGS__}))

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Tensor f64(std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, kFloat64); }
std::vector<int64_t> ints(const Tensor& t) { return t.to(kInt64).contiguous().to_vector<int64_t>(); }

// ---- tril / triu ----------------------------------------------------------------------------------

TEST(Triangle, ValuesNamesAndInPlace) {
  Tensor x = arange(1, 13, 1, kFloat64).reshape({3, 4});
  EXPECT_EQ(ints(x.tril()), (std::vector<int64_t>{1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0}));
  EXPECT_EQ(ints(x.triu(1)), (std::vector<int64_t>{0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12}));
  EXPECT_EQ(ints(tril(x, -1)), (std::vector<int64_t>{0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0}));
  EXPECT_TRUE(equal(tril(x, 3), x));               // beyond the last column: all kept
  EXPECT_TRUE(equal(triu(x, -3), x));              // below the last row: all kept
  EXPECT_EQ(triu(x, 4).sum().item<double>(), 0.0);  // above everything: nothing kept
  // non-contiguous input, batch dims, bool
  Tensor t = x.t();
  EXPECT_TRUE(equal(t.tril(), t.contiguous().tril()));
  Tensor b = ones({2, 3, 3}, kBool).triu();
  EXPECT_EQ(b.dtype(), kBool);
  EXPECT_EQ(b.to(kInt64).sum().item<int64_t>(), 12);
  // gradient: the same triangle of the output gradient
  Tensor w = x.clone().requires_grad_();
  Tensor y = w.tril(1);
  EXPECT_STREQ(y.grad_fn()->name(), "TrilBackward0");
  EXPECT_STREQ(w.triu().grad_fn()->name(), "TriuBackward0");
  y.backward(ones({3, 4}, kFloat64));
  EXPECT_TRUE(equal(w.grad(), ones({3, 4}, kFloat64).tril(1)));
  // in place: refused on a leaf that requires grad, recorded on a non-leaf
  EXPECT_THROWS(AutogradError, w.tril_(), "tril_");
  Tensor z = w * 2;
  z.triu_();
  z.sum().backward();
  EXPECT_TRUE(equal(w.grad(), ones({3, 4}, kFloat64).tril(1) + ones({3, 4}, kFloat64).triu() * 2));
  Tensor m = ones({2, 2});
  m.tril_();
  EXPECT_EQ(ints(m), (std::vector<int64_t>{1, 0, 1, 1}));
  EXPECT_THROWS(ShapeError, tril(ones({3})), "tril", "at least 2 dimensions", "[3]");
  EXPECT_THROWS(ShapeError, ones({}).triu(), "triu", "[]");
}

// ---- cumsum ---------------------------------------------------------------------------------------

TEST(Cumsum, DtypesAndBackward) {
  EXPECT_EQ(ints(cumsum(arange(1, 6), 0)), (std::vector<int64_t>{1, 3, 6, 10, 15}));
  EXPECT_EQ(cumsum(arange(1, 6).to(kInt32), 0).dtype(), kInt64);  // PyTorch promotes integers
  Tensor flags = from_vector(std::vector<bool>{true, false, true, true}, {4});
  EXPECT_EQ(flags.cumsum(0).dtype(), kInt64);
  EXPECT_EQ(ints(flags.cumsum(0)), (std::vector<int64_t>{1, 1, 2, 3}));
  EXPECT_EQ(ints(from_vector(std::vector<bool>{false, true, false}, {3}).cumsum(0, kBool)), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(arange(3).cumsum(0, kFloat32).dtype(), kFloat32);
  EXPECT_EQ(ones({2}, kFloat16).cumsum(0).dtype(), kFloat16);
  // 16-bit floats accumulate wider: the running count of 3000 ones is each count rounded once
  Tensor h = ones({3000}, kFloat16).cumsum(0);
  EXPECT_TRUE(equal(h, arange(1, 3001, 1, kFloat32).to(kFloat16)));
  // 0-dim, empty, negative dim, non-contiguous
  EXPECT_EQ(scalar_tensor(2.5).cumsum(0).item<double>(), 2.5);
  EXPECT_EQ(zeros({0, 3}).cumsum(-1).sizes(), (Shape{0, 3}));
  Tensor x = arange(12, kFloat64).reshape({3, 4});
  EXPECT_TRUE(equal(x.t().cumsum(-1), x.t().contiguous().cumsum(1)));
  EXPECT_EQ(ints(x.cumsum(-2).select(0, 2)), (std::vector<int64_t>{12, 15, 18, 21}));
  // backward: the prefix sum from the other end, to any order
  Tensor w = f64({1, 2, 3}).requires_grad_();
  Tensor y = w.cumsum(0);
  EXPECT_STREQ(y.grad_fn()->name(), "CumsumBackward0");
  y.backward(f64({1, 10, 100}));
  EXPECT_EQ(ints(w.grad()), (std::vector<int64_t>{111, 110, 100}));
  // a dtype conversion: the gradient comes back in the input's dtype
  Tensor v = ones({3}, kFloat32).requires_grad_();
  v.cumsum(0, kFloat64).sum().backward();
  EXPECT_EQ(v.grad().dtype(), kFloat32);
  EXPECT_EQ(ints(v.grad()), (std::vector<int64_t>{3, 2, 1}));
  EXPECT_THROWS(IndexError, x.cumsum(2), "cumsum", "2");
}

// ---- sort / argsort / topk ------------------------------------------------------------------------

TEST(Sort, NanLargestMinusZeroEqualStable) {
  //                0    1    2   3     4    5    6     7
  Tensor x = f64({3, kNaN, 1, -kInf, kInf, kNaN, -0.0, 0.0});
  for (DType dt : {kFloat64, kFloat32, kFloat16, kBFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    auto [v, i] = x.to(dt).sort();
    EXPECT_EQ(ints(i), (std::vector<int64_t>{3, 6, 7, 2, 0, 4, 1, 5}));
    EXPECT_TRUE(std::isnan(v[7].item<double>()));
    auto [vd, id] = x.to(dt).sort(/*stable=*/true, 0, /*descending=*/true);
    EXPECT_EQ(ints(id), (std::vector<int64_t>{1, 5, 4, 0, 2, 6, 7, 3}));
    EXPECT_EQ(ints(std::get<1>(x.to(dt).topk(3))), (std::vector<int64_t>{1, 5, 4}));
    EXPECT_EQ(ints(std::get<1>(x.to(dt).topk(3, 0, false))), (std::vector<int64_t>{3, 6, 7}));
  }
}

TEST(Sort, StableOnTiesAgainstStdStableSort) {
  auto g = rng_for("Sort.StableOnTies");
  std::uniform_int_distribution<int64_t> d(0, 4);
  for (int64_t n : {7, 300, 50257}) {  // 50257: GPT-2's vocabulary
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& e : v) e = d(g);
    for (bool desc : {false, true}) {
      std::vector<int64_t> order(v.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return desc ? v[a] > v[b] : v[a] < v[b]; });
      for (DType dt : {kInt64, kFloat32, kFloat16}) {
        Tensor x = from_vector(v, {n}, kInt64).to(dt);
        EXPECT_EQ(ints(std::get<1>(x.sort(0, desc))), order) << n << " " << dtype_name(dt) << " desc " << desc;
        EXPECT_EQ(ints(x.argsort(true, 0, desc)), order);
        std::vector<int64_t> first(order.begin(), order.begin() + std::min<int64_t>(n, 10));
        EXPECT_EQ(ints(std::get<1>(x.topk(std::min<int64_t>(n, 10), 0, desc))), first) << "ties by lower index";
      }
    }
  }
}

TEST(Sort, EdgesNamesAndErrors) {
  // 0-dim: one element; empty; bool; uint8; non-contiguous rows
  auto [v0, i0] = scalar_tensor(4.0).sort();
  EXPECT_EQ(v0.dim(), 0);
  EXPECT_EQ(i0.item<int64_t>(), 0);
  EXPECT_EQ(std::get<0>(scalar_tensor(4.0).topk(1)).item<double>(), 4.0);
  EXPECT_EQ(std::get<1>(zeros({3, 0}).sort(1)).sizes(), (Shape{3, 0}));
  EXPECT_EQ(ints(std::get<0>(from_vector(std::vector<bool>{true, false, true}, {3}).sort())),
            (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(ints(std::get<0>(from_vector(std::vector<int64_t>{200, 3, 17}, {3}).to(kUInt8).sort(0, true))),
            (std::vector<int64_t>{200, 17, 3}));
  Tensor x = randn({6, 5});
  EXPECT_TRUE(equal(std::get<0>(x.t().sort(0)), std::get<0>(x.t().contiguous().sort(0))));
  EXPECT_TRUE(equal(std::get<1>(x.t().topk(2, 1)), std::get<1>(x.t().contiguous().topk(2, 1))));
  // k = 0 and k = size
  auto [vk, ik] = x.topk(0);
  EXPECT_EQ(vk.sizes(), (Shape{6, 0}));
  EXPECT_EQ(ik.dtype(), kInt64);
  EXPECT_TRUE(equal(std::get<0>(x.topk(5)), std::get<0>(x.sort(-1, true))));
  // argsort's overloads: an integer is a dim, a bool is `stable`
  EXPECT_TRUE(equal(argsort(x, 0), std::get<1>(x.sort(0))));
  EXPECT_TRUE(equal(x.argsort(0, true), std::get<1>(x.sort(0, true))));
  EXPECT_TRUE(equal(argsort(x, true), std::get<1>(x.sort(-1))));
  // node names and gradients: scattered back through the indices
  Tensor w = f64({1, 5, 3, 4}).requires_grad_();
  auto [tv, ti] = w.topk(2);
  EXPECT_STREQ(tv.grad_fn()->name(), "TopkBackward0");
  EXPECT_FALSE(ti.requires_grad());
  tv.backward(f64({10, 20}));
  EXPECT_EQ(ints(w.grad()), (std::vector<int64_t>{0, 10, 0, 20}));
  EXPECT_STREQ(std::get<0>(w.sort()).grad_fn()->name(), "SortBackward0");
  EXPECT_STREQ(std::get<0>(w.sort(std::optional<bool>(false), 0)).grad_fn()->name(), "SortBackward1");
  EXPECT_FALSE(w.argsort().requires_grad());
  EXPECT_THROWS(IndexError, x.topk(6), "topk", "6", "[6, 5]");
  EXPECT_THROWS(IndexError, x.topk(-1), "topk", "-1");
  EXPECT_THROWS(IndexError, x.sort(2), "sort", "2");
}

// ---- multinomial ----------------------------------------------------------------------------------

// Pearson's chi-square of observed counts against expected probabilities (categories with
// probability 0 must have no count).
double chi_square(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n) {
  double chi = 0;
  for (size_t c = 0; c < p.size(); ++c) {
    if (p[c] == 0) {
      EXPECT_EQ(counts[c], 0) << "category " << c << " has probability 0";
      continue;
    }
    const double e = p[c] * static_cast<double>(n);
    chi += (static_cast<double>(counts[c]) - e) * (static_cast<double>(counts[c]) - e) / e;
  }
  return chi;
}
std::vector<int64_t> histogram(const Tensor& samples, int64_t categories) {
  std::vector<int64_t> counts(static_cast<size_t>(categories), 0);
  for (int64_t s : ints(samples)) ++counts[static_cast<size_t>(s)];
  return counts;
}

// Weights 1 : 2 : 3 : 4 with a zero weight among them, in several dtypes. Bounds are generous:
// chi-square with 3 degrees of freedom exceeds 30 with probability ~1e-6; the seed is fixed, so
// the counts are the same on every run.
TEST(Multinomial, DistributionsChiSquare) {
  const std::vector<double> w{1, 0, 2, 3, 4};
  std::vector<double> p;
  for (double x : w) p.push_back(x / 10);
  const int64_t n = 20000;
  for (DType dt : {kFloat32, kFloat64, kFloat16}) {
    SCOPED_TRACE(dtype_name(dt));
    manual_seed(1234);
    Tensor probs = from_vector(w, {5}, kFloat64).to(dt);
    // with replacement, one row: the cumulative-sum search
    Tensor s = multinomial(probs, n, true);
    EXPECT_EQ(s.sizes(), (Shape{n}));
    EXPECT_LT(chi_square(histogram(s, 5), p, n), 30.0);
    // one sample per row of many: the exponential race
    Tensor rows = probs.unsqueeze(0).expand({n, 5});
    EXPECT_LT(chi_square(histogram(multinomial(rows, 1), 5), p, n), 30.0);
    EXPECT_LT(chi_square(histogram(multinomial(rows, 1, true), 5), p, n), 30.0);
    // without replacement, two per row: ordered pairs (i, j) with p_i p_j / (1 - p_i), 12 cells
    Tensor pairs = multinomial(rows, 2);
    EXPECT_EQ(pairs.sizes(), (Shape{n, 2}));
    auto v = ints(pairs);
    std::vector<int64_t> counts(25, 0);
    std::vector<double> q(25, 0.0);
    for (int64_t r = 0; r < n; ++r) {
      ASSERT_NE(v[2 * r], v[2 * r + 1]) << "a category drawn twice without replacement";
      ++counts[static_cast<size_t>(v[2 * r] * 5 + v[2 * r + 1])];
    }
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 5; ++j)
        if (i != j) q[static_cast<size_t>(i * 5 + j)] = p[i] * p[j] / (1 - p[i]);
    EXPECT_LT(chi_square(counts, q, n), 60.0);  // 11 degrees of freedom: P(> 60) ~ 1e-8
  }
}

TEST(Multinomial, ReproducibleAndShapes) {
  Tensor probs = softmax(randn({4, 30}), 1);
  manual_seed(7);
  Tensor a = multinomial(probs, 5), ar = multinomial(probs, 50, true);
  manual_seed(7);
  EXPECT_TRUE(equal(a, multinomial(probs, 5)));
  EXPECT_TRUE(equal(ar, multinomial(probs, 50, true)));
  // a generator of its own: reproducible, and the global stream untouched by it
  Generator g1(99), g2(99);
  manual_seed(7);
  Tensor own = probs.multinomial(5, false, g1);
  Tensor after = multinomial(probs, 5);
  EXPECT_TRUE(equal(own, multinomial(probs, 5, false, g2)));
  EXPECT_TRUE(equal(after, a)) << "drawing from a generator moved the global one";
  // shapes, dtypes, every category once when num_samples == categories
  EXPECT_EQ(a.sizes(), (Shape{4, 5}));
  EXPECT_EQ(a.dtype(), kInt64);
  EXPECT_EQ(multinomial(probs[0], 3).sizes(), (Shape{3}));
  Tensor all = multinomial(probs, 30);
  for (int64_t r = 0; r < 4; ++r) {
    auto row = ints(all[r]);
    std::sort(row.begin(), row.end());
    for (int64_t c = 0; c < 30; ++c) EXPECT_EQ(row[c], c);
  }
  EXPECT_EQ(multinomial(probs, 100, true).sizes(), (Shape{4, 100}));  // more than categories: fine with replacement
  EXPECT_EQ(multinomial(zeros({0, 3}), 2).sizes(), (Shape{0, 2}));
  // zero weights are never drawn while a positive one is left; a one-hot row always gives its class
  Tensor onehot = one_hot(tensor({2, 0, 4}), 5).to(kFloat32);
  EXPECT_EQ(ints(multinomial(onehot, 1).squeeze(1)), (std::vector<int64_t>{2, 0, 4}));
  EXPECT_EQ(ints(multinomial(onehot, 3, true)), (std::vector<int64_t>{2, 2, 2, 0, 0, 0, 4, 4, 4}));
  Tensor two = from_vector(std::vector<double>{0, 5, 0, 1e-3}, {4}, kFloat64);
  for (int k = 0; k < 20; ++k) {
    auto s = ints(multinomial(two, 2));
    std::sort(s.begin(), s.end());
    EXPECT_EQ(s, (std::vector<int64_t>{1, 3}));
  }
  // non-contiguous weights
  Tensor t = probs.t().contiguous().t();
  manual_seed(3);
  Tensor nc = multinomial(t, 4);
  manual_seed(3);
  EXPECT_TRUE(equal(nc, multinomial(probs, 4)));
}

TEST(Multinomial, Errors) {
  EXPECT_THROWS(ValueError, multinomial(f64({0.5, -0.1}), 1), "multinomial", "< 0");
  EXPECT_THROWS(ValueError, multinomial(f64({0.5, kInf}), 1), "multinomial", "inf");
  EXPECT_THROWS(ValueError, multinomial(f64({0.5, kNaN}), 1, true), "multinomial", "nan");
  EXPECT_THROWS(ValueError, multinomial(from_vector(std::vector<double>{1, 2, 0, 0}, {2, 2}, kFloat64), 1), "multinomial",
                "sum of probabilities");
  EXPECT_THROWS(ValueError, multinomial(f64({1, 2, 3}), 4), "multinomial", "4", "without replacement");
  EXPECT_THROWS(ValueError, multinomial(f64({1, 2, 3}), 0), "multinomial", "0");
  EXPECT_THROWS(DTypeError, multinomial(tensor({1, 2}), 1), "multinomial", "int64");
  EXPECT_THROWS(ShapeError, multinomial(ones({2, 2, 2}), 1), "multinomial", "[2, 2, 2]");
  EXPECT_THROWS(ShapeError, multinomial(ones({}), 1), "multinomial", "[]");
}

// ---- bmm / addmm / baddbmm ------------------------------------------------------------------------

TEST(AddMatmul, BetaAlphaNamesGradientsErrors) {
  Tensor a = randn({2, 3, 4}, kFloat64), b = randn({2, 4, 5}, kFloat64);
  EXPECT_TRUE(allclose(bmm(a, b), matmul(a, b)));
  // beta = 0: self ignored, its NaN and inf included (PyTorch's rule)
  Tensor bad = full({3, 5}, kNaN, kFloat64);
  EXPECT_TRUE(allclose(baddbmm(bad, a, b, 0, 2), matmul(a, b) * 2));
  EXPECT_TRUE(allclose(addmm(bad, a[0], b[0], 0), matmul(a[0], b[0])));
  EXPECT_TRUE(allclose(addmm(full({5}, 1.0, kFloat64), a[0], b[0], 3, 0), full({3, 5}, 3.0, kFloat64)));
  // node names and the self gradient summed back to self's broadcast shape
  Tensor self = randn({5}, kFloat64).requires_grad_(), m1 = a[0].detach().requires_grad_(), m2 = b[0].detach().requires_grad_();
  Tensor y = addmm(self, m1, m2, 0.5, 2);
  EXPECT_STREQ(y.grad_fn()->name(), "AddmmBackward0");
  y.backward(ones({3, 5}, kFloat64));
  EXPECT_TRUE(allclose(self.grad(), full({5}, 1.5, kFloat64)));
  EXPECT_TRUE(allclose(m1.grad(), matmul(ones({3, 5}, kFloat64), m2.detach().t()) * 2));
  Tensor a2 = a.detach().requires_grad_();
  EXPECT_STREQ(baddbmm(zeros({1}, kFloat64), a2, b).grad_fn()->name(), "BaddbmmBackward0");
  EXPECT_STREQ(bmm(a2, b).grad_fn()->name(), "BmmBackward0");
  EXPECT_STREQ(a2.bmm(b).grad_fn()->name(), "BmmBackward0");
  // errors name the op and the shapes
  EXPECT_THROWS(ShapeError, bmm(a[0], b[0]), "bmm", "[3, 4]");
  EXPECT_THROWS(ShapeError, bmm(a, randn({3, 4, 5})), "bmm", "[2, 3, 4]", "[3, 4, 5]");
  EXPECT_THROWS(ShapeError, addmm(zeros({4}), a[0], b[0]), "addmm", "[4]", "[3, 5]");
  EXPECT_THROWS(ShapeError, addmm(zeros({5}), a[0], a[0]), "addmm", "[3, 4]");
  EXPECT_THROWS(ShapeError, baddbmm(zeros({5}), a[0], b[0]), "baddbmm", "3-D");
}

// ---- autocast: the aten names of PyTorch's lists ---------------------------------------------------

TEST(OrderOpsAutocast, ListedOpsAreCast) {
  Tensor a = randn({2, 3, 4}), b = randn({2, 4, 5}), s = randn({5});
  {
    amp::autocast ac(kCPU);  // bfloat16
    EXPECT_EQ(bmm(a, b).dtype(), kBFloat16);
    EXPECT_EQ(baddbmm(s, a, b).dtype(), kBFloat16);
    EXPECT_EQ(addmm(s, a[0], b[0]).dtype(), kBFloat16);
    EXPECT_EQ(cumsum(a.to(kBFloat16), 1).dtype(), kBFloat16);  // on no CPU list
    EXPECT_EQ(std::get<0>(a.topk(2)).dtype(), kFloat32);
  }
  amp::detail::TablesFor cuda_tables(kCUDA);
  amp::autocast ac(kCPU, kFloat16);
  EXPECT_EQ(bmm(a, b).dtype(), kFloat16);
  EXPECT_EQ(addmm(s, a[0], b[0]).dtype(), kFloat16);
  EXPECT_EQ(baddbmm(s, a, b).dtype(), kFloat16);
  // fp32_set_opt_dtype: float32 unless the caller names a dtype
  EXPECT_EQ(cumsum(a.to(kFloat16), 1).dtype(), kFloat32);
  EXPECT_EQ(cumsum(a.to(kFloat16), 1, kFloat16).dtype(), kFloat16);
  EXPECT_EQ(cumsum(arange(3), 0).dtype(), kInt64);
}

// ---- embedding padding_idx ------------------------------------------------------------------------

TEST(EmbeddingPadding, ZeroRowNoGradient) {
  nn::Embedding e(nn::EmbeddingOptions(6, 3).padding_idx(-2));
  EXPECT_EQ(*e->padding_idx, 4);
  EXPECT_EQ(e->weight[4].abs().sum().item<double>(), 0.0);
  EXPECT_GT(e->weight[3].abs().sum().item<double>(), 0.0);
  EXPECT_EQ(e.str(), "Embedding(6, 3, padding_idx=4)");
  {
    NoGradGuard ng;
    e->weight[4].fill_(2.0);  // a padding row set later is still read forward, still gets no gradient
  }
  Tensor idx = from_vector(std::vector<int64_t>{4, 1, 4, 1, 0, 5}, {2, 3}, kInt64);
  Tensor out = e.forward(idx);
  EXPECT_EQ(out.sizes(), (Shape{2, 3, 3}));
  EXPECT_STREQ(out.grad_fn()->name(), "EmbeddingBackward0");
  EXPECT_EQ(out[0][0].sum().item<double>(), 6.0);
  out.backward(ones({2, 3, 3}));
  Tensor g = e->weight.grad();
  EXPECT_EQ(ints(g.select(1, 0)), (std::vector<int64_t>{1, 2, 0, 0, 0, 1}));
  // the functional forms: positional and LibTorch's options
  Tensor w = randn({5, 2}).requires_grad_();
  nn::functional::embedding(tensor({0, 3, 3}), w, nn::functional::EmbeddingFuncOptions().padding_idx(3)).sum().backward();
  EXPECT_EQ(ints(w.grad().select(1, 1)), (std::vector<int64_t>{1, 0, 0, 0, 0}));
  EXPECT_THROWS(IndexError, nn::functional::embedding(tensor({0}), w, 5), "embedding", "padding_idx", "5");
  EXPECT_THROWS(ValueError, nn::Embedding(nn::EmbeddingOptions(3, 2).padding_idx(-4)), "Embedding", "padding_idx");
  // without padding: repeated indices accumulate, the gradient differentiates again
  Tensor v = randn({4, 2}, kFloat64).requires_grad_();
  Tensor ix = tensor({1, 1, 3});
  auto gs = autograd::grad({(nn::functional::embedding(ix, v) * nn::functional::embedding(ix, v)).sum()}, {v}, {},
                           std::nullopt, true);
  EXPECT_TRUE(allclose(gs[0][1], v.detach()[1] * 4));
  EXPECT_TRUE(gs[0].requires_grad());
}

}  // namespace
}  // namespace nabla_test
