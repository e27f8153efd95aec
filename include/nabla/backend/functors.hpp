#pragma once
// The math of every elementwise op, one functor each, written once for both devices:
// NABLA_HOST_DEVICE makes them __host__ __device__ under nvcc. Functors take and return the
// compute type (float for 16-bit floats, the element type otherwise).

#include <cmath>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/macros.hpp"
#include "../core/scalar.hpp"
#include "fast_math.hpp"  // vtanh (host code only)

namespace nabla {
namespace fn {

// float and double overloads that resolve to the same calls on the host and in CUDA device code.
#define NABLA_MATH1(name, fexpr, dexpr)                                  \
  NABLA_HOST_DEVICE inline float name(float x) { return fexpr; }         \
  NABLA_HOST_DEVICE inline double name(double x) { return dexpr; }
NABLA_MATH1(exp, ::expf(x), ::exp(x))
NABLA_MATH1(log, ::logf(x), ::log(x))
NABLA_MATH1(log1p, ::log1pf(x), ::log1p(x))
NABLA_MATH1(expm1, ::expm1f(x), ::expm1(x))
NABLA_MATH1(sqrt, ::sqrtf(x), ::sqrt(x))
NABLA_MATH1(sin, ::sinf(x), ::sin(x))
NABLA_MATH1(cos, ::cosf(x), ::cos(x))
NABLA_MATH1(erf, ::erff(x), ::erf(x))
NABLA_MATH1(floor, ::floorf(x), ::floor(x))
NABLA_MATH1(ceil, ::ceilf(x), ::ceil(x))
NABLA_MATH1(rint, ::rintf(x), ::rint(x))
#undef NABLA_MATH1
// tanh: on the host the float one is cpu::vtanh (within 3 ulp of tanhf, and it vectorises, where
// tanhf is a scalar call: GELU's tanh form spends most of its time there); libm's on the device.
NABLA_HOST_DEVICE inline float tanh(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanhf(x);
#else
  return cpu::vtanh(x);
#endif
}
NABLA_HOST_DEVICE inline double tanh(double x) { return ::tanh(x); }
NABLA_HOST_DEVICE inline float pow(float a, float b) { return ::powf(a, b); }
NABLA_HOST_DEVICE inline double pow(double a, double b) { return ::pow(a, b); }

template <class T>
NABLA_HOST_DEVICE inline bool is_nan(T x) {
  if constexpr (std::is_floating_point_v<T>) return x != x;
  else return false;
}

// ---- unary ------------------------------------------------------------------------------------

struct Neg { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return static_cast<T>(-x); } };
struct Abs {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T> || std::is_same_v<T, bool>) return x;
    else return x < T(0) ? static_cast<T>(-x) : x;
  }
};
struct Sign {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if constexpr (std::is_same_v<T, bool>) return x;
    else return x > T(0) ? T(1) : (x < T(0) ? static_cast<T>(-1) : x);  // 0 -> 0, NaN -> NaN
  }
};
struct Square { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return static_cast<T>(x * x); } };
struct Relu { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return x < T(0) ? T(0) : x; } };
struct LeakyRelu {
  double slope;
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return x > T(0) ? x : static_cast<T>(x * static_cast<T>(slope)); }
};
// A NaN bound means "no bound"; a NaN input stays NaN.
struct Clamp {
  double lo, hi;
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if (!(lo != lo) && x < static_cast<T>(lo)) x = static_cast<T>(lo);
    if (!(hi != hi) && x > static_cast<T>(hi)) x = static_cast<T>(hi);
    return x;
  }
};
struct Exp { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::exp(x); } };
struct Log { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::log(x); } };
struct Log1p { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::log1p(x); } };
struct Expm1 { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::expm1(x); } };
struct Sqrt { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::sqrt(x); } };
struct Rsqrt { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return T(1) / fn::sqrt(x); } };
struct Reciprocal { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return T(1) / x; } };
struct Sin { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::sin(x); } };
struct Cos { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::cos(x); } };
struct Tanh { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::tanh(x); } };
struct Sigmoid { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return T(1) / (T(1) + fn::exp(-x)); } };
struct Gelu {  // exact: x * Phi(x)
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    return T(0.5) * x * (T(1) + fn::erf(x * T(0.70710678118654752440)));
  }
};
struct GeluTanh {  // the tanh approximation (PyTorch's approximate="tanh")
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    return T(0.5) * x * (T(1) + fn::tanh(T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)));
  }
};
// d/dx of Gelu and GeluTanh: gelu's backward in one pass (the composite of ops is what double
// backward differentiates).
struct GeluGrad {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    const T cdf = T(0.5) * (T(1) + fn::erf(x * T(0.70710678118654752440)));
    return cdf + x * fn::exp(T(-0.5) * x * x) * T(0.39894228040143267794);  // 1 / sqrt(2 pi)
  }
};
struct GeluTanhGrad {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    const T k = T(0.79788456080286535588), c = T(0.044715), x2 = x * x;
    const T t = fn::tanh(k * x * (T(1) + c * x2));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x2);
  }
};
struct Silu { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return x / (T(1) + fn::exp(-x)); } };
struct Erf { template <class T> NABLA_HOST_DEVICE T operator()(T x) const { return fn::erf(x); } };
struct Floor {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return fn::floor(x); else return x;
  }
};
struct Ceil {
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return fn::ceil(x); else return x;
  }
};
struct Round {  // half to even, like torch.round
  template <class T> NABLA_HOST_DEVICE T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return fn::rint(x); else return x;
  }
};

// ---- binary -----------------------------------------------------------------------------------

struct Add { template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const { return static_cast<T>(a + b); } };
struct Sub { template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const { return static_cast<T>(a - b); } };
struct Mul { template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const { return static_cast<T>(a * b); } };
struct Div { template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const { return static_cast<T>(a / b); } };
struct Pow {
  template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return b == T(2) ? a * a : fn::pow(a, b);
    } else if constexpr (std::is_same_v<T, bool>) {
      return a || !b;
    } else {  // integer power by squaring; negative exponents follow integer division
      if (b < T(0)) return a == T(1) ? T(1) : (a == static_cast<T>(-1) ? ((b % 2) ? a : T(1)) : T(0));
      T result = 1, base = a;
      for (auto e = b; e > 0; e = static_cast<T>(e / 2)) {
        if (e % 2) result = static_cast<T>(result * base);
        base = static_cast<T>(base * base);
      }
      return result;
    }
  }
};
struct ReluBackward {  // relu's vjp from its output: a = incoming gradient, b = relu(x)
  template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const { return b > T(0) ? a : T(0); }
};
struct Maximum {  // NaN-propagating, like torch.maximum
  template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const {
    return is_nan(a) ? a : (is_nan(b) ? b : (a > b ? a : b));
  }
};
struct Minimum {
  template <class T> NABLA_HOST_DEVICE T operator()(T a, T b) const {
    return is_nan(a) ? a : (is_nan(b) ? b : (a < b ? a : b));
  }
};
struct LogicalAnd { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a != T(0) && b != T(0); } };
struct LogicalOr { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a != T(0) || b != T(0); } };
struct Eq { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a == b; } };
struct Ne { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a != b; } };
struct Lt { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a < b; } };
struct Le { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a <= b; } };
struct Gt { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a > b; } };
struct Ge { template <class T> NABLA_HOST_DEVICE bool operator()(T a, T b) const { return a >= b; } };

// Converts one element; 16-bit floats go through float, bool means "non-zero".
template <class D, class S>
NABLA_HOST_DEVICE inline D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) return static_cast<compute_t<S>>(v) != compute_t<S>(0);
  else if constexpr (std::is_same_v<D, S>) return v;
  else return static_cast<D>(static_cast<compute_t<S>>(v));
}

// A fill value as element type T (host side; both devices' fill_ use it). An integer T takes a
// float through Scalar::to_long (truncation; NaN, inf and out-of-range values are a ValueError,
// as in LibTorch), never through an undefined float-to-int conversion.
template <class T>
inline T scalar_as(const Scalar& value) {
  constexpr bool integral = std::is_integral_v<T> && !std::is_same_v<T, bool>;
  return value.is_floating_point() && !integral ? convert<T>(value.to_double()) : convert<T>(value.to_long());
}

}  // namespace fn
}  // namespace nabla
