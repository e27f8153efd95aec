#pragma once
// Every op family. Each ops/ header ends by including this one, so that any of them used on
// its own brings the definitions of the Tensor members and operators its ops call.

#include "../core/macros.hpp"
#include "binary.hpp"
#include "common.hpp"
#include "copy.hpp"
#include "factory.hpp"
#include "index.hpp"
#include "join.hpp"
#include "linalg.hpp"
#include "loss.hpp"
#include "operators.hpp"
#include "print.hpp"
#include "reduce.hpp"
#include "softmax.hpp"
#include "unary.hpp"
#include "view.hpp"
#include "../autograd/engine.hpp"

#if NABLA_COMPILES_CPU_KERNELS
#include "../backend/cpu/cpu_backend.hpp"  // NOLINT: the CPU primitives, once every op is declared
#endif
