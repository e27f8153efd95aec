#pragma once
// Maps a run-time op code and dtype to the functor and element type that implement it, once
// for every backend: a backend passes a callable that launches its kernel for (functor, type).
// Float-only ops are dispatched over floating dtypes only, so integer kernels are never built.

#include <type_traits>
#include <utility>

#include "../core/dtype.hpp"
#include "functors.hpp"
#include "op_codes.hpp"

namespace nabla {

// launch(functor, type_tag<T>)
template <class Launch>
void visit_unary(UnaryOp op, const UnaryParams& p, DType dt, Launch&& launch) {
  auto any = [&](auto f) { dispatch_all(dt, "unary", [&](auto tag) { launch(f, tag); }); };
  auto floating = [&](auto f) { dispatch_floating(dt, "unary", [&](auto tag) { launch(f, tag); }); };
  switch (op) {
#define NABLA_ANY(name) \
  case UnaryOp::name: return any(fn::name{});
#define NABLA_FLOAT(name) \
  case UnaryOp::name: return floating(fn::name{});
    NABLA_UNARY_ANY_OPS(NABLA_ANY)
    NABLA_UNARY_FLOAT_OPS(NABLA_FLOAT)
#undef NABLA_ANY
#undef NABLA_FLOAT
    case UnaryOp::LeakyRelu: return any(fn::LeakyRelu{p.a});
    case UnaryOp::Clamp: return any(fn::Clamp{p.a, p.b});
  }
}

// launch(functor, type_tag<T>, type_tag<Out>): Out is bool for comparisons, T otherwise.
template <class Launch>
void visit_binary(BinaryOp op, DType dt, Launch&& launch) {
  auto run = [&](auto f) {
    dispatch_all(dt, "binary", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using R = decltype(f(std::declval<compute_t<T>>(), std::declval<compute_t<T>>()));
      if constexpr (std::is_same_v<R, bool>) launch(f, tag, type_tag<bool>{});
      else launch(f, tag, tag);
    });
  };
  switch (op) {
#define NABLA_CASE(name) \
  case BinaryOp::name: return run(fn::name{});
    NABLA_BINARY_OPS(NABLA_CASE)
#undef NABLA_CASE
  }
}

}  // namespace nabla
