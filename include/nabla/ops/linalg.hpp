#pragma once
// matmul with NumPy semantics: 1-D operands are promoted to matrices and the extra dim removed
// afterwards, batch dims broadcast; mm, bmm, and addmm / baddbmm (beta * self + alpha * product).
// Everything reduces to one batched primitive whose gradients are matmuls again (summed back
// over broadcast batch dims by the engine).

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
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = matmul(a, b);
    scope.record("MatMul", {a, b}, {y});
    return y;
  }
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

// torch::bmm: [b, n, m] @ [b, m, p] -> [b, n, p], no broadcasting (matmul broadcasts).
inline Tensor bmm(const Tensor& a, const Tensor& b) {
  detail::check_defined(a, "bmm");
  detail::check_defined(b, "bmm");
  if (auto ac = NABLA_AUTOCAST(bmm, a, b)) return bmm(ac[0], ac[1]);
  NABLA_CHECK(a.dim() == 3 && b.dim() == 3, ShapeError, "bmm: expects two 3-D tensors, got ", detail::describe(a),
              " and ", detail::describe(b));
  NABLA_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), ShapeError, "bmm: shapes ", detail::describe(a), " and ",
              detail::describe(b), " cannot be multiplied (expected [b, n, m] and [b, m, p])");
  return detail::batched_matmul(a, b);
}

namespace detail {
// beta * self + alpha * (m1 @ m2) through the matmul primitive, recorded as one node (LibTorch's
// name) whose backward is matmuls again. As in PyTorch, beta = 0 ignores self's values (NaN and
// inf included) and alpha = 0 the product's; self must broadcast to the product's shape.
inline Tensor add_matmul(const char* name, const char* node, const Tensor& self, const Tensor& m1, const Tensor& m2,
                         const Scalar& beta, const Scalar& alpha) {
  Shape shape(m1.sizes().begin(), m1.sizes().end() - 1);
  shape.push_back(m2.size(-1));
  NABLA_CHECK(is_expandable_to(self.sizes(), shape), ShapeError, name, ": self ", describe(self),
              " cannot be broadcast to the product's shape ", shape_str(shape), " (", describe(m1), " @ ", describe(m2),
              ")");
  const DType dt = result_type({self, m1, m2});
  Tensor out;
  {
    NoGradGuard no_grad;
    const bool no_self = beta.to_double() == 0.0, no_product = alpha.to_double() == 0.0;
    Tensor product = no_product ? Tensor() : batched_matmul(m1, m2);
    if (!no_product && alpha.to_double() != 1.0) product = product * alpha;
    Tensor scaled = no_self ? Tensor() : (beta.to_double() != 1.0 ? self * beta : self);
    if (no_product) out = zeros(shape, TensorOptions(dt).device(m1.device()));  // on the matrices' device
    if (no_product && !no_self) out = out + scaled;
    else if (!no_product) out = no_self ? product : product + scaled;
    out = cast(out, dt);
  }
  if (autograd::needs_grad(self, m1, m2))
    autograd::record(node, out, {self, m1, m2},
                     [s1 = autograd::save(m1), s2 = autograd::save(m2), beta, alpha](const Tensor& g, autograd::NeedsGrad need) {
                       auto times = [](const Tensor& t, const Scalar& s) { return s.to_double() == 1.0 ? t : t * s; };
                       Tensor gs, g1, g2;
                       if (need[0]) gs = times(g, beta);  // summed to self's shape by the engine
                       if (need[1]) g1 = times(batched_matmul(g, s2.unpack().transpose(-1, -2)), alpha);
                       if (need[2]) g2 = times(batched_matmul(s1.unpack().transpose(-1, -2), g), alpha);
                       return TensorList{gs, g1, g2};
                     });
  return out;
}
}  // namespace detail

// torch::addmm: beta * self + alpha * (mat1 @ mat2) for matrices mat1 [n, m], mat2 [m, p].
inline Tensor addmm(const Tensor& self, const Tensor& mat1, const Tensor& mat2, Scalar beta = 1, Scalar alpha = 1) {
  detail::check_defined(self, "addmm");
  detail::check_defined(mat1, "addmm");
  detail::check_defined(mat2, "addmm");
  if (auto ac = NABLA_AUTOCAST(addmm, self, mat1, mat2)) return addmm(ac[0], ac[1], ac[2], beta, alpha);
  NABLA_CHECK(mat1.dim() == 2 && mat2.dim() == 2, ShapeError, "addmm: mat1 and mat2 must be matrices, got ",
              detail::describe(mat1), " and ", detail::describe(mat2));
  NABLA_CHECK(mat1.size(1) == mat2.size(0), ShapeError, "addmm: mat1 ", detail::describe(mat1), " and mat2 ",
              detail::describe(mat2), " cannot be multiplied (", mat1.size(1), " columns vs ", mat2.size(0), " rows)");
  detail::common_device("addmm", {self, mat1, mat2});
  return detail::add_matmul("addmm", "AddmmBackward0", self, mat1, mat2, beta, alpha);
}

// torch::baddbmm: beta * self + alpha * bmm(batch1, batch2), batch1 [b, n, m], batch2 [b, m, p].
inline Tensor baddbmm(const Tensor& self, const Tensor& batch1, const Tensor& batch2, Scalar beta = 1, Scalar alpha = 1) {
  detail::check_defined(self, "baddbmm");
  detail::check_defined(batch1, "baddbmm");
  detail::check_defined(batch2, "baddbmm");
  if (auto ac = NABLA_AUTOCAST(baddbmm, self, batch1, batch2)) return baddbmm(ac[0], ac[1], ac[2], beta, alpha);
  NABLA_CHECK(batch1.dim() == 3 && batch2.dim() == 3, ShapeError, "baddbmm: batch1 and batch2 must be 3-D, got ",
              detail::describe(batch1), " and ", detail::describe(batch2));
  NABLA_CHECK(batch1.size(0) == batch2.size(0) && batch1.size(2) == batch2.size(1), ShapeError, "baddbmm: batch1 ",
              detail::describe(batch1), " and batch2 ", detail::describe(batch2),
              " cannot be multiplied (expected [b, n, m] and [b, m, p])");
  detail::common_device("baddbmm", {self, batch1, batch2});
  return detail::add_matmul("baddbmm", "BaddbmmBackward0", self, batch1, batch2, beta, alpha);
}

inline Tensor Tensor::matmul(const Tensor& other) const { return nabla::matmul(*this, other); }
inline Tensor Tensor::mm(const Tensor& other) const { return nabla::mm(*this, other); }
inline Tensor Tensor::bmm(const Tensor& mat2) const { return nabla::bmm(*this, mat2); }
inline Tensor Tensor::addmm(const Tensor& mat1, const Tensor& mat2, Scalar beta, Scalar alpha) const {
  return nabla::addmm(*this, mat1, mat2, beta, alpha);
}
inline Tensor Tensor::baddbmm(const Tensor& batch1, const Tensor& batch2, Scalar beta, Scalar alpha) const {
  return nabla::baddbmm(*this, batch1, batch2, beta, alpha);
}

}  // namespace nabla

