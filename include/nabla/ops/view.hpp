#pragma once
// View ops: new shape/strides over the same storage, no data copied. Each records a backward
// that maps the gradient back to the input's shape (with its own backward, so double backward
// works). expand's backward is the engine's sum_to.

#include <algorithm>
#include <optional>

#include "factory.hpp"

namespace nabla {
namespace detail {

inline Shape infer_size(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  std::optional<size_t> infer;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      NABLA_CHECK(!infer, ShapeError, op, ": only one dimension can be -1, got ", shape_str(shape));
      infer = i;
    } else {
      NABLA_CHECK(shape[i] >= 0, ShapeError, op, ": invalid dimension ", shape[i], " in shape ", shape_str(shape));
      known = checked_mul(known, shape[i], op);
    }
  }
  if (infer) {
    NABLA_CHECK(known != 0 && numel % known == 0, ShapeError, op, ": shape ", shape_str(shape),
                " is invalid for input of size ", numel);
    out[*infer] = numel / known;
  }
  NABLA_CHECK(numel_of(out) == numel, ShapeError, op, ": shape ", shape_str(shape), " is invalid for input of size ", numel);
  return out;
}

// Strides that let `shape` view memory laid out as (old_shape, old_strides), if any (PyTorch's
// computeStride: groups of old dims that are contiguous among themselves can be re-split).
inline std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  if (old_shape.empty() || numel_of(old_shape) == 0) return contiguous_strides(shape);
  Strides st(shape.size(), 0);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base = old_strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

// gradient of slice / select: g placed into zeros of the input's shape. Differentiable.
inline Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t start, int64_t end,
                             int64_t step) {
  Tensor out = zeros(in_shape, g.options());
  Tensor dst = out.detach().slice(dim, start, end, step);
  backend(out.device()).copy(dst, g);
  if (autograd::needs_grad(g))
    autograd::record("SliceBackwardBackward0", out, {g}, [=](const Tensor& gg, autograd::NeedsGrad) {
      return TensorList{gg.slice(dim, start, end, step)};
    });
  return out;
}
inline Tensor select_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t index) {
  Tensor out = zeros(in_shape, g.options());
  Tensor dst = out.detach().select(dim, index);
  backend(out.device()).copy(dst, g);
  if (autograd::needs_grad(g))
    autograd::record("SelectBackwardBackward0", out, {g}, [=](const Tensor& gg, autograd::NeedsGrad) {
      return TensorList{gg.select(dim, index)};
    });
  return out;
}

// Records a view's backward as "reshape the gradient back to the input's shape".
// A trace sees these views (view, squeeze, unsqueeze) as a Reshape to the output's shape.
inline void record_reshape_back(const char* name, const Tensor& out, const Tensor& in) {
  if (trace::active()) trace::record("Reshape", {in}, {out}, {{"shape", std::vector<int64_t>(out.sizes().begin(), out.sizes().end())}});
  if (!autograd::needs_grad(in)) return;
  autograd::record(name, out, {in}, [shape = in.sizes()](const Tensor& g, autograd::NeedsGrad) {
    return TensorList{g.reshape(shape)};
  });
}

}  // namespace detail

inline Tensor Tensor::view(const Shape& shape) const {
  detail::check_defined(*this, "view");
  Shape s = detail::infer_size(shape, numel(), "view");
  auto st = detail::view_strides(sizes(), strides(), s);
  NABLA_CHECK(st.has_value(), ShapeError, "view: shape ", shape_str(s), " is not compatible with the input's size ",
              shape_str(sizes()), " and strides ", shape_str(strides()),
              " (the memory is not contiguous across the merged dims); use reshape(), which copies when it must");
  Tensor out = detail::alias(*this, s, *st, storage_offset());
  detail::record_reshape_back("ViewBackward0", out, *this);
  return out;
}

inline Tensor Tensor::reshape(const Shape& shape) const {
  detail::check_defined(*this, "reshape");
  Shape s = detail::infer_size(shape, numel(), "reshape");
  if (detail::view_strides(sizes(), strides(), s)) return view(s);
  return contiguous().view(s);
}

inline Tensor Tensor::permute(const Dims& dims) const {
  detail::check_defined(*this, "permute");
  NABLA_CHECK(static_cast<int64_t>(dims.size()) == dim(), ShapeError, "permute: got ", dims.size(),
              " dims for a tensor of rank ", dim(), " (", detail::describe(*this), ")");
  Shape s(dims.size());
  Strides st(dims.size());
  SmallVector<int64_t, 6> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    NABLA_CHECK(inverse[d] == -1, ValueError, "permute: dimension ", dims[i], " repeats in ", shape_str(dims));
    inverse[d] = static_cast<int64_t>(i);
    s[i] = sizes()[d];
    st[i] = strides()[d];
  }
  Tensor out = detail::alias(*this, s, st, storage_offset());
  if (trace::active()) {
    std::vector<int64_t> perm(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) perm[inverse[i] < 0 ? 0 : static_cast<size_t>(inverse[i])] = static_cast<int64_t>(i);
    trace::record("Transpose", {*this}, {out}, {{"perm", perm}});
  }
  if (autograd::needs_grad(*this))
    autograd::record("PermuteBackward0", out, {*this}, [inv = Dims(inverse)](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{g.permute(inv)};
    });
  return out;
}

inline Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  detail::check_defined(*this, "transpose");
  int64_t r = dim();
  if (r == 0) return view({});  // PyTorch allows transpose(0, 0) / (-1, -1) on scalars
  int64_t a = wrap_dim(dim0, r, "transpose"), b = wrap_dim(dim1, r, "transpose");
  Dims perm;
  for (int64_t i = 0; i < r; ++i) perm.push_back(i);
  std::swap(perm[a], perm[b]);
  Tensor out = permute(perm);
  if (auto node = out.grad_fn()) node->set_name("TransposeBackward0");  // LibTorch's node names
  return out;
}

inline Tensor Tensor::t() const {
  detail::check_defined(*this, "t");
  NABLA_CHECK(dim() <= 2, ShapeError, "t: expects a tensor with <= 2 dimensions, got ", detail::describe(*this));
  Tensor out = dim() < 2 ? view(sizes()) : transpose(0, 1);
  if (auto node = out.grad_fn()) node->set_name("TBackward0");
  return out;
}

inline Tensor Tensor::slice(int64_t d, std::optional<int64_t> start, std::optional<int64_t> end, int64_t step) const {
  detail::check_defined(*this, "slice");
  NABLA_CHECK(dim() > 0, ShapeError, "slice: cannot slice a 0-dim tensor");
  d = wrap_dim(d, dim(), "slice");
  NABLA_CHECK(step > 0, ValueError, "slice: step must be positive, got ", step);
  const int64_t n = sizes()[d];
  int64_t s = start.value_or(0), e = end.value_or(n);
  if (s < 0) s += n;
  if (e < 0) e += n;
  s = std::clamp<int64_t>(s, 0, n);
  e = std::clamp<int64_t>(e, s, n);
  Shape sh = sizes();
  Strides st = strides();
  sh[d] = (e - s + step - 1) / step;
  st[d] *= step;
  Tensor out = detail::alias(*this, sh, st, storage_offset() + s * strides()[d]);
  if (trace::active())
    trace::record("Slice", {*this}, {out}, {{"axis", d}, {"start", s}, {"end", e}, {"step", step}, {"size", n}});
  if (autograd::needs_grad(*this))
    autograd::record("SliceBackward0", out, {*this}, [shape = sizes(), d, s, e, step](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{detail::slice_backward(g, shape, d, s, e, step)};
    });
  return out;
}

inline Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  detail::check_defined(*this, "narrow");
  NABLA_CHECK(dim() > 0, ShapeError, "narrow: cannot narrow a 0-dim tensor");
  d = wrap_dim(d, dim(), "narrow");
  const int64_t n = sizes()[d];
  NABLA_CHECK(start >= -n && start <= n, IndexError, "narrow: start ", start, " out of range for dimension ", d,
              " of size ", n);
  if (start < 0) start += n;
  NABLA_CHECK(length >= 0 && start + length <= n, IndexError, "narrow: start (", start, ") + length (", length,
              ") exceeds dimension ", d, " of size ", n, " (", detail::describe(*this), ")");
  return slice(d, start, start + length, 1);
}

inline Tensor Tensor::select(int64_t d, int64_t index) const {
  detail::check_defined(*this, "select");
  NABLA_CHECK(dim() > 0, IndexError, "select: cannot index a 0-dim tensor");
  d = wrap_dim(d, dim(), "select");
  const int64_t n = sizes()[d];
  NABLA_CHECK(index >= -n && index < n, IndexError, "select: index ", index, " is out of bounds for dimension ", d,
              " with size ", n, " (", detail::describe(*this), ")");
  if (index < 0) index += n;
  Shape sh = sizes();
  Strides st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = detail::alias(*this, sh, st, storage_offset() + index * strides()[d]);
  if (trace::active()) trace::record("Select", {*this}, {out}, {{"axis", d}, {"index", index}});
  if (autograd::needs_grad(*this))
    autograd::record("SelectBackward0", out, {*this}, [shape = sizes(), d, index](const Tensor& g, autograd::NeedsGrad) {
      return TensorList{detail::select_backward(g, shape, d, index)};
    });
  return out;
}

inline Tensor Tensor::expand(const Shape& shape) const {
  detail::check_defined(*this, "expand");
  NABLA_CHECK(shape.size() >= static_cast<size_t>(dim()), ShapeError, "expand: the target shape ", shape_str(shape),
              " has fewer dimensions than the tensor ", detail::describe(*this));
  const size_t off = shape.size() - static_cast<size_t>(dim());
  Shape sh(shape.size());
  Strides st(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < off) {
      NABLA_CHECK(shape[i] >= 0, ShapeError, "expand: -1 is not allowed in a new leading dimension, got ", shape_str(shape));
      sh[i] = shape[i];
      st[i] = 0;
      continue;
    }
    int64_t have = sizes()[i - off], want = shape[i] == -1 ? have : shape[i];
    NABLA_CHECK(have == want || have == 1, ShapeError, "expand: the size of ", detail::describe(*this),
                " must match the target shape ", shape_str(shape), " at non-singleton dimension ", i);
    sh[i] = want;
    st[i] = have == want ? strides()[i - off] : 0;
  }
  Tensor out = detail::alias(*this, sh, st, storage_offset());
  if (trace::active()) trace::record("Expand", {*this}, {out}, {{"shape", std::vector<int64_t>(sh.begin(), sh.end())}});
  if (autograd::needs_grad(*this))  // the engine sums the gradient back to the input's shape
    autograd::record("ExpandBackward0", out, {*this}, [](const Tensor& g, autograd::NeedsGrad) { return TensorList{g}; });
  return out;
}

inline Tensor Tensor::squeeze() const {
  detail::check_defined(*this, "squeeze");
  Shape sh;
  Strides st;
  for (int64_t i = 0; i < dim(); ++i)
    if (sizes()[i] != 1) {
      sh.push_back(sizes()[i]);
      st.push_back(strides()[i]);
    }
  Tensor out = detail::alias(*this, sh, st, storage_offset());
  detail::record_reshape_back("SqueezeBackward0", out, *this);
  return out;
}

inline Tensor Tensor::squeeze(int64_t d) const {
  detail::check_defined(*this, "squeeze");
  if (dim() == 0) return view({});
  d = wrap_dim(d, dim(), "squeeze");
  if (sizes()[d] != 1) return view(sizes());
  Shape sh = sizes();
  Strides st = strides();
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = detail::alias(*this, sh, st, storage_offset());
  detail::record_reshape_back("SqueezeBackward0", out, *this);
  return out;
}

inline Tensor Tensor::unsqueeze(int64_t d) const {
  detail::check_defined(*this, "unsqueeze");
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape sh = sizes();
  Strides st = strides();
  int64_t stride = d < dim() ? sizes()[d] * strides()[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = detail::alias(*this, sh, st, storage_offset());
  detail::record_reshape_back("UnsqueezeBackward0", out, *this);
  return out;
}

inline Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  detail::check_defined(*this, "flatten");
  if (dim() == 0) return reshape({1});
  int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  NABLA_CHECK(s <= e, ValueError, "flatten: start_dim (", start_dim, ") must not come after end_dim (", end_dim, ")");
  Shape sh;
  for (int64_t i = 0; i < s; ++i) sh.push_back(sizes()[i]);
  int64_t merged = 1;
  for (int64_t i = s; i <= e; ++i) merged *= sizes()[i];
  sh.push_back(merged);
  for (int64_t i = e + 1; i < dim(); ++i) sh.push_back(sizes()[i]);
  return reshape(sh);
}

inline std::vector<Tensor> Tensor::split(int64_t split_size, int64_t d) const {
  detail::check_defined(*this, "split");
  d = wrap_dim(d, dim(), "split");
  NABLA_CHECK(split_size > 0 || (split_size == 0 && sizes()[d] == 0), ValueError,
              "split: split_size must be positive, got ", split_size);
  std::vector<Tensor> parts;
  const int64_t n = sizes()[d];
  if (n == 0) return {narrow(d, 0, 0)};
  for (int64_t s = 0; s < n; s += split_size) parts.push_back(narrow(d, s, std::min(split_size, n - s)));
  return parts;
}

inline std::vector<Tensor> Tensor::chunk(int64_t chunks, int64_t d) const {
  detail::check_defined(*this, "chunk");
  NABLA_CHECK(chunks > 0, ValueError, "chunk: number of chunks must be positive, got ", chunks);
  d = wrap_dim(d, dim(), "chunk");
  const int64_t n = sizes()[d];
  return split(std::max<int64_t>((n + chunks - 1) / chunks, n == 0 ? 0 : 1), d);
}

inline std::vector<Tensor> Tensor::unbind(int64_t d) const {
  detail::check_defined(*this, "unbind");
  d = wrap_dim(d, dim(), "unbind");
  std::vector<Tensor> parts;
  for (int64_t i = 0; i < sizes()[d]; ++i) parts.push_back(select(d, i));
  return parts;
}

}  // namespace nabla

