#pragma once
// The parity table (DESIGN.md, "How every op is checked"). Each row: an op, input specs (shape,
// value domain), the nabla call, and an independent float64 reference written as plain loops
// over Ref tensors. For every row the runner checks, with a printed seed:
//   1. nabla on float32/float64 (and float16/bfloat16 where listed) vs the reference,
//      on contiguous and on non-contiguous inputs;
//   2. gradients vs central finite differences (gradcheck) in float64 and float32, and
//      second derivatives (gradgradcheck) where the row asks for it;
//   3. the CUDA column: nabla on cuda vs nabla on cpu, forward and backward (skipped with a
//      reason when no GPU is present);
//   4. the fused column: for a row whose op has fused kernels, fused vs composite (fused kernels
//      switched off with FusedKernelsGuard), forward and backward, on every device present; on
//      the CPU the fused kernel must really have run.
// Register rows from any test file with `static RegisterParity reg([](auto& t) { ... });`.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace nabla_test {

// A float64 reference tensor: shape + row-major values.
struct Ref {
  Shape shape;
  std::vector<double> v;

  Ref() = default;
  Ref(Shape s, std::vector<double> values) : shape(std::move(s)), v(std::move(values)) {}
  explicit Ref(const Shape& s, double fill = 0.0) : shape(s), v(static_cast<size_t>(numel_of(s)), fill) {}
  static Ref of(const Tensor& t) { return Ref(t.sizes(), t.detach().to(Device::cpu()).to_vector<double>()); }
  Tensor tensor(DType dt = kFloat64) const { return from_vector(v, shape, kFloat64).to(dt); }
  int64_t numel() const { return static_cast<int64_t>(v.size()); }
  int64_t dim() const { return static_cast<int64_t>(shape.size()); }

  // Row-major multi-index <-> linear index.
  Shape index_of(int64_t linear) const {
    Shape idx(shape.size());
    for (size_t d = shape.size(); d-- > 0;) {
      idx[d] = linear % shape[d];
      linear /= shape[d];
    }
    return idx;
  }
  int64_t linear_of(const Shape& idx) const {
    int64_t l = 0;
    for (size_t d = 0; d < shape.size(); ++d) l = l * shape[d] + idx[d];
    return l;
  }
  // Value at idx of a broadcast (right-aligned) index space.
  double broadcast_at(const Shape& idx) const {
    int64_t l = 0;
    size_t off = idx.size() - shape.size();
    for (size_t d = 0; d < shape.size(); ++d) l = l * shape[d] + (shape[d] == 1 ? 0 : idx[off + d]);
    return v[static_cast<size_t>(l)];
  }
};

// ---- reference building blocks ----------------------------------------------------------------

inline Shape ref_broadcast(const std::vector<Shape>& shapes) {
  Shape out;
  for (const auto& s : shapes) out = out.empty() && s.empty() ? out : broadcast_shapes(out, s, "ref");
  return out;
}

inline Ref ref_map(const Ref& a, const std::function<double(double)>& f) {
  Ref r = a;
  for (auto& x : r.v) x = f(x);
  return r;
}
inline Ref ref_zip(const Ref& a, const Ref& b, const std::function<double(double, double)>& f) {
  Ref r(ref_broadcast({a.shape, b.shape}));
  for (int64_t i = 0; i < r.numel(); ++i) {
    Shape idx = r.index_of(i);
    r.v[i] = f(a.broadcast_at(idx), b.broadcast_at(idx));
  }
  return r;
}
inline Ref ref_zip3(const Ref& a, const Ref& b, const Ref& c, const std::function<double(double, double, double)>& f) {
  Ref r(ref_broadcast({a.shape, b.shape, c.shape}));
  for (int64_t i = 0; i < r.numel(); ++i) {
    Shape idx = r.index_of(i);
    r.v[i] = f(a.broadcast_at(idx), b.broadcast_at(idx), c.broadcast_at(idx));
  }
  return r;
}

// Folds the elements of `a` that share an output position (dims listed in `dims` collapsed;
// empty dims = all) with `fold(values) -> double`.
inline Ref ref_reduce(const Ref& a, std::vector<int64_t> dims, bool keepdim,
                      const std::function<double(const std::vector<double>&)>& fold) {
  const int64_t r = a.dim();
  std::vector<bool> red(static_cast<size_t>(r), dims.empty());
  for (int64_t d : dims) red[static_cast<size_t>(d < 0 ? d + r : d)] = true;
  Shape keep = a.shape;
  for (int64_t d = 0; d < r; ++d)
    if (red[d]) keep[d] = 1;
  Ref kept(keep);
  std::vector<std::vector<double>> groups(static_cast<size_t>(kept.numel()));
  for (int64_t i = 0; i < a.numel(); ++i) {
    Shape idx = a.index_of(i);
    for (int64_t d = 0; d < r; ++d)
      if (red[d]) idx[d] = 0;
    groups[static_cast<size_t>(kept.linear_of(idx))].push_back(a.v[i]);
  }
  for (size_t g = 0; g < groups.size(); ++g) kept.v[g] = fold(groups[g]);
  if (keepdim) return kept;
  Shape s;
  for (int64_t d = 0; d < r; ++d)
    if (!red[d]) s.push_back(a.shape[d]);
  kept.shape = s;
  return kept;
}

// a [..., M, K] @ b [..., K, N] with broadcast batch dims (both at least 2-D).
inline Ref ref_matmul(const Ref& a, const Ref& b) {
  const int64_t M = a.shape[a.dim() - 2], K = a.shape[a.dim() - 1], N = b.shape[b.dim() - 1];
  Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Shape batch = ref_broadcast({ba, bb});
  Shape os = batch;
  os.push_back(M);
  os.push_back(N);
  Ref out(os);
  Ref idxspace(batch);
  for (int64_t bi = 0; bi < idxspace.numel(); ++bi) {  // numel of [] is 1
    Shape bidx = batch.empty() ? Shape{} : idxspace.index_of(bi);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          Shape ia = bidx, ib = bidx;
          ia.push_back(m); ia.push_back(k);
          ib.push_back(k); ib.push_back(n);
          acc += a.broadcast_at(ia) * b.broadcast_at(ib);
        }
        Shape io = bidx;
        io.push_back(m);
        io.push_back(n);
        out.v[static_cast<size_t>(out.linear_of(io))] = acc;
      }
  }
  return out;
}

// out[idx] = f(idx) for every multi-index of `shape`.
inline Ref ref_generate(const Shape& shape, const std::function<double(const Shape&)>& f) {
  Ref r(shape);
  for (int64_t i = 0; i < r.numel(); ++i) r.v[static_cast<size_t>(i)] = f(r.index_of(i));
  return r;
}
inline double ref_at(const Ref& a, const Shape& idx) { return a.v[static_cast<size_t>(a.linear_of(idx))]; }
inline int64_t ref_wrap(int64_t d, int64_t rank) { return d < 0 ? d + rank : d; }

// Folds for ref_reduce.
inline double fold_sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
inline double fold_mean(const std::vector<double>& v) { return fold_sum(v) / static_cast<double>(v.size()); }
inline double fold_prod(const std::vector<double>& v) {
  double p = 1;
  for (double x : v) p *= x;
  return p;
}
inline double fold_max(const std::vector<double>& v) {
  double m = v[0];
  for (double x : v) m = std::max(m, x);
  return m;
}
inline double fold_min(const std::vector<double>& v) {
  double m = v[0];
  for (double x : v) m = std::min(m, x);
  return m;
}
inline std::function<double(const std::vector<double>&)> fold_var(bool unbiased, bool take_sqrt = false) {
  return [=](const std::vector<double>& v) {
    double m = fold_mean(v), s = 0;
    for (double x : v) s += (x - m) * (x - m);
    double r = s / (static_cast<double>(v.size()) - (unbiased ? 1.0 : 0.0));
    return take_sqrt ? std::sqrt(r) : r;
  };
}
inline double fold_logsumexp(const std::vector<double>& v) {
  double m = fold_max(v), s = 0;
  for (double x : v) s += std::exp(x - m);
  return std::log(s) + m;
}
// Position of the first maximum (minimum) of v.
inline double fold_argmax(const std::vector<double>& v) {
  size_t b = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[b]) b = i;
  return static_cast<double>(b);
}
inline double fold_argmin(const std::vector<double>& v) {
  size_t b = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] < v[b]) b = i;
  return static_cast<double>(b);
}

// softmax / log_softmax of a along dim (a 0-dim input is a single-element row).
inline Ref ref_softmax(const Ref& a, int64_t dim, bool log) {
  if (a.dim() == 0) return Ref(Shape{}, std::vector<double>{log ? 0.0 : 1.0});
  const int64_t d = ref_wrap(dim, a.dim());
  return ref_generate(a.shape, [&](const Shape& idx) {
    Shape j = idx;
    double m = -INFINITY, s = 0;
    for (j[d] = 0; j[d] < a.shape[d]; ++j[d]) m = std::max(m, ref_at(a, j));
    for (j[d] = 0; j[d] < a.shape[d]; ++j[d]) s += std::exp(ref_at(a, j) - m);
    double x = ref_at(a, idx) - m;
    return log ? x - std::log(s) : std::exp(x) / s;
  });
}

// NumPy matmul: 1-D operands are promoted to matrices and the added dim dropped again.
inline Ref ref_matmul_any(const Ref& a, const Ref& b) {
  Ref a2 = a, b2 = b;
  if (a.dim() == 1) a2.shape = Shape{1, a.shape[0]};
  if (b.dim() == 1) b2.shape = Shape{b.shape[0], 1};
  Ref out = ref_matmul(a2, b2);
  Shape s = out.shape;
  if (b.dim() == 1) s.erase(s.end() - 1);
  if (a.dim() == 1) s.erase(s.end() - (b.dim() == 1 ? 1 : 2));
  out.shape = s;
  return out;
}

// Views as index maps.
inline Ref ref_permute(const Ref& a, const std::vector<int64_t>& perm) {
  Shape s;
  for (int64_t p : perm) s.push_back(a.shape[static_cast<size_t>(ref_wrap(p, a.dim()))]);
  return ref_generate(s, [&](const Shape& idx) {
    Shape j(a.shape.size());
    for (size_t i = 0; i < perm.size(); ++i) j[static_cast<size_t>(ref_wrap(perm[i], a.dim()))] = idx[i];
    return ref_at(a, j);
  });
}
// Elements start, start + step, ... below end along dim (start and end already in range).
inline Ref ref_slice(const Ref& a, int64_t dim, int64_t start, int64_t end, int64_t step) {
  const int64_t d = ref_wrap(dim, a.dim());
  Shape s = a.shape;
  s[d] = end > start ? (end - start + step - 1) / step : 0;
  return ref_generate(s, [&](const Shape& idx) {
    Shape j = idx;
    j[d] = start + idx[d] * step;
    return ref_at(a, j);
  });
}
inline Ref ref_select(const Ref& a, int64_t dim, int64_t index) {
  const int64_t d = ref_wrap(dim, a.dim());
  Ref r = ref_slice(a, d, index, index + 1, 1);
  r.shape.erase(r.shape.begin() + d);
  return r;
}
inline Ref ref_reshape(const Ref& a, const Shape& s) { return Ref(s, a.v); }
inline Ref ref_expand(const Ref& a, const Shape& s) {
  return ref_generate(s, [&](const Shape& idx) { return a.broadcast_at(idx); });
}
inline Ref ref_cat(const std::vector<Ref>& parts, int64_t dim) {
  const int64_t d = ref_wrap(dim, parts[0].dim());
  Shape s = parts[0].shape;
  s[d] = 0;
  for (const auto& p : parts) s[d] += p.shape[d];
  return ref_generate(s, [&](const Shape& idx) {
    Shape j = idx;
    for (const auto& p : parts) {
      if (j[d] < p.shape[d]) return ref_at(p, j);
      j[d] -= p.shape[d];
    }
    return std::nan("");
  });
}
inline Ref ref_stack(const std::vector<Ref>& parts, int64_t dim) {
  std::vector<Ref> u;
  const int64_t d = ref_wrap(dim, parts[0].dim() + 1);
  for (const auto& p : parts) {
    Ref q = p;
    q.shape.insert(q.shape.begin() + d, 1);
    u.push_back(q);
  }
  return ref_cat(u, d);
}

// Index ops (index values arrive as doubles).
inline Ref ref_index_select(const Ref& a, int64_t dim, const Ref& index) {
  const int64_t d = ref_wrap(dim, a.dim());
  Shape s = a.shape;
  s[d] = index.numel();
  return ref_generate(s, [&](const Shape& idx) {
    Shape j = idx;
    j[d] = static_cast<int64_t>(index.v[static_cast<size_t>(idx[d])]);
    return ref_at(a, j);
  });
}
inline Ref ref_gather(const Ref& a, int64_t dim, const Ref& index) {
  const int64_t d = ref_wrap(dim, a.dim());
  return ref_generate(index.shape, [&](const Shape& idx) {
    Shape j = idx;
    j[d] = static_cast<int64_t>(ref_at(index, idx));
    return ref_at(a, j);
  });
}
inline Ref ref_scatter_add(const Ref& self, int64_t dim, const Ref& index, const Ref& src) {
  const int64_t d = ref_wrap(dim, self.dim());
  Ref out = self;
  for (int64_t i = 0; i < index.numel(); ++i) {
    Shape idx = index.index_of(i), j = idx;
    j[d] = static_cast<int64_t>(index.v[static_cast<size_t>(i)]);
    out.v[static_cast<size_t>(out.linear_of(j))] += ref_at(src, idx);
  }
  return out;
}
inline Ref ref_index_add(const Ref& self, int64_t dim, const Ref& index, const Ref& source) {
  const int64_t d = ref_wrap(dim, self.dim());
  Ref out = self;
  for (int64_t i = 0; i < source.numel(); ++i) {
    Shape idx = source.index_of(i), j = idx;
    j[d] = static_cast<int64_t>(index.v[static_cast<size_t>(idx[d])]);
    out.v[static_cast<size_t>(out.linear_of(j))] += source.v[static_cast<size_t>(i)];
  }
  return out;
}

// ---- the table --------------------------------------------------------------------------------

// OffGrid: values in [-2, 2] at least 0.05 away from every multiple of 0.25, so finite
// differences never cross a kink placed on that grid (0 for abs/relu, integers and halves for
// floor/ceil/round, clamp bounds chosen on it).
// Distinct: a shuffled, evenly spaced grid over [-2, 2] with a little jitter, so no two values
// of one input are within 2 / numel of each other (max/min gradients never meet a near-tie).
enum class Domain { Any, Positive, Unit, NonZero, Index, Bool, OffGrid, Distinct };

struct InputSpec {
  Shape shape;
  Domain domain = Domain::Any;
  int64_t index_range = 0;  // Domain::Index: values in [0, index_range)
  bool differentiable() const { return domain != Domain::Index && domain != Domain::Bool; }
};

struct ParityCase {
  std::string op;     // e.g. "add"
  std::string label;  // e.g. "broadcast"
  std::vector<InputSpec> inputs;
  std::function<Tensor(const TensorList&)> fn;
  std::function<Ref(const std::vector<Ref>&)> ref;
  std::vector<DType> dtypes = {kFloat32, kFloat64};  // forward dtypes checked against the reference
  bool grad = true;                                   // gradcheck (float64 and float32)
  bool grad2 = false;                                 // gradgradcheck (float64)
  bool non_contiguous = true;                         // also run on non-contiguous inputs
  double tol_scale = 1.0;                             // widens the per-dtype forward tolerance
  // The fused column: the kernel table (backend/kernel_table.hpp) whose kernels this row
  // exercises. Empty: the table named like the op, if there is one; "none": the row's case never
  // takes a fused kernel (say why where it is set).
  const char* fused = "";  // (a pointer: an omitted std::string member trips -Wmissing-field-initializers)
  // Also gradcheck in float32 (eps 1e-3). Off for compositions with several data-dependent kinks
  // (ReLU after BatchNorm, whose outputs crowd around 0): a 1e-3 step crosses one often enough to
  // make the check a coin toss; their float64 gradcheck (eps 1e-6) still runs.
  bool grad_float32 = true;
};

inline std::vector<ParityCase>& parity_registry() {
  static std::vector<ParityCase> cases;
  return cases;
}

struct RegisterParity {
  explicit RegisterParity(const std::function<void(std::vector<ParityCase>&)>& add) { add(parity_registry()); }
};

// Helpers for registering cases tersely.
inline InputSpec in(Shape s, Domain d = Domain::Any) { return InputSpec{std::move(s), d, 0}; }
inline InputSpec index_in(Shape s, int64_t range) { return InputSpec{std::move(s), Domain::Index, range}; }
inline InputSpec bool_in(Shape s) { return InputSpec{std::move(s), Domain::Bool, 0}; }

}  // namespace nabla_test
