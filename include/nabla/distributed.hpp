#pragma once
// nabla::distributed: process groups and collectives over MPI, DistributedDataParallel, and
// DistributedSampler (docs/distributed.md). Link nabla::distributed
// (find_package(nabla COMPONENTS distributed)), which brings MPI.

#include "nabla.hpp"
#include "distributed/ddp.hpp"
#include "distributed/collectives.hpp"
