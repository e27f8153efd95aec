// Parity rows for matmul / mm (every rank combination, broadcast batches, empty K, M, N) and
// the losses (mse_loss, nll_loss, cross_entropy with weights, ignore_index, label smoothing
// and probability targets) under each reduction.

#include <cmath>

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

}  // namespace
}  // namespace nabla_test
