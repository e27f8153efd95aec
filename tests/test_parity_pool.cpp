// Parity rows for the pooling options (ceil_mode, dilation, count_include_pad,
// divisor_override), interpolate, more conv2d and batch_norm layouts; and the fused backend
// kernels (conv2d, batch_norm, max_pool2d indices, optimizer steps) against the composites
// they replace.

#include <cmath>

#include "parity.hpp"

namespace nabla_test {
namespace {

struct PoolArgs {
  int64_t k = 2, s = 2, p = 0, d = 1;
  bool ceil_mode = false, count_include_pad = true;
  int64_t divisor = 0;  // divisor_override when > 0
};

// Output size exactly as PyTorch's pooling_output_shape.
int64_t ref_pool_out(int64_t in, const PoolArgs& a) {
  int64_t out = (in + 2 * a.p - a.d * (a.k - 1) - 1 + (a.ceil_mode ? a.s - 1 : 0)) / a.s + 1;
  if (a.ceil_mode && (out - 1) * a.s >= in + a.p) --out;
  return out;
}

// max (kind 0) or average (kind 1) over windows of x [N, C, H, W] (or [C, H, W]).
Ref ref_pool2(const Ref& x, const PoolArgs& a, int kind) {
  const bool three = x.dim() == 3;
  const int64_t H = x.shape[x.dim() - 2], W = x.shape[x.dim() - 1];
  const int64_t Ho = ref_pool_out(H, a), Wo = ref_pool_out(W, a);
  Shape s = x.shape;
  s[s.size() - 2] = Ho, s[s.size() - 1] = Wo;
  return ref_generate(s, [&](const Shape& idx) {
    const int64_t oh = idx[idx.size() - 2], ow = idx[idx.size() - 1];
    double m = -INFINITY, sum = 0;
    int64_t inside = 0;
    for (int64_t i = 0; i < a.k; ++i)
      for (int64_t j = 0; j < a.k; ++j) {
        const int64_t h = oh * a.s - a.p + i * a.d, w = ow * a.s - a.p + j * a.d;
        if (h < 0 || h >= H || w < 0 || w >= W) continue;
        Shape at = idx;
        at[at.size() - 2] = h, at[at.size() - 1] = w;
        const double v = ref_at(x, at);
        m = std::max(m, v), sum += v, ++inside;
      }
    if (kind == 0) return m;
    // PyTorch's divisor: the window clipped to the padded input (count_include_pad) or to the input.
    const int64_t hs = oh * a.s - a.p, ws = ow * a.s - a.p;
    const int64_t he = std::min(hs + a.k, H + a.p), we = std::min(ws + a.k, W + a.p);
    const double div = a.divisor > 0 ? static_cast<double>(a.divisor)
                       : a.count_include_pad ? static_cast<double>((he - hs) * (we - ws))
                                             : static_cast<double>(inside);
    (void)three;
    return sum / div;
  });
}

// torch.nn.functional.interpolate, float64, straight from its definition.
Ref ref_interpolate(const Ref& x, int64_t Ho, int64_t Wo, bool bilinear, bool align, double sh = 0, double sw = 0) {
  const int64_t H = x.shape[x.dim() - 2], W = x.shape[x.dim() - 1];
  Shape s = x.shape;
  s[s.size() - 2] = Ho, s[s.size() - 1] = Wo;
  auto src = [&](int64_t o, int64_t in, int64_t out, double scale) {
    if (align) return out > 1 ? static_cast<double>(o) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
    const double r = scale > 0 ? 1.0 / scale : static_cast<double>(in) / static_cast<double>(out);
    return bilinear ? std::max(0.0, (static_cast<double>(o) + 0.5) * r - 0.5) : static_cast<double>(o) * r;
  };
  return ref_generate(s, [&](const Shape& idx) {
    const double fh = src(idx[idx.size() - 2], H, Ho, sh), fw = src(idx[idx.size() - 1], W, Wo, sw);
    auto at = [&](int64_t h, int64_t w) {
      Shape j = idx;
      j[j.size() - 2] = h, j[j.size() - 1] = w;
      return ref_at(x, j);
    };
    if (!bilinear)
      return at(std::min<int64_t>(static_cast<int64_t>(std::floor(fh)), H - 1),
                std::min<int64_t>(static_cast<int64_t>(std::floor(fw)), W - 1));
    const int64_t h0 = std::min<int64_t>(static_cast<int64_t>(fh), H - 1), w0 = std::min<int64_t>(static_cast<int64_t>(fw), W - 1);
    const int64_t h1 = std::min(h0 + 1, H - 1), w1 = std::min(w0 + 1, W - 1);
    const double lh = fh - static_cast<double>(h0), lw = fw - static_cast<double>(w0);
    return (1 - lh) * ((1 - lw) * at(h0, w0) + lw * at(h0, w1)) + lh * ((1 - lw) * at(h1, w0) + lw * at(h1, w1));
  });
}

// Batch statistics over every dim but 1, no affine.
Ref ref_batch_norm_plain(const Ref& x, double eps) {
  const int64_t N = x.shape[0], C = x.shape[1], inner = x.numel() / (N * C);
  std::vector<double> mean(static_cast<size_t>(C), 0.0), var(static_cast<size_t>(C), 0.0);
  for (int64_t i = 0; i < x.numel(); ++i) mean[static_cast<size_t>((i / inner) % C)] += x.v[static_cast<size_t>(i)];
  for (auto& m : mean) m /= static_cast<double>(N * inner);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = x.v[static_cast<size_t>(i)] - mean[static_cast<size_t>((i / inner) % C)];
    var[static_cast<size_t>((i / inner) % C)] += d * d;
  }
  for (auto& v : var) v /= static_cast<double>(N * inner);
  Ref r = x;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const size_t c = static_cast<size_t>((i / inner) % C);
    r.v[static_cast<size_t>(i)] = (x.v[static_cast<size_t>(i)] - mean[c]) / std::sqrt(var[c] + eps);
  }
  return r;
}

const RegisterParity rows([](std::vector<ParityCase>& t) {
  // (bfloat16 rows: max_pool2d's bf16 CPU kernel, fused column against the composite)
  auto max_row = [&t](const char* label, Shape xs, PoolArgs a, std::vector<DType> dtypes = {kFloat32, kFloat64}) {
    t.push_back({"max_pool2d", label, {in(xs, Domain::Distinct)},
                 [=](const TensorList& x) { return max_pool2d(x[0], a.k, a.s, a.p, a.d, a.ceil_mode); },
                 [=](const std::vector<Ref>& r) { return ref_pool2(r[0], a, 0); }, dtypes});
  };
  max_row("ceil_k3_s2", {2, 2, 6, 7}, {3, 2, 0, 1, true}, {kFloat32, kFloat64, kBFloat16});
  max_row("ceil_k2_s2_p1", {1, 3, 5, 5}, {2, 2, 1, 1, true});
  max_row("dilation2_p1", {2, 2, 7, 6}, {2, 1, 1, 2}, {kFloat32, kFloat64, kBFloat16});
  max_row("chw_3d", {3, 5, 6}, {3, 2, 1, 1});
  max_row("k1_s1", {2, 2, 3, 3}, {1, 1, 0, 1});

  auto avg_row = [&t](const char* label, Shape xs, PoolArgs a) {
    t.push_back({"avg_pool2d", label, {in(xs)},
                 [=](const TensorList& x) {
                   return avg_pool2d(x[0], a.k, a.s, a.p, a.ceil_mode, a.count_include_pad,
                                     a.divisor > 0 ? std::optional<int64_t>(a.divisor) : std::nullopt);
                 },
                 [=](const std::vector<Ref>& r) { return ref_pool2(r[0], a, 1); }});
  };
  avg_row("ceil_k3_s2", {2, 2, 6, 7}, {3, 2, 0, 1, true});
  avg_row("ceil_pad_exclude", {1, 3, 5, 6}, {3, 2, 1, 1, true, false});
  avg_row("pad_exclude", {2, 2, 5, 5}, {3, 1, 1, 1, false, false});
  avg_row("divisor_override", {1, 2, 6, 6}, {2, 2, 1, 1, false, true, 3});
  avg_row("chw_3d", {3, 4, 4}, {2, 2});

  auto interp_row = [&t](const char* label, Shape xs, InterpolateOptions o, int64_t Ho, int64_t Wo, double sh = 0,
                         double sw = 0) {
    t.push_back({"interpolate", label, {in(xs)}, [=](const TensorList& x) { return interpolate(x[0], o); },
                 [=](const std::vector<Ref>& r) {
                   return ref_interpolate(r[0], Ho, Wo, o.mode == "bilinear", o.align_corners, sh, sw);
                 },
                 {kFloat32, kFloat64}, true, true});
  };
  InterpolateOptions o;
  o.size = Pair2d(5, 7);
  interp_row("nearest_up", {2, 2, 3, 4}, o, 5, 7);
  o.size = Pair2d(2, 3);
  interp_row("nearest_down", {1, 2, 5, 7}, o, 2, 3);
  o.size = std::nullopt, o.scale_factor = std::make_pair(2.0, 1.5);
  interp_row("nearest_scale", {1, 3, 3, 4}, o, 6, 6, 2.0, 1.5);
  o.mode = "bilinear";
  interp_row("bilinear_scale", {1, 2, 3, 4}, o, 6, 6, 2.0, 1.5);
  o.scale_factor = std::nullopt, o.size = Pair2d(5, 7);
  interp_row("bilinear_up", {2, 2, 3, 4}, o, 5, 7);
  o.align_corners = true;
  interp_row("bilinear_align_up", {1, 2, 3, 4}, o, 5, 7);
  o.size = Pair2d(3, 2);
  interp_row("bilinear_align_down", {3, 6, 5}, o, 3, 2);

  auto conv_row = [&t](const char* label, Shape xs, Shape ws, Pair2d stride, int64_t pad_, Pair2d dil, int64_t groups,
                       bool grad2 = false) {
    t.push_back({"conv2d", label, {in(xs), in(ws), in({ws[0]})},
                 [=](const TensorList& x) { return conv2d(x[0], x[1], x[2], stride, pad_, dil, groups); },
                 [=](const std::vector<Ref>& r) {
                   // the composite in float64 is checked against loops in test_parity_conv.cpp
                   NoGradGuard ng;
                   Tensor y = conv2d_reference(r[0].tensor(), r[1].tensor(), r[2].tensor(), stride, pad_, dil, groups);
                   return Ref::of(y);
                 },
                 {kFloat32, kFloat64}, true, grad2, true, 10.0});
  };
  conv_row("1x1_stride2", {2, 3, 5, 5}, {4, 3, 1, 1}, 2, 0, 1, 1);
  conv_row("pad2_dil2_groups2", {2, 4, 7, 6}, {4, 2, 3, 3}, 1, 2, 2, 2, true);
  conv_row("odd_batch_pad1", {3, 5, 6, 7}, {7, 5, 3, 3}, {1, 2}, 1, 1, 1);
  conv_row("kernel_eq_input", {2, 2, 3, 3}, {3, 2, 3, 3}, 1, 0, 1, 1);
  // Small maps and several images: the fused CPU kernels run images in chunks of several side by
  // side (one GEMM over the chunk's columns), with a shorter last chunk for 1 and 2 threads alike.
  conv_row("chunked_images", {7, 3, 4, 4}, {5, 3, 3, 3}, 1, 1, 1, 1);
  conv_row("chunked_groups_stride2", {9, 4, 6, 6}, {6, 2, 3, 3}, 2, 1, 1, 2);
  conv_row("chunked_1x1", {6, 3, 3, 3}, {4, 3, 1, 1}, 1, 0, 1, 1);
  // Maps past 256 pixels: one image at a time in bands of output rows (the last band shorter).
  conv_row("banded_rows", {2, 2, 17, 17}, {3, 2, 3, 3}, 1, 1, 1, 1);
  conv_row("banded_1x1", {1, 2, 17, 16}, {3, 2, 1, 1}, 1, 0, 1, 1);
  conv_row("banded_stride2_groups2", {1, 2, 35, 33}, {2, 1, 3, 3}, 2, 1, 1, 2);
  // 3x3, stride 1, one group, 128+ channels: the CPU kernels' Winograd F(2x2, 3x3) path, odd
  // output sizes (tiles hanging over the edge). Too many weights for finite differences: the
  // fused column checks its backward against the composite's, and tests/test_winograd.cpp checks
  // the kernels with gradients at 16 channels.
  for (auto [label, xs, ws, p] : {std::tuple{"winograd_pad1", Shape{2, 128, 5, 6}, Shape{128, 128, 3, 3}, int64_t(1)},
                                  std::tuple{"winograd_pad0_odd", Shape{3, 129, 5, 4}, Shape{130, 129, 3, 3}, int64_t(0)}}) {
    const int64_t pad = p;  // a copy: clang before 16 cannot capture a structured binding
    t.push_back({"conv2d", label, {in(xs), in(ws), in({ws[0]})},
                 [pad](const TensorList& x) { return conv2d(x[0], x[1], x[2], 1, pad); },
                 [pad](const std::vector<Ref>& r) {
                   NoGradGuard ng;
                   return Ref::of(conv2d_reference(r[0].tensor(), r[1].tensor(), r[2].tensor(), 1, pad));
                 },
                 {kFloat32, kFloat64}, false, false, true, 10.0});
  }

  t.push_back({"batch_norm", "train_3d_no_affine", {in({4, 3, 5})},
               [](const TensorList& x) {
                 Tensor rm = zeros({3}, x[0].options()), rv = ones({3}, x[0].options());  // on x's device
                 return batch_norm(x[0], Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, false);
               },
               [](const std::vector<Ref>& r) { return ref_batch_norm_plain(r[0], 1e-5); },
               {kFloat32, kFloat64}, true, true, true, 10.0});
  t.push_back({"batch_norm", "train_2d", {in({6, 4})},
               [](const TensorList& x) { return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, false); },
               [](const std::vector<Ref>& r) { return ref_batch_norm_plain(r[0], 1e-5); },
               {kFloat32, kFloat64}, true, false, true, 10.0});
});

// ---- fused kernels: what the parity table's fused column does not cover ----------------------
// (fused vs composite, forward and backward, is the fused column of every conv2d, max_pool2d,
// batch_norm, linear and optimizer row)

TEST(FusedConv, OnlyRequestedGradientsAndDoubleBackward) {
  manual_seed(4);
  Tensor x = randn({2, 3, 6, 6}, kFloat64), w = randn({4, 3, 3, 3}, kFloat64).requires_grad_();
  Tensor y = conv2d(x, w, Tensor(), 1, 1);
  auto gw = autograd::grad({y.sum()}, {w});
  EXPECT_FALSE(x.grad().defined());
  EXPECT_EQ(gw[0].sizes(), w.sizes());
  // create_graph: the backward runs as composite ops, so second derivatives exist and are right.
  Tensor xr = x.clone().requires_grad_();
  auto g1 = autograd::grad({conv2d(xr, w, Tensor(), 1, 1).pow(2).sum()}, {w}, {}, true, true);
  auto g2 = autograd::grad({g1[0].sum()}, {xr});
  auto r1 = autograd::grad({conv2d_reference(xr, w, Tensor(), 1, 1).pow(2).sum()}, {w}, {}, true, true);
  auto r2 = autograd::grad({r1[0].sum()}, {xr});
  EXPECT_TRUE(all_close(g1[0], r1[0], 1e-10, 1e-10));
  EXPECT_TRUE(all_close(g2[0], r2[0], 1e-10, 1e-10));
}

TEST(FusedBatchNorm, DoubleBackwardThroughComposite) {
  manual_seed(6);
  Tensor x = randn({4, 2, 3}, kFloat64).requires_grad_(), w = randn({2}, kFloat64).requires_grad_();
  auto f = [&](bool fused) {
    Tensor y = fused ? batch_norm(x, w, Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5, false)
                     : batch_norm_reference(x, Tensor(), Tensor(), w, Tensor(), true);
    auto g1 = autograd::grad({y.pow(3).sum()}, {x}, {}, true, true);
    return autograd::grad({g1[0].pow(2).sum()}, {x, w});
  };
  auto a = f(true), b = f(false);
  EXPECT_TRUE(all_close(a[0], b[0], 1e-9, 1e-9));
  EXPECT_TRUE(all_close(a[1], b[1], 1e-9, 1e-9));
}

TEST(MaxPool, IndicesPointAtTheMaximumAndGradientFollowsThem) {
  manual_seed(8);
  Tensor x = randn({2, 3, 7, 6}, kFloat64).requires_grad_();
  auto [y, idx] = max_pool2d_with_indices(x, 3, 2, 1, 1, true);
  ASSERT_EQ(idx.dtype(), kInt64);
  ASSERT_EQ(idx.sizes(), y.sizes());
  Tensor picked = x.detach().reshape({6, 42}).gather(1, idx.reshape({6, -1})).reshape(y.sizes());
  EXPECT_TRUE(all_equal(picked, y.detach()));
  auto g = autograd::grad({y.sum()}, {x});
  // each input element's gradient counts the windows that chose it
  Tensor counts = zeros({6, 42}, kFloat64).scatter_add(1, idx.reshape({6, -1}), ones({6, idx.numel() / 6}, kFloat64));
  EXPECT_TRUE(all_equal(g[0], counts.reshape(x.sizes())));
  // NaN wins; ties go to the first element of the window
  Tensor t = tensor({1.0, 5.0, 5.0, 2.0}, TensorOptions(kFloat32)).reshape({1, 1, 2, 2});
  EXPECT_EQ(std::get<1>(max_pool2d_with_indices(t, 2)).item<int64_t>(), 1);
  Tensor n = tensor({1.0, double(NAN), 5.0, 2.0}, TensorOptions(kFloat32)).reshape({1, 1, 2, 2});
  EXPECT_TRUE(std::isnan(max_pool2d(n, 2).item<float>()));
  // bfloat16 runs its own kernel (float16 the float one, casting back): the same exact maxima
  Tensor h = x.detach().to(kBFloat16);
  EXPECT_TRUE(all_close(max_pool2d(h, 2).to(kFloat64), max_pool2d(h.to(kFloat64), 2), 0, 0));
  EXPECT_THROW(max_pool2d(x, 2, 1, 2), ValueError);
  EXPECT_THROW(max_pool2d(randn({4, 4}), 2), ShapeError);
}

}  // namespace
}  // namespace nabla_test
