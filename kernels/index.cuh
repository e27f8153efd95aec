#pragma once
// CUDA index kernels: index_select, gather, scatter_add, index_add. Indices are checked on the
// device; the first bad one is recorded in a flag that the host reads after the launch, so a
// bad index raises IndexError like on the CPU (at the price of one synchronisation).

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "elementwise.cuh"

namespace nabla {
namespace cuda {

// Atomic add for every dtype the scatter kernels take. 16-bit types use the native
// atomicAdd(__half*) / atomicAdd(__nv_bfloat16*), which touch only their own 2 bytes (a
// compare-and-swap on the enclosing 4-byte word read past the end of a tensor with an odd
// number of elements).
template <class T>
__device__ void atomic_add(T* addr, T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int32_t>) {
    atomicAdd(addr, v);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    atomicAdd(reinterpret_cast<unsigned long long*>(addr), static_cast<unsigned long long>(v));
  } else if constexpr (std::is_same_v<T, Half>) {
    atomicAdd(reinterpret_cast<__half*>(addr), __ushort_as_half(v.bits));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(addr), __ushort_as_bfloat16(v.bits));
  }
}

// True if 0 <= ix < size; otherwise records ix as the first bad index (if none yet).
__device__ __forceinline__ bool index_in_range(int64_t ix, int64_t size, int64_t* bad) {
  if (ix >= 0 && ix < size) return true;
  atomicCAS(reinterpret_cast<unsigned long long*>(bad), static_cast<unsigned long long>(INT64_MIN),
            static_cast<unsigned long long>(ix));
  return false;
}

template <class T>
__global__ void gather_like_kernel(int64_t n, StridedArgs<3> a, int64_t stride_dim, int64_t size, int64_t* bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    a.offsets(i, off);
    int64_t ix = a.template load<int64_t>(2, off[2]);
    if (!index_in_range(ix, size, bad)) continue;
    *a.template ptr<T>(0, off[0]) = a.template load<T>(1, off[1] + ix * stride_dim);
  }
}

// operand 0: self viewed with stride 0 along dim; 1: indices; 2: src
template <class T>
__global__ void scatter_add_kernel(int64_t n, StridedArgs<3> a, int64_t stride_dim, int64_t size, int64_t* bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    a.offsets(i, off);
    int64_t ix = a.template load<int64_t>(1, off[1]);
    if (!index_in_range(ix, size, bad)) continue;
    atomic_add(a.template ptr<T>(0, off[0] + ix * stride_dim), a.template load<T>(2, off[2]));
  }
}

// A device flag for the first out-of-range index, read back after the kernel.
class BadIndexFlag {
 public:
  explicit BadIndexFlag(Device d) : flag_(full({}, INT64_MIN, TensorOptions(kInt64).device(d))) {}
  int64_t* ptr() const { return static_cast<int64_t*>(flag_.data_ptr()); }
  void check(const char* op, int64_t size, int64_t dim) const {
    int64_t v = flag_.item<int64_t>();  // synchronises
    if (v != INT64_MIN) cpu::throw_bad_index(op, v, size, dim);
  }

 private:
  Tensor flag_;
};

inline void launch_gather_like(const char* op, const Tensor& out, const Tensor& base, const Tensor& idx, int64_t dim,
                               int64_t size, int64_t stride_elems) {
  const int dev = out.device().index;
  BadIndexFlag flag(out.device());
  auto a = make_args<3>({&out, &base, &idx}, out.sizes(), op);
  dispatch_all(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_like_kernel<T><<<grid_for(out.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
        out.numel(), a, stride_elems * int64_t(sizeof(T)), size, flag.ptr());
  });
  NABLA_CUDA_LAUNCH_CHECK();
  flag.check(op, size, dim);
}

inline void launch_scatter_add(const char* op, const Tensor& self, int64_t dim, const Tensor& index_view, const Tensor& src) {
  const int dev = self.device().index;
  BadIndexFlag flag(self.device());
  Tensor base = cpu::along_dim_base(self, index_view.sizes(), dim);
  auto a = make_args<3>({&base, &index_view, &src}, index_view.sizes(), op);
  DType t = self.dtype();
  NABLA_CHECK(t != kUInt8 && t != kBool, DTypeError, op, ": not supported for ", dtype_name(t), " tensors on CUDA");
  dispatch_all(t, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, uint8_t> && !std::is_same_v<T, bool>)
      scatter_add_kernel<T><<<grid_for(index_view.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
          index_view.numel(), a, self.stride(dim) * int64_t(sizeof(T)), self.size(dim), flag.ptr());
  });
  NABLA_CUDA_LAUNCH_CHECK();
  flag.check(op, self.size(dim), dim);
}

}  // namespace cuda
}  // namespace nabla
