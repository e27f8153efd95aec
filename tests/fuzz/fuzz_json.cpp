// libFuzzer target: the JSON parser (json::parse, built on json::Reader). Invariants: a refusal
// is a json::ParseError; what parses is written back as text that parses to the same text
// (dump(parse(dump(v))) == dump(v)); json::Reader::skip accepts exactly what parse accepts.
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  bool skipped = true;
  try {
    json::Reader r(text);
    r.skip();
    r.end();
  } catch (const json::ParseError&) {
    skipped = false;
  }
  json::Value v;
  try {
    v = json::parse(text);
  } catch (const json::ParseError&) {
    // skip() does not look for duplicate keys, so it may accept what parse refuses, never the reverse
    return 0;
  }
  NABLA_FUZZ_CHECK(skipped);
  const std::string once = json::dump(v);
  NABLA_FUZZ_CHECK(json::valid_utf8(once));
  NABLA_FUZZ_CHECK(json::dump(json::parse(once)) == once);
  return 0;
}
