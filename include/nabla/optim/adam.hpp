#pragma once
// optim::Adam and optim::AdamW (decoupled weight decay), with optional AMSGrad, step for
// step as torch.optim.Adam / AdamW (and LibTorch's). State per parameter: step, exp_avg,
// exp_avg_sq, and max_exp_avg_sq with amsgrad.

#include <cmath>

#include "optimizer.hpp"

namespace nabla {
namespace optim {

// Adam's and AdamW's options; they differ only in the default weight decay (AdamW: 1e-2).
template <bool Decoupled>
struct AdamOptionsT {
  AdamOptionsT(double lr = 1e-3) : lr_(lr) {}  // NOLINT: Adam(params, 1e-3) reads naturally
  NABLA_OPTION(double, lr, 1e-3);
  NABLA_OPTION(double, beta1, 0.9);
  NABLA_OPTION(double, beta2, 0.999);
  NABLA_OPTION(double, eps, 1e-8);
  NABLA_OPTION(double, weight_decay, Decoupled ? 1e-2 : 0.0);
  NABLA_OPTION(bool, amsgrad, false);

 public:
  auto& betas(std::pair<double, double> b) {
    beta1_ = b.first;
    beta2_ = b.second;
    return *this;
  }
  std::pair<double, double> betas() const { return {beta1_, beta2_}; }
  template <class F>
  void visit(F&& f) {
    f("lr", lr_), f("beta1", beta1_), f("beta2", beta2_), f("eps", eps_), f("weight_decay", weight_decay_),
        f("amsgrad", amsgrad_);
  }
};

using AdamOptions = AdamOptionsT<false>;
using AdamWOptions = AdamOptionsT<true>;

namespace detail {
template <class Options, bool Decoupled>
class AdamImpl : public OptimizerBase<Options> {
 public:
  AdamImpl(std::vector<ParamGroup<Options>> groups, Options defaults) : OptimizerBase<Options>(std::move(groups), defaults) {}

  // g = grad (+ wd * p for Adam; AdamW instead scales p by 1 - lr * wd);
  // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  (amsgrad: vmax = max(vmax, v), used for v)
  // p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  void step() override {
    NoGradGuard no_grad;
    for (auto& group : this->groups_) {
      const Options& o = group.options;
      NABLA_CHECK(o.lr() >= 0 && o.eps() >= 0 && o.weight_decay() >= 0 && o.beta1() >= 0 && o.beta1() < 1 &&
                      o.beta2() >= 0 && o.beta2() < 1,
                  ValueError, "optim::Adam: invalid hyperparameters lr=", o.lr(), " betas=(", o.beta1(), ", ", o.beta2(),
                  ") eps=", o.eps(), " weight_decay=", o.weight_decay());
      for (Tensor& p : group.params) {
        if (!p.grad().defined()) continue;
        auto& st = this->state_for(p);
        if (!st.contains("exp_avg")) {
          st.insert("exp_avg", zeros_like(p));
          st.insert("exp_avg_sq", zeros_like(p));
          if (o.amsgrad()) st.insert("max_exp_avg_sq", zeros_like(p));
        }
        const double step = this->increment_step(st);
        Tensor g = p.grad();
        if (o.weight_decay() != 0) {
          if (Decoupled) p.mul_(1.0 - o.lr() * o.weight_decay());
          else g = g + p * o.weight_decay();
        }
        Tensor& m = st.at("exp_avg");
        Tensor& v = st.at("exp_avg_sq");
        m.mul_(o.beta1()).add_(g, 1.0 - o.beta1());
        v.mul_(o.beta2()).add_(g * g, 1.0 - o.beta2());
        const double bc1 = 1.0 - std::pow(o.beta1(), step), bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2(), step));
        Tensor second = v;
        if (o.amsgrad()) {
          Tensor* vmax = st.find("max_exp_avg_sq");
          if (!vmax) vmax = &st.insert("max_exp_avg_sq", zeros_like(p));  // amsgrad switched on later
          vmax->copy_(maximum(*vmax, v));
          second = *vmax;
        }
        Tensor denom = second.sqrt() / bc2_sqrt + o.eps();
        p.add_(m / denom, -o.lr() / bc1);
      }
    }
  }
};
}  // namespace detail

class Adam : public detail::AdamImpl<AdamOptions, false> {
 public:
  Adam(std::vector<ParamGroup<AdamOptions>> groups, AdamOptions defaults) : AdamImpl(std::move(groups), defaults) {}
  Adam(std::vector<Tensor> params, AdamOptions defaults = {})
      : Adam(std::vector<ParamGroup<AdamOptions>>{ParamGroup<AdamOptions>(std::move(params))}, defaults) {}
};

class AdamW : public detail::AdamImpl<AdamWOptions, true> {
 public:
  AdamW(std::vector<ParamGroup<AdamWOptions>> groups, AdamWOptions defaults) : AdamImpl(std::move(groups), defaults) {}
  AdamW(std::vector<Tensor> params, AdamWOptions defaults = {})
      : AdamW(std::vector<ParamGroup<AdamWOptions>>{ParamGroup<AdamWOptions>(std::move(params))}, defaults) {}
};

}  // namespace optim
}  // namespace nabla
