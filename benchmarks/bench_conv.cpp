// conv2d on the CPU, paired case for case with compare/bench_conv_libtorch.cpp (same names):
// the two conv layers of PyTorch's MNIST example at batch 64, forward alone and forward +
// backward (input, weight and bias gradients). Run with OMP_NUM_THREADS set.
#include <benchmark/benchmark.h>

#include <cstdint>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

// args: in_channels, out_channels, input size (square), kernel 3, stride 1, no padding
void conv2d_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}), w = nb::randn({o, c, 3, 3}), b = nb::randn({o});
  nb::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(nb::conv2d(x, w, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void conv2d_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}).requires_grad_(), w = nb::randn({o, c, 3, 3}).requires_grad_(),
       b = nb::randn({o}).requires_grad_();
  for (auto _ : state) {
    nb::conv2d(x, w, b).sum().backward();
    x.mutable_grad() = nb::Tensor();
    w.mutable_grad() = nb::Tensor();
    b.mutable_grad() = nb::Tensor();
  }
  // forward + input gradient + weight gradient: three products of the forward's size
  state.counters["GFLOP/s"] = benchmark::Counter(3 * 2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// The composite path (pad, window gather, one broadcast matmul), which conv2d used before the
// fused kernel: the A/B the issue asks for (im2col per image + GEMM vs whole-batch columns).
void conv2d_composite_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}), w = nb::randn({o, c, 3, 3}), b = nb::randn({o});
  nb::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(nb::conv2d_reference(x, w, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void conv2d_composite_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}).requires_grad_(), w = nb::randn({o, c, 3, 3}).requires_grad_(),
       b = nb::randn({o}).requires_grad_();
  for (auto _ : state) {
    nb::conv2d_reference(x, w, b).sum().backward();
    x.mutable_grad() = nb::Tensor();
    w.mutable_grad() = nb::Tensor();
    b.mutable_grad() = nb::Tensor();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(3 * 2.0 * 64 * o * c * 9 * (hw - 2) * (hw - 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(conv2d_composite_fwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_composite_fwd_bwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_fwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_fwd_bwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

