#pragma once
// nabla::text::GPT2Tokenizer: GPT-2's byte-level BPE over a vocab.json + merges.txt pair (OpenAI's
// files, or what Hugging Face tokenizers saves), giving the ids Hugging Face's GPT2TokenizerFast
// gives; and gpt2_pre_tokenize, the split of text into words that BPE runs on. See docs/gpt.md.

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/json.hpp"
#include "unicode_tables.hpp"

namespace nabla {
namespace text {

// ---- the byte-level alphabet ----------------------------------------------------------------------

// GPT-2's bytes_to_unicode (openai/gpt-2, src/encoder.py): each byte becomes a printable code
// point, so that a token is a string of characters: the printable bytes !..~, ¡..¬, ®..ÿ map to
// themselves, the other 68 (controls, space, 0x7F..0xA0, 0xAD) to U+0100.. in byte order
// (space -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
inline const std::array<char32_t, 256>& bytes_to_unicode() {
  static const std::array<char32_t, 256> map = [] {
    std::array<char32_t, 256> m{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      m[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return m;
  }();
  return map;
}
// The inverse: the byte a code point of the alphabet stands for, or -1 (code points < 324 only).
inline int unicode_to_byte(char32_t c) {
  static const std::array<int16_t, 324> inv = [] {
    std::array<int16_t, 324> m;
    m.fill(-1);
    for (int b = 0; b < 256; ++b) m[bytes_to_unicode()[b]] = static_cast<int16_t>(b);
    return m;
  }();
  return c < inv.size() ? inv[c] : -1;
}

namespace detail {

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
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

// ---- character classes of the pre-tokenizer pattern ---------------------------------------------

enum class CharClass : uint8_t { Letter, Number, Space, Other };

template <size_t N>
bool in_ranges(const unicode::Range (&table)[N], char32_t c) {
  // the first range whose hi >= c
  const auto* r = std::lower_bound(table, table + N, c, [](const unicode::Range& x, char32_t v) { return x.hi < v; });
  return r != table + N && r->lo <= c;
}
inline CharClass classify(char32_t c) {
  if (in_ranges(unicode::kLetter, c)) return CharClass::Letter;
  if (in_ranges(unicode::kNumber, c)) return CharClass::Number;
  if (in_ranges(unicode::kWhiteSpace, c)) return CharClass::Space;
  return CharClass::Other;
}
inline const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> t = [] {
    std::array<CharClass, 128> a{};
    for (char32_t c = 0; c < 128; ++c) a[c] = classify(c);
    return a;
  }();
  return t;
}

struct Char {
  uint32_t len;  // bytes
  CharClass cls;
};
// The character at byte p of s (p < s.size()), decoded leniently: a byte that does not start a
// well-formed UTF-8 sequence is a character of its own, of class Other (it is in no Unicode
// class; HF never sees one, as Python strings are valid Unicode).
inline Char char_at(std::string_view s, size_t p) {
  const auto c0 = static_cast<unsigned char>(s[p]);
  if (c0 < 0x80) return {1, ascii_classes()[c0]};
  const size_t n = json::utf8_sequence(s, p);
  if (n == 0) return {1, CharClass::Other};
  char32_t cp = c0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[p + k]) & 0x3F);
  return {static_cast<uint32_t>(n), classify(cp)};
}

}  // namespace detail

// ---- the pre-tokenizer --------------------------------------------------------------------------

// Calls f(std::string_view piece) for each match of GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// over s, left to right, with the first alternative that matches winning (Perl/Oniguruma
// semantics, as Hugging Face's ByteLevel pre-tokenizer runs it). Every character is a letter, a
// number, a space or other, so the pieces cover s exactly. \s+(?!\S) backtracks: a whitespace
// run followed by a non-space gives up its last character (which then starts " word", or is a
// piece of its own when it is not ' ').
template <class F>
void for_each_pre_token(std::string_view s, F&& f) {
  using detail::CharClass;
  const size_t n = s.size();
  // the end of the run of class cls starting at byte p
  auto run_end = [&](size_t p, CharClass cls) {
    while (p < n) {
      const detail::Char c = detail::char_at(s, p);
      if (c.cls != cls) break;
      p += c.len;
    }
    return p;
  };
  size_t i = 0;
  while (i < n) {
    size_t end = 0;
    if (s[i] == '\'') {  // contractions: 's 't 're 've 'm 'll 'd, case-sensitive
      const std::string_view rest = s.substr(i + 1);
      for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"})
        if (rest.substr(0, suffix.size()) == suffix) {
          end = i + 1 + suffix.size();
          break;
        }
    }
    if (end == 0) {
      const detail::Char c = detail::char_at(s, i);
      size_t start = i;
      CharClass cls = c.cls;
      if (s[i] == ' ' && i + 1 < n) {  // " ?": a space joins the letters, digits or symbols after it
        const CharClass next = detail::char_at(s, i + 1).cls;
        if (next != CharClass::Space) {
          start = i + 1;
          cls = next;
        }
      }
      if (cls != CharClass::Space) {
        end = run_end(start, cls);
      } else {
        // \s+(?!\S) | \s+ : the whole run at the end of the text; else all but its last
        // character when it has two or more; else the single character
        size_t last = i, p = i;
        while (p < n) {
          const detail::Char w = detail::char_at(s, p);
          if (w.cls != CharClass::Space) break;
          last = p;
          p += w.len;
        }
        end = (p == n || last == i) ? p : last;
      }
    }
    f(s.substr(i, end - i));
    i = end;
  }
}

// The pieces of for_each_pre_token, as views into s.
inline std::vector<std::string_view> gpt2_pre_tokenize(std::string_view s) {
  std::vector<std::string_view> out;
  for_each_pre_token(s, [&](std::string_view piece) { out.push_back(piece); });
  return out;
}

// ---- the tokenizer ------------------------------------------------------------------------------

// GPT-2's tokenizer: text -> pre-tokens (above) -> bytes -> byte-level symbols -> BPE merges by
// rank (the lowest-ranked adjacent pair first, leftmost on ties, as Hugging Face's BPE model) ->
// ids. Any bytes encode, valid UTF-8 or not, and decode(encode(s)) == s byte for byte.
//
// <|endoftext|>: when the vocab has this token, the literal text "<|endoftext|>" anywhere in the
// input encodes to its id alone and the text on each side is encoded separately, as Hugging
// Face's GPT2TokenizerFast does with its special tokens. A vocab without it has no special
// tokens: the literal is ordinary text, and eos_token_id() throws.
//
// Thread safety: encode and decode may be called from several threads at once; the per-word
// cache they share is guarded by a shared mutex (at most kCacheCapacity words, then it stops
// growing).
class GPT2Tokenizer {
 public:
  static constexpr size_t kCacheCapacity = 100000;
  static constexpr size_t kCacheMaxWordBytes = 256;  // longer words are merged every time
  static constexpr std::string_view kEndOfText = "<|endoftext|>";

  // Reads vocab.json (a JSON object token -> id) and merges.txt ("a b" per line, by rank; a first
  // line "#version: ..." is skipped). A missing, malformed or inconsistent file throws
  // nabla::IOError naming the file and line.
  static GPT2Tokenizer from_files(const std::string& vocab_json, const std::string& merges_txt) {
    GPT2Tokenizer t;
    t.load_vocab(vocab_json);
    t.load_merges(merges_txt);
    return t;
  }
  // dir/vocab.json and dir/merges.txt (a Hugging Face GPT-2 folder).
  static GPT2Tokenizer from_pretrained(const std::string& dir) {
    const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
    return from_files(base + "vocab.json", base + "merges.txt");
  }

  std::vector<int64_t> encode(std::string_view text) const {
    std::vector<int64_t> ids;
    ids.reserve(text.size() / 3 + 1);
    if (eos_id_ < 0) {
      encode_ordinary(text, ids);
      return ids;
    }
    for (size_t p = 0;;) {
      const size_t q = text.find(kEndOfText, p);
      encode_ordinary(text.substr(p, q == std::string_view::npos ? std::string_view::npos : q - p), ids);
      if (q == std::string_view::npos) break;
      ids.push_back(eos_id_);
      p = q + kEndOfText.size();
    }
    return ids;
  }

  // The bytes the ids stand for, concatenated (a special token gives its own text). This is raw
  // bytes, not necessarily UTF-8: ids that split a character decode to part of it (Hugging Face
  // would put U+FFFD there). ValueError for an id not in the vocab.
  std::string decode(std::span<const int64_t> ids) const {
    std::string out;
    for (size_t k = 0; k < ids.size(); ++k) {
      const int64_t id = ids[k];
      NABLA_CHECK(id >= 0 && id < vocab_size() && has_id_[static_cast<size_t>(id)], ValueError,
                  "GPT2Tokenizer::decode: id ", id, " at position ", k, " is not in the vocabulary (vocab_size ",
                  vocab_size(), ")");
      out += id_bytes_[static_cast<size_t>(id)];
    }
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const { return decode(std::span<const int64_t>(ids)); }

  // The id of a token as spelled in vocab.json (byte-level characters: " the" is "Ġthe").
  int64_t token_to_id(std::string_view token) const {
    const auto it = vocab_.find(token);
    NABLA_CHECK(it != vocab_.end(), ValueError, "GPT2Tokenizer::token_to_id: \"", token, "\" is not in the vocabulary");
    return it->second;
  }
  bool has_token(std::string_view token) const { return vocab_.find(token) != vocab_.end(); }
  const std::string& id_to_token(int64_t id) const {
    NABLA_CHECK(id >= 0 && id < vocab_size() && has_id_[static_cast<size_t>(id)], ValueError,
                "GPT2Tokenizer::id_to_token: id ", id, " is not in the vocabulary (vocab_size ", vocab_size(), ")");
    return tokens_[static_cast<size_t>(id)];
  }
  // The largest id + 1: the rows an embedding needs (the number of tokens when the ids are
  // 0..n-1, as in GPT-2's 50257 and in every file Hugging Face saves).
  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  size_t num_merges() const { return merges_.size(); }

  bool has_eos_token() const { return eos_id_ >= 0; }
  int64_t eos_token_id() const {
    NABLA_CHECK(eos_id_ >= 0, ValueError, "GPT2Tokenizer::eos_token_id: the vocabulary has no ", kEndOfText, " token");
    return eos_id_;
  }

 private:
  struct Merge {
    int32_t rank, new_id;
  };
  // string keys found by string_view, without making a string
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  template <class V>
  using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
  // The word cache; copying a tokenizer gives the copy an empty one.
  struct Cache {
    mutable std::shared_mutex mu;
    StringMap<std::vector<int32_t>> words;
    Cache() = default;
    Cache(const Cache&) {}
    Cache& operator=(const Cache&) { return *this; }
  };

  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    NABLA_CHECK(f.good(), IOError, "GPT2Tokenizer: cannot open ", path);
    std::string s((std::istreambuf_iterator<char>(f)), {});
    NABLA_CHECK(!f.bad(), IOError, "GPT2Tokenizer: cannot read ", path);
    return s;
  }
  static size_t line_of(std::string_view text, size_t offset) {
    offset = std::min(offset, text.size());
    return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
  }

  void load_vocab(const std::string& path) {
    const std::string text = read_file(path);
    json::Reader r(text);
    constexpr int64_t kMaxId = (int64_t{1} << 24) - 1;  // bounds the id table a hostile file can make us allocate
    std::vector<std::pair<std::string, int32_t>> entries;
    auto fail = [&](const std::string& why) -> void {
      throw IOError(nabla::detail::cat("nabla::GPT2Tokenizer: ", path, ":", line_of(text, r.offset()), ": ", why));
    };
    try {
      r.begin_object();
      for (std::string token; r.next_key(token);) {
        if (r.next() != json::Reader::Next::Number) fail("the id of \"" + token + "\" is not a number");
        const int64_t id = r.read_int();
        if (id < 0 || id > kMaxId) fail("the id of \"" + token + "\" is " + std::to_string(id) + ", outside [0, 2^24)");
        if (token.empty()) fail("an empty token");
        entries.emplace_back(token, static_cast<int32_t>(id));
        if (!vocab_.emplace(token, static_cast<int32_t>(id)).second) fail("\"" + token + "\" appears twice");
      }
      r.end();
    } catch (const json::ParseError& e) {
      fail(std::string("not a JSON object of token ids (") + e.what() + ")");
    }
    int32_t max_id = -1;
    for (const auto& e : entries) max_id = std::max(max_id, e.second);
    tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
    id_bytes_.assign(tokens_.size(), std::string());
    has_id_.assign(tokens_.size(), 0);
    for (const auto& [token, id] : entries) {
      NABLA_CHECK(!has_id_[id], IOError, "GPT2Tokenizer: ", path, ": id ", id, " is given to both \"", tokens_[id],
                  "\" and \"", token, "\"");
      has_id_[id] = 1;
      tokens_[id] = token;
      id_bytes_[id] = token == kEndOfText ? token : symbols_to_bytes(token);
    }
    byte_id_.fill(-1);
    for (int b = 0; b < 256; ++b) {
      std::string sym;
      detail::append_utf8(sym, bytes_to_unicode()[b]);
      const auto it = vocab_.find(sym);
      if (it != vocab_.end()) byte_id_[b] = it->second;
    }
    const auto eos = vocab_.find(kEndOfText);
    eos_id_ = eos == vocab_.end() ? -1 : eos->second;
  }

  // A token's byte-level characters back to bytes; a character outside the alphabet stands for
  // its own UTF-8 (as Hugging Face's ByteLevel decoder).
  static std::string symbols_to_bytes(std::string_view token) {
    std::string out;
    for (size_t p = 0; p < token.size();) {
      const size_t n = json::utf8_sequence(token, p);  // vocab.json is valid UTF-8 (the reader checks)
      char32_t cp = static_cast<unsigned char>(token[p]) & (n == 1 ? 0x7F : 0x7F >> n);
      for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(token[p + k]) & 0x3F);
      const int b = unicode_to_byte(cp);
      if (b >= 0) out += static_cast<char>(b);
      else out.append(token.substr(p, n));
      p += n;
    }
    return out;
  }

  void load_merges(const std::string& path) {
    const std::string text = read_file(path);
    int32_t rank = 0;
    size_t line_no = 0;
    for (size_t p = 0; p < text.size();) {
      size_t q = text.find('\n', p);
      if (q == std::string::npos) q = text.size();
      std::string_view line(text.data() + p, q - p);
      p = q + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
      const size_t sp = line.find(' ');
      auto fail = [&](const std::string& why) {
        throw IOError(nabla::detail::cat("nabla::GPT2Tokenizer: ", path, ":", line_no, ": ", why, " (the line is \"",
                                  line.substr(0, 80), "\")"));
      };
      if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() || line.find(' ', sp + 1) != std::string_view::npos)
        fail("expected two tokens separated by one space");
      const std::string a(line.substr(0, sp)), b(line.substr(sp + 1));
      const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
      if (ia == vocab_.end()) fail("\"" + a + "\" is not in the vocabulary");
      if (ib == vocab_.end()) fail("\"" + b + "\" is not in the vocabulary");
      if (iab == vocab_.end()) fail("the merged token \"" + a + b + "\" is not in the vocabulary");
      merges_[pair_key(ia->second, ib->second)] = Merge{rank++, iab->second};  // a repeated pair: the later rank, as HF and encoder.py
    }
  }

  // Text without special tokens.
  void encode_ordinary(std::string_view text, std::vector<int64_t>& ids) const {
    std::vector<int32_t> word;
    for_each_pre_token(text, [&](std::string_view piece) {
      const bool cacheable = piece.size() <= kCacheMaxWordBytes;
      if (cacheable) {
        std::shared_lock lock(cache_.mu);
        const auto it = cache_.words.find(piece);
        if (it != cache_.words.end()) {
          ids.insert(ids.end(), it->second.begin(), it->second.end());
          return;
        }
      }
      bpe(piece, word);
      ids.insert(ids.end(), word.begin(), word.end());
      if (cacheable) {
        std::unique_lock lock(cache_.mu);
        if (cache_.words.size() < kCacheCapacity) cache_.words.emplace(std::string(piece), word);
      }
    });
  }

  // One word's bytes -> ids: Hugging Face's Word::merge_all (a min-heap of (rank, position);
  // entries made stale by an earlier merge are dropped when popped).
  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    struct Symbol {
      int32_t id, prev, next;
    };
    struct Candidate {
      int32_t rank, pos, new_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    const int32_t n = static_cast<int32_t>(piece.size());
    std::vector<Symbol> sym(static_cast<size_t>(n));
    for (int32_t k = 0; k < n; ++k) {
      const auto b = static_cast<unsigned char>(piece[static_cast<size_t>(k)]);
      NABLA_CHECK(byte_id_[b] >= 0, ValueError, "GPT2Tokenizer::encode: the vocabulary has no token for byte 0x",
                  "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15], " (a byte-level BPE vocab has all 256)");
      sym[k] = {byte_id_[b], k - 1, k + 1 < n ? k + 1 : -1};
    }
    auto merge_of = [&](int32_t a, int32_t b) -> const Merge* {
      const auto it = merges_.find(pair_key(a, b));
      return it == merges_.end() ? nullptr : &it->second;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    for (int32_t k = 0; k + 1 < n; ++k)
      if (const Merge* m = merge_of(sym[k].id, sym[k + 1].id)) queue.push({m->rank, k, m->new_id});
    std::vector<char> removed(static_cast<size_t>(n), 0);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& cur = sym[top.pos];
      if (removed[top.pos] || cur.next < 0) continue;
      const Symbol right = sym[cur.next];
      const Merge* m = merge_of(cur.id, right.id);
      if (!m || m->new_id != top.new_id) continue;  // stale
      removed[cur.next] = 1;
      cur.id = top.new_id;
      cur.next = right.next;
      if (right.next >= 0) sym[right.next].prev = top.pos;
      if (cur.prev >= 0)
        if (const Merge* l = merge_of(sym[cur.prev].id, cur.id)) queue.push({l->rank, cur.prev, l->new_id});
      if (cur.next >= 0)
        if (const Merge* r = merge_of(cur.id, sym[cur.next].id)) queue.push({r->rank, top.pos, r->new_id});
    }
    out.clear();
    for (int32_t k = 0; k >= 0 && k < n; k = sym[k].next) out.push_back(sym[k].id);
  }

  StringMap<int32_t> vocab_;
  std::vector<std::string> tokens_;    // by id ("" where no token has the id)
  std::vector<std::string> id_bytes_;  // by id: the bytes a token decodes to
  std::vector<char> has_id_;
  std::array<int32_t, 256> byte_id_{};  // the id of each byte's one-character token, or -1
  std::unordered_map<uint64_t, Merge> merges_;
  int64_t eos_id_ = -1;
  mutable Cache cache_;
};

}  // namespace text
}  // namespace nabla
