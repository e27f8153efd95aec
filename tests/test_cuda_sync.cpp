// What a GPU training loop must not pay for: index ops (index_select, gather, embedding, nll_loss)
// and clip_grad_norm_ queue their work without waiting for the device, and a bad index is still
// reported, as IndexError naming the op, at the next synchronisation. Skipped without a GPU.

#include "test_util.hpp"

#if defined(NABLA_WITH_CUDA)
#include <cuda_runtime.h>

#include <nabla/backend/cuda/runtime.hpp>
#endif

namespace nabla_test {
namespace {

#if defined(NABLA_WITH_CUDA)
// Queues ~10 large matmuls (hundreds of milliseconds on any GPU) so that whatever the host
// enqueues next sits behind them; the caller then checks the stream has not drained, i.e. the
// host did not wait for the device in between.
Tensor keep_device_busy() {
  Tensor m = randn({8192, 8192}, Device::cuda());
  for (int i = 0; i < 10; ++i) m = matmul(m, m) * (1.0 / 8192);
  return m;
}
bool device_still_busy() { return cudaStreamQuery(cuda::detail::stream(0)) == cudaErrorNotReady; }
#endif

TEST(CudaSync, BadIndicesRaiseAtTheNextSynchronisationNamingTheOp) {
  NABLA_REQUIRE_GPU();
  Tensor a = randn({4, 3}, Device::cuda());
  Tensor bad = full({2}, 7, TensorOptions(kInt64).device(Device::cuda()));
  Tensor out = a.index_select(0, bad);  // queued: no exception yet
  EXPECT_TRUE(throws_with<IndexError>([] { cuda::synchronize(); }, {"index_select", "7", "size 4"}));
  cuda::synchronize();  // reported once, then cleared: the process goes on
  Tensor good = full({2}, 3, TensorOptions(kInt64).device(Device::cuda()));
  EXPECT_TRUE(all_close(a.index_select(0, good).cpu(), a.cpu().index_select(0, good.cpu()), 0, 0));

  // nll_loss (and cross_entropy) name themselves, with the valid range; item() is a synchronisation
  Tensor logits = randn({3, 5}, Device::cuda());
  Tensor target = full({3}, 9, TensorOptions(kInt64).device(Device::cuda()));
  EXPECT_TRUE(throws_with<IndexError>([&] { (void)cross_entropy(logits, target).item<float>(); },
                                      {"nll_loss", "9", "[0, 5)"}));
  // ignore_index is not an error
  Tensor ignored = full({3}, -100, kInt64);
  ignored.narrow(0, 1, 1).fill_(2);
  ignored = ignored.to(Device::cuda());
  EXPECT_NO_THROW((void)cross_entropy(logits, ignored).item<float>());

  // the first bad index of several ops is the one reported; a device-to-host copy reports it too
  Tensor g = gather(a, 1, full({4, 2}, -1, TensorOptions(kInt64).device(Device::cuda())));
  (void)a.index_select(0, bad);
  EXPECT_TRUE(throws_with<IndexError>([&] { (void)g.cpu(); }, {"gather", "-1", "size 3"}));
  EXPECT_NO_THROW(cuda::synchronize());
}

TEST(CudaSync, IndexOpsAndLossesDoNotWaitForTheDevice) {
  NABLA_REQUIRE_GPU();
#if defined(NABLA_WITH_CUDA)
  Tensor table = randn({1000, 64}, Device::cuda());
  Tensor ids = randint(0, 1000, {256}, TensorOptions(kInt64).device(Device::cuda()));
  Tensor logits = randn({256, 1000}, Device::cuda()).requires_grad_();
  Tensor busy = keep_device_busy();
  Tensor rows = table.index_select(0, ids);
  Tensor picked = gather(table.narrow(0, 0, 256), 1, randint(0, 64, {256, 1}, TensorOptions(kInt64).device(Device::cuda())));
  Tensor loss = cross_entropy(logits, ids);
  loss.backward();  // gather's backward is a scatter_add
  EXPECT_TRUE(device_still_busy()) << "an index op or the loss waited for the device";
  cuda::synchronize();
  EXPECT_TRUE(all_close(rows.cpu(), table.cpu().index_select(0, ids.cpu()), 0, 0));
  (void)picked;
  (void)busy;
#endif
}

TEST(CudaSync, ClipGradNormQueuesTheClippingAndMatchesTheCpu) {
  NABLA_REQUIRE_GPU();
#if defined(NABLA_WITH_CUDA)
  for (double norm_type : {2.0, 1.0, 3.0, double(INFINITY)}) {
    std::vector<Tensor> cpu_params, gpu_params;
    for (Shape s : {Shape{7, 5}, Shape{13}, Shape{0}, Shape{3, 3, 2}}) {
      Tensor p = randn(s).requires_grad_();
      p.mutable_grad() = randn(s) * 3.0;
      Tensor q = p.detach().to(Device::cuda()).requires_grad_();
      q.mutable_grad() = p.grad().to(Device::cuda());
      cpu_params.push_back(p), gpu_params.push_back(q);
    }
    Tensor busy = keep_device_busy();
    optim::GradNorm n = optim::clip_grad_norm_(gpu_params, 1.5, norm_type);  // not read: no wait
    EXPECT_TRUE(device_still_busy()) << "clip_grad_norm_ waited for the device (norm " << norm_type << ")";
    const double expected = optim::clip_grad_norm_(cpu_params, 1.5, norm_type);
    EXPECT_NEAR(static_cast<double>(n), expected, 1e-5 * expected) << "norm " << norm_type;
    EXPECT_EQ(n.tensor().device(), Device::cuda());
    for (size_t i = 0; i < cpu_params.size(); ++i)
      EXPECT_TRUE(all_close(gpu_params[i].grad().cpu(), cpu_params[i].grad(), 1e-6, 1e-5)) << "norm " << norm_type;
    (void)busy;
  }
#endif
}

}  // namespace
}  // namespace nabla_test
