// The CUDA backend: the one translation unit that nabla::cuda compiles (with nvcc, once per
// build tree). It defines nabla::cuda::backend() and the runtime API declared in api.hpp;
// headers reach it only through those functions, so user code never needs nvcc.
// Without CMake: nvcc -std=c++20 -DNABLA_WITH_CUDA -I<prefix>/include -I<prefix>/include/nabla
//                -c backend.cu, and link with -lcudart -lcublas -lcublasLt (add -DNABLA_HAS_CUDNN
//                and -lcudnn for cuDNN convolutions).

#ifndef NABLA_WITH_CUDA
#define NABLA_WITH_CUDA 1
#endif

#include <climits>

// Every Tensor member the kernels' launchers call is defined somewhere in the op headers, so the
// TU includes them all first (compiled-backend mode: no CPU kernel is parsed here).
#include <nabla/nabla.hpp>

// The primitives' kernels, then each fused op's (every kernels/*.cuh of a fused op ends by
// filling that op's CUDA slots: see backend/kernel_table.hpp).
#include <kernels/amp.cuh>
#include <kernels/attention.cuh>
#include <kernels/elementwise.cuh>
#include <kernels/index.cuh>
#include <kernels/matmul.cuh>
#include <kernels/reduce.cuh>
#include <kernels/sort.cuh>
#include <kernels/conv.cuh>
#include <kernels/linear.cuh>
#include <kernels/norm.cuh>
#include <kernels/optim.cuh>
#include <kernels/pool.cuh>
#include <nabla/backend/op_dispatch.hpp>

namespace nabla {
namespace cuda {
namespace {

class CudaBackend final : public Backend {
 public:
  Storage allocate(size_t nbytes, Device device) override { return detail::allocate(nbytes, device.index); }

  void copy(const Tensor& dst, const Tensor& src) override {
    NoGradGuard no_grad;
    if (dst.numel() == 0) return;
    if (dst.is_cuda() && src.is_cuda() && dst.device() == src.device()) {
      detail::DeviceGuard g(dst.device().index);
      launch_copy(dst, src);
    } else if (dst.is_cuda() && src.is_cuda()) {  // across GPUs: through the host (rare)
      copy(dst, src.to(Device::cpu()));
    } else if (dst.is_cuda()) {
      to_device(dst, src);
    } else {
      to_host(dst, src);
    }
  }

  void fill(const Tensor& dst, const Scalar& value) override {
    detail::DeviceGuard g(dst.device().index);
    launch_fill(dst, value);
  }
  void arange(const Tensor& out, double start, double step) override {
    detail::DeviceGuard g(out.device().index);
    launch_arange(out, start, step);
  }
  void random(const Tensor& out, const RandomParams& params) override {
    detail::DeviceGuard g(out.device().index);
    launch_random(out, params);
  }

  void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& p) override {
    detail::DeviceGuard g(out.device().index);
    visit_unary(op, p, out.dtype(), [&](auto f, auto tag) { launch_unary<typename decltype(tag)::type>(out, in, f); });
  }

  void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    visit_binary(op, a.dtype(), [&](auto f, auto tag, auto out_tag) {
      launch_binary<typename decltype(tag)::type, typename decltype(out_tag)::type>(out, a, b, f);
    });
  }

  void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    dispatch_all(out.dtype(), "where", [&](auto tag) { launch_where<typename decltype(tag)::type>(out, cond, a, b); });
  }

  void reduce(ReduceOp op, const Tensor& out, const Tensor& in) override {
    detail::DeviceGuard g(out.device().index);
    launch_reduce(op, out, in);
  }
  void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) override {
    detail::DeviceGuard g(out.device().index);
    launch_arg_reduce(op == ArgReduceOp::ArgMax, out, in, dim);
  }
  void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) override {
    detail::DeviceGuard g(out.device().index);
    launch_softmax(out, in, dim, log);
  }
  void cumsum(const Tensor& out, const Tensor& in, int64_t dim, bool reverse) override {
    detail::DeviceGuard g(out.device().index);
    launch_cumsum(out, in, dim, reverse);
  }
  void sort(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, bool descending) override {
    detail::DeviceGuard g(in.device().index);
    launch_sort(values, indices, in, dim, in.size(dim), descending);
  }
  void topk(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, int64_t k, bool largest) override {
    detail::DeviceGuard g(in.device().index);
    launch_sort(values, indices, in, dim, k, largest);
  }
  void searchsorted(const Tensor& out, const Tensor& sorted, const Tensor& values, bool right) override {
    detail::DeviceGuard g(out.device().index);
    launch_searchsorted(out, sorted, values, right);
  }
  void matmul(const Tensor& out, const Tensor& a, const Tensor& b) override {
    detail::DeviceGuard g(out.device().index);
    launch_matmul(out, a, b);
  }

  void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    detail::DeviceGuard g(out.device().index);
    launch_gather_like("index_select", out, layout::along_dim_base(in, out.sizes(), dim),
                       layout::index_along(index, out.sizes(), dim), dim, in.size(dim), in.stride(dim));
  }
  void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) override {
    detail::DeviceGuard g(out.device().index);
    launch_gather_like("gather", out, layout::along_dim_base(in, index.sizes(), dim), index, dim, in.size(dim),
                       in.stride(dim));
  }
  void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    detail::DeviceGuard g(self.device().index);
    launch_scatter_add("scatter_add", self, dim, index, src);
  }
  void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) override {
    detail::DeviceGuard g(self.device().index);
    launch_scatter_add("index_add", self, dim, layout::index_along(index, src.sizes(), dim), src);
  }
  void check_index_range(const Tensor& index, int64_t size, const char* op, int64_t dim) override {
    detail::DeviceGuard g(index.device().index);
    launch_index_range_check(index, size, op, dim);
  }

  // Every synchronisation also reports a bad index that a kernel recorded since the last one.
  void synchronize(Device d) override { detail::deferred_index_errors(d.index).synchronize_and_check(); }

 private:
  // host -> device: convert and densify on the host, copy through the pinned ring (asynchronous:
  // the host bytes are in pinned memory when this returns), then broadcast on the device
  static void to_device(const Tensor& dst, const Tensor& src) {
    const int dev = dst.device().index;
    detail::DeviceGuard g(dev);
    Tensor host = ::nabla::detail::cast(src, dst.dtype()).contiguous();
    const bool direct = dst.is_contiguous() && dst.sizes() == src.sizes();
    Tensor target = direct ? dst : empty(src.sizes(), dst.options());
    detail::pinned_ring(dev).copy_to_device(target.data_ptr(), host.data_ptr(), host.nbytes(), detail::stream(dev));
    if (!direct) launch_copy(dst, target);
  }

  // device -> host: convert and densify on the device, one memcpy, synchronise
  static void to_host(const Tensor& dst, const Tensor& src) {
    const int dev = src.device().index;
    detail::DeviceGuard g(dev);
    Tensor dense = src;
    if (src.dtype() != dst.dtype() || !src.is_contiguous()) {
      dense = empty(src.sizes(), TensorOptions(dst.dtype()).device(src.device()));
      launch_copy(dense, src);
    }
    const bool direct = dst.is_contiguous() && dst.sizes() == src.sizes();
    Tensor host = direct ? dst : empty(src.sizes(), dst.dtype());
    NABLA_CUDA_CHECK(cudaMemcpyAsync(host.data_ptr(), dense.data_ptr(), dense.nbytes(), cudaMemcpyDeviceToHost,
                                     detail::stream(dev)));
    detail::deferred_index_errors(dev).synchronize_and_check();
    if (!direct) cpu_backend().copy(dst, host);  // the conversion and layout happen on the host
  }
};

}  // namespace

Backend& backend() {
  NABLA_CHECK(is_available(), DeviceError,
              "cuda: a CUDA tensor was requested but no CUDA device is available (no driver or no GPU)");
  static CudaBackend instance;
  return instance;
}

bool is_available() { return detail::probe_device_count() > 0; }
int device_count() { return detail::probe_device_count(); }

void synchronize(int device) {
  if (!is_available()) return;
  if (device < 0) NABLA_CUDA_CHECK(cudaGetDevice(&device));
  backend().synchronize(Device::cuda(device));
}

MemoryStats memory_stats(int device) {
  if (!is_available()) return MemoryStats{};
  auto& s = detail::device_state(device);
  MemoryStats m = s.memory.snapshot();
  uint64_t reserved = 0;
  NABLA_CUDA_CHECK(cudaMemPoolGetAttribute(s.pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
  m.reserved = static_cast<size_t>(reserved);
  return m;
}

void reset_peak_memory_stats(int device) {
  if (!is_available()) return;
  detail::device_state(device).memory.reset_peak();
}

void set_memory_limit(size_t bytes, int device) {
  // device_state names the device in a DeviceError when it does not exist (or there is no GPU)
  detail::device_state(device).memory.limit.store(bytes, std::memory_order_relaxed);
}

size_t get_memory_limit(int device) {
  if (!is_available()) return 0;
  return detail::device_state(device).memory.limit.load(std::memory_order_relaxed);
}

void empty_cache(int device) {
  if (!is_available()) return;
  auto& s = detail::device_state(device);
  NABLA_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  NABLA_CUDA_CHECK(cudaMemPoolTrimTo(s.pool, 0));
}

void* current_stream(int device) {
  if (device < 0) NABLA_CUDA_CHECK(cudaGetDevice(&device));
  return static_cast<void*>(detail::stream(device));  // names the device in a DeviceError when it does not exist
}

FusedStats fused_stats() {
  const auto& c = detail::fused_counters();
  FusedStats s;
  s.conv_cudnn = c.conv_cudnn.load(std::memory_order_relaxed);
  s.conv_declined = c.conv_declined.load(std::memory_order_relaxed);
  s.linear_cublaslt = c.linear_cublaslt.load(std::memory_order_relaxed);
  s.linear_declined = c.linear_declined.load(std::memory_order_relaxed);
  for (int k = 0; k < 3; ++k) s.last_conv_algo[k] = c.last_conv_algo[k].load(std::memory_order_relaxed);
  return s;
}

void reset_fused_stats() {
  auto& c = detail::fused_counters();
  for (auto* counter : {&c.conv_cudnn, &c.conv_declined, &c.linear_cublaslt, &c.linear_declined})
    counter->store(0, std::memory_order_relaxed);
  for (auto& algo : c.last_conv_algo) algo.store(-1, std::memory_order_relaxed);
}

}  // namespace cuda
}  // namespace nabla
