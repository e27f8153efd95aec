#pragma once
// The parity table (DESIGN.md, "How every op is checked"). Each row: an op, input specs (shape,
// value domain), the nabla call, and an independent float64 reference written as plain loops
// over Ref tensors. For every row the runner checks, with a printed seed:
//   1. nabla on float32/float64 (and float16/bfloat16 where listed) vs the reference,
//      on contiguous and on non-contiguous inputs;
//   2. gradients vs central finite differences (gradcheck) in float64 and float32, and
//      second derivatives (gradgradcheck) where the row asks for it;
//   3. the CUDA column: nabla on cuda vs nabla on cpu, forward and backward (skipped with a
//      reason when no GPU is present).
// Register rows from any test file with `static RegisterParity reg([](auto& t) { ... });`.

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
  for (int64_t bi = 0; bi < std::max<int64_t>(idxspace.numel(), 1); ++bi) {
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

// ---- the table --------------------------------------------------------------------------------

enum class Domain { Any, Positive, Unit, NonZero, Index, Bool };

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
