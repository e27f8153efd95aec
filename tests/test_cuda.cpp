// CUDA runtime behaviour: no-GPU handling (runs everywhere), device transfers for every dtype
// and layout, out-of-memory recovery, memory statistics, mixed-device errors and TF32 opt-in.
// The per-op CUDA-vs-CPU checks are the parity table's CUDA column.

#include "test_util.hpp"

namespace nabla_test {
namespace {

#define NABLA_REQUIRE_GPU() \
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device (this build or machine has none)"

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
  EXPECT_TRUE(throws_with<IndexError>([&] { a.index_select(0, tensor({5}, Device::cuda())); }, {"index_select", "5"}));
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

}  // namespace
}  // namespace nabla_test
