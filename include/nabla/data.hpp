#pragma once
// nabla::data: IDX/MNIST and CIFAR-10 readers, datasets, batch transforms and the prefetching DataLoader,
// and LibTorch's torch::data spelling over them (data/torch_data.hpp).
// See docs/data.md.

#include "data/idx.hpp"
#include "data/dataset.hpp"
#include "data/cifar.hpp"
#include "data/transforms.hpp"
#include "data/dataloader.hpp"
#include "data/torch_data.hpp"
