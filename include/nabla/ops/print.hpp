#pragma once
// Printing like PyTorch: tensor([[ 0.1000, -2.0000], ...], dtype=float64, grad_fn=<MulBackward>).
// Large tensors are summarised with "..." (first and last three entries per dim).

#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "../autograd/node.hpp"
#include "copy.hpp"

namespace nabla {
namespace detail {

struct Formatter {
  enum class Mode { Int, Bool, IntFloat, Fixed, Sci } mode = Mode::Fixed;
  int width = 1;

  std::string fmt(double v) const {
    char buf[64];
    if (mode == Mode::Bool) return v != 0 ? "True" : "False";
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    switch (mode) {
      case Mode::Int: std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v)); break;
      case Mode::IntFloat: std::snprintf(buf, sizeof buf, "%.0f.", v); break;
      case Mode::Fixed: std::snprintf(buf, sizeof buf, "%.4f", v); break;
      case Mode::Sci: std::snprintf(buf, sizeof buf, "%.4e", v); break;
      default: break;
    }
    return buf;
  }
  std::string pad(double v) const {
    std::string s = fmt(v);
    return std::string(s.size() < static_cast<size_t>(width) ? width - s.size() : 0, ' ') + s;
  }
};

inline Formatter make_formatter(const std::vector<double>& vals, DType dt) {
  Formatter f;
  if (dt == kBool) f.mode = Formatter::Mode::Bool;
  else if (!is_floating_point(dt)) f.mode = Formatter::Mode::Int;
  else {
    bool all_int = true;
    double mx = 0, mn = INFINITY;
    for (double v : vals) {
      if (!std::isfinite(v)) continue;
      if (v != std::nearbyint(v)) all_int = false;
      double a = std::abs(v);
      if (a != 0) {
        mx = std::max(mx, a);
        mn = std::min(mn, a);
      }
    }
    if (all_int) f.mode = mx > 1e8 ? Formatter::Mode::Sci : Formatter::Mode::IntFloat;
    else if (mx > 1e8 || (mn < 1e-4 && mn > 0) || (mn > 0 && mx / mn > 1000)) f.mode = Formatter::Mode::Sci;
    else f.mode = Formatter::Mode::Fixed;
  }
  for (double v : vals) f.width = std::max<int>(f.width, static_cast<int>(f.fmt(v).size()));
  return f;
}

constexpr int64_t kPrintThreshold = 1000, kEdgeItems = 3;

// Indices kept along a dim of size n (all, or the first and last kEdgeItems).
inline std::vector<int64_t> kept_indices(int64_t n, bool summarize) {
  std::vector<int64_t> idx;
  if (!summarize || n <= 2 * kEdgeItems) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t i = 0; i < kEdgeItems; ++i) idx.push_back(i);
    idx.push_back(-1);  // marks "..."
    for (int64_t i = n - kEdgeItems; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

inline void format_rec(std::ostream& os, const Tensor& t, const Formatter& f, bool summarize, int indent) {
  if (t.dim() == 0) {
    os << f.pad(t.item().to_double());
    return;
  }
  auto idx = kept_indices(t.size(0), summarize);
  os << '[';
  for (size_t k = 0; k < idx.size(); ++k) {
    if (k) {
      if (t.dim() == 1) os << ", ";
      else os << ',' << std::string(static_cast<size_t>(t.dim() - 1), '\n') << std::string(static_cast<size_t>(indent + 1), ' ');
    }
    if (idx[k] < 0) os << (t.dim() == 1 ? " ..." : "...");  // PyTorch pads the 1-D marker
    else format_rec(os, t.select(0, idx[k]), f, summarize, indent + 1);
  }
  os << ']';
}

// The values that will be printed (all, or the summarised corners), for choosing a format.
inline void collect(const Tensor& t, bool summarize, std::vector<double>& out) {
  if (t.dim() == 0) {
    out.push_back(t.item().to_double());
    return;
  }
  for (int64_t i : kept_indices(t.size(0), summarize))
    if (i >= 0) collect(t.select(0, i), summarize, out);
}

}  // namespace detail

inline std::string Tensor::str() const {
  if (!defined()) return "[ undefined tensor ]";
  NoGradGuard no_grad;
  Tensor c = detach().to(Device::cpu());
  std::ostringstream os;
  os << "tensor(";
  const bool summarize = c.numel() > detail::kPrintThreshold;
  if (c.numel() == 0) {
    os << "[]";
    if (c.dim() != 1) {
      std::string s = shape_str(c.sizes());
      os << ", size=(" << s.substr(1, s.size() - 2) << (c.dim() == 1 ? ",)" : ")");
    }
  } else {
    std::vector<double> vals;
    detail::collect(c, summarize, vals);
    detail::format_rec(os, c, detail::make_formatter(vals, c.dtype()), summarize, 7);
  }
  if (dtype() != kFloat32 && dtype() != kInt64 && dtype() != kBool) os << ", dtype=" << dtype_name(dtype());
  if (!is_cpu()) os << ", device='" << device().str() << "'";
  if (grad_fn()) os << ", grad_fn=<" << grad_fn()->name() << ">";
  else if (requires_grad()) os << ", requires_grad=True";
  os << ')';
  return os.str();
}

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace nabla

