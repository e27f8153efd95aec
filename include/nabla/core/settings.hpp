#pragma once
// Process-wide numeric settings shared by the backends.

#include <atomic>
#include <string>

#include "error.hpp"

namespace nabla {

enum class MatmulPrecision : int { Highest = 0, High = 1, Medium = 2 };

namespace detail {
inline std::atomic<int>& matmul_precision_ref() {
  static std::atomic<int> p{0};
  return p;
}
}  // namespace detail

// Like torch.set_float32_matmul_precision: "highest" (default) keeps float32 matmuls exact
// float32; "high" and "medium" let the CUDA backend use TF32 tensor cores for them.
inline void set_float32_matmul_precision(const std::string& precision) {
  int p = precision == "highest" ? 0 : precision == "high" ? 1 : precision == "medium" ? 2 : -1;
  NABLA_CHECK(p >= 0, ValueError, "set_float32_matmul_precision: expected 'highest', 'high' or 'medium', got '",
              precision, "'");
  detail::matmul_precision_ref().store(p);
}
inline MatmulPrecision float32_matmul_precision() {
  return static_cast<MatmulPrecision>(detail::matmul_precision_ref().load());
}

}  // namespace nabla
