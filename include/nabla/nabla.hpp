#pragma once
// nabla: a header-only C++20 tensor library with reverse-mode autodiff.
// Include this one header; see docs/ and README.md.

#include "core/device.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/half.hpp"
#include "core/random.hpp"
#include "core/scalar.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "ops/all.hpp"
#include "autograd/engine.hpp"
#include "autograd/gradcheck.hpp"
