#pragma once
// A small JSON value, strict parser and writer (RFC 8259; no dependencies), enough for
// safetensors headers and checkpoint metadata. Objects keep their key order. Integers that
// fit in int64 are kept exact (safetensors offsets and shapes).

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
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

// True when `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF). JSON text is UTF-8 (RFC 8259 section 8.1); Hugging Face's safetensors reader refuses
// a header that is not, so nabla neither reads nor writes one.
inline size_t utf8_sequence(std::string_view s, size_t p) {  // length of the sequence at p, 0 if invalid
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[p + k]); };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || p + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(k) & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
  if (c == 0xED && b(1) >= 0xA0) return 0;  // UTF-16 surrogate
  if (c == 0xF0 && b(1) < 0x90) return 0;   // overlong
  if (c == 0xF4 && b(1) >= 0x90) return 0;  // past U+10FFFF
  return n;
}
inline bool valid_utf8(std::string_view s) {
  for (size_t p = 0; p < s.size();) {
    size_t n = utf8_sequence(s, p);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

// A pull parser over JSON text (RFC 8259, strict): the caller walks the document in order and
// keeps only what it needs, so a hostile document costs no more memory than the caller chooses
// to keep (json::parse builds the whole tree on top of it; the safetensors reader validates
// while it reads). Strings must be valid UTF-8, numbers finite, nesting at most 64 deep.
//   Reader r(text);
//   r.begin_object();
//   for (std::string key; r.next_key(key);) { if (key == "n") n = r.read_int(); else r.skip(); }
//   r.end();
class Reader {
 public:
  static constexpr int kMaxDepth = 64;
  enum class Next { Object, Array, String, Number, Bool, Null };

  explicit Reader(std::string_view text) : t_(text) {}

  size_t offset() const { return p_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw ParseError("invalid JSON at byte " + std::to_string(p_) + ": " + what);
  }

  // What the next value is, without consuming it.
  Next next() {
    const char c = peek();
    switch (c) {
      case '{': return Next::Object;
      case '[': return Next::Array;
      case '"': return Next::String;
      case 't': case 'f': return Next::Bool;
      case 'n': return Next::Null;
      default:
        if (c == '-' || is_digit(c)) return Next::Number;
        fail(std::string("unexpected character '") + c + "'");
    }
  }

  void begin_object() { open('{'); }
  // Inside an object: the next member's key (and the ':' after it), or false at the closing '}'.
  // After true, the caller reads or skips exactly one value.
  bool next_key(std::string& key) {
    if (!more('}')) return false;
    if (peek() != '"') fail("expected a string key");
    key.clear();
    string_into(&key);
    expect(':');
    return true;
  }
  void begin_array() { open('['); }
  // Inside an array: true when another element follows (the caller reads or skips it).
  bool next_element() { return more(']'); }

  std::string read_string() {
    if (peek() != '"') fail("expected a string");
    std::string out;
    string_into(&out);
    return out;
  }
  // A number; is_int says whether it was written as an integer that fits in int64 (then i holds
  // it exactly), else d holds it as a finite double.
  struct Number {
    bool is_int;
    int64_t i;
    double d;
  };
  Number read_number() {
    if (next() != Next::Number) fail("expected a number");
    const size_t start = p_;
    bool integral = true;
    if (t_[p_] == '-') ++p_;
    if (p_ >= t_.size() || !is_digit(t_[p_])) fail("bad number");
    if (t_[p_] == '0') ++p_;
    else
      while (p_ < t_.size() && is_digit(t_[p_])) ++p_;
    if (p_ < t_.size() && t_[p_] == '.') {
      integral = false;
      ++p_;
      if (p_ >= t_.size() || !is_digit(t_[p_])) fail("bad number: digits expected after '.'");
      while (p_ < t_.size() && is_digit(t_[p_])) ++p_;
    }
    if (p_ < t_.size() && (t_[p_] == 'e' || t_[p_] == 'E')) {
      integral = false;
      ++p_;
      if (p_ < t_.size() && (t_[p_] == '+' || t_[p_] == '-')) ++p_;
      if (p_ >= t_.size() || !is_digit(t_[p_])) fail("bad number: digits expected in exponent");
      while (p_ < t_.size() && is_digit(t_[p_])) ++p_;
    }
    const std::string_view text = t_.substr(start, p_ - start);
    if (integral) {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec == std::errc() && end == text.data() + text.size()) return {true, v, static_cast<double>(v)};
    }
    if (text.size() > 4096) fail("number longer than 4096 characters");
    const std::string copy(text);  // strtod needs a terminator; C locale assumed, as JSON's '.'
    errno = 0;
    const double d = std::strtod(copy.c_str(), nullptr);
    if (!std::isfinite(d)) fail("number " + copy.substr(0, 40) + " is out of range for a double");
    return {false, 0, d};
  }
  // An integer that fits in int64; anything else (a fraction, an exponent, a bigger integer) fails.
  int64_t read_int() {
    const size_t at = p_;
    Number n = read_number();
    if (!n.is_int) {
      p_ = at;
      fail("expected an integer that fits in 64 bits");
    }
    return n.i;
  }
  bool read_bool() {
    const char c = peek();
    if (c != 't' && c != 'f') fail("expected true or false");
    literal(c == 't' ? "true" : "false");
    return c == 't';
  }
  void read_null() {
    if (peek() != 'n') fail("expected null");
    literal("null");
  }
  // Skips one value of any kind, checking it as strictly as reading it would; keeps nothing.
  void skip() {
    switch (next()) {
      case Next::Object: {
        begin_object();
        for (std::string k; next_key(k);) skip();
        break;
      }
      case Next::Array:
        begin_array();
        while (next_element()) skip();
        break;
      case Next::String: string_into(nullptr); break;
      case Next::Number: read_number(); break;
      case Next::Bool: read_bool(); break;
      case Next::Null: read_null(); break;
    }
  }
  // Only whitespace may follow the document.
  void end() {
    skip_ws();
    if (depth_ != 0) fail("unexpected end of input");
    if (p_ != t_.size()) fail("unexpected trailing characters");
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
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
  void open(char c) {
    expect(c);
    if (depth_ >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    first_[depth_++] = true;
  }
  // Before an element of the innermost container: consumes the ',' between elements, or the
  // closing bracket (then false).
  bool more(char close) {
    if (depth_ == 0) fail("not inside an object or array");
    const char c = peek();
    if (c == close) {
      ++p_;
      --depth_;
      return false;
    }
    if (!first_[depth_ - 1]) {
      if (c != ',') fail(std::string("expected ',' or '") + close + "'");
      ++p_;
      if (peek() == close) fail(std::string("trailing ',' before '") + close + "'");
    }
    first_[depth_ - 1] = false;
    return true;
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
  // The string at p_ (opening quote included), decoded into *out, or only checked (out null).
  void string_into(std::string* out) {
    ++p_;  // opening quote
    while (true) {
      if (p_ >= t_.size()) fail("unterminated string");
      const size_t run = p_;  // a run of plain ASCII bytes, copied at once
      while (p_ < t_.size() && t_[p_] != '"' && t_[p_] != '\\' && static_cast<unsigned char>(t_[p_]) >= 0x20 &&
             static_cast<unsigned char>(t_[p_]) < 0x80)
        ++p_;
      if (out) out->append(t_.data() + run, p_ - run);
      if (p_ >= t_.size()) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(t_[p_]);
      if (c == '"') {
        ++p_;
        return;
      }
      if (c < 0x20) fail("control character in string");
      if (c >= 0x80) {
        const size_t n = utf8_sequence(t_, p_);
        if (n == 0) fail("string is not valid UTF-8");
        if (out) out->append(t_.data() + p_, n);
        p_ += n;
        continue;
      }
      ++p_;  // backslash
      if (p_ >= t_.size()) fail("unterminated escape");
      const char e = t_[p_++];
      char plain = 0;
      switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
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
          if (out) put_utf8(*out, cp);
          continue;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
      if (out) *out += plain;
    }
  }

  std::string_view t_;
  size_t p_ = 0;
  int depth_ = 0;
  bool first_[kMaxDepth];  // per open container: no element read yet
};

namespace detail {
// Key comparisons made by json::parse's duplicate check on this thread (tests use it to show the
// check is linear: about one comparison per key, not one per pair of keys).
inline thread_local uint64_t key_comparisons = 0;

// Object keys seen so far, by index into the object: a duplicate costs O(1), not a scan.
class KeySet {
 public:
  explicit KeySet(const Object& o) : o_(o), set_(16, Hash{&o_}, Eq{&o_}) {}
  bool insert(size_t index) { return set_.insert(index).second; }

 private:
  struct Hash {
    const Object* o;
    size_t operator()(size_t i) const { return std::hash<std::string_view>()((*o)[i].first); }
  };
  struct Eq {
    const Object* o;
    bool operator()(size_t a, size_t b) const {
      ++key_comparisons;
      return (*o)[a].first == (*o)[b].first;
    }
  };
  const Object& o_;
  std::unordered_set<size_t, Hash, Eq> set_;
};

inline Value read_value(Reader& r) {
  switch (r.next()) {
    case Reader::Next::Object: {
      r.begin_object();
      Object o;
      KeySet seen(o);
      for (std::string k; r.next_key(k);) {
        const size_t at = r.offset();
        o.emplace_back(std::move(k), Value());
        if (!seen.insert(o.size() - 1)) throw ParseError("invalid JSON at byte " + std::to_string(at) + ": duplicate key \"" + o.back().first + "\"");
        o.back().second = read_value(r);
      }
      return Value::object(std::move(o));
    }
    case Reader::Next::Array: {
      r.begin_array();
      Array a;
      while (r.next_element()) a.push_back(read_value(r));
      return Value::array(std::move(a));
    }
    case Reader::Next::String: return Value::string(r.read_string());
    case Reader::Next::Number: {
      Reader::Number n = r.read_number();
      return n.is_int ? Value::integer(n.i) : Value::number(n.d);
    }
    case Reader::Next::Bool: return Value::boolean(r.read_bool());
    case Reader::Next::Null: r.read_null(); return Value();
  }
  return Value();
}

// A JSON string; ValueError when `s` is not valid UTF-8 (nabla writes only what it would read).
inline void write_string(std::string& out, std::string_view s) {
  if (!valid_utf8(s)) throw ValueError("nabla::json: cannot write a string that is not valid UTF-8");
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
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", v.d);
      out += buf;
      // a double stays a double when read back: "-0" or "3" would come back as integers
      if (std::string_view(buf).find_first_of(".eE") == std::string_view::npos) out += ".0";
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

// Parses a complete JSON document into a tree; throws json::ParseError naming the byte offset.
// Duplicate keys are an error (found in O(1) each). The tree costs ~100 bytes per value: for
// text from strangers, walk a json::Reader instead and keep only what is needed.
inline Value parse(std::string_view text) {
  Reader r(text);
  Value v = detail::read_value(r);
  r.end();
  return v;
}
// Compact JSON text (no spaces).
inline std::string dump(const Value& v) {
  std::string out;
  detail::write_value(out, v);
  return out;
}

}  // namespace json
}  // namespace nabla
