#pragma once
// Fused optimizer steps on CUDA (multi-tensor apply, as PyTorch's fused/foreach optimizers):
// every parameter of a step is cut into chunks of kChunk elements; a table of tensors (param,
// grad and state pointers, size) and a table of chunks (tensor, chunk index) go to the device
// in one asynchronous copy through the pinned ring, and ONE kernel launch updates everything,
// one block per chunk. float32 only. The math is that of optim/adam.hpp and optim/sgd.hpp
// (their composite steps are the reference), with the scalars prepared on the host in double.

#include "common.cuh"

namespace nabla {
namespace cuda {

struct MtaTensor {
  float* param;
  const float* grad;
  float* state[3];  // Adam: exp_avg, exp_avg_sq, max_exp_avg_sq (or null); SGD: momentum buffer
  int64_t numel;
};
struct MtaChunk {
  int32_t tensor;
  int32_t chunk;
};

constexpr int64_t kMtaChunk = 65536;
constexpr int kMtaThreads = 512;

template <class Op>
__global__ void multi_tensor_apply_kernel(const MtaTensor* __restrict__ tensors, const MtaChunk* __restrict__ chunks,
                                          int64_t nchunks, Op op) {
  for (int64_t b = blockIdx.x; b < nchunks; b += gridDim.x) {
    const MtaChunk ck = chunks[b];
    const MtaTensor t = tensors[ck.tensor];
    const int64_t start = int64_t(ck.chunk) * kMtaChunk;
    const int64_t end = start + kMtaChunk < t.numel ? start + kMtaChunk : t.numel;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) op(t, i);
  }
}

// g = grad (+ wd * p: Adam; AdamW instead scales p by 1 - lr * wd);
// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  (amsgrad: vmax = max(vmax, v), used for v)
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
struct AdamOp {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay, step_size, bias_correction2_sqrt;
  bool decoupled, amsgrad;
  __device__ __forceinline__ void operator()(const MtaTensor& t, int64_t i) const {
    float p = t.param[i], g = t.grad[i];
    if (weight_decay != 0.0f) {
      if (decoupled) p = p * decay;
      else g = g + p * weight_decay;
    }
    const float m = t.state[0][i] * beta1 + g * one_minus_beta1;
    const float v = t.state[1][i] * beta2 + (g * g) * one_minus_beta2;
    t.state[0][i] = m;
    t.state[1][i] = v;
    float second = v;
    if (amsgrad) {
      const float vmax = t.state[2][i];
      second = fn::is_nan(vmax) ? vmax : (fn::is_nan(v) ? v : (vmax > v ? vmax : v));  // NaN-propagating, as maximum()
      t.state[2][i] = second;
    }
    const float denom = sqrtf(second) / bias_correction2_sqrt + eps;
    t.param[i] = p + (m / denom) * (-step_size);
  }
};

// d = grad + wd * p;  buf = momentum * buf + (1 - dampening) * d  (buf = d on the first step);
// d = nesterov ? d + momentum * buf : buf;  p -= lr * d.
struct SgdOp {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool use_momentum, nesterov, first_step;
  __device__ __forceinline__ void operator()(const MtaTensor& t, int64_t i) const {
    const float p = t.param[i];
    float d = t.grad[i];
    if (weight_decay != 0.0f) d = d + p * weight_decay;
    if (use_momentum) {
      const float buf = first_step ? d : t.state[0][i] * momentum + d * one_minus_dampening;
      t.state[0][i] = buf;
      d = nesterov ? d + buf * momentum : buf;
    }
    t.param[i] = p + d * (-lr);
  }
};

// ---- host side ----------------------------------------------------------------------------------

// Checks the parallel lists (each either empty where allowed or as long as params): defined,
// float32, contiguous, one device, matching sizes. False: the caller keeps the composite.
inline bool mta_lists_ok(const TensorList& params, std::initializer_list<const TensorList*> lists, int& device) {
  if (params.empty()) return true;
  device = params[0].device().index;
  auto ok = [&](const Tensor& t, const Tensor& p) {
    return t.defined() && t.is_cuda() && t.device().index == device && t.dtype() == kFloat32 && t.is_contiguous() &&
           t.numel() == p.numel();
  };
  for (const Tensor& p : params)
    if (!ok(p, p)) return false;
  for (const TensorList* l : lists) {
    if (l->size() != params.size()) return false;
    for (size_t i = 0; i < params.size(); ++i)
      if (!ok((*l)[i], params[i])) return false;
  }
  return true;
}

// The tensor table and the chunk table of a multi-tensor launch, in one device buffer (tensors,
// then chunks; both tables' types are 8-aligned), copied in one asynchronous transfer through the
// pinned ring. The returned storage is freed stream-ordered, after the kernels that read it.
template <class TensorEntry>
Storage upload_mta_tables(const std::vector<TensorEntry>& tensors, const std::vector<MtaChunk>& chunks, int device,
                          const TensorEntry*& dev_tensors, const MtaChunk*& dev_chunks) {
  const size_t tensor_bytes = tensors.size() * sizeof(TensorEntry), chunk_bytes = chunks.size() * sizeof(MtaChunk);
  std::vector<unsigned char> host(tensor_bytes + chunk_bytes);
  std::memcpy(host.data(), tensors.data(), tensor_bytes);
  std::memcpy(host.data() + tensor_bytes, chunks.data(), chunk_bytes);
  Storage meta = detail::allocate(host.size(), device);
  detail::pinned_ring(device).copy_to_device(meta->data, host.data(), host.size(), detail::stream(device));
  dev_tensors = static_cast<const TensorEntry*>(meta->data);
  dev_chunks = reinterpret_cast<const MtaChunk*>(static_cast<const unsigned char*>(meta->data) + tensor_bytes);
  return meta;
}

// Builds the tensor and chunk tables, copies them to the device in one asynchronous transfer
// and launches one kernel. `state(i, k)` is the k-th state pointer of tensor i (or null).
template <class Op, class StateFn>
void launch_multi_tensor(const TensorList& params, const TensorList& grads, int device, StateFn state, const Op& op) {
  std::vector<MtaTensor> tensors;
  std::vector<MtaChunk> chunks;
  tensors.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    if (n == 0) continue;
    NABLA_CHECK((n + kMtaChunk - 1) / kMtaChunk < int64_t{0x7fffffff}, ShapeError, "fused optimizer step: parameter of ",
                n, " elements is too large");
    MtaTensor t{};
    t.param = static_cast<float*>(params[i].data_ptr());
    t.grad = static_cast<const float*>(grads[i].data_ptr());
    for (int k = 0; k < 3; ++k) t.state[k] = state(i, k);
    t.numel = n;
    const int32_t idx = static_cast<int32_t>(tensors.size());
    tensors.push_back(t);
    for (int64_t c = 0; c * kMtaChunk < n; ++c) chunks.push_back({idx, static_cast<int32_t>(c)});
  }
  if (chunks.empty()) return;
  const MtaTensor* dev_tensors = nullptr;
  const MtaChunk* dev_chunks = nullptr;
  Storage meta = upload_mta_tables(tensors, chunks, device, dev_tensors, dev_chunks);
  const cudaStream_t st = detail::stream(device);
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(nchunks, int64_t{1} << 30));
  multi_tensor_apply_kernel<Op><<<grid, kMtaThreads, 0, st>>>(dev_tensors, dev_chunks, nchunks, op);
  NABLA_CUDA_LAUNCH_CHECK();
}  // `meta` is released stream-ordered, after the kernel

inline bool launch_adam_step(const TensorList& params, const TensorList& grads, const TensorList& exp_avg,
                             const TensorList& exp_avg_sq, const TensorList& max_exp_avg_sq, const AdamStepParams& p) {
  int device = 0;
  const bool ok = p.amsgrad ? mta_lists_ok(params, {&grads, &exp_avg, &exp_avg_sq, &max_exp_avg_sq}, device)
                            : mta_lists_ok(params, {&grads, &exp_avg, &exp_avg_sq}, device);
  if (!ok) return false;
  if (params.empty()) return true;
  detail::DeviceGuard guard(device);
  AdamOp op{};
  op.beta1 = static_cast<float>(p.beta1);
  op.one_minus_beta1 = static_cast<float>(1.0 - p.beta1);
  op.beta2 = static_cast<float>(p.beta2);
  op.one_minus_beta2 = static_cast<float>(1.0 - p.beta2);
  op.eps = static_cast<float>(p.eps);
  op.weight_decay = static_cast<float>(p.weight_decay);
  op.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
  op.step_size = static_cast<float>(p.lr / (1.0 - std::pow(p.beta1, p.step)));
  op.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(p.beta2, p.step)));
  op.decoupled = p.decoupled;
  op.amsgrad = p.amsgrad;
  launch_multi_tensor(
      params, grads, device,
      [&](size_t i, int k) -> float* {
        if (k == 0) return static_cast<float*>(exp_avg[i].data_ptr());
        if (k == 1) return static_cast<float*>(exp_avg_sq[i].data_ptr());
        return p.amsgrad ? static_cast<float*>(max_exp_avg_sq[i].data_ptr()) : nullptr;
      },
      op);
  return true;
}

inline bool launch_sgd_step(const TensorList& params, const TensorList& grads, const TensorList& momentum_buffers,
                            const SgdStepParams& p) {
  int device = 0;
  const bool use_momentum = p.momentum != 0.0;
  const bool ok = use_momentum ? mta_lists_ok(params, {&grads, &momentum_buffers}, device)
                               : mta_lists_ok(params, {&grads}, device);
  if (!ok) return false;
  if (params.empty()) return true;
  detail::DeviceGuard guard(device);
  SgdOp op{};
  op.lr = static_cast<float>(p.lr);
  op.momentum = static_cast<float>(p.momentum);
  op.one_minus_dampening = static_cast<float>(1.0 - p.dampening);
  op.weight_decay = static_cast<float>(p.weight_decay);
  op.use_momentum = use_momentum;
  op.nesterov = p.nesterov;
  op.first_step = p.first_step;
  launch_multi_tensor(
      params, grads, device,
      [&](size_t i, int k) -> float* {
        return use_momentum && k == 0 ? static_cast<float*>(momentum_buffers[i].data_ptr()) : nullptr;
      },
      op);
  return true;
}

// ---- the optimizers' CUDA slots (float32: one multi-tensor launch per step) ---------------------

NABLA_FILL_KERNELS(adam_step_cuda, adam_kernels(), DeviceType::CUDA, (DTypeSet{kFloat32}),
                   AdamKernels{&launch_adam_step});
NABLA_FILL_KERNELS(sgd_step_cuda, sgd_kernels(), DeviceType::CUDA, (DTypeSet{kFloat32}), SgdKernels{&launch_sgd_step});

}  // namespace cuda
}  // namespace nabla
