// A model pruned with nn::utils::prune and made permanent (remove) loads into LibTorch's own
// module of the same architecture, strictly (the same keys, shapes and dtypes), and computes the
// same outputs there, zeros included: what "loads into PyTorch" asks of PyTorch's names.
// Built with NABLA_HAVE_LIBTORCH when LibTorch is found; otherwise it skips.
#include <gtest/gtest.h>

#ifndef NABLA_HAVE_LIBTORCH

TEST(LibTorchPrune, APrunedThenRemovedModelLoadsIntoLibTorch) { GTEST_SKIP() << "LibTorch not found"; }

#else

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>
#include <nabla/nn/prune.hpp>

namespace {

namespace nb = nabla;
namespace prune = nabla::nn::utils::prune;

torch::Tensor to_torch(const nb::Tensor& t) {
  nb::Tensor c = t.detach().to(nb::kFloat32).contiguous();
  std::vector<int64_t> sizes(c.sizes().begin(), c.sizes().end());
  return torch::from_blob(c.data_ptr(), sizes, torch::kFloat).clone();
}

TEST(LibTorchPrune, APrunedThenRemovedModelLoadsIntoLibTorch) {
  nb::manual_seed(3);
  auto net = std::make_shared<nb::nn::Sequential>(
      nb::nn::Conv2d(1, 8, 3, 1), nb::nn::ReLU(), nb::nn::Conv2d(8, 16, 3, 1), nb::nn::ReLU(), nb::nn::MaxPool2d(2),
      nb::nn::Flatten(), nb::nn::Linear(16 * 12 * 12, 32), nb::nn::ReLU(), nb::nn::Linear(32, 10));
  prune::l1_unstructured(*(*net)[0], "weight", 0.5);
  prune::ln_structured(*(*net)[6], "weight", 0.25, 2, 0);
  prune::global_unstructured({{(*net)[2], "weight"}, {(*net)[8], "weight"}}, prune::L1Unstructured, 0.3);
  prune::l1_unstructured(*(*net)[0], "bias", 2);
  // while pruned: PyTorch's names (weight_orig, weight_mask), to be made permanent before loading
  EXPECT_TRUE(net->state_dict().contains("0.weight_orig"));
  EXPECT_TRUE(net->state_dict().contains("0.weight_mask"));
  for (size_t i : {0, 2, 6, 8}) prune::remove(*(*net)[i], "weight");
  prune::remove(*(*net)[0], "bias");

  torch::nn::Sequential t(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3)), torch::nn::ReLU(),
                          torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3)), torch::nn::ReLU(),
                          torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)), torch::nn::Flatten(),
                          torch::nn::Linear(16 * 12 * 12, 32), torch::nn::ReLU(), torch::nn::Linear(32, 10));
  // strict: the same keys both ways, then every tensor copied by name with its shape checked
  const auto state = net->state_dict();
  std::set<std::string> ours, theirs;
  for (const auto& [name, v] : state) ours.insert(name);
  for (const auto& p : t->named_parameters()) theirs.insert(p.key());
  for (const auto& b : t->named_buffers()) theirs.insert(b.key());
  ASSERT_EQ(ours, theirs);
  {
    torch::NoGradGuard ng;
    for (auto& p : t->named_parameters()) {
      torch::Tensor v = to_torch(state[p.key()]);
      ASSERT_EQ(v.sizes(), p.value().sizes()) << p.key();
      p.value().copy_(v);
    }
  }
  EXPECT_EQ((t->named_parameters()["0.weight"] == 0).sum().item<int64_t>(), 36);  // half of 72
  EXPECT_EQ((t->named_parameters()["6.weight"].abs().sum(1) == 0).sum().item<int64_t>(), 8);  // a quarter of 32 rows

  nb::Tensor x = nb::randn({5, 1, 28, 28});
  nb::Tensor want;
  {
    nb::NoGradGuard ng;
    net->eval();
    want = net->forward(x);
  }
  t->eval();
  torch::Tensor got = t->forward(to_torch(x));
  EXPECT_TRUE(torch::allclose(got, to_torch(want), 1e-4, 1e-5)) << got << "\n" << to_torch(want);
}

}  // namespace

#endif
