// The consumer of find_package(nabla COMPONENTS distributed): two ranks average a tensor.
#include <cstdio>
#include <nabla/distributed.hpp>

int main() {
  namespace dist = nabla::distributed;
  dist::init_process_group("mpi");
  nabla::Tensor t = nabla::full({3}, static_cast<double>(dist::get_rank()));
  dist::all_reduce(t, dist::ReduceOp::AVG);
  const double want = (dist::get_world_size() - 1) / 2.0;
  const bool ok = t.min().item<double>() == want && t.max().item<double>() == want;
  std::printf("distributed consumer: rank %d of %d, average %g (%s)\n", dist::get_rank(), dist::get_world_size(),
              t[0].item<double>(), ok ? "ok" : "WRONG");
  dist::destroy_process_group();
  return ok ? 0 : 1;
}
