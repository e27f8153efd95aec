// libFuzzer target: the IDX reader, plain and gzip (the first byte picks how the rest is stored and read;
// see nabla_fuzz::file_bytes). Invariants: a refusal is a nabla::IOError; a loaded tensor is
// contiguous, of a positive size, and fully readable.
#include "fuzz_util.hpp"

#include <nabla/data.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  static const std::string path = nabla_fuzz::scratch_file("idx");
  std::vector<uint8_t> bytes;
  if (!nabla_fuzz::file_bytes(data, size, bytes)) return 0;
  Tensor t;
  try {
    t = nabla_fuzz::from_file(data) ? data::read_idx((nabla_fuzz::write_file(path, bytes.data(), bytes.size()), path))
                                    : data::read_idx(std::span<const uint8_t>(bytes));
  } catch (const IOError&) {
    return 0;
  }
  NABLA_FUZZ_CHECK(t.defined() && t.is_contiguous() && t.numel() > 0 && t.dim() > 0);
  NABLA_FUZZ_CHECK(t.nbytes() == static_cast<size_t>(t.numel()) * element_size(t.dtype()));
  nabla_fuzz::touch(t);
  return 0;
}
