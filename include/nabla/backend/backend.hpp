#pragma once
// The Backend interface: what a device must provide. Ops do checks, shape and dtype rules and
// autograd; a backend only runs kernels on tensors that are already validated and allocated.
// The CPU backend is in backend/cpu; the CUDA one is compiled in backend/cuda/backend.cu.

#include <cstdint>

#include "../core/random.hpp"
#include "../core/settings.hpp"
#include "cuda/api.hpp"
#include "../core/tensor.hpp"

namespace nabla {

// X-macro lists: one row per elementwise op. Each row names the enum value; the functor with
// the math lives in ops/functors.hpp and is shared by the CPU and CUDA kernels.
// Unary ops defined for every dtype, ops with parameters, and float-only ops (int inputs are
// promoted to float32 by the op layer).
#define NABLA_UNARY_ANY_OPS(X) X(Neg) X(Abs) X(Sign) X(Square) X(Relu) X(Floor) X(Ceil) X(Round)
#define NABLA_UNARY_PARAM_OPS(X) X(LeakyRelu) X(Clamp)
#define NABLA_UNARY_FLOAT_OPS(X) \
  X(Exp) X(Log) X(Log1p) X(Expm1) X(Sqrt) X(Rsqrt) X(Reciprocal) X(Sin) X(Cos) X(Tanh) X(Sigmoid) \
  X(Gelu) X(GeluTanh) X(Silu) X(Erf)
#define NABLA_UNARY_OPS(X) NABLA_UNARY_ANY_OPS(X) NABLA_UNARY_PARAM_OPS(X) NABLA_UNARY_FLOAT_OPS(X)

#define NABLA_BINARY_OPS(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Maximum) X(Minimum) \
  X(LogicalAnd) X(LogicalOr) X(Eq) X(Ne) X(Lt) X(Le) X(Gt) X(Ge)

#define NABLA_ENUM_ROW(name) name,
enum class UnaryOp : uint8_t { NABLA_UNARY_OPS(NABLA_ENUM_ROW) };
enum class BinaryOp : uint8_t { NABLA_BINARY_OPS(NABLA_ENUM_ROW) };
#undef NABLA_ENUM_ROW

// The unary ops that only make sense on floating point (int inputs are promoted to float32).
constexpr bool is_float_unary(UnaryOp op) { return op >= UnaryOp::Exp && op <= UnaryOp::Erf; }
// The binary ops whose result is bool whatever the input dtype.
constexpr bool is_comparison(BinaryOp op) { return op >= BinaryOp::LogicalAnd; }

struct UnaryParams {
  double a = 0.0;  // LeakyRelu: negative slope; Clamp: min
  double b = 0.0;  // Clamp: max
};

enum class ReduceOp : uint8_t { Sum, Mean, Prod, Max, Min };
enum class ArgReduceOp : uint8_t { ArgMax, ArgMin };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Storage allocate(size_t nbytes, Device device) = 0;
  // dst = src; src broadcastable to dst's shape; dtypes may differ; one side may live on the CPU.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, const Scalar& value) = 0;
  // out (contiguous, 1-D): out[i] = start + i * step
  virtual void arange(const Tensor& out, double start, double step) = 0;
  // out (contiguous): out[i] = random_value(params, i), converted to out's dtype
  virtual void random(const Tensor& out, const RandomParams& params) = 0;

  // Elementwise: inputs are broadcastable to out's shape (a 0-dim input may be a CPU scalar
  // even for a device op). Unary: in has out's dtype. Binary: a and b share one dtype; out has
  // it too, or bool for comparisons.
  virtual void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& params) = 0;
  virtual void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // out = cond ? a : b (cond bool; a, b of out's dtype; all broadcastable to out)
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;

  // out has in's rank with size 1 in every reduced dim (a dim is reduced iff out has 1 and in
  // has not). Sum/Mean/Prod of integers write int64.
  virtual void reduce(ReduceOp op, const Tensor& out, const Tensor& in) = 0;
  // out (int64) has in's rank with size 1 at dim.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) = 0;
  virtual void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) = 0;

  // out[..., M, N] = a[..., M, K] @ b[..., K, N]; all three have the same batch dims (a and b
  // may carry stride-0 batch dims from broadcasting) and one dtype.
  virtual void matmul(const Tensor& out, const Tensor& a, const Tensor& b) = 0;

  // Index kernels; indices are int64 and have been range-checked by the caller only on the
  // CPU, so device backends must check (or clamp) them too.
  virtual void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  virtual void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;

  virtual void synchronize(Device) {}
};

inline Backend& cpu_backend();  // defined in backend/cpu/cpu_backend.hpp

#if defined(NABLA_WITH_CUDA)
namespace cuda {
// Defined in backend/cuda/backend.cu, the one CUDA translation unit of nabla::cuda.
Backend& backend();
}  // namespace cuda
#endif

inline Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
#if defined(NABLA_WITH_CUDA)
  return cuda::backend();
#else
  throw DeviceError("nabla: a tensor on " + device.str() +
                    " needs the CUDA backend, but this program was built without it; link the nabla::cuda "
                    "CMake target (or compile nabla's backend.cu and define NABLA_WITH_CUDA)");
#endif
}

}  // namespace nabla

// The CPU backend's kernels are instantiated for every dtype, which is heavy. Header-only use
// compiles them wherever nabla.hpp is included; with NABLA_CPU_BACKEND_COMPILED (what the CMake
// target sets) they are compiled once, in backend/cpu/cpu_backend.cpp, and headers only call it.
#if defined(NABLA_CPU_BACKEND_COMPILED)
namespace nabla {
namespace detail {
Backend& compiled_cpu_backend();  // backend/cpu/cpu_backend.cpp
}  // namespace detail
inline Backend& cpu_backend() { return detail::compiled_cpu_backend(); }
}  // namespace nabla
#endif
#if !defined(NABLA_CPU_BACKEND_COMPILED) || defined(NABLA_CPU_BACKEND_IMPLEMENTATION)
#include "cpu/cpu_backend.hpp"  // NOLINT: after the interface it implements
#endif
