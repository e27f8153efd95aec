// Throughput of nabla's own GEMM kernel (gemm_native) against OpenBLAS on square row-major
// problems; run with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to the same count.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include <nabla/backend/cpu/gemm.hpp>

namespace {

template <class T>
struct Problem {
  explicit Problem(int64_t n) : n(n), a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * n)) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    for (auto& x : a) x = T(d(rng));
    for (auto& x : b) x = T(d(rng));
  }
  int64_t n;
  std::vector<T> a, b, c;
};

void set_flops(benchmark::State& state, int64_t n) {
  // Reported in GFLOP/s (2*M*N*K flops per iteration).
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate,
                                                benchmark::Counter::OneK::kIs1000);
}

template <class T>
void BM_nabla_native(benchmark::State& state) {
  Problem<T> p(state.range(0));
  const int64_t n = p.n;
  for (auto _ : state) {
    nabla::cpu::gemm_native<T>(n, n, n, p.a.data(), n, 1, p.b.data(), n, 1, p.c.data(), n, 1,
                               false);
    benchmark::DoNotOptimize(p.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, n);
}

#ifdef NABLA_HAS_CBLAS
void run_blas(int64_t n, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0f, a, int(n),
              b, int(n), 0.0f, c, int(n));
}
void run_blas(int64_t n, const double* a, const double* b, double* c) {
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.0, a, int(n),
              b, int(n), 0.0, c, int(n));
}

template <class T>
void BM_openblas(benchmark::State& state) {
  Problem<T> p(state.range(0));
  for (auto _ : state) {
    run_blas(p.n, p.a.data(), p.b.data(), p.c.data());
    benchmark::DoNotOptimize(p.c.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, p.n);
}
#endif

// Wall-clock time: the work is multi-threaded, so the main thread's CPU time would flatter it.
#define NABLA_GEMM_SIZES ->Arg(256)->Arg(1024)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond)

BENCHMARK(BM_nabla_native<float>) NABLA_GEMM_SIZES;
BENCHMARK(BM_nabla_native<double>) NABLA_GEMM_SIZES;
#ifdef NABLA_HAS_CBLAS
BENCHMARK(BM_openblas<float>) NABLA_GEMM_SIZES;
BENCHMARK(BM_openblas<double>) NABLA_GEMM_SIZES;
#endif

}  // namespace
