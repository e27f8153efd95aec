#pragma once
// DType: the element type of a tensor, a run-time property (as in LibTorch). Sizes, names,
// the C++ type behind each dtype, NumPy/PyTorch type promotion, and dispatch over dtypes.

#include <cstdint>
#include <ostream>
#include <string>
#include <type_traits>

#include "error.hpp"
#include "half.hpp"

namespace nabla {

enum class DType : uint8_t { Float32, Float64, Float16, BFloat16, Int32, Int64, UInt8, Bool };
using ScalarType = DType;  // LibTorch's name

inline constexpr DType kFloat32 = DType::Float32, kFloat = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64, kDouble = DType::Float64;
inline constexpr DType kFloat16 = DType::Float16, kHalf = DType::Float16;
inline constexpr DType kBFloat16 = DType::BFloat16;
inline constexpr DType kInt32 = DType::Int32, kInt = DType::Int32;
inline constexpr DType kInt64 = DType::Int64, kLong = DType::Int64;
inline constexpr DType kUInt8 = DType::UInt8, kByte = DType::UInt8;
inline constexpr DType kBool = DType::Bool;
inline constexpr int kNumDTypes = 8;

constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::Float64: case DType::Int64: return 8;
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float16: case DType::BFloat16: return 2;
    case DType::UInt8: case DType::Bool: return 1;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

constexpr bool is_floating_point(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 || t == DType::BFloat16;
}
constexpr bool is_integral(DType t, bool include_bool = false) {
  return t == DType::Int32 || t == DType::Int64 || t == DType::UInt8 || (include_bool && t == DType::Bool);
}

// C++ type <-> dtype.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = kFloat32; };
template <> struct dtype_of<double> { static constexpr DType value = kFloat64; };
template <> struct dtype_of<Half> { static constexpr DType value = kFloat16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = kBFloat16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = kInt32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = kInt64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = kUInt8; };
template <> struct dtype_of<bool> { static constexpr DType value = kBool; };
template <class T> inline constexpr DType dtype_of_v = dtype_of<std::remove_cv_t<T>>::value;

// The type arithmetic on T is carried out in: 16-bit floats compute in float.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<Half> { using type = float; };
template <> struct compute_type<BFloat16> { using type = float; };
template <class T> using compute_t = typename compute_type<T>::type;

// Accumulator for long reductions (sum, mean): wider than the element so that summing
// millions of float32 values keeps float32 accuracy on the result.
template <class T> struct acc_type { using type = T; };
template <> struct acc_type<float> { using type = double; };
template <> struct acc_type<Half> { using type = double; };
template <> struct acc_type<BFloat16> { using type = double; };
template <> struct acc_type<int32_t> { using type = int64_t; };
template <> struct acc_type<uint8_t> { using type = int64_t; };
template <> struct acc_type<bool> { using type = int64_t; };
template <class T> using acc_t = typename acc_type<T>::type;

// ---------------------------------------------------------------------------------------------
// Type promotion (PyTorch's rules). Order within a category: bool < uint8 < int32 < int64 <
// {float16, bfloat16} < float32 < float64; float16 with bfloat16 gives float32.

constexpr int promotion_rank(DType t) {
  switch (t) {
    case DType::Bool: return 0;
    case DType::UInt8: return 1;
    case DType::Int32: return 2;
    case DType::Int64: return 3;
    case DType::Float16: case DType::BFloat16: return 4;
    case DType::Float32: return 5;
    case DType::Float64: return 6;
  }
  return 0;
}

constexpr DType promote_types(DType a, DType b) {
  if (a == b) return a;
  if ((a == kFloat16 && b == kBFloat16) || (a == kBFloat16 && b == kFloat16)) return kFloat32;
  return promotion_rank(a) >= promotion_rank(b) ? a : b;
}

// Category order used when zero-dim tensors and plain numbers meet dimensioned tensors:
// a scalar only changes the result type when it belongs to a higher category.
constexpr int dtype_category(DType t) { return t == kBool ? 0 : is_integral(t) ? 1 : 2; }

// ---------------------------------------------------------------------------------------------
// Dispatch: call f(type_tag<T>{}) with T the C++ type behind the run-time dtype.

template <class T> struct type_tag { using type = T; };

template <class F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
    case DType::Int32: return f(type_tag<int32_t>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    case DType::UInt8: return f(type_tag<uint8_t>{});
    case DType::Bool: return f(type_tag<bool>{});
  }
  throw DTypeError(detail::cat("nabla::", op, ": unknown dtype"));
}

template <class F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Float16: return f(type_tag<Half>{});
    case DType::BFloat16: return f(type_tag<BFloat16>{});
    default: break;
  }
  throw DTypeError(detail::cat("nabla::", op, ": expected a floating-point dtype, got ", dtype_name(t)));
}

// Numeric types (everything but bool).
template <class F>
decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {
  if (t == DType::Bool) throw DTypeError(detail::cat("nabla::", op, ": not supported for dtype bool"));
  return dispatch_all(t, op, std::forward<F>(f));
}

}  // namespace nabla
