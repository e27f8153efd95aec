// Correctness of nabla::cpu::gemm / gemm_native (and every micro-kernel this CPU can run)
// against a double-precision triple loop, over awkward shapes, strides and accumulate modes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <nabla/backend/cpu/gemm.hpp>

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
    data.assign(size_t(span), std::numeric_limits<T>::quiet_NaN());
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

}  // namespace
