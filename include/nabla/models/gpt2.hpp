#pragma once
// GPT-2 (Radford et al. 2019) with Hugging Face's layout, so a Hugging Face folder (config.json +
// model.safetensors) loads unchanged and save_pretrained writes one transformers loads:
//
//   auto model = nabla::models::GPT2LMHeadModel::from_pretrained("gpt2");   // a local folder
//   Tensor logits = model->forward(input_ids);                             // [B, T] -> [B, T, V]
//
// Parameter names are transformers' GPT2LMHeadModel state_dict names (transformer.wte.weight,
// transformer.h.0.ln_1.weight, transformer.h.0.attn.c_attn.weight, ..., transformer.ln_f.bias,
// lm_head.weight); its Conv1D layers keep their weight as [in, out] as transformers stores it;
// lm_head.weight is the same tensor as transformer.wte.weight (tied). Pre-LN blocks, GELU with
// the config's activation_function ("gelu_new": the tanh approximation), LayerNorm eps from the
// config, embedding / attention / residual dropout, initialisation as transformers'
// GPT2PreTrainedModel._init_weights (N(0, 0.02), c_proj weights N(0, 0.02 / sqrt(2 n_layer))).
// Attention runs through scaled_dot_product_attention (the fused CPU kernel when there is no
// attention dropout). A KVCache makes generation cost one token's work per step.

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../autograd/checkpoint.hpp"
#include "../io/checkpoint.hpp"
#include "../io/json.hpp"
#include "../io/safetensors.hpp"
#include "../nn/init.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "../ops/attention.hpp"

namespace nabla {
namespace models {

namespace detail {
// A JSON file of a Hugging Face folder, parsed; IOError naming the file when it cannot be opened
// or parsed.
inline json::Value read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  NABLA_CHECK(f.good(), IOError, path, ": cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::ParseError& e) {
    throw IOError(path + ": " + e.what());
  }
}
}  // namespace detail

// transformers' GPT2Config: the fields GPT-2 uses, with its defaults (the 124M "gpt2").
struct GPT2Config {
  int64_t vocab_size = 50257;
  int64_t n_positions = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  std::optional<int64_t> n_inner;  // the MLP width; 4 * n_embd when unset
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1, embd_pdrop = 0.1, attn_pdrop = 0.1;
  double layer_norm_epsilon = 1e-5;
  double initializer_range = 0.02;
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool tie_word_embeddings = true;
  int64_t bos_token_id = 50256, eos_token_id = 50256;

  int64_t inner() const { return n_inner ? *n_inner : 4 * n_embd; }

  // Reads a transformers config.json (unknown keys are ignored; "n_ctx" is read as n_positions
  // when n_positions is absent, as old GPT-2 configs have it).
  static GPT2Config from_json(const json::Value& v, const std::string& where = "config.json") {
    NABLA_CHECK(v.is_object(), IOError, where, ": expected a JSON object");
    GPT2Config c;
    auto get_int = [&](const char* key, int64_t& out) {
      if (const json::Value* x = v.get(key)) {
        NABLA_CHECK(x->is_int(), IOError, where, ": \"", key, "\" must be an integer");
        out = x->i;
      }
    };
    auto get_num = [&](const char* key, double& out) {
      if (const json::Value* x = v.get(key)) {
        NABLA_CHECK(x->kind == json::Value::Kind::Int || x->kind == json::Value::Kind::Number, IOError, where, ": \"", key,
                    "\" must be a number");
        out = x->kind == json::Value::Kind::Int ? static_cast<double>(x->i) : x->d;
      }
    };
    auto get_bool = [&](const char* key, bool& out) {
      if (const json::Value* x = v.get(key)) {
        NABLA_CHECK(x->kind == json::Value::Kind::Bool, IOError, where, ": \"", key, "\" must be true or false");
        out = x->b;
      }
    };
    if (const json::Value* mt = v.get("model_type"))
      NABLA_CHECK(mt->is_string() && mt->s == "gpt2", IOError, where, ": model_type is \"", mt->is_string() ? mt->s : "?",
                  "\", expected \"gpt2\"");
    get_int("vocab_size", c.vocab_size);
    if (!v.get("n_positions")) get_int("n_ctx", c.n_positions);
    get_int("n_positions", c.n_positions);
    get_int("n_embd", c.n_embd);
    get_int("n_layer", c.n_layer);
    get_int("n_head", c.n_head);
    if (const json::Value* x = v.get("n_inner"); x && x->kind != json::Value::Kind::Null) {
      int64_t n = 0;
      get_int("n_inner", n);
      c.n_inner = n;
    }
    if (const json::Value* x = v.get("activation_function")) {
      NABLA_CHECK(x->is_string(), IOError, where, ": \"activation_function\" must be a string");
      c.activation_function = x->s;
    }
    get_num("resid_pdrop", c.resid_pdrop);
    get_num("embd_pdrop", c.embd_pdrop);
    get_num("attn_pdrop", c.attn_pdrop);
    get_num("layer_norm_epsilon", c.layer_norm_epsilon);
    get_num("initializer_range", c.initializer_range);
    get_bool("scale_attn_weights", c.scale_attn_weights);
    get_bool("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
    get_bool("tie_word_embeddings", c.tie_word_embeddings);
    get_int("bos_token_id", c.bos_token_id);
    get_int("eos_token_id", c.eos_token_id);
    if (const json::Value* x = v.get("reorder_and_upcast_attn"))
      NABLA_CHECK(x->kind != json::Value::Kind::Bool || !x->b, IOError, where,
                  ": reorder_and_upcast_attn = true is not supported (nabla computes attention in the input dtype)");
    c.validate(where);
    return c;
  }
  static GPT2Config from_json_file(const std::string& path) {
    return from_json(detail::read_json_file(path), path);
  }

  // transformers' config.json for this configuration (what save_pretrained writes).
  json::Value to_json() const {
    using json::Value;
    json::Object o;
    o.reserve(19);
    o.emplace_back("activation_function", Value::string(activation_function));
    o.emplace_back("architectures", Value::array({Value::string("GPT2LMHeadModel")}));
    o.emplace_back("attn_pdrop", Value::number(attn_pdrop));
    o.emplace_back("bos_token_id", Value::integer(bos_token_id));
    o.emplace_back("embd_pdrop", Value::number(embd_pdrop));
    o.emplace_back("eos_token_id", Value::integer(eos_token_id));
    o.emplace_back("initializer_range", Value::number(initializer_range));
    o.emplace_back("layer_norm_epsilon", Value::number(layer_norm_epsilon));
    o.emplace_back("model_type", Value::string("gpt2"));
    o.emplace_back("n_embd", Value::integer(n_embd));
    o.emplace_back("n_head", Value::integer(n_head));
    o.emplace_back("n_inner", n_inner ? Value::integer(*n_inner) : Value());
    o.emplace_back("n_layer", Value::integer(n_layer));
    o.emplace_back("n_positions", Value::integer(n_positions));
    o.emplace_back("resid_pdrop", Value::number(resid_pdrop));
    o.emplace_back("scale_attn_by_inverse_layer_idx", Value::boolean(scale_attn_by_inverse_layer_idx));
    o.emplace_back("scale_attn_weights", Value::boolean(scale_attn_weights));
    o.emplace_back("tie_word_embeddings", Value::boolean(tie_word_embeddings));
    o.emplace_back("vocab_size", Value::integer(vocab_size));
    return Value::object(std::move(o));
  }
  void save_json_file(const std::string& path) const {
    const std::string text = json::dump(to_json()) + "\n";
    io::detail::atomic_write(path, [&](auto&& write) { write(text.data(), text.size()); });
  }

  void validate(const std::string& where = "GPT2Config") const {
    NABLA_CHECK(vocab_size > 0 && n_positions > 0 && n_embd > 0 && n_layer >= 0 && n_head > 0 && inner() > 0,
                ValueError, where, ": sizes must be positive (vocab_size ", vocab_size, ", n_positions ", n_positions,
                ", n_embd ", n_embd, ", n_layer ", n_layer, ", n_head ", n_head, ", n_inner ", inner(), ")");
    NABLA_CHECK(n_embd % n_head == 0, ValueError, where, ": n_embd (", n_embd, ") must be divisible by n_head (", n_head,
                ")");
    for (double p : {resid_pdrop, embd_pdrop, attn_pdrop})
      NABLA_CHECK(p >= 0 && p <= 1, ValueError, where, ": dropout probabilities must be in [0, 1], got ", p);
    NABLA_CHECK(activation_function == "gelu_new" || activation_function == "gelu_pytorch_tanh" ||
                    activation_function == "gelu_fast" || activation_function == "gelu" ||
                    activation_function == "relu" || activation_function == "silu" || activation_function == "swish",
                ValueError, where, ": activation_function \"", activation_function, "\" is not supported");
  }
};

// transformers' Conv1D: y = x W + b with W stored [in, out] (the transposed nn.Linear layout).
class Conv1D : public nn::Module {
 public:
  Tensor weight, bias;
  int64_t nx = 0, nf = 0;
  Conv1D(int64_t nf_, int64_t nx_) : nx(nx_), nf(nf_) {  // transformers' argument order: (nf, nx)
    weight = register_parameter("weight", empty({nx, nf}));
    bias = register_parameter("bias", empty({nf}));
    bind_slot("weight", weight);
    bind_slot("bias", bias);
    {
      NoGradGuard g;
      nn::init::normal_(weight, 0.0, 0.02);
      nn::init::zeros_(bias);
    }
  }
  Tensor forward(const Tensor& x) override {
    run_forward_pre_hooks();
    if (auto y = intercepted(x)) return *y;  // an int8 version (quantization::quantize_dynamic)
    return nn::functional::linear(x, weight.t(), bias);
  }
  std::string type_name() const override { return "Conv1D"; }
  std::string extra_repr() const override { return nabla::detail::cat("nf=", nf, ", nx=", nx); }
};

// Keys and values of the tokens seen so far, per layer: [B, n_head, capacity, head_dim], filled
// up to `length`. Used under no-grad (generation); forward appends the new tokens' keys/values.
struct KVCache {
  std::vector<Tensor> key, value;
  int64_t length = 0;
  int64_t capacity() const { return key.empty() ? 0 : key[0].size(2); }
  void reset() { length = 0; }
};

namespace detail {
inline Tensor gpt2_activation(const Tensor& x, const std::string& name) {
  if (name == "gelu") return gelu(x);
  if (name == "relu") return relu(x);
  if (name == "silu" || name == "swish") return silu(x);
  return gelu(x, "tanh");  // gelu_new, gelu_pytorch_tanh, gelu_fast
}
}  // namespace detail

class GPT2Attention : public nn::Module {
 public:
  std::shared_ptr<Conv1D> c_attn, c_proj;
  std::shared_ptr<nn::Dropout> attn_dropout, resid_dropout;
  int64_t n_embd, n_head, head_dim, layer_idx;
  double scale;

  GPT2Attention(const GPT2Config& c, int64_t layer)
      : n_embd(c.n_embd), n_head(c.n_head), head_dim(c.n_embd / c.n_head), layer_idx(layer) {
    c_attn = register_module("c_attn", std::make_shared<Conv1D>(3 * c.n_embd, c.n_embd));
    c_proj = register_module("c_proj", std::make_shared<Conv1D>(c.n_embd, c.n_embd));
    attn_dropout = register_module("attn_dropout", std::make_shared<nn::Dropout>(c.attn_pdrop));
    resid_dropout = register_module("resid_dropout", std::make_shared<nn::Dropout>(c.resid_pdrop));
    scale = c.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(head_dim)) : 1.0;
    if (c.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(layer + 1);
  }

  Tensor forward(const Tensor& x) override { return forward(x, nullptr); }
  // x [B, T, C]; with a cache, attends to the cached tokens too and appends this step's.
  Tensor forward(const Tensor& x, KVCache* cache) {
    const int64_t B = x.size(0), T = x.size(1);
    std::vector<Tensor> qkv = c_attn->forward(x).split(n_embd, 2);
    auto heads = [&](const Tensor& t) { return t.view({B, T, n_head, head_dim}).transpose(1, 2); };
    Tensor q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
    const double p = is_training() ? attn_dropout->p : 0.0;
    Tensor y;
    if (!cache) {
      y = scaled_dot_product_attention(q, k, v, {}, p, true, scale);
    } else {
      NABLA_CHECK(!GradMode::is_enabled(), ValueError,
                  "GPT2Attention: a KVCache is for generation; run it under NoGradGuard");
      const int64_t past = cache->length;
      Tensor& kc = cache->key[static_cast<size_t>(layer_idx)];
      Tensor& vc = cache->value[static_cast<size_t>(layer_idx)];
      NABLA_CHECK(past + T <= kc.size(2), ValueError, "GPT2Attention: the KV cache holds ", kc.size(2),
                  " positions; ", past, " used + ", T, " new exceed it");
      kc.narrow(2, past, T).copy_(k);
      vc.narrow(2, past, T).copy_(v);
      Tensor ka = kc.narrow(2, 0, past + T), va = vc.narrow(2, 0, past + T);
      if (past == 0) y = scaled_dot_product_attention(q, ka, va, {}, 0.0, true, scale);
      else if (T == 1) y = scaled_dot_product_attention(q, ka, va, {}, 0.0, false, scale);
      else {  // new query i (absolute past + i) sees keys j <= past + i
        Tensor keep = arange(past + T, TensorOptions(kInt64).device(x.device())).unsqueeze(0) <=
                      (arange(T, TensorOptions(kInt64).device(x.device())) + past).unsqueeze(1);
        y = scaled_dot_product_attention(q, ka, va, keep, 0.0, false, scale);
      }
    }
    y = y.transpose(1, 2).contiguous().view({B, T, n_embd});
    return resid_dropout->forward(c_proj->forward(y));
  }
  std::string type_name() const override { return "GPT2Attention"; }
};

class GPT2MLP : public nn::Module {
 public:
  std::shared_ptr<Conv1D> c_fc, c_proj;
  std::shared_ptr<nn::Dropout> dropout;
  std::string act;
  explicit GPT2MLP(const GPT2Config& c) : act(c.activation_function) {
    c_fc = register_module("c_fc", std::make_shared<Conv1D>(c.inner(), c.n_embd));
    c_proj = register_module("c_proj", std::make_shared<Conv1D>(c.n_embd, c.inner()));
    dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.resid_pdrop));
  }
  Tensor forward(const Tensor& x) override {
    return dropout->forward(c_proj->forward(detail::gpt2_activation(c_fc->forward(x), act)));
  }
  std::string type_name() const override { return "GPT2MLP"; }
};

class GPT2Block : public nn::Module {
 public:
  std::shared_ptr<nn::LayerNorm> ln_1, ln_2;
  std::shared_ptr<GPT2Attention> attn;
  std::shared_ptr<GPT2MLP> mlp;
  GPT2Block(const GPT2Config& c, int64_t layer) {
    ln_1 = register_module("ln_1", std::make_shared<nn::LayerNorm>(c.n_embd, c.layer_norm_epsilon));
    attn = register_module("attn", std::make_shared<GPT2Attention>(c, layer));
    ln_2 = register_module("ln_2", std::make_shared<nn::LayerNorm>(c.n_embd, c.layer_norm_epsilon));
    mlp = register_module("mlp", std::make_shared<GPT2MLP>(c));
  }
  Tensor forward(const Tensor& x, KVCache* cache) {
    Tensor h = x + attn->forward(ln_1->forward(x), cache);
    return h + mlp->forward(ln_2->forward(h));
  }
  Tensor forward(const Tensor& x) override {
    if (gradient_checkpointing() && GradMode::is_enabled())
      return checkpoint([this](const std::vector<Tensor>& in) { return forward(in[0], nullptr); }, {x});
    return forward(x, nullptr);
  }
  std::string type_name() const override { return "GPT2Block"; }
};

class GPT2Model : public nn::Module {
 public:
  GPT2Config config;
  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::ModuleList> h;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::vector<std::shared_ptr<GPT2Block>> blocks;

  explicit GPT2Model(const GPT2Config& c) : config(c) {
    c.validate();
    wte = register_module("wte", std::make_shared<nn::Embedding>(c.vocab_size, c.n_embd));
    wpe = register_module("wpe", std::make_shared<nn::Embedding>(c.n_positions, c.n_embd));
    drop = register_module("drop", std::make_shared<nn::Dropout>(c.embd_pdrop));
    h = register_module("h", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < c.n_layer; ++i) {
      blocks.push_back(std::make_shared<GPT2Block>(c, i));
      h->push_back(blocks.back());
    }
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(c.n_embd, c.layer_norm_epsilon));
  }

  // input_ids [B, T] (int64) -> hidden states [B, T, n_embd]; positions start at the cache's
  // length (0 without a cache).
  Tensor forward(const Tensor& input_ids, KVCache* cache) {
    nabla::detail::check_defined(input_ids, "GPT2Model");
    NABLA_CHECK(input_ids.dim() == 2 && (input_ids.dtype() == kInt64 || input_ids.dtype() == kInt32), ShapeError,
                "GPT2Model: expected input_ids [batch, tokens] of int64, got ", nabla::detail::describe(input_ids));
    const int64_t T = input_ids.size(1), past = cache ? cache->length : 0;
    NABLA_CHECK(T > 0 && past + T <= config.n_positions, ValueError, "GPT2Model: ", past, " cached + ", T,
                " new tokens; the model has ", config.n_positions, " positions (n_positions)");
    if (cache) ensure_cache(*cache, input_ids.size(0), wte->weight);
    Tensor pos = arange(past, past + T, 1, TensorOptions(kInt64).device(input_ids.device()));
    Tensor x = drop->forward(wte->forward(input_ids) + wpe->forward(pos).unsqueeze(0));
    for (auto& b : blocks) x = cache ? b->forward(x, cache) : b->forward(x);
    if (cache) cache->length += T;
    return ln_f->forward(x);
  }
  Tensor forward(const Tensor& input_ids) override { return forward(input_ids, nullptr); }

  // A cache for `batch` sequences of up to n_positions tokens (allocated on first use).
  void ensure_cache(KVCache& cache, int64_t batch, const Tensor& like) const {
    const int64_t hd = config.n_embd / config.n_head;
    if (!cache.key.empty() && cache.key[0].size(0) == batch && cache.key[0].device() == like.device() &&
        cache.key[0].dtype() == like.dtype() && static_cast<int64_t>(cache.key.size()) == config.n_layer)
      return;
    NABLA_CHECK(cache.length == 0, ValueError, "GPT2Model: the KV cache holds ", cache.length,
                " tokens of another batch size, device or dtype; reset() it first");
    cache.key.clear();
    cache.value.clear();
    for (int64_t i = 0; i < config.n_layer; ++i) {
      cache.key.push_back(zeros({batch, config.n_head, config.n_positions, hd}, like.options().requires_grad(false)));
      cache.value.push_back(zeros({batch, config.n_head, config.n_positions, hd}, like.options().requires_grad(false)));
    }
  }
  std::string type_name() const override { return "GPT2Model"; }
};

// lm_head: logits = h wte^T, its weight the embedding's own tensor when the config ties them.
class GPT2LMHead : public nn::Module {
 public:
  Tensor weight;
  explicit GPT2LMHead(Tensor w) { weight = register_parameter("weight", std::move(w)); }
  Tensor forward(const Tensor& x) override { return nn::functional::linear(x, weight); }
  std::string type_name() const override { return "Linear"; }
};

class GPT2LMHeadModel : public nn::Module {
 public:
  GPT2Config config;
  std::shared_ptr<GPT2Model> transformer;
  std::shared_ptr<GPT2LMHead> lm_head;

  explicit GPT2LMHeadModel(const GPT2Config& c = {}) : config(c) {
    transformer = register_module("transformer", std::make_shared<GPT2Model>(c));
    Tensor head = c.tie_word_embeddings ? transformer->wte->weight : empty({c.vocab_size, c.n_embd});
    lm_head = register_module("lm_head", std::make_shared<GPT2LMHead>(head));
    init_weights();
  }

  // transformers' _init_weights + the GPT-2 paper's scaled residual projections.
  void init_weights() {
    NoGradGuard g;
    const double std = config.initializer_range;
    for (const auto& [name, p] : named_parameters()) {
      const bool is_ln = name.find(".ln_") != std::string::npos;
      if (is_ln) nn::init::constant_(p, name.size() >= 6 && name.substr(name.size() - 6) == "weight" ? 1.0 : 0.0);
      else if (name.size() >= 4 && name.substr(name.size() - 4) == "bias") nn::init::zeros_(p);
      else if (name.size() >= 13 && name.substr(name.size() - 13) == "c_proj.weight")
        nn::init::normal_(p, 0.0, std / std::sqrt(2.0 * static_cast<double>(config.n_layer)));
      else nn::init::normal_(p, 0.0, std);
    }
  }

  // input_ids [B, T] -> logits [B, T, vocab_size].
  Tensor forward(const Tensor& input_ids) override { return lm_head->forward(transformer->forward(input_ids, nullptr)); }
  Tensor forward(const Tensor& input_ids, KVCache& cache) { return lm_head->forward(transformer->forward(input_ids, &cache)); }
  // Logits of the last position only ([B, vocab_size]): what generation needs, without the
  // [B, T, V] product for the prompt.
  Tensor forward_last(const Tensor& input_ids, KVCache* cache = nullptr) {
    Tensor h = transformer->forward(input_ids, cache);
    return lm_head->forward(h.select(1, h.size(1) - 1));
  }

  // Each block's activations recomputed in backward (nabla::checkpoint) instead of kept.
  void gradient_checkpointing_enable(bool on = true) {
    for (auto& b : transformer->blocks) b->gradient_checkpointing(on);
  }

  // Loads a Hugging Face GPT-2 folder: config.json and model.safetensors (or a sharded
  // model.safetensors.index.json). Tensor names may carry the "transformer." prefix or not;
  // attn.bias / attn.masked_bias buffers are ignored; a missing lm_head.weight is the tied
  // embedding; float16 / bfloat16 / float32 files are converted to float32.
  static std::shared_ptr<GPT2LMHeadModel> from_pretrained(const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path root(dir);
    NABLA_CHECK(fs::is_directory(root), IOError, dir, ": not a folder (expected config.json and model.safetensors)");
    GPT2Config cfg = GPT2Config::from_json_file((root / "config.json").string());
    std::vector<std::string> files;
    if (fs::exists(root / "model.safetensors")) files.push_back((root / "model.safetensors").string());
    else if (fs::exists(root / "model.safetensors.index.json")) files = shards(root / "model.safetensors.index.json");
    else {
      const bool bin = fs::exists(root / "pytorch_model.bin");
      throw IOError(dir + ": no model.safetensors" +
                    (bin ? std::string(" (pytorch_model.bin is a Python pickle, which nabla does not read: convert it "
                                       "with safetensors.torch.save_file(torch.load(...), \"model.safetensors\"))")
                         : std::string()));
    }
    auto model = std::make_shared<GPT2LMHeadModel>(cfg);
    nn::StateDict own = model->state_dict(), incoming;
    for (const std::string& file : files) {
      io::SafetensorsFile f = io::load_safetensors(file);
      for (const auto& [raw, t] : f.tensors) {
        std::string name = raw;
        if (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias")) continue;
        if (name.rfind("transformer.", 0) != 0 && name.rfind("lm_head.", 0) != 0) name = "transformer." + name;
        NABLA_CHECK(own.contains(name), IOError, file, ": tensor \"", raw, "\" is not a GPT-2 parameter (",
                    "config: n_layer ", cfg.n_layer, ")");
        NABLA_CHECK(t.is_floating_point(), IOError, file, ": tensor \"", raw, "\" is ", t.dtype(),
                    ", expected float32, float16 or bfloat16");
        incoming.insert(name, t);
      }
    }
    std::vector<std::string> missing;
    for (const auto& [name, t] : own)
      if (!incoming.contains(name) && !(name == "lm_head.weight" && cfg.tie_word_embeddings)) missing.push_back(name);
    NABLA_CHECK(missing.empty(), IOError, dir, ": missing ", missing.size(), " parameter(s), e.g. \"", missing.empty() ? "" : missing[0],
                "\"");
    if (!incoming.contains("lm_head.weight") && cfg.tie_word_embeddings)
      incoming.insert("lm_head.weight", incoming.at("transformer.wte.weight"));
    if (cfg.tie_word_embeddings && incoming.contains("lm_head.weight")) {
      // tied: both names are one tensor here; the file's copies must agree
      const Tensor& a = incoming.at("lm_head.weight");
      const Tensor& b = incoming.at("transformer.wte.weight");
      NABLA_CHECK(a.sizes() == b.sizes() && a.to(kFloat32).equal(b.to(kFloat32)), IOError, dir,
                  ": lm_head.weight differs from transformer.wte.weight but the config ties them");
    }
    model->load_state_dict(incoming, /*strict=*/true);
    return model;
  }

  // Writes config.json and model.safetensors (float32 or the model's dtype, names with the
  // "transformer." prefix, the tied lm_head.weight left out as transformers does, metadata
  // format=pt), each atomically. Creates the folder.
  void save_pretrained(const std::string& dir) const {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    NABLA_CHECK(fs::is_directory(dir), IOError, dir, ": cannot create the folder: ", ec.message());
    nn::OrderedDict<Tensor> tensors;
    for (const auto& [name, t] : state_dict()) {
      if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
      tensors.insert(name, t.detach().to(Device::cpu()).contiguous());
    }
    io::save_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
    config.save_json_file((fs::path(dir) / "config.json").string());
  }

  std::string type_name() const override { return "GPT2LMHeadModel"; }

 private:
  static bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  static std::vector<std::string> shards(const std::filesystem::path& index) {
    const json::Value v = detail::read_json_file(index.string());
    const json::Value* map = v.get("weight_map");
    NABLA_CHECK(map && map->is_object(), IOError, index.string(), ": no \"weight_map\" object");
    std::vector<std::string> out;
    for (const auto& [name, file] : *map->obj) {
      NABLA_CHECK(file.is_string() && file.s.find('/') == std::string::npos && file.s.find("..") == std::string::npos,
                  IOError, index.string(), ": bad shard name for \"", name, "\"");
      const std::string p = (index.parent_path() / file.s).string();
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
    return out;
  }
};

}  // namespace models
}  // namespace nabla
