// nabla::models::GPT2LMHeadModel: Hugging Face's names, shapes and parameter count; the forward
// against GPT-2's definition written out in float64 ops; the KV cache against the full forward;
// from_pretrained / save_pretrained round trips and the file variants transformers writes
// (prefix or not, attn.bias buffers, float16, missing lm_head.weight); checkpointing; learning.

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <nabla/models/gpt2.hpp>

#include "test_util.hpp"

namespace nabla_test {
namespace {

using models::GPT2Config;
using models::GPT2LMHeadModel;
namespace fs = std::filesystem;

#define EXPECT_THROWS_NABLA(expr, E, ...) EXPECT_TRUE(throws_with<E>([&] { (void)(expr); }, {__VA_ARGS__}))

GPT2Config tiny(int64_t layers = 2) {
  GPT2Config c;
  c.vocab_size = 37, c.n_positions = 16, c.n_embd = 12, c.n_layer = layers, c.n_head = 3;
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.0;
  return c;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nabla_gpt2_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(GPT2, NamesAndShapesAreHuggingFaces) {
  GPT2LMHeadModel m(tiny(1));
  std::vector<std::pair<std::string, Shape>> want = {
      {"transformer.wte.weight", {37, 12}},          {"transformer.wpe.weight", {16, 12}},
      {"transformer.h.0.ln_1.weight", {12}},         {"transformer.h.0.ln_1.bias", {12}},
      {"transformer.h.0.attn.c_attn.weight", {12, 36}}, {"transformer.h.0.attn.c_attn.bias", {36}},
      {"transformer.h.0.attn.c_proj.weight", {12, 12}}, {"transformer.h.0.attn.c_proj.bias", {12}},
      {"transformer.h.0.ln_2.weight", {12}},         {"transformer.h.0.ln_2.bias", {12}},
      {"transformer.h.0.mlp.c_fc.weight", {12, 48}}, {"transformer.h.0.mlp.c_fc.bias", {48}},
      {"transformer.h.0.mlp.c_proj.weight", {48, 12}}, {"transformer.h.0.mlp.c_proj.bias", {12}},
      {"transformer.ln_f.weight", {12}},             {"transformer.ln_f.bias", {12}},
      {"lm_head.weight", {37, 12}}};
  nn::StateDict sd = m.state_dict();
  ASSERT_EQ(sd.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(sd[i].key(), want[i].first);
    EXPECT_EQ(sd[i].value().sizes(), want[i].second) << want[i].first;
  }
  // tied: one tensor, listed once among the parameters (as model.parameters() in PyTorch)
  EXPECT_TRUE(m.lm_head->weight.is_same(m.transformer->wte->weight));
  EXPECT_EQ(m.parameters().size(), want.size() - 1);
}

TEST(GPT2, ParameterCountOfGpt2SmallIs124M) {
  GPT2LMHeadModel m;  // transformers' GPT2Config() defaults: the 124M "gpt2"
  int64_t n = 0;
  for (const Tensor& p : m.parameters()) n += p.numel();
  EXPECT_EQ(n, 124439808);  // GPT2LMHeadModel.from_pretrained("gpt2").num_parameters()
}

// GPT-2's forward from its definition (transformers' modeling_gpt2 eager path), float64.
Tensor reference_logits(const GPT2LMHeadModel& m, const Tensor& ids) {
  nn::StateDict sd = m.state_dict();
  auto P = [&](const std::string& n) { return sd.at(n).to(kFloat64); };
  const GPT2Config& c = m.config;
  const int64_t B = ids.size(0), T = ids.size(1), H = c.n_head, D = c.n_embd / c.n_head;
  auto ln = [&](const Tensor& x, const std::string& n) {
    Tensor mu = x.mean({-1}, true), var = (x - mu).square().mean({-1}, true);
    return (x - mu) / (var + c.layer_norm_epsilon).sqrt() * P(n + ".weight") + P(n + ".bias");
  };
  auto conv1d = [&](const Tensor& x, const std::string& n) { return matmul(x, P(n + ".weight")) + P(n + ".bias"); };
  auto gelu_new = [](const Tensor& x) {
    return 0.5 * x * (1.0 + (std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)).tanh());
  };
  Tensor x = P("transformer.wte.weight").index_select(0, ids.flatten()).view({B, T, c.n_embd}) +
             P("transformer.wpe.weight").narrow(0, 0, T);
  Tensor causal = arange(T).unsqueeze(0) > arange(T).unsqueeze(1);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l);
    Tensor qkv = conv1d(ln(x, p + ".ln_1"), p + ".attn.c_attn");
    auto heads = [&](int64_t i) { return qkv.narrow(2, i * c.n_embd, c.n_embd).view({B, T, H, D}).permute({0, 2, 1, 3}); };
    Tensor w = matmul(heads(0), heads(1).transpose(-1, -2)) / std::sqrt(double(D));
    w = softmax(w.masked_fill(causal, -1e300), -1);
    Tensor a = matmul(w, heads(2)).permute({0, 2, 1, 3}).reshape({B, T, c.n_embd});
    x = x + conv1d(a, p + ".attn.c_proj");
    x = x + conv1d(gelu_new(conv1d(ln(x, p + ".ln_2"), p + ".mlp.c_fc")), p + ".mlp.c_proj");
  }
  return matmul(ln(x, "transformer.ln_f"), P("lm_head.weight").t());
}

TEST(GPT2, ForwardMatchesTheDefinition) {
  manual_seed(1);
  GPT2LMHeadModel m(tiny(2));
  m.eval();
  {  // non-trivial LayerNorm parameters and biases, so a swapped name or orientation shows
    NoGradGuard g;
    for (Tensor p : m.parameters()) p.add_(randn(p.sizes()) * 0.1);
  }
  Tensor ids = randint(0, 37, {2, 9});
  Tensor got = m.forward(ids);
  ASSERT_EQ(got.sizes(), (Shape{2, 9, 37}));
  EXPECT_TRUE(all_close(got.to(kFloat64), reference_logits(m, ids), 1e-4, 1e-4));
}

TEST(GPT2, KVCacheGivesTheFullForwardsLogits) {
  manual_seed(2);
  GPT2LMHeadModel m(tiny(2));
  m.eval();
  NoGradGuard g;
  Tensor ids = randint(0, 37, {2, 11});
  Tensor full = m.forward(ids);
  models::KVCache cache;
  // a prompt of 4, then one token at a time, then a chunk of 3 (the masked-chunk path)
  Tensor a = m.forward(ids.narrow(1, 0, 4), cache);
  EXPECT_TRUE(all_close(a, full.narrow(1, 0, 4), 1e-5, 1e-5));
  for (int64_t t = 4; t < 8; ++t)
    EXPECT_TRUE(all_close(m.forward(ids.narrow(1, t, 1), cache), full.narrow(1, t, 1), 1e-5, 1e-5)) << t;
  EXPECT_TRUE(all_close(m.forward(ids.narrow(1, 8, 3), cache), full.narrow(1, 8, 3), 1e-5, 1e-5));
  EXPECT_EQ(cache.length, 11);
  EXPECT_THROWS_NABLA(m.forward(randint(0, 37, {2, 6}), cache), ValueError, "n_positions");
  cache.reset();
  EXPECT_TRUE(all_close(m.forward_last(ids, &cache), full.select(1, 10), 1e-5, 1e-5));
}

TEST(GPT2, SavePretrainedRoundTripsAndWritesWhatTransformersReads) {
  manual_seed(3);
  GPT2LMHeadModel m(tiny(2));
  m.eval();
  fs::path dir = temp_dir("roundtrip");
  m.save_pretrained(dir.string());
  io::SafetensorsFile f = io::load_safetensors((dir / "model.safetensors").string());
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.tensors.find("lm_head.weight"), nullptr) << "tied weight left out, as transformers does";
  EXPECT_NE(f.tensors.find("transformer.h.1.attn.c_attn.weight"), nullptr);
  json::Value cfg = json::parse([&] {
    std::ifstream in(dir / "config.json");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }());
  EXPECT_EQ(cfg.get("model_type")->s, "gpt2");
  EXPECT_EQ(cfg.get("n_layer")->i, 2);
  auto back = GPT2LMHeadModel::from_pretrained(dir.string());
  back->eval();
  Tensor ids = randint(0, 37, {1, 7});
  EXPECT_TRUE(back->forward(ids).equal(m.forward(ids)));
  EXPECT_TRUE(back->lm_head->weight.is_same(back->transformer->wte->weight));
  fs::remove_all(dir);
}

TEST(GPT2, FromPretrainedTakesTheVariantsHuggingFaceFilesHave) {
  manual_seed(4);
  GPT2LMHeadModel m(tiny(1));
  m.eval();
  fs::path dir = temp_dir("variants");
  m.config.save_json_file((dir / "config.json").string());
  // names without "transformer.", the old attn.bias / masked_bias buffers, float16, no lm_head
  nn::OrderedDict<Tensor> t;
  for (const auto& [name, v] : m.state_dict()) {
    if (name == "lm_head.weight") continue;
    t.insert(name.substr(std::string("transformer.").size()), v.to(kFloat16));
  }
  t.insert("h.0.attn.bias", ones({1, 1, 16, 16}));
  t.insert("h.0.attn.masked_bias", full({}, -1e4));
  io::save_safetensors((dir / "model.safetensors").string(), t, {{"format", "pt"}});
  auto back = GPT2LMHeadModel::from_pretrained(dir.string());
  back->eval();
  Tensor ids = randint(0, 37, {1, 5});
  // float16 weights: the loaded model computes with their float32 values
  GPT2LMHeadModel rounded(tiny(1));
  rounded.eval();
  {
    NoGradGuard g;
    nn::StateDict sd = m.state_dict();
    for (auto& [name, v] : rounded.state_dict()) v.copy_(sd.at(name).to(kFloat16).to(kFloat32));
  }
  EXPECT_TRUE(back->forward(ids).allclose(rounded.forward(ids), 1e-6, 1e-6));

  // errors name the file and what is wrong
  t.insert("h.7.attn.c_attn.weight", zeros({12, 36}));
  io::save_safetensors((dir / "model.safetensors").string(), t, {{"format", "pt"}});
  EXPECT_THROWS_NABLA(GPT2LMHeadModel::from_pretrained(dir.string()), IOError, "h.7.attn.c_attn.weight");
  fs::remove(dir / "model.safetensors");
  EXPECT_THROWS_NABLA(GPT2LMHeadModel::from_pretrained(dir.string()), IOError, "no model.safetensors");
  std::ofstream(dir / "config.json") << "{\"model_type\": \"llama\"}";
  EXPECT_THROWS_NABLA(GPT2LMHeadModel::from_pretrained(dir.string()), IOError, "gpt2");
  EXPECT_THROWS_NABLA(GPT2LMHeadModel::from_pretrained((dir / "nope").string()), IOError, "not a folder");
  fs::remove_all(dir);
}

TEST(GPT2, ConfigReadsTransformersJson) {
  json::Value v = json::parse(
      R"({"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
          "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
          "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
          "n_inner": null, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": null,
          "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}}, "vocab_size": 50257})");
  GPT2Config c = GPT2Config::from_json(v);
  EXPECT_EQ(c.n_layer, 12);
  EXPECT_EQ(c.inner(), 3072);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  GPT2Config back = GPT2Config::from_json(c.to_json());
  EXPECT_EQ(back.n_positions, 1024);
  EXPECT_EQ(back.activation_function, "gelu_new");
  json::Value bad = json::parse(R"({"n_embd": 10, "n_head": 3})");
  EXPECT_THROWS_NABLA(GPT2Config::from_json(bad), ValueError, "divisible");
}

TEST(GPT2, CheckpointedBlocksGiveTheSameGradients) {
  manual_seed(5);
  GPT2Config c = tiny(3);
  c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = 0.1;  // dropout: the rerun must draw the same masks
  GPT2LMHeadModel m(c);
  Tensor ids = randint(0, 37, {2, 10});
  auto grads = [&] {
    m.zero_grad();
    manual_seed(9);
    Tensor logits = m.forward(ids);
    cross_entropy(logits.view({-1, 37}), ids.flatten()).backward();
    std::vector<Tensor> g;
    for (const Tensor& p : m.parameters()) g.push_back(p.grad().clone());
    return g;
  };
  std::vector<Tensor> plain = grads();
  m.gradient_checkpointing_enable();
  std::vector<Tensor> ck = grads();
  ASSERT_EQ(plain.size(), ck.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(ck[i].equal(plain[i])) << i;
}

TEST(GPT2, LearnsASequence) {
  manual_seed(6);
  GPT2LMHeadModel m(tiny(2));
  optim::AdamW opt(m.parameters(), optim::AdamWOptions(1e-2));
  Tensor ids = randint(0, 37, {4, 16});
  Tensor x = ids.narrow(1, 0, 15), y = ids.narrow(1, 1, 15);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    Tensor loss = cross_entropy(m.forward(x).reshape({-1, 37}), y.reshape({-1}));
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_GT(first, 3.0);  // ~ln 37 at the start
  EXPECT_LT(last, 0.5);
}

// tests/gpt2/run.sh (ctest gpt2_hf_numpy): $NABLA_GPT2_NUMPY_DIR/hf is a random GPT-2 that numpy
// wrote as transformers does, with numpy's float64 logits; nabla loads it and must agree, then
// writes $NABLA_GPT2_NUMPY_DIR/nabla (save_pretrained + its logits) for numpy to read back.
TEST(GPT2Numpy, LoadsAHuggingFaceFolderNumpyWroteAndWritesOneBack) {
  const char* env = std::getenv("NABLA_GPT2_NUMPY_DIR");
  if (!env) GTEST_SKIP() << "run by ctest gpt2_hf_numpy (tests/gpt2/run.sh), which sets NABLA_GPT2_NUMPY_DIR";
  const fs::path dir(env);
  auto m = GPT2LMHeadModel::from_pretrained((dir / "hf").string());
  m->eval();
  io::SafetensorsFile ref = io::load_safetensors((dir / "hf" / "ref.safetensors").string());
  const Tensor ids = ref.tensors.at("ids"), want = ref.tensors.at("logits");
  const Tensor got = m->forward(ids).detach();
  ASSERT_EQ(got.sizes(), want.sizes());
  const double rel = (got.to(kFloat64) - want).abs().max().item<double>() / want.abs().max().item<double>();
  std::printf("nabla (float32) vs numpy (float64) logits on the numpy-written folder: max rel %.2e\n", rel);
  EXPECT_LT(rel, 1e-5);

  m->save_pretrained((dir / "nabla").string());
  auto back = GPT2LMHeadModel::from_pretrained((dir / "nabla").string());
  back->eval();
  EXPECT_TRUE(back->forward(ids).equal(got)) << "save_pretrained -> from_pretrained is bit-exact";
  for (const auto& [name, t] : m->state_dict()) EXPECT_TRUE(back->state_dict().at(name).equal(t)) << name;
  nn::OrderedDict<Tensor> io;
  io.insert("ids", ids);
  io.insert("logits", got);
  io::save_safetensors((dir / "nabla" / "io.safetensors").string(), io);
}

}  // namespace
}  // namespace nabla_test
