// Times gemm_native<float> on mid-sized squares with the contention back-off as shipped
// ("with") and with the back-off state cleared before every call ("without"), interleaved
// in rounds so both modes see the same machine load. Usage: nabla_gemm_backoff [rounds]
// (run with OMP_NUM_THREADS=2; docs/benchmarks.md has the figures).
#include <cstdlib>
#include <nabla/backend/cpu/gemm.hpp>
#include <algorithm>
#include <cstdio>
#include <vector>
using namespace nabla::cpu;
int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 7;
  for (int64_t n : {128, 192, 256, 384, 512}) {
    std::vector<float> A(n * n, 1.0f), B(n * n, 0.5f), C(n * n);
    auto call = [&] { gemm_native<float>(n, n, n, A.data(), n, 1, B.data(), n, 1, C.data(), n, 1, false); };
    const int reps = std::max<int>(5, int(2e9 / (2.0 * n * n * n)));  // ~ a few hundred ms per block
    std::vector<double> with, without;
    int backed_off_calls = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int mode = 0; mode < 2; ++mode) {
        const int64_t t0 = gemm_detail::now_ns();
        for (int i = 0; i < reps; ++i) {
          if (mode == 1) gemm_detail::contended_until_ns().store(0);
          else if (gemm_detail::now_ns() < gemm_detail::contended_until_ns().load()) ++backed_off_calls;
          call();
        }
        const double us = double(gemm_detail::now_ns() - t0) / reps / 1e3;
        (mode == 0 ? with : without).push_back(us);
      }
    }
    std::sort(with.begin(), with.end());
    std::sort(without.begin(), without.end());
    double mw = with[with.size() / 2], mo = without[without.size() / 2];
    std::printf("n=%4lld reps=%5d  with back-off: median %9.1f us/call  without: %9.1f us/call  with/without = %.2f  (calls in back-off: %d of %d)\n",
                (long long)n, reps, mw, mo, mw / mo, backed_off_calls, reps * rounds);
  }
}
