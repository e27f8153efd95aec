#pragma once
// CUDA index kernels: index_select, gather, scatter_add, index_add, and a range check. Indices
// are checked on the device; the first bad one is recorded in a per-device record that the host
// reads at the next synchronisation (cuda::synchronize, a copy to the host, item()), which then
// raises IndexError naming the op, the index and the size. No index op synchronises by itself:
// a training loop (embedding, nll_loss, max-pool backward) must not pay a host round trip per op.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

// The first out-of-range index that a kernel met on one device; `set` becomes 1 when recorded.
struct BadIndexRecord {
  int set;
  int op;  // see detail::bad_index_op_id
  long long index, size, dim;
};

// What a kernel needs to record a bad index; passed by value.
struct IndexCheck {
  BadIndexRecord* record;
  int op;
  int64_t size, dim;
};

// True if 0 <= ix < size; otherwise records ix, unless a bad index is recorded already.
__device__ __forceinline__ bool index_in_range(int64_t ix, const IndexCheck& c) {
  if (ix >= 0 && ix < c.size) return true;
  if (atomicCAS(&c.record->set, 0, 1) == 0) {
    c.record->op = c.op;
    c.record->index = ix;
    c.record->size = c.size;
    c.record->dim = c.dim;
  }
  return false;
}

namespace detail {

// Op names by number, so that the device record can say which op met the bad index.
struct BadIndexOps {
  std::mutex mu;
  std::vector<std::string> names;
};
inline BadIndexOps& bad_index_ops() {
  static auto* ops = new BadIndexOps;  // never destroyed: kernels may still be in flight at exit
  return *ops;
}
inline int bad_index_op_id(const char* op) {
  BadIndexOps& o = bad_index_ops();
  std::lock_guard<std::mutex> lock(o.mu);
  for (size_t i = 0; i < o.names.size(); ++i)
    if (o.names[i] == op) return static_cast<int>(i);
  o.names.emplace_back(op);
  return static_cast<int>(o.names.size() - 1);
}
inline std::string bad_index_op_name(int id) {
  BadIndexOps& o = bad_index_ops();
  std::lock_guard<std::mutex> lock(o.mu);
  return id >= 0 && static_cast<size_t>(id) < o.names.size() ? o.names[static_cast<size_t>(id)] : "an index op";
}

// One device's record: in device memory, written by kernels, copied to pinned host memory only
// at a synchronisation that happens anyway, and only when an index kernel ran since the last.
class DeferredIndexErrors {
 public:
  explicit DeferredIndexErrors(int device) : device_(device) {
    DeviceGuard guard(device);
    NABLA_CUDA_CHECK(cudaMalloc(&dev_, sizeof(BadIndexRecord)));
    NABLA_CUDA_CHECK(cudaMemsetAsync(dev_, 0, sizeof(BadIndexRecord), stream(device)));
    if (cudaMallocHost(&host_, sizeof(BadIndexRecord)) != cudaSuccess) {  // e.g. a low locked-memory limit
      (void)cudaGetLastError();
      host_ = nullptr;
      fallback_ = std::make_unique<BadIndexRecord>();
    }
  }
  DeferredIndexErrors(const DeferredIndexErrors&) = delete;
  DeferredIndexErrors& operator=(const DeferredIndexErrors&) = delete;
  // never freed: the driver may be gone at exit (as the handles)

  // For a launch that checks indices into a dimension `dim` of size `size`.
  IndexCheck arm(const char* op, int64_t size, int64_t dim) {
    pending_.store(true, std::memory_order_relaxed);
    return {dev_, bad_index_op_id(op), size, dim};
  }

  // Synchronises the device's stream and raises IndexError for a bad index recorded since the
  // last check (then clears it, so the process goes on working).
  void synchronize_and_check() {
    DeviceGuard guard(device_);
    const cudaStream_t s = stream(device_);
    const bool look = pending_.exchange(false, std::memory_order_relaxed);
    BadIndexRecord* host = host_ ? host_ : fallback_.get();
    if (look) NABLA_CUDA_CHECK(cudaMemcpyAsync(host, dev_, sizeof(BadIndexRecord), cudaMemcpyDeviceToHost, s));
    NABLA_CUDA_CHECK(cudaStreamSynchronize(s));
    if (!look || !host->set) return;
    const BadIndexRecord r = *host;
    host->set = 0;
    NABLA_CUDA_CHECK(cudaMemsetAsync(dev_, 0, sizeof(BadIndexRecord), s));
    throw IndexError(::nabla::detail::cat("nabla::", bad_index_op_name(r.op), ": index ", r.index,
                                          " is out of bounds for dimension ", r.dim, " with size ", r.size,
                                          " (valid: [0, ", r.size, "); found on cuda:", device_,
                                          ", reported at the next synchronisation)"));
  }

 private:
  int device_;
  BadIndexRecord* dev_ = nullptr;
  BadIndexRecord* host_ = nullptr;
  std::unique_ptr<BadIndexRecord> fallback_;  // pageable, when pinned memory cannot be had
  std::atomic<bool> pending_{false};
};

inline DeferredIndexErrors& deferred_index_errors(int device) {
  static std::mutex mu;
  static auto* all = new std::vector<std::unique_ptr<DeferredIndexErrors>>;
  std::lock_guard<std::mutex> lock(mu);
  if (all->empty()) all->resize(static_cast<size_t>(probe_device_count()));
  auto& slot = all->at(static_cast<size_t>(device));
  if (!slot) slot = std::make_unique<DeferredIndexErrors>(device);
  return *slot;
}

}  // namespace detail

template <class T>
__global__ void gather_like_kernel(int64_t n, StridedArgs<3> a, int64_t stride_dim, IndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    a.offsets(i, off);
    int64_t ix = a.template load<int64_t>(2, off[2]);
    if (!index_in_range(ix, check)) continue;
    *a.template ptr<T>(0, off[0]) = a.template load<T>(1, off[1] + ix * stride_dim);
  }
}

// operand 0: self viewed with stride 0 along dim; 1: indices; 2: src
template <class T>
__global__ void scatter_add_kernel(int64_t n, StridedArgs<3> a, int64_t stride_dim, IndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    a.offsets(i, off);
    int64_t ix = a.template load<int64_t>(1, off[1]);
    if (!index_in_range(ix, check)) continue;
    atomic_add(a.template ptr<T>(0, off[0] + ix * stride_dim), a.template load<T>(2, off[2]));
  }
}

// Only checks: records the first value of a dense int64 tensor outside [0, size).
__global__ void index_range_kernel(int64_t n, const int64_t* idx, IndexCheck check) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    if (!index_in_range(idx[i], check)) return;
}

inline void launch_gather_like(const char* op, const Tensor& out, const Tensor& base, const Tensor& idx, int64_t dim,
                               int64_t size, int64_t stride_elems) {
  const int dev = out.device().index;
  const IndexCheck check = detail::deferred_index_errors(dev).arm(op, size, dim);
  auto a = make_args<3>({&out, &base, &idx}, out.sizes(), op);
  dispatch_all(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_like_kernel<T><<<grid_for(out.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
        out.numel(), a, stride_elems * int64_t(sizeof(T)), check);
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

inline void launch_scatter_add(const char* op, const Tensor& self, int64_t dim, const Tensor& index_view, const Tensor& src) {
  const int dev = self.device().index;
  Tensor base = layout::along_dim_base(self, index_view.sizes(), dim);
  auto a = make_args<3>({&base, &index_view, &src}, index_view.sizes(), op);
  DType t = self.dtype();
  NABLA_CHECK(t != kUInt8 && t != kBool, DTypeError, op, ": not supported for ", dtype_name(t), " tensors on CUDA");
  const IndexCheck check = detail::deferred_index_errors(dev).arm(op, self.size(dim), dim);
  dispatch_all(t, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, uint8_t> && !std::is_same_v<T, bool>)
      scatter_add_kernel<T><<<grid_for(index_view.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
          index_view.numel(), a, self.stride(dim) * int64_t(sizeof(T)), check);
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

// Backend::check_index_range on CUDA: one launch, no synchronisation.
inline void launch_index_range_check(const Tensor& index, int64_t size, const char* op, int64_t dim) {
  if (index.numel() == 0) return;
  const int dev = index.device().index;
  Tensor idx = index.dtype() == kInt64 && index.is_contiguous() ? index : index.to(kInt64).contiguous();
  const IndexCheck check = detail::deferred_index_errors(dev).arm(op, size, dim);
  index_range_kernel<<<grid_for(idx.numel(), dev), kThreads, 0, detail::stream(dev)>>>(
      idx.numel(), static_cast<const int64_t*>(idx.data_ptr()), check);
  NABLA_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace nabla
