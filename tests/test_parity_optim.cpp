// Parity rows for the optimizer steps (optim::Adam, AdamW, SGD): three steps from a parameter
// and three gradients, against float64 loops written from torch.optim's documented algorithms.
// Through the fused column these rows also check the fused steps (adam_kernels(),
// sgd_kernels()) against the composite ones.

#include <cmath>

#include "parity.hpp"

namespace nabla_test {
namespace {

constexpr int kSteps = 3;

struct AdamArgs {
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled, amsgrad;
};

// p and the gradients of each step: r[0] = p, r[1..kSteps] = gradients.
Ref ref_adam(const std::vector<Ref>& r, AdamArgs a) {
  Ref p = r[0];
  const size_t n = p.v.size();
  std::vector<double> m(n, 0.0), v(n, 0.0), vmax(n, 0.0);
  for (int t = 1; t <= kSteps; ++t) {
    const Ref& grad = r[static_cast<size_t>(t)];
    const double bc1 = 1 - std::pow(a.beta1, t), bc2 = 1 - std::pow(a.beta2, t);
    for (size_t i = 0; i < n; ++i) {
      double g = grad.v[i];
      if (a.decoupled) p.v[i] *= 1 - a.lr * a.weight_decay;
      else g += a.weight_decay * p.v[i];
      m[i] = a.beta1 * m[i] + (1 - a.beta1) * g;
      v[i] = a.beta2 * v[i] + (1 - a.beta2) * g * g;
      double second = v[i];
      if (a.amsgrad) second = vmax[i] = std::max(vmax[i], v[i]);
      p.v[i] -= a.lr / bc1 * m[i] / (std::sqrt(second) / std::sqrt(bc2) + a.eps);
    }
  }
  return p;
}

struct SgdArgs {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};

Ref ref_sgd(const std::vector<Ref>& r, SgdArgs a) {
  Ref p = r[0];
  const size_t n = p.v.size();
  std::vector<double> buf(n, 0.0);
  for (int t = 1; t <= kSteps; ++t) {
    const Ref& grad = r[static_cast<size_t>(t)];
    for (size_t i = 0; i < n; ++i) {
      double d = grad.v[i] + a.weight_decay * p.v[i];
      if (a.momentum != 0) {
        buf[i] = t == 1 ? d : a.momentum * buf[i] + (1 - a.dampening) * d;
        d = a.nesterov ? d + a.momentum * buf[i] : buf[i];
      }
      p.v[i] -= a.lr * d;
    }
  }
  return p;
}

// Runs kSteps of `opt` over a copy of x[0] with gradients x[1..kSteps]; returns the parameter.
template <class MakeOptimizer>
Tensor run_steps(const TensorList& x, MakeOptimizer make) {
  Tensor p = x[0].detach().clone();
  auto opt = make(TensorList{p});
  for (int t = 1; t <= kSteps; ++t) {
    p.mutable_grad() = x[static_cast<size_t>(t)].detach().clone();
    opt.step();
  }
  return p;
}

std::vector<InputSpec> step_inputs(const Shape& s) {
  std::vector<InputSpec> ins{in(s)};
  for (int t = 0; t < kSteps; ++t) ins.push_back(in(s));
  return ins;
}

static RegisterParity reg([](std::vector<ParityCase>& t) {
  auto adam_row = [&](const std::string& label, const Shape& shape, AdamArgs a) {
    t.push_back({a.decoupled ? "adamw_step" : "adam_step", label, step_inputs(shape),
                 [a](const TensorList& x) {
                   if (a.decoupled)
                     return run_steps(x, [&](TensorList p) {
                       return optim::AdamW(p, optim::AdamWOptions(a.lr).betas({a.beta1, a.beta2}).eps(a.eps)
                                                  .weight_decay(a.weight_decay).amsgrad(a.amsgrad));
                     });
                   return run_steps(x, [&](TensorList p) {
                     return optim::Adam(p, optim::AdamOptions(a.lr).betas({a.beta1, a.beta2}).eps(a.eps)
                                               .weight_decay(a.weight_decay).amsgrad(a.amsgrad));
                   });
                 },
                 [a](const std::vector<Ref>& r) { return ref_adam(r, a); }, {kFloat32, kFloat64}, false});
    t.back().fused = "adam_step";
  };
  adam_row("plain", {7, 5}, {0.01, 0.9, 0.999, 1e-8, 0.0, false, false});
  adam_row("weight_decay_amsgrad", {3, 4, 2}, {0.05, 0.8, 0.99, 1e-6, 0.1, false, true});
  adam_row("decoupled", {33}, {0.01, 0.9, 0.999, 1e-8, 0.01, true, false});
  adam_row("decoupled_amsgrad", {4, 6}, {0.02, 0.85, 0.995, 1e-7, 0.05, true, true});

  auto sgd_row = [&](const std::string& label, const Shape& shape, SgdArgs a) {
    t.push_back({"sgd_step", label, step_inputs(shape),
                 [a](const TensorList& x) {
                   return run_steps(x, [&](TensorList p) {
                     return optim::SGD(p, optim::SGDOptions(a.lr).momentum(a.momentum).dampening(a.dampening)
                                              .weight_decay(a.weight_decay).nesterov(a.nesterov));
                   });
                 },
                 [a](const std::vector<Ref>& r) { return ref_sgd(r, a); }, {kFloat32, kFloat64}, false});
  };
  sgd_row("plain", {6, 3}, {0.1, 0.0, 0.0, 0.0, false});
  sgd_row("momentum_weight_decay", {5, 5}, {0.1, 0.9, 0.0, 0.01, false});
  sgd_row("nesterov", {17}, {0.05, 0.9, 0.0, 0.001, true});
  sgd_row("dampening", {2, 3, 4}, {0.1, 0.5, 0.3, 0.0, false});
});

}  // namespace
}  // namespace nabla_test
