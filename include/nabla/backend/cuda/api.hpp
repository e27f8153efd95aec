#pragma once
// The CUDA runtime API that user code sees (host only, compiles with any C++ compiler):
// device discovery, synchronisation, memory statistics and which fused library paths ran. With
// nabla::cuda linked these are defined in backend.cu; without it they report "no GPU" instead of
// failing to link.

#include <cstddef>
#include <cstdint>

#include "../../core/storage.hpp"  // MemoryStats

namespace nabla {
namespace cuda {

// in_use, peak, reserved (here: what the pool holds from the driver), allocations, limit,
// peak_tag: see core/storage.hpp. On CUDA the bytes counted are the bytes requested.
using MemoryStats = ::nabla::MemoryStats;

// Counts since the start (or reset_fused_stats()), all devices together. "declined" counts the
// calls that reached cuDNN / cuBLASLt and were handed back to the composite (no algorithm took
// the problem, no workspace fitted, an operand below 16-byte alignment); a call the hook turns
// away before that (wrong dtype, layout, device) is in neither count. NABLA_LOG=1 prints, once
// per problem, why cuDNN declined it.
struct FusedStats {
  uint64_t conv_cudnn = 0, conv_declined = 0, linear_cublaslt = 0, linear_declined = 0;
  // forward, backward data, backward filter: the cuDNN algorithm enum value
  // (cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t) that last ran, -1 for none yet
  int last_conv_algo[3] = {-1, -1, -1};
};

#if defined(NABLA_WITH_CUDA)
bool is_available();
int device_count();
void synchronize(int device = -1);  // -1: the current device
MemoryStats memory_stats(int device = 0);
void reset_peak_memory_stats(int device = 0);
void empty_cache(int device = 0);  // returns cached blocks to the driver
// A bound on the bytes in use on `device` (0: none): an allocation past it throws
// nabla::OutOfMemory. Setting one on a device that does not exist throws nabla::DeviceError.
void set_memory_limit(size_t bytes, int device = 0);
size_t get_memory_limit(int device = 0);
FusedStats fused_stats();
void reset_fused_stats();
// The stream nabla runs `device`'s work on (a cudaStream_t, as void* so that this header needs no
// CUDA include): for code that interleaves its own CUDA work with nabla's, as
// at::cuda::getCurrentCUDAStream does for LibTorch. nabla::distributed's NCCL transport waits on it.
void* current_stream(int device = -1);  // -1: the current device
#else
inline bool is_available() { return false; }
inline int device_count() { return 0; }
inline void synchronize(int = -1) {}
inline MemoryStats memory_stats(int = 0) { return {}; }
inline void reset_peak_memory_stats(int = 0) {}
inline void empty_cache(int = 0) {}
inline void set_memory_limit(size_t, int device = 0) {
  throw DeviceError(::nabla::detail::cat("nabla::cuda::set_memory_limit: cuda:", device,
                                         " does not exist (this program does not link nabla::cuda)"));
}
inline size_t get_memory_limit(int = 0) { return 0; }
inline FusedStats fused_stats() { return {}; }
inline void reset_fused_stats() {}
inline void* current_stream(int device = -1) {
  throw DeviceError(::nabla::detail::cat("nabla::cuda::current_stream: cuda:", device,
                                         " does not exist (this program does not link nabla::cuda)"));
}
#endif

}  // namespace cuda
}  // namespace nabla
