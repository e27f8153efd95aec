// gpt: trains, fine-tunes and samples GPT-2 models (nabla::models::GPT2LMHeadModel) in C++.
//   gpt train    [--data FILE] [--tokenizer char|DIR] [--out DIR] [model and training flags]
//   gpt finetune --from DIR --data FILE [--out DIR] [training flags]
//   gpt sample   --from DIR [--prompt TEXT] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
// A run folder (--out) is a Hugging Face folder: config.json + model.safetensors (save_pretrained)
// + the tokenizer (vocab.json + merges.txt, or chars.json for a character-level model), plus
// checkpoint.safetensors (model, optimizer, step) that --resume continues from exactly. So
// `--from` takes a run folder or a Hugging Face GPT-2 folder alike. See docs/gpt.md.

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <nabla/models/gpt2.hpp>
#include <nabla/nabla.hpp>
#include <nabla/text/gpt2_tokenizer.hpp>

#include "../common/example_cli.hpp"

namespace nb = nabla;
namespace fs = std::filesystem;
using nabla_example::Progress;

namespace {

const char* kUsage = R"(usage: gpt train    [options]          a GPT-2 from scratch (tiny Shakespeare, characters, by default)
       gpt finetune --from DIR [options]  continue training a Hugging Face GPT-2 folder or a run folder
       gpt sample   --from DIR [options]  generate text (KV cache)

common:
  --device {auto,cpu,cuda}  (default auto: cuda if a GPU is usable)
  --threads N               CPU threads (default: all cores)
  --seed N                  initialisation, batches, dropout and sampling (default 1)
train / finetune:
  --data FILE               training text; the last 10% is the validation split
                            (default: $NABLA_DATA/tinyshakespeare/input.txt)
  --out DIR                 run folder: config.json, model.safetensors, tokenizer, checkpoint.safetensors,
                            metrics.csv (default gpt_run)
  --tokenizer {char,DIR}    train only: characters of the data (default), or a GPT-2 BPE from
                            DIR/vocab.json + DIR/merges.txt
  --n-layer N --n-head N --n-embd N --block-size N --dropout P
                            train only: model shape (default 4, 4, 128, 64, 0.0: a CPU-sized model)
  --batch-size N            sequences per step (default 12)
  --max-steps N             training steps (default 5000)
  --lr X --min-lr X         peak and final learning rate (default 1e-3, 1e-4); linear warm-up, cosine decay
  --warmup N                warm-up steps (default 100)
  --weight-decay X          AdamW's, on matrices only (default 0.1)
  --grad-clip X             clip the gradient norm (default 1.0; 0: off)
  --eval-interval N         evaluate, log and checkpoint every N steps (default 500)
  --eval-iters N            batches per loss estimate (default 20)
  --resume                  continue from --out's checkpoint.safetensors
  --stop-after N            stop after step N as if killed, without a checkpoint (tests --resume)
  --amp {none,bf16,f16}     autocast (f16 adds a GradScaler, kept in the checkpoint)
  --checkpointing           gradient checkpointing per transformer block
  --sample-tokens N         print an N-token sample at the end (default 200; 0: none)
  --no-progress             plain progress lines even on a terminal
sample:
  --prompt TEXT             (default: a newline for character models, <|endoftext|> for BPE)
  --max-new-tokens N        (default 200)
  --temperature T           (default 0.8; 0: greedy)
  --top-k K                 keep the K most likely tokens (default 200; 0: all)
  --top-p P                 nucleus: the smallest set whose probability reaches P (default 1.0: off)
  --num-samples N           (default 1)
)";

struct Args {
  std::string mode, data, out = "gpt_run", from, tokenizer = "char", device = "auto", amp = "none",
                    prompt;
  bool prompt_set = false, resume = false, checkpointing = false, progress = true;
  int64_t n_layer = 4, n_head = 4, n_embd = 128, block_size = 64, batch_size = 12, max_steps = 5000, warmup = 100,
          eval_interval = 500, eval_iters = 20, stop_after = 0, sample_tokens = 200, max_new_tokens = 200, top_k = 200,
          num_samples = 1, seed = 1, threads = 0;
  double dropout = 0.0, lr = 1e-3, min_lr = 1e-4, weight_decay = 0.1, grad_clip = 1.0, temperature = 0.8, top_p = 1.0;
};

Args parse(int argc, char** argv) {
  nabla_example::Options o("gpt", argc, argv);
  Args a;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf("%s", kUsage);
    std::exit(argc < 2 ? 2 : 0);
  }
  a.mode = argv[1];
  if (a.mode != "train" && a.mode != "finetune" && a.mode != "sample") o.error("unknown command \"" + a.mode + "\"");
  o.next();  // past the command
  while (o.next()) {
    const std::string f = o.flag();
    if (f == "--help") {
      std::printf("%s", kUsage);
      std::exit(0);
    } else if (f == "--data") a.data = o.value();
    else if (f == "--out") a.out = o.value();
    else if (f == "--from") a.from = o.value();
    else if (f == "--tokenizer") a.tokenizer = o.value();
    else if (f == "--device") a.device = o.choice({"auto", "cpu", "cuda"});
    else if (f == "--amp") a.amp = o.choice({"none", "bf16", "f16"});
    else if (f == "--prompt") a.prompt = o.value(), a.prompt_set = true;
    else if (f == "--resume") a.resume = true;
    else if (f == "--checkpointing") a.checkpointing = true;
    else if (f == "--no-progress") a.progress = false;
    else if (f == "--n-layer") a.n_layer = o.integer(1);
    else if (f == "--n-head") a.n_head = o.integer(1);
    else if (f == "--n-embd") a.n_embd = o.integer(1);
    else if (f == "--block-size") a.block_size = o.integer(2);
    else if (f == "--batch-size") a.batch_size = o.integer(1);
    else if (f == "--max-steps") a.max_steps = o.integer(1);
    else if (f == "--warmup") a.warmup = o.integer(0);
    else if (f == "--eval-interval") a.eval_interval = o.integer(1);
    else if (f == "--eval-iters") a.eval_iters = o.integer(1);
    else if (f == "--stop-after") a.stop_after = o.integer(1);
    else if (f == "--sample-tokens") a.sample_tokens = o.integer(0);
    else if (f == "--max-new-tokens") a.max_new_tokens = o.integer(1);
    else if (f == "--top-k") a.top_k = o.integer(0);
    else if (f == "--num-samples") a.num_samples = o.integer(1);
    else if (f == "--seed") a.seed = o.integer(0);
    else if (f == "--threads") a.threads = o.integer(1);
    else if (f == "--dropout") a.dropout = o.real(0.0, true);
    else if (f == "--lr") a.lr = o.real();
    else if (f == "--min-lr") a.min_lr = o.real(0.0, true);
    else if (f == "--weight-decay") a.weight_decay = o.real(0.0, true);
    else if (f == "--grad-clip") a.grad_clip = o.real(0.0, true);
    else if (f == "--temperature") a.temperature = o.real(0.0, true);
    else if (f == "--top-p") a.top_p = o.real();
    else o.error("unknown option \"" + f + "\"");
  }
  if (a.dropout >= 1) o.error("--dropout must be below 1");
  if (a.top_p > 1) o.error("--top-p must be in (0, 1]");
  if (a.n_embd % a.n_head != 0) o.error("--n-embd must be a multiple of --n-head");
  if ((a.mode == "finetune" || a.mode == "sample") && a.from.empty()) o.error(a.mode + " needs --from DIR");
  if (a.mode == "train" && !a.from.empty()) o.error("train starts from scratch; use finetune --from DIR");
  return a;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  NABLA_CHECK(f.good(), nb::IOError, "gpt: cannot open ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---- tokenizers: characters (UTF-8 code points) or GPT-2's byte-level BPE ---------------------

class Tokenizer {
 public:
  // Characters of `text`, sorted by their UTF-8 bytes.
  static Tokenizer chars_of(const std::string& text) {
    Tokenizer t;
    std::vector<std::string> all;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::max<size_t>(1, nb::json::utf8_sequence(text, i));
      all.push_back(text.substr(i, n));
      i += n;
    }
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    t.chars_ = std::move(all);
    return t;
  }
  // A run folder's chars.json, or a Hugging Face folder's vocab.json + merges.txt.
  static Tokenizer from_folder(const std::string& dir) {
    Tokenizer t;
    if (fs::exists(fs::path(dir) / "chars.json")) {
      const std::string path = (fs::path(dir) / "chars.json").string();
      nb::json::Value v = nb::json::parse(read_file(path));
      NABLA_CHECK(v.is_array() && !v.arr->empty(), nb::IOError, path, ": expected a JSON array of characters");
      for (const auto& c : *v.arr) {
        NABLA_CHECK(c.is_string(), nb::IOError, path, ": every entry must be a string");
        t.chars_.push_back(c.s);
      }
      return t;
    }
    NABLA_CHECK(fs::exists(fs::path(dir) / "vocab.json") && fs::exists(fs::path(dir) / "merges.txt"), nb::IOError, dir,
                ": no tokenizer (expected chars.json, or vocab.json + merges.txt)");
    t.bpe_ = std::make_shared<nb::text::GPT2Tokenizer>(nb::text::GPT2Tokenizer::from_files(
        (fs::path(dir) / "vocab.json").string(), (fs::path(dir) / "merges.txt").string()));
    t.bpe_dir_ = dir;
    return t;
  }
  bool is_char() const { return !bpe_; }
  int64_t vocab_size() const { return bpe_ ? static_cast<int64_t>(bpe_->vocab_size()) : static_cast<int64_t>(chars_.size()); }
  std::vector<int64_t> encode(const std::string& text) const {
    if (bpe_) return bpe_->encode(text);
    std::vector<int64_t> ids;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::max<size_t>(1, nb::json::utf8_sequence(text, i));
      auto it = std::lower_bound(chars_.begin(), chars_.end(), text.substr(i, n));
      NABLA_CHECK(it != chars_.end() && *it == text.substr(i, n), nb::ValueError, "gpt: the character \"",
                  text.substr(i, n), "\" at byte ", i, " is not in the model's vocabulary");
      ids.push_back(it - chars_.begin());
      i += n;
    }
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const {
    if (bpe_) return bpe_->decode(ids);
    std::string s;
    for (int64_t id : ids) s += chars_.at(static_cast<size_t>(id));
    return s;
  }
  std::vector<int64_t> default_prompt() const {
    if (bpe_) return {static_cast<int64_t>(bpe_->eos_token_id())};
    return encode(std::binary_search(chars_.begin(), chars_.end(), std::string("\n")) ? "\n" : chars_[0]);
  }
  // Writes chars.json, or copies vocab.json + merges.txt, into dir.
  void save(const std::string& dir) const {
    if (bpe_) {
      for (const char* f : {"vocab.json", "merges.txt"}) {
        const fs::path src = fs::path(bpe_dir_) / f, dst = fs::path(dir) / f;
        if (fs::exists(dst) && fs::equivalent(src, dst)) continue;
        const std::string bytes = read_file(src.string());
        nb::io::detail::atomic_write(dst.string(), [&](auto&& write) { write(bytes.data(), bytes.size()); });
      }
      return;
    }
    nb::json::Array arr;
    for (const auto& c : chars_) arr.push_back(nb::json::Value::string(c));
    const std::string text = nb::json::dump(nb::json::Value::array(std::move(arr))) + "\n";
    nb::io::detail::atomic_write((fs::path(dir) / "chars.json").string(),
                                 [&](auto&& write) { write(text.data(), text.size()); });
  }

 private:
  std::vector<std::string> chars_;
  std::shared_ptr<nb::text::GPT2Tokenizer> bpe_;
  std::string bpe_dir_;
};

nb::Device pick_device(const std::string& want) {
  if (want == "cuda" || (want == "auto" && nb::cuda::is_available())) {
    NABLA_CHECK(nb::cuda::is_available(), nb::DeviceError,
                "gpt: --device cuda, but no CUDA device is usable (no GPU, no driver, or built without nabla::cuda)");
    return nb::Device::cuda(0);
  }
  return nb::Device::cpu();
}

// ---- sampling ------------------------------------------------------------------------------------

// One token from logits [V] (float32 on the host): temperature, top-k, top-p, then a draw.
int64_t pick(std::vector<float> logits, const Args& a, std::mt19937_64& rng) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (a.temperature == 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = a.top_k > 0 ? std::min(a.top_k, V) : V;
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t x, int64_t y) { return logits[size_t(x)] > logits[size_t(y)]; });
  order.resize(static_cast<size_t>(k));
  const double top = logits[size_t(order[0])] / a.temperature;
  std::vector<double> p(order.size());
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += p[i] = std::exp(logits[size_t(order[i])] / a.temperature - top);
  size_t keep = order.size();
  if (a.top_p < 1) {  // the smallest prefix (most likely first) whose probability reaches top_p
    double c = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      c += p[i] / sum;
      if (c >= a.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  double u = std::uniform_real_distribution<double>(0.0, total)(rng);
  for (size_t i = 0; i < keep; ++i) {
    if (u < p[i]) return order[i];
    u -= p[i];
  }
  return order[keep - 1];
}

// Generates new_tokens after the prompt `ids`, streaming the text to stdout; returns the ms per
// new token (prefill_ms: the prompt's forward).
double generate(nb::models::GPT2LMHeadModel& model, const Tokenizer& tok, std::vector<int64_t> ids, int64_t new_tokens,
                const Args& a, std::mt19937_64& rng, nb::Device device, double& prefill_ms) {
  nb::NoGradGuard no_grad;
  model.eval();
  const int64_t ctx = model.config.n_positions;
  nb::models::KVCache cache;
  auto feed = [&](const std::vector<int64_t>& chunk) {
    nb::Tensor t = nb::from_vector(chunk, {1, static_cast<int64_t>(chunk.size())}, nb::kInt64).to(device);
    return model.forward_last(t, &cache).to(nb::Device::cpu()).to(nb::kFloat32).to_vector<float>();
  };
  // a prompt longer than the context keeps its last ctx - 1 tokens
  std::vector<int64_t> window(ids.end() - std::min<int64_t>(static_cast<int64_t>(ids.size()), ctx - 1), ids.end());
  const std::string prompt_text = tok.decode(ids);
  std::fwrite(prompt_text.data(), 1, prompt_text.size(), stdout);
  std::fflush(stdout);
  std::vector<int64_t> gen;  // the new tokens, decoded as a whole (a BPE token may end mid-character)
  std::string shown;
  const double t_prompt = Progress::now();
  std::vector<float> logits = feed(window);
  const double t0 = Progress::now();  // the per-token figure: after the prompt's one forward
  prefill_ms = 1000.0 * (t0 - t_prompt);
  for (int64_t i = 0; i < new_tokens; ++i) {
    const int64_t next = pick(logits, a, rng);
    ids.push_back(next), gen.push_back(next);
    const std::string text = tok.decode(gen);
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      std::fwrite(text.data() + shown.size(), 1, text.size() - shown.size(), stdout);
      std::fflush(stdout);
      shown = text;
    }
    if (i + 1 == new_tokens) break;
    if (cache.length + 1 > ctx) {  // the context is full: start again from its second half
      cache.reset();
      std::vector<int64_t> tail(ids.end() - ctx / 2, ids.end());
      logits = feed(tail);
    } else {
      logits = feed({next});
    }
  }
  std::printf("\n");
  return 1000.0 * (Progress::now() - t0) / static_cast<double>(std::max<int64_t>(1, new_tokens));
}

// ---- training --------------------------------------------------------------------------------------

// nanoGPT's schedule: linear warm-up to lr, cosine decay to min_lr at max_steps.
double lr_at(const Args& a, int64_t step) {
  if (step < a.warmup) return a.lr * static_cast<double>(step + 1) / static_cast<double>(a.warmup + 1);
  const double r = static_cast<double>(step - a.warmup) / static_cast<double>(std::max<int64_t>(1, a.max_steps - a.warmup));
  return a.min_lr + 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, r))) * (a.lr - a.min_lr);
}

// `batch` windows of block + 1 tokens at offsets drawn from (seed, key): the same key gives the
// same batch, so a resumed run sees what the uninterrupted one did.
std::pair<nb::Tensor, nb::Tensor> get_batch(const std::vector<int64_t>& data, int64_t batch, int64_t block, uint64_t seed,
                                            uint64_t key, nb::Device device) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + key);
  std::uniform_int_distribution<int64_t> pos(0, static_cast<int64_t>(data.size()) - block - 1);
  std::vector<int64_t> x, y;
  x.reserve(static_cast<size_t>(batch * block)), y.reserve(static_cast<size_t>(batch * block));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t o = pos(rng);
    x.insert(x.end(), data.begin() + o, data.begin() + o + block);
    y.insert(y.end(), data.begin() + o + 1, data.begin() + o + block + 1);
  }
  return {nb::from_vector(x, {batch, block}, nb::kInt64).to(device), nb::from_vector(y, {batch, block}, nb::kInt64).to(device)};
}

int train(Args a) {
  const nb::Device device = pick_device(a.device);
  const bool finetune = a.mode == "finetune";
  if (a.data.empty()) {
    const char* env = std::getenv("NABLA_DATA");
    a.data = std::string(env && *env ? env : "data") + "/tinyshakespeare/input.txt";
  }
  NABLA_CHECK(fs::exists(a.data), nb::IOError, "gpt: no training text at ", a.data,
              " (pass --data FILE, or set NABLA_DATA to the folder holding tinyshakespeare/input.txt)");
  std::error_code ec;
  fs::create_directories(a.out, ec);
  NABLA_CHECK(fs::is_directory(a.out), nb::IOError, "gpt: cannot create the run folder ", a.out);
  const std::string ckpt = (fs::path(a.out) / "checkpoint.safetensors").string();

  // ---- tokenizer and model: from the run folder when resuming, --from when fine-tuning ----------
  const std::string text = read_file(a.data);
  std::shared_ptr<nb::models::GPT2LMHeadModel> model;
  std::optional<Tokenizer> tok;
  nb::manual_seed(static_cast<uint64_t>(a.seed));
  if (a.resume) {
    NABLA_CHECK(fs::exists(ckpt), nb::IOError, "gpt: --resume: no checkpoint at ", ckpt);
    tok = Tokenizer::from_folder(a.out);
    model = std::make_shared<nb::models::GPT2LMHeadModel>(
        nb::models::GPT2Config::from_json_file((fs::path(a.out) / "config.json").string()));
  } else if (finetune) {
    tok = Tokenizer::from_folder(a.from);
    model = nb::models::GPT2LMHeadModel::from_pretrained(a.from);
  } else {
    tok = a.tokenizer == "char" ? Tokenizer::chars_of(text) : Tokenizer::from_folder(a.tokenizer);
    nb::models::GPT2Config c;
    c.vocab_size = tok->vocab_size();
    c.n_positions = a.block_size, c.n_layer = a.n_layer, c.n_head = a.n_head, c.n_embd = a.n_embd;
    c.resid_pdrop = c.embd_pdrop = c.attn_pdrop = a.dropout;
    if (!tok->is_char()) c.bos_token_id = c.eos_token_id = static_cast<int64_t>(tok->default_prompt()[0]);
    model = std::make_shared<nb::models::GPT2LMHeadModel>(c);
  }
  const int64_t block = std::min(a.block_size, model->config.n_positions);
  const std::vector<int64_t> ids = tok->encode(text);
  const int64_t n_train = static_cast<int64_t>(ids.size()) * 9 / 10;
  const std::vector<int64_t> train_ids(ids.begin(), ids.begin() + n_train), val_ids(ids.begin() + n_train, ids.end());
  NABLA_CHECK(static_cast<int64_t>(val_ids.size()) > block + 1, nb::ValueError, "gpt: ", a.data, " has ", ids.size(),
              " tokens; the 10% validation split needs more than --block-size (", block, ") + 1");
  model->to(device);
  if (a.checkpointing) model->gradient_checkpointing_enable();

  // ---- optimizer: AdamW, weight decay on matrices only (nanoGPT's groups) ----------------------
  std::vector<nb::Tensor> decay, no_decay;
  for (const nb::Tensor& p : model->parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  using G = nb::optim::ParamGroup<nb::optim::AdamWOptions>;
  nb::optim::AdamWOptions defaults = nb::optim::AdamWOptions(a.lr).betas({0.9, 0.99}).weight_decay(a.weight_decay);
  nb::optim::AdamW opt({G(decay, defaults), G(no_decay, nb::optim::AdamWOptions(defaults).weight_decay(0.0))}, defaults);
  const bool use_amp = a.amp != "none";
  nb::amp::GradScaler scaler(nb::amp::GradScalerOptions().enabled(a.amp == "f16"));
  int64_t step = 0;
  if (a.resume) {
    nb::io::Metadata meta = nb::io::load_safetensors(ckpt).metadata;
    for (const auto& [key, now] : {std::pair<std::string, std::string>{"max_steps", std::to_string(a.max_steps)},
                                   {"batch_size", std::to_string(a.batch_size)}, {"seed", std::to_string(a.seed)},
                                   {"data_tokens", std::to_string(ids.size())}, {"block_size", std::to_string(block)}})
      NABLA_CHECK(!meta.count(key) || meta.at(key) == now, nb::ValueError, "gpt: --resume: ", ckpt, " was written with ",
                  key, " ", meta.at(key), ", this run has ", now, " (resume with the same flags and data)");
    step = nb::io::load_checkpoint(ckpt, *model, &opt, nullptr, nullptr, &scaler);
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(), (long long)step);
  }
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  const auto& c = model->config;
  std::printf("GPT-2 %lld layers, %lld heads, %lld wide, context %lld, vocab %lld (%s): %.2fM parameters; device %s%s%s\n",
              (long long)c.n_layer, (long long)c.n_head, (long long)c.n_embd, (long long)c.n_positions,
              (long long)c.vocab_size, tok->is_char() ? "characters" : "GPT-2 BPE", static_cast<double>(params) / 1e6,
              device.str().c_str(), use_amp ? (", amp " + a.amp).c_str() : "", a.checkpointing ? ", checkpointing" : "");
  std::printf("data %s: %zu tokens (%lld train, %zu val); batch %lld x %lld tokens, %lld steps, AdamW lr %g -> %g\n",
              a.data.c_str(), ids.size(), (long long)n_train, val_ids.size(), (long long)a.batch_size, (long long)block,
              (long long)a.max_steps, a.lr, a.min_lr);

  const std::string csv_path = (fs::path(a.out) / "metrics.csv").string();
  const bool fresh_csv = !a.resume || !fs::exists(csv_path);
  std::ofstream csv(csv_path, fresh_csv ? std::ios::trunc : std::ios::app);
  NABLA_CHECK(csv.good(), nb::IOError, "gpt: cannot write ", csv_path);
  if (fresh_csv) csv << "step,lr,train_loss,val_loss,seconds,tokens_per_second\n";

  auto loss_of = [&](const nb::Tensor& x, const nb::Tensor& y) {
    std::optional<nb::amp::autocast> autocast;
    if (use_amp) autocast.emplace(device.type, a.amp == "f16" ? nb::kFloat16 : nb::kBFloat16);
    nb::Tensor logits = model->forward(x);
    return nb::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(nb::kFloat32), y.reshape({-1}));
  };
  auto estimate = [&](const std::vector<int64_t>& split, uint64_t salt) {
    nb::NoGradGuard no_grad;
    model->eval();
    double sum = 0;
    for (int64_t i = 0; i < a.eval_iters; ++i) {
      auto [x, y] = get_batch(split, a.batch_size, block, static_cast<uint64_t>(a.seed), salt + static_cast<uint64_t>(i), device);
      sum += loss_of(x, y).item<double>();
    }
    model->train();
    return sum / static_cast<double>(a.eval_iters);
  };
  auto save = [&] {
    nb::io::save_checkpoint(ckpt, *model, &opt, nullptr, step,
                            {{"max_steps", std::to_string(a.max_steps)}, {"batch_size", std::to_string(a.batch_size)},
                             {"seed", std::to_string(a.seed)}, {"data_tokens", std::to_string(ids.size())},
                             {"block_size", std::to_string(block)}},
                            &scaler);
    model->save_pretrained(a.out);
    tok->save(a.out);
  };
  if (!a.resume) tok->save(a.out);

  const bool tty = a.progress && isatty(fileno(stdout));
  model->train();
  const double t_start = Progress::now();
  int64_t seg_start = step;
  double t_seg = Progress::now();
  Progress bar(0, 0, a.max_steps, step, tty, "", "tok/s");
  nb::Tensor loss_sum = nb::zeros({}, nb::TensorOptions(nb::kFloat32).device(device));
  int64_t since = 0;
  double last_val = NAN;
  while (step < a.max_steps) {
    const double lr = lr_at(a, step);
    for (size_t g = 0; g < opt.num_param_groups(); ++g) opt.set_lr(g, lr);
    auto [x, y] = get_batch(train_ids, a.batch_size, block, static_cast<uint64_t>(a.seed), static_cast<uint64_t>(step), device);
    nb::manual_seed(static_cast<uint64_t>(a.seed) * 1000003ull + static_cast<uint64_t>(step));  // dropout masks per step
    opt.zero_grad();
    nb::Tensor loss = loss_of(x, y);
    scaler.scale(loss).backward();
    if (a.grad_clip > 0) {
      scaler.unscale_(opt);
      nb::optim::clip_grad_norm_(model->parameters(), a.grad_clip);
    }
    scaler.step(opt);
    scaler.update();
    ++step, ++since;
    loss_sum.add_(loss.detach());
    if (bar.due(step)) bar.update(step, loss_sum.item<double>() / static_cast<double>(since), (step - seg_start) * a.batch_size * block);
    if (a.stop_after > 0 && step >= a.stop_after && step < a.max_steps) {
      std::printf("\nstopping after step %lld (--stop-after), without a checkpoint of this step\n", (long long)step);
      return 3;
    }
    if (step % a.eval_interval == 0 || step == a.max_steps) {
      const double seconds = Progress::now() - t_seg;
      const double tps = static_cast<double>((step - seg_start) * a.batch_size * block) / std::max(seconds, 1e-9);
      const double tr = estimate(train_ids, 1ull << 40), va = estimate(val_ids, 1ull << 41);
      last_val = va;
      save();
      if (tty) std::printf("\r\033[K");
      std::printf("step %lld: train loss %.4f, val loss %.4f, lr %.2e, %.0f tok/s\n", (long long)step, tr, va, lr, tps);
      csv << step << "," << lr << "," << tr << "," << va << "," << seconds << "," << tps << "\n";
      csv.flush();
      t_seg = Progress::now(), seg_start = step;
      bar = Progress(0, 0, a.max_steps, step, tty, "", "tok/s");
      loss_sum = nb::zeros({}, nb::TensorOptions(nb::kFloat32).device(device)), since = 0;
    }
  }
  std::printf("done: %lld steps, val loss %.4f, %s; run folder %s\n", (long long)step, last_val,
              nabla_example::clock_str(Progress::now() - t_start).c_str(), a.out.c_str());
  if (a.sample_tokens > 0) {
    std::printf("---- sample (%lld tokens, temperature %g, top-k %lld) ----\n", (long long)a.sample_tokens, a.temperature,
                (long long)a.top_k);
    std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
    double prefill_ms = 0;
    generate(*model, *tok, tok->default_prompt(), a.sample_tokens, a, rng, device, prefill_ms);
  }
  return 0;
}

int sample(const Args& a) {
  const nb::Device device = pick_device(a.device);
  auto model = nb::models::GPT2LMHeadModel::from_pretrained(a.from);
  Tokenizer tok = Tokenizer::from_folder(a.from);
  model->to(device);
  NABLA_CHECK(tok.vocab_size() <= model->config.vocab_size, nb::ValueError, "gpt: the tokenizer in ", a.from, " has ",
              tok.vocab_size(), " tokens, the model ", model->config.vocab_size);
  std::vector<int64_t> prompt = a.prompt_set ? tok.encode(a.prompt) : tok.default_prompt();
  NABLA_CHECK(!prompt.empty(), nb::ValueError, "gpt: the prompt is empty");
  std::mt19937_64 rng(static_cast<uint64_t>(a.seed));
  for (int64_t s = 0; s < a.num_samples; ++s) {
    if (a.num_samples > 1) std::printf("---- sample %lld ----\n", (long long)s + 1);
    double prefill_ms = 0;
    const double ms = generate(*model, tok, prompt, a.max_new_tokens, a, rng, device, prefill_ms);
    std::fflush(stdout);  // the text's last line before the timing line on stderr
    std::fprintf(stderr, "[%lld prompt tokens in %.1f ms, then %lld new: %.2f ms/token on %s]\n", (long long)prompt.size(),
                 prefill_ms, (long long)a.max_new_tokens, ms, device.str().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
#if defined(_OPENMP)
  if (args.threads > 0) omp_set_num_threads(static_cast<int>(args.threads));
#endif
  nb::set_flush_denormal(true);
  try {
    return args.mode == "sample" ? sample(args) : train(args);
  } catch (const nb::Error& e) {
    std::cerr << "gpt: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gpt: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
