#pragma once
// Tensor: a cheap handle (shared pointer) to a TensorImpl = storage + offset + shape + strides
// + dtype + an optional autograd slot. Member functions that run ops are declared here and
// defined in the ops/ header of their op family; include <nabla/nabla.hpp> to use them.

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "device.hpp"
#include "dtype.hpp"
#include "error.hpp"
#include "scalar.hpp"
#include "shape.hpp"
#include "storage.hpp"

namespace nabla {

namespace autograd {
struct Node;
}
class Generator;  // core/random.hpp
struct TensorImpl;
template <class T, size_t N>
class TensorAccessor;

// What a factory makes: dtype, device, requires_grad. Converts implicitly from a DType or a
// Device, so zeros({2, 3}, kFloat64) and zeros({2, 3}, Device::cuda()) both read naturally.
struct TensorOptions {
  DType dtype_ = kFloat32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;

  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}            // NOLINT
  TensorOptions(Device d) : device_(d) {}          // NOLINT
  TensorOptions(DeviceType t) : device_(t) {}      // NOLINT
  TensorOptions dtype(DType d) const { auto o = *this; o.dtype_ = d; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }
  long use_count() const { return impl_.use_count(); }

  // ---- metadata -----------------------------------------------------------------------------
  inline const Shape& sizes() const;
  const Shape& shape() const { return sizes(); }
  inline int64_t size(int64_t dim) const;
  inline const Strides& strides() const;
  inline int64_t stride(int64_t dim) const;
  inline int64_t dim() const;
  int64_t ndimension() const { return dim(); }
  inline int64_t numel() const;
  inline DType dtype() const;
  DType scalar_type() const { return dtype(); }
  inline Device device() const;
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  size_t element_size() const { return nabla::element_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  inline int64_t storage_offset() const;
  inline bool is_contiguous() const;
  bool is_floating_point() const { return nabla::is_floating_point(dtype()); }
  inline const Storage& storage() const;
  inline TensorOptions options() const;

  // ---- element access (CPU) -----------------------------------------------------------------
  inline void* data_ptr() const;
  template <class T> T* data_ptr() const;
  template <class T> T* data() const { return data_ptr<T>(); }
  template <class T> T item() const;
  Scalar item() const;
  // The accessor points at this tensor's sizes and strides, so (as in LibTorch) it cannot be
  // taken from a temporary: keep the tensor in a variable.
  template <class T, size_t N> TensorAccessor<T, N> accessor() const&;
  template <class T, size_t N> TensorAccessor<T, N> accessor() && = delete;
  template <class T> std::vector<T> to_vector() const;  // copies, in row-major order

  // ---- autograd -----------------------------------------------------------------------------
  const Tensor& requires_grad_(bool requires_grad = true) const;
  inline bool requires_grad() const;
  const Tensor& grad() const;
  Tensor& mutable_grad() const;  // as LibTorch: the handle is const, the slot is not
  void set_grad(const Tensor& g) const;
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false, bool create_graph = false) const;
  Tensor detach() const;
  const Tensor& detach_() const;
  inline bool is_leaf() const;
  inline std::shared_ptr<autograd::Node> grad_fn() const;
  void retain_grad() const;
  bool retains_grad() const;
  inline uint32_t _version() const;

  // ---- views (share storage) ----------------------------------------------------------------
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  // LibTorch's single-int shape: x.view(-1), x.reshape(n) (braced lists take the Shape overloads)
  template <class I>
    requires(::std::integral<I> && !::std::same_as<I, bool>)
  Tensor view(I n) const { return view(Shape{static_cast<int64_t>(n)}); }
  template <class I>
    requires(::std::integral<I> && !::std::same_as<I, bool>)
  Tensor reshape(I n) const { return reshape(Shape{static_cast<int64_t>(n)}); }
  Tensor permute(const Dims& dims) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, std::optional<int64_t> start = std::nullopt, std::optional<int64_t> end = std::nullopt,
               int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor operator[](int64_t index) const { return select(0, index); }
  Tensor expand(const Shape& shape) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor repeat(const Shape& repeats) const;
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor view_as(const Tensor& other) const { return view(other.sizes()); }
  Tensor reshape_as(const Tensor& other) const { return reshape(other.sizes()); }
  std::vector<Tensor> split(int64_t split_size, int64_t dim = 0) const;
  std::vector<Tensor> chunk(int64_t chunks, int64_t dim = 0) const;
  std::vector<Tensor> unbind(int64_t dim = 0) const;

  // ---- copies and conversion ----------------------------------------------------------------
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor to(Device device, DType dtype) const;
  Tensor cpu() const { return to(Device::cpu()); }
  Tensor cuda(int index = 0) const { return to(Device::cuda(index)); }
  const Tensor& copy_(const Tensor& src) const;
  const Tensor& fill_(Scalar value) const;
  const Tensor& uniform_(double from = 0.0, double to = 1.0) const;
  const Tensor& normal_(double mean = 0.0, double std = 1.0) const;
  const Tensor& zero_() const;

  // ---- elementwise ----------------------------------------------------------------------------
  Tensor add(const Tensor& other, Scalar alpha = 1) const;
  Tensor sub(const Tensor& other, Scalar alpha = 1) const;
  Tensor mul(const Tensor& other) const;
  Tensor div(const Tensor& other) const;
  Tensor pow(const Tensor& exponent) const;
  Tensor pow(Scalar exponent) const;
  Tensor maximum(const Tensor& other) const;
  Tensor minimum(const Tensor& other) const;
  Tensor neg() const;
  Tensor exp() const;
  Tensor log() const;
  Tensor log1p() const;
  Tensor sqrt() const;
  Tensor rsqrt() const;
  Tensor abs() const;
  Tensor sign() const;
  Tensor sin() const;
  Tensor cos() const;
  Tensor tanh() const;
  Tensor sigmoid() const;
  Tensor relu() const;
  Tensor gelu(const std::string& approximate = "none") const;
  Tensor silu() const;
  Tensor erf() const;
  Tensor reciprocal() const;
  Tensor square() const;
  Tensor clamp(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) const;
  Tensor clamp_min(Scalar min) const { return clamp(min, std::nullopt); }
  Tensor clamp_max(Scalar max) const { return clamp(std::nullopt, max); }
  Tensor eq(const Tensor& other) const;
  Tensor ne(const Tensor& other) const;
  Tensor lt(const Tensor& other) const;
  Tensor le(const Tensor& other) const;
  Tensor gt(const Tensor& other) const;
  Tensor ge(const Tensor& other) const;
  // against a number, as LibTorch's x.gt(0)
  Tensor eq(Scalar other) const;
  Tensor ne(Scalar other) const;
  Tensor lt(Scalar other) const;
  Tensor le(Scalar other) const;
  Tensor gt(Scalar other) const;
  Tensor ge(Scalar other) const;
  Tensor logical_not() const;
  Tensor logical_and(const Tensor& other) const;
  Tensor logical_or(const Tensor& other) const;
  Tensor masked_fill(const Tensor& mask, Scalar value) const;
  Tensor tril(int64_t diagonal = 0) const;
  Tensor triu(int64_t diagonal = 0) const;

  // in place: the result is written into this tensor's memory
  const Tensor& add_(const Tensor& other, Scalar alpha = 1) const;
  const Tensor& sub_(const Tensor& other, Scalar alpha = 1) const;
  const Tensor& mul_(const Tensor& other) const;
  const Tensor& div_(const Tensor& other) const;
  const Tensor& add_(Scalar other) const;
  const Tensor& sub_(Scalar other) const;
  const Tensor& mul_(Scalar other) const;
  const Tensor& div_(Scalar other) const;
  const Tensor& pow_(Scalar exponent) const;
  const Tensor& neg_() const;
  const Tensor& exp_() const;
  const Tensor& log_() const;
  const Tensor& sqrt_() const;
  const Tensor& abs_() const;
  const Tensor& tanh_() const;
  const Tensor& sigmoid_() const;
  const Tensor& relu_() const;
  const Tensor& clamp_(std::optional<Scalar> min, std::optional<Scalar> max = std::nullopt) const;
  const Tensor& masked_fill_(const Tensor& mask, Scalar value) const;
  const Tensor& tril_(int64_t diagonal = 0) const;
  const Tensor& triu_(int64_t diagonal = 0) const;

  // ---- reductions -----------------------------------------------------------------------------
  Tensor sum() const;
  Tensor sum(const Dims& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Dims& dims, bool keepdim = false) const;
  Tensor prod() const;
  Tensor prod(const Dims& dims, bool keepdim = false) const;
  Tensor max() const;
  std::tuple<Tensor, Tensor> max(int64_t dim, bool keepdim = false) const;
  Tensor min() const;
  std::tuple<Tensor, Tensor> min(int64_t dim, bool keepdim = false) const;
  Tensor amax(const Dims& dims, bool keepdim = false) const;
  Tensor amin(const Dims& dims, bool keepdim = false) const;
  Tensor norm(double p = 2.0) const;
  Tensor norm(double p, const Dims& dims, bool keepdim = false) const;
  Tensor all() const;
  Tensor all(int64_t dim, bool keepdim = false) const;
  Tensor any() const;
  Tensor any(int64_t dim, bool keepdim = false) const;
  Tensor isclose(const Tensor& other, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false) const;
  bool allclose(const Tensor& other, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false) const;
  bool equal(const Tensor& other) const;
  Tensor argmax(std::optional<int64_t> dim = std::nullopt, bool keepdim = false) const;
  Tensor argmin(std::optional<int64_t> dim = std::nullopt, bool keepdim = false) const;
  // LibTorch's overload set. An integer argument is a dim, as in LibTorch (x.var(1) reduces
  // over dim 1; without the integral overload 1 would convert to `bool unbiased`), and a bool
  // is `unbiased`. correction: divide by N - correction (nullopt means 1).
  Tensor var(bool unbiased = true) const;
  template <class I>
    requires(::std::integral<I> && !::std::same_as<I, bool>)
  Tensor var(I dim) const { return var(Dims(static_cast<int64_t>(dim))); }
  Tensor var(const Dims& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor var(const Dims& dims, ::std::optional<int64_t> correction, bool keepdim = false) const;
  Tensor std(bool unbiased = true) const;
  template <class I>
    requires(::std::integral<I> && !::std::same_as<I, bool>)
  Tensor std(I dim) const { return std(Dims(static_cast<int64_t>(dim))); }
  Tensor std(const Dims& dims, bool unbiased = true, bool keepdim = false) const;
  Tensor std(const Dims& dims, ::std::optional<int64_t> correction, bool keepdim = false) const;
  Tensor logsumexp(const Dims& dims, bool keepdim = false) const;
  Tensor softmax(int64_t dim) const;
  Tensor log_softmax(int64_t dim) const;
  Tensor cumsum(int64_t dim, ::std::optional<DType> dtype = ::std::nullopt) const;

  // ---- ordering and sampling (ops/sort.hpp) -------------------------------------------------
  // LibTorch's overloads: sort(dim, descending) and sort(stable, dim, descending); argsort(1)
  // means dim 1 (an integral argument is a dim, a bool is `stable`).
  ::std::tuple<Tensor, Tensor> sort(int64_t dim = -1, bool descending = false) const;
  ::std::tuple<Tensor, Tensor> sort(::std::optional<bool> stable, int64_t dim = -1, bool descending = false) const;
  Tensor argsort(int64_t dim = -1, bool descending = false) const;
  Tensor argsort(bool stable, int64_t dim = -1, bool descending = false) const;
  template <class I>
    requires(::std::integral<I> && !::std::same_as<I, bool>)
  Tensor argsort(I dim, bool descending = false) const { return argsort(static_cast<int64_t>(dim), descending); }
  ::std::tuple<Tensor, Tensor> topk(int64_t k, int64_t dim = -1, bool largest = true, bool sorted = true) const;
  Tensor multinomial(int64_t num_samples, bool replacement = false,
                     ::std::optional<::std::reference_wrapper<Generator>> generator = ::std::nullopt) const;

  // ---- linear algebra and indexing ------------------------------------------------------------
  Tensor matmul(const Tensor& other) const;
  Tensor mm(const Tensor& other) const;
  Tensor bmm(const Tensor& mat2) const;
  Tensor addmm(const Tensor& mat1, const Tensor& mat2, Scalar beta = 1, Scalar alpha = 1) const;
  Tensor baddbmm(const Tensor& batch1, const Tensor& batch2, Scalar beta = 1, Scalar alpha = 1) const;
  Tensor index_select(int64_t dim, const Tensor& index) const;
  Tensor gather(int64_t dim, const Tensor& index) const;
  Tensor scatter_add(int64_t dim, const Tensor& index, const Tensor& src) const;
  const Tensor& scatter_add_(int64_t dim, const Tensor& index, const Tensor& src) const;
  Tensor index_add(int64_t dim, const Tensor& index, const Tensor& source) const;

  // ---- printing -------------------------------------------------------------------------------
  std::string str() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

using TensorList = std::vector<Tensor>;

// Autograd state of a tensor; allocated only for tensors that take part in autograd.
struct AutogradMeta {
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;         // null for leaves
  std::weak_ptr<autograd::Node> grad_accumulator;  // leaves: the node that sums into .grad
  bool requires_grad = false;
  bool retains_grad = false;
  // Leaves: called after each gradient is accumulated into .grad, in registration order
  // (autograd::register_post_accumulate_grad_hook; DistributedDataParallel's trigger).
  std::vector<std::pair<uint64_t, std::function<void(const Tensor&)>>> post_accumulate_grad_hooks;
};

struct TensorImpl {
  Storage storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;
  int64_t numel = 0;
  DType dtype = kFloat32;
  bool is_view = false;            // shares storage with another tensor made by a view op
  bool is_wrapped_number = false;  // a Scalar turned into a 0-dim tensor (affects promotion)
  std::unique_ptr<AutogradMeta> autograd;

  void* data() const { return static_cast<char*>(storage->data) + offset * static_cast<int64_t>(element_size(dtype)); }
  AutogradMeta& autograd_meta() {
    if (!autograd) autograd = std::make_unique<AutogradMeta>();
    return *autograd;
  }
};

namespace detail {
inline void check_defined(const Tensor& t, const char* op) {
  NABLA_CHECK(t.defined(), ValueError, op, ": got an undefined tensor");
}
// "[2, 3] float32 cpu": how error messages describe a tensor.
inline std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return shape_str(t.sizes()) + " " + dtype_name(t.dtype()) + " " + t.device().str();
}

// A new tensor over `storage` (no data touched).
inline Tensor make_tensor(Storage storage, int64_t offset, Shape shape, Strides strides, DType dtype) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->offset = offset;
  impl->numel = numel_of(shape);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}
}  // namespace detail

// ---- inline metadata accessors --------------------------------------------------------------

inline const Shape& Tensor::sizes() const { return impl_->shape; }
// A 0-dim tensor has no sizes or strides (wrap_dim lets dim 0 / -1 through for rank 0).
inline int64_t Tensor::size(int64_t d) const {
  NABLA_CHECK(dim() > 0, IndexError, "size: dimension ", d, " out of range for a tensor of rank 0 (", detail::describe(*this), ")");
  return impl_->shape[wrap_dim(d, dim(), "size")];
}
inline const Strides& Tensor::strides() const { return impl_->strides; }
inline int64_t Tensor::stride(int64_t d) const {
  NABLA_CHECK(dim() > 0, IndexError, "stride: dimension ", d, " out of range for a tensor of rank 0 (", detail::describe(*this), ")");
  return impl_->strides[wrap_dim(d, dim(), "stride")];
}
inline int64_t Tensor::dim() const { return static_cast<int64_t>(impl_->shape.size()); }
inline int64_t Tensor::numel() const { return impl_->numel; }
inline DType Tensor::dtype() const { return impl_->dtype; }
inline Device Tensor::device() const { return impl_->storage->device; }
inline int64_t Tensor::storage_offset() const { return impl_->offset; }
inline const Storage& Tensor::storage() const { return impl_->storage; }
inline TensorOptions Tensor::options() const { return TensorOptions(dtype()).device(device()); }
inline void* Tensor::data_ptr() const { return impl_->data(); }
inline bool Tensor::requires_grad() const { return impl_->autograd && impl_->autograd->requires_grad; }
inline bool Tensor::is_leaf() const { return !impl_->autograd || !impl_->autograd->grad_fn; }
inline std::shared_ptr<autograd::Node> Tensor::grad_fn() const {
  return impl_->autograd ? impl_->autograd->grad_fn : nullptr;
}
inline uint32_t Tensor::_version() const { return impl_->storage->version; }

inline bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& sh = impl_->shape;
  const auto& st = impl_->strides;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (sh[i] == 0) return true;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

template <class T>
T* Tensor::data_ptr() const {
  detail::check_defined(*this, "data_ptr");
  NABLA_CHECK(dtype_of_v<T> == dtype(), DTypeError, "data_ptr<", dtype_name(dtype_of_v<T>),
              ">: tensor has dtype ", dtype_name(dtype()), " (", detail::describe(*this), ")");
  return static_cast<T*>(data_ptr());
}

// Typed, bounds-unchecked view of a CPU tensor's elements: t.accessor<float, 2>()[i][j].
template <class T, size_t N>
class TensorAccessor {
 public:
  TensorAccessor(T* data, const int64_t* sizes, const int64_t* strides) : data_(data), sizes_(sizes), strides_(strides) {}
  decltype(auto) operator[](int64_t i) const {
    if constexpr (N == 1) return data_[i * strides_[0]];
    else return TensorAccessor<T, N - 1>(data_ + i * strides_[0], sizes_ + 1, strides_ + 1);
  }
  int64_t size(size_t d) const { return sizes_[d]; }
  int64_t stride(size_t d) const { return strides_[d]; }
  T* data() const { return data_; }

 private:
  T* data_;
  const int64_t* sizes_;
  const int64_t* strides_;
};

template <class T, size_t N>
TensorAccessor<T, N> Tensor::accessor() const& {
  NABLA_CHECK(static_cast<size_t>(dim()) == N, ShapeError, "accessor<", dtype_name(dtype_of_v<T>), ", ", N,
              ">: tensor has rank ", dim(), " (", detail::describe(*this), ")");
  NABLA_CHECK(is_cpu(), DeviceError, "accessor: needs a cpu tensor, got ", detail::describe(*this));
  return TensorAccessor<T, N>(data_ptr<T>(), sizes().data(), strides().data());
}

}  // namespace nabla

namespace nabla {
// Operators on tensors (defined, inline, in ops/operators.hpp). Declared here, as Tensor's
// methods are in the class, so that backward rules anywhere in ops/ can use them; the program
// gets their definitions from <nabla/nabla.hpp> (ops/all.hpp).
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, Scalar b);
Tensor operator-(const Tensor& a, Scalar b);
Tensor operator*(const Tensor& a, Scalar b);
Tensor operator/(const Tensor& a, Scalar b);
Tensor operator+(Scalar a, const Tensor& b);
Tensor operator-(Scalar a, const Tensor& b);
Tensor operator*(Scalar a, const Tensor& b);
Tensor operator/(Scalar a, const Tensor& b);
Tensor operator-(const Tensor& a);
// TensorOptions(dtype=float32, device=cpu, requires_grad=false), as LibTorch prints them.
inline std::ostream& operator<<(std::ostream& os, const TensorOptions& o) {
  return os << "TensorOptions(dtype=" << o.dtype_ << ", device=" << o.device_
            << ", requires_grad=" << (o.requires_grad_ ? "true" : "false") << ")";
}

}  // namespace nabla
