// scaled_dot_product_attention: parity rows (float64 reference written from the definition,
// finite-difference gradients, fused flash kernels against the composite, CUDA against CPU), and
// the semantics PyTorch gives it: masks, causal alignment, fully masked rows, scale, dropout,
// errors, autocast.

#include <cmath>
#include <limits>

#include "parity.hpp"
#include "test_util.hpp"

namespace nabla_test {
namespace {

#define EXPECT_THROWS(E, f, ...) EXPECT_TRUE(throws_with<E>(f, __VA_ARGS__))

// softmax(q k^T scale + mask) v over the last two dims of [..., L, E] inputs, in float64 from
// the definition; kind 0: no mask, 1: causal, 2: bool mask r[3], 3: float mask r[3] (each
// broadcast over the leading dims). A row with every key masked is zeros.
Ref ref_sdpa(const std::vector<Ref>& r, int kind, double scale = 0) {
  const Ref &q = r[0], &k = r[1], &v = r[2];
  const int64_t nd = q.dim(), L = q.shape[nd - 2], E = q.shape[nd - 1], S = k.shape[nd - 2], Ev = v.shape[nd - 1];
  const double sc = scale > 0 ? scale : 1.0 / std::sqrt(double(E));
  Shape os = q.shape;
  os[nd - 1] = Ev;
  const int64_t batch = q.numel() / (L * E);
  std::vector<double> out(static_cast<size_t>(batch * L * Ev), 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < L; ++i) {
      std::vector<double> s(static_cast<size_t>(S));
      std::vector<bool> keep(static_cast<size_t>(S), true);
      double mx = -INFINITY;
      for (int64_t j = 0; j < S; ++j) {
        double acc = 0;
        for (int64_t e = 0; e < E; ++e) acc += q.v[size_t((b * L + i) * E + e)] * k.v[size_t((b * S + j) * E + e)];
        acc *= sc;
        if (kind == 1) keep[size_t(j)] = j <= i;
        if (kind == 2 || kind == 3) {
          const Ref& m = r[3];  // [L, S] or [1, ..., L, S]
          const double mv = m.v[size_t(i * S + j)];
          if (kind == 2) keep[size_t(j)] = mv != 0;
          else acc += mv;
        }
        s[size_t(j)] = acc;
        if (keep[size_t(j)]) mx = std::max(mx, acc);
      }
      if (mx == -INFINITY) continue;  // every key masked: zeros
      double sum = 0;
      for (int64_t j = 0; j < S; ++j) sum += keep[size_t(j)] ? std::exp(s[size_t(j)] - mx) : 0.0;
      for (int64_t j = 0; j < S; ++j) {
        if (!keep[size_t(j)]) continue;
        const double p = std::exp(s[size_t(j)] - mx) / sum;
        for (int64_t e = 0; e < Ev; ++e) out[size_t((b * L + i) * Ev + e)] += p * v.v[size_t((b * S + j) * Ev + e)];
      }
    }
  return Ref(os, out);
}

struct RowFlags {
  std::vector<DType> dtypes = {kFloat32, kFloat64};
  bool grad2 = false;
};

const RegisterParity rows([](std::vector<ParityCase>& t) {
  auto row = [&t](const char* label, std::vector<InputSpec> ins, int kind, RowFlags flags = {}) {
    ParityCase c;
    c.op = "scaled_dot_product_attention";
    c.label = label;
    c.inputs = std::move(ins);
    c.fn = [=](const TensorList& x) {
      switch (kind) {
        case 1: return scaled_dot_product_attention(x[0], x[1], x[2], {}, 0.0, true);
        case 2: case 3: return scaled_dot_product_attention(x[0], x[1], x[2], x[3]);
        case 4: return scaled_dot_product_attention(x[0], x[1], x[2], {}, 0.0, false, 0.3);
        default: return scaled_dot_product_attention(x[0], x[1], x[2]);
      }
    };
    c.ref = [=](const std::vector<Ref>& r) { return ref_sdpa(r, kind == 4 ? 0 : kind, kind == 4 ? 0.3 : 0); };
    c.dtypes = flags.dtypes;
    c.grad2 = flags.grad2;
    t.push_back(std::move(c));
  };
  row("bhle", {in({2, 2, 5, 4}), in({2, 2, 6, 4}), in({2, 2, 6, 3})}, 0, {{kFloat32, kFloat64, kBFloat16}, true});
  row("causal", {in({1, 2, 7, 4}), in({1, 2, 7, 4}), in({1, 2, 7, 4})}, 1, {{kFloat32, kFloat64, kBFloat16}, true});
  row("causal_l_lt_s", {in({2, 1, 3, 4}), in({2, 1, 5, 4}), in({2, 1, 5, 2})}, 1);
  row("bool_mask", {in({2, 2, 4, 3}), in({2, 2, 5, 3}), in({2, 2, 5, 3}), bool_in({4, 5})}, 2);
  row("float_mask", {in({2, 3, 4}), in({2, 5, 4}), in({2, 5, 4}), in({3, 5})}, 3);
  row("scale", {in({1, 3, 4, 8}), in({1, 3, 4, 8}), in({1, 3, 4, 8})}, 4);
  row("3d", {in({3, 5, 4}), in({3, 6, 4}), in({3, 6, 4})}, 0);
  // more than one block of queries (64) and keys (128), causal: the skipped and partial tiles
  row("blocks_causal", {in({1, 1, 150, 3}), in({1, 1, 150, 3}), in({1, 1, 150, 2})}, 1, {{kFloat32, kFloat64}, false});
});

Tensor naive(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& bias) {
  Tensor s = matmul(q, k.transpose(-2, -1)) / std::sqrt(double(q.size(-1)));
  if (bias.defined()) s = s + bias;
  return matmul(softmax(s, -1), v);
}

TEST(Attention, FusedMatchesCompositeForwardAndBackwardAcrossBlocks) {
  manual_seed(7);
  for (bool causal : {false, true})
    for (auto [L, S] : {std::pair<int64_t, int64_t>{200, 200}, {70, 300}, {1, 257}, {130, 1}}) {
      if (causal && L > S) continue;
      Tensor q = randn({2, 3, L, 16}).requires_grad_(), k = randn({2, 3, S, 16}).requires_grad_(),
             v = randn({2, 3, S, 24}).requires_grad_();
      Tensor go = randn({2, 3, L, 24});
      const uint64_t hits = sdpa_kernels().hits(DeviceType::CPU);
      Tensor y = scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
      y.backward(go);
      EXPECT_EQ(sdpa_kernels().hits(DeviceType::CPU), hits + 2) << "forward and backward kernels ran";
      TensorList fused{y.detach(), q.grad(), k.grad(), v.grad()};
      for (Tensor t : {q, k, v}) t.set_grad(Tensor());
      {
        FusedKernelsGuard off(false);
        Tensor y2 = scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
        y2.backward(go);
        TensorList comp{y2.detach(), q.grad(), k.grad(), v.grad()};
        for (size_t i = 0; i < 4; ++i)
          EXPECT_TRUE(fused[i].allclose(comp[i], 1e-4, 1e-5)) << "L " << L << " S " << S << " causal " << causal << " #" << i;
      }
      for (Tensor t : {q, k, v}) t.set_grad(Tensor());
    }
}

TEST(Attention, CausalIsTopLeftAlignedAsPyTorch) {
  // L < S: query i sees keys 0..i (torch.ones(L, S).tril()), not the bottom-right alignment.
  Tensor q = randn({1, 1, 2, 4}), k = randn({1, 1, 5, 4}), v = randn({1, 1, 5, 3});
  Tensor keep = ones({2, 5}, TensorOptions(kBool)).masked_fill(arange(5).unsqueeze(0) > arange(2).unsqueeze(1), false);
  EXPECT_TRUE(scaled_dot_product_attention(q, k, v, {}, 0.0, true).allclose(scaled_dot_product_attention(q, k, v, keep), 1e-5, 1e-6));
  Tensor bias = zeros({2, 5}).masked_fill(keep.logical_not(), -INFINITY);
  EXPECT_TRUE(scaled_dot_product_attention(q, k, v, {}, 0.0, true).allclose(naive(q, k, v, bias), 1e-5, 1e-6));
}

TEST(Attention, FullyMaskedRowsAreZerosWithFiniteGradients) {
  for (bool fused : {true, false}) {
    FusedKernelsGuard g(fused);
    Tensor q = randn({1, 2, 3, 4}).requires_grad_(), k = randn({1, 2, 4, 4}).requires_grad_(),
           v = randn({1, 2, 4, 4}).requires_grad_();
    Tensor mask = ones({3, 4}, TensorOptions(kBool));
    mask.select(0, 1).fill_(false);  // query 1 sees nothing
    Tensor y = scaled_dot_product_attention(q, k, v, mask);
    EXPECT_TRUE(y.select(2, 1).eq(0).all().item<bool>());
    EXPECT_FALSE(y.ne(y).any().item<bool>());
    y.sum().backward();
    for (const Tensor& t : {q, k, v}) EXPECT_FALSE(t.grad().ne(t.grad()).any().item<bool>());
    EXPECT_TRUE(q.grad().select(2, 1).eq(0).all().item<bool>());
  }
}

TEST(Attention, MaskBroadcastsOverBatchAndHeads) {
  Tensor q = randn({2, 3, 4, 8}), k = randn({2, 3, 6, 8}), v = randn({2, 3, 6, 8});
  Tensor m = randn({2, 1, 4, 6});
  Tensor want = naive(q, k, v, m);
  EXPECT_TRUE(scaled_dot_product_attention(q, k, v, m).allclose(want, 1e-5, 1e-6));
  FusedKernelsGuard off(false);
  EXPECT_TRUE(scaled_dot_product_attention(q, k, v, m).allclose(want, 1e-5, 1e-6));
}

TEST(Attention, FloatMaskGetsAGradientThroughTheComposite) {
  Tensor q = randn({1, 2, 3, 4}, TensorOptions(kFloat64)), k = randn({1, 2, 5, 4}, TensorOptions(kFloat64)),
         v = randn({1, 2, 5, 4}, TensorOptions(kFloat64));
  Tensor m = randn({3, 5}, TensorOptions(kFloat64)).requires_grad_();
  EXPECT_TRUE(gradcheck([&](const TensorList& x) { return scaled_dot_product_attention(q, k, v, x[0]); }, {m}));
}

TEST(Attention, DropoutScalesKeptWeightsAndIsSeeded) {
  Tensor q = randn({4, 2, 16, 8}), k = randn({4, 2, 16, 8}), v = ones({4, 2, 16, 8});
  manual_seed(3);
  Tensor a = scaled_dot_product_attention(q, k, v, {}, 0.5);
  manual_seed(3);
  Tensor b = scaled_dot_product_attention(q, k, v, {}, 0.5);
  EXPECT_TRUE(a.equal(b));
  // v = 1: each output is the sum of the kept weights / (1 - p): mean 1 over many rows
  EXPECT_NEAR(a.mean().item<double>(), 1.0, 0.05);
  EXPECT_FALSE(a.allclose(scaled_dot_product_attention(q, k, v)));
  EXPECT_TRUE(scaled_dot_product_attention(q, k, v, {}, 1.0).eq(0).all().item<bool>());
}

TEST(Attention, ErrorsNameTheOpAndShapes) {
  Tensor q = randn({1, 2, 3, 4}), k = randn({1, 2, 5, 4}), v = randn({1, 2, 5, 4});
  EXPECT_THROWS(ShapeError, [&] { scaled_dot_product_attention(q, randn({1, 2, 5, 3}), v); },
                           {"scaled_dot_product_attention", "[1, 2, 5, 3]"});
  EXPECT_THROWS(ShapeError, [&] { scaled_dot_product_attention(q, k, randn({1, 2, 4, 4})); }, {"sequence length"});
  EXPECT_THROWS(ValueError, [&] { scaled_dot_product_attention(q, k, v, ones({3, 5}, TensorOptions(kBool)), 0.0, true); },
                           {"is_causal"});
  EXPECT_THROWS(ShapeError, [&] { scaled_dot_product_attention(q, k, v, ones({3, 4}, TensorOptions(kBool))); },
                           {"broadcast"});
  EXPECT_THROWS(DTypeError, [&] { scaled_dot_product_attention(q, k.to(kFloat64), v); }, {"dtype"});
  EXPECT_THROWS(DTypeError, [&] { scaled_dot_product_attention(q, k, v, ones({3, 5}, TensorOptions(kInt64))); },
                           {"attn_mask"});
  EXPECT_THROWS(ValueError, [&] { scaled_dot_product_attention(q, k, v, {}, 1.5); }, {"dropout_p"});
}

TEST(Attention, AutocastRunsItInLowerPrecision) {
  Tensor q = randn({1, 2, 3, 4}), k = randn({1, 2, 5, 4}), v = randn({1, 2, 5, 4});
  amp::autocast guard(kCPU, kBFloat16);
  Tensor y = scaled_dot_product_attention(q, k, v, {}, 0.0, true);
  EXPECT_EQ(y.dtype(), kBFloat16);
}

// On a GPU: the CUDA path (the opt-in flash kernels with NABLA_CUDA_FLASH_ATTENTION=1, else the
// composite) against the CPU's fused kernels, forward and gradients, across tile edges, with a
// bool mask broadcast over heads, head dims 64 and 40.
TEST(AttentionCuda, MatchesTheCpuAcrossBlocks) {
  NABLA_REQUIRE_GPU();
  manual_seed(8);
  struct Case {
    int64_t L, S, E, Ev;
    bool causal, masked;
  };
  for (Case c : {Case{200, 200, 64, 64, true, false}, Case{70, 300, 40, 24, false, false}, Case{1, 257, 64, 64, false, false},
                 Case{130, 130, 64, 64, false, true}, Case{65, 129, 32, 32, true, false}}) {
    Tensor q = randn({2, 3, c.L, c.E}), k = randn({2, 3, c.S, c.E}), v = randn({2, 3, c.S, c.Ev}), go = randn({2, 3, c.L, c.Ev});
    Tensor mask = c.masked ? rand({2, 1, c.L, c.S}) > 0.3 : Tensor();
    auto run = [&](Device d) {
      TensorList in{q.to(d).requires_grad_(), k.to(d).requires_grad_(), v.to(d).requires_grad_()};
      Tensor y = scaled_dot_product_attention(in[0], in[1], in[2], mask.defined() ? mask.to(d) : mask, 0.0, c.causal);
      y.backward(go.to(d));
      return TensorList{y.detach().cpu(), in[0].grad().cpu(), in[1].grad().cpu(), in[2].grad().cpu()};
    };
    TensorList cpu = run(Device::cpu()), gpu = run(Device::cuda());
    for (size_t i = 0; i < 4; ++i)
      EXPECT_TRUE(all_close(gpu[i], cpu[i], 1e-4, 1e-4)) << "L " << c.L << " S " << c.S << " E " << c.E << " #" << i;
  }
}

}  // namespace
}  // namespace nabla_test
