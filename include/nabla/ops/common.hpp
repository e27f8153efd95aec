#pragma once
// Helpers every op family uses: allocation, device checks, type promotion with PyTorch's
// treatment of scalars, casts without autograd, and sum_to (the reverse of broadcasting).

#include <initializer_list>

#include "../autograd/node.hpp"
#include "../autograd/trace.hpp"
#include "../backend/backend.hpp"

namespace nabla {

inline Tensor empty(const Shape& shape, TensorOptions options = {}) {
  for (int64_t d : shape)
    NABLA_CHECK(d >= 0, ValueError, "empty: negative dimension ", d, " in shape ", shape_str(shape));
  const int64_t nbytes = checked_nbytes(numel_of(shape), element_size(options.dtype_), "empty");  // no wrap-around
  Storage s = backend(options.device_).allocate(static_cast<size_t>(nbytes), options.device_);
  Tensor t = detail::make_tensor(std::move(s), 0, shape, contiguous_strides(shape), options.dtype_);
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}
inline Tensor empty_like(const Tensor& t) { return empty(t.sizes(), t.options()); }
inline Tensor empty_like(const Tensor& t, TensorOptions options) { return empty(t.sizes(), options); }

namespace detail {

// A plain number as a 0-dim CPU tensor that promotes like a Python scalar. A wrapped float is
// held in float64 (ResultType still promotes it as the default float), so x * 0.9 on a float64
// x multiplies by 0.9, not by float(0.9) -- as in LibTorch.
inline Tensor scalar_to_tensor(const Scalar& s, std::optional<DType> dtype = std::nullopt) {
  DType dt = dtype.value_or(s.is_floating_point() ? kFloat64 : s.default_dtype());
  Tensor t = empty({}, dt);
  cpu_backend().fill(t, s);
  t.impl()->is_wrapped_number = !dtype.has_value();
  return t;
}

// Result dtype of an op over these operands, with PyTorch's rules: dimensioned tensors decide
// within a category; 0-dim tensors and numbers only lift the category (int -> float).
class ResultType {
 public:
  void add(const Tensor& t) {
    if (!t.defined()) return;
    DType d = t.dtype();
    if (t.impl()->is_wrapped_number) {
      if (is_floating_point(d)) d = kFloat32;  // numbers use the default float dtype
      wrapped_ = merge(wrapped_, d);
    } else if (t.dim() == 0) {
      zero_dim_ = merge(zero_dim_, d);
    } else {
      dimmed_ = merge(dimmed_, d);
    }
  }
  DType get() const {
    auto r = combine(dimmed_, combine(zero_dim_, wrapped_));
    return r.value_or(kFloat32);
  }

 private:
  using Opt = std::optional<DType>;
  static Opt merge(Opt a, DType b) { return a ? promote_types(*a, b) : b; }
  static Opt combine(Opt higher, Opt lower) {
    if (!higher) return lower;
    if (!lower) return higher;
    if (dtype_category(*lower) > dtype_category(*higher)) return promote_types(*higher, *lower);
    return higher;
  }
  Opt dimmed_, zero_dim_, wrapped_;
};

inline DType result_type(std::initializer_list<Tensor> ts) {
  ResultType r;
  for (const auto& t : ts) r.add(t);
  return r.get();
}

// True when `from` can be written into a tensor of dtype `to` by an in-place op.
inline bool can_cast(DType from, DType to) {
  if (is_floating_point(from) && !is_floating_point(to)) return false;
  if (from != kBool && to == kBool) return false;
  return true;
}

// All operands must live on one device; a 0-dim CPU tensor (a scalar) may join any device.
inline Device common_device(const char* op, std::initializer_list<Tensor> ts) {
  std::optional<Device> dev;
  for (const auto& t : ts) {
    if (!t.defined() || (t.dim() == 0 && t.is_cpu())) continue;
    if (!dev) dev = t.device();
    else if (*dev != t.device()) {
      std::string all;
      for (const auto& u : ts)
        if (u.defined()) all += (all.empty() ? "" : ", ") + describe(u);
      throw DeviceError(cat("nabla::", op, ": expected all tensors on one device, got ", all));
    }
  }
  if (dev) return *dev;
  for (const auto& t : ts)
    if (t.defined()) return t.device();
  return Device::cpu();
}

// dtype conversion without autograd (ops convert their inputs with this and let the autograd
// engine convert gradients back).
inline Tensor cast(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = empty(t.sizes(), TensorOptions(dtype).device(t.device()));
  backend(out.device()).copy(out, t);
  return out;
}

// A view sharing t's storage with new metadata; no autograd.
inline Tensor alias(const Tensor& t, Shape shape, Strides strides, int64_t offset) {
  Tensor v = make_tensor(t.storage(), offset, std::move(shape), std::move(strides), t.dtype());
  v.impl()->is_view = true;
  return v;
}

inline void bump_version(const Tensor& t) { ++t.storage()->version; }

}  // namespace detail
}  // namespace nabla

