#pragma once
// Autocast (automatic mixed precision) as torch.autocast: the per-thread state, the RAII guard
// nabla::amp::autocast, the cast cache, and the per-device-type policy tables. The tables are
// PyTorch's (aten/src/ATen/autocast_mode.{h,cpp}, 2.5): an op on a list runs with its
// floating-point inputs cast as the list says; an op on no list runs in its inputs' dtypes. An
// op consults them in one line at its entry (ops/autocast.hpp); nothing here runs an op.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "../core/device.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace nabla {
namespace amp {

// What an op on a list does to its floating-point inputs on that device type (PyTorch's
// at::autocast::CastPolicy, plus None for "on no list" and Banned for binary_cross_entropy on
// CUDA, which PyTorch refuses to autocast).
enum class CastPolicy : uint8_t {
  None,
  LowerPrecisionFp,  // to the autocast dtype (CUDA: float16, CPU: bfloat16 by default)
  Fp32,              // to float32
  Fp32SetOptDtype,   // in float32 when the first input is eligible (sum, softmax, ...: dtype=float)
  Fp32AppendDtype,   // norm: in float32 with a float32 result
  Promote,           // to the widest floating dtype among the inputs
  Banned,            // an error under autocast
};

constexpr const char* cast_policy_name(CastPolicy p) {
  switch (p) {
    case CastPolicy::None: return "none";
    case CastPolicy::LowerPrecisionFp: return "lower_precision_fp";
    case CastPolicy::Fp32: return "fp32";
    case CastPolicy::Fp32SetOptDtype: return "fp32_set_opt_dtype";
    case CastPolicy::Fp32AppendDtype: return "fp32_append_dtype";
    case CastPolicy::Promote: return "promote";
    case CastPolicy::Banned: return "banned";
  }
  return "?";
}

struct CastPolicyEntry {
  std::string_view op;  // PyTorch's aten name (overloads share one entry)
  CastPolicy policy;
};

// ---- the tables ---------------------------------------------------------------------------------
// Every op of PyTorch's lists, whether nabla has it yet or not, so that an op added later picks
// its policy up by name. nabla's names differ in one place: cross_entropy is cross_entropy_loss
// here, as in aten; interpolate looks up the upsample_* op of its mode.

namespace detail {
using P = CastPolicy;
inline constexpr CastPolicyEntry kCudaCastPolicies[] = {
    // lower_precision_fp (AT_FORALL_LOWER_PRECISION_FP, cudnn_convolution*)
    {"_convolution", P::LowerPrecisionFp}, {"conv1d", P::LowerPrecisionFp}, {"conv2d", P::LowerPrecisionFp},
    {"conv3d", P::LowerPrecisionFp}, {"conv_tbc", P::LowerPrecisionFp}, {"conv_transpose1d", P::LowerPrecisionFp},
    {"conv_transpose2d", P::LowerPrecisionFp}, {"conv_transpose3d", P::LowerPrecisionFp},
    {"convolution", P::LowerPrecisionFp}, {"prelu", P::LowerPrecisionFp}, {"addmm", P::LowerPrecisionFp},
    {"addmv", P::LowerPrecisionFp}, {"addr", P::LowerPrecisionFp}, {"matmul", P::LowerPrecisionFp},
    {"einsum", P::LowerPrecisionFp}, {"mm", P::LowerPrecisionFp}, {"mv", P::LowerPrecisionFp},
    {"linalg_vecdot", P::LowerPrecisionFp}, {"linear", P::LowerPrecisionFp}, {"addbmm", P::LowerPrecisionFp},
    {"baddbmm", P::LowerPrecisionFp}, {"bmm", P::LowerPrecisionFp}, {"chain_matmul", P::LowerPrecisionFp},
    {"linalg_multi_dot", P::LowerPrecisionFp}, {"_thnn_fused_lstm_cell", P::LowerPrecisionFp},
    {"_thnn_fused_gru_cell", P::LowerPrecisionFp}, {"lstm_cell", P::LowerPrecisionFp},
    {"gru_cell", P::LowerPrecisionFp}, {"rnn_tanh_cell", P::LowerPrecisionFp}, {"rnn_relu_cell", P::LowerPrecisionFp},
    {"_scaled_dot_product_flash_attention", P::LowerPrecisionFp},
    {"scaled_dot_product_attention", P::LowerPrecisionFp}, {"cudnn_convolution", P::LowerPrecisionFp},
    {"cudnn_convolution_transpose", P::LowerPrecisionFp},
    // fp32 (AT_FORALL_FP32)
    {"acos", P::Fp32}, {"asin", P::Fp32}, {"cosh", P::Fp32}, {"erfinv", P::Fp32}, {"exp", P::Fp32},
    {"expm1", P::Fp32}, {"log", P::Fp32}, {"log10", P::Fp32}, {"log2", P::Fp32}, {"log1p", P::Fp32},
    {"reciprocal", P::Fp32}, {"rsqrt", P::Fp32}, {"sinh", P::Fp32}, {"tan", P::Fp32}, {"pow", P::Fp32},
    {"softplus", P::Fp32}, {"layer_norm", P::Fp32}, {"native_layer_norm", P::Fp32}, {"group_norm", P::Fp32},
    {"frobenius_norm", P::Fp32}, {"nuclear_norm", P::Fp32}, {"cosine_similarity", P::Fp32},
    {"poisson_nll_loss", P::Fp32}, {"cosine_embedding_loss", P::Fp32}, {"nll_loss", P::Fp32},
    {"nll_loss2d", P::Fp32}, {"hinge_embedding_loss", P::Fp32}, {"kl_div", P::Fp32}, {"l1_loss", P::Fp32},
    {"smooth_l1_loss", P::Fp32}, {"huber_loss", P::Fp32}, {"mse_loss", P::Fp32},
    {"margin_ranking_loss", P::Fp32}, {"multilabel_margin_loss", P::Fp32}, {"soft_margin_loss", P::Fp32},
    {"triplet_margin_loss", P::Fp32}, {"multi_margin_loss", P::Fp32},
    {"binary_cross_entropy_with_logits", P::Fp32}, {"dist", P::Fp32}, {"pdist", P::Fp32}, {"cdist", P::Fp32},
    {"renorm", P::Fp32}, {"logsumexp", P::Fp32}, {"upsample_nearest1d", P::Fp32},
    {"_upsample_nearest_exact1d", P::Fp32}, {"upsample_nearest2d", P::Fp32},
    {"_upsample_nearest_exact2d", P::Fp32}, {"upsample_nearest3d", P::Fp32},
    {"_upsample_nearest_exact3d", P::Fp32}, {"upsample_linear1d", P::Fp32}, {"upsample_bilinear2d", P::Fp32},
    {"_upsample_bilinear2d_aa", P::Fp32}, {"upsample_trilinear3d", P::Fp32}, {"upsample_bicubic2d", P::Fp32},
    {"_upsample_bicubic2d_aa", P::Fp32},
    // fp32_set_opt_dtype (AT_FORALL_FP32_SET_OPT_DTYPE)
    {"prod", P::Fp32SetOptDtype}, {"softmax", P::Fp32SetOptDtype}, {"log_softmax", P::Fp32SetOptDtype},
    {"cumprod", P::Fp32SetOptDtype}, {"cumsum", P::Fp32SetOptDtype}, {"linalg_vector_norm", P::Fp32SetOptDtype},
    {"linalg_matrix_norm", P::Fp32SetOptDtype}, {"sum", P::Fp32SetOptDtype},
    // fp32_append_dtype (AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE)
    {"norm", P::Fp32AppendDtype},
    // promote (AT_FORALL_PROMOTE)
    {"addcdiv", P::Promote}, {"addcmul", P::Promote}, {"atan2", P::Promote}, {"bilinear", P::Promote},
    {"cross", P::Promote}, {"dot", P::Promote}, {"vdot", P::Promote}, {"grid_sampler", P::Promote},
    {"index_put", P::Promote}, {"tensordot", P::Promote}, {"scatter_add", P::Promote},
    // binary_cross_entropy_banned
    {"binary_cross_entropy", P::Banned},
};

inline constexpr CastPolicyEntry kCpuCastPolicies[] = {
    // lower_precision_fp
    {"conv1d", P::LowerPrecisionFp}, {"conv2d", P::LowerPrecisionFp}, {"conv3d", P::LowerPrecisionFp},
    {"bmm", P::LowerPrecisionFp}, {"mm", P::LowerPrecisionFp}, {"linalg_vecdot", P::LowerPrecisionFp},
    {"baddbmm", P::LowerPrecisionFp}, {"addmm", P::LowerPrecisionFp}, {"_addmm_activation", P::LowerPrecisionFp},
    {"addbmm", P::LowerPrecisionFp}, {"linear", P::LowerPrecisionFp}, {"_convolution", P::LowerPrecisionFp},
    {"matmul", P::LowerPrecisionFp}, {"conv_tbc", P::LowerPrecisionFp}, {"mkldnn_rnn_layer", P::LowerPrecisionFp},
    {"conv_transpose1d", P::LowerPrecisionFp}, {"conv_transpose2d", P::LowerPrecisionFp},
    {"conv_transpose3d", P::LowerPrecisionFp}, {"prelu", P::LowerPrecisionFp},
    {"scaled_dot_product_attention", P::LowerPrecisionFp}, {"_native_multi_head_attention", P::LowerPrecisionFp},
    // fp32
    {"avg_pool3d", P::Fp32}, {"binary_cross_entropy", P::Fp32}, {"grid_sampler", P::Fp32}, {"polar", P::Fp32},
    {"prod", P::Fp32}, {"quantile", P::Fp32}, {"nanquantile", P::Fp32}, {"stft", P::Fp32}, {"cdist", P::Fp32},
    {"grid_sampler_2d", P::Fp32}, {"_grid_sampler_2d_cpu_fallback", P::Fp32}, {"grid_sampler_3d", P::Fp32},
    {"trace", P::Fp32}, {"view_as_complex", P::Fp32}, {"cholesky", P::Fp32}, {"cholesky_inverse", P::Fp32},
    {"cholesky_solve", P::Fp32}, {"inverse", P::Fp32}, {"lu_solve", P::Fp32}, {"orgqr", P::Fp32},
    {"ormqr", P::Fp32}, {"pinverse", P::Fp32}, {"max_pool3d", P::Fp32}, {"max_unpool2d", P::Fp32},
    {"max_unpool3d", P::Fp32}, {"adaptive_avg_pool3d", P::Fp32}, {"reflection_pad1d", P::Fp32},
    {"reflection_pad2d", P::Fp32}, {"replication_pad1d", P::Fp32}, {"replication_pad2d", P::Fp32},
    {"replication_pad3d", P::Fp32}, {"mse_loss", P::Fp32}, {"cosine_embedding_loss", P::Fp32},
    {"nll_loss", P::Fp32}, {"nll_loss2d", P::Fp32}, {"hinge_embedding_loss", P::Fp32},
    {"poisson_nll_loss", P::Fp32}, {"smooth_l1_loss", P::Fp32}, {"cross_entropy_loss", P::Fp32},
    {"l1_loss", P::Fp32}, {"huber_loss", P::Fp32}, {"margin_ranking_loss", P::Fp32},
    {"soft_margin_loss", P::Fp32}, {"triplet_margin_loss", P::Fp32}, {"multi_margin_loss", P::Fp32},
    {"ctc_loss", P::Fp32}, {"kl_div", P::Fp32}, {"multilabel_margin_loss", P::Fp32},
    {"binary_cross_entropy_with_logits", P::Fp32}, {"fft_fft", P::Fp32}, {"fft_ifft", P::Fp32},
    {"fft_fft2", P::Fp32}, {"fft_ifft2", P::Fp32}, {"fft_fftn", P::Fp32}, {"fft_ifftn", P::Fp32},
    {"fft_rfft", P::Fp32}, {"fft_irfft", P::Fp32}, {"fft_rfft2", P::Fp32}, {"fft_irfft2", P::Fp32},
    {"fft_rfftn", P::Fp32}, {"fft_irfftn", P::Fp32}, {"fft_hfft", P::Fp32}, {"fft_ihfft", P::Fp32},
    {"linalg_cond", P::Fp32}, {"linalg_matrix_rank", P::Fp32}, {"linalg_solve", P::Fp32},
    {"linalg_cholesky", P::Fp32}, {"linalg_svdvals", P::Fp32}, {"linalg_eigvals", P::Fp32},
    {"linalg_eigvalsh", P::Fp32}, {"linalg_inv", P::Fp32}, {"linalg_householder_product", P::Fp32},
    {"linalg_tensorinv", P::Fp32}, {"linalg_tensorsolve", P::Fp32}, {"fake_quantize_per_tensor_affine", P::Fp32},
    {"geqrf", P::Fp32}, {"_lu_with_info", P::Fp32}, {"qr", P::Fp32}, {"svd", P::Fp32},
    {"triangular_solve", P::Fp32}, {"fractional_max_pool2d", P::Fp32}, {"fractional_max_pool3d", P::Fp32},
    {"adaptive_max_pool3d", P::Fp32}, {"multilabel_margin_loss_forward", P::Fp32}, {"linalg_qr", P::Fp32},
    {"linalg_cholesky_ex", P::Fp32}, {"linalg_svd", P::Fp32}, {"linalg_eig", P::Fp32}, {"linalg_eigh", P::Fp32},
    {"linalg_lstsq", P::Fp32}, {"linalg_inv_ex", P::Fp32},
    // promote
    {"stack", P::Promote}, {"cat", P::Promote}, {"index_copy", P::Promote},
};

template <size_t N>
constexpr CastPolicy find_policy(const CastPolicyEntry (&table)[N], std::string_view op) {
  for (const auto& e : table)
    if (e.op == op) return e.policy;
  return CastPolicy::None;
}
}  // namespace detail

// The policy of `op` (aten's name) on `device_type`; None when the op is on no list there.
constexpr CastPolicy cast_policy(DeviceType device_type, std::string_view op) {
  return device_type == DeviceType::CUDA ? detail::find_policy(detail::kCudaCastPolicies, op)
                                         : detail::find_policy(detail::kCpuCastPolicies, op);
}
// The whole table of a device type, for tests and documentation.
inline std::pair<const CastPolicyEntry*, size_t> cast_policy_table(DeviceType device_type) {
  if (device_type == DeviceType::CUDA) return {detail::kCudaCastPolicies, std::size(detail::kCudaCastPolicies)};
  return {detail::kCpuCastPolicies, std::size(detail::kCpuCastPolicies)};
}

// ---- per-thread state ---------------------------------------------------------------------------

namespace detail {
inline int device_index(DeviceType t) { return t == DeviceType::CUDA ? 1 : 0; }

struct AutocastState {
  std::array<bool, 2> enabled{false, false};
  std::array<DType, 2> dtype{kBFloat16, kFloat16};  // CPU, CUDA: PyTorch's defaults
  std::array<bool, 2> excluded{false, false};       // inside an op autocast already handled, or backward
  bool cache_enabled = true;
  int nesting = 0;
  // Whose table CPU tensors follow: CUDA's lets the tests check the CUDA policies, with CPU
  // tensors, on a machine without a GPU (TablesFor below). Always CPU otherwise.
  DeviceType cpu_tensors_table = DeviceType::CPU;
  bool any_active = false;  // some device type is enabled and not excluded: the one flag ops read
  void refresh() {
    any_active = (enabled[0] && !excluded[0]) || (enabled[1] && !excluded[1]);
  }
};
inline AutocastState& state() {
  thread_local AutocastState s;
  return s;
}

// The cast cache: lower-precision copies of float32 leaves that require grad (the weights),
// keyed by their TensorImpl, so a weight used by several ops in one forward pass is cast once.
// Beyond PyTorch's heuristic, an entry is also dropped when the weight was changed in place
// since (an optimizer step inside one autocast region) or when grad mode differs from the cast's
// (a cast made under no_grad has no history, so reusing it with grad would cut the weight off).
struct CachedCast {
  std::weak_ptr<TensorImpl> source;  // keeps a recycled address from hitting a stale entry
  Tensor cast;
  uint32_t version = 0;
  bool with_grad = false;
};
inline std::unordered_map<const TensorImpl*, CachedCast>& cast_cache() {
  thread_local std::unordered_map<const TensorImpl*, CachedCast> cache;
  return cache;
}

// For tests: CPU tensors follow `table`'s policies while it lives (with the CPU autocast state).
class TablesFor {
 public:
  explicit TablesFor(DeviceType table) : prev_(state().cpu_tensors_table) { state().cpu_tensors_table = table; }
  ~TablesFor() { state().cpu_tensors_table = prev_; }
  TablesFor(const TablesFor&) = delete;
  TablesFor& operator=(const TablesFor&) = delete;

 private:
  DeviceType prev_;
};

inline void check_autocast_dtype(DeviceType device_type, DType dtype) {
  NABLA_CHECK(dtype == kFloat16 || dtype == kBFloat16, ValueError, "autocast: on ", device_type,
              " the lower-precision dtype must be float16 or bfloat16, got ", dtype_name(dtype));
}

// Autocast off for both device types while it lives: the backward pass (its ops run in the
// dtypes autocast chose for the forward ones, as PyTorch's do), and an op on no list built from
// ops on one (NABLA_NO_AUTOCAST). Free when autocast is off.
class AutocastExcluded {
 public:
  AutocastExcluded() : active_(state().any_active) {
    if (!active_) return;
    saved_ = state().excluded;
    state().excluded = {true, true};
    state().refresh();
  }
  ~AutocastExcluded() {
    if (!active_) return;
    state().excluded = saved_;
    state().refresh();
  }
  AutocastExcluded(const AutocastExcluded&) = delete;
  AutocastExcluded& operator=(const AutocastExcluded&) = delete;

 private:
  bool active_;
  std::array<bool, 2> saved_{};
};
}  // namespace detail

inline bool is_autocast_enabled(DeviceType device_type) {
  return detail::state().enabled[detail::device_index(device_type)];
}
inline void set_autocast_enabled(DeviceType device_type, bool enabled) {
  detail::state().enabled[detail::device_index(device_type)] = enabled;
  detail::state().refresh();
}
inline DType get_autocast_dtype(DeviceType device_type) { return detail::state().dtype[detail::device_index(device_type)]; }
inline void set_autocast_dtype(DeviceType device_type, DType dtype) {
  detail::check_autocast_dtype(device_type, dtype);
  detail::state().dtype[detail::device_index(device_type)] = dtype;
}
inline bool is_autocast_cache_enabled() { return detail::state().cache_enabled; }
inline void set_autocast_cache_enabled(bool enabled) { detail::state().cache_enabled = enabled; }
// Drops the cached casts (the outermost autocast guard does it on exit). Per thread.
inline void clear_autocast_cache() { detail::cast_cache().clear(); }
inline int increment_nesting() { return ++detail::state().nesting; }
inline int decrement_nesting() { return --detail::state().nesting; }

// What autocast looks like on this thread, to be put back later (checkpointing recomputes a
// forward pass in the autocast state it first ran in).
struct AutocastSnapshot {
  std::array<bool, 2> enabled{false, false};
  std::array<DType, 2> dtype{kBFloat16, kFloat16};
  bool cache_enabled = true;
};
inline AutocastSnapshot autocast_snapshot() {
  const auto& s = detail::state();
  // an op that autocast already handled runs with its device type excluded: seen from inside,
  // autocast is off there
  return {{s.enabled[0] && !s.excluded[0], s.enabled[1] && !s.excluded[1]}, s.dtype, s.cache_enabled};
}

// torch.autocast as an RAII guard: on `device_type` (kCPU or kCUDA), ops on the lower-precision
// list run in `dtype` (default: bfloat16 on the CPU, float16 on CUDA), ops on the float32 list in
// float32, while it lives. Nestable (an inner guard with enabled=false turns autocast off for
// its scope); the cast cache is dropped when the outermost guard ends. Per thread, as PyTorch's.
//   { nabla::amp::autocast guard(nabla::kCUDA);            // float16
//     loss = loss_fn(model->forward(x), y); }
//   loss.backward();                                       // outside, as PyTorch recommends
class autocast {  // NOLINT(readability-identifier-naming): torch.autocast's spelling
 public:
  explicit autocast(DeviceType device_type, std::optional<DType> dtype = std::nullopt, bool enabled = true,
                    std::optional<bool> cache_enabled = std::nullopt)
      : device_(device_type),
        prev_enabled_(is_autocast_enabled(device_type)),
        prev_dtype_(get_autocast_dtype(device_type)),
        prev_cache_(is_autocast_cache_enabled()) {
    if (dtype) detail::check_autocast_dtype(device_type, *dtype);
    if (dtype) set_autocast_dtype(device_type, *dtype);
    set_autocast_enabled(device_type, enabled);
    if (cache_enabled) set_autocast_cache_enabled(*cache_enabled);
    increment_nesting();
  }
  ~autocast() {
    if (decrement_nesting() == 0) clear_autocast_cache();
    set_autocast_enabled(device_, prev_enabled_);
    detail::state().dtype[detail::device_index(device_)] = prev_dtype_;
    set_autocast_cache_enabled(prev_cache_);
  }
  autocast(const autocast&) = delete;
  autocast& operator=(const autocast&) = delete;

 private:
  DeviceType device_;
  bool prev_enabled_;
  DType prev_dtype_;
  bool prev_cache_;
};

}  // namespace amp

// at::autocast's free functions, for code ported from LibTorch (2.x names, and 1.13's
// is_enabled / set_enabled for CUDA and is_cpu_enabled / set_cpu_enabled).
namespace autocast {
using amp::clear_autocast_cache;
using amp::decrement_nesting;
using amp::get_autocast_dtype;
using amp::increment_nesting;
using amp::is_autocast_cache_enabled;
using amp::is_autocast_enabled;
using amp::set_autocast_cache_enabled;
using amp::set_autocast_dtype;
using amp::set_autocast_enabled;
inline void clear_cache() { amp::clear_autocast_cache(); }
inline bool is_enabled() { return amp::is_autocast_enabled(kCUDA); }
inline void set_enabled(bool on) { amp::set_autocast_enabled(kCUDA, on); }
inline bool is_cpu_enabled() { return amp::is_autocast_enabled(kCPU); }
inline void set_cpu_enabled(bool on) { amp::set_autocast_enabled(kCPU, on); }
inline DType get_autocast_gpu_dtype() { return amp::get_autocast_dtype(kCUDA); }
inline DType get_autocast_cpu_dtype() { return amp::get_autocast_dtype(kCPU); }
inline void set_autocast_gpu_dtype(DType t) { amp::set_autocast_dtype(kCUDA, t); }
inline void set_autocast_cpu_dtype(DType t) { amp::set_autocast_dtype(kCPU, t); }
}  // namespace autocast

}  // namespace nabla
