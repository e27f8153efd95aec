#pragma once
// nabla: a header-only C++20 tensor library with reverse-mode autodiff.
// Include this one header; see docs/ and README.md.

#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/half.hpp"
#include "backend/memory.hpp"
#include "core/random.hpp"
#include "core/scalar.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "ops/all.hpp"
#include "ops/conv.hpp"
#include "ops/norm.hpp"
#include "ops/pool.hpp"
#include "ops/attention.hpp"
#include "autograd/engine.hpp"
#include "autograd/function.hpp"
#include "autograd/gradcheck.hpp"
#include "nn/functional.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"
#include "nn/layers.hpp"
#include "nn/conv_layers.hpp"
#include "nn/loss.hpp"
#include "nn/func_options.hpp"
#include "optim/optimizer.hpp"
#include "optim/sgd.hpp"
#include "optim/adam.hpp"
#include "optim/lr_scheduler.hpp"
#include "amp/autocast.hpp"
#include "amp/grad_scaler.hpp"
#include "io/json.hpp"
#include "io/safetensors.hpp"
#include "io/checkpoint.hpp"
#include "text/gpt2_tokenizer.hpp"
#include "data.hpp"

// LibTorch's macro spellings, for code ported with `namespace torch = nabla;` (defined only
// where LibTorch's own headers have not defined them).
#ifndef TORCH_MODULE
#define TORCH_MODULE(Name) NABLA_MODULE(Name)
#endif
#ifndef AT_ASSERT
#define AT_ASSERT(...) NABLA_ASSERT(__VA_ARGS__)
#endif
#ifndef TORCH_CHECK
#define TORCH_CHECK(...) NABLA_ASSERT(__VA_ARGS__)
#endif

// The CPU kernels: compiled here in header-only use. With NABLA_CPU_BACKEND_COMPILED (what the
// CMake target sets) they are compiled once, in backend/cpu/cpu_backend.cpp, and a user file
// parses none of them.
#if !defined(NABLA_CPU_BACKEND_COMPILED)
#include "backend/cpu/kernels.hpp"
#endif
