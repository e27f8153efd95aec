// nabla's int8 GEMM (backend/cpu/gemm_int8.hpp) next to LibTorch's quantized linear, as a linear
// layer computes them, y[M, N] = x[M, K] @ W[N, K]^T + b, float32 in and out, in one process on
// the same threads. Plain program (no Google Benchmark); benchmarks/compare/int8_linear.sh runs it.
//   nabla_int8_linear_libtorch [--threads N] [--rounds R] [--shape 0-3 (default: all four)]
//
// Rows per shape (the inputs, weights and int8 weight values are the same for every row):
//   nabla f32           nn::functional::linear (nabla's GEMM dispatcher, OpenBLAS when built with it)
//   nabla int8 static   cpu::gemm_int8 with a fixed activation scale (quantizing x inside the call)
//   nabla int8 dynamic  the same after a min/max pass over x (this program's loop, vectorized)
//                       choosing the activation scale per call, as quantized::linear_dynamic does
//   (quantization)      gemm_int8's loop quantizing x, copied here and timed alone: int8 static
//                       minus this is about the GEMM itself
//   torch f32           torch::linear
//   torch dynamic       quantized::linear_dynamic (float in, float out), per engine
//   torch static        quantize_per_tensor -> quantized::linear (quint8 out) -> dequantize, per
//                       engine; "kernel" rows time quantized::linear alone (quint8 in and out,
//                       no ratio: nabla has no such entry point)
// LibTorch 1.13 as Debian builds it has no FBGEMM (USE_FBGEMM off): its engines are ONEDNN (the
// default) and QNNPACK; the program prints what the build it runs against has.
// Weights: int8 symmetric, one scale per output channel, packed once (pack_int8 / linear_prepack).
// Each row runs in blocks of back-to-back calls (hot caches), the blocks of all rows interleaved
// over --rounds rounds, 100 ms apart (so one library's spinning pool threads do not steal the
// next row's cores); the figure is the median of all timed calls. Error: max |y - y_f32| /
// max |y_f32| against torch's float32 result. "ratio" divides a row by the nabla row it matches
// (f32 by nabla f32, dynamic by nabla int8 dynamic, static by nabla int8 static): above 1, nabla
// is faster.
// Threads: OpenMP (nabla, ATen, oneDNN) and torch::set_num_threads (also QNNPACK's pthreadpool);
// OpenBLAS is one library in the process: set to --threads around torch's float rows and to 1
// around nabla's (nabla splits the product over its own OpenMP threads).

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/native/quantized/PackedParams.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <nabla/backend/cpu/gemm_int8.hpp>
#include <nabla/nabla.hpp>

#if defined(NABLA_OPENBLAS)
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace {

using Packed = c10::intrusive_ptr<LinearPackedParamsBase>;

void set_blas_threads([[maybe_unused]] int n) {
#if defined(NABLA_OPENBLAS)
  openblas_set_num_threads(n);
#endif
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The quantized ops, found through the dispatcher (LibTorch 1.13 has no C++ wrappers for them).
struct QOps {
  c10::TypedOperatorHandle<Packed(at::Tensor, c10::optional<at::Tensor>)> prepack =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "").typed<Packed(at::Tensor, c10::optional<at::Tensor>)>();
  c10::TypedOperatorHandle<at::Tensor(at::Tensor, const Packed&, double, int64_t)> linear =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear", "").typed<at::Tensor(at::Tensor, const Packed&, double, int64_t)>();
  c10::TypedOperatorHandle<at::Tensor(at::Tensor, const Packed&, bool)> dynamic =
      c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "").typed<at::Tensor(at::Tensor, const Packed&, bool)>();
};

struct Row {
  Row(std::string n, int base, std::function<void()> su, std::function<void()> r, std::function<std::vector<float>()> o)
      : name(std::move(n)), baseline(base), setup(std::move(su)), run(std::move(r)), out(std::move(o)) {}
  std::string name;
  int baseline = -1;                        // index of the row the ratio divides by
  std::function<void()> setup;              // engine / BLAS threads, before each block
  std::function<void()> run;                // one call; keeps its output for the check
  std::function<std::vector<float>()> out;  // the last output as float
  std::vector<double> samples;
  double err = 0;
  bool ok = true;
  std::string failure;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// min and max of p[0, n) and 0, 16 lanes at a time (GCC vector extension: vminps / vmaxps, as
// at::aminmax is vectorized)
void minmax(const float* p, int64_t n, float& lo_out, float& hi_out) {
  typedef float v16 __attribute__((vector_size(64)));
  v16 lo = {}, hi = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16 v;
    std::memcpy(&v, p + i, sizeof v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  float l = 0, h = 0;
  for (int j = 0; j < 16; ++j) l = std::min(l, lo[j]), h = std::max(h, hi[j]);
  for (; i < n; ++i) l = std::min(l, p[i]), h = std::max(h, p[i]);
  lo_out = l, hi_out = h;
}

// PyTorch's choose_qparams for quint8: the range widened to hold 0, zero point rounded and clamped.
void choose_qparams(float lo, float hi, float& scale, int32_t& zp) {
  lo = std::min(lo, 0.0f), hi = std::max(hi, 0.0f);
  scale = (hi - lo) / 255.0f;
  if (scale == 0.0f) scale = 1.0f;
  zp = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / scale), 0.0f, 255.0f));
}

// CPU seconds the whole machine and this process have spent so far: during a shape, their
// difference over (wall time x cores) is the share of the cores other processes took.
struct CpuClock {
  double machine = 0, self = 0, wall = 0;
  static CpuClock now() {
    CpuClock c;
    std::ifstream f("/proc/stat");
    std::string cpu;
    long long v[8] = {};
    f >> cpu;
    for (long long& x : v) f >> x;
    const double tick = double(sysconf(_SC_CLK_TCK));
    c.machine = double(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tick;  // user nice system irq softirq steal
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    c.self = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    c.wall = now_ms() / 1e3;
    return c;
  }
};
double others_share(const CpuClock& a, const CpuClock& b) {
  const double cores = double(sysconf(_SC_NPROCESSORS_ONLN));
  return std::max(0.0, ((b.machine - a.machine) - (b.self - a.self)) / ((b.wall - a.wall) * cores));
}

struct Shape {
  const char* label;
  int64_t M, K, N;
};

void run_shape(const Shape& s, const QOps& q, int threads, int rounds, const std::vector<at::QEngine>& engines) {
  const int64_t M = s.M, K = s.K, N = s.N;
  // ---- the data: x in [-1, 1], W small, b in [-1, 1]; int8 weights symmetric per channel
  std::mt19937 g(7);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(M * K)), w(static_cast<size_t>(N * K)), b(static_cast<size_t>(N)),
      wscale(static_cast<size_t>(N));
  std::vector<int8_t> w8(static_cast<size_t>(N * K));
  for (auto& v : x) v = d(g);
  for (auto& v : w) v = d(g) * 0.05f;
  for (auto& v : b) v = d(g);
  for (int64_t n = 0; n < N; ++n) {
    float amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(w[size_t(n * K + k)]));
    wscale[size_t(n)] = amax / 127.0f;
    for (int64_t k = 0; k < K; ++k)
      w8[size_t(n * K + k)] = static_cast<int8_t>(std::nearbyint(w[size_t(n * K + k)] / wscale[size_t(n)]));
  }

  // nabla
  nabla::Tensor nx = nabla::from_vector(x, {M, K}), nw = nabla::from_vector(w, {N, K}), nb = nabla::from_vector(b, {N});
  const nabla::cpu::PackedInt8 packed = nabla::cpu::pack_int8(w8.data(), N, K);
  float fixed_scale = 0;
  int32_t fixed_zp = 0;
  {
    auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    choose_qparams(*lo, *hi, fixed_scale, fixed_zp);  // "calibrated" once, on this x
  }
  // torch
  torch::Tensor tx = torch::from_blob(x.data(), {M, K}, torch::kFloat32).clone();
  torch::Tensor tw = torch::from_blob(w.data(), {N, K}, torch::kFloat32).clone();
  torch::Tensor tb = torch::from_blob(b.data(), {N}, torch::kFloat32).clone();
  torch::Tensor tw8 = torch::from_blob(w8.data(), {N, K}, torch::kInt8).clone();
  torch::Tensor tscale = torch::from_blob(wscale.data(), {N}, torch::kFloat32).to(torch::kFloat64);
  torch::Tensor qw = at::_make_per_channel_quantized_tensor(tw8, tscale, torch::zeros({N}, torch::kLong), 0);
  torch::Tensor ref = torch::linear(tx, tw, tb);  // the reference every row is checked against
  float out_scale = 0;
  int32_t out_zp = 0;
  choose_qparams(ref.min().item<float>(), ref.max().item<float>(), out_scale, out_zp);
  torch::Tensor qx = torch::quantize_per_tensor(tx, fixed_scale, fixed_zp, torch::kQUInt8);

  std::vector<Row> rows;
  auto to_vec = [](const torch::Tensor& t) {
    torch::Tensor c = t.contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  auto nabla_setup = [] { set_blas_threads(1); };
  auto torch_setup = [threads] { set_blas_threads(threads); };

  // 0: nabla f32
  auto ny = std::make_shared<nabla::Tensor>();
  rows.push_back({"nabla f32 linear", -1, nabla_setup, [=] { *ny = nabla::nn::functional::linear(nx, nw, nb); },
                  [=] { return std::vector<float>(ny->data_ptr<float>(), ny->data_ptr<float>() + M * N); }});
  // 1: nabla int8, fixed activation scale
  auto ni = std::make_shared<nabla::Tensor>();
  auto nabla_int8 = [=, &packed, &b, &wscale](float scale, int32_t zp) {
    nabla::cpu::Int8Epilogue e;
    e.a_scale = scale, e.a_zero_point = zp, e.b_scale = wscale.data(), e.bias = b.data();
    *ni = nabla::empty({M, N});
    nabla::cpu::gemm_int8(M, nx.data_ptr<float>(), K, packed, e, ni->data_ptr<float>(), N);
  };
  auto ni_out = [=] { return std::vector<float>(ni->data_ptr<float>(), ni->data_ptr<float>() + M * N); };
  rows.push_back({"nabla int8 static (fixed act. scale)", -1, nabla_setup, [=] { nabla_int8(fixed_scale, fixed_zp); }, ni_out});
  // 2: nabla int8, min/max per call
  rows.push_back({"nabla int8 dynamic (min/max per call)", -1, nabla_setup,
                  [=] {
                    const float* p = nx.data_ptr<float>();
                    float lo = 0, hi = 0;
#pragma omp parallel for reduction(min : lo) reduction(max : hi) if (M * K > 32768)
                    for (int64_t m = 0; m < M; ++m) {
                      float l, h;
                      minmax(p + m * K, K, l, h);
                      lo = std::min(lo, l), hi = std::max(hi, h);
                    }
                    float scale;
                    int32_t zp;
                    choose_qparams(lo, hi, scale, zp);
                    nabla_int8(scale, zp);
                  },
                  ni_out});
  // 3: what gemm_int8 spends quantizing x (the row function it calls, one thread per share of the
  // rows as there): int8 static minus this ~ the GEMM
  auto qa = std::make_shared<std::vector<uint8_t>>();
  rows.push_back({"(nabla: gemm_int8's quantization of x alone)", -1, nabla_setup,
                  [=, &packed] {
                    const float* p = nx.data_ptr<float>();
                    *qa = std::vector<uint8_t>(static_cast<size_t>(M * packed.Kp), 0);
                    uint8_t* o = qa->data();
                    const float inv = 1.0f / fixed_scale;
                    const int64_t Kp = packed.Kp;
                    nabla::cpu::parallel_for(0, M, std::max<int64_t>(1, 32768 / K), [&](int64_t m0, int64_t m1) {
                      for (int64_t m = m0; m < m1; ++m) nabla::cpu::quantize_u8_row(p + m * K, K, inv, fixed_zp, o + m * Kp);
                    });
                  },
                  [] { return std::vector<float>(); }});
  // 4: torch f32
  auto ty = std::make_shared<torch::Tensor>();
  rows.push_back({"torch f32 linear", 0, torch_setup, [=] { *ty = torch::linear(tx, tw, tb); }, [=] { return to_vec(*ty); }});
  // torch quantized, per engine
  for (at::QEngine eng : engines) {
    const std::string en = c10::toString(eng);
    auto setup = [threads, eng] {
      set_blas_threads(threads);
      at::globalContext().setQEngine(eng);
    };
    at::globalContext().setQEngine(eng);
    // One packed weight per row: ONEDNN's packed weight, once run by quantized::linear, gives NaN
    // from quantized::linear_dynamic (seen on this build), so the rows never share one.
    Packed pd, ps, pk;
    std::string failure;
    try {
      pd = q.prepack.call(qw, tb), ps = q.prepack.call(qw, tb), pk = q.prepack.call(qw, tb);
    } catch (const std::exception& ex) {
      failure = first_line(ex.what());
    }
    auto yd = std::make_shared<torch::Tensor>(), ys = std::make_shared<torch::Tensor>(), yk = std::make_shared<torch::Tensor>();
    Row dyn{"torch dynamic int8 [" + en + "]", 2, setup, [=] { *yd = q.dynamic.call(tx, pd, false); }, [=] { return to_vec(*yd); }};
    Row st{"torch static int8 [" + en + "] f32 in/out", 1, setup,
           [=] {
             *ys = q.linear.call(torch::quantize_per_tensor(tx, fixed_scale, fixed_zp, torch::kQUInt8), ps, out_scale, out_zp)
                       .dequantize();
           },
           [=] { return to_vec(*ys); }};
    Row kern{"torch static int8 [" + en + "] kernel (quint8 in/out)", -1, setup, [=] { *yk = q.linear.call(qx, pk, out_scale, out_zp); }, [=] { return to_vec(yk->dequantize()); }};
    for (Row* r : {&dyn, &st, &kern}) {
      if (!failure.empty()) r->ok = false, r->failure = "prepack: " + failure;
      rows.push_back(std::move(*r));
    }
  }

  // ---- check (after a warm-up) and size each row's block of calls to about 20 ms
  c10::InferenceMode inference;
  nabla::NoGradGuard no_grad;
  const std::vector<float> want = to_vec(ref);
  double want_max = 0;
  for (float v : want) want_max = std::max(want_max, double(std::abs(v)));
  // max |got - want| / max |want|; NaN when an element is NaN; -1 for a row with no output
  auto error_of = [&](const Row& r) {
    const std::vector<float> got = r.out();
    if (got.empty()) return -1.0;
    double e = 0;
    bool nan = got.size() != want.size();
    for (size_t j = 0; !nan && j < got.size(); ++j) {
      const double diff = std::abs(double(got[j]) - double(want[j]));
      nan = std::isnan(diff);
      e = std::max(e, diff);
    }
    return nan ? double(NAN) : e / want_max;
  };
  std::vector<int> block(rows.size(), 1);
  for (size_t i = 0; i < rows.size(); ++i) {
    Row& r = rows[i];
    if (!r.ok) continue;
    try {
      r.setup();
      for (int w = 0; w < 3; ++w) r.run();
      r.err = error_of(r);
      const double t0 = now_ms();
      r.run();
      const double t = std::max(now_ms() - t0, 1e-3);
      block[i] = std::clamp(static_cast<int>(20.0 / t), 1, 400);
    } catch (const std::exception& ex) {
      r.ok = false, r.failure = first_line(ex.what());
    }
  }
  // ---- interleaved rounds
  const CpuClock start = CpuClock::now();
  for (int round = 0; round < rounds; ++round)
    for (size_t i = 0; i < rows.size(); ++i) {
      Row& r = rows[i];
      if (!r.ok) continue;
      r.setup();
      // a pause first: the previous row's spinning thread pools (OpenMP, OpenBLAS, pthreadpool) go to sleep
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      r.run();  // back in cache after the other rows
      for (int c = 0; c < block[i]; ++c) {
        const double t0 = now_ms();
        r.run();
        r.samples.push_back(now_ms() - t0);
      }
    }
  const double others = others_share(start, CpuClock::now());
  // the last result of each row, checked again: the larger error is the one shown
  for (Row& r : rows)
    if (r.ok && r.err >= 0) {
      const double e = error_of(r);
      if (std::isnan(e) || e > r.err) r.err = e;
    }

  // ---- table
  std::printf("\n%s: M=%lld K=%lld N=%lld  (%.1f MFLOP); other processes took %.0f%% of the cores meanwhile%s\n", s.label,
              (long long)M, (long long)K, (long long)N, 2.0 * double(M * N * K) / 1e6, 100 * others,
              others > 0.05 ? " (NOISY)" : "");
  std::printf("  %-2s %-50s %10s %9s %8s %14s %10s %6s\n", "#", "row", "median ms", "min ms", "GOP/s", "ratio (row/#)", "max err",
              "calls");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    if (!r.ok) {
      std::printf("  %-2zu %-50s  unavailable: %s\n", i, r.name.c_str(), r.failure.c_str());
      continue;
    }
    const double ms = median(r.samples);
    char ratio[32] = "";
    if (r.baseline >= 0 && rows[size_t(r.baseline)].ok)
      std::snprintf(ratio, sizeof ratio, "%.2f (/%d)", ms / median(rows[size_t(r.baseline)].samples), r.baseline);
    char err[32] = "-";
    if (std::isnan(r.err)) std::snprintf(err, sizeof err, "NaN");
    else if (r.err >= 0) std::snprintf(err, sizeof err, "%.2e", r.err);
    std::printf("  %-2zu %-50s %10.4f %9.4f %8.1f %14s %10s %6zu%s\n", i, r.name.c_str(), ms,
                *std::min_element(r.samples.begin(), r.samples.end()), 2.0 * double(M * N * K) / (ms * 1e6), ratio, err,
                r.samples.size(), std::isnan(r.err) || r.err > 0.05 ? "  WRONG RESULT" : "");
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, rounds = 7, only = -1;
  if (const char* e = std::getenv("OMP_NUM_THREADS")) threads = std::max(1, std::atoi(e));
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--shape")) only = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--rounds R] [--shape 0-3]\n", argv[0]);
      return 2;
    }
  }
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  torch::set_num_threads(threads);

  std::printf("cpu:            %s\n", cpu_model().c_str());
  std::printf("threads:        %d (nabla OpenMP %d, torch intra-op %d), rounds %d\n", threads,
#ifdef _OPENMP
              omp_get_max_threads(),
#else
              1,
#endif
              torch::get_num_threads(), rounds);
  {
    std::ifstream la("/proc/loadavg");
    std::string l1;
    la >> l1;
    std::printf("load average:   %s (1 min, at start; other processes share these cores when it exceeds 0)\n", l1.c_str());
  }
  std::printf("nabla int8 isa: %s\n", nabla::cpu::int8_isa_name(nabla::cpu::best_int8_isa()));
  std::printf("torch:          %s, default quantized engine %s, supported:", TORCH_VERSION,
              c10::toString(at::globalContext().qEngine()).c_str());
  std::vector<at::QEngine> engines;
  for (at::QEngine e : at::globalContext().supportedQEngines()) {
    std::printf(" %s", c10::toString(e).c_str());
    if (e != at::QEngine::NoQEngine) engines.push_back(e);
  }
  std::printf("\n");
  const bool fbgemm_in_config = at::show_config().find("USE_FBGEMM") != std::string::npos;
  try {
    at::globalContext().setQEngine(at::QEngine::FBGEMM);
    std::printf("fbgemm:         setQEngine(FBGEMM) accepted\n");
    if (std::find(engines.begin(), engines.end(), at::QEngine::FBGEMM) == engines.end()) engines.push_back(at::QEngine::FBGEMM);
  } catch (const std::exception& ex) {
    std::printf("fbgemm:         not in this build (USE_FBGEMM %s in show_config); setQEngine(FBGEMM): %s\n",
                fbgemm_in_config ? "present" : "absent", first_line(ex.what()).c_str());
  }
  const at::QEngine default_engine = engines.empty() ? at::QEngine::NoQEngine : at::globalContext().qEngine();
  // the default engine first
  std::stable_sort(engines.begin(), engines.end(), [&](at::QEngine a, at::QEngine b) {
    return (a == default_engine) > (b == default_engine);
  });
  if (engines.empty()) std::printf("torch has no quantized engine: only the float rows run\n");

  const Shape shapes[] = {{"MNIST fc1, batch 64", 64, 9216, 128},
                          {"MNIST fc1, batch 1", 1, 9216, 128},
                          {"GPT-2 MLP up, 64 tokens", 64, 768, 3072},
                          {"square", 1024, 1024, 1024}};
  std::unique_ptr<QOps> q;
  try {
    q = std::make_unique<QOps>();
  } catch (const std::exception& ex) {
    std::printf("quantized ops not registered: %s\n", first_line(ex.what()).c_str());
    return 1;
  }
  for (int i = 0; i < 4; ++i)
    if (only < 0 || only == i) run_shape(shapes[i], *q, threads, rounds, engines);
  return 0;
}
