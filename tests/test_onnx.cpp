// ONNX export (io/onnx.hpp). Here: the protobuf writer's bytes, the graphs' structure, and every
// refusal. OnnxRuntime.* write models with their inputs and nabla's outputs for
// tests/onnx/run.sh (the ctest entry onnx_runtime), which checks them with onnx.checker and
// runs them in onnxruntime; without NABLA_ONNX_DIR they skip.

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nabla/io/onnx.hpp>
#include <nabla/models/gpt2.hpp>
#include <nabla/models/resnet.hpp>
#include <nabla/quantization/quantize.hpp>

#include "support/temp_files.hpp"
#include "test_util.hpp"

namespace {

using namespace nabla;
using nabla::onnx::ExportOptions;

std::string hex(const std::string& bytes) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) {
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

TEST(Protobuf, WireFormatMatchesTheSpecification) {
  // protobuf.dev/programming-guides/encoding: field 1 = 150 is 08 96 01; field 2 = "testing" is
  // 12 07 74 65 73 74 69 6e 67; negative int64 takes ten bytes; floats are fixed32 little-endian.
  io::proto::Writer w;
  w.varint_field(1, 150);
  EXPECT_EQ(hex(w.bytes()), "089601");
  io::proto::Writer s;
  s.bytes_field(2, "testing");
  EXPECT_EQ(hex(s.bytes()), "120774657374696e67");
  io::proto::Writer n;
  n.varint_field(3, -1);
  EXPECT_EQ(hex(n.bytes()), "18ffffffffffffffffff01");
  io::proto::Writer f;
  f.float_field(2, 1.0f);
  EXPECT_EQ(hex(f.bytes()), "150000803f");
  io::proto::Writer outer;
  outer.message_field(3, w);
  EXPECT_EQ(hex(outer.bytes()), "1a03089601");
}

std::shared_ptr<nn::Sequential> mnist_cnn() {  // examples/mnist's CNN
  return std::make_shared<nn::Sequential>(nn::Conv2d(1, 32, 3, 1), nn::ReLU(), nn::Conv2d(32, 64, 3, 1), nn::ReLU(),
                                          nn::MaxPool2d(2), nn::Dropout(0.25), nn::Flatten(), nn::Linear(9216, 128),
                                          nn::ReLU(), nn::Dropout(0.5), nn::Linear(128, 10));
}

// The op types of an exported graph, in order, read back from the bytes: every NodeProto's
// op_type (field 4 inside graph field 1). A minimal reader for these tests only.
struct Reader {
  const std::string& b;
  size_t p = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const auto c = static_cast<unsigned char>(b.at(p++));
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
  }
  // Calls f(field, wire, payload) for each field of the message in [p, end).
  template <class F>
  void fields(size_t end, F f) {
    while (p < end) {
      const uint64_t key = varint();
      const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
      if (wire == 0) {
        const uint64_t v = varint();
        f(field, wire, std::to_string(v));
      } else if (wire == 2) {
        const size_t n = varint();
        f(field, wire, b.substr(p, n));
        p += n;
      } else if (wire == 5) {
        p += 4;
      } else {
        throw std::runtime_error("unexpected wire type");
      }
    }
  }
};
std::vector<std::string> node_types(const std::string& model) {
  std::vector<std::string> types;
  Reader r{model};
  r.fields(model.size(), [&](int field, int, const std::string& graph) {
    if (field != 7) return;
    Reader g{graph};
    g.fields(graph.size(), [&](int gf, int, const std::string& node) {
      if (gf != 1) return;
      Reader n{node};
      n.fields(node.size(), [&](int nf, int, const std::string& v) {
        if (nf == 4) types.push_back(v);
      });
    });
  });
  return types;
}

std::string export_module(nn::Module& m, const Tensor& x, const ExportOptions& o = {}) {
  std::vector<std::pair<std::string, Tensor>> state;
  for (const auto& [name, t] : m.named_parameters()) state.emplace_back(name, t);
  for (const auto& [name, t] : m.named_buffers()) state.emplace_back(name, t);
  m.eval();
  return onnx::export_bytes([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{m.forward(in[0])}; }, state,
                            {x}, o);
}

TEST(OnnxExport, MnistCnnIsTheGraphPyTorchExports) {
  auto net = mnist_cnn();
  const std::string bytes = export_module(*net, randn({2, 1, 28, 28}));
  // torch.onnx.export of the same nn.Sequential (eval): Conv Relu Conv Relu MaxPool Flatten Gemm
  // Relu Gemm; nabla's flatten is a Reshape, and the output an Identity naming it.
  EXPECT_EQ(node_types(bytes), (std::vector<std::string>{"Conv", "Relu", "Conv", "Relu", "MaxPool", "Reshape", "Gemm",
                                                          "Relu", "Gemm", "Identity"}));
}

TEST(OnnxExport, GeluIsDecomposedBelowOpset20AndNativeFrom20) {
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{gelu(in[0], "tanh")}; };
  auto types17 = node_types(onnx::export_bytes(fn, {}, {randn({2, 3})}, {.opset = 17}));
  EXPECT_EQ(std::count(types17.begin(), types17.end(), "Tanh"), 1);
  EXPECT_EQ(std::count(types17.begin(), types17.end(), "Gelu"), 0);
  auto types20 = node_types(onnx::export_bytes(fn, {}, {randn({2, 3})}, {.opset = 20}));
  EXPECT_EQ(types20, (std::vector<std::string>{"Gelu", "Identity"}));
}

TEST(OnnxExport, ExportLeavesTheModuleAndItsModeAlone) {
  auto net = mnist_cnn();
  net->train();
  const Tensor w = net->named_parameters()["0.weight"].detach().clone();
  nabla_test::TempDir tmp("nabla_onnx", "mode");
  onnx::export_model(net, {randn({2, 1, 28, 28})}, tmp / "m.onnx");
  EXPECT_TRUE(net->is_training());
  EXPECT_TRUE(net->named_parameters()["0.weight"].equal(w));
  EXPECT_FALSE(net->named_parameters()["0.weight"].grad().defined());
  EXPECT_GT(std::filesystem::file_size(tmp / "m.onnx"), size_t{4} * (9216 * 128));  // the weights are in it
}

// ---- refusals: a clear error naming the op, never a silently wrong graph ----------------------

template <class F>
std::string export_error(F fn, const Tensor& x, const ExportOptions& o = {}) {
  try {
    onnx::export_bytes(fn, {}, {x}, o);
  } catch (const nabla::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(OnnxExport, AnOpWithoutAMappingIsNamed) {
  std::string msg = export_error([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0].cumsum(1) * 2}; },
                                 randn({2, 3}));
  EXPECT_NE(msg.find("CumsumBackward0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no ONNX mapping"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Mul"), std::string::npos) << msg;  // the op that consumed it
}

TEST(OnnxExport, AConstantThatDependsOnTheBatchIsRefused) {
  // arange(x.size(0)) is made from the batch size, by no traced op: frozen it would be wrong for
  // every other batch size
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor r = arange(in[0].size(0), TensorOptions(kFloat32)).unsqueeze(1);
    return std::vector<Tensor>{in[0] + r};
  };
  std::string msg = export_error(fn, randn({3, 2}));
  EXPECT_NE(msg.find("changes with the input"), std::string::npos) << msg;
  // with a fixed batch it is a constant, and fine
  EXPECT_NO_THROW(onnx::export_bytes(fn, {}, {randn({3, 2})}, {.dynamic_batch = false}));
}

TEST(OnnxExport, ABoolMaskFromTheInputIsTraced) {
  // comparisons have no gradient, so only the tracer sees them: x > 0 must be a node, not a constant
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{where(in[0] > 0, in[0], in[0] * 0.1)}; };
  auto types = node_types(onnx::export_bytes(fn, {}, {randn({4, 3})}));
  EXPECT_NE(std::find(types.begin(), types.end(), "Greater"), types.end());
  EXPECT_NE(std::find(types.begin(), types.end(), "Where"), types.end());
}

TEST(OnnxExport, TrainingModeRandomnessAndBadOptionsAreRefused) {
  std::string msg = export_error(
      [](const std::vector<Tensor>& in) { return std::vector<Tensor>{nn::functional::dropout(in[0], 0.5, true)}; },
      randn({2, 3}));
  EXPECT_NE(msg.find("Dropout"), std::string::npos) << msg;
  msg = export_error([](const std::vector<Tensor>& in) { return in; }, randn({2, 3}), {.opset = 9});
  EXPECT_NE(msg.find("opset 9"), std::string::npos) << msg;
  msg = export_error([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0].relu()}; }, randn({}));
  EXPECT_NE(msg.find("batch dimension"), std::string::npos) << msg;
}

TEST(OnnxExport, AFailedExportKeepsTheOldFile) {
  nabla_test::TempDir tmp("nabla_onnx", "atomic");
  const std::string path = tmp / "m.onnx";
  { std::ofstream(path) << "previous"; }
  struct Bad : nn::Module {
    Tensor forward(const Tensor& x) override { return x.cumsum(1) + 1; }
  };
  auto bad = std::make_shared<Bad>();
  EXPECT_THROW(onnx::export_model(bad, {randn({2, 3})}, path), nabla::Error);
  std::ifstream f(path);
  std::string s;
  f >> s;
  EXPECT_EQ(s, "previous");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// ---- models for onnxruntime (tests/onnx/run.sh) -------------------------------------------------

// Writes <dir>/<name>.onnx, and <name>.safetensors with the inputs and nabla's eval-mode outputs
// at two batch sizes (the second exercises the dynamic batch), and <name>.args for the checker.
#define NABLA_REQUIRE_ONNX_DIR() \
  if (!std::getenv("NABLA_ONNX_DIR")) GTEST_SKIP() << "NABLA_ONNX_DIR is not set (tests/onnx/run.sh sets it and runs onnxruntime)"

void write_case(const std::string& name, nn::Module& m, const std::vector<Tensor>& inputs_by_batch,
                const std::string& args, const ExportOptions& o = {}) {
  const char* dir = std::getenv("NABLA_ONNX_DIR");
  onnx::export_model(m, {inputs_by_batch[0]}, std::string(dir) + "/" + name + ".onnx", o);
  m.eval();
  NoGradGuard ng;
  nn::OrderedDict<Tensor> io;
  for (const auto& x : inputs_by_batch) {
    const std::string tag = "b" + std::to_string(x.size(0));
    io.insert((o.input_names.empty() ? std::string("input") : o.input_names[0]) + "@" + tag, x);
    io.insert((o.output_names.empty() ? std::string("output") : o.output_names[0]) + "@" + tag, m.forward(x).contiguous());
  }
  io::save_safetensors(std::string(dir) + "/" + name + ".safetensors", io);
  std::ofstream(std::string(dir) + "/" + name + ".args") << args << "\n";
}

TEST(OnnxRuntime, MnistCnn) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(1);
  auto net = mnist_cnn();
  write_case("mnist_cnn", *net, {randn({4, 1, 28, 28}), randn({7, 1, 28, 28})}, "--rtol 1e-4 --atol 1e-5");
}

TEST(OnnxRuntime, MnistCnnOpset21) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(2);
  auto net = mnist_cnn();
  write_case("mnist_cnn_opset21", *net, {randn({3, 1, 28, 28}), randn({1, 1, 28, 28})}, "--rtol 1e-4 --atol 1e-5",
             {.opset = 21, .input_names = {"images"}, .output_names = {"logits"}});
}

// Running statistics that are not 0/1, so that BatchNormalization's inputs matter.
void settle_batch_norm(nn::Module& m, const Shape& input_shape) {
  m.train();
  NoGradGuard ng;
  for (int i = 0; i < 3; ++i) m.forward(randn(input_shape) * 2 + 0.5);
}

TEST(OnnxRuntime, ResNet18CifarStem) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(3);
  auto net = models::resnet18({.num_classes = 10, .cifar_stem = true});
  settle_batch_norm(*net, {8, 3, 32, 32});
  write_case("resnet18_cifar", *net, {randn({2, 3, 32, 32}), randn({5, 3, 32, 32})}, "--rtol 1e-3 --atol 1e-4");
}

TEST(OnnxRuntime, ResNet50ImageNetStem) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(4);
  auto net = models::resnet50(100);  // 7x7 stride-2 stem, max-pool, Bottleneck blocks
  settle_batch_norm(*net, {2, 3, 64, 64});
  write_case("resnet50", *net, {randn({1, 3, 64, 64}), randn({3, 3, 64, 64})}, "--rtol 1e-3 --atol 1e-4");
}

TEST(OnnxRuntime, GPT2) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(5);
  models::GPT2Config c;
  c.vocab_size = 97, c.n_positions = 32, c.n_embd = 48, c.n_layer = 2, c.n_head = 4;
  auto net = std::make_shared<models::GPT2LMHeadModel>(c);
  auto ids = [&](int64_t b) { return randint(0, c.vocab_size, {b, 12}, TensorOptions(kInt64)); };
  write_case("gpt2", *net, {ids(2), ids(5)}, "--rtol 1e-3 --atol 1e-4", {.input_names = {"input_ids"}, .output_names = {"logits"}});
  // dynamic int8 (the Conv1D projections): DynamicQuantizeLinear before each
  write_case("gpt2_dynamic_int8", *quantization::quantize_dynamic(net), {ids(2), ids(5)}, "--max-rel 0.02",
             {.input_names = {"input_ids"}, .output_names = {"logits"}});
}

// A module that runs the other mapped ops: conv without bias + batch norm, both poolings,
// layer norm, the unary family, comparisons and where, attention with a boolean mask, slices,
// concat, transposes, expand, reductions, softmax / log-softmax, gather and select, and scalar
// constants of another dtype.
struct OpZoo : nn::Module {
  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::LayerNorm> ln;
  std::shared_ptr<nn::Linear> fc;
  OpZoo() {
    conv = register_module("conv", std::make_shared<nn::Conv2d>(nn::Conv2dOptions(3, 8, 3).stride(2).padding(1).bias(false)));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(8));
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(16));
    fc = register_module("fc", std::make_shared<nn::Linear>(16, 16));
  }
  Tensor forward(const Tensor& x) override {
    const int64_t B = x.size(0);
    Tensor h = bn->forward(conv->forward(x)).relu();                           // [B, 8, 8, 8]
    h = avg_pool2d(h, 2, 2) + adaptive_avg_pool2d(h, {4, 4}) * 0.5;             // [B, 8, 4, 4]
    h = h + adaptive_avg_pool2d(h, {1, 1});
    Tensor t = ln->forward(h.flatten(2));                                       // [B, 8, 16]
    Tensor u = gelu(fc->forward(t)) + silu(t).sigmoid() - t.tanh().abs().sqrt() + leaky_relu(t, 0.2);
    u = clamp(u, -3.0, 3.0) + log1p(t.exp()) * 0.1 + rsqrt(square(t) + 1) + expm1(t * 0.1) + erf(t) - gelu(t);
    u = where(u > 0, u, u * 0.5) / (maximum(u.abs(), minimum(t, u)) + 2);
    Tensor q = u.unsqueeze(1);                                                  // [B, 1, 8, 16]
    Tensor keep = tril(ones({8, 8}, TensorOptions(kBool)));
    u = u + scaled_dot_product_attention(q, q * 0.5, q, keep).squeeze(1);
    u = u + scaled_dot_product_attention(q, q, q, {}, 0.0, true).squeeze(1);
    Tensor a = cat({u.narrow(2, 0, 8), u.narrow(2, 8, 8).transpose(1, 2).transpose(2, 1)}, 2);
    a = a.softmax(-1) + a.log_softmax(1) * 0.1 + a.pow(2) * 0.01;
    Tensor r = a.mean({1}) + a.sum({1}) * 0.1 + a.amax({1}) - a.amin({1}) * 0.5;  // [B, 16]
    r = r + r.unsqueeze(1).expand({B, 2, 16}).reshape({B, 32}).narrow(1, 8, 16);
    r = r + index_select(r, 1, from_vector(std::vector<int64_t>{15, 3, 0, 7, 7, 1, 2, 9, 4, 5, 6, 8, 10, 11, 12, 13})) * 0.5;
    r = r + r.select(1, 3).unsqueeze(1) + matmul(r, ones({16, 16}) * 0.01) + r.t().t();
    return r;
  }
};

// int8 models for onnxruntime: QDQ (QuantizeLinear/DequantizeLinear) around float ops; the
// checker compares with nabla's int8 outputs (a code off by one at a rounding tie moves the
// output by a quantization step: a looser, relative bound).
std::vector<Tensor> calibration(const Shape& s, int n) {
  std::vector<Tensor> b;
  for (int i = 0; i < n; ++i) b.push_back(randn(s));
  return b;
}

TEST(OnnxRuntime, QuantizedMnistCnn) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(7);
  auto net = mnist_cnn();
  auto q = quantization::quantize(net, calibration({8, 1, 28, 28}, 4));
  write_case("mnist_cnn_int8", *q, {randn({4, 1, 28, 28}), randn({9, 1, 28, 28})}, "--max-rel 0.02");
}

TEST(OnnxRuntime, QuantizedResNetBlockAndDynamicMlp) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(8);
  auto block = models::resnet18({.num_classes = 10, .cifar_stem = true});
  settle_batch_norm(*block, {4, 3, 32, 32});
  auto q = quantization::quantize(block, calibration({4, 3, 32, 32}, 2));
  write_case("resnet18_int8", *q, {randn({2, 3, 32, 32}), randn({3, 3, 32, 32})}, "--max-rel 0.05");
  auto mlp = std::make_shared<nn::Sequential>(nn::Linear(32, 64), nn::GELU(), nn::Linear(64, 8));
  write_case("mlp_dynamic_int8", *quantization::quantize_dynamic(mlp), {randn({5, 32}), randn({2, 32})}, "--max-rel 0.02");
}

TEST(OnnxExport, AQuantizedModelExportsAsQdq) {
  manual_seed(9);
  auto net = mnist_cnn();
  auto q = quantization::quantize(net, calibration({8, 1, 28, 28}, 2));
  const std::string bytes = export_module(*q, randn({2, 1, 28, 28}));
  // input quantized; each layer's int8 weights dequantized per channel into a float Conv / Gemm;
  // the codes passed on between layers quantized again; MaxPool and the Reshape on dequantized
  // codes; the last Gemm's float output out
  EXPECT_EQ(node_types(bytes),
            (std::vector<std::string>{"QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv", "Relu",
                                      "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv", "Relu",
                                      "QuantizeLinear", "DequantizeLinear", "MaxPool", "Reshape", "DequantizeLinear",
                                      "Gemm", "Relu", "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Gemm",
                                      "Identity"}));
}

TEST(OnnxRuntime, OpZoo) {
  NABLA_REQUIRE_ONNX_DIR();
  manual_seed(6);
  OpZoo net;
  settle_batch_norm(net, {4, 3, 16, 16});
  write_case("op_zoo", net, {randn({3, 3, 16, 16}), randn({6, 3, 16, 16})}, "--rtol 1e-4 --atol 1e-5");
  // opset 20: native Gelu, ReduceMean/ReduceMax with their axes as an input
  write_case("op_zoo_opset20", net, {randn({2, 3, 16, 16}), randn({4, 3, 16, 16})}, "--rtol 1e-4 --atol 1e-5",
             {.opset = 20});
}

TEST(OnnxExport, OpZooOpset13) {  // ReduceMean with axes as an attribute; no LayerNormalization before 17
  manual_seed(7);
  OpZoo net;
  std::string msg;
  try {
    export_module(net, randn({2, 3, 16, 16}), {.opset = 13});
  } catch (const nabla::Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("LayerNormalization needs opset 17"), std::string::npos) << msg;
}

}  // namespace
