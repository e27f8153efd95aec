// The one translation unit that instantiates the CPU backend's kernels when nabla is used
// through CMake (NABLA_CPU_BACKEND_COMPILED, set by the nabla::nabla target); every other file
// reaches it through nabla::detail::compiled_cpu_backend(). Without CMake nabla stays
// header-only and this file is not needed (do not mix the two modes in one program).
#define NABLA_CPU_BACKEND_COMPILED 1
#define NABLA_CPU_BACKEND_IMPLEMENTATION 1
#include <nabla/nabla.hpp>

namespace nabla {
namespace detail {
Backend& compiled_cpu_backend() {
  static cpu::CpuBackend instance;
  return instance;
}
}  // namespace detail
}  // namespace nabla
