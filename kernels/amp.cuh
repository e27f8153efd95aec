#pragma once
// GradScaler's CUDA kernels (amp/grad_scaler.hpp's amp_kernels()). The inf/NaN check and unscale
// of all gradients of one dtype is one multi-tensor launch (the tables of tensors and chunks go
// to the device in one asynchronous copy, as the fused optimizers do): each element is checked
// and multiplied by the inverse scale, read from device memory, in float32 (double for double),
// and a non-finite one sets found_inf to 1. The scale update is one single-thread kernel on the
// device-resident state. Neither reads anything back to the host.

#include "common.cuh"
#include "optim.cuh"  // MtaChunk, kMtaChunk, kMtaThreads, upload_mta_tables

namespace nabla {
namespace cuda {

struct AmpTensor {
  void* data;
  int64_t numel;
};

template <class T>
__global__ void amp_unscale_kernel(const AmpTensor* __restrict__ tensors, const MtaChunk* __restrict__ chunks,
                                   int64_t nchunks, float* found_inf, const float* inv_scale) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const C s = static_cast<C>(*inv_scale);
  bool bad = false;
  for (int64_t b = blockIdx.x; b < nchunks; b += gridDim.x) {
    const MtaChunk ck = chunks[b];
    const AmpTensor t = tensors[ck.tensor];
    T* x = static_cast<T*>(t.data);
    const int64_t start = int64_t(ck.chunk) * kMtaChunk;
    const int64_t end = start + kMtaChunk < t.numel ? start + kMtaChunk : t.numel;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      const C v = static_cast<C>(x[i]);
      if (!isfinite(v)) bad = true;
      if (s != C(1)) x[i] = static_cast<T>(v * s);
    }
  }
  if (bad) *found_inf = 1.0f;  // every writer writes the same value: no atomic needed
}

__global__ void amp_update_scale_kernel(float* scale, int32_t* growth_tracker, const float* found_inf,
                                        double growth_factor, double backoff_factor, int64_t growth_interval) {
  if (*found_inf != 0.0f) {
    *scale = static_cast<float>(*scale * backoff_factor);
    *growth_tracker = 0;
    return;
  }
  const int64_t successful = static_cast<int64_t>(*growth_tracker) + 1;
  if (successful == growth_interval) {
    const float grown = static_cast<float>(*scale * growth_factor);
    if (isfinite(grown)) *scale = grown;
    *growth_tracker = 0;
  } else {
    *growth_tracker = static_cast<int32_t>(successful);
  }
}

inline bool launch_amp_unscale(const TensorList& grads, const Tensor& found_inf, const Tensor& inv_scale) {
  if (grads.empty()) return true;
  const int device = found_inf.device().index;
  const DType dt = grads[0].dtype();
  if (!found_inf.is_cuda() || !inv_scale.is_cuda() || inv_scale.device().index != device || found_inf.dtype() != kFloat32 ||
      inv_scale.dtype() != kFloat32)
    return false;
  for (const Tensor& g : grads)
    if (!g.is_cuda() || g.device().index != device || g.dtype() != dt || !g.is_contiguous()) return false;
  detail::DeviceGuard guard(device);
  std::vector<AmpTensor> tensors;
  std::vector<MtaChunk> chunks;
  for (const Tensor& g : grads) {
    const int64_t n = g.numel();
    if (n == 0) continue;
    NABLA_CHECK((n + kMtaChunk - 1) / kMtaChunk < int64_t{0x7fffffff}, ShapeError, "GradScaler: gradient of ", n,
                " elements is too large");
    const int32_t idx = static_cast<int32_t>(tensors.size());
    tensors.push_back({g.data_ptr(), n});
    for (int64_t c = 0; c * kMtaChunk < n; ++c) chunks.push_back({idx, static_cast<int32_t>(c)});
  }
  if (chunks.empty()) return true;
  const AmpTensor* dev_tensors = nullptr;
  const MtaChunk* dev_chunks = nullptr;
  Storage meta = upload_mta_tables(tensors, chunks, device, dev_tensors, dev_chunks);
  const cudaStream_t st = detail::stream(device);
  const int64_t nchunks = static_cast<int64_t>(chunks.size());
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(nchunks, int64_t{1} << 30));
  float* flag = static_cast<float*>(found_inf.data_ptr());
  const float* inv = static_cast<const float*>(inv_scale.data_ptr());
  switch (dt) {
    case DType::Float32: amp_unscale_kernel<float><<<grid, kMtaThreads, 0, st>>>(dev_tensors, dev_chunks, nchunks, flag, inv); break;
    case DType::Float64: amp_unscale_kernel<double><<<grid, kMtaThreads, 0, st>>>(dev_tensors, dev_chunks, nchunks, flag, inv); break;
    case DType::Float16: amp_unscale_kernel<Half><<<grid, kMtaThreads, 0, st>>>(dev_tensors, dev_chunks, nchunks, flag, inv); break;
    case DType::BFloat16: amp_unscale_kernel<BFloat16><<<grid, kMtaThreads, 0, st>>>(dev_tensors, dev_chunks, nchunks, flag, inv); break;
    default: return false;
  }
  NABLA_CUDA_LAUNCH_CHECK();
  return true;
}  // `meta` is released stream-ordered, after the kernel

inline bool launch_amp_update_scale(const Tensor& scale, const Tensor& growth_tracker, const Tensor& found_inf,
                                    double growth_factor, double backoff_factor, int64_t growth_interval) {
  if (!scale.is_cuda() || !growth_tracker.is_cuda() || !found_inf.is_cuda() || scale.dtype() != kFloat32 ||
      growth_tracker.dtype() != kInt32 || found_inf.dtype() != kFloat32)
    return false;
  const int device = scale.device().index;
  if (growth_tracker.device().index != device || found_inf.device().index != device) return false;
  detail::DeviceGuard guard(device);
  amp_update_scale_kernel<<<1, 1, 0, detail::stream(device)>>>(
      static_cast<float*>(scale.data_ptr()), static_cast<int32_t*>(growth_tracker.data_ptr()),
      static_cast<const float*>(found_inf.data_ptr()), growth_factor, backoff_factor, growth_interval);
  NABLA_CUDA_LAUNCH_CHECK();
  return true;
}

NABLA_FILL_KERNELS(amp_cuda, amp_kernels(), DeviceType::CUDA, (DTypeSet{kFloat32, kFloat64, kFloat16, kBFloat16}),
                   (AmpKernels{&launch_amp_unscale, &launch_amp_update_scale}));

}  // namespace cuda
}  // namespace nabla
