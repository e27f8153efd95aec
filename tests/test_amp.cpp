// Mixed precision (issue 14): autocast's policy tables against PyTorch's lists, the dtype every
// listed op (and a sample of unlisted ones) returns under autocast on each device type's table,
// the cast cache, nesting, GradScaler's scale trace on hand-made inf/NaN gradients and its
// errors, its fused kernel against the composite, and optimizers' master weights.

#include <map>
#include <sstream>

#include "support/temp_files.hpp"
#include "test_util.hpp"

using namespace nabla_test;
namespace amp = nabla::amp;

namespace {

// ---- PyTorch's lists (aten/src/ATen/autocast_mode.{h,cpp}, PyTorch 2.5), written out here from
// the source, independently of nabla's table, one string per policy ---------------------------

const char* kTorchCuda[][2] = {
    {"lower_precision_fp",
     "_convolution conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d conv_transpose3d convolution prelu "
     "addmm addmv addr matmul einsum mm mv linalg_vecdot linear addbmm baddbmm bmm chain_matmul linalg_multi_dot "
     "_thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell "
     "_scaled_dot_product_flash_attention scaled_dot_product_attention cudnn_convolution cudnn_convolution_transpose"},
    {"fp32",
     "acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow softplus layer_norm "
     "native_layer_norm group_norm frobenius_norm nuclear_norm cosine_similarity poisson_nll_loss "
     "cosine_embedding_loss nll_loss nll_loss2d hinge_embedding_loss kl_div l1_loss smooth_l1_loss huber_loss mse_loss "
     "margin_ranking_loss multilabel_margin_loss soft_margin_loss triplet_margin_loss multi_margin_loss "
     "binary_cross_entropy_with_logits dist pdist cdist renorm logsumexp upsample_nearest1d _upsample_nearest_exact1d "
     "upsample_nearest2d _upsample_nearest_exact2d upsample_nearest3d _upsample_nearest_exact3d upsample_linear1d "
     "upsample_bilinear2d _upsample_bilinear2d_aa upsample_trilinear3d upsample_bicubic2d _upsample_bicubic2d_aa"},
    {"fp32_set_opt_dtype", "prod softmax log_softmax cumprod cumsum linalg_vector_norm linalg_matrix_norm sum"},
    {"fp32_append_dtype", "norm"},
    {"promote", "addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put tensordot scatter_add"},
    {"banned", "binary_cross_entropy"},
};
const char* kTorchCpu[][2] = {
    {"lower_precision_fp",
     "conv1d conv2d conv3d bmm mm linalg_vecdot baddbmm addmm _addmm_activation addbmm linear _convolution matmul "
     "conv_tbc mkldnn_rnn_layer conv_transpose1d conv_transpose2d conv_transpose3d prelu scaled_dot_product_attention "
     "_native_multi_head_attention"},
    {"fp32",
     "avg_pool3d binary_cross_entropy grid_sampler polar prod quantile nanquantile stft cdist grid_sampler_2d "
     "_grid_sampler_2d_cpu_fallback grid_sampler_3d trace view_as_complex cholesky cholesky_inverse cholesky_solve "
     "inverse lu_solve orgqr ormqr pinverse max_pool3d max_unpool2d max_unpool3d adaptive_avg_pool3d reflection_pad1d "
     "reflection_pad2d replication_pad1d replication_pad2d replication_pad3d mse_loss cosine_embedding_loss nll_loss "
     "nll_loss2d hinge_embedding_loss poisson_nll_loss smooth_l1_loss cross_entropy_loss l1_loss huber_loss "
     "margin_ranking_loss soft_margin_loss triplet_margin_loss multi_margin_loss ctc_loss kl_div "
     "multilabel_margin_loss binary_cross_entropy_with_logits fft_fft fft_ifft fft_fft2 fft_ifft2 fft_fftn fft_ifftn "
     "fft_rfft fft_irfft fft_rfft2 fft_irfft2 fft_rfftn fft_irfftn fft_hfft fft_ihfft linalg_cond linalg_matrix_rank "
     "linalg_solve linalg_cholesky linalg_svdvals linalg_eigvals linalg_eigvalsh linalg_inv "
     "linalg_householder_product linalg_tensorinv linalg_tensorsolve fake_quantize_per_tensor_affine geqrf "
     "_lu_with_info qr svd triangular_solve fractional_max_pool2d fractional_max_pool3d adaptive_max_pool3d "
     "multilabel_margin_loss_forward linalg_qr linalg_cholesky_ex linalg_svd linalg_eig linalg_eigh linalg_lstsq "
     "linalg_inv_ex"},
    {"promote", "stack cat index_copy"},
};

template <size_t N>
std::map<std::string, std::string> expected_policies(const char* (&lists)[N][2]) {
  std::map<std::string, std::string> out;
  for (auto& l : lists) {
    std::istringstream ops(l[1]);
    for (std::string op; ops >> op;) {
      EXPECT_EQ(out.count(op), 0u) << op << " is on two of PyTorch's lists";
      out[op] = l[0];
    }
  }
  return out;
}

template <size_t N>
void check_table(DeviceType t, const char* (&lists)[N][2]) {
  auto expected = expected_policies(lists);
  auto [entries, n] = amp::cast_policy_table(t);
  std::map<std::string, std::string> ours;
  for (size_t i = 0; i < n; ++i) {
    const std::string op(entries[i].op);
    EXPECT_EQ(ours.count(op), 0u) << op << " appears twice in nabla's " << t << " table";
    ours[op] = amp::cast_policy_name(entries[i].policy);
  }
  for (const auto& [op, policy] : expected) {
    auto it = ours.find(op);
    if (it == ours.end()) {
      ADD_FAILURE() << t << ": PyTorch lists " << op << " as " << policy << ", nabla's table lacks it";
    } else {
      EXPECT_EQ(it->second, policy) << t << ": " << op;
    }
    EXPECT_EQ(amp::cast_policy_name(amp::cast_policy(t, op)), policy) << t << ": cast_policy(" << op << ")";
  }
  for (const auto& [op, policy] : ours)
    EXPECT_TRUE(expected.count(op)) << t << ": nabla's table has " << op << " (" << policy << "), PyTorch's lists do not";
  EXPECT_EQ(amp::cast_policy(t, "relu"), amp::CastPolicy::None);
}

Tensor randf(const Shape& s, DType dt = kFloat32) { return randn(s).to(dt); }

}  // namespace

TEST(AutocastPolicy, TablesAreTorchsLists) {
  check_table(kCUDA, kTorchCuda);
  check_table(kCPU, kTorchCpu);
}

TEST(AutocastPolicy, GuardStateAndNesting) {
  EXPECT_FALSE(amp::is_autocast_enabled(kCPU));
  EXPECT_EQ(amp::get_autocast_dtype(kCPU), kBFloat16);
  EXPECT_EQ(amp::get_autocast_dtype(kCUDA), kFloat16);
  {
    amp::autocast outer(kCPU);
    EXPECT_TRUE(amp::is_autocast_enabled(kCPU));
    EXPECT_FALSE(amp::is_autocast_enabled(kCUDA));
    {
      amp::autocast inner(kCPU, kFloat16, /*enabled=*/false);
      EXPECT_FALSE(amp::is_autocast_enabled(kCPU));
      EXPECT_EQ(matmul(randf({2, 3}), randf({3, 2})).dtype(), kFloat32);
    }
    EXPECT_TRUE(amp::is_autocast_enabled(kCPU));
    EXPECT_EQ(amp::get_autocast_dtype(kCPU), kBFloat16);
    EXPECT_EQ(matmul(randf({2, 3}), randf({3, 2})).dtype(), kBFloat16);
  }
  EXPECT_FALSE(amp::is_autocast_enabled(kCPU));
  EXPECT_EQ(matmul(randf({2, 3}), randf({3, 2})).dtype(), kFloat32);
  EXPECT_THROW(amp::autocast bad(kCPU, kFloat32), ValueError);
  // LibTorch's at::autocast spellings
  nabla::autocast::set_cpu_enabled(true);
  EXPECT_TRUE(amp::is_autocast_enabled(kCPU));
  EXPECT_EQ(mm(randf({2, 3}), randf({3, 2})).dtype(), kBFloat16);
  nabla::autocast::set_cpu_enabled(false);
  nabla::autocast::clear_cache();
}

// Every op nabla has that is on the CPU lists, and a sample of unlisted ones.
TEST(AutocastCpu, DtypeOfEveryListedOp) {
  for (DType low : {kBFloat16, kFloat16}) {
    SCOPED_TRACE(dtype_name(low));
    amp::autocast ac(kCPU, low);
    // lower_precision_fp: float32 inputs run in the autocast dtype
    EXPECT_EQ(matmul(randf({4, 8}), randf({8, 3})).dtype(), low);
    EXPECT_EQ(mm(randf({4, 8}), randf({8, 3})).dtype(), low);
    EXPECT_EQ(nn::functional::linear(randf({4, 8}), randf({3, 8}), randf({3})).dtype(), low);
    EXPECT_EQ(conv2d(randf({2, 3, 6, 6}), randf({4, 3, 3, 3}), randf({4})).dtype(), low);
    EXPECT_EQ(conv_transpose2d(randf({2, 3, 5, 5}), randf({3, 4, 3, 3}), randf({4})).dtype(), low);
    // float64 is never touched
    EXPECT_EQ(matmul(randf({4, 8}, kFloat64), randf({8, 3}, kFloat64)).dtype(), kFloat64);
    // fp32: 16-bit inputs run in float32
    const Tensor x = randf({4, 5}, low), y = randf({4, 5}, low);
    const Tensor labels = randint(0, 5, {4});
    EXPECT_EQ(prod(x).dtype(), kFloat32);
    EXPECT_EQ(mse_loss(x, y).dtype(), kFloat32);
    EXPECT_EQ(l1_loss(x, y).dtype(), kFloat32);
    EXPECT_EQ(smooth_l1_loss(x, y).dtype(), kFloat32);
    EXPECT_EQ(huber_loss(x, y).dtype(), kFloat32);
    EXPECT_EQ(nll_loss(log_softmax(x, 1), labels).dtype(), kFloat32);
    EXPECT_EQ(cross_entropy(x, labels).dtype(), kFloat32);
    EXPECT_EQ(binary_cross_entropy(sigmoid(x), sigmoid(y)).dtype(), kFloat32);
    EXPECT_EQ(binary_cross_entropy_with_logits(x, sigmoid(y)).dtype(), kFloat32);
    // promote: the widest floating input
    EXPECT_EQ(cat({randf({2}, low), randf({3})}).dtype(), kFloat32);
    EXPECT_EQ(cat({randf({2}, low), randf({3}, low)}).dtype(), low);
    EXPECT_EQ(stack({randf({2}, low), randf({2})}).dtype(), kFloat32);
    EXPECT_EQ(cat({randf({2}, kFloat64), randf({3}, low)}).dtype(), kFloat64);  // float64 ignored, then cat promotes
    // on no CPU list: the inputs' dtype, 16-bit stays 16-bit and float32 stays float32
    for (DType in : {low, kFloat32}) {
      const Tensor v = randf({2, 3, 4, 4}, in);
      EXPECT_EQ(exp(v).dtype(), in);
      EXPECT_EQ(softmax(v, 1).dtype(), in);
      EXPECT_EQ(sum(v).dtype(), in);
      EXPECT_EQ(relu(v).dtype(), in);
      EXPECT_EQ(pow(v, 2.0).dtype(), in);
      EXPECT_EQ(var(v).dtype(), in);
      EXPECT_EQ(max_pool2d(v, 2).dtype(), in);
      EXPECT_EQ(avg_pool2d(v, 2).dtype(), in);
      EXPECT_EQ(adaptive_avg_pool2d(v, {3, 3}).dtype(), in);  // a matmul inside, not cast
      EXPECT_EQ(interpolate(v, Pair2d{6, 6}, "bilinear").dtype(), in);
      EXPECT_EQ(nn::functional::layer_norm(v, {4}, randf({4}), randf({4})).dtype(), in);  // float32 weight
      EXPECT_EQ(batch_norm(v, randf({3}), randf({3}), zeros({3}), ones({3}), true, 0.1, 1e-5, false).dtype(), in);
    }
  }
}

// The CUDA table, applied to CPU tensors (TablesFor), so it is checked on machines without a GPU.
TEST(AutocastCudaTable, DtypeOfEveryListedOp) {
  amp::detail::TablesFor cuda_tables(kCUDA);
  amp::autocast ac(kCPU, kFloat16);
  const DType h = kFloat16;
  EXPECT_EQ(matmul(randf({4, 8}), randf({8, 3})).dtype(), h);
  EXPECT_EQ(mm(randf({4, 8}), randf({8, 3})).dtype(), h);
  EXPECT_EQ(nn::functional::linear(randf({4, 8}), randf({3, 8})).dtype(), h);
  EXPECT_EQ(conv2d(randf({2, 3, 6, 6}), randf({4, 3, 3, 3})).dtype(), h);
  EXPECT_EQ(conv_transpose2d(randf({2, 3, 5, 5}), randf({3, 4, 3, 3})).dtype(), h);
  const Tensor x = randf({4, 5}, h).abs() + 0.5, y = randf({4, 5}, h);
  const Tensor labels = randint(0, 5, {4});
  // fp32
  for (const Tensor& r : {exp(x), log(x), log1p(x), expm1(x), rsqrt(x), reciprocal(x), pow(x, 2.0), pow(x, y),
                          nn::functional::layer_norm(x, {5}), mse_loss(x, y), l1_loss(x, y), smooth_l1_loss(x, y),
                          huber_loss(x, y), nll_loss(x, labels), binary_cross_entropy_with_logits(x, sigmoid(y)),
                          logsumexp(x, {1}), interpolate(x.reshape({1, 1, 4, 5}), Pair2d{8, 10}),
                          interpolate(x.reshape({1, 1, 4, 5}), Pair2d{8, 10}, "bilinear")})
    EXPECT_EQ(r.dtype(), kFloat32);
  // fp32_set_opt_dtype / fp32_append_dtype: float32 when the first input is eligible
  for (const Tensor& r : {sum(x), prod(x), softmax(x, 1), log_softmax(x, 1), norm(x)})
    EXPECT_EQ(r.dtype(), kFloat32);
  EXPECT_EQ(sum(randf({3}, kFloat64)).dtype(), kFloat64);
  EXPECT_EQ(sum(randint(0, 3, {3})).dtype(), kInt64);
  // promote
  EXPECT_EQ(scatter_add(randf({3, 4}, h), 1, zeros({3, 2}, kInt64), randf({3, 2})).dtype(), kFloat32);
  EXPECT_EQ(scatter_add(randf({3, 4}, h), 1, zeros({3, 2}, kInt64), randf({3, 2}, h)).dtype(), h);
  // banned, as PyTorch: an error naming the safe alternative
  try {
    binary_cross_entropy(sigmoid(x), sigmoid(y));
    ADD_FAILURE() << "binary_cross_entropy ran under CUDA autocast";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("binary_cross_entropy_with_logits"), std::string::npos) << e.what();
  }
  // on no CUDA list: the inputs' dtype (cat is listed for the CPU only; var is built from sum but
  // is one native op in PyTorch; batch_norm with float32 parameters returns the input's dtype)
  EXPECT_EQ(cat({randf({2}, h), randf({3}, h)}).dtype(), h);
  EXPECT_EQ(relu(y).dtype(), h);
  EXPECT_EQ(mean(y).dtype(), h);
  EXPECT_EQ(var(y).dtype(), h);
  EXPECT_EQ(avg_pool2d(y.reshape({1, 1, 4, 5}), 2).dtype(), h);
  EXPECT_EQ(batch_norm(y, randf({5}), randf({5}), zeros({5}), ones({5}), true, 0.1, 1e-5, false).dtype(), h);
  // cross_entropy is not on the CUDA list: as in PyTorch it decomposes into log_softmax (float32)
  // and nll_loss (float32)
  EXPECT_EQ(cross_entropy(y, labels).dtype(), kFloat32);
}

TEST(AutocastCpu, ValuesAreThoseOfExplicitCasts) {
  const Tensor a = randf({5, 7}), b = randf({7, 3}), w = randf({4, 3, 3, 3}), xi = randf({2, 3, 6, 6});
  Tensor r1, r2;
  {
    amp::autocast ac(kCPU);
    r1 = matmul(a, b);
    r2 = conv2d(xi, w);
  }
  EXPECT_TRUE(equal(r1, matmul(a.to(kBFloat16), b.to(kBFloat16))));
  EXPECT_TRUE(equal(r2, conv2d(xi.to(kBFloat16), w.to(kBFloat16))));
}

TEST(AutocastCpu, GradientsOfFloat32LeavesAreFloat32) {
  const Tensor w = randf({3, 8}).requires_grad_(), bias = randf({3}).requires_grad_(), x = randf({4, 8});
  const Tensor labels = randint(0, 3, {4});
  Tensor loss;
  {
    amp::autocast ac(kCPU);
    loss = cross_entropy(nn::functional::linear(x, w, bias), labels);
    EXPECT_EQ(loss.dtype(), kFloat32);
    loss.backward();  // inside the region: backward ops are not cast again
  }
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), kFloat32);
  EXPECT_EQ(bias.grad().dtype(), kFloat32);
  // the same numbers as the explicit casts give
  const Tensor w2 = w.detach().clone().requires_grad_(), b2 = bias.detach().clone().requires_grad_();
  Tensor logits = nn::functional::linear(x.to(kBFloat16), w2.to(kBFloat16), b2.to(kBFloat16));
  cross_entropy(logits.to(kFloat32), labels).backward();
  EXPECT_TRUE(equal(w.grad(), w2.grad()));
  EXPECT_TRUE(equal(bias.grad(), b2.grad()));
}

TEST(AutocastCpu, CastCacheHitsStaleAndClear) {
  auto& cache = amp::detail::cast_cache();
  const Tensor w = randf({3, 8}).requires_grad_(), x = randf({4, 8});
  {
    amp::autocast outer(kCPU);
    Tensor y1 = nn::functional::linear(x, w);
    EXPECT_EQ(cache.size(), 1u);
    const Tensor cast = cache.begin()->second.cast;
    Tensor y2 = nn::functional::linear(x * 2, w);
    EXPECT_EQ(cache.size(), 1u);
    EXPECT_TRUE(cache.begin()->second.cast.is_same(cast)) << "the second use cast the weight again";
    {
      amp::autocast inner(kCPU);
    }
    EXPECT_EQ(cache.size(), 1u) << "an inner guard cleared the cache";
    // a weight changed in place is cast again, not read stale from the cache
    {
      NoGradGuard ng;
      w.mul_(2.0);
    }
    Tensor y3 = nn::functional::linear(x, w);
    EXPECT_TRUE(equal(y3, nn::functional::linear(x.to(kBFloat16), w.detach().to(kBFloat16))));
    // a cast made under no_grad is not reused with grad (the weight would get no gradient)
    {
      NoGradGuard ng;
      nn::functional::linear(x, w);
    }
    nn::functional::linear(x, w).sum().backward();
    EXPECT_TRUE(w.grad().defined());
    // not cached: tensors that need no grad, float64, non-leaves
    const size_t n = cache.size();
    nn::functional::linear(x, randf({3, 8}));
    nn::functional::linear(x, w * 1.0);
    EXPECT_EQ(cache.size(), n);
  }
  EXPECT_EQ(cache.size(), 0u) << "the outermost guard left cached casts behind";
}

// ---- GradScaler -----------------------------------------------------------------------------------

namespace {
// One step of the usual loop on p (4 elements, SGD lr 1): loss = sum(p * c), so the gradient is
// c and scaled gradients are c * scale; inf / NaN in c make the step one to skip.
struct ScalerLoop {
  Tensor p = zeros({4}).requires_grad_();
  optim::SGD opt{std::vector<Tensor>{p}, optim::SGDOptions(1.0)};
  amp::GradScaler scaler;
  explicit ScalerLoop(amp::GradScalerOptions o) : scaler(o) {}
  bool step(const std::vector<double>& c) {
    opt.zero_grad();
    Tensor loss = (p * from_vector(c, {4}, kFloat32)).sum();
    scaler.scale(loss).backward();
    const bool stepped = scaler.step(opt);
    scaler.update();
    return stepped;
  }
};
}  // namespace

TEST(GradScaler, ScaleTraceFollowsPyTorchsRule) {
  ScalerLoop l(amp::GradScalerOptions().init_scale(1024).growth_factor(2).backoff_factor(0.5).growth_interval(3));
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const std::vector<double> ok{1, -2, 0.5, 4};
  // step:           1     2     3     4    5     6    7    8    9     10
  // gradient:       ok    ok    ok    inf  ok    nan  ok   ok   ok    ok
  // scale after:    1024  1024  2048  1024 1024  512  512  512  1024  1024   (written by hand)
  const std::vector<std::vector<double>> grads{ok, ok, ok, {1, inf, 0, 0}, ok, {nan, 1, 1, 1}, ok, ok, ok, ok};
  const std::vector<double> scales{1024, 1024, 2048, 1024, 1024, 512, 512, 512, 1024, 1024};
  const std::vector<int64_t> trackers{1, 2, 0, 0, 1, 0, 1, 2, 0, 1};
  double p0 = 0;
  int taken = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1));
    EXPECT_DOUBLE_EQ(l.scaler.get_scale(), i == 0 ? 1024 : scales[i - 1]);
    const bool finite = std::isfinite(grads[i][0] + grads[i][1]);
    EXPECT_EQ(l.step(grads[i]), finite);
    EXPECT_DOUBLE_EQ(l.scaler.get_scale(), scales[i]);
    EXPECT_EQ(l.scaler.get_growth_tracker(), trackers[i]);
    if (finite) ++taken;
    // p moves by -lr * (unscaled gradient) on the steps taken only (the scales are powers of 2: exact)
    p0 = -taken * 1.0;
    EXPECT_DOUBLE_EQ(l.p[0].item<double>(), p0);
    EXPECT_DOUBLE_EQ(l.p[1].item<double>(), taken * 2.0);
  }
  EXPECT_EQ(taken, 8);
}

TEST(GradScaler, GrowthNeverReachesInfinity) {
  ScalerLoop l(amp::GradScalerOptions().init_scale(3e38).growth_interval(1));
  l.step({1, 1, 1, 1});
  EXPECT_DOUBLE_EQ(l.scaler.get_scale(), static_cast<double>(3e38f));  // 6e38 is not a finite float: kept
}

TEST(GradScaler, MisuseIsAnErrorAsInPyTorch) {
  ScalerLoop l{amp::GradScalerOptions()};
  EXPECT_THROW(l.scaler.unscale_(l.opt), Error);  // before scale(): not initialised
  EXPECT_THROW(l.scaler.update(), Error);
  Tensor loss = (l.p * 3).sum();
  l.scaler.scale(loss).backward();
  l.scaler.unscale_(l.opt);
  EXPECT_THROW(l.scaler.unscale_(l.opt), Error);  // twice before update
  EXPECT_DOUBLE_EQ(l.p.grad()[0].item<double>(), 3.0);
  EXPECT_TRUE(l.scaler.step(l.opt));  // uses the recorded unscale
  EXPECT_THROW(l.scaler.unscale_(l.opt), Error);  // after step
  EXPECT_THROW(l.scaler.step(l.opt), Error);      // step twice
  l.scaler.update();
  // float16 gradients are refused (master weights stay float32)
  Tensor h = zeros({2}, kFloat16).requires_grad_();
  optim::SGD hopt({h}, optim::SGDOptions(0.1));
  l.scaler.scale((h * 2).sum()).backward();
  EXPECT_THROW(l.scaler.unscale_(hopt), ValueError);
  // no gradient at all: step has nothing to go on
  optim::SGD empty_opt({zeros({2}).requires_grad_()}, optim::SGDOptions(0.1));
  EXPECT_THROW(l.scaler.step(empty_opt), Error);
  // a disabled scaler is a pass-through
  amp::GradScaler off(amp::GradScalerOptions().enabled(false));
  Tensor t = ones({2});
  EXPECT_TRUE(off.scale(t).is_same(t));
  EXPECT_DOUBLE_EQ(off.get_scale(), 1.0);
  EXPECT_TRUE(off.state_dict().empty());
  EXPECT_THROW(amp::GradScaler(amp::GradScalerOptions().growth_factor(1.0)), ValueError);
  EXPECT_THROW(amp::GradScaler(amp::GradScalerOptions().backoff_factor(1.0)), ValueError);
}

TEST(GradScaler, StateDictAndCheckpointRoundTrip) {
  ScalerLoop l(amp::GradScalerOptions().init_scale(256).growth_interval(5));
  l.step({1, 1, 1, 1});
  l.step({1, 1, std::numeric_limits<double>::infinity(), 1});
  l.step({1, 1, 1, 1});
  const auto sd = l.scaler.state_dict();
  EXPECT_DOUBLE_EQ(sd.at("scale").item<double>(), 128);
  EXPECT_DOUBLE_EQ(sd.at("_growth_tracker").item<double>(), 1);
  EXPECT_DOUBLE_EQ(sd.at("growth_interval").item<double>(), 5);
  amp::GradScaler other;
  other.load_state_dict(sd);
  EXPECT_DOUBLE_EQ(other.get_scale(), 128);
  EXPECT_EQ(other.get_growth_tracker(), 1);
  EXPECT_EQ(other.get_growth_interval(), 5);
  EXPECT_THROW(other.load_state_dict({}), Error);
  auto bad = sd;
  bad.at("backoff_factor") = scalar_tensor(2.0, kFloat64);
  EXPECT_THROW(other.load_state_dict(bad), ValueError);
  EXPECT_DOUBLE_EQ(other.get_scale(), 128) << "a refused state dict changed the scaler";

  TempDir dir("GradScaler", "Checkpoint");
  nn::Linear model(2, 2);
  io::save_checkpoint(dir / "ck.safetensors", model, nullptr, nullptr, 7, {}, &l.scaler);
  amp::GradScaler restored;
  EXPECT_EQ(io::load_checkpoint(dir / "ck.safetensors", model, nullptr, nullptr, nullptr, &restored), 7);
  EXPECT_DOUBLE_EQ(restored.get_scale(), 128);
  EXPECT_EQ(restored.get_growth_tracker(), 1);
  io::save_checkpoint(dir / "none.safetensors", model);
  EXPECT_THROW(io::load_checkpoint(dir / "none.safetensors", model, nullptr, nullptr, nullptr, &restored), IOError);
}

// The fused unscale against the composite, every dtype, with inf and NaN sprinkled in.
TEST(GradScaler, FusedUnscaleMatchesComposite) {
  auto g = rng_for("FusedUnscaleMatchesComposite");
  for (DType dt : {kFloat32, kFloat64, kBFloat16, kFloat16}) {
    for (int bad : {0, 1, 2}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " bad=" + std::to_string(bad));
      TensorList a, b;
      for (int64_t n : {1, 7, 100000}) {
        Tensor t = (uniform({n}, -1000, 1000, g)).to(dt);
        if (bad && n == 7) t[3].fill_(bad == 1 ? std::numeric_limits<double>::infinity() : std::nan(""));
        a.push_back(t.clone());
        b.push_back(t.clone());
      }
      const Tensor inv = scalar_tensor(1.0 / 4096, kFloat32);
      Tensor fa = zeros({}), fb = zeros({});
      const AmpKernels* k = amp_kernels().find(Device::cpu(), dt);
      ASSERT_NE(k, nullptr);
      ASSERT_TRUE(k->non_finite_check_and_unscale(a, fa, inv));
      amp::detail::non_finite_check_and_unscale_composite(b, fb, inv);
      EXPECT_EQ(fa.item<double>(), bad ? 1.0 : 0.0);
      EXPECT_EQ(fb.item<double>(), fa.item<double>());
      for (size_t i = 0; i < a.size(); ++i) {
        const Tensor nan_a = a[i].ne(a[i]), nan_b = b[i].ne(b[i]);  // NaN is the only value unequal to itself
        EXPECT_TRUE(equal(nan_a, nan_b));
        EXPECT_TRUE(equal(where(nan_a, zeros({}, dt), a[i]), where(nan_b, zeros({}, dt), b[i])));
      }
    }
  }
}

// ---- master weights -----------------------------------------------------------------------------

// bfloat16 parameters with an update far below their spacing: without master weights the
// parameter never moves; with them it follows the float32 trajectory, rounded.
TEST(MasterWeights, SmallUpdatesAccumulate) {
  for (bool adam : {false, true}) {
    SCOPED_TRACE(adam ? "Adam" : "SGD");
    for (bool master : {false, true}) {
      Tensor p = full({3}, 1.0, kBFloat16).requires_grad_();
      std::unique_ptr<optim::Optimizer> opt;
      if (adam) opt = std::make_unique<optim::Adam>(std::vector<Tensor>{p}, optim::AdamOptions(1e-4).master_weights(master));
      else opt = std::make_unique<optim::SGD>(std::vector<Tensor>{p}, optim::SGDOptions(1e-4).master_weights(master));
      float ref = 1.0f;  // SGD's float32 trajectory; Adam's steps are lr each (constant gradient)
      for (int i = 0; i < 200; ++i) {
        p.set_grad(full({3}, 1.0, kBFloat16));
        opt->step();
        ref = ref - 1e-4f;
      }
      const double got = p[0].item<double>();
      if (!master) {
        EXPECT_EQ(got, 1.0) << "a 1e-4 step moved a bfloat16 1.0 (spacing 2^-7)";
      } else {
        EXPECT_EQ(got, static_cast<double>(static_cast<float>(BFloat16(ref)))) << "expected bf16(" << ref << ")";
        const auto* st = opt->state(p);
        ASSERT_NE(st, nullptr);
        EXPECT_EQ(st->at("master_param").dtype(), kFloat32);
        EXPECT_NEAR(st->at("master_param")[0].item<double>(), ref, 1e-5);
      }
    }
  }
}

TEST(MasterWeights, StateDictKeepsFloat32State) {
  nn::Linear lin(4, 2);
  lin->to(kBFloat16);
  optim::AdamW opt(lin->parameters(), optim::AdamWOptions(1e-3).master_weights(true));
  lin->forward(randf({3, 4}, kBFloat16)).sum().backward();
  opt.step();
  auto sd = opt.state_dict();
  EXPECT_EQ(sd.at("state.0.exp_avg").dtype(), kFloat32);
  EXPECT_EQ(sd.at("state.0.master_param").dtype(), kFloat32);
  EXPECT_DOUBLE_EQ(sd.at("param_groups.0.master_weights").item<double>(), 1.0);
  optim::AdamW again(lin->parameters(), optim::AdamWOptions(1e-3).master_weights(true));
  again.load_state_dict(sd);
  EXPECT_EQ(again.state(lin->weight)->at("exp_avg_sq").dtype(), kFloat32);
  EXPECT_TRUE(equal(again.state(lin->weight)->at("master_param"), opt.state(lin->weight)->at("master_param")));
}

// ---- on a GPU (skipped, saying why, without one) ---------------------------------------------------

TEST(AutocastCuda, DtypesOnTheDevice) {
  NABLA_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  auto r = [&](const Shape& s, DType dt = kFloat32) { return randn(s, TensorOptions(dt).device(d)); };
  amp::autocast ac(kCUDA);
  EXPECT_EQ(matmul(r({4, 8}), r({8, 3})).dtype(), kFloat16);
  EXPECT_EQ(nn::functional::linear(r({4, 8}), r({3, 8}), r({3})).dtype(), kFloat16);
  EXPECT_EQ(conv2d(r({2, 3, 6, 6}), r({4, 3, 3, 3})).dtype(), kFloat16);
  EXPECT_EQ(exp(r({5}, kFloat16)).dtype(), kFloat32);
  EXPECT_EQ(softmax(r({2, 5}, kFloat16), 1).dtype(), kFloat32);
  EXPECT_EQ(relu(r({5}, kFloat16)).dtype(), kFloat16);
  EXPECT_EQ(cat({r({2}, kFloat16), r({2}, kFloat16)}).dtype(), kFloat16);
  // CPU tensors are left to CPU autocast (off here)
  EXPECT_EQ(matmul(randn({4, 8}), randn({8, 3})).dtype(), kFloat32);
  EXPECT_THROW(binary_cross_entropy(sigmoid(r({4}, kFloat16)), sigmoid(r({4}, kFloat16))), Error);
  {
    amp::autocast bf(kCUDA, kBFloat16);
    EXPECT_EQ(matmul(r({4, 8}), r({8, 3})).dtype(), kBFloat16);
  }
}

TEST(GradScalerCuda, TraceAndFusedKernelsOnTheDevice) {
  NABLA_REQUIRE_GPU();
  const Device d = Device::cuda(0);
  Tensor p = zeros({4}, TensorOptions(kFloat32).device(d)).requires_grad_();
  optim::SGD opt({p}, optim::SGDOptions(1.0));
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(1024).growth_interval(2));
  const uint64_t before = amp_kernels().hits(DeviceType::CUDA);
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::vector<double>> grads{{1, 2, 3, 4}, {1, inf, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}};
  const std::vector<double> scales{1024, 512, 512, 1024};
  for (size_t i = 0; i < grads.size(); ++i) {
    opt.zero_grad();
    scaler.scale((p * from_vector(grads[i], {4}, kFloat32).to(d)).sum()).backward();
    EXPECT_EQ(scaler.step(opt), i != 1);
    scaler.update();
    EXPECT_DOUBLE_EQ(scaler.get_scale(), scales[i]) << "step " << i + 1;
  }
  EXPECT_DOUBLE_EQ(p.to(Device::cpu())[3].item<double>(), -12.0);
  EXPECT_GE(amp_kernels().hits(DeviceType::CUDA) - before, 8u) << "the CUDA unscale / update kernels did not run";
}
