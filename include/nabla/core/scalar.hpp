#pragma once
// Scalar: a number passed to an op (x + 2, fill_(0.5), clamp(0, 6)). It remembers whether it
// was a bool, an integer or a float, because that decides type promotion.

#include <cstdint>
#include <ostream>
#include <type_traits>

#include "dtype.hpp"
#include "error.hpp"

namespace nabla {

class Scalar {
 public:
  enum class Kind : uint8_t { Bool, Int, Float };

  Scalar() : Scalar(int64_t{0}) {}
  Scalar(bool v) : kind_(Kind::Bool), i_(v), d_(v) {}  // NOLINT: implicit on purpose
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Scalar(T v) : kind_(Kind::Int), i_(static_cast<int64_t>(v)), d_(static_cast<double>(v)) {}  // NOLINT
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Scalar(T v) : kind_(Kind::Float), i_(0), d_(static_cast<double>(v)) {}  // NOLINT: i_ unused for a float
  Scalar(Half v) : Scalar(static_cast<float>(v)) {}      // NOLINT
  Scalar(BFloat16 v) : Scalar(static_cast<float>(v)) {}  // NOLINT

  Kind kind() const { return kind_; }
  bool is_floating_point() const { return kind_ == Kind::Float; }
  bool is_integral() const { return kind_ == Kind::Int; }
  bool is_bool() const { return kind_ == Kind::Bool; }

  double to_double() const { return d_; }
  // A float truncates toward zero, as LibTorch; NaN, infinities and values outside int64 are a
  // ValueError (as LibTorch's "cannot be converted to type int64_t without overflow"), never the
  // undefined behaviour of converting them.
  int64_t to_long() const {
    if (kind_ != Kind::Float) return i_;
    // [-2^63, 2^63) is exactly representable at its ends; NaN fails both comparisons
    NABLA_CHECK(d_ >= -9223372036854775808.0 && d_ < 9223372036854775808.0, ValueError, "Scalar: value ", d_,
                " cannot be converted to type int64 without overflow");
    return static_cast<int64_t>(d_);
  }
  bool to_bool() const { return kind_ == Kind::Float ? d_ != 0.0 : i_ != 0; }
  template <class T>
  T to() const {
    if constexpr (std::is_same_v<T, bool>) return to_bool();
    else if constexpr (std::is_integral_v<T>) return static_cast<T>(to_long());
    else return static_cast<T>(d_);
  }
  // The dtype a number of this kind has when it stands alone (PyTorch: bool, int64, float32).
  DType default_dtype() const { return kind_ == Kind::Bool ? kBool : kind_ == Kind::Int ? kInt64 : kFloat32; }

 private:
  Kind kind_;
  int64_t i_;
  double d_;
};

inline std::ostream& operator<<(std::ostream& os, const Scalar& s) {
  if (s.is_bool()) return os << (s.to_bool() ? "True" : "False");
  if (s.is_integral()) return os << s.to_long();
  return os << s.to_double();
}

}  // namespace nabla
