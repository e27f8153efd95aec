// A collective whose peer fails must end with a DistributedError, not hang (tests/distributed/
// failures.sh runs this under mpirun and reads what each rank prints):
//   throw     rank 1 dies of an uncaught exception; the others' all_reduce names it
//   hang      rank 1 never calls the collective; the others time out (NABLA_DIST_TIMEOUT)
//   mismatch  rank 1 passes a different shape; every rank names both shapes
//   recv      the others wait in recv() for a message from rank 1, which dies before sending it
//   recv_hang the same, but rank 1 never sends (the receives time out)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nabla/distributed.hpp>
#include <stdexcept>
#include <string>
#include <thread>

namespace dist = nabla::distributed;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  dist::init_process_group("mpi");
  const int rank = dist::get_rank();
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  try {
    // (inside the try: a rank can leave the barrier, and fail, before the others have left it)
    dist::barrier();
    if (mode == "recv" && rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the others are in recv by then
    if ((mode == "throw" || mode == "recv") && rank == 1) throw std::runtime_error("rank 1 fails on purpose");
    if ((mode == "hang" || mode == "recv_hang") && rank == 1) {
      std::this_thread::sleep_for(std::chrono::seconds(20));
      std::_Exit(0);
    }
    if (mode == "recv" || mode == "recv_hang") {
      nabla::Tensor t = nabla::zeros({4});
      dist::recv(t, 1);
      std::printf("rank %d: recv returned, no error\n", rank);
      dist::destroy_process_group();
      return 0;
    }
    nabla::Tensor t = nabla::ones({mode == "mismatch" && rank == 1 ? 5 : 4});
    dist::all_reduce(t);
    std::printf("rank %d: all_reduce returned, no error\n", rank);
  } catch (const nabla::DistributedError& e) {
    std::printf("rank %d: DistributedError after %.2f s: %s\n", rank, seconds(), e.what());
    std::fflush(stdout);
    dist::destroy_process_group();  // broken: drops the group without MPI_Finalize
    // mpirun ends the whole job when the first rank exits: give the others time to report
    std::this_thread::sleep_for(std::chrono::seconds(2));
    std::_Exit(3);
  }
  dist::destroy_process_group();
  return 0;
}
