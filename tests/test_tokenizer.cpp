// text: the GPT-2 tokenizer. The pre-tokenizer's splits (contractions, spaces, digits, Unicode
// classes, invalid UTF-8), BPE by rank on a hand-made vocab, <|endoftext|>, byte-exact round trips
// of any bytes, file errors; and (TokenizerHF, run by the ctest entry tokenizer_hf) the ids and
// splits of Hugging Face tokenizers on tiny Shakespeare and a Unicode torture text.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nabla/text/gpt2_tokenizer.hpp>

#include "support/temp_files.hpp"

namespace nabla_test {
namespace {

using nabla::text::GPT2Tokenizer;
using nabla::text::gpt2_pre_tokenize;

std::vector<std::string> pieces(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : gpt2_pre_tokenize(s)) out.emplace_back(p);
  return out;
}
using Pieces = std::vector<std::string>;

// A byte string printed readably in failure messages.
std::string show(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// ---- the byte-level alphabet and the Unicode tables ---------------------------------------------

TEST(Tokenizer, ByteToUnicodeIsGpt2s) {
  const auto& m = nabla::text::bytes_to_unicode();
  EXPECT_EQ(m['!'], U'!');
  EXPECT_EQ(m['~'], U'~');
  EXPECT_EQ(m[0xE9], U'\u00e9');    // printable Latin-1 stays
  EXPECT_EQ(m[' '], U'\u0120');     // 'Ġ'
  EXPECT_EQ(m['\n'], U'\u010a');    // 'Ċ'
  EXPECT_EQ(m[0], U'\u0100');
  EXPECT_EQ(m[0x7F], U'\u0121');    // after the 33 bytes 0..32
  EXPECT_EQ(m[0xAD], U'\u0143');    // the last of the 68 remapped bytes
  std::vector<char32_t> seen(m.begin(), m.end());
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(nabla::text::unicode_to_byte(m[b]), b);
  EXPECT_EQ(nabla::text::unicode_to_byte(U' '), -1);
  EXPECT_EQ(nabla::text::unicode_to_byte(U'\u4e00'), -1);
}

TEST(Tokenizer, UnicodeTablesAreSortedAndClassify) {
  namespace u = nabla::text::unicode;
  auto sorted = [](const auto& t) {
    for (size_t k = 0; k < std::size(t); ++k) {
      if (t[k].lo > t[k].hi) return false;
      if (k && t[k - 1].hi + 1 >= t[k].lo) return false;  // disjoint and not adjacent (merged)
    }
    return true;
  };
  EXPECT_TRUE(sorted(u::kLetter));
  EXPECT_TRUE(sorted(u::kNumber));
  EXPECT_TRUE(sorted(u::kWhiteSpace));
  using nabla::text::detail::CharClass;
  using nabla::text::detail::classify;
  EXPECT_EQ(classify(U'a'), CharClass::Letter);
  EXPECT_EQ(classify(U'\u00e9'), CharClass::Letter);
  EXPECT_EQ(classify(U'\u65e5'), CharClass::Letter);   // 日
  EXPECT_EQ(classify(U'\U0001d518'), CharClass::Letter);  // 𝔘
  EXPECT_EQ(classify(U'\u02b0'), CharClass::Letter);   // Lm
  EXPECT_EQ(classify(U'\u0301'), CharClass::Other);    // a combining mark is not a letter
  EXPECT_EQ(classify(U'7'), CharClass::Number);
  EXPECT_EQ(classify(U'\u0663'), CharClass::Number);   // Arabic-Indic 3
  EXPECT_EQ(classify(U'\u00bd'), CharClass::Number);   // ½ (No)
  EXPECT_EQ(classify(U'\u216b'), CharClass::Number);   // Ⅻ (Nl)
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', U'\v', U'\f', U'\u0085', U'\u00a0', U'\u1680', U'\u2003', U'\u2028',
                     U'\u2029', U'\u202f', U'\u205f', U'\u3000'})
    EXPECT_EQ(classify(c), CharClass::Space) << static_cast<uint32_t>(c);
  // str.isspace() says yes to these; \s (White_Space) does not
  for (char32_t c : {U'\x1c', U'\x1d', U'\x1e', U'\x1f', U'\u200b', U'\u180e', U'\ufeff'})
    EXPECT_EQ(classify(c), CharClass::Other) << static_cast<uint32_t>(c);
  EXPECT_EQ(classify(U'!'), CharClass::Other);
  EXPECT_EQ(classify(U'\U0001f600'), CharClass::Other);  // 😀
  EXPECT_EQ(classify(U'\U0010ffff'), CharClass::Other);
}

// ---- the pre-tokenizer --------------------------------------------------------------------------

TEST(Tokenizer, PreTokenizerSplitsAsGpt2) {
  struct Case {
    std::string text;
    Pieces want;
  };
  const std::vector<Case> cases = {
      {"", {}},
      {"Hello world", {"Hello", " world"}},
      {"Hello, world!", {"Hello", ",", " world", "!"}},
      // contractions: lower case only, and only these seven
      {"it's we're I've you'll I'm he'd don't", {"it", "'s", " we", "'re", " I", "'ve", " you", "'ll", " I", "'m", " he", "'d", " don", "'t"}},
      {"DON'T IT'S", {"DON", "'", "T", " IT", "'", "S"}},
      {"'sdf 'tis x'", {"'s", "df", " '", "tis", " x", "'"}},
      {"''s", {"''", "s"}},
      {"!'s", {"!'", "s"}},
      // digits and letters part; " ?" joins one space
      {"abc123def 42nd", {"abc", "123", "def", " 42", "nd"}},
      {"3.14, 1,000", {"3", ".", "14", ",", " 1", ",", "000"}},
      {"hi!!! ...", {"hi", "!!!", " ..."}},
      // \s+(?!\S): a run before a non-space gives up its last character
      {"a  b", {"a", " ", " b"}},
      {"a   b", {"a", "  ", " b"}},
      {"a \n b", {"a", " \n", " b"}},
      {"a\n\nb", {"a", "\n", "\n", "b"}},
      {"a\t\tb", {"a", "\t", "\t", "b"}},
      {"a \t b", {"a", " \t", " b"}},
      {"a   ", {"a", "   "}},  // at the end: the whole run
      {"   ", {"   "}},
      {" ", {" "}},
      {" !", {" !"}},
      {"  !", {" ", " !"}},
      {"\n x", {"\n", " x"}},
      {"x \n", {"x", " \n"}},
      // Unicode letters, numbers, spaces
      {"héllo 日本語 Ünïcödé", {"héllo", " 日本語", " Ünïcödé"}},
      {"Привет, мир!", {"Привет", ",", " мир", "!"}},
      {"e\u0301t\u00e9", {"e", "\u0301", "t\u00e9"}},  // a combining mark is a symbol
      {"½²Ⅻ1 ٣٤", {"½²Ⅻ1", " ٣٤"}},
      {"x\u00a0y", {"x", "\u00a0", "y"}},              // NBSP is \s but not ' ': no " ?"
      {"x \u00a0y", {"x", " ", "\u00a0", "y"}},
      {"\u3000\u3000x", {"\u3000", "\u3000", "x"}},
      {"x\u200by", {"x", "\u200b", "y"}},              // zero width space is not \s
      {"hi 👋🏽!", {"hi", " 👋🏽!"}},
      {"👨\u200d👩\u200d👧 ok", {"👨\u200d👩\u200d👧", " ok"}},
      {"a👍b", {"a", "👍", "b"}},
      // invalid UTF-8: each bad byte a symbol of its own
      {"a\xff\xfe" "b", {"a", "\xff\xfe", "b"}},
      {" \xff", {" \xff"}},
      {"\xe6\x97" "x", {"\xe6\x97", "x"}},             // a truncated 日
      {"\xc0\xaf!", {"\xc0\xaf!"}},                    // an overlong '/'
      {"\xed\xa0\x80z", {"\xed\xa0\x80", "z"}},        // a UTF-16 surrogate
      {"x\xe6", {"x", "\xe6"}},
  };
  for (const auto& c : cases) EXPECT_EQ(pieces(c.text), c.want) << "text: \"" << show(c.text) << "\"";
}

TEST(Tokenizer, PreTokenizerCoversAnyBytes) {
  // half random bytes, half drawn from spaces, letters, digits, symbols, é, 日 and '
  const std::string_view alphabet = " a1!\t\n\xc3\xa9\xe6\x97\xa5'";
  std::mt19937_64 g(7);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 64);
  for (int k = 0; k < 2000; ++k) {
    std::string s(static_cast<size_t>(len(g)), '\0');
    for (auto& c : s) c = k % 2 ? static_cast<char>(byte(g)) : alphabet[static_cast<size_t>(byte(g)) % alphabet.size()];
    std::string joined;
    for (auto p : gpt2_pre_tokenize(s)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    ASSERT_EQ(joined, s) << show(s);
  }
}

// ---- BPE on a hand-made vocab -------------------------------------------------------------------

struct TempDir : nabla_test::TempDir {
  explicit TempDir(const std::string& name) : nabla_test::TempDir("nabla_tokenizer", name) {}
};

// A byte-level vocab: <|endoftext|> (optional), the 256 byte symbols, then the merges' results.
std::string vocab_json(const std::vector<std::string>& merged, bool eos = true) {
  std::string out = "{";
  int64_t id = 0;
  auto add = [&](const std::string& token) {
    out += (id ? ",\n" : "\n") + std::string("  ");
    nabla::json::detail::write_string(out, token);
    out += ": " + std::to_string(id++);
  };
  if (eos) add("<|endoftext|>");
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    nabla::text::detail::append_utf8(sym, nabla::text::bytes_to_unicode()[b]);
    add(sym);
  }
  for (const auto& t : merged) add(t);
  return out + "\n}\n";
}

// A tokenizer from merges ("a b" lines, best first); the vocab holds what they make.
GPT2Tokenizer make(const TempDir& tmp, const std::vector<std::string>& merges, bool eos = true) {
  std::vector<std::string> merged;
  std::string text = "#version: 0.2\n";
  for (const auto& m : merges) {
    text += m + "\n";
    std::string joined = m;
    joined.erase(joined.find(' '), 1);
    if (std::find(merged.begin(), merged.end(), joined) == merged.end()) merged.push_back(joined);
  }
  write_bytes(tmp / "vocab.json", vocab_json(merged, eos));
  write_bytes(tmp / "merges.txt", text);
  return GPT2Tokenizer::from_pretrained(tmp.dir.string());
}

std::vector<std::string> tokens(const GPT2Tokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (int64_t id : t.encode(text)) out.push_back(t.id_to_token(id));
  return out;
}

TEST(Tokenizer, MergesByRank) {
  TempDir tmp("merges");
  const auto t = make(tmp, {"Ġ t", "h e", "Ġt he", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "i n", "in g"});
  EXPECT_EQ(t.vocab_size(), 1 + 256 + 10);
  EXPECT_EQ(t.num_merges(), 10u);
  EXPECT_EQ(tokens(t, "the world"), (Pieces{"t", "he", "Ġworld"}));  // "the" starts the text: no "Ġt"
  EXPECT_EQ(tokens(t, " the thing"), (Pieces{"Ġthe", "Ġt", "h", "ing"}));
  EXPECT_EQ(tokens(t, "wor\nld"), (Pieces{"w", "or", "Ċ", "ld"}));
  EXPECT_EQ(tokens(t, "héllo"), (Pieces{"h", "Ã", "©", "l", "l", "o"}));  // é is two bytes

  // the lower rank wins, whatever the position
  TempDir a("rank_a"), b("rank_b"), c("rank_c"), d("rank_d");
  EXPECT_EQ(tokens(make(a, {"a b", "b c"}), "abc"), (Pieces{"ab", "c"}));
  EXPECT_EQ(tokens(make(b, {"b c", "a b"}), "abc"), (Pieces{"a", "bc"}));
  // a pair repeated: leftmost first, a symbol in one merge at a time
  EXPECT_EQ(tokens(make(d, {"a a"}), "aaa"), (Pieces{"aa", "a"}));
  const auto tc = make(c, {"a a", "aa aa", "aa a"});
  EXPECT_EQ(tokens(tc, "aaa"), (Pieces{"aaa"}));
  EXPECT_EQ(tokens(tc, "aaaa"), (Pieces{"aaaa"}));
  EXPECT_EQ(tokens(tc, "aaaaa"), (Pieces{"aaaa", "a"}));  // "aa aa" (rank 1) before "aa a" (rank 2)
  EXPECT_EQ(tokens(tc, "aaaaaaa"), (Pieces{"aaaa", "aaa"}));

  // token_to_id / id_to_token, and the cache gives the same ids the second time
  EXPECT_EQ(t.id_to_token(t.token_to_id("Ġthe")), "Ġthe");
  EXPECT_EQ(t.encode(" the the"), t.encode(" the the"));
  EXPECT_TRUE(t.has_token("Ġworld"));
  EXPECT_FALSE(t.has_token(" world"));
}

TEST(Tokenizer, EndOfTextIsOneSpecialToken) {
  TempDir tmp("eos");
  const auto t = make(tmp, {"Ġ t", "h e", "Ġt he"});
  ASSERT_TRUE(t.has_eos_token());
  const int64_t eos = t.eos_token_id();
  EXPECT_EQ(eos, 0);
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), eos);
  const auto ids = t.encode("the<|endoftext|> the");
  EXPECT_EQ(ids, (std::vector<int64_t>{t.token_to_id("t"), t.token_to_id("he"), eos, t.token_to_id("Ġthe")}));
  EXPECT_EQ(t.decode(ids), "the<|endoftext|> the");
  EXPECT_EQ(t.encode("<|endoftext|><|endoftext|>"), (std::vector<int64_t>{eos, eos}));
  // the text on each side is pre-tokenized alone: the space before it is a piece at the end of text
  EXPECT_EQ(t.encode("x  <|endoftext|>"), (std::vector<int64_t>{t.token_to_id("x"), t.token_to_id("Ġ"), t.token_to_id("Ġ"), eos}));
  EXPECT_EQ(t.encode("<|endoftext|").size(), 12u);  // not the whole literal: ordinary text

  // without the token in the vocab the literal is ordinary text
  TempDir tmp2("no_eos");
  const auto plain = make(tmp2, {"Ġ t"}, /*eos=*/false);
  EXPECT_FALSE(plain.has_eos_token());
  EXPECT_THROW(plain.eos_token_id(), nabla::ValueError);
  EXPECT_EQ(plain.encode("<|endoftext|>").size(), 13u);
  EXPECT_EQ(plain.decode(plain.encode("a<|endoftext|>b")), "a<|endoftext|>b");
}

TEST(Tokenizer, AnyBytesRoundTrip) {
  TempDir tmp("round_trip");
  const auto t = make(tmp, {"Ġ t", "h e", "Ġt he", "Ã ©", "l l", "Ġ Ġ", "ĠĠ ĠĠ", "æ Ĺ", "æĹ ¥"});
  const std::vector<std::string> texts = {
      "", "héllo wörld", "日本語のテキスト", "Ünïcödé", "👨\u200d👩\u200d👧\u200d👦 🇯🇵 ❤\ufe0f", "e\u0301\u0301",
      "DON'T  stop \t\n\n  ", "mixed\xff\xfe bytes \xe6\x97 and \xc0\xaf and \xed\xa0\x80", std::string("nul\0byte", 8),
      "\xf4\x90\x80\x80 beyond U+10FFFF", "<|endoftext|>\xff<|endoftext|>"};
  for (const auto& s : texts) EXPECT_EQ(t.decode(t.encode(s)), s) << show(s);
  std::mt19937_64 g(11);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 200);
  for (int k = 0; k < 500; ++k) {
    std::string s(static_cast<size_t>(len(g)), '\0');
    for (auto& c : s) c = static_cast<char>(byte(g));
    ASSERT_EQ(t.decode(t.encode(s)), s) << show(s);
  }
  // every id decodes; an unknown one is a ValueError naming it
  for (int64_t id = 0; id < t.vocab_size(); ++id) EXPECT_NO_THROW(t.decode({id}));
  try {
    t.decode({1, 2, t.vocab_size()});
    ADD_FAILURE() << "no error";
  } catch (const nabla::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("id " + std::to_string(t.vocab_size()) + " at position 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.decode({-1}), nabla::ValueError);
  EXPECT_THROW(t.id_to_token(-1), nabla::ValueError);
  EXPECT_THROW(t.token_to_id("nope"), nabla::ValueError);
}

TEST(Tokenizer, EncodeIsThreadSafe) {
  TempDir tmp("threads");
  const auto t = make(tmp, {"Ġ t", "h e", "Ġt he", "i n", "in g"});
  std::string text;
  for (int k = 0; k < 300; ++k) text += " the thing number " + std::to_string(k) + " is héllo\n";
  const auto want = t.encode(text);
  const GPT2Tokenizer fresh = t;  // a copy starts with an empty cache
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k) threads.emplace_back([&, k] { got[k] = fresh.encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

// ---- bad files ----------------------------------------------------------------------------------

// The message of the IOError f throws ("" when it throws none).
template <class F>
std::string io_error(F&& f) {
  try {
    f();
  } catch (const nabla::IOError& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, BadFilesNameFileAndLine) {
  TempDir tmp("bad");
  const std::string vocab = tmp / "vocab.json", merges = tmp / "merges.txt";
  write_bytes(vocab, vocab_json({"ab"}));
  write_bytes(merges, "#version: 0.2\na b\n");
  EXPECT_NO_THROW(GPT2Tokenizer::from_files(vocab, merges));
  auto load = [&] { GPT2Tokenizer::from_files(vocab, merges); };
  auto expect = [&](const std::string& what, const std::vector<std::string>& parts) {
    const std::string msg = io_error(load);
    ASSERT_FALSE(msg.empty()) << what << ": no IOError";
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << what << ": \"" << msg << "\" lacks \"" << p << "\"";
  };

  EXPECT_NE(io_error([&] { GPT2Tokenizer::from_files(tmp / "none.json", merges); }).find("none.json"), std::string::npos);
  EXPECT_NE(io_error([&] { GPT2Tokenizer::from_pretrained(tmp / "no_such_dir"); }).find("no_such_dir/vocab.json"), std::string::npos);

  // merges.txt
  write_bytes(merges, "#version: 0.2\na b\nab\n");
  expect("one token", {merges + ":3", "two tokens"});
  write_bytes(merges, "a b\na  b\n");
  expect("two spaces", {merges + ":2"});
  write_bytes(merges, "#version: 0.2\n\na zz\n");
  expect("token not in vocab", {merges + ":3", "\"zz\" is not in the vocabulary"});
  write_bytes(merges, "a b\nb a\n");
  expect("merged token not in vocab", {merges + ":2", "\"ba\""});
  write_bytes(merges, "a b\r\n\r\n");  // CRLF and blank lines are fine
  EXPECT_NO_THROW(load());

  // vocab.json
  write_bytes(vocab, "{\"a\": 0,\n \"b\": 1,\n \"c\": }\n");
  expect("bad JSON", {vocab + ":3", "not a JSON object"});
  write_bytes(vocab, "[1, 2]");
  expect("not an object", {vocab + ":1"});
  write_bytes(vocab, "{\"a\": 0,\n\"b\": \"1\"}");
  expect("string id", {vocab + ":2", "\"b\""});
  write_bytes(vocab, "{\"a\": 0,\n\"b\": 1.5}");
  expect("fractional id", {vocab + ":2"});
  write_bytes(vocab, "{\"a\": 0,\n\"b\": -1}");
  expect("negative id", {vocab + ":2", "-1"});
  write_bytes(vocab, "{\"a\": 0,\n\"b\": 99999999999}");
  expect("huge id", {vocab + ":2"});
  write_bytes(vocab, "{\"a\": 0,\n\"a\": 1}");
  expect("duplicate token", {vocab + ":2", "twice"});
  write_bytes(vocab, "{\"a\": 0,\n\"b\": 0}");
  expect("duplicate id", {vocab, "id 0"});
  write_bytes(vocab, "{\"a\": 0, \"\xff\": 1}");
  expect("invalid UTF-8", {vocab + ":1"});
  write_bytes(vocab, "");
  expect("empty", {vocab + ":1"});
}

TEST(Tokenizer, MissingByteIsAValueError) {
  TempDir tmp("no_bytes");
  write_bytes(tmp / "vocab.json", "{\"a\": 0, \"b\": 1, \"ab\": 2}");
  write_bytes(tmp / "merges.txt", "a b\n");
  const auto t = GPT2Tokenizer::from_pretrained(tmp.dir.string());
  EXPECT_EQ(t.encode("abba"), (std::vector<int64_t>{2, 1, 0}));
  EXPECT_EQ(t.vocab_size(), 3);
  EXPECT_THROW(t.encode("abc"), nabla::ValueError);
}

// ---- against Hugging Face tokenizers ------------------------------------------------------------

std::vector<int64_t> read_ints(const std::string& path) {
  std::ifstream f(path);
  std::vector<int64_t> out;
  for (int64_t v; f >> v;) out.push_back(v);
  return out;
}

// Where a and b first differ, with the values around it, or "" when equal.
std::string first_difference(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  size_t k = 0;
  while (k < a.size() && k < b.size() && a[k] == b[k]) ++k;
  if (k == a.size() && k == b.size()) return "";
  std::ostringstream os;
  os << "sizes " << a.size() << " vs " << b.size() << "; first difference at " << k << ":";
  for (const auto* v : {&a, &b}) {
    os << "\n  ";
    for (size_t i = k >= 3 ? k - 3 : 0; i < std::min(v->size(), k + 5); ++i) os << (i == k ? "[" : "") << (*v)[i] << (i == k ? "] " : " ");
  }
  return os.str();
}

TEST(TokenizerHF, MatchesHuggingFaceTokenizers) {
  const char* ref = std::getenv("NABLA_TOKENIZER_REF");
  if (!ref)
    GTEST_SKIP() << "NABLA_TOKENIZER_REF is not set: the comparison with Hugging Face tokenizers runs as the ctest "
                    "entry tokenizer_hf (tests/tokenizer/run.sh)";
  const std::filesystem::path dir(ref);
  const auto tok = GPT2Tokenizer::from_pretrained(dir.string());
  ASSERT_TRUE(tok.has_eos_token());
  for (const char* name : {"corpus", "torture", "probe"}) {
    SCOPED_TRACE(name);
    const std::string text = read_bytes((dir / (std::string(name) + ".txt")).string());
    const auto want_ids = read_ints((dir / (std::string(name) + ".ids")).string());
    const auto want_splits = read_ints((dir / (std::string(name) + ".splits")).string());
    ASSERT_FALSE(want_ids.empty());

    // the pre-tokens: cut at <|endoftext|> (a piece of its own), each part split alone
    std::vector<int64_t> splits;
    size_t at = 0;
    while (at <= text.size()) {
      const size_t q = std::min(text.find(GPT2Tokenizer::kEndOfText, at), text.size());
      for (auto p : gpt2_pre_tokenize(std::string_view(text).substr(at, q - at))) splits.push_back(static_cast<int64_t>(p.size()));
      if (q == text.size()) break;
      splits.push_back(static_cast<int64_t>(GPT2Tokenizer::kEndOfText.size()));
      at = q + GPT2Tokenizer::kEndOfText.size();
    }
    std::string diff = first_difference(splits, want_splits);
    if (!diff.empty()) {
      size_t k = 0, off = 0;
      while (k < splits.size() && k < want_splits.size() && splits[k] == want_splits[k]) off += static_cast<size_t>(splits[k++]);
      diff += "\n  text from byte " + std::to_string(off) + ": \"" + show(text.substr(off, 40)) + "\"";
    }
    EXPECT_EQ(diff, "") << "pre-token lengths (nabla, then Hugging Face)";

    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(first_difference(ids, want_ids), "") << "ids (nabla, then Hugging Face)";
    EXPECT_TRUE(tok.decode(ids) == text) << "decode(encode(text)) differs from the text";
    const auto t1 = std::chrono::steady_clock::now();
    EXPECT_EQ(tok.encode(text), ids);  // now from the word cache
    const double warm = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf("[tokenizer] %s: %zu bytes, %zu ids, encode %.1f ms (%.1f MB/s) with an empty word cache, %.1f ms (%.1f MB/s) again\n",
                name, text.size(), ids.size(), s * 1e3, mb / s, warm * 1e3, mb / warm);
  }
}

}  // namespace
}  // namespace nabla_test
