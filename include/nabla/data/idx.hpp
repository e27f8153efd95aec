#pragma once
// IDX files (the MNIST format: bytes 0 0 <type code> <ndims>, ndims big-endian int32 sizes, then
// big-endian data) read into CPU tensors, plain or gzip-compressed; and load_mnist. The readers
// validate everything and throw nabla::IOError naming the file and what is wrong.

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#ifdef NABLA_HAS_ZLIB
#include <zlib.h>
#endif

#include "../core/tensor.hpp"
#include "../ops/all.hpp"

namespace nabla {
namespace data {

namespace detail {

[[noreturn]] inline void data_fail(const std::string& path, const std::string& what) {
  throw IOError("nabla::data: " + path + ": " + what);
}

// A file (or a buffer in memory) read front to back, plain or gzip (recognised by its first two
// bytes, not its name). A gzip file must be exactly one gzip member: a second member or junk
// after the first is an error (zlib's gzread would skip junk silently). The FILE is owned from
// the moment it is opened, so a constructor that throws closes it.
class ByteSource {
 public:
  // `bytes` must outlive the source; `name` stands for the file in error messages.
  ByteSource(std::span<const uint8_t> bytes, const std::string& name)
      : path_(name), from_memory_(true), mem_(bytes.data()), mem_size_(bytes.size()), size_(bytes.size()) {
    gzip_ = size_ >= 2 && mem_[0] == 0x1f && mem_[1] == 0x8b;
    if (gzip_) start_gzip();
  }
  explicit ByteSource(const std::string& path) : path_(path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status)) data_fail(path, "no such file");
    if (std::filesystem::is_directory(status)) data_fail(path, "is a directory, not a file");
    if (!std::filesystem::is_regular_file(status)) data_fail(path, "is not a regular file (a pipe or a device?)");
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) data_fail(path, std::string("cannot open for reading: ") + std::strerror(errno));
    if (std::fseek(file_.get(), 0, SEEK_END) != 0) data_fail(path, "cannot seek (not a regular file?)");
    const long size = std::ftell(file_.get());
    if (size < 0) data_fail(path, "cannot tell its size");
    size_ = static_cast<uint64_t>(size);
    std::rewind(file_.get());
    unsigned char head[2] = {0, 0};
    gzip_ = std::fread(head, 1, 2, file_.get()) == 2 && head[0] == 0x1f && head[1] == 0x8b;
    std::rewind(file_.get());
    if (gzip_) start_gzip();
  }
  ~ByteSource() {
#ifdef NABLA_HAS_ZLIB
    if (zs_) inflateEnd(zs_.get());
#endif
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  uint64_t file_size() const { return size_; }  // on disk (compressed, for gzip)

  // Reads up to n bytes; fewer only at the end of the (decompressed) data.
  size_t read(void* dst, size_t n) {
    if (!gzip_) return raw_read(dst, n);
#ifdef NABLA_HAS_ZLIB
    size_t done = 0;
    unsigned char* out = static_cast<unsigned char*>(dst);
    while (done < n && !ended_) {
      if (zs_->avail_in == 0) {
        size_t got = 0;
        if (from_memory_) {  // zlib reads the buffer in place
          got = std::min(mem_size_ - mem_pos_, size_t{1} << 30);
          zs_->next_in = const_cast<unsigned char*>(mem_ + mem_pos_);  // zlib's API is not const; it only reads
          mem_pos_ += got;
        } else {
          got = raw_read(in_.data(), in_.size());
          zs_->next_in = in_.data();
        }
        if (got == 0) data_fail(path_, "gzip stream is truncated (the compressed data ends before its end-of-stream marker)");
        zs_->avail_in = static_cast<uInt>(got);
      }
      const size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
      zs_->next_out = out + done;
      zs_->avail_out = static_cast<uInt>(chunk);
      const int rc = inflate(zs_.get(), Z_NO_FLUSH);
      done += chunk - zs_->avail_out;
      if (rc == Z_STREAM_END) {
        ended_ = true;
        check_nothing_after_stream();
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        data_fail(path_, std::string("corrupt gzip stream (") + (zs_->msg ? zs_->msg : "zlib error " + std::to_string(rc)) + ")");
      }
    }
    return done;
#else
    return 0;
#endif
  }

 private:
  // The stored bytes as they are (compressed, for gzip): from memory, or from the file.
  size_t raw_read(void* dst, size_t n) {
    if (from_memory_) {
      if (n == 0 || mem_pos_ == mem_size_) return 0;
      const size_t got = std::min(n, mem_size_ - mem_pos_);
      std::memcpy(dst, mem_ + mem_pos_, got);
      mem_pos_ += got;
      return got;
    }
    const size_t got = std::fread(dst, 1, n, file_.get());
    if (got < n && std::ferror(file_.get())) data_fail(path_, std::string("read error: ") + std::strerror(errno));
    return got;
  }
  void start_gzip() {
#ifdef NABLA_HAS_ZLIB
    zs_ = std::make_unique<z_stream>();
    std::memset(zs_.get(), 0, sizeof(z_stream));
    if (inflateInit2(zs_.get(), 16 + MAX_WBITS) != Z_OK) {  // 16: a gzip wrapper, not zlib's
      zs_.reset();
      data_fail(path_, "cannot start the gzip decoder");
    }
    if (!from_memory_) in_.resize(size_t{1} << 17);
#else
    data_fail(path_, "is gzip-compressed but nabla was built without zlib (NABLA_HAS_ZLIB undefined); "
                     "gunzip the file, or rebuild with zlib installed and NABLA_USE_ZLIB=ON");
#endif
  }
#ifdef NABLA_HAS_ZLIB
  // After the member's trailer (CRC and length, checked by zlib): the file must end there.
  void check_nothing_after_stream() {
    uint64_t extra = zs_->avail_in;
    unsigned char probe[4096];
    for (size_t got; (got = raw_read(probe, sizeof probe)) > 0;) extra += got;
    if (extra > 0)
      data_fail(path_, std::to_string(extra) + " bytes follow the end of the gzip stream (junk, or a second gzip member; "
                       "nabla reads a single-member .gz)");
  }
#endif
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::string path_;
  std::unique_ptr<std::FILE, Closer> file_;
  bool from_memory_ = false;
  const unsigned char* mem_ = nullptr;
  size_t mem_size_ = 0, mem_pos_ = 0;
  uint64_t size_ = 0;
  bool gzip_ = false;
#ifdef NABLA_HAS_ZLIB
  std::unique_ptr<z_stream> zs_;
  std::vector<unsigned char> in_;
  bool ended_ = false;
#endif
};

struct IdxType {
  uint8_t code;
  const char* name;
  size_t bytes;  // per element in the file
  DType dtype;   // in the tensor
};
inline const IdxType* idx_type(uint8_t code) {
  // nabla has no int8 or int16: both widen to int32, keeping their values.
  static const IdxType table[] = {{0x08, "uint8", 1, kUInt8},   {0x09, "int8", 1, kInt32},
                                  {0x0B, "int16", 2, kInt32},   {0x0C, "int32", 4, kInt32},
                                  {0x0D, "float32", 4, kFloat32}, {0x0E, "float64", 8, kFloat64}};
  for (const auto& t : table)
    if (t.code == code) return &t;
  return nullptr;
}

template <class T>
T from_big_endian(const unsigned char* p) {
  using U = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
  U u = 0;
  for (size_t k = 0; k < sizeof(T); ++k) u = static_cast<U>((u << 8) | p[k]);
  return std::bit_cast<T>(u);
}

// File bytes (big-endian, type `t`) into the tensor's elements.
inline void decode_idx(const IdxType& t, const unsigned char* src, const Tensor& out) {
  const int64_t n = out.numel();
  switch (t.code) {
    case 0x08: std::memcpy(out.data_ptr(), src, static_cast<size_t>(n)); break;
    case 0x09: {
      int32_t* o = out.data_ptr<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<int8_t>(src[i]);
      break;
    }
    case 0x0B: {
      int32_t* o = out.data_ptr<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = from_big_endian<int16_t>(src + 2 * i);
      break;
    }
    case 0x0C: {
      int32_t* o = out.data_ptr<int32_t>();
      for (int64_t i = 0; i < n; ++i) o[i] = from_big_endian<int32_t>(src + 4 * i);
      break;
    }
    case 0x0D: {
      float* o = out.data_ptr<float>();
      for (int64_t i = 0; i < n; ++i) o[i] = from_big_endian<float>(src + 4 * i);
      break;
    }
    case 0x0E: {
      double* o = out.data_ptr<double>();
      for (int64_t i = 0; i < n; ++i) o[i] = from_big_endian<double>(src + 8 * i);
      break;
    }
  }
}

inline std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// read_idx's body, for a file or a buffer (`path` names it in errors).
inline Tensor read_idx_from(ByteSource& src, const std::string& path) {
  unsigned char head[4];
  size_t got = src.read(head, 4);
  if (got < 4) data_fail(path, "truncated: " + std::to_string(got) + " bytes, too short for the 4-byte IDX magic");
  if (head[0] != 0 || head[1] != 0)
    data_fail(path, "not an IDX file: the magic must start with bytes 0x00 0x00, found 0x" +
                        [&] { char b[16]; std::snprintf(b, sizeof b, "%02x 0x%02x", head[0], head[1]); return std::string(b); }());
  const detail::IdxType* type = detail::idx_type(head[2]);
  if (!type) {
    char b[8];
    std::snprintf(b, sizeof b, "0x%02X", head[2]);
    data_fail(path, std::string("unknown IDX type code ") + b +
                        " (known: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)");
  }
  const int ndims = head[3];
  if (ndims == 0) data_fail(path, "IDX header has 0 dimensions");
  std::vector<unsigned char> dim_bytes(4 * static_cast<size_t>(ndims));
  got = src.read(dim_bytes.data(), dim_bytes.size());
  if (got < dim_bytes.size())
    data_fail(path, "truncated in the header: " + std::to_string(ndims) + " dimensions need " +
                        std::to_string(dim_bytes.size()) + " bytes of sizes, found " + std::to_string(got));
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (int k = 0; k < ndims; ++k) {
    int64_t d = detail::from_big_endian<int32_t>(dim_bytes.data() + 4 * k);
    dims.push_back(d);
    if (d <= 0) data_fail(path, "dimension " + std::to_string(k) + " has size " + std::to_string(d) + " (must be positive)");
    if (numel > (uint64_t{1} << 40) / static_cast<uint64_t>(d))
      data_fail(path, "sizes " + detail::dims_str(dims) + "... describe more than 2^40 elements");
    numel *= static_cast<uint64_t>(d);
  }
  const uint64_t header = 4 + dim_bytes.size();
  const uint64_t need = static_cast<uint64_t>(checked_nbytes(static_cast<int64_t>(numel), type->bytes, "data::read_idx"));
  const std::string what = "sizes " + detail::dims_str(dims) + " of " + type->name + " need " + std::to_string(need) +
                           " data bytes";
  if (!src.gzip() && src.file_size() != header + need)  // exact checks before allocating anything
    data_fail(path, src.file_size() < header + need
                        ? "truncated: " + what + " but the file has only " + std::to_string(src.file_size() - header)
                        : "trailing bytes: " + what + " but the file has " + std::to_string(src.file_size() - header - need) +
                              " more");
  // Deflate expands at most ~1032:1, so a huge size in a small .gz is a corrupt header.
  if (src.gzip() && need > 1100 * src.file_size() + (uint64_t{1} << 20))
    data_fail(path, "truncated or corrupt: " + what + " but a " + std::to_string(src.file_size()) +
                        "-byte gzip file cannot hold that many");

  Shape shape(dims.begin(), dims.end());
  Tensor out = empty(shape, type->dtype);
  std::vector<unsigned char> raw;
  unsigned char* dst = static_cast<unsigned char*>(out.data_ptr());
  if (type->code != 0x08) {
    raw.resize(need);
    dst = raw.data();
  }
  got = src.read(dst, need);
  if (got < need) data_fail(path, "truncated: " + what + " but the data ends after " + std::to_string(got));
  unsigned char extra;
  if (src.read(&extra, 1) != 0) data_fail(path, "trailing bytes: " + what + " but the data goes on past them");
  if (type->code != 0x08) detail::decode_idx(*type, raw.data(), out);
  return out;
}

}  // namespace detail

// Reads an IDX file, plain or gzip-compressed (recognised by content, whatever its name), into a
// contiguous CPU tensor. uint8 stays kUInt8; int8, int16 and int32 become kInt32; float32 and
// float64 keep their type. Throws IOError naming the file: missing, not IDX, unknown type code,
// a zero or overflowing size, data shorter or longer than the sizes say, corrupt gzip.
inline Tensor read_idx(const std::string& path) {
  detail::ByteSource src(path);
  return detail::read_idx_from(src, path);
}
// The same from the bytes of a file already in memory (plain or gzip); `name` stands for the
// file in error messages.
inline Tensor read_idx(std::span<const uint8_t> bytes, const std::string& name = "<memory>") {
  detail::ByteSource src(bytes, name);
  return detail::read_idx_from(src, name);
}

// ---- MNIST ------------------------------------------------------------------------------------

struct MnistSet {
  Tensor images;  // uint8 [N, rows, cols] (28 x 28 for MNIST), 0 = background
  Tensor labels;  // int64 [N], in [0, 10)
};

namespace detail {
// `dir/name`, else `dir/name.gz`; empty when neither exists.
inline std::string find_with_gz(const std::string& dir, const std::string& name) {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::path(dir) / name;
  if (std::filesystem::exists(base, ec)) return base.string();
  std::filesystem::path gz = base;
  gz += ".gz";
  if (std::filesystem::exists(gz, ec)) return gz.string();
  return {};
}
}  // namespace detail

// Loads the training (60000) or test (10000) split from `dir`, which holds the files as
// distributed: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
// t10k-labels-idx1-ubyte, each either as is or gzip-compressed with a .gz suffix.
inline MnistSet load_mnist(const std::string& dir, bool train) {
  const std::string prefix = train ? "train" : "t10k";
  auto locate = [&](const std::string& name) {
    std::string p = detail::find_with_gz(dir, name);
    if (p.empty())
      throw IOError("nabla::data: load_mnist: neither " + name + " nor " + name + ".gz is in the directory " + dir +
                    " (MNIST needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                    "t10k-labels-idx1-ubyte there, each optionally gzipped with a .gz suffix)");
    return p;
  };
  const std::string images_path = locate(prefix + "-images-idx3-ubyte");
  const std::string labels_path = locate(prefix + "-labels-idx1-ubyte");
  MnistSet set;
  set.images = read_idx(images_path);
  Tensor labels = read_idx(labels_path);
  if (set.images.dtype() != kUInt8 || set.images.dim() != 3)
    detail::data_fail(images_path, "MNIST images must be uint8 [N, rows, cols], got " + std::string(dtype_name(set.images.dtype())) +
                                       " " + shape_str(set.images.sizes()));
  if (labels.dtype() != kUInt8 || labels.dim() != 1)
    detail::data_fail(labels_path, "MNIST labels must be uint8 [N], got " + std::string(dtype_name(labels.dtype())) + " " +
                                       shape_str(labels.sizes()));
  if (labels.size(0) != set.images.size(0))
    throw IOError("nabla::data: load_mnist: " + images_path + " holds " + std::to_string(set.images.size(0)) +
                  " images but " + labels_path + " holds " + std::to_string(labels.size(0)) + " labels");
  const uint8_t* l = labels.data_ptr<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    if (l[i] >= 10) detail::data_fail(labels_path, "label " + std::to_string(i) + " is " + std::to_string(l[i]) + ", not a digit 0-9");
  set.labels = labels.to(kInt64);
  return set;
}

}  // namespace data
}  // namespace nabla
