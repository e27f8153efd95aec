#pragma once
// Shared device helpers for nabla's CUDA kernels: StridedArgs (the coalesced strided layout
// that layout::make_loop computes on the host, plus by-value scalars for CPU 0-dim operands),
// launch sizing and block reductions.

#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include <nabla/autograd/grad_mode.hpp>
#include <nabla/backend/backend.hpp>
#include <nabla/backend/functors.hpp>
#include <nabla/backend/layout.hpp>  // the host-side strided layout, shared with the CPU loops
#include <nabla/backend/op_dispatch.hpp>
#include <nabla/backend/cuda/runtime.hpp>
#include <nabla/core/tensor.hpp>
#include <nabla/ops/common.hpp>  // empty(), cast(): the launchers allocate their scratch tensors

namespace nabla {
namespace cuda {

constexpr int kMaxDims = 12;
constexpr int kThreads = 256;

template <int N>
struct StridedArgs {
  int ndim;
  bool contiguous;  // one merged dim, every operand dense (or a scalar): index directly
  bool index32;     // numel and every byte offset fit in int32: cheaper divides in offsets()
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];  // bytes
  char* base[N];                 // null for a by-value scalar operand
  alignas(8) unsigned char scalar[N][8];

  __device__ __forceinline__ void offsets(int64_t i, int64_t* off) const {
    if (index32) {  // uniform branch: a 32-bit divide is a handful of instructions, a 64-bit one ~70
      uint32_t j = static_cast<uint32_t>(i);
      int32_t o[N];
#pragma unroll
      for (int k = 0; k < N; ++k) o[k] = 0;
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t s = static_cast<uint32_t>(sizes[d]);
        const uint32_t q = j / s;
        const int32_t idx = static_cast<int32_t>(j - q * s);
        j = q;
#pragma unroll
        for (int k = 0; k < N; ++k) o[k] += idx * static_cast<int32_t>(strides[k][d]);
      }
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = o[k];
      return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t idx = i % sizes[d];
      i /= sizes[d];
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
  }
  template <class T>
  __device__ __forceinline__ T load(int k, int64_t off) const {
    return base[k] ? *reinterpret_cast<const T*>(base[k] + off) : *reinterpret_cast<const T*>(scalar[k]);
  }
  template <class T>
  __device__ __forceinline__ T* ptr(int k, int64_t off) const {
    return reinterpret_cast<T*>(base[k] + off);
  }
  // Host side, dense layouts only: skip the first n elements (a vector kernel has done them).
  void drop_front(int64_t n) {
    for (int k = 0; k < N; ++k)
      if (base[k]) base[k] += n * strides[k][0];
    sizes[0] -= n;
  }
};

// Builds the kernel arguments for operands broadcast to `shape` (operand 0 is written).
template <int N>
StridedArgs<N> make_args(const std::array<const Tensor*, N>& ops, const Shape& shape, const char* op) {
  auto L = layout::make_loop<N>(ops, shape);
  NABLA_CHECK(static_cast<int>(L.shape.size()) <= kMaxDims, ShapeError, op, ": the CUDA backend handles at most ",
              kMaxDims, " non-mergeable dims, got ", L.shape.size(), " for shape ", shape_str(shape));
  StridedArgs<N> a{};
  a.ndim = static_cast<int>(L.shape.size());
  for (int d = 0; d < a.ndim; ++d) a.sizes[d] = L.shape[d];
  a.contiguous = a.ndim == 1;
  for (int k = 0; k < N; ++k) {
    for (int d = 0; d < a.ndim; ++d) a.strides[k][d] = L.strides[k][d];
    if (ops[k]->is_cpu()) {  // a 0-dim CPU scalar: pass its value
      a.base[k] = nullptr;
      std::memcpy(a.scalar[k], ops[k]->data_ptr(), ops[k]->element_size());
      for (int d = 0; d < a.ndim; ++d) a.strides[k][d] = 0;
    } else {
      a.base[k] = L.base[k];
      if (a.ndim != 1 || L.strides[k][0] != static_cast<int64_t>(ops[k]->element_size())) a.contiguous = false;
    }
  }
  constexpr int64_t kMax32 = INT32_MAX;
  a.index32 = L.numel <= kMax32;
  for (int k = 0; k < N; ++k) {
    int64_t reach = 16;  // the furthest byte an element access touches, with room for a 16-byte one
    for (int d = 0; d < a.ndim; ++d) reach += (a.sizes[d] - 1) * (a.strides[k][d] < 0 ? -a.strides[k][d] : a.strides[k][d]);
    if (reach > kMax32) a.index32 = false;
  }
  return a;
}

inline bool aligned_to(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

inline unsigned grid_for(int64_t n, int device) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  int64_t cap = static_cast<int64_t>(detail::device_state(device).sm_count) * 32;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Sum / max / min of one value per thread across the block; the result is valid in thread 0.
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T shared[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int off = 16; off > 0; off /= 2) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  if (warp == 0) {
    v = lane < warps ? shared[lane] : shared[0];
    for (int off = 16; off > 0; off /= 2) {
      T o = __shfl_down_sync(0xffffffffu, v, off);
      if (lane + off < warps) v = op(v, o);
    }
  }
  __syncthreads();  // shared[] is reused by the next call
  return v;
}

#define NABLA_CUDA_LAUNCH_CHECK() NABLA_CUDA_CHECK(cudaGetLastError())

}  // namespace cuda
}  // namespace nabla
