// bfloat16 GEMM throughput (gemm_bf16.hpp) on square row-major problems, next to float32 in the
// same process: every bf16 path this CPU runs (AMX / AVX512-BF16 / the widening AVX-512, AVX2 and
// scalar paths), nabla::matmul on bf16 tensors (the op, as a user calls it), and float32 through
// nabla's own kernel (gemm_native) and through the normal dispatcher (gemm: OpenBLAS when built
// with it). GFLOP/s = 2 n^3 / wall time. Cases are registered size by size, so the figures to
// compare ran seconds apart. Run with OMP_NUM_THREADS (and OPENBLAS_NUM_THREADS) set, e.g.
//   OMP_NUM_THREADS=1 build/benchmarks/nabla_bench_gemm_bf16
// The LibTorch side (torch::matmul in bf16 and float32) is compare/bench_libtorch.cpp's
// matmul_bf16 / matmul_f32.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nabla/backend/cpu/gemm.hpp>
#include <nabla/backend/cpu/gemm_bf16.hpp>
#include <nabla/nabla.hpp>

namespace {

namespace nb = nabla;
using nb::BFloat16;
using nb::cpu::gemm_detail::Bf16Isa;

struct Problem {
  explicit Problem(int64_t n) : n(n), a(size_t(n * n)), b(size_t(n * n)), fa(a.size()), fb(b.size()), c(a.size()), fc(a.size()) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (size_t i = 0; i < a.size(); ++i) a[i] = BFloat16(d(rng)), fa[i] = float(a[i]);
    for (size_t i = 0; i < b.size(); ++i) b[i] = BFloat16(d(rng)), fb[i] = float(b[i]);
  }
  int64_t n;
  std::vector<BFloat16> a, b;
  std::vector<float> fa, fb;
  std::vector<BFloat16> c;
  std::vector<float> fc;
};

void set_flops(benchmark::State& state, int64_t n) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::OneK::kIs1000);
}

void bf16_path(benchmark::State& state, Bf16Isa isa, int64_t n) {
  Problem p(n);
  for (auto _ : state) {
    nb::cpu::gemm_detail::gemm_bf16_isa<BFloat16>(isa, n, n, n, p.a.data(), n, 1, p.b.data(), n, 1, p.c.data(), n, 1,
                                                   false);
    benchmark::DoNotOptimize(p.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

void bf16_matmul_op(benchmark::State& state, int64_t n) {
  nb::manual_seed(42);
  nb::Tensor a = nb::randn({n, n}).to(nb::kBFloat16), b = nb::randn({n, n}).to(nb::kBFloat16);
  for (auto _ : state) benchmark::DoNotOptimize(nb::matmul(a, b));
  set_flops(state, n);
}

void f32_native(benchmark::State& state, int64_t n) {
  Problem p(n);
  for (auto _ : state) {
    nb::cpu::gemm_native<float>(n, n, n, p.fa.data(), n, 1, p.fb.data(), n, 1, p.fc.data(), n, 1, false);
    benchmark::DoNotOptimize(p.fc.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

void f32_dispatch(benchmark::State& state, int64_t n) {
  Problem p(n);
  for (auto _ : state) {
    nb::cpu::gemm<float>(n, n, n, p.fa.data(), n, 1, p.fb.data(), n, 1, p.fc.data(), n, 1, false);
    benchmark::DoNotOptimize(p.fc.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const Bf16Isa best = nb::cpu::gemm_detail::best_bf16_isa();
  benchmark::AddCustomContext("bf16_dispatch", nb::cpu::gemm_detail::name(best));
#ifdef NABLA_HAS_CBLAS
  benchmark::AddCustomContext("f32_dispatch", "CBLAS (OpenBLAS) for row-major layouts");
#else
  benchmark::AddCustomContext("f32_dispatch", "gemm_native (no CBLAS in this build)");
#endif
  // Wall-clock time: the work is multi-threaded, so the main thread's CPU time would flatter it.
  auto add = [](const std::string& name, auto fn) {
    benchmark::RegisterBenchmark(name.c_str(), fn)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  for (int64_t n : {1024, 2048, 4096}) {
    const std::string size = "/" + std::to_string(n);
    for (int i = int(best); i >= 0; --i) {
      const Bf16Isa isa = Bf16Isa(i);
      if (isa == Bf16Isa::scalar && n > 1024) continue;  // minutes per product
      add(std::string("bf16/") + nb::cpu::gemm_detail::name(isa) + size,
          [isa, n](benchmark::State& s) { bf16_path(s, isa, n); });
    }
    add("matmul_bf16" + size, [n](benchmark::State& s) { bf16_matmul_op(s, n); });
    add("f32/gemm_native" + size, [n](benchmark::State& s) { f32_native(s, n); });
    add("f32/gemm_dispatch" + size, [n](benchmark::State& s) { f32_dispatch(s, n); });
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
