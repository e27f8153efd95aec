#pragma once
// safetensors read/write (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {..}},
// then the data. The reader validates everything and throws nabla::IOError naming the file and
// the problem; the writer replaces the file atomically (write path.tmp, fsync, rename; without
// POSIX headers, std::ofstream + std::filesystem::rename and no fsync).

// POSIX gives the durable write (fsync of the file and of its directory); elsewhere a portable
// std::ofstream + std::filesystem::rename fallback keeps the write-temp-then-rename semantics.
#if !defined(_WIN32) && defined(__has_include)
#if __has_include(<unistd.h>) && __has_include(<fcntl.h>)
#define NABLA_IO_POSIX 1
#endif
#endif
#ifdef NABLA_IO_POSIX
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../nn/module.hpp"
#include "json.hpp"

namespace nabla {
namespace io {

static_assert(std::endian::native == std::endian::little, "nabla::io: safetensors I/O assumes a little-endian host");

using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  nn::OrderedDict<Tensor> tensors;  // in file order of data offsets
  Metadata metadata;                // "__metadata__", empty when absent
};

namespace detail {
inline const char* safetensors_dtype(DType t) {
  switch (t) {
    case kFloat32: return "F32";
    case kFloat64: return "F64";
    case kFloat16: return "F16";
    case kBFloat16: return "BF16";
    case kInt32: return "I32";
    case kInt64: return "I64";
    case kUInt8: return "U8";
    case kBool: return "BOOL";
  }
  return "?";
}
inline bool dtype_from_safetensors(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {{"F32", kFloat32}, {"F64", kFloat64}, {"F16", kFloat16},
                                                        {"BF16", kBFloat16}, {"I32", kInt32}, {"I64", kInt64},
                                                        {"U8", kUInt8}, {"BOOL", kBool}};
  for (const auto& [name, dt] : table)
    if (s == name) return out = dt, true;
  return false;
}

[[noreturn]] inline void io_fail(const std::string& path, const std::string& what) {
  throw IOError("nabla::io: " + path + ": " + what);
}
inline std::string errno_str() { return std::strerror(errno); }

// Writes a file through `path.tmp` in the same directory and renames it over `path`: a failed
// write leaves the old file intact. `produce(write)` emits the bytes through write(ptr, n).
// The portable version (any C++17 library): std::ofstream, then std::filesystem::rename,
// which replaces an existing file on POSIX and Windows alike. It cannot fsync, so the new
// contents are durable only once the OS flushes them; atomic_write uses the POSIX version
// where <unistd.h> exists.
template <class Produce>
void atomic_write_portable(const std::string& path, Produce&& produce) {
  const std::string tmp = path + ".tmp";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) io_fail(path, "cannot create " + tmp + ": " + errno_str());
  auto abandon = [&](const std::string& what) {
    f.close();
    std::remove(tmp.c_str());
    io_fail(path, what + " (the previous file, if any, is unchanged)");
  };
  auto write = [&](const void* data, size_t n) {
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
    if (!f) abandon("write to " + tmp + " failed");
  };
  try {
    produce(write);
  } catch (const IOError&) {
    throw;
  } catch (const std::exception& e) {
    abandon(std::string("writing failed: ") + e.what());
  }
  f.flush();
  if (!f) abandon("flush of " + tmp + " failed");
  f.close();
  if (f.fail()) {
    std::remove(tmp.c_str());
    io_fail(path, "close of " + tmp + " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    io_fail(path, "rename of " + tmp + " failed: " + ec.message());
  }
}

#ifdef NABLA_IO_POSIX
// POSIX: as atomic_write_portable, plus fsync of the file before the rename and of the
// directory after it, so that a crash leaves either the old or the complete new file.
template <class Produce>
void atomic_write_posix(const std::string& path, Produce&& produce) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) io_fail(path, "cannot create " + tmp + ": " + errno_str());
  auto abandon = [&](const std::string& what) {
    ::close(fd);
    ::unlink(tmp.c_str());
    io_fail(path, what + " (the previous file, if any, is unchanged)");
  };
  auto write = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) abandon("write to " + tmp + " failed: " + (w < 0 ? errno_str() : std::string("no progress")));
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  try {
    produce(write);
  } catch (const IOError&) {
    throw;
  } catch (const std::exception& e) {
    abandon(std::string("writing failed: ") + e.what());
  }
  if (::fsync(fd) != 0) abandon("fsync of " + tmp + " failed: " + errno_str());
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    io_fail(path, "close of " + tmp + " failed: " + errno_str());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = errno_str();
    ::unlink(tmp.c_str());
    io_fail(path, "rename of " + tmp + " failed: " + why);
  }
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {  // makes the rename itself durable; best effort (some filesystems refuse)
    ::fsync(dfd);
    ::close(dfd);
  }
}
#endif

template <class Produce>
void atomic_write(const std::string& path, Produce&& produce) {
#ifdef NABLA_IO_POSIX
  atomic_write_posix(path, std::forward<Produce>(produce));
#else
  atomic_write_portable(path, std::forward<Produce>(produce));
#endif
}
}  // namespace detail

// Writes `tensors` (any device, dtype and layout; stored contiguous, in order) and optional
// string metadata. The file is replaced atomically.
inline void save_safetensors(const std::string& path, const nn::OrderedDict<Tensor>& tensors, const Metadata& metadata = {}) {
  std::vector<Tensor> cpu;
  json::Object header;
  if (!metadata.empty()) {
    json::Object m;
    for (const auto& [k, v] : metadata) m.emplace_back(k, json::Value::string(v));
    header.emplace_back("__metadata__", json::Value::object(std::move(m)));
  }
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    NABLA_CHECK(t.defined(), ValueError, "io::save_safetensors: tensor \"", name, "\" is undefined");
    NABLA_CHECK(name != "__metadata__", ValueError, "io::save_safetensors: \"__metadata__\" is reserved");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    json::Array shape;
    for (int64_t d : c.sizes()) shape.push_back(json::Value::integer(d));
    int64_t n = static_cast<int64_t>(c.nbytes());
    header.emplace_back(name, json::Value::object({{"dtype", json::Value::string(detail::safetensors_dtype(c.dtype()))},
                                                   {"shape", json::Value::array(std::move(shape))},
                                                   {"data_offsets", json::Value::array({json::Value::integer(offset),
                                                                                        json::Value::integer(offset + n)})}}));
    offset += n;
    cpu.push_back(c);
  }
  std::string text = json::dump(json::Value::object(std::move(header)));
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as the Python writer does
  detail::atomic_write(path, [&](auto& write) {
    uint64_t n = text.size();
    write(&n, 8);
    write(text.data(), text.size());
    for (const Tensor& c : cpu)
      if (c.nbytes() > 0) write(c.data_ptr(), c.nbytes());
  });
}

// Reads and validates a whole safetensors file into CPU tensors.
inline SafetensorsFile load_safetensors(const std::string& path) {
  using detail::io_fail;
  std::ifstream f(path, std::ios::binary);
  if (!f) io_fail(path, "cannot open for reading: " + detail::errno_str());
  f.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  if (size < 8) io_fail(path, "truncated: " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  if (n > size - 8)
    io_fail(path, "header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                      " bytes after the length field (truncated file or corrupt header length)");
  if (n > (uint64_t{100} << 20)) io_fail(path, "header length " + std::to_string(n) + " is over the 100 MB limit");
  std::string text(n, '\0');
  f.read(text.data(), static_cast<std::streamsize>(n));
  if (!f) io_fail(path, "read error in the header");
  if (n == 0 || text[0] != '{') io_fail(path, "header does not start with '{'");
  json::Value header;
  try {
    header = json::parse(text);
  } catch (const json::ParseError& e) {
    io_fail(path, std::string("malformed JSON header: ") + e.what());
  }
  if (!header.is_object()) io_fail(path, "header is not a JSON object");

  const uint64_t data_size = size - 8 - n;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  SafetensorsFile out;
  for (const auto& [name, v] : *header.obj) {
    auto bad = [&](const std::string& what) { io_fail(path, "tensor \"" + name + "\": " + what); };
    if (name == "__metadata__") {
      if (!v.is_object()) io_fail(path, "__metadata__ must be an object of strings");
      for (const auto& [k, s] : *v.obj) {
        if (!s.is_string()) io_fail(path, "__metadata__ value for \"" + k + "\" is not a string");
        out.metadata[k] = s.s;
      }
      continue;
    }
    if (!v.is_object()) bad("entry is not an object");
    for (const auto& [k, unused] : *v.obj)
      if (k != "dtype" && k != "shape" && k != "data_offsets") bad("unknown field \"" + k + "\"");
    const json::Value *dt = v.get("dtype"), *sh = v.get("shape"), *off = v.get("data_offsets");
    if (!dt || !sh || !off) bad("needs dtype, shape and data_offsets");
    Entry e{name, kFloat32, {}, 0, 0};
    if (!dt->is_string() || !detail::dtype_from_safetensors(dt->s, e.dtype))
      bad("unsupported dtype " + (dt->is_string() ? "\"" + dt->s + "\"" : json::dump(*dt)) +
          " (known: F32 F64 F16 BF16 I32 I64 U8 BOOL)");
    if (!sh->is_array()) bad("shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : *sh->arr) {
      if (!d.is_int() || d.i < 0) bad("shape " + json::dump(*sh) + " must hold non-negative integers");
      if (d.i > 0 && numel > (uint64_t{1} << 62) / static_cast<uint64_t>(d.i)) bad("shape " + json::dump(*sh) + " is too large");
      numel *= static_cast<uint64_t>(d.i);
      e.shape.push_back(d.i);
    }
    if (!off->is_array() || off->arr->size() != 2 || !(*off->arr)[0].is_int() || !(*off->arr)[1].is_int() ||
        (*off->arr)[0].i < 0 || (*off->arr)[1].i < (*off->arr)[0].i)
      bad("data_offsets " + json::dump(*off) + " must be [begin, end] with 0 <= begin <= end");
    e.begin = static_cast<uint64_t>((*off->arr)[0].i);
    e.end = static_cast<uint64_t>((*off->arr)[1].i);
    if (e.end > data_size)
      bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] run past the end of the " +
          std::to_string(data_size) + "-byte data section");
    if (e.end - e.begin != numel * element_size(e.dtype))
      bad("shape " + shape_str(e.shape) + " of " + dt->s + " needs " + std::to_string(numel * element_size(e.dtype)) +
          " bytes but data_offsets span " + std::to_string(e.end - e.begin));
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const Entry& e : entries) {
    if (e.begin < expect)
      io_fail(path, "tensor \"" + e.name + "\": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                        "] overlap the previous tensor (which ends at " + std::to_string(expect) + ")");
    if (e.begin > expect)
      io_fail(path, "bytes [" + std::to_string(expect) + ", " + std::to_string(e.begin) +
                        ") of the data section belong to no tensor (hole before \"" + e.name + "\")");
    expect = e.end;
  }
  if (expect != data_size)
    io_fail(path, "the data section has " + std::to_string(data_size) + " bytes but the tensors cover " + std::to_string(expect));

  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    if (t.nbytes() > 0) {
      f.seekg(static_cast<std::streamoff>(8 + n + e.begin));
      f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
      if (!f) io_fail(path, "read error in the data of \"" + e.name + "\"");
    }
    if (e.dtype == kBool) {
      const uint8_t* b = static_cast<const uint8_t*>(t.data_ptr());
      for (int64_t k = 0; k < t.numel(); ++k)
        if (b[k] > 1) io_fail(path, "tensor \"" + e.name + "\": BOOL element " + std::to_string(k) + " is " + std::to_string(b[k]) + ", not 0 or 1");
    }
    out.tensors.insert(e.name, t);
  }
  return out;
}

}  // namespace io
}  // namespace nabla
