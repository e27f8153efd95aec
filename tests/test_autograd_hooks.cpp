// Post-accumulate-grad hooks and end-of-backward callbacks (DistributedDataParallel's triggers):
// a hook sees the leaf's .grad() already summed, once per backward, and can be removed; a
// queued callback runs after every node of the pass; queue_callback outside backward is an error.

#include <gtest/gtest.h>

#include <nabla/nabla.hpp>

using namespace nabla;

namespace {

TEST(AutogradHooks, PostAccumulateGradHookSeesTheSummedGradient) {
  Tensor w = full({2}, 3.0).requires_grad_();
  std::vector<double> seen;
  int calls = 0;
  uint64_t h = autograd::register_post_accumulate_grad_hook(w, [&](const Tensor& leaf) {
    ++calls;
    seen.push_back(leaf.grad()[0].item<double>());
  });
  (w * 2 + w * 5).sum().backward();  // two uses, one accumulation: 7
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen.back(), 7.0);
  (w * 2).sum().backward();  // accumulates onto 7
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen.back(), 9.0);
  autograd::remove_post_accumulate_grad_hook(w, h);
  (w * 2).sum().backward();
  EXPECT_EQ(calls, 2);
  Tensor not_leaf = w * 2;
  EXPECT_THROW(autograd::register_post_accumulate_grad_hook(not_leaf, [](const Tensor&) {}), AutogradError);
  EXPECT_THROW(autograd::register_post_accumulate_grad_hook(zeros({2}), [](const Tensor&) {}), AutogradError);
}

TEST(AutogradHooks, QueuedCallbackRunsAfterTheWholePass) {
  Tensor a = ones({3}).requires_grad_(), b = ones({3}).requires_grad_();
  std::vector<std::string> order;
  autograd::register_post_accumulate_grad_hook(a, [&](const Tensor&) {
    order.push_back("a");
    if (order.size() == 1)
      autograd::queue_callback([&] {
        order.push_back("callback");
        EXPECT_TRUE(a.grad().defined() && b.grad().defined());  // every leaf is done by now
        autograd::queue_callback([&] { order.push_back("nested"); });
      });
  });
  autograd::register_post_accumulate_grad_hook(b, [&](const Tensor&) { order.push_back("b"); });
  ((a * b).sum() + b.sum()).backward();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[2], "callback");
  EXPECT_EQ(order[3], "nested");
  EXPECT_THROW(autograd::queue_callback([] {}), AutogradError);
}

}  // namespace
