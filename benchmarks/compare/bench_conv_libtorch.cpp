// The LibTorch side of bench_conv.cpp: the same cases under the same names with torch::conv2d.
// Threads: torch::set_num_threads(OMP_NUM_THREADS, default 2).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

void conv2d_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = torch::randn({64, c, hw, hw}), w = torch::randn({o, c, 3, 3}), b = torch::randn({o});
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(torch::conv2d(x, w, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void conv2d_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = torch::randn({64, c, hw, hw}).requires_grad_(), w = torch::randn({o, c, 3, 3}).requires_grad_(),
       b = torch::randn({o}).requires_grad_();
  for (auto _ : state) {
    torch::conv2d(x, w, b).sum().backward();
    x.mutable_grad() = torch::Tensor();
    w.mutable_grad() = torch::Tensor();
    b.mutable_grad() = torch::Tensor();
  }
  // forward + input gradient + weight gradient: three products of the forward's size
  state.counters["GFLOP/s"] = benchmark::Counter(3 * 2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(conv2d_fwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_fwd_bwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("OMP_NUM_THREADS");
  int threads = env ? std::atoi(env) : 2;
  torch::set_num_threads(threads > 0 ? threads : 2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("torch_threads", std::to_string(torch::get_num_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
