// Parity rows for views and copies (view reshape permute transpose t narrow slice select
// expand squeeze unsqueeze flatten contiguous clone to) and for cat stack split chunk unbind;
// gradients included, so each backward (and the engine's sum_to for expand) is checked.

#include <cmath>

#include "parity_rows.hpp"

namespace nabla_test {
namespace {

RowFn un(std::function<Tensor(const Tensor&)> op) {
  return [op](const TensorList& x) { return op(x[0]); };
}
RefFn ref1(std::function<Ref(const Ref&)> f) {
  return [f](const std::vector<Ref>& r) { return f(r[0]); };
}

const RegisterParity views([](std::vector<ParityCase>& t) {
  // view needs compatible strides, so most view rows run on contiguous inputs only
  auto contiguous_only = [&] { t.back().non_contiguous = false; };
  t.push_back(row("view", "3x4_to_4x3", {in({3, 4})}, un([](const Tensor& x) { return x.view({4, 3}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {4, 3}); }), with_grad2(kWithHalf)));
  contiguous_only();
  t.push_back(row("view", "infer", {in({2, 3, 4})}, un([](const Tensor& x) { return x.view({2, -1, 2}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {2, 6, 2}); })));
  contiguous_only();
  t.push_back(row("view", "flat", {in({3, 4})}, un([](const Tensor& x) { return x.view({-1}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {12}); })));
  contiguous_only();
  // adding size-1 dims is a valid view of any layout
  t.push_back(row("view", "insert_size1", {in({3, 4})}, un([](const Tensor& x) { return x.view({3, 1, 4, 1}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 1, 4, 1}); })));
  t.push_back(row("view", "0d_to_1", {in({})}, un([](const Tensor& x) { return x.view({1, 1}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {1, 1}); })));
  t.push_back(row("view", "empty", {in({0, 3})}, un([](const Tensor& x) { return x.view({3, 0}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 0}); })));
  contiguous_only();

  t.push_back(row("reshape", "3x4_to_2x6", {in({3, 4})}, un([](const Tensor& x) { return x.reshape({2, 6}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {2, 6}); }), with_grad2(kWithHalf)));
  t.push_back(row("reshape", "to_0d", {in({1, 1})}, un([](const Tensor& x) { return x.reshape({}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {}); })));
  t.push_back(row("reshape", "empty", {in({0, 3})}, un([](const Tensor& x) { return x.reshape({-1, 6}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {0, 6}); })));
  t.push_back(row("reshape", "17x33", {in({17, 33})}, un([](const Tensor& x) { return x.reshape({33, 17}); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {33, 17}); }), forward_only(kWithHalf)));
  t.push_back(row("view_as", "of_transposed", {in({3, 4})}, un([](const Tensor& x) { return x.t().reshape({-1}); }),
                  ref1([](const Ref& a) { return ref_reshape(ref_permute(a, {1, 0}), {12}); })));

  t.push_back(row("permute", "201", {in({2, 3, 4})}, un([](const Tensor& x) { return x.permute({2, 0, 1}); }),
                  ref1([](const Ref& a) { return ref_permute(a, {2, 0, 1}); }), with_grad2(kWithHalf)));
  t.push_back(row("permute", "neg_dims", {in({2, 3, 4})}, un([](const Tensor& x) { return x.permute({-1, 0, -2}); }),
                  ref1([](const Ref& a) { return ref_permute(a, {2, 0, 1}); })));
  t.push_back(row("permute", "0d", {in({})}, un([](const Tensor& x) { return x.permute({}); }), ref1([](const Ref& a) { return a; })));
  t.push_back(row("permute", "empty", {in({0, 3, 2})}, un([](const Tensor& x) { return x.permute({1, 2, 0}); }),
                  ref1([](const Ref& a) { return ref_permute(a, {1, 2, 0}); })));
  t.push_back(row("transpose", "02", {in({2, 3, 4})}, un([](const Tensor& x) { return x.transpose(0, 2); }),
                  ref1([](const Ref& a) { return ref_permute(a, {2, 1, 0}); })));
  t.push_back(row("transpose", "neg", {in({2, 3, 4})}, un([](const Tensor& x) { return x.transpose(-1, -2); }),
                  ref1([](const Ref& a) { return ref_permute(a, {0, 2, 1}); })));
  t.push_back(row("transpose", "0d", {in({})}, un([](const Tensor& x) { return x.transpose(0, -1); }),
                  ref1([](const Ref& a) { return a; })));
  t.push_back(row("t", "2d", {in({3, 4})}, un([](const Tensor& x) { return x.t(); }),
                  ref1([](const Ref& a) { return ref_permute(a, {1, 0}); }), RowOpts{kWithHalf}));
  t.push_back(row("t", "1d", {in({4})}, un([](const Tensor& x) { return x.t(); }), ref1([](const Ref& a) { return a; })));
  t.push_back(row("t", "0d", {in({})}, un([](const Tensor& x) { return x.t(); }), ref1([](const Ref& a) { return a; })));

  t.push_back(row("narrow", "dim1", {in({3, 5})}, un([](const Tensor& x) { return x.narrow(1, 1, 3); }),
                  ref1([](const Ref& a) { return ref_slice(a, 1, 1, 4, 1); }), with_grad2(kWithHalf)));
  t.push_back(row("narrow", "neg_start", {in({5, 2})}, un([](const Tensor& x) { return x.narrow(0, -3, 2); }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 2, 4, 1); })));
  t.push_back(row("narrow", "empty_len", {in({3, 4})}, un([](const Tensor& x) { return x.narrow(-1, 2, 0); }),
                  ref1([](const Ref& a) { return ref_slice(a, 1, 2, 2, 1); })));
  t.push_back(row("slice", "step2", {in({3, 7})}, un([](const Tensor& x) { return x.slice(1, 1, std::nullopt, 2); }),
                  ref1([](const Ref& a) { return ref_slice(a, 1, 1, 7, 2); }), with_grad2(kWithHalf)));
  t.push_back(row("slice", "step3_neg_bounds", {in({8, 2})}, un([](const Tensor& x) { return x.slice(0, -7, -1, 3); }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 1, 7, 3); })));
  t.push_back(row("slice", "end_clamped", {in({4, 3})}, un([](const Tensor& x) { return x.slice(0, 2, 100); }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 2, 4, 1); })));
  t.push_back(row("slice", "empty_range", {in({4, 3})}, un([](const Tensor& x) { return x.slice(0, 3, 1); }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 3, 3, 1); })));
  t.push_back(row("slice", "of_slice", {in({6, 5})},
                  un([](const Tensor& x) { return x.slice(0, 1, std::nullopt, 2).slice(1, 0, 4, 3); }),
                  ref1([](const Ref& a) { return ref_slice(ref_slice(a, 0, 1, 6, 2), 1, 0, 4, 3); })));
  t.push_back(row("slice", "17x33", {in({17, 33})}, un([](const Tensor& x) { return x.slice(1, 3, 30, 4); }),
                  ref1([](const Ref& a) { return ref_slice(a, 1, 3, 30, 4); }), forward_only(kWithHalf)));
  t.push_back(row("select", "dim1", {in({3, 4})}, un([](const Tensor& x) { return x.select(1, 2); }),
                  ref1([](const Ref& a) { return ref_select(a, 1, 2); }), with_grad2(kWithHalf)));
  t.push_back(row("select", "neg_index", {in({3, 2, 2})}, un([](const Tensor& x) { return x.select(0, -1); }),
                  ref1([](const Ref& a) { return ref_select(a, 0, 2); })));
  t.push_back(row("select", "to_0d", {in({5})}, un([](const Tensor& x) { return x[3]; }),
                  ref1([](const Ref& a) { return ref_select(a, 0, 3); })));
  t.push_back(row("select", "empty_other", {in({0, 3})}, un([](const Tensor& x) { return x.select(1, 1); }),
                  ref1([](const Ref& a) { return ref_select(a, 1, 1); })));

  t.push_back(row("expand", "3x1_to_2x3x4", {in({3, 1})}, un([](const Tensor& x) { return x.expand({2, 3, 4}); }),
                  ref1([](const Ref& a) { return ref_expand(a, {2, 3, 4}); }), with_grad2(kWithHalf)));
  t.push_back(row("expand", "minus1", {in({1, 4})}, un([](const Tensor& x) { return x.expand({3, -1}); }),
                  ref1([](const Ref& a) { return ref_expand(a, {3, 4}); })));
  t.push_back(row("expand", "0d", {in({})}, un([](const Tensor& x) { return x.expand({2, 3}); }),
                  ref1([](const Ref& a) { return ref_expand(a, {2, 3}); })));
  t.push_back(row("expand", "to_empty", {in({1, 3})}, un([](const Tensor& x) { return x.expand({0, 3}); }),
                  ref1([](const Ref& a) { return ref_expand(a, {0, 3}); })));
  t.push_back(row("expand_as", "then_mul", {in({4}), in({3, 4})}, [](const TensorList& x) { return x[0].expand_as(x[1]) * x[1]; },
                  zip2([](double a, double b) { return a * b; })));

  t.push_back(row("squeeze", "all", {in({3, 1, 4, 1})}, un([](const Tensor& x) { return x.squeeze(); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 4}); }), RowOpts{kWithHalf}));
  t.push_back(row("squeeze", "dim", {in({3, 1, 4})}, un([](const Tensor& x) { return x.squeeze(1); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 4}); })));
  t.push_back(row("squeeze", "non1_dim", {in({3, 4})}, un([](const Tensor& x) { return x.squeeze(-1); }),
                  ref1([](const Ref& a) { return a; })));
  t.push_back(row("squeeze", "0d", {in({})}, un([](const Tensor& x) { return x.squeeze(); }), ref1([](const Ref& a) { return a; })));
  t.push_back(row("squeeze", "all_ones", {in({1, 1})}, un([](const Tensor& x) { return x.squeeze(); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {}); })));
  t.push_back(row("unsqueeze", "dim0", {in({3, 4})}, un([](const Tensor& x) { return x.unsqueeze(0); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {1, 3, 4}); }), RowOpts{kWithHalf}));
  t.push_back(row("unsqueeze", "neg", {in({3, 4})}, un([](const Tensor& x) { return x.unsqueeze(-1); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 4, 1}); })));
  t.push_back(row("unsqueeze", "middle", {in({3, 4})}, un([](const Tensor& x) { return x.unsqueeze(1); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {3, 1, 4}); })));
  t.push_back(row("unsqueeze", "0d", {in({})}, un([](const Tensor& x) { return x.unsqueeze(0); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {1}); })));
  t.push_back(row("flatten", "all", {in({2, 3, 4})}, un([](const Tensor& x) { return x.flatten(); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {24}); }), RowOpts{kWithHalf}));
  t.push_back(row("flatten", "from1", {in({2, 3, 4})}, un([](const Tensor& x) { return x.flatten(1); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {2, 12}); })));
  t.push_back(row("flatten", "01", {in({2, 3, 4})}, un([](const Tensor& x) { return x.flatten(0, 1); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {6, 4}); })));
  t.push_back(row("flatten", "0d", {in({})}, un([](const Tensor& x) { return x.flatten(); }),
                  ref1([](const Ref& a) { return ref_reshape(a, {1}); })));

  t.push_back(row("contiguous", "2d", {in({3, 4})}, un([](const Tensor& x) { return x.contiguous(); }),
                  ref1([](const Ref& a) { return a; }), RowOpts{kWithHalf}));
  t.push_back(row("contiguous", "of_transpose", {in({3, 4})}, un([](const Tensor& x) { return x.t().contiguous(); }),
                  ref1([](const Ref& a) { return ref_permute(a, {1, 0}); })));
  t.push_back(row("clone", "2d", {in({3, 4})}, un([](const Tensor& x) { return x.clone(); }), ref1([](const Ref& a) { return a; }),
                  with_grad2(kWithHalf)));
  t.push_back(row("clone", "0d", {in({})}, un([](const Tensor& x) { return x.clone(); }), ref1([](const Ref& a) { return a; })));
  t.push_back(row("clone", "empty", {in({0, 3})}, un([](const Tensor& x) { return x.clone(); }), ref1([](const Ref& a) { return a; })));
  // to(): float64 output is exact for every input dtype, so gradients can be checked through it
  t.push_back(row("to", "float64", {in({3, 4})}, un([](const Tensor& x) { return x.to(kFloat64) * 1.5; }),
                  ref1([](const Ref& a) { return ref_map(a, [](double v) { return v * 1.5; }); }), with_grad2(kWithHalf)));
  t.push_back(row("to", "float32", {in({3, 4})}, un([](const Tensor& x) { return x.to(kFloat32); }),
                  ref1([](const Ref& a) { return a; }), forward_only(kWithHalf)));
  t.push_back(row("to", "float16", {in({3, 4})}, un([](const Tensor& x) { return x.to(kFloat16); }),
                  ref1([](const Ref& a) { return a; }), forward_only(kWithHalf)));
  t.push_back(row("to", "bfloat16", {in({17, 33})}, un([](const Tensor& x) { return x.to(kBFloat16); }),
                  ref1([](const Ref& a) { return a; }), forward_only(kWithHalf)));
  t.push_back(row("to", "int64", {in({3, 4})}, un([](const Tensor& x) { return (x * 3).to(kInt64); }),
                  ref1([](const Ref& a) { return ref_map(a, [](double v) { return std::trunc(v * 3); }); }), forward_only()));
  t.push_back(row("to", "bool", {in({3, 4})}, un([](const Tensor& x) { return round(x).to(kBool); }),
                  ref1([](const Ref& a) { return ref_map(a, [](double v) { return std::nearbyint(v) != 0 ? 1.0 : 0.0; }); }),
                  forward_only(kWithHalf)));
});

const RegisterParity joins([](std::vector<ParityCase>& t) {
  // Tensor::repeat: the reference tiles by index (out[i] = x[i mod n] per dim)
  auto tile_ref = [](Shape reps) {
    return RefFn([reps](const std::vector<Ref>& r) {
      const Ref& x = r[0];
      const size_t lead = reps.size() - x.shape.size();
      Shape out(reps.size());
      for (size_t i = 0; i < reps.size(); ++i) out[i] = reps[i] * (i < lead ? 1 : x.shape[i - lead]);
      return ref_generate(out, [&](const Shape& idx) {
        Shape src(x.shape.size());
        for (size_t i = 0; i < src.size(); ++i) src[i] = idx[i + lead] % x.shape[i];
        return ref_at(x, src);
      });
    });
  };
  t.push_back(row("repeat", "2d", {in({2, 3})}, [](const TensorList& x) { return x[0].repeat({2, 3}); }, tile_ref({2, 3}),
                  with_grad2()));
  t.push_back(row("repeat", "new_leading_dims", {in({3})}, [](const TensorList& x) { return x[0].repeat({2, 1, 2}); },
                  tile_ref({2, 1, 2})));
  t.push_back(row("repeat", "ones", {in({2, 1, 3})}, [](const TensorList& x) { return x[0].repeat({1, 4, 1}); },
                  tile_ref({1, 4, 1})));
  t.push_back(row("repeat", "zero_count", {in({2, 3})}, [](const TensorList& x) { return x[0].repeat({0, 2}); },
                  tile_ref({0, 2})));
  t.push_back(row("cat", "dim0_three", {in({2, 3}), in({1, 3}), in({3, 3})},
                  [](const TensorList& x) { return cat({x[0], x[1], x[2]}, 0); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 0); }, with_grad2(kWithHalf)));
  t.push_back(row("cat", "neg_dim", {in({3, 2}), in({3, 1})}, [](const TensorList& x) { return cat({x[0], x[1]}, -1); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 1); }));
  t.push_back(row("cat", "with_empty", {in({2, 3}), in({0, 3}), in({1, 3})},
                  [](const TensorList& x) { return cat({x[0], x[1], x[2]}); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 0); }));
  t.push_back(row("cat", "1d", {in({4}), in({3})}, [](const TensorList& x) { return cat({x[0], x[1]}); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 0); }));
  t.push_back(row("cat", "3d_middle", {in({2, 1, 3}), in({2, 2, 3})}, [](const TensorList& x) { return cat({x[0], x[1]}, 1); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 1); }));
  t.push_back(row("cat", "same_input_twice", {in({2, 3})}, [](const TensorList& x) { return cat({x[0], x[0]}, 1); },
                  [](const std::vector<Ref>& r) { return ref_cat({r[0], r[0]}, 1); }));
  t.push_back(row("cat", "17x33", {in({17, 33}), in({17, 5})}, [](const TensorList& x) { return cat({x[0], x[1]}, 1); },
                  [](const std::vector<Ref>& r) { return ref_cat(r, 1); }, forward_only(kWithHalf)));

  t.push_back(row("stack", "dim0", {in({2, 3}), in({2, 3}), in({2, 3})},
                  [](const TensorList& x) { return stack({x[0], x[1], x[2]}); },
                  [](const std::vector<Ref>& r) { return ref_stack(r, 0); }, RowOpts{kWithHalf}));
  t.push_back(row("stack", "dim_last", {in({2, 3}), in({2, 3})}, [](const TensorList& x) { return stack({x[0], x[1]}, -1); },
                  [](const std::vector<Ref>& r) { return ref_stack(r, 2); }));
  t.push_back(row("stack", "0d", {in({}), in({})}, [](const TensorList& x) { return stack({x[0], x[1]}); },
                  [](const std::vector<Ref>& r) { return ref_stack(r, 0); }));
  t.push_back(row("stack", "empty", {in({0, 2}), in({0, 2})}, [](const TensorList& x) { return stack({x[0], x[1]}, 1); },
                  [](const std::vector<Ref>& r) { return ref_stack(r, 1); }));

  t.push_back(row("split", "piece1", {in({5, 3})}, un([](const Tensor& x) { return x.split(2)[1]; }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 2, 4, 1); }), RowOpts{kWithHalf}));
  t.push_back(row("split", "last_partial", {in({5, 3})}, un([](const Tensor& x) { return split(x, 2)[2]; }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 4, 5, 1); })));
  t.push_back(row("split", "recat_reversed", {in({3, 5})},
                  un([](const Tensor& x) {
                    auto p = x.split(2, -1);
                    return cat({p[2], p[1], p[0]}, 1);
                  }),
                  ref1([](const Ref& a) { return ref_cat({ref_slice(a, 1, 4, 5, 1), ref_slice(a, 1, 2, 4, 1), ref_slice(a, 1, 0, 2, 1)}, 1); })));
  t.push_back(row("chunk", "last", {in({5, 3})}, un([](const Tensor& x) { return x.chunk(3)[2]; }),
                  ref1([](const Ref& a) { return ref_slice(a, 0, 4, 5, 1); })));
  t.push_back(row("chunk", "dim1", {in({2, 6})}, un([](const Tensor& x) { return chunk(x, 2, 1)[1]; }),
                  ref1([](const Ref& a) { return ref_slice(a, 1, 3, 6, 1); }), RowOpts{kWithHalf}));
  t.push_back(row("chunk", "sum_of_pieces", {in({4, 3})},
                  un([](const Tensor& x) {
                    auto p = x.chunk(2);
                    return p[0] * p[1];
                  }),
                  ref1([](const Ref& a) { return ref_zip(ref_slice(a, 0, 0, 2, 1), ref_slice(a, 0, 2, 4, 1), [](double u, double v) { return u * v; }); })));
  t.push_back(row("unbind", "dim1_piece", {in({3, 4})}, un([](const Tensor& x) { return x.unbind(1)[2]; }),
                  ref1([](const Ref& a) { return ref_select(a, 1, 2); }), RowOpts{kWithHalf}));
  t.push_back(row("unbind", "restack_reversed", {in({3, 2})},
                  un([](const Tensor& x) {
                    auto p = unbind(x);
                    return stack({p[2], p[1], p[0]});
                  }),
                  ref1([](const Ref& a) { return ref_stack({ref_select(a, 0, 2), ref_select(a, 0, 1), ref_select(a, 0, 0)}, 0); })));
});

}  // namespace
}  // namespace nabla_test
