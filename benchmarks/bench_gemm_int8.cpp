// int8 GEMM (backend/cpu/gemm_int8.hpp) against float32, as a linear layer computes them:
// y[M, N] = x[M, K] @ W[N, K]^T + b. int8: the activations quantized inside the call (uint8,
// affine), int8 weights packed once, int32 sums, the dequantizing epilogue fused; every kernel
// family this CPU runs. float32: nabla's GEMM dispatcher (OpenBLAS when built with it), bias
// added by accumulating onto it. Shapes: MNIST's fc1 (9216 -> 128) at batch 1 and 64, GPT-2's
// MLP (768 -> 3072) at 64 tokens, and square 1024s. GOP/s = 2 M N K / wall time.
//   OMP_NUM_THREADS=2 build/release/benchmarks/nabla_bench_gemm_int8
// LibTorch's fbgemm quantized linear is not compared yet.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nabla/backend/cpu/gemm.hpp>
#include <nabla/backend/cpu/gemm_int8.hpp>

namespace {

using nabla::cpu::Int8Isa;

struct Problem {
  Problem(int64_t m, int64_t n, int64_t k)
      : M(m), N(n), K(k), x(size_t(m * k)), wf(size_t(n * k)), bias(size_t(n)), scale(size_t(n)), y(size_t(m * n)),
        w8(size_t(n * k)) {
    std::mt19937 g(7);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (auto& v : x) v = d(g);
    for (auto& v : wf) v = d(g) * 0.05f;
    for (auto& v : bias) v = d(g);
    for (int64_t r = 0; r < n; ++r) {  // symmetric per-channel quantization of the weights
      float amax = 0;
      for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::abs(wf[size_t(r * k + c)]));
      scale[size_t(r)] = amax / 127.0f;
      for (int64_t c = 0; c < k; ++c)
        w8[size_t(r * k + c)] = static_cast<int8_t>(std::nearbyint(wf[size_t(r * k + c)] / scale[size_t(r)]));
    }
    packed = nabla::cpu::pack_int8(w8.data(), n, k);
  }
  int64_t M, N, K;
  std::vector<float> x, wf, bias, scale, y;
  std::vector<int8_t> w8;
  nabla::cpu::PackedInt8 packed;
};

void int8_linear(benchmark::State& state, int64_t M, int64_t N, int64_t K, Int8Isa isa) {
  if (isa > nabla::cpu::best_int8_isa()) {
    state.SkipWithError("this CPU lacks the kernel family");
    return;
  }
  Problem p(M, N, K);
  nabla::cpu::Int8Epilogue e;
  e.a_scale = 2.0f / 255.0f, e.a_zero_point = 128, e.b_scale = p.scale.data(), e.bias = p.bias.data();
  for (auto _ : state) {
    nabla::cpu::gemm_int8(M, p.x.data(), K, p.packed, e, p.y.data(), N, isa);
    benchmark::DoNotOptimize(p.y.data());
  }
  state.counters["GOP/s"] = benchmark::Counter(2.0 * double(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}

void f32_linear(benchmark::State& state, int64_t M, int64_t N, int64_t K) {
  Problem p(M, N, K);
  for (auto _ : state) {
    for (int64_t i = 0; i < M; ++i) std::copy(p.bias.begin(), p.bias.end(), p.y.begin() + i * N);
    nabla::cpu::gemm<float>(M, N, K, p.x.data(), K, 1, p.wf.data(), 1, K, p.y.data(), N, 1, true);
    benchmark::DoNotOptimize(p.y.data());
  }
  state.counters["GOP/s"] = benchmark::Counter(2.0 * double(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  const struct {
    const char* name;
    int64_t M, N, K;
  } shapes[] = {{"mnist_fc1_b1", 1, 128, 9216}, {"mnist_fc1_b64", 64, 128, 9216}, {"gpt2_mlp_t64", 64, 3072, 768},
                {"square_1024", 1024, 1024, 1024}};
  for (const auto& s : shapes) {
    benchmark::RegisterBenchmark((std::string(s.name) + "/f32").c_str(), f32_linear, s.M, s.N, s.K)->UseRealTime();
    for (Int8Isa isa : {Int8Isa::avx512_vnni, Int8Isa::avx2, Int8Isa::scalar}) {
      if (isa == Int8Isa::scalar && s.M * s.N * s.K > (int64_t{1} << 27)) continue;  // minutes per run
      benchmark::RegisterBenchmark((std::string(s.name) + "/int8_" + nabla::cpu::int8_isa_name(isa)).c_str(), int8_linear,
                                   s.M, s.N, s.K, isa)
          ->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
