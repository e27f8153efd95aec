#pragma once
// int8 post-training quantization, PyTorch's eager-mode recipe without its module surgery:
//
//   quantize(model, calibration_batches, QuantizeOptions{})  static: int8 weights (symmetric, one
//       scale per output channel), uint8 activations with scales fixed by observers that watched
//       the calibration batches (HistogramObserver by default, as PyTorch's x86 qconfig);
//   quantize_dynamic(model)  Linear only; each batch's activations quantized from its own range
//       (PyTorch's quantize_dynamic: for transformers, whose activations vary per input).
//
// Both return a new module; the float model is not modified (it is shared, not copied: the
// quantized model keeps it alive and runs its forward). How: while the quantized model runs, a
// forward interceptor (nn::detail::ForwardInterceptor) is installed, which the built-in Linear,
// Conv2d and Sequential consult first thing in forward:
//   - a Sequential is compiled at quantization time into stages that pass uint8 channels-last
//     activations from one to the next: Conv2d (+ BatchNorm2d folded) (+ ReLU fused into the
//     requantizing epilogue), Linear (+ ReLU), MaxPool2d and ReLU on the codes, Flatten (the next
//     Linear's weight columns permuted to the channels-last order), Dropout/Identity dropped;
//     any other child runs in float on dequantized input;
//   - a Linear or Conv2d outside such a Sequential (a ResNet block's convolutions) runs alone:
//     float in, quantized inside, float out.
// The int8 products are cpu::gemm_int8_rows / cpu::conv2d_int8 (AVX512-VNNI, AVX2 or scalar,
// exact int32 sums). CPU float32 inputs only: a CUDA model is quantized on the CPU after
// model->to(Device::cpu()).
//
// ONNX: onnx::export_model(quantized_model, ...) writes QDQ, TensorRT's int8 form: while a tracer
// is installed each int8 layer runs as DequantizeLinear(int8 weights, per-channel scales, zero
// points 0) feeding a float Conv / Gemm whose input passes QuantizeLinear -> DequantizeLinear with
// the calibrated parameters (DynamicQuantizeLinear for quantize_dynamic), and so does its output
// where the int8 model passes codes on. Computed in float (fake quantization) while tracing.

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../autograd/trace.hpp"
#include "../nn/module.hpp"
#include "layer.hpp"
#include "observer.hpp"
#include "sequential.hpp"

namespace nabla {
namespace quantization {

namespace detail {

// The model itself (named "") and every module below it.
inline std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> all_modules(const std::shared_ptr<nn::Module>& model) {
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> out{{"", model}};
  for (const auto& [name, m] : model->named_modules()) out.emplace_back(name, m);
  return out;
}

}  // namespace detail

// The quantized model: the float model run with its Linear / Conv2d layers and compiled
// Sequentials intercepted.
class QuantizedModel : public nn::Module, public nn::detail::ForwardInterceptor {
 public:
  explicit QuantizedModel(std::shared_ptr<nn::Module> model) : model_(std::move(model)) {}
  Tensor forward(const Tensor& x) override {
    const bool was = model_->is_training();
    model_->eval();
    std::optional<NoGradGuard> ng;
    if (!trace::active()) ng.emplace();  // while exporting, the tracer's own grad mode holds
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
    if (auto it = sequentials_.find(&m); it != sequentials_.end()) return it->second.run(x);
    auto it = layers_.find(&m);
    if (it == layers_.end()) return std::nullopt;
    if (trace::active()) return it->second->traced(x, std::nullopt);
    detail::Flow v;
    v.f = x.detach(), v.shape = Shape(x.sizes().begin(), x.sizes().end());
    if (it->second->conv) it->second->run_conv(v, std::nullopt);
    else it->second->run_linear(v, std::nullopt);
    return v.f;
  }
  // The float model it runs.
  const std::shared_ptr<nn::Module>& float_model() const { return model_; }
  // The number of int8 layers (Linear and Conv2d, fused or not).
  size_t quantized_layers() const {
    size_t n = layers_.size();
    for (const auto& [m, c] : sequentials_)
      for (const auto& s : c.stages) n += s.kind == detail::Stage::layer;
    return n;
  }
  // Bytes of int8 weights (the float biases and scales are 4 bytes per output channel more).
  size_t int8_weight_bytes() const {
    size_t n = 0;
    for (const auto& [m, l] : layers_) n += l->int8_bytes();
    for (const auto& [m, c] : sequentials_)
      for (const auto& s : c.stages)
        if (s.kind == detail::Stage::layer) n += s.q->int8_bytes();
    return n;
  }

  // What runs in int8, one line per layer or compiled Sequential stage, e.g.
  // "Sequential[0:3] Conv2d+BatchNorm2d+ReLU int8 -> uint8", "fc Linear int8 -> float".
  std::vector<std::string> plan() const {
    std::vector<std::string> lines;
    for (const auto& [name, m] : detail::all_modules(model_)) {
      const std::string who = name;  // "" for the model itself
      if (auto it = sequentials_.find(m.get()); it != sequentials_.end()) {
        const auto& seq = *it->second.seq;
        for (const auto& s : it->second.stages) {
          std::string kinds;
          for (size_t i = s.first; i < s.last; ++i) kinds += (kinds.empty() ? "" : "+") + seq[i]->type_name();
          const char* how = s.kind == detail::Stage::layer ? (s.out ? " int8 -> uint8" : " int8 -> float")
                            : s.kind == detail::Stage::floating ? " float" : " on uint8";
          lines.push_back(nabla::detail::cat(who, "[", s.first, ":", s.last, "] ", kinds, how));
        }
      } else if (auto jt = layers_.find(m.get()); jt != layers_.end()) {
        lines.push_back(nabla::detail::cat(who, " ", m->type_name(), jt->second->input ? " int8 -> float" : " int8 (dynamic) -> float"));
      }
    }
    return lines;
  }

  void add(const nn::Module* m, std::shared_ptr<detail::QuantizedLayer> q) { layers_[m] = std::move(q); }
  void add(const nn::Module* m, detail::CompiledSequential c) { sequentials_[m] = std::move(c); }

 private:
  std::shared_ptr<nn::Module> model_;
  std::unordered_map<const nn::Module*, std::shared_ptr<detail::QuantizedLayer>> layers_;
  std::unordered_map<const nn::Module*, detail::CompiledSequential> sequentials_;
};

// Linear layers with int8 weights; activations quantized per batch at run time (PyTorch's
// quantize_dynamic). The float model is not modified.
inline std::shared_ptr<QuantizedModel> quantize_dynamic(const std::shared_ptr<nn::Module>& model) {
  NABLA_CHECK(model != nullptr, ValueError, "quantization::quantize_dynamic: the model is null");
  auto q = std::make_shared<QuantizedModel>(model);
  for (const auto& [name, m] : detail::all_modules(model))
    if (auto fc = detail::as_linear(*m)) q->add(m.get(), detail::make_linear(*fc, std::nullopt));
  return q;
}

namespace detail {

// Calibration: observes what each Linear / Conv2d gets and, for a Sequential, the value between
// every two children (running them one by one); computes nothing itself.
struct Calibrator : nn::detail::ForwardInterceptor {
  const QuantizeOptions& options;
  std::unordered_map<const nn::Module*, std::unique_ptr<Observer>> inputs;
  std::unordered_map<const nn::Module*, std::vector<std::unique_ptr<Observer>>> boundaries;  // null: not observed
  std::unordered_map<const nn::Module*, std::vector<Shape>> shapes;  // a Sequential's boundary shapes, batch dim 0

  explicit Calibrator(const QuantizeOptions& o) : options(o) {}
  std::unique_ptr<Observer> make() const {
    if (options.observer == ObserverKind::min_max) return std::make_unique<MinMaxObserver>();
    return std::make_unique<HistogramObserver>();
  }
  std::optional<Tensor> intercept(nn::Module& m, const Tensor& x) override {
    if (auto* seq = dynamic_cast<nn::Sequential*>(&m); seq && options.fuse) {
      auto& obs = boundaries[&m];
      auto& sh = shapes[&m];
      obs.resize(seq->size() + 1);  // null where no float value passed
      sh.assign(seq->size() + 1, Shape{});
      Tensor y = x;
      for (size_t i = 0;; ++i) {
        if (y.is_floating_point()) {
          if (!obs[i]) obs[i] = make();
          obs[i]->observe(y);
        }
        sh[i] = Shape(y.sizes().begin(), y.sizes().end());
        if (i == seq->size()) break;
        y = seq->forward_range(i, i + 1, y);
      }
      return y;
    }
    if (as_linear(m) || dynamic_cast<nn::Conv2d*>(&m)) {
      auto& o = inputs[&m];
      if (!o) o = make();
      o->observe(x);
    }
    return std::nullopt;
  }
};

}  // namespace detail

// Static quantization: int8 weights (per output channel) and activation scales fixed from the
// calibration batches. The float model is not modified (its train/eval mode is restored).
inline std::shared_ptr<QuantizedModel> quantize(const std::shared_ptr<nn::Module>& model,
                                                const std::vector<Tensor>& calibration_batches,
                                                const QuantizeOptions& o = {}) {
  NABLA_CHECK(model != nullptr, ValueError, "quantization::quantize: the model is null");
  NABLA_CHECK(!calibration_batches.empty(), ValueError, "quantization::quantize: no calibration batches");
  detail::Calibrator cal(o);
  {
    const bool was = model->is_training();
    model->eval();
    try {
      NoGradGuard ng;
      nn::detail::InterceptorGuard g(cal);
      for (const auto& b : calibration_batches) model->forward(b);
    } catch (...) {
      model->train(was);
      throw;
    }
    model->train(was);
  }
  auto q = std::make_shared<QuantizedModel>(model);
  std::unordered_map<const nn::Module*, bool> in_compiled;  // layers a compiled Sequential runs
  for (const auto& [name, m] : detail::all_modules(model)) {
    auto* seq = dynamic_cast<nn::Sequential*>(m.get());
    if (!seq) continue;
    auto it = cal.boundaries.find(seq);
    if (it == cal.boundaries.end()) continue;
    detail::CompiledSequential c = detail::compile(*seq, it->second, cal.shapes[seq], o);
    bool any = false;
    for (const auto& s : c.stages)
      if (s.kind == detail::Stage::layer) {
        any = true;
        for (size_t i = s.first; i < s.last; ++i) in_compiled[(*seq)[i].get()] = true;
      }
    if (any) q->add(seq, std::move(c));
  }
  for (const auto& [name, m] : detail::all_modules(model)) {
    auto it = cal.inputs.find(m.get());
    if (it == cal.inputs.end() || in_compiled.count(m.get())) continue;
    if (auto fc = detail::as_linear(*m); fc && o.linear)
      q->add(m.get(), detail::make_linear(*fc, it->second->qparams()));
    else if (auto* conv = dynamic_cast<nn::Conv2d*>(m.get()); conv && o.conv && detail::quantizable_conv(*conv))
      q->add(conv, detail::make_conv(*conv, it->second->qparams(), nullptr));
  }
  return q;
}

}  // namespace quantization
}  // namespace nabla
