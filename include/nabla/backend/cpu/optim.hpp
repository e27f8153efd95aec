#pragma once
// The optimizers' fused CPU steps (optim/adam.hpp's adam_kernels(), optim/sgd.hpp's sgd_kernels()): one pass over each parameter
// doing every elementwise operation of the update, where the composite form in optim/ makes
// five to eight passes and as many temporaries. Formulas as optim/adam.hpp and optim/sgd.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../../optim/adam.hpp"  // the tables this file fills
#include "../../optim/sgd.hpp"
#include "parallel.hpp"

namespace nabla {
namespace cpu {

// The loop body with the options as template parameters and restrict pointers, so that the
// compiler vectorises it (with run-time flags and possible aliasing it stayed scalar).
template <class T, bool Coupled, bool Decoupled, bool Amsgrad>
void adam_loop(T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v, T* __restrict vmax,
               int64_t b, int64_t e, T b1, T b2, T one_m_b1, T one_m_b2, T wd, T decay, T eps, T bc2_sqrt,
               T step_size) {
  for (int64_t i = b; i < e; ++i) {
    T g = grad[i], pi = p[i];
    if constexpr (Coupled) g = g + pi * wd;
    if constexpr (Decoupled) pi = pi * decay;
    const T mi = m[i] * b1 + g * one_m_b1, vi = v[i] * b2 + (g * g) * one_m_b2;
    m[i] = mi, v[i] = vi;
    T second = vi;
    if constexpr (Amsgrad) second = vmax[i] = std::max(vmax[i], vi);
    p[i] = pi + (mi / (std::sqrt(second) / bc2_sqrt + eps)) * step_size;
  }
}

template <class T>
void adam_step_kernel(T* p, const T* grad, T* m, T* v, T* vmax, int64_t n, const AdamStepParams& a) {
  const T b1 = T(a.beta1), b2 = T(a.beta2), one_m_b1 = T(1.0 - a.beta1), one_m_b2 = T(1.0 - a.beta2);
  const T wd = T(a.weight_decay), decay = T(1.0 - a.lr * a.weight_decay), eps = T(a.eps);
  const T bc2_sqrt = T(std::sqrt(1.0 - std::pow(a.beta2, a.step)));
  const T step_size = T(-a.lr / (1.0 - std::pow(a.beta1, a.step)));
  const bool decoupled = a.decoupled && a.weight_decay != 0, coupled = !a.decoupled && a.weight_decay != 0;
  parallel_for(0, n, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    auto run = [&](auto c, auto d, auto ams) {
      adam_loop<T, decltype(c)::value, decltype(d)::value, decltype(ams)::value>(
          p, grad, m, v, vmax, b, e, b1, b2, one_m_b1, one_m_b2, wd, decay, eps, bc2_sqrt, step_size);
    };
    using t = std::true_type;
    using f = std::false_type;
    if (vmax) {
      if (coupled) run(t{}, f{}, t{});
      else if (decoupled) run(f{}, t{}, t{});
      else run(f{}, f{}, t{});
    } else {
      if (coupled) run(t{}, f{}, f{});
      else if (decoupled) run(f{}, t{}, f{});
      else run(f{}, f{}, f{});
    }
  });
}

template <class T>
void sgd_step_kernel(T* p, const T* grad, T* buf, int64_t n, const SgdStepParams& s) {
  const T wd = T(s.weight_decay), mom = T(s.momentum), damp = T(1.0 - s.dampening), neg_lr = T(-s.lr);
  parallel_for(0, n, kParallelGrain / 2, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T d = grad[i];
      if (s.weight_decay != 0) d = d + p[i] * wd;
      if (buf) {
        buf[i] = s.first_step ? d : buf[i] * mom + d * damp;
        d = s.nesterov ? d + buf[i] * mom : buf[i];
      }
      p[i] = p[i] + d * neg_lr;
    }
  });
}

// ---- the CPU slots (float32 and float64) -----------------------------------------------------

inline bool adam_step_cpu(const TensorList& params, const TensorList& grads, const TensorList& exp_avg,
                          const TensorList& exp_avg_sq, const TensorList& max_exp_avg_sq, const AdamStepParams& a) {
  for (size_t i = 0; i < params.size(); ++i) {
    auto run = [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      adam_step_kernel<T>(params[i].data_ptr<T>(), grads[i].data_ptr<T>(), exp_avg[i].data_ptr<T>(),
                          exp_avg_sq[i].data_ptr<T>(), a.amsgrad ? max_exp_avg_sq[i].data_ptr<T>() : nullptr,
                          params[i].numel(), a);
    };
    if (params[i].dtype() == kFloat64) run(static_cast<double*>(nullptr));
    else run(static_cast<float*>(nullptr));
  }
  return true;
}
NABLA_FILL_KERNELS(adam_step_cpu, adam_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
                   AdamKernels{&adam_step_cpu});

inline bool sgd_step_cpu(const TensorList& params, const TensorList& grads, const TensorList& momentum_buffers,
                         const SgdStepParams& s) {
  for (size_t i = 0; i < params.size(); ++i) {
    auto run = [&](auto* t) {
      using T = std::remove_pointer_t<decltype(t)>;
      sgd_step_kernel<T>(params[i].data_ptr<T>(), grads[i].data_ptr<T>(),
                         momentum_buffers.empty() ? nullptr : momentum_buffers[i].data_ptr<T>(), params[i].numel(), s);
    };
    if (params[i].dtype() == kFloat64) run(static_cast<double*>(nullptr));
    else run(static_cast<float*>(nullptr));
  }
  return true;
}
NABLA_FILL_KERNELS(sgd_step_cpu, sgd_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
                   SgdKernels{&sgd_step_cpu});

}  // namespace cpu
}  // namespace nabla
