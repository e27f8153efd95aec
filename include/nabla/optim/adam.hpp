#pragma once
// optim::Adam and optim::AdamW (decoupled weight decay), with optional AMSGrad, step for
// step as torch.optim.Adam / AdamW (and LibTorch's). State per parameter: step, exp_avg,
// exp_avg_sq, and max_exp_avg_sq with amsgrad.

#include <cmath>
#include <map>
#include <string>
#include <tuple>

#include "../backend/kernel_table.hpp"
#include "optimizer.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

struct AdamStepParams {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  bool amsgrad = false;
  double step = 1;  // the step count after this step (1 on the first), for bias correction
};

struct AdamKernels {
  // One step over many parameters at once (one launch on a GPU, not one per parameter per
  // operation). Lists are parallel; each entry's tensors are contiguous, have its parameter's
  // shape, dtype and device; params and state are updated in place; max_exp_avg_sq is empty
  // without amsgrad. Semantics as torch.optim.Adam / AdamW (AdamImpl::update below).
  bool (*step)(const TensorList& params, const TensorList& grads, const TensorList& exp_avg,
               const TensorList& exp_avg_sq, const TensorList& max_exp_avg_sq, const AdamStepParams&) = nullptr;
};
inline KernelTable<AdamKernels>& adam_kernels() {
  static KernelTable<AdamKernels> table("adam_step");
  return table;
}

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
  // One fused kernel per step (adam_kernels()) for all parameters of a device and dtype (one pass
  // per parameter on the CPU, one launch on a GPU) instead of ~8 elementwise ops per parameter.
  NABLA_OPTION(bool, fused, true);
  // float16 / bfloat16 parameters are updated through float32 copies, with float32 moments
  // (OptimizerBase::update_target).
  NABLA_OPTION(bool, master_weights, false);

 public:
  auto& betas(std::pair<double, double> b) {
    beta1_ = b.first;
    beta2_ = b.second;
    return *this;
  }
  // LibTorch's spelling, std::make_tuple(b1, b2), or any pair-like
  template <class Pair, class = decltype(std::get<1>(std::declval<const Pair&>()))>
  auto& betas(const Pair& b) {
    return betas(std::pair<double, double>(std::get<0>(b), std::get<1>(b)));
  }
  std::pair<double, double> betas() const { return {beta1_, beta2_}; }
  template <class F>
  void visit(F&& f) {
    f("lr", lr_), f("beta1", beta1_), f("beta2", beta2_), f("eps", eps_), f("weight_decay", weight_decay_),
        f("amsgrad", amsgrad_), f("fused", fused_), f("master_weights", master_weights_);
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
  void check_options(const Options& o) const override {
    NABLA_CHECK(o.lr() >= 0 && o.eps() >= 0 && o.weight_decay() >= 0 && o.beta1() >= 0 && o.beta1() < 1 &&
                    o.beta2() >= 0 && o.beta2() < 1,
                ValueError, "optim::Adam: invalid hyperparameters lr=", o.lr(), " betas=(", o.beta1(), ", ", o.beta2(),
                ") eps=", o.eps(), " weight_decay=", o.weight_decay());
  }

  // exp_avg and exp_avg_sq come together, with their step (max_exp_avg_sq is made when missing)
  void check_state(const OrderedDict<Tensor>& st, const std::string& prefix) const override {
    const bool m = st.contains("exp_avg"), v = st.contains("exp_avg_sq"), t = st.contains("step");
    NABLA_CHECK(m == v && (!m || t), ValueError, "optim::Adam::load_state_dict: ", prefix,
                " must hold exp_avg, exp_avg_sq and step together (it has", m ? " exp_avg" : "", v ? " exp_avg_sq" : "",
                t ? " step" : "", ")");
  }

  void step() override {
    NoGradGuard no_grad;
    for (auto& group : this->groups_) {
      const Options& o = group.options;
      check_options(o);
      Buckets fusable;
      std::vector<std::pair<Tensor, Tensor>> masters;
      for (Tensor& param : group.params) {
        if (!param.grad().defined()) continue;
        Tensor p = this->update_target(param, o.master_weights(), masters);
        auto& st = this->state_for(param);
        if (!st.contains("exp_avg")) {
          st.insert("exp_avg", zeros_like(p));
          st.insert("exp_avg_sq", zeros_like(p));
        }
        if (o.amsgrad() && !st.contains("max_exp_avg_sq")) st.insert("max_exp_avg_sq", zeros_like(p));
        const double step = this->increment_step(st);
        if (o.fused() && adam_kernels().find(p.device(), p.dtype()) && fusable_param(p, st, o.amsgrad())) {
          Bucket& b = fusable[{p.device().str(), p.dtype(), step}];
          b.params.push_back(p);
          b.grads.push_back(p.grad());
          b.exp_avg.push_back(st.at("exp_avg"));
          b.exp_avg_sq.push_back(st.at("exp_avg_sq"));
          if (o.amsgrad()) b.max_exp_avg_sq.push_back(st.at("max_exp_avg_sq"));
          continue;
        }
        update(p, st, o, step);
      }
      const auto state_of = [this, &masters](const Tensor& target) -> OrderedDict<Tensor>& {
        for (const auto& [param, master] : masters)
          if (master.is_same(target)) return this->state_for(param);
        return this->state_for(target);
      };
      for (auto& [key, b] : fusable) {
        AdamStepParams a{o.lr(), o.beta1(), o.beta2(), o.eps(), o.weight_decay(), Decoupled, o.amsgrad(), std::get<2>(key)};
        const Device dev = b.params.front().device();
        const AdamKernels* k = adam_kernels().find(dev, std::get<1>(key));
        if (!k || !k->step || !k->step(b.params, b.grads, b.exp_avg, b.exp_avg_sq, b.max_exp_avg_sq, a)) {
          for (Tensor& p : b.params) update(p, state_of(p), o, a.step);  // no kernel: composite
          continue;
        }
        adam_kernels().count(dev);
        for (TensorList* t : {&b.params, &b.exp_avg, &b.exp_avg_sq, &b.max_exp_avg_sq})
          for (Tensor& x : *t) nabla::detail::bump_version(x);
      }
      this->write_back(masters);
    }
  }

 private:
  // The composite update of one parameter (unfused path, and the reference of the fused one).
  static void update(Tensor& p, OrderedDict<Tensor>& st, const Options& o, double step) {
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
      Tensor& vmax = st.at("max_exp_avg_sq");
      vmax.copy_(maximum(vmax, v));
      second = vmax;
    }
    Tensor denom = second.sqrt() / bc2_sqrt + o.eps();
    p.add_(m / denom, -o.lr() / bc1);
  }

  struct Bucket {
    TensorList params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  using Buckets = std::map<std::tuple<std::string, DType, double>, Bucket>;

  // The fused kernels take contiguous tensors of one device and dtype (the table says which dtypes).
  static bool fusable_param(const Tensor& p, OrderedDict<Tensor>& st, bool amsgrad) {
    auto ok = [&](const Tensor& t) {
      return t.defined() && t.is_contiguous() && t.dtype() == p.dtype() && t.device() == p.device() &&
             t.sizes() == p.sizes();
    };
    return ok(p) && ok(p.grad()) && ok(st.at("exp_avg")) && ok(st.at("exp_avg_sq")) &&
           (!amsgrad || ok(st.at("max_exp_avg_sq")));
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
