#pragma once
// Counter-based Philox4x32-10 RNG. Element i of a random tensor is a pure function of
// (seed, offset, i), so the CPU and CUDA backends produce the same numbers for the same seed.

#include <cmath>
#include <cstdint>
#include <mutex>
#include <utility>

#include "macros.hpp"

namespace nabla {

struct Philox4x32 {
  uint32_t c[4];

  // 10 rounds of Philox4x32 on counter (ctr_lo, ctr_hi, 0, 0) with key = seed.
  NABLA_HOST_DEVICE static Philox4x32 generate(uint64_t seed, uint64_t counter) {
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
      uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    return Philox4x32{{c0, c1, c2, c3}};
  }
};

// Dropout: b where the uniform draw u >= a, else 0 (a = drop probability, b = 1 / (1 - a)):
// the scaled keep-mask in one pass, the same elements as rand() >= a for the same seed.
enum class RandomKind : uint8_t { Uniform, Normal, Integer, Dropout };

// Parameters of one random fill; element i uses Philox block (offset + i / 4), lane i % 4.
struct RandomParams {
  RandomKind kind = RandomKind::Uniform;
  uint64_t seed = 0;
  uint64_t offset = 0;
  double a = 0.0;  // uniform: low, normal: mean, integer: low, dropout: drop probability
  double b = 1.0;  // uniform: high, normal: std, integer: high (exclusive), dropout: keep scale
};

// The four values of Philox block `block` (elements 4 * block + lane, before the offset).
NABLA_HOST_DEVICE inline void random_block(const RandomParams& p, uint64_t block, double out[4]) {
  Philox4x32 r = Philox4x32::generate(p.seed, p.offset + block);
  switch (p.kind) {
    case RandomKind::Uniform:
      for (int lane = 0; lane < 4; ++lane) {
        double u = (r.c[lane] >> 8) * (1.0 / 16777216.0);  // 24 bits: exact in float32, in [0, 1)
        out[lane] = p.a + (p.b - p.a) * u;
      }
      return;
    case RandomKind::Dropout:
      for (int lane = 0; lane < 4; ++lane) {
        double u = (r.c[lane] >> 8) * (1.0 / 16777216.0);
        out[lane] = u >= p.a ? p.b : 0.0;
      }
      return;
    case RandomKind::Normal:
      // Box-Muller on lanes (0,1) and (2,3); u1 in (0, 1] so log(u1) is finite.
      for (int pair = 0; pair < 4; pair += 2) {
        double u1 = ((r.c[pair] >> 8) + 1) * (1.0 / 16777216.0);
        double u2 = (r.c[pair + 1] >> 8) * (1.0 / 16777216.0);
        double radius = ::sqrt(-2.0 * ::log(u1));  // global overloads exist on host and device
        double theta = 6.283185307179586 * u2;
        out[pair] = p.a + p.b * (radius * ::cos(theta));
        out[pair + 1] = p.a + p.b * (radius * ::sin(theta));
      }
      return;
    case RandomKind::Integer: {
      uint64_t range = static_cast<uint64_t>(p.b - p.a);
      for (int lane = 0; lane < 4; ++lane) {
        uint64_t bits = (static_cast<uint64_t>(r.c[lane]) << 32) | r.c[(lane + 1) % 4];
        out[lane] = p.a + static_cast<double>(bits % range);
      }
      return;
    }
  }
  for (int lane = 0; lane < 4; ++lane) out[lane] = 0.0;  // not a RandomKind: every path writes out
}

// Element i of a random fill: Philox block (offset + i / 4), lane i % 4. This defines the
// stream; the CPU and CUDA kernels call random_block once per four elements instead, so every
// Philox block is computed once and all four of its lanes are used.
NABLA_HOST_DEVICE inline double random_value(const RandomParams& p, uint64_t i) {
  double v[4];
  random_block(p, i / 4, v);
  return v[i % 4];
}

// The default generator: a seed and a running offset (in Philox blocks).
class Generator {
 public:
  explicit Generator(uint64_t seed = 67280421310721ull) : seed_(seed) {}
  void manual_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = seed;
    offset_ = 0;
  }
  uint64_t seed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seed_;
  }
  // Reserves the blocks needed for n values: returns the seed and the first block index, read
  // together under the lock (a manual_seed from another thread cannot split them).
  std::pair<uint64_t, uint64_t> reserve(uint64_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t start = offset_;
    offset_ += (n + 3) / 4;
    return {seed_, start};
  }
  uint64_t advance(uint64_t n) { return reserve(n).second; }
  // The whole state, to save with a checkpoint and restore on resume (same numbers after).
  std::pair<uint64_t, uint64_t> state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {seed_, offset_};
  }
  void set_state(std::pair<uint64_t, uint64_t> s) {
    std::lock_guard<std::mutex> lock(mu_);
    seed_ = s.first;
    offset_ = s.second;
  }

 private:
  mutable std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

inline Generator& default_generator() {
  static Generator gen;
  return gen;
}
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace nabla
