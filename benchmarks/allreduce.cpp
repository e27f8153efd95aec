// nabla::distributed::all_reduce against the raw blocking MPI_Allreduce it wraps, interleaved
// in one run, for message sizes from a float to ResNet-18's gradients, plus an async all-reduce
// waited on at once (the worker-thread path DistributedDataParallel's buckets take).
//   mpirun -np 2 nabla_bench_allreduce        (docs/distributed.md has figures)
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nabla/distributed.hpp>
#include <vector>

namespace dist = nabla::distributed;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main() {
  dist::init_process_group("mpi");
  const int rank = dist::get_rank();
  if (rank == 0)
    std::printf("%d ranks; median of 21 repetitions each, SUM over float32\n%12s %12s %12s %12s %10s\n", dist::get_world_size(),
                "floats", "MPI ms", "nabla ms", "async ms", "nabla/MPI");
  for (int64_t n : {int64_t{1}, int64_t{1} << 10, int64_t{1} << 14, int64_t{1} << 18, int64_t{1} << 20, int64_t{11} << 20}) {
    nabla::Tensor t = nabla::ones({n});
    std::vector<float> raw(static_cast<size_t>(n), 1.f);
    std::vector<double> tm, tn, ta;
    for (int rep = 0; rep < 22; ++rep) {  // the first of each is a warm-up
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now();
      MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t1 = now();
      dist::all_reduce(t);
      double t2 = now();
      dist::all_reduce(t, dist::ReduceOp::SUM, /*async_op=*/true)->wait();
      double t3 = now();
      if (rep > 0) tm.push_back(t1 - t0), tn.push_back(t2 - t1), ta.push_back(t3 - t2);
    }
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
      return v[v.size() / 2] * 1e3;
    };
    if (rank == 0)
      std::printf("%12lld %12.4f %12.4f %12.4f %10.2f\n", (long long)n, median(tm), median(tn), median(ta), median(tn) / median(tm));
  }
  dist::destroy_process_group();
}
