// Hostile safetensors headers at 10 MiB and at the format's 100 MB limit: how long nabla takes to
// refuse (or load) each, and the peak memory it allocates meanwhile (operator new, counted
// exactly; tensor data is not in it, and these files have none). Plain program:
//   build/release/benchmarks/nabla_hostile_headers [MiB...]     (default: 10 95)
// Figures in docs/testing.md ("Untrusted files").
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

#include "support/counting_new.hpp"  // exact allocation counts (this TU holds the program's operator new)

namespace {
std::string file_of(const std::string& header) {
  uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header;
}
template <class Item>
std::string build(const std::string& head, Item item, const std::string& tail, size_t bytes) {
  std::string s = head;
  s.reserve(bytes + 256);
  for (int i = 0; s.size() < bytes; ++i) s += (i ? "," : "") + item(i);
  return s + tail;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace nabla;
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(static_cast<size_t>(std::atof(argv[i]) * (1 << 20)));
  if (sizes.empty()) sizes = {size_t{10} << 20, size_t{95} << 20};  // 95 MiB: just under the 100,000,000-byte limit
  std::printf("%-44s %11s %9s %13s %7s  %s\n", "header", "bytes", "seconds", "peak alloc", "ratio", "result");
  for (size_t size : sizes) {
    struct Case {
      const char* what;
      std::string header;
    };
    std::vector<Case> cases;
    cases.push_back({"shape with millions of dimensions", build(R"({"w":{"dtype":"F32","shape":[)", [](int) { return std::string("1"); }, "]}}", size)});
    cases.push_back({"data_offsets with millions of numbers", build(R"({"w":{"dtype":"F32","shape":[],"data_offsets":[)", [](int) { return std::string("0"); }, "]}}", size)});
    cases.push_back({"one key of the whole size", "{\"" + std::string(size, 'k') + "\":{}}"});
    cases.push_back({"an entry nested millions deep", "{\"a\":" + std::string(size / 2, '[') + std::string(size / 2, ']') + "}"});
    cases.push_back({"empty tensors, as many as fit (valid)", build("{", [](int i) {
                       return "\"" + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})"; }, "}", size)});
    cases.push_back({"metadata keys, as many as fit (valid)", build(R"({"__metadata__":{)", [](int i) {
                       return "\"" + std::to_string(i) + "\":\"\""; }, "}}", size)});
    cases.push_back({"metadata keys, the last one a duplicate", build(R"({"__metadata__":{)", [](int i) {
                       return "\"" + std::to_string(i) + "\":\"\""; }, ",\"0\":\"\"}}", size)});
    cases.push_back({"one metadata value of the whole size (valid)", "{\"__metadata__\":{\"k\":\"" + std::string(size, 'v') + "\"}}"});
    for (const Case& c : cases) {
      const std::string file = file_of(c.header);
      std::string result = "loaded";
      const auto t0 = std::chrono::steady_clock::now();
      // the refusal is caught inside, so the peak counts the whole attempt
      const int64_t peak = nabla_test::peak_new_bytes([&] {
        try {
          io::SafetensorsFile f = io::load_safetensors(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(file.data()), file.size()));
          result += " (" + std::to_string(f.tensors.size()) + " tensors, " + std::to_string(f.metadata.size()) + " metadata)";
        } catch (const IOError& e) {
          result = std::string("refused: ") + std::string(e.what()).substr(0, 70);
        }
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%-44s %11zu %9.3f %13lld %6.2fx  %s\n", c.what, c.header.size(), s, static_cast<long long>(peak),
                  static_cast<double>(peak) / static_cast<double>(c.header.size()), result.c_str());
    }
  }
  // json::parse's duplicate-key check: 80k keys (the issue's 27 s case)
  std::string text = "{";
  for (int i = 0; i < 80000; ++i) text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"\"";
  text += "}";
  const auto t0 = std::chrono::steady_clock::now();
  json::Value v = json::parse(text);
  std::printf("json::parse, an object of %zu keys (%zu bytes): %.3f s\n", v.obj->size(), text.size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}
