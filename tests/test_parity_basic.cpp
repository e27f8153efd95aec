// Parity rows: a first set covering the main op shapes (elementwise with broadcasting, a
// reduction, matmul). Other test_parity_*.cpp files add the rest of the op families.

#include <cmath>

#include "parity.hpp"

namespace nabla_test {
namespace {

const RegisterParity rows([](std::vector<ParityCase>& t) {
  auto add2 = [](const TensorList& x) { return x[0] + x[1]; };
  auto add_ref = [](const std::vector<Ref>& r) { return ref_zip(r[0], r[1], [](double a, double b) { return a + b; }); };
  t.push_back({"add", "same", {in({3, 4}), in({3, 4})}, add2, add_ref, {kFloat32, kFloat64, kFloat16, kBFloat16}, true, true});
  t.push_back({"add", "broadcast", {in({3, 1, 4}), in({2, 1})}, add2, add_ref});
  t.push_back({"add", "scalar0d", {in({}), in({2, 3})}, add2, add_ref});
  t.push_back({"add", "empty", {in({0, 3}), in({3})}, add2, add_ref});
  t.push_back({"mul", "broadcast", {in({2, 3}), in({3})}, [](const TensorList& x) { return x[0] * x[1]; },
               [](const std::vector<Ref>& r) { return ref_zip(r[0], r[1], [](double a, double b) { return a * b; }); },
               {kFloat32, kFloat64, kFloat16, kBFloat16}, true, true});
  t.push_back({"exp", "2d", {in({4, 5})}, [](const TensorList& x) { return x[0].exp(); },
               [](const std::vector<Ref>& r) { return ref_map(r[0], [](double a) { return std::exp(a); }); },
               {kFloat32, kFloat64, kFloat16, kBFloat16}, true, true});
  t.push_back({"sum", "dim1_keep", {in({3, 4, 2})}, [](const TensorList& x) { return x[0].sum(1, true); },
               [](const std::vector<Ref>& r) {
                 return ref_reduce(r[0], {1}, true, [](const std::vector<double>& v) {
                   double s = 0;
                   for (double x : v) s += x;
                   return s;
                 });
               },
               {kFloat32, kFloat64, kFloat16, kBFloat16}});
  t.push_back({"matmul", "batched_broadcast", {in({2, 1, 3, 4}), in({3, 4, 5})},
               [](const TensorList& x) { return matmul(x[0], x[1]); },
               [](const std::vector<Ref>& r) { return ref_matmul(r[0], r[1]); }, {kFloat32, kFloat64, kBFloat16}, true, true});
});

}  // namespace
}  // namespace nabla_test
