#pragma once
// The one line an op runs at its entry to take part in autocast (amp/autocast.hpp holds the
// state and the policy tables):
//
//   inline Tensor matmul(const Tensor& a, const Tensor& b) {
//     if (auto ac = NABLA_AUTOCAST(matmul, a, b)) return matmul(ac[0], ac[1]);
//     ...
//
// When autocast is on for the inputs' device type and the op is on that device type's list,
// `ac` holds the inputs cast as the list says and keeps autocast off for that device type while
// the op runs again on them (so the op's own building blocks are not cast a second time, as
// PyTorch's ExcludeDispatchKeyGuard); otherwise it is empty and the op goes on. With autocast
// off the cost is one thread-local read. The policy is found at compile time from the op's
// name, so a misspelt name is a compile error rather than an op silently left out.

#include <cstdint>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../amp/autocast.hpp"
#include "copy.hpp"

namespace nabla {
namespace amp {
namespace detail {

// Both device types' policies of one op in 16 bits (a template argument every compiler takes).
constexpr uint16_t op_policies(std::string_view op) {
  return static_cast<uint16_t>(static_cast<unsigned>(cast_policy(DeviceType::CPU, op)) |
                               (static_cast<unsigned>(cast_policy(DeviceType::CUDA, op)) << 8));
}
constexpr CastPolicy policy_for(uint16_t packed, DeviceType t) {
  return static_cast<CastPolicy>(t == DeviceType::CUDA ? packed >> 8 : packed & 0xff);
}

// Eligible for a cast: a floating-point tensor of the device type autocast is working on, other
// than float64 (never touched).
inline bool eligible(const Tensor& t, DeviceType device_type) {
  return t.defined() && t.is_floating_point() && t.dtype() != kFloat64 && t.device().type == device_type;
}

// t in `to` (with autograd, so gradients flow back to t in t's dtype), through the cast cache
// for float32 weights cast to the lower-precision dtype.
inline Tensor cached_cast(DType to, const Tensor& t, DeviceType device_type) {
  if (!eligible(t, device_type) || t.dtype() == to) return t;
  const bool cacheable = to == get_autocast_dtype(device_type) && t.dtype() == kFloat32 && t.requires_grad() &&
                         t.is_leaf() && !t.impl()->is_view && is_autocast_cache_enabled();
  if (!cacheable) return t.to(to);
  const bool with_grad = GradMode::is_enabled();
  auto& cache = cast_cache();
  auto it = cache.find(t.impl());
  if (it != cache.end() && !it->second.source.expired() && it->second.version == t._version() &&
      it->second.with_grad == with_grad && it->second.cast.dtype() == to)
    return it->second.cast;
  Tensor c = t.to(to);
  cache[t.impl()] = CachedCast{t.impl_ptr(), c, t._version(), with_grad};
  return c;
}

inline void refuse_banned(const char* op) {
  throw Error(::nabla::detail::cat(
      "nabla::", op, ": unsafe to autocast (as torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss "
      "under CUDA autocast). Many models use a sigmoid layer right before the binary cross entropy layer; combine "
      "the two with binary_cross_entropy_with_logits (or nn::BCEWithLogitsLoss), which is safe to autocast."));
}

// An op's inputs as autocast wants them, and autocast kept off for their device type while the
// holder lives (see the top of the file).
inline void collect(std::vector<Tensor>& out, const Tensor& t) { out.push_back(t); }
inline void collect(std::vector<Tensor>& out, const std::vector<Tensor>& ts) { out.insert(out.end(), ts.begin(), ts.end()); }

class AutocastArgs {
 public:
  // `policies`: op_policies(op) as a compile-time constant; args: Tensors or std::vector<Tensor>.
  template <uint16_t Policies, class... Args>
  AutocastArgs(std::integral_constant<uint16_t, Policies>, const char* op, const Args&... args) {
    static_assert(Policies != 0, "NABLA_AUTOCAST: the op is on no autocast list of either device type");
    if (!state().any_active) return;  // the common case: one thread-local read
    (collect(args_, args), ...);
    DeviceType dt = DeviceType::CPU;
    for (const Tensor& t : args_)
      if (t.defined() && t.is_cuda()) dt = DeviceType::CUDA;
    const int i = device_index(dt);
    if (!state().enabled[i] || state().excluded[i]) return;
    apply(policy_for(Policies, dt == DeviceType::CPU ? state().cpu_tensors_table : dt), dt, op);
  }
  AutocastArgs(const AutocastArgs&) = delete;
  AutocastArgs& operator=(const AutocastArgs&) = delete;
  ~AutocastArgs() {
    if (!active_) return;
    state().excluded[device_index(device_)] = was_excluded_;
    state().refresh();
  }

  explicit operator bool() const { return active_; }
  const Tensor& operator[](size_t i) const { return args_[i]; }
  const std::vector<Tensor>& list() const { return args_; }

  // Decides, and casts args_ (the op's tensor arguments in order).
  void apply(CastPolicy policy, DeviceType device_type, const char* op) {
    if (policy == CastPolicy::None) return;
    if (policy == CastPolicy::Banned) refuse_banned(op);
    DType to = kFloat32;
    switch (policy) {
      case CastPolicy::LowerPrecisionFp: to = get_autocast_dtype(device_type); break;
      case CastPolicy::Fp32: break;
      case CastPolicy::Fp32SetOptDtype:
      case CastPolicy::Fp32AppendDtype:
        // only when the first input is eligible; the result is then float32 (dtype=float)
        if (args_.empty() || !eligible(args_[0], device_type)) return;
        break;
      case CastPolicy::Promote: to = promote_type(device_type); break;
      default: return;
    }
    for (Tensor& t : args_) t = cached_cast(to, t, device_type);
    device_ = device_type;
    was_excluded_ = state().excluded[device_index(device_type)];
    state().excluded[device_index(device_type)] = true;
    state().refresh();
    active_ = true;
  }

 private:
  // PyTorch's promote rule: float32 if any eligible input is float32, else the lower-precision
  // dtype; a second 16-bit dtype among the inputs is an error.
  DType promote_type(DeviceType device_type) const {
    const DType lower = get_autocast_dtype(device_type);
    DType current = lower;
    for (const Tensor& t : args_) {
      if (!eligible(t, device_type)) continue;
      if (t.dtype() == kFloat32 || current == kFloat32) current = kFloat32;
      else NABLA_CHECK(t.dtype() == lower, DTypeError, "autocast: an input of dtype ", dtype_name(t.dtype()),
                       " meets autocast's ", dtype_name(lower), " in a promoting op; cast it first");
    }
    return current;
  }

  std::vector<Tensor> args_;
  bool active_ = false;
  bool was_excluded_ = false;
  DeviceType device_ = DeviceType::CPU;
};

}  // namespace detail
}  // namespace amp
}  // namespace nabla

// `if (auto ac = NABLA_AUTOCAST(op, tensors...)) return op(ac[0], ..., other args);`
// `op` is aten's name of the op (its entry in the tables of amp/autocast.hpp). Arguments are
// Tensors or one std::vector<Tensor> (ac.list()).
// The first line of an op on no autocast list that is a composite of ops on one (var from sum,
// adaptive pooling from matmul): PyTorch runs a native kernel for such an op, in its inputs'
// dtype, so its building blocks must not be cast one by one.
#define NABLA_NO_AUTOCAST() const ::nabla::amp::detail::AutocastExcluded nabla_autocast_excluded_

#define NABLA_AUTOCAST(op, ...)                                                                  \
  ::nabla::amp::detail::AutocastArgs(std::integral_constant<uint16_t, ::nabla::amp::detail::op_policies(#op)>{}, #op, \
                                     __VA_ARGS__)
