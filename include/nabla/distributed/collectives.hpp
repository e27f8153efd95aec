#pragma once
// nabla::distributed's collectives (torch.distributed's names): barrier, all_reduce, broadcast,
// all_gather, reduce_scatter, each synchronous or async (a WorkHandle). They run on the default
// process group of process_group.hpp, which says how failures and timeouts are handled.

#include <functional>
#include <vector>

#include "process_group.hpp"
#include "transport.hpp"

namespace nabla {
namespace distributed {

// ---- collectives ----------------------------------------------------------------------------

inline WorkHandle barrier_async() {
  auto& g = detail::group("barrier");
  return g.enqueue([&g] {
    g.check_not_broken("barrier");
    detail::check_descriptors(g, detail::describe_call(detail::CollectiveKind::Barrier, 0, Tensor(), 0), "barrier");
    g.run_mpi("barrier", [&](MPI_Request* r) { return MPI_Ibarrier(g.comm(), r); });
  });
}
inline void barrier() { detail::start_or_wait(false, [] { return barrier_async(); }); }

// tensor <- op over every rank's tensor, in place.
inline WorkHandle all_reduce_async(const Tensor& tensor, ReduceOp op = ReduceOp::SUM) {
  auto& g = detail::group("all_reduce");
  detail::check_tensor(tensor, "all_reduce");
  MPI_Op mop = detail::mpi_op(g, op, tensor.dtype(), "all_reduce");
  const bool nccl = detail::via_nccl(g, tensor);
  Tensor buf = detail::staged(tensor, nccl);
  auto ready = detail::ready_for(nccl, buf);
  auto d = detail::describe_call(detail::CollectiveKind::AllReduce, static_cast<int64_t>(op), tensor, 0, nccl);
  auto work = g.enqueue([&g, buf, mop, op, d, ready] {
    g.check_not_broken("all_reduce");
    detail::check_descriptors(g, d, "all_reduce");
#if defined(NABLA_HAS_NCCL)
    if (ready) {
      detail::run_nccl(g, "all_reduce", ready, [&](ncclComm_t c, cudaStream_t s) {
        return ncclAllReduce(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), detail::nccl_type(buf.dtype()),
                             detail::nccl_op(op, buf.dtype()), c, s);
      });
      return;
    }
#endif
    const int n = static_cast<int>(buf.numel());
    g.run_collective(
        "all_reduce",
        [&](MPI_Request* r) { return MPI_Iallreduce(MPI_IN_PLACE, buf.data_ptr(), n, detail::mpi_type(buf.dtype()), mop, g.comm(), r); },
        [&] { return MPI_Allreduce(MPI_IN_PLACE, buf.data_ptr(), n, detail::mpi_type(buf.dtype()), mop, g.comm()); });
    if (op == ReduceOp::AVG) detail::divide_in_place(buf.data_ptr(), n, buf.dtype(), g.world_size());
  });
  work->on_finish([tensor, buf] { detail::unstage(tensor, buf); });
  return work;
}
// PyTorch's form: returns the Work when async_op, else waits and returns null.
inline WorkHandle all_reduce(const Tensor& tensor, ReduceOp op = ReduceOp::SUM, bool async_op = false) {
  return detail::start_or_wait(async_op, [&] { return all_reduce_async(tensor, op); });
}

// tensor <- rank src's tensor.
inline WorkHandle broadcast_async(const Tensor& tensor, int src) {
  auto& g = detail::group("broadcast");
  detail::check_tensor(tensor, "broadcast");
  NABLA_CHECK(src >= 0 && src < g.world_size(), ValueError, "distributed::broadcast: src ", src, " is not a rank of ",
              g.world_size());
  const bool nccl = detail::via_nccl(g, tensor);
  Tensor buf = detail::staged(tensor, nccl);
  auto ready = detail::ready_for(nccl, buf);
  auto d = detail::describe_call(detail::CollectiveKind::Broadcast, 0, tensor, src, nccl);
  auto work = g.enqueue([&g, buf, src, d, ready] {
    g.check_not_broken("broadcast");
    detail::check_descriptors(g, d, "broadcast");
#if defined(NABLA_HAS_NCCL)
    if (ready) {
      detail::run_nccl(g, "broadcast", ready, [&](ncclComm_t c, cudaStream_t s) {
        return ncclBroadcast(buf.data_ptr(), buf.data_ptr(), static_cast<size_t>(buf.numel()), detail::nccl_type(buf.dtype()), src, c, s);
      });
      return;
    }
#endif
    const int n = static_cast<int>(buf.numel());
    g.run_collective(
        "broadcast", [&](MPI_Request* r) { return MPI_Ibcast(buf.data_ptr(), n, detail::mpi_type(buf.dtype()), src, g.comm(), r); },
        [&] { return MPI_Bcast(buf.data_ptr(), n, detail::mpi_type(buf.dtype()), src, g.comm()); });
  });
  work->on_finish([tensor, buf] { detail::unstage(tensor, buf); });
  return work;
}
inline WorkHandle broadcast(const Tensor& tensor, int src, bool async_op = false) {
  return detail::start_or_wait(async_op, [&] { return broadcast_async(tensor, src); });
}

namespace detail {
// output (world_size * input.numel() elements, contiguous on the worker) <- every rank's input.
inline WorkHandle all_gather_flat(const Tensor& input, std::function<void(const Tensor&)> finish) {
  auto& g = group("all_gather");
  const bool nccl = via_nccl(g, input);
  Tensor in = staged(input, nccl);
  Tensor out = empty({static_cast<int64_t>(g.world_size()) * input.numel()},
                     TensorOptions().dtype(input.dtype()).device(nccl ? input.device() : Device::cpu()));
  auto ready = ready_for(nccl, in);
  auto d = describe_call(CollectiveKind::AllGather, 0, input, 0, nccl);
  auto work = g.enqueue([&g, in, out, d, ready] {
    g.check_not_broken("all_gather");
    check_descriptors(g, d, "all_gather");
#if defined(NABLA_HAS_NCCL)
    if (ready) {
      run_nccl(g, "all_gather", ready, [&](ncclComm_t c, cudaStream_t s) {
        return ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()), c, s);
      });
      return;
    }
#endif
    const int n = static_cast<int>(in.numel());
    const MPI_Datatype t = mpi_type(in.dtype());
    g.run_collective(
        "all_gather", [&](MPI_Request* r) { return MPI_Iallgather(in.data_ptr(), n, t, out.data_ptr(), n, t, g.comm(), r); },
        [&] { return MPI_Allgather(in.data_ptr(), n, t, out.data_ptr(), n, t, g.comm()); });
  });
  work->on_finish([out, finish] { finish(out); });
  return work;
}
inline WorkHandle reduce_scatter_flat(const Tensor& output, const Tensor& flat_input, ReduceOp op) {
  auto& g = group("reduce_scatter");
  MPI_Op mop = mpi_op(g, op, output.dtype(), "reduce_scatter");
  const bool nccl = via_nccl(g, output);
  Tensor in = staged(nccl ? flat_input.to(output.device()) : flat_input, nccl);
  Tensor out = staged(output, nccl);
  auto ready = ready_for(nccl, in);
  auto d = describe_call(CollectiveKind::ReduceScatter, static_cast<int64_t>(op), output, 0, nccl);
  auto work = g.enqueue([&g, in, out, mop, op, d, ready] {
    g.check_not_broken("reduce_scatter");
    check_descriptors(g, d, "reduce_scatter");
#if defined(NABLA_HAS_NCCL)
    if (ready) {
      run_nccl(g, "reduce_scatter", ready, [&](ncclComm_t c, cudaStream_t s) {
        return ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(out.dtype()),
                                 nccl_op(op, out.dtype()), c, s);
      });
      return;
    }
#endif
    const int n = static_cast<int>(out.numel());
    const MPI_Datatype t = mpi_type(out.dtype());
    g.run_collective(
        "reduce_scatter",
        [&](MPI_Request* r) { return MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), n, t, mop, g.comm(), r); },
        [&] { return MPI_Reduce_scatter_block(in.data_ptr(), out.data_ptr(), n, t, mop, g.comm()); });
    if (op == ReduceOp::AVG) divide_in_place(out.data_ptr(), n, out.dtype(), g.world_size());
  });
  work->on_finish([output, out] { unstage(output, out); });
  return work;
}
}  // namespace detail

// output_tensors[r] <- rank r's input. output_tensors must hold world_size tensors of the
// input's shape and dtype, or be empty (it is then filled with new tensors on the input's device).
inline WorkHandle all_gather_async(std::vector<Tensor>& output_tensors, const Tensor& input) {
  auto& g = detail::group("all_gather");
  detail::check_tensor(input, "all_gather", "input");
  const size_t w = static_cast<size_t>(g.world_size());
  if (output_tensors.empty())
    for (size_t r = 0; r < w; ++r)
      output_tensors.push_back(empty(input.sizes(), TensorOptions().dtype(input.dtype()).device(input.device())));
  NABLA_CHECK(output_tensors.size() == w, ValueError, "distributed::all_gather: got ", output_tensors.size(),
              " output tensors for a world of ", w);
  for (const Tensor& o : output_tensors)
    NABLA_CHECK(o.defined() && o.sizes() == input.sizes() && o.dtype() == input.dtype(), ShapeError,
                "distributed::all_gather: every output must match the input ", ::nabla::detail::describe(input), ", got ",
                ::nabla::detail::describe(o));
  std::vector<Tensor> outs = output_tensors;
  const int64_t n = input.numel();
  return detail::all_gather_flat(input, [outs, n](const Tensor& flat) {
    NoGradGuard no_grad;
    for (size_t r = 0; r < outs.size(); ++r)
      outs[r].detach().copy_(flat.slice(0, static_cast<int64_t>(r) * n, static_cast<int64_t>(r + 1) * n).view(outs[r].sizes()));
  });
}
inline WorkHandle all_gather(std::vector<Tensor>& output_tensors, const Tensor& input, bool async_op = false) {
  return detail::start_or_wait(async_op, [&] { return all_gather_async(output_tensors, input); });
}
// output (world_size * input.numel() elements: [world*d0, ...] or [world, ...]) <- the inputs
// of every rank, concatenated in rank order (torch.distributed.all_gather_into_tensor).
inline WorkHandle all_gather_into_tensor(const Tensor& output, const Tensor& input, bool async_op = false) {
  auto& g = detail::group("all_gather_into_tensor");
  detail::check_tensor(input, "all_gather_into_tensor", "input");
  NABLA_CHECK(output.defined() && output.numel() == input.numel() * g.world_size() && output.dtype() == input.dtype(), ShapeError,
              "distributed::all_gather_into_tensor: output ", ::nabla::detail::describe(output), " must hold world_size (",
              g.world_size(), ") times the input ", ::nabla::detail::describe(input));
  return detail::start_or_wait(async_op, [&] {
    return detail::all_gather_flat(input, [output](const Tensor& flat) {
      NoGradGuard no_grad;
      output.detach().copy_(flat.view(output.sizes()));
    });
  });
}

// output <- op over every rank's input_list[my rank] (torch.distributed.reduce_scatter).
inline WorkHandle reduce_scatter(const Tensor& output, const std::vector<Tensor>& input_list, ReduceOp op = ReduceOp::SUM,
                                 bool async_op = false) {
  auto& g = detail::group("reduce_scatter");
  detail::check_tensor(output, "reduce_scatter", "output");
  NABLA_CHECK(input_list.size() == static_cast<size_t>(g.world_size()), ValueError, "distributed::reduce_scatter: got ",
              input_list.size(), " inputs for a world of ", g.world_size());
  std::vector<Tensor> flat;
  for (const Tensor& t : input_list) {
    NABLA_CHECK(t.defined() && t.sizes() == output.sizes() && t.dtype() == output.dtype(), ShapeError,
                "distributed::reduce_scatter: every input must match the output ", ::nabla::detail::describe(output), ", got ",
                ::nabla::detail::describe(t));
    flat.push_back(t.detach().to(detail::via_nccl(g, output) ? output.device() : Device::cpu()).reshape({-1}));
  }
  return detail::start_or_wait(async_op, [&] { return detail::reduce_scatter_flat(output, cat(flat, 0), op); });
}
inline WorkHandle reduce_scatter_async(const Tensor& output, const std::vector<Tensor>& input_list, ReduceOp op = ReduceOp::SUM) {
  return reduce_scatter(output, input_list, op, true);
}
// output <- op over every rank's input, scattered: rank r gets elements [r*n, (r+1)*n) where n
// is output.numel() (torch.distributed.reduce_scatter_tensor).
inline WorkHandle reduce_scatter_tensor(const Tensor& output, const Tensor& input, ReduceOp op = ReduceOp::SUM,
                                        bool async_op = false) {
  auto& g = detail::group("reduce_scatter_tensor");
  detail::check_tensor(output, "reduce_scatter_tensor", "output");
  NABLA_CHECK(input.defined() && input.numel() == output.numel() * g.world_size() && input.dtype() == output.dtype(), ShapeError,
              "distributed::reduce_scatter_tensor: input ", ::nabla::detail::describe(input), " must hold world_size (",
              g.world_size(), ") times the output ", ::nabla::detail::describe(output));
  return detail::start_or_wait(async_op, [&] { 
    const Device where = detail::via_nccl(g, output) ? output.device() : Device::cpu();
    return detail::reduce_scatter_flat(output, input.detach().to(where).contiguous().reshape({-1}), op);
  });
}

}  // namespace distributed
}  // namespace nabla
