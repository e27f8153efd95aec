#pragma once
// GradScaler: dynamic loss scaling for float16 training, step for step as torch.amp.GradScaler.
// scale(loss) multiplies by the scale S; backward then yields S-times gradients (small float16
// gradients no longer flush to zero); unscale_ divides them by S and records whether any is inf
// or NaN; step skips the optimizer step if so; update multiplies S by backoff_factor after a
// skipped step and by growth_factor after growth_interval clean steps in a row.
//
//   nabla::amp::GradScaler scaler;
//   { nabla::amp::autocast ac(nabla::kCUDA); loss = loss_fn(model->forward(x), y); }
//   scaler.scale(loss).backward();
//   scaler.step(optimizer);      // unscale_ (if not done), then optimizer.step() unless inf/NaN
//   scaler.update();
//
// The scale, the growth counter and the inf flag live on the loss's device: the inf check and
// the unscale of all gradients of one device and dtype are one fused kernel (one launch on a
// GPU), and nothing is read back to the host until step() must decide whether to step.

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../backend/kernel_table.hpp"
#include "../nn/options.hpp"
#include "../optim/optimizer.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

struct AmpKernels {
  // PyTorch's _amp_foreach_non_finite_check_and_unscale_: for every element g of every tensor
  // of `grads` (contiguous, one device, the table's dtype), found_inf = 1 if g is inf or NaN, and
  // g *= inv_scale (in float32 for 16-bit gradients). found_inf and inv_scale: float32 0-dim
  // tensors on the grads' device; the kernel reads inv_scale there (no host synchronisation).
  bool (*non_finite_check_and_unscale)(const TensorList& grads, const Tensor& found_inf, const Tensor& inv_scale) = nullptr;
  // PyTorch's _amp_update_scale_ on 0-dim tensors of one device: scale (float32), growth_tracker
  // (int32), found_inf (float32).
  bool (*update_scale)(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf,
                       double growth_factor, double backoff_factor, int64_t growth_interval) = nullptr;
};
inline KernelTable<AmpKernels>& amp_kernels() {
  static KernelTable<AmpKernels> table("amp_unscale");
  return table;
}

namespace amp {
namespace detail {

// The composite forms: the reference the fused kernels are tested against, and the fallback.
inline void non_finite_check_and_unscale_composite(const TensorList& grads, const Tensor& found_inf,
                                                   const Tensor& inv_scale) {
  NoGradGuard no_grad;
  const Tensor inf = scalar_tensor(std::numeric_limits<double>::infinity(), kFloat32).to(found_inf.device());
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    Tensor gf = g.dtype() == kFloat64 ? g : g.to(kFloat32);  // 16-bit in float32, as the kernels
    Tensor bad = gf.abs().lt(inf).logical_not().any().to(kFloat32);  // NaN compares false too
    found_inf.copy_(maximum(found_inf, bad));
    g.copy_(gf * inv_scale);
  }
}

inline void update_scale_composite(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf,
                                   double growth_factor, double backoff_factor, int64_t growth_interval) {
  NoGradGuard no_grad;
  // read back here: this is the fallback; the kernels decide on the device
  const double s = scale.to(Device::cpu()).item<double>();
  const int64_t tracker = growth_tracker.to(Device::cpu()).item<int64_t>();
  if (found_inf.to(Device::cpu()).item<double>() != 0) {
    scale.fill_(static_cast<float>(s * backoff_factor));
    growth_tracker.fill_(0);
    return;
  }
  const int64_t successful = tracker + 1;
  if (successful == growth_interval) {
    const float grown = static_cast<float>(s * growth_factor);
    if (std::isfinite(grown)) scale.fill_(grown);
    growth_tracker.fill_(0);
  } else {
    growth_tracker.fill_(successful);
  }
}

}  // namespace detail

struct GradScalerOptions {
  NABLA_ARG(double, init_scale) = 65536.0;  // 2^16
  NABLA_ARG(double, growth_factor) = 2.0;
  NABLA_ARG(double, backoff_factor) = 0.5;
  NABLA_ARG(int64_t, growth_interval) = 2000;
  NABLA_ARG(bool, enabled) = true;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {})
      : init_scale_(options.init_scale()),
        growth_factor_(options.growth_factor()),
        backoff_factor_(options.backoff_factor()),
        growth_interval_(options.growth_interval()),
        enabled_(options.enabled()) {
    NABLA_CHECK(growth_factor_ > 1.0, ValueError, "amp::GradScaler: the growth factor must be > 1.0, got ", growth_factor_);
    NABLA_CHECK(backoff_factor_ < 1.0, ValueError, "amp::GradScaler: the backoff factor must be < 1.0, got ",
                backoff_factor_);
    NABLA_CHECK(growth_interval_ > 0, ValueError, "amp::GradScaler: growth_interval must be positive, got ",
                growth_interval_);
  }

  bool is_enabled() const { return enabled_; }

  // outputs * scale (the scale as a float32 0-dim tensor on outputs' device, so the product keeps
  // outputs' dtype). Disabled: outputs unchanged.
  Tensor scale(const Tensor& outputs) {
    if (!enabled_) return outputs;
    NABLA_CHECK(outputs.defined(), ValueError, "amp::GradScaler::scale: the tensor is undefined");
    lazy_init(outputs.device());
    return outputs * scale_.to(outputs.device());
  }
  std::vector<Tensor> scale(const std::vector<Tensor>& outputs) {
    std::vector<Tensor> out;
    out.reserve(outputs.size());
    for (const Tensor& t : outputs) out.push_back(scale(t));
    return out;
  }

  // Divides the optimizer's gradients by the scale in place and records, per device, whether
  // any was inf or NaN. At most once per optimizer between update()s, and not after step().
  void unscale_(optim::Optimizer& optimizer) {
    if (!enabled_) return;
    check_initialized("unscale_()");
    OptimizerState& st = per_optimizer_[&optimizer];
    NABLA_CHECK(st.stage != Stage::Unscaled, Error,
                "amp::GradScaler: unscale_() has already been called on this optimizer since the last update().");
    NABLA_CHECK(st.stage != Stage::Stepped, Error, "amp::GradScaler: unscale_() is being called after step().");
    NoGradGuard no_grad;
    // float64 reciprocal, then float32, as PyTorch's _scale.double().reciprocal().float()
    const Tensor inv_scale = scale_.to(kFloat64).reciprocal().to(kFloat32);
    const Tensor found_inf = zeros({}, TensorOptions(kFloat32).device(scale_.device()));
    st.found_inf_per_device = unscale_grads(optimizer, inv_scale, found_inf, false);
    st.stage = Stage::Unscaled;
  }

  // unscale_ (unless already done), then optimizer.step() unless a gradient was inf or NaN.
  // Returns whether the optimizer stepped (reading the flag back: the one synchronisation).
  bool step(optim::Optimizer& optimizer) {
    if (!enabled_) {
      optimizer.step();
      return true;
    }
    check_initialized("step()");
    OptimizerState& st = per_optimizer_[&optimizer];
    NABLA_CHECK(st.stage != Stage::Stepped, Error, "amp::GradScaler: step() has already been called since the last update().");
    if (st.stage == Stage::Ready) unscale_(optimizer);
    NABLA_CHECK(!st.found_inf_per_device.empty(), Error,
                "amp::GradScaler::step: no inf checks were recorded for this optimizer (none of its parameters has a "
                "gradient).");
    double found = 0;
    for (const auto& [device, flag] : st.found_inf_per_device) found += flag.to(Device::cpu()).item<double>();
    const bool stepped = found == 0;
    if (stepped) optimizer.step();
    st.stage = Stage::Stepped;
    return stepped;
  }

  // The new scale: backoff after a step with inf/NaN gradients, growth after growth_interval clean
  // ones (computed on the device). With new_scale, that value instead.
  void update(std::optional<double> new_scale = std::nullopt) {
    if (!enabled_) return;
    check_initialized("update()");
    NoGradGuard no_grad;
    if (new_scale) {
      scale_.fill_(*new_scale);
    } else {
      std::vector<Tensor> found_infs;
      for (const auto& [opt, st] : per_optimizer_)
        for (const auto& [device, flag] : st.found_inf_per_device) found_infs.push_back(flag.to(scale_.device()));
      NABLA_CHECK(!found_infs.empty(), Error, "amp::GradScaler::update: no inf checks were recorded prior to update().");
      Tensor combined = found_infs[0];
      for (size_t i = 1; i < found_infs.size(); ++i) combined = combined + found_infs[i];
      const AmpKernels* k = amp_kernels().find(scale_.device(), kFloat32);
      if (k && k->update_scale &&
          k->update_scale(scale_, growth_tracker_, combined, growth_factor_, backoff_factor_, growth_interval_)) {
        amp_kernels().count(scale_.device());
      } else {
        detail::update_scale_composite(scale_, growth_tracker_, combined, growth_factor_, backoff_factor_,
                                       growth_interval_);
      }
    }
    per_optimizer_.clear();
  }
  void update(const Tensor& new_scale) {
    if (!enabled_) return;
    check_initialized("update()");
    NABLA_CHECK(new_scale.defined() && new_scale.numel() == 1 && new_scale.dtype() == kFloat32 && !new_scale.requires_grad(),
                ValueError,
                "amp::GradScaler::update: new_scale should be a number or a 1-element float32 tensor with "
                "requires_grad=false");
    NoGradGuard no_grad;
    scale_.copy_(new_scale.reshape({}).to(scale_.device()));
    per_optimizer_.clear();
  }

  // The current scale (a host read); init_scale before the first scale(); 1.0 when disabled.
  double get_scale() const {
    if (!enabled_) return 1.0;
    return scale_.defined() ? scale_.to(Device::cpu()).item<double>() : init_scale_;
  }
  // The scale as a float32 0-dim tensor on its device (undefined before the first scale()).
  const Tensor& get_scale_tensor() const { return scale_; }
  double get_growth_factor() const { return growth_factor_; }
  void set_growth_factor(double v) { growth_factor_ = v; }
  double get_backoff_factor() const { return backoff_factor_; }
  void set_backoff_factor(double v) { backoff_factor_ = v; }
  int64_t get_growth_interval() const { return growth_interval_; }
  void set_growth_interval(int64_t v) { growth_interval_ = v; }
  double get_init_scale() const { return init_scale_; }
  void set_init_scale(double v) { init_scale_ = v; }
  int64_t get_growth_tracker() const {
    return growth_tracker_.defined() ? growth_tracker_.to(Device::cpu()).item<int64_t>() : init_growth_tracker_;
  }

  // PyTorch's keys: scale, growth_factor, backoff_factor, growth_interval, _growth_tracker (each a
  // float64 0-dim tensor); empty when disabled.
  nn::StateDict state_dict() const {
    nn::StateDict out;
    if (!enabled_) return out;
    out.insert("scale", scalar_tensor(get_scale(), kFloat64));
    out.insert("growth_factor", scalar_tensor(growth_factor_, kFloat64));
    out.insert("backoff_factor", scalar_tensor(backoff_factor_, kFloat64));
    out.insert("growth_interval", scalar_tensor(static_cast<double>(growth_interval_), kFloat64));
    out.insert("_growth_tracker", scalar_tensor(static_cast<double>(get_growth_tracker()), kFloat64));
    return out;
  }
  // Every entry is checked before anything changes (a corrupt checkpoint leaves the scaler as it was).
  void load_state_dict(const nn::StateDict& dict) {
    if (!enabled_) return;
    NABLA_CHECK(!dict.empty(), Error,
                "amp::GradScaler::load_state_dict: the source state dict is empty, possibly because it was saved from "
                "a disabled instance of GradScaler.");
    auto number = [&](const char* key) {
      const Tensor* t = dict.find(key);
      NABLA_CHECK(t != nullptr, ValueError, "amp::GradScaler::load_state_dict: entry \"", key, "\" is missing");
      return optim::detail::state_number(*t, key);
    };
    const double scale = number("scale"), growth = number("growth_factor"), backoff = number("backoff_factor");
    const int64_t interval = optim::detail::state_integer(*dict.find("growth_interval"), "growth_interval", 1);
    NABLA_CHECK(dict.find("_growth_tracker"), ValueError, "amp::GradScaler::load_state_dict: entry \"_growth_tracker\" is missing");
    const int64_t tracker = optim::detail::state_integer(*dict.find("_growth_tracker"), "_growth_tracker", 0);
    NABLA_CHECK(scale > 0 && growth > 1.0 && backoff > 0 && backoff < 1.0 && tracker < interval, ValueError,
                "amp::GradScaler::load_state_dict: inconsistent values scale=", scale, " growth_factor=", growth,
                " backoff_factor=", backoff, " growth_interval=", interval, " _growth_tracker=", tracker);
    for (const auto& item : dict)
      NABLA_CHECK(item.key() == "scale" || item.key() == "growth_factor" || item.key() == "backoff_factor" ||
                      item.key() == "growth_interval" || item.key() == "_growth_tracker",
                  ValueError, "amp::GradScaler::load_state_dict: unknown entry \"", item.key(), "\"");
    init_scale_ = scale, growth_factor_ = growth, backoff_factor_ = backoff, growth_interval_ = interval;
    init_growth_tracker_ = tracker;
    NoGradGuard no_grad;
    if (scale_.defined()) scale_.fill_(scale);
    if (growth_tracker_.defined()) growth_tracker_.fill_(tracker);
  }

 private:
  enum class Stage { Ready, Unscaled, Stepped };
  struct OptimizerState {
    Stage stage = Stage::Ready;
    std::map<std::string, Tensor> found_inf_per_device;  // device name -> float32 0-dim flag there
  };

  void lazy_init(Device device) {
    if (scale_.defined()) return;
    scale_ = full({}, init_scale_, TensorOptions(kFloat32).device(device));
    growth_tracker_ = full({}, static_cast<double>(init_growth_tracker_), TensorOptions(kInt32).device(device));
  }
  void check_initialized(const char* what) const {
    NABLA_CHECK(scale_.defined(), Error, "amp::GradScaler: attempted ", what,
                " but the scale is not initialised. This may indicate your script did not use scaler.scale(loss or "
                "outputs) earlier in the iteration.");
  }

  // Groups the gradients by device and dtype; one fused kernel call per group.
  std::map<std::string, Tensor> unscale_grads(optim::Optimizer& optimizer, const Tensor& inv_scale, const Tensor& found_inf,
                                              bool allow_fp16) {
    std::map<std::pair<std::string, DType>, TensorList> groups;
    std::map<std::string, Device> devices;
    for (size_t gi = 0; gi < optimizer.num_param_groups(); ++gi)
      for (const Tensor& p : optimizer.params(gi)) {
        const Tensor& g = p.grad();
        if (!g.defined()) continue;
        NABLA_CHECK(allow_fp16 || g.dtype() != kFloat16, ValueError,
                    "amp::GradScaler: attempting to unscale FP16 gradients (", nabla::detail::describe(g),
                    "); keep the parameters (master weights) in float32 and let autocast run the ops in float16");
        groups[{g.device().str(), g.dtype()}].push_back(g);
        devices.emplace(g.device().str(), g.device());
      }
    std::map<std::string, Tensor> per_device;
    for (const auto& [name, dev] : devices) {
      per_device[name] = dev == found_inf.device() ? found_inf.clone() : found_inf.to(dev);
      per_device[name].zero_();
    }
    for (auto& [key, grads] : groups) {
      const Device dev = devices.at(key.first);
      const Tensor& flag = per_device.at(key.first);
      const Tensor inv = inv_scale.to(dev);
      bool plain = true;
      for (const Tensor& g : grads) plain = plain && g.is_contiguous();
      const AmpKernels* k = plain ? amp_kernels().find(dev, key.second) : nullptr;
      if (k && k->non_finite_check_and_unscale && k->non_finite_check_and_unscale(grads, flag, inv)) {
        amp_kernels().count(dev);
      } else {
        detail::non_finite_check_and_unscale_composite(grads, flag, inv);
      }
      for (const Tensor& g : grads) nabla::detail::bump_version(g);
    }
    return per_device;
  }

  double init_scale_, growth_factor_, backoff_factor_;
  int64_t growth_interval_;
  bool enabled_;
  int64_t init_growth_tracker_ = 0;
  Tensor scale_, growth_tracker_;
  std::map<const optim::Optimizer*, OptimizerState> per_optimizer_;
};

}  // namespace amp
}  // namespace nabla
