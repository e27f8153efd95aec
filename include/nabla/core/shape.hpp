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

// Overflow-checked products for element counts and byte sizes. Every allocation (empty) and
// every file reader (safetensors, IDX, checkpoints) sizes its tensors through these, so a hostile
// size is an error naming it, never a product that wrapped around.
namespace detail {
inline bool mul_overflows(int64_t a, int64_t b, int64_t& out) {  // a, b >= 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_mul_overflow(a, b, &out);
#else
  if (a != 0 && b > INT64_MAX / a) return true;
  out = a * b;
  return false;
#endif
}
}  // namespace detail

// a * b for non-negative counts; ValueError ("<what>: a * b overflows int64") otherwise.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  NABLA_CHECK(a >= 0 && b >= 0 && !detail::mul_overflows(a, b, r), ValueError, what, ": ", a, " * ", b,
              a < 0 || b < 0 ? " has a negative factor" : " overflows int64");
  return r;
}

// The number of elements of a shape with non-negative sizes (0 when any size is 0); ValueError
// naming the shape when the count does not fit in int64.
inline int64_t numel_of(const Shape& s) {
  for (int64_t d : s)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : s)
    NABLA_CHECK(d > 0 && !detail::mul_overflows(n, d, n), ValueError, "shape ", shape_str(s),
                d < 0 ? " has a negative size" : " has more than 2^63 - 1 elements");
  return n;
}

// numel elements of elem_size bytes each, as a byte count; ValueError past int64 (what names
// the op or the file field).
inline int64_t checked_nbytes(int64_t numel, size_t elem_size, const char* what) {
  return checked_mul(numel, static_cast<int64_t>(elem_size), what);
}

inline Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    // only an empty tensor (a 0 elsewhere in the shape) can overflow here; its strides are never
    // used to address memory, so the product saturates instead of wrapping (undefined)
    if (detail::mul_overflows(acc, s[i] > 0 ? s[i] : 1, acc)) acc = INT64_MAX;
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
