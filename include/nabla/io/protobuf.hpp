#pragma once
// A protocol-buffers wire-format writer: the little the ONNX exporter needs (varints,
// length-delimited fields, fixed32 floats), so that exporting needs neither libprotobuf nor
// generated code. Fields are written in the order they are added; a nested message is built in
// its own Writer and added whole (its length must be known before its bytes).
// Wire format: https://protobuf.dev/programming-guides/encoding/

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace nabla {
namespace io {
namespace proto {

class Writer {
 public:
  // int32/int64/uint64/bool/enum fields (negative numbers take ten bytes, as protobuf's int64).
  void varint_field(int field, int64_t v) {
    key(field, 0);
    varint(static_cast<uint64_t>(v));
  }
  // string/bytes fields
  void bytes_field(int field, std::string_view bytes) {
    key(field, 2);
    varint(bytes.size());
    buf_.append(bytes.data(), bytes.size());
  }
  void message_field(int field, const Writer& message) { bytes_field(field, message.buf_); }
  // float fields (fixed32, little-endian)
  void float_field(int field, float f) {
    key(field, 5);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  }
  const std::string& bytes() const { return buf_; }
  size_t size() const { return buf_.size(); }

 private:
  void key(int field, int wire_type) { varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  std::string buf_;
};

}  // namespace proto
}  // namespace io
}  // namespace nabla
