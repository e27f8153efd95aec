#pragma once
// optim::SGD: stochastic gradient descent with momentum, dampening, Nesterov momentum and L2
// weight decay, step for step as torch.optim.SGD (and LibTorch's torch::optim::SGD).

#include <array>
#include <map>
#include <string>
#include <tuple>

#include "../backend/kernel_table.hpp"
#include "optimizer.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

struct SgdStepParams {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;  // momentum buffers are initialised to the gradient on this step
};

struct SgdKernels {
  // One step over many parameters at once; lists as AdamKernels::step. momentum_buffers is
  // empty when momentum == 0; on the first step (first_step) buffers are set to the
  // (weight-decayed) gradient rather than updated. Semantics as SGD::update below.
  bool (*step)(const TensorList& params, const TensorList& grads, const TensorList& momentum_buffers,
               const SgdStepParams&) = nullptr;
};
inline KernelTable<SgdKernels>& sgd_kernels() {
  static KernelTable<SgdKernels> table("sgd_step");
  return table;
}

namespace optim {

struct SGDOptions {
  SGDOptions(double lr = 1e-3) : lr_(lr) {}  // NOLINT: SGD(params, 0.1) reads naturally
  NABLA_OPTION(double, lr, 1e-3);
  NABLA_OPTION(double, momentum, 0.0);
  NABLA_OPTION(double, dampening, 0.0);
  NABLA_OPTION(double, weight_decay, 0.0);
  NABLA_OPTION(bool, nesterov, false);
  // One fused kernel per step (sgd_kernels()) for all parameters of a device and dtype (see
  // AdamOptions::fused).
  NABLA_OPTION(bool, fused, true);
  // float16 / bfloat16 parameters are updated through float32 copies (OptimizerBase::update_target).
  NABLA_OPTION(bool, master_weights, false);

 public:
  // Every hyperparameter by name (schedulers and checkpoints go through this).
  template <class F>
  void visit(F&& f) {
    f("lr", lr_), f("momentum", momentum_), f("dampening", dampening_), f("weight_decay", weight_decay_),
        f("nesterov", nesterov_), f("fused", fused_), f("master_weights", master_weights_);
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
      // Buckets of fusable parameters by (device, dtype, first step of the momentum buffer).
      std::map<std::tuple<std::string, DType, bool>, std::array<TensorList, 3>> fusable;
      std::vector<std::pair<Tensor, Tensor>> masters;
      for (Tensor& param : group.params) {
        if (!param.grad().defined()) continue;
        Tensor p = update_target(param, o.master_weights(), masters);
        Tensor* buf = nullptr;
        bool first = false;
        if (o.momentum() != 0) {
          auto& st = state_for(param);
          buf = st.find("momentum_buffer");
          first = buf == nullptr;
          if (!buf) buf = &st.insert("momentum_buffer", empty_like(p));
        }
        if (o.fused() && sgd_kernels().find(p.device(), p.dtype()) && fusable_param(p, buf)) {
          auto& b = fusable[{p.device().str(), p.dtype(), first}];
          b[0].push_back(p);
          b[1].push_back(p.grad());
          if (buf) b[2].push_back(*buf);
          continue;
        }
        update(p, buf, first, o);
      }
      for (auto& [key, b] : fusable) {
        SgdStepParams sp{o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov(), std::get<2>(key)};
        const Device dev = b[0].front().device();
        const SgdKernels* k = sgd_kernels().find(dev, std::get<1>(key));
        if (!k || !k->step || !k->step(b[0], b[1], b[2], sp)) {
          for (size_t i = 0; i < b[0].size(); ++i) update(b[0][i], b[2].empty() ? nullptr : &b[2][i], sp.first_step, o);
          continue;
        }
        sgd_kernels().count(dev);
        for (TensorList* t : {&b[0], &b[2]})
          for (Tensor& x : *t) nabla::detail::bump_version(x);
      }
      write_back(masters);
    }
  }

 private:
  // The composite update of one parameter (unfused path, and the reference of the fused one).
  static void update(Tensor& p, Tensor* buf, bool first, const SGDOptions& o) {
    Tensor d = p.grad();
    if (o.weight_decay() != 0) d = d + p * o.weight_decay();
    if (buf) {
      if (first) buf->copy_(d);
      else buf->mul_(o.momentum()).add_(d, 1.0 - o.dampening());
      d = o.nesterov() ? d + *buf * o.momentum() : *buf;
    }
    p.add_(d, -o.lr());
  }

  static bool fusable_param(const Tensor& p, const Tensor* buf) {
    auto ok = [&](const Tensor& t) {
      return t.defined() && t.is_contiguous() && t.dtype() == p.dtype() && t.device() == p.device() &&
             t.sizes() == p.sizes();
    };
    return ok(p) && ok(p.grad()) && (!buf || ok(*buf));
  }

  void check_options(const SGDOptions& o) const override { check(o); }
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
