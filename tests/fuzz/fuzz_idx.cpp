// libFuzzer target: the IDX reader, plain and gzip. The first byte picks how the rest is stored:
// even = as is (so the fuzzer also mutates gzip bytes of the seed .gz files), odd = gzip-compressed
// here first (so it mutates the IDX content inside a valid gzip stream). Invariants: a refusal is
// a nabla::IOError; a loaded tensor is contiguous, of a positive size, and fully readable.
#include "fuzz_util.hpp"

#include <nabla/data.hpp>

#ifdef NABLA_HAS_ZLIB
#include <zlib.h>
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  if (size == 0) return 0;
  static const std::string path = nabla_fuzz::scratch_file("idx");
  std::vector<uint8_t> bytes(data + 1, data + size);
#ifdef NABLA_HAS_ZLIB
  if (data[0] & 1) {
    uLongf n = compressBound(static_cast<uLong>(bytes.size())) + 32;
    std::vector<uint8_t> gz(n);
    z_stream z{};
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    z.next_in = bytes.data();
    z.avail_in = static_cast<uInt>(bytes.size());
    z.next_out = gz.data();
    z.avail_out = static_cast<uInt>(gz.size());
    const int rc = deflate(&z, Z_FINISH);
    gz.resize(z.total_out);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return 0;
    bytes = std::move(gz);
  }
#endif
  nabla_fuzz::write_file(path, bytes.data(), bytes.size());
  Tensor t;
  try {
    t = data::read_idx(path);
  } catch (const IOError&) {
    return 0;
  }
  NABLA_FUZZ_CHECK(t.defined() && t.is_contiguous() && t.numel() > 0 && t.dim() > 0);
  const unsigned char* p = static_cast<const unsigned char*>(t.data_ptr());
  unsigned sum = 0;
  for (size_t k = 0; k < t.nbytes(); ++k) sum += p[k];
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}
