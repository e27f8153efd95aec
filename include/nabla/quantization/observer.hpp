#pragma once
// Calibration observers for uint8 post-training quantization, as torch.ao.quantization's: an
// Observer sees the activation batches of a calibration run and proposes affine parameters.
// MinMaxObserver keeps the running min and max; HistogramObserver keeps a histogram and picks
// the clip range that minimizes the L2 quantization error, so rare outliers can be clipped.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "../ops/copy.hpp"

namespace nabla {
namespace quantization {

// Affine uint8 parameters: x ~ (q - zero_point) * scale, q in [0, 255].
struct QParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// PyTorch's choose_qparams for quint8, per-tensor affine (UniformQuantizationObserverBase.
// _calculate_qparams): the range widened to include 0 so that 0.0 (padding, ReLU output) is exact;
// scale = max((hi - lo) / 255, float eps), zero_point = clamp(-round(lo / scale), 0, 255). Computed in
// float32, rounding half to even, as PyTorch's tensors do, so the values match PyTorch's bit for bit.
inline QParams choose_qparams(double lo, double hi) {
  NABLA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, ValueError,
              "quantization::choose_qparams: expected a finite range lo <= hi, got [", lo, ", ", hi, "]");
  const float lo_f = std::min(static_cast<float>(lo), 0.0f), hi_f = std::max(static_cast<float>(hi), 0.0f);
  QParams q;
  q.scale = std::max((hi_f - lo_f) / 255.0f, std::numeric_limits<float>::epsilon());
  NABLA_CHECK(std::isfinite(q.scale), ValueError, "quantization::choose_qparams: the range [", lo, ", ", hi,
              "] is too wide for a float32 scale");
  q.zero_point = static_cast<int32_t>(std::clamp(-std::nearbyint(lo_f / q.scale), 0.0f, 255.0f));
  return q;
}

// What a calibration pass needs from an observer: feed it batches, then ask for the parameters.
class Observer {
 public:
  virtual ~Observer() = default;
  // Records a batch: any dtype and device, read as float32 on the CPU, outside autograd. An empty
  // tensor changes nothing; a NaN or inf throws ValueError and leaves the observer as it was.
  virtual void observe(const Tensor& x) = 0;
  // choose_qparams over range(). Throws ValueError if no value was observed yet.
  virtual QParams qparams() const = 0;
  // The chosen clip range [lo, hi], before qparams() widens it to include 0.
  virtual std::pair<double, double> range() const = 0;
  // A new empty observer of the same kind and settings (one per tensor to calibrate).
  virtual std::unique_ptr<Observer> fresh() const = 0;
  virtual std::string name() const = 0;
};

namespace detail {

// One batch as the observers read it: contiguous float32 values on the CPU and their min and max.
// Non-finite values are refused rather than skipped (PyTorch's HistogramObserver drops infs with a
// warning): an inf would make the range and every scale infinite, a NaN compares false and would
// slip past min/max, and either usually means the float model already went wrong.
struct ObservedBatch {
  Tensor values;
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
};

inline ObservedBatch observed_batch(const Tensor& x, const std::string& observer) {
  NABLA_CHECK(x.defined(), ValueError, "quantization::", observer, "::observe: got an undefined tensor");
  ObservedBatch b;
  b.values = x.detach().to(Device::cpu(), kFloat32).contiguous();
  const float* p = b.values.data<float>();
  const int64_t n = b.values.numel();
  for (int64_t i = 0; i < n; ++i) {
    NABLA_CHECK(std::isfinite(p[i]), ValueError, "quantization::", observer, "::observe: the tensor (",
                nabla::detail::describe(x), ") holds ", p[i], " at flat index ", i,
                " (read as float32); calibration needs finite values");
    b.lo = std::min(b.lo, p[i]);
    b.hi = std::max(b.hi, p[i]);
  }
  return b;
}

inline void check_observed(bool observed, const std::string& observer) {
  NABLA_CHECK(observed, ValueError, "quantization::", observer,
              ": no values observed yet; run calibration batches through observe() before asking for the range or "
              "qparams");
}

}  // namespace detail

// The running min and max of everything observed (PyTorch's MinMaxObserver, per tensor).
class MinMaxObserver : public Observer {
 public:
  void observe(const Tensor& x) override {
    const detail::ObservedBatch b = detail::observed_batch(x, name());
    lo_ = std::min(lo_, static_cast<double>(b.lo));
    hi_ = std::max(hi_, static_cast<double>(b.hi));
  }
  QParams qparams() const override {
    const auto [lo, hi] = range();
    return choose_qparams(lo, hi);
  }
  std::pair<double, double> range() const override {
    detail::check_observed(lo_ <= hi_, name());
    return {lo_, hi_};
  }
  std::unique_ptr<Observer> fresh() const override { return std::make_unique<MinMaxObserver>(); }
  std::string name() const override { return "MinMaxObserver"; }

 private:
  double lo_ = std::numeric_limits<double>::infinity(), hi_ = -std::numeric_limits<double>::infinity();
};

// PyTorch's HistogramObserver (torch.ao.quantization), per tensor, quint8.
//
// observe() keeps a histogram of `bins` equal bins over the running [min, max]. When a batch widens
// the range, the old counts move onto bins over the new range, each old bin's count spread over the
// new bins it overlaps in proportion to the overlap: the count is taken as uniform within its bin,
// the assumption PyTorch's upsample-and-combine also makes, without PyTorch's widening of max to
// align the two grids, so range() never reaches past the largest value seen.
//
// range() runs PyTorch's _non_linear_param_search (from caffe2's NormMinimization), a greedy
// approximation of the [lo, hi] minimizing the L2 error of a 256-level quantizer:
//   - start from all bins [start, end] = [0, bins - 1] and two quantile bounds alpha = 0, beta = 1;
//   - each step looks 1e-5 of the total count past each bound, finds the bins l >= start and
//     r <= end where the cumulative count crosses those, and moves whichever end that skips more
//     bins (the sparser tail: start to l, else end to r), advancing only that end's bound;
//   - a move is kept if the modelled error (quantization_error) does not rise; the first move
//     that raises it ends the search, as does alpha meeting beta.
// A clipped value costs its squared distance to the edge, so after the first move the search
// clips a sparse tail only while that costs less than the rounding error the narrower range saves
// over all values: 5 values at 50 among 100k N(0, 1) are kept, 2 among 2M are clipped. One
// departure: PyTorch starts the best error at infinity, so its first move is taken unchecked and
// a tail under 1e-5 of the count can be clipped where keeping it is cheaper (1 value at 50 among
// 100k N(0, 1): over 5x min/max's squared error); here the best error starts at the full range's,
// so the chosen range is never worse than min/max by the modelled error.
class HistogramObserver : public Observer {
  static constexpr int kLevels = 256;  // the uint8 grid

 public:
  explicit HistogramObserver(int bins = 2048) : bins_(bins) {
    NABLA_CHECK(bins > 0, ValueError, "quantization::HistogramObserver: bins=", bins, " must be positive");
    hist_.assign(static_cast<size_t>(bins), 0.0);
  }

  void observe(const Tensor& x) override {
    const detail::ObservedBatch b = detail::observed_batch(x, name());
    if (b.values.numel() == 0) return;
    const double lo = std::min(lo_, static_cast<double>(b.lo)), hi = std::max(hi_, static_cast<double>(b.hi));
    if (lo != lo_ || hi != hi_) widen(lo, hi);
    const float* p = b.values.data<float>();
    for (int64_t i = 0, n = b.values.numel(); i < n; ++i) hist_[bin_of(p[i])] += 1.0;
  }

  QParams qparams() const override {
    const auto [lo, hi] = range();
    return choose_qparams(lo, hi);
  }

  std::pair<double, double> range() const override {
    detail::check_observed(lo_ <= hi_, name());
    if (lo_ == hi_) return {lo_, hi_};
    std::vector<double> cum(hist_.size());
    std::partial_sum(hist_.begin(), hist_.end(), cum.begin());
    const double total = cum.back();
    constexpr double kStep = 1e-5;
    int64_t start = 0, end = bins_ - 1;
    double alpha = 0.0, beta = 1.0, least_error = quantization_error(start, end);
    while (alpha < beta) {
      const double next_alpha = alpha + kStep, next_beta = beta - kStep;
      int64_t l = start, r = end;
      while (l < end && cum[static_cast<size_t>(l)] < next_alpha * total) ++l;
      while (r > start && cum[static_cast<size_t>(r)] > next_beta * total) --r;
      int64_t next_start = start, next_end = end;
      if (l - start > end - r) {
        next_start = l;
        alpha = next_alpha;
      } else {
        next_end = r;
        beta = next_beta;
      }
      if (next_start == start && next_end == end) continue;
      const double error = quantization_error(next_start, next_end);
      if (error > least_error) break;
      least_error = error;
      start = next_start;
      end = next_end;
    }
    const double width = (hi_ - lo_) / static_cast<double>(bins_);
    const double hi = end == bins_ - 1 ? hi_ : lo_ + width * static_cast<double>(end + 1);
    return {lo_ + width * static_cast<double>(start), hi};
  }

  std::unique_ptr<Observer> fresh() const override { return std::make_unique<HistogramObserver>(bins_); }
  std::string name() const override { return "HistogramObserver"; }

  int bins() const { return bins_; }
  // The counts over [min, max] of what was observed (fractional after a range widened).
  const std::vector<double>& histogram() const { return hist_; }
  // The running min and max of what was observed (+inf, -inf before anything was).
  std::pair<double, double> min_max() const { return {lo_, hi_}; }

  // The modelled L2 error of quantizing what was observed to 256 levels over bins [start, end],
  // the quantity range() searches on (PyTorch's _compute_quantization_error): each bin's count is
  // taken as uniform over the bin, bins [start, end] are cut into 256 equal cells, a value goes to
  // the centre of its cell and one outside [start, end] to the centre of the first or last cell,
  // which is its clipping cost. Per bin it integrates (x - centre)^2 over the part in its first
  // cell, the whole cells it covers, and the part in its last cell.
  double quantization_error(int64_t start, int64_t end) const {
    NABLA_CHECK(0 <= start && start <= end && end < bins_, IndexError,
                "quantization::HistogramObserver::quantization_error: expected bins 0 <= start <= end < ", bins_,
                ", got [", start, ", ", end, "]");
    const double width = (hi_ - lo_) / static_cast<double>(bins_);
    const double cell = width * static_cast<double>(end - start + 1) / kLevels;
    if (cell == 0.0) return 0.0;
    const double half = cell / 2;
    const auto cube_integral = [](double a, double b) { return (b * b * b - a * a * a) / 3; };  // of x^2 over [a, b]
    double error = 0.0;
    for (size_t i = 0; i < hist_.size(); ++i) {
      if (hist_[i] == 0.0) continue;
      const double begin = (static_cast<double>(i) - static_cast<double>(start)) * width, finish = begin + width;
      const double first = std::clamp(std::floor(begin / cell), 0.0, kLevels - 1.0);
      const double last = std::clamp(std::floor(finish / cell), 0.0, kLevels - 1.0);
      error += hist_[i] / width *
               (cube_integral(begin - (first + 0.5) * cell, half) + (last - first - 1) * cube_integral(-half, half) +
                cube_integral(-half, finish - (last + 0.5) * cell));
    }
    return error;
  }

 private:
  // As torch.histc: bin j holds [lo + j w, lo + (j + 1) w), the last one also hi. All in bin 0
  // while everything observed is one value.
  size_t bin_of(double v) const {
    if (hi_ == lo_) return 0;
    const auto j = static_cast<int64_t>((v - lo_) / (hi_ - lo_) * static_cast<double>(bins_));
    return static_cast<size_t>(std::clamp<int64_t>(j, 0, bins_ - 1));
  }

  void widen(double lo, double hi) {
    std::vector<double> old(hist_.size(), 0.0);
    old.swap(hist_);
    const double old_lo = lo_, old_width = (hi_ - lo_) / static_cast<double>(bins_);
    lo_ = lo;
    hi_ = hi;
    const double width = (hi_ - lo_) / static_cast<double>(bins_);
    const auto edge = [&](size_t j) { return lo_ + width * static_cast<double>(j); };
    for (size_t i = 0; i < old.size(); ++i) {
      const double count = old[i];
      if (count == 0.0) continue;
      if (old_width == 0.0) {  // a single value so far: a point, not an interval
        hist_[bin_of(old_lo)] += count;
        continue;
      }
      const double begin = old_lo + old_width * static_cast<double>(i), finish = begin + old_width;
      const size_t last = bin_of(finish);
      // The last bin gets what is left, so rounding never loses or invents counts.
      double left = count;
      for (size_t j = bin_of(begin); j < last; ++j) {
        const double part = std::clamp(count * (edge(j + 1) - std::max(begin, edge(j))) / old_width, 0.0, left);
        hist_[j] += part;
        left -= part;
      }
      hist_[last] += left;
    }
  }

  int bins_;
  std::vector<double> hist_;
  double lo_ = std::numeric_limits<double>::infinity(), hi_ = -std::numeric_limits<double>::infinity();
};

}  // namespace quantization
}  // namespace nabla
