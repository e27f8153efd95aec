// The CUDA backend's library paths seen from outside: cuda::fused_stats() counts what cuDNN
// and cuBLASLt ran or declined; cuDNN's cached per-problem plans stay correct when problems
// alternate and when two host threads convolve at once; a linear whose bias (or input) sits at
// an odd offset is declined to the composite instead of failing in cuBLASLt; and a matmul whose
// N passes INT_MAX gives the exact answer. Skipped without a GPU.

#include <cstdint>
#include <thread>

#include "test_util.hpp"

namespace nabla_test {
namespace {

Tensor to_gpu32(const Tensor& t) { return t.to(kFloat32).to(Device::cuda()); }

// ---- cuDNN: statistics and cached plans ------------------------------------------------------

TEST(CudaBackend, FusedStatsCountEachCudnnDirectionAndReset) {
  NABLA_REQUIRE_CUDNN();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaBackend.FusedStats");
  Tensor x0 = uniform({2, 3, 8, 8}, -1, 1, g), w0 = uniform({4, 3, 3, 3}, -1, 1, g), b0 = uniform({4}, -1, 1, g);
  cuda::reset_fused_stats();
  const cuda::FusedStats zero = cuda::fused_stats();
  EXPECT_EQ(zero.conv_cudnn, 0u);
  EXPECT_EQ(zero.conv_declined, 0u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(zero.last_conv_algo[k], -1) << k;

  // float32 NCHW must be taken: forward, then the input and the weight gradient
  Tensor x = to_gpu32(x0).requires_grad_(), w = to_gpu32(w0).requires_grad_(), b = to_gpu32(b0).requires_grad_();
  conv2d(x, w, b, 1, 1).sum().backward();
  const cuda::FusedStats s = cuda::fused_stats();
  EXPECT_EQ(s.conv_cudnn, 3u);
  EXPECT_EQ(s.conv_declined, 0u);
  for (int k = 0; k < 3; ++k) EXPECT_GE(s.last_conv_algo[k], 0) << "direction " << k;

  Tensor xr = x0.clone().requires_grad_(), wr = w0.clone().requires_grad_(), br = b0.clone().requires_grad_();
  conv2d(xr, wr, br, 1, 1).sum().backward();
  EXPECT_TRUE(all_close(x.grad(), xr.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(all_close(w.grad(), wr.grad(), 1e-3, 1e-4));

  cuda::reset_fused_stats();
  EXPECT_EQ(cuda::fused_stats().conv_cudnn, 0u);
  EXPECT_EQ(cuda::fused_stats().last_conv_algo[0], -1);
}

// Problems alternate (A, B, A, B, ...): each call must find its own plan's descriptors and
// workspace, not the last problem's.
TEST(CudaBackend, CudnnPlansStayPerProblemWhenProblemsAlternate) {
  NABLA_REQUIRE_CUDNN();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaBackend.AlternatingPlans");
  struct Problem {
    Tensor x, w, ref;
    int64_t stride, pad;
  };
  std::vector<Problem> problems;
  for (auto [N, C, H, O, k, stride, pad] : {std::array<int64_t, 7>{2, 3, 9, 5, 3, 1, 1}, {1, 8, 16, 4, 5, 2, 2},
                                            {3, 4, 7, 6, 1, 1, 0}}) {
    Tensor x = uniform({N, C, H, H}, -1, 1, g), w = uniform({O, C, k, k}, -1, 1, g);
    problems.push_back({to_gpu32(x), to_gpu32(w), conv2d(x, w, Tensor(), stride, pad), stride, pad});
  }
  cuda::reset_fused_stats();
  for (int round = 0; round < 4; ++round)
    for (size_t i = 0; i < problems.size(); ++i) {
      const Problem& p = problems[i];
      Tensor y = conv2d(p.x, p.w, Tensor(), p.stride, p.pad);
      EXPECT_TRUE(all_close(y, p.ref, 1e-3, 1e-4)) << "problem " << i << ", round " << round;
    }
  EXPECT_EQ(cuda::fused_stats().conv_cudnn, 4 * problems.size());
  EXPECT_EQ(cuda::fused_stats().conv_declined, 0u);
}

// A DataLoader-style second thread convolves while the main thread does: the cuDNN handle and
// the plans are shared, so every result must still be the CPU's.
TEST(CudaBackend, CudnnFromTwoHostThreadsMatchesTheCpu) {
  NABLA_REQUIRE_CUDNN();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaBackend.TwoThreads");
  Tensor xa = uniform({2, 4, 12, 12}, -1, 1, g), wa = uniform({8, 4, 3, 3}, -1, 1, g);
  Tensor xb = uniform({4, 2, 10, 10}, -1, 1, g), wb = uniform({3, 2, 5, 5}, -1, 1, g);
  const Tensor ref_a = conv2d(xa, wa, Tensor(), 1, 1), ref_b = conv2d(xb, wb, Tensor(), 2, 2);
  const Tensor xa_d = to_gpu32(xa), wa_d = to_gpu32(wa), xb_d = to_gpu32(xb), wb_d = to_gpu32(wb);
  constexpr int kIters = 50;
  std::vector<Tensor> out_b(kIters), out_a(kIters);
  cuda::reset_fused_stats();
  std::thread other([&] {
    for (int i = 0; i < kIters; ++i) out_b[static_cast<size_t>(i)] = conv2d(xb_d, wb_d, Tensor(), 2, 2);
  });
  for (int i = 0; i < kIters; ++i) out_a[static_cast<size_t>(i)] = conv2d(xa_d, wa_d, Tensor(), 1, 1);
  other.join();
  for (int i = 0; i < kIters; ++i) {
    EXPECT_TRUE(all_close(out_a[static_cast<size_t>(i)], ref_a, 1e-3, 1e-4)) << "main thread, call " << i;
    EXPECT_TRUE(all_close(out_b[static_cast<size_t>(i)], ref_b, 1e-3, 1e-4)) << "second thread, call " << i;
  }
  EXPECT_EQ(cuda::fused_stats().conv_cudnn, uint64_t{2 * kIters});
}

// ---- cuBLASLt linear: operands at an odd offset ----------------------------------------------

TEST(CudaBackend, LinearWithABiasAtAnOddOffsetDeclinesToTheComposite) {
  NABLA_REQUIRE_GPU();
  set_float32_matmul_precision("highest");
  auto g = rng_for("CudaBackend.MisalignedBias");
  const int64_t M = 16, K = 32, N = 24;
  Tensor x0 = uniform({M, K}, -1, 1, g), w0 = uniform({N, K}, -1, 1, g), big0 = uniform({N + 3}, -1, 1, g);
  Tensor x = to_gpu32(x0), w = to_gpu32(w0), big = to_gpu32(big0);
  Tensor bias = big.narrow(0, 1, N);  // one float past the allocation's start: 4-byte aligned only
  ASSERT_TRUE(bias.is_contiguous());
  ASSERT_NE(reinterpret_cast<uintptr_t>(bias.data_ptr()) % 16, 0u);
  const Tensor ref = matmul(x0, w0.t()) + big0.narrow(0, 1, N);

  // the same linear with the bias copied to its own (aligned) block runs on cuBLASLt ...
  cuda::reset_fused_stats();
  Tensor fused = nn::functional::linear(x, w, bias.clone());
  EXPECT_EQ(cuda::fused_stats().linear_cublaslt, 1u);
  EXPECT_EQ(cuda::fused_stats().linear_declined, 0u);
  EXPECT_TRUE(all_close(fused, ref, 1e-4, 1e-4));

  // ... and with the view it is declined and counted, not an exception from cublasLtMatmul
  cuda::reset_fused_stats();
  Tensor y;
  EXPECT_NO_THROW(y = nn::functional::linear(x, w, bias));
  EXPECT_EQ(cuda::fused_stats().linear_cublaslt, 0u);
  EXPECT_EQ(cuda::fused_stats().linear_declined, 1u);
  ASSERT_TRUE(y.defined());
  EXPECT_TRUE(all_close(y, ref, 1e-4, 1e-4));

  // the kernel itself says no
  Tensor out = empty({M, N}, TensorOptions(kFloat32).device(Device::cuda()));
  bool took = true;
  EXPECT_NO_THROW(took = nn::functional::fused::linear_kernels().find(Device::cuda(), kFloat32)->forward(out, x, w, bias));
  EXPECT_FALSE(took);

  // an input at an odd offset is declined the same way
  Tensor big_x = to_gpu32(uniform({M * K + 1}, -1, 1, g));
  Tensor x_odd = big_x.narrow(0, 1, M * K).view({M, K});
  cuda::reset_fused_stats();
  EXPECT_NO_THROW(y = nn::functional::linear(x_odd, w, bias.clone()));
  EXPECT_EQ(cuda::fused_stats().linear_declined, 1u);
  EXPECT_TRUE(all_close(y, matmul(x_odd.cpu().to(kFloat64), w0.t()) + big0.narrow(0, 1, N), 1e-4, 1e-4));
}

// ---- cuBLAS matmul past INT_MAX ---------------------------------------------------------------

// [1, 1] @ [1, N] with N = 2^31 + 64: cuBLAS sees C^T = B^T A^T, so its m and the leading
// dimensions of B and C do not fit an int. Only five entries of b are non-zero, on both sides of
// 2^31, so a dropped or wrapped column shows. (Not [1, K] @ [K, 1]: a dot product that long may
// run on a handful of blocks, minutes of device time; this shape is spread over the whole GPU.)
TEST(CudaBackend, MatmulWithNPastIntMaxIsExact) {
  NABLA_REQUIRE_GPU();
  set_float32_matmul_precision("highest");
  const int64_t N = (int64_t{1} << 31) + 64;
  {
    Tensor b, c;
    try {
      b = zeros({1, N}, Device::cuda());
      c = empty({1, N}, Device::cuda());
    } catch (const OutOfMemory& e) {
      b = c = Tensor();
      cuda::empty_cache();
      GTEST_SKIP() << "needs about 17.2 GB of free GPU memory (two float32 [1, 2^31 + 64] tensors): " << e.what();
    }
    c = Tensor();  // only proved that the result fits
    const int64_t at[] = {0, 12345, (int64_t{1} << 31) - 1, int64_t{1} << 31, N - 1};
    for (int i = 0; i < 5; ++i) b.narrow(1, at[i], 1).fill_(static_cast<double>(int64_t{1} << i));
    Tensor a = full({1, 1}, 3.0, Device::cuda());
    c = matmul(a, b);
    ASSERT_EQ(c.sizes(), (Shape{1, N}));
    for (int i = 0; i < 5; ++i) {
      const int64_t lo = std::max<int64_t>(0, at[i] - 1), hi = std::min<int64_t>(N, at[i] + 2);
      Tensor window = c.narrow(1, lo, hi - lo).cpu();
      for (int64_t k = lo; k < hi; ++k) {
        double expected = 0.0;  // windows overlap (2^31 - 1 and 2^31 are neighbours): look k up
        for (int j = 0; j < 5; ++j)
          if (k == at[j]) expected = 3.0 * static_cast<double>(int64_t{1} << j);
        EXPECT_EQ(window.select(1, k - lo).item<double>(), expected) << "column " << k;
      }
    }
  }
  cuda::empty_cache();  // give the 17 GB back for the tests that follow
}

}  // namespace
}  // namespace nabla_test
