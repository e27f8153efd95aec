#pragma once
// Terse row builders shared by the test_parity_*.cpp files (see parity.hpp for the table).

#include <utility>

#include "parity.hpp"

namespace nabla_test {

using RowFn = std::function<Tensor(const TensorList&)>;
using RefFn = std::function<Ref(const std::vector<Ref>&)>;

inline const std::vector<DType> kFloats = {kFloat32, kFloat64};
inline const std::vector<DType> kWithHalf = {kFloat32, kFloat64, kFloat16, kBFloat16};

struct RowOpts {
  std::vector<DType> dtypes = kFloats;
  bool grad = true;
  bool grad2 = false;
  double tol_scale = 1.0;
};
inline RowOpts forward_only(std::vector<DType> dts = kFloats) { return RowOpts{std::move(dts), false, false, 1.0}; }
inline RowOpts with_grad2(std::vector<DType> dts = kFloats) { return RowOpts{std::move(dts), true, true, 1.0}; }

inline ParityCase row(std::string op, std::string label, std::vector<InputSpec> ins, RowFn fn, RefFn ref, RowOpts o = {}) {
  ParityCase c;
  c.op = std::move(op);
  c.label = std::move(label);
  c.inputs = std::move(ins);
  c.fn = std::move(fn);
  c.ref = std::move(ref);
  c.dtypes = std::move(o.dtypes);
  c.grad = o.grad;
  c.grad2 = o.grad2;
  c.tol_scale = o.tol_scale;
  return c;
}

inline RefFn map1(std::function<double(double)> f) {
  return [f](const std::vector<Ref>& r) { return ref_map(r[0], f); };
}
inline RefFn zip2(std::function<double(double, double)> f) {
  return [f](const std::vector<Ref>& r) { return ref_zip(r[0], r[1], f); };
}
// A reduction reference over dims (empty = all) of input 0.
inline RefFn reduce1(std::vector<int64_t> dims, bool keepdim, std::function<double(const std::vector<double>&)> fold) {
  return [=](const std::vector<Ref>& r) { return ref_reduce(r[0], dims, keepdim, fold); };
}

}  // namespace nabla_test
