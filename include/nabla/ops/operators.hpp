#pragma once
// C++ operators on tensors, and the elementwise Tensor members (t.exp(), t.add(u), ...).

#include "unary.hpp"

namespace nabla {

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
namespace detail {
// LibTorch's C++ operators with a Scalar call the .Scalar overloads, whose nodes are numbered 1.
inline Tensor scalar_node(Tensor out, const char* name) {
  if (auto node = out.grad_fn()) node->set_name(name);
  return out;
}
}  // namespace detail
inline Tensor operator+(const Tensor& a, Scalar b) { return detail::scalar_node(add(a, detail::wrap(b)), "AddBackward1"); }
inline Tensor operator-(const Tensor& a, Scalar b) { return detail::scalar_node(sub(a, detail::wrap(b)), "SubBackward1"); }
inline Tensor operator*(const Tensor& a, Scalar b) { return detail::scalar_node(mul(a, detail::wrap(b)), "MulBackward1"); }
inline Tensor operator/(const Tensor& a, Scalar b) { return detail::scalar_node(div(a, detail::wrap(b)), "DivBackward1"); }
inline Tensor operator+(Scalar a, const Tensor& b) { return detail::scalar_node(add(detail::wrap(a), b), "AddBackward1"); }
inline Tensor operator-(Scalar a, const Tensor& b) { return detail::scalar_node(sub(detail::wrap(a), b), "SubBackward0"); }
inline Tensor operator*(Scalar a, const Tensor& b) { return detail::scalar_node(mul(detail::wrap(a), b), "MulBackward1"); }
inline Tensor operator/(Scalar a, const Tensor& b) { return detail::scalar_node(div(detail::wrap(a), b), "DivBackward0"); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

inline Tensor& operator+=(Tensor& a, const Tensor& b) {
  a.add_(b);
  return a;
}
inline Tensor& operator-=(Tensor& a, const Tensor& b) {
  a.sub_(b);
  return a;
}
inline Tensor& operator*=(Tensor& a, const Tensor& b) {
  a.mul_(b);
  return a;
}
inline Tensor& operator/=(Tensor& a, const Tensor& b) {
  a.div_(b);
  return a;
}
inline Tensor& operator+=(Tensor& a, Scalar b) {
  a.add_(b);
  return a;
}
inline Tensor& operator-=(Tensor& a, Scalar b) {
  a.sub_(b);
  return a;
}
inline Tensor& operator*=(Tensor& a, Scalar b) {
  a.mul_(b);
  return a;
}
inline Tensor& operator/=(Tensor& a, Scalar b) {
  a.div_(b);
  return a;
}

// Comparisons return bool tensors, as in LibTorch.
inline Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
inline Tensor operator==(const Tensor& a, Scalar b) { return eq(a, detail::wrap(b)); }
inline Tensor operator!=(const Tensor& a, Scalar b) { return ne(a, detail::wrap(b)); }
inline Tensor operator<(const Tensor& a, Scalar b) { return lt(a, detail::wrap(b)); }
inline Tensor operator<=(const Tensor& a, Scalar b) { return le(a, detail::wrap(b)); }
inline Tensor operator>(const Tensor& a, Scalar b) { return gt(a, detail::wrap(b)); }
inline Tensor operator>=(const Tensor& a, Scalar b) { return ge(a, detail::wrap(b)); }
inline Tensor operator&&(const Tensor& a, const Tensor& b) { return logical_and(a, b); }
inline Tensor operator||(const Tensor& a, const Tensor& b) { return logical_or(a, b); }
inline Tensor operator!(const Tensor& a) { return logical_not(a); }

inline Tensor Tensor::add(const Tensor& o, Scalar alpha) const { return nabla::add(*this, o, alpha); }
inline Tensor Tensor::sub(const Tensor& o, Scalar alpha) const { return nabla::sub(*this, o, alpha); }
inline Tensor Tensor::mul(const Tensor& o) const { return nabla::mul(*this, o); }
inline Tensor Tensor::div(const Tensor& o) const { return nabla::div(*this, o); }
inline Tensor Tensor::pow(const Tensor& e) const { return nabla::pow(*this, e); }
inline Tensor Tensor::pow(Scalar e) const { return nabla::pow(*this, e); }
inline Tensor Tensor::maximum(const Tensor& o) const { return nabla::maximum(*this, o); }
inline Tensor Tensor::minimum(const Tensor& o) const { return nabla::minimum(*this, o); }
inline Tensor Tensor::neg() const { return nabla::neg(*this); }
inline Tensor Tensor::exp() const { return nabla::exp(*this); }
inline Tensor Tensor::log() const { return nabla::log(*this); }
inline Tensor Tensor::log1p() const { return nabla::log1p(*this); }
inline Tensor Tensor::sqrt() const { return nabla::sqrt(*this); }
inline Tensor Tensor::rsqrt() const { return nabla::rsqrt(*this); }
inline Tensor Tensor::abs() const { return nabla::abs(*this); }
inline Tensor Tensor::sign() const { return nabla::sign(*this); }
inline Tensor Tensor::sin() const { return nabla::sin(*this); }
inline Tensor Tensor::cos() const { return nabla::cos(*this); }
inline Tensor Tensor::tanh() const { return nabla::tanh(*this); }
inline Tensor Tensor::sigmoid() const { return nabla::sigmoid(*this); }
inline Tensor Tensor::relu() const { return nabla::relu(*this); }
inline Tensor Tensor::gelu(const std::string& approximate) const { return nabla::gelu(*this, approximate); }
inline Tensor Tensor::silu() const { return nabla::silu(*this); }
inline Tensor Tensor::erf() const { return nabla::erf(*this); }
inline Tensor Tensor::reciprocal() const { return nabla::reciprocal(*this); }
inline Tensor Tensor::square() const { return nabla::square(*this); }
inline Tensor Tensor::clamp(std::optional<Scalar> min, std::optional<Scalar> max) const { return nabla::clamp(*this, min, max); }
inline Tensor Tensor::eq(const Tensor& o) const { return nabla::eq(*this, o); }
inline Tensor Tensor::ne(const Tensor& o) const { return nabla::ne(*this, o); }
inline Tensor Tensor::lt(const Tensor& o) const { return nabla::lt(*this, o); }
inline Tensor Tensor::le(const Tensor& o) const { return nabla::le(*this, o); }
inline Tensor Tensor::gt(const Tensor& o) const { return nabla::gt(*this, o); }
inline Tensor Tensor::eq(Scalar o) const { return nabla::eq(*this, detail::wrap(o)); }
inline Tensor Tensor::ne(Scalar o) const { return nabla::ne(*this, detail::wrap(o)); }
inline Tensor Tensor::lt(Scalar o) const { return nabla::lt(*this, detail::wrap(o)); }
inline Tensor Tensor::le(Scalar o) const { return nabla::le(*this, detail::wrap(o)); }
inline Tensor Tensor::gt(Scalar o) const { return nabla::gt(*this, detail::wrap(o)); }
inline Tensor Tensor::ge(Scalar o) const { return nabla::ge(*this, detail::wrap(o)); }
inline Tensor Tensor::ge(const Tensor& o) const { return nabla::ge(*this, o); }
inline Tensor Tensor::logical_not() const { return nabla::logical_not(*this); }
inline Tensor Tensor::logical_and(const Tensor& o) const { return nabla::logical_and(*this, o); }
inline Tensor Tensor::logical_or(const Tensor& o) const { return nabla::logical_or(*this, o); }
inline Tensor Tensor::masked_fill(const Tensor& mask, Scalar value) const { return nabla::masked_fill(*this, mask, value); }

}  // namespace nabla

