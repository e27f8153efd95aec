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

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../autograd/trace.hpp"
#include "../backend/cpu/gemm_int8.hpp"
#include "../nn/conv_layers.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "observer.hpp"

namespace nabla {
namespace quantization {

enum class ObserverKind { min_max, histogram };

struct QuantizeOptions {
  ObserverKind observer = ObserverKind::histogram;  // for the activations (weights: per-channel min/max)
  bool fuse = true;                                 // BatchNorm2d folded, ReLU fused, uint8 between layers
  bool linear = true, conv = true;                  // which layers to quantize
};

// Per output channel symmetric int8 weights: w ~ q * scale[c], q in [-127, 127] (PyTorch's
// per_channel_symmetric qint8 with the range restricted to +-127).
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

namespace detail {

inline std::vector<float> to_floats(const Tensor& t) {
  if (!t.defined()) return {};
  Tensor c = t.detach().to(Device::cpu(), kFloat32).contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

// The model itself (named "") and every module below it.
inline std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> all_modules(const std::shared_ptr<nn::Module>& model) {
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> out{{"", model}};
  for (const auto& [name, m] : model->named_modules()) out.emplace_back(name, m);
  return out;
}

inline void check_cpu_float(const Tensor& x, const char* what) {
  NABLA_CHECK(x.device().is_cpu() && x.dtype() == kFloat32, ValueError, "quantization: ", what,
              " runs on float32 CPU inputs, got ", nabla::detail::describe(x),
              " (quantize a CPU copy of the model: model->to(Device::cpu()))");
}

// A value between the stages of a compiled Sequential: float (the float model's own tensor), or
// uint8 codes with their parameters. Codes of a 4-D value are stored channels-last [N, H, W, C];
// `chw` is then {C, H, W}, and stays so after a Flatten (the codes keep their order; the shape
// says [N, C * H * W]).
struct Flow {
  Tensor f;
  std::vector<uint8_t> q;
  Shape shape;
  std::vector<int64_t> chw;
  QParams qp;
  bool quantized() const { return !f.defined(); }
};

// The float tensor a flow holds or stands for (dequantized, back in the float model's layout).
inline Tensor to_float(const Flow& v) {
  if (!v.quantized()) return v.f;
  Tensor out = empty(v.shape, TensorOptions(kFloat32));
  float* o = out.data<float>();
  const float s = v.qp.scale;
  const int32_t z = v.qp.zero_point;
  if (v.chw.empty()) {
    for (size_t i = 0; i < v.q.size(); ++i) o[i] = static_cast<float>(int32_t{v.q[i]} - z) * s;
    return out;
  }
  const int64_t C = v.chw[0], HW = v.chw[1] * v.chw[2], N = v.shape[0];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t p = 0; p < HW; ++p)
      for (int64_t c = 0; c < C; ++c)
        o[(n * C + c) * HW + p] = static_cast<float>(int32_t{v.q[static_cast<size_t>((n * HW + p) * C + c)]} - z) * s;
  return out;
}

// Fake quantization: x through the uint8 grid and back, in float. Recorded for the ONNX exporter
// as one QuantizeLinear/DequantizeLinear pair (DynamicQuantizeLinear when the parameters come
// from x's own range).
inline Tensor quantize_dequantize(const Tensor& x, QParams q) {
  const auto s = static_cast<double>(q.scale);
  return ((round(x / s) + q.zero_point).clamp(0, 255) - q.zero_point) * s;
}
inline Tensor fake_quantize(const Tensor& x, QParams q) {
  trace::Scope scope;
  Tensor y = quantize_dequantize(x, q);
  scope.record("QuantizeDequantize", {x}, {y},
               {{"scale", static_cast<double>(q.scale)}, {"zero_point", static_cast<int64_t>(q.zero_point)}});
  return y;
}
inline Tensor fake_quantize_dynamic(const Tensor& x) {
  trace::Scope scope;
  Tensor y = quantize_dequantize(x, choose_qparams(x.min().item<double>(), x.max().item<double>()));
  scope.record("DynamicQuantizeDequantize", {x}, {y});
  return y;
}

// One Linear or Conv2d (optionally with a BatchNorm2d folded in and a ReLU fused) in int8.
struct QuantizedLayer {
  cpu::PackedInt8 packed;
  std::vector<float> w_scale, bias;
  std::optional<QParams> input;  // nullopt: dynamic, from each batch's min and max
  bool relu = false;
  // conv only
  bool conv = false;
  int64_t C = 0, kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  // linear only: when set, the layer reads rows laid out channels-last over these {C, H, W}
  // (after a Flatten of channels-last codes): the weight columns were permuted to match
  std::vector<int64_t> chw;
  // the int8 weights in the float layer's own layout (for export)
  std::vector<int8_t> codes;
  Shape codes_shape;

  // The layer in float with its quantization simulated, reporting QDQ to the tracer.
  // `quantized`: x already went through QuantizeDequantize with this layer's input parameters.
  Tensor traced(const Tensor& x, std::optional<QParams> out, bool quantized = false) const {
    Tensor xq = quantized ? x : input ? fake_quantize(x, *input) : fake_quantize_dynamic(x);
    Tensor scales = from_vector(w_scale, Shape{packed.N}, TensorOptions(kFloat32));
    Tensor w;
    {
      trace::Scope scope;
      Shape per(codes_shape.size(), 1);
      per[0] = packed.N;
      const std::vector<float> values(codes.begin(), codes.end());
      std::vector<uint8_t> bytes(codes.size());
      std::memcpy(bytes.data(), codes.data(), codes.size());
      w = from_vector(values, codes_shape, TensorOptions(kFloat32)) * scales.reshape(per);
      scope.record("DequantizeInt8", {from_vector(bytes, codes_shape, TensorOptions(kUInt8)), scales}, {w},
                   {{"axis", int64_t{0}}});
    }
    Tensor b = bias.empty() ? Tensor() : from_vector(bias, Shape{packed.N}, TensorOptions(kFloat32));
    Tensor y = conv ? conv2d(xq, w, b, Pair2d(sh, sw), Padding2d(ph, pw), Pair2d(dh, dw)) : nn::functional::linear(xq, w, b);
    if (relu) y = y.relu();
    return out ? fake_quantize(y, *out) : y;
  }

  cpu::Int8Epilogue epilogue(QParams in) const {
    cpu::Int8Epilogue e;
    e.a_scale = in.scale, e.a_zero_point = in.zero_point, e.b_scale = w_scale.data();
    e.bias = bias.empty() ? nullptr : bias.data(), e.relu = relu;
    return e;
  }
  size_t int8_bytes() const { return static_cast<size_t>(packed.N * packed.K); }

  cpu::Conv2dGeometry geometry(int64_t H, int64_t W) const {
    cpu::Conv2dGeometry g{C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, 0, 0};
    g.Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    g.Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    NABLA_CHECK(g.Ho > 0 && g.Wo > 0, ShapeError, "quantization: QuantizedConv2d: the input ", H, "x", W,
                " is smaller than the kernel ", kh, "x", kw);
    return g;
  }

  // Conv on a 4-D flow; out: codes with `out` parameters, or float NCHW when nullopt.
  void run_conv(Flow& v, std::optional<QParams> out) const {
    NABLA_CHECK(v.shape.size() == 4 && v.shape[1] == C, ShapeError, "quantization: QuantizedConv2d expects [N, ", C,
                ", H, W], got shape ", nabla::shape_str(v.shape));
    const QParams in = *input;
    const int64_t N = v.shape[0];
    if (!v.quantized() || v.chw.empty() || v.qp.scale != in.scale || v.qp.zero_point != in.zero_point) {
      Tensor xf = to_float(v).contiguous();
      check_cpu_float(xf, "QuantizedConv2d");
      v.q.resize(static_cast<size_t>(xf.numel()));
      cpu::quantize_nchw_to_nhwc(xf.data<float>(), N, C, v.shape[2], v.shape[3], in.scale, in.zero_point, v.q.data());
    }
    const cpu::Conv2dGeometry g = geometry(v.shape[2], v.shape[3]);
    const int64_t O = packed.N;
    cpu::Int8Epilogue e = epilogue(in);
    Flow r;
    r.shape = {N, O, g.Ho, g.Wo};
    if (out) {
      e.out_scale = out->scale, e.out_zero_point = out->zero_point;
      r.q.resize(static_cast<size_t>(N * O * g.Ho * g.Wo));
      cpu::conv2d_int8(v.q.data(), N, g, static_cast<uint8_t>(in.zero_point), packed, e, r.q.data());
      r.chw = {O, g.Ho, g.Wo}, r.qp = *out;
    } else {
      std::vector<float> nhwc(static_cast<size_t>(N * O * g.Ho * g.Wo));
      cpu::conv2d_int8(v.q.data(), N, g, static_cast<uint8_t>(in.zero_point), packed, e, nhwc.data());
      r.f = empty(r.shape, TensorOptions(kFloat32));
      float* o = r.f.data<float>();
      const int64_t P = g.Ho * g.Wo;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p)
          for (int64_t c = 0; c < O; ++c) o[(n * O + c) * P + p] = nhwc[static_cast<size_t>((n * P + p) * O + c)];
    }
    v = std::move(r);
  }

  // Linear on the last dimension of a flow.
  void run_linear(Flow& v, std::optional<QParams> out) const {
    const int64_t K = packed.K, Kp = packed.Kp;
    NABLA_CHECK(!v.shape.empty() && v.shape.back() == K, ShapeError, "quantization: QuantizedLinear expects [..., ", K,
                "], got shape ", nabla::shape_str(v.shape));
    const int64_t M = numel_of(v.shape) / K;
    std::vector<uint8_t> rows;
    QParams in;
    const bool reuse = v.quantized() && v.chw == chw && (!input || (v.qp.scale == input->scale &&
                                                                   v.qp.zero_point == input->zero_point));
    if (reuse && K == Kp) {
      in = v.qp;
      rows = std::move(v.q);
    } else if (reuse) {
      in = v.qp;
      rows.assign(static_cast<size_t>(M * Kp), static_cast<uint8_t>(in.zero_point));
      for (int64_t m = 0; m < M; ++m) std::copy_n(v.q.data() + m * K, K, rows.data() + m * Kp);
    } else {
      Tensor xf = to_float(v);
      check_cpu_float(xf, "QuantizedLinear");
      if (!chw.empty()) xf = xf.reshape({-1, chw[0], chw[1], chw[2]}).permute({0, 2, 3, 1});  // channels-last columns
      xf = xf.reshape({-1, K}).contiguous();
      if (input) {
        in = *input;
      } else {
        const float* p = xf.data<float>();
        double lo = 0, hi = 0;
        for (int64_t i = 0; i < xf.numel(); ++i) lo = std::min<double>(lo, p[i]), hi = std::max<double>(hi, p[i]);
        NABLA_CHECK(std::isfinite(lo) && std::isfinite(hi), ValueError,
                    "quantization: QuantizedLinear (dynamic): the input holds a non-finite value");
        in = choose_qparams(lo, hi);
      }
      rows.assign(static_cast<size_t>(M * Kp), static_cast<uint8_t>(in.zero_point));
      const float inv = 1.0f / in.scale;
      const float* p = xf.data<float>();
      cpu::parallel_for(0, M, std::max<int64_t>(1, cpu::kParallelGrain / K), [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) cpu::quantize_u8_row(p + m * K, K, inv, in.zero_point, rows.data() + m * Kp);
      });
    }
    cpu::Int8Epilogue e = epilogue(in);
    Flow r;
    r.shape = v.shape;
    r.shape.back() = packed.N;
    if (out) {
      e.out_scale = out->scale, e.out_zero_point = out->zero_point;
      r.q.resize(static_cast<size_t>(M * packed.N));
      cpu::gemm_int8_rows(M, rows.data(), packed, e, r.q.data(), packed.N);
      r.qp = *out;
    } else {
      r.f = empty(r.shape, TensorOptions(kFloat32));
      cpu::gemm_int8_rows(M, rows.data(), packed, e, r.f.data<float>(), packed.N);
    }
    v = std::move(r);
  }
};

// Folds an eval-mode BatchNorm2d into the convolution before it: w' = w * g / sqrt(var + eps)
// per output channel, b' = (b - mean) * g / sqrt(var + eps) + beta.
inline void fold_batch_norm(Tensor& w, std::vector<float>& bias, const nn::BatchNorm2d& bn) {
  const int64_t O = w.size(0);
  std::vector<float> gamma = to_floats(bn.weight), beta = to_floats(bn.bias), mean = to_floats(bn.running_mean),
                     var = to_floats(bn.running_var);
  Tensor wc = w.detach().to(Device::cpu(), kFloat32).contiguous().clone();
  float* p = wc.data<float>();
  const int64_t per = wc.numel() / O;
  if (bias.empty()) bias.assign(static_cast<size_t>(O), 0.0f);
  for (int64_t o = 0; o < O; ++o) {
    const size_t i = static_cast<size_t>(o);
    const double g = gamma.empty() ? 1.0 : gamma[i], b = beta.empty() ? 0.0 : beta[i];
    const double inv = g / std::sqrt(static_cast<double>(var[i]) + bn.eps);
    for (int64_t k = 0; k < per; ++k) p[o * per + k] = static_cast<float>(p[o * per + k] * inv);
    bias[i] = static_cast<float>((bias[i] - mean[i]) * inv + b);
  }
  w = wc;
}

// A layer computing x W^T + b: nn::Linear, or a module named "Conv1D" (Hugging Face GPT-2's, in
// models/gpt2.hpp: the weight stored [in, out]). Found by type name, so that this file need
// not include the models above it.
struct LinearView {
  Tensor weight;  // [out, in]
  Tensor bias;
};
inline std::optional<LinearView> as_linear(nn::Module& m) {
  if (auto* fc = dynamic_cast<nn::Linear*>(&m)) return LinearView{fc->weight, fc->bias};
  if (m.type_name() == "Conv1D") {
    const Tensor* w = m.tensor_slot("weight");
    const Tensor* b = m.tensor_slot("bias");
    if (w && w->defined() && w->dim() == 2) return LinearView{w->t(), b ? *b : Tensor()};
  }
  return std::nullopt;
}

inline std::shared_ptr<QuantizedLayer> make_linear(const LinearView& fc, std::optional<QParams> in,
                                                   const std::vector<int64_t>& chw = {}) {
  auto l = std::make_shared<QuantizedLayer>();
  const int64_t N = fc.weight.size(0), K = fc.weight.size(1);
  Int8Weights q = quantize_weights(fc.weight);
  if (chw.empty()) {
    l->packed = cpu::pack_int8(q.q.data(), N, K);
  } else {  // columns c * H * W + h * W + w -> (h * W + w) * C + c
    const int64_t C = chw[0], HW = chw[1] * chw[2];
    std::vector<int8_t> p(q.q.size());
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i) p[static_cast<size_t>(n * K + i * C + c)] = q.q[static_cast<size_t>(n * K + c * HW + i)];
    l->packed = cpu::pack_int8(p.data(), N, K);
  }
  l->codes = std::move(q.q), l->codes_shape = {N, K};
  l->w_scale = std::move(q.scale), l->bias = to_floats(fc.bias), l->input = in, l->chw = chw;
  return l;
}

inline std::shared_ptr<QuantizedLayer> make_conv(const nn::Conv2d& conv, QParams in, const nn::BatchNorm2d* bn) {
  auto l = std::make_shared<QuantizedLayer>();
  Tensor w = conv.weight;
  l->bias = to_floats(conv.bias);
  if (bn) fold_batch_norm(w, l->bias, *bn);
  const int64_t O = conv.out_channels, C = conv.in_channels, kh = conv.kernel_size.h, kw = conv.kernel_size.w;
  Int8Weights q = quantize_weights(w.detach().reshape({O, -1}));
  std::vector<int8_t> ordered = cpu::window_order(q.q.data(), O, C, kh, kw);
  l->packed = cpu::pack_int8(ordered.data(), O, C * kh * kw);
  l->codes = std::move(q.q), l->codes_shape = {O, C, kh, kw};
  l->w_scale = std::move(q.scale), l->input = in, l->conv = true;
  l->C = C, l->kh = kh, l->kw = kw, l->sh = conv.stride.h, l->sw = conv.stride.w, l->ph = conv.padding.h;
  l->pw = conv.padding.w, l->dh = conv.dilation.h, l->dw = conv.dilation.w;
  return l;
}

inline bool quantizable_conv(const nn::Conv2d& c) { return c.groups == 1 && c.padding.mode.empty(); }

// A compiled Sequential: its children as stages over flows.
struct Stage {
  enum Kind { layer, max_pool, relu, flatten, floating } kind = floating;
  std::shared_ptr<QuantizedLayer> q;  // layer
  std::optional<QParams> out;         // layer: the codes' parameters out, nullopt: float out
  const nn::MaxPool2d* pool = nullptr;
  size_t first = 0, last = 0;  // the children it stands for
};

struct CompiledSequential {
  const nn::Sequential* seq = nullptr;
  std::vector<Stage> stages;

  Tensor run(const Tensor& x) const {
    if (trace::active()) {  // exporting: each stage in float, the layers' quantization simulated
      Tensor y = x;
      std::optional<QParams> codes;  // y's quantization, as in the int8 run (pooling, ReLU, Flatten keep it)
      for (const Stage& s : stages) {
        if (s.kind == Stage::layer) {
          const bool same = codes && s.q->input && codes->scale == s.q->input->scale &&
                            codes->zero_point == s.q->input->zero_point;
          y = s.q->traced(y, s.out, same);
          codes = s.out;
        } else {
          y = seq->forward_range(s.first, s.last, y);
          if (s.kind == Stage::floating) codes.reset();
        }
      }
      return y;
    }
    Flow v;
    v.f = x, v.shape = Shape(x.sizes().begin(), x.sizes().end());
    for (const Stage& s : stages) step(s, v);
    return to_float(v);
  }

  void step(const Stage& s, Flow& v) const {
    switch (s.kind) {
      case Stage::layer:
        return s.q->conv ? s.q->run_conv(v, s.out) : s.q->run_linear(v, s.out);
      case Stage::max_pool:
        if (v.quantized() && v.shape.size() == 4 && !v.chw.empty()) {
          const nn::MaxPool2d& p = *s.pool;
          cpu::Conv2dGeometry g{v.shape[1], v.shape[2], v.shape[3], p.kernel_size.h, p.kernel_size.w, p.stride.h,
                                p.stride.w, p.padding.h, p.padding.w, p.dilation.h, p.dilation.w, 0, 0};
          auto out_dim = [&](int64_t in, int64_t k, int64_t st, int64_t pad, int64_t d) {
            const int64_t span = in + 2 * pad - d * (k - 1) - 1;
            int64_t o = (p.ceil_mode ? (span + st - 1) / st : span / st) + 1;
            if (p.ceil_mode && (o - 1) * st >= in + pad) --o;  // the last window must start inside
            return o;
          };
          g.Ho = out_dim(g.H, g.kh, g.sh, g.ph, g.dh), g.Wo = out_dim(g.W, g.kw, g.sw, g.pw, g.dw);
          Flow r;
          r.shape = {v.shape[0], g.C, g.Ho, g.Wo}, r.chw = {g.C, g.Ho, g.Wo}, r.qp = v.qp;
          r.q.resize(static_cast<size_t>(numel_of(r.shape)));
          cpu::max_pool2d_u8(v.q.data(), v.shape[0], g, r.q.data());
          v = std::move(r);
          return;
        }
        break;
      case Stage::relu:
        if (v.quantized()) {
          const auto z = static_cast<uint8_t>(v.qp.zero_point);
          for (uint8_t& c : v.q) c = std::max(c, z);
          return;
        }
        break;
      case Stage::flatten:
        if (v.quantized() && v.shape.size() == 4) {
          v.shape = {v.shape[0], v.shape[1] * v.shape[2] * v.shape[3]};
          return;
        }
        break;
      case Stage::floating:
        break;
    }
    Tensor y = seq->forward_range(s.first, s.last, to_float(v));
    v = Flow{};
    v.f = y, v.shape = Shape(y.sizes().begin(), y.sizes().end());
  }
};

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

inline bool is_identity_in_eval(const nn::Module& m) {
  return dynamic_cast<const nn::Dropout*>(&m) || dynamic_cast<const nn::Dropout2d*>(&m) ||
         dynamic_cast<const nn::Identity*>(&m);
}

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

// The stages of a Sequential whose boundaries were observed.
inline CompiledSequential compile(const nn::Sequential& seq, const std::vector<std::unique_ptr<Observer>>& obs,
                                  const std::vector<Shape>& shapes, const QuantizeOptions& o) {
  CompiledSequential c;
  c.seq = &seq;
  const size_t n = seq.size();
  auto child = [&](size_t i) -> nn::Module& { return *seq[i]; };
  auto next_real = [&](size_t i) {  // skip what eval mode makes the identity
    while (i < n && is_identity_in_eval(child(i))) ++i;
    return i;
  };
  // the channels-last {C, H, W} a Flatten at child i would hand on, if its input comes as codes
  std::vector<int64_t> flat_chw;
  // the parameters of the codes the stage being compiled receives; nullopt: it receives float.
  // Pooling, ReLU and Flatten pass codes on unchanged, so a layer after them reads its input in
  // the parameters of the layer that made them (its own observer saw the same values, pooled).
  std::optional<QParams> codes;
  for (size_t i = next_real(0); i < n; i = next_real(i)) {
    Stage s;
    s.first = i;
    nn::Module& m = child(i);
    auto* conv = dynamic_cast<nn::Conv2d*>(&m);
    const std::optional<LinearView> fc = as_linear(m);
    if ((conv && o.conv && quantizable_conv(*conv) && obs[i]) || (fc && o.linear && obs[i])) {
      size_t j = i + 1;
      const nn::BatchNorm2d* bn = nullptr;
      if (conv && j < n)
        if (auto* b = dynamic_cast<nn::BatchNorm2d*>(&child(j)); b && b->running_mean.defined()) bn = b, ++j;
      bool relu = false;
      if (j < n && dynamic_cast<nn::ReLU*>(&child(j))) relu = true, ++j;
      const QParams in = codes ? *codes : obs[i]->qparams();
      if (conv) {
        s.q = make_conv(*conv, in, bn);
      } else {
        const bool flat = codes && !flat_chw.empty() && shapes[i].size() == 2;
        s.q = make_linear(*fc, in, flat ? flat_chw : std::vector<int64_t>{});
      }
      s.q->relu = relu;
      s.kind = Stage::layer;
      s.last = j;
      // codes out when another stage follows that takes them
      const size_t nx = next_real(j);
      if (nx < n && obs[j]) {
        nn::Module& after = child(nx);
        const bool takes = dynamic_cast<nn::Conv2d*>(&after) || dynamic_cast<nn::Linear*>(&after) ||
                           dynamic_cast<nn::MaxPool2d*>(&after) || dynamic_cast<nn::ReLU*>(&after) ||
                           dynamic_cast<nn::Flatten*>(&after);
        if (takes) s.out = obs[j]->qparams();
      }
      codes = s.out;
      flat_chw.clear();
      if (codes && conv) flat_chw = {shapes[j][1], shapes[j][2], shapes[j][3]};
    } else if (auto* p = dynamic_cast<nn::MaxPool2d*>(&m)) {
      s.kind = Stage::max_pool, s.pool = p, s.last = i + 1;
      if (codes && !flat_chw.empty()) flat_chw = {shapes[i + 1][1], shapes[i + 1][2], shapes[i + 1][3]};
    } else if (dynamic_cast<nn::ReLU*>(&m)) {
      s.kind = Stage::relu, s.last = i + 1;
    } else if (auto* f = dynamic_cast<nn::Flatten*>(&m); f && f->start_dim == 1 && (f->end_dim == -1 || f->end_dim == 3)) {
      s.kind = Stage::flatten, s.last = i + 1;
    } else {
      s.kind = Stage::floating, s.last = i + 1;
      codes.reset(), flat_chw.clear();
    }
    c.stages.push_back(std::move(s));
    i = c.stages.back().last;
  }
  return c;
}

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
