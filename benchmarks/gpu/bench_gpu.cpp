// nabla on the GPU: the cases of benchmarks/gpu/bench_torch.py, printed as one JSON object per
// line ({"case": ..., "seconds": ..., "metric": ..., "value": ...}) so compare.py can pair them.
// Each case runs warm-up iterations, then 5 batches of N iterations between device
// synchronisations, and reports the median batch.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

// Seconds per call: the median of 5 timed batches of `iters` calls (one batch can catch a clock
// change or a neighbour's work; the median of 5 does not move with one such batch).
double time_it(const std::function<void()>& f, int iters) {
  for (int i = 0; i < 3; ++i) f();
  nb::cuda::synchronize();
  std::vector<double> batches;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    nb::cuda::synchronize();
    batches.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters);
  }
  std::sort(batches.begin(), batches.end());
  return batches[2];
}

void report(const std::string& name, double seconds, const char* metric, double value) {
  std::printf("{\"case\": \"%s\", \"seconds\": %.9g, \"metric\": \"%s\", \"value\": %.6g}\n", name.c_str(), seconds,
              metric, value);
  std::fflush(stdout);
}

}  // namespace

int main() {
  if (!nb::cuda::is_available()) {
    std::fprintf(stderr, "nabla_bench_gpu: no CUDA device\n");
    return 1;
  }
  const nb::Device gpu = nb::Device::cuda();
  nb::NoGradGuard no_grad;
  nb::manual_seed(0);

  // ---- bandwidth-bound ops on 64M float32 (GB/s = bytes read + written / time) -------------------
  const int64_t n = int64_t{64} << 20;
  nb::Tensor x = nb::randn({n}, gpu), y = nb::randn({n}, gpu);
  const double b2 = 2.0 * n * 4, b3 = 3.0 * n * 4;
  double t = time_it([&] { (void)x.clone(); }, 20);
  report("copy_64M_f32", t, "GB/s", b2 / t / 1e9);
  t = time_it([&] { (void)(x + y); }, 20);
  report("add_64M_f32", t, "GB/s", b3 / t / 1e9);
  t = time_it([&] { (void)(x * y); }, 20);
  report("mul_64M_f32", t, "GB/s", b3 / t / 1e9);
  t = time_it([&] { (void)nb::gelu(x); }, 20);
  report("gelu_64M_f32", t, "GB/s", b2 / t / 1e9);

  // ---- reductions over rows ----------------------------------------------------------------------
  nb::Tensor m = nb::randn({8192, 8192}, gpu);
  const double mb = 8192.0 * 8192 * 4;
  t = time_it([&] { (void)m.sum(1); }, 20);
  report("sum_rows_8192x8192_f32", t, "GB/s", mb / t / 1e9);
  t = time_it([&] { (void)m.softmax(1); }, 20);
  report("softmax_rows_8192x8192_f32", t, "GB/s", 2 * mb / t / 1e9);

  // ---- matmul ------------------------------------------------------------------------------------
  for (int64_t s : {4096, 8192}) {
    const double flops = 2.0 * s * s * s;
    for (const char* kind : {"f32", "tf32", "bf16"}) {
      std::string k = kind;
      nb::DType dt = k == "bf16" ? nb::kBFloat16 : nb::kFloat32;
      nb::set_float32_matmul_precision(k == "tf32" ? "high" : "highest");
      nb::Tensor a = nb::randn({s, s}, nb::TensorOptions(dt).device(gpu));
      nb::Tensor b = nb::randn({s, s}, nb::TensorOptions(dt).device(gpu));
      t = time_it([&] { (void)nb::matmul(a, b); }, s == 4096 ? 20 : 5);
      report("matmul_" + std::to_string(s) + "_" + k, t, "TFLOP/s", flops / t / 1e12);
    }
    nb::set_float32_matmul_precision("highest");
  }

  // ---- conv2d forward + backward (cuDNN), the MNIST net's second conv and a ResNet-50 stage -----
  // TFLOP/s counts 3 x 2*N*O*C*kh*kw*Ho*Wo (forward, input gradient, weight gradient).
  struct ConvCase {
    const char* name;
    int64_t n, c, h, w, o, k, pad;
  };
  for (const ConvCase& cc : {ConvCase{"conv_mnist_64x32x26x26_k3", 64, 32, 26, 26, 64, 3, 0},
                             ConvCase{"conv_resnet_32x64x56x56_k3", 32, 64, 56, 56, 64, 3, 1},
                             ConvCase{"conv_resnet_32x256x56x56_k1", 32, 256, 56, 56, 64, 1, 0}}) {
    for (const char* kind : {"f32", "tf32", "bf16"}) {
      std::string k = kind;
      nb::DType dt = k == "bf16" ? nb::kBFloat16 : nb::kFloat32;
      nb::set_float32_matmul_precision(k == "tf32" ? "high" : "highest");
      nb::EnableGradGuard grad;
      nb::Tensor x = nb::randn({cc.n, cc.c, cc.h, cc.w}, nb::TensorOptions(dt).device(gpu)).requires_grad_();
      nb::Tensor wt = nb::randn({cc.o, cc.c, cc.k, cc.k}, nb::TensorOptions(dt).device(gpu)).requires_grad_();
      const int64_t ho = cc.h + 2 * cc.pad - cc.k + 1, wo = cc.w + 2 * cc.pad - cc.k + 1;
      nb::Tensor gy = nb::randn({cc.n, cc.o, ho, wo}, nb::TensorOptions(dt).device(gpu));
      t = time_it([&] { nb::conv2d(x, wt, nb::Tensor(), 1, cc.pad).backward(gy); }, 20);
      const double flops = 3.0 * 2 * cc.n * cc.o * cc.c * cc.k * cc.k * ho * wo;
      report(std::string(cc.name) + "_" + k + "_fwd_bwd", t, "TFLOP/s", flops / t / 1e12);
    }
    nb::set_float32_matmul_precision("highest");
  }

  // ---- host overhead per op on tiny tensors ------------------------------------------------------
  nb::Tensor u = nb::randn({4}, gpu), v = nb::randn({4}, gpu);
  t = time_it([&] { (void)(u + v); }, 20000);
  report("tiny_add_launch", t, "us/op", t * 1e6);
  {
    nb::EnableGradGuard grad;
    nb::Tensor w = nb::randn({4}, gpu).requires_grad_();
    t = time_it([&] { ((u * w).relu().sum()).backward(); }, 5000);
    report("tiny_fwd_bwd", t, "us/iter", t * 1e6);
  }
  return 0;
}
