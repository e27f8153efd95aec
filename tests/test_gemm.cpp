// Correctness of nabla::cpu::gemm / gemm_native (and every micro-kernel this CPU can run)
// against a double-precision triple loop, over awkward shapes, strides and accumulate modes; the
// same for the bfloat16 GEMM (gemm_bf16.hpp: every path this CPU runs, plus the AMX kernel on a
// tile emulator), and the bf16 ops built on it (matmul, linear, conv2d, max_pool2d).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nabla/backend/cpu/gemm.hpp>
#include <nabla/backend/cpu/gemm_bf16.hpp>
#include <nabla/nabla.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using nabla::cpu::gemm_detail::Isa;

uint32_t test_seed() {
  static const uint32_t seed = [] {
    const uint32_t s = std::random_device{}();
    std::printf("test_gemm seed: %u\n", s);
    return s;
  }();
  return seed;
}

// How a matrix sits in memory. Padding makes the leading dimension larger than the extent so
// that kernels which ignore the stride read the wrong elements.
enum class Layout { RowMajor, ColMajor, RowPadded, ColPadded, Strided };
const Layout kAllLayouts[] = {Layout::RowMajor, Layout::ColMajor, Layout::RowPadded,
                              Layout::ColPadded, Layout::Strided};

const char* name(Layout l) {
  switch (l) {
    case Layout::RowMajor: return "row";
    case Layout::ColMajor: return "col";
    case Layout::RowPadded: return "rowpad";
    case Layout::ColPadded: return "colpad";
    default: return "strided";
  }
}

// A quiet NaN of T (numeric_limits has none for BFloat16).
template <class T>
T nan_of() {
  if constexpr (std::is_same_v<T, nabla::BFloat16>) return nabla::BFloat16::from_bits(0x7fc0);
  else return std::numeric_limits<T>::quiet_NaN();
}

template <class T>
struct Mat {
  int64_t rows, cols, rs, cs;
  std::vector<T> data;
  Mat(int64_t r, int64_t c, Layout l) : rows(r), cols(c) {
    switch (l) {
      case Layout::RowMajor: rs = std::max<int64_t>(c, 1), cs = 1; break;
      case Layout::ColMajor: rs = 1, cs = std::max<int64_t>(r, 1); break;
      case Layout::RowPadded: rs = c + 5, cs = 1; break;
      case Layout::ColPadded: rs = 1, cs = r + 3; break;
      default: cs = 2, rs = 2 * c + 3; break;  // neither stride is 1
    }
    const int64_t span = (r > 0 && c > 0) ? (r - 1) * rs + (c - 1) * cs + 1 : 1;
    // Unused gaps hold NaN so any stray read poisons the result.
    data.assign(size_t(span), nan_of<T>());
  }
  T& at(int64_t i, int64_t j) { return data[size_t(i * rs + j * cs)]; }
  void randomize(std::mt19937& rng) {
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) at(i, j) = T(d(rng));
  }
};

template <class T>
struct Impl {
  std::string label;
  std::function<void(int64_t, int64_t, int64_t, const T*, int64_t, int64_t, const T*, int64_t,
                     int64_t, T*, int64_t, int64_t, bool)>
      fn;
};

template <class T>
std::vector<Impl<T>> impls() {
  std::vector<Impl<T>> v;
  v.push_back({"gemm", [](auto... a) { nabla::cpu::gemm<T>(a...); }});
  v.push_back({"gemm_native", [](auto... a) { nabla::cpu::gemm_native<T>(a...); }});
  // the matrix-vector path directly (gemm() takes it for one row or column, but may hand
  // strides it cannot use to the blocked kernel)
  v.push_back({"try_gemv", [](auto... a) {
                 if (!nabla::cpu::gemm_detail::try_gemv<T>(a...)) nabla::cpu::gemm_native<T>(a...);
               }});
  // Exercise every kernel the host can execute, not just the one dispatch picks.
  const int best = int(nabla::cpu::gemm_detail::best_isa());
  for (int i = 0; i <= best; ++i) {
    const Isa isa = Isa(i);
    v.push_back({"isa" + std::to_string(i), [isa](auto... a) {
                   nabla::cpu::gemm_detail::gemm_native_isa<T>(isa, a...);
                 }});
  }
  return v;
}

template <class T>
double tolerance_scale() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-13;
}

// Runs every implementation on one problem and compares with a double-precision reference.
template <class T>
void check(int64_t M, int64_t N, int64_t K, Layout la, Layout lb, Layout lc, bool acc) {
  std::mt19937 rng(test_seed() ^ uint32_t(M * 7919 + N * 104729 + K * 1299709));
  Mat<T> A(M, K, la), B(K, N, lb), C0(M, N, lc);
  A.randomize(rng);
  B.randomize(rng);
  if (acc) C0.randomize(rng);

  std::vector<double> ref(size_t(M * N));
  double maxc = 0.0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = acc ? double(C0.at(i, j)) : 0.0;
      if (acc) maxc = std::max(maxc, std::abs(double(C0.at(i, j))));
      for (int64_t k = 0; k < K; ++k) s += double(A.at(i, k)) * double(B.at(k, j));
      ref[size_t(i * N + j)] = s;
    }
  // Inputs are in [-1, 1], so max|a||b| <= 1.
  const double tol = tolerance_scale<T>() * (double(std::max<int64_t>(K, 1)) + maxc);

  for (const auto& impl : impls<T>()) {
    Mat<T> C = C0;
    if (!acc)  // overwrite mode must not read C
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C.at(i, j) = std::numeric_limits<T>::quiet_NaN();
    impl.fn(M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, C.data.data(), C.rs,
            C.cs, acc);
    int64_t bad = 0;
    for (int64_t i = 0; i < M && bad < 3; ++i)
      for (int64_t j = 0; j < N && bad < 3; ++j) {
        const double got = double(C.at(i, j)), want = ref[size_t(i * N + j)];
        if (!(std::abs(got - want) <= tol)) {
          ADD_FAILURE() << impl.label << " M=" << M << " N=" << N << " K=" << K
                        << " A=" << name(la) << " B=" << name(lb) << " C=" << name(lc)
                        << " acc=" << acc << " at (" << i << "," << j << "): got " << got
                        << " want " << want << " tol " << tol << " seed " << test_seed();
          ++bad;
        }
      }
    // Gaps between rows/columns of C must be untouched (they start as NaN).
    std::vector<char> inside(C.data.size(), 0);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) inside[size_t(i * C.rs + j * C.cs)] = 1;
    for (size_t e = 0; e < C.data.size(); ++e)
      if (!inside[e] && !std::isnan(double(C.data[e]))) {
        ADD_FAILURE() << impl.label << " wrote outside C at offset " << e;
        break;
      }
  }
}

template <class T>
class GemmTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GemmTest, Types);

TYPED_TEST(GemmTest, EmptyShapesAreNoOps) {
  using T = TypeParam;
  std::vector<T> a(16, T(1)), b(16, T(1)), c(16, T(7));
  for (auto& impl : impls<T>()) {
    impl.fn(0, 4, 4, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, false);
    impl.fn(4, 0, 4, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, false);
    impl.fn(0, 0, 0, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, false);
    impl.fn(4, 4, 0, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, true);
    for (T x : c) EXPECT_EQ(x, T(7)) << impl.label;
  }
}

TYPED_TEST(GemmTest, ZeroDepthOverwriteWritesZeros) {
  using T = TypeParam;
  for (auto& impl : impls<T>())
    for (Layout lc : kAllLayouts) {
      Mat<T> C(5, 3, lc);  // all NaN
      impl.fn(5, 3, 0, nullptr, 1, 1, nullptr, 1, 1, C.data.data(), C.rs, C.cs, false);
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(C.at(i, j), T(0)) << impl.label;
    }
}

TYPED_TEST(GemmTest, OddSizesAllLayouts) {
  const int64_t sizes[] = {1, 3, 7, 17, 33};
  for (int64_t m : sizes)
    for (int64_t n : sizes)
      for (int64_t k : {int64_t(1), int64_t(7), int64_t(31)})
        for (Layout la : {Layout::RowMajor, Layout::ColMajor})
          for (Layout lb : {Layout::RowMajor, Layout::ColMajor})
            for (Layout lc : {Layout::RowMajor, Layout::ColMajor})
              check<TypeParam>(m, n, k, la, lb, lc, (m + n + k) % 2 == 0);
}

TYPED_TEST(GemmTest, PaddedAndStridedLayouts) {
  for (Layout la : kAllLayouts)
    for (Layout lb : kAllLayouts)
      for (Layout lc : kAllLayouts)
        for (bool acc : {false, true}) check<TypeParam>(37, 29, 19, la, lb, lc, acc);
}

TYPED_TEST(GemmTest, TileEdgeSizes) {
  // Around the micro-tile sizes (MR in {8,16,32}, NR in {4,6,12}).
  const int64_t sizes[] = {31, 65, 127, 129, 257};
  for (int64_t m : sizes)
    for (int64_t n : sizes)
      for (bool acc : {false, true})
        check<TypeParam>(m, n, 65, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
}

TYPED_TEST(GemmTest, MatrixVectorProductsEveryLayout) {
  // One row or one column (gemm.hpp's try_gemv, gemv.hpp's loops): B contiguous along k (x @ W^T)
  // or along n (x @ B), padded or neither; x and y strided; K around the vector width; N past the
  // 2048-element block; large enough to split over threads.
  for (int64_t n : {int64_t(1), int64_t(5), int64_t(33), int64_t(2500)})
    for (int64_t k : {int64_t(1), int64_t(3), int64_t(17), int64_t(64), int64_t(301)})
      for (Layout lb : kAllLayouts)
        for (bool acc : {false, true}) {
          check<TypeParam>(1, n, k, Layout::RowMajor, lb, Layout::RowMajor, acc);
          check<TypeParam>(1, n, k, Layout::ColPadded, lb, Layout::ColPadded, acc);
          check<TypeParam>(n, 1, k, Layout::Strided, lb, Layout::Strided, acc);
        }
}

TYPED_TEST(GemmTest, TallAndSkinny) {
  for (bool acc : {false, true}) {
    check<TypeParam>(1, 1, 1, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check<TypeParam>(1000, 1, 300, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, acc);
    check<TypeParam>(1, 1000, 300, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check<TypeParam>(3, 2000, 17, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check<TypeParam>(2000, 5, 9, Layout::RowMajor, Layout::ColMajor, Layout::ColMajor, acc);
    check<TypeParam>(8, 8, 3000, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, acc);
  }
}

TYPED_TEST(GemmTest, LargerThanBlocks) {
  // Exceeds KC (several depth passes) and MC per thread; all four transpose combinations.
  for (Layout la : {Layout::RowMajor, Layout::ColMajor})
    for (Layout lb : {Layout::RowMajor, Layout::ColMajor})
      for (bool acc : {false, true}) check<TypeParam>(300, 520, 700, la, lb, Layout::RowMajor, acc);
  check<TypeParam>(1100, 70, 800, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, false);
  check<TypeParam>(70, 1100, 800, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor, true);
  // N beyond NC (4080) exercises the outermost column loop.
  check<TypeParam>(20, 4200, 40, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, true);
}

TYPED_TEST(GemmTest, ShortFinalDepthPass) {
  // K just past a multiple of KC: threads run unsynchronised passes of different depth, which
  // once raced on the packed-B buffer. Repeat to give a race a chance to show.
  for (int rep = 0; rep < 3; ++rep)
    for (int64_t k : {int64_t(261), int64_t(389), int64_t(517)})
      check<TypeParam>(64, 600, k, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, rep == 1);
}

TYPED_TEST(GemmTest, NestedInsideParallelRegion) {
  using T = TypeParam;
  const int64_t n = 96;
  std::mt19937 rng(test_seed());
  Mat<T> A(n, n, Layout::RowMajor), B(n, n, Layout::RowMajor);
  A.randomize(rng);
  B.randomize(rng);
  std::vector<double> ref(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k) ref[size_t(i * n + j)] += double(A.at(i, k)) * B.at(k, j);
  const int tasks = 4;
  std::vector<std::vector<T>> out(tasks, std::vector<T>(size_t(n * n)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(2)
#endif
  for (int t = 0; t < tasks; ++t)
    nabla::cpu::gemm_native<T>(n, n, n, A.data.data(), n, 1, B.data.data(), n, 1,
                               out[size_t(t)].data(), n, 1, false);
  for (const auto& c : out)
    for (size_t e = 0; e < c.size(); ++e)
      ASSERT_NEAR(double(c[e]), ref[e], tolerance_scale<T>() * n);
}

// ---- bfloat16 GEMM ------------------------------------------------------------------------------

using nabla::BFloat16;
using nabla::cpu::gemm_detail::Bf16Isa;

// Every bf16 path this CPU runs (up to the dispatch's choice, so NABLA_CPU_ISA narrows it), the
// dispatch itself, and the AMX kernel on the tile emulator. AMX hardware is in the list only
// where the dispatch picked it (its self-check passed).
struct Bf16Path {
  std::string label;
  Bf16Isa isa;
  bool dispatch;  // through gemm_bf16 (the run-time choice) rather than forced to `isa`
};
std::vector<Bf16Path> bf16_paths() {
  std::vector<Bf16Path> v;
  v.push_back({"gemm_bf16", nabla::cpu::gemm_detail::best_bf16_isa(), true});
  const int best = int(nabla::cpu::gemm_detail::best_bf16_isa());
  for (int i = 0; i <= best; ++i) v.push_back({nabla::cpu::gemm_detail::name(Bf16Isa(i)), Bf16Isa(i), false});
  v.push_back({"amx_emulated", Bf16Isa::amx_emulated, false});
  return v;
}

template <class TC>
void run_bf16(const Bf16Path& p, int64_t M, int64_t N, int64_t K, const BFloat16* A, int64_t rsA, int64_t csA,
              const BFloat16* B, int64_t rsB, int64_t csB, TC* C, int64_t rsC, int64_t csC, bool acc) {
  if (p.dispatch)
    nabla::cpu::gemm_bf16<TC>(M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
  else
    nabla::cpu::gemm_detail::gemm_bf16_isa<TC>(p.isa, M, N, K, A, rsA, csA, B, rsB, csB, C, rsC, csC, acc);
}

// C = [C +] A B for bf16 A, B against float64 sums of the same (bf16) values, for a float32 C
// and a bf16 C, on every path. Tolerances: float32 summation of K + 1 terms bounded by
// 2 (K + 1) 2^-24 S, S = sum of |terms|; a bf16 C adds one rounding, at most 2^-8 of the value.
// The bf16 result must also be exactly the float32 result of the same path rounded once.
void check_bf16(int64_t M, int64_t N, int64_t K, Layout la, Layout lb, Layout lc, bool acc) {
  std::mt19937 rng(test_seed() ^ uint32_t(M * 7919 + N * 104729 + K * 1299709 + 17));
  Mat<BFloat16> A(M, K, la), B(K, N, lb), Cb0(M, N, lc);
  Mat<float> Cf0(M, N, lc);
  A.randomize(rng);
  B.randomize(rng);
  if (acc) {
    Cb0.randomize(rng);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) Cf0.at(i, j) = float(Cb0.at(i, j));  // the same start for both
  }
  std::vector<double> ref(size_t(M * N)), bound(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = acc ? double(float(Cb0.at(i, j))) : 0.0, a = std::abs(s);
      for (int64_t k = 0; k < K; ++k) {
        const double t = double(float(A.at(i, k))) * double(float(B.at(k, j)));
        s += t, a += std::abs(t);
      }
      ref[size_t(i * N + j)] = s;
      bound[size_t(i * N + j)] = 2.0 * double(K + 1) * std::ldexp(a, -24) + 1e-30;
    }
  const std::string where = " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                            " A=" + name(la) + " B=" + name(lb) + " C=" + name(lc) + " acc=" + std::to_string(acc) +
                            " seed " + std::to_string(test_seed());
  for (const auto& p : bf16_paths()) {
    Mat<float> Cf = Cf0;
    Mat<BFloat16> Cb = Cb0;
    if (!acc)  // overwrite mode must not read C
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) Cf.at(i, j) = NAN, Cb.at(i, j) = nan_of<BFloat16>();
    run_bf16<float>(p, M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, Cf.data.data(), Cf.rs, Cf.cs, acc);
    run_bf16<BFloat16>(p, M, N, K, A.data.data(), A.rs, A.cs, B.data.data(), B.rs, B.cs, Cb.data.data(), Cb.rs,
                       Cb.cs, acc);
    int bad = 0;
    for (int64_t i = 0; i < M && bad < 3; ++i)
      for (int64_t j = 0; j < N && bad < 3; ++j) {
        const double want = ref[size_t(i * N + j)], e = bound[size_t(i * N + j)];
        const double gf = Cf.at(i, j), gb = float(Cb.at(i, j));
        if (!(std::abs(gf - want) <= e)) {
          ADD_FAILURE() << p.label << " float C at (" << i << "," << j << "): got " << gf << " want " << want << " tol "
                        << e << where;
          ++bad;
        }
        if (!(std::abs(gb - want) <= std::ldexp(std::abs(want) + e, -8) + e)) {
          ADD_FAILURE() << p.label << " bf16 C at (" << i << "," << j << "): got " << gb << " want " << want << where;
          ++bad;
        }
        if (Cb.at(i, j).bits != BFloat16(Cf.at(i, j)).bits) {
          ADD_FAILURE() << p.label << " bf16 C at (" << i << "," << j << ") is " << gb << ", not the float32 result "
                        << gf << " rounded once" << where;
          ++bad;
        }
      }
    // Gaps between rows/columns of C must be untouched (they start as NaN).
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) Cf.at(i, j) = NAN, Cb.at(i, j) = nan_of<BFloat16>();
    for (size_t e = 0; e < Cf.data.size(); ++e)
      if (!std::isnan(Cf.data[e]) || !std::isnan(float(Cb.data[e]))) {
        ADD_FAILURE() << p.label << " wrote outside C at offset " << e << where;
        break;
      }
  }
}

TEST(GemmBf16, PathsThisCpuRuns) {
  const auto paths = bf16_paths();
  std::string names;
  for (const auto& p : paths) names += p.label + " ";
  std::printf("bf16 GEMM paths under test: %s(dispatch picks %s)\n", names.c_str(),
              nabla::cpu::gemm_detail::name(nabla::cpu::gemm_detail::best_bf16_isa()));
  EXPECT_GE(paths.size(), 3u);  // the dispatch, scalar, the emulated AMX at least
}

TEST(GemmBf16, IsaCapFollowsNablaCpuIsa) {
  using nabla::cpu::gemm_detail::detect_bf16_isa;
  using nabla::cpu::gemm_detail::parse_isa_cap;
  EXPECT_EQ(parse_isa_cap("scalar"), 0);
  EXPECT_EQ(parse_isa_cap("avx2"), 1);
  EXPECT_EQ(parse_isa_cap("avx512"), 2);
  EXPECT_EQ(parse_isa_cap("avx512_bf16"), 3);
  EXPECT_EQ(parse_isa_cap("amx"), 4);
  EXPECT_EQ(parse_isa_cap(nullptr), nabla::cpu::gemm_detail::kNoIsaCap);
  EXPECT_EQ(parse_isa_cap("sse9"), nabla::cpu::gemm_detail::kNoIsaCap);  // warns, no cap
  const Bf16Isa top = detect_bf16_isa(nabla::cpu::gemm_detail::kNoIsaCap);
  for (int cap = 0; cap <= 4; ++cap) {
    const Bf16Isa got = detect_bf16_isa(cap);
    EXPECT_LE(int(got), cap);
    EXPECT_EQ(int(got), std::min(cap, int(top))) << "cap " << cap;
  }
}

TEST(GemmBf16, EmptyShapesAndZeroDepth) {
  std::vector<BFloat16> a(16, BFloat16(1.0f)), b(16, BFloat16(1.0f));
  for (const auto& p : bf16_paths()) {
    std::vector<BFloat16> c(16, BFloat16(7.0f));
    std::vector<float> cf(16, 7.0f);
    run_bf16<BFloat16>(p, 0, 4, 4, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, false);
    run_bf16<BFloat16>(p, 4, 0, 4, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, false);
    run_bf16<BFloat16>(p, 4, 4, 0, a.data(), 4, 1, b.data(), 4, 1, c.data(), 4, 1, true);
    run_bf16<float>(p, 4, 4, 0, a.data(), 4, 1, b.data(), 4, 1, cf.data(), 4, 1, true);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(float(c[size_t(i)]), 7.0f) << p.label;
    for (int i = 0; i < 16; ++i) EXPECT_EQ(cf[size_t(i)], 7.0f) << p.label;
    run_bf16<BFloat16>(p, 4, 4, 0, nullptr, 1, 1, nullptr, 1, 1, c.data(), 4, 1, false);
    run_bf16<float>(p, 4, 4, 0, nullptr, 1, 1, nullptr, 1, 1, cf.data(), 4, 1, false);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(float(c[size_t(i)]), 0.0f) << p.label;
    for (int i = 0; i < 16; ++i) EXPECT_EQ(cf[size_t(i)], 0.0f) << p.label;
  }
}

TEST(GemmBf16, OddSizesAllLayouts) {
  for (int64_t m : {1, 3, 17, 33})
    for (int64_t n : {1, 5, 13, 33})
      for (int64_t k : {1, 2, 7, 31})
        for (Layout la : {Layout::RowMajor, Layout::ColMajor})
          for (Layout lb : {Layout::RowMajor, Layout::ColMajor})
            for (Layout lc : {Layout::RowMajor, Layout::ColMajor})
              check_bf16(m, n, k, la, lb, lc, (m + n + k) % 2 == 0);
}

TEST(GemmBf16, PaddedAndStridedLayouts) {
  for (Layout la : kAllLayouts)
    for (Layout lb : kAllLayouts)
      for (Layout lc : kAllLayouts)
        for (bool acc : {false, true}) check_bf16(37, 29, 19, la, lb, lc, acc);
}

TEST(GemmBf16, TileEdgeSizes) {
  // Around the micro-tiles (MR 8 / 16 / 32, NR 4 / 6 / 12 / 32) and an odd k on both sides of the
  // SSE packing's 8-wide steps.
  for (int64_t m : {31, 65, 129})
    for (int64_t n : {31, 65, 129})
      for (int64_t k : {9, 65})
        for (bool acc : {false, true}) check_bf16(m, n, k, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
  check_bf16(64, 64, 64, Layout::ColMajor, Layout::ColMajor, Layout::ColMajor, false);
}

TEST(GemmBf16, TallAndSkinny) {
  for (bool acc : {false, true}) {
    check_bf16(1, 1, 1, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check_bf16(700, 1, 300, Layout::RowMajor, Layout::ColMajor, Layout::RowMajor, acc);
    check_bf16(1, 700, 300, Layout::RowMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check_bf16(3, 1500, 17, Layout::ColMajor, Layout::RowMajor, Layout::RowMajor, acc);
    check_bf16(8, 8, 2500, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, acc);
  }
}

TEST(GemmBf16, LargerThanBlocks) {
  // Past KC (768 for vdpbf16ps, 1024 for AMX, 384 / 256 for the widening paths: several depth
  // passes, so a bf16 C goes through the float32 workspace), past MC and past NC.
  for (Layout la : {Layout::RowMajor, Layout::ColMajor})
    for (Layout lb : {Layout::RowMajor, Layout::ColMajor})
      for (bool acc : {false, true}) check_bf16(150, 230, 1100, la, lb, Layout::RowMajor, acc);
  check_bf16(600, 40, 801, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, true);
  check_bf16(20, 4200, 40, Layout::RowMajor, Layout::RowMajor, Layout::ColMajor, true);
  check_bf16(33, 17, 2051, Layout::Strided, Layout::ColPadded, Layout::RowPadded, true);
}

TEST(GemmBf16, NestedInsideParallelRegion) {
  const int64_t n = 80;
  std::mt19937 rng(test_seed());
  Mat<BFloat16> A(n, n, Layout::RowMajor), B(n, n, Layout::RowMajor);
  A.randomize(rng);
  B.randomize(rng);
  std::vector<float> want(size_t(n * n));
  nabla::cpu::gemm_detail::gemm_bf16_isa<float>(Bf16Isa::scalar, n, n, n, A.data.data(), n, 1, B.data.data(), n, 1,
                                                want.data(), n, 1, false);
  const int tasks = 4;
  std::vector<std::vector<float>> out(tasks, std::vector<float>(size_t(n * n)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(2)
#endif
  for (int t = 0; t < tasks; ++t)
    nabla::cpu::gemm_bf16<float>(n, n, n, A.data.data(), n, 1, B.data.data(), n, 1, out[size_t(t)].data(), n, 1,
                                 false);
  for (const auto& c : out)
    for (size_t e = 0; e < c.size(); ++e) ASSERT_NEAR(c[e], want[e], 1e-4);
}

// The vector roundings to bf16 give the scalar conversion's bits (nabla::BFloat16: round to
// nearest even, NaN quieted with sign and top payload kept, subnormals kept), with and without
// adding C's old value.
TEST(GemmBf16, VectorRoundingMatchesScalar) {
  const uint32_t special[] = {0x00000000u, 0x80000000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                              0x3f817fffu, 0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x7f800000u, 0xff800000u,
                              0x7fc00000u, 0xffc00001u, 0x7f800001u, 0xff812345u, 0x00000001u, 0x807fffffu,
                              0x00400000u, 0x00008000u, 0x00018000u, 0x3eaaaaabu, 0xc0490fdbu};
  std::vector<float> tile;
  for (uint32_t u : special) tile.push_back(nabla::detail::bits_float(u));
  std::mt19937 rng(test_seed());
  while (tile.size() < 37 * 3) tile.push_back(nabla::detail::bits_float(uint32_t(rng())));
  const int64_t m = 37, n = 3;
  using Store = void (*)(const float*, int64_t, BFloat16*, int64_t, int64_t, int64_t, int64_t, bool);
  std::vector<std::pair<std::string, Store>> stores;
  const int best = int(nabla::cpu::gemm_detail::best_isa());
#ifdef NABLA_GEMM_X86
  if (best >= int(Isa::avx2)) stores.push_back({"avx2", &nabla::cpu::gemm_detail::store_bf16_avx2});
  if (best >= int(Isa::avx512)) stores.push_back({"avx512", &nabla::cpu::gemm_detail::store_bf16_avx512});
#endif
  if (stores.empty()) GTEST_SKIP() << "no vector rounding on this CPU (best ISA " << best << ")";
  for (bool acc : {false, true}) {
    std::vector<BFloat16> start(size_t(m * n));
    for (auto& c : start) c = BFloat16::from_bits(uint16_t(rng()));
    std::vector<BFloat16> want = start;
    nabla::cpu::gemm_detail::store_bf16_scalar(tile.data(), m, want.data(), 1, m, m, n, acc);
    for (const auto& [label, store] : stores) {
      std::vector<BFloat16> got = start;
      store(tile.data(), m, got.data(), 1, m, m, n, acc);
      for (size_t e = 0; e < got.size(); ++e)
        ASSERT_EQ(got[e].bits, want[e].bits) << label << " acc=" << acc << " element " << e << " from float bits "
                                             << std::hex << nabla::detail::float_bits(tile[e]);
    }
  }
}

// ---- bfloat16 ops on the CPU: each result rounded once ----------------------------------------------
// The ops' bf16 kernels (matmul, linear, conv2d forward and both gradients, max_pool2d) against
// float64 computed from the same bf16 values: |got - want| <= 2^-8 |want| + 2^-12 S, where S is
// the same computation on absolute values (so 2^-12 S covers float32 summation, and a result
// rounded to bf16 more than once, or summed in bf16, shows up).

namespace nb = nabla;

nb::Tensor bf16_round(const nb::Tensor& t) { return t.to(nb::kBFloat16).to(nb::kFloat64); }

void expect_one_rounding(const nb::Tensor& got, const nb::Tensor& want, const nb::Tensor& scale, const std::string& what) {
  ASSERT_EQ(got.dtype(), nb::kBFloat16) << what;
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const auto g = got.to(nb::kFloat64).contiguous().to_vector<double>();
  const auto w = want.contiguous().to_vector<double>(), s = scale.contiguous().to_vector<double>();
  int bad = 0;
  for (size_t i = 0; i < g.size() && bad < 5; ++i) {
    const double tol = std::ldexp(std::abs(w[i]), -8) + std::ldexp(s[i], -12);
    if (!(std::abs(g[i] - w[i]) <= tol)) {
      ADD_FAILURE() << what << " element " << i << ": got " << g[i] << " want " << w[i] << " tol " << tol;
      ++bad;
    }
  }
}

TEST(Bf16Ops, MatmulAndLinearRoundOnce) {
  nb::manual_seed(11);
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{5, 7, 3}, {33, 900, 19}, {64, 64, 64}}) {
    nb::Tensor a = bf16_round(nb::randn({2, M, K}, nb::kFloat64)), b = bf16_round(nb::randn({K, N}, nb::kFloat64));
    nb::Tensor bt = bf16_round(nb::randn({N, K}, nb::kFloat64)), bias = bf16_round(nb::randn({N}, nb::kFloat64));
    const std::string shape = " [" + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N) + "]";
    expect_one_rounding(nb::matmul(a.to(nb::kBFloat16), b.to(nb::kBFloat16)), nb::matmul(a, b),
                        nb::matmul(a.abs(), b.abs()), "matmul" + shape);
    expect_one_rounding(nb::matmul(a.to(nb::kBFloat16), bt.to(nb::kBFloat16).t()), nb::matmul(a, bt.t()),
                        nb::matmul(a.abs(), bt.abs().t()), "matmul transposed" + shape);
    const auto hits = nb::nn::functional::fused::linear_kernels().hits(nb::DeviceType::CPU);
    expect_one_rounding(nb::nn::functional::linear(a.to(nb::kBFloat16), bt.to(nb::kBFloat16), bias.to(nb::kBFloat16)),
                        nb::matmul(a, bt.t()) + bias, nb::matmul(a.abs(), bt.abs().t()) + bias.abs(), "linear" + shape);
    EXPECT_GT(nb::nn::functional::fused::linear_kernels().hits(nb::DeviceType::CPU), hits) << "bf16 linear ran no fused kernel";
  }
}

TEST(Bf16Ops, Conv2dForwardAndGradientsRoundOnce) {
  nb::manual_seed(12);
  struct Case {
    nb::Shape x, w;
    int64_t stride, pad, groups;
  };
  const Case cases[] = {{{2, 3, 9, 8}, {5, 3, 3, 3}, 1, 1, 1},     // several images per GEMM
                        {{1, 4, 40, 37}, {6, 2, 3, 2}, 2, 1, 2},   // bands of rows, groups
                        {{3, 8, 5, 5}, {4, 8, 1, 1}, 1, 0, 1},     // pointwise
                        {{1, 96, 6, 6}, {8, 96, 3, 3}, 1, 1, 1}};  // ckk 864 > KC: two depth passes
  for (const Case& c : cases) {
    nb::Tensor x = bf16_round(nb::randn(c.x, nb::kFloat64)), w = bf16_round(nb::randn(c.w, nb::kFloat64));
    nb::Tensor b = bf16_round(nb::randn({c.w[0]}, nb::kFloat64));
    auto run = [&](const nb::Tensor& xi, const nb::Tensor& wi, const nb::Tensor& bi, const nb::Tensor& gy) {
      nb::Tensor xr = xi.detach().requires_grad_(), wr = wi.detach().requires_grad_(), br = bi.detach().requires_grad_();
      nb::Tensor y = nb::conv2d(xr, wr, br, c.stride, c.pad, 1, c.groups);
      if (gy.defined()) y.backward(gy);
      return std::vector<nb::Tensor>{y.detach(), xr.grad(), wr.grad(), br.grad()};
    };
    const auto hits = nb::conv2d_kernels().hits(nb::DeviceType::CPU);
    nb::Tensor y0 = run(x, w, b, nb::Tensor())[0];
    nb::Tensor gy = bf16_round(nb::randn(y0.sizes(), nb::kFloat64));
    auto got = run(x.to(nb::kBFloat16), w.to(nb::kBFloat16), b.to(nb::kBFloat16), gy.to(nb::kBFloat16));
    EXPECT_GT(nb::conv2d_kernels().hits(nb::DeviceType::CPU), hits) << "bf16 conv2d ran no fused kernel";
    auto want = run(x, w, b, gy);
    auto scale = run(x.abs(), w.abs(), b.abs(), gy.abs());
    const std::string label = "conv2d x" + shape_str(c.x) + " w" + shape_str(c.w);
    expect_one_rounding(got[0], want[0], scale[0], label + " forward");
    expect_one_rounding(got[1], want[1], scale[1], label + " grad x");
    expect_one_rounding(got[2], want[2], scale[2], label + " grad w");
    expect_one_rounding(got[3], want[3], scale[3], label + " grad bias");
  }
}

TEST(Bf16Ops, MaxPoolRunsItsBf16Kernel) {
  nb::manual_seed(13);
  nb::Tensor x = nb::randn({2, 3, 9, 7}).to(nb::kBFloat16);
  const auto hits = nb::max_pool2d_kernels().hits(nb::DeviceType::CPU);
  auto [y, idx] = nb::max_pool2d_with_indices(x, 3, 2, 1, 1, true);
  EXPECT_GT(nb::max_pool2d_kernels().hits(nb::DeviceType::CPU), hits);
  EXPECT_EQ(y.dtype(), nb::kBFloat16);
  auto [yf, idxf] = nb::max_pool2d_with_indices(x.to(nb::kFloat32), 3, 2, 1, 1, true);
  EXPECT_EQ(y.to(nb::kFloat32).to_vector<float>(), yf.to_vector<float>());
  EXPECT_EQ(idx.to_vector<int64_t>(), idxf.to_vector<int64_t>());
}

}  // namespace
