#pragma once
// Index ops: index_select gather scatter_add index_add one_hot, and max/min along a dim
// (argmax + gather, so the gradient flows to the selected element like PyTorch's).
// Each op's gradient is another op of this file, so double backward works.

#include <tuple>

#include "join.hpp"

namespace nabla {
namespace detail {
inline Tensor as_index(const Tensor& index, const char* op) {
  check_defined(index, op);
  NABLA_CHECK(index.dtype() == kInt64 || index.dtype() == kInt32, DTypeError, op,
              ": index must be an int64 (or int32) tensor, got ", describe(index));
  return cast(index, kInt64);
}
inline void check_gather_shapes(const Tensor& x, int64_t d, const Tensor& index, const char* op) {
  NABLA_CHECK(index.dim() == x.dim(), ShapeError, op, ": index ", describe(index), " must have the same rank as the input ",
              describe(x));
  for (int64_t k = 0; k < x.dim(); ++k)
    NABLA_CHECK(k == d || index.sizes()[k] <= x.sizes()[k], ShapeError, op, ": index ", describe(index),
                " is larger than the input ", describe(x), " in dimension ", k);
}
}  // namespace detail

// Rows (or slices along dim) of x picked by a 0-D or 1-D index; the result keeps x's rank.
inline Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined(x, "index_select");
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = index_select(x, dim, index);
    scope.record("Gather", {x, index}, {y}, {{"axis", wrap_dim(dim, x.dim(), "index_select")}});
    return y;
  }
  Tensor idx = detail::as_index(index, "index_select");
  NABLA_CHECK(idx.dim() <= 1, ShapeError, "index_select: index must be 0-D or 1-D, got ", detail::describe(index));
  NABLA_CHECK(x.dim() >= 1, ShapeError, "index_select: input must have at least one dimension, got ", detail::describe(x));
  detail::common_device("index_select", {x, idx});
  int64_t d = wrap_dim(dim, x.dim(), "index_select");
  idx = idx.reshape({-1});
  Shape shape = x.sizes();
  shape[d] = idx.numel();
  Tensor out = empty(shape, x.options());
  if (out.numel() > 0) backend(x.device()).index_select(out, x, d, idx);
  if (autograd::needs_grad(x))
    autograd::record("IndexSelectBackward0", out, {x}, [shape = x.sizes(), d, i = autograd::save(idx)](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{zeros(shape, g.options()).index_add(d, i.unpack(), g)};
    });
  return out;
}

inline Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined(x, "gather");
  Tensor idx = detail::as_index(index, "gather");
  int64_t d = wrap_dim(dim, x.dim(), "gather");
  detail::check_gather_shapes(x, d, idx, "gather");
  detail::common_device("gather", {x, idx});
  Tensor out = empty(idx.sizes(), x.options());
  if (out.numel() > 0) backend(x.device()).gather(out, x, d, idx);
  if (autograd::needs_grad(x))
    autograd::record("GatherBackward0", out, {x}, [shape = x.sizes(), d, i = autograd::save(idx)](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{zeros(shape, g.options()).scatter_add(d, i.unpack(), g)};
    });
  return out;
}

inline Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_defined(self, "scatter_add");
  detail::check_defined(src, "scatter_add");
  if (auto ac = NABLA_AUTOCAST(scatter_add, self, index, src)) return scatter_add(ac[0], dim, ac[1], ac[2]);
  Tensor idx = detail::as_index(index, "scatter_add");
  int64_t d = wrap_dim(dim, self.dim(), "scatter_add");
  detail::check_gather_shapes(self, d, idx, "scatter_add");
  NABLA_CHECK(src.dim() == idx.dim(), ShapeError, "scatter_add: src ", detail::describe(src), " must have the rank of index ",
              detail::describe(idx));
  for (int64_t k = 0; k < idx.dim(); ++k)
    NABLA_CHECK(idx.sizes()[k] <= src.sizes()[k], ShapeError, "scatter_add: index ", detail::describe(idx),
                " is larger than src ", detail::describe(src), " in dimension ", k);
  detail::common_device("scatter_add", {self, idx, src});
  Tensor out = self.detach().clone();
  if (idx.numel() > 0) backend(self.device()).scatter_add(out, d, idx, detail::cast(src, self.dtype()));
  if (autograd::needs_grad(self, src))
    autograd::record("ScatterAddBackward0", out, {self, src},
                     [d, i = autograd::save(idx), src_shape = src.sizes()](const Tensor& g, autograd::NeedsGrad need) {
                       if (!need[1]) return TensorList{g, Tensor()};
                       // src may be larger than index; the elements past index's extent were unused (zero grad)
                       Tensor gs = g.gather(d, i.unpack());
                       for (int64_t k = 0; k < gs.dim(); ++k)
                         if (gs.size(k) != src_shape[k]) {
                           Shape s = gs.sizes();
                           s[k] = src_shape[k];
                           gs = detail::slice_backward(gs, s, k, 0, gs.size(k), 1);
                         }
                       return TensorList{g, gs};
                     });
  return out;
}

inline Tensor index_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& source) {
  detail::check_defined(self, "index_add");
  detail::check_defined(source, "index_add");
  Tensor idx = detail::as_index(index, "index_add").reshape({-1});
  int64_t d = wrap_dim(dim, self.dim(), "index_add");
  Shape want = self.sizes();
  if (self.dim() > 0) want[d] = idx.numel();
  NABLA_CHECK(source.sizes() == want, ShapeError, "index_add: source ", detail::describe(source), " should have shape ",
              shape_str(want), " for self ", detail::describe(self), " and ", idx.numel(), " indices");
  detail::common_device("index_add", {self, idx, source});
  Tensor out = self.detach().clone();
  if (source.numel() > 0) backend(self.device()).index_add(out, d, idx, detail::cast(source, self.dtype()));
  if (autograd::needs_grad(self, source))
    autograd::record("IndexAddBackward0", out, {self, source}, [d, i = autograd::save(idx)](const Tensor& g, autograd::NeedsGrad need) {
      return TensorList{g, need[1] ? g.index_select(d, i.unpack()) : Tensor()};
    });
  return out;
}

// One-hot encoding of integer class labels: shape index.shape + [num_classes], int64.
inline Tensor one_hot(const Tensor& index, int64_t num_classes = -1) {
  Tensor idx = detail::as_index(index, "one_hot");
  if (num_classes < 0) {
    NABLA_CHECK(idx.numel() > 0, ValueError, "one_hot: cannot infer the number of classes from an empty tensor");
    num_classes = idx.max().item<int64_t>() + 1;
  }
  if (idx.numel() > 0) {
    int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
    NABLA_CHECK(lo >= 0 && hi < num_classes, IndexError, "one_hot: class values must be in [0, ", num_classes, "), got [",
                lo, ", ", hi, "]");
  }
  Tensor classes = arange(0, num_classes, 1, TensorOptions(kInt64).device(idx.device()));
  return idx.unsqueeze(-1).eq(classes).to(kInt64);
}

inline std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false) {
  Tensor i = argmax(x, dim, true);
  Tensor v = x.dim() == 0 ? x.view({}) : x.gather(wrap_dim(dim, x.dim(), "max"), i);
  if (!keepdim && x.dim() > 0) return {v.squeeze(dim), i.squeeze(dim)};
  return {v, i};
}
inline std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false) {
  Tensor i = argmin(x, dim, true);
  Tensor v = x.dim() == 0 ? x.view({}) : x.gather(wrap_dim(dim, x.dim(), "min"), i);
  if (!keepdim && x.dim() > 0) return {v.squeeze(dim), i.squeeze(dim)};
  return {v, i};
}

inline Tensor Tensor::index_select(int64_t dim, const Tensor& index) const { return nabla::index_select(*this, dim, index); }
inline Tensor Tensor::gather(int64_t dim, const Tensor& index) const { return nabla::gather(*this, dim, index); }
inline Tensor Tensor::scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const {
  return nabla::scatter_add(*this, dim, index, src);
}
inline const Tensor& Tensor::scatter_add_(int64_t dim, const Tensor& index, const Tensor& src) const {
  detail::check_inplace(*this, "scatter_add_");
  Tensor r = nabla::scatter_add(GradMode::is_enabled() && requires_grad() ? clone() : *this, dim, index, src);
  return detail::commit_inplace(*this, r, "scatter_add_");
}
inline Tensor Tensor::index_add(int64_t dim, const Tensor& index, const Tensor& source) const {
  return nabla::index_add(*this, dim, index, source);
}
inline std::tuple<Tensor, Tensor> Tensor::max(int64_t dim, bool keepdim) const { return nabla::max(*this, dim, keepdim); }
inline std::tuple<Tensor, Tensor> Tensor::min(int64_t dim, bool keepdim) const { return nabla::min(*this, dim, keepdim); }

}  // namespace nabla

