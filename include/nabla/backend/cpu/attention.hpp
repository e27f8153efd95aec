#pragma once
// scaled_dot_product_attention's fused CPU kernels (ops/attention.hpp's sdpa_kernels()), flash-
// attention style: each task takes a block of queries of one (batch, head) and walks the key
// blocks with an online softmax (running max and sum), so the [L, S] score matrix never exists;
// the products are the library's GEMM on [64 x 128] tiles, the exponentials vexp. Causal key
// blocks past a query block are skipped. The backward (FlashAttention-2's) recomputes each tile's
// probabilities from the saved log-sum-exp, one (batch, head) per task. The composite in
// ops/attention.hpp is the reference.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../../ops/attention.hpp"  // the table this file fills
#include "gemm.hpp"
#include "parallel.hpp"
#include "vec_math.hpp"

namespace nabla {
namespace cpu {
namespace sdpa_detail {

inline constexpr int64_t kBlockQ = 64, kBlockK = 128;

template <class T>
inline T exp_(T x) {
  if constexpr (std::is_same_v<T, float>) return vexp(x);
  else return std::exp(x);
}

// Scores of a [bq x bk] tile (rows i0.., columns j0..) scaled and masked in place: -inf where the
// key is masked (causal: j > i).
template <class T>
void mask_tile(T* S, int64_t ld, int64_t bq, int64_t bk, int64_t i0, int64_t j0, int64_t b, int64_t h,
               const SdpaMask& m, const SdpaShape& s) {
  const T scale = static_cast<T>(s.scale), ninf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < bq; ++r) {
    T* row = S + r * ld;
    for (int64_t c = 0; c < bk; ++c) row[c] *= scale;
    if (m.data) {
      const int64_t base = b * m.stride_b + h * m.stride_h + (i0 + r) * m.stride_l + j0 * m.stride_s;
      if (m.is_bool) {
        const bool* mp = static_cast<const bool*>(m.data) + base;
        for (int64_t c = 0; c < bk; ++c)
          if (!mp[c * m.stride_s]) row[c] = ninf;
      } else {
        const T* mp = static_cast<const T*>(m.data) + base;
        for (int64_t c = 0; c < bk; ++c) row[c] += mp[c * m.stride_s];
      }
    }
    if (s.causal)
      for (int64_t c = std::max<int64_t>(0, i0 + r + 1 - j0); c < bk; ++c) row[c] = ninf;
  }
}

// Number of keys a query block starting at i0 with bq rows can see.
inline int64_t key_end(const SdpaShape& s, int64_t i0, int64_t bq) { return s.causal ? std::min(s.S, i0 + bq) : s.S; }

template <class T>
void forward(T* out, T* lse, const T* q, const T* k, const T* v, const SdpaMask& m, const SdpaShape& s) {
  const int64_t nq = (s.L + kBlockQ - 1) / kBlockQ, tasks = s.B * s.H * nq;
  const T ninf = -std::numeric_limits<T>::infinity();
  auto run = [&](int64_t t, std::vector<T>& S, std::vector<T>& acc, std::vector<T>& mx, std::vector<T>& sum) {
    const int64_t bh = t / nq, i0 = (t % nq) * kBlockQ, bq = std::min(kBlockQ, s.L - i0);
    const int64_t b = bh / s.H, h = bh % s.H;
    const T* Q = q + (bh * s.L + i0) * s.E;
    const T* K = k + bh * s.S * s.E;
    const T* V = v + bh * s.S * s.Ev;
    std::fill(acc.begin(), acc.begin() + bq * s.Ev, T(0));
    std::fill(mx.begin(), mx.begin() + bq, ninf);
    std::fill(sum.begin(), sum.begin() + bq, T(0));
    const int64_t kend = key_end(s, i0, bq);
    for (int64_t j0 = 0; j0 < kend; j0 += kBlockK) {
      const int64_t bk = std::min(kBlockK, kend - j0);
      // S = Q K^T (K^T's element [e, n] is K[j0 + n, e]: row stride 1, column stride E)
      gemm<T>(bq, bk, s.E, Q, s.E, 1, K + j0 * s.E, 1, s.E, S.data(), kBlockK, 1, false);
      mask_tile(S.data(), kBlockK, bq, bk, i0, j0, b, h, m, s);
      for (int64_t r = 0; r < bq; ++r) {
        T* row = S.data() + r * kBlockK;
        T tile_max = ninf;
        for (int64_t c = 0; c < bk; ++c) tile_max = std::max(tile_max, row[c]);
        const T new_max = std::max(mx[r], tile_max);
        if (new_max == ninf) {  // every key so far masked: nothing to add
          std::fill(row, row + bk, T(0));
          continue;
        }
        const T alpha = mx[r] == ninf ? T(0) : exp_(mx[r] - new_max);
        T rs = 0;
        for (int64_t c = 0; c < bk; ++c) {
          const T p = exp_(row[c] - new_max);  // exp(-inf) = 0 for masked keys
          row[c] = p;
          rs += p;
        }
        sum[r] = sum[r] * alpha + rs;
        mx[r] = new_max;
        if (alpha != T(1)) {
          T* a = acc.data() + r * s.Ev;
          for (int64_t e = 0; e < s.Ev; ++e) a[e] *= alpha;
        }
      }
      gemm<T>(bq, s.Ev, bk, S.data(), kBlockK, 1, V + j0 * s.Ev, s.Ev, 1, acc.data(), s.Ev, 1, true);
    }
    T* O = out + (bh * s.L + i0) * s.Ev;
    T* lrow = lse + bh * s.L + i0;
    for (int64_t r = 0; r < bq; ++r) {
      const bool dead = sum[r] == T(0);
      const T inv = dead ? T(0) : T(1) / sum[r];
      for (int64_t e = 0; e < s.Ev; ++e) O[r * s.Ev + e] = acc[r * s.Ev + e] * inv;
      lrow[r] = dead ? ninf : mx[r] + std::log(sum[r]);
    }
  };
  auto body = [&](int64_t lo, int64_t hi, int64_t step) {
    std::vector<T> S(static_cast<size_t>(kBlockQ * kBlockK)), acc(static_cast<size_t>(kBlockQ * s.Ev)),
        mx(kBlockQ), sum(kBlockQ);
    for (int64_t t = lo; t < hi; t += step) run(t, S, acc, mx, sum);
  };
#if defined(_OPENMP)
  const int nt = num_threads();
  if (nt > 1 && tasks > 1) {
    // Interleaved tasks: with a causal mask later query blocks cost more, so each thread takes
    // every nt-th block rather than one contiguous run.
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(nt, tasks)))
    body(omp_get_thread_num(), tasks, omp_get_num_threads());
    return;
  }
#endif
  body(0, tasks, 1);
}

template <class T>
void backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* out, const T* lse,
              const SdpaMask& m, const SdpaShape& s) {
  const int64_t BH = s.B * s.H;
  auto run = [&](int64_t bh, std::vector<T>& P, std::vector<T>& dP, std::vector<T>& D) {
    const int64_t b = bh / s.H, h = bh % s.H;
    const T* Q = q + bh * s.L * s.E;
    const T* K = k + bh * s.S * s.E;
    const T* V = v + bh * s.S * s.Ev;
    const T* dO = dout + bh * s.L * s.Ev;
    const T* O = out + bh * s.L * s.Ev;
    const T* LSE = lse + bh * s.L;
    T* dQ = dq + bh * s.L * s.E;
    T* dK = dk + bh * s.S * s.E;
    T* dV = dv + bh * s.S * s.Ev;
    std::fill(dQ, dQ + s.L * s.E, T(0));
    std::fill(dK, dK + s.S * s.E, T(0));
    std::fill(dV, dV + s.S * s.Ev, T(0));
    for (int64_t i = 0; i < s.L; ++i) {  // D_i = rowsum(dO o O)
      T acc = 0;
      for (int64_t e = 0; e < s.Ev; ++e) acc += dO[i * s.Ev + e] * O[i * s.Ev + e];
      D[i] = acc;
    }
    const T scale = static_cast<T>(s.scale), ninf = -std::numeric_limits<T>::infinity();
    for (int64_t j0 = 0; j0 < s.S; j0 += kBlockK) {
      const int64_t bk = std::min(kBlockK, s.S - j0);
      // causal: query rows i < j0 see none of these keys
      const int64_t first_q = s.causal ? (j0 / kBlockQ) * kBlockQ : 0;
      for (int64_t i0 = first_q; i0 < s.L; i0 += kBlockQ) {
        const int64_t bq = std::min(kBlockQ, s.L - i0);
        gemm<T>(bq, bk, s.E, Q + i0 * s.E, s.E, 1, K + j0 * s.E, 1, s.E, P.data(), kBlockK, 1, false);
        mask_tile(P.data(), kBlockK, bq, bk, i0, j0, b, h, m, s);
        for (int64_t r = 0; r < bq; ++r) {
          T* row = P.data() + r * kBlockK;
          const T l = LSE[i0 + r];
          if (l == ninf) std::fill(row, row + bk, T(0));
          else
            for (int64_t c = 0; c < bk; ++c) row[c] = exp_(row[c] - l);
        }
        // dV_j += P^T dO_i
        gemm<T>(bk, s.Ev, bq, P.data(), 1, kBlockK, dO + i0 * s.Ev, s.Ev, 1, dV + j0 * s.Ev, s.Ev, 1, true);
        // dP = dO_i V_j^T
        gemm<T>(bq, bk, s.Ev, dO + i0 * s.Ev, s.Ev, 1, V + j0 * s.Ev, 1, s.Ev, dP.data(), kBlockK, 1, false);
        // dS = P o (dP - D_i) * scale, into dP
        for (int64_t r = 0; r < bq; ++r) {
          const T* prow = P.data() + r * kBlockK;
          T* drow = dP.data() + r * kBlockK;
          const T di = D[i0 + r];
          for (int64_t c = 0; c < bk; ++c) drow[c] = prow[c] * (drow[c] - di) * scale;
        }
        // dQ_i += dS K_j ; dK_j += dS^T Q_i
        gemm<T>(bq, s.E, bk, dP.data(), kBlockK, 1, K + j0 * s.E, s.E, 1, dQ + i0 * s.E, s.E, 1, true);
        gemm<T>(bk, s.E, bq, dP.data(), 1, kBlockK, Q + i0 * s.E, s.E, 1, dK + j0 * s.E, s.E, 1, true);
      }
    }
  };
  auto body = [&](int64_t lo, int64_t hi, int64_t step) {
    std::vector<T> P(static_cast<size_t>(kBlockQ * kBlockK)), dP(static_cast<size_t>(kBlockQ * kBlockK)),
        D(static_cast<size_t>(s.L));
    for (int64_t t = lo; t < hi; t += step) run(t, P, dP, D);
  };
#if defined(_OPENMP)
  const int nt = num_threads();
  if (nt > 1 && BH > 1) {
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(nt, BH)))
    body(omp_get_thread_num(), BH, omp_get_num_threads());
    return;
  }
#endif
  body(0, BH, 1);
}

}  // namespace sdpa_detail

inline bool sdpa_forward_cpu(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             const SdpaMask& mask, const SdpaShape& shape) {
  if (q.dtype() == kFloat32)
    sdpa_detail::forward<float>(out.data_ptr<float>(), lse.data_ptr<float>(), q.data_ptr<float>(), k.data_ptr<float>(),
                                v.data_ptr<float>(), mask, shape);
  else if (q.dtype() == kFloat64)
    sdpa_detail::forward<double>(out.data_ptr<double>(), lse.data_ptr<double>(), q.data_ptr<double>(),
                                 k.data_ptr<double>(), v.data_ptr<double>(), mask, shape);
  else
    return false;
  return true;
}

inline bool sdpa_backward_cpu(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const SdpaMask& mask,
                              const SdpaShape& shape) {
  if (q.dtype() == kFloat32)
    sdpa_detail::backward<float>(dq.data_ptr<float>(), dk.data_ptr<float>(), dv.data_ptr<float>(),
                                 dout.data_ptr<float>(), q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(),
                                 out.data_ptr<float>(), lse.data_ptr<float>(), mask, shape);
  else if (q.dtype() == kFloat64)
    sdpa_detail::backward<double>(dq.data_ptr<double>(), dk.data_ptr<double>(), dv.data_ptr<double>(),
                                  dout.data_ptr<double>(), q.data_ptr<double>(), k.data_ptr<double>(),
                                  v.data_ptr<double>(), out.data_ptr<double>(), lse.data_ptr<double>(), mask, shape);
  else
    return false;
  return true;
}

NABLA_FILL_KERNELS(sdpa_cpu, sdpa_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
                   (SdpaKernels{&sdpa_forward_cpu, &sdpa_backward_cpu}));

}  // namespace cpu
}  // namespace nabla
