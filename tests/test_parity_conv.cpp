// Parity rows for conv2d, conv_transpose2d, pad, max/avg/adaptive pooling and batch_norm against float64 loop
// references, plus the Conv2d / BatchNorm2d modules, the MNIST example net's shape and names, and
// ResNet's two residual blocks (models::BasicBlock, models::Bottleneck) against a float64
// composition of the same references.

#include <cmath>

#include <nabla/models/resnet.hpp>

#include "parity.hpp"

namespace nabla_test {
namespace {

namespace F = nabla::nn::functional;

struct ConvArgs {
  int64_t sh = 1, sw = 1, pt = 0, pb = 0, pl = 0, pr = 0, dh = 1, dw = 1, groups = 1;
};

// y[n, o, i, j] = b[o] + sum_{c in group(o), p, q} x[n, c, i*sh + p*dh - pt, j*sw + q*dw - pl] w[o, c', p, q]
Ref ref_conv2d(const Ref& x, const Ref& w, const Ref* b, ConvArgs a) {
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t O = w.shape[0], Cg = w.shape[1], kh = w.shape[2], kw = w.shape[3];
  const int64_t Ho = (H + a.pt + a.pb - a.dh * (kh - 1) - 1) / a.sh + 1;
  const int64_t Wo = (W + a.pl + a.pr - a.dw * (kw - 1) - 1) / a.sw + 1;
  const int64_t Og = O / a.groups;
  (void)C;
  return ref_generate({N, O, Ho, Wo}, [&](const Shape& idx) {
    const int64_t n = idx[0], o = idx[1], i = idx[2], j = idx[3], g = o / Og;
    double acc = b ? b->v[static_cast<size_t>(o)] : 0.0;
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t p = 0; p < kh; ++p)
        for (int64_t q = 0; q < kw; ++q) {
          const int64_t h = i * a.sh + p * a.dh - a.pt, ww = j * a.sw + q * a.dw - a.pl;
          if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
          acc += ref_at(x, {n, g * Cg + c, h, ww}) * ref_at(w, {o, c, p, q});
        }
    return acc;
  });
}

// The transposed convolution as a scatter: every x[n, c, i, j] adds x * w[c, o', p, q] at
// y[n, g * Og + o', i*s + p*d - pad, j*s + q*d - pad]; rows past the last window (output_padding)
// get the bias alone.
Ref ref_conv_transpose2d(const Ref& x, const Ref& w, const Ref* b, int64_t s, int64_t pad, int64_t out_pad,
                         int64_t groups, int64_t d) {
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t Og = w.shape[1], kh = w.shape[2], kw = w.shape[3], O = Og * groups, Cg = C / groups;
  const int64_t Ho = (H - 1) * s - 2 * pad + d * (kh - 1) + out_pad + 1, Wo = (W - 1) * s - 2 * pad + d * (kw - 1) + out_pad + 1;
  Ref y({N, O, Ho, Wo});
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) y.v[static_cast<size_t>(y.linear_of({n, o, i, j}))] = b ? b->v[static_cast<size_t>(o)] : 0.0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j)
          for (int64_t oo = 0; oo < Og; ++oo)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t h = i * s + p * d - pad, ww = j * s + q * d - pad;
                if (h < 0 || h >= Ho || ww < 0 || ww >= Wo) continue;
                y.v[static_cast<size_t>(y.linear_of({n, (c / Cg) * Og + oo, h, ww}))] +=
                    ref_at(x, {n, c, i, j}) * ref_at(w, {c, oo, p, q});
              }
  return y;
}

// kind 0: max (padding = -inf), 1: mean including zero padding.
Ref ref_pool(const Ref& x, int64_t k, int64_t s, int64_t p, int kind) {
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  return ref_generate({N, C, Ho, Wo}, [&](const Shape& idx) {
    double m = -INFINITY, sum = 0;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        const int64_t h = idx[2] * s + a - p, w = idx[3] * s + b - p;
        if (h < 0 || h >= H || w < 0 || w >= W) continue;
        double v = ref_at(x, {idx[0], idx[1], h, w});
        m = std::max(m, v);
        sum += v;
      }
    return kind == 0 ? m : sum / static_cast<double>(k * k);
  });
}

Ref ref_adaptive_avg(const Ref& x, int64_t oh, int64_t ow) {
  const int64_t H = x.shape[2], W = x.shape[3];
  return ref_generate({x.shape[0], x.shape[1], oh, ow}, [&](const Shape& idx) {
    const int64_t h0 = idx[2] * H / oh, h1 = ((idx[2] + 1) * H + oh - 1) / oh;
    const int64_t w0 = idx[3] * W / ow, w1 = ((idx[3] + 1) * W + ow - 1) / ow;
    double s = 0;
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) s += ref_at(x, {idx[0], idx[1], h, w});
    return s / static_cast<double>((h1 - h0) * (w1 - w0));
  });
}

Ref ref_pad(const Ref& x, int64_t l, int64_t r, int64_t t, int64_t b, double value) {
  Shape s = x.shape;
  s[s.size() - 1] += l + r;
  s[s.size() - 2] += t + b;
  const int64_t H = x.shape[x.dim() - 2], W = x.shape[x.dim() - 1];
  return ref_generate(s, [&](const Shape& idx) {
    Shape j = idx;
    j[j.size() - 1] -= l;
    j[j.size() - 2] -= t;
    if (j[j.size() - 1] < 0 || j[j.size() - 1] >= W || j[j.size() - 2] < 0 || j[j.size() - 2] >= H) return value;
    return ref_at(x, j);
  });
}

// Normalises each channel over (N, H, W) with the given mean/var (batch stats when null).
Ref ref_batch_norm(const Ref& x, const Ref* rm, const Ref* rv, const Ref& w, const Ref& b, double eps) {
  const int64_t N = x.shape[0], C = x.shape[1], HW = x.numel() / (N * C);
  std::vector<double> mean(C), var(C);
  for (int64_t c = 0; c < C; ++c) {
    if (rm) {
      mean[c] = rm->v[c];
      var[c] = rv->v[c];
      continue;
    }
    double s = 0, ss = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x.v[static_cast<size_t>((n * C + c) * HW + i)];
    mean[c] = s / static_cast<double>(N * HW);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        double d = x.v[static_cast<size_t>((n * C + c) * HW + i)] - mean[c];
        ss += d * d;
      }
    var[c] = ss / static_cast<double>(N * HW);
  }
  Ref r = x;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / HW) % C;
    r.v[i] = (x.v[i] - mean[c]) / std::sqrt(var[c] + eps) * w.v[c] + b.v[c];
  }
  return r;
}

Ref nchw_to_nhwc(const Ref& r) { return ref_permute(r, {0, 2, 3, 1}); }

const RegisterParity rows([](std::vector<ParityCase>& t) {
  // kWithBf16: the row also runs in bfloat16 (conv2d's bf16 CPU kernels; the fused column checks
  // them against the composite, forward and backward)
  const std::vector<DType> kWithBf16 = {kFloat32, kFloat64, kBFloat16};
  auto conv_row = [&t](const char* label, Shape xs, Shape ws, bool bias, ConvArgs a, Padding2d pad_arg, bool grad2 = false,
                       std::vector<DType> dtypes = {kFloat32, kFloat64}) {
    std::vector<InputSpec> ins{in(xs), in(ws)};
    if (bias) ins.push_back(in({ws[0]}));
    t.push_back({"conv2d", label, ins,
                 [=](const TensorList& x) {
                   return conv2d(x[0], x[1], bias ? x[2] : Tensor(), Pair2d(a.sh, a.sw), pad_arg, Pair2d(a.dh, a.dw),
                                 a.groups);
                 },
                 [=](const std::vector<Ref>& r) { return ref_conv2d(r[0], r[1], bias ? &r[2] : nullptr, a); },
                 dtypes, true, grad2, true, 10.0});
  };
  // conv_transpose2d shares conv2d's kernel table: its forward is conv2d's input gradient
  auto convt_row = [&t](const char* label, Shape xs, Shape ws, bool bias, int64_t s, int64_t pad, int64_t out_pad,
                        int64_t groups, int64_t d, bool grad2 = false, const char* fused = "conv2d",
                        std::vector<DType> dtypes = {kFloat32, kFloat64}) {
    std::vector<InputSpec> ins{in(xs), in(ws)};
    if (bias) ins.push_back(in({ws[1] * groups}));
    ParityCase c{"conv_transpose2d", label, ins,
                 [=](const TensorList& x) {
                   return conv_transpose2d(x[0], x[1], bias ? x[2] : Tensor(), s, pad, out_pad, groups, d);
                 },
                 [=](const std::vector<Ref>& r) {
                   return ref_conv_transpose2d(r[0], r[1], bias ? &r[2] : nullptr, s, pad, out_pad, groups, d);
                 },
                 dtypes, true, grad2, true, 10.0};
    c.fused = fused;
    t.push_back(c);
  };
  convt_row("basic_bias", {2, 3, 3, 4}, {3, 2, 3, 3}, true, 1, 0, 0, 1, 1, true, "conv2d", kWithBf16);
  convt_row("stride2_pad1_k4", {2, 3, 3, 3}, {3, 2, 4, 4}, false, 2, 1, 0, 1, 1, true);  // DCGAN's upsampling
  convt_row("output_padding", {1, 2, 3, 2}, {2, 3, 3, 3}, true, 2, 1, 1, 1, 1);
  convt_row("groups2", {2, 4, 3, 3}, {4, 1, 3, 2}, true, 2, 0, 1, 2, 1, false, "conv2d", kWithBf16);
  convt_row("dilation2", {1, 2, 3, 4}, {2, 2, 2, 3}, true, 1, 1, 0, 1, 2);
  // output_padding at or past the stride (allowed below the dilation): conv2d's kernels cannot
  // map that output back onto x, so the composite runs
  convt_row("output_padding_past_stride", {1, 2, 3, 3}, {2, 2, 3, 3}, true, 1, 1, 1, 1, 2, false, "none");
  convt_row("noise_to_4x4", {3, 5, 1, 1}, {5, 4, 4, 4}, false, 1, 0, 0, 1, 1);
  conv_row("basic_bias", {2, 3, 5, 5}, {4, 3, 3, 3}, true, {}, 0, true, kWithBf16);
  conv_row("no_bias_odd", {1, 2, 5, 7}, {3, 2, 2, 3}, false, {}, 0, false, kWithBf16);
  conv_row("stride2_pad1", {2, 2, 6, 5}, {3, 2, 3, 3}, true, {2, 2, 1, 1, 1, 1}, 1, true, kWithBf16);
  conv_row("stride_pad_asym", {1, 2, 7, 6}, {2, 2, 3, 2}, true, {2, 1, 2, 2, 0, 0}, Padding2d(2, 0));
  conv_row("same_k3", {1, 2, 5, 4}, {3, 2, 3, 3}, true, {1, 1, 1, 1, 1, 1}, "same");
  conv_row("same_k4_dil2", {1, 1, 6, 7}, {2, 1, 4, 2}, true, {1, 1, 3, 3, 0, 1, 2, 1}, "same");
  conv_row("valid", {1, 2, 4, 4}, {2, 2, 3, 3}, false, {}, "valid");
  conv_row("dilation2", {1, 2, 7, 7}, {2, 2, 3, 3}, true, {1, 1, 0, 0, 0, 0, 2, 2}, 0, false, kWithBf16);
  conv_row("groups2", {2, 4, 5, 5}, {6, 2, 3, 3}, true, {1, 1, 1, 1, 1, 1, 1, 1, 2}, 1, true, kWithBf16);
  conv_row("depthwise", {1, 3, 4, 5}, {3, 1, 3, 3}, false, {1, 2, 1, 1, 1, 1, 1, 1, 3}, Padding2d(1, 1));
  conv_row("1x1", {2, 3, 3, 2}, {4, 3, 1, 1}, true, {}, 0, false, kWithBf16);
  t.push_back({"conv2d", "channels_last", {in({2, 5, 4, 3}), in({4, 3, 3, 3}), in({4})},
               [](const TensorList& x) { return conv2d(x[0], x[1], x[2], 1, 1, 1, 1, true); },
               [](const std::vector<Ref>& r) {
                 return nchw_to_nhwc(ref_conv2d(ref_permute(r[0], {0, 3, 1, 2}), r[1], &r[2], {1, 1, 1, 1, 1, 1}));
               },
               {kFloat32, kFloat64}, true, false, true, 10.0});

  t.push_back({"pad", "zeros_2d", {in({2, 3, 4, 5})}, [](const TensorList& x) { return pad(x[0], {1, 2, 0, 3}); },
               [](const std::vector<Ref>& r) { return ref_pad(r[0], 1, 2, 0, 3, 0.0); }, {kFloat32, kFloat64}, true, true});
  t.push_back({"pad", "value_3d", {in({3, 2, 2})}, [](const TensorList& x) { return pad(x[0], {2, 1, 1, 1}, 1.5); },
               [](const std::vector<Ref>& r) { return ref_pad(r[0], 2, 1, 1, 1, 1.5); }});

  t.push_back({"max_pool2d", "k2", {in({2, 3, 6, 5}, Domain::Distinct)}, [](const TensorList& x) { return max_pool2d(x[0], 2); },
               [](const std::vector<Ref>& r) { return ref_pool(r[0], 2, 2, 0, 0); }});
  t.push_back({"max_pool2d", "k3_s2_p1", {in({1, 2, 7, 6}, Domain::Distinct)}, [](const TensorList& x) { return max_pool2d(x[0], 3, 2, 1); },
               [](const std::vector<Ref>& r) { return ref_pool(r[0], 3, 2, 1, 0); }});
  t.push_back({"avg_pool2d", "k2", {in({2, 3, 6, 5})}, [](const TensorList& x) { return avg_pool2d(x[0], 2); },
               [](const std::vector<Ref>& r) { return ref_pool(r[0], 2, 2, 0, 1); }, {kFloat32, kFloat64}, true, true});
  t.back().fused = "sliding_windows";  // its window sums gather through im2col
  // torch.nn.functional.unfold: x [N, C, H, W] -> [N, C * kh * kw, L], with padding, stride and
  // dilation; the fused column checks the sliding-window kernels against the index_select path.
  t.push_back({"im2col", "k2x3_s2_d1x2_p1", {in({2, 3, 5, 7})},
               [](const TensorList& x) { return im2col(x[0], {2, 3}, {1, 2}, 1, 2); },
               [](const std::vector<Ref>& r) {
                 const Ref& x = r[0];
                 const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
                 const int64_t kh = 2, kw = 3, dh = 1, dw = 2, p = 1, st = 2;
                 const int64_t Ho = (H + 2 * p - dh * (kh - 1) - 1) / st + 1, Wo = (W + 2 * p - dw * (kw - 1) - 1) / st + 1;
                 return ref_generate({N, C * kh * kw, Ho * Wo}, [&](const Shape& idx) {
                   const int64_t c = idx[1] / (kh * kw), i = idx[1] / kw % kh, j = idx[1] % kw;
                   const int64_t h = idx[2] / Wo * st - p + i * dh, w = idx[2] % Wo * st - p + j * dw;
                   return h < 0 || h >= H || w < 0 || w >= W ? 0.0 : ref_at(x, {idx[0], c, h, w});
                 });
               },
               {kFloat32, kFloat64}, true, true});
  t.back().fused = "sliding_windows";
  t.push_back({"avg_pool2d", "k3_s1_p1", {in({1, 2, 5, 4})}, [](const TensorList& x) { return avg_pool2d(x[0], 3, 1, 1); },
               [](const std::vector<Ref>& r) { return ref_pool(r[0], 3, 1, 1, 1); }});
  t.push_back({"adaptive_avg_pool2d", "divisible", {in({2, 3, 6, 4})},
               [](const TensorList& x) { return adaptive_avg_pool2d(x[0], {3, 2}); },
               [](const std::vector<Ref>& r) { return ref_adaptive_avg(r[0], 3, 2); }});
  t.push_back({"adaptive_avg_pool2d", "overlapping", {in({1, 2, 7, 5})},
               [](const TensorList& x) { return adaptive_avg_pool2d(x[0], {3, 4}); },
               [](const std::vector<Ref>& r) { return ref_adaptive_avg(r[0], 3, 4); }});
  t.push_back({"adaptive_avg_pool2d", "global", {in({2, 3, 5, 3})},
               [](const TensorList& x) { return adaptive_avg_pool2d(x[0], 1); },
               [](const std::vector<Ref>& r) { return ref_adaptive_avg(r[0], 1, 1); }});

  t.push_back({"batch_norm", "train", {in({3, 2, 3, 2}), in({2}), in({2})},
               [](const TensorList& x) {
                 Tensor rm = zeros({2}, x[0].options()), rv = ones({2}, x[0].options());  // on x's device
                 return batch_norm(x[0], x[1], x[2], rm, rv, true, 0.1, 1e-5, false);
               },
               [](const std::vector<Ref>& r) { return ref_batch_norm(r[0], nullptr, nullptr, r[1], r[2], 1e-5); },
               {kFloat32, kFloat64}, true, true, true, 10.0});
  t.push_back({"batch_norm", "eval", {in({2, 3, 2, 2}), in({3}), in({3}, Domain::Positive), in({3}), in({3})},
               [](const TensorList& x) {
                 return batch_norm(x[0], x[3], x[4], x[1], x[2], false, 0.1, 1e-5, false);
               },
               [](const std::vector<Ref>& r) {
                 return ref_batch_norm(r[0], &r[1], &r[2], r[3], r[4], 1e-5);
               },
               {kFloat32, kFloat64}, true, false, true, 10.0});
  // The running statistics a training step leaves behind (PyTorch's rule: the unbiased batch
  // variance, r = (1 - momentum) r + momentum * stat), returned as [running_mean; running_var].
  t.push_back({"batch_norm", "running_stats", {in({4, 3, 2, 3}), in({3}), in({3}, Domain::Positive)},
               [](const TensorList& x) {
                 Tensor rm = x[1].detach().clone(), rv = x[2].detach().clone();
                 batch_norm(x[0].detach(), Tensor(), Tensor(), rm, rv, true, 0.2, 1e-5, false);
                 return cat({rm, rv});
               },
               [](const std::vector<Ref>& r) {
                 const Ref& x = r[0];
                 const int64_t N = x.shape[0], C = x.shape[1], HW = x.numel() / (N * C);
                 Ref out(Shape{2 * C});
                 for (int64_t c = 0; c < C; ++c) {
                   double s = 0, ss = 0;
                   for (int64_t n = 0; n < N; ++n)
                     for (int64_t i = 0; i < HW; ++i) s += x.v[static_cast<size_t>((n * C + c) * HW + i)];
                   const double mean = s / static_cast<double>(N * HW);
                   for (int64_t n = 0; n < N; ++n)
                     for (int64_t i = 0; i < HW; ++i) {
                       const double d = x.v[static_cast<size_t>((n * C + c) * HW + i)] - mean;
                       ss += d * d;
                     }
                   out.v[static_cast<size_t>(c)] = 0.8 * r[1].v[static_cast<size_t>(c)] + 0.2 * mean;
                   out.v[static_cast<size_t>(C + c)] =
                       0.8 * r[2].v[static_cast<size_t>(c)] + 0.2 * ss / static_cast<double>(N * HW - 1);
                 }
                 return out;
               },
               {kFloat32, kFloat64}, false});
});

// ---- running statistics, modules, the MNIST net --------------------------------------------------

// The CPU runs the direct im2col/col2im loops; other devices gather with index_select. Both
// must give the same windows and the same gradient (checked here on the CPU, in float64).
TEST(Conv, GatherPathMatchesDirectCpuPath) {
  manual_seed(9);
  Tensor x = randn({2, 3, 7, 6}, kFloat64).requires_grad_();
  Tensor direct = nabla::detail::sliding_windows(x, 3, 2, {2, 1}, {1, 2}, "test");
  Tensor idx = nabla::detail::window_index(6, 3, 2, {2, 1}, {1, 2}, 3, 4, Device::cpu());
  Tensor gathered = x.reshape({2, 3, 42}).index_select(2, idx).reshape({2, 3, 6, 12});
  ASSERT_EQ(direct.sizes(), gathered.sizes());
  EXPECT_TRUE(all_equal(direct, gathered));
  Tensor g = randn(direct.sizes(), kFloat64);
  auto a = autograd::grad({direct}, {x}, {g}), b = autograd::grad({gathered}, {x}, {g});
  EXPECT_TRUE(all_close(a[0], b[0], 1e-12, 1e-12));
}

TEST(BatchNorm, RunningStatsUseUnbiasedVariance) {
  manual_seed(3);
  Tensor x = randn({4, 2, 3, 3}, kFloat64) * 2.0 + 1.0;
  Tensor rm = zeros({2}, kFloat64), rv = ones({2}, kFloat64);
  batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, false);
  Tensor mean = x.mean({0, 2, 3}), var = x.var({0, 2, 3}, true);
  EXPECT_TRUE(all_close(rm, mean * 0.1, 1e-12, 1e-12));
  EXPECT_TRUE(all_close(rv, var * 0.1 + 0.9, 1e-12, 1e-12));
  EXPECT_THROW(batch_norm(ones({1, 2, 1, 1}), Tensor(), Tensor(), rm, rv, true, 0.1, 1e-5, false), ValueError);
}

TEST(ConvModules, BatchNorm2dStateAndModes) {
  nn::BatchNorm2d bn(3);
  auto sd = bn.state_dict();
  std::vector<std::string> names;
  for (const auto& [k, v] : sd) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn.num_batches_tracked.dtype(), kInt64);
  Tensor x = randn({4, 3, 2, 2});
  bn.forward(x);
  bn.forward(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);
  bn.eval();
  Tensor y = bn.forward(x);
  Tensor expect = (x - bn.running_mean.reshape({1, 3, 1, 1})) * (bn.running_var.reshape({1, 3, 1, 1}) + 1e-5).rsqrt();
  EXPECT_TRUE(all_close(y, expect, 1e-5, 1e-6));
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);
}

TEST(ConvModules, Conv2dInitAndShape) {
  nn::Conv2d c(4, 6, 3, 2, 1, 1, 2);
  EXPECT_EQ(c.weight.sizes(), (Shape{6, 2, 3, 3}));
  const double bound = 1.0 / std::sqrt(18.0);
  EXPECT_LE(c.weight.abs().max().item<double>(), bound);
  EXPECT_LE(c.bias.abs().max().item<double>(), bound);
  EXPECT_EQ(c.forward(randn({2, 4, 9, 8})).sizes(), (Shape{2, 6, 5, 4}));
  EXPECT_THROW(nn::Conv2d(3, 4, 3, 1, 0, 1, 2), ValueError);
  EXPECT_THROW(conv2d(randn({1, 3, 5, 5}), randn({2, 2, 3, 3})), ShapeError);
  EXPECT_THROW(conv2d(randn({1, 2, 5, 5}), randn({2, 2, 3, 3}), Tensor(), 2, "same"), ValueError);
}

// LibTorch's options builders make the same modules as the positional constructors.
TEST(ConvModules, OptionsBuildersMatchPositional) {
  nn::Conv2d c(nn::Conv2dOptions(4, 6, 3).stride(2).padding(1).groups(2).bias(false));
  EXPECT_EQ(c.weight.sizes(), (Shape{6, 2, 3, 3}));
  EXPECT_FALSE(c.bias.defined());
  EXPECT_EQ(c.stride.h, 2);
  EXPECT_EQ(c.extra_repr(), "4, 6, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=2, bias=False");
  nn::Conv2dOptions o(3, 8, {3, 5});
  o.dilation(2).padding("same");
  EXPECT_EQ(o.kernel_size().w, 5);
  EXPECT_EQ(o.padding().mode, "same");
  EXPECT_EQ(o.dilation().h, 2);
  EXPECT_TRUE(o.bias());

  nn::ConvTranspose2d t(nn::ConvTranspose2dOptions(4, 6, 4).stride(2).padding(1).bias(false));
  EXPECT_EQ(t.weight.sizes(), (Shape{4, 6, 4, 4}));
  EXPECT_FALSE(t.bias.defined());
  EXPECT_EQ(t.forward(randn({2, 4, 5, 3})).sizes(), (Shape{2, 6, 10, 6}));
  nn::ConvTranspose2d t2(4, 6, 3, 2, 1, 1, 2);  // PyTorch's order: stride, padding, output_padding, groups
  EXPECT_EQ(t2.weight.sizes(), (Shape{4, 3, 3, 3}));
  EXPECT_EQ(t2.forward(randn({1, 4, 3, 3})).sizes(), (Shape{1, 6, 6, 6}));
  EXPECT_EQ(t2.forward(randn({1, 4, 3, 3}), {5, 6}).sizes(), (Shape{1, 6, 5, 6}));
  EXPECT_THROW(t2.forward(randn({1, 4, 3, 3}), {4, 6}), ValueError);  // below the smallest output
  EXPECT_EQ(t2.state_dict().keys(), (std::vector<std::string>{"weight", "bias"}));
}

TEST(ConvModules, ConvTranspose2dErrorsNameTheProblem) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // a conv2d-shaped weight [out, in, k, k] for a transposed convolution
  std::string m = message([] { conv_transpose2d(randn({1, 3, 4, 4}), randn({2, 3, 3, 3})); });
  EXPECT_NE(m.find("conv_transpose2d"), std::string::npos) << m;
  EXPECT_NE(m.find("[in, out / groups, kh, kw]"), std::string::npos) << m;
  EXPECT_THROW(conv_transpose2d(randn({1, 3, 4, 4}), randn({3, 2, 3, 3}), Tensor(), 2, 0, 2), ValueError);  // output_padding >= stride
  EXPECT_THROW(conv_transpose2d(randn({1, 3, 4, 4}), randn({3, 2, 3, 3}), randn({3})), ShapeError);         // bias [2] expected
  EXPECT_THROW(conv_transpose2d(randn({1, 3, 1, 1}), randn({3, 2, 1, 1}), Tensor(), 1, 1), ShapeError);      // empty output
  EXPECT_THROW(conv_transpose2d(randn({3, 4, 4}), randn({3, 2, 3, 3})), ShapeError);
  EXPECT_THROW(conv_transpose2d(randn({1, 4, 4, 4}), randn({4, 2, 3, 3}), Tensor(), 1, 0, 0, 3), ValueError);  // groups
}

TEST(ConvModules, MnistExampleNet) {
  nn::Sequential net(nn::Conv2d(1, 32, 3, 1), nn::ReLU(), nn::Conv2d(32, 64, 3, 1), nn::ReLU(), nn::MaxPool2d(2),
                     nn::Dropout(0.25), nn::Flatten(), nn::Linear(9216, 128), nn::ReLU(), nn::Dropout(0.5),
                     nn::Linear(128, 10));
  std::vector<std::string> names;
  for (const auto& [k, v] : net.state_dict()) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "7.weight", "7.bias",
                                             "10.weight", "10.bias"}));
  Tensor x = randn({2, 1, 28, 28});
  Tensor y = net.forward(x);
  EXPECT_EQ(y.sizes(), (Shape{2, 10}));
  y.sum().backward();
  EXPECT_EQ(net.at<nn::Conv2d>(0)->weight.grad().sizes(), (Shape{32, 1, 3, 3}));
}

// ---- ResNet's residual blocks -------------------------------------------------------------------
// The module's forward (training mode: batch statistics) with its weights taken from the row's
// inputs, so the gradient flows to every one of them; the reference composes ref_conv2d,
// ref_batch_norm and ReLU in float64. Gradients are checked in float64 only (grad_float32 off:
// see ParityCase).
void bind_conv(nn::Conv2d& c, const Tensor& w) { c.weight = w; }
void bind_bn(nn::BatchNorm2d& bn, const Tensor& w, const Tensor& b) {
  bn.weight = w;
  bn.bias = b;
  bn.running_mean = zeros({w.size(0)}, w.options().requires_grad(false));  // on the inputs' device and dtype
  bn.running_var = ones({w.size(0)}, w.options().requires_grad(false));
}
Ref ref_relu(const Ref& a) { return ref_map(a, [](double v) { return v > 0 ? v : 0.0; }); }
Ref ref_add(const Ref& a, const Ref& b) { return ref_zip(a, b, [](double u, double v) { return u + v; }); }
Ref ref_conv_bn(const Ref& x, const Ref& w, const Ref& g, const Ref& b, int64_t stride, int64_t pad) {
  ConvArgs a{stride, stride, pad, pad, pad, pad};
  return ref_batch_norm(ref_conv2d(x, w, nullptr, a), nullptr, nullptr, g, b, 1e-5);
}

const RegisterParity block_rows([](std::vector<ParityCase>& t) {
  // BasicBlock(2 -> 3, stride 2) with its downsample: inputs x, conv1, bn1 (w, b), conv2, bn2, downsample conv, bn
  t.push_back({"resnet_basic_block", "stride2_downsample",
               {in({2, 2, 5, 5}), in({3, 2, 3, 3}), in({3}), in({3}), in({3, 3, 3, 3}), in({3}), in({3}), in({3, 2, 1, 1}),
                in({3}), in({3})},
               [](const TensorList& x) {
                 auto down = std::make_shared<nn::Sequential>(models::detail::conv1x1(2, 3, 2), nn::BatchNorm2d(3));
                 models::BasicBlock b(2, 3, 2, down);
                 bind_conv(*b.conv1, x[1]);
                 bind_bn(*b.bn1, x[2], x[3]);
                 bind_conv(*b.conv2, x[4]);
                 bind_bn(*b.bn2, x[5], x[6]);
                 bind_conv(*down->at<nn::Conv2d>(0), x[7]);
                 bind_bn(*down->at<nn::BatchNorm2d>(1), x[8], x[9]);
                 return b.forward(x[0]);
               },
               [](const std::vector<Ref>& r) {
                 Ref h = ref_relu(ref_conv_bn(r[0], r[1], r[2], r[3], 2, 1));
                 h = ref_conv_bn(h, r[4], r[5], r[6], 1, 1);
                 return ref_relu(ref_add(h, ref_conv_bn(r[0], r[7], r[8], r[9], 2, 0)));
               },
               {kFloat32, kFloat64}, true, false, true, 10.0, "", /*grad_float32=*/false});
  // BasicBlock(3 -> 3, stride 1): the identity shortcut
  t.push_back({"resnet_basic_block", "identity",
               {in({2, 3, 4, 4}), in({3, 3, 3, 3}), in({3}), in({3}), in({3, 3, 3, 3}), in({3}), in({3})},
               [](const TensorList& x) {
                 models::BasicBlock b(3, 3);
                 bind_conv(*b.conv1, x[1]);
                 bind_bn(*b.bn1, x[2], x[3]);
                 bind_conv(*b.conv2, x[4]);
                 bind_bn(*b.bn2, x[5], x[6]);
                 return b.forward(x[0]);
               },
               [](const std::vector<Ref>& r) {
                 Ref h = ref_relu(ref_conv_bn(r[0], r[1], r[2], r[3], 1, 1));
                 return ref_relu(ref_add(ref_conv_bn(h, r[4], r[5], r[6], 1, 1), r[0]));
               },
               {kFloat32, kFloat64}, true, false, true, 10.0, "", /*grad_float32=*/false});
  // Bottleneck(4 -> planes 2 -> 8, stride 2, width 2): 1x1, 3x3 carrying the stride, 1x1, downsample
  t.push_back({"resnet_bottleneck", "stride2_downsample",
               {in({2, 4, 5, 5}), in({2, 4, 1, 1}), in({2}), in({2}), in({2, 2, 3, 3}), in({2}), in({2}), in({8, 2, 1, 1}),
                in({8}), in({8}), in({8, 4, 1, 1}), in({8}), in({8})},
               [](const TensorList& x) {
                 auto down = std::make_shared<nn::Sequential>(models::detail::conv1x1(4, 8, 2), nn::BatchNorm2d(8));
                 models::Bottleneck b(4, 2, 2, down);
                 bind_conv(*b.conv1, x[1]);
                 bind_bn(*b.bn1, x[2], x[3]);
                 bind_conv(*b.conv2, x[4]);
                 bind_bn(*b.bn2, x[5], x[6]);
                 bind_conv(*b.conv3, x[7]);
                 bind_bn(*b.bn3, x[8], x[9]);
                 bind_conv(*down->at<nn::Conv2d>(0), x[10]);
                 bind_bn(*down->at<nn::BatchNorm2d>(1), x[11], x[12]);
                 return b.forward(x[0]);
               },
               [](const std::vector<Ref>& r) {
                 Ref h = ref_relu(ref_conv_bn(r[0], r[1], r[2], r[3], 1, 0));
                 h = ref_relu(ref_conv_bn(h, r[4], r[5], r[6], 2, 1));
                 h = ref_conv_bn(h, r[7], r[8], r[9], 1, 0);
                 return ref_relu(ref_add(h, ref_conv_bn(r[0], r[10], r[11], r[12], 2, 0)));
               },
               {kFloat32, kFloat64}, true, false, true, 10.0, "", /*grad_float32=*/false});
});

}  // namespace
}  // namespace nabla_test
