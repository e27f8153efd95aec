// GPT-2 training step, nabla vs LibTorch, in one process: the same small GPT-2 (the `gpt train`
// defaults: 4 layers, 4 heads, 128 wide, context 64, vocab 65), the same weights (nabla's
// initialisation copied into the twin, Conv1D [in, out] transposed into nn::Linear [out, in]), the
// same batches of random tokens, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on matrices,
// gradient clipping at 1.0). LibTorch 1.13 has no scaled_dot_product_attention, so the twin's
// attention is the usual composite (matmul, causal masked_fill, softmax, matmul). Rounds alternate
// between the libraries; the median round of each is reported as tokens/s, with the ratio.
//   nabla_gpt_libtorch [--batch 12] [--block 64] [--layers 4] [--heads 4] [--embd 128] [--vocab 65]
//                      [--steps 10] [--rounds 3] [--threads T]
// benchmarks/compare/gpt.sh runs it; figures in docs/gpt.md.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <nabla/models/gpt2.hpp>
#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
torch::Tensor to_torch(const nb::Tensor& t) {
  nb::Tensor c = t.detach().contiguous().to(nb::kFloat32);
  std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
  return torch::from_blob(c.data_ptr<float>(), shape, torch::kFloat).clone();
}

// transformers' GPT-2 in LibTorch modules, pre-LN, tanh GELU, tied lm_head.
struct BlockImpl : torch::nn::Module {
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr}, c_fc{nullptr}, mlp_proj{nullptr};
  int64_t heads;
  BlockImpl(int64_t C, int64_t H) : heads(H) {
    ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
    c_attn = register_module("c_attn", torch::nn::Linear(C, 3 * C));
    c_proj = register_module("c_proj", torch::nn::Linear(C, C));
    ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
    c_fc = register_module("c_fc", torch::nn::Linear(C, 4 * C));
    mlp_proj = register_module("mlp_proj", torch::nn::Linear(4 * C, C));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& masked) {
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / heads;
    auto qkv = c_attn(ln_1(x)).split(C, 2);
    auto h = [&](const torch::Tensor& t) { return t.view({B, T, heads, D}).transpose(1, 2); };
    torch::Tensor w = torch::matmul(h(qkv[0]), h(qkv[1]).transpose(-2, -1)) / std::sqrt(static_cast<double>(D));
    w = torch::softmax(w.masked_fill(masked, -INFINITY), -1);
    torch::Tensor a = torch::matmul(w, h(qkv[2])).transpose(1, 2).contiguous().view({B, T, C});
    x = x + c_proj(a);
    return x + mlp_proj(torch::gelu(c_fc(ln_2(x)), "tanh"));
  }
};
TORCH_MODULE(Block);

struct TwinImpl : torch::nn::Module {
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  std::vector<Block> blocks;
  torch::nn::LayerNorm ln_f{nullptr};
  TwinImpl(int64_t V, int64_t P, int64_t C, int64_t H, int64_t L) {
    wte = register_module("wte", torch::nn::Embedding(V, C));
    wpe = register_module("wpe", torch::nn::Embedding(P, C));
    for (int64_t i = 0; i < L; ++i) blocks.push_back(register_module(std::string("h").append(std::to_string(i)), Block(C, H)));
    ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({C})));
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    const int64_t T = ids.size(1);
    torch::Tensor masked = torch::ones({T, T}, torch::kBool).triu(1);
    torch::Tensor x = wte(ids) + wpe(torch::arange(T, torch::kLong));
    for (auto& b : blocks) x = b->forward(x, masked);
    return torch::nn::functional::linear(ln_f(x), wte->weight);  // tied lm_head
  }
};
TORCH_MODULE(Twin);
}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 12, block = 64, layers = 4, heads = 4, embd = 128, vocab = 65, steps = 10, rounds = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", f.c_str());
      return 2;
    }
    const int64_t v = std::atoll(argv[++i]);
    if (f == "--batch") batch = v;
    else if (f == "--block") block = v;
    else if (f == "--layers") layers = v;
    else if (f == "--heads") heads = v;
    else if (f == "--embd") embd = v;
    else if (f == "--vocab") vocab = v;
    else if (f == "--steps") steps = v;
    else if (f == "--rounds") rounds = v;
    else if (f == "--threads") threads = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", f.c_str());
      return 2;
    }
  }
  if (threads > 0) {
#if defined(_OPENMP)
    omp_set_num_threads(static_cast<int>(threads));
#endif
    torch::set_num_threads(static_cast<int>(threads));
  }
  nb::set_flush_denormal(true);
  at::globalContext().setFlushDenormal(true);

  nb::models::GPT2Config c;
  c.vocab_size = vocab, c.n_positions = block, c.n_embd = embd, c.n_layer = layers, c.n_head = heads;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.0;
  nb::manual_seed(1);
  nb::models::GPT2LMHeadModel model(c);
  Twin twin(vocab, block, embd, heads, layers);
  {  // the same weights
    torch::NoGradGuard g;
    twin->wte->weight.copy_(to_torch(model.transformer->wte->weight));
    twin->wpe->weight.copy_(to_torch(model.transformer->wpe->weight));
    for (int64_t l = 0; l < layers; ++l) {
      auto& nbk = *model.transformer->blocks[static_cast<size_t>(l)];
      auto& tb = *twin->blocks[static_cast<size_t>(l)];
      auto lin = [](torch::nn::Linear& t, const nb::models::Conv1D& n) {
        t->weight.copy_(to_torch(n.weight).t());
        t->bias.copy_(to_torch(n.bias));
      };
      lin(tb.c_attn, *nbk.attn->c_attn), lin(tb.c_proj, *nbk.attn->c_proj), lin(tb.c_fc, *nbk.mlp->c_fc),
          lin(tb.mlp_proj, *nbk.mlp->c_proj);
    }
  }
  std::vector<nb::Tensor> decay, no_decay;
  for (const nb::Tensor& p : model.parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  using G = nb::optim::ParamGroup<nb::optim::AdamWOptions>;
  nb::optim::AdamWOptions o = nb::optim::AdamWOptions(1e-3).betas({0.9, 0.99}).weight_decay(0.1);
  nb::optim::AdamW opt({G(decay, o), G(no_decay, nb::optim::AdamWOptions(o).weight_decay(0.0))}, o);
  std::vector<torch::Tensor> tdecay, tno;
  for (const auto& p : twin->parameters()) (p.dim() >= 2 ? tdecay : tno).push_back(p);
  torch::optim::AdamWOptions to = torch::optim::AdamWOptions(1e-3).betas({0.9, 0.99}).weight_decay(0.1);
  torch::optim::AdamW topt({torch::optim::OptimizerParamGroup(tdecay, std::make_unique<torch::optim::AdamWOptions>(to)),
                            torch::optim::OptimizerParamGroup(
                                tno, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(to).weight_decay(0.0)))},
                           to);

  nb::Tensor x = nb::randint(0, vocab, {batch, block}), y = nb::randint(0, vocab, {batch, block});
  std::vector<int64_t> xv = x.to_vector<int64_t>(), yv = y.to_vector<int64_t>();
  torch::Tensor tx = torch::tensor(xv, torch::kLong).view({batch, block}), ty = torch::tensor(yv, torch::kLong).view({-1});
  auto nabla_step = [&] {
    opt.zero_grad();
    nb::Tensor loss = nb::cross_entropy(model.forward(x).reshape({-1, vocab}), y.reshape({-1}));
    loss.backward();
    nb::optim::clip_grad_norm_(model.parameters(), 1.0);
    opt.step();
    return loss.item<double>();
  };
  auto torch_step = [&] {
    topt.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(twin->forward(tx).view({-1, vocab}), ty);
    loss.backward();
    torch::nn::utils::clip_grad_norm_(twin->parameters(), 1.0);
    topt.step();
    return loss.item<double>();
  };
  std::printf("GPT-2 %lld layers, %lld heads, %lld wide, vocab %lld; batch %lld x %lld tokens; %lld steps per round, "
              "%lld rounds, threads %d\n",
              (long long)layers, (long long)heads, (long long)embd, (long long)vocab, (long long)batch, (long long)block,
              (long long)steps, (long long)rounds, torch::get_num_threads());
  const double l0n = nabla_step(), l0t = torch_step();  // also the warm-up
  std::printf("first step's loss (same weights and batch): nabla %.6f, LibTorch %.6f\n", l0n, l0t);
  std::vector<double> tn, tt;
  const double tokens = static_cast<double>(batch * block * steps);
  for (int64_t r = 0; r < rounds; ++r) {
    double t0 = now(), ln = 0, lt = 0;
    for (int64_t s = 0; s < steps; ++s) ln = nabla_step();
    tn.push_back(tokens / (now() - t0));
    t0 = now();
    for (int64_t s = 0; s < steps; ++s) lt = torch_step();
    tt.push_back(tokens / (now() - t0));
    std::printf("round %lld: nabla %.0f tok/s (loss %.4f), LibTorch %.0f tok/s (loss %.4f)\n", (long long)r + 1, tn.back(),
                ln, tt.back(), lt);
  }
  const double mn = median(tn), mt = median(tt);
  std::printf("median: nabla %.0f tok/s, LibTorch %.0f tok/s; nabla/LibTorch rate %.2f\n", mn, mt, mn / mt);
  return 0;
}
