#pragma once
// Shape and Dims (small vectors of int64), contiguous strides, NumPy broadcasting and
// dimension wrapping (negative dims count from the end).

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "error.hpp"
#include "small_vector.hpp"

namespace nabla {

using Shape = SmallVector<int64_t, 6>;
using Strides = SmallVector<int64_t, 6>;

// A list of dimensions for reductions and friends: t.sum(1), t.sum({0, 2}).
class Dims : public SmallVector<int64_t, 6> {
 public:
  using Base = SmallVector<int64_t, 6>;
  Dims() = default;
  Dims(int64_t d) : Base{d} {}                                  // NOLINT: implicit on purpose
  Dims(int d) : Base{static_cast<int64_t>(d)} {}                // NOLINT
  Dims(std::initializer_list<int64_t> l) : Base(l) {}           // NOLINT
  Dims(const std::vector<int64_t>& v) : Base(v.begin(), v.end()) {}  // NOLINT
  Dims(const Base& b) : Base(b) {}                              // NOLINT
};

inline std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}
inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << shape_str(s); }

inline int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

inline Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= s[i] > 0 ? s[i] : 1;
  }
  return st;
}

// Maps dim in [-rank, rank) to [0, rank). rank 0 accepts -1 and 0, like PyTorch.
inline int64_t wrap_dim(int64_t dim, int64_t rank, const char* op) {
  int64_t r = rank == 0 ? 1 : rank;
  NABLA_CHECK(dim >= -r && dim < r, IndexError, op, ": dimension ", dim, " out of range for a tensor of rank ",
              rank, " (expected [", -r, ", ", r - 1, "])");
  return dim < 0 ? dim + r : dim;
}

inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = a.size() > b.size() ? a.size() : b.size();
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    NABLA_CHECK(da == db || da == 1 || db == 1, ShapeError, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// True when `from` can be broadcast to `to` (from's dims are 1 or equal, right-aligned).
inline bool is_expandable_to(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  size_t off = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i)
    if (from[i] != 1 && from[i] != to[off + i]) return false;
  return true;
}

}  // namespace nabla
