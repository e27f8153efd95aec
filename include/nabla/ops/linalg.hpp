#pragma once
// matmul with NumPy semantics: 1-D operands are promoted to matrices and the extra dim removed
// afterwards, batch dims broadcast. Everything reduces to one batched primitive whose
// gradients are matmuls again (summed back over broadcast batch dims by the engine).

#include "reduce.hpp"

namespace nabla {
namespace detail {
// The grad_fn name LibTorch gives a product of these ranks (matmul dispatches to mm, bmm, mv, dot).
inline const char* matmul_node_name(int64_t da, int64_t db) {
  if (da == 2 && db == 2) return "MmBackward0";
  if (da == 3 && db == 3) return "BmmBackward0";
  if (da == 2 && db == 1) return "MvBackward0";
  if (da == 1 && db == 1) return "DotBackward0";
  return "MatmulBackward0";
}

// a [..., M, K] @ b [..., K, N], both at least 2-D.
inline Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  NABLA_CHECK(b.size(-2) == K, ShapeError, "matmul: shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
              " cannot be multiplied (", K, " columns vs ", b.size(-2), " rows) (", describe(a), " @ ", describe(b), ")");
  Device dev = common_device("matmul", {a, b});
  DType dt = result_type({a, b});
  NABLA_CHECK(dt != kBool, DTypeError, "matmul: not supported for bool tensors (", describe(a), " @ ", describe(b), ")");
  Shape batch = broadcast_shapes(Shape(a.sizes().begin(), a.sizes().end() - 2), Shape(b.sizes().begin(), b.sizes().end() - 2),
                                 "matmul");
  Shape sa = batch, sb = batch, so = batch;
  sa.push_back(M); sa.push_back(K);
  sb.push_back(K); sb.push_back(N);
  so.push_back(M); so.push_back(N);
  Tensor out = empty(so, TensorOptions(dt).device(dev));
  if (out.numel() > 0) {
    if (K == 0) {
      backend(dev).fill(out, 0);
    } else {
      Tensor ae = cast(a, dt).detach().expand(sa), be = cast(b, dt).detach().expand(sb);
      backend(dev).matmul(out, ae, be);
    }
  }
  if (autograd::needs_grad(a, b))
    autograd::record(detail::matmul_node_name(a.dim(), b.dim()), out, {a, b},
                     [sa_ = autograd::save(a), sb_ = autograd::save(b)](const Tensor& g, autograd::NeedsGrad need) {
                       Tensor ga, gb;
                       if (need[0]) ga = batched_matmul(g, sb_.unpack().transpose(-1, -2));
                       if (need[1]) gb = batched_matmul(sa_.unpack().transpose(-1, -2), g);
                       return TensorList{ga, gb};
                     });
  return out;
}

}  // namespace detail

inline Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "matmul");
  detail::check_defined(b, "matmul");
  if (auto ac = NABLA_AUTOCAST(matmul, a, b)) return matmul(ac[0], ac[1]);
  NABLA_CHECK(a.dim() >= 1 && b.dim() >= 1, ShapeError, "matmul: both operands need at least one dimension, got ",
              detail::describe(a), " and ", detail::describe(b));
  if (a.dim() == 1 && b.dim() == 1)
    NABLA_CHECK(a.size(0) == b.size(0), ShapeError, "matmul: 1-D operands of different lengths ", detail::describe(a),
                " and ", detail::describe(b));
  Tensor a2 = a.dim() == 1 ? a.unsqueeze(0) : a;
  Tensor b2 = b.dim() == 1 ? b.unsqueeze(-1) : b;
  Tensor out = detail::batched_matmul(a2, b2);
  if (a.dim() == 1) out = out.squeeze(-2);
  if (b.dim() == 1) out = out.squeeze(-1);
  return out;
}

inline Tensor mm(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "mm");
  detail::check_defined(b, "mm");
  if (auto ac = NABLA_AUTOCAST(mm, a, b)) return mm(ac[0], ac[1]);
  NABLA_CHECK(a.dim() == 2 && b.dim() == 2, ShapeError, "mm: expects two matrices, got ", detail::describe(a), " and ",
              detail::describe(b));
  return detail::batched_matmul(a, b);
}

inline Tensor Tensor::matmul(const Tensor& other) const { return nabla::matmul(*this, other); }
inline Tensor Tensor::mm(const Tensor& other) const { return nabla::mm(*this, other); }

}  // namespace nabla

