#pragma once
// The CPU backend's implementation, the counterpart of backend/cuda/backend.cu: the primitives'
// instance (cpu_backend.hpp) and every fused op's CPU kernel file, each of which fills its op's
// CPU slots (backend/kernel_table.hpp). Included exactly where the CPU kernels are compiled: at
// the end of <nabla/nabla.hpp> in header-only use, or only in backend/cpu/cpu_backend.cpp when
// the CMake target compiles them once (NABLA_CPU_BACKEND_COMPILED). A new fused op's CPU kernel
// file gets one line here; a kernel added to an existing file, none.

#include "cpu_backend.hpp"

#include "amp.hpp"     // GradScaler's unscale and scale update
#include "attention.hpp"  // scaled_dot_product_attention
#include "conv.hpp"    // conv2d, sliding_windows
#include "linear.hpp"  // linear
#include "norm.hpp"    // batch_norm
#include "optim.hpp"   // adam_step, sgd_step
#include "pool.hpp"    // max_pool2d
