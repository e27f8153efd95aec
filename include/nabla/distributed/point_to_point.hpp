#pragma once
// nabla::distributed's point-to-point messages (torch.distributed's names): send / isend and
// recv / irecv, between two ranks of the default group, over MPI.
//
// As PyTorch's MPI backend does, they start at once on the calling thread (not in the
// collectives' queue), and the Work is driven by whoever waits on it: so two ranks that each
// isend and then irecv do not wait for each other. A send completes when the tensor may be reused
// (MPI may still be delivering it); wait() and recv() give up after the group's timeout, or as soon
// as a peer reports a failure, with DistributedError. CUDA tensors are staged through host memory
// (under the "nccl" backend too: NCCL's send/recv are not wired yet). Messages are matched by
// (sender, tag), in order, independently of the collectives.

#include <memory>

#include "process_group.hpp"
#include "transport.hpp"

namespace nabla {
namespace distributed {

namespace detail {

inline void check_peer(const ProcessGroup& g, int peer, bool any_allowed, const char* op, const char* what) {
  if (any_allowed && peer == -1) return;
  NABLA_CHECK(peer >= 0 && peer < g.world_size() && peer != g.rank(), ValueError, "distributed::", op, ": ", what, " ", peer,
              " must be another rank of the ", g.world_size(), " (this is rank ", g.rank(), ")",
              any_allowed ? ", or -1 for any" : "");
}
inline void check_tag(int tag, const char* op) {
  // MPI guarantees tags up to 32767 everywhere
  NABLA_CHECK(tag >= 0 && tag <= 32767, ValueError, "distributed::", op, ": tag ", tag, " is outside [0, 32767]");
}

// What a receive learns when it completes.
struct RecvState {
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Status status{};
  int source = -1;
};

}  // namespace detail

// Sends `tensor` to rank `dst` with `tag` (torch.distributed.isend). The Work completes when the
// tensor may be changed again.
inline WorkHandle isend(const Tensor& tensor, int dst, int tag = 0) {
  auto& g = detail::group("send");
  detail::check_tensor(tensor, "send");
  detail::check_peer(g, dst, false, "send", "dst");
  detail::check_tag(tag, "send");
  g.check_not_broken("send");
  Tensor buf = detail::staged(tensor);
  const int n = static_cast<int>(buf.numel());
  auto req = std::make_shared<MPI_Request>(g.start_request("send", [&](MPI_Request* r) {
    return MPI_Isend(buf.data_ptr(), n, detail::mpi_type(buf.dtype()), dst, tag, g.comm(), r);
  }));
  auto work = std::make_shared<Work>();
  work->set_progress([&g, req, buf](bool block) {  // buf stays alive until MPI is done with it
    if (block) {
      g.wait_request(*req, "send");
      return true;
    }
    return g.test_request(*req, MPI_STATUS_IGNORE, "send");
  });
  return work;
}
// The blocking form (torch.distributed.send).
inline void send(const Tensor& tensor, int dst, int tag = 0) { isend(tensor, dst, tag)->wait(); }

namespace detail {
// irecv, with what the receive learns (the sender's rank) for recv().
inline WorkHandle irecv_from(const Tensor& tensor, int src, int tag, const std::shared_ptr<RecvState>& state) {
  auto& g = group("recv");
  check_tensor(tensor, "recv");
  check_peer(g, src, true, "recv", "src");
  check_tag(tag, "recv");
  g.check_not_broken("recv");
  Tensor buf = staged(tensor);
  const int n = static_cast<int>(buf.numel());
  state->request = g.start_request("recv", [&](MPI_Request* r) {
    return MPI_Irecv(buf.data_ptr(), n, mpi_type(buf.dtype()), src == -1 ? MPI_ANY_SOURCE : src, tag, g.comm(), r);
  });
  auto work = std::make_shared<Work>();
  work->set_progress([&g, state, tensor, buf, n](bool block) {
    if (block) g.wait_request(state->request, "recv", &state->status);
    else if (!g.test_request(state->request, &state->status, "recv")) return false;
    state->source = state->status.MPI_SOURCE;
    int count = 0;
    MPI_Get_count(&state->status, mpi_type(buf.dtype()), &count);
    NABLA_CHECK(count == n, DistributedError, "distributed::recv on rank ", g.rank(), ": rank ", state->source, " sent ", count,
                " elements, but the receiving tensor ", ::nabla::detail::describe(tensor), " holds ", n);
    unstage(tensor, buf);
    return true;
  });
  return work;
}
}  // namespace detail

// Receives into `tensor` from rank `src` (-1: any rank) with `tag` (torch.distributed.irecv).
// The message must hold exactly tensor.numel() elements (a larger one is an MPI error, a
// smaller one a DistributedError); its dtype is not checked.
inline WorkHandle irecv(const Tensor& tensor, int src = -1, int tag = 0) {
  return detail::irecv_from(tensor, src, tag, std::make_shared<detail::RecvState>());
}
// The blocking form; returns the sender's rank (torch.distributed.recv).
inline int recv(const Tensor& tensor, int src = -1, int tag = 0) {
  auto state = std::make_shared<detail::RecvState>();
  detail::irecv_from(tensor, src, tag, state)->wait();
  return state->source;
}

}  // namespace distributed
}  // namespace nabla
