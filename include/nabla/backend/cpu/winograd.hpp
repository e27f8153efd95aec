#pragma once
// Winograd F(2x2, 3x3) for conv2d's fused CPU kernels: 3x3 windows, stride 1, no dilation, one
// group, padding at most 2. A 2x2 output tile needs 16 products instead of 36, so the GEMMs
// (already at the FMA unit's rate: benchmarks/bench_conv.cpp) do 2.25x less work; the price is
// the transforms, which are cheap next to im2col's 9x expansion. F(2x2) rather than F(4x4):
// its transforms have only 0, +-1 and 1/2 (exact in binary), so float32 results stay as accurate
// as the direct product's; F(4x4)'s grow the error ~10x.
//
// With d a 4x4 input patch, g a 3x3 filter and Y the 2x2 output tile:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A,
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Per element xi of the 4x4 transform domain the sum over input channels is one GEMM:
// M[xi] (O x tiles) = U[xi] (O x C) @ V[xi] (C x tiles). The input gradient is the same
// forward over the output gradient with the filters flipped and transposed and padding 2 - p;
// the weight gradient is dU[xi] = dM[xi] @ V[xi]^T with dM = A dY A^T, then dg = G^T dU G.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemm.hpp"
#include "parallel.hpp"

namespace nabla {
namespace cpu {
namespace winograd {

// The problem in Winograd's terms: x [N, C, H, W] -> y [N, O, Ho, Wo] with Ho = H + 2 ph - 2.
struct Shape {
  int64_t N, C, H, W, O, ph, pw;
  int64_t Ho() const { return H + 2 * ph - 2; }
  int64_t Wo() const { return W + 2 * pw - 2; }
  int64_t th() const { return (Ho() + 1) / 2; }  // tile rows
  int64_t tw() const { return (Wo() + 1) / 2; }  // tile columns
  int64_t tiles() const { return th() * tw(); }  // per image
};

// Channels below this use im2col: the GEMMs' inner dimension is the channel count, and below
// 128 the 16 short products and the transforms cost more than the work they save (measured on
// ResNet-18's layers, benchmarks/bench_conv.cpp resnet_conv_*: 64 channels at 32x32 ran 1.4x
// slower than im2col, 128 at 16x16 alike, 256 and 512 1.6-1.8x faster).
inline constexpr int64_t kMinChannels = 128;
// Tiles per GEMM: images are grouped until a chunk has about this many (as conv.hpp's chunks).
inline constexpr int64_t kChunkTiles = 256;

inline bool eligible(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t groups,
                     int64_t ph, int64_t pw, int64_t C, int64_t O, int64_t Ho, int64_t Wo) {
  return kh == 3 && kw == 3 && sh == 1 && sw == 1 && dh == 1 && dw == 1 && groups == 1 && ph >= 0 && ph <= 2 &&
         pw >= 0 && pw <= 2 && C >= kMinChannels && O >= kMinChannels && Ho > 0 && Wo > 0;
}

namespace detail {

template <class T>
T* buffer(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}
// Per-thread scratch: the chunk's V and M (or dM); grow, never shrink, freed at thread exit.
template <class T>
T* v_buffer(size_t n) {
  thread_local std::vector<T> b;
  return buffer(b, n);
}
template <class T>
T* m_buffer(size_t n) {
  thread_local std::vector<T> b;
  return buffer(b, n);
}

// U [16, O, C] = G g G^T for w [O, C, 3, 3]; flip_transpose reads w as [C, O] with each filter
// rotated by 180 degrees (the input gradient's filters), giving U [16, C, O].
template <class T>
void filter_transform(const T* w, int64_t O, int64_t C, bool flip_transpose, T* U) {
  const int64_t rows = flip_transpose ? C : O, cols = flip_transpose ? O : C;
  parallel_for(0, rows * cols, 64, [&](int64_t b, int64_t e) {
    for (int64_t rc = b; rc < e; ++rc) {
      const int64_t r = rc / cols, c = rc % cols;
      T g[3][3];
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          g[i][j] = flip_transpose ? w[((c * C + r) * 3 + (2 - i)) * 3 + (2 - j)] : w[((r * C + c) * 3 + i) * 3 + j];
      T t[4][3];  // G g
      for (int j = 0; j < 3; ++j) {
        t[0][j] = g[0][j];
        t[1][j] = T(0.5) * (g[0][j] + g[1][j] + g[2][j]);
        t[2][j] = T(0.5) * (g[0][j] - g[1][j] + g[2][j]);
        t[3][j] = g[2][j];
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T
        const T u[4] = {t[i][0], T(0.5) * (t[i][0] + t[i][1] + t[i][2]), T(0.5) * (t[i][0] - t[i][1] + t[i][2]),
                        t[i][2]};
        for (int j = 0; j < 4; ++j) U[((i * 4 + j) * rows + r) * cols + c] = u[j];
      }
    }
  });
}

// V [16, C, ld] columns [col0, col0 + tiles) = B^T d B for each tile of one image x [C, H, W].
template <class T>
void input_transform(const T* x, const Shape& s, T* V, int64_t ld, int64_t col0) {
  const int64_t th = s.th(), tw = s.tw(), stride = s.C * ld;
  for (int64_t c = 0; c < s.C; ++c) {
    const T* xc = x + c * s.H * s.W;
    for (int64_t a = 0; a < th; ++a)
      for (int64_t b = 0; b < tw; ++b) {
        T d[4][4];
        const int64_t r0 = 2 * a - s.ph, c0 = 2 * b - s.pw;
        const bool inside = r0 >= 0 && r0 + 4 <= s.H && c0 >= 0 && c0 + 4 <= s.W;
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) {
            const int64_t r = r0 + i, q = c0 + j;
            d[i][j] = inside || (r >= 0 && r < s.H && q >= 0 && q < s.W) ? xc[r * s.W + q] : T(0);
          }
        T t[4][4];  // B^T d
        for (int j = 0; j < 4; ++j) {
          t[0][j] = d[0][j] - d[2][j];
          t[1][j] = d[1][j] + d[2][j];
          t[2][j] = d[2][j] - d[1][j];
          t[3][j] = d[1][j] - d[3][j];
        }
        T* v = V + c * ld + col0 + a * tw + b;
        for (int i = 0; i < 4; ++i) {  // (B^T d) B
          v[(i * 4 + 0) * stride] = t[i][0] - t[i][2];
          v[(i * 4 + 1) * stride] = t[i][1] + t[i][2];
          v[(i * 4 + 2) * stride] = t[i][2] - t[i][1];
          v[(i * 4 + 3) * stride] = t[i][1] - t[i][3];
        }
      }
  }
}

// y [O, Ho, Wo] of one image = A^T m A of M [16, O, ld] columns [col0, col0 + tiles), + bias.
template <class T>
void output_transform(const T* M, const Shape& s, int64_t ld, int64_t col0, const T* bias, T* y) {
  const int64_t th = s.th(), tw = s.tw(), Ho = s.Ho(), Wo = s.Wo(), stride = s.O * ld;
  for (int64_t o = 0; o < s.O; ++o) {
    const T bo = bias ? bias[o] : T(0);
    T* yo = y + o * Ho * Wo;
    for (int64_t a = 0; a < th; ++a)
      for (int64_t b = 0; b < tw; ++b) {
        const T* m = M + o * ld + col0 + a * tw + b;
        T t[2][4];  // A^T m
        for (int j = 0; j < 4; ++j) {
          const T m0 = m[(0 * 4 + j) * stride], m1 = m[(1 * 4 + j) * stride], m2 = m[(2 * 4 + j) * stride],
                  m3 = m[(3 * 4 + j) * stride];
          t[0][j] = m0 + m1 + m2;
          t[1][j] = m1 - m2 - m3;
        }
        for (int i = 0; i < 2; ++i) {
          const int64_t r = 2 * a + i;
          if (r >= Ho) break;
          const T v0 = t[i][0] + t[i][1] + t[i][2], v1 = t[i][1] - t[i][2] - t[i][3];
          yo[r * Wo + 2 * b] = v0 + bo;
          if (2 * b + 1 < Wo) yo[r * Wo + 2 * b + 1] = v1 + bo;
        }
      }
  }
}

// dM [16, O, ld] columns [col0, col0 + tiles) = A dY A^T for each 2x2 tile of one image's
// gy [O, Ho, Wo] (outputs past the edge are 0).
template <class T>
void grad_output_transform(const T* gy, const Shape& s, T* dM, int64_t ld, int64_t col0) {
  const int64_t th = s.th(), tw = s.tw(), Ho = s.Ho(), Wo = s.Wo(), stride = s.O * ld;
  for (int64_t o = 0; o < s.O; ++o) {
    const T* g = gy + o * Ho * Wo;
    for (int64_t a = 0; a < th; ++a)
      for (int64_t b = 0; b < tw; ++b) {
        T e[2][2];
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) {
            const int64_t r = 2 * a + i, q = 2 * b + j;
            e[i][j] = r < Ho && q < Wo ? g[r * Wo + q] : T(0);
          }
        // A e A^T with A = [1 0; 1 1; 1 -1; 0 -1]
        T t[4][2];
        for (int j = 0; j < 2; ++j) {
          t[0][j] = e[0][j];
          t[1][j] = e[0][j] + e[1][j];
          t[2][j] = e[0][j] - e[1][j];
          t[3][j] = -e[1][j];
        }
        T* d = dM + o * ld + col0 + a * tw + b;
        for (int i = 0; i < 4; ++i) {
          d[(i * 4 + 0) * stride] = t[i][0];
          d[(i * 4 + 1) * stride] = t[i][0] + t[i][1];
          d[(i * 4 + 2) * stride] = t[i][0] - t[i][1];
          d[(i * 4 + 3) * stride] = -t[i][1];
        }
      }
  }
}

// gw [O, C, 3, 3] += G^T dU G for dU [16, O, C].
template <class T>
void filter_grad_transform(const T* dU, int64_t O, int64_t C, T* gw) {
  for (int64_t oc = 0; oc < O * C; ++oc) {
    T u[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) u[i][j] = dU[(i * 4 + j) * O * C + oc];
    T t[3][4];  // G^T u, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]
    for (int j = 0; j < 4; ++j) {
      t[0][j] = u[0][j] + T(0.5) * (u[1][j] + u[2][j]);
      t[1][j] = T(0.5) * (u[1][j] - u[2][j]);
      t[2][j] = T(0.5) * (u[1][j] + u[2][j]) + u[3][j];
    }
    T* g = gw + oc * 9;
    for (int i = 0; i < 3; ++i) {
      g[i * 3 + 0] += t[i][0] + T(0.5) * (t[i][1] + t[i][2]);
      g[i * 3 + 1] += T(0.5) * (t[i][1] - t[i][2]);
      g[i * 3 + 2] += T(0.5) * (t[i][1] + t[i][2]) + t[i][3];
    }
  }
}

struct Chunks {
  int64_t per = 1, count = 1;
  int threads = 1;
};

inline Chunks chunks(int64_t N, int64_t tiles) {
  const int nt = num_threads();
  Chunks c;
  c.per = std::max<int64_t>(1, (kChunkTiles + tiles - 1) / std::max<int64_t>(tiles, 1));
  c.per = std::min(c.per, std::max<int64_t>(1, (N + nt - 1) / nt));
  c.count = (N + c.per - 1) / c.per;
  c.threads = c.count >= nt ? nt : 1;
  return c;
}

template <class F>
void for_each_chunk(int64_t N, const Chunks& c, F&& body) {
  auto run = [&](int64_t k, int t) { body(k * c.per, std::min(c.per, N - k * c.per), t); };
#if defined(_OPENMP)
  if (c.threads > 1) {
#pragma omp parallel num_threads(c.threads)
    {
      const int t = omp_get_thread_num(), count = omp_get_num_threads();
      for (int64_t k = t; k < c.count; k += count) run(k, t);
    }
    return;
  }
#endif
  for (int64_t k = 0; k < c.count; ++k) run(k, 0);
}

// y = the correlation of x with the filters whose transform is U [16, O, C], plus bias.
template <class T>
void forward_transformed(T* y, const T* x, const T* U, const T* bias, const Shape& s) {
  const int64_t tiles = s.tiles(), img_in = s.C * s.H * s.W, img_out = s.O * s.Ho() * s.Wo();
  const auto ch = chunks(s.N, tiles);
  for_each_chunk(s.N, ch, [&](int64_t n0, int64_t B, int) {
    const int64_t ld = B * tiles;
    T* V = v_buffer<T>(static_cast<size_t>(16 * s.C * ld));
    T* M = m_buffer<T>(static_cast<size_t>(16 * s.O * ld));
    for (int64_t b = 0; b < B; ++b) input_transform(x + (n0 + b) * img_in, s, V, ld, b * tiles);
    for (int xi = 0; xi < 16; ++xi)
      gemm_native<T>(s.O, ld, s.C, U + xi * s.O * s.C, s.C, 1, V + xi * s.C * ld, ld, 1, M + xi * s.O * ld, ld, 1,
                     false);
    for (int64_t b = 0; b < B; ++b) output_transform(M, s, ld, b * tiles, bias, y + (n0 + b) * img_out);
  });
}

}  // namespace detail

// y [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, C, 3, 3], padding (ph, pw)) + bias (may be null).
template <class T>
void forward(T* y, const T* x, const T* w, const T* bias, const Shape& s) {
  std::vector<T> U(static_cast<size_t>(16 * s.O * s.C));
  detail::filter_transform(w, s.O, s.C, false, U.data());
  detail::forward_transformed(y, x, U.data(), bias, s);
}

// gx [N, C, H, W] for gy [N, O, Ho, Wo] (s describes the forward problem): the forward over gy
// with flipped, transposed filters and padding 2 - p.
template <class T>
void backward_input(T* gx, const T* gy, const T* w, const Shape& s) {
  const Shape t{s.N, s.O, s.Ho(), s.Wo(), s.C, 2 - s.ph, 2 - s.pw};
  std::vector<T> U(static_cast<size_t>(16 * s.O * s.C));
  detail::filter_transform(w, s.O, s.C, true, U.data());
  detail::forward_transformed(gx, gy, U.data(), static_cast<const T*>(nullptr), t);
}

// gw [O, C, 3, 3] = the weight gradient; gb [O] (may be null) = gy summed over N, Ho, Wo.
template <class T>
void backward_weight(T* gw, T* gb, const T* gy, const T* x, const Shape& s) {
  const int64_t tiles = s.tiles(), img_in = s.C * s.H * s.W, L = s.Ho() * s.Wo(), img_out = s.O * L;
  const int64_t usize = 16 * s.O * s.C;
  const auto ch = detail::chunks(s.N, tiles);
  const int nt = ch.threads;
  std::vector<T> dU(static_cast<size_t>(nt * usize), T(0));
  std::vector<T> bias_acc(static_cast<size_t>(nt * s.O), T(0));
  detail::for_each_chunk(s.N, ch, [&](int64_t n0, int64_t B, int t) {
    const int64_t ld = B * tiles;
    T* V = detail::v_buffer<T>(static_cast<size_t>(16 * s.C * ld));
    T* dM = detail::m_buffer<T>(static_cast<size_t>(16 * s.O * ld));
    for (int64_t b = 0; b < B; ++b) {
      detail::input_transform(x + (n0 + b) * img_in, s, V, ld, b * tiles);
      detail::grad_output_transform(gy + (n0 + b) * img_out, s, dM, ld, b * tiles);
    }
    T* acc = dU.data() + t * usize;
    for (int xi = 0; xi < 16; ++xi)
      gemm_native<T>(s.O, s.C, ld, dM + xi * s.O * ld, ld, 1, V + xi * s.C * ld, 1, ld, acc + xi * s.O * s.C, s.C, 1,
                     true);
    if (gb)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t o = 0; o < s.O; ++o) {
          const T* g = gy + (n0 + b) * img_out + o * L;
          T sum = T(0);
          for (int64_t l = 0; l < L; ++l) sum += g[l];
          bias_acc[static_cast<size_t>(t * s.O + o)] += sum;
        }
  });
  for (int t = 1; t < nt; ++t) {
    for (int64_t k = 0; k < usize; ++k) dU[static_cast<size_t>(k)] += dU[static_cast<size_t>(t * usize + k)];
    for (int64_t o = 0; o < s.O; ++o) bias_acc[static_cast<size_t>(o)] += bias_acc[static_cast<size_t>(t * s.O + o)];
  }
  std::fill(gw, gw + s.O * s.C * 9, T(0));
  detail::filter_grad_transform(dU.data(), s.O, s.C, gw);
  if (gb) std::copy(bias_acc.begin(), bias_acc.begin() + s.O, gb);
}

}  // namespace winograd
}  // namespace cpu
}  // namespace nabla
