// CUDA runtime behaviour: no-GPU handling (runs everywhere), device transfers for every dtype
// and layout (also from a second host thread), out-of-memory recovery, memory statistics,
// mixed-device errors and TF32 opt-in; and the CUDA backend's fused kernels (cuDNN conv2d,
// max_pool2d, batch_norm, cuBLASLt linear, multi-tensor Adam/SGD), called through the Backend
// hooks and compared with the CPU's ops. The per-op CUDA-vs-CPU checks are the parity table's
// CUDA column.

#include <algorithm>
#include <thread>

#if defined(NABLA_HAS_CUDNN)
#include <cudnn.h>  // the algorithm enums, to name the one that ran
#endif

#include "test_util.hpp"

namespace nabla_test {
namespace {

// The CUDA slots of a fused op's kernel table for dtype dt (the test fails if there are none).
template <class Slots>
const Slots& cuda_slots(KernelTable<Slots>& table, DType dt) {
  const Slots* slots = table.find(Device::cuda(), dt);
  if (!slots) throw std::runtime_error(std::string("no CUDA kernels for ") + table.op() + " in " + dtype_name(dt));
  return *slots;
}

TEST(Cuda, WithoutAGpuEverythingElseWorksAndCudaTensorsFailClearly) {
  if (cuda::is_available()) GTEST_SKIP() << "a GPU is present; this checks the no-GPU path";
  EXPECT_EQ(cuda::device_count(), 0);
  EXPECT_EQ(cuda::memory_stats().in_use, 0u);
  cuda::synchronize();  // a no-op, not a crash
  EXPECT_TRUE(throws_with<DeviceError>([] { zeros({2}, Device::cuda()); }, {"cuda"}));
  EXPECT_TRUE(throws_with<DeviceError>([] { ones({2}).to(Device::cuda()); }, {"cuda"}));
  EXPECT_EQ((ones({2}) + 1).sum().item<float>(), 4.0f);  // the CPU is unaffected
}

TEST(Cuda, TransfersRoundTripEveryDtypeAndLayout) {
  NABLA_REQUIRE_GPU();
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kUInt8, kBool}) {
    Tensor host = (arange(24, kFloat64).view({2, 3, 4}) * 0.5).to(dt);
    Tensor dev = host.to(Device::cuda());
    EXPECT_TRUE(dev.is_cuda());
    EXPECT_TRUE(all_equal(dev.cpu(), host)) << dtype_name(dt);
    Tensor t = host.transpose(0, 2);  // non-contiguous both ways
    EXPECT_TRUE(all_equal(t.to(Device::cuda()).cpu(), t)) << dtype_name(dt);
    EXPECT_TRUE(all_equal(dev.transpose(0, 2).cpu(), t)) << dtype_name(dt);
    Tensor dst = zeros({2, 3, 4}, TensorOptions(kFloat32).device(Device::cuda()));
    dst.copy_(host);  // host -> device with conversion
    EXPECT_TRUE(all_close(dst.cpu(), host.to(kFloat32), 0, 0)) << dtype_name(dt);
  }
  Tensor b = zeros({3, 4}, Device::cuda());
  b.copy_(tensor({1.f, 2.f, 3.f, 4.f}));  // broadcast from the host
  EXPECT_EQ(b.sum().item<float>(), 30.0f);
}

TEST(Cuda, OutOfMemoryThrowsAndTheProcessKeepsWorking) {
  NABLA_REQUIRE_GPU();
  int64_t huge = int64_t{1} << 42;  // 16 TiB of float32: more than any card
  EXPECT_TRUE(throws_with<OutOfMemory>([&] { empty({huge}, Device::cuda()); }, {"out of memory", "free", "total"}));
  Tensor ok = ones({1024}, Device::cuda());
  EXPECT_EQ(ok.sum().item<float>(), 1024.0f);
}

TEST(Cuda, MemoryStatsTrackAllocations) {
  NABLA_REQUIRE_GPU();
  cuda::synchronize();
  size_t before = cuda::memory_stats().in_use;
  {
    Tensor t = empty({1 << 20}, Device::cuda());  // 4 MiB
    EXPECT_GE(cuda::memory_stats().in_use, before + (4u << 20));
    EXPECT_GE(cuda::memory_stats().peak, before + (4u << 20));
    EXPECT_GE(cuda::memory_stats().reserved, cuda::memory_stats().in_use);
  }
  EXPECT_EQ(cuda::memory_stats().in_use, before);
  cuda::empty_cache();
}

TEST(Cuda, MixedDevicesAreNamedInTheError) {
  NABLA_REQUIRE_GPU();
  Tensor a = ones({2}, Device::cuda()), b = ones({2});
  EXPECT_TRUE(throws_with<DeviceError>([&] { a + b; }, {"add", "cuda:0", "cpu"}));
  EXPECT_TRUE(throws_with<DeviceError>([&] { matmul(a.view({1, 2}), b.view({2, 1})); }, {"matmul", "cuda:0", "cpu"}));
  EXPECT_EQ((a + 1).sum().item<float>(), 4.0f);  // a CPU scalar joins a CUDA op
  Tensor bad_index = full({1}, 5, TensorOptions(kInt64).device(Device::cuda()));
  // raised at once or, when the check is deferred to the next synchronisation, there
  EXPECT_TRUE(throws_with<IndexError>([&] { (void)a.index_select(0, bad_index); cuda::synchronize(); },
                                      {"index_select", "5"}));
  // running statistics left on the CPU while the input moved: named before any arithmetic
  Tensor x = randn({4, 2}, Device::cuda()), rm = zeros({2}), rv = ones({2});
  EXPECT_TRUE(throws_with<DeviceError>([&] { batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, false); },
                                       {"batch_norm", "cpu", "cuda:0"}));
}

TEST(Cuda, Tf32IsOptIn) {
  NABLA_REQUIRE_GPU();
  manual_seed(1);
  Tensor a = randn({256, 256}, Device::cuda()), b = randn({256, 256}, Device::cuda());
  Tensor exact = matmul(a.to(kFloat64), b.to(kFloat64));
  set_float32_matmul_precision("highest");
  double err32 = (matmul(a, b).to(kFloat64) - exact).abs().max().item<double>();
  set_float32_matmul_precision("high");
  double err_tf32 = (matmul(a, b).to(kFloat64) - exact).abs().max().item<double>();
  set_float32_matmul_precision("highest");
  EXPECT_LT(err32, 1e-3);
  EXPECT_GT(err_tf32, err32);  // TF32 keeps 10 mantissa bits: visibly less exact
}


TEST(Cuda, HostToDeviceCopiesAreAsynchronousAndSafeFromASecondThread) {
  NABLA_REQUIRE_GPU();
  // the caller may reuse its buffer as soon as to() returns (the bytes are in pinned memory)
  Tensor h = full({(1 << 22) + 5}, 1.0, TensorOptions(kFloat32));  // > one 16 MiB ring slot
  Tensor d = h.to(Device::cuda());
  h.fill_(2.0);
  EXPECT_EQ(d.min().item<float>(), 1.0f);
  EXPECT_EQ(d.max().item<float>(), 1.0f);
  // a loader thread copies batches (small and large) while this thread keeps the stream busy
  constexpr int kBatches = 40;
  std::vector<Tensor> loaded(kBatches);
  std::thread loader([&] {
    for (int i = 0; i < kBatches; ++i) {
      Tensor b = full({i % 3 == 0 ? (1 << 21) + i : 100 + i}, static_cast<double>(i), TensorOptions(kFloat32));
      loaded[static_cast<size_t>(i)] = b.to(Device::cuda());
    }
  });
  Tensor a = randn({256, 256}, Device::cuda()) / 16.0;
  for (int k = 0; k < 30; ++k) a = matmul(a, a).tanh();
  loader.join();
  cuda::synchronize();
  for (int i = 0; i < kBatches; ++i) {
    EXPECT_EQ(loaded[static_cast<size_t>(i)].min().item<float>(), static_cast<float>(i)) << i;
    EXPECT_EQ(loaded[static_cast<size_t>(i)].max().item<float>(), static_cast<float>(i)) << i;
  }
  EXPECT_TRUE(std::isfinite(a.sum().item<float>()));
}

// ---- fused kernels, called through the Backend hooks -----------------------------------------

// ref64 rounded to dt (so the comparison measures the kernel, not the input rounding), on the
// GPU; and the same values as a fresh float64 CPU tensor (a new leaf, even when dt is float64).
Tensor on_gpu(const Tensor& ref64, DType dt) { return ref64.to(dt).to(Device::cuda()); }
Tensor rounded(const Tensor& ref64, DType dt) { return ref64.to(dt).to(kFloat64).clone(); }
Tensor gpu_empty(const Shape& s, DType dt) { return empty(s, TensorOptions(dt).device(Device::cuda())); }

Tolerance fused_tolerance(DType dt) {
  switch (dt) {
    case DType::Float64: return {1e-9, 1e-9};
    case DType::Float32: return {1e-4, 1e-4};  // exact float32 (TF32 off), long sums
    case DType::Float16: return {1e-2, 1e-2};
    default: return {5e-2, 5e-2};  // bfloat16
  }
}

// The cuDNN algorithm that last ran in one direction (0 forward, 1 backward data, 2 backward
// filter; from cuda::fused_stats()), and whether it computes through a transform (FFT,
// Winograd): those round float32 differently from a direct sum, and by more.
struct ConvAlgoRun {
  std::string name;
  bool transform = false;
};
ConvAlgoRun conv_algo_that_ran(int direction) {
  const int algo = cuda::fused_stats().last_conv_algo[direction];
#if defined(NABLA_HAS_CUDNN)
  switch (direction) {
    case 0:
      switch (algo) {
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return {"IMPLICIT_GEMM", false};
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return {"IMPLICIT_PRECOMP_GEMM", false};
        case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return {"GEMM", false};
        case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return {"DIRECT", false};
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return {"FFT", true};
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return {"FFT_TILING", true};
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return {"WINOGRAD", true};
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return {"WINOGRAD_NONFUSED", true};
        default: break;
      }
      break;
    case 1:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return {"ALGO_0", false};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return {"ALGO_1", false};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return {"FFT", true};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return {"FFT_TILING", true};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return {"WINOGRAD", true};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return {"WINOGRAD_NONFUSED", true};
        default: break;
      }
      break;
    default:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return {"ALGO_0", false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return {"ALGO_1", false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return {"ALGO_3", false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return {"FFT", true};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return {"FFT_TILING", true};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return {"WINOGRAD", true};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return {"WINOGRAD_NONFUSED", true};
        default: break;
      }
  }
#endif
  return {algo < 0 ? "none" : "unknown " + std::to_string(algo), false};
}

// The tolerance for the direction that just ran, from the algorithm that ran it (recorded as a
// test property and printed, so a failure or a loose bound names its algorithm). float32
// through FFT or Winograd gets 1e-3; the direct and implicit-GEMM algorithms keep the exact
// float32 bound.
Tolerance conv_tolerance(DType dt, int direction, const std::string& label) {
  static const char* kDirections[] = {"forward", "backward_data", "backward_filter"};
  const ConvAlgoRun run = conv_algo_that_ran(direction);
  if (run.name == "none")
    ADD_FAILURE() << "cuDNN ran but fused_stats() names no " << kDirections[direction] << " algorithm";
  ::testing::Test::RecordProperty("cudnn_" + label + "_" + kDirections[direction], run.name);
  std::cout << "[cudnn] " << label << " " << kDirections[direction] << ": " << run.name << std::endl;
  Tolerance tol = fused_tolerance(dt);
  if (dt == kFloat32 && run.transform) tol = {1e-3, 1e-3};
  return tol;
}

struct ConvCase {
  int64_t N, C, H, W, O, kh, kw;
  Conv2dParams p;
};

TEST(CudaFused, Conv2dForwardAndBackwardMatchTheCpu) {
  NABLA_REQUIRE_CUDNN();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaFused.Conv2d");
  const std::vector<ConvCase> cases = {
      {2, 4, 9, 8, 6, 3, 3, {1, 1, 1, 1, 1, 1, 1}},  // plain 3x3, same padding
      {2, 4, 10, 9, 4, 3, 2, {2, 1, 0, 1, 1, 2, 2}},  // asymmetric stride, dilation, 2 groups
      {1, 6, 7, 7, 6, 3, 3, {1, 2, 2, 1, 2, 1, 6}},  // depthwise, dilation 2 along H
      {3, 3, 5, 6, 2, 1, 1, {1, 1, 0, 0, 1, 1, 1}},  // 1x1
      {2, 8, 12, 12, 16, 5, 5, {2, 2, 2, 2, 1, 1, 4}},
  };
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const ConvCase& c = cases[ci];
    const Conv2dParams& p = c.p;
    const int64_t Ho = (c.H + 2 * p.pad_h - p.dilation_h * (c.kh - 1) - 1) / p.stride_h + 1;
    const int64_t Wo = (c.W + 2 * p.pad_w - p.dilation_w * (c.kw - 1) - 1) / p.stride_w + 1;
    Tensor x0 = uniform({c.N, c.C, c.H, c.W}, -1, 1, g), w0 = uniform({c.O, c.C / p.groups, c.kh, c.kw}, -1, 1, g);
    Tensor b0 = uniform({c.O}, -1, 1, g), gy0 = uniform({c.N, c.O, Ho, Wo}, -1, 1, g);
    for (DType dt : {kFloat32, kFloat16, kBFloat16, kFloat64}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " x " << shape_str(x0.sizes()) << " w "
                                        << shape_str(w0.sizes()) << " stride " << p.stride_h << "x" << p.stride_w
                                        << " pad " << p.pad_h << "x" << p.pad_w << " dilation " << p.dilation_h << "x"
                                        << p.dilation_w << " groups " << p.groups);
      // the CPU reference, in float64 on the dt-rounded inputs, gradients by autograd
      Tensor x = rounded(x0, dt).requires_grad_(), w = rounded(w0, dt).requires_grad_(),
             b = rounded(b0, dt).requires_grad_();
      Tensor gy = rounded(gy0, dt);
      Tensor y = conv2d(x, w, b, Pair2d(p.stride_h, p.stride_w), Padding2d(p.pad_h, p.pad_w),
                        Pair2d(p.dilation_h, p.dilation_w), p.groups);
      y.backward(gy);
      ASSERT_EQ(y.sizes(), (Shape{c.N, c.O, Ho, Wo}));

      const std::string label = "case" + std::to_string(ci) + "_" + dtype_name(dt);
      // float32 and float16 must be taken; cuDNN builds may decline bfloat16 or float64 NCHW
      // for some directions (the op then runs its composite, which is correct too)
      const bool must = dt == kFloat32 || dt == kFloat16;
      auto taken = [&](bool ok, const char* what) {
        if (!ok && must) ADD_FAILURE() << "cuDNN declined " << what;
        if (!ok && !must) std::cout << "[note] cuDNN declined " << what << " for " << dtype_name(dt) << std::endl;
        return ok;
      };
      Tensor out = gpu_empty(y.sizes(), dt);
      if (taken(cuda_slots(conv2d_kernels(), dt).forward(out, on_gpu(x0, dt), on_gpu(w0, dt), on_gpu(b0, dt), p), "the forward")) {
        const Tolerance tol = conv_tolerance(dt, 0, label);
        EXPECT_TRUE(all_close(out, y.detach(), tol.atol, tol.rtol));
        Tensor no_bias = gpu_empty(y.sizes(), dt);  // and without a bias
        ASSERT_TRUE(cuda_slots(conv2d_kernels(), dt).forward(no_bias, on_gpu(x0, dt), on_gpu(w0, dt), Tensor(), p));
        const Tolerance tol_nb = conv_tolerance(dt, 0, label + "_nobias");
        Tensor with_bias = no_bias.cpu().to(kFloat64) + b.detach().view({c.O, 1, 1});
        EXPECT_TRUE(all_close(with_bias, y.detach(), tol_nb.atol * 2, tol_nb.rtol));
      }
      Tensor gx = gpu_empty(x.sizes(), dt);
      if (taken(cuda_slots(conv2d_kernels(), dt).backward_input(gx, on_gpu(gy0, dt), on_gpu(w0, dt), p), "the input gradient")) {
        const Tolerance tol = conv_tolerance(dt, 1, label);
        EXPECT_TRUE(all_close(gx, x.grad(), tol.atol, tol.rtol));
      }
      Tensor gw = gpu_empty(w.sizes(), dt), gb = gpu_empty({c.O}, dt);
      if (taken(cuda_slots(conv2d_kernels(), dt).backward_weight(gw, gb, on_gpu(gy0, dt), on_gpu(x0, dt), p), "the weight gradient")) {
        const Tolerance tol = conv_tolerance(dt, 2, label);
        EXPECT_TRUE(all_close(gw, w.grad(), tol.atol * 10, tol.rtol));  // sums over N * Ho * Wo
        EXPECT_TRUE(all_close(gb, b.grad(), tol.atol * 10, tol.rtol));
        Tensor gw_only = gpu_empty(w.sizes(), dt);
        ASSERT_TRUE(cuda_slots(conv2d_kernels(), dt).backward_weight(gw_only, Tensor(), on_gpu(gy0, dt), on_gpu(x0, dt), p));
        const Tolerance tol_only = conv_tolerance(dt, 2, label + "_nobias");
        // some algorithms use atomics; the two runs may also differ in algorithm
        EXPECT_TRUE(all_close(gw_only, gw, std::max(tol.atol, tol_only.atol) * 10, std::max(tol.rtol, tol_only.rtol)));
      }
    }
  }
}

TEST(CudaFused, Conv2dTf32FollowsTheMatmulPrecisionSetting) {
  NABLA_REQUIRE_CUDNN();
  auto g = rng_for("CudaFused.Conv2dTf32");
  Tensor x0 = uniform({4, 32, 16, 16}, -1, 1, g), w0 = uniform({32, 32, 3, 3}, -1, 1, g);
  Tensor exact = conv2d(rounded(x0, kFloat32), rounded(w0, kFloat32), Tensor(), 1, 1);
  const Conv2dParams p{1, 1, 1, 1, 1, 1, 1};
  auto max_err = [&] {
    Tensor out = gpu_empty(exact.sizes(), kFloat32);
    EXPECT_TRUE(cuda_slots(conv2d_kernels(), kFloat32).forward(out, on_gpu(x0, kFloat32), on_gpu(w0, kFloat32), Tensor(), p));
    return (out.to(kFloat64).cpu() - exact).abs().max().item<double>();
  };
  set_float32_matmul_precision("highest");
  const double err32 = max_err();
  const Tolerance tol32 = conv_tolerance(kFloat32, 0, "fma");  // the algorithm that gave err32
  set_float32_matmul_precision("high");
  const double err_tf32 = max_err();
  conv_tolerance(kFloat32, 0, "tf32");  // recorded only: the TF32 bound below covers every algorithm
  set_float32_matmul_precision("highest");
  EXPECT_LT(err32, tol32.atol);  // FMA math only
  EXPECT_LT(err_tf32, 5e-2);  // TF32 (10 mantissa bits) allowed, not required
}

// Brute-force max pooling in float64: value and index h * W + w of the first maximum in window
// order, NaN winning, padding skipped; a window with no input element gives -inf and 0.
std::pair<Tensor, Tensor> max_pool_reference(const Tensor& x, const Pool2dParams& p, int64_t Ho, int64_t Wo) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto v = x.to(kFloat64).contiguous().to_vector<double>();
  std::vector<double> out;
  std::vector<int64_t> idx;
  for (int64_t plane = 0; plane < N * C; ++plane)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        double best = -INFINITY;
        int64_t bi = -1;
        for (int64_t i = 0; i < p.kernel_h; ++i)
          for (int64_t j = 0; j < p.kernel_w; ++j) {
            const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h, w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const double e = v[static_cast<size_t>(plane * H * W + h * W + w)];
            if (bi < 0 || (!std::isnan(best) && (e > best || std::isnan(e)))) best = e, bi = h * W + w;
          }
        out.push_back(best);
        idx.push_back(bi < 0 ? 0 : bi);
      }
  return {from_vector(out, {N, C, Ho, Wo}, kFloat64), from_vector(idx, {N, C, Ho, Wo}, kInt64)};
}

TEST(CudaFused, MaxPool2dWritesTheFirstMaximumAndItsIndex) {
  NABLA_REQUIRE_GPU();
  auto g = rng_for("CudaFused.MaxPool2d");
  struct Case {
    int64_t N, C, H, W;
    Pool2dParams p;
  };
  const std::vector<Case> cases = {
      {2, 3, 9, 8, {3, 3, 2, 2, 1, 1, 1, 1}},
      {1, 2, 8, 9, {2, 2, 2, 2, 0, 0, 1, 1}},
      {2, 2, 10, 11, {2, 3, 1, 2, 1, 1, 2, 2}},  // dilation, asymmetric kernel and stride
      {1, 1, 2, 2, {2, 2, 1, 1, 1, 1, 3, 3}},    // windows made only of padding
  };
  for (const Case& c : cases) {
    const Pool2dParams& p = c.p;
    const int64_t Ho = (c.H + 2 * p.pad_h - p.dilation_h * (p.kernel_h - 1) - 1) / p.stride_h + 1;
    const int64_t Wo = (c.W + 2 * p.pad_w - p.dilation_w * (p.kernel_w - 1) - 1) / p.stride_w + 1;
    // few distinct values, so windows hold ties; a NaN and some -inf
    Tensor x0 = floor(uniform({c.N, c.C, c.H, c.W}, 0, 4, g));
    auto v = x0.to_vector<double>();
    v[3] = NAN;
    v[v.size() / 2] = -INFINITY;
    x0 = from_vector(v, x0.sizes(), kFloat64);
    for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " x " << shape_str(x0.sizes()) << " kernel " << p.kernel_h
                                        << "x" << p.kernel_w << " stride " << p.stride_h << "x" << p.stride_w << " pad "
                                        << p.pad_h << "x" << p.pad_w << " dilation " << p.dilation_h << "x"
                                        << p.dilation_w);
      auto [ref, ref_idx] = max_pool_reference(x0, p, Ho, Wo);
      Tensor out = gpu_empty({c.N, c.C, Ho, Wo}, dt), idx = gpu_empty({c.N, c.C, Ho, Wo}, kInt64);
      ASSERT_TRUE(cuda_slots(max_pool2d_kernels(), dt).forward(out, idx, on_gpu(x0, dt), p));
      EXPECT_TRUE(all_close(out, ref, 0, 0));
      EXPECT_TRUE(all_equal(idx.cpu(), ref_idx));
    }
  }
}

TEST(CudaFused, BatchNormTrainEvalAndBackwardMatchTheCpu) {
  NABLA_REQUIRE_GPU();
  auto g = rng_for("CudaFused.BatchNorm");
  const double momentum = 0.1, eps = 1e-5;
  for (const Shape& shape : {Shape{4, 3, 5, 6}, Shape{16, 7}, Shape{3, 4, 33}, Shape{2, 2, 70, 70}}) {
    const int64_t C = shape[1];
    Tensor x0 = uniform(shape, -2, 2, g) * 3.0 + 1.5, gy0 = uniform(shape, -1, 1, g);
    Tensor w0 = uniform({C}, 0.5, 1.5, g), b0 = uniform({C}, -1, 1, g);
    Tensor rm0 = uniform({C}, -1, 1, g), rv0 = uniform({C}, 0.5, 2, g);
    for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
      for (bool affine : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " x " << shape_str(shape) << (affine ? " affine" : ""));
        const Tolerance tol = fused_tolerance(dt);
        const DType stat_dt = dt == kFloat64 ? kFloat64 : kFloat32;  // statistics of 16-bit inputs are float32
        // training: the CPU reference in float64 on the dt-rounded input
        Tensor x = rounded(x0, dt).requires_grad_();
        Tensor w = affine ? rounded(w0, dt).requires_grad_() : Tensor(), b = affine ? rounded(b0, dt).requires_grad_() : Tensor();
        Tensor rm = rm0.clone(), rv = rv0.clone();
        Tensor y = batch_norm(x, w, b, rm, rv, true, momentum, eps, false);
        y.backward(rounded(gy0, dt));
        Dims dims{0};
        for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
        Tensor mean = x.detach().mean(dims), var = (x.detach() - x.detach().mean(dims, true)).square().mean(dims);

        Tensor xd = on_gpu(x0, dt), out = gpu_empty(shape, dt);
        Tensor save_mean = gpu_empty({C}, stat_dt), save_invstd = gpu_empty({C}, stat_dt);
        Tensor rm_d = rm0.to(stat_dt).to(Device::cuda()), rv_d = rv0.to(stat_dt).to(Device::cuda());
        Tensor wd = affine ? on_gpu(w0, dt) : Tensor(), bd = affine ? on_gpu(b0, dt) : Tensor();
        ASSERT_TRUE(cuda_slots(batch_norm_kernels(), dt).forward(out, save_mean, save_invstd, xd, wd, bd, rm_d, rv_d, true, momentum, eps));
        EXPECT_TRUE(all_close(out, y.detach(), tol.atol, tol.rtol));
        EXPECT_TRUE(all_close(save_mean, mean, 1e-5, 1e-5));
        EXPECT_TRUE(all_close(save_invstd, (var + eps).rsqrt(), 1e-5, 1e-4));
        EXPECT_TRUE(all_close(rm_d, rm, 1e-5, 1e-5));
        EXPECT_TRUE(all_close(rv_d, rv, 1e-5, 1e-4));

        Tensor gx = gpu_empty(shape, dt), gw = gpu_empty({C}, dt), gb = gpu_empty({C}, dt);
        ASSERT_TRUE(cuda_slots(batch_norm_kernels(), dt).backward(gx, affine ? gw : Tensor(), affine ? gb : Tensor(), on_gpu(gy0, dt), xd, wd,
                                           save_mean, save_invstd));
        EXPECT_TRUE(all_close(gx, x.grad(), tol.atol * 5, tol.rtol * 5));
        if (affine) {
          EXPECT_TRUE(all_close(gw, w.grad(), tol.atol * 10, tol.rtol * 5));
          EXPECT_TRUE(all_close(gb, b.grad(), tol.atol * 10, tol.rtol * 5));
        }
        // statistics saved in the input's dtype (what an op layer may pass) work too
        Tensor sm16 = gpu_empty({C}, dt), si16 = gpu_empty({C}, dt), out2 = gpu_empty(shape, dt);
        ASSERT_TRUE(cuda_slots(batch_norm_kernels(), dt).forward(out2, sm16, si16, xd, wd, bd, Tensor(), Tensor(), true, momentum, eps));
        EXPECT_TRUE(all_close(out2, out, 0, 0));
        Tensor gx2 = gpu_empty(shape, dt);
        ASSERT_TRUE(cuda_slots(batch_norm_kernels(), dt).backward(gx2, Tensor(), Tensor(), on_gpu(gy0, dt), xd, wd, sm16, si16));
        EXPECT_TRUE(all_close(gx2, x.grad(), tol.atol * 10, tol.rtol * 10));

        // eval: the running statistics
        Tensor ye = batch_norm(rounded(x0, dt), affine ? rounded(w0, dt) : Tensor(), affine ? rounded(b0, dt) : Tensor(),
                               rm0, rv0, false, momentum, eps, false);
        Tensor oute = gpu_empty(shape, dt);
        ASSERT_TRUE(cuda_slots(batch_norm_kernels(), dt).forward(oute, Tensor(), Tensor(), xd, wd, bd, rm0.to(stat_dt).to(Device::cuda()),
                                          rv0.to(stat_dt).to(Device::cuda()), false, momentum, eps));
        EXPECT_TRUE(all_close(oute, ye, tol.atol, tol.rtol));
      }
    }
  }
}

TEST(CudaFused, LinearWithBiasMatchesTheCpu) {
  NABLA_REQUIRE_GPU();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaFused.Linear");
  struct Case {
    int64_t M, K, N;
    bool must_take;  // sizes every cuBLASLt build handles for every dtype
  };
  for (const Case& c : {Case{64, 128, 96, true}, Case{8, 32, 16, true}, Case{37, 29, 23, false}, Case{1, 64, 8, true}}) {
    Tensor x0 = uniform({c.M, c.K}, -1, 1, g), w0 = uniform({c.N, c.K}, -1, 1, g), b0 = uniform({c.N}, -1, 1, g);
    for (DType dt : {kFloat32, kFloat16, kBFloat16}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " M=" << c.M << " K=" << c.K << " N=" << c.N);
      const Tolerance tol = fused_tolerance(dt);
      Tensor ref = matmul(rounded(x0, dt), rounded(w0, dt).t()) + rounded(b0, dt);
      Tensor out = gpu_empty({c.M, c.N}, dt);
      const bool took = cuda_slots(nn::functional::fused::linear_kernels(), dt).forward(out, on_gpu(x0, dt), on_gpu(w0, dt), on_gpu(b0, dt));
      if (c.must_take || dt == kFloat32) {
        ASSERT_TRUE(took) << "cuBLASLt declined";
      }
      if (took) {
        EXPECT_TRUE(all_close(out, ref, tol.atol, tol.rtol));
      }
    }
  }
}

// Three steps of each optimizer on the CPU (optim::Adam / AdamW / SGD) and through the hook.
struct OptimCase {
  std::vector<Tensor> cpu_params, gpu_params;
  std::vector<std::vector<Tensor>> grads;  // [step][param], CPU float32
  OptimCase(const std::string& name, int steps) {
    auto g = rng_for(name);
    for (int64_t n : {int64_t{2 * 65536 + 7}, int64_t{17}, int64_t{1}, int64_t{65536}}) {
      Tensor p = uniform({n}, -1, 1, g).to(kFloat32);
      cpu_params.push_back(p.clone().requires_grad_());
      gpu_params.push_back(p.to(Device::cuda()));
    }
    for (int s = 0; s < steps; ++s) {
      grads.emplace_back();
      for (const Tensor& p : cpu_params) grads.back().push_back(uniform(p.sizes(), -1, 1, g).to(kFloat32));
    }
  }
  std::vector<Tensor> gpu_grads(int step) const {
    std::vector<Tensor> out;
    for (const Tensor& t : grads[static_cast<size_t>(step)]) out.push_back(t.to(Device::cuda()));
    return out;
  }
  void set_cpu_grads(int step) {
    for (size_t i = 0; i < cpu_params.size(); ++i) cpu_params[i].set_grad(grads[static_cast<size_t>(step)][i]);
  }
  std::vector<Tensor> gpu_zeros() const {
    std::vector<Tensor> out;
    for (const Tensor& p : gpu_params) out.push_back(zeros(p.sizes(), TensorOptions(kFloat32).device(Device::cuda())));
    return out;
  }
  ::testing::AssertionResult params_match() const {
    for (size_t i = 0; i < cpu_params.size(); ++i) {
      auto r = all_close(gpu_params[i], cpu_params[i].detach(), 1e-6, 1e-5);
      if (!r) return r << " (parameter " << i << ")";
    }
    return ::testing::AssertionSuccess();
  }
};

TEST(CudaFused, AdamStepMatchesTheCpuOptimizer) {
  NABLA_REQUIRE_GPU();
  struct Variant {
    bool decoupled, amsgrad;
    double weight_decay;
  };
  for (const Variant& v : {Variant{false, false, 0.0}, Variant{false, false, 0.1}, Variant{true, false, 0.05},
                           Variant{false, true, 0.0}, Variant{true, true, 0.01}}) {
    SCOPED_TRACE(::testing::Message() << (v.decoupled ? "AdamW" : "Adam") << (v.amsgrad ? " amsgrad" : "")
                                      << " weight_decay=" << v.weight_decay);
    constexpr int kSteps = 3;
    OptimCase c("CudaFused.Adam", kSteps);
    const double lr = 1e-2, b1 = 0.9, b2 = 0.99, eps = 1e-8;
    std::unique_ptr<optim::Optimizer> opt;
    if (v.decoupled)
      opt = std::make_unique<optim::AdamW>(
          c.cpu_params, optim::AdamWOptions(lr).betas({b1, b2}).eps(eps).weight_decay(v.weight_decay).amsgrad(v.amsgrad));
    else
      opt = std::make_unique<optim::Adam>(
          c.cpu_params, optim::AdamOptions(lr).betas({b1, b2}).eps(eps).weight_decay(v.weight_decay).amsgrad(v.amsgrad));
    std::vector<Tensor> m = c.gpu_zeros(), s = c.gpu_zeros(), smax = v.amsgrad ? c.gpu_zeros() : std::vector<Tensor>{};
    for (int step = 0; step < kSteps; ++step) {
      c.set_cpu_grads(step);
      opt->step();
      AdamStepParams p;
      p.lr = lr, p.beta1 = b1, p.beta2 = b2, p.eps = eps, p.weight_decay = v.weight_decay;
      p.decoupled = v.decoupled, p.amsgrad = v.amsgrad, p.step = step + 1;
      ASSERT_TRUE(cuda_slots(adam_kernels(), kFloat32).step(c.gpu_params, c.gpu_grads(step), m, s, smax, p));
      EXPECT_TRUE(c.params_match()) << "after step " << step + 1;
    }
  }
}

TEST(CudaFused, SgdStepMatchesTheCpuOptimizer) {
  NABLA_REQUIRE_GPU();
  struct Variant {
    double momentum, dampening, weight_decay;
    bool nesterov;
  };
  for (const Variant& v : {Variant{0, 0, 0, false}, Variant{0, 0, 0.1, false}, Variant{0.9, 0, 0, false},
                           Variant{0.9, 0.2, 0.01, false}, Variant{0.8, 0, 0.05, true}}) {
    SCOPED_TRACE(::testing::Message() << "momentum=" << v.momentum << " dampening=" << v.dampening
                                      << " weight_decay=" << v.weight_decay << (v.nesterov ? " nesterov" : ""));
    constexpr int kSteps = 3;
    OptimCase c("CudaFused.Sgd", kSteps);
    const double lr = 0.05;
    optim::SGD opt(c.cpu_params,
                   optim::SGDOptions(lr).momentum(v.momentum).dampening(v.dampening).weight_decay(v.weight_decay).nesterov(
                       v.nesterov));
    std::vector<Tensor> buffers = v.momentum != 0 ? c.gpu_zeros() : std::vector<Tensor>{};
    for (int step = 0; step < kSteps; ++step) {
      c.set_cpu_grads(step);
      opt.step();
      SgdStepParams p;
      p.lr = lr, p.momentum = v.momentum, p.dampening = v.dampening, p.weight_decay = v.weight_decay;
      p.nesterov = v.nesterov, p.first_step = step == 0;
      ASSERT_TRUE(cuda_slots(sgd_kernels(), kFloat32).step(c.gpu_params, c.gpu_grads(step), buffers, p));
      EXPECT_TRUE(c.params_match()) << "after step " << step + 1;
    }
  }
}

TEST(CudaFused, KernelsDeclineWhatTheyDoNotHandle) {
  NABLA_REQUIRE_GPU();
  // the tables say which dtypes each device's kernels take: the optimizer steps are float32 only,
  // cuBLASLt's linear has no float64 (the op runs the composite for those)
  EXPECT_TRUE(sgd_kernels().has(DeviceType::CUDA, kFloat32));
  EXPECT_FALSE(sgd_kernels().has(DeviceType::CUDA, kFloat64));
  EXPECT_FALSE(adam_kernels().has(DeviceType::CUDA, kFloat64));
  EXPECT_FALSE(nn::functional::fused::linear_kernels().has(DeviceType::CUDA, kFloat64));
  // the step kernel itself declines lists whose tensors do not match
  std::vector<Tensor> p{zeros({4}, Device::cuda())}, g{zeros({5}, Device::cuda())};
  EXPECT_FALSE(cuda_slots(sgd_kernels(), kFloat32).step(p, g, {}, SgdStepParams{}));
}

}  // namespace
}  // namespace nabla_test
