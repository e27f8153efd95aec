#pragma once
// nabla::distributed's rooted collectives and all-to-all (torch.distributed's names): reduce to
// one rank, gather to one rank, scatter from one rank, all_to_all_single and all_to_all. The
// rules of collectives.hpp hold: every rank calls them in the same order; synchronous, or async
// with a WorkHandle; a descriptor exchange turns mismatched calls into DistributedError; CUDA
// tensors go over NCCL under init_process_group("nccl") (grouped ncclSend / ncclRecv for gather,
// scatter and all-to-all), else through host memory over MPI.

#include <algorithm>
#include <numeric>
#include <vector>

#include "collectives.hpp"

namespace nabla {
namespace distributed {

namespace detail {

inline void check_root(const ProcessGroup& g, int root, const char* op, const char* what) {
  NABLA_CHECK(root >= 0 && root < g.world_size(), ValueError, "distributed::", op, ": ", what, " ", root, " is not a rank of ",
              g.world_size());
}

// A flat buffer of n elements of t's dtype where the transport works: t's device for NCCL, else the CPU.
inline Tensor transport_buffer(const Tensor& t, int64_t n, bool nccl) {
  return empty({n}, TensorOptions().dtype(t.dtype()).device(nccl ? t.device() : Device::cpu()));
}

inline char* bytes_at(const Tensor& flat, int64_t element) {
  return static_cast<char*>(flat.data_ptr()) + element * static_cast<int64_t>(flat.element_size());
}

// The exchange of all_to_all and all_to_all_single, on flat buffers: rank r gets send_counts[r]
// elements of `in` from offset send_offsets[r], and this rank's recv_counts[q] elements from rank q
// land at recv_offsets[q] of `out`. `finish` runs on the waiting thread once `out` holds them.
inline WorkHandle all_to_all_flat(const char* op, const Tensor& in, const Tensor& out, std::vector<int64_t> send_counts,
                                  std::vector<int64_t> recv_counts, bool nccl, const Descriptor& d,
                                  std::function<void()> finish) {
  auto& g = group(op);
  auto offsets = [](const std::vector<int64_t>& counts) {
    std::vector<int64_t> off(counts.size(), 0);
    for (size_t i = 1; i < counts.size(); ++i) off[i] = off[i - 1] + counts[i - 1];
    return off;
  };
  auto ready = ready_for(nccl, in);
  auto work = g.enqueue([&g, op, in, out, send_counts, recv_counts, offsets, d, ready] {
    g.check_not_broken(op);
    check_descriptors(g, d, op);
    const auto send_off = offsets(send_counts), recv_off = offsets(recv_counts);
#if defined(NABLA_HAS_NCCL)
    if (ready) {
      run_nccl(g, op, ready, [&](ncclComm_t c, cudaStream_t s) {
        return nccl_group([&] {
          const ncclDataType_t t = nccl_type(in.dtype());
          for (int q = 0; q < g.world_size(); ++q) {
            const size_t sq = static_cast<size_t>(q);
            ncclResult_t r = ncclSend(bytes_at(in, send_off[sq]), static_cast<size_t>(send_counts[sq]), t, q, c, s);
            if (r == ncclSuccess) r = ncclRecv(bytes_at(out, recv_off[sq]), static_cast<size_t>(recv_counts[sq]), t, q, c, s);
            if (r != ncclSuccess) return r;
          }
          return ncclSuccess;
        });
      });
      return;
    }
#endif
    auto ints = [](const std::vector<int64_t>& v) {
      std::vector<int> r;
      for (int64_t x : v) {
        NABLA_CHECK(x <= std::numeric_limits<int>::max(), ValueError, "distributed::all_to_all: more than 2^31-1 elements in one "
                    "message, MPI's count limit");
        r.push_back(static_cast<int>(x));
      }
      return r;
    };
    const auto sc = ints(send_counts), so = ints(send_off), rc = ints(recv_counts), ro = ints(recv_off);
    const MPI_Datatype t = mpi_type(in.dtype());
    g.run_collective(
        op,
        [&](MPI_Request* r) {
          return MPI_Ialltoallv(in.data_ptr(), sc.data(), so.data(), t, out.data_ptr(), rc.data(), ro.data(), t, g.comm(), r);
        },
        [&] { return MPI_Alltoallv(in.data_ptr(), sc.data(), so.data(), t, out.data_ptr(), rc.data(), ro.data(), t, g.comm()); });
  });
  work->on_finish(std::move(finish));
  return work;
}

}  // namespace detail

// tensor on rank dst <- op over every rank's tensor (torch.distributed.reduce); the other ranks'
// tensors are left as they were.
inline WorkHandle reduce(const Tensor& tensor, int dst, ReduceOp op = ReduceOp::SUM, bool async_op = false) {
  auto& g = detail::group("reduce");
  detail::check_tensor(tensor, "reduce");
  detail::check_root(g, dst, "reduce", "dst");
  MPI_Op mop = detail::mpi_op(g, op, tensor.dtype(), "reduce");
  return detail::start_or_wait(async_op, [&] {
    const bool nccl = detail::via_nccl(g, tensor), root = g.rank() == dst;
    Tensor buf = detail::staged(tensor, nccl);
    auto ready = detail::ready_for(nccl, buf);
    auto d = detail::describe_call(detail::CollectiveKind::Reduce, static_cast<int64_t>(op), tensor, dst, nccl);
    auto work = g.enqueue([&g, buf, mop, op, dst, root, d, ready] {
      g.check_not_broken("reduce");
      detail::check_descriptors(g, d, "reduce");
#if defined(NABLA_HAS_NCCL)
      if (ready) {
        detail::run_nccl(g, "reduce", ready, [&](ncclComm_t c, cudaStream_t s) {
          return ncclReduce(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), detail::nccl_type(buf.dtype()),
                            detail::nccl_op(op, buf.dtype()), dst, c, s);
        });
        return;
      }
#endif
      const int n = static_cast<int>(buf.numel());
      const MPI_Datatype t = detail::mpi_type(buf.dtype());
      void* send = root ? MPI_IN_PLACE : buf.data_ptr();
      void* recv = root ? buf.data_ptr() : nullptr;
      g.run_collective(
          "reduce", [&](MPI_Request* r) { return MPI_Ireduce(send, recv, n, t, mop, dst, g.comm(), r); },
          [&] { return MPI_Reduce(send, recv, n, t, mop, dst, g.comm()); });
      if (root && op == ReduceOp::AVG) detail::divide_in_place(buf.data_ptr(), n, buf.dtype(), g.world_size());
    });
    if (root) work->on_finish([tensor, buf] { detail::unstage(tensor, buf); });
    return work;
  });
}

// On rank dst: gather_list[r] <- rank r's tensor (torch.distributed.gather). gather_list holds
// world_size tensors of the tensor's shape and dtype, or is empty (it is then filled with new
// tensors on the tensor's device). Every other rank passes an empty gather_list.
inline WorkHandle gather(const Tensor& tensor, std::vector<Tensor>& gather_list, int dst = 0, bool async_op = false) {
  auto& g = detail::group("gather");
  detail::check_tensor(tensor, "gather");
  detail::check_root(g, dst, "gather", "dst");
  const bool root = g.rank() == dst;
  const size_t w = static_cast<size_t>(g.world_size());
  if (!root) {
    NABLA_CHECK(gather_list.empty(), ValueError, "distributed::gather: gather_list must be empty on rank ", g.rank(),
                ", which is not the destination (rank ", dst, ")");
  } else {
    if (gather_list.empty())
      for (size_t r = 0; r < w; ++r)
        gather_list.push_back(empty(tensor.sizes(), TensorOptions().dtype(tensor.dtype()).device(tensor.device())));
    NABLA_CHECK(gather_list.size() == w, ValueError, "distributed::gather: got ", gather_list.size(), " tensors in gather_list for a world of ", w);
    for (const Tensor& o : gather_list)
      NABLA_CHECK(o.defined() && o.sizes() == tensor.sizes() && o.dtype() == tensor.dtype(), ShapeError,
                  "distributed::gather: every tensor of gather_list must match the tensor ", ::nabla::detail::describe(tensor), ", got ",
                  ::nabla::detail::describe(o));
  }
  std::vector<Tensor> outs = gather_list;
  return detail::start_or_wait(async_op, [&] {
    const bool nccl = detail::via_nccl(g, tensor);
    const int64_t n = tensor.numel();
    Tensor in = detail::staged(tensor, nccl);
    Tensor out = root ? detail::transport_buffer(tensor, n * static_cast<int64_t>(w), nccl) : Tensor();
    auto ready = detail::ready_for(nccl, in);
    auto d = detail::describe_call(detail::CollectiveKind::Gather, 0, tensor, dst, nccl);
    auto work = g.enqueue([&g, in, out, n, dst, root, d, ready] {
      g.check_not_broken("gather");
      detail::check_descriptors(g, d, "gather");
#if defined(NABLA_HAS_NCCL)
      if (ready) {
        detail::run_nccl(g, "gather", ready, [&](ncclComm_t c, cudaStream_t s) {
          return detail::nccl_group([&] {
            const ncclDataType_t t = detail::nccl_type(in.dtype());
            ncclResult_t r = ncclSend(in.data_ptr(), static_cast<size_t>(n), t, dst, c, s);
            for (int q = 0; root && r == ncclSuccess && q < g.world_size(); ++q)
              r = ncclRecv(detail::bytes_at(out, q * n), static_cast<size_t>(n), t, q, c, s);
            return r;
          });
        });
        return;
      }
#endif
      const int cnt = static_cast<int>(n);
      const MPI_Datatype t = detail::mpi_type(in.dtype());
      void* recv = root ? out.data_ptr() : nullptr;
      g.run_collective(
          "gather", [&](MPI_Request* r) { return MPI_Igather(in.data_ptr(), cnt, t, recv, cnt, t, dst, g.comm(), r); },
          [&] { return MPI_Gather(in.data_ptr(), cnt, t, recv, cnt, t, dst, g.comm()); });
    });
    if (root)
      work->on_finish([outs, out, n] {
        NoGradGuard no_grad;
        for (size_t r = 0; r < outs.size(); ++r)
          outs[r].detach().copy_(out.slice(0, static_cast<int64_t>(r) * n, static_cast<int64_t>(r + 1) * n).view(outs[r].sizes()));
      });
    return work;
  });
}

// tensor <- rank src's scatter_list[this rank] (torch.distributed.scatter). On rank src,
// scatter_list holds world_size tensors of the tensor's shape and dtype; every other rank passes
// an empty one.
inline WorkHandle scatter(const Tensor& tensor, const std::vector<Tensor>& scatter_list, int src = 0, bool async_op = false) {
  auto& g = detail::group("scatter");
  detail::check_tensor(tensor, "scatter");
  detail::check_root(g, src, "scatter", "src");
  const bool root = g.rank() == src;
  const size_t w = static_cast<size_t>(g.world_size());
  if (!root) {
    NABLA_CHECK(scatter_list.empty(), ValueError, "distributed::scatter: scatter_list must be empty on rank ", g.rank(),
                ", which is not the source (rank ", src, ")");
  } else {
    NABLA_CHECK(scatter_list.size() == w, ValueError, "distributed::scatter: got ", scatter_list.size(),
                " tensors in scatter_list for a world of ", w);
    for (const Tensor& t : scatter_list)
      NABLA_CHECK(t.defined() && t.sizes() == tensor.sizes() && t.dtype() == tensor.dtype(), ShapeError,
                  "distributed::scatter: every tensor of scatter_list must match the tensor ", ::nabla::detail::describe(tensor),
                  ", got ", ::nabla::detail::describe(t));
  }
  return detail::start_or_wait(async_op, [&] {
    const bool nccl = detail::via_nccl(g, tensor);
    const int64_t n = tensor.numel();
    Tensor buf = detail::staged(tensor, nccl);
    Tensor flat;
    if (root) {
      std::vector<Tensor> parts;
      for (const Tensor& t : scatter_list) parts.push_back(t.detach().to(nccl ? tensor.device() : Device::cpu()).reshape({-1}));
      flat = cat(parts, 0).contiguous();
    }
    auto ready = detail::ready_for(nccl, buf);
    auto d = detail::describe_call(detail::CollectiveKind::Scatter, 0, tensor, src, nccl);
    auto work = g.enqueue([&g, buf, flat, n, src, root, d, ready] {
      g.check_not_broken("scatter");
      detail::check_descriptors(g, d, "scatter");
#if defined(NABLA_HAS_NCCL)
      if (ready) {
        detail::run_nccl(g, "scatter", ready, [&](ncclComm_t c, cudaStream_t s) {
          return detail::nccl_group([&] {
            const ncclDataType_t t = detail::nccl_type(buf.dtype());
            ncclResult_t r = ncclSuccess;
            for (int q = 0; root && r == ncclSuccess && q < g.world_size(); ++q)
              r = ncclSend(detail::bytes_at(flat, q * n), static_cast<size_t>(n), t, q, c, s);
            if (r == ncclSuccess) r = ncclRecv(buf.data_ptr(), static_cast<size_t>(n), t, src, c, s);
            return r;
          });
        });
        return;
      }
#endif
      const int cnt = static_cast<int>(n);
      const MPI_Datatype t = detail::mpi_type(buf.dtype());
      const void* send = root ? flat.data_ptr() : nullptr;
      g.run_collective(
          "scatter", [&](MPI_Request* r) { return MPI_Iscatter(send, cnt, t, buf.data_ptr(), cnt, t, src, g.comm(), r); },
          [&] { return MPI_Scatter(send, cnt, t, buf.data_ptr(), cnt, t, src, g.comm()); });
    });
    work->on_finish([tensor, buf] { detail::unstage(tensor, buf); });
    return work;
  });
}

// output <- blocks of every rank's input, split along dim 0 (torch.distributed.all_to_all_single):
// rank r's input block q goes to rank q, landing as block r of q's output. Empty split sizes mean
// equal blocks (dim 0 divisible by world_size); otherwise each lists world_size row counts.
inline WorkHandle all_to_all_single(const Tensor& output, const Tensor& input, const std::vector<int64_t>& output_split_sizes = {},
                                    const std::vector<int64_t>& input_split_sizes = {}, bool async_op = false) {
  auto& g = detail::group("all_to_all_single");
  detail::check_tensor(input, "all_to_all_single", "input");
  detail::check_tensor(output, "all_to_all_single", "output");
  const int64_t w = g.world_size();
  NABLA_CHECK(input.dim() >= 1 && output.dim() >= 1 && input.dtype() == output.dtype(), ShapeError,
              "distributed::all_to_all_single: input ", ::nabla::detail::describe(input), " and output ",
              ::nabla::detail::describe(output), " must have a dim 0 and one dtype");
  const int64_t in_row = input.size(0) ? input.numel() / input.size(0) : 0, out_row = output.size(0) ? output.numel() / output.size(0) : 0;
  NABLA_CHECK(input.size(0) == 0 || output.size(0) == 0 || in_row == out_row, ShapeError,
              "distributed::all_to_all_single: the rows of input ", ::nabla::detail::describe(input), " and output ",
              ::nabla::detail::describe(output), " differ in size");
  auto counts = [&](const std::vector<int64_t>& splits, const Tensor& t, const char* what) {
    std::vector<int64_t> c;
    if (splits.empty()) {
      NABLA_CHECK(t.size(0) % w == 0, ShapeError, "distributed::all_to_all_single: ", what, " ", ::nabla::detail::describe(t),
                  ": dim 0 is not divisible by the world size ", w, " (pass split sizes)");
      c.assign(static_cast<size_t>(w), t.size(0) / w);
    } else {
      NABLA_CHECK(static_cast<int64_t>(splits.size()) == w, ValueError, "distributed::all_to_all_single: ", what, " split sizes list ",
                  splits.size(), " entries for a world of ", w);
      NABLA_CHECK(std::accumulate(splits.begin(), splits.end(), int64_t{0}) == t.size(0) &&
                      std::all_of(splits.begin(), splits.end(), [](int64_t x) { return x >= 0; }),
                  ValueError, "distributed::all_to_all_single: ", what, " split sizes must be >= 0 and add up to dim 0 of ",
                  ::nabla::detail::describe(t));
      c = splits;
    }
    for (auto& x : c) x *= std::max(in_row, out_row);
    return c;
  };
  auto send_counts = counts(input_split_sizes, input, "input");
  auto recv_counts = counts(output_split_sizes, output, "output");
  return detail::start_or_wait(async_op, [&] {
    const bool nccl = detail::via_nccl(g, input);
    Tensor in = detail::staged(input, nccl);
    Tensor out = detail::staged(output, nccl);
    // the descriptor: dtype and the row shape, which every rank must share
    Tensor row = empty({std::max(in_row, out_row)}, TensorOptions().dtype(input.dtype()));
    auto d = detail::describe_call(detail::CollectiveKind::AllToAll, 0, row, 0, nccl);
    return detail::all_to_all_flat("all_to_all_single", in, out, send_counts, recv_counts, nccl, d,
                                   [output, out] { detail::unstage(output, out); });
  });
}

// output_tensor_list[q] <- rank q's input_tensor_list[this rank] (torch.distributed.all_to_all).
// Both lists hold world_size tensors of one dtype; their shapes may differ, but what rank r
// sends to q must have as many elements as q's output_tensor_list[r].
inline WorkHandle all_to_all(std::vector<Tensor>& output_tensor_list, const std::vector<Tensor>& input_tensor_list, bool async_op = false) {
  auto& g = detail::group("all_to_all");
  const size_t w = static_cast<size_t>(g.world_size());
  NABLA_CHECK(output_tensor_list.size() == w && input_tensor_list.size() == w, ValueError, "distributed::all_to_all: got ",
              input_tensor_list.size(), " inputs and ", output_tensor_list.size(), " outputs for a world of ", w);
  const DType dt = input_tensor_list[0].defined() ? input_tensor_list[0].dtype() : kFloat32;
  for (const std::vector<Tensor>* list : {&input_tensor_list, static_cast<const std::vector<Tensor>*>(&output_tensor_list)})
    for (const Tensor& t : *list) {
      detail::check_tensor(t, "all_to_all");
      NABLA_CHECK(t.dtype() == dt, DTypeError, "distributed::all_to_all: every tensor must be ", dtype_name(dt), ", got ",
                  ::nabla::detail::describe(t));
    }
  std::vector<int64_t> send_counts, recv_counts;
  for (const Tensor& t : input_tensor_list) send_counts.push_back(t.numel());
  for (const Tensor& t : output_tensor_list) recv_counts.push_back(t.numel());
  std::vector<Tensor> outs = output_tensor_list;
  return detail::start_or_wait(async_op, [&] {
    const bool nccl = detail::via_nccl(g, input_tensor_list[0]);
    const Device where = nccl ? input_tensor_list[0].device() : Device::cpu();
    std::vector<Tensor> parts;
    for (const Tensor& t : input_tensor_list) parts.push_back(t.detach().to(where).reshape({-1}));
    Tensor in = cat(parts, 0).contiguous();
    const int64_t total = std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t{0});
    Tensor out = empty({total}, TensorOptions().dtype(dt).device(where));
    auto d = detail::describe_call(detail::CollectiveKind::AllToAll, 0, empty({0}, TensorOptions().dtype(dt)), 0, nccl);
    return detail::all_to_all_flat("all_to_all", in, out, send_counts, recv_counts, nccl, d, [outs, out] {
      NoGradGuard no_grad;
      int64_t off = 0;
      for (const Tensor& o : outs) {
        o.detach().copy_(out.slice(0, off, off + o.numel()).view(o.sizes()));
        off += o.numel();
      }
    });
  });
}

}  // namespace distributed
}  // namespace nabla
