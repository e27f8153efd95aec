#pragma once
// A small JSON value, strict parser and writer (RFC 8259; no dependencies), enough for
// safetensors headers and checkpoint metadata. Objects keep their key order. Integers that
// fit in int64 are kept exact (safetensors offsets and shapes).

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace nabla {
namespace json {

struct Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;

struct Value {
  enum class Kind { Null, Bool, Int, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  std::shared_ptr<Array> arr;  // shared_ptr: Value is incomplete inside its own vector
  std::shared_ptr<Object> obj;

  Value() = default;
  static Value boolean(bool v) { Value x; x.kind = Kind::Bool; x.b = v; return x; }
  static Value integer(int64_t v) { Value x; x.kind = Kind::Int; x.i = v; x.d = static_cast<double>(v); return x; }
  static Value number(double v) { Value x; x.kind = Kind::Number; x.d = v; return x; }
  static Value string(std::string v) { Value x; x.kind = Kind::String; x.s = std::move(v); return x; }
  static Value array(Array v = {}) { Value x; x.kind = Kind::Array; x.arr = std::make_shared<Array>(std::move(v)); return x; }
  static Value object(Object v = {}) { Value x; x.kind = Kind::Object; x.obj = std::make_shared<Object>(std::move(v)); return x; }

  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  bool is_string() const { return kind == Kind::String; }
  bool is_int() const { return kind == Kind::Int; }
  // The member named key, or null when absent (objects only).
  const Value* get(std::string_view key) const {
    if (!is_object()) return nullptr;
    for (const auto& [k, v] : *obj)
      if (k == key) return &v;
    return nullptr;
  }
};

class ParseError : public Error {
 public:
  using Error::Error;
};

namespace detail {
class Parser {
 public:
  explicit Parser(std::string_view text) : t_(text) {}
  Value parse_document() {
    Value v = parse_value(0);
    skip_ws();
    if (p_ != t_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError("invalid JSON at byte " + std::to_string(p_) + ": " + what);
  }
  void skip_ws() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r')) ++p_;
  }
  char peek() {
    skip_ws();
    if (p_ >= t_.size()) fail("unexpected end of input");
    return t_[p_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }
  void literal(std::string_view word) {
    if (t_.substr(p_, word.size()) != word) fail("invalid literal");
    p_ += word.size();
  }
  Value parse_value(int depth) {
    if (depth > 64) fail("nesting deeper than 64 levels");
    char c = peek();
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return Value::string(parse_string());
    if (c == 't') { literal("true"); return Value::boolean(true); }
    if (c == 'f') { literal("false"); return Value::boolean(false); }
    if (c == 'n') { literal("null"); return Value(); }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    fail(std::string("unexpected character '") + c + "'");
  }
  Value parse_object(int depth) {
    expect('{');
    Object o;
    if (peek() == '}') { ++p_; return Value::object(std::move(o)); }
    while (true) {
      if (peek() != '"') fail("expected a string key");
      std::string k = parse_string();
      for (const auto& kv : o)
        if (kv.first == k) fail("duplicate key \"" + k + "\"");
      expect(':');
      o.emplace_back(std::move(k), parse_value(depth + 1));
      char c = peek();
      ++p_;
      if (c == '}') break;
      if (c != ',') { --p_; fail("expected ',' or '}'"); }
    }
    return Value::object(std::move(o));
  }
  Value parse_array(int depth) {
    expect('[');
    Array a;
    if (peek() == ']') { ++p_; return Value::array(std::move(a)); }
    while (true) {
      a.push_back(parse_value(depth + 1));
      char c = peek();
      ++p_;
      if (c == ']') break;
      if (c != ',') { --p_; fail("expected ',' or ']'"); }
    }
    return Value::array(std::move(a));
  }
  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (p_ + 4 > t_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = t_[p_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }
  std::string parse_string() {
    ++p_;  // opening quote
    std::string out;
    while (true) {
      if (p_ >= t_.size()) fail("unterminated string");
      char c = t_[p_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') { out += c; continue; }
      if (p_ >= t_.size()) fail("unterminated escape");
      char e = t_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
            if (t_.substr(p_, 2) != "\\u") fail("unpaired surrogate");
            p_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }
  Value parse_number() {
    size_t start = p_;
    bool is_int = true;
    if (t_[p_] == '-') ++p_;
    if (p_ >= t_.size() || !isdigit(t_[p_])) fail("bad number");
    if (t_[p_] == '0') ++p_;
    else while (p_ < t_.size() && isdigit(t_[p_])) ++p_;
    if (p_ < t_.size() && t_[p_] == '.') {
      is_int = false;
      ++p_;
      if (p_ >= t_.size() || !isdigit(t_[p_])) fail("bad number: digits expected after '.'");
      while (p_ < t_.size() && isdigit(t_[p_])) ++p_;
    }
    if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
      is_int = false;
      ++p_;
      if (p_ < t_.size() && (t_[p_] == '+' || t_[p_] == '-')) ++p_;
      if (p_ >= t_.size() || !isdigit(t_[p_])) fail("bad number: digits expected in exponent");
      while (p_ < t_.size() && isdigit(t_[p_])) ++p_;
    }
    std::string num(t_.substr(start, p_ - start));
    if (is_int) {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(num.c_str(), &end, 10);
      if (errno == 0) return Value::integer(v);
    }
    return Value::number(std::strtod(num.c_str(), nullptr));
  }
  static bool isdigit(char c) { return c >= '0' && c <= '9'; }

  std::string_view t_;
  size_t p_ = 0;
};

inline void write_string(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}
inline void write_value(std::string& out, const Value& v) {
  switch (v.kind) {
    case Value::Kind::Null: out += "null"; break;
    case Value::Kind::Bool: out += v.b ? "true" : "false"; break;
    case Value::Kind::Int: out += std::to_string(v.i); break;
    case Value::Kind::Number: {
      if (!std::isfinite(v.d)) throw ValueError("nabla::json: cannot write a non-finite number");
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v.d);
      out += buf;
      break;
    }
    case Value::Kind::String: write_string(out, v.s); break;
    case Value::Kind::Array: {
      out += '[';
      for (size_t k = 0; k < v.arr->size(); ++k) {
        if (k) out += ',';
        write_value(out, (*v.arr)[k]);
      }
      out += ']';
      break;
    }
    case Value::Kind::Object: {
      out += '{';
      bool first = true;
      for (const auto& [key, val] : *v.obj) {
        if (!first) out += ',';
        first = false;
        write_string(out, key);
        out += ':';
        write_value(out, val);
      }
      out += '}';
      break;
    }
  }
}
}  // namespace detail

// Parses a complete JSON document; throws json::ParseError naming the byte offset.
inline Value parse(std::string_view text) { return detail::Parser(text).parse_document(); }
// Compact JSON text (no spaces).
inline std::string dump(const Value& v) {
  std::string out;
  detail::write_value(out, v);
  return out;
}

}  // namespace json
}  // namespace nabla
