// libFuzzer target: the safetensors reader, from memory. Invariants: a refusal is a nabla::IOError;
// a loaded file's tensors hold exactly numel * element_size readable bytes; saving what was
// loaded and loading it again gives the same tensors and metadata, and saving that again gives
// the same bytes.
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  io::SafetensorsFile f;
  try {
    f = io::load_safetensors(std::span<const uint8_t>(data, size), "fuzz");
  } catch (const IOError&) {
    return 0;
  }
  nabla_fuzz::touch(f);
  const std::vector<uint8_t> once = io::serialize_safetensors(f.tensors, f.metadata);
  const io::SafetensorsFile again = io::load_safetensors(std::span<const uint8_t>(once), "fuzz round trip");
  NABLA_FUZZ_CHECK(again.metadata == f.metadata);
  NABLA_FUZZ_CHECK(again.tensors.size() == f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    const Tensor* u = again.tensors.find(name);
    NABLA_FUZZ_CHECK(u && u->dtype() == t.dtype() && u->sizes() == t.sizes());
    NABLA_FUZZ_CHECK(t.nbytes() == 0 || std::memcmp(u->data_ptr(), t.data_ptr(), t.nbytes()) == 0);
  }
  NABLA_FUZZ_CHECK(io::serialize_safetensors(again.tensors, again.metadata) == once);
  return 0;
}
