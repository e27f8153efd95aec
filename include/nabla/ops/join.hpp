#pragma once
// cat and stack (split, chunk and unbind are views, in view.hpp). cat copies each input into
// its slice of the output; its gradient is the matching slice of the output's gradient.

#include <vector>

#include "reduce.hpp"

namespace nabla {

inline Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  NABLA_CHECK(!tensors.empty(), ValueError, "cat: expected a non-empty list of tensors");
  if (auto ac = NABLA_AUTOCAST(cat, tensors)) return cat(ac.list(), dim);
  for (const auto& t : tensors) detail::check_defined(t, "cat");
  if (trace::active()) {
    trace::Scope scope;
    Tensor y = cat(tensors, dim);
    scope.record("Concat", tensors, {y}, {{"axis", wrap_dim(dim, std::max<int64_t>(tensors[0].dim(), 1), "cat")}});
    return y;
  }
  const Tensor& first = tensors[0];
  NABLA_CHECK(first.dim() > 0, ShapeError, "cat: zero-dimensional tensors cannot be concatenated; use stack");
  int64_t d = wrap_dim(dim, first.dim(), "cat");
  Shape shape = first.sizes();
  int64_t total = 0;
  detail::ResultType rt;
  std::optional<Device> dev;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    NABLA_CHECK(t.dim() == first.dim(), ShapeError, "cat: tensor ", i, " has rank ", t.dim(), " but tensor 0 has rank ",
                first.dim(), " (", detail::describe(t), " vs ", detail::describe(first), ")");
    for (int64_t k = 0; k < t.dim(); ++k)
      NABLA_CHECK(k == d || t.sizes()[k] == shape[k], ShapeError, "cat: sizes must match except in dimension ", d,
                  "; tensor ", i, " is ", detail::describe(t), ", tensor 0 is ", detail::describe(first));
    NABLA_CHECK(!dev || *dev == t.device(), DeviceError, "cat: expected all tensors on one device, tensor ", i, " is ",
                detail::describe(t), ", tensor 0 is ", detail::describe(first));
    dev = t.device();
    total += t.sizes()[d];
    rt.add(t);
  }
  shape[d] = total;
  Tensor out = empty(shape, TensorOptions(rt.get()).device(*dev));
  int64_t off = 0;
  std::vector<int64_t> offsets;
  for (const auto& t : tensors) {
    offsets.push_back(off);
    int64_t n = t.sizes()[d];
    if (n > 0 && t.numel() > 0) {
      Shape ds = shape;
      ds[d] = n;
      Tensor dst = detail::alias(out, ds, out.strides(), off * out.strides()[d]);
      backend(*dev).copy(dst, t);
    }
    off += n;
  }
  if (autograd::needs_grad_list(tensors)) {
    std::vector<int64_t> lengths;
    for (const auto& t : tensors) lengths.push_back(t.sizes()[d]);
    autograd::record("CatBackward0", out, tensors, [d, offsets, lengths](const Tensor& g, autograd::NeedsGrad need) {
      TensorList grads(lengths.size());
      for (size_t i = 0; i < lengths.size(); ++i)
        if (need[i]) grads[i] = g.narrow(d, offsets[i], lengths[i]);
      return grads;
    });
  }
  return out;
}

inline Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0) {
  NABLA_CHECK(!tensors.empty(), ValueError, "stack: expected a non-empty list of tensors");
  if (auto ac = NABLA_AUTOCAST(stack, tensors)) return stack(ac.list(), dim);
  detail::check_defined(tensors[0], "stack");
  int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    detail::check_defined(tensors[i], "stack");
    NABLA_CHECK(tensors[i].sizes() == tensors[0].sizes(), ShapeError, "stack: all tensors must have the same shape; tensor ",
                i, " is ", detail::describe(tensors[i]), ", tensor 0 is ", detail::describe(tensors[0]));
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

inline std::vector<Tensor> split(const Tensor& t, int64_t split_size, int64_t dim = 0) { return t.split(split_size, dim); }
inline std::vector<Tensor> chunk(const Tensor& t, int64_t chunks, int64_t dim = 0) { return t.chunk(chunks, dim); }
inline std::vector<Tensor> unbind(const Tensor& t, int64_t dim = 0) { return t.unbind(dim); }

// torch.Tensor.repeat: tiles x repeats[i] times along each dim; repeats may be longer than x's
// rank (x gains leading dims of 1). An expand of x with a repeat axis before each dim, then one
// copy, so the gradient sums the tiles (expand's backward).
inline Tensor repeat(const Tensor& x, const Shape& repeats) {
  detail::check_defined(x, "repeat");
  NABLA_CHECK(static_cast<int64_t>(repeats.size()) >= x.dim(), ShapeError, "repeat: ", repeats.size(),
              " repeat counts for a tensor of ", x.dim(), " dims ", detail::describe(x),
              " (there must be at least one per dim)");
  for (int64_t r : repeats) NABLA_CHECK(r >= 0, ValueError, "repeat: negative repeat count ", r);
  const size_t lead = repeats.size() - static_cast<size_t>(x.dim());
  Shape base, tiled, out;
  for (size_t i = 0; i < repeats.size(); ++i) {
    const int64_t n = i < lead ? 1 : x.size(static_cast<int64_t>(i - lead));
    base.push_back(1), base.push_back(n);
    tiled.push_back(repeats[i]), tiled.push_back(n);
    out.push_back(repeats[i] * n);
  }
  return x.reshape(base).expand(tiled).contiguous().reshape(out);
}
inline Tensor Tensor::repeat(const Shape& repeats) const { return nabla::repeat(*this, repeats); }

}  // namespace nabla
