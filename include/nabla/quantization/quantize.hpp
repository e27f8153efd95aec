#pragma once
// int8 post-training quantization (WORK IN PROGRESS on branch wip/quantization; see
// docs/inference.md): quantize_dynamic (Linear, activations quantized per batch) and quantize
// (static: activation scales from calibration; Linear and Conv2d). The quantized model wraps the
// float one, which stays untouched, and runs its forward with a forward interceptor installed
// (nn::detail::ForwardInterceptor): each Linear / Conv2d it knows runs its int8 version.
//
// Measured (MNIST CNN after 1 epoch, AMD EPYC 2 threads, a scratch program of the session of
// 2026-12-07): float32 98.44% 13.4 ms at batch 64; static int8 (this file) 98.42%, 16.9 ms with
// cpu::conv2d_int8 (uint8 windows gathered straight into the GEMM rows, images over threads;
// the first version, float im2col + transpose + quantize, took 41 ms). Still 1.26x SLOWER than
// float32: left are the per-layer quantize pass, the [P, O] -> NCHW transpose, the separate ReLU
// and max-pool passes in float; fuse ReLU into the epilogue and keep uint8 between layers.
// TODO before merging: the kernel through a kernel table (ops/quantized.hpp, filled by
// backend/cpu/) instead of including the CPU GEMM here; conv + batch norm + ReLU folding found by
// tracing; the histogram observer's PyTorch-like search; QDQ export; CUDA (cuBLASLt int8).

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../backend/cpu/gemm_int8.hpp"
#include "../nn/conv_layers.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"

namespace nabla {
namespace quantization {

// Affine uint8 parameters: x ~ (q - zero_point) * scale, q in [0, 255].
struct QParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// PyTorch's choose_qparams for quint8: the range widened to include 0 (so 0.0 is exact).
inline QParams choose_qparams(double lo, double hi) {
  lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  QParams q;
  q.scale = static_cast<float>(std::max((hi - lo) / 255.0, static_cast<double>(std::numeric_limits<float>::epsilon())));
  q.zero_point = static_cast<int32_t>(std::clamp<double>(std::nearbyint(-lo / q.scale), 0, 255));
  return q;
}

// The running min and max of what it sees.
class MinMaxObserver {
 public:
  void observe(const Tensor& x) {
    Tensor d = x.detach();
    lo_ = std::min(lo_, d.min().item<double>());
    hi_ = std::max(hi_, d.max().item<double>());
  }
  QParams qparams() const { return choose_qparams(lo_, hi_); }

 private:
  double lo_ = std::numeric_limits<double>::infinity(), hi_ = -std::numeric_limits<double>::infinity();
};

// Per output channel symmetric int8 weights: w ~ q * scale[c], q in [-127, 127].
struct Int8Weights {
  std::vector<int8_t> q;
  std::vector<float> scale;
};
inline Int8Weights quantize_weights(const Tensor& w2d) {
  Tensor w = w2d.detach().to(Device::cpu(), kFloat32).contiguous();
  const int64_t N = w.size(0), K = w.size(1);
  const float* p = w.data<float>();
  Int8Weights r;
  r.q.resize(static_cast<size_t>(N * K));
  r.scale.resize(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    float amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(p[n * K + k]));
    const float s = amax > 0 ? amax / 127.0f : 1.0f;
    r.scale[static_cast<size_t>(n)] = s;
    for (int64_t k = 0; k < K; ++k)
      r.q[static_cast<size_t>(n * K + k)] = static_cast<int8_t>(std::clamp(std::nearbyint(p[n * K + k] / s), -127.0f, 127.0f));
  }
  return r;
}

// One layer's int8 version: y = x W^T + b on [M, K] rows, with static or per-batch input scales.
struct QuantizedGemm {
  cpu::PackedInt8 packed;
  std::vector<float> w_scale, bias;
  std::optional<QParams> input;  // nullopt: dynamic (from each batch's min and max)
  bool relu = false;

  QuantizedGemm(const Tensor& w2d, const Tensor& b, std::optional<QParams> in) : input(in) {
    Int8Weights q = quantize_weights(w2d);
    packed = cpu::pack_int8(q.q.data(), w2d.size(0), w2d.size(1));
    w_scale = std::move(q.scale);
    if (b.defined()) {
      Tensor bc = b.detach().to(Device::cpu(), kFloat32).contiguous();
      bias.assign(bc.data<float>(), bc.data<float>() + bc.numel());
    }
  }
  // x: [N, C, H, W] float32 CPU contiguous -> [N, O, Ho, Wo]
  Tensor run_conv(const Tensor& x, const cpu::Conv2dGeometry& g) const {
    NABLA_CHECK(input.has_value(), ValueError, "quantization: a dynamic int8 conv is not supported (calibrate it)");
    cpu::Int8Epilogue e;
    e.a_scale = input->scale, e.a_zero_point = input->zero_point, e.b_scale = w_scale.data();
    e.bias = bias.empty() ? nullptr : bias.data(), e.relu = relu;
    Tensor out = empty({x.size(0), packed.N, g.Ho, g.Wo}, TensorOptions(kFloat32));
    cpu::conv2d_int8(x.data<float>(), x.size(0), g, packed, e, out.data<float>());
    return out;
  }
  // rows: [M, K] float32 CPU contiguous -> [M, N]
  Tensor run(const Tensor& rows) const {
    const int64_t M = rows.size(0);
    QParams q = input ? *input : [&] {
      MinMaxObserver o;
      o.observe(rows);
      return o.qparams();
    }();
    cpu::Int8Epilogue e;
    e.a_scale = q.scale, e.a_zero_point = q.zero_point, e.b_scale = w_scale.data();
    e.bias = bias.empty() ? nullptr : bias.data(), e.relu = relu;
    Tensor out = empty({M, packed.N}, TensorOptions(kFloat32));
    cpu::gemm_int8(M, rows.data<float>(), rows.size(1), packed, e, out.data<float>(), packed.N);
    return out;
  }
};

namespace detail {
inline Tensor cpu_rows(const Tensor& x, int64_t K) {
  NABLA_CHECK(x.device().is_cpu() && x.dtype() == kFloat32, ValueError,
              "quantization: int8 layers run on float32 CPU inputs for now, got ", nabla::detail::describe(x));
  return x.detach().reshape({-1, K}).contiguous();
}
}  // namespace detail

// The quantized model: the float model run with its Linear / Conv2d layers intercepted.
class QuantizedModel : public nn::Module, public nn::detail::ForwardInterceptor {
 public:
  explicit QuantizedModel(std::shared_ptr<nn::Module> model) : model_(std::move(model)) {}
  Tensor forward(const Tensor& x) override {
    const bool was = model_->is_training();
    model_->eval();
    NoGradGuard ng;
    nn::detail::InterceptorGuard g(*this);
    Tensor y;
    try {
      y = model_->forward(x);
    } catch (...) {
      model_->train(was);
      throw;
    }
    model_->train(was);
    return y;
  }
  std::string type_name() const override { return "QuantizedModel"; }
  std::optional<Tensor> intercept(nn::Module& m, const Tensor& x) override {
    auto it = layers_.find(&m);
    if (it == layers_.end()) return std::nullopt;
    if (auto* fc = dynamic_cast<nn::Linear*>(&m)) {
      Shape s(x.sizes().begin(), x.sizes().end() - 1);
      s.push_back(fc->out_features);
      return it->second->run(detail::cpu_rows(x, fc->in_features)).reshape(s);
    }
    auto* conv = dynamic_cast<nn::Conv2d*>(&m);
    NABLA_CHECK(x.dim() == 4, ShapeError, "quantization: QuantizedConv2d expects [N, C, H, W], got ",
                nabla::detail::describe(x));
    NABLA_CHECK(conv->padding.mode.empty(), ValueError,
                "quantization: string padding is not supported by QuantizedConv2d yet");
    NABLA_CHECK(x.device().is_cpu() && x.dtype() == kFloat32, ValueError,
                "quantization: int8 layers run on float32 CPU inputs for now, got ", nabla::detail::describe(x));
    Tensor xc = x.detach().contiguous();
    cpu::Conv2dGeometry g{x.size(1), x.size(2), x.size(3), conv->kernel_size.h, conv->kernel_size.w, conv->stride.h,
                          conv->stride.w, conv->padding.h, conv->padding.w, conv->dilation.h, conv->dilation.w, 0, 0};
    g.Ho = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.Wo = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    return it->second->run_conv(xc, g);
  }
  void add(const nn::Module* m, std::shared_ptr<QuantizedGemm> q) { layers_[m] = std::move(q); }
  size_t quantized_layers() const { return layers_.size(); }

 private:
  std::shared_ptr<nn::Module> model_;
  std::unordered_map<const nn::Module*, std::shared_ptr<QuantizedGemm>> layers_;
};

// Linear layers with int8 weights; activations quantized per batch at run time (PyTorch's
// quantize_dynamic). The float model is not modified.
inline std::shared_ptr<QuantizedModel> quantize_dynamic(const std::shared_ptr<nn::Module>& model) {
  NABLA_CHECK(model != nullptr, ValueError, "quantization::quantize_dynamic: the model is null");
  auto q = std::make_shared<QuantizedModel>(model);
  for (const auto& [name, m] : model->named_modules())
    if (auto* fc = dynamic_cast<nn::Linear*>(m.get())) q->add(fc, std::make_shared<QuantizedGemm>(fc->weight, fc->bias, std::nullopt));
  return q;
}

struct QuantizeOptions {
  bool linear = true, conv = true;
};

namespace detail {
// Calibration: records each Linear / Conv2d input's range, computing nothing itself.
struct Calibrator : nn::detail::ForwardInterceptor {
  std::unordered_map<const nn::Module*, MinMaxObserver> observers;
  std::optional<Tensor> intercept(nn::Module& m, const Tensor& x) override {
    observers[&m].observe(x);
    return std::nullopt;
  }
};
}  // namespace detail

// Static quantization: int8 weights (per output channel) and activation scales fixed from the
// calibration batches (min/max). The float model is not modified (its mode is restored).
inline std::shared_ptr<QuantizedModel> quantize(const std::shared_ptr<nn::Module>& model,
                                                const std::vector<Tensor>& calibration_batches,
                                                const QuantizeOptions& o = {}) {
  NABLA_CHECK(model != nullptr, ValueError, "quantization::quantize: the model is null");
  NABLA_CHECK(!calibration_batches.empty(), ValueError, "quantization::quantize: no calibration batches");
  detail::Calibrator cal;
  {
    const bool was = model->is_training();
    model->eval();
    NoGradGuard ng;
    nn::detail::InterceptorGuard g(cal);
    for (const auto& b : calibration_batches) model->forward(b);
    model->train(was);
  }
  auto q = std::make_shared<QuantizedModel>(model);
  for (const auto& [name, m] : model->named_modules()) {
    auto it = cal.observers.find(m.get());
    if (it == cal.observers.end()) continue;
    if (auto* fc = dynamic_cast<nn::Linear*>(m.get()); fc && o.linear)
      q->add(fc, std::make_shared<QuantizedGemm>(fc->weight, fc->bias, it->second.qparams()));
    else if (auto* conv = dynamic_cast<nn::Conv2d*>(m.get()); conv && o.conv && conv->groups == 1)
      q->add(conv, std::make_shared<QuantizedGemm>(conv->weight.reshape({conv->out_channels, -1}), conv->bias,
                                                   it->second.qparams()));
  }
  return q;
}

}  // namespace quantization
}  // namespace nabla
