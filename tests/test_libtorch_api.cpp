// The same call text (api_same_calls.inc) compiled once against LibTorch and once against
// nabla, run on the same inputs: the LibTorch idioms that used to compile in nabla and compute
// something else (x.var(1), torch::batch_norm's argument order, in-place calls on a const
// handle such as w.grad().zero_()) and the argument orders and defaults of the common calls.
// Built with NABLA_HAVE_LIBTORCH when LibTorch is found; otherwise every case skips (the
// nabla-only checks of the same findings are in test_api_traps.cpp).
#include <gtest/gtest.h>

#ifndef NABLA_HAVE_LIBTORCH

TEST(LibTorchApi, SameCallSameResult) { GTEST_SKIP() << "LibTorch not found"; }

#else

#include <torch/torch.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <nabla/nabla.hpp>

namespace via_torch {
namespace lib = torch;
using Tensor = torch::Tensor;
#include "api_same_calls.inc"
}  // namespace via_torch

namespace via_nabla {
namespace lib = nabla;
using Tensor = nabla::Tensor;
#include "api_same_calls.inc"
}  // namespace via_nabla

namespace {

torch::Tensor to_torch(const nabla::Tensor& t) {
  nabla::Tensor c = t.detach().to(nabla::kFloat64).contiguous();
  std::vector<int64_t> sizes(c.sizes().begin(), c.sizes().end());
  return torch::from_blob(c.data_ptr(), sizes, torch::kDouble).clone();
}

// Same shape and values (compared in float64).
void expect_same(const std::string& what, const nabla::Tensor& got, const torch::Tensor& want) {
  torch::Tensor w = want.detach().to(torch::kDouble).contiguous();
  std::vector<int64_t> ws(w.sizes().begin(), w.sizes().end());
  std::vector<int64_t> gs(got.sizes().begin(), got.sizes().end());
  ASSERT_EQ(gs, ws) << what << ": shape";
  torch::Tensor g = to_torch(got);
  EXPECT_TRUE(torch::allclose(g, w, 1e-9, 1e-10)) << what << "\nnabla:\n" << g << "\nlibtorch:\n" << w;
}

}  // namespace

#define SAME1(fn, a) expect_same(#fn, via_nabla::fn(a), via_torch::fn(to_torch(a)))
#define SAME3(fn, a, b, c) \
  expect_same(#fn, via_nabla::fn(a, b, c), via_torch::fn(to_torch(a), to_torch(b), to_torch(c)))
#define SAME5(fn, a, b, c, d, e)                                                             \
  expect_same(#fn, via_nabla::fn(a, b, c, d, e),                                             \
              via_torch::fn(to_torch(a), to_torch(b), to_torch(c), to_torch(d), to_torch(e)))

TEST(LibTorchApi, SameCallSameResult) {
  nabla::manual_seed(11);
  const nabla::Tensor x = nabla::randn({4, 6}, nabla::kFloat64);
  SAME1(var_int_dim, x);
  SAME1(std_int_dim, x);
  SAME1(var_bool_unbiased, x);
  SAME1(var_bool_biased, x);
  SAME1(std_bool_biased, x);
  SAME1(var_dim_biased, x);
  SAME1(std_dim_keepdim, x);
  SAME1(free_var_int_dim, x);
  SAME1(free_std_int_dim, x);
  SAME1(free_var_bool, x);
  SAME1(free_std_bool, x);
  SAME1(free_var_mean_int_dim, x);
  SAME1(free_std_mean_int_dim, x);

  const nabla::Tensor img = nabla::randn({2, 3, 7, 6}, nabla::kFloat64);
  const nabla::Tensor w = nabla::randn({3}, nabla::kFloat64), b = nabla::randn({3}, nabla::kFloat64);
  const nabla::Tensor rm = nabla::randn({3}, nabla::kFloat64), rv = nabla::rand({3}, nabla::kFloat64) + 0.5;
  SAME5(batch_norm_train, img, w, b, rm, rv);
  SAME5(batch_norm_eval, img, w, b, rm, rv);

  SAME1(inplace_on_const_handles, x);

  SAME1(sum_dim_keepdim, x);
  SAME1(mean_dims, x);
  SAME1(max_dim_keepdim, x);
  SAME1(min_dim_indices, x);
  SAME1(argmax_dim_keepdim, x);
  SAME1(argmin_all, x);
  SAME1(amax_dim, x);
  SAME1(prod_dim, x);
  SAME1(logsumexp_dim, x);
  SAME1(softmax_dim, x);
  SAME1(log_softmax_dim, x);
  SAME1(cat_dim, x);
  SAME1(stack_dim, x);
  SAME1(narrow_dim, x);
  SAME1(slice_step, x);
  SAME1(transpose_dims, x);
  SAME1(flatten_range, x);
  SAME1(squeeze_unsqueeze, x);
  SAME1(split_second, x);
  SAME1(chunk_first, x);
  SAME1(clamp_min_max, x);
  SAME1(clamp_min_only, x);
  SAME1(add_alpha, x);
  SAME1(sub_alpha, x);
  SAME1(index_select_dim, x);
  SAME1(arange_step, x);
  SAME1(arange_end, x);
  SAME1(full_value, x);
  SAME1(eye_n, x);
  SAME1(linspace_steps, x);
  SAME1(mse_default, x);

  const nabla::Tensor cw = nabla::randn({4, 3, 3, 3}, nabla::kFloat64), cb = nabla::randn({4}, nabla::kFloat64);
  SAME3(conv2d_args, img, cw, cb);
  SAME1(max_pool2d_ceil, img);
  SAME1(avg_pool2d_no_pad_count, img);
  const nabla::Tensor lw = nabla::randn({5, 6}, nabla::kFloat64), lb = nabla::randn({5}, nabla::kFloat64);
  SAME3(linear_fn, x, lw, lb);

  SAME1(sort_default_values, x);
  SAME1(sort_dim_desc_indices, x);
  SAME1(sort_stable_indices, x);
  SAME1(argsort_dim_desc, x);
  SAME1(topk_default_values, x);
  SAME1(topk_smallest_dim0_indices, x);
  SAME1(cumsum_dim, x);
  SAME1(cumsum_dtype, x);
  SAME1(cumsum_bool_int64, x);
  SAME1(tril_default, x);
  SAME1(triu_below, x);
  SAME1(tril_inplace, x);
  SAME1(bmm_batch, x);
  SAME1(addmm_beta_alpha, x);
  SAME1(addmm_method_default, x);
  SAME1(baddbmm_beta_alpha, x);
  SAME1(embedding_padding_grad, x);
  SAME1(embedding_module_padding_row, x);
  SAME1(multinomial_one_hot, x);
}

#endif  // NABLA_HAVE_LIBTORCH
