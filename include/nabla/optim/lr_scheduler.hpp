#pragma once
// Learning-rate schedules with PyTorch's closed forms: StepLR MultiStepLR ExponentialLR
// CosineAnnealingLR LinearWarmup (= SequentialLR(LinearLR, inner)) OneCycleLR. A scheduler
// writes the lr of every param group of its optimizer on construction (epoch 0) and on step().

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "optimizer.hpp"

namespace nabla {
namespace optim {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
    for (size_t g = 0; g < optimizer.num_param_groups(); ++g) base_lrs_.push_back(optimizer.lr(g));
  }
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // The lr of group g after `epoch` steps, from the group's base lr (pure, no side effects).
  virtual double lr_at(size_t group, int64_t epoch) const = 0;

  // Advances one epoch (or iteration, for per-step schedules) and writes the new lrs.
  void step() {
    ++last_epoch_;
    apply();
  }
  std::vector<double> get_last_lr() const { return last_lrs_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  Optimizer& optimizer() const { return optimizer_; }

  // "last_epoch" and "base_lrs.<g>" as 0-dim float64 tensors.
  StateDict state_dict() const {
    StateDict d;
    d.insert("last_epoch", scalar_tensor(static_cast<double>(last_epoch_), kFloat64));
    for (size_t g = 0; g < base_lrs_.size(); ++g) d.insert("base_lrs." + std::to_string(g), scalar_tensor(base_lrs_[g], kFloat64));
    return d;
  }
  // Every entry is checked before any is applied: a missing, non-numeric or out-of-range value is
  // a ValueError naming it, and the scheduler is unchanged.
  void load_state_dict(const StateDict& d) {
    auto entry = [&](const std::string& key) -> const Tensor& {
      const Tensor* t = d.find(key);
      NABLA_CHECK(t != nullptr, ValueError, "optim::LRScheduler::load_state_dict: no entry \"", key, "\"");
      return *t;
    };
    int64_t last_epoch = detail::state_integer(entry("last_epoch"), "last_epoch", -1);
    std::vector<double> base(base_lrs_.size());
    for (size_t g = 0; g < base.size(); ++g) {
      base[g] = detail::state_number(entry("base_lrs." + std::to_string(g)), "base_lrs." + std::to_string(g));
      NABLA_CHECK(base[g] >= 0, ValueError, "optim::LRScheduler::load_state_dict: \"base_lrs.", g, "\" is ", base[g],
                  ", not a learning rate >= 0");
    }
    // the learning rates this state gives must be ones the optimizer takes (finite, >= 0): checked
    // before anything changes, so a refused state leaves the schedule and the optimizer as they were
    std::swap(last_epoch_, last_epoch);
    std::swap(base_lrs_, base);
    for (size_t g = 0; g < base_lrs_.size(); ++g) {
      const double lr = lr_at(g, last_epoch_);
      if (!(std::isfinite(lr) && lr >= 0)) {
        std::swap(last_epoch_, last_epoch);
        std::swap(base_lrs_, base);
        throw ValueError(nabla::detail::cat("nabla::optim::LRScheduler::load_state_dict: last_epoch ", last_epoch,
                                            " and base_lrs.", g, " = ", base[g], " give the learning rate ", lr,
                                            ", not a finite number >= 0"));
      }
    }
    apply();
  }

 protected:
  // Derived constructors call this last (lr_at is virtual, so the base constructor cannot).
  void initial_step() { apply(); }
  virtual void apply() {
    last_lrs_.clear();
    for (size_t g = 0; g < base_lrs_.size(); ++g) {
      double lr = lr_at(g, last_epoch_);
      optimizer_.set_lr(g, lr);
      last_lrs_.push_back(lr);
    }
  }

  Optimizer& optimizer_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lrs_;
  int64_t last_epoch_ = 0;
};

// base * gamma^floor(epoch / step_size).
class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1) : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
    NABLA_CHECK(step_size > 0, ValueError, "optim::StepLR: step_size must be positive, got ", step_size);
    initial_step();
  }
  double lr_at(size_t g, int64_t e) const override {
    return base_lrs_[g] * std::pow(gamma_, static_cast<double>(e / step_size_));
  }

 private:
  int64_t step_size_;
  double gamma_;
};

// base * gamma^(number of milestones <= epoch).
class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& opt, std::vector<int64_t> milestones, double gamma = 0.1)
      : LRScheduler(opt), milestones_(std::move(milestones)), gamma_(gamma) {
    std::sort(milestones_.begin(), milestones_.end());
    initial_step();
  }
  double lr_at(size_t g, int64_t e) const override {
    auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), e) - milestones_.begin();
    return base_lrs_[g] * std::pow(gamma_, static_cast<double>(passed));
  }

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
};

// base * gamma^epoch.
class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& opt, double gamma) : LRScheduler(opt), gamma_(gamma) { initial_step(); }
  double lr_at(size_t g, int64_t e) const override { return base_lrs_[g] * std::pow(gamma_, static_cast<double>(e)); }

 private:
  double gamma_;
};

// eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (PyTorch's closed form).
class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, int64_t T_max, double eta_min = 0.0) : LRScheduler(opt), T_max_(T_max), eta_min_(eta_min) {
    NABLA_CHECK(T_max > 0, ValueError, "optim::CosineAnnealingLR: T_max must be positive, got ", T_max);
    initial_step();
  }
  double lr_at(size_t g, int64_t e) const override {
    return eta_min_ + (base_lrs_[g] - eta_min_) * (1 + std::cos(std::numbers::pi * static_cast<double>(e) / static_cast<double>(T_max_))) / 2;
  }

 private:
  int64_t T_max_;
  double eta_min_;
};

// Linear warmup from start_factor * base to base over warmup_steps, then `after` (counted
// from the end of the warmup), or the base lr when there is none. Equivalent to PyTorch's
// SequentialLR([LinearLR(start_factor, 1.0, warmup_steps), after], milestones=[warmup_steps]).
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& opt, int64_t warmup_steps, double start_factor = 0.0, std::shared_ptr<LRScheduler> after = nullptr)
      : LRScheduler(opt), warmup_(warmup_steps), start_(start_factor), after_(std::move(after)) {
    NABLA_CHECK(warmup_steps > 0, ValueError, "optim::LinearWarmup: warmup_steps must be positive, got ", warmup_steps);
    NABLA_CHECK(start_factor >= 0 && start_factor <= 1, ValueError, "optim::LinearWarmup: start_factor must be in [0, 1], got ",
                start_factor);
    NABLA_CHECK(!after_ || &after_->optimizer() == &opt, ValueError, "optim::LinearWarmup: the inner schedule drives another optimizer");
    if (after_) base_lrs_ = after_->base_lrs();  // its construction may already have moved the lr
    initial_step();
  }
  double lr_at(size_t g, int64_t e) const override {
    if (e < warmup_) return base_lrs_[g] * (start_ + (1.0 - start_) * static_cast<double>(e) / static_cast<double>(warmup_));
    return after_ ? after_->lr_at(g, e - warmup_) : base_lrs_[g];
  }

 private:
  int64_t warmup_;
  double start_;
  std::shared_ptr<LRScheduler> after_;
};

struct OneCycleOptions {
  NABLA_OPTION(double, pct_start, 0.3);
  NABLA_OPTION(std::string, anneal_strategy, "cos");  // "cos" or "linear"
  NABLA_OPTION(bool, cycle_momentum, true);
  NABLA_OPTION(double, base_momentum, 0.85);
  NABLA_OPTION(double, max_momentum, 0.95);
  NABLA_OPTION(double, div_factor, 25.0);
  NABLA_OPTION(double, final_div_factor, 1e4);
  NABLA_OPTION(bool, three_phase, false);
};

// The 1cycle policy (torch.optim.lr_scheduler.OneCycleLR): lr rises from max_lr / div_factor
// to max_lr over pct_start of total_steps, then anneals to initial_lr / final_div_factor;
// momentum ("momentum" for SGD, beta1 for Adam) moves the opposite way when cycled.
class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& opt, double max_lr, int64_t total_steps, OneCycleOptions o = {})
      : OneCycleLR(opt, std::vector<double>(opt.num_param_groups(), max_lr), total_steps, std::move(o)) {}
  OneCycleLR(Optimizer& opt, std::vector<double> max_lrs, int64_t total_steps, OneCycleOptions o = {})
      : LRScheduler(opt), max_lrs_(std::move(max_lrs)), total_(total_steps), o_(std::move(o)) {
    NABLA_CHECK(total_steps > 0, ValueError, "optim::OneCycleLR: total_steps must be positive, got ", total_steps);
    NABLA_CHECK(max_lrs_.size() == opt.num_param_groups(), ValueError, "optim::OneCycleLR: ", max_lrs_.size(),
                " max_lrs for ", opt.num_param_groups(), " param groups");
    NABLA_CHECK(o_.pct_start() >= 0 && o_.pct_start() <= 1, ValueError, "optim::OneCycleLR: pct_start must be in [0, 1]");
    NABLA_CHECK(o_.anneal_strategy() == "cos" || o_.anneal_strategy() == "linear", ValueError,
                "optim::OneCycleLR: anneal_strategy must be \"cos\" or \"linear\", got \"", o_.anneal_strategy(), "\"");
    momentum_key_ = opt.has_option(0, "momentum") ? "momentum" : "beta1";
    NABLA_CHECK(!o_.cycle_momentum() || opt.has_option(0, momentum_key_), ValueError,
                "optim::OneCycleLR: cycle_momentum needs an optimizer with momentum or beta1");
    for (size_t g = 0; g < max_lrs_.size(); ++g) base_lrs_[g] = max_lrs_[g] / o_.div_factor();  // "initial_lr"
    const double T = static_cast<double>(total_);
    const double p = o_.pct_start();
    if (o_.three_phase())
      phases_ = {{p * T - 1, 0, 1, 1, 2}, {2 * p * T - 2, 1, 0, 2, 1}, {T - 1, 0, 2, 1, 1}};
    else
      phases_ = {{p * T - 1, 0, 1, 1, 2}, {T - 1, 1, 2, 2, 1}};
    initial_step();
  }

  double lr_at(size_t g, int64_t e) const override { return at(g, e, false); }
  double momentum_at(size_t g, int64_t e) const { return at(g, e, true); }

 protected:
  void apply() override {
    NABLA_CHECK(last_epoch_ < total_ + 1, ValueError, "optim::OneCycleLR: tried to step ", last_epoch_,
                " times, more than total_steps = ", total_);
    LRScheduler::apply();
    if (o_.cycle_momentum())
      for (size_t g = 0; g < base_lrs_.size(); ++g) optimizer_.set_option(g, momentum_key_, momentum_at(g, last_epoch_));
  }

 private:
  // A phase ends at end_step and goes from value `from` to `to`; for the lr the values index
  // {initial, max, min}, for momentum {max, base, -, -, -} is mapped below.
  struct Phase {
    double end_step;
    int lr_from, lr_to;  // 0 initial, 1 max, 2 min
    int m_from, m_to;    // 1 max_momentum, 2 base_momentum
  };
  double lr_value(size_t g, int which) const {
    double initial = base_lrs_[g];
    return which == 0 ? initial : which == 1 ? max_lrs_[g] : initial / o_.final_div_factor();
  }
  double momentum_value(int which) const { return which == 1 ? o_.max_momentum() : o_.base_momentum(); }
  double anneal(double start, double end, double pct) const {
    if (o_.anneal_strategy() == "cos") return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
    return (end - start) * pct + start;
  }
  double at(size_t g, int64_t e, bool momentum) const {
    const double step = static_cast<double>(e);
    double start_step = 0;
    for (size_t i = 0; i < phases_.size(); ++i) {
      const Phase& ph = phases_[i];
      if (step <= ph.end_step || i + 1 == phases_.size()) {
        double pct = (step - start_step) / (ph.end_step - start_step);
        return momentum ? anneal(momentum_value(ph.m_from), momentum_value(ph.m_to), pct)
                        : anneal(lr_value(g, ph.lr_from), lr_value(g, ph.lr_to), pct);
      }
      start_step = ph.end_step;
    }
    return 0.0;
  }

  std::vector<double> max_lrs_;
  int64_t total_;
  OneCycleOptions o_;
  std::string momentum_key_;
  std::vector<Phase> phases_;
};

}  // namespace optim
}  // namespace nabla
