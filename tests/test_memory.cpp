// Memory accounting (backend/memory.hpp): bytes in use, peak, reserved and allocation count on the
// CPU and CUDA, the memory limit and its OutOfMemory, MemoryScope tags, and all of it under
// threads. The counters are global to the process, so each test works from a baseline taken
// when it starts and restores the limit and profiling switch it changes (RAII), whatever fails.

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "test_util.hpp"

// AddressSanitizer aborts on an allocation larger than it supports instead of returning null.
#if defined(__SANITIZE_ADDRESS__)
#define NABLA_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NABLA_TEST_ASAN 1
#endif
#endif

namespace nabla_test {
namespace {

const Device kCpu = Device::cpu();

// What the CPU allocator takes for a tensor of `bytes` bytes.
size_t rounded(size_t bytes) { return (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment; }

size_t cpu_in_use() { return memory_stats(kCpu).in_use; }

// Turns memory profiling on for a test and back to what it was.
struct ProfilingOn {
  bool previous = memory_profiling_enabled();
  ProfilingOn() { set_memory_profiling(true); }
  ~ProfilingOn() { set_memory_profiling(previous); }
};

TEST(Memory, InUseGrowsByTheRoundedSizeAndComesBack) {
  const MemoryStats before = memory_stats(kCpu);
  {
    Tensor t = empty({1000}, kFloat32);  // 4000 bytes, taken as 4032
    const MemoryStats during = memory_stats(kCpu);
    EXPECT_EQ(during.in_use, before.in_use + rounded(4000));
    EXPECT_EQ(during.allocations, before.allocations + 1);
    EXPECT_GE(during.peak, during.in_use);
    EXPECT_GE(during.reserved, during.in_use);
    Tensor v = t.view({10, 100}).narrow(0, 2, 3);  // views share the storage: nothing new
    Tensor u = t;
    EXPECT_EQ(cpu_in_use(), during.in_use);
    EXPECT_EQ(memory_stats(kCpu).allocations, during.allocations);
  }
  EXPECT_EQ(cpu_in_use(), before.in_use);
  Tensor none = empty({0, 3});  // no bytes, no allocation
  EXPECT_EQ(memory_stats(kCpu).allocations, before.allocations + 1);
  EXPECT_EQ(cpu_in_use(), before.in_use);
}

TEST(Memory, CountsEveryDtypeAndOpOutput) {
  const size_t base = cpu_in_use();
  Tensor a = ones({3, 5}, kFloat64);  // 120 -> 128
  EXPECT_EQ(cpu_in_use(), base + rounded(120));
  Tensor b = a + a;  // one output
  EXPECT_EQ(cpu_in_use(), base + 2 * rounded(120));
  Tensor c = zeros({7}, kUInt8);  // 7 -> 64
  EXPECT_EQ(cpu_in_use(), base + 2 * rounded(120) + rounded(7));
  a = b = c = Tensor();
  EXPECT_EQ(cpu_in_use(), base);
}

TEST(Memory, UserMemoryIsNotCounted) {
  std::vector<float> buf(4096);
  const MemoryStats before = memory_stats(kCpu);
  {
    Tensor t = from_blob(buf.data(), {64, 64}, kFloat32);
    EXPECT_EQ(cpu_in_use(), before.in_use);
    EXPECT_EQ(memory_stats(kCpu).allocations, before.allocations);
  }
  EXPECT_EQ(cpu_in_use(), before.in_use);
}

// Blocks of 1 MiB and more go through the CpuBlockCache: freeing one moves its bytes from in_use
// to reserved, and taking it again moves them back, by exactly the same amount.
TEST(Memory, CachedBlocksGiveBackExactlyWhatTheyTook) {
  empty_cpu_cache();
  const MemoryStats before = memory_stats(kCpu);
  const size_t bytes = rounded((size_t{2} << 20) + 4);  // not a multiple of 64 before rounding
  for (int round = 0; round < 3; ++round) {
    {
      Tensor t = empty({static_cast<int64_t>((size_t{2} << 20) + 4)}, kUInt8);
      EXPECT_EQ(cpu_in_use(), before.in_use + bytes) << "round " << round;
    }
    const MemoryStats after = memory_stats(kCpu);
    EXPECT_EQ(after.in_use, before.in_use) << "round " << round;
    if (detail::CpuBlockCache::kCapacity > 0) {  // ASan builds keep no blocks
      EXPECT_EQ(after.reserved, before.reserved + bytes) << "round " << round;
    }
  }
  empty_cpu_cache();
  EXPECT_EQ(memory_stats(kCpu).reserved, before.in_use);
}

TEST(Memory, PeakTracksTheMaximumAndResets) {
  reset_peak_memory_stats(kCpu);
  const size_t base = cpu_in_use();
  EXPECT_EQ(memory_stats(kCpu).peak, base);
  {
    Tensor a = empty({1 << 16}, kFloat32);  // 256 KiB
    {
      Tensor b = empty({1 << 14}, kFloat32);  // 64 KiB on top
    }
    Tensor c = empty({1 << 10}, kFloat32);  // 4 KiB, below what a + b reached
    EXPECT_EQ(memory_stats(kCpu).peak, base + (size_t{320} << 10));
  }
  EXPECT_EQ(cpu_in_use(), base);
  EXPECT_EQ(memory_stats(kCpu).peak, base + (size_t{320} << 10));
  reset_peak_memory_stats(kCpu);
  EXPECT_EQ(memory_stats(kCpu).peak, base);
  { Tensor small = empty({16}, kFloat32); }
  EXPECT_EQ(memory_stats(kCpu).peak, base + rounded(64));
}

TEST(Memory, LimitThrowsOutOfMemoryAndTheProgramGoesOn) {
  const size_t base = cpu_in_use();
  EXPECT_EQ(get_memory_limit(kCpu), 0u);
  MemoryLimitGuard cap(kCpu, base + (size_t{1} << 20));  // 1 MiB more than now
  EXPECT_EQ(get_memory_limit(kCpu), base + (size_t{1} << 20));
  EXPECT_EQ(memory_stats(kCpu).limit, base + (size_t{1} << 20));

  Tensor kept = empty({1 << 17}, kFloat32);  // 512 KiB: fits
  const MemoryStats before = memory_stats(kCpu);
  const size_t requested = size_t{3} << 18;  // 768 KiB: 512 + 768 > 1024
  EXPECT_TRUE(throws_with<OutOfMemory>([&] { empty({3 << 16}, kFloat32); },
                                       {"out of memory on cpu", "768.00 KiB (" + std::to_string(requested) + " bytes)",
                                        std::to_string(before.in_use) + " bytes) in use",
                                        std::to_string(base + (size_t{1} << 20)) + " bytes)", "memory limit"}));
  const MemoryStats after = memory_stats(kCpu);  // the failed allocation changed nothing
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.peak, before.peak);

  Tensor fits = empty({1 << 16}, kFloat32);  // 256 KiB still fits
  EXPECT_EQ(cpu_in_use(), before.in_use + (size_t{1} << 18));
  EXPECT_NO_THROW(fits + fits);  // 256 KiB more reaches the limit exactly: allowed
  EXPECT_THROW(kept * 2, OutOfMemory);  // an op's output is held to the limit too
  set_memory_limit(kCpu, 0);            // removed
  EXPECT_NO_THROW(empty({3 << 16}, kFloat32));
  EXPECT_EQ((ones({4}) * 2).sum().item<float>(), 8.0f);
}

TEST(Memory, LimitMessageIsHumanReadable) {
  MemoryLimitGuard cap(kCpu, size_t{1} << 30);
  EXPECT_TRUE(throws_with<OutOfMemory>([] { empty({int64_t{3} << 29}, kFloat32); },  // 6 GiB
                                       {"6.00 GiB (6442450944 bytes)", "1.00 GiB (1073741824 bytes)", "cpu"}));
  EXPECT_EQ(detail::describe_bytes(100), "100 bytes");
  EXPECT_EQ(detail::describe_bytes(size_t{3} << 19), "1.50 MiB (1572864 bytes)");
}

// The system refusing (no limit set): the attempt is not counted either.
TEST(Memory, RealOutOfMemoryLeavesTheCountsAsTheyWere) {
#if defined(NABLA_TEST_ASAN)
  GTEST_SKIP() << "AddressSanitizer aborts on a 16 PiB request instead of returning null";
#endif
  const MemoryStats before = memory_stats(kCpu);
  EXPECT_TRUE(throws_with<OutOfMemory>([] { empty({int64_t{1} << 52}, kFloat32); }, {"could not allocate", "cpu"}));
  const MemoryStats after = memory_stats(kCpu);
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.peak, before.peak);
  EXPECT_NO_THROW(empty({1024}, kFloat32));
}

TEST(Memory, LimitBelowWhatIsInUseRefusesUntilEnoughIsFreed) {
  Tensor held = empty({1 << 16}, kFloat32);
  const size_t base = cpu_in_use();
  MemoryLimitGuard cap(kCpu, base - 64);
  EXPECT_THROW(empty({1}, kFloat32), OutOfMemory);
  held = Tensor();  // 256 KiB freed: now there is room
  EXPECT_NO_THROW(empty({16}, kFloat32));
}

TEST(Memory, LimitGuardRestoresThePreviousLimit) {
  {
    MemoryLimitGuard outer(kCpu, size_t{8} << 30);
    {
      MemoryLimitGuard inner(kCpu, size_t{4} << 30);
      EXPECT_EQ(get_memory_limit(kCpu), size_t{4} << 30);
    }
    EXPECT_EQ(get_memory_limit(kCpu), size_t{8} << 30);
  }
  EXPECT_EQ(get_memory_limit(kCpu), 0u);
}

// One step of a small model: forward, loss, backward, SGD.
struct TinyModel {
  nn::Linear net{16, 4};
  optim::SGD opt{net.parameters(), optim::SGDOptions(0.1)};
  Tensor x = randn({32, 16}), target = randn({32, 4});

  Tensor loss() { return mse_loss(net.forward(x), target); }
  void step() {
    opt.zero_grad();
    loss().backward();
    opt.step();
  }
};

TEST(Memory, TrainingStepUnderAGenerousLimitWorks) {
  manual_seed(test_seed());
  TinyModel m;
  MemoryLimitGuard cap(kCpu, cpu_in_use() + (size_t{16} << 20));
  const float first = m.loss().item<float>();
  for (int i = 0; i < 20; ++i) m.step();
  EXPECT_LT(m.loss().item<float>(), first);
}

TEST(Memory, TrainingStepPastTheLimitThrowsAndLeavesNothingBroken) {
  manual_seed(test_seed());
  TinyModel m;
  // The gradients of a clean step, taken without stepping, to compare with after the failures.
  m.opt.zero_grad();
  m.loss().backward();
  const Tensor reference = m.net.weight.grad().clone();
  m.opt.zero_grad();
  const Tensor weight_before = m.net.weight.detach().clone();
  const size_t base = cpu_in_use();

  {  // no room even for the forward
    MemoryLimitGuard cap(kCpu, base + 64);
    EXPECT_THROW(m.step(), OutOfMemory);
  }
  EXPECT_EQ(cpu_in_use(), base);
  {  // the forward fits, the backward does not
    m.opt.zero_grad();
    Tensor loss = m.loss();
    MemoryLimitGuard cap(kCpu, cpu_in_use() + 256);  // room for the loss's own gradient only
    EXPECT_THROW(loss.backward(), OutOfMemory);
  }
  EXPECT_TRUE(all_equal(m.net.weight.detach(), weight_before));  // no step was taken
  m.opt.zero_grad();
  EXPECT_LE(cpu_in_use(), base + 4096);  // at most zeroed grads left over, not a leaked graph
  m.loss().backward();
  EXPECT_TRUE(all_close(m.net.weight.grad(), reference, 1e-6, 1e-6));
  m.opt.step();
  EXPECT_FALSE(all_equal(m.net.weight.detach(), weight_before));
}

TEST(Memory, ThreadsAllocatingTogetherLeaveTheCountsBalanced) {
  empty_cpu_cache();
  const MemoryStats before = memory_stats(kCpu);
  constexpr int kThreads = 4, kIters = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([t] {
      std::mt19937 g(static_cast<unsigned>(t));
      std::vector<Tensor> live;
      for (int i = 0; i < kIters; ++i) {
        const int64_t n = (g() % 4 == 0) ? int64_t{1} << 18 : 1 + g() % 5000;  // some via the block cache
        live.push_back(empty({n}, kFloat32));
        if (live.size() > 3) live.erase(live.begin() + static_cast<std::ptrdiff_t>(g() % live.size()));
      }
    });
  for (auto& th : threads) th.join();
  const MemoryStats after = memory_stats(kCpu);
  EXPECT_EQ(after.in_use, before.in_use);
  EXPECT_EQ(after.allocations, before.allocations + uint64_t{kThreads} * kIters);
  empty_cpu_cache();
}

// With a limit set, threads racing for the last bytes: some are refused, none passes the limit,
// and what is left in use is what was there before.
TEST(Memory, ThreadsNeverPassTheLimit) {
  const size_t base = cpu_in_use();
  const size_t limit = base + (size_t{4} << 20);
  MemoryLimitGuard cap(kCpu, limit);
  reset_peak_memory_stats(kCpu);
  std::atomic<int> refused{0}, made{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 g(static_cast<unsigned>(100 + t));
      std::vector<Tensor> live;
      for (int i = 0; i < 200; ++i) {
        try {
          live.push_back(empty({static_cast<int64_t>(1 + g() % (1 << 18))}, kFloat32));  // up to 1 MiB
          ++made;
        } catch (const OutOfMemory&) {
          ++refused;
        }
        if (live.size() > 2) live.erase(live.begin());
      }
    });
  for (auto& th : threads) th.join();
  const MemoryStats after = memory_stats(kCpu);
  EXPECT_LE(after.peak, limit);
  EXPECT_EQ(after.in_use, base);
  EXPECT_EQ(made + refused, 800);
  EXPECT_GT(made.load(), 0);
}

TEST(Memory, ScopesNameWhatWasAllocatingAtThePeak) {
  ProfilingOn profiling;
  reset_peak_memory_stats(kCpu);
  EXPECT_EQ(memory_stats(kCpu).peak_tag, "");
  EXPECT_EQ(MemoryScope::current(), nullptr);
  {
    MemoryScope step("train_step");
    Tensor small = empty({256}, kFloat32);
    EXPECT_EQ(memory_stats(kCpu).peak_tag, "train_step");
    {
      MemoryScope conv("conv2d");  // the innermost scope wins
      EXPECT_STREQ(MemoryScope::current(), "conv2d");
      Tensor big = empty({1 << 16}, kFloat32);
    }
    EXPECT_STREQ(MemoryScope::current(), "train_step");
    Tensor later = empty({256}, kFloat32);  // below the peak: the tag stays
  }
  EXPECT_EQ(MemoryScope::current(), nullptr);
  EXPECT_EQ(memory_stats(kCpu).peak_tag, "conv2d");
  reset_peak_memory_stats(kCpu);
  EXPECT_EQ(memory_stats(kCpu).peak_tag, "");
  { Tensor untagged = empty({64}, kFloat32); }
  EXPECT_EQ(memory_stats(kCpu).peak_tag, "");

  MemoryLimitGuard cap(kCpu, cpu_in_use() + 1024);  // the OutOfMemory names the scope too
  MemoryScope scope("attention");
  EXPECT_TRUE(throws_with<OutOfMemory>([] { empty({4096}, kFloat32); }, {"attention"}));
}

TEST(Memory, ScopesAreThreadLocalAndProfilingOffRecordsNothing) {
  {
    ProfilingOn profiling;
    MemoryScope mine("main-thread");
    std::thread([] { EXPECT_EQ(MemoryScope::current(), nullptr); }).join();
  }
  set_memory_profiling(false);
  reset_peak_memory_stats(kCpu);
  MemoryScope scope("unrecorded");
  { Tensor t = empty({1 << 12}, kFloat32); }
  EXPECT_EQ(memory_stats(kCpu).peak_tag, "");
}

// ---- CUDA ---------------------------------------------------------------------------------------

TEST(CudaMemory, WithoutAGpuIsADeviceError) {
  if (cuda::is_available()) GTEST_SKIP() << "a GPU is present; this checks the no-GPU path";
  EXPECT_TRUE(throws_with<DeviceError>([] { memory_stats(Device::cuda()); }, {"memory_stats", "cuda:0", "no CUDA"}));
  EXPECT_TRUE(throws_with<DeviceError>([] { set_memory_limit(Device::cuda(), 1 << 20); }, {"set_memory_limit"}));
  EXPECT_THROW(get_memory_limit(Device::cuda(1)), DeviceError);
  EXPECT_THROW(reset_peak_memory_stats(Device::cuda()), DeviceError);
  EXPECT_EQ(cuda::memory_stats().in_use, 0u);  // the cuda:: call keeps answering zeros
}

TEST(CudaMemory, StatsMatchTheCudaApi) {
  NABLA_REQUIRE_GPU();
  cuda::synchronize();
  const MemoryStats before = memory_stats(Device::cuda());
  {
    Tensor t = empty({1 << 20}, Device::cuda());  // 4 MiB, counted as requested
    const MemoryStats during = memory_stats(Device::cuda());
    EXPECT_EQ(during.in_use, before.in_use + (size_t{4} << 20));
    EXPECT_EQ(during.allocations, before.allocations + 1);
    EXPECT_GE(during.peak, during.in_use);
    EXPECT_GE(during.reserved, during.in_use);
    EXPECT_EQ(cuda::memory_stats(0).in_use, during.in_use);
  }
  EXPECT_EQ(memory_stats(Device::cuda()).in_use, before.in_use);
  reset_peak_memory_stats(Device::cuda());
  EXPECT_EQ(memory_stats(Device::cuda()).peak, before.in_use);
  EXPECT_TRUE(throws_with<DeviceError>([] { memory_stats(Device::cuda(99)); }, {"cuda:99"}));
  cuda::empty_cache();
}

TEST(CudaMemory, LimitThrowsOutOfMemoryAndTheProgramGoesOn) {
  NABLA_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  const size_t base = memory_stats(gpu).in_use;
  {
    MemoryLimitGuard cap(gpu, base + (size_t{8} << 20));
    EXPECT_EQ(cuda::get_memory_limit(0), base + (size_t{8} << 20));
    Tensor kept = empty({1 << 20}, gpu);  // 4 MiB fits
    const MemoryStats before = memory_stats(gpu);
    EXPECT_TRUE(throws_with<OutOfMemory>([&] { empty({int64_t{3} << 19}, gpu); },  // 6 MiB does not
                                         {"cuda:0", "6.00 MiB (6291456 bytes)", std::to_string(before.in_use),
                                          std::to_string(base + (size_t{8} << 20)), "memory limit"}));
    EXPECT_EQ(memory_stats(gpu).in_use, before.in_use);
    EXPECT_EQ(memory_stats(gpu).allocations, before.allocations);
    Tensor fits = ones({1 << 18}, gpu);  // 1 MiB
    EXPECT_EQ(fits.sum().item<float>(), float(1 << 18));
    // a training step on the GPU past the limit, then without it
    nn::Linear net(64, 64);
    net.to(gpu);
    Tensor x = randn({512, 64}, gpu);
    set_memory_limit(gpu, memory_stats(gpu).in_use + 1024);
    EXPECT_THROW(net.forward(x).sum().backward(), OutOfMemory);
    set_memory_limit(gpu, 0);
    net.forward(x).sum().backward();
    EXPECT_TRUE(net.weight.grad().defined());
  }
  EXPECT_EQ(get_memory_limit(gpu), 0u);
  cuda::synchronize();
  EXPECT_EQ(memory_stats(gpu).in_use, base);
  cuda::empty_cache();
}

}  // namespace
}  // namespace nabla_test
