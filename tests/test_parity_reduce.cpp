// Parity rows for reductions (sum mean prod amax amin max min argmax argmin var std
// logsumexp norm) over one, several, all and negative dims with and without keepdim, and softmax /
// log_softmax along several dims.

#include <algorithm>
#include <cmath>
#include <tuple>

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

using Fold = std::function<double(const std::vector<double>&)>;
using DimsFn = std::function<Tensor(const Tensor&, const Dims&, bool)>;

// The shared set of dim patterns for a reduction that takes a list of dims.
void dims_rows(std::vector<ParityCase>& t, const std::string& name, DimsFn op, Fold fold, Domain dom,
               std::vector<DType> half = kWithHalf, bool grad2 = false, bool empty_ok = true, bool large_all = true) {
  auto fn = [op](Dims d, bool k) { return RowFn([op, d, k](const TensorList& x) { return op(x[0], d, k); }); };
  t.push_back(row(name, "dim1_keep", {in({3, 4, 2}, dom)}, fn({1}, true), reduce1({1}, true, fold), RowOpts{half}));
  t.push_back(row(name, "dims02", {in({3, 4, 2}, dom)}, fn({0, 2}, false), reduce1({0, 2}, false, fold),
                  RowOpts{kFloats, true, grad2, 1.0}));
  t.push_back(row(name, "neg_dim", {in({3, 4, 2}, dom)}, fn({-1}, false), reduce1({-1}, false, fold)));
  t.push_back(row(name, "neg_dims_keep", {in({2, 3, 4}, dom)}, fn({-3, -1}, true), reduce1({0, 2}, true, fold)));
  t.push_back(row(name, "all_dims_listed", {in({3, 4}, dom)}, fn({0, 1}, false), reduce1({}, false, fold), RowOpts{half}));
  t.push_back(row(name, "all_keep", {in({2, 1, 3}, dom)}, fn({}, true), reduce1({}, true, fold)));
  t.push_back(row(name, "size1_dim", {in({4, 1, 3}, dom)}, fn({1}, false), reduce1({1}, false, fold)));
  t.push_back(row(name, "0d", {in({}, dom)}, fn({}, false), map1([](double a) { return a; })));
  t.push_back(row(name, "0d_dim0", {in({}, dom)}, fn({0}, true), map1([](double a) { return a; })));
  if (empty_ok) {
    t.push_back(row(name, "empty_over_dim0", {in({0, 3}, dom)}, fn({0}, false), reduce1({0}, false, fold)));
    t.push_back(row(name, "empty_all", {in({0, 3}, dom)}, fn({}, false), reduce1({}, false, fold)));
  }
  t.push_back(row(name, "empty_keep_other", {in({0, 3}, dom)}, fn({1}, true), reduce1({1}, true, fold)));
  t.push_back(row(name, "17x33_dim1", {in({17, 33}, dom)}, fn({1}, false), reduce1({1}, false, fold), forward_only(half)));
  t.push_back(row(name, "17x33_dim0", {in({17, 33}, dom)}, fn({0}, true), reduce1({0}, true, fold), forward_only(half)));
  if (large_all)
    t.push_back(row(name, "17x33_all", {in({17, 33}, dom)}, fn({}, false), reduce1({}, false, fold), forward_only(half)));
}

const RegisterParity sums([](std::vector<ParityCase>& t) {
  using D = Domain;
  dims_rows(t, "sum", [](const Tensor& x, const Dims& d, bool k) { return x.sum(d, k); }, fold_sum, D::Any, kWithHalf, true);
  dims_rows(t, "mean", [](const Tensor& x, const Dims& d, bool k) { return x.mean(d, k); }, fold_mean, D::Any, kWithHalf,
            true);
  // products over at most 35 values in [0.5, 2] stay inside float32's range, over 17 inside
  // float16's (561 values can pass 3.4e38)
  dims_rows(t, "prod", [](const Tensor& x, const Dims& d, bool k) { return x.prod(d, k); }, fold_prod, D::Positive,
            kFloats, false, true, false);
  t.push_back(row("prod", "5x7_all", {in({5, 7}, D::Positive)}, [](const TensorList& x) { return x[0].prod(); },
                  reduce1({}, false, fold_prod), forward_only()));
  t.push_back(row("prod", "17x33_dim0_half", {in({17, 33}, D::Positive)},
                  [](const TensorList& x) { return x[0].prod({0}); }, reduce1({0}, false, fold_prod),
                  forward_only(kWithHalf)));
  dims_rows(t, "amax", [](const Tensor& x, const Dims& d, bool k) { return x.amax(d, k); }, fold_max, D::Distinct,
            kWithHalf, false, false);
  dims_rows(t, "amin", [](const Tensor& x, const Dims& d, bool k) { return x.amin(d, k); }, fold_min, D::Distinct,
            kWithHalf, false, false);
  dims_rows(t, "logsumexp", [](const Tensor& x, const Dims& d, bool k) { return x.logsumexp(d, k); }, fold_logsumexp, D::Any,
            kWithHalf, false, false);
  t.push_back(row("sum", "all_method", {in({3, 4})}, [](const TensorList& x) { return x[0].sum(); },
                  reduce1({}, false, fold_sum), with_grad2(kWithHalf)));
  t.push_back(row("mean", "all_method", {in({3, 4})}, [](const TensorList& x) { return x[0].mean(); },
                  reduce1({}, false, fold_mean), with_grad2(kWithHalf)));
  t.push_back(row("prod", "all_method", {in({2, 5}, D::Positive)}, [](const TensorList& x) { return x[0].prod(); },
                  reduce1({}, false, fold_prod), RowOpts{kWithHalf}));
});

// Tensor::norm(p, dims, keepdim): inputs bounded away from 0 (|x| >= 0.5), where |x| has its
// kink; all-zero rows get their own check (the gradient there is 0, not NaN).
const RegisterParity norms([](std::vector<ParityCase>& t) {
  using D = Domain;
  auto pnorm = [](double p) {
    return Fold([p](const std::vector<double>& v) {
      double s = 0;
      for (double x : v) s += std::pow(std::fabs(x), p);
      return std::pow(s, 1.0 / p);
    });
  };
  for (double p : {2.0, 1.0, 3.0, 0.5}) {
    const std::string ps = p == 0.5 ? std::string("p0.5") : nabla::str("p", static_cast<int>(p));
    auto fn = [p](Dims d, bool k) {
      return RowFn([p, d, k](const TensorList& x) { return x[0].norm(p, d, k); });
    };
    t.push_back(row("norm", ps + "_all", {in({3, 4}, D::NonZero)}, [p](const TensorList& x) { return x[0].norm(p); },
                    reduce1({}, false, pnorm(p)), RowOpts{kFloats, true, p == 2.0, 1.0}));
    t.push_back(row("norm", ps + "_dim1_keep", {in({3, 4, 2}, D::NonZero)}, fn({1}, true), reduce1({1}, true, pnorm(p))));
    t.push_back(row("norm", ps + "_dims02", {in({3, 4, 2}, D::NonZero)}, fn({0, 2}, false), reduce1({0, 2}, false, pnorm(p))));
    t.push_back(row("norm", ps + "_neg_dim", {in({2, 5}, D::NonZero)}, fn({-1}, false), reduce1({-1}, false, pnorm(p))));
  }
  t.push_back(row("norm", "inf_dim0", {in({4, 3}, D::Distinct)},
                  [](const TensorList& x) { return x[0].norm(INFINITY, {0}); },
                  reduce1({0}, false, [](const std::vector<double>& v) {
                    double m = 0;
                    for (double x : v) m = std::max(m, std::fabs(x));
                    return m;
                  }),
                  forward_only()));
  t.push_back(row("norm", "p0_counts_nonzeros", {in({3, 4})},
                  [](const TensorList& x) { return (x[0] * (x[0] > 0)).norm(0, {1}); },
                  reduce1({1}, false, [](const std::vector<double>& v) {
                    double n = 0;
                    for (double x : v) n += x > 0;
                    return n;
                  }),
                  forward_only()));
});

// Distinct inputs: finite differences of max / min must not cross a near-tie.
const RegisterParity extrema([](std::vector<ParityCase>& t) {
  t.push_back(row("max", "all", {in({3, 4}, Domain::Distinct)}, [](const TensorList& x) { return x[0].max(); }, reduce1({}, false, fold_max),
                  RowOpts{kWithHalf}));
  t.push_back(row("min", "all", {in({3, 4}, Domain::Distinct)}, [](const TensorList& x) { return x[0].min(); }, reduce1({}, false, fold_min),
                  RowOpts{kWithHalf}));
  t.push_back(row("max", "all_0d", {in({}, Domain::Distinct)}, [](const TensorList& x) { return x[0].max(); }, reduce1({}, false, fold_max)));
  t.push_back(row("max", "all_17x33", {in({17, 33}, Domain::Distinct)}, [](const TensorList& x) { return x[0].max(); },
                  reduce1({}, false, fold_max), forward_only(kWithHalf)));

  // max(dim) / min(dim): the values output (the indices are checked by argmax / argmin rows)
  auto dim_rows = [&](const std::string& name, bool is_max, Fold fold) {
    auto fn = [is_max](int64_t d, bool k) {
      return RowFn([=](const TensorList& x) { return std::get<0>(is_max ? x[0].max(d, k) : x[0].min(d, k)); });
    };
    t.push_back(row(name, "dim1", {in({3, 4, 2}, Domain::Distinct)}, fn(1, false), reduce1({1}, false, fold), RowOpts{kWithHalf}));
    t.push_back(row(name, "dim_neg1_keep", {in({3, 4, 2}, Domain::Distinct)}, fn(-1, true), reduce1({-1}, true, fold)));
    t.push_back(row(name, "dim0_size1", {in({1, 5}, Domain::Distinct)}, fn(0, false), reduce1({0}, false, fold)));
    t.push_back(row(name, "0d", {in({}, Domain::Distinct)}, fn(0, false), map1([](double a) { return a; })));
    t.push_back(row(name, "empty_other", {in({0, 3}, Domain::Distinct)}, fn(1, false), reduce1({1}, false, fold)));
    t.push_back(row(name, "17x33_dim0", {in({17, 33}, Domain::Distinct)}, fn(0, false), reduce1({0}, false, fold), forward_only(kWithHalf)));
  };
  dim_rows("max_dim", true, fold_max);
  dim_rows("min_dim", false, fold_min);
  t.push_back(row("max_dim", "indices", {in({3, 4, 2}, Domain::Distinct)}, [](const TensorList& x) { return std::get<1>(x[0].max(1)); },
                  reduce1({1}, false, fold_argmax), forward_only(kWithHalf)));

  auto arg_rows = [&](const std::string& name, bool is_max, Fold fold) {
    auto fn = [is_max](std::optional<int64_t> d, bool k) {
      return RowFn([=](const TensorList& x) { return is_max ? x[0].argmax(d, k) : x[0].argmin(d, k); });
    };
    // 16-bit rounding makes ties likely; both sides pick the first extreme
    t.push_back(row(name, "dim1", {in({3, 4, 2})}, fn(1, false), reduce1({1}, false, fold), forward_only(kWithHalf)));
    t.push_back(row(name, "dim_neg1_keep", {in({3, 4, 2})}, fn(-1, true), reduce1({-1}, true, fold), forward_only()));
    t.push_back(row(name, "flat", {in({3, 4})}, fn(std::nullopt, false),
                    [fold](const std::vector<Ref>& r) { return ref_reduce(ref_reshape(r[0], {12}), {}, false, fold); },
                    forward_only(kWithHalf)));
    t.push_back(row(name, "0d", {in({})}, fn(0, false), map1([](double) { return 0.0; }), forward_only()));
    t.push_back(row(name, "17x33_dim0", {in({17, 33})}, fn(0, false), reduce1({0}, false, fold), forward_only(kWithHalf)));
  };
  arg_rows("argmax", true, fold_argmax);
  arg_rows("argmin", false, fold_argmin);
});

const RegisterParity moments([](std::vector<ParityCase>& t) {
  for (bool unbiased : {true, false}) {
    for (bool take_sqrt : {false, true}) {
      std::string name = std::string(take_sqrt ? "std" : "var") + (unbiased ? "" : "_biased");
      Fold fold = fold_var(unbiased, take_sqrt);
      auto fn = [=](Dims d, bool k) {
        return RowFn([=](const TensorList& x) { return take_sqrt ? x[0].std(d, unbiased, k) : x[0].var(d, unbiased, k); });
      };
      t.push_back(row(name, "dim1", {in({3, 4, 2})}, fn({1}, false), reduce1({1}, false, fold),
                      RowOpts{kWithHalf, true, !take_sqrt && unbiased, 1.0}));
      t.push_back(row(name, "dims02_keep", {in({3, 4, 2})}, fn({0, 2}, true), reduce1({0, 2}, true, fold)));
      t.push_back(row(name, "neg_dim", {in({3, 4})}, fn({-1}, false), reduce1({-1}, false, fold)));
      t.push_back(row(name, "17x33_dim1", {in({17, 33})}, fn({1}, false), reduce1({1}, false, fold), forward_only(kWithHalf)));
      t.push_back(row(name, "all_method", {in({3, 4})},
                      [=](const TensorList& x) { return take_sqrt ? x[0].std(unbiased) : x[0].var(unbiased); },
                      reduce1({}, false, fold), RowOpts{kWithHalf}));
    }
  }
});

const RegisterParity softmaxes([](std::vector<ParityCase>& t) {
  for (bool log : {false, true}) {
    std::string name = log ? "log_softmax" : "softmax";
    auto fn = [log](int64_t d) {
      return RowFn([=](const TensorList& x) { return log ? x[0].log_softmax(d) : x[0].softmax(d); });
    };
    auto ref = [log](int64_t d) { return RefFn([=](const std::vector<Ref>& r) { return ref_softmax(r[0], d, log); }); };
    t.push_back(row(name, "dim_last", {in({2, 3, 4})}, fn(-1), ref(-1), with_grad2(kWithHalf)));
    t.push_back(row(name, "dim0", {in({3, 2, 4})}, fn(0), ref(0), RowOpts{kWithHalf}));
    t.push_back(row(name, "dim1", {in({2, 5, 3})}, fn(1), ref(1), with_grad2()));
    t.push_back(row(name, "size1_dim", {in({3, 1})}, fn(1), ref(1)));
    t.push_back(row(name, "1d", {in({6})}, fn(0), ref(0)));
    t.push_back(row(name, "0d", {in({})}, fn(0), ref(0)));
    t.push_back(row(name, "empty_rows", {in({0, 3})}, fn(1), ref(1)));
    t.push_back(row(name, "empty_dim", {in({3, 0})}, fn(1), ref(1)));
    t.push_back(row(name, "17x33_dim1", {in({17, 33})}, fn(1), ref(1), forward_only(kWithHalf)));
    t.push_back(row(name, "17x33_dim0", {in({17, 33})}, fn(0), ref(0), forward_only(kWithHalf)));
    // large logits: the max shift must keep exp() in range (x 256 is exact in every dtype)
    t.push_back(row(name, "large_logits", {in({3, 5})},
                    [log](const TensorList& x) { Tensor y = x[0] * 256; return log ? y.log_softmax(1) : y.softmax(1); },
                    [log](const std::vector<Ref>& r) { return ref_softmax(ref_map(r[0], [](double a) { return a * 256; }), 1, log); },
                    forward_only()));
  }
});

}  // namespace
}  // namespace nabla_test
