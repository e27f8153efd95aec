#pragma once
// cuDNN convolutions for the CUDA backend (host code that g++ compiles too; only backend.cu
// uses it): one cuDNN handle per device bound to nabla's stream, RAII descriptors, and per
// problem (shapes, strides, dtype, parameters, math mode, device) a plan made once: its
// descriptors, cuDNN's heuristic algorithms and their workspace sizes. "Not supported" moves on
// to the next algorithm, then to the composite; every other status is an error. Without cuDNN's
// headers this file declares nothing and conv2d keeps its composite.

#if __has_include(<cudnn.h>)
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime.hpp"

#define NABLA_CUDNN_CHECK(expr) ::nabla::cuda::detail::check_cudnn((expr), #expr, __FILE__, __LINE__)

namespace nabla {
namespace cuda {
namespace detail {

// The status number and name, and what cuDNN 9 says about the failure, if anything.
inline std::string cudnn_status_text(cudnnStatus_t s) {
  char last[512] = {0};
#if CUDNN_MAJOR >= 9
  cudnnGetLastErrorString(last, sizeof last);
#endif
  return ::nabla::detail::cat(static_cast<int>(s), " (", cudnnGetErrorString(s), ")", last[0] ? ": " : "", last);
}

// cuDNN could not load or run its own parts here (a sub-library missing or mismatched, a driver
// or CUDA runtime too old). Not a property of the problem: an error, so that a broken install is
// not hidden behind the slow composite.
inline bool cudnn_environment_failure(cudnnStatus_t s) {
#if CUDNN_MAJOR >= 9
  switch (s) {
    case CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED:
    case CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH:
    case CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDA_DRIVER:
    case CUDNN_STATUS_NOT_SUPPORTED_INCOMPATIBLE_CUDART:
    case CUDNN_STATUS_NOT_SUPPORTED_RUNTIME_PREREQUISITE_MISSING:
    case CUDNN_STATUS_NOT_SUPPORTED_SUBLIBRARY_UNAVAILABLE:
      return true;
    default:
      return false;
  }
#else
  (void)s;
  return false;
#endif
}

inline void check_cudnn(cudnnStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUDNN_STATUS_SUCCESS) return;
  const std::string what = ::nabla::detail::cat("nabla::cuda: ", expr, " failed with cuDNN status ",
                                                cudnn_status_text(s), " at ", file, ":", line);
  if (!cudnn_environment_failure(s)) throw Error(what);
  throw Error(::nabla::detail::cat(
      what, ". cuDNN ", CUDNN_MAJOR, ".", CUDNN_MINOR, " (loaded: ", cudnnGetVersion(),
      ") cannot load or run part of itself here. cuDNN 9 loads its sub-libraries (libcudnn_graph, libcudnn_cnn, "
      "libcudnn_engines_*) by bare name at run time, so the binary's RUNPATH does not help: cuDNN's lib folder (e.g. "
      ".../site-packages/nvidia/cudnn/lib) must be on LD_LIBRARY_PATH, and the driver and CUDA runtime must be as "
      "new as this cuDNN needs"));
}

// True when the call succeeded; false when cuDNN says "not supported" for this algorithm, math
// type or problem (the caller tries the next algorithm, and keeps the composite when none is
// left), with the reason in *why. Anything else throws: a bad parameter is a bug of nabla's,
// and an environment failure (see above) would otherwise stay silent.
inline bool cudnn_ok(cudnnStatus_t s, const char* expr, const char* file, int line, std::string* why) {
  if (s == CUDNN_STATUS_SUCCESS) return true;
#if CUDNN_MAJOR >= 9
  const bool not_supported = CUDNN_STATUS_CATEGORY(s) == CUDNN_STATUS_NOT_SUPPORTED && !cudnn_environment_failure(s);
#else
  const bool not_supported = s == CUDNN_STATUS_NOT_SUPPORTED;
#endif
  if (!not_supported) check_cudnn(s, expr, file, line);
  if (why) *why = cudnn_status_text(s);
  return false;
}
#define NABLA_CUDNN_OK(expr, why) ::nabla::cuda::detail::cudnn_ok((expr), #expr, __FILE__, __LINE__, (why))

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
  size_t workspace = 0;  // bytes, asked once when the plan is made
  bool usable = true;    // false once cuDNN said "not supported" for it
};

// Everything a repeat call needs, made on the first call of a problem: the four descriptors,
// the algorithms in the order to try, and each one's workspace size.
struct ConvPlan {
  CudnnTensorDesc x, y;
  CudnnFilterDesc w;
  CudnnConvDesc conv;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;  // the math type set on `conv` now
  std::vector<ConvAlgo> algos;                // heuristic order, then plain fallbacks
  size_t preferred = 0;                       // the last one that ran
  bool declined = false;                      // every algorithm refused the problem: keep the composite
  bool logged = false;                        // the decline was reported (NABLA_LOG=1)
  std::string why;                            // cuDNN's reason for the last refusal
};

using ConvKey = std::array<int64_t, 20>;
inline ConvKey conv_key(ConvKind kind, const ConvProblem& p) {
  return {static_cast<int64_t>(kind), p.device, static_cast<int64_t>(p.dtype), p.allow_tf32, p.n, p.c, p.h, p.w, p.o,
          p.kh, p.kw, p.ho, p.wo, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
}

// One per device. Its mutex guards the rest: a cuDNN handle must not be used by two host
// threads at once (a DataLoader thread may run ops too), and the plans' descriptors are
// changed (math type) by the call that uses them.
struct CudnnDevice {
  std::mutex mu;
  cudnnHandle_t handle = nullptr;  // created on first use, bound to nabla's stream; never destroyed
  bool unavailable = false;        // cudnnCreate failed for a reason that is not the install's
  std::map<ConvKey, std::unique_ptr<ConvPlan>> plans;
};
inline CudnnDevice& cudnn_device(int device) {
  static auto* devices = [] {  // never destroyed: the driver may be gone at exit
    auto* v = new std::vector<std::unique_ptr<CudnnDevice>>(static_cast<size_t>(probe_device_count()));
    for (auto& d : *v) d = std::make_unique<CudnnDevice>();
    return v;
  }();
  return *devices->at(static_cast<size_t>(device));
}

// The device's handle, or null when cuDNN cannot be initialised for it (e.g. a library too old
// for the GPU): convolutions then stay composite. An install that cannot load throws. Call with
// d.mu held.
inline cudnnHandle_t cudnn_handle(CudnnDevice& d, int device) {
  if (d.handle || d.unavailable) return d.handle;
  DeviceGuard guard(device);
  cudnnHandle_t h = nullptr;
  const cudnnStatus_t s = cudnnCreate(&h);
  if (s != CUDNN_STATUS_SUCCESS) {
    if (cudnn_environment_failure(s)) check_cudnn(s, "cudnnCreate(&h)", __FILE__, __LINE__);
    d.unavailable = true;
    if (log_enabled())
      std::fprintf(stderr, "[nabla] cuDNN unavailable on cuda:%d, conv2d stays composite: %s\n", device,
                   cudnn_status_text(s).c_str());
    return nullptr;
  }
  NABLA_CUDNN_CHECK(cudnnSetStream(h, stream(device)));
  d.handle = h;
  return h;
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
      if (NABLA_CUDNN_OK(cudnnGetConvolutionForwardAlgorithm_v7(h, x.d, w.d, conv.d, y.d, kMax, &n, perf), nullptr))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, base_math);
      add(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, base_math);
      break;
    }
    case ConvKind::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
      if (NABLA_CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w.d, y.d, conv.d, x.d, kMax, &n, perf),
                         nullptr))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, base_math);
      add(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, base_math);
      break;
    }
    case ConvKind::BackwardFilter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMax];
      if (NABLA_CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x.d, y.d, conv.d, w.d, kMax, &n, perf),
                         nullptr))
        for (int i = 0; i < n; ++i)
          if (perf[i].status == CUDNN_STATUS_SUCCESS) add(perf[i].algo, perf[i].mathType);
      add(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, base_math);
      add(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, base_math);
      break;
    }
  }
  return algos;
}

inline const char* conv_kind_name(ConvKind kind) {
  return kind == ConvKind::Forward ? "forward" : kind == ConvKind::BackwardData ? "backward data" : "backward filter";
}
inline const char* cudnn_dtype_name(cudnnDataType_t t) {
  switch (t) {
    case CUDNN_DATA_FLOAT: return "float32";
    case CUDNN_DATA_DOUBLE: return "float64";
    case CUDNN_DATA_HALF: return "float16";
    case CUDNN_DATA_BFLOAT16: return "bfloat16";
    default: return "?";
  }
}

// The descriptors, the algorithms and their workspace sizes for one problem.
inline std::unique_ptr<ConvPlan> make_conv_plan(ConvKind kind, cudnnHandle_t h, const ConvProblem& p) {
  auto plan = std::make_unique<ConvPlan>();
  CudnnTensorDesc &xd = plan->x, &yd = plan->y;
  CudnnFilterDesc& wd = plan->w;
  CudnnConvDesc& cd = plan->conv;
  NABLA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd.d, CUDNN_TENSOR_NCHW, p.dtype, p.n, p.c, p.h, p.w));
  NABLA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd.d, CUDNN_TENSOR_NCHW, p.dtype, p.n, p.o, p.ho, p.wo));
  NABLA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd.d, p.dtype, CUDNN_TENSOR_NCHW, p.o, p.c / p.groups, p.kh, p.kw));
  const cudnnDataType_t compute = p.dtype == CUDNN_DATA_DOUBLE ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  NABLA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd.d, p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h,
                                                    p.dilation_w, CUDNN_CROSS_CORRELATION, compute));
  NABLA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(cd.d, p.groups));
  const cudnnMathType_t base_math =
      conv_math(p, p.dtype == CUDNN_DATA_HALF || p.dtype == CUDNN_DATA_BFLOAT16 ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH);
  NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, base_math));
  plan->math = base_math;
  plan->algos = conv_heuristics(kind, h, p, xd, wd, cd, yd, base_math);

  for (ConvAlgo& a : plan->algos) {
    if (plan->math != a.math) {
      NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(cd.d, a.math));
      plan->math = a.math;
    }
    switch (kind) {
      case ConvKind::Forward:
        a.usable = NABLA_CUDNN_OK(cudnnGetConvolutionForwardWorkspaceSize(
                                      h, xd.d, wd.d, cd.d, yd.d, static_cast<cudnnConvolutionFwdAlgo_t>(a.algo),
                                      &a.workspace),
                                  &plan->why);
        break;
      case ConvKind::BackwardData:
        a.usable = NABLA_CUDNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(
                                      h, wd.d, yd.d, cd.d, xd.d, static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo),
                                      &a.workspace),
                                  &plan->why);
        break;
      case ConvKind::BackwardFilter:
        a.usable = NABLA_CUDNN_OK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                                      h, xd.d, yd.d, cd.d, wd.d, static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo),
                                      &a.workspace),
                                  &plan->why);
        break;
    }
  }
  plan->declined = std::none_of(plan->algos.begin(), plan->algos.end(), [](const ConvAlgo& a) { return a.usable; });
  return plan;
}

// Says once per problem (with NABLA_LOG=1) why cuDNN left it to the composite.
inline void log_conv_decline(ConvPlan& plan, ConvKind kind, const ConvProblem& p) {
  if (plan.logged || !log_enabled()) return;
  plan.logged = true;
  std::fprintf(stderr,
               "[nabla] cuDNN declined conv2d %s x[%d, %d, %d, %d] w[%d, %d, %d, %d] stride %dx%d pad %dx%d dilation "
               "%dx%d groups %d %s on cuda:%d: %s\n",
               conv_kind_name(kind), p.n, p.c, p.h, p.w, p.o, p.c / p.groups, p.kh, p.kw, p.stride_h, p.stride_w,
               p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups, cudnn_dtype_name(p.dtype), p.device,
               plan.why.c_str());
}

// One direction on nabla's stream with the problem's plan (made on its first call), the first
// usable algorithm from the last one that ran; a workspace from nabla's pool (released
// stream-ordered). Returns false when no algorithm takes the problem. Call with d.mu held.
inline bool run_convolution(CudnnDevice& d, ConvKind kind, const ConvProblem& p, void* x, void* w, void* y) {
  cudnnHandle_t h = cudnn_handle(d, p.device);
  if (!h) return false;
  std::unique_ptr<ConvPlan>& slot = d.plans[conv_key(kind, p)];
  if (!slot) slot = make_conv_plan(kind, h, p);
  ConvPlan& plan = *slot;
  if (plan.declined) {
    log_conv_decline(plan, kind, p);
    return false;
  }

  const bool f64 = p.dtype == CUDNN_DATA_DOUBLE;
  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha = f64 ? static_cast<const void*>(&one_d) : &one_f;
  const void* beta = f64 ? static_cast<const void*>(&zero_d) : &zero_f;
  for (size_t attempt = 0; attempt < plan.algos.size(); ++attempt) {
    const size_t idx = (plan.preferred + attempt) % plan.algos.size();
    ConvAlgo& a = plan.algos[idx];
    if (!a.usable) continue;
    Storage ws;
    if (a.workspace > 0) {
      try {
        ws = allocate(a.workspace, p.device);
      } catch (const OutOfMemory&) {
        plan.why = ::nabla::detail::cat("no memory for the ", a.workspace, "-byte workspace of algorithm ", a.algo);
        continue;  // an algorithm with a smaller workspace may still fit
      }
    }
    if (plan.math != a.math) {
      NABLA_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.d, a.math));
      plan.math = a.math;
    }
    void* ws_ptr = ws ? ws->data : nullptr;
    bool ok = false;
    switch (kind) {
      case ConvKind::Forward:
        ok = NABLA_CUDNN_OK(cudnnConvolutionForward(h, alpha, plan.x.d, x, plan.w.d, w, plan.conv.d,
                                                    static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), ws_ptr,
                                                    a.workspace, beta, plan.y.d, y),
                            &plan.why);
        break;
      case ConvKind::BackwardData:
        ok = NABLA_CUDNN_OK(cudnnConvolutionBackwardData(h, alpha, plan.w.d, w, plan.y.d, y, plan.conv.d,
                                                         static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws_ptr,
                                                         a.workspace, beta, plan.x.d, x),
                            &plan.why);
        break;
      case ConvKind::BackwardFilter:
        ok = NABLA_CUDNN_OK(cudnnConvolutionBackwardFilter(h, alpha, plan.x.d, x, plan.y.d, y, plan.conv.d,
                                                           static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws_ptr,
                                                           a.workspace, beta, plan.w.d, w),
                            &plan.why);
        break;
    }
    if (!ok) {
      a.usable = false;  // a refusal does not change between calls
      continue;
    }
    plan.preferred = idx;
    fused_counters().last_conv_algo[static_cast<int>(kind)].store(a.algo, std::memory_order_relaxed);
    return true;
  }
  // out of memory may pass; a refusal will not
  plan.declined = std::none_of(plan.algos.begin(), plan.algos.end(), [](const ConvAlgo& a) { return a.usable; });
  log_conv_decline(plan, kind, p);
  return false;
}

// Runs one direction of the convolution on nabla's stream, overwriting its output:
//   Forward:        y = conv(x, w)
//   BackwardData:   x = the gradient w.r.t. the input, for grad_out y
//   BackwardFilter: w = the gradient w.r.t. the weight, for input x and grad_out y
// Returns false when no cuDNN algorithm accepts the problem (counted in fused_stats()); the
// caller then keeps the composite.
inline bool cudnn_convolution(ConvKind kind, const ConvProblem& p, void* x, void* w, void* y) {
  CudnnDevice& d = cudnn_device(p.device);
  std::lock_guard<std::mutex> lock(d.mu);
  DeviceGuard guard(p.device);
  const bool ran = run_convolution(d, kind, p, x, w, y);
  count(ran ? fused_counters().conv_cudnn : fused_counters().conv_declined);
  return ran;
}

}  // namespace detail
}  // namespace cuda
}  // namespace nabla

#endif  // __has_include(<cudnn.h>)
