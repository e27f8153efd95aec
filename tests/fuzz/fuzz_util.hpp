#pragma once
// Shared by the libFuzzer targets: what "no finding" means. A target may only throw nabla::Error
// (a clear refusal); any other exception escapes and libFuzzer reports it, as it reports every
// ASan/UBSan error and every failed invariant (check() aborts).

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

#ifdef NABLA_HAS_ZLIB
#include <zlib.h>
#endif

namespace nabla_fuzz {

#define NABLA_FUZZ_CHECK(cond)                                                  \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

// Every byte of every element is read (so ASan sees an out-of-bounds tensor), and each tensor
// holds exactly numel * element_size bytes.
inline void touch(const nabla::io::SafetensorsFile& f) {
  for (const auto& [name, t] : f.tensors) {
    NABLA_FUZZ_CHECK(t.defined() && t.is_contiguous());
    NABLA_FUZZ_CHECK(t.nbytes() == static_cast<size_t>(t.numel()) * nabla::element_size(t.dtype()));
    const unsigned char* p = static_cast<const unsigned char*>(t.data_ptr());
    unsigned sum = 0;
    for (size_t k = 0; k < t.nbytes(); ++k) sum += p[k];
    volatile unsigned sink = sum;
    (void)sink;
  }
}

// A file of this process's own in the temp folder (TMPDIR, else the system's), for readers that take a path.
inline std::string scratch_file(const char* what) {
  return (std::filesystem::temp_directory_path() / ("nabla_fuzz_" + std::string(what) + "_" + std::to_string(::getpid()))).string();
}
inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// The readers of files that may be gzipped (IDX, CIFAR-10) are fuzzed several ways, picked by the
// first byte of the input. Bit 0: clear = the rest as is (so the fuzzer also mutates gzip bytes of
// the seed .gz files), set = the rest gzip-compressed here first (so it mutates the content inside
// a valid gzip stream). Bit 1 (see from_file): set = read through a scratch file, clear = from
// memory (faster; the same reader behind a different byte source). Returns false when the input
// is empty (nothing to test).
inline bool file_bytes(const uint8_t* data, size_t size, std::vector<uint8_t>& bytes) {
  if (size == 0) return false;
  bytes.assign(data + 1, data + size);
#ifdef NABLA_HAS_ZLIB
  if (data[0] & 1) {
    std::vector<uint8_t> gz(compressBound(static_cast<uLong>(bytes.size())) + 32);
    z_stream z{};
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
    z.next_in = bytes.data();
    z.avail_in = static_cast<uInt>(bytes.size());
    z.next_out = gz.data();
    z.avail_out = static_cast<uInt>(gz.size());
    const int rc = deflate(&z, Z_FINISH);
    gz.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return false;
    bytes = std::move(gz);
  }
#endif
  return true;
}

inline bool from_file(const uint8_t* data) { return (data[0] & 2) != 0; }

// Every byte of a tensor is read, so ASan sees one that is smaller than it says.
inline void touch(const nabla::Tensor& t) {
  const unsigned char* p = static_cast<const unsigned char*>(t.data_ptr());
  unsigned sum = 0;
  for (size_t k = 0; k < t.nbytes(); ++k) sum += p[k];
  volatile unsigned sink = sum;
  (void)sink;
}

}  // namespace nabla_fuzz
