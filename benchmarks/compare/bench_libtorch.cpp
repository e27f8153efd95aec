// The LibTorch side of bench_ops.cpp: the same cases under the same names, with torch:: ops, so
// compare.sh can pair them up. Threads: torch::set_num_threads(OMP_NUM_THREADS, default 2).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>

namespace {

constexpr int64_t kBig = int64_t(1) << 24;

// ---- (a) host overhead on tiny tensors --------------------------------------------------------

void tiny_add(benchmark::State& state) {
  auto a = torch::randn({4}), b = torch::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(torch::add(a, b));
}
void tiny_mul(benchmark::State& state) {
  auto a = torch::randn({4}), b = torch::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(torch::mul(a, b));
}
void tiny_relu(benchmark::State& state) {
  auto a = torch::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(torch::relu(a));
}
void tiny_sum(benchmark::State& state) {
  auto a = torch::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(a.sum());
}
void tiny_matmul_2x2(benchmark::State& state) {
  auto a = torch::randn({2, 2}), b = torch::randn({2, 2});
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(a, b));
}
void tiny_fwd_bwd(benchmark::State& state) {
  auto x = torch::randn({4});
  auto w = torch::randn({4}).requires_grad_();
  for (auto _ : state) {
    auto loss = (x * w).relu().sum();
    loss.backward();
    w.mutable_grad().reset();  // zero_grad(set_to_none=true)
  }
}

// ---- (b) matmul GFLOP/s -------------------------------------------------------------------------

void matmul(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(a, b));
  state.counters["GFLOPS"] = benchmark::Counter(2e-9 * double(n) * double(n) * double(n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// bfloat16 and float32 at the sizes of bench_gemm_bf16.cpp (nabla's matmul_bf16 / f32 cases), for
// the nabla : LibTorch ratio of the CPU bf16 GEMM.
void matmul_dtype(benchmark::State& state, torch::Dtype dt) {
  const int64_t n = state.range(0);
  auto a = torch::randn({n, n}).to(dt), b = torch::randn({n, n}).to(dt);
  for (auto _ : state) benchmark::DoNotOptimize(torch::matmul(a, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * double(n) * double(n) * double(n),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
void matmul_bf16(benchmark::State& state) { matmul_dtype(state, torch::kBFloat16); }
void matmul_f32(benchmark::State& state) { matmul_dtype(state, torch::kFloat32); }

// ---- (c) bandwidth: 16M float32 -----------------------------------------------------------------

void bytes(benchmark::State& state, int64_t per_element) { state.SetBytesProcessed(int64_t(state.iterations()) * kBig * per_element); }

void add_16M(benchmark::State& state) {
  auto a = torch::randn({kBig}), b = torch::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(torch::add(a, b));
  bytes(state, 12);
}
void mul_16M(benchmark::State& state) {
  auto a = torch::randn({kBig}), b = torch::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(torch::mul(a, b));
  bytes(state, 12);
}
void exp_16M(benchmark::State& state) {
  auto a = torch::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(torch::exp(a));
  bytes(state, 8);
}
void sum_16M(benchmark::State& state) {
  auto a = torch::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(a.sum());
  bytes(state, 4);
}
void softmax_16M(benchmark::State& state) {
  auto a = torch::randn({kBig / 4096, 4096});
  for (auto _ : state) benchmark::DoNotOptimize(torch::softmax(a, -1));
  bytes(state, 8);
}

BENCHMARK(tiny_add)->UseRealTime();
BENCHMARK(tiny_mul)->UseRealTime();
BENCHMARK(tiny_relu)->UseRealTime();
BENCHMARK(tiny_sum)->UseRealTime();
BENCHMARK(tiny_matmul_2x2)->UseRealTime();
BENCHMARK(tiny_fwd_bwd)->UseRealTime();
BENCHMARK(matmul)->Arg(256)->Arg(1024)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(matmul_bf16)->Arg(1024)->Arg(2048)->Arg(4096)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(matmul_f32)->Arg(1024)->Arg(2048)->Arg(4096)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(add_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(mul_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(exp_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sum_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(softmax_16M)->UseRealTime()->Unit(benchmark::kMillisecond);

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
