#pragma once
// Direct CPU im2col / col2im for conv2d and pooling: plain loops over one (n, c) plane each,
// the same column layout as the gather path of ops/conv.hpp ([N, C, kh * kw, Ho * Wo] over an
// already padded input), which stays the path for other devices. Checked by the conv parity rows.

#include <algorithm>
#include <cstdint>

#include "parallel.hpp"

namespace nabla {
namespace cpu {

struct WindowGeometry {
  int64_t kh, kw, sh, sw, dh, dw, Ho, Wo;
};

// x [N, C, H, W] contiguous -> cols [N, C, kh * kw, Ho * Wo] contiguous.
template <class T>
void im2col_kernel(const T* x, T* cols, int64_t planes, int64_t H, int64_t W, const WindowGeometry& g) {
  const int64_t L = g.Ho * g.Wo, K = g.kh * g.kw;
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, K * L)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* src = x + p * H * W;
      T* dst = cols + p * K * L;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            const T* row = src + (oh * g.sh + i * g.dh) * W + j * g.dw;
            T* out = dst + ((i * g.kw + j) * g.Ho + oh) * g.Wo;
            if (g.sw == 1)
              for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = row[ow];
            else
              for (int64_t ow = 0; ow < g.Wo; ++ow) out[ow] = row[ow * g.sw];
          }
    }
  });
}

// The adjoint: x [N, C, H, W] (zeroed by the caller) += the window elements of cols.
template <class T>
void col2im_kernel(const T* cols, T* x, int64_t planes, int64_t H, int64_t W, const WindowGeometry& g) {
  const int64_t L = g.Ho * g.Wo, K = g.kh * g.kw;
  parallel_for(0, planes, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, K * L)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      T* dst = x + p * H * W;
      const T* src = cols + p * K * L;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j)
          for (int64_t oh = 0; oh < g.Ho; ++oh) {
            T* row = dst + (oh * g.sh + i * g.dh) * W + j * g.dw;
            const T* in = src + ((i * g.kw + j) * g.Ho + oh) * g.Wo;
            for (int64_t ow = 0; ow < g.Wo; ++ow) row[ow * g.sw] += in[ow];
          }
    }
  });
}

}  // namespace cpu
}  // namespace nabla
