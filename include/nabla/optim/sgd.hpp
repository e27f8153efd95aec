#pragma once
// optim::SGD: stochastic gradient descent with momentum, dampening, Nesterov momentum and L2
// weight decay, step for step as torch.optim.SGD (and LibTorch's torch::optim::SGD).

#include "optimizer.hpp"

namespace nabla {
namespace optim {

struct SGDOptions {
  SGDOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: SGD(params, 0.1) reads naturally
  NABLA_OPTION(double, lr, 1e-3);
  NABLA_OPTION(double, momentum, 0.0);
  NABLA_OPTION(double, dampening, 0.0);
  NABLA_OPTION(double, weight_decay, 0.0);
  NABLA_OPTION(bool, nesterov, false);

 public:
  // Every hyperparameter by name (schedulers and checkpoints go through this).
  template <class F>
  void visit(F&& f) {
    f("lr", lr_), f("momentum", momentum_), f("dampening", dampening_), f("weight_decay", weight_decay_),
        f("nesterov", nesterov_);
  }
};

class SGD : public OptimizerBase<SGDOptions> {
 public:
  SGD(std::vector<ParamGroup<SGDOptions>> groups, SGDOptions defaults) : OptimizerBase(std::move(groups), defaults) {
    check(defaults);
  }
  SGD(std::vector<Tensor> params, SGDOptions defaults) : SGD(std::vector<ParamGroup<SGDOptions>>{ParamGroup<SGDOptions>(std::move(params))}, defaults) {}

  // d = grad + wd * p;  buf = momentum * buf + (1 - dampening) * d  (buf = d on the first step);
  // d = nesterov ? d + momentum * buf : buf;  p -= lr * d.
  void step() override {
    NoGradGuard no_grad;
    for (auto& group : groups_) {
      const SGDOptions& o = group.options;
      check(o);
      for (Tensor& p : group.params) {
        if (!p.grad().defined()) continue;
        Tensor d = p.grad();
        if (o.weight_decay() != 0) d = d + p * o.weight_decay();
        if (o.momentum() != 0) {
          auto& st = state_for(p);
          Tensor* buf = st.find("momentum_buffer");
          if (!buf) buf = &st.insert("momentum_buffer", d.clone());
          else buf->mul_(o.momentum()).add_(d, 1.0 - o.dampening());
          d = o.nesterov() ? d + *buf * o.momentum() : *buf;
        }
        p.add_(d, -o.lr());
      }
    }
  }

 private:
  static void check(const SGDOptions& o) {
    NABLA_CHECK(o.lr() >= 0 && o.momentum() >= 0 && o.weight_decay() >= 0, ValueError,
                "optim::SGD: lr, momentum and weight_decay must be non-negative, got lr=", o.lr(), " momentum=",
                o.momentum(), " weight_decay=", o.weight_decay());
    NABLA_CHECK(!o.nesterov() || (o.momentum() > 0 && o.dampening() == 0), ValueError,
                "optim::SGD: Nesterov momentum requires a momentum and zero dampening");
  }
};

}  // namespace optim
}  // namespace nabla
