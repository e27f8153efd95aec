#pragma once
// The op codes the Backend interface speaks: X-macro lists of elementwise ops (one row per op;
// the math of each is a functor in backend/functors.hpp), reductions, and their parameters.

#include <cstddef>
#include <cstdint>

namespace nabla {

// X-macro lists: one row per elementwise op. Each row names the enum value; the functor with
// the math lives in backend/functors.hpp and is shared by the CPU and CUDA kernels.
// Unary ops defined for every dtype, ops with parameters, and float-only ops (int inputs are
// promoted to float32 by the op layer).
#define NABLA_UNARY_ANY_OPS(X) X(Neg) X(Abs) X(Sign) X(Square) X(Relu) X(Floor) X(Ceil) X(Round)
#define NABLA_UNARY_PARAM_OPS(X) X(LeakyRelu) X(Clamp)
#define NABLA_UNARY_FLOAT_OPS(X) \
  X(Exp) X(Log) X(Log1p) X(Expm1) X(Sqrt) X(Rsqrt) X(Reciprocal) X(Sin) X(Cos) X(Tanh) X(Sigmoid) \
  X(Gelu) X(GeluTanh) X(GeluGrad) X(GeluTanhGrad) X(Silu) X(Erf)
#define NABLA_UNARY_OPS(X) NABLA_UNARY_ANY_OPS(X) NABLA_UNARY_PARAM_OPS(X) NABLA_UNARY_FLOAT_OPS(X)

#define NABLA_BINARY_OPS(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Maximum) X(Minimum) X(ReluBackward) \
  X(LogicalAnd) X(LogicalOr) X(Eq) X(Ne) X(Lt) X(Le) X(Gt) X(Ge)

#define NABLA_ENUM_ROW(name) name,
enum class UnaryOp : uint8_t { NABLA_UNARY_OPS(NABLA_ENUM_ROW) };
enum class BinaryOp : uint8_t { NABLA_BINARY_OPS(NABLA_ENUM_ROW) };
#undef NABLA_ENUM_ROW

// The op codes' names as written above ("Relu", "GeluTanh", "Add", "Le"): what a trace records.
#define NABLA_NAME_ROW(name) #name,
inline const char* op_name(UnaryOp op) {
  static constexpr const char* names[] = {NABLA_UNARY_OPS(NABLA_NAME_ROW)};
  return names[static_cast<size_t>(op)];
}
inline const char* op_name(BinaryOp op) {
  static constexpr const char* names[] = {NABLA_BINARY_OPS(NABLA_NAME_ROW)};
  return names[static_cast<size_t>(op)];
}
#undef NABLA_NAME_ROW

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

}  // namespace nabla
