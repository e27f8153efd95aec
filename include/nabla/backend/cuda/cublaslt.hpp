#pragma once
// cuBLASLt GEMMs with a bias epilogue for the CUDA backend's linear_forward (host code that
// g++ compiles too; only backend.cu uses it): one cuBLASLt handle per device, and per problem
// (device, dtype, math mode, M, N, K, operand alignments) a cached plan: the matmul
// descriptor, the three layouts and the heuristic's algorithm.

#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime.hpp"

#define NABLA_CUBLASLT_CHECK(expr) ::nabla::cuda::detail::check_cublaslt((expr), #expr, __FILE__, __LINE__)

namespace nabla {
namespace cuda {
namespace detail {

inline void check_cublaslt(cublasStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw Error(::nabla::detail::cat("nabla::cuda: ", expr, " failed with cuBLASLt status ", static_cast<int>(s), " (",
                                   cublasLtGetStatusString(s), ") at ", file, ":", line));
}

inline cublasLtHandle_t cublaslt_handle(int device) {
  static std::mutex mu;
  static std::vector<cublasLtHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (handles.empty()) handles.resize(static_cast<size_t>(probe_device_count()), nullptr);
  cublasLtHandle_t& h = handles.at(static_cast<size_t>(device));
  if (!h) {
    DeviceGuard guard(device);
    NABLA_CUBLASLT_CHECK(cublasLtCreate(&h));  // never destroyed: the driver may be gone at exit
  }
  return h;
}

// The largest power of two (at most 256) dividing the address: what cuBLASLt's heuristics
// must assume about an operand (they assume 256 unless told).
inline uint32_t pointer_alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && (a % align) != 0) align /= 2;
  return align;
}

// out [M, N] = x [M, K] @ w [N, K]^T + bias [N], all dense row-major.
//
// cuBLASLt is column-major: a row-major [R, C] matrix is, byte for byte, a column-major
// [C, R] matrix with leading dimension C, i.e. its transpose. So, in column-major terms,
//   x (row-major [M, K])  = X, col-major [K, M], ld K   (X = x^T)
//   w (row-major [N, K])  = W, col-major [K, N], ld K   (W = w^T)
//   out (row-major [M, N]) = D, col-major [N, M], ld N  (D = out^T)
// and out = x w^T  <=>  out^T = w x^T  <=>  D = W^T X.
// Hence A = W with transa = T, B = X with transb = N, m = N, n = M, k = K. D's rows are the
// N output features, and CUBLASLT_EPILOGUE_BIAS adds a vector of length m (= N) to every
// column of D: D[i, j] += bias[i], i.e. out[j, i] += bias[i]. That is the linear layer.
struct LinearProblem {
  int device;
  cudaDataType_t dtype;  // CUDA_R_32F, CUDA_R_16F or CUDA_R_16BF
  bool allow_tf32;       // float32 only
  int64_t M, N, K;
  uint32_t align_x, align_w, align_out, align_bias;
};

struct LinearPlan {
  bool supported = false;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  std::mutex mu;  // the bias pointer is set on the shared descriptor right before each call
};

constexpr uint64_t kLinearMaxWorkspace = uint64_t{32} << 20;

// Builds a plan; `bias` only tells the heuristic the bias pointer's alignment.
inline void make_linear_plan(LinearPlan& plan, const LinearProblem& p, const void* bias) {
  const bool f32 = p.dtype == CUDA_R_32F;
  const cublasComputeType_t compute = f32 && p.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  NABLA_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&plan.op, compute, CUDA_R_32F));  // alpha, beta: float
  const int32_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;  // the bias has D's dtype (the default bias type)
  NABLA_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  NABLA_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.a, p.dtype, static_cast<uint64_t>(p.K),
                                                  static_cast<uint64_t>(p.N), p.K));  // W: [K, N], ld K
  NABLA_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.b, p.dtype, static_cast<uint64_t>(p.K),
                                                  static_cast<uint64_t>(p.M), p.K));  // X: [K, M], ld K
  NABLA_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&plan.d, p.dtype, static_cast<uint64_t>(p.N),
                                                  static_cast<uint64_t>(p.M), p.N));  // D: [N, M], ld N

  cublasLtMatmulPreference_t pref = nullptr;
  NABLA_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } pref_guard{pref};
  const uint64_t max_ws = kLinearMaxWorkspace;
  NABLA_CUBLASLT_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof max_ws));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                            &p.align_w, sizeof p.align_w));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                            &p.align_x, sizeof p.align_x));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                            &p.align_out, sizeof p.align_out));
  NABLA_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                            &p.align_out, sizeof p.align_out));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(cublaslt_handle(p.device), plan.op, plan.a, plan.b, plan.d,
                                                          plan.d, pref, 1, &result, &found);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED || found == 0 || result.state != CUBLAS_STATUS_SUCCESS) return;  // composite
  NABLA_CUBLASLT_CHECK(s);
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  plan.supported = true;
}

inline LinearPlan& linear_plan(const LinearProblem& p, const void* bias) {
  using Key = std::array<int64_t, 10>;
  static std::mutex mu;
  static auto* plans = new std::map<Key, std::unique_ptr<LinearPlan>>;  // never destroyed (see handles)
  const Key key{p.device, static_cast<int64_t>(p.dtype), p.allow_tf32, p.M, p.N, p.K, p.align_x, p.align_w,
                p.align_out, p.align_bias};
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*plans)[key];
  if (!slot) {
    auto plan = std::make_unique<LinearPlan>();
    make_linear_plan(*plan, p, bias);
    slot = std::move(plan);
  }
  return *slot;
}

// Enqueues out = x w^T + bias on nabla's stream; false (counted in fused_stats()) when an
// operand is below 16-byte alignment or cuBLASLt has no algorithm for it.
inline bool cublaslt_linear(const LinearProblem& p, const void* x, const void* w, const void* bias, void* out) {
  // No preference tells the heuristic the bias's alignment, and cublasLtMatmul fails (rather
  // than declines) on a bias, or an operand, at an odd offset such as a narrow()ed view: those
  // go to the composite, whose cuBLAS GEMM and add take any alignment.
  if (std::min({p.align_x, p.align_w, p.align_out, p.align_bias}) < 16) {
    count(fused_counters().linear_declined);
    return false;
  }
  DeviceGuard guard(p.device);
  LinearPlan& plan = linear_plan(p, bias);
  if (!plan.supported) {
    count(fused_counters().linear_declined);
    return false;
  }
  Storage ws;
  if (plan.workspace > 0) ws = allocate(plan.workspace, p.device);
  const float alpha = 1.0f, beta = 0.0f;
  std::lock_guard<std::mutex> lock(plan.mu);
  NABLA_CUBLASLT_CHECK(
      cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  NABLA_CUBLASLT_CHECK(cublasLtMatmul(cublaslt_handle(p.device), plan.op, &alpha, w, plan.a, x, plan.b, &beta, out,
                                      plan.d, out, plan.d, &plan.algo, ws ? ws->data : nullptr, plan.workspace,
                                      stream(p.device)));
  count(fused_counters().linear_cublaslt);
  return true;
}

}  // namespace detail
}  // namespace cuda
}  // namespace nabla
