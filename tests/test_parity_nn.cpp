// Parity rows for nn::functional (linear, layer_norm, embedding, flatten) against float64 loop
// references, and dropout's statistics, scaling, gradient and cross-device mask rule.

#include <cmath>

#include "parity.hpp"

namespace nabla_test {
namespace {

namespace F = nabla::nn::functional;

// out[..., o] = sum_i x[..., i] w[o, i] (+ b[o])
Ref ref_linear(const Ref& x, const Ref& w, const Ref* b) {
  const int64_t in = w.shape[1], out = w.shape[0];
  Shape s = x.shape;
  s.back() = out;
  Ref r(s);
  const int64_t rows = x.numel() / in;
  for (int64_t n = 0; n < rows; ++n)
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? b->v[static_cast<size_t>(o)] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += x.v[static_cast<size_t>(n * in + i)] * w.v[static_cast<size_t>(o * in + i)];
      r.v[static_cast<size_t>(n * out + o)] = acc;
    }
  return r;
}

// Normalises each group of the last `inner` elements (biased variance), then affine.
Ref ref_layer_norm(const Ref& x, int64_t inner, const Ref* w, const Ref* b, double eps) {
  Ref r = x;
  for (int64_t g = 0; g < x.numel() / inner; ++g) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < inner; ++i) mean += x.v[static_cast<size_t>(g * inner + i)];
    mean /= static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) {
      double d = x.v[static_cast<size_t>(g * inner + i)] - mean;
      var += d * d;
    }
    var /= static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) {
      double y = (x.v[static_cast<size_t>(g * inner + i)] - mean) / std::sqrt(var + eps);
      if (w) y *= w->v[static_cast<size_t>(i)];
      if (b) y += b->v[static_cast<size_t>(i)];
      r.v[static_cast<size_t>(g * inner + i)] = y;
    }
  }
  return r;
}

const RegisterParity rows([](std::vector<ParityCase>& t) {
  t.push_back({"linear", "bias", {in({5, 4}), in({3, 4}), in({3})},
               [](const TensorList& x) { return F::linear(x[0], x[1], x[2]); },
               [](const std::vector<Ref>& r) { return ref_linear(r[0], r[1], &r[2]); }, {kFloat32, kFloat64}, true, true});
  t.push_back({"linear", "batched_3d", {in({2, 3, 4}), in({6, 4}), in({6})},
               [](const TensorList& x) { return F::linear(x[0], x[1], x[2]); },
               [](const std::vector<Ref>& r) { return ref_linear(r[0], r[1], &r[2]); }});
  t.push_back({"linear", "no_bias_1d", {in({4}), in({3, 4})}, [](const TensorList& x) { return F::linear(x[0], x[1]); },
               [](const std::vector<Ref>& r) { return ref_linear(r[0], r[1], nullptr); }});
  t.back().fused = "none";  // no bias: a plain matmul
  t.push_back({"linear", "empty_batch", {in({0, 4}), in({3, 4}), in({3})},
               [](const TensorList& x) { return F::linear(x[0], x[1], x[2]); },
               [](const std::vector<Ref>& r) { return ref_linear(r[0], r[1], &r[2]); }});
  t.back().fused = "none";  // nothing to compute: the composite's empty matmul

  t.push_back({"layer_norm", "last_dim_affine", {in({4, 6}), in({6}), in({6})},
               [](const TensorList& x) { return F::layer_norm(x[0], {6}, x[1], x[2], 1e-5); },
               [](const std::vector<Ref>& r) { return ref_layer_norm(r[0], 6, &r[1], &r[2], 1e-5); },
               {kFloat32, kFloat64}, true, true, true, 10.0});
  t.push_back({"layer_norm", "last_two_dims_affine", {in({2, 3, 4}), in({3, 4}), in({3, 4})},
               [](const TensorList& x) { return F::layer_norm(x[0], {3, 4}, x[1], x[2], 1e-5); },
               [](const std::vector<Ref>& r) { return ref_layer_norm(r[0], 12, &r[1], &r[2], 1e-5); },
               {kFloat32, kFloat64}, true, false, true, 10.0});
  t.push_back({"layer_norm", "no_affine", {in({3, 5})}, [](const TensorList& x) { return F::layer_norm(x[0], {5}); },
               [](const std::vector<Ref>& r) { return ref_layer_norm(r[0], 5, nullptr, nullptr, 1e-5); },
               {kFloat32, kFloat64}, true, false, true, 10.0});

  auto embed_ref = [](const std::vector<Ref>& r) {
    const Ref &idx = r[0], &w = r[1];
    const int64_t dim = w.shape[1];
    Shape s = idx.shape;
    s.push_back(dim);
    Ref out(s);
    for (int64_t k = 0; k < idx.numel(); ++k)
      for (int64_t j = 0; j < dim; ++j)
        out.v[static_cast<size_t>(k * dim + j)] = w.v[static_cast<size_t>(static_cast<int64_t>(idx.v[k]) * dim + j)];
    return out;
  };
  // repeated indices (6 draws from 4 rows) check that the gradient sums into a row
  t.push_back({"embedding", "2d_indices", {index_in({2, 3}, 4), in({4, 5})},
               [](const TensorList& x) { return F::embedding(x[0], x[1]); }, embed_ref});
  t.push_back({"embedding", "1d_indices", {index_in({7}, 3), in({3, 2})},
               [](const TensorList& x) { return F::embedding(x[0], x[1]); }, embed_ref});

  t.push_back({"flatten", "middle", {in({2, 3, 4, 2})}, [](const TensorList& x) { return F::flatten(x[0], 1, 2); },
               [](const std::vector<Ref>& r) { return Ref(Shape{2, 12, 2}, r[0].v); }});
  t.push_back({"flatten", "default", {in({3, 2, 2})}, [](const TensorList& x) { return F::flatten(x[0]); },
               [](const std::vector<Ref>& r) { return Ref(Shape{3, 4}, r[0].v); }});
});

// ---- dropout: random, so checked by its properties ----------------------------------------------

TEST(Dropout, MaskStatisticsAndScaling) {
  for (double p : {0.1, 0.5, 0.8}) {
    for (DType dt : {kFloat32, kFloat64}) {
      manual_seed(1234);
      Tensor x = ones({200, 500}, dt) * 3.0;
      Tensor y = F::dropout(x, p, true);
      auto v = y.to_vector<double>();
      int64_t kept = 0;
      const double scaled = 3.0 / (1.0 - p);
      for (double e : v) {
        if (e != 0.0) {
          ++kept;
          ASSERT_NEAR(e, scaled, scaled * (dt == kFloat32 ? 1e-6 : 1e-12)) << "kept entries are scaled by 1/(1-p)";
        }
      }
      const double n = static_cast<double>(v.size());
      const double frac = static_cast<double>(kept) / n;
      const double sd = std::sqrt(p * (1 - p) / n);
      EXPECT_NEAR(frac, 1.0 - p, 6 * sd) << "p=" << p;  // 6 sigma: a false alarm is ~1e-9
      EXPECT_NEAR(y.mean().item<double>(), 3.0, 6 * sd * scaled) << "the expectation is preserved";
    }
  }
}

TEST(Dropout, GradientIsMaskTimesScale) {
  manual_seed(77);
  const double p = 0.3;
  Tensor x = randn({50, 40}, kFloat64).requires_grad_();
  Tensor y = F::dropout(x, p, true);
  Tensor g = randn({50, 40}, kFloat64);
  y.backward(g);
  Tensor kept = y.detach().ne(zeros_like(y.detach()));
  Tensor expected = where(kept, g / (1.0 - p), zeros_like(g));
  EXPECT_TRUE(all_close(x.grad(), expected, 1e-12, 1e-12));
}

TEST(Dropout, SameSeedSameMaskAndEvalIsIdentity) {
  Tensor x = randn({64, 33});
  manual_seed(5);
  Tensor a = F::dropout(x, 0.5, true);
  manual_seed(5);
  Tensor b = F::dropout(x, 0.5, true);
  EXPECT_TRUE(all_equal(a, b));
  // the mask is rand() >= p, and rand is Philox: element i depends only on (seed, offset, i),
  // which is why the same seed gives the same mask on a CUDA device (checked below when present)
  manual_seed(5);
  Tensor mask = F::dropout_mask({64, 33}, 0.5);
  EXPECT_TRUE(all_equal(a.ne(zeros_like(a)), mask.logical_and(x.ne(zeros_like(x)))));
  EXPECT_TRUE(F::dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(all_equal(F::dropout(x, 0.0, true), x));
  EXPECT_TRUE(all_equal(F::dropout(x, 1.0, true), zeros_like(x)));
  EXPECT_THROW(F::dropout(x, 1.5, true), ValueError);
  if (cuda::is_available()) {
    manual_seed(5);
    Tensor c = F::dropout(x.to(Device::cuda()), 0.5, true);
    EXPECT_TRUE(all_close(c, a, 1e-6, 1e-6)) << "CUDA dropout must use the CPU's mask for the same seed";
  }
}

TEST(Dropout, ModuleFollowsTrainEval) {
  nn::Dropout d(0.5);
  Tensor x = ones({1000});
  EXPECT_FALSE(all_equal(d.forward(x), x));
  d.eval();
  EXPECT_TRUE(all_equal(d.forward(x), x));
}

}  // namespace
}  // namespace nabla_test
