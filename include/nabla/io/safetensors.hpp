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
#include <span>
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

namespace detail {
// What a safetensors file holds: the header text (padded so the data starts 8-byte aligned, as
// the Python writer does) and the tensors, contiguous on the CPU, in order.
struct SafetensorsImage {
  std::string header;
  std::vector<Tensor> cpu;
};
inline SafetensorsImage safetensors_image(const nn::OrderedDict<Tensor>& tensors, const Metadata& metadata, const char* op) {
  SafetensorsImage out;
  json::Object header;
  // every name and string is UTF-8, as the format (JSON) requires and Hugging Face's reader checks
  if (!metadata.empty()) {
    json::Object m;
    for (const auto& [k, v] : metadata) {
      NABLA_CHECK(json::valid_utf8(k) && json::valid_utf8(v), ValueError, op, ": metadata \"", k,
                  "\" is not valid UTF-8 (safetensors headers are JSON, which is UTF-8)");
      m.emplace_back(k, json::Value::string(v));
    }
    header.emplace_back("__metadata__", json::Value::object(std::move(m)));
  }
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    NABLA_CHECK(t.defined(), ValueError, op, ": tensor \"", name, "\" is undefined");
    NABLA_CHECK(name != "__metadata__", ValueError, op, ": \"__metadata__\" is reserved");
    NABLA_CHECK(json::valid_utf8(name), ValueError, op, ": tensor name \"", name,
                "\" is not valid UTF-8 (safetensors headers are JSON, which is UTF-8)");
    Tensor c = t.detach().to(Device::cpu()).contiguous();
    json::Array shape;
    for (int64_t d : c.sizes()) shape.push_back(json::Value::integer(d));
    const int64_t n = checked_nbytes(c.numel(), element_size(c.dtype()), op);
    NABLA_CHECK(n == static_cast<int64_t>(c.nbytes()) && offset <= INT64_MAX - n, ValueError, op, ": tensor \"", name,
                "\" of shape ", shape_str(c.sizes()), " does not fit in a file (over 2^63 bytes)");
    header.emplace_back(name, json::Value::object({{"dtype", json::Value::string(safetensors_dtype(c.dtype()))},
                                                   {"shape", json::Value::array(std::move(shape))},
                                                   {"data_offsets", json::Value::array({json::Value::integer(offset),
                                                                                        json::Value::integer(offset + n)})}}));
    offset += n;
    out.cpu.push_back(c);
  }
  out.header = json::dump(json::Value::object(std::move(header)));
  out.header.append((8 - out.header.size() % 8) % 8, ' ');
  return out;
}
}  // namespace detail

// Writes `tensors` (any device, dtype and layout; stored contiguous, in order) and optional
// string metadata. The file is replaced atomically. Names and metadata must be valid UTF-8.
inline void save_safetensors(const std::string& path, const nn::OrderedDict<Tensor>& tensors, const Metadata& metadata = {}) {
  const detail::SafetensorsImage image = detail::safetensors_image(tensors, metadata, "io::save_safetensors");
  detail::atomic_write(path, [&](auto& write) {
    uint64_t n = image.header.size();
    write(&n, 8);
    write(image.header.data(), image.header.size());
    for (const Tensor& c : image.cpu)
      if (c.nbytes() > 0) write(c.data_ptr(), c.nbytes());
  });
}

// The bytes save_safetensors would write, in memory (as Python's safetensors.torch.save).
inline std::vector<uint8_t> serialize_safetensors(const nn::OrderedDict<Tensor>& tensors, const Metadata& metadata = {}) {
  const detail::SafetensorsImage image = detail::safetensors_image(tensors, metadata, "io::serialize_safetensors");
  size_t total = 8 + image.header.size();
  for (const Tensor& c : image.cpu) total += c.nbytes();
  std::vector<uint8_t> out(total);
  const uint64_t n = image.header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, image.header.data(), image.header.size());
  size_t at = 8 + image.header.size();
  for (const Tensor& c : image.cpu) {
    if (c.nbytes() > 0) std::memcpy(out.data() + at, c.data_ptr(), c.nbytes());
    at += c.nbytes();
  }
  return out;
}

namespace detail {
struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// The most dimensions a stored tensor may have. The format sets no limit; this one keeps a
// hostile header's cost bounded (a shape is kept as 8 bytes per dimension) and is far beyond
// any real tensor.
inline constexpr size_t kSafetensorsMaxRank = 64;

// Reads one tensor entry ({"dtype", "shape", "data_offsets"}, each once, nothing else) while
// validating it: sizes are checked as they are read, so nothing is built for a hostile entry.
inline SafetensorsEntry read_safetensors_entry(const std::string& path, json::Reader& r, std::string name,
                                               uint64_t data_size) {
  SafetensorsEntry e{std::move(name), kFloat32, {}, 0, 0};
  // names are cut short in messages: a hostile megabyte-long name is not copied into each one
  auto bad = [&](const std::string& what) {
    io_fail(path, "tensor \"" + e.name.substr(0, 200) + (e.name.size() > 200 ? "...\": " : "\": ") + what);
  };
  if (r.next() != json::Reader::Next::Object) bad("entry is not an object");
  bool has_dtype = false, has_shape = false, has_offsets = false;
  std::string dtype_name;
  std::string field = "entry";  // named in a JSON error inside the entry
  try {
    r.begin_object();
    for (std::string key; r.next_key(key);) {
      field = key.substr(0, 40);
      if (key == "dtype") {
        if (has_dtype) bad("dtype given twice");
        has_dtype = true;
        if (r.next() != json::Reader::Next::String) bad("dtype is not a string");
        dtype_name = r.read_string();
        if (!dtype_from_safetensors(dtype_name, e.dtype))
          bad("unsupported dtype \"" + dtype_name.substr(0, 40) + "\" (known: F32 F64 F16 BF16 I32 I64 U8 BOOL)");
      } else if (key == "shape") {
        if (has_shape) bad("shape given twice");
        has_shape = true;
        if (r.next() != json::Reader::Next::Array) bad("shape is not an array");
        r.begin_array();
        while (r.next_element()) {
          if (e.shape.size() == kSafetensorsMaxRank)
            bad("shape has more than " + std::to_string(kSafetensorsMaxRank) + " dimensions");
          if (r.next() != json::Reader::Next::Number) bad("shape " + shape_str(e.shape) + "...: sizes must be integers");
          json::Reader::Number d = r.read_number();
          if (!d.is_int || d.i < 0) bad("shape " + shape_str(e.shape) + "...: sizes must be non-negative integers");
          e.shape.push_back(d.i);
        }
      } else if (key == "data_offsets") {
        if (has_offsets) bad("data_offsets given twice");
        has_offsets = true;
        int64_t off[2] = {0, 0};
        int count = 0;
        if (r.next() != json::Reader::Next::Array) bad("data_offsets is not an array");
        r.begin_array();
        while (r.next_element()) {
          if (count == 2) bad("data_offsets must be [begin, end], got more than two numbers");
          if (r.next() != json::Reader::Next::Number) bad("data_offsets must hold integers");
          json::Reader::Number v = r.read_number();
          if (!v.is_int || v.i < 0) bad("data_offsets must hold non-negative integers");
          off[count++] = v.i;
        }
        if (count != 2) bad("data_offsets must be [begin, end], got " + std::to_string(count) + " numbers");
        if (off[1] < off[0])
          bad("data_offsets [" + std::to_string(off[0]) + ", " + std::to_string(off[1]) + "] must be [begin, end] with 0 <= begin <= end");
        e.begin = static_cast<uint64_t>(off[0]);
        e.end = static_cast<uint64_t>(off[1]);
      } else {
        bad("unknown field \"" + key.substr(0, 40) + "\" (entries hold dtype, shape and data_offsets)");
      }
      field = "entry";
    }
  } catch (const json::ParseError& ex) {
    bad(field + ": malformed JSON: " + ex.what());
  }
  if (!has_dtype || !has_shape || !has_offsets) bad("needs dtype, shape and data_offsets");
  int64_t numel = std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end() ? 0 : 1, nbytes = 0;
  for (int64_t d : e.shape)
    if (numel != 0 && nabla::detail::mul_overflows(numel, d, numel)) bad("shape " + shape_str(e.shape) + " has more than 2^63 - 1 elements");
  if (nabla::detail::mul_overflows(numel, static_cast<int64_t>(element_size(e.dtype)), nbytes))
    bad("shape " + shape_str(e.shape) + " of " + dtype_name + " needs more than 2^63 - 1 bytes");
  if (e.end > data_size)
    bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] run past the end of the " +
        std::to_string(data_size) + "-byte data section");
  if (e.end - e.begin != static_cast<uint64_t>(nbytes))
    bad("shape " + shape_str(e.shape) + " of " + dtype_name + " needs " + std::to_string(nbytes) +
        " bytes but data_offsets span " + std::to_string(e.end - e.begin));
  return e;
}

// Validates the header text while reading it (nothing is kept but the entries and the metadata)
// and the layout of the data section: the entries, sorted by offset, tile it exactly.
inline std::vector<SafetensorsEntry> read_safetensors_header(const std::string& path, std::string_view text,
                                                             uint64_t data_size, Metadata& metadata) {
  if (text.empty() || text[0] != '{') io_fail(path, "header does not start with '{'");
  std::vector<SafetensorsEntry> entries;
  bool has_metadata = false;
  try {
    json::Reader r(text);
    r.begin_object();
    for (std::string name; r.next_key(name);) {
      if (name == "__metadata__") {
        if (has_metadata) io_fail(path, "__metadata__ given twice");
        has_metadata = true;
        if (r.next() != json::Reader::Next::Object) io_fail(path, "__metadata__ must be an object of strings");
        r.begin_object();
        for (std::string key; r.next_key(key);) {
          const std::string what = "__metadata__ value for \"" + key.substr(0, 80) + "\"";
          std::string value;
          try {
            if (r.next() != json::Reader::Next::String) io_fail(path, what + " is not a string");
            value = r.read_string();
          } catch (const json::ParseError& ex) {
            io_fail(path, what + ": malformed JSON: " + ex.what());
          }
          if (!metadata.try_emplace(key, std::move(value)).second)
            io_fail(path, "__metadata__ key \"" + key.substr(0, 80) + "\" given twice");
        }
        continue;
      }
      entries.push_back(read_safetensors_entry(path, r, std::move(name), data_size));
    }
    r.end();
  } catch (const json::ParseError& e) {
    io_fail(path, std::string("malformed JSON header: ") + e.what());
  }
  // duplicate names: sorted views, O(n log n), no copies of the names
  std::vector<const std::string*> names(entries.size());
  for (size_t k = 0; k < entries.size(); ++k) names[k] = &entries[k].name;
  std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
  for (size_t k = 1; k < names.size(); ++k)
    if (*names[k] == *names[k - 1]) io_fail(path, "tensor \"" + *names[k] + "\" given twice");
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  for (const SafetensorsEntry& e : entries) {
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
  return entries;
}

// The tensors of validated entries; read(offset, dst, n) copies n bytes of the data section.
template <class Read>
SafetensorsFile make_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries, Metadata metadata,
                                 Read&& read) {
  SafetensorsFile out;
  out.metadata = std::move(metadata);
  for (const SafetensorsEntry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    if (static_cast<uint64_t>(t.nbytes()) != e.end - e.begin)  // validated already; the invariant fuzzers check
      io_fail(path, "tensor \"" + e.name + "\": internal size mismatch");
    if (t.nbytes() > 0) read(e.begin, t.data_ptr(), t.nbytes(), e.name);
    if (e.dtype == kBool) {
      const uint8_t* b = static_cast<const uint8_t*>(t.data_ptr());
      for (int64_t k = 0; k < t.numel(); ++k)
        if (b[k] > 1) io_fail(path, "tensor \"" + e.name + "\": BOOL element " + std::to_string(k) + " is " + std::to_string(b[k]) + ", not 0 or 1");
    }
    out.tensors.insert(e.name, t);
  }
  return out;
}
}  // namespace detail

// Reads and validates a whole safetensors file into CPU tensors. A hostile file is refused
// with an IOError naming the file and the field, in time and memory bounded by the header's size
// (the header is validated while it is read; nothing is allocated for a tensor before its size
// is known to match the data).
inline SafetensorsFile load_safetensors(const std::string& path) {
  using detail::io_fail;
  std::ifstream f(path, std::ios::binary);
  if (!f) io_fail(path, "cannot open for reading: " + detail::errno_str());
  f.seekg(0, std::ios::end);
  const auto end = f.tellg();
  if (end < 0) io_fail(path, "cannot seek (not a regular file?)");
  const uint64_t size = static_cast<uint64_t>(end);
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
  Metadata metadata;
  const auto entries = detail::read_safetensors_header(path, text, size - 8 - n, metadata);
  text = std::string();  // the header is no longer needed while the data is read
  return detail::make_safetensors(path, entries, std::move(metadata), [&](uint64_t at, void* dst, size_t bytes, const std::string& name) {
    f.seekg(static_cast<std::streamoff>(8 + n + at));
    f.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes));
    if (!f) io_fail(path, "read error in the data of \"" + name + "\"");
  });
}

// The same from bytes in memory (a file already read, a buffer received, an embedded model), with
// the same checks and errors; `name` stands for the file name in them. As Python's
// safetensors.torch.load(bytes).
inline SafetensorsFile load_safetensors(std::span<const uint8_t> bytes, const std::string& name = "<memory>") {
  using detail::io_fail;
  const uint64_t size = bytes.size();
  if (size < 8) io_fail(name, "truncated: " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > size - 8)
    io_fail(name, "header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                      " bytes after the length field (truncated file or corrupt header length)");
  if (n > (uint64_t{100} << 20)) io_fail(name, "header length " + std::to_string(n) + " is over the 100 MB limit");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  Metadata metadata;
  const auto entries = detail::read_safetensors_header(name, text, size - 8 - n, metadata);
  const uint8_t* data = bytes.data() + 8 + n;
  return detail::make_safetensors(name, entries, std::move(metadata), [&](uint64_t at, void* dst, size_t count, const std::string&) {
    std::memcpy(dst, data + at, count);
  });
}
inline SafetensorsFile load_safetensors(std::span<const std::byte> bytes, const std::string& name = "<memory>") {
  return load_safetensors(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), name);
}

}  // namespace io
}  // namespace nabla
