// Parity rows for the index ops: index_select gather scatter_add index_add (with repeated
// indices, so gradients accumulate) and one_hot.

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

const RegisterParity index_ops([](std::vector<ParityCase>& t) {
  auto sel = [](int64_t d) { return RowFn([d](const TensorList& x) { return x[0].index_select(d, x[1]); }); };
  auto sel_ref = [](int64_t d) { return RefFn([d](const std::vector<Ref>& r) { return ref_index_select(r[0], d, r[1]); }); };
  t.push_back(row("index_select", "dim0_repeats", {in({5, 3}), index_in({6}, 5)}, sel(0), sel_ref(0), with_grad2(kWithHalf)));
  t.push_back(row("index_select", "neg_dim", {in({2, 4}), index_in({3}, 4)}, sel(-1), sel_ref(1)));
  t.push_back(row("index_select", "0d_index", {in({5, 2}), index_in({}, 5)}, sel(0), sel_ref(0)));
  t.push_back(row("index_select", "empty_index", {in({5, 2}), index_in({0}, 5)}, sel(0), sel_ref(0)));
  t.push_back(row("index_select", "empty_input", {in({0, 3}), index_in({2}, 3)}, sel(1), sel_ref(1)));
  t.push_back(row("index_select", "1d", {in({7}), index_in({4}, 7)}, sel(0), sel_ref(0)));
  t.push_back(row("index_select", "17x33", {in({17, 33}), index_in({40}, 33)}, sel(1), sel_ref(1), forward_only(kWithHalf)));
  t.push_back(row("index_select", "int32_index", {in({5, 3}), index_in({4}, 5)},
                  [](const TensorList& x) { return x[0].index_select(0, x[1].to(kInt32)); }, sel_ref(0)));

  auto gat = [](int64_t d) { return RowFn([d](const TensorList& x) { return x[0].gather(d, x[1]); }); };
  auto gat_ref = [](int64_t d) { return RefFn([d](const std::vector<Ref>& r) { return ref_gather(r[0], d, r[1]); }); };
  t.push_back(row("gather", "dim1", {in({3, 4}), index_in({3, 5}, 4)}, gat(1), gat_ref(1), with_grad2(kWithHalf)));
  t.push_back(row("gather", "dim0", {in({3, 4}), index_in({2, 4}, 3)}, gat(0), gat_ref(0)));
  t.push_back(row("gather", "smaller_index", {in({3, 4}), index_in({2, 2}, 4)}, gat(-1), gat_ref(1)));
  t.push_back(row("gather", "3d", {in({2, 3, 4}), index_in({2, 3, 2}, 3)}, gat(1), gat_ref(1)));
  t.push_back(row("gather", "empty_index", {in({3, 4}), index_in({3, 0}, 4)}, gat(1), gat_ref(1)));
  t.push_back(row("gather", "1d", {in({6}), index_in({8}, 6)}, gat(0), gat_ref(0)));
  t.push_back(row("gather", "17x33", {in({17, 33}), index_in({17, 20}, 33)}, gat(1), gat_ref(1), forward_only(kWithHalf)));

  auto sca = [](int64_t d) { return RowFn([d](const TensorList& x) { return x[0].scatter_add(d, x[1], x[2]); }); };
  auto sca_ref = [](int64_t d) {
    return RefFn([d](const std::vector<Ref>& r) { return ref_scatter_add(r[0], d, r[1], r[2]); });
  };
  t.push_back(row("scatter_add", "dim1", {in({3, 4}), index_in({3, 5}, 4), in({3, 5})}, sca(1), sca_ref(1),
                  with_grad2(kWithHalf)));
  t.push_back(row("scatter_add", "dim0", {in({3, 4}), index_in({4, 4}, 3), in({4, 4})}, sca(0), sca_ref(0)));
  t.push_back(row("scatter_add", "src_larger", {in({3, 4}), index_in({2, 3}, 4), in({3, 4})}, sca(-1), sca_ref(1)));
  t.push_back(row("scatter_add", "empty_index", {in({3, 4}), index_in({3, 0}, 4), in({3, 2})}, sca(1), sca_ref(1)));
  t.push_back(row("scatter_add", "1d", {in({4}), index_in({7}, 4), in({7})}, sca(0), sca_ref(0)));
  // 16-bit forms round every partial sum (as in PyTorch): a few roundings of values up to ~8
  // near a small result need a wider absolute tolerance
  t.push_back(row("scatter_add", "17x33", {in({17, 33}), index_in({17, 40}, 33), in({17, 40})}, sca(1), sca_ref(1),
                  RowOpts{kWithHalf, false, false, 4.0}));
  t.push_back(row("scatter_add_", "inplace", {in({3, 4}), index_in({3, 2}, 4), in({3, 2})},
                  [](const TensorList& x) {
                    Tensor y = x[0] * 1;
                    y.scatter_add_(1, x[1], x[2]);
                    return y;
                  },
                  sca_ref(1)));

  auto iadd = [](int64_t d) { return RowFn([d](const TensorList& x) { return x[0].index_add(d, x[1], x[2]); }); };
  auto iadd_ref = [](int64_t d) {
    return RefFn([d](const std::vector<Ref>& r) { return ref_index_add(r[0], d, r[1], r[2]); });
  };
  t.push_back(row("index_add", "dim0_repeats", {in({5, 3}), index_in({4}, 5), in({4, 3})}, iadd(0), iadd_ref(0),
                  with_grad2(kWithHalf)));
  t.push_back(row("index_add", "dim1", {in({3, 4}), index_in({2}, 4), in({3, 2})}, iadd(-1), iadd_ref(1)));
  t.push_back(row("index_add", "empty_index", {in({3, 4}), index_in({0}, 4), in({3, 0})}, iadd(1), iadd_ref(1)));
  t.push_back(row("index_add", "1d", {in({5}), index_in({7}, 5), in({7})}, iadd(0), iadd_ref(0)));
  t.push_back(row("index_add", "17x33", {in({17, 33}), index_in({50}, 17), in({50, 33})}, iadd(0), iadd_ref(0),
                  RowOpts{kWithHalf, false, false, 4.0}));

  auto oh_ref = [](int64_t classes) {
    return RefFn([classes](const std::vector<Ref>& r) {
      int64_t c = classes;
      if (c < 0) c = static_cast<int64_t>(fold_max(r[0].v)) + 1;
      Shape s = r[0].shape;
      s.push_back(c);
      return ref_generate(s, [&](const Shape& idx) {
        Shape j(idx.begin(), idx.end() - 1);
        return ref_at(r[0], j) == static_cast<double>(idx[idx.size() - 1]) ? 1.0 : 0.0;
      });
    });
  };
  t.push_back(row("one_hot", "1d", {index_in({6}, 5)}, [](const TensorList& x) { return one_hot(x[0], 5); }, oh_ref(5),
                  forward_only()));
  t.push_back(row("one_hot", "2d_more_classes", {index_in({2, 3}, 4)}, [](const TensorList& x) { return one_hot(x[0], 6); },
                  oh_ref(6), forward_only()));
  t.push_back(row("one_hot", "inferred", {index_in({7}, 4)}, [](const TensorList& x) { return one_hot(x[0]); }, oh_ref(-1),
                  forward_only()));
  t.push_back(row("one_hot", "0d", {index_in({}, 3)}, [](const TensorList& x) { return one_hot(x[0], 3); }, oh_ref(3),
                  forward_only()));
  t.push_back(row("one_hot", "empty", {index_in({0}, 3)}, [](const TensorList& x) { return one_hot(x[0], 3); }, oh_ref(3),
                  forward_only()));
});

}  // namespace
}  // namespace nabla_test
