// nabla op benchmarks, paired case for case with compare/bench_libtorch.cpp (same names):
//   tiny_*     host overhead per op on 4-element tensors (allocation, dispatch, autograd)
//   matmul     float32 GFLOP/s through nabla::matmul (OpenBLAS when found, else gemm_native)
//   *_16M      elementwise and reduction GB/s on 16M float32 elements (bytes read + written)
// Run with OMP_NUM_THREADS set; benchmarks/compare/compare.sh runs both sides in one go.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

constexpr int64_t kBig = int64_t(1) << 24;  // 16M float32 elements = 64 MiB per tensor

// ---- (a) host overhead on tiny tensors --------------------------------------------------------

void tiny_add(benchmark::State& state) {
  auto a = nb::randn({4}), b = nb::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(nb::add(a, b));
}
void tiny_mul(benchmark::State& state) {
  auto a = nb::randn({4}), b = nb::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(nb::mul(a, b));
}
void tiny_relu(benchmark::State& state) {
  auto a = nb::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(nb::relu(a));
}
void tiny_sum(benchmark::State& state) {
  auto a = nb::randn({4});
  for (auto _ : state) benchmark::DoNotOptimize(a.sum());
}
void tiny_matmul_2x2(benchmark::State& state) {
  auto a = nb::randn({2, 2}), b = nb::randn({2, 2});
  for (auto _ : state) benchmark::DoNotOptimize(nb::matmul(a, b));
}
// loss = relu(x * w).sum(); loss.backward(): three recorded nodes, one accumulated leaf gradient.
void tiny_fwd_bwd(benchmark::State& state) {
  auto x = nb::randn({4});
  auto w = nb::randn({4}).requires_grad_();
  for (auto _ : state) {
    auto loss = (x * w).relu().sum();
    loss.backward();
    w.mutable_grad() = nb::Tensor();  // like optimizer.zero_grad(set_to_none=true)
  }
}

// ---- (b) matmul GFLOP/s -------------------------------------------------------------------------

void matmul(benchmark::State& state) {
  const int64_t n = state.range(0);
  auto a = nb::randn({n, n}), b = nb::randn({n, n});
  for (auto _ : state) benchmark::DoNotOptimize(nb::matmul(a, b));
  state.counters["GFLOPS"] = benchmark::Counter(2e-9 * double(n) * double(n) * double(n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// ---- (c) bandwidth: 16M float32 -----------------------------------------------------------------

void bytes(benchmark::State& state, int64_t per_element) { state.SetBytesProcessed(int64_t(state.iterations()) * kBig * per_element); }

void add_16M(benchmark::State& state) {
  auto a = nb::randn({kBig}), b = nb::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(nb::add(a, b));
  bytes(state, 12);
}
void mul_16M(benchmark::State& state) {
  auto a = nb::randn({kBig}), b = nb::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(nb::mul(a, b));
  bytes(state, 12);
}
void exp_16M(benchmark::State& state) {
  auto a = nb::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(nb::exp(a));
  bytes(state, 8);
}
void sum_16M(benchmark::State& state) {
  auto a = nb::randn({kBig});
  for (auto _ : state) benchmark::DoNotOptimize(a.sum());
  bytes(state, 4);
}
// Rows of 4096, softmax along the last dim; one read and one write of every element.
void softmax_16M(benchmark::State& state) {
  auto a = nb::randn({kBig / 4096, 4096});
  for (auto _ : state) benchmark::DoNotOptimize(nb::softmax(a, -1));
  bytes(state, 8);
}

// ---- (d) attention: GPT-2-small-shaped heads, causal, forward + backward ------------------------
// scaled_dot_product_attention's fused flash kernels against its composite (matmul, masked
// softmax, matmul), q/k/v [8, 12, T, 64] with T = range(0).
void sdpa(benchmark::State& state, bool fused) {
  const int64_t T = state.range(0);
  auto q = nb::randn({8, 12, T, 64}).requires_grad_(), k = nb::randn({8, 12, T, 64}).requires_grad_(),
       v = nb::randn({8, 12, T, 64}).requires_grad_();
  auto g = nb::randn({8, 12, T, 64});
  nb::FusedKernelsGuard guard(fused);
  const size_t base = nb::memory_stats(nb::Device::cpu()).in_use;
  nb::reset_peak_memory_stats(nb::Device::cpu());
  for (auto _ : state) {
    nb::Tensor y = nb::scaled_dot_product_attention(q, k, v, {}, 0.0, true);
    y.backward(g);
    benchmark::DoNotOptimize(q.grad().data_ptr());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * 8 * T);  // tokens
  // tensor memory a forward + backward needed beyond its inputs (and their gradients)
  state.counters["peak_MiB"] = static_cast<double>(nb::memory_stats(nb::Device::cpu()).peak - base) / (1 << 20);
}
void sdpa_fused(benchmark::State& state) { sdpa(state, true); }
void sdpa_composite(benchmark::State& state) { sdpa(state, false); }

// Real (wall) time everywhere: the big cases run on OpenMP threads.
BENCHMARK(tiny_add)->UseRealTime();
BENCHMARK(tiny_mul)->UseRealTime();
BENCHMARK(tiny_relu)->UseRealTime();
BENCHMARK(tiny_sum)->UseRealTime();
BENCHMARK(tiny_matmul_2x2)->UseRealTime();
BENCHMARK(tiny_fwd_bwd)->UseRealTime();
BENCHMARK(matmul)->Arg(256)->Arg(1024)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(add_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(mul_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(exp_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sum_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(softmax_16M)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sdpa_fused)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(sdpa_composite)->Arg(256)->Arg(1024)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
