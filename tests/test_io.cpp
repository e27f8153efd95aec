// io: JSON, safetensors round trips for every dtype, corrupt files giving clear errors, atomic
// checkpoints (a failing write leaves the previous file intact), files from and for Python's
// safetensors package, and module/checkpoint save-load.

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <numbers>

#include "support/temp_files.hpp"
#include "test_util.hpp"

namespace nabla_test {
namespace {

namespace fs = std::filesystem;
namespace optim = nabla::optim;

struct TempDir : nabla_test::TempDir {
  explicit TempDir(const std::string& name) : nabla_test::TempDir("nabla_io", name) {}
};
using nabla_test::read_bytes;
using nabla_test::write_bytes;
// A safetensors file from a header text and a data section.
std::string make_file(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

TEST(Json, ParsesAndWrites) {
  auto v = json::parse(R"( {"a": [1, -2, 3.5e2, true, false, null], "s": "q\"\\\n\u00e9\ud83d\ude00", "big": 9007199254740993} )");
  EXPECT_EQ(v.get("a")->arr->size(), 6u);
  EXPECT_EQ((*v.get("a")->arr)[1].i, -2);
  EXPECT_DOUBLE_EQ((*v.get("a")->arr)[2].d, 350.0);
  EXPECT_EQ(v.get("s")->s, "q\"\\\n\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(v.get("big")->i, 9007199254740993LL);  // exact, beyond double precision
  EXPECT_EQ(json::dump(json::parse(json::dump(v))), json::dump(v));
  for (const char* bad : {"{", "{\"a\":}", "[1,]", "{\"a\":1,\"a\":2}", "01", "\"\\x\"", "{} x", "nul", "[1 2]", "\"\x01\""})
    EXPECT_THROW(json::parse(bad), json::ParseError) << bad;
}

TEST(Safetensors, RoundTripIsBitExactForEveryDtype) {
  TempDir tmp("roundtrip");
  nn::StateDict d;
  d.insert("f32", randn({3, 4}));
  d.insert("f64", randn({5}, kFloat64));
  d.insert("f16", randn({2, 3}).to(kFloat16));
  d.insert("bf16", randn({7}).to(kBFloat16));
  d.insert("i32", randint(-1000, 1000, {4}, kInt32));
  d.insert("i64", randint(-(int64_t{1} << 40), int64_t{1} << 40, {2, 2}));
  d.insert("u8", randint(0, 256, {9}, kUInt8));
  d.insert("bool", rand({6}) > 0.5);
  d.insert("scalar", scalar_tensor(2.5, kFloat64));
  d.insert("empty", zeros({0, 3}));
  d.insert("strided", randn({4, 6}).t());  // non-contiguous: stored contiguous
  Tensor nan_inf = tensor({NAN, INFINITY, -INFINITY, -0.0f});
  d.insert("special", nan_inf);
  io::save_safetensors(tmp / "a.safetensors", d, {{"framework", "nabla"}, {"note", "é \"quoted\""}});
  auto f = io::load_safetensors(tmp / "a.safetensors");
  EXPECT_EQ(f.metadata.at("framework"), "nabla");
  EXPECT_EQ(f.metadata.at("note"), "é \"quoted\"");
  ASSERT_EQ(f.tensors.size(), d.size());
  for (const auto& [k, t] : d) {
    const Tensor& got = f.tensors.at(k);
    ASSERT_EQ(got.dtype(), t.dtype()) << k;
    ASSERT_EQ(got.sizes(), t.sizes()) << k;
    Tensor c = t.contiguous();
    if (c.nbytes() > 0) {  // an empty tensor may have no memory at all (memcmp on null is UB)
      EXPECT_EQ(std::memcmp(got.data_ptr(), c.data_ptr(), c.nbytes()), 0) << k << " differs bitwise";
    }
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, read_bytes(tmp / "a.safetensors").data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "header padded with spaces so the data starts 8-byte aligned";
  EXPECT_FALSE(fs::exists(tmp / "a.safetensors.tmp"));
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  TempDir tmp("corrupt");
  const std::string p = tmp / "bad.safetensors";
  io::save_safetensors(p, [] { nn::StateDict d; d.insert("w", ones({2, 2})); d.insert("b", ones({2})); return d; }());
  const std::string good = read_bytes(p);
  auto expect_error = [&](const std::string& bytes, std::vector<std::string> fragments, const char* what) {
    write_bytes(p, bytes);
    fragments.push_back(p);  // every message names the file
    EXPECT_TRUE(throws_with<IOError>([&] { io::load_safetensors(p); }, fragments)) << what;
  };
  const std::string data(24, '\0');  // room for a [2, 3] f32 tensor
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}";
  };
  expect_error(good.substr(0, 5), {"truncated", "too short"}, "shorter than the length field");
  expect_error(good.substr(0, good.size() - 3), {"past the end"}, "truncated data");
  expect_error(good.substr(0, 20), {"header length", "exceeds"}, "truncated header");
  std::string huge = good;
  uint64_t n = ~uint64_t{0} >> 1;
  std::memcpy(huge.data(), &n, 8);
  expect_error(huge, {"header length", "exceeds"}, "bad header length");
  expect_error(make_file("{\"t\":{\"dtype\":\"F32\",", data), {"malformed JSON"}, "malformed JSON");
  expect_error(make_file("[1,2]", data), {"does not start with '{'"}, "not an object");
  expect_error(make_file("{" + entry("F33", "[2,3]", "[0,24]") + "}", data), {"unsupported dtype \"F33\"", "tensor \"t\""}, "bad dtype");
  expect_error(make_file("{" + entry("F32", "[2,2]", "[0,24]") + "}", data), {"needs 16 bytes", "span 24"}, "shape/offset mismatch");
  expect_error(make_file("{" + entry("F32", "[2,-3]", "[0,24]") + "}", data), {"non-negative"}, "negative dim");
  expect_error(make_file("{" + entry("F32", "[2,3]", "[0,32]") + "}", data), {"past the end"}, "offsets past end");
  expect_error(make_file("{" + entry("F32", "[2,3]", "[8,0]") + "}", data), {"0 <= begin <= end"}, "reversed offsets");
  expect_error(make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", std::string(16, '\0')),
               {"overlap"}, "overlapping offsets");
  expect_error(make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", std::string(16, '\0')),
               {"belong to no tensor"}, "hole in the data");
  expect_error(make_file("{" + entry("F32", "[2,3]", "[0,24]") + ",\"__metadata__\":{\"k\":1}}", data), {"not a string"}, "metadata");
  expect_error(make_file("{" + entry("BOOL", "[2]", "[0,2]") + "}", std::string("\x01\x07", 2)), {"not 0 or 1"}, "bad bool");
  EXPECT_TRUE(throws_with<IOError>([&] { io::load_safetensors(tmp / "missing.safetensors"); }, {"cannot open", "missing.safetensors"}));
}

// ---- modules and checkpoints ---------------------------------------------------------------------

nn::Sequential mlp() { return nn::Sequential(nn::Linear(4, 8), nn::ReLU(), nn::Linear(8, 2)); }

TEST(Checkpoint, MlpStateDictNamesEqualPyTorch) {
  // torch.nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict().keys()
  EXPECT_EQ(mlp().state_dict().keys(), (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  TempDir tmp("names");
  nabla::save(mlp(), tmp / "m.safetensors");
  EXPECT_EQ(io::load_safetensors(tmp / "m.safetensors").tensors.keys(),
            (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
}

TEST(Checkpoint, SaveLoadModule) {
  TempDir tmp("module");
  auto a = mlp(), b = mlp();
  nabla::save(a, tmp / "m.safetensors");
  nabla::load(b, tmp / "m.safetensors");
  Tensor x = randn({3, 4});
  EXPECT_TRUE(all_equal(a.forward(x), b.forward(x)));
  auto other = nn::Sequential(nn::Linear(4, 8), nn::ReLU(), nn::Linear(8, 3));
  EXPECT_TRUE(throws_with<IOError>([&] { nabla::load(other, tmp / "m.safetensors"); }, {"m.safetensors", "size mismatch", "2.weight"}));
}

TEST(Checkpoint, TrainingCheckpointResumesExactly) {
  TempDir tmp("train");
  manual_seed(21);
  Tensor x = randn({16, 4}), y = randn({16, 2});
  auto run = [&](nn::Module& net, optim::Optimizer& opt, optim::LRScheduler& sched, int steps) {
    for (int i = 0; i < steps; ++i) {
      opt.zero_grad();
      mse_loss(net.forward(x), y).backward();
      opt.step();
      sched.step();
    }
  };
  auto net = mlp();
  optim::SGD opt(net.parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::StepLR sched(opt, 2, 0.5);
  run(net, opt, sched, 3);
  io::save_checkpoint(tmp / "ck.safetensors", net, &opt, &sched, 3);

  auto net2 = mlp();
  optim::SGD opt2(net2.parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::StepLR sched2(opt2, 2, 0.5);
  EXPECT_EQ(io::load_checkpoint(tmp / "ck.safetensors", net2, &opt2, &sched2), 3);
  EXPECT_DOUBLE_EQ(opt2.lr(), opt.lr());
  run(net, opt, sched, 2);
  run(net2, opt2, sched2, 2);
  for (const auto& [k, v] : net.state_dict()) EXPECT_TRUE(all_equal(net2.state_dict()[k], v)) << k;

  auto keys = io::load_safetensors(tmp / "ck.safetensors").tensors.keys();
  EXPECT_NE(std::find(keys.begin(), keys.end(), "model.0.weight"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "optimizer.state.0.momentum_buffer"), keys.end());
  EXPECT_NE(std::find(keys.begin(), keys.end(), "scheduler.last_epoch"), keys.end());
  nabla::save(net, tmp / "plain.safetensors");
  EXPECT_TRUE(throws_with<IOError>([&] { io::load_checkpoint(tmp / "plain.safetensors", net2); }, {"not a nabla checkpoint"}));

  // from the file's bytes in memory: the same state, errors naming the given name
  const std::string bytes = read_bytes(tmp / "ck.safetensors");
  const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  auto net3 = mlp();
  optim::SGD opt3(net3.parameters(), optim::SGDOptions(0.1).momentum(0.9));
  optim::StepLR sched3(opt3, 2, 0.5);
  io::Metadata meta;
  EXPECT_EQ(io::load_checkpoint(span, net3, &opt3, &sched3, &meta), 3);
  EXPECT_EQ(meta.at("step"), "3");
  EXPECT_DOUBLE_EQ(opt3.lr(), 0.05);  // StepLR(2, 0.5) after 3 steps: 0.1 * 0.5
  for (const auto& [k, v] : net3.state_dict()) EXPECT_TRUE(all_equal(v, *io::load_safetensors(span).tensors.find("model." + k))) << k;
  EXPECT_TRUE(throws_with<IOError>([&] { io::load_checkpoint(span.first(span.size() - 1), net3, nullptr, nullptr, nullptr, "ck.bin"); },
                                   {"ck.bin"}));
}

TEST(Checkpoint, FailedSaveLeavesThePreviousFileIntact) {
  TempDir tmp("atomic");
  const std::string path = tmp / "ck.safetensors";
  auto net = mlp();
  io::save_checkpoint(path, net, nullptr, nullptr, 1);
  const std::string before = read_bytes(path);

  // 1. the write fails halfway: the file-size limit makes write() return EFBIG after ~200 bytes
  auto big = nn::Sequential(nn::Linear(64, 64), nn::Linear(64, 64));
  struct rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 200;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  bool threw = false;
  std::string msg;
  try {
    io::save_checkpoint(path, big, nullptr, nullptr, 2);
  } catch (const IOError& e) {
    threw = true;
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(threw) << "a write that fails must throw";
  EXPECT_NE(msg.find("write to"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unchanged"), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), before) << "the previous checkpoint must be intact";
  EXPECT_FALSE(fs::exists(path + ".tmp")) << "the partial file is removed";

  // 2. serialisation throws halfway (an exception from the producer): same guarantee
  EXPECT_THROW(io::detail::atomic_write(path, [](auto& write) {
                 write("partial", 7);
                 throw std::runtime_error("disk on fire");
               }),
               IOError);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // 3. the directory does not exist: nothing is created
  EXPECT_TRUE(throws_with<IOError>([&] { io::save_checkpoint(tmp / "no/such/dir/ck.safetensors", net); }, {"cannot create"}));
  auto net2 = mlp();
  EXPECT_EQ(io::load_checkpoint(path, net2), 1);
}

// ---- interoperability with Python's safetensors package -------------------------------------------

bool python_safetensors_available() {
  return std::system("python3 -c 'import safetensors, numpy' > /dev/null 2>&1") == 0;
}

TEST(Safetensors, ReadsFileWrittenByPython) {
  if (!python_safetensors_available())
    GTEST_SKIP() << "python3 with the safetensors and numpy packages is not available (scripts/test.sh puts them in a venv, build/python, first on PATH)";
  TempDir tmp("python_read");
  const std::string path = tmp / "py.safetensors", script = tmp / "w.py";
  std::ofstream(script) << "import numpy as np, sys\n"
                           "from safetensors.numpy import save_file\n"
                           "t = {'f32': np.arange(12, dtype=np.float32).reshape(3, 4) / 7,\n"
                           "     'f64': np.array([1e-300, -2.5, np.pi]), 'f16': np.array([0.1, -65504], dtype=np.float16),\n"
                           "     'i32': np.array([[-7, 8]], dtype=np.int32), 'i64': np.array([2**62, -3], dtype=np.int64),\n"
                           "     'u8': np.array([0, 255, 7], dtype=np.uint8), 'bool': np.array([True, False, True]),\n"
                           "     'scalar': np.array(4.0, dtype=np.float32)}\n"
                           "save_file(t, sys.argv[1], metadata={'format': 'np'})\n";
  ASSERT_EQ(std::system(("python3 " + script + " " + path).c_str()), 0);
  auto f = io::load_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "np");
  EXPECT_TRUE(all_close(f.tensors.at("f32"), arange(0, 12, 1, kFloat32).reshape({3, 4}) / 7, 0, 0));
  EXPECT_EQ(f.tensors.at("f64").to_vector<double>(), (std::vector<double>{1e-300, -2.5, std::numbers::pi}));
  EXPECT_EQ(f.tensors.at("f16").dtype(), kFloat16);
  EXPECT_EQ(f.tensors.at("f16").to_vector<double>()[1], -65504.0);
  EXPECT_EQ(f.tensors.at("i32").sizes(), (Shape{1, 2}));
  EXPECT_EQ(f.tensors.at("i64").to_vector<int64_t>(), (std::vector<int64_t>{int64_t{1} << 62, -3}));
  EXPECT_EQ(f.tensors.at("u8").to_vector<int64_t>(), (std::vector<int64_t>{0, 255, 7}));
  EXPECT_EQ(f.tensors.at("bool").to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(f.tensors.at("scalar").dim(), 0);
}

TEST(Safetensors, PythonReadsFileWrittenByNabla) {
  if (!python_safetensors_available())
    GTEST_SKIP() << "python3 with the safetensors and numpy packages is not available (scripts/test.sh puts them in a venv, build/python, first on PATH)";
  TempDir tmp("python_write");
  const std::string path = tmp / "nb.safetensors", script = tmp / "r.py";
  nn::StateDict d;
  d.insert("w", arange(0, 6, 1, kFloat64).reshape({2, 3}));
  d.insert("i", tensor({5, -6}, kInt32));
  d.insert("m", tensor({true, false}));
  io::save_safetensors(path, d, {{"who", "nabla"}});
  std::ofstream(script) << "import numpy as np, sys\n"
                           "from safetensors import safe_open\n"
                           "with safe_open(sys.argv[1], 'np') as f:\n"
                           "    assert f.metadata() == {'who': 'nabla'}, f.metadata()\n"
                           "    assert (f.get_tensor('w') == np.arange(6.0).reshape(2, 3)).all()\n"
                           "    assert f.get_tensor('i').dtype == np.int32 and list(f.get_tensor('i')) == [5, -6]\n"
                           "    assert list(f.get_tensor('m')) == [True, False]\n";
  EXPECT_EQ(std::system(("python3 " + script + " " + path).c_str()), 0) << "Python's safetensors rejected nabla's file";
}

}  // namespace
}  // namespace nabla_test
