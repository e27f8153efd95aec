#pragma once
// Portability macros shared by host code and (through kernels/*.cuh) device code.
// NABLA_HOST_DEVICE marks scalar functors that serve both the CPU and CUDA backends.

#if defined(__CUDACC__)
#define NABLA_HOST_DEVICE __host__ __device__
#else
#define NABLA_HOST_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NABLA_LIKELY(x) __builtin_expect(!!(x), 1)
#define NABLA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NABLA_RESTRICT __restrict__
#else
#define NABLA_LIKELY(x) (x)
#define NABLA_UNLIKELY(x) (x)
#define NABLA_RESTRICT
#endif

#define NABLA_VERSION_MAJOR 0
#define NABLA_VERSION_MINOR 1
#define NABLA_VERSION_PATCH 0
