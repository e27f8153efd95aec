#pragma once
// nabla::distributed: process groups, collectives and point-to-point messages over MPI (and NCCL
// for CUDA tensors), DistributedDataParallel, and DistributedSampler (docs/distributed.md). Link
// nabla::distributed (find_package(nabla COMPONENTS distributed)), which brings MPI.

#include "nabla.hpp"
#include "distributed/ddp.hpp"
#include "distributed/collectives.hpp"
#include "distributed/point_to_point.hpp"
#include "distributed/scatter_gather.hpp"
