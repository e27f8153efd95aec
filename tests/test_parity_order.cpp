// Parity rows for the ops GPT-2 sampling and attention need (issue 16): tril / triu, cumsum,
// sort / argsort / topk, bmm / baddbmm / addmm and embedding with padding_idx. The references
// are float64 loops over Ref tensors; orders are stable (ties by index), as nabla's sorts are.

#include <algorithm>
#include <numeric>

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

// The row of `a` through idx along d (idx[d] running), as (value, position) pairs.
std::vector<std::pair<double, int64_t>> ref_row(const Ref& a, Shape idx, int64_t d) {
  std::vector<std::pair<double, int64_t>> row;
  for (idx[d] = 0; idx[d] < a.shape[d]; ++idx[d]) row.push_back({ref_at(a, idx), idx[d]});
  return row;
}

// Stable sort of every row along dim (NaN largest), keeping the first k (k < 0: all); indices
// instead of values when `want_indices`.
Ref ref_order(const Ref& a, int64_t dim, bool descending, int64_t k, bool want_indices) {
  if (a.dim() == 0) return want_indices ? Ref(Shape{}, std::vector<double>{0.0}) : a;
  const int64_t d = ref_wrap(dim, a.dim());
  Shape s = a.shape;
  if (k >= 0) s[d] = k;
  return ref_generate(s, [&](const Shape& idx) {
    auto row = ref_row(a, idx, d);
    auto less = [](double x, double y) { return x < y || (!std::isnan(x) && std::isnan(y)); };
    std::stable_sort(row.begin(), row.end(), [&](const auto& x, const auto& y) {
      return descending ? less(y.first, x.first) : less(x.first, y.first);
    });
    const auto& e = row[static_cast<size_t>(idx[d])];
    return want_indices ? static_cast<double>(e.second) : e.first;
  });
}

Ref ref_cumsum(const Ref& a, int64_t dim) {
  if (a.dim() == 0) return a;
  const int64_t d = ref_wrap(dim, a.dim());
  return ref_generate(a.shape, [&](const Shape& idx) {
    Shape j = idx;
    double s = 0;
    for (j[d] = 0; j[d] <= idx[d]; ++j[d]) s += ref_at(a, j);
    return s;
  });
}

Ref ref_triangle(const Ref& a, int64_t diagonal, bool lower) {
  return ref_generate(a.shape, [&](const Shape& idx) {
    const int64_t off = idx[idx.size() - 1] - idx[idx.size() - 2];
    return (lower ? off <= diagonal : off >= diagonal) ? ref_at(a, idx) : 0.0;
  });
}

// beta * self + alpha * (m1 @ m2), beta = 0 ignoring self
Ref ref_add_matmul(const Ref& self, const Ref& m1, const Ref& m2, double beta, double alpha) {
  Ref p = ref_matmul(m1, m2);
  return ref_zip(p, self, [=](double x, double s) { return alpha * x + (beta == 0 ? 0.0 : beta * s); });
}

const RegisterParity triangles([](std::vector<ParityCase>& t) {
  for (bool lower : {true, false}) {
    const std::string op = lower ? "tril" : "triu";
    auto fn = [lower](int64_t k) {
      return RowFn([lower, k](const TensorList& x) { return lower ? x[0].tril(k) : x[0].triu(k); });
    };
    auto ref = [lower](int64_t k) {
      return RefFn([lower, k](const std::vector<Ref>& r) { return ref_triangle(r[0], k, lower); });
    };
    t.push_back(row(op, "square", {in({4, 4})}, fn(0), ref(0), with_grad2(kWithHalf)));
    t.push_back(row(op, "wide_above", {in({3, 5})}, fn(1), ref(1)));
    t.push_back(row(op, "tall_below", {in({5, 3})}, fn(-2), ref(-2)));
    t.push_back(row(op, "batched", {in({2, 3, 4, 4})}, fn(0), ref(0), RowOpts{kWithHalf}));
    t.push_back(row(op, "diag_beyond", {in({3, 4})}, fn(7), ref(7)));
    t.push_back(row(op, "diag_below_all", {in({3, 4})}, fn(-9), ref(-9)));
    t.push_back(row(op, "empty", {in({0, 3})}, fn(0), ref(0)));
    t.push_back(row(op, "1x1", {in({1, 1})}, fn(0), ref(0)));
    t.push_back(row(op, "int64", {index_in({3, 4}, 9)}, fn(0), ref(0), forward_only()));
    t.push_back(row(op + "_", "inplace", {in({3, 4})},
                    [lower](const TensorList& x) {
                      Tensor y = x[0] * 1;
                      return lower ? y.tril_(1) : y.triu_(1);
                    },
                    ref(1)));
  }
});

const RegisterParity cumsums([](std::vector<ParityCase>& t) {
  auto fn = [](int64_t d) { return RowFn([d](const TensorList& x) { return x[0].cumsum(d); }); };
  auto ref = [](int64_t d) { return RefFn([d](const std::vector<Ref>& r) { return ref_cumsum(r[0], d); }); };
  t.push_back(row("cumsum", "dim1", {in({3, 5})}, fn(1), ref(1), with_grad2(kWithHalf)));
  t.push_back(row("cumsum", "dim0", {in({5, 3})}, fn(0), ref(0), with_grad2()));
  t.push_back(row("cumsum", "neg_dim_3d", {in({2, 3, 4})}, fn(-2), ref(1)));
  t.push_back(row("cumsum", "1d", {in({7})}, fn(0), ref(0), RowOpts{kWithHalf}));
  t.push_back(row("cumsum", "0d", {in({})}, fn(0), ref(0)));
  t.push_back(row("cumsum", "empty", {in({0, 4})}, fn(0), ref(0)));
  t.push_back(row("cumsum", "size1_dim", {in({3, 1})}, fn(1), ref(1)));
  t.push_back(row("cumsum", "long_row", {in({2, 2500})}, fn(1), ref(1), RowOpts{kFloats, false, false, 10.0}));
  t.push_back(row("cumsum", "long_column", {in({1100, 3})}, fn(0), ref(0), RowOpts{kFloats, false, false, 10.0}));
  t.push_back(row("cumsum", "int64_input", {index_in({3, 4}, 7)}, fn(1), ref(1), forward_only()));
  t.push_back(row("cumsum", "dtype_float64", {in({3, 4})},
                  [](const TensorList& x) { return x[0].cumsum(1, kFloat64); }, ref(1)));
});

const RegisterParity orders([](std::vector<ParityCase>& t) {
  using D = Domain;
  auto sort_fn = [](int64_t d, bool desc, bool indices) {
    return RowFn([=](const TensorList& x) {
      auto [v, i] = x[0].sort(d, desc);
      return indices ? i : v;
    });
  };
  auto sort_ref = [](int64_t d, bool desc, bool indices) {
    return RefFn([=](const std::vector<Ref>& r) { return ref_order(r[0], d, desc, -1, indices); });
  };
  t.push_back(row("sort", "values_dim1", {in({3, 5}, D::Distinct)}, sort_fn(1, false, false), sort_ref(1, false, false),
                  with_grad2(kWithHalf)));
  t.push_back(row("sort", "values_desc_dim0", {in({5, 3}, D::Distinct)}, sort_fn(0, true, false), sort_ref(0, true, false),
                  RowOpts{kWithHalf}));
  t.push_back(row("sort", "values_3d_neg_dim", {in({2, 4, 3}, D::Distinct)}, sort_fn(-2, false, false),
                  sort_ref(1, false, false)));
  t.push_back(row("sort", "indices_dim1", {in({3, 6})}, sort_fn(1, false, true), sort_ref(1, false, true),
                  forward_only(kWithHalf)));
  t.push_back(row("sort", "indices_desc_long", {in({2, 300})}, sort_fn(-1, true, true), sort_ref(1, true, true),
                  forward_only(kWithHalf)));
  t.push_back(row("sort", "0d", {in({})}, sort_fn(0, false, false), sort_ref(0, false, false)));
  t.push_back(row("sort", "empty", {in({0, 3})}, sort_fn(1, false, false), sort_ref(1, false, false)));
  t.push_back(row("sort", "stable_overload", {in({4, 5}, D::Distinct)},
                  [](const TensorList& x) { return std::get<0>(x[0].sort(true, 1, true)); }, sort_ref(1, true, false)));
  t.push_back(row("sort", "int64_values", {index_in({3, 8}, 4)}, sort_fn(1, false, false), sort_ref(1, false, false),
                  forward_only()));
  t.push_back(row("sort", "int64_indices_ties", {index_in({3, 8}, 4)}, sort_fn(1, true, true), sort_ref(1, true, true),
                  forward_only()));
  t.push_back(row("argsort", "dim0", {in({5, 3})}, [](const TensorList& x) { return argsort(x[0], 0); },
                  sort_ref(0, false, true), forward_only()));
  t.push_back(row("argsort", "desc", {in({3, 5})}, [](const TensorList& x) { return x[0].argsort(-1, true); },
                  sort_ref(1, true, true), forward_only()));

  auto topk_fn = [](int64_t k, int64_t d, bool largest, bool indices) {
    return RowFn([=](const TensorList& x) {
      auto [v, i] = x[0].topk(k, d, largest);
      return indices ? i : v;
    });
  };
  auto topk_ref = [](int64_t k, int64_t d, bool largest, bool indices) {
    return RefFn([=](const std::vector<Ref>& r) { return ref_order(r[0], d, largest, k, indices); });
  };
  t.push_back(row("topk", "values_k2", {in({3, 6}, D::Distinct)}, topk_fn(2, 1, true, false), topk_ref(2, 1, true, false),
                  with_grad2(kWithHalf)));
  t.push_back(row("topk", "smallest_dim0", {in({6, 3}, D::Distinct)}, topk_fn(3, 0, false, false),
                  topk_ref(3, 0, false, false)));
  t.push_back(row("topk", "k_all", {in({2, 5}, D::Distinct)}, topk_fn(5, -1, true, false), topk_ref(5, 1, true, false)));
  t.push_back(row("topk", "k0", {in({3, 4})}, topk_fn(0, 1, true, false), topk_ref(0, 1, true, false)));
  t.push_back(row("topk", "3d_mid_dim", {in({2, 5, 3}, D::Distinct)}, topk_fn(2, 1, true, false),
                  topk_ref(2, 1, true, false)));
  t.push_back(row("topk", "indices", {in({4, 7})}, topk_fn(3, 1, true, true), topk_ref(3, 1, true, true),
                  forward_only(kWithHalf)));
  t.push_back(row("topk", "indices_long_row", {in({2, 1000})}, topk_fn(40, 1, true, true), topk_ref(40, 1, true, true),
                  forward_only()));
  t.push_back(row("topk", "int64_ties", {index_in({3, 9}, 3)}, topk_fn(4, 1, true, true), topk_ref(4, 1, true, true),
                  forward_only()));
});

const RegisterParity products([](std::vector<ParityCase>& t) {
  auto bmm_fn = RowFn([](const TensorList& x) { return bmm(x[0], x[1]); });
  auto bmm_ref = RefFn([](const std::vector<Ref>& r) { return ref_matmul(r[0], r[1]); });
  t.push_back(row("bmm", "2x3x4_4x5", {in({2, 3, 4}), in({2, 4, 5})}, bmm_fn, bmm_ref, with_grad2(kWithHalf)));
  t.push_back(row("bmm", "method_batch1", {in({1, 4, 2}), in({1, 2, 3})},
                  [](const TensorList& x) { return x[0].bmm(x[1]); }, bmm_ref));
  t.push_back(row("bmm", "empty_batch", {in({0, 3, 4}), in({0, 4, 2})}, bmm_fn, bmm_ref));
  t.push_back(row("bmm", "k0", {in({2, 3, 0}), in({2, 0, 4})}, bmm_fn, bmm_ref));

  auto addmm_fn = [](double beta, double alpha) {
    return RowFn([=](const TensorList& x) { return addmm(x[0], x[1], x[2], beta, alpha); });
  };
  auto add_ref = [](double beta, double alpha) {
    return RefFn([=](const std::vector<Ref>& r) { return ref_add_matmul(r[0], r[1], r[2], beta, alpha); });
  };
  t.push_back(row("addmm", "bias_row", {in({5}), in({3, 4}), in({4, 5})}, addmm_fn(1, 1), add_ref(1, 1),
                  with_grad2(kWithHalf)));
  t.push_back(row("addmm", "full_self_scaled", {in({3, 5}), in({3, 4}), in({4, 5})}, addmm_fn(0.5, -2), add_ref(0.5, -2)));
  t.push_back(row("addmm", "column_self", {in({3, 1}), in({3, 4}), in({4, 2})}, addmm_fn(2, 1), add_ref(2, 1)));
  t.push_back(row("addmm", "0d_self", {in({}), in({2, 3}), in({3, 2})}, addmm_fn(1, 3), add_ref(1, 3)));
  t.push_back(row("addmm", "beta0", {in({2, 2}), in({2, 3}), in({3, 2})}, addmm_fn(0, 1), add_ref(0, 1)));
  t.push_back(row("addmm", "method", {in({4}), in({2, 3}), in({3, 4})},
                  [](const TensorList& x) { return x[0].addmm(x[1], x[2], 1, 0.5); }, add_ref(1, 0.5)));

  auto baddbmm_fn = [](double beta, double alpha) {
    return RowFn([=](const TensorList& x) { return baddbmm(x[0], x[1], x[2], beta, alpha); });
  };
  t.push_back(row("baddbmm", "mask_like_self", {in({3, 3}), in({2, 3, 4}), in({2, 4, 3})}, baddbmm_fn(1, 0.5),
                  add_ref(1, 0.5), with_grad2(kWithHalf)));
  t.push_back(row("baddbmm", "full_self", {in({2, 3, 2}), in({2, 3, 4}), in({2, 4, 2})}, baddbmm_fn(-1, 2),
                  add_ref(-1, 2)));
  t.push_back(row("baddbmm", "beta0", {in({2, 3, 2}), in({2, 3, 4}), in({2, 4, 2})}, baddbmm_fn(0, 1), add_ref(0, 1)));
  t.push_back(row("baddbmm", "method_k0", {in({1, 2}), in({2, 3, 0}), in({2, 0, 2})},
                  [](const TensorList& x) { return x[0].baddbmm(x[1], x[2]); }, add_ref(1, 1)));
});

// embedding(indices, weight[, padding_idx]). With a padding_idx the forward reads that row but
// gives it no gradient (PyTorch's rule, which finite differences would contradict), so that row
// is forward only here and its gradient is checked in test_order_ops.cpp.
const RegisterParity embeddings([](std::vector<ParityCase>& t) {
  auto ref = RefFn([](const std::vector<Ref>& r) {
    const Ref& w = r[0];
    const int64_t dim = w.shape[1];
    Shape s = r[1].shape;
    s.push_back(dim);
    return ref_generate(s, [&](const Shape& idx) {
      Shape j(idx.begin(), idx.end() - 1);
      return ref_at(w, {static_cast<int64_t>(ref_at(r[1], j)), idx.back()});
    });
  });
  t.push_back(row("embedding", "2d_indices", {in({6, 3}), index_in({2, 4}, 6)},
                  [](const TensorList& x) { return nn::functional::embedding(x[1], x[0]); }, ref, with_grad2(kWithHalf)));
  t.push_back(row("embedding", "padding_idx", {in({5, 2}), index_in({7}, 5)},
                  [](const TensorList& x) { return nn::functional::embedding(x[1], x[0], 1); }, ref, forward_only()));
});

}  // namespace
}  // namespace nabla_test
