#pragma once
// Copies, conversions and autograd bookkeeping on a tensor: contiguous clone to(dtype/device)
// copy_ fill_ zero_ detach item, requires_grad_/grad/retain_grad, and the helper every
// in-place op uses to move a tensor's history onto the node that overwrote it.

#include "view.hpp"

namespace nabla {
namespace detail {

// The backend that can run a copy between these devices (the non-CPU one, if any).
inline Backend& copy_backend(const Tensor& dst, const Tensor& src) {
  return backend(dst.is_cpu() ? src.device() : dst.device());
}

inline void check_inplace(const Tensor& self, const char* op) {
  check_defined(self, op);
  NABLA_CHECK(!(GradMode::is_enabled() && self.requires_grad() && self.is_leaf()), AutogradError, op,
              ": a leaf tensor that requires grad (", describe(self),
              ") is used in an in-place operation; run it under NoGradGuard or use the out-of-place op");
}

inline void check_view_history(const Tensor& self, const char* op) {
  NABLA_CHECK(!self.impl()->is_view, AutogradError, op,
              ": in-place update of a view (", describe(self),
              ") that takes part in autograd is not supported; use the out-of-place op (e.g. torch.cat / where) "
              "or clone() the view first");
}

// Writes `result` (computed out of place, with autograd) into self's memory and makes self's
// history the node that produced result.
inline const Tensor& commit_inplace(const Tensor& self, const Tensor& result, const char* op) {
  NABLA_CHECK(can_cast(result.dtype(), self.dtype()), DTypeError, op, ": result type ", dtype_name(result.dtype()),
              " cannot be written into a tensor of dtype ", dtype_name(self.dtype()));
  if (result.requires_grad()) check_view_history(self, op);
  {
    NoGradGuard no_grad;
    copy_backend(self, result).copy(self, result);
  }
  bump_version(self);
  if (result.requires_grad()) {
    auto& m = self.impl()->autograd_meta();
    m.grad_fn = result.grad_fn();
    m.requires_grad = true;
  }
  return self;
}

}  // namespace detail

inline Tensor Tensor::contiguous() const {
  detail::check_defined(*this, "contiguous");
  return is_contiguous() ? *this : clone();
}

inline Tensor Tensor::clone() const {
  detail::check_defined(*this, "clone");
  Tensor out = empty(sizes(), options());
  detail::copy_backend(out, *this).copy(out, *this);
  if (autograd::needs_grad(*this))
    autograd::record("CloneBackward0", out, {*this}, [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g}; });
  if (trace::active()) trace::record("Identity", {*this}, {out});
  return out;
}

inline Tensor Tensor::to(Device device, DType dtype) const {
  detail::check_defined(*this, "to");
  if (device == this->device() && dtype == this->dtype()) return *this;
  Tensor out = empty(sizes(), TensorOptions(dtype).device(device));
  detail::copy_backend(out, *this).copy(out, *this);
  if (nabla::is_floating_point(dtype) && autograd::needs_grad(*this))  // engine converts g back
    autograd::record("ToCopyBackward0", out, {*this}, [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g}; });
  if (trace::active()) trace::record("Cast", {*this}, {out}, {{"dtype", static_cast<int64_t>(dtype)}});
  return out;
}
inline Tensor Tensor::to(DType dtype) const { return to(device(), dtype); }
inline Tensor Tensor::to(Device device) const { return to(device, dtype()); }

inline const Tensor& Tensor::copy_(const Tensor& src) const {
  detail::check_inplace(*this, "copy_");
  detail::check_defined(src, "copy_");
  NABLA_CHECK(is_expandable_to(src.sizes(), sizes()), ShapeError, "copy_: source ", detail::describe(src),
              " cannot be broadcast to destination ", detail::describe(*this));
  bool grad = GradMode::is_enabled() && (requires_grad() || src.requires_grad());
  if (grad) detail::check_view_history(*this, "copy_");
  {
    NoGradGuard no_grad;
    detail::copy_backend(*this, src).copy(*this, src);
  }
  detail::bump_version(*this);
  if (grad) {
    if (src.requires_grad() && nabla::is_floating_point(dtype())) {
      autograd::record("CopyBackward0", *this, {src}, [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g}; });
    } else {  // overwritten by data that carries no gradient: the old history no longer applies
      impl()->autograd_meta().grad_fn = nullptr;
      impl()->autograd_meta().requires_grad = false;
    }
  }
  return *this;
}

inline const Tensor& Tensor::fill_(Scalar value) const {
  detail::check_inplace(*this, "fill_");
  backend(device()).fill(*this, value);
  detail::bump_version(*this);
  if (impl()->autograd && GradMode::is_enabled()) {
    impl()->autograd->grad_fn = nullptr;
    impl()->autograd->requires_grad = false;
  }
  return *this;
}
inline const Tensor& Tensor::zero_() const { return fill_(0); }

inline Tensor Tensor::detach() const {
  detail::check_defined(*this, "detach");
  return detail::make_tensor(storage(), storage_offset(), sizes(), strides(), dtype());
}
inline const Tensor& Tensor::detach_() const {
  if (impl()->autograd) {
    impl()->autograd->grad_fn = nullptr;
    impl()->autograd->requires_grad = false;
  }
  return *this;
}

inline const Tensor& Tensor::requires_grad_(bool requires_grad) const {
  detail::check_defined(*this, "requires_grad_");
  NABLA_CHECK(!requires_grad || nabla::is_floating_point(dtype()), DTypeError,
              "requires_grad_: only floating-point tensors can require gradients, got ", detail::describe(*this));
  NABLA_CHECK(is_leaf(), AutogradError, "requires_grad_: can only change the flag of a leaf tensor; call detach() first");
  impl()->autograd_meta().requires_grad = requires_grad;
  return *this;
}

inline const Tensor& Tensor::grad() const {
  static const Tensor undefined;
  return impl_->autograd ? impl_->autograd->grad : undefined;
}
inline Tensor& Tensor::mutable_grad() const { return impl()->autograd_meta().grad; }
inline void Tensor::set_grad(const Tensor& g) const {
  NABLA_CHECK(!g.defined() || (g.sizes() == sizes() && g.device() == device()), ShapeError,
              "set_grad: gradient ", detail::describe(g), " does not match the tensor ", detail::describe(*this));
  impl()->autograd_meta().grad = g;
}
inline void Tensor::retain_grad() const {
  NABLA_CHECK(requires_grad(), AutogradError, "retain_grad: called on a tensor that does not require grad");
  if (is_leaf()) return;  // leaves always keep their gradient
  impl_->autograd->retains_grad = true;
  impl_->autograd->grad_fn->retained = impl_;
}
inline bool Tensor::retains_grad() const { return impl_->autograd && impl_->autograd->retains_grad; }

inline Scalar Tensor::item() const {
  detail::check_defined(*this, "item");
  NABLA_CHECK(numel() == 1, ValueError, "item: a tensor with ", numel(), " elements cannot be converted to a scalar (",
              detail::describe(*this), ")");
  Tensor c = to(Device::cpu());
  return dispatch_all(dtype(), "item", [&](auto tag) -> Scalar {
    using T = typename decltype(tag)::type;
    return Scalar(*static_cast<const T*>(c.data_ptr()));
  });
}
template <class T>
T Tensor::item() const {
  return item().to<T>();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  detail::check_defined(*this, "to_vector");
  Tensor c = detail::cast(to(Device::cpu()), dtype_of_v<T>).contiguous();
  if (c.is_same(*this) || !c.is_contiguous()) c = c.clone();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  const T* p = static_cast<const T*>(c.data_ptr());
  for (size_t i = 0; i < out.size(); ++i) out[i] = p[i];
  return out;
}

}  // namespace nabla

