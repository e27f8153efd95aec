#pragma once
// scaled_dot_product_attention with PyTorch's semantics (torch.nn.functional.
// scaled_dot_product_attention):
//
//   softmax(q k^T * scale + mask) v,   q [..., L, E], k [..., S, E], v [..., S, Ev] -> [..., L, Ev]
//
// attn_mask: bool (true = the key takes part) or floating (added to the scores), broadcast to
// [..., L, S]; is_causal: query i sees keys j <= i (the top-left aligned lower triangle, as
// PyTorch; an error together with attn_mask); scale: 1 / sqrt(E) when unset; dropout_p: dropout
// on the attention weights (apply it in training only, as PyTorch's callers do). A query row whose
// keys are all masked comes out as zeros (PyTorch >= 2.5's math path, _safe_softmax), not NaN.
//
// Fused kernels (sdpa_kernels(): flash-attention style, online softmax over key blocks, O(L)
// extra memory, causal blocks skipped; the backward recomputes the probabilities from the saved
// log-sum-exp) run for 3-D / 4-D float inputs of one shape family, without dropout and without a
// mask that needs a gradient. Everything else, and double backward, runs the composite below,
// which is the reference the kernels are checked against (tests/test_attention.cpp).

#include <cmath>
#include <limits>
#include <optional>

#include "../backend/kernel_table.hpp"
#include "all.hpp"
#include "autocast.hpp"

namespace nabla {

// ---- fused kernels (see backend/kernel_table.hpp) ----------------------------------------------

// q [BH, L, E], k [BH, S, E], v [BH, S, Ev] contiguous, of the table's dtype; the mask, when
// defined, is [B, H, L, S]-broadcast through SdpaMask's strides.
struct SdpaMask {
  const void* data = nullptr;
  bool is_bool = false;
  int64_t stride_b = 0, stride_h = 0, stride_l = 0, stride_s = 0;  // in elements
};
struct SdpaShape {
  int64_t B = 1, H = 1, L = 0, S = 0, E = 0, Ev = 0;
  double scale = 1.0;
  bool causal = false;
};
struct SdpaKernels {
  // out [BH, L, Ev], lse [BH, L] (log-sum-exp of each query's scaled, masked scores; -inf for a
  // row with every key masked, whose output is zeros).
  bool (*forward)(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                  const SdpaMask& mask, const SdpaShape& shape) = nullptr;
  // Gradients of q, k, v from grad_out and the forward's out and lse (each output written whole).
  bool (*backward)(const Tensor& grad_q, const Tensor& grad_k, const Tensor& grad_v, const Tensor& grad_out,
                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const SdpaMask& mask, const SdpaShape& shape) = nullptr;
};
inline KernelTable<SdpaKernels>& sdpa_kernels() {
  static KernelTable<SdpaKernels> table("scaled_dot_product_attention");
  return table;
}

namespace detail {

inline double sdpa_scale(const Tensor& q, std::optional<double> scale) {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
}

// The additive score bias (0 / -inf) of a bool mask or the float mask itself, with the causal
// mask folded in; undefined when there is neither.
inline Tensor sdpa_bias(const Tensor& q, const Tensor& k, const Tensor& attn_mask, bool is_causal) {
  const int64_t L = q.size(-2), S = k.size(-2);
  const double inf = std::numeric_limits<double>::infinity();
  if (is_causal) {
    Tensor keep = arange(L, TensorOptions(kInt64).device(q.device())).unsqueeze(1) >=
                  arange(S, TensorOptions(kInt64).device(q.device())).unsqueeze(0);
    return zeros({L, S}, q.options().requires_grad(false)).masked_fill(keep.logical_not(), -inf);
  }
  if (!attn_mask.defined()) return Tensor();
  if (attn_mask.dtype() == kBool)
    return zeros(attn_mask.sizes(), q.options().requires_grad(false)).masked_fill(attn_mask.logical_not(), -inf);
  return attn_mask.dtype() == q.dtype() ? attn_mask : attn_mask.to(q.dtype());
}

// Attention probabilities softmax(q k^T scale + bias) with fully masked rows as zeros. Only a
// user's mask can hide every key of a row (causal rows always see key 0), so only then is the
// safe form computed; it reads nothing back to the host (no device sync).
inline Tensor sdpa_probs(const Tensor& q, const Tensor& k, const Tensor& bias, double scale, bool user_mask) {
  Tensor scores = matmul(q, k.transpose(-2, -1)) * scale;
  if (!bias.defined()) return softmax(scores, -1);
  scores = scores + bias;
  if (!user_mask) return softmax(scores, -1);
  // _safe_softmax: a row that is -inf everywhere would be NaN; it is computed as a uniform row
  // (finite, so its gradient is too) and then zeroed.
  Tensor dead = (scores == -std::numeric_limits<double>::infinity()).all(-1, true);
  return softmax(scores.masked_fill(dead, 0.0), -1).masked_fill(dead, 0.0);
}

inline Tensor sdpa_composite(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias, double dropout_p,
                             double scale, bool user_mask) {
  Tensor p = sdpa_probs(q, k, bias, scale, user_mask);
  if (dropout_p > 0) {
    Tensor keep = rand(p.sizes(), TensorOptions(kFloat32).device(p.device())) >= dropout_p;
    p = dropout_p >= 1 ? p * 0.0 : p * keep.to(p.dtype()) * (1.0 / (1.0 - dropout_p));
  }
  return matmul(p, v);
}

inline void sdpa_check(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, double dropout_p,
                       bool is_causal) {
  const char* op = "scaled_dot_product_attention";
  check_defined(q, op);
  check_defined(k, op);
  check_defined(v, op);
  auto shapes = [&] { return describe(q) + ", " + describe(k) + ", " + describe(v); };
  NABLA_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, ShapeError, op,
              ": expected query [..., L, E], key [..., S, E], value [..., S, Ev], got ", shapes());
  NABLA_CHECK(q.is_floating_point() && q.dtype() == k.dtype() && q.dtype() == v.dtype(), DTypeError, op,
              ": expected query, key and value of one floating-point dtype, got ", shapes());
  NABLA_CHECK(q.device() == k.device() && q.device() == v.device(), DeviceError, op,
              ": expected query, key and value on one device, got ", shapes());
  NABLA_CHECK(q.size(-1) == k.size(-1), ShapeError, op, ": query and key must have the same embedding size, got ",
              shapes());
  NABLA_CHECK(k.size(-2) == v.size(-2), ShapeError, op, ": key and value must have the same sequence length, got ",
              shapes());
  NABLA_CHECK(dropout_p >= 0 && dropout_p <= 1, ValueError, op, ": dropout_p must be in [0, 1], got ", dropout_p);
  NABLA_CHECK(!(is_causal && attn_mask.defined()), ValueError, op,
              ": is_causal and attn_mask cannot both be set (put the causal mask into attn_mask), got ", shapes(),
              " and mask ", describe(attn_mask));
  if (attn_mask.defined()) {
    NABLA_CHECK(attn_mask.dtype() == kBool || attn_mask.dtype() == q.dtype(), DTypeError, op,
                ": attn_mask must be bool or of the query's dtype, got ", describe(attn_mask), " for query ",
                describe(q));
    NABLA_CHECK(attn_mask.device() == q.device(), DeviceError, op, ": attn_mask ", describe(attn_mask),
                " is not on the query's device ", describe(q));
    Shape want = q.sizes();
    want.back() = k.size(-2);
    NABLA_CHECK(attn_mask.dim() <= q.dim(), ShapeError, op, ": attn_mask ", describe(attn_mask),
                " does not broadcast to the scores [..., L, S] = ", Shape(want));
    for (int64_t i = 1; i <= attn_mask.dim(); ++i) {
      const int64_t m = attn_mask.size(-i), w = want[want.size() - static_cast<size_t>(i)];
      NABLA_CHECK(m == 1 || m == w, ShapeError, op, ": attn_mask ", describe(attn_mask),
                  " does not broadcast to the scores [..., L, S] = ", Shape(want));
    }
  }
}

// The fused path's eligibility: q, k, v 3-D [B, L, E] or 4-D [B, H, L, E] with equal batch
// dims, no dropout, a mask without grad that broadcasts over [B, H, L, S].
inline bool sdpa_fusable(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, double dropout_p) {
  if (!fused_kernels_enabled() || dropout_p > 0 || (q.dim() != 3 && q.dim() != 4)) return false;
  if (k.dim() != q.dim() || v.dim() != q.dim()) return false;
  for (int64_t d = 0; d + 2 < q.dim(); ++d)
    if (k.size(d) != q.size(d) || v.size(d) != q.size(d)) return false;
  if (attn_mask.defined() && (attn_mask.requires_grad() || attn_mask.dim() > q.dim())) return false;
  return q.numel() > 0 && k.size(-2) > 0;
}

inline SdpaMask sdpa_mask_view(const Tensor& mask, const SdpaShape& s, bool four_d) {
  SdpaMask m;
  if (!mask.defined()) return m;
  Tensor e = mask.expand(four_d ? Shape{s.B, s.H, s.L, s.S} : Shape{s.B, s.L, s.S});
  m.data = e.data_ptr();
  m.is_bool = mask.dtype() == kBool;
  const Strides st = e.strides();
  if (four_d) {
    m.stride_b = st[0], m.stride_h = st[1], m.stride_l = st[2], m.stride_s = st[3];
  } else {
    m.stride_b = st[0], m.stride_h = 0, m.stride_l = st[1], m.stride_s = st[2];
  }
  return m;
}

}  // namespace detail

inline Tensor scaled_dot_product_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                           const Tensor& attn_mask = {}, double dropout_p = 0.0, bool is_causal = false,
                                           std::optional<double> scale = std::nullopt) {
  if (auto ac = NABLA_AUTOCAST(scaled_dot_product_attention, query, key, value))
    return scaled_dot_product_attention(ac[0], ac[1], ac[2], attn_mask.defined() && attn_mask.is_floating_point()
                                                                 ? attn_mask.to(ac[0].dtype())
                                                                 : attn_mask,
                                        dropout_p, is_causal, scale);
  detail::sdpa_check(query, key, value, attn_mask, dropout_p, is_causal);
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal, scale);
    scope.record("Attention", {query, key, value, attn_mask}, {y},
                 {{"scale", detail::sdpa_scale(query, scale)}, {"is_causal", int64_t{is_causal}}, {"dropout_p", dropout_p}});
    return y;
  }
  const double sc = detail::sdpa_scale(query, scale);
  const SdpaKernels* k = detail::sdpa_fusable(query, key, value, attn_mask, dropout_p)
                             ? sdpa_kernels().find(query.device(), query.dtype())
                             : nullptr;
  if (!k || !k->forward)
    return detail::sdpa_composite(query, key, value, detail::sdpa_bias(query, key, attn_mask, is_causal), dropout_p, sc,
                                  attn_mask.defined());

  const bool four = query.dim() == 4;
  SdpaShape s;
  s.B = query.size(0);
  s.H = four ? query.size(1) : 1;
  s.L = query.size(-2), s.S = key.size(-2), s.E = query.size(-1), s.Ev = value.size(-1);
  s.scale = sc;
  s.causal = is_causal;
  const Shape out_shape = four ? Shape{s.B, s.H, s.L, s.Ev} : Shape{s.B, s.L, s.Ev};
  Tensor qc = query.detach().contiguous(), kc = key.detach().contiguous(), vc = value.detach().contiguous();
  Tensor mask = attn_mask.defined() ? attn_mask.detach() : attn_mask;
  TensorOptions plain = query.options().requires_grad(false);
  Tensor out = empty(out_shape, plain), lse = empty({s.B * s.H, s.L}, plain);
  if (!k->forward(out, lse, qc, kc, vc, detail::sdpa_mask_view(mask, s, four), s))
    return detail::sdpa_composite(query, key, value, detail::sdpa_bias(query, key, attn_mask, is_causal), dropout_p, sc,
                                  attn_mask.defined());
  sdpa_kernels().count(query.device());
  if (!autograd::needs_grad(query, key, value)) return out;
  autograd::record(
      "ScaledDotProductFlashAttentionForCpuBackward0", out, {query, key, value},
      [qs = autograd::save(query), ks = autograd::save(key), vs = autograd::save(value), mask,
       os = autograd::save_output(out), lse, s, four, k, is_causal](const Tensor& g, autograd::NeedsGrad) -> TensorList {
        Tensor q = qs.unpack(), kk = ks.unpack(), v = vs.unpack();
        const Tensor out_saved = os.unpack();  // (saved as the output: no reference cycle through its node)
        if (!GradMode::is_enabled() && fused_kernels_enabled() && k->backward) {
          TensorOptions o = g.options().requires_grad(false);
          TensorList grads{empty(q.sizes(), o), empty(kk.sizes(), o), empty(v.sizes(), o)};
          if (k->backward(grads[0], grads[1], grads[2], g.contiguous(), q.detach().contiguous(), kk.detach().contiguous(),
                          v.detach().contiguous(), out_saved.detach().contiguous(), lse,
                          detail::sdpa_mask_view(mask, s, four), s)) {
            sdpa_kernels().count(g.device());
            return grads;
          }
        }
        // In nabla ops (so it is differentiable again): P recomputed from q and k, then
        // dV = P^T dO, dS = P (dO V^T - rowsum(dO o O)), dQ = dS K scale, dK = dS^T Q scale.
        Tensor p = detail::sdpa_probs(q, kk, detail::sdpa_bias(q, kk, mask, is_causal), s.scale, mask.defined());
        Tensor o = matmul(p, v);
        Tensor dv = matmul(p.transpose(-2, -1), g);
        Tensor dp = matmul(g, v.transpose(-2, -1));
        Tensor ds = p * (dp - (g * o).sum({-1}, true));
        return TensorList{matmul(ds, kk) * s.scale, matmul(ds.transpose(-2, -1), q) * s.scale, dv};
      });
  return out;
}

}  // namespace nabla
