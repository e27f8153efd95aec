#pragma once
// cuDNN convolutions for the CUDA backend (host code that g++ compiles too; only backend.cu
// uses it): one cuDNN handle per device bound to nabla's stream, RAII descriptors, and the
// algorithms for each problem (shapes, strides, dtype, parameters, math mode, device) chosen by
// cuDNN's heuristics once and cached. Without cuDNN's headers this file declares nothing and
// conv2d keeps its composite.

#if __has_include(<cudnn.h>)
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "runtime.hpp"

#define NABLA_CUDNN_CHECK(expr) ::nabla::cuda::detail::check_cudnn((expr), #expr, __FILE__, __LINE__)

namespace nabla {
namespace cuda {
namespace detail {

inline void check_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  char last[512] = {0};
#if CUDNN_MAJOR >= 9
  cudnnGetLastErrorString(last, sizeof last);  // what cuDNN 9 says about the failure, if anything
#endif
  throw Error(::nabla::detail::cat("nabla::cuda: ", expr, " failed with cuDNN status ", static_cast<int>(s), " (",
                                   cudnnGetErrorString(s), ")", last[0] ? ": " : "", last, " at ", file, ":", line));
}

// "Not supported" (by this algorithm, math type or build of cuDNN), or a parameter this
// algorithm rejects: the caller tries the next algorithm, and keeps the composite when none is
// left. Any other failure (execution, internal, allocation) throws.
inline bool cudnn_ok(cudnnStatus_t s, const char* expr, const char* file, int line) {
#if CUDNN_MAJOR >= 9
  const int category = CUDNN_STATUS_CATEGORY(s);  // 3000 and its sub-codes, 2000 and its sub-codes
  if (category == CUDNN_STATUS_NOT_SUPPORTED || category == CUDNN_STATUS_BAD_PARAM) return false;
#else
  if (s == CUDNN_STATUS_NOT_SUPPORTED || s == CUDNN_STATUS_BAD_PARAM) return false;
#endif
  check_cudnn(s, expr, file, line);
  return true;
}
#define NABLA_CUDNN_OK(expr) ::nabla::cuda::detail::cudnn_ok((expr), #expr, __FILE__, __LINE__)

// Every cuDNN call of nabla runs under this mutex: a handle must not be used by two host
// threads at once, and the algorithm cache is shared.
inline std::mutex& cudnn_mutex() {
  static std::mutex mu;
  return mu;
}

// The device's handle (created on first use, bound to nabla's stream), or null when cuDNN
// cannot be initialised (e.g. a library too old for the GPU): convolutions then stay composite.
// Call with cudnn_mutex() held.
inline cudnnHandle_t cudnn_handle(int device) {
  static std::vector<cudnnHandle_t> handles;
  static std::vector<bool> failed;
  if (handles.empty()) {
    handles.resize(static_cast<size_t>(probe_device_count()), nullptr);
    failed.resize(handles.size(), false);
  }
  const size_t d = static_cast<size_t>(device);
  if (d >= handles.size() || failed[d]) return nullptr;
  if (!handles[d]) {
    DeviceGuard guard(device);
    cudnnHandle_t h = nullptr;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) {
      failed[d] = true;
      return nullptr;
    }
    NABLA_CUDNN_CHECK(cudnnSetStream(h, stream(device)));
    handles[d] = h;  // never destroyed: the driver may be gone at exit
  }
  return handles[d];
}

// RAII descriptors: created empty, set after construction (so a failing set still destroys).
struct CudnnTensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  CudnnTensorDesc() { NABLA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~CudnnTensorDesc() { cudnnDestroyTensorDescriptor(d); }
  CudnnTensorDesc(const CudnnTensorDesc&) = delete;
  CudnnTensorDesc& operator=(const CudnnTensorDesc&) = delete;
};
struct CudnnFilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  CudnnFilterDesc() { NABLA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d)); }
  ~CudnnFilterDesc() { cudnnDestroyFilterDescriptor(d); }
  CudnnFilterDesc(const CudnnFilterDesc&) = delete;
  CudnnFilterDesc& operator=(const CudnnFilterDesc&) = delete;
};
struct CudnnConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  CudnnConvDesc() { NABLA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d)); }
  ~CudnnConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
  CudnnConvDesc(const CudnnConvDesc&) = delete;
  CudnnConvDesc& operator=(const CudnnConvDesc&) = delete;
};

enum class ConvKind : int { Forward = 0, BackwardData = 1, BackwardFilter = 2 };

// One 2-D convolution: x [n, c, h, w], w [o, c / groups, kh, kw], y [n, o, ho, wo], all dense
// NCHW. Every size fits an int (the caller checks).
struct ConvProblem {
  int n, c, h, w, o, kh, kw, ho, wo;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  cudnnDataType_t dtype;
  bool allow_tf32;  // float32 only: TF32 tensor cores allowed (set_float32_matmul_precision)
  int device;
};

struct ConvAlgo {
  int algo;
  cudnnMathType_t math;
};
struct ConvPlan {
  std::vector<ConvAlgo> algos;  // heuristic order, then plain fallbacks
  size_t preferred = 0;         // the first one that ran
  bool declined = false;        // every algorithm refused the problem: keep the composite
};

using ConvKey = std::array<int64_t, 20>;
inline ConvKey conv_key(ConvKind kind, const ConvProblem& p) {
  return {static_cast<int64_t>(kind), p.device, static_cast<int64_t>(p.dtype), p.allow_tf32, p.n, p.c, p.h, p.w, p.o,
          p.kh, p.kw, p.ho, p.wo, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
}
inline std::map<ConvKey, ConvPlan>& conv_plans() {  // guarded by cudnn_mutex()
  static auto* plans = new std::map<ConvKey, ConvPlan>;
  return *plans;
}

// float32 without TF32 must stay on FMA kernels; float32 with TF32 may use tensor cores but
// never a down-conversion to half; 16-bit types use tensor cores (float accumulation, from
// the convolution's float compute type); float64 computes in double.
inline cudnnMathType_t conv_math(const ConvProblem& p, cudnnMathType_t suggested) {
  if (p.dtype == CUDNN_DATA_FLOAT) {
    if (!p.allow_tf32) return CUDNN_FMA_MATH;
    return suggested == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION ? CUDNN_DEFAULT_MATH : suggested;
  }
  return suggested;
}

inline std::vector<ConvAlgo> conv_heuristics(ConvKind kind, cudnnHandle_t h, const ConvProblem& p,
                                             const CudnnTensorDesc& x, const CudnnFilterDesc& w,
                                             const CudnnConvDesc& conv, const CudnnTensorDesc& y,
                                             cudnnMathType_t base_math) {
  std::vector<ConvAlgo> algos;
  auto add = [&](int algo, cudnnMathType_t m) {
    m = conv_math(p, m);
    for (const ConvAlgo& a : algos)
      if (a.algo == algo && a.math == m) return;
    algos.push_back({algo, m});
  };
  constexpr int kMax = 16;  // more than any direction has algorithms
  int n = 0;
  switch (kind) {
    case ConvKind::Forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[kMax];
      if (NABLA_CUDNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(h, x.d, w.d, conv.d, y.d, kMax, &n, perf)))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, base_math);
      add(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, base_math);
      break;
    }
    case ConvKind::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
      if (NABLA_CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w.d, y.d, conv.d, x.d, kMax, &n, perf)))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, base_math);
      add(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, base_math);
      break;
    }
    case ConvKind::BackwardFilter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
      if (NABLA_CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x.d, y.d, conv.d, w.d, kMax, &n, perf)))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, base_math);
      add(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, base_math);
      break;
    }
  }
  return algos;
}

// Runs one direction of the convolution on nabla's stream, overwriting its output:
//   Forward:        y = conv(x, w)
//   BackwardData:   x = the gradient w.r.t. the input, for grad_out y
//   BackwardFilter: w = the gradient w.r.t. the weight, for input x and grad_out y
// Workspace comes from nabla's pool (released stream-ordered). Returns false when no cuDNN
// algorithm accepts the problem; the caller then keeps the composite.
inline bool cudnn_convolution(ConvKind kind, const ConvProblem& p, void* x, void* w, void* y) {
  std::lock_guard<std::mutex> lock(cudnn_mutex());
  DeviceGuard guard(p.device);
  cudnnHandle_t h = cudnn_handle(p.device);
  if (!h) return false;

  const bool f64 = p.dtype == CUDNN_DATA_DOUBLE;
  CudnnTensorDesc xd, yd;
  CudnnFilterDesc wd;
  CudnnConvDesc cd;
  NABLA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd.d, CUDNN_TENSOR_NCHW, p.dtype, p.n, p.c, p.h, p.w));
  NABLA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd.d, CUDNN_TENSOR_NCHW, p.dtype, p.n, p.o, p.ho, p.wo));
  NABLA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd.d, p.dtype, CUDNN_TENSOR_NCHW, p.o, p.c / p.groups, p.kh, p.kw));
  NABLA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd.d, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h,
                                                    p.dilation_w, CUDNN_CROSS_CORRELATION,
                                                    f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
  NABLA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd.d, p.groups));
  const cudnnMathType_t base_math =
      conv_math(p, p.dtype == CUDNN_DATA_HALF || p.dtype == CUDNN_DATA_BFLOAT16 ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH);
  NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, base_math));

  auto& plans = conv_plans();
  const ConvKey key = conv_key(kind, p);
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, ConvPlan{conv_heuristics(kind, h, p, xd, wd, cd, yd, base_math), 0}).first;
  ConvPlan& plan = it->second;
  if (plan.declined) return false;

  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha = f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* beta = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  bool out_of_memory = false;
  for (size_t attempt = 0; attempt < plan.algos.size(); ++attempt) {
    const size_t idx = (plan.preferred + attempt) % plan.algos.size();
    const ConvAlgo a = plan.algos[idx];
    NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, a.math));
    size_t ws_bytes = 0;
    bool ok = false;
    switch (kind) {
      case ConvKind::Forward:
        ok = NABLA_CUDNN_OK(cudnnGetConvolutionForwardWorkspaceSize(h, xd.d, wd.d, cd.d, yd.d,
                                                                    static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), &ws_bytes));
        break;
      case ConvKind::BackwardData:
        ok = NABLA_CUDNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(
            h, wd.d, yd.d, cd.d, xd.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), &ws_bytes));
        break;
      case ConvKind::BackwardFilter:
        ok = NABLA_CUDNN_OK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, xd.d, yd.d, cd.d, wd.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), &ws_bytes));
        break;
    }
    if (!ok) continue;
    Storage ws;
    if (ws_bytes > 0) {
      try {
        ws = allocate(ws_bytes, p.device);
      } catch (const OutOfMemory&) {
        out_of_memory = true;
        continue;  // an algorithm with a smaller workspace may still fit
      }
    }
    void* ws_ptr = ws ? ws->data : nullptr;
    switch (kind) {
      case ConvKind::Forward:
        ok = NABLA_CUDNN_OK(cudnnConvolutionForward(h, alpha, xd.d, x, wd.d, w, cd.d,
                                                    static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), ws_ptr, ws_bytes,
                                                    beta, yd.d, y));
        break;
      case ConvKind::BackwardData:
        ok = NABLA_CUDNN_OK(cudnnConvolutionBackwardData(h, alpha, wd.d, w, yd.d, y, cd.d,
                                                         static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws_ptr,
                                                         ws_bytes, beta, xd.d, x));
        break;
      case ConvKind::BackwardFilter:
        ok = NABLA_CUDNN_OK(cudnnConvolutionBackwardFilter(h, alpha, xd.d, x, yd.d, y, cd.d,
                                                           static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws_ptr,
                                                           ws_bytes, beta, wd.d, w));
        break;
    }
    if (!ok) continue;
    plan.preferred = idx;
    return true;
  }
  plan.declined = !out_of_memory;  // out of memory may pass; a refusal will not
  return false;
}

}  // namespace detail
}  // namespace cuda
}  // namespace nabla

#endif  // __has_include(<cudnn.h>)
