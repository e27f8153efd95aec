#pragma once
// CIFAR-10 in its official binary layout: each file (data_batch_1.bin ... data_batch_5.bin,
// test_batch.bin) is a run of 3073-byte records, one label byte (0-9) then 3072 pixel bytes, the
// 1024 red, 1024 green and 1024 blue values of a 32x32 image in row-major order. Files may be plain
// or gzip-compressed (recognised by content; a ".gz" suffix is looked for too). The readers
// validate everything and throw nabla::IOError naming the file and the record.
//
// Bounded work for hostile files: a file may hold at most kCifarBatchRecords records (the
// format's batch size), so whatever a .gz decompresses to, no reader allocates more than one
// batch (30.7 MB) per file, and nothing before the sizes are checked against the file.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../core/tensor.hpp"
#include "../ops/all.hpp"
#include "dataset.hpp"
#include "idx.hpp"

namespace nabla {
namespace data {

inline constexpr int64_t kCifarImageBytes = 3 * 32 * 32;          // R, G, B planes of 32x32
inline constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;  // label byte first
inline constexpr int64_t kCifarBatchRecords = 10000;                // records in each official file

// CIFAR-10's per-channel pixel statistics over the 50000 training images, after scaling to [0, 1].
inline const std::vector<double> kCifar10Mean = {0.4914, 0.4822, 0.4465};
inline const std::vector<double> kCifar10Std = {0.2470, 0.2435, 0.2616};

// The class names, by label (batches.meta.txt of the official archive).
inline const std::vector<std::string> kCifar10Classes = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                         "dog",      "frog",       "horse", "ship", "truck"};

struct CifarSet {
  Tensor images;  // uint8 [N, 3, 32, 32], channels R, G, B
  Tensor labels;  // int64 [N], in [0, 10)
};

namespace detail {
// read_cifar10_batch's body, for a file or a buffer (`path` names it in errors).
inline CifarSet read_cifar10_batch_from(ByteSource& src, const std::string& path) {
  const uint64_t max_bytes = static_cast<uint64_t>(kCifarBatchRecords * kCifarRecordBytes);
  const std::string layout = " (CIFAR-10 records are 3073 bytes: 1 label byte, then 3072 pixel bytes)";
  auto cut_short = [&](uint64_t total) {
    const uint64_t whole = total / kCifarRecordBytes, rest = total % kCifarRecordBytes;
    data_fail(path, "truncated: record " + std::to_string(whole) + " has " + std::to_string(rest) + " of its " +
                        std::to_string(kCifarRecordBytes) + " bytes (" + std::to_string(total) +
                        " bytes is not a whole number of records)" + layout);
  };
  std::vector<unsigned char> raw;
  if (!src.gzip()) {  // exact checks on the size before allocating anything
    const uint64_t size = src.file_size();
    if (size == 0) data_fail(path, "is empty: a CIFAR-10 batch holds at least one record" + layout);
    if (size > max_bytes)
      data_fail(path, "wrong size: " + std::to_string(size) + " bytes is more than the " +
                          std::to_string(kCifarBatchRecords) + " records of a CIFAR-10 batch (" +
                          std::to_string(max_bytes) + " bytes)");
    if (size % kCifarRecordBytes != 0) cut_short(size);
    raw.resize(static_cast<size_t>(size));
    const size_t got = src.read(raw.data(), raw.size());
    if (got != raw.size()) cut_short(got);  // the file shrank while read
  } else {
    // Decompressed a record's worth at a time, so a gzip bomb stops at one batch plus a record.
    // Deflate expands at most ~1032:1, so more than that per compressed byte is already corrupt.
    const uint64_t limit = std::min<uint64_t>(max_bytes, 1100 * src.file_size() + kCifarRecordBytes);
    uint64_t total = 0;
    for (;;) {
      raw.resize(static_cast<size_t>(total + kCifarRecordBytes));
      const size_t got = src.read(raw.data() + total, static_cast<size_t>(kCifarRecordBytes));
      total += got;
      if (got < static_cast<size_t>(kCifarRecordBytes)) break;
      if (total > limit) {
        if (total > max_bytes)
          data_fail(path, "wrong size: decompresses to more than the " + std::to_string(kCifarBatchRecords) +
                              " records of a CIFAR-10 batch (" + std::to_string(max_bytes) + " bytes)");
        data_fail(path, "corrupt: decompresses to more than a " + std::to_string(src.file_size()) +
                            "-byte gzip file can hold");
      }
    }
    raw.resize(static_cast<size_t>(total));
    if (total == 0) data_fail(path, "is empty: a CIFAR-10 batch holds at least one record" + layout);
    if (total % kCifarRecordBytes != 0) cut_short(total);
  }
  const int64_t n = static_cast<int64_t>(raw.size() / kCifarRecordBytes);
  CifarSet set;
  set.images = empty({n, 3, 32, 32}, kUInt8);
  set.labels = empty({n}, kInt64);
  unsigned char* img = set.images.data_ptr<uint8_t>();
  int64_t* lab = set.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* rec = raw.data() + i * kCifarRecordBytes;
    if (rec[0] >= 10)
      data_fail(path, "record " + std::to_string(i) + " (byte offset " + std::to_string(i * kCifarRecordBytes) +
                          ") has label " + std::to_string(rec[0]) + ", not a CIFAR-10 class 0-9");
    lab[i] = rec[0];
    std::memcpy(img + i * kCifarImageBytes, rec + 1, static_cast<size_t>(kCifarImageBytes));
  }
  return set;
}
// The folder that holds the batch files: `root` itself, or the `cifar-10-batches-bin` folder the
// official archive extracts to, inside it.
inline std::string cifar10_folder(const std::string& root) {
  std::error_code ec;
  const std::filesystem::path sub = std::filesystem::path(root) / "cifar-10-batches-bin";
  if (std::filesystem::is_directory(sub, ec)) return sub.string();
  return root;
}
}  // namespace detail

// One CIFAR-10 binary file (plain or gzip): a whole number of records, at least one and at most
// kCifarBatchRecords. Throws IOError naming the file (and the record, for a bad label or a
// record cut short).
inline CifarSet read_cifar10_batch(const std::string& path) {
  detail::ByteSource src(path);
  return detail::read_cifar10_batch_from(src, path);
}
// The same from the bytes of a file already in memory (plain or gzip); `name` stands for the
// file in error messages.
inline CifarSet read_cifar10_batch(std::span<const uint8_t> bytes, const std::string& name = "<memory>") {
  detail::ByteSource src(bytes, name);
  return detail::read_cifar10_batch_from(src, name);
}

// The training split (whichever of data_batch_1..5 are present, in that order: the official set
// has all five, 50000 images) or the test split (test_batch, 10000 images) from `root`. Each file
// is looked for as `<name>.bin`, `<name>.bin.gz`, `<name>` and `<name>.gz`.
inline CifarSet load_cifar10(const std::string& root, bool train) {
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec))
    throw IOError("nabla::data: load_cifar10: " + root + " is not a directory (it should hold the CIFAR-10 binary files "
                  "data_batch_1.bin ... data_batch_5.bin and test_batch.bin, or the cifar-10-batches-bin folder)");
  const std::string dir = detail::cifar10_folder(root);
  auto locate = [&](const std::string& name) {
    std::string p = detail::find_with_gz(dir, name + ".bin");
    return p.empty() ? detail::find_with_gz(dir, name) : p;
  };
  std::vector<std::string> paths;
  if (train) {
    for (int k = 1; k <= 5; ++k)
      if (std::string p = locate("data_batch_" + std::to_string(k)); !p.empty()) paths.push_back(p);
  } else if (std::string p = locate("test_batch"); !p.empty()) {
    paths.push_back(p);
  }
  if (paths.empty())
    throw IOError("nabla::data: load_cifar10: no " + std::string(train ? "training batch (data_batch_1.bin ... data_batch_5.bin)"
                                                                       : "test batch (test_batch.bin)") +
                  " in " + dir + ", plain or .gz (get the binary version, cifar-10-binary.tar.gz, from "
                  "https://www.cs.toronto.edu/~kriz/cifar.html)");
  std::vector<Tensor> images, labels;
  for (const std::string& p : paths) {
    CifarSet b = read_cifar10_batch(p);
    images.push_back(b.images);
    labels.push_back(b.labels);
  }
  if (paths.size() == 1) return CifarSet{images[0], labels[0]};
  NoGradGuard no_grad;
  return CifarSet{cat(images, 0), cat(labels, 0)};
}

// CIFAR-10 from `root` (see load_cifar10) as float32 images [N, 3, 32, 32] scaled to [0, 1] (as
// torchvision's ToTensor) and int64 targets [N]. Not normalised: pad-and-crop augmentation pads
// with black before normalising, so compose transforms::Normalize(kCifar10Mean, kCifar10Std)
// after it (or pass normalize = true when there is no augmentation).
inline std::shared_ptr<TensorDataset> cifar10_dataset(const std::string& root, bool train, bool normalize = false) {
  CifarSet set = load_cifar10(root, train);
  NoGradGuard no_grad;
  Tensor x = set.images.to(kFloat32).div_(255.0);  // as torchvision ToTensor: a division, not * (1 / 255)
  if (normalize) {
    x.sub_(from_vector(kCifar10Mean, Shape{1, 3, 1, 1}, kFloat32)).div_(from_vector(kCifar10Std, Shape{1, 3, 1, 1}, kFloat32));
  }
  return std::make_shared<TensorDataset>(x, set.labels);
}

}  // namespace data
}  // namespace nabla
