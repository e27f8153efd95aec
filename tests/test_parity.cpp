// The parity-table runner: one parameterised test per registered row (see parity.hpp).

#include <algorithm>
#include <numeric>

#include "parity.hpp"

namespace nabla_test {
namespace {

Tensor make_input(const InputSpec& s, std::mt19937_64& g) {
  switch (s.domain) {
    case Domain::Any: return uniform(s.shape, -2.0, 2.0, g);
    case Domain::Positive: return uniform(s.shape, 0.5, 2.0, g);
    case Domain::Unit: return uniform(s.shape, -0.9, 0.9, g);
    case Domain::NonZero: {
      Tensor m = uniform(s.shape, 0.5, 2.0, g), sg = uniform(s.shape, -1.0, 1.0, g);
      return where(sg > 0, m, -m);
    }
    case Domain::Index: {
      std::uniform_int_distribution<int64_t> d(0, std::max<int64_t>(s.index_range - 1, 0));
      std::vector<int64_t> v(static_cast<size_t>(numel_of(s.shape)));
      for (auto& x : v) x = d(g);
      return from_vector(v, s.shape, kInt64);
    }
    case Domain::Bool: return uniform(s.shape, 0.0, 1.0, g) > 0.5;
    case Domain::OffGrid: {  // a random cell of the 0.25 grid, and a point at least 0.05 inside it
      std::uniform_int_distribution<int> cell(-8, 7);
      std::uniform_real_distribution<double> at(0.05, 0.2);
      std::vector<double> v(static_cast<size_t>(numel_of(s.shape)));
      for (auto& x : v) x = cell(g) * 0.25 + at(g);
      return from_vector(v, s.shape, kFloat64);
    }
    case Domain::Distinct: {
      const int64_t n = numel_of(s.shape);
      std::vector<int64_t> perm(static_cast<size_t>(n));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), g);
      std::uniform_real_distribution<double> jitter(-0.25, 0.25);
      std::vector<double> v(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = -2.0 + 4.0 * (static_cast<double>(perm[i]) + 0.5 + jitter(g)) / n;
      return from_vector(v, s.shape, kFloat64);
    }
  }
  return Tensor();
}

// Inputs of dtype dt (floating inputs only; index and bool inputs keep theirs).
TensorList cast_inputs(const TensorList& xs, const std::vector<InputSpec>& specs, DType dt, bool noncontig) {
  TensorList out;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor t = specs[i].differentiable() ? xs[i].to(dt) : xs[i];
    out.push_back(noncontig ? non_contiguous(t) : t);
  }
  return out;
}

std::string case_name(const ParityCase& c, size_t i) {
  std::string s = c.op + "_" + c.label + "_" + std::to_string(i);
  for (auto& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

class Parity : public ::testing::TestWithParam<size_t> {
 protected:
  const ParityCase& row() const { return parity_registry()[GetParam()]; }
  TensorList fresh_inputs() const {
    auto g = rng_for(case_name(row(), GetParam()));
    TensorList xs;
    for (const auto& s : row().inputs) xs.push_back(make_input(s, g));
    return xs;
  }
};

TEST_P(Parity, ForwardMatchesFloat64Reference) {
  const ParityCase& c = row();
  TensorList base = fresh_inputs();
  for (DType dt : c.dtypes) {
    for (bool nc : {false, true}) {
      if (nc && !c.non_contiguous) continue;
      TensorList xs = cast_inputs(base, c.inputs, dt, nc);
      // the reference sees exactly the (rounded) values nabla sees
      std::vector<Ref> refs;
      for (const auto& x : xs) refs.push_back(Ref::of(x));
      Ref expected = c.ref(refs);
      Tensor got;
      {
        NoGradGuard no_grad;
        got = c.fn(xs);
      }
      Tolerance tol = tolerance_for(is_floating_point(got.dtype()) ? got.dtype() : dt);
      if (!is_floating_point(got.dtype())) tol = {0, 0};
      ASSERT_EQ(got.sizes(), expected.shape) << c.op << " " << dtype_name(dt);
      EXPECT_TRUE(all_close(got, expected.tensor(), tol.atol * c.tol_scale, tol.rtol * c.tol_scale))
          << c.op << " (" << c.label << ") dtype " << dtype_name(dt) << (nc ? " non-contiguous" : " contiguous");
    }
  }
}

TEST_P(Parity, GradientsMatchFiniteDifferences) {
  const ParityCase& c = row();
  if (!c.grad) GTEST_SKIP() << "row not differentiable: " << c.op;
  TensorList base = fresh_inputs();
  for (DType dt : {kFloat64, kFloat32}) {
    if (dt == kFloat32 && !c.grad_float32) continue;
    for (bool nc : {false, true}) {
      if (nc && !c.non_contiguous) continue;
      TensorList xs = cast_inputs(base, c.inputs, dt, nc);
      for (size_t i = 0; i < xs.size(); ++i)
        if (c.inputs[i].differentiable()) xs[i] = xs[i].detach().requires_grad_();
      try {
        EXPECT_TRUE(gradcheck(c.fn, xs)) << c.op;
      } catch (const AutogradError& e) {
        ADD_FAILURE() << c.op << " (" << c.label << ") dtype " << dtype_name(dt) << (nc ? " non-contiguous" : "") << ": "
                      << e.what();
      }
    }
  }
}

TEST_P(Parity, SecondDerivativesMatchFiniteDifferences) {
  const ParityCase& c = row();
  if (!c.grad || !c.grad2) GTEST_SKIP() << "second derivatives not checked for this row: " << c.op;
  TensorList xs = fresh_inputs();
  for (size_t i = 0; i < xs.size(); ++i)
    if (c.inputs[i].differentiable()) xs[i] = xs[i].detach().requires_grad_();
  try {
    EXPECT_TRUE(gradgradcheck(c.fn, xs)) << c.op;
  } catch (const AutogradError& e) {
    ADD_FAILURE() << c.op << " (" << c.label << "): " << e.what();
  }
}

TEST_P(Parity, CudaMatchesCpu) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device (this build or machine has none): CUDA column not run";
  const ParityCase& c = row();
  TensorList base = fresh_inputs();
  for (DType dt : c.dtypes) {
    TensorList xs = cast_inputs(base, c.inputs, dt, false), xg;
    for (auto& x : xs) {
      if (is_floating_point(x.dtype()) && c.grad) x = x.detach().requires_grad_();
      Tensor d = x.detach().to(Device::cuda());
      xg.push_back(x.requires_grad() ? d.requires_grad_() : d);
    }
    Tensor yc = c.fn(xs), yg = c.fn(xg);
    Tolerance tol = tolerance_for(is_floating_point(yc.dtype()) ? yc.dtype() : dt);
    if (!is_floating_point(yc.dtype())) tol = {0, 0};
    EXPECT_TRUE(all_close(yg, yc, tol.atol * c.tol_scale * 10, tol.rtol * c.tol_scale * 10)) << c.op << " " << dtype_name(dt);
    if (c.grad && yc.requires_grad()) {
      Tensor go = rand_like(yc.detach());
      yc.backward(go);
      yg.backward(go.to(Device::cuda()));
      for (size_t i = 0; i < xs.size(); ++i)
        if (xs[i].requires_grad() && xs[i].grad().defined()) {
          EXPECT_TRUE(all_close(xg[i].grad(), xs[i].grad(), tol.atol * 10, tol.rtol * 10)) << c.op << " grad of input " << i;
        }
    }
  }
}

// The kernel table a row exercises, or nullptr (see ParityCase::fused).
KernelTableBase* fused_table(const ParityCase& c) {
  const std::string fused = c.fused;
  if (fused == "none") return nullptr;
  KernelTableBase* t = KernelTableBase::find_table(fused.empty() ? c.op : fused);
  if (!t && !fused.empty()) ADD_FAILURE() << c.op << " (" << c.label << "): no kernel table named " << c.fused;
  return t;
}

// The fused column runs only for rows with a kernel table (ParityFused below lists them).
class ParityFused : public Parity {};

TEST_P(ParityFused, FusedMatchesComposite) {
  const ParityCase& c = row();
  KernelTableBase* table = fused_table(c);
  ASSERT_NE(table, nullptr);
  TensorList base = fresh_inputs();
  auto g = rng_for(case_name(c, GetParam()) + "/fused");
  std::vector<Device> devices{Device::cpu()};
  if (cuda::is_available()) devices.push_back(Device::cuda());
  int compared = 0;
  for (Device dev : devices) {
    for (DType dt : c.dtypes) {
      if (!table->has(dev.type, dt)) continue;  // no kernel for this device and dtype: only the composite exists
      struct Run {
        Tensor forward_no_grad, forward;
        TensorList grads;
        uint64_t hits = 0;
      };
      Tensor grad_out;
      auto run = [&](bool fused) {
        FusedKernelsGuard guard(fused);
        Run r;
        const uint64_t before = table->hits(dev.type);
        TensorList xs = cast_inputs(base, c.inputs, dt, false);
        for (auto& x : xs) x = x.to(dev);
        {
          NoGradGuard no_grad;  // some kernels run only without a graph (eval batch norm)
          r.forward_no_grad = c.fn(xs);
        }
        if (c.grad)
          for (size_t i = 0; i < xs.size(); ++i)
            if (c.inputs[i].differentiable()) xs[i] = xs[i].detach().requires_grad_();
        r.forward = c.fn(xs);
        if (c.grad && r.forward.requires_grad()) {
          if (!grad_out.defined())
            grad_out = make_input(in(r.forward.sizes()), g).to(dev, r.forward.dtype());
          r.forward.backward(grad_out);
          for (const Tensor& x : xs) r.grads.push_back(x.requires_grad() ? x.grad() : Tensor());
        }
        r.hits = table->hits(dev.type) - before;
        return r;
      };
      const Run fused = run(true), composite = run(false);
      const std::string where = c.op + " (" + c.label + ") on " + dev.str() + " " + dtype_name(dt);
      EXPECT_EQ(composite.hits, 0u) << where << ": a fused kernel ran with fused kernels switched off";
      if (dev.is_cpu()) {
        EXPECT_GT(fused.hits, 0u) << where << ": the fused kernel of " << table->op() << " never ran";
      } else if (fused.hits == 0) {
        std::cout << "[  NOTE    ] " << where << ": the device's kernel declined every case; composite only\n";
      }
      Tolerance tol = tolerance_for(is_floating_point(fused.forward.dtype()) ? fused.forward.dtype() : dt);
      if (!is_floating_point(fused.forward.dtype())) tol = {0, 0};
      const double atol = tol.atol * c.tol_scale * 10, rtol = tol.rtol * c.tol_scale * 10;
      ASSERT_EQ(fused.forward.sizes(), composite.forward.sizes()) << where;
      EXPECT_TRUE(all_close(fused.forward_no_grad, composite.forward_no_grad, atol, rtol)) << where << " (no grad)";
      EXPECT_TRUE(all_close(fused.forward, composite.forward, atol, rtol)) << where;
      ASSERT_EQ(fused.grads.size(), composite.grads.size()) << where;
      for (size_t i = 0; i < fused.grads.size(); ++i) {
        ASSERT_EQ(fused.grads[i].defined(), composite.grads[i].defined()) << where << " grad of input " << i;
        if (fused.grads[i].defined()) {
          EXPECT_TRUE(all_close(fused.grads[i], composite.grads[i], atol * 10, rtol * 10)) << where << " grad of input " << i;
        }
      }
      ++compared;
    }
  }
  if (compared == 0) GTEST_SKIP() << "no fused kernel for this row's dtypes on the devices present: " << table->op();
}

INSTANTIATE_TEST_SUITE_P(Ops, Parity, ::testing::Range<size_t>(0, parity_registry().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return case_name(parity_registry()[info.param], info.param);
                         });

// The rows whose op has fused kernels (evaluated after static initialisation, when every
// kernel table exists and is filled).
std::vector<size_t> fused_rows() {
  std::vector<size_t> rows;
  for (size_t i = 0; i < parity_registry().size(); ++i) {
    const std::string fused = parity_registry()[i].fused;
    if (fused != "none" && KernelTableBase::find_table(fused.empty() ? parity_registry()[i].op : fused)) rows.push_back(i);
    else if (!fused.empty() && fused != "none") rows.push_back(i);  // names a table that does not exist: fails
  }
  return rows;
}

INSTANTIATE_TEST_SUITE_P(Ops, ParityFused, ::testing::ValuesIn(fused_rows()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return case_name(parity_registry()[info.param], info.param);
                         });

}  // namespace
}  // namespace nabla_test
