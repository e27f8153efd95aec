// data: IDX round trips (plain and gzip), every kind of corrupt file giving an IOError that names
// the file, MNIST loading (synthetic, and the real files when NABLA_DATA is set), DataLoader
// batching, shuffling, determinism, prefetch, errors, early exit and resume, and the transforms.

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <set>
#include <thread>

#include <nabla/data.hpp>

#include "support/temp_files.hpp"
#include "test_util.hpp"

namespace nabla_test {
namespace {

namespace fs = std::filesystem;
namespace nd = nabla::data;
namespace tf = nabla::data::transforms;

struct TempDir : nabla_test::TempDir {
  explicit TempDir(const std::string& name) : nabla_test::TempDir("nabla_data", name) {}
};
using nabla_test::read_bytes;
using nabla_test::write_bytes;

// ---- IDX files written by hand -------------------------------------------------------------

void put_be(std::string& s, uint64_t v, int bytes) {
  for (int k = bytes - 1; k >= 0; --k) s.push_back(static_cast<char>((v >> (8 * k)) & 0xFF));
}
std::string idx_header(uint8_t code, const std::vector<int64_t>& dims) {
  std::string s{'\0', '\0', static_cast<char>(code), static_cast<char>(dims.size())};
  for (int64_t d : dims) put_be(s, static_cast<uint32_t>(static_cast<int32_t>(d)), 4);
  return s;
}
template <class T>
std::string be_payload(const std::vector<T>& values) {
  std::string s;
  for (T v : values) {
    if constexpr (sizeof(T) == 1) s.push_back(static_cast<char>(v));
    else if constexpr (sizeof(T) == 2) put_be(s, std::bit_cast<uint16_t>(v), 2);
    else if constexpr (sizeof(T) == 4) put_be(s, std::bit_cast<uint32_t>(v), 4);
    else put_be(s, std::bit_cast<uint64_t>(v), 8);
  }
  return s;
}

#ifdef NABLA_HAS_ZLIB
void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}
#endif

TEST(Idx, RoundTripsEveryType) {
  TempDir tmp("roundtrip");
  std::vector<uint8_t> u8 = {0, 1, 127, 128, 200, 255};
  write_bytes(tmp / "u8", idx_header(0x08, {2, 3}) + be_payload(u8));
  Tensor t = nd::read_idx(tmp / "u8");
  EXPECT_EQ(t.dtype(), kUInt8);
  EXPECT_EQ(t.sizes(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<uint8_t>(), u8);

  std::vector<int8_t> i8 = {-128, -1, 0, 1, 127};
  write_bytes(tmp / "i8", idx_header(0x09, {5}) + be_payload(i8));
  t = nd::read_idx(tmp / "i8");
  EXPECT_EQ(t.dtype(), kInt32) << "nabla has no int8: widened to int32";
  EXPECT_EQ(t.to_vector<int32_t>(), (std::vector<int32_t>{-128, -1, 0, 1, 127}));

  std::vector<int16_t> i16 = {-32768, -2, 0, 3, 32767, 258};
  write_bytes(tmp / "i16", idx_header(0x0B, {3, 2}) + be_payload(i16));
  t = nd::read_idx(tmp / "i16");
  EXPECT_EQ(t.dtype(), kInt32);
  EXPECT_EQ(t.to_vector<int32_t>(), (std::vector<int32_t>{-32768, -2, 0, 3, 32767, 258}));

  std::vector<int32_t> i32 = {INT32_MIN, -70000, 0, 1, 16909060, INT32_MAX};
  write_bytes(tmp / "i32", idx_header(0x0C, {1, 2, 3}) + be_payload(i32));
  t = nd::read_idx(tmp / "i32");
  EXPECT_EQ(t.dtype(), kInt32);
  EXPECT_EQ(t.sizes(), (Shape{1, 2, 3}));
  EXPECT_EQ(t.to_vector<int32_t>(), i32);

  std::vector<float> f32 = {0.0f, -0.0f, 1.5f, -3.25e-8f, 6.5e30f, INFINITY};
  write_bytes(tmp / "f32", idx_header(0x0D, {6}) + be_payload(f32));
  t = nd::read_idx(tmp / "f32");
  EXPECT_EQ(t.dtype(), kFloat32);
  auto got32 = t.to_vector<float>();
  for (size_t i = 0; i < f32.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(got32[i]), std::bit_cast<uint32_t>(f32[i])) << i;

  std::vector<double> f64 = {3.141592653589793, -1e-300, 2.0};
  write_bytes(tmp / "f64", idx_header(0x0E, {3, 1}) + be_payload(f64));
  t = nd::read_idx(tmp / "f64");
  EXPECT_EQ(t.dtype(), kFloat64);
  EXPECT_EQ(t.to_vector<double>(), f64);
}

TEST(Idx, GzipRoundTripMatchesPlain) {
#ifndef NABLA_HAS_ZLIB
  GTEST_SKIP() << "nabla was built without zlib (NABLA_HAS_ZLIB undefined): .gz files are refused";
#else
  TempDir tmp("gz");
  std::vector<uint8_t> u8(3 * 28 * 28);
  for (size_t i = 0; i < u8.size(); ++i) u8[i] = static_cast<uint8_t>(i * 37 % 251);
  const std::string bytes = idx_header(0x08, {3, 28, 28}) + be_payload(u8);
  write_bytes(tmp / "a", bytes);
  write_gz(tmp / "a.gz", bytes);
  write_gz(tmp / "compressed-without-suffix", bytes);  // recognised by content, not by name
  Tensor plain = nd::read_idx(tmp / "a");
  EXPECT_TRUE(all_equal(nd::read_idx(tmp / "a.gz"), plain));
  EXPECT_TRUE(all_equal(nd::read_idx(tmp / "compressed-without-suffix"), plain));

  std::vector<float> f32 = {1.0f, -2.5f, 1e-3f, 7.0f};
  write_gz(tmp / "f.gz", idx_header(0x0D, {2, 2}) + be_payload(f32));
  EXPECT_EQ(nd::read_idx(tmp / "f.gz").to_vector<float>(), f32);
  std::vector<int32_t> i32 = {-5, 100000, 7};
  write_gz(tmp / "i.gz", idx_header(0x0C, {3}) + be_payload(i32));
  EXPECT_EQ(nd::read_idx(tmp / "i.gz").to_vector<int32_t>(), i32);
#endif
}

// read_idx from the bytes of a file in memory: the same tensor as from the file, the same checks,
// errors naming the given name.
TEST(Idx, ReadsFromMemory) {
  TempDir tmp("memory");
  const std::string bytes = idx_header(0x0B, {3, 2}) + be_payload(std::vector<int16_t>{-300, 0, 1, 2, 3, 32767});
  write_bytes(tmp / "a", bytes);
  auto span_of = [](const std::string& b) { return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()); };
  EXPECT_TRUE(all_equal(nd::read_idx(span_of(bytes)), nd::read_idx(tmp / "a")));
#ifdef NABLA_HAS_ZLIB
  write_gz(tmp / "a.gz", bytes);
  const std::string gz = read_bytes(tmp / "a.gz");
  EXPECT_TRUE(all_equal(nd::read_idx(span_of(gz)), nd::read_idx(tmp / "a")));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(span_of(gz.substr(0, gz.size() - 3)), "labels.gz"); },
                                   {"labels.gz", "truncated"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(span_of(gz + "x")); }, {"<memory>", "1 bytes follow the end of the gzip stream"}));
#endif
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(span_of(bytes.substr(0, 15)), "x.idx"); }, {"x.idx", "truncated"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(std::span<const uint8_t>()); }, {"<memory>", "too short for the 4-byte IDX magic"}));
}

TEST(Idx, CorruptFilesGiveClearErrors) {
  TempDir tmp("corrupt");
  const std::string p = tmp / "bad-idx1-ubyte";
  const std::string good = idx_header(0x08, {4, 3}) + std::string(12, '\x07');
  auto expect_error = [&](const std::string& bytes, std::vector<std::string> fragments, const char* what) {
    write_bytes(p, bytes);
    fragments.push_back(p);  // every message names the file
    EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(p); }, fragments)) << what;
  };
  ASSERT_NO_THROW(nd::read_idx((write_bytes(p, good), p)));
  expect_error("", {"truncated", "4-byte IDX magic"}, "empty file");
  expect_error(std::string("\x01\x00\x08\x01", 4) + good.substr(4), {"not an IDX file", "0x01 0x00"}, "wrong magic");
  expect_error(std::string("\x00\x00\x0A\x02", 4) + good.substr(4), {"unknown IDX type code 0x0A"}, "bad type code");
  expect_error(std::string("\x00\x00\x08\x00", 4), {"0 dimensions"}, "no dimensions");
  expect_error(idx_header(0x08, {4, 0}), {"dimension 1 has size 0"}, "zero size");
  expect_error(idx_header(0x08, {-3, 2}) + std::string(6, '\0'), {"dimension 0 has size -3"}, "negative size");
  expect_error(idx_header(0x0E, {0x7fffffff, 0x7fffffff, 16}), {"more than 2^40 elements"}, "huge sizes");
  expect_error(good.substr(0, 9), {"truncated in the header", "2 dimensions need 8 bytes"}, "short header");
  expect_error(good.substr(0, good.size() - 3), {"truncated", "sizes [4, 3] of uint8 need 12 data bytes", "only 9"},
               "short data");
  expect_error(good + "xyz", {"trailing bytes", "3 more"}, "trailing garbage");
  expect_error(idx_header(0x0C, {4}) + std::string(15, '\0'), {"truncated", "int32 need 16 data bytes"}, "partial element");
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(tmp / "nope"); }, {tmp / "nope", "no such file"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(tmp.dir.string()); }, {tmp.dir.string(), "is a directory"}));
}

TEST(Idx, CorruptGzipGivesClearErrors) {
  TempDir tmp("corruptgz");
  const std::string p = tmp / "bad.gz";
  const std::string good = idx_header(0x08, {100, 10}) + std::string(1000, '\x05');
#ifndef NABLA_HAS_ZLIB
  // 1f 8b: the gzip magic, whatever follows
  write_bytes(p, std::string("\x1f\x8b\x08\x00", 4) + good);
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(p); }, {p, "built without zlib", "gunzip"}));
#else
  write_gz(p, good);
  const std::string gz = read_bytes(p);
  ASSERT_NO_THROW(nd::read_idx(p));
  auto expect_error = [&](const std::string& bytes, std::vector<std::string> fragments, const char* what) {
    write_bytes(p, bytes);
    fragments.push_back(p);
    EXPECT_TRUE(throws_with<IOError>([&] { nd::read_idx(p); }, fragments)) << what;
  };
  std::string garbled = gz;
  for (size_t i = 10; i < garbled.size() - 8; ++i) garbled[i] = '\xff';  // deflate block type 3 is invalid
  expect_error(garbled, {"corrupt gzip stream"}, "garbled deflate data");
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 8] ^= 0x55;  // the trailer's CRC-32
  expect_error(bad_crc, {"corrupt gzip stream"}, "CRC mismatch");
  expect_error(gz.substr(0, gz.size() / 2), {"gzip stream is truncated"}, "compressed stream cut short");
  write_gz(p, good.substr(0, good.size() - 10));
  expect_error(read_bytes(p), {"truncated", "the data ends after 990"}, "IDX data cut short inside a valid gzip");
  write_gz(p, good + "extra");
  expect_error(read_bytes(p), {"trailing bytes"}, "IDX data followed by more inside a valid gzip");
  write_gz(p, idx_header(0x0E, {1 << 20, 1 << 10}));
  expect_error(read_bytes(p), {"cannot hold that many"}, "sizes far beyond what the .gz can hold");
#endif
}

// ---- MNIST ---------------------------------------------------------------------------------------

// A small fake MNIST split: n images of rows x cols with pixel (i, k) = (i * 7 + k) % 256.
void write_fake_mnist(const std::string& dir, const std::string& prefix, int64_t n, bool gz, int64_t n_labels = -1,
                      int64_t rows = 28, int64_t cols = 28, uint8_t bad_label = 0) {
  if (n_labels < 0) n_labels = n;
  std::vector<uint8_t> px(static_cast<size_t>(n * rows * cols)), lb(static_cast<size_t>(n_labels));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i / (rows * cols) * 7 + i % (rows * cols)) % 256);
  for (size_t i = 0; i < lb.size(); ++i) lb[i] = static_cast<uint8_t>((i * 3) % 10);
  if (bad_label && n_labels > 2) lb[2] = bad_label;
  std::string images = idx_header(0x08, {n, rows, cols}) + be_payload(px);
  std::string labels = idx_header(0x08, {n_labels}) + be_payload(lb);
  std::string ip = dir + "/" + prefix + "-images-idx3-ubyte", lp = dir + "/" + prefix + "-labels-idx1-ubyte";
#ifdef NABLA_HAS_ZLIB
  if (gz) {
    write_gz(ip + ".gz", images);
    write_gz(lp + ".gz", labels);
    return;
  }
#endif
  (void)gz;
  write_bytes(ip, images);
  write_bytes(lp, labels);
}

TEST(Mnist, LoadsPlainAndGzippedSplits) {
  TempDir tmp("mnist");
  write_fake_mnist(tmp.dir.string(), "train", 6, false);
  write_fake_mnist(tmp.dir.string(), "t10k", 4, true);  // plain files when built without zlib
  nd::MnistSet train = nd::load_mnist(tmp.dir.string(), true);
  nd::MnistSet test = nd::load_mnist(tmp.dir.string(), false);
  EXPECT_EQ(train.images.dtype(), kUInt8);
  EXPECT_EQ(train.images.sizes(), (Shape{6, 28, 28}));
  EXPECT_EQ(train.labels.dtype(), kInt64);
  EXPECT_EQ(train.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 6, 9, 2, 5}));
  EXPECT_EQ(test.images.sizes(), (Shape{4, 28, 28}));
  EXPECT_EQ(test.images[3][0][5].item<uint8_t>(), (3 * 7 + 5) % 256);

  auto ds = nd::mnist_dataset(tmp.dir.string(), true);
  EXPECT_EQ(ds->size(), 6);
  EXPECT_EQ(ds->data().sizes(), (Shape{6, 1, 28, 28}));
  EXPECT_EQ(ds->data().dtype(), kFloat32);
  const double px = (2 * 7 + 30) % 256;  // image 2, row 1, col 2
  EXPECT_NEAR(ds->data()[2][0][1][2].item<float>(), (px / 255.0 - nd::kMnistMean) / nd::kMnistStd, 1e-5);
  auto raw = nd::mnist_dataset(tmp.dir.string(), true, /*normalize=*/false);
  EXPECT_NEAR(raw->data()[2][0][1][2].item<float>(), px / 255.0, 1e-6);
  EXPECT_TRUE(all_equal(raw->target(), train.labels));
}

// LibTorch's torch::data spelling (data/torch_data.hpp): MNIST in [0, 1] as LibTorch's, the
// Normalize<> + Stack<> chain equal to nabla's own normalised dataset, samplers, batch sizes.
TEST(Mnist, TorchDataFrontEnd) {
  TempDir tmp("mnisttorch");
  write_fake_mnist(tmp.dir.string(), "train", 10, false);
  write_fake_mnist(tmp.dir.string(), "t10k", 3, false);
  namespace ds = nd::datasets;
  ds::MNIST raw(tmp.dir.string());
  EXPECT_EQ(raw.size().value(), 10u);
  EXPECT_NEAR(raw.dataset()->data()[2][0][1][2].item<float>(), ((2 * 7 + 30) % 256) / 255.0, 1e-6);  // not normalised
  auto train = ds::MNIST(tmp.dir.string())
                   .map(nd::transforms::Normalize<>(nd::kMnistMean, nd::kMnistStd))
                   .map(nd::transforms::Stack<>());
  auto native = nd::mnist_dataset(tmp.dir.string(), true);
  EXPECT_TRUE(all_close(train.dataset()->data(), native->data(), 1e-6, 1e-6));
  EXPECT_EQ(ds::MNIST(tmp.dir.string(), ds::MNIST::Mode::kTest).size().value(), 3u);

  auto seq = nd::make_data_loader<nd::samplers::SequentialSampler>(std::move(train), 4);
  EXPECT_EQ(seq->size(), 3);  // 4 + 4 + 2
  std::vector<int64_t> labels;
  for (nd::Example<>& b : *seq) {
    EXPECT_EQ(b.data.size(1), 1);
    for (int64_t v : b.target.to_vector<int64_t>()) labels.push_back(v);
  }
  EXPECT_EQ(labels, native->target().to_vector<int64_t>());  // in order
  auto rnd = nd::make_data_loader(ds::MNIST(tmp.dir.string()), nd::DataLoaderOptions().batch_size(5).workers(2));
  EXPECT_TRUE(rnd->options().shuffle());  // RandomSampler, LibTorch's default
  EXPECT_EQ(rnd->options().prefetch_threads(), 2);
  std::vector<int64_t> order = rnd->epoch_indices(0);
  EXPECT_NE(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  std::sort(order.begin(), order.end());
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Mnist, InconsistentFilesGiveClearErrors) {
  TempDir tmp("mnistbad");
  const std::string dir = tmp.dir.string();
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir, true); },
                                   {dir, "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}))
      << "an empty directory";
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir + "/missing", false); }, {dir + "/missing", "t10k-images"}));

  write_fake_mnist(dir, "train", 5, false, /*n_labels=*/4);
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir, true); },
                                   {dir + "/train-images-idx3-ubyte", "5 images", dir + "/train-labels-idx1-ubyte",
                                    "4 labels"}));
  write_fake_mnist(dir, "train", 5, false, 5, 28, 28, /*bad_label=*/11);
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir, true); },
                                   {dir + "/train-labels-idx1-ubyte", "label 2 is 11"}));
  write_bytes(dir + "/train-images-idx3-ubyte", idx_header(0x08, {5, 784}) + std::string(5 * 784, '\0'));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir, true); },
                                   {dir + "/train-images-idx3-ubyte", "uint8 [N, rows, cols]", "[5, 784]"}));
  write_bytes(dir + "/train-images-idx3-ubyte", "not idx");
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_mnist(dir, true); }, {dir + "/train-images-idx3-ubyte", "not an IDX file"}));
}

// The real files, when $NABLA_DATA/mnist holds them (four .gz files as distributed).
TEST(Mnist, RealMnistWhenNablaDataIsSet) {
  const char* root = std::getenv("NABLA_DATA");
  if (!root) GTEST_SKIP() << "NABLA_DATA is not set; set it to a directory with mnist/ inside to check the real MNIST";
  const std::string dir = std::string(root) + "/mnist";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " does not exist";
  // Expected values computed independently from the .gz files with
  //   python3 -c 'import gzip; im = gzip.open("train-images-idx3-ubyte.gz").read()[16:]; ...'
  // (sum of the first image's 784 pixels, sum of (k + 1) * pixel[k], sum of all pixels, and a
  // histogram of the labels).
  struct Expect {
    bool train;
    int64_t n, first_sum, first_weighted, total, first_label;
    std::vector<int64_t> hist;
  };
  const Expect splits[] = {
      {true, 60000, 27525, 11220489, 1567298545, 5, {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}},
      {false, 10000, 18454, 7715336, 264923200, 7, {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}}};
  for (const Expect& e : splits) {
    nd::MnistSet set = nd::load_mnist(dir, e.train);
    ASSERT_EQ(set.images.sizes(), (Shape{e.n, 28, 28}));
    ASSERT_EQ(set.labels.sizes(), (Shape{e.n}));
    const uint8_t* px = set.images.data_ptr<uint8_t>();
    int64_t sum = 0, weighted = 0, total = 0;
    for (int64_t k = 0; k < 784; ++k) sum += px[k], weighted += (k + 1) * px[k];
    for (int64_t k = 0; k < set.images.numel(); ++k) total += px[k];
    EXPECT_EQ(sum, e.first_sum);
    EXPECT_EQ(weighted, e.first_weighted);
    EXPECT_EQ(total, e.total);
    std::vector<int64_t> hist(10, 0);
    for (int64_t l : set.labels.to_vector<int64_t>()) ++hist[static_cast<size_t>(l)];
    EXPECT_EQ(hist, e.hist);
    EXPECT_EQ(set.labels[0].item<int64_t>(), e.first_label);
  }
  // The test split through the whole pipeline: normalised images, shuffled, augmented, prefetched.
  auto ds = nd::mnist_dataset(dir, false);
  EXPECT_NEAR(ds->data().to(kFloat64).mean().item<double>(), (264923200.0 / (10000 * 784 * 255) - nd::kMnistMean) / nd::kMnistStd, 1e-4);
  nd::DataLoader loader(ds, nd::DataLoaderOptions().batch_size(128).shuffle(true).seed(3).transform(
                                tf::Compose({tf::RandomCrop(28, 2), tf::RandomHorizontalFlip()})));
  std::vector<int64_t> hist(10, 0);
  int64_t batches = 0;
  for (nd::Batch& b : loader) {
    EXPECT_EQ(b.data.sizes()[1], 1);
    for (int64_t l : b.target.to_vector<int64_t>()) ++hist[static_cast<size_t>(l)];
    ++batches;
  }
  EXPECT_EQ(batches, 79);
  EXPECT_EQ(hist, splits[1].hist);
}

// ---- TensorDataset ----------------------------------------------------------------------------

TEST(TensorDataset, GathersRowsAndChecksIndices) {
  Tensor x = arange(0, 24, 1, kFloat32).reshape({6, 2, 2});
  Tensor y = arange(10, 16, 1, kInt64);
  nd::TensorDataset ds(x, y);
  EXPECT_EQ(ds.size(), 6);
  nd::Batch b = ds.get_batch({5, 0, 5});
  EXPECT_EQ(b.data.sizes(), (Shape{3, 2, 2}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{15, 10, 15}));
  EXPECT_EQ(b.data[1].sum().item<float>(), 0 + 1 + 2 + 3);
  EXPECT_TRUE(throws_with<IndexError>([&] { ds.get_batch({1, 6}); }, {"index 6", "6 examples"}));
  EXPECT_TRUE(throws_with<IndexError>([&] { ds.get_batch({-1}); }, {"index -1"}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { nd::TensorDataset(x, arange(5)); }, {"[6, 2, 2]", "[5]"}));
  Tensor w = randn({6, 2}).requires_grad_();
  nd::TensorDataset graded(w, y);
  EXPECT_FALSE(graded.get_batch({0, 1}).data.requires_grad()) << "batches are data, not part of a graph";
}

// ---- DataLoader ---------------------------------------------------------------------------------

// Example i is the value i (data and target); counts get_batch calls; can fail or be slow.
class ProbeDataset : public nd::Dataset {
 public:
  explicit ProbeDataset(int64_t n, int64_t fail_at = -1, int sleep_ms = 0) : n_(n), fail_at_(fail_at), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return n_; }
  nd::Batch get_batch(const std::vector<int64_t>& indices) const override {
    ++calls;
    if (sleep_ms_) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    for (int64_t i : indices)
      if (i == fail_at_) throw ValueError("probe: example " + std::to_string(i) + " is unreadable");
    Tensor t = from_vector(indices, Shape{static_cast<int64_t>(indices.size())}, kInt64);
    return {t.to(kFloat32), t};
  }
  mutable std::atomic<int> calls{0};

 private:
  int64_t n_, fail_at_;
  int sleep_ms_;
};

std::vector<std::vector<int64_t>> epoch_batches(nd::DataLoader& loader) {
  std::vector<std::vector<int64_t>> out;
  for (nd::Batch& b : loader) out.push_back(b.target.to_vector<int64_t>());
  return out;
}

// ---- CIFAR-10 binary files written by hand ---------------------------------------------------

// Record i: label labels[i], pixel k of its 3072 = (i * 31 + k) % 256.
std::string cifar_records(const std::vector<int>& labels) {
  std::string s;
  for (size_t i = 0; i < labels.size(); ++i) {
    s.push_back(static_cast<char>(labels[i]));
    for (int64_t k = 0; k < nd::kCifarImageBytes; ++k) s.push_back(static_cast<char>((i * 31 + k) % 256));
  }
  return s;
}

TEST(Cifar10, ReadsRecordsPlainAndGzipped) {
  TempDir tmp("cifar");
  const std::string bytes = cifar_records({3, 0, 9, 5});
  write_bytes(tmp / "data_batch_1.bin", bytes);
  nd::CifarSet b = nd::read_cifar10_batch(tmp / "data_batch_1.bin");
  EXPECT_EQ(b.images.dtype(), kUInt8);
  EXPECT_EQ(b.images.sizes(), (Shape{4, 3, 32, 32}));
  EXPECT_EQ(b.labels.dtype(), kInt64);
  EXPECT_EQ(b.labels.to_vector<int64_t>(), (std::vector<int64_t>{3, 0, 9, 5}));
  // channel planes R, G, B of row-major 32x32: image 2, green (plane 1), row 3, col 4
  EXPECT_EQ(b.images[2][1][3][4].item<uint8_t>(), (2 * 31 + 1024 + 3 * 32 + 4) % 256);
  EXPECT_EQ(b.images[0][0][0][0].item<uint8_t>(), 0);
  EXPECT_EQ(b.images[3][2][31][31].item<uint8_t>(), (3 * 31 + 3071) % 256);
#ifdef NABLA_HAS_ZLIB
  write_gz(tmp / "data_batch_1.bin.gz", bytes);
  nd::CifarSet g = nd::read_cifar10_batch(tmp / "data_batch_1.bin.gz");
  EXPECT_TRUE(all_equal(g.images, b.images));
  EXPECT_TRUE(all_equal(g.labels, b.labels));
#endif
}

TEST(Cifar10, ReadsFromMemory) {
  const std::string bytes = cifar_records({8, 1});
  auto span_of = [](const std::string& b) { return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()); };
  nd::CifarSet m = nd::read_cifar10_batch(span_of(bytes));
  EXPECT_EQ(m.labels.to_vector<int64_t>(), (std::vector<int64_t>{8, 1}));
  EXPECT_EQ(m.images[1][2][31][0].item<uint8_t>(), (31 + 2048 + 31 * 32) % 256);
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(span_of(bytes.substr(1)), "batch.bin"); },
                                   {"batch.bin", "record 1 has 3072 of its 3073"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(std::span<const uint8_t>()); }, {"<memory>", "is empty"}));
#ifdef NABLA_HAS_ZLIB
  TempDir tmp("cifarmem");
  write_gz(tmp / "b.gz", bytes);
  nd::CifarSet g = nd::read_cifar10_batch(span_of(read_bytes(tmp / "b.gz")));
  EXPECT_TRUE(all_equal(g.images, m.images));
  EXPECT_TRUE(all_equal(g.labels, m.labels));
#endif
}

TEST(Cifar10, LoadsWhicheverTrainingBatchesArePresent) {
  TempDir tmp("cifarsplits");
  write_bytes(tmp / "data_batch_1.bin", cifar_records({1, 2}));
  write_bytes(tmp / "data_batch_3", cifar_records({7}));  // without the .bin suffix too
  write_bytes(tmp / "test_batch.bin", cifar_records({4, 4, 8}));
  nd::CifarSet train = nd::load_cifar10(tmp.dir.string(), true);
  EXPECT_EQ(train.labels.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 7}));
  EXPECT_EQ(train.images.sizes(), (Shape{3, 3, 32, 32}));
  EXPECT_EQ(train.images[2][0][0][1].item<uint8_t>(), 1);  // the one record of data_batch_3: i = 0
  nd::CifarSet test = nd::load_cifar10(tmp.dir.string(), false);
  EXPECT_EQ(test.labels.to_vector<int64_t>(), (std::vector<int64_t>{4, 4, 8}));

  auto ds = nd::cifar10_dataset(tmp.dir.string(), false);
  EXPECT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->data().dtype(), kFloat32);
  EXPECT_EQ(ds->data().sizes(), (Shape{3, 3, 32, 32}));
  const double px = (1 * 31 + 2 * 1024 + 5 * 32 + 6) % 256;  // image 1, blue, row 5, col 6
  EXPECT_NEAR(ds->data()[1][2][5][6].item<float>(), px / 255.0, 1e-6);
  auto norm = nd::cifar10_dataset(tmp.dir.string(), false, /*normalize=*/true);
  EXPECT_NEAR(norm->data()[1][2][5][6].item<float>(), (px / 255.0 - nd::kCifar10Mean[2]) / nd::kCifar10Std[2], 1e-5);
  EXPECT_TRUE(all_equal(norm->target(), test.labels));

  // the official archive's folder inside the root is found too
  TempDir nested("cifarnested");
  fs::create_directories(nested.dir / "cifar-10-batches-bin");
  write_bytes((nested.dir / "cifar-10-batches-bin" / "test_batch.bin").string(), cifar_records({6}));
  EXPECT_EQ(nd::load_cifar10(nested.dir.string(), false).labels.to_vector<int64_t>(), (std::vector<int64_t>{6}));
  EXPECT_EQ(nd::kCifar10Classes.size(), 10u);
  EXPECT_EQ(nd::kCifar10Classes[6], "frog");
}

TEST(Cifar10, CorruptFilesGiveClearErrors) {
  TempDir tmp("cifarbad");
  const std::string p = tmp / "data_batch_2.bin";
  const std::string good = cifar_records({0, 1, 2});
  auto expect_error = [&](const std::string& bytes, std::vector<std::string> fragments, const char* what) {
    write_bytes(p, bytes);
    fragments.insert(fragments.begin(), p);
    EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(p); }, fragments)) << what;
  };
  ASSERT_NO_THROW(nd::read_cifar10_batch((write_bytes(p, good), p)));
  expect_error("", {"is empty"}, "an empty file");
  expect_error(good.substr(0, good.size() - 1), {"truncated", "record 2 has 3072 of its 3073 bytes"}, "the last record cut short");
  expect_error(good + "x", {"truncated", "record 3 has 1 of its 3073"}, "a byte too many");
  std::string bad = good;
  bad[2 * 3073] = 10;
  expect_error(bad, {"record 2", "byte offset 6146", "label 10", "0-9"}, "a label out of range");
  bad[2 * 3073] = static_cast<char>(255);
  expect_error(bad, {"record 2", "label 255"}, "label 255");
  // more records than a batch holds: refused from the size alone, before reading
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.seekp(static_cast<std::streamoff>(10001 * nd::kCifarRecordBytes - 1));
    f.put('\0');
  }
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(p); }, {p, "wrong size", "30733073 bytes", "10000 records"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(tmp / "missing.bin"); }, {tmp / "missing.bin", "no such file"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(tmp.dir.string()); }, {"is a directory"}));
#ifdef NABLA_HAS_ZLIB
  // a gzip bomb: 10001 zero records compress to ~30 KB; decompression stops one record past the limit
  write_gz(p, std::string(static_cast<size_t>(10001 * nd::kCifarRecordBytes), '\0'));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(p); }, {p, "wrong size", "more than the 10000 records"}));
  write_gz(p, good.substr(0, 5000));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::read_cifar10_batch(p); }, {p, "truncated", "record 1 has 1927 of its 3073"}));
  write_gz(p, good);
  std::string gz = read_bytes(p);
  expect_error(gz.substr(0, gz.size() / 2), {"gzip stream is truncated"}, "a .gz cut in half");
  expect_error(gz + "junk", {"4 bytes follow the end of the gzip stream"}, "junk after the gzip stream");
#endif
  // the split loaders: no batch files, and a root that is not a directory
  const std::string dir = tmp.dir.string() + "/empty";
  fs::create_directories(dir);
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_cifar10(dir, true); }, {dir, "data_batch_1.bin", "cifar-10-binary.tar.gz"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_cifar10(dir, false); }, {dir, "test_batch.bin"}));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_cifar10(dir + "/nope", false); }, {dir + "/nope", "not a directory"}));
  // a bad file among good ones names the bad one
  write_bytes(dir + "/data_batch_1.bin", good);
  write_bytes(dir + "/data_batch_2.bin", good.substr(0, 100));
  EXPECT_TRUE(throws_with<IOError>([&] { nd::load_cifar10(dir, true); }, {dir + "/data_batch_2.bin", "record 0 has 100"}));
}

// The real files, when $NABLA_DATA/cifar10 holds them (data_batch_1.bin.gz and test_batch.bin.gz).
TEST(Cifar10, RealCifarWhenNablaDataIsSet) {
  const char* root = std::getenv("NABLA_DATA");
  if (!root) GTEST_SKIP() << "NABLA_DATA is not set; set it to a directory with cifar10/ inside to check the real CIFAR-10";
  const std::string dir = std::string(root) + "/cifar10";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " does not exist";
  // Expected values computed independently from the .gz files with Python's gzip module: the
  // first record's label, its pixel sum and sum of (k + 1) * pixel[k], the sum of all pixels,
  // the last label and the label histogram.
  struct Expect {
    bool train;
    int64_t first_label, first_sum, first_weighted, total, last_label;
    std::vector<int64_t> hist;
  };
  for (const Expect& e : {Expect{true, 6, 318142, 417044993, 3717788622, 5, {1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981}},
                          Expect{false, 0, 475641, 707357625, 3732740007, 9, {1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}}}) {
    nd::CifarSet s = nd::load_cifar10(dir, e.train);
    ASSERT_EQ(s.images.sizes(), (Shape{10000, 3, 32, 32}));
    const std::vector<int64_t> labels = s.labels.to_vector<int64_t>();
    EXPECT_EQ(labels.front(), e.first_label);
    EXPECT_EQ(labels.back(), e.last_label);
    std::vector<int64_t> hist(10, 0);
    for (int64_t l : labels) ++hist[static_cast<size_t>(l)];
    EXPECT_EQ(hist, e.hist);
    const uint8_t* px = s.images.data_ptr<uint8_t>();
    int64_t first = 0, weighted = 0, total = 0;
    for (int64_t k = 0; k < nd::kCifarImageBytes; ++k) {
      first += px[k];
      weighted += (k + 1) * px[k];
    }
    for (int64_t k = 0; k < s.images.numel(); ++k) total += px[k];
    EXPECT_EQ(first, e.first_sum);
    EXPECT_EQ(weighted, e.first_weighted);
    EXPECT_EQ(total, e.total);
  }
}

TEST(DataLoader, BatchCountsWithAndWithoutDropLast) {
  auto ds = std::make_shared<ProbeDataset>(10);
  for (int64_t prefetch : {0, 2}) {
    nd::DataLoader keep(ds, nd::DataLoaderOptions().batch_size(3).prefetch(prefetch));
    EXPECT_EQ(keep.size(), 4);
    auto batches = epoch_batches(keep);
    ASSERT_EQ(batches.size(), 4u);
    EXPECT_EQ(batches[3], (std::vector<int64_t>{9}));
    EXPECT_EQ(batches[0], (std::vector<int64_t>{0, 1, 2})) << "no shuffle: in order";
    nd::DataLoader drop(ds, nd::DataLoaderOptions().batch_size(3).drop_last(true).prefetch(prefetch));
    EXPECT_EQ(drop.size(), 3);
    EXPECT_EQ(epoch_batches(drop).size(), 3u);
    nd::DataLoader exact(ds, nd::DataLoaderOptions().batch_size(5).drop_last(true).prefetch(prefetch));
    EXPECT_EQ(epoch_batches(exact).size(), 2u);
    nd::DataLoader big(ds, nd::DataLoaderOptions().batch_size(11).drop_last(true).prefetch(prefetch));
    EXPECT_EQ(big.size(), 0);
    EXPECT_TRUE(big.begin() == big.end());
  }
  nd::DataLoader empty_loader(std::make_shared<ProbeDataset>(0));
  EXPECT_EQ(empty_loader.size(), 0);
  EXPECT_TRUE(epoch_batches(empty_loader).empty());
  EXPECT_THROW(nd::DataLoader(ds, nd::DataLoaderOptions().batch_size(0)), ValueError);
  EXPECT_THROW(nd::DataLoader(ds, nd::DataLoaderOptions().prefetch(-1)), ValueError);
  EXPECT_THROW(nd::DataLoader(nullptr), ValueError);
}

TEST(DataLoader, ShuffleSeesEveryIndexOnceAndIsReproducible) {
  auto ds = std::make_shared<ProbeDataset>(1000);
  auto opts = nd::DataLoaderOptions().batch_size(64).shuffle(true).seed(42);
  nd::DataLoader a(ds, opts), b(ds, opts), other_seed(ds, nd::DataLoaderOptions(opts).seed(43));
  std::vector<std::vector<std::vector<int64_t>>> epochs;
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(a.epoch(), e) << "each loop runs the next epoch";
    auto batches = epoch_batches(a);
    std::vector<int64_t> flat;
    for (auto& v : batches) flat.insert(flat.end(), v.begin(), v.end());
    EXPECT_EQ(flat, a.epoch_indices(e));
    std::set<int64_t> seen(flat.begin(), flat.end());
    EXPECT_EQ(flat.size(), 1000u);
    EXPECT_EQ(seen.size(), 1000u) << "every example exactly once per epoch";
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), 999);
    EXPECT_EQ(epoch_batches(b), batches) << "same seed, same epoch: same order";
    epochs.push_back(batches);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_NE(epoch_batches(other_seed), epochs[0]);
  a.set_epoch(1);
  EXPECT_EQ(epoch_batches(a), epochs[1]) << "set_epoch replays an epoch";
  EXPECT_EQ(epoch_batches(a), epochs[2]);
  // The order is fixed by the algorithm (Fisher-Yates over Philox keyed on seed and epoch): a
  // change here breaks the reproducibility of resumed runs, so it is pinned.
  auto order = nd::epoch_order(10, true, 0, 0);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(order, nd::epoch_order(10, true, 0, 0));

  nd::DataLoader drop(ds, nd::DataLoaderOptions(opts).drop_last(true));
  std::set<int64_t> seen;
  int64_t count = 0;
  for (nd::Batch& batch : drop) {
    EXPECT_EQ(batch.target.numel(), 64);
    for (int64_t i : batch.target.to_vector<int64_t>()) seen.insert(i), ++count;
  }
  EXPECT_EQ(count, 15 * 64);
  EXPECT_EQ(seen.size(), static_cast<size_t>(count)) << "no example twice, even when the remainder is dropped";
}

TEST(DataLoader, PrefetchOnAndOffGiveIdenticalBatches) {
  auto g = rng_for("DataLoaderPrefetch");
  Tensor images = uniform({50, 3, 8, 8}, -1, 1, g).to(kFloat32);
  auto ds = std::make_shared<nd::TensorDataset>(images, arange(50));
  nd::Transform augment = tf::Compose(
      {tf::RandomCrop(6, 1), tf::RandomHorizontalFlip(0.5), tf::Normalize({0.1, -0.2, 0.3}, {0.5, 1.0, 2.0})});
  auto opts = nd::DataLoaderOptions().batch_size(8).shuffle(true).seed(7).transform(augment);
  std::vector<nd::Batch> reference;
  {
    nd::DataLoader inline_loader(ds, nd::DataLoaderOptions(opts).prefetch(0));
    inline_loader.set_epoch(2);
    for (nd::Batch& b : inline_loader) reference.push_back(b);
  }
  ASSERT_EQ(reference.size(), 7u);
  EXPECT_EQ(reference[0].data.sizes(), (Shape{8, 3, 6, 6}));
  EXPECT_EQ(reference[6].data.sizes(), (Shape{2, 3, 6, 6}));
  // batch b of epoch e is the transform of the dataset's batch with BatchRng(seed, e, b)
  nd::DataLoader probe(ds, opts);
  auto order = probe.epoch_indices(2);
  for (int64_t b = 0; b < 7; ++b) {
    std::vector<int64_t> idx(order.begin() + 8 * b, order.begin() + std::min<int64_t>(8 * b + 8, 50));
    nd::BatchRng rng(7, 2, b);
    EXPECT_TRUE(all_equal(augment(ds->get_batch(idx), rng).data, reference[static_cast<size_t>(b)].data)) << b;
  }
  for (int64_t prefetch : {1, 3, 16}) {
    nd::DataLoader loader(ds, nd::DataLoaderOptions(opts).prefetch(prefetch));
    loader.set_epoch(2);
    size_t k = 0;
    Tensor w = randn({128, 128});
    for (nd::Batch& b : loader) {
      ASSERT_LT(k, reference.size());
      EXPECT_TRUE(all_equal(b.data, reference[k].data)) << "prefetch " << prefetch << " batch " << k;
      EXPECT_TRUE(all_equal(b.target, reference[k].target)) << "prefetch " << prefetch << " batch " << k;
      EXPECT_FALSE(b.data.requires_grad());
      // the training thread computes (with autograd) while the worker prepares the next batches
      Tensor p = w.clone().requires_grad_();
      matmul(p, p).sum().backward();
      EXPECT_TRUE(GradMode::is_enabled());
      ++k;
    }
    EXPECT_EQ(k, reference.size());
  }
}

TEST(DataLoader, ExceptionsReachTheConsumer) {
  for (int64_t prefetch : {0, 1, 4}) {
    auto ds = std::make_shared<ProbeDataset>(20, /*fail_at=*/13);
    nd::DataLoader loader(ds, nd::DataLoaderOptions().batch_size(4).prefetch(prefetch));
    int64_t seen = 0;
    EXPECT_TRUE(throws_with<ValueError>(
        [&] {
          for (nd::Batch& b : loader) {
            (void)b;
            ++seen;
          }
        },
        {"probe: example 13 is unreadable"}))
        << "prefetch " << prefetch;
    EXPECT_EQ(seen, 3) << "batches 0-2 arrive, batch 3 holds example 13";
    EXPECT_EQ(ds.use_count(), 2) << "the run and its thread are gone";
    // an error in the first batch comes out of begin()
    auto first = std::make_shared<ProbeDataset>(8, 0);
    nd::DataLoader broken(first, nd::DataLoaderOptions().batch_size(4).prefetch(prefetch));
    EXPECT_TRUE(throws_with<ValueError>([&] { broken.begin(); }, {"example 0"}));
    // a failing transform too, and the loader still works afterwards
    int calls = 0;
    auto ok = std::make_shared<ProbeDataset>(8);
    nd::DataLoader flaky(ok, nd::DataLoaderOptions().batch_size(2).prefetch(prefetch).transform(
                                 [&calls](nd::Batch b, nd::BatchRng&) {
                                   if (++calls == 2) throw ShapeError("transform failed once");
                                   return b;
                                 }));
    auto it = flaky.begin();
    EXPECT_TRUE(throws_with<ShapeError>([&] { ++it; }, {"transform failed once"}));
    EXPECT_TRUE(it == flaky.end()) << "a failed run is over";
    EXPECT_EQ(epoch_batches(flaky).size(), 4u);
  }
}

TEST(DataLoader, EarlyBreakAndDestructionStopTheThread) {
  const auto tasks = [] {
    std::error_code ec;
    auto it = fs::directory_iterator("/proc/self/task", ec);
    return ec ? -1 : static_cast<int>(std::distance(it, fs::directory_iterator()));
  };
  // The thread count once it is at most `limit`, or after 2 s: a joined thread leaves
  // /proc/self/task a moment after join returns (the kernel wakes the joiner before it has torn
  // the thread down), so the count is read once it has settled. Not a timing assertion: a
  // thread that was never joined keeps the count up however long this waits.
  const auto settled_tasks = [&](int limit) {
    for (int i = 0; i < 200 && tasks() > limit; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return tasks();
  };
  auto ds = std::make_shared<ProbeDataset>(10000);
  nd::DataLoader loader(ds, nd::DataLoaderOptions().batch_size(10).prefetch(4));
  for (nd::Batch& b : loader) {  // one thread started and joined first: runtimes (TSan) add helpers lazily
    (void)b;
    break;
  }
  ds->calls = 0;
  const int threads_before = tasks();
  int n = 0;
  for (nd::Batch& b : loader) {
    (void)b;
    if (++n == 2) break;
  }
  EXPECT_EQ(ds.use_count(), 2) << "test + loader: the run let go of the dataset";
  const int calls = ds->calls.load();
  EXPECT_LE(calls, 2 + 4 + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(ds->calls.load(), calls) << "no batches are made after the loop ends";
  // at most as many threads as before: a thread of an earlier test may still be exiting (the
  // count then drops), but the prefetch thread, had it not been joined, would add one
  EXPECT_LE(settled_tasks(threads_before), threads_before) << "the prefetch thread was joined";

  // A slow dataset, abandoned mid-epoch: destruction waits for at most the batch in progress.
  auto slow = std::make_shared<ProbeDataset>(1000, -1, /*sleep_ms=*/20);
  {
    nd::DataLoader slow_loader(slow, nd::DataLoaderOptions().batch_size(10).prefetch(3));
    auto it = slow_loader.begin();
    ++it;
    EXPECT_EQ(it.index(), 1);
    it = slow_loader.end();  // drops the run, joining its thread
    // counted, not timed: 2 batches taken, 3 prefetched, the one in progress; nothing after
    const int made = slow->calls.load();
    EXPECT_LE(made, 2 + 3 + 1) << "dropping the run waits for the batch in progress only";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(slow->calls.load(), made) << "no batch is made once the run is dropped";
  }
  EXPECT_EQ(slow.use_count(), 1);

  // The iterator keeps the dataset alive, so it may outlive its loader.
  nd::DataLoader::Iterator it, end;
  {
    nd::DataLoader short_lived(std::make_shared<ProbeDataset>(30), nd::DataLoaderOptions().batch_size(7));
    it = short_lived.begin();
  }
  int64_t rest = 0;
  for (; it != end; ++it) rest += it->target.numel();
  EXPECT_EQ(rest, 30);
  EXPECT_LE(settled_tasks(threads_before), threads_before) << "every run's thread was joined";
}

TEST(DataLoader, SkipResumesMidEpochWithoutIndexingSkippedBatches) {
  auto g = rng_for("DataLoaderSkip");
  auto images = std::make_shared<nd::TensorDataset>(uniform({40, 1, 6, 6}, 0, 1, g).to(kFloat32), arange(40));
  auto opts = nd::DataLoaderOptions().batch_size(6).shuffle(true).seed(11).transform(tf::RandomCrop(4, 1));
  nd::DataLoader full(images, opts);
  full.set_epoch(5);
  std::vector<nd::Batch> all;
  for (nd::Batch& b : full) all.push_back(b);
  ASSERT_EQ(all.size(), 7u);
  for (int64_t prefetch : {0, 2}) {
    nd::DataLoader resumed(images, nd::DataLoaderOptions(opts).prefetch(prefetch));
    resumed.set_epoch(5, /*skip=*/4);  // as a --resume after batch 3 of epoch 5 would
    size_t k = 4;
    for (auto it = resumed.begin(); it != resumed.end(); ++it, ++k) {
      EXPECT_EQ(it.index(), static_cast<int64_t>(k));
      EXPECT_EQ(it.epoch(), 5);
      EXPECT_TRUE(all_equal(it->data, all[k].data)) << k;
      EXPECT_TRUE(all_equal(it->target, all[k].target)) << k;
    }
    EXPECT_EQ(k, 7u);
    EXPECT_EQ(resumed.epoch(), 6);
    EXPECT_EQ(epoch_batches(resumed).size(), 7u) << "the skip applies to one epoch only";
  }
  auto probe = std::make_shared<ProbeDataset>(100);
  nd::DataLoader loader(probe, nd::DataLoaderOptions().batch_size(10));
  int64_t n = 0;
  for (auto it = loader.begin(7); it != loader.end(); ++it) ++n;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(probe->calls.load(), 3) << "skipped batches are not indexed";
  EXPECT_TRUE(loader.begin(10) == loader.end());
  EXPECT_TRUE(throws_with<ValueError>([&] { loader.begin(11); }, {"skip 11", "10"}));
  EXPECT_THROW(loader.set_epoch(-1), ValueError);
}

TEST(DataLoader, MovesBatchesToTheDevice) {
  if (!cuda::is_available()) GTEST_SKIP() << "no CUDA device (this build or machine has none)";
  auto g = rng_for("DataLoaderDevice");
  Tensor images = uniform({40, 1, 8, 8}, 0, 1, g).to(kFloat32);
  auto cpu_set = std::make_shared<nd::TensorDataset>(images, arange(40));
  auto gpu_set = std::make_shared<nd::TensorDataset>(images.cuda(), arange(40).cuda());  // gathered on the GPU
  auto opts = nd::DataLoaderOptions().batch_size(16).shuffle(true).seed(5).transform(
      tf::Compose({tf::RandomCrop(6, 1), tf::RandomHorizontalFlip(), tf::Normalize(0.5, 0.25)}));
  nd::DataLoader reference(cpu_set, nd::DataLoaderOptions(opts).prefetch(0));
  std::vector<nd::Batch> expect;
  for (nd::Batch& b : reference) expect.push_back(b);
  for (auto set : {cpu_set, gpu_set})
    for (int64_t prefetch : {0, 2}) {
      nd::DataLoader loader(set, nd::DataLoaderOptions(opts).prefetch(prefetch).device(Device::cuda()));
      size_t k = 0;
      for (nd::Batch& b : loader) {
        ASSERT_LT(k, expect.size());
        EXPECT_TRUE(b.data.is_cuda() && b.target.is_cuda());
        EXPECT_TRUE(all_close(b.data, expect[k].data, 1e-6, 1e-6)) << "batch " << k << " prefetch " << prefetch;
        EXPECT_TRUE(all_equal(b.target, expect[k].target)) << "batch " << k;
        ++k;
      }
      EXPECT_EQ(k, expect.size());
    }
}

// ---- transforms ----------------------------------------------------------------------------------

TEST(Transforms, BatchRngIsKeyedOnSeedEpochAndBatch) {
  auto draw = [](uint64_t s, int64_t e, int64_t b) {
    nd::BatchRng r(s, e, b);
    std::vector<uint64_t> v;
    for (int k = 0; k < 9; ++k) v.push_back(r.next_u64());
    return v;
  };
  EXPECT_EQ(draw(1, 2, 3), draw(1, 2, 3));
  EXPECT_NE(draw(1, 2, 3), draw(1, 2, 4));
  EXPECT_NE(draw(1, 2, 3), draw(1, 3, 3));
  EXPECT_NE(draw(1, 2, 3), draw(2, 2, 3));
  nd::BatchRng r(0, 0, 0);
  std::vector<int> counts(5, 0);
  for (int k = 0; k < 5000; ++k) {
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    int64_t i = r.integer(-2, 3);
    ASSERT_GE(i, -2);
    ASSERT_LT(i, 3);
    ++counts[static_cast<size_t>(i + 2)];
  }
  for (int c : counts) EXPECT_GT(c, 850) << "roughly uniform";
}

TEST(Transforms, NormalizePerChannel) {
  auto g = rng_for("TransformsNormalize");
  Tensor x = uniform({4, 3, 5, 5}, 0, 1, g).to(kFloat32);
  nd::BatchRng rng(0, 0, 0);
  Tensor y = tf::Normalize({0.5, 0.25, -1.0}, {2.0, 0.5, 4.0})(nd::Batch{x, Tensor()}, rng).data;
  EXPECT_EQ(y.sizes(), x.sizes());
  const double m[] = {0.5, 0.25, -1.0}, s[] = {2.0, 0.5, 4.0};
  for (int c = 0; c < 3; ++c)
    EXPECT_TRUE(all_close(y.select(1, c), (x.select(1, c).to(kFloat64) - m[c]) / s[c], 1e-6, 1e-6)) << c;
  Tensor one = tf::Normalize(0.1307, 0.3081)(nd::Batch{x, Tensor()}, rng).data;
  EXPECT_TRUE(all_close(one, (x.to(kFloat64) - 0.1307) / 0.3081, 1e-5, 1e-5));
  EXPECT_TRUE(throws_with<ShapeError>([&] { tf::Normalize({0, 0}, {1, 1})(nd::Batch{x, Tensor()}, rng); }, {"2 means", "3 channels"}));
  EXPECT_THROW(tf::Normalize(std::vector<double>{0.0}, std::vector<double>{0.0}), ValueError);  // a zero std, per channel
  EXPECT_THROW(tf::Normalize(0.0, 0.0), ValueError);
  EXPECT_THROW(tf::Normalize({0.0, 1.0}, {1.0}), ValueError);
}

TEST(Transforms, RandomCropMatchesAReferenceLoop) {
  auto g = rng_for("TransformsCrop");
  const int64_t B = 16, C = 2, H = 7, W = 9, h = 6, w = 5, pad = 2;
  Tensor x = uniform({B, C, H, W}, 0.5, 1.5, g).to(kFloat32);  // never 0, so padding is visible
  tf::RandomCrop crop(h, w, pad);
  nd::BatchRng rng(5, 1, 3);
  Tensor y = crop(nd::Batch{x, arange(B)}, rng).data;
  ASSERT_EQ(y.sizes(), (Shape{B, C, h, w}));
  // The crop draws top then left for each image in order; replay the draws.
  nd::BatchRng replay(5, 1, 3);
  auto xs = x.to_vector<float>(), ys = y.to_vector<float>();
  std::set<std::pair<int64_t, int64_t>> offsets;
  int64_t zeros_seen = 0;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t top = replay.integer(0, H + 2 * pad - h + 1), left = replay.integer(0, W + 2 * pad - w + 1);
    offsets.insert({top, left});
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < h; ++r)
        for (int64_t q = 0; q < w; ++q) {
          const int64_t sr = r + top - pad, sq = q + left - pad;
          const float expect = (sr >= 0 && sr < H && sq >= 0 && sq < W) ? xs[static_cast<size_t>(((i * C + c) * H + sr) * W + sq)] : 0.0f;
          const float got = ys[static_cast<size_t>(((i * C + c) * h + r) * w + q)];
          ASSERT_EQ(got, expect) << "image " << i << " channel " << c << " (" << r << ", " << q << ") offset " << top << "," << left;
          zeros_seen += got == 0.0f;
        }
  }
  EXPECT_GT(offsets.size(), 4u) << "images get different windows";
  EXPECT_GT(zeros_seen, 0) << "some windows reach into the padding";
  nd::BatchRng again(5, 1, 3);
  EXPECT_TRUE(all_equal(crop(nd::Batch{x, Tensor()}, again).data, y)) << "deterministic";
  nd::BatchRng whole(0, 0, 0);
  EXPECT_TRUE(all_equal(tf::RandomCrop(H, W, 0)(nd::Batch{x, Tensor()}, whole).data, x)) << "full-size crop, no padding";
  EXPECT_TRUE(throws_with<ShapeError>([&] { tf::RandomCrop(12, 0)(nd::Batch{x, Tensor()}, whole); }, {"12x12", "does not fit"}));
  EXPECT_TRUE(throws_with<ShapeError>([&] { tf::RandomCrop(2)(nd::Batch{x.flatten(1), Tensor()}, whole); }, {"[B, C, H, W]"}));
}

TEST(Transforms, RandomHorizontalFlipReallyFlips) {
  auto g = rng_for("TransformsFlip");
  const int64_t B = 32, C = 3, H = 4, W = 5;
  Tensor x = uniform({B, C, H, W}, -1, 1, g).to(kFloat32);
  const Tensor before = x.clone();
  Tensor mirrored = zeros_like(x);
  for (int64_t q = 0; q < W; ++q) mirrored.select(3, q).copy_(x.select(3, W - 1 - q));
  nd::BatchRng rng(9, 0, 1);
  EXPECT_TRUE(all_equal(tf::RandomHorizontalFlip(1.0)(nd::Batch{x, Tensor()}, rng).data, mirrored));
  EXPECT_TRUE(all_equal(tf::RandomHorizontalFlip(0.0)(nd::Batch{x, Tensor()}, rng).data, x));
  nd::BatchRng r1(9, 0, 2), replay(9, 0, 2);
  Tensor y = tf::RandomHorizontalFlip(0.5)(nd::Batch{x, Tensor()}, r1).data;
  int flipped = 0;
  for (int64_t i = 0; i < B; ++i) {
    const bool flip = replay.bernoulli(0.5);
    flipped += flip;
    EXPECT_TRUE(all_equal(y[i], flip ? mirrored[i] : x[i])) << "image " << i;
  }
  EXPECT_GT(flipped, 4);
  EXPECT_LT(flipped, B - 4);
  EXPECT_TRUE(all_equal(x, before)) << "the input is left as it was";
  EXPECT_THROW(tf::RandomHorizontalFlip(1.5), ValueError);
}

}  // namespace
}  // namespace nabla_test
