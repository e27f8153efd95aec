#pragma once
// GradScaler's fused CPU kernels (amp/grad_scaler.hpp's amp_kernels()): the inf/NaN check and the
// unscale of a gradient in one pass (the composite makes four), in float32 for 16-bit gradients
// as PyTorch's opmath; and the scale update on the 0-dim state tensors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../../amp/grad_scaler.hpp"  // the table this file fills
#include "parallel.hpp"

namespace nabla {
namespace cpu {

// Returns whether [b, e) of x holds an inf or NaN; scales it by s in place (unless s is 1).
template <class T>
bool unscale_range(T* __restrict x, int64_t b, int64_t e, float s) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  bool bad = false;
  if (s == 1.0f) {
    for (int64_t i = b; i < e; ++i) bad |= !std::isfinite(static_cast<C>(x[i]));
    return bad;
  }
  for (int64_t i = b; i < e; ++i) {
    const C v = static_cast<C>(x[i]);
    bad |= !std::isfinite(v);
    x[i] = static_cast<T>(v * static_cast<C>(s));
  }
  return bad;
}

inline bool amp_unscale_cpu(const TensorList& grads, const Tensor& found_inf, const Tensor& inv_scale) {
  const float s = *inv_scale.data_ptr<float>();
  bool any = false;
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    dispatch_floating(g.dtype(), "amp_unscale", [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* x = g.data_ptr<T>();
      // one flag per chunk, combined after: no shared write inside the loop
      std::vector<char> flags(64, 0);
      int64_t chunk = std::max<int64_t>(kParallelGrain, (g.numel() + 63) / 64);
      parallel_for(0, (g.numel() + chunk - 1) / chunk, 1, [&](int64_t cb, int64_t ce) {
        for (int64_t c = cb; c < ce; ++c)
          flags[static_cast<size_t>(c)] = unscale_range(x, c * chunk, std::min(g.numel(), (c + 1) * chunk), s);
      });
      for (char f : flags) any = any || f;
    });
  }
  if (any) *found_inf.data_ptr<float>() = 1.0f;
  return true;
}

// PyTorch's _amp_update_scale_: backoff after inf/NaN, growth after growth_interval clean steps
// (only to a finite scale).
inline bool amp_update_scale_cpu(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf,
                                 double growth_factor, double backoff_factor, int64_t growth_interval) {
  if (scale.dtype() != kFloat32 || growth_tracker.dtype() != kInt32 || found_inf.dtype() != kFloat32) return false;
  float& s = *scale.data_ptr<float>();
  int32_t& tracker = *growth_tracker.data_ptr<int32_t>();
  if (*found_inf.data_ptr<float>() != 0.0f) {
    s = static_cast<float>(s * backoff_factor);
    tracker = 0;
    return true;
  }
  const int64_t successful = static_cast<int64_t>(tracker) + 1;
  if (successful == growth_interval) {
    const float grown = static_cast<float>(s * growth_factor);
    if (std::isfinite(grown)) s = grown;
    tracker = 0;
  } else {
    tracker = static_cast<int32_t>(successful);
  }
  return true;
}

NABLA_FILL_KERNELS(amp_cpu, amp_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64, kFloat16, kBFloat16}),
                   (AmpKernels{&amp_unscale_cpu, &amp_update_scale_cpu}));

}  // namespace cpu
}  // namespace nabla
