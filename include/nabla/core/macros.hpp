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

// Where the CPU backend's kernels are compiled: in every file (header-only use), or only in
// backend/cpu/cpu_backend.cpp when the CMake target compiles them once
// (NABLA_CPU_BACKEND_COMPILED). An op header with fused kernels includes its CPU kernel file at
// its end under this condition, so that file fills the op's CPU slots exactly where the CPU
// kernels are compiled, and a user file in compiled mode never parses a kernel.
#if !defined(NABLA_CPU_BACKEND_COMPILED) || defined(NABLA_CPU_BACKEND_IMPLEMENTATION)
#define NABLA_COMPILES_CPU_KERNELS 1
#else
#define NABLA_COMPILES_CPU_KERNELS 0
#endif
