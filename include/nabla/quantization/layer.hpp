#pragma once
// One int8 layer of a quantized model (quantization/quantize.hpp): a Linear or Conv2d with int8
// weights (one scale per output channel), BatchNorm folded and ReLU fused when asked, run on the
// CPU int8 kernels over float or uint8 "codes" (Flow); traced as QDQ while exporting to ONNX.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../autograd/trace.hpp"
#include "../backend/cpu/gemm_int8.hpp"
#include "../nn/conv_layers.hpp"
#include "../ops/conv.hpp"
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

inline std::vector<float> to_floats(const Tensor& t) { return t.defined() ? t.detach().to_vector<float>() : std::vector<float>{}; }


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
    g.Ho = nabla::detail::conv_out_size(H, 2 * ph, kh, sh, dh), g.Wo = nabla::detail::conv_out_size(W, 2 * pw, kw, sw, dw);
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

}  // namespace detail

}  // namespace quantization
}  // namespace nabla
