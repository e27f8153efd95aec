#pragma once
// The CUDA runtime API that user code sees (host only, compiles with any C++ compiler):
// device discovery, synchronisation and memory statistics. With nabla::cuda linked these are
// defined in backend.cu; without it they report "no GPU" instead of failing to link.

#include <cstddef>
#include <cstdint>

namespace nabla {
namespace cuda {

struct MemoryStats {
  size_t in_use = 0;    // bytes held by live tensors
  size_t peak = 0;      // most bytes ever in use at once
  size_t reserved = 0;  // bytes the pool holds from the driver (in use + cached)
};

#if defined(NABLA_WITH_CUDA)
bool is_available();
int device_count();
void synchronize(int device = -1);  // -1: the current device
MemoryStats memory_stats(int device = 0);
void reset_peak_memory_stats(int device = 0);
void empty_cache(int device = 0);  // returns cached blocks to the driver
#else
inline bool is_available() { return false; }
inline int device_count() { return 0; }
inline void synchronize(int = -1) {}
inline MemoryStats memory_stats(int = 0) { return {}; }
inline void reset_peak_memory_stats(int = 0) {}
inline void empty_cache(int = 0) {}
#endif

}  // namespace cuda
}  // namespace nabla
