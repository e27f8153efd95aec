// Parity rows for matmul / mm (every rank combination, broadcast batches, empty K, M, N), linear
// in bfloat16, and the losses (mse_loss, nll_loss, cross_entropy with weights, ignore_index, label
// smoothing and probability targets; l1, smooth_l1, huber, binary cross-entropy with and without
// logits) under each reduction.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

const RegisterParity matmuls([](std::vector<ParityCase>& t) {
  RowFn mm_fn = [](const TensorList& x) { return matmul(x[0], x[1]); };
  RefFn mm_ref = [](const std::vector<Ref>& r) { return ref_matmul_any(r[0], r[1]); };
  t.push_back(row("matmul", "1d_1d", {in({5}), in({5})}, mm_fn, mm_ref, with_grad2(kWithHalf)));
  t.push_back(row("matmul", "1d_2d", {in({4}), in({4, 3})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "2d_1d", {in({3, 4}), in({4})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "2d_2d", {in({3, 4}), in({4, 5})}, mm_fn, mm_ref, with_grad2(kWithHalf)));
  t.push_back(row("matmul", "batched", {in({2, 3, 4}), in({2, 4, 2})}, mm_fn, mm_ref, RowOpts{kWithHalf}));
  t.push_back(row("matmul", "broadcast_batch", {in({3, 1, 2, 3}), in({1, 2, 3, 2})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "batched_2d", {in({2, 3, 4}), in({4, 2})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "2d_batched", {in({3, 4}), in({2, 4, 2})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "batched_1d", {in({2, 3, 4}), in({4})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "1d_batched", {in({4}), in({2, 4, 3})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "size1_dims", {in({1, 4}), in({4, 1})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "K0", {in({3, 0}), in({0, 4})}, mm_fn, mm_ref, RowOpts{kWithHalf}));
  t.push_back(row("matmul", "K0_1d", {in({0}), in({0})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "M0", {in({0, 4}), in({4, 3})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "N0", {in({3, 4}), in({4, 0})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "batch0", {in({0, 2, 3}), in({3, 2})}, mm_fn, mm_ref));
  t.push_back(row("matmul", "17x33_33x19", {in({17, 33}), in({33, 19})}, mm_fn, mm_ref, forward_only(kWithHalf)));
  t.push_back(row("matmul", "batched_large", {in({3, 17, 33}), in({33, 5})}, mm_fn, mm_ref, forward_only(kWithHalf)));

  RowFn mm2 = [](const TensorList& x) { return mm(x[0], x[1]); };
  RefFn mm2_ref = [](const std::vector<Ref>& r) { return ref_matmul(r[0], r[1]); };
  t.push_back(row("mm", "3x4_4x5", {in({3, 4}), in({4, 5})}, mm2, mm2_ref, with_grad2(kWithHalf)));
  t.push_back(row("mm", "K0", {in({2, 0}), in({0, 3})}, mm2, mm2_ref));
  t.push_back(row("mm", "17x33_33x7", {in({17, 33}), in({33, 7})}, mm2, mm2_ref, forward_only(kWithHalf)));
  t.push_back(row("mm", "method_transposed", {in({4, 3}), in({4, 5})},
                  [](const TensorList& x) { return x[0].t().mm(x[1]); },
                  [](const std::vector<Ref>& r) { return ref_matmul(ref_permute(r[0], {1, 0}), r[1]); }));

  // linear in bfloat16: its fused CPU kernel (the bf16 GEMM, bias added before the one rounding)
  // against the reference and, in the fused column, against the composite (test_parity_nn.cpp
  // has the float rows).
  RowFn lin = [](const TensorList& x) { return nabla::nn::functional::linear(x[0], x[1], x[2]); };
  RefFn lin_ref = [](const std::vector<Ref>& r) {
    Ref x2 = r[0];
    x2.shape = Shape{r[0].numel() / r[0].shape.back(), r[0].shape.back()};
    Ref y = ref_zip(ref_matmul(x2, ref_permute(r[1], {1, 0})), r[2], [](double a, double b) { return a + b; });
    Shape s = r[0].shape;
    s.back() = r[1].shape[0];
    return ref_reshape(y, s);
  };
  const std::vector<DType> with_bf16 = {kFloat32, kFloat64, kBFloat16};
  t.push_back(row("linear", "bias_bf16", {in({6, 9}), in({5, 9}), in({5})}, lin, lin_ref, RowOpts{with_bf16}));
  t.push_back(row("linear", "batched_bf16", {in({2, 3, 40}), in({7, 40}), in({7})}, lin, lin_ref, RowOpts{with_bf16}));
});

// ---- losses -----------------------------------------------------------------------------------

// Rows of x with the classes on dim 1 ([C] is one row; [N, C, d...] gives N * d... rows, in
// the row-major order of the target).
std::vector<std::vector<double>> class_rows(const Ref& x) {
  if (x.dim() == 1) return {x.v};
  const int64_t N = x.shape[0], C = x.shape[1], inner = x.numel() / std::max<int64_t>(N * C, 1);
  std::vector<std::vector<double>> rows(static_cast<size_t>(N * inner), std::vector<double>(static_cast<size_t>(C)));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) rows[n * inner + i][c] = x.v[static_cast<size_t>((n * C + c) * inner + i)];
  return rows;
}
std::vector<double> log_softmax_row(const std::vector<double>& v) {
  double m = -INFINITY, s = 0;
  for (double a : v) m = std::max(m, a);
  for (double a : v) s += std::exp(a - m);
  std::vector<double> r;
  for (double a : v) r.push_back(a - m - std::log(s));
  return r;
}
Ref reduce_loss(const Ref& per, Reduction red, double denom) {
  if (red == kNone) return per;
  double s = fold_sum(per.v);
  return Ref(Shape{}, std::vector<double>{red == kSum ? s : s / denom});
}

// PyTorch's cross_entropy / nll_loss with class-index targets: optional weight, ignore_index,
// label smoothing; mean divides by the summed weight of the non-ignored targets.
Ref ref_class_loss(const Ref& x, const Ref& target, const Ref* weight, Reduction red, int64_t ignore, double eps,
                   bool apply_log_softmax) {
  auto rows = class_rows(x);
  const size_t C = x.dim() == 1 ? static_cast<size_t>(x.shape[0]) : static_cast<size_t>(x.shape[1]);
  Ref per(target.shape);
  double denom = 0;
  for (size_t n = 0; n < rows.size(); ++n) {
    auto lp = apply_log_softmax ? log_softmax_row(rows[n]) : rows[n];
    auto t = static_cast<int64_t>(target.v[n]);
    if (t == ignore) continue;
    auto w = [&](size_t c) { return weight ? weight->v[c] : 1.0; };
    double nll = -w(static_cast<size_t>(t)) * lp[static_cast<size_t>(t)], smooth = 0;
    for (size_t c = 0; c < C; ++c) smooth -= w(c) * lp[c];
    per.v[n] = (1 - eps) * nll + eps * smooth / static_cast<double>(C);
    denom += w(static_cast<size_t>(t));
  }
  return reduce_loss(per, red, denom);
}

// Probability targets: loss_n = -sum_c w_c t'_nc log p_nc with t' = t (1 - eps) + eps / C.
Ref ref_prob_loss(const Ref& x, const Ref& target, const Ref* weight, Reduction red, double eps) {
  auto rows = class_rows(x), trows = class_rows(target);
  const size_t C = rows.empty() ? 0 : rows[0].size();
  Shape s = x.shape;
  if (x.dim() == 1) s = Shape{};
  else s.erase(s.begin() + 1);
  Ref per(s);
  for (size_t n = 0; n < rows.size(); ++n) {
    auto lp = log_softmax_row(rows[n]);
    double l = 0;
    for (size_t c = 0; c < C; ++c)
      l -= (weight ? weight->v[c] : 1.0) * (trows[n][c] * (1 - eps) + eps / static_cast<double>(C)) * lp[c];
    per.v[n] = l;
  }
  return reduce_loss(per, red, static_cast<double>(rows.size()));
}

const char* red_name(Reduction r) { return r == kNone ? "none" : (r == kSum ? "sum" : "mean"); }

const RegisterParity losses([](std::vector<ParityCase>& t) {
  for (Reduction red : {kMean, kSum, kNone}) {
    std::string rn = red_name(red);
    // mse_loss
    RefFn mse_ref = [red](const std::vector<Ref>& r) {
      Ref per = ref_zip(r[0], r[1], [](double a, double b) { return (a - b) * (a - b); });
      return reduce_loss(per, red, static_cast<double>(per.numel()));
    };
    RowFn mse_fn = [red](const TensorList& x) { return mse_loss(x[0], x[1], red); };
    t.push_back(row("mse_loss", rn, {in({3, 4}), in({3, 4})}, mse_fn, mse_ref, RowOpts{kWithHalf, true, red == kMean, 1.0}));
    t.push_back(row("mse_loss", rn + "_0d", {in({}), in({})}, mse_fn, mse_ref));
    t.push_back(row("mse_loss", rn + "_empty", {in({0, 3}), in({0, 3})}, mse_fn, mse_ref));

    // nll_loss: input are log-probabilities (any values work for the check)
    RowFn nll_fn = [red](const TensorList& x) { return nll_loss(x[0], x[1], NllLossOptions{Tensor(), red}); };
    RefFn nll_ref = [red](const std::vector<Ref>& r) { return ref_class_loss(r[0], r[1], nullptr, red, -100, 0, false); };
    t.push_back(row("nll_loss", rn, {in({4, 5}), index_in({4}, 5)}, nll_fn, nll_ref));
    t.push_back(row("nll_loss", rn + "_1d", {in({5}), index_in({}, 5)}, nll_fn, nll_ref));
    t.push_back(row("nll_loss", rn + "_spatial", {in({2, 3, 2}), index_in({2, 2}, 3)}, nll_fn, nll_ref));
    t.push_back(row("nll_loss", rn + "_weight", {in({4, 5}), index_in({4}, 5), in({5}, Domain::Positive)},
                    [red](const TensorList& x) { return nll_loss(x[0], x[1], NllLossOptions{x[2], red}); },
                    [red](const std::vector<Ref>& r) { return ref_class_loss(r[0], r[1], &r[2], red, -100, 0, false); }));
    t.push_back(row("nll_loss", rn + "_ignore", {in({8, 3}), index_in({8}, 3)},
                    [red](const TensorList& x) { return nll_loss(x[0], x[1], NllLossOptions{Tensor(), red, 1}); },
                    [red](const std::vector<Ref>& r) { return ref_class_loss(r[0], r[1], nullptr, red, 1, 0, false); }));

    // cross_entropy with class indices
    auto ce = [red](double eps, int64_t ignore, bool weighted) {
      return RowFn([=](const TensorList& x) {
        return cross_entropy(x[0], x[1], CrossEntropyOptions{weighted ? x[2] : Tensor(), red, ignore, eps});
      });
    };
    auto ce_ref = [red](double eps, int64_t ignore, bool weighted) {
      return RefFn([=](const std::vector<Ref>& r) {
        return ref_class_loss(r[0], r[1], weighted ? &r[2] : nullptr, red, ignore, eps, true);
      });
    };
    t.push_back(row("cross_entropy", rn, {in({4, 5}), index_in({4}, 5)}, ce(0, -100, false), ce_ref(0, -100, false),
                    RowOpts{kWithHalf, true, red == kMean, 1.0}));
    t.push_back(row("cross_entropy", rn + "_1d", {in({5}), index_in({}, 5)}, ce(0, -100, false), ce_ref(0, -100, false)));
    t.push_back(row("cross_entropy", rn + "_spatial", {in({2, 3, 2}), index_in({2, 2}, 3)}, ce(0, -100, false),
                    ce_ref(0, -100, false)));
    t.push_back(row("cross_entropy", rn + "_weight", {in({4, 5}), index_in({4}, 5), in({5}, Domain::Positive)},
                    ce(0, -100, true), ce_ref(0, -100, true)));
    t.push_back(row("cross_entropy", rn + "_ignore", {in({8, 3}), index_in({8}, 3)}, ce(0, 2, false), ce_ref(0, 2, false)));
    t.push_back(row("cross_entropy", rn + "_smoothing", {in({4, 5}), index_in({4}, 5)}, ce(0.1, -100, false),
                    ce_ref(0.1, -100, false)));
    t.push_back(row("cross_entropy", rn + "_smoothing_weight_ignore",
                    {in({8, 3}), index_in({8}, 3), in({3}, Domain::Positive)}, ce(0.2, 0, true), ce_ref(0.2, 0, true)));
    t.push_back(row("cross_entropy", rn + "_17x33", {in({17, 33}), index_in({17}, 33)}, ce(0.1, -100, false),
                    ce_ref(0.1, -100, false), forward_only(kWithHalf)));

    // cross_entropy with class probabilities (the target is differentiable too)
    auto pce = [red](double eps, bool weighted) {
      return RowFn([=](const TensorList& x) {
        return cross_entropy(x[0], x[1], CrossEntropyOptions{weighted ? x[2] : Tensor(), red, -100, eps});
      });
    };
    auto pce_ref = [red](double eps, bool weighted) {
      return RefFn([=](const std::vector<Ref>& r) { return ref_prob_loss(r[0], r[1], weighted ? &r[2] : nullptr, red, eps); });
    };
    t.push_back(row("cross_entropy", rn + "_prob", {in({4, 5}), in({4, 5}, Domain::Positive)}, pce(0, false),
                    pce_ref(0, false)));
    t.push_back(row("cross_entropy", rn + "_prob_smoothing_weight",
                    {in({3, 4}), in({3, 4}, Domain::Positive), in({4}, Domain::Positive)}, pce(0.1, true), pce_ref(0.1, true)));
    t.push_back(row("cross_entropy", rn + "_prob_spatial", {in({2, 3, 2}), in({2, 3, 2}, Domain::Positive)}, pce(0, false),
                    pce_ref(0, false)));
  }
});


// The elementwise losses of issue 13 (l1, smooth_l1, huber, binary cross-entropy with and
// without logits). Kinks (|d| = 0, beta, delta) stay away from finite differences: the input is
// OffGrid (>= 0.05 from every multiple of 0.25) and the target is squeezed to +-0.02 in the row
// function, so |input - target| is >= 0.03 from 0, 0.5 and 1. Probabilities for
// binary_cross_entropy are 0.5 + 0.45 u with u in (-0.9, 0.9): within (0.09, 0.91).
const RegisterParity elementwise_losses([](std::vector<ParityCase>& t) {
  auto near = [](const Tensor& x) { return x * 0.01; };
  auto near_ref = [](const Ref& r) { return ref_map(r, [](double v) { return v * 0.01; }); };
  auto prob = [](const Tensor& x) { return x * 0.45 + 0.5; };
  auto prob_ref = [](const Ref& r) { return ref_map(r, [](double v) { return v * 0.45 + 0.5; }); };
  for (Reduction red : {kMean, kSum, kNone}) {
    const std::string rn = red_name(red);
    auto per_elem = [red](const Ref& a, const Ref& b, std::function<double(double, double)> f, const Ref* w = nullptr) {
      Ref per = ref_zip(a, b, f);
      if (w) per = ref_zip(per, *w, [](double v, double wv) { return v * wv; });
      return reduce_loss(per, red, static_cast<double>(per.numel()));
    };
    const std::vector<InputSpec> xt{in({3, 4}, Domain::OffGrid), in({3, 4})};
    t.push_back(row("l1_loss", rn, xt, [=](const TensorList& x) { return l1_loss(x[0], near(x[1]), red); },
                    [=](const std::vector<Ref>& r) {
                      return per_elem(r[0], near_ref(r[1]), [](double a, double b) { return std::fabs(a - b); });
                    }));
    for (double beta : {1.0, 0.5, 0.0}) {
      t.push_back(row("smooth_l1_loss", rn + "_beta" + std::to_string(beta).substr(0, 3), xt,
                      [=](const TensorList& x) { return smooth_l1_loss(x[0], near(x[1]), red, beta); },
                      [=](const std::vector<Ref>& r) {
                        return per_elem(r[0], near_ref(r[1]), [beta](double a, double b) {
                          const double d = std::fabs(a - b);
                          return d < beta ? 0.5 * d * d / beta : d - 0.5 * beta;
                        });
                      }));
    }
    for (double delta : {1.0, 0.5}) {
      t.push_back(row("huber_loss", rn + "_delta" + std::to_string(delta).substr(0, 3), xt,
                      [=](const TensorList& x) { return huber_loss(x[0], near(x[1]), red, delta); },
                      [=](const std::vector<Ref>& r) {
                        return per_elem(r[0], near_ref(r[1]), [delta](double a, double b) {
                          const double d = std::fabs(a - b);
                          return d < delta ? 0.5 * d * d : delta * (d - 0.5 * delta);
                        });
                      }));
    }
    auto bce = [](double p, double y) { return -(y * std::log(p) + (1 - y) * std::log(1 - p)); };
    t.push_back(row("binary_cross_entropy", rn, {in({3, 4}, Domain::Unit), in({3, 4}, Domain::Unit)},
                    [=](const TensorList& x) { return binary_cross_entropy(prob(x[0]), prob(x[1]), Tensor(), red); },
                    [=](const std::vector<Ref>& r) { return per_elem(prob_ref(r[0]), prob_ref(r[1]), bce); }));
    t.push_back(row("binary_cross_entropy", rn + "_weight",
                    {in({3, 4}, Domain::Unit), in({3, 4}, Domain::Unit), in({4}, Domain::Positive)},
                    [=](const TensorList& x) { return binary_cross_entropy(prob(x[0]), prob(x[1]), x[2], red); },
                    [=](const std::vector<Ref>& r) {
                      Ref w = ref_zip(ref_map(r[0], [](double) { return 0.0; }), r[2], [](double, double b) { return b; });
                      return per_elem(prob_ref(r[0]), prob_ref(r[1]), bce, &w);
                    }));
    auto bce_logits = [](double pw) {
      return [pw](double x, double y) {
        const double p = 1.0 / (1.0 + std::exp(-x));
        return -(pw * y * std::log(p) + (1 - y) * std::log(1 - p));
      };
    };
    t.push_back(row("binary_cross_entropy_with_logits", rn, {in({3, 4}), in({3, 4}, Domain::Unit)},
                    [=](const TensorList& x) {
                      return binary_cross_entropy_with_logits(x[0], prob(x[1]), Tensor(), Tensor(), red);
                    },
                    [=](const std::vector<Ref>& r) { return per_elem(r[0], prob_ref(r[1]), bce_logits(1.0)); }));
    // pos_weight [4] (one per class, broadcast over rows) and a weight: per-element pos_weight
    // is folded into the reference by giving every column its own factor
    t.push_back(row("binary_cross_entropy_with_logits", rn + "_pos_weight_weight",
                    {in({2, 4}), in({2, 4}, Domain::Unit), in({4}, Domain::Positive), in({2, 1}, Domain::Positive)},
                    [=](const TensorList& x) {
                      return binary_cross_entropy_with_logits(x[0], prob(x[1]), x[3], x[2], red);
                    },
                    [=](const std::vector<Ref>& r) {
                      Ref y = prob_ref(r[1]);
                      Ref per = ref_generate(r[0].shape, [&](const Shape& idx) {
                        const double xv = ref_at(r[0], idx), yv = ref_at(y, idx);
                        return bce_logits(r[2].v[static_cast<size_t>(idx[1])])(xv, yv) * r[3].v[static_cast<size_t>(idx[0])];
                      });
                      return reduce_loss(per, red, static_cast<double>(per.numel()));
                    }));
  }
  // saturated logits: the with-logits form stays finite where log(sigmoid) would not
  t.push_back(row("binary_cross_entropy_with_logits", "large_logits", {in({5})},
                  [](const TensorList& x) { return binary_cross_entropy_with_logits(x[0] * 40.0, zeros_like(x[0]) + 0.25); },
                  [](const std::vector<Ref>& r) {
                    Ref per = ref_map(r[0], [](double v) {
                      const double z = 40.0 * v;  // (1 - y) z + log(1 + exp(-z)), written stably
                      return 0.75 * z + std::max(-z, 0.0) + std::log1p(std::exp(-std::fabs(z)));
                    });
                    return reduce_loss(per, kMean, static_cast<double>(per.numel()));
                  }));
});

}  // namespace
}  // namespace nabla_test
