// Calibration observers (quantization/observer.hpp): choose_qparams against values worked out by
// hand from PyTorch's formula, running min/max, the histogram observer's L2 range search against
// min/max, its re-binning when the range widens, and the errors.

#include <nabla/quantization/observer.hpp>

#include "test_util.hpp"

namespace {

using namespace nabla;
namespace q = nabla::quantization;

constexpr float kEps = std::numeric_limits<float>::epsilon();

// Sum of squared errors of x quantized to uint8 with p and dequantized again.
double quantization_sse(const Tensor& x, q::QParams p) {
  Tensor c = x.to(kFloat32).contiguous();
  const float* v = c.data<float>();
  double sse = 0.0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    const float level = std::clamp(std::nearbyint(v[i] / p.scale) + static_cast<float>(p.zero_point), 0.0f, 255.0f);
    const double back = (static_cast<double>(level) - p.zero_point) * static_cast<double>(p.scale);
    sse += (v[i] - back) * (v[i] - back);
  }
  return sse;
}

std::pair<double, double> histogram_range(const Tensor& x) {
  q::HistogramObserver h;
  h.observe(x);
  return h.range();
}

TEST(QuantObserver, ChooseQParamsMatchesPyTorch) {
  q::QParams p = q::choose_qparams(-1.0, 3.0);
  EXPECT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 64);  // -round(-1 / (4/255)) = round(63.75)
  // [0.5, 2] widens to [0, 2]; [-2, -0.5] to [-2, 0]
  p = q::choose_qparams(0.5, 2.0);
  EXPECT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  p = q::choose_qparams(-2.0, -0.5);
  EXPECT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 255);
  // an empty range: scale is float eps
  p = q::choose_qparams(0.0, 0.0);
  EXPECT_EQ(p.scale, kEps);
  EXPECT_EQ(p.zero_point, 0);
  EXPECT_EQ(q::choose_qparams(1e-9, 1e-9).scale, kEps);
  // scale 0.5 and lo / scale = -0.5 or -1.5: torch.round rounds half to even (std::round would give 1)
  p = q::choose_qparams(-0.25, 127.25);
  EXPECT_EQ(p.scale, 0.5f);
  EXPECT_EQ(p.zero_point, 0);
  EXPECT_EQ(q::choose_qparams(-0.75, 126.75).zero_point, 2);
  EXPECT_THROW(q::choose_qparams(1.0, -1.0), ValueError);
  EXPECT_THROW(q::choose_qparams(std::nan(""), 1.0), ValueError);
  EXPECT_THROW(q::choose_qparams(-1.0, std::numeric_limits<double>::infinity()), ValueError);
}

TEST(QuantObserver, MinMaxKeepsTheRunningMinAndMax) {
  q::MinMaxObserver m;
  m.observe(from_vector(std::vector<float>{0.5f, 2.0f}, {2}, kFloat32));
  EXPECT_EQ(m.range(), std::make_pair(0.5, 2.0));
  m.observe(from_vector(std::vector<double>{-1.0, 0.25, 1.0, 1.5}, {2, 2}, kFloat64).t());  // float64, strided
  m.observe(zeros({0}));                                                                      // changes nothing
  Tensor w = from_vector(std::vector<float>{3.0f, 1.0f}, {2}, kFloat32).requires_grad_(true);
  m.observe(w * 1.0);  // has history: observed detached
  m.observe(from_vector(std::vector<int64_t>{2, 1}, {2}, kInt64));
  EXPECT_EQ(m.range(), std::make_pair(-1.0, 3.0));
  const q::QParams p = m.qparams();
  EXPECT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 64);
  EXPECT_EQ(m.name(), "MinMaxObserver");

  std::unique_ptr<q::Observer> f = m.fresh();
  EXPECT_NE(dynamic_cast<q::MinMaxObserver*>(f.get()), nullptr);
  EXPECT_THROW(f->range(), Error);  // fresh means empty
}

// 2M standard normal values and two at 50: min/max spends most of the 256 levels on empty space.
// Clipping the two costs 2 * 45^2 ~ 4e3 and cuts the rounding error over the 2M values from ~8e3
// to ~2e2, so the L2 search clips them.
TEST(QuantObserver, HistogramClipsRareOutliersAndLowersTheError) {
  manual_seed(3);
  Tensor x = cat({randn({2'000'000}), full({2}, 50.0)});
  q::HistogramObserver h;
  q::MinMaxObserver m;
  for (const Tensor& chunk : x.chunk(4)) {  // several batches: the histogram widens as it goes
    h.observe(chunk);
    m.observe(chunk);
  }
  const auto [lo, hi] = h.range();
  EXPECT_EQ(m.range().second, 50.0);
  EXPECT_LT(hi, 10.0) << "range [" << lo << ", " << hi << "]";
  EXPECT_GT(hi, 3.0);
  EXPECT_LT(lo, -3.0);
  const double hist_sse = quantization_sse(x, h.qparams()), minmax_sse = quantization_sse(x, m.qparams());
  EXPECT_LT(hist_sse, 0.8 * minmax_sse) << hist_sse << " vs " << minmax_sse;
}

// The same outliers, fifty times as frequent relative to the data: clipping 5 values at 50 would
// cost ~1e4 against ~4e2 of rounding error over the 100k, so an L2 search keeps the full range
// where a percentile clip would not.
TEST(QuantObserver, HistogramKeepsOutliersThatAreCheaperToRepresent) {
  manual_seed(4);
  Tensor x = cat({randn({100'000}), full({5}, 50.0)});
  q::HistogramObserver h;
  h.observe(x);
  EXPECT_GT(h.range().second, 45.0);  // the top bin may go: the 5 are taken as spread over it
  q::MinMaxObserver m;
  m.observe(x);
  EXPECT_LE(quantization_sse(x, h.qparams()), 1.01 * quantization_sse(x, m.qparams()));
}

// PyTorch's search takes its first move unchecked and clips a lone outlier at 5x min/max's
// error; nabla's starts from the full range's error, so it keeps it.
TEST(QuantObserver, HistogramIsNeverWorseThanMinMaxByItsErrorModel) {
  manual_seed(11);
  Tensor x = cat({randn({100'000}), full({1}, 50.0)}, 0);
  q::HistogramObserver h;
  h.observe(x);
  q::MinMaxObserver m;
  m.observe(x);
  EXPECT_GT(h.range().second, 45.0);
  EXPECT_LE(quantization_sse(x, h.qparams()), 1.01 * quantization_sse(x, m.qparams()));
}

TEST(QuantObserver, HistogramOnUniformDataKeepsTheRange) {
  manual_seed(5);
  const auto [lo, hi] = histogram_range(rand({100'000}));
  const double bin = 1.0 / 2048;
  EXPECT_NEAR(lo, 0.0, 4 * bin);
  EXPECT_NEAR(hi, 1.0, 4 * bin);
  // With fewer bins than levels each bin spans several quantization cells, the case where the
  // error model sums whole cells inside a bin; one bin may go.
  q::HistogramObserver coarse(32);
  coarse.observe(rand({100'000}));
  EXPECT_NEAR(coarse.range().first, 0.0, 1.0 / 32 + 1e-3);
  EXPECT_NEAR(coarse.range().second, 1.0, 1.0 / 32 + 1e-3);
}

// The error model against a brute-force integral of the same model: each bin's count spread
// evenly over the bin, every point sent to the centre of its cell among 256 over bins
// [start, end], clamped to the first or last cell.
TEST(QuantObserver, HistogramErrorModelIsTheL2ErrorOfTheHistogram) {
  manual_seed(7);
  q::HistogramObserver h(32);
  h.observe(randn({20'000}));
  const double lo = h.min_max().first, hi = h.min_max().second;  // not a structured binding: the lambda captures it
  const double width = (hi - lo) / 32;
  const auto brute_force = [&](int64_t start, int64_t end) {
    const double edge = lo + static_cast<double>(start) * width;
    const double cell = static_cast<double>(end - start + 1) * width / 256;
    constexpr int kPoints = 20'000;
    double sum = 0.0;
    for (size_t i = 0; i < 32; ++i) {
      for (int k = 0; k < kPoints; ++k) {
        const double x = lo + (static_cast<double>(i) + (k + 0.5) / kPoints) * width;
        const double index = std::clamp(std::floor((x - edge) / cell), 0.0, 255.0);
        const double centre = edge + (index + 0.5) * cell;
        sum += h.histogram()[i] / kPoints * (x - centre) * (x - centre);
      }
    }
    return sum;
  };
  // whole range (8 cells a bin), clipped on one side or both (bins straddling cells), and three
  // bins (85 cells each)
  for (auto [start, end] : std::vector<std::pair<int64_t, int64_t>>{{0, 31}, {0, 15}, {8, 31}, {5, 27}, {14, 16}}) {
    const double want = brute_force(start, end);
    EXPECT_NEAR(h.quantization_error(start, end), want, 1e-4 * want) << start << ".." << end;
  }
  // the full-range error of an even spread over whole cells is cell^2 / 12 per value
  const double cell = (hi - lo) / 256;
  EXPECT_NEAR(h.quantization_error(0, 31), 20'000 * cell * cell / 12, 1e-9);
  EXPECT_THROW(h.quantization_error(3, 32), IndexError);
  EXPECT_THROW(h.quantization_error(4, 3), IndexError);
}

// The largest gap between the cumulative counts of two histograms, as a fraction of the total.
double cdf_gap(const std::vector<double>& a, const std::vector<double>& b, double total) {
  double ca = 0, cb = 0, worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ca += a[i];
    cb += b[i];
    worst = std::max(worst, std::abs(ca - cb));
  }
  return worst / total;
}

// Widening re-bins the old counts; the result must agree with seeing all the data in one call.
TEST(QuantObserver, HistogramRebinningAgreesWithOneBatch) {
  manual_seed(6);
  // [0, 1] then [0, 4]
  Tensor u = rand({100'000}), v = rand({100'000}) * 4;
  q::HistogramObserver two, one;
  two.observe(u);
  two.observe(v);
  one.observe(cat({u, v}));
  EXPECT_EQ(two.min_max(), one.min_max());
  EXPECT_LT(cdf_gap(two.histogram(), one.histogram(), 200'000), 3e-4);
  const double bin = (one.min_max().second - one.min_max().first) / 2048;
  EXPECT_NEAR(two.range().first, one.range().first, 2 * bin);
  EXPECT_NEAR(two.range().second, one.range().second, 2 * bin);

  // widening at both ends, onto grids that do not line up
  const std::vector<Tensor> batches = {rand({100'000}) * 1.3 + 0.1, rand({100'000}) * 4, rand({50'000}) * 1.5 - 2};
  q::HistogramObserver in_steps, at_once;
  for (const Tensor& b : batches) in_steps.observe(b);
  at_once.observe(cat(batches));
  EXPECT_EQ(in_steps.min_max(), at_once.min_max());
  double mass = 0;
  for (double c : in_steps.histogram()) mass += c;
  EXPECT_NEAR(mass, 250'000.0, 1e-6);  // re-binning neither loses nor invents counts
  EXPECT_LT(cdf_gap(in_steps.histogram(), at_once.histogram(), 250'000), 3e-4);
  // Dense ends: on a sparse tail the greedy search can stop bins apart on near-equal histograms.
  const auto [lo, hi] = at_once.min_max();
  EXPECT_NEAR(in_steps.range().first, at_once.range().first, 2 * (hi - lo) / 2048);
  EXPECT_NEAR(in_steps.range().second, at_once.range().second, 2 * (hi - lo) / 2048);
}

// All values equal: the histogram holds a point; a later batch widens it without losing the point.
TEST(QuantObserver, HistogramOfOneValue) {
  q::HistogramObserver h(64);
  h.observe(full({100}, 2.0));
  EXPECT_EQ(h.range(), std::make_pair(2.0, 2.0));
  EXPECT_EQ(h.qparams().scale, 2.0f / 255.0f);
  h.observe(full({1}, -1.0));
  EXPECT_EQ(h.min_max(), std::make_pair(-1.0, 2.0));
  EXPECT_EQ(h.histogram().front(), 1.0);
  EXPECT_EQ(h.histogram().back(), 100.0);
}

TEST(QuantObserver, Errors) {
  std::vector<std::unique_ptr<q::Observer>> observers;
  observers.push_back(std::make_unique<q::MinMaxObserver>());
  observers.push_back(std::make_unique<q::HistogramObserver>(512));
  for (const auto& o : observers) {
    SCOPED_TRACE(o->name());
    EXPECT_THROW(o->qparams(), Error);
    EXPECT_THROW(o->range(), ValueError);
    o->observe(zeros({0}));
    EXPECT_THROW(o->qparams(), Error);  // an empty batch observes nothing
    EXPECT_THROW(o->observe(Tensor()), ValueError);

    o->observe(from_vector(std::vector<float>{-1.0f, 1.0f}, {2}, kFloat32));
    const auto before = o->range();
    const float inf = std::numeric_limits<float>::infinity();
    for (float bad : {std::nanf(""), inf, -inf}) {
      try {
        o->observe(from_vector(std::vector<float>{0.0f, 0.5f, bad, 7.0f}, {2, 2}, kFloat32));
        ADD_FAILURE() << "observing " << bad << " did not throw";
      } catch (const ValueError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(o->name() + "::observe"), std::string::npos) << msg;
        EXPECT_NE(msg.find("flat index 2"), std::string::npos) << msg;
      }
    }
    EXPECT_EQ(o->range(), before);  // a refused batch leaves no trace (7 was not taken in)
  }
  EXPECT_THROW(q::HistogramObserver(0), ValueError);

  std::unique_ptr<q::Observer> f = q::HistogramObserver(300).fresh();
  auto* h = dynamic_cast<q::HistogramObserver*>(f.get());
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->bins(), 300);
  EXPECT_THROW(h->range(), ValueError);
}

}  // namespace
