// conv2d on the CPU, paired case for case with compare/bench_conv_libtorch.cpp (same names):
// the two conv layers of PyTorch's MNIST example at batch 64, forward alone and forward +
// backward (input, weight and bias gradients). Run with OMP_NUM_THREADS set.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

// The fused path (nb::conv2d: im2col per image + GEMM) and the composite it replaced
// (nb::conv2d_reference: pad, window gather, one broadcast matmul): the A/B the layers issue
// asks for. Names without "composite" match compare/bench_conv_libtorch.cpp.
struct Fused {
  static nb::Tensor run(const nb::Tensor& x, const nb::Tensor& w, const nb::Tensor& b) { return nb::conv2d(x, w, b); }
};
struct Composite {
  static nb::Tensor run(const nb::Tensor& x, const nb::Tensor& w, const nb::Tensor& b) {
    return nb::conv2d_reference(x, w, b);
  }
};

// FLOPs of one forward: args are in_channels, out_channels, input size (square); kernel 3,
// stride 1, no padding, batch 64.
double forward_flops(const benchmark::State& state) {
  const double c = double(state.range(0)), o = double(state.range(1)), out = double(state.range(2) - 2);
  return 2.0 * 64 * o * c * 9 * out * out;
}

template <class Conv>
void conv_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}), w = nb::randn({o, c, 3, 3}), b = nb::randn({o});
  nb::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(Conv::run(x, w, b));
  state.counters["GFLOP/s"] = benchmark::Counter(forward_flops(state), benchmark::Counter::kIsIterationInvariantRate);
}

template <class Conv>
void conv_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2);
  auto x = nb::randn({64, c, hw, hw}).requires_grad_(), w = nb::randn({o, c, 3, 3}).requires_grad_(),
       b = nb::randn({o}).requires_grad_();
  for (auto _ : state) {
    Conv::run(x, w, b).sum().backward();
    x.mutable_grad() = nb::Tensor();
    w.mutable_grad() = nb::Tensor();
    b.mutable_grad() = nb::Tensor();
  }
  // forward + input gradient + weight gradient: three products of the forward's size
  state.counters["GFLOP/s"] =
      benchmark::Counter(3 * forward_flops(state), benchmark::Counter::kIsIterationInvariantRate);
}

// ResNet-18's 3x3 convolutions at CIFAR size (padding 1, batch 64, no bias); args are
// in_channels, out_channels, input size, stride. The late layers (8x8 and 4x4 maps, 2304-4608
// long windows) are where a product per image gets skinny.
double resnet_flops(const benchmark::State& state) {
  const double c = double(state.range(0)), o = double(state.range(1)), out = double(state.range(2) / state.range(3));
  return 2.0 * 64 * o * c * 9 * out * out;
}

void resnet_conv_fwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2), stride = state.range(3);
  auto x = nb::randn({64, c, hw, hw}), w = nb::randn({o, c, 3, 3});
  nb::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(nb::conv2d(x, w, {}, stride, 1));
  state.counters["GFLOP/s"] = benchmark::Counter(resnet_flops(state), benchmark::Counter::kIsIterationInvariantRate);
}

void resnet_conv_fwd_bwd(benchmark::State& state) {
  const int64_t c = state.range(0), o = state.range(1), hw = state.range(2), stride = state.range(3);
  auto x = nb::randn({64, c, hw, hw}).requires_grad_(), w = nb::randn({o, c, 3, 3}).requires_grad_();
  for (auto _ : state) {
    nb::conv2d(x, w, {}, stride, 1).sum().backward();
    x.mutable_grad() = nb::Tensor();
    w.mutable_grad() = nb::Tensor();
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

void conv2d_fwd(benchmark::State& s) { conv_fwd<Fused>(s); }
void conv2d_fwd_bwd(benchmark::State& s) { conv_fwd_bwd<Fused>(s); }
void conv2d_composite_fwd(benchmark::State& s) { conv_fwd<Composite>(s); }
void conv2d_composite_fwd_bwd(benchmark::State& s) { conv_fwd_bwd<Composite>(s); }

BENCHMARK(conv2d_composite_fwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_composite_fwd_bwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_fwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(conv2d_fwd_bwd)->Args({1, 32, 28})->Args({32, 64, 26})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

