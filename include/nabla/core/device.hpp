#pragma once
// Device: where a tensor's memory lives (cpu, or cuda:N). Parsed from and printed as "cpu",
// "cuda", "cuda:1" like LibTorch.

#include <cstdint>
#include <ostream>
#include <string>

#include "error.hpp"

namespace nabla {

enum class DeviceType : uint8_t { CPU, CUDA };
inline constexpr DeviceType kCPU = DeviceType::CPU;
inline constexpr DeviceType kCUDA = DeviceType::CUDA;

struct Device {
  DeviceType type = DeviceType::CPU;
  int16_t index = 0;

  constexpr Device() = default;
  constexpr Device(DeviceType t, int i = 0) : type(t), index(static_cast<int16_t>(i)) {}  // NOLINT
  Device(const std::string& spec) { *this = parse(spec); }                                // NOLINT
  Device(const char* spec) : Device(std::string(spec)) {}                                 // NOLINT

  static constexpr Device cpu() { return Device(DeviceType::CPU, 0); }
  static constexpr Device cuda(int i = 0) { return Device(DeviceType::CUDA, i); }

  constexpr bool is_cpu() const { return type == DeviceType::CPU; }
  constexpr bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

  friend constexpr bool operator==(Device a, Device b) { return a.type == b.type && a.index == b.index; }
  friend constexpr bool operator!=(Device a, Device b) { return !(a == b); }

  static Device parse(const std::string& s) {
    if (s == "cpu") return cpu();
    if (s == "cuda") return cuda(0);
    if (s.rfind("cuda:", 0) == 0 && s.size() > 5) {
      int idx = 0;
      for (size_t i = 5; i < s.size(); ++i) {
        NABLA_CHECK(s[i] >= '0' && s[i] <= '9' && idx < 10000, ValueError, "Device: cannot parse '", s,
                    "'; expected 'cpu', 'cuda' or 'cuda:N'");
        idx = idx * 10 + (s[i] - '0');
      }
      return cuda(idx);
    }
    throw ValueError("nabla::Device: cannot parse '" + s + "'; expected 'cpu', 'cuda' or 'cuda:N'");
  }
};

inline std::ostream& operator<<(std::ostream& os, Device d) { return os << d.str(); }
inline std::ostream& operator<<(std::ostream& os, DeviceType t) { return os << (t == kCUDA ? "cuda" : "cpu"); }

}  // namespace nabla
