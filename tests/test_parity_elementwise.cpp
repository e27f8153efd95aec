// Parity rows for the elementwise ops: unary math, binary arithmetic with broadcasting and
// scalars, comparisons and logical ops, where / masked_fill, and the in-place forms.

#include <cmath>

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

// Four rows per unary op: a small gradient-checked shape with a size-1 dim, a 0-dim input, an
// empty input, and a larger odd-sized forward-only one (16-bit dtypes on the first and last).
void unary_rows(std::vector<ParityCase>& t, const std::string& name, std::function<Tensor(const Tensor&)> op,
                std::function<double(double)> f, Domain dom, bool grad2 = false) {
  RowFn fn = [op](const TensorList& x) { return op(x[0]); };
  RefFn ref = map1(f);
  t.push_back(row(name, "3x1x4", {in({3, 1, 4}, dom)}, fn, ref, RowOpts{kWithHalf, true, grad2, 1.0}));
  t.push_back(row(name, "0d", {in({}, dom)}, fn, ref));
  t.push_back(row(name, "empty", {in({0, 3}, dom)}, fn, ref));
  t.push_back(row(name, "17x33", {in({17, 33}, dom)}, fn, ref, forward_only(kWithHalf)));
}

double gelu_exact(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh(double x) {
  return 0.5 * x * (1 + std::tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
}
double sgn(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }
double clampd(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

const RegisterParity unary([](std::vector<ParityCase>& t) {
  using D = Domain;
  unary_rows(t, "neg", [](const Tensor& x) { return -x; }, [](double a) { return -a; }, D::Any);
  unary_rows(t, "exp", [](const Tensor& x) { return x.exp(); }, [](double a) { return std::exp(a); }, D::Any, true);
  unary_rows(t, "log", [](const Tensor& x) { return x.log(); }, [](double a) { return std::log(a); }, D::Positive, true);
  unary_rows(t, "log1p", [](const Tensor& x) { return x.log1p(); }, [](double a) { return std::log1p(a); }, D::Unit);
  unary_rows(t, "expm1", [](const Tensor& x) { return expm1(x); }, [](double a) { return std::expm1(a); }, D::Any);
  unary_rows(t, "sqrt", [](const Tensor& x) { return x.sqrt(); }, [](double a) { return std::sqrt(a); }, D::Positive);
  unary_rows(t, "rsqrt", [](const Tensor& x) { return x.rsqrt(); }, [](double a) { return 1 / std::sqrt(a); }, D::Positive);
  unary_rows(t, "abs", [](const Tensor& x) { return x.abs(); }, [](double a) { return std::abs(a); }, D::OffGrid);
  unary_rows(t, "sin", [](const Tensor& x) { return x.sin(); }, [](double a) { return std::sin(a); }, D::Any);
  unary_rows(t, "cos", [](const Tensor& x) { return x.cos(); }, [](double a) { return std::cos(a); }, D::Any);
  unary_rows(t, "tanh", [](const Tensor& x) { return x.tanh(); }, [](double a) { return std::tanh(a); }, D::Any, true);
  unary_rows(t, "sigmoid", [](const Tensor& x) { return x.sigmoid(); }, [](double a) { return 1 / (1 + std::exp(-a)); },
             D::Any, true);
  unary_rows(t, "relu", [](const Tensor& x) { return x.relu(); }, [](double a) { return a > 0 ? a : 0.0; }, D::OffGrid);
  unary_rows(t, "leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); },
             [](double a) { return a > 0 ? a : 0.1 * a; }, D::OffGrid);
  unary_rows(t, "gelu", [](const Tensor& x) { return x.gelu(); }, gelu_exact, D::Any, true);
  unary_rows(t, "gelu_tanh", [](const Tensor& x) { return x.gelu("tanh"); }, gelu_tanh, D::Any, true);
  unary_rows(t, "silu", [](const Tensor& x) { return x.silu(); }, [](double a) { return a / (1 + std::exp(-a)); }, D::Any,
             true);
  unary_rows(t, "erf", [](const Tensor& x) { return x.erf(); }, [](double a) { return std::erf(a); }, D::Any);
  unary_rows(t, "square", [](const Tensor& x) { return x.square(); }, [](double a) { return a * a; }, D::Any);
  unary_rows(t, "reciprocal", [](const Tensor& x) { return x.reciprocal(); }, [](double a) { return 1 / a; }, D::NonZero);
  unary_rows(t, "sign", [](const Tensor& x) { return x.sign(); }, sgn, D::OffGrid);
  unary_rows(t, "floor", [](const Tensor& x) { return floor(x); }, [](double a) { return std::floor(a); }, D::OffGrid);
  unary_rows(t, "ceil", [](const Tensor& x) { return ceil(x); }, [](double a) { return std::ceil(a); }, D::OffGrid);
  unary_rows(t, "round", [](const Tensor& x) { return round(x); }, [](double a) { return std::nearbyint(a); }, D::OffGrid);
  unary_rows(t, "clamp", [](const Tensor& x) { return x.clamp(-0.5, 0.75); }, [](double a) { return clampd(a, -0.5, 0.75); },
             D::OffGrid);
  unary_rows(t, "clamp_min", [](const Tensor& x) { return x.clamp(-0.5); }, [](double a) { return std::max(a, -0.5); },
             D::OffGrid);
  unary_rows(t, "clamp_max", [](const Tensor& x) { return x.clamp(std::nullopt, 0.75); },
             [](double a) { return std::min(a, 0.75); }, D::OffGrid);
});

// Five rows per binary op: same shape (16-bit too), broadcast [3,1,4] x [2,1], 0-dim with 2-D,
// empty with 1-D, and a larger forward-only broadcast.
void binary_rows(std::vector<ParityCase>& t, const std::string& name, std::function<Tensor(const Tensor&, const Tensor&)> op,
                 std::function<double(double, double)> f, Domain da, Domain db, bool grad2 = false) {
  RowFn fn = [op](const TensorList& x) { return op(x[0], x[1]); };
  RefFn ref = zip2(f);
  t.push_back(row(name, "same", {in({3, 4}, da), in({3, 4}, db)}, fn, ref, RowOpts{kWithHalf, true, grad2, 1.0}));
  t.push_back(row(name, "broadcast", {in({3, 1, 4}, da), in({2, 1}, db)}, fn, ref));
  t.push_back(row(name, "0d_with_2d", {in({}, da), in({2, 3}, db)}, fn, ref));
  t.push_back(row(name, "2d_with_0d", {in({2, 3}, da), in({}, db)}, fn, ref));
  t.push_back(row(name, "empty", {in({0, 3}, da), in({3}, db)}, fn, ref));
  t.push_back(row(name, "17x33_with_33", {in({17, 33}, da), in({33}, db)}, fn, ref, forward_only(kWithHalf)));
}

// maximum / minimum: both operands are cut from one Distinct input, so no a/b pair is close
// enough for finite differences to cross the switch-over.
void extremum_rows(std::vector<ParityCase>& t, const std::string& name,
                   std::function<Tensor(const Tensor&, const Tensor&)> op, std::function<double(double, double)> f) {
  auto add = [&](const std::string& label, Shape sa, Shape sb, RowOpts o) {
    const int64_t na = numel_of(sa), nb = numel_of(sb);
    RowFn fn = [=](const TensorList& x) {
      return op(x[0].narrow(0, 0, na).reshape(sa), x[0].narrow(0, na, nb).reshape(sb));
    };
    RefFn ref = [=](const std::vector<Ref>& r) {
      Ref a(sa, std::vector<double>(r[0].v.begin(), r[0].v.begin() + na));
      Ref b(sb, std::vector<double>(r[0].v.begin() + na, r[0].v.end()));
      return ref_zip(a, b, f);
    };
    t.push_back(row(name, label, {in({na + nb}, Domain::Distinct)}, fn, ref, std::move(o)));
  };
  add("same", {3, 4}, {3, 4}, RowOpts{kWithHalf});
  add("broadcast", {3, 1, 4}, {2, 1}, RowOpts{});
  add("0d_with_2d", {}, {2, 3}, RowOpts{});
  add("empty", {0, 3}, {3}, RowOpts{});
  add("17x33_with_33", {17, 33}, {33}, forward_only(kWithHalf));
}

const RegisterParity binary([](std::vector<ParityCase>& t) {
  using D = Domain;
  binary_rows(t, "add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; },
              D::Any, D::Any);
  binary_rows(t, "sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; },
              D::Any, D::Any);
  binary_rows(t, "mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; },
              D::Any, D::Any, true);
  binary_rows(t, "div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; },
              D::Any, D::NonZero, true);
  binary_rows(t, "pow", [](const Tensor& a, const Tensor& b) { return a.pow(b); },
              [](double a, double b) { return std::pow(a, b); }, D::Positive, D::Any, true);
  extremum_rows(t, "maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
                [](double a, double b) { return std::max(a, b); });
  extremum_rows(t, "minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
                [](double a, double b) { return std::min(a, b); });
  t.push_back(row("sub", "alpha", {in({3, 4}), in({4})}, [](const TensorList& x) { return x[0].sub(x[1], 2.5); },
                  zip2([](double a, double b) { return a - 2.5 * b; })));
  t.push_back(row("add", "alpha", {in({3, 4}), in({4})}, [](const TensorList& x) { return x[0].add(x[1], -0.5); },
                  zip2([](double a, double b) { return a - 0.5 * b; })));

  // tensor-scalar forms (scalars are wrapped numbers: they keep the tensor's dtype)
  auto scalar_row = [&](const std::string& name, std::function<Tensor(const Tensor&)> op, std::function<double(double)> f,
                        Domain dom, bool grad2 = false) {
    RowFn fn = [op](const TensorList& x) { return op(x[0]); };
    t.push_back(row(name, "scalar", {in({3, 4}, dom)}, fn, map1(f), RowOpts{kWithHalf, true, grad2, 1.0}));
    t.push_back(row(name, "scalar_0d", {in({}, dom)}, fn, map1(f)));
  };
  scalar_row("add", [](const Tensor& x) { return x + 2.5; }, [](double a) { return a + 2.5; }, D::Any);
  scalar_row("rsub", [](const Tensor& x) { return 2 - x; }, [](double a) { return 2 - a; }, D::Any);
  scalar_row("sub", [](const Tensor& x) { return x - 1.5; }, [](double a) { return a - 1.5; }, D::Any);
  scalar_row("mul", [](const Tensor& x) { return 2.5 * x; }, [](double a) { return 2.5 * a; }, D::Any);
  scalar_row("div", [](const Tensor& x) { return x / 3; }, [](double a) { return a / 3; }, D::Any);
  scalar_row("rdiv", [](const Tensor& x) { return 1.5 / x; }, [](double a) { return 1.5 / a; }, D::NonZero, true);
  scalar_row("pow", [](const Tensor& x) { return x.pow(2.5); }, [](double a) { return std::pow(a, 2.5); }, D::Positive, true);
  scalar_row("pow", [](const Tensor& x) { return x.pow(2); }, [](double a) { return a * a; }, D::Any, true);
  scalar_row("pow", [](const Tensor& x) { return x.pow(3); }, [](double a) { return a * a * a; }, D::Any);
  scalar_row("pow", [](const Tensor& x) { return x.pow(0.5); }, [](double a) { return std::sqrt(a); }, D::Positive);
  scalar_row("pow", [](const Tensor& x) { return x.pow(-1.5); }, [](double a) { return std::pow(a, -1.5); }, D::Positive);
  scalar_row("pow", [](const Tensor& x) { return x.pow(0); }, [](double) { return 1.0; }, D::Any);
  scalar_row("rpow", [](const Tensor& x) { return pow(Scalar(2.0), x); }, [](double a) { return std::pow(2.0, a); }, D::Any);
});

// Comparisons on rounded inputs, so that ties (where lt/le and gt/ge differ) occur.
const RegisterParity compare([](std::vector<ParityCase>& t) {
  auto cmp_rows = [&](const std::string& name, std::function<Tensor(const Tensor&, const Tensor&)> op,
                      std::function<bool(double, double)> f) {
    RowFn fn = [op](const TensorList& x) { return op(round(x[0]), round(x[1])); };
    RefFn ref = zip2([f](double a, double b) { return f(std::nearbyint(a), std::nearbyint(b)) ? 1.0 : 0.0; });
    t.push_back(row(name, "broadcast", {in({3, 1, 4}), in({2, 1})}, fn, ref, forward_only(kWithHalf)));
    t.push_back(row(name, "0d_with_2d", {in({}), in({2, 3})}, fn, ref, forward_only()));
    t.push_back(row(name, "empty", {in({0, 3}), in({3})}, fn, ref, forward_only()));
    t.push_back(row(name, "17x33", {in({17, 33}), in({17, 33})}, fn, ref, forward_only(kWithHalf)));
  };
  cmp_rows("eq", [](const Tensor& a, const Tensor& b) { return a.eq(b); }, [](double a, double b) { return a == b; });
  cmp_rows("ne", [](const Tensor& a, const Tensor& b) { return a.ne(b); }, [](double a, double b) { return a != b; });
  cmp_rows("lt", [](const Tensor& a, const Tensor& b) { return a.lt(b); }, [](double a, double b) { return a < b; });
  cmp_rows("le", [](const Tensor& a, const Tensor& b) { return a.le(b); }, [](double a, double b) { return a <= b; });
  cmp_rows("gt", [](const Tensor& a, const Tensor& b) { return a.gt(b); }, [](double a, double b) { return a > b; });
  cmp_rows("ge", [](const Tensor& a, const Tensor& b) { return a.ge(b); }, [](double a, double b) { return a >= b; });
  t.push_back(row("gt", "scalar", {in({3, 4})}, [](const TensorList& x) { return x[0] > 0.5; },
                  map1([](double a) { return a > 0.5 ? 1.0 : 0.0; }), forward_only(kWithHalf)));

  RefFn land = zip2([](double a, double b) { return a != 0 && b != 0 ? 1.0 : 0.0; });
  RefFn lor = zip2([](double a, double b) { return a != 0 || b != 0 ? 1.0 : 0.0; });
  t.push_back(row("logical_and", "bool_broadcast", {bool_in({3, 4}), bool_in({4})},
                  [](const TensorList& x) { return x[0].logical_and(x[1]); }, land, forward_only()));
  t.push_back(row("logical_or", "bool_broadcast", {bool_in({3, 1, 4}), bool_in({2, 1})},
                  [](const TensorList& x) { return x[0].logical_or(x[1]); }, lor, forward_only()));
  t.push_back(row("logical_not", "bool", {bool_in({3, 4})}, [](const TensorList& x) { return x[0].logical_not(); },
                  map1([](double a) { return a == 0 ? 1.0 : 0.0; }), forward_only()));
  t.push_back(row("logical_not", "bool_0d", {bool_in({})}, [](const TensorList& x) { return !x[0]; },
                  map1([](double a) { return a == 0 ? 1.0 : 0.0; }), forward_only()));
  // floating inputs: nonzero is true (rounding makes zeros common)
  t.push_back(row("logical_and", "float", {in({3, 4}), in({3, 4})},
                  [](const TensorList& x) { return round(x[0]).logical_and(round(x[1])); },
                  zip2([](double a, double b) { return std::nearbyint(a) != 0 && std::nearbyint(b) != 0 ? 1.0 : 0.0; }),
                  forward_only(kWithHalf)));
  t.push_back(row("logical_or", "float", {in({3, 4}), in({4})},
                  [](const TensorList& x) { return round(x[0]).logical_or(round(x[1])); },
                  zip2([](double a, double b) { return std::nearbyint(a) != 0 || std::nearbyint(b) != 0 ? 1.0 : 0.0; }),
                  forward_only()));
  t.push_back(row("logical_not", "float", {in({3, 4})}, [](const TensorList& x) { return round(x[0]).logical_not(); },
                  map1([](double a) { return std::nearbyint(a) == 0 ? 1.0 : 0.0; }), forward_only(kWithHalf)));
});

const RegisterParity select_ops([](std::vector<ParityCase>& t) {
  RefFn where_ref = [](const std::vector<Ref>& r) {
    return ref_zip3(r[0], r[1], r[2], [](double c, double a, double b) { return c != 0 ? a : b; });
  };
  RowFn where_fn = [](const TensorList& x) { return where(x[0], x[1], x[2]); };
  t.push_back(row("where", "same", {bool_in({3, 4}), in({3, 4}), in({3, 4})}, where_fn, where_ref, with_grad2(kWithHalf)));
  t.push_back(row("where", "broadcast", {bool_in({3, 1, 4}), in({2, 4}), in({4})}, where_fn, where_ref, with_grad2()));
  t.push_back(row("where", "0d_values", {bool_in({2, 3}), in({}), in({2, 3})}, where_fn, where_ref));
  t.push_back(row("where", "empty", {bool_in({0, 3}), in({0, 3}), in({3})}, where_fn, where_ref));
  t.push_back(row("where", "17x33", {bool_in({17, 33}), in({17, 33}), in({33})}, where_fn, where_ref,
                  forward_only(kWithHalf)));
  t.push_back(row("where", "scalar_other", {bool_in({3, 4}), in({3, 4})},
                  [](const TensorList& x) { return where(x[0], x[1], Scalar(0.5)); },
                  [](const std::vector<Ref>& r) {
                    return ref_zip(r[0], r[1], [](double c, double a) { return c != 0 ? a : 0.5; });
                  }));

  RefFn fill_ref = [](const std::vector<Ref>& r) {
    return ref_zip(r[0], r[1], [](double a, double m) { return m != 0 ? -1.5 : a; });
  };
  RowFn fill_fn = [](const TensorList& x) { return x[0].masked_fill(x[1], -1.5); };
  t.push_back(row("masked_fill", "broadcast_mask", {in({3, 4}), bool_in({4})}, fill_fn, fill_ref, RowOpts{kWithHalf}));
  t.push_back(row("masked_fill", "same", {in({2, 3, 2}), bool_in({2, 3, 2})}, fill_fn, fill_ref));
  t.push_back(row("masked_fill", "0d_mask", {in({2, 3}), bool_in({})}, fill_fn, fill_ref));
  t.push_back(row("masked_fill", "empty", {in({0, 3}), bool_in({3})}, fill_fn, fill_ref));
});

// In-place ops on a fresh (non-leaf) copy of the input, so gradients flow through them.
const RegisterParity inplace([](std::vector<ParityCase>& t) {
  using D = Domain;
  auto bin = [&](const std::string& name, std::function<void(Tensor&, const Tensor&)> op, std::function<double(double, double)> f,
                 Domain db, std::vector<DType> dts = kFloats) {
    RowFn fn = [op](const TensorList& x) {
      Tensor y = x[0] * 1;
      op(y, x[1]);
      return y;
    };
    t.push_back(row(name, "broadcast_other", {in({3, 4}), in({4}, db)}, fn, zip2(f), RowOpts{dts}));
    t.push_back(row(name, "same", {in({2, 3}), in({2, 3}, db)}, fn, zip2(f)));
    t.push_back(row(name, "0d_other", {in({2, 3}), in({}, db)}, fn, zip2(f)));
  };
  bin("add_", [](Tensor& y, const Tensor& o) { y.add_(o); }, [](double a, double b) { return a + b; }, D::Any, kWithHalf);
  bin("add_alpha", [](Tensor& y, const Tensor& o) { y.add_(o, 2.0); }, [](double a, double b) { return a + 2 * b; }, D::Any);
  bin("sub_", [](Tensor& y, const Tensor& o) { y.sub_(o); }, [](double a, double b) { return a - b; }, D::Any);
  bin("mul_", [](Tensor& y, const Tensor& o) { y.mul_(o); }, [](double a, double b) { return a * b; }, D::Any, kWithHalf);
  bin("div_", [](Tensor& y, const Tensor& o) { y.div_(o); }, [](double a, double b) { return a / b; }, D::NonZero);
  bin("operator+=", [](Tensor& y, const Tensor& o) { y += o; }, [](double a, double b) { return a + b; }, D::Any);
  bin("copy_", [](Tensor& y, const Tensor& o) { y.copy_(o); }, [](double, double b) { return b; }, D::Any);

  auto un = [&](const std::string& name, std::function<void(Tensor&)> op, std::function<double(double)> f, Domain dom,
                std::vector<DType> dts = kFloats) {
    RowFn fn = [op](const TensorList& x) {
      Tensor y = x[0] * 1;
      op(y);
      return y;
    };
    t.push_back(row(name, "3x4", {in({3, 4}, dom)}, fn, map1(f), RowOpts{dts}));
    t.push_back(row(name, "0d", {in({}, dom)}, fn, map1(f)));
  };
  un("add_scalar", [](Tensor& y) { y.add_(2.5); }, [](double a) { return a + 2.5; }, D::Any, kWithHalf);
  un("sub_scalar", [](Tensor& y) { y.sub_(1); }, [](double a) { return a - 1; }, D::Any);
  un("mul_scalar", [](Tensor& y) { y.mul_(-1.5); }, [](double a) { return a * -1.5; }, D::Any);
  un("div_scalar", [](Tensor& y) { y.div_(4); }, [](double a) { return a / 4; }, D::Any);
  un("pow_", [](Tensor& y) { y.pow_(2.5); }, [](double a) { return std::pow(a, 2.5); }, D::Positive);
  un("neg_", [](Tensor& y) { y.neg_(); }, [](double a) { return -a; }, D::Any);
  un("exp_", [](Tensor& y) { y.exp_(); }, [](double a) { return std::exp(a); }, D::Any, kWithHalf);
  un("log_", [](Tensor& y) { y.log_(); }, [](double a) { return std::log(a); }, D::Positive);
  un("sqrt_", [](Tensor& y) { y.sqrt_(); }, [](double a) { return std::sqrt(a); }, D::Positive);
  un("abs_", [](Tensor& y) { y.abs_(); }, [](double a) { return std::abs(a); }, D::OffGrid);
  un("tanh_", [](Tensor& y) { y.tanh_(); }, [](double a) { return std::tanh(a); }, D::Any);
  un("sigmoid_", [](Tensor& y) { y.sigmoid_(); }, [](double a) { return 1 / (1 + std::exp(-a)); }, D::Any);
  un("relu_", [](Tensor& y) { y.relu_(); }, [](double a) { return a > 0 ? a : 0.0; }, D::OffGrid, kWithHalf);
  un("clamp_", [](Tensor& y) { y.clamp_(-0.5, 0.75); }, [](double a) { return clampd(a, -0.5, 0.75); }, D::OffGrid);
  un("clamp_min_", [](Tensor& y) { y.clamp_(0.25); }, [](double a) { return std::max(a, 0.25); }, D::OffGrid);
  un("chained_", [](Tensor& y) { y.mul_(2).add_(1).tanh_(); }, [](double a) { return std::tanh(2 * a + 1); }, D::Any);

  RowFn mf = [](const TensorList& x) {
    Tensor y = x[0] * 1;
    y.masked_fill_(x[1], 0.25);
    return y;
  };
  t.push_back(row("masked_fill_", "broadcast_mask", {in({3, 4}), bool_in({4})}, mf,
                  zip2([](double a, double m) { return m != 0 ? 0.25 : a; })));
  // an in-place op on a view of a non-leaf writes through to the base
  t.push_back(row("mul_", "through_slice", {in({4, 3})},
                  [](const TensorList& x) {
                    NoGradGuard ng;  // views of tensors in the graph cannot be updated in place with autograd
                    Tensor y = x[0].detach().clone();
                    y.slice(0, 1, 3).mul_(2);
                    return y;
                  },
                  [](const std::vector<Ref>& r) {
                    Ref o = r[0];
                    for (int64_t i = 3; i < 9; ++i) o.v[static_cast<size_t>(i)] *= 2;
                    return o;
                  },
                  forward_only(kWithHalf)));
});

}  // namespace
}  // namespace nabla_test
