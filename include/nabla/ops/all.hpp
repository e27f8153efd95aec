#pragma once
// Every op family of the tensor library proper (the layers, pooling and normalisation ops are in
// ops/conv.hpp, ops/pool.hpp, ops/norm.hpp). Tensor's methods are declared in core/tensor.hpp
// and defined in the header of their family, as LibTorch declares them in TensorBody.h and
// defines them in ATen; a program includes <nabla/nabla.hpp>, which brings every definition.

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
#include "sort.hpp"
#include "unary.hpp"
#include "view.hpp"
