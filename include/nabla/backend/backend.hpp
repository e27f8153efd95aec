#pragma once
// The Backend interface: the primitives a device must provide. Ops do checks, shape and dtype
// rules and autograd; a backend only runs kernels on tensors that are already validated and
// allocated. Fused kernels are not here: each op binds its own (backend/kernel_table.hpp).
// The CPU backend is in backend/cpu; the CUDA one is compiled in backend/cuda/backend.cu.

#include <cstdint>

#include "../core/random.hpp"
#include "op_codes.hpp"
#include "../core/settings.hpp"
#include "cuda/api.hpp"
#include "../core/tensor.hpp"

namespace nabla {

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Storage allocate(size_t nbytes, Device device) = 0;
  // dst = src; src broadcastable to dst's shape; dtypes may differ; one side may live on the CPU.
  virtual void copy(const Tensor& dst, const Tensor& src) = 0;
  virtual void fill(const Tensor& dst, const Scalar& value) = 0;
  // out (contiguous, 1-D): out[i] = start + i * step
  virtual void arange(const Tensor& out, double start, double step) = 0;
  // out (contiguous): out[i] = random_value(params, i), converted to out's dtype
  virtual void random(const Tensor& out, const RandomParams& params) = 0;

  // Elementwise: inputs are broadcastable to out's shape (a 0-dim input may be a CPU scalar
  // even for a device op). Unary: in has out's dtype. Binary: a and b share one dtype; out has
  // it too, or bool for comparisons.
  virtual void unary(UnaryOp op, const Tensor& out, const Tensor& in, const UnaryParams& params) = 0;
  virtual void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  // out = cond ? a : b (cond bool; a, b of out's dtype; all broadcastable to out)
  virtual void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = 0;

  // out has in's rank with size 1 in every reduced dim (a dim is reduced iff out has 1 and in
  // has not). Sum/Mean/Prod of integers write int64.
  virtual void reduce(ReduceOp op, const Tensor& out, const Tensor& in) = 0;
  // out (int64) has in's rank with size 1 at dim.
  virtual void arg_reduce(ArgReduceOp op, const Tensor& out, const Tensor& in, int64_t dim) = 0;
  virtual void softmax(const Tensor& out, const Tensor& in, int64_t dim, bool log) = 0;

  // Inclusive prefix sums along dim; out and in share shape and dtype (not bool). reverse: from
  // the end (out[i] = sum of in[i:]), what cumsum's backward needs. 16-bit floats accumulate in
  // float32 or wider.
  virtual void cumsum(const Tensor& out, const Tensor& in, int64_t dim, bool reverse) = 0;

  // Order along dim, as PyTorch orders: NaN above every number, -0.0 equal to 0.0, and always
  // stable (equal values keep their input order). sort: values (in's dtype) and int64 indices
  // shaped like in. topk: the k largest (smallest) in order, ties by lower index; values and
  // indices have k at dim (0 < k <= in.size(dim)).
  virtual void sort(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, bool descending) = 0;
  virtual void topk(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, int64_t k,
                    bool largest) = 0;
  // out [R, S] (int64) = insertion points of values [R, S] in the ascending rows of sorted [R, C]:
  // how many are <= the value (right) or < it (left). All dense, sorted and values of one dtype.
  virtual void searchsorted(const Tensor& out, const Tensor& sorted, const Tensor& values, bool right) = 0;

  // out[..., M, N] = a[..., M, K] @ b[..., K, N]; all three have the same batch dims (a and b
  // may carry stride-0 batch dims from broadcasting) and one dtype.
  virtual void matmul(const Tensor& out, const Tensor& a, const Tensor& b) = 0;

  // Index kernels; indices are int64 and have been range-checked by the caller only on the
  // CPU, so device backends must check (or clamp) them too.
  virtual void index_select(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void gather(const Tensor& out, const Tensor& in, int64_t dim, const Tensor& index) = 0;
  virtual void scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  virtual void index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) = 0;
  // IndexError naming `op` and `dim` if a value of `index` (int64) is outside [0, size). The CPU
  // raises it at once; a device may raise it at its next synchronisation (CUDA does, so that a
  // training loop never waits for the check).
  virtual void check_index_range(const Tensor& index, int64_t size, const char* op, int64_t dim) = 0;

  virtual void synchronize(Device) {}
};

// The CPU backend. With NABLA_CPU_BACKEND_COMPILED (what the CMake target sets) its kernels are
// compiled once, in backend/cpu/cpu_backend.cpp; in header-only use the instance is defined
// (inline) in backend/cpu/cpu_backend.hpp, which <nabla/nabla.hpp> includes at its end.
#if defined(NABLA_CPU_BACKEND_COMPILED)
namespace detail {
Backend& compiled_cpu_backend();  // backend/cpu/cpu_backend.cpp
}  // namespace detail
inline Backend& cpu_backend() { return detail::compiled_cpu_backend(); }
#else
Backend& cpu_backend();
#endif

#if defined(NABLA_WITH_CUDA)
namespace cuda {
// Defined in backend/cuda/backend.cu, the one CUDA translation unit of nabla::cuda.
Backend& backend();
}  // namespace cuda
#endif

inline Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
#if defined(NABLA_WITH_CUDA)
  NABLA_CHECK(cuda::is_available(), DeviceError, "a tensor on ", device.str(),
              " was requested, but no CUDA device is available (no driver or no GPU) although the CUDA backend is "
              "linked");
  return cuda::backend();
#else
  throw DeviceError("nabla: a tensor on " + device.str() +
                    " needs the CUDA backend, but this program was built without it; link the nabla::cuda "
                    "CMake target (or compile nabla's backend.cu and define NABLA_WITH_CUDA)");
#endif
}

}  // namespace nabla
