#pragma once
// Scratch files for the tests: a fresh folder per test in the system temp folder (TMPDIR
// honoured), removed when the test ends, and whole-file reads and writes.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace nabla_test {

struct TempDir {
  std::filesystem::path dir;
  // <temp>/<suite>_<name>_<pid>: unique per process, so parallel ctest runs never share one
  TempDir(const std::string& suite, const std::string& name) {
    dir = std::filesystem::temp_directory_path() / (suite + "_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;  // never throw from a destructor; a leftover folder is harmless
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& f) const { return (dir / f).string(); }
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace nabla_test
