// libFuzzer target: the CIFAR-10 batch reader, plain and gzip (the first byte picks how the rest
// is stored and read; see nabla_fuzz::file_bytes). Invariants: a refusal is a nabla::IOError; what loads
// is N whole records (N >= 1, at most a batch), images uint8 [N, 3, 32, 32] and labels in 0-9
// that are exactly the file's bytes, and no more than a batch is ever held.
#include "fuzz_util.hpp"

#include <cstring>

#include <nabla/data.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  static const std::string path = nabla_fuzz::scratch_file("cifar");
  std::vector<uint8_t> bytes;
  if (!nabla_fuzz::file_bytes(data, size, bytes)) return 0;
  data::CifarSet set;
  try {
    set = nabla_fuzz::from_file(data) ? data::read_cifar10_batch((nabla_fuzz::write_file(path, bytes.data(), bytes.size()), path))
                                    : data::read_cifar10_batch(std::span<const uint8_t>(bytes));
  } catch (const IOError&) {
    return 0;
  }
  const int64_t n = set.labels.numel();
  NABLA_FUZZ_CHECK(n >= 1 && n <= data::kCifarBatchRecords);
  NABLA_FUZZ_CHECK(set.images.dtype() == kUInt8 && set.images.sizes() == (Shape{n, 3, 32, 32}) && set.images.is_contiguous());
  NABLA_FUZZ_CHECK(set.labels.dtype() == kInt64 && set.labels.dim() == 1 && set.labels.is_contiguous());
  const int64_t* lab = set.labels.data_ptr<int64_t>();
  const uint8_t* img = set.images.data_ptr<uint8_t>();
  const bool gzip = bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;  // compressed here, or given so
  if (!gzip) {  // a plain file: the tensors are its bytes exactly
    NABLA_FUZZ_CHECK(bytes.size() == static_cast<size_t>(n * data::kCifarRecordBytes));
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* rec = bytes.data() + i * data::kCifarRecordBytes;
      NABLA_FUZZ_CHECK(lab[i] == rec[0]);
      NABLA_FUZZ_CHECK(std::memcmp(img + i * data::kCifarImageBytes, rec + 1, data::kCifarImageBytes) == 0);
    }
  }
  for (int64_t i = 0; i < n; ++i) NABLA_FUZZ_CHECK(lab[i] >= 0 && lab[i] < 10);
  nabla_fuzz::touch(set.images);
  return 0;
}
