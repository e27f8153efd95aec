#pragma once
// A Sequential compiled for int8 (quantization/quantize.hpp): its children grouped into stages
// that pass uint8 channels-last codes from one int8 layer to the next (Conv2d + BatchNorm2d +
// ReLU, Linear + ReLU, MaxPool2d / ReLU / Flatten on the codes), any other child in float.

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "../ops/pool.hpp"
#include "layer.hpp"

namespace nabla {
namespace quantization {

namespace detail {

inline bool is_identity_in_eval(const nn::Module& m) {
  return dynamic_cast<const nn::Dropout*>(&m) || dynamic_cast<const nn::Dropout2d*>(&m) ||
         dynamic_cast<const nn::Identity*>(&m);
}

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
          g.Ho = nabla::detail::pool_out_size(g.H, g.kh, g.sh, g.ph, g.dh, p.ceil_mode);
          g.Wo = nabla::detail::pool_out_size(g.W, g.kw, g.sw, g.pw, g.dw, p.ceil_mode);
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

}  // namespace quantization
}  // namespace nabla
