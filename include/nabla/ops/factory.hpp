#pragma once
// Factories: empty zeros ones full arange linspace eye rand randn randint, tensors from C++
// data (tensor, from_vector) and over user memory (from_blob), and their *_like forms; LibTorch's
// single-int sizes (zeros(n)) and option functions (requires_grad(), dtype(), device()).

#include <cmath>
#include <concepts>
#include <tuple>
#include <functional>
#include <vector>

#include "common.hpp"

namespace nabla {

inline Tensor full(const Shape& shape, Scalar value, TensorOptions options = {}) {
  bool grad = options.requires_grad_;
  Tensor t = empty(shape, options.requires_grad(false));
  backend(t.device()).fill(t, value);
  if (grad) t.requires_grad_(true);
  return t;
}
inline Tensor zeros(const Shape& shape, TensorOptions options = {}) { return full(shape, 0, options); }
inline Tensor ones(const Shape& shape, TensorOptions options = {}) { return full(shape, 1, options); }
inline Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), t.options()); }
inline Tensor zeros_like(const Tensor& t, TensorOptions o) { return zeros(t.sizes(), o); }
inline Tensor ones_like(const Tensor& t) { return ones(t.sizes(), t.options()); }
inline Tensor ones_like(const Tensor& t, TensorOptions o) { return ones(t.sizes(), o); }
inline Tensor full_like(const Tensor& t, Scalar v) { return full(t.sizes(), v, t.options()); }

// LibTorch's option functions: randn({3}, requires_grad()), zeros({2}, dtype(kFloat64).device(d)).
inline TensorOptions requires_grad(bool r = true) { return TensorOptions().requires_grad(r); }
inline TensorOptions dtype(DType d) { return TensorOptions(d); }
inline TensorOptions device(Device d) { return TensorOptions(d); }

namespace detail {
template <class I>
concept SizeInt = std::integral<I> && !std::same_as<I, bool>;
}  // namespace detail

// A single integer size, as LibTorch's IntArrayRef takes one: zeros(n) is a vector of n zeros.
// (Braced lists still go to the Shape overloads: zeros({}) is a scalar, zeros({n}) a vector.)
template <detail::SizeInt I>
Tensor zeros(I n, TensorOptions options = {}) { return zeros(Shape{static_cast<int64_t>(n)}, options); }
template <detail::SizeInt I>
Tensor ones(I n, TensorOptions options = {}) { return ones(Shape{static_cast<int64_t>(n)}, options); }
template <detail::SizeInt I>
Tensor empty(I n, TensorOptions options = {}) { return empty(Shape{static_cast<int64_t>(n)}, options); }
template <detail::SizeInt I>
Tensor full(I n, Scalar value, TensorOptions options = {}) { return full(Shape{static_cast<int64_t>(n)}, value, options); }

// Values start, start + step, ... below end (PyTorch's arange).
inline Tensor arange(Scalar start, Scalar end, Scalar step, TensorOptions options) {
  double s = start.to_double(), e = end.to_double(), st = step.to_double();
  NABLA_CHECK(st != 0, ValueError, "arange: step must be non-zero");
  NABLA_CHECK(std::isfinite(s) && std::isfinite(e), ValueError, "arange: start and end must be finite, got ", s, " and ", e);
  NABLA_CHECK((e - s) / st >= 0 || s == e, ValueError, "arange: upper bound ", e, " and step ", st,
              " are inconsistent with start ", s);
  int64_t n = static_cast<int64_t>(std::ceil((e - s) / st));
  Tensor t = empty({std::max<int64_t>(n, 0)}, options.requires_grad(false));
  if (n > 0) backend(t.device()).arange(t, s, st);
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}
inline Tensor arange(Scalar start, Scalar end, Scalar step = 1) {
  bool all_int = !start.is_floating_point() && !end.is_floating_point() && !step.is_floating_point();
  return arange(start, end, step, all_int ? kInt64 : kFloat32);
}
inline Tensor arange(Scalar end) { return arange(0, end, 1); }
inline Tensor arange(Scalar end, TensorOptions options) { return arange(0, end, 1, options); }

inline Tensor linspace(Scalar start, Scalar end, int64_t steps, TensorOptions options = {}) {
  NABLA_CHECK(steps >= 0, ValueError, "linspace: number of steps must be non-negative, got ", steps);
  double s = start.to_double(), e = end.to_double();
  double step = steps > 1 ? (e - s) / static_cast<double>(steps - 1) : 0.0;
  Tensor t = empty({steps}, options.requires_grad(false));
  if (steps > 0) backend(t.device()).arange(t, s, step);
  if (steps > 1) {  // make the last value exactly `end`, as PyTorch does
    Tensor last = detail::alias(t, {1}, {1}, steps - 1);
    backend(t.device()).fill(last, end);
  }
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}

inline Tensor eye(int64_t n, int64_t m, TensorOptions options = {}) {
  NABLA_CHECK(n >= 0 && m >= 0, ValueError, "eye: sizes must be non-negative, got ", n, " and ", m);
  Tensor t = zeros({n, m}, options.requires_grad(false));
  int64_t k = std::min(n, m);
  if (k > 0) backend(t.device()).fill(detail::alias(t, {k}, {m + 1}, 0), 1);
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}
inline Tensor eye(int64_t n, TensorOptions options = {}) { return eye(n, n, options); }

namespace detail {
inline Tensor random_tensor(const Shape& shape, TensorOptions options, RandomParams p, const char* op) {
  Tensor t = empty(shape, options.requires_grad(false));
  std::tie(p.seed, p.offset) = default_generator().reserve(static_cast<uint64_t>(t.numel()));
  if (t.numel() > 0) backend(t.device()).random(t, p);
  if (options.requires_grad_) t.requires_grad_(true);
  (void)op;
  return t;
}
}  // namespace detail

// Uniform on [0, 1).
inline Tensor rand(const Shape& shape, TensorOptions options = {}) {
  NABLA_CHECK(is_floating_point(options.dtype_), DTypeError, "rand: expected a floating-point dtype, got ", options.dtype_);
  return detail::random_tensor(shape, options, RandomParams{RandomKind::Uniform, 0, 0, 0.0, 1.0}, "rand");
}
// Standard normal.
inline Tensor randn(const Shape& shape, TensorOptions options = {}) {
  NABLA_CHECK(is_floating_point(options.dtype_), DTypeError, "randn: expected a floating-point dtype, got ", options.dtype_);
  return detail::random_tensor(shape, options, RandomParams{RandomKind::Normal, 0, 0, 0.0, 1.0}, "randn");
}
template <detail::SizeInt I>
Tensor rand(I n, TensorOptions options = {}) { return rand(Shape{static_cast<int64_t>(n)}, options); }
template <detail::SizeInt I>
Tensor randn(I n, TensorOptions options = {}) { return randn(Shape{static_cast<int64_t>(n)}, options); }

// In place, as LibTorch's t.uniform_(a, b) / t.normal_(mean, std): new draws from the default
// generator written into t's storage (no graph).
inline const Tensor& Tensor::uniform_(double from, double to) const {
  NABLA_CHECK(is_floating_point(), DTypeError, "uniform_: expected a floating-point tensor, got ", detail::describe(*this));
  NABLA_CHECK(from <= to, ValueError, "uniform_: expects from <= to, got from=", from, " to=", to);
  NoGradGuard ng;
  return copy_(detail::random_tensor(sizes(), options(), RandomParams{RandomKind::Uniform, 0, 0, from, to}, "uniform_"));
}
inline const Tensor& Tensor::normal_(double mean, double std) const {
  NABLA_CHECK(is_floating_point(), DTypeError, "normal_: expected a floating-point tensor, got ", detail::describe(*this));
  NABLA_CHECK(std >= 0, ValueError, "normal_: expects std >= 0, got ", std);
  NoGradGuard ng;
  return copy_(detail::random_tensor(sizes(), options(), RandomParams{RandomKind::Normal, 0, 0, mean, std}, "normal_"));
}

// Integers uniform on [low, high); int64 unless options say otherwise.
inline Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options = TensorOptions(kInt64)) {
  NABLA_CHECK(high > low, ValueError, "randint: expected low < high, got low=", low, " high=", high);
  return detail::random_tensor(shape, options,
                               RandomParams{RandomKind::Integer, 0, 0, static_cast<double>(low), static_cast<double>(high)},
                               "randint");
}
inline Tensor randint(int64_t high, const Shape& shape, TensorOptions options = TensorOptions(kInt64)) {
  return randint(0, high, shape, options);
}
inline Tensor rand_like(const Tensor& t) { return rand(t.sizes(), t.options()); }
inline Tensor randn_like(const Tensor& t) { return randn(t.sizes(), t.options()); }

// A tensor over memory the caller owns; no copy. `deleter` (optional) runs when the last
// tensor using the memory is destroyed. Strides default to contiguous.
inline Tensor from_blob(void* data, const Shape& shape, const Strides& strides, TensorOptions options = {},
                        std::function<void(void*)> deleter = nullptr) {
  NABLA_CHECK(shape.size() == strides.size(), ShapeError, "from_blob: shape ", shape_str(shape), " and strides ",
              shape_str(strides), " have different ranks");
  int64_t extent = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    NABLA_CHECK(shape[i] >= 0 && strides[i] >= 0, ValueError, "from_blob: negative size or stride in shape ",
                shape_str(shape), " strides ", shape_str(strides));
    if (shape[i] == 0) extent = 0;
  }
  if (extent) {
    for (size_t i = 0; i < shape.size(); ++i) extent += (shape[i] - 1) * strides[i];
  }
  Storage s = detail::wrap_storage(data, static_cast<size_t>(extent) * element_size(options.dtype_), options.device_,
                                   std::move(deleter));
  Tensor t = detail::make_tensor(std::move(s), 0, shape, strides, options.dtype_);
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}
inline Tensor from_blob(void* data, const Shape& shape, TensorOptions options = {},
                        std::function<void(void*)> deleter = nullptr) {
  return from_blob(data, shape, contiguous_strides(shape), options, std::move(deleter));
}

// Copies `values` into a new tensor of the given shape (1-D by default). The dtype follows T
// (double -> float32 as in LibTorch) unless options name one.
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions options) {
  NABLA_CHECK(numel_of(shape) == static_cast<int64_t>(values.size()), ShapeError, "from_vector: ", values.size(),
              " values do not fill shape ", shape_str(shape));
  bool grad = options.requires_grad_;
  Tensor src;
  std::unique_ptr<bool[]> bools;  // std::vector<bool> has no data(); go through a plain buffer
  if constexpr (std::is_same_v<T, bool>) {
    bools.reset(new bool[values.size()]);
    for (size_t i = 0; i < values.size(); ++i) bools[i] = values[i];
    src = from_blob(bools.get(), shape, kBool);
  } else {
    src = from_blob(const_cast<T*>(values.data()), shape, dtype_of_v<T>);
  }
  Tensor out = empty(shape, options.requires_grad(false));
  backend(out.device()).copy(out, src);
  if (grad) out.requires_grad_(true);
  return out;
}
template <class T>
DType default_dtype_for() {
  if constexpr (std::is_same_v<T, double>) return kFloat32;
  else if constexpr (std::is_same_v<T, int>) return kInt64;
  else return dtype_of_v<T>;
}
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  return from_vector(values, shape, default_dtype_for<T>());
}
template <class T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())}, default_dtype_for<T>());
}
template <class T>
Tensor tensor(std::initializer_list<T> values, TensorOptions options) {
  return from_vector(std::vector<T>(values), Shape{static_cast<int64_t>(values.size())}, options);
}
template <class T>
Tensor tensor(std::initializer_list<T> values) {
  return from_vector(std::vector<T>(values));
}
// A 0-dim tensor holding one number.
inline Tensor scalar_tensor(Scalar value, TensorOptions options = {}) { return full({}, value, options); }

}  // namespace nabla

