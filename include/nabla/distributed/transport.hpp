#pragma once
// What nabla::distributed's collectives and messages do with tensors: MPI datatypes and
// reduction ops per dtype, staging (a contiguous buffer where the transport reads: the CPU for
// MPI, the tensor's own device for NCCL) and copying back, and the descriptor that every rank
// exchanges before a collective, so that ranks calling different collectives or passing
// different tensors raise DistributedError instead of hanging or corrupting memory.

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "process_group.hpp"

namespace nabla {
namespace distributed {
namespace detail {

// ---- tensors <-> MPI buffers ------------------------------------------------------------
inline MPI_Datatype mpi_type(DType dt) {
  switch (dt) {
    case kFloat32: return MPI_FLOAT;
    case kFloat64: return MPI_DOUBLE;
    case kFloat16:
    case kBFloat16: return MPI_UINT16_T;
    case kInt32: return MPI_INT32_T;
    case kInt64: return MPI_INT64_T;
    case kUInt8:
    case kBool: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

inline MPI_Op mpi_op(const ProcessGroup& g, ReduceOp op, DType dt, const char* name) {
  if (dt == kBool) {  // as PyTorch's NCCL backend: SUM/MAX = or, PRODUCT/MIN = and
    NABLA_CHECK(op != ReduceOp::AVG, DTypeError, "distributed::", name, ": AVG is not defined for bool tensors");
    return op == ReduceOp::SUM || op == ReduceOp::MAX ? MPI_MAX : MPI_MIN;
  }
  if (dt == kFloat16 || dt == kBFloat16) {
    int which = op == ReduceOp::PRODUCT ? 1 : op == ReduceOp::MIN ? 2 : op == ReduceOp::MAX ? 3 : 0;
    return g.half_op(dt, which);
  }
  switch (op) {
    case ReduceOp::SUM:
    case ReduceOp::AVG: return MPI_SUM;
    case ReduceOp::PRODUCT: return MPI_PROD;
    case ReduceOp::MIN: return MPI_MIN;
    case ReduceOp::MAX: return MPI_MAX;
  }
  return MPI_SUM;
}

// Divides the n elements at p by `by` (AVG); integers truncate toward zero.
inline void divide_in_place(void* p, int64_t n, DType dt, int by) {
  auto each = [&](auto* x) {
    using T = std::remove_pointer_t<decltype(x)>;
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_integral_v<T>) x[i] = static_cast<T>(x[i] / by);
      else x[i] = T(static_cast<float>(x[i]) / static_cast<float>(by));
    }
  };
  switch (dt) {
    case kFloat32: each(static_cast<float*>(p)); break;
    case kFloat64: {
      double* x = static_cast<double*>(p);
      for (int64_t i = 0; i < n; ++i) x[i] /= by;
      break;
    }
    case kFloat16: each(static_cast<Half*>(p)); break;
    case kBFloat16: each(static_cast<BFloat16*>(p)); break;
    case kInt32: each(static_cast<int32_t*>(p)); break;
    case kInt64: each(static_cast<int64_t*>(p)); break;
    case kUInt8: each(static_cast<uint8_t*>(p)); break;
    case kBool: break;
  }
}

// Whether t's collective runs over NCCL: backend "nccl" and a CUDA tensor. Everything else goes
// over MPI, CUDA tensors staged through host memory.
inline bool via_nccl(const ProcessGroup& g, const Tensor& t) {
#if defined(NABLA_HAS_NCCL)
  return g.backend() == "nccl" && t.defined() && t.is_cuda();
#else
  (void)g, (void)t;
  return false;
#endif
}
// A contiguous tensor holding t's values where the transport reads them (t itself when it
// already is one): on t's device for NCCL (on_device), else on the CPU.
inline Tensor staged(const Tensor& t, bool on_device = false) {
  if ((on_device || t.device().is_cpu()) && t.is_contiguous()) return t;
  return on_device ? t.detach().contiguous() : t.detach().to(Device::cpu()).contiguous();
}
// What an NCCL collective on t waits for: the work queued on t's device so far (null for MPI).
inline ReadyHandle ready_for(bool nccl, const Tensor& t) {
#if defined(NABLA_HAS_NCCL)
  if (nccl) return ready_on(t);
#else
  (void)nccl, (void)t;
#endif
  return nullptr;
}
// Copies the staged result back into t when the staging made a copy.
inline void unstage(const Tensor& t, const Tensor& buf) {
  if (buf.impl() == t.impl()) return;
  NoGradGuard no_grad;
  t.detach().copy_(buf.view(t.sizes()));
}

inline void check_tensor(const Tensor& t, const char* op, const char* what = "tensor") {
  NABLA_CHECK(t.defined(), ValueError, "distributed::", op, ": the ", what, " is undefined");
  NABLA_CHECK(t.numel() <= std::numeric_limits<int>::max(), ValueError, "distributed::", op, ": ", what, " ",
              ::nabla::detail::describe(t), " has more than 2^31-1 elements, MPI's count limit");
}

enum class CollectiveKind : int64_t { AllReduce = 1, Broadcast, AllGather, ReduceScatter, Barrier, Reduce, Gather, Scatter, AllToAll };
inline const char* kind_name(CollectiveKind k) {
  switch (k) {
    case CollectiveKind::AllReduce: return "all_reduce";
    case CollectiveKind::Broadcast: return "broadcast";
    case CollectiveKind::AllGather: return "all_gather";
    case CollectiveKind::ReduceScatter: return "reduce_scatter";
    case CollectiveKind::Barrier: return "barrier";
    case CollectiveKind::Reduce: return "reduce";
    case CollectiveKind::Gather: return "gather";
    case CollectiveKind::Scatter: return "scatter";
    case CollectiveKind::AllToAll: return "all_to_all";
  }
  return "?";
}

// What a rank is about to do, as 16 int64: kind, reduce op (+ kOverNccl when the tensor goes over
// NCCL: a rank on NCCL and one on MPI would never meet), dtype, root, ndim, numel, dims.
inline constexpr int64_t kOverNccl = 1000;
struct Descriptor {
  int64_t v[16]{};
};
inline Descriptor describe_call(CollectiveKind kind, int64_t op, const Tensor& t, int64_t root, bool nccl = false) {
  Descriptor d;
  d.v[0] = static_cast<int64_t>(kind);
  d.v[1] = op + (nccl ? kOverNccl : 0);
  d.v[2] = t.defined() ? static_cast<int64_t>(t.dtype()) : -1;
  d.v[3] = root;
  d.v[4] = t.defined() ? t.dim() : -1;
  d.v[5] = t.defined() ? t.numel() : 0;
  if (t.defined())
    for (int64_t i = 0; i < t.dim(); ++i) {
      if (i < 10) d.v[6 + i] = t.size(i);
      else d.v[15] = d.v[15] * 31 + t.size(i);  // dims past 10 folded into a hash
    }
  return d;
}
inline std::string descriptor_str(const Descriptor& d) {
  std::string s = kind_name(static_cast<CollectiveKind>(d.v[0]));
  if (d.v[2] >= 0) {
    s += ::nabla::detail::cat(" of ", dtype_name(static_cast<DType>(d.v[2])), "[");
    for (int64_t i = 0; i < d.v[4] && i < 10; ++i) s += ::nabla::detail::cat(i ? ", " : "", d.v[6 + i]);
    s += d.v[4] > 10 ? ", ...]" : "]";
  }
  const auto kind = static_cast<CollectiveKind>(d.v[0]);
  if (kind == CollectiveKind::AllReduce || kind == CollectiveKind::ReduceScatter || kind == CollectiveKind::Reduce)
    s += ::nabla::detail::cat(" (", reduce_op_name(static_cast<ReduceOp>(d.v[1] % kOverNccl)), ")");
  if (kind == CollectiveKind::Broadcast || kind == CollectiveKind::Scatter) s += ::nabla::detail::cat(" from rank ", d.v[3]);
  if (kind == CollectiveKind::Reduce || kind == CollectiveKind::Gather) s += ::nabla::detail::cat(" to rank ", d.v[3]);
  s += d.v[1] >= kOverNccl ? " over NCCL" : "";
  return s;
}
// On the worker: every rank's descriptor must equal rank 0's.
inline void check_descriptors(ProcessGroup& g, const Descriptor& mine, const char* op) {
  if (!g.options().check_shapes || g.world_size() == 1) return;
  std::vector<Descriptor> all(static_cast<size_t>(g.world_size()));
  g.run_mpi(op, [&](MPI_Request* r) {
    return MPI_Iallgather(mine.v, 16, MPI_INT64_T, all.data(), 16, MPI_INT64_T, g.comm(), r);
  });
  bool same = true;
  for (const auto& d : all) same = same && std::memcmp(d.v, all[0].v, sizeof d.v) == 0;
  if (same) return;
  std::string msg = ::nabla::detail::cat("nabla::distributed::", op, " on rank ", g.rank(), ": the ranks called different collectives or passed "
                                         "different tensors:");
  for (size_t r = 0; r < all.size(); ++r) msg += ::nabla::detail::cat(r ? "," : "", " rank ", r, " ", descriptor_str(all[r]));
  g.fail(msg);
}

#if defined(NABLA_HAS_NCCL)
inline ncclRedOp_t nccl_op(ReduceOp op, DType dt) {
  if (dt == kBool) return op == ReduceOp::SUM || op == ReduceOp::MAX ? ncclMax : ncclMin;  // AVG refused by mpi_op
  switch (op) {
    case ReduceOp::SUM: return ncclSum;
    case ReduceOp::AVG: return ncclAvg;  // integers: the sum divided, truncated
    case ReduceOp::PRODUCT: return ncclProd;
    case ReduceOp::MIN: return ncclMin;
    case ReduceOp::MAX: return ncclMax;
  }
  return ncclSum;
}
// On the worker: `launch(comm, stream)` (an NCCL call) after `ready`, polled to completion under
// the group's timeout and failure notices.
template <class Launch>
void run_nccl(ProcessGroup& g, const char* op, const ReadyHandle& ready, Launch&& launch) {
  g.nccl(ready->device(), op).run(op, ready, launch, [&g](const char* what, auto&& test, const std::function<void()>& on_fail) {
    g.poll(what, test, on_fail);
  });
}
#endif

}  // namespace detail
}  // namespace distributed
}  // namespace nabla
