#pragma once
// gradcheck / gradgradcheck: compare autograd's gradients with central finite differences.
// Public, so users can check their own composite ops and custom backward rules in their tests.

#include <cmath>
#include <functional>
#include <sstream>

#include "../ops/join.hpp"
#include "engine.hpp"

namespace nabla {

struct GradcheckOptions {
  // Defaults suit float64 inputs; float32 inputs get eps 1e-3 and tolerances 1e-2 when these
  // are left at their defaults (see gradcheck).
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  bool raise = true;  // throw AutogradError with the first mismatch instead of returning false
};

namespace detail {

// Element j (row-major order) of t, addressed through its strides.
template <class T>
T* element_at(const Tensor& t, int64_t j) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    off += (j % t.sizes()[d]) * t.strides()[d];
    j /= t.sizes()[d];
  }
  return static_cast<T*>(t.data_ptr()) + off;
}

inline std::vector<double> flat_values(const Tensor& t) { return t.detach().to(Device::cpu()).to_vector<double>(); }

// f(inputs) evaluated with element j of x moved by delta (then restored).
template <class T>
std::vector<double> evaluate_shifted(const std::function<Tensor(const TensorList&)>& fn, const TensorList& inputs,
                                     const Tensor& x, int64_t j, double delta) {
  T* p = element_at<T>(x, j);
  const T orig = *p;
  *p = static_cast<T>(orig + delta);
  std::vector<double> r = flat_values(fn(inputs));
  *p = orig;
  return r;
}

}  // namespace detail

// fn maps `inputs` to one floating tensor. Every input that requires grad is checked: each
// entry of the Jacobian from backward() must match (f(x + eps) - f(x - eps)) / (2 eps).
inline bool gradcheck(const std::function<Tensor(const TensorList&)>& fn, const TensorList& inputs,
                      GradcheckOptions opt = {}) {
  bool any_f32 = false;
  for (const auto& x : inputs) {
    if (!x.defined() || !x.requires_grad()) continue;
    NABLA_CHECK(x.dtype() == kFloat64 || x.dtype() == kFloat32, DTypeError, "gradcheck: inputs that require grad must be ",
                "float64 (or float32), got ", detail::describe(x));
    NABLA_CHECK(x.is_cpu(), DeviceError, "gradcheck: inputs must be on the cpu, got ", detail::describe(x));
    any_f32 = any_f32 || x.dtype() == kFloat32;
  }
  GradcheckOptions def;
  if (any_f32 && opt.eps == def.eps && opt.atol == def.atol && opt.rtol == def.rtol) {
    opt.eps = 1e-3;
    opt.atol = 1e-2;
    opt.rtol = 1e-2;
  }
  Tensor out = fn(inputs);
  NABLA_CHECK(out.defined() && out.is_floating_point(), DTypeError, "gradcheck: the function must return a floating tensor");
  const int64_t n_out = out.numel();
  std::vector<double> out_flat;

  auto fail = [&](const std::string& msg) {
    if (opt.raise) throw AutogradError("nabla::gradcheck: " + msg);
    return false;
  };

  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    const int64_t n_in = x.numel();
    // numerical Jacobian, column by column
    std::vector<double> numeric(static_cast<size_t>(n_in * n_out));
    for (int64_t j = 0; j < n_in; ++j) {
      // grad mode stays on: gradgradcheck's function differentiates inside
      const bool f64 = x.dtype() == kFloat64;
      std::vector<double> plus = f64 ? detail::evaluate_shifted<double>(fn, inputs, x, j, opt.eps)
                                     : detail::evaluate_shifted<float>(fn, inputs, x, j, opt.eps);
      std::vector<double> minus = f64 ? detail::evaluate_shifted<double>(fn, inputs, x, j, -opt.eps)
                                      : detail::evaluate_shifted<float>(fn, inputs, x, j, -opt.eps);
      for (int64_t i = 0; i < n_out; ++i)
        numeric[static_cast<size_t>(i * n_in + j)] = (plus[i] - minus[i]) / (2 * opt.eps);
    }
    // analytical Jacobian, row by row (one backward per output element)
    for (int64_t i = 0; i < n_out; ++i) {
      Tensor go;
      {
        NoGradGuard no_grad;
        Tensor flat = zeros({n_out}, TensorOptions(kFloat64));
        static_cast<double*>(flat.data_ptr())[i] = 1.0;
        go = flat.to(out.dtype()).reshape(out.sizes());
      }
      std::vector<double> analytic(static_cast<size_t>(n_in), 0.0);
      if (out.requires_grad()) {
        TensorList g = autograd::grad({out}, {x}, {go}, true, false, true);
        if (g[0].defined()) analytic = detail::flat_values(g[0]);
      }
      for (int64_t j = 0; j < n_in; ++j) {
        double a = analytic[static_cast<size_t>(j)], n = numeric[static_cast<size_t>(i * n_in + j)];
        if (!(std::abs(a - n) <= opt.atol + opt.rtol * std::abs(n))) {
          std::ostringstream os;
          os << "Jacobian mismatch for input " << k << " (" << detail::describe(x) << ") at output element " << i
             << ", input element " << j << ": analytical " << a << " vs numerical " << n << " (atol " << opt.atol
             << ", rtol " << opt.rtol << ", eps " << opt.eps << ")";
          return fail(os.str());
        }
      }
    }
  }
  return true;
}

// Checks second derivatives: gradcheck of (inputs, grad_output) -> first-order gradients,
// computed with create_graph.
inline bool gradgradcheck(const std::function<Tensor(const TensorList&)>& fn, const TensorList& inputs,
                          GradcheckOptions opt = {}) {
  Tensor out = fn(inputs);
  Tensor go = randn(out.sizes(), TensorOptions(out.dtype())).requires_grad_();
  std::vector<size_t> wrt;
  for (size_t k = 0; k < inputs.size(); ++k)
    if (inputs[k].defined() && inputs[k].requires_grad()) wrt.push_back(k);
  TensorList all = inputs;
  all.push_back(go);
  auto first_order = [&fn, wrt](const TensorList& args) {
    TensorList ins(args.begin(), args.end() - 1);
    Tensor y = fn(ins);
    TensorList targets;
    for (size_t k : wrt) targets.push_back(ins[k]);
    TensorList gs = autograd::grad({y}, targets, {args.back()}, true, true, true);
    TensorList flat;
    for (size_t i = 0; i < gs.size(); ++i)
      flat.push_back(gs[i].defined() ? gs[i].reshape({-1}) : zeros({targets[i].numel()}, targets[i].options()));
    return cat(flat);
  };
  return gradcheck(first_order, all, opt);
}

}  // namespace nabla
