#pragma once
// nn::init: in-place initialisers with PyTorch's formulas and defaults (torch.nn.init):
// uniform_ normal_ constant_ zeros_ ones_ xavier_uniform_/normal_ kaiming_uniform_/normal_,
// plus calculate_gain and fan computation. Random draws come from the Philox default generator.

#include <cmath>
#include <string>
#include <utility>

#include "../ops/all.hpp"

namespace nabla {
namespace nn {
namespace init {

namespace detail {
// Writes `value` into t's memory without recording history (t is usually a leaf parameter).
inline Tensor& assign(Tensor& t, const Tensor& value) {
  NoGradGuard no_grad;
  t.copy_(value);
  return t;
}
inline void check_float(const Tensor& t, const char* op) {
  nabla::detail::check_defined(t, op);
  NABLA_CHECK(t.is_floating_point(), DTypeError, "nn::init::", op, ": expected a floating-point tensor, got ",
              nabla::detail::describe(t));
}
}  // namespace detail

inline Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0) {
  detail::check_float(t, "uniform_");
  return detail::assign(t, rand(t.sizes(), t.options()) * (b - a) + a);
}
inline Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0) {
  detail::check_float(t, "normal_");
  return detail::assign(t, randn(t.sizes(), t.options()) * std + mean);
}
inline Tensor constant_(Tensor t, double value) {
  nabla::detail::check_defined(t, "constant_");
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}
inline Tensor zeros_(Tensor t) { return constant_(t, 0.0); }
inline Tensor ones_(Tensor t) { return constant_(t, 1.0); }

// (fan_in, fan_out) of a weight: [out, in, *receptive field], as torch.nn.init computes them.
inline std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  NABLA_CHECK(t.dim() >= 2, ShapeError, "nn::init: fan in and fan out need a tensor with at least 2 dims, got ",
              nabla::detail::describe(t));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

// The recommended gain for a nonlinearity (torch.nn.init.calculate_gain); `param` is the
// negative slope of leaky_relu (0.01 when not given, i.e. negative).
inline double calculate_gain(const std::string& nonlinearity, double param = -1.0) {
  if (nonlinearity == "linear" || nonlinearity == "sigmoid" || nonlinearity.rfind("conv", 0) == 0) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    double slope = param < 0 ? 0.01 : param;
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nonlinearity == "selu") return 3.0 / 4.0;
  throw ValueError("nabla::nn::init::calculate_gain: unsupported nonlinearity \"" + nonlinearity + "\"");
}

enum class FanMode { FanIn, FanOut };

namespace detail {
inline double kaiming_std(const Tensor& t, double a, FanMode mode, const std::string& nonlinearity) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  int64_t fan = mode == FanMode::FanIn ? fan_in : fan_out;
  NABLA_CHECK(fan > 0, ValueError, "nn::init: kaiming init of a tensor with zero fan (", nabla::detail::describe(t), ")");
  return calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace detail

// He initialisation. PyTorch's defaults: a = 0, fan_in, leaky_relu (gain sqrt(2 / (1 + a^2))).
inline Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                                const std::string& nonlinearity = "leaky_relu") {
  double bound = std::sqrt(3.0) * detail::kaiming_std(t, a, mode, nonlinearity);
  return uniform_(t, -bound, bound);
}
inline Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                               const std::string& nonlinearity = "leaky_relu") {
  return normal_(t, 0.0, detail::kaiming_std(t, a, mode, nonlinearity));
}

// Glorot initialisation: std = gain * sqrt(2 / (fan_in + fan_out)).
inline Tensor xavier_uniform_(Tensor t, double gain = 1.0) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  double bound = std::sqrt(3.0) * gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
  return uniform_(t, -bound, bound);
}
inline Tensor xavier_normal_(Tensor t, double gain = 1.0) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)));
}

}  // namespace init
}  // namespace nn
}  // namespace nabla
