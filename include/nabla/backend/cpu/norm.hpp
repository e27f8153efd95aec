#pragma once
// batch_norm's fused CPU kernels (ops/norm.hpp's batch_norm_kernels()): per channel,
// one pass for the statistics (accumulated in double) and one for the output, instead of the
// composite's half-dozen full-size temporaries. The composite in ops/conv.hpp is the reference.

#include <cmath>
#include <cstdint>

#include <type_traits>

#include "../../ops/norm.hpp"  // the table this file fills
#include "parallel.hpp"

namespace nabla {
namespace cpu {

struct NormShape {
  int64_t N, C, inner;  // x viewed as [N, C, inner]
};

template <class T>
void batch_norm_forward_kernel(T* out, T* save_mean, T* save_invstd, const T* x, const T* w, const T* b,
                               T* running_mean, T* running_var, const NormShape& s, bool training, double momentum,
                               double eps) {
  const int64_t count = s.N * s.inner;
  parallel_for(0, s.C, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, count)), [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      double mean, invstd;
      if (training) {
        double sum = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T* p = x + (n * s.C + c) * s.inner;
          for (int64_t i = 0; i < s.inner; ++i) sum += double(p[i]);
        }
        mean = sum / double(count);
        double sq = 0;
        for (int64_t n = 0; n < s.N; ++n) {
          const T* p = x + (n * s.C + c) * s.inner;
          for (int64_t i = 0; i < s.inner; ++i) {
            const double d = double(p[i]) - mean;
            sq += d * d;
          }
        }
        const double var = sq / double(count);
        invstd = 1.0 / std::sqrt(var + eps);
        if (save_mean) save_mean[c] = T(mean);
        if (save_invstd) save_invstd[c] = T(invstd);
        if (running_mean) running_mean[c] = T((1.0 - momentum) * double(running_mean[c]) + momentum * mean);
        if (running_var && count > 1)
          running_var[c] = T((1.0 - momentum) * double(running_var[c]) +
                             momentum * var * double(count) / double(count - 1));
      } else {
        mean = double(running_mean[c]);
        invstd = 1.0 / std::sqrt(double(running_var[c]) + eps);
      }
      const T scale = T(invstd * (w ? double(w[c]) : 1.0));
      const T shift = T((b ? double(b[c]) : 0.0) - mean * invstd * (w ? double(w[c]) : 1.0));
      for (int64_t n = 0; n < s.N; ++n) {
        const T* p = x + (n * s.C + c) * s.inner;
        T* q = out + (n * s.C + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) q[i] = p[i] * scale + shift;
      }
    }
  });
}

// Training-mode gradients: with xhat = (x - mean) * invstd,
// gx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)), gw = sum(g * xhat), gb = sum(g).
template <class T>
void batch_norm_backward_kernel(T* gx, T* gw, T* gb, const T* g, const T* x, const T* w, const T* save_mean,
                                const T* save_invstd, const NormShape& s) {
  const int64_t count = s.N * s.inner;
  parallel_for(0, s.C, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, count)), [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const double mean = double(save_mean[c]), invstd = double(save_invstd[c]);
      double sum_g = 0, sum_gx = 0;
      for (int64_t n = 0; n < s.N; ++n) {
        const T* gp = g + (n * s.C + c) * s.inner;
        const T* xp = x + (n * s.C + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          sum_g += double(gp[i]);
          sum_gx += double(gp[i]) * (double(xp[i]) - mean);
        }
      }
      if (gb) gb[c] = T(sum_g);
      if (gw) gw[c] = T(sum_gx * invstd);
      if (!gx) continue;
      const double wc = w ? double(w[c]) : 1.0;
      const double k = wc * invstd, mean_g = sum_g / double(count), proj = sum_gx * invstd * invstd / double(count);
      // gx = k * (g - mean_g - (x - mean) * proj)
      const T a = T(k), bconst = T(k * (-mean_g + mean * proj)), cx = T(-k * proj);
      for (int64_t n = 0; n < s.N; ++n) {
        const T* gp = g + (n * s.C + c) * s.inner;
        const T* xp = x + (n * s.C + c) * s.inner;
        T* o = gx + (n * s.C + c) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) o[i] = gp[i] * a + xp[i] * cx + bconst;
      }
    }
  });
}

// ---- batch_norm's CPU slots (float32 and float64) ---------------------------------------------

inline NormShape norm_shape(const Tensor& x) {
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {x.size(0), x.size(1), inner};
}

template <class F>
void float_or_double_norm(const Tensor& x, F&& f) {
  if (x.dtype() == kFloat64) f(static_cast<double*>(nullptr));
  else f(static_cast<float*>(nullptr));
}

inline bool batch_norm_forward_cpu(const Tensor& out, const Tensor& save_mean, const Tensor& save_invstd,
                                   const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                                   const Tensor& running_var, bool training, double momentum, double eps) {
  float_or_double_norm(x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    auto ptr = [](const Tensor& u) { return u.defined() ? u.data_ptr<T>() : nullptr; };
    batch_norm_forward_kernel<T>(out.data_ptr<T>(), ptr(save_mean), ptr(save_invstd), x.data_ptr<T>(), ptr(weight),
                                 ptr(bias), ptr(running_mean), ptr(running_var), norm_shape(x), training, momentum, eps);
  });
  return true;
}
inline bool batch_norm_backward_cpu(const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias,
                                    const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                    const Tensor& save_mean, const Tensor& save_invstd) {
  float_or_double_norm(x, [&](auto* t) {
    using T = std::remove_pointer_t<decltype(t)>;
    auto ptr = [](const Tensor& u) { return u.defined() ? u.data_ptr<T>() : nullptr; };
    batch_norm_backward_kernel<T>(ptr(grad_x), ptr(grad_weight), ptr(grad_bias), grad_out.data_ptr<T>(),
                                  x.data_ptr<T>(), ptr(weight), save_mean.data_ptr<T>(), save_invstd.data_ptr<T>(),
                                  norm_shape(x));
  });
  return true;
}
NABLA_FILL_KERNELS(batch_norm_cpu, batch_norm_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
                   (BatchNormKernels{&batch_norm_forward_cpu, &batch_norm_backward_cpu}));

}  // namespace cpu
}  // namespace nabla
