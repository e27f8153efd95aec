// The one translation unit that compiles the CPU backend's kernels when nabla is used through
// CMake (NABLA_CPU_BACKEND_COMPILED, set by the nabla::nabla target): the primitives and every
// fused op's CPU kernels (backend/cpu/kernels.hpp, which fill their ops' slots at start-up).
// Every other file reaches the primitives through nabla::detail::compiled_cpu_backend().
// Without CMake nabla stays header-only and this file is not needed (do not mix the two modes
// in one program).
#ifndef NABLA_CPU_BACKEND_COMPILED
#define NABLA_CPU_BACKEND_COMPILED 1
#endif
#include <nabla/nabla.hpp>
#include <nabla/backend/cpu/kernels.hpp>

namespace nabla {
namespace detail {
Backend& compiled_cpu_backend() {
  static cpu::CpuBackend instance;
  return instance;
}
}  // namespace detail
}  // namespace nabla
