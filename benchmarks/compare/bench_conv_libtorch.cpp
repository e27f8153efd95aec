// The LibTorch side of bench_conv.cpp: the same cases under the same names with torch::conv2d.
// Threads: torch::set_num_threads(OMP_NUM_THREADS, default 2).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

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

// bench_conv.cpp's ResNet-18 cases (3x3, padding 1, batch 64, no bias; c, o, size, stride).
double resnet_flops(const benchmark::State& state) {
  const double c = double(state.range(0)), o = double(state.range(1)), out = double(state.range(2) / state.range(3));
  return 2.0 * 64 * o * c * 9 * out * out;
}

void resnet_conv_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2), stride = state.range(3);
  auto x = torch::randn({64, c, hw, hw}), w = torch::randn({o, c, 3, 3});
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(torch::conv2d(x, w, {}, stride, 1));
  state.counters["GFLOP/s"] = benchmark::Counter(resnet_flops(state), benchmark::Counter::kIsIterationInvariantRate);
}

void resnet_conv_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2), stride = state.range(3);
  auto x = torch::randn({64, c, hw, hw}).requires_grad_(), w = torch::randn({o, c, 3, 3}).requires_grad_();
  for (auto _ : state) {
    torch::conv2d(x, w, {}, stride, 1).sum().backward();
    x.mutable_grad() = torch::Tensor();
    w.mutable_grad() = torch::Tensor();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * resnet_flops(state), benchmark::Counter::kIsIterationInvariantRate);
}

void resnet_shapes(benchmark::internal::Benchmark* b) {
  for (auto a : std::vector<std::vector<int64_t>>{
           {64, 64, 32, 1}, {64, 128, 32, 2}, {128, 128, 16, 1}, {256, 256, 8, 1}, {256, 512, 8, 2}, {512, 512, 4, 1}})
    b->Args(a);
  b->ArgNames({"c", "o", "hw", "s"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(resnet_conv_fwd)->Apply(resnet_shapes);
BENCHMARK(resnet_conv_fwd_bwd)->Apply(resnet_shapes);

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
