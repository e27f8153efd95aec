#pragma once
// A LibTorch twin of nabla::models::resnet18/34 (BasicBlock ResNets, torchvision's layout and
// parameter names, optional CIFAR stem), written with torch::nn so that the cross-check
// (tests/test_libtorch_conv.cpp) and the speed comparison (benchmarks/compare/resnet_libtorch.cpp)
// run the same network in both libraries. Needs <torch/torch.h>.

#include <torch/torch.h>

#include <string>
#include <vector>

namespace nabla_torch {

struct BasicBlockImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};

  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride) {
    using torch::nn::Conv2dOptions;
    conv1 = register_module("conv1", torch::nn::Conv2d(Conv2dOptions(inplanes, planes, 3).stride(stride).padding(1).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", torch::nn::Conv2d(Conv2dOptions(planes, planes, 3).stride(1).padding(1).bias(false)));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
    if (stride != 1 || inplanes != planes) {
      downsample = register_module(
          "downsample", torch::nn::Sequential(torch::nn::Conv2d(Conv2dOptions(inplanes, planes, 1).stride(stride).bias(false)),
                                              torch::nn::BatchNorm2d(planes)));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1->forward(conv1->forward(x)));
    out = bn2->forward(conv2->forward(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
};
TORCH_MODULE(BasicBlock);

struct ResNetImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};
  bool cifar_stem;

  ResNetImpl(std::vector<int64_t> layers, int64_t num_classes, bool cifar) : cifar_stem(cifar) {
    using torch::nn::Conv2dOptions;
    conv1 = register_module("conv1", torch::nn::Conv2d(cifar ? Conv2dOptions(3, 64, 3).stride(1).padding(1).bias(false)
                                                             : Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(64));
    int64_t inplanes = 64;
    auto make = [&](int64_t planes, int64_t blocks, int64_t stride) {
      torch::nn::Sequential s;
      s->push_back(BasicBlock(inplanes, planes, stride));
      inplanes = planes;
      for (int64_t i = 1; i < blocks; ++i) s->push_back(BasicBlock(inplanes, planes, 1));
      return s;
    };
    layer1 = register_module("layer1", make(64, layers[0], 1));
    layer2 = register_module("layer2", make(128, layers[1], 2));
    layer3 = register_module("layer3", make(256, layers[2], 2));
    layer4 = register_module("layer4", make(512, layers[3], 2));
    fc = register_module("fc", torch::nn::Linear(512, num_classes));
    for (auto& m : modules(/*include_self=*/false))
      if (auto* c = m->as<torch::nn::Conv2d>())
        torch::nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::relu(bn1->forward(conv1->forward(x)));
    if (!cifar_stem) h = torch::max_pool2d(h, 3, 2, 1);
    h = layer4->forward(layer3->forward(layer2->forward(layer1->forward(h))));
    return fc->forward(torch::adaptive_avg_pool2d(h, {1, 1}).flatten(1));
  }
};
TORCH_MODULE(ResNet);

inline ResNet resnet18(int64_t num_classes = 1000, bool cifar_stem = false) { return ResNet(std::vector<int64_t>{2, 2, 2, 2}, num_classes, cifar_stem); }

}  // namespace nabla_torch
