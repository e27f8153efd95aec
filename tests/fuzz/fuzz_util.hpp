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

#include <nabla/nabla.hpp>

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

}  // namespace nabla_fuzz
