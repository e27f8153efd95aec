#pragma once
// ResNet-18/34/50/101/152 with torchvision's architecture (torchvision.models.resnet, "ResNet
// v1.5": the stride of a Bottleneck is on its 3x3 conv), its parameter and buffer names and
// shapes (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0/1, fc, num_batches_tracked), and its
// initialisation: kaiming_normal_(fan_out, relu) for every conv, BatchNorm weight 1 / bias 0,
// Linear as nn.Linear, and zero_init_residual. A state_dict saved from torchvision with
// safetensors.torch.save_file(model.state_dict(), path) loads with nabla::io::load unchanged.
//
//   auto net = nabla::models::resnet18();                          // ImageNet: 1000 classes
//   auto cifar = nabla::models::resnet18({.num_classes = 10, .cifar_stem = true});
//
// cifar_stem swaps the 7x7 stride-2 conv1 and the max-pool for a 3x3 stride-1 conv1 and no
// pooling, the usual stem for 32x32 images (the parameter names stay: conv1.weight is
// [64, 3, 3, 3]). See docs/resnet.md.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../nn/conv_layers.hpp"
#include "../nn/init.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"

namespace nabla {
namespace models {

struct ResNetOptions {
  int64_t num_classes = 1000;
  // The last BatchNorm of each residual branch starts at weight 0, so each block starts as the
  // identity (Goyal et al., "Accurate, Large Minibatch SGD"); torchvision's option of that name.
  bool zero_init_residual = false;
  // 3x3 stride-1 conv1 and no max-pool, for 32x32 inputs (CIFAR).
  bool cifar_stem = false;
  // torchvision's groups and width_per_group (ResNeXt / wide ResNet); 1 and 64 for ResNet.
  int64_t groups = 1;
  int64_t width_per_group = 64;
};

namespace detail {
inline nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return nn::Conv2d(in, out, 3, stride, 1, 1, groups, /*bias=*/false);
}
inline nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(in, out, 1, stride, 0, 1, 1, /*bias=*/false);
}
}  // namespace detail

// Two 3x3 convs; expansion 1. torchvision.models.resnet.BasicBlock.
class BasicBlock : public nn::Module {
 public:
  static constexpr int64_t expansion = 1;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;  // null when the shortcut is the identity

  BasicBlock(int64_t inplanes, int64_t planes, int64_t stride = 1, std::shared_ptr<nn::Sequential> downsample_ = nullptr,
             int64_t groups = 1, int64_t base_width = 64) {
    NABLA_CHECK(groups == 1 && base_width == 64, ValueError,
                "models::BasicBlock: only supports groups=1 and base_width=64 (as torchvision), got groups=", groups,
                " base_width=", base_width);
    conv1 = register_module("conv1", detail::conv3x3(inplanes, planes, stride));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    relu = register_module("relu", nn::ReLU());
    conv2 = register_module("conv2", detail::conv3x3(planes, planes));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    if (downsample_) downsample = register_module("downsample", std::move(downsample_));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = relu->forward(bn1->forward(conv1->forward(x)));
    out = bn2->forward(conv2->forward(out));
    return relu->forward(out + (downsample ? downsample->forward(x) : x));
  }
  // The BatchNorm whose weight zero_init_residual zeroes.
  nn::BatchNorm2d& last_bn() { return *bn2; }
  std::string type_name() const override { return "BasicBlock"; }
};

// 1x1 reduce, 3x3 (carrying the stride), 1x1 expand; expansion 4. torchvision's Bottleneck.
class Bottleneck : public nn::Module {
 public:
  static constexpr int64_t expansion = 4;
  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;

  Bottleneck(int64_t inplanes, int64_t planes, int64_t stride = 1, std::shared_ptr<nn::Sequential> downsample_ = nullptr,
             int64_t groups = 1, int64_t base_width = 64) {
    const int64_t width = planes * base_width / 64 * groups;  // int(planes * (base_width / 64.)) * groups
    conv1 = register_module("conv1", detail::conv1x1(inplanes, width));
    bn1 = register_module("bn1", nn::BatchNorm2d(width));
    conv2 = register_module("conv2", detail::conv3x3(width, width, stride, groups));
    bn2 = register_module("bn2", nn::BatchNorm2d(width));
    conv3 = register_module("conv3", detail::conv1x1(width, planes * expansion));
    bn3 = register_module("bn3", nn::BatchNorm2d(planes * expansion));
    relu = register_module("relu", nn::ReLU());
    if (downsample_) downsample = register_module("downsample", std::move(downsample_));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = relu->forward(bn1->forward(conv1->forward(x)));
    out = relu->forward(bn2->forward(conv2->forward(out)));
    out = bn3->forward(conv3->forward(out));
    return relu->forward(out + (downsample ? downsample->forward(x) : x));
  }
  nn::BatchNorm2d& last_bn() { return *bn3; }
  std::string type_name() const override { return "Bottleneck"; }
};

// conv1 bn1 relu maxpool layer1..layer4 avgpool fc, as torchvision.models.resnet.ResNet.
class ResNet : public nn::Module {
 public:
  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Module> maxpool;  // MaxPool2d(3, 2, 1); Identity with the CIFAR stem
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<nn::AdaptiveAvgPool2d> avgpool;
  std::shared_ptr<nn::Linear> fc;
  ResNetOptions options;

  // `Block` is BasicBlock or Bottleneck; `layers` the number of blocks in each of the four stages.
  template <class Block>
  static std::shared_ptr<ResNet> make(const std::vector<int64_t>& layers, const ResNetOptions& options) {
    auto net = std::shared_ptr<ResNet>(new ResNet(options));
    net->build<Block>(layers);
    return net;
  }

  Tensor forward(const Tensor& x) override {
    NABLA_CHECK(x.dim() == 4 && x.size(1) == 3, ShapeError, "models::ResNet: expected images [N, 3, H, W], got ",
                nabla::detail::describe(x));
    Tensor h = maxpool->forward(relu->forward(bn1->forward(conv1->forward(x))));
    h = layer4->forward(layer3->forward(layer2->forward(layer1->forward(h))));
    return fc->forward(avgpool->forward(h).flatten(1));
  }
  std::string type_name() const override { return "ResNet"; }

  // Gradient checkpointing per residual block (Hugging Face's name for it): each block of
  // layer1..layer4 keeps only its input and is recomputed in backward (nabla::checkpoint), so the
  // activations held at once shrink to one block's plus the blocks' inputs.
  void gradient_checkpointing_enable(bool on = true) {
    for (const auto& stage : {layer1, layer2, layer3, layer4})
      for (size_t i = 0; i < stage->size(); ++i) (*stage)[i]->gradient_checkpointing(on);
  }

 private:
  explicit ResNet(const ResNetOptions& o) : options(o) {
    NABLA_CHECK(o.num_classes > 0 && o.groups > 0 && o.width_per_group > 0, ValueError,
                "models::ResNet: num_classes, groups and width_per_group must be positive, got ", o.num_classes, ", ",
                o.groups, ", ", o.width_per_group);
  }

  template <class Block>
  void build(const std::vector<int64_t>& layers) {
    NABLA_CHECK(layers.size() == 4, ValueError, "models::ResNet: expected 4 stage sizes, got ", layers.size());
    conv1 = register_module("conv1", options.cifar_stem ? nn::Conv2d(3, inplanes_, 3, 1, 1, 1, 1, false)
                                                        : nn::Conv2d(3, inplanes_, 7, 2, 3, 1, 1, false));
    bn1 = register_module("bn1", nn::BatchNorm2d(inplanes_));
    relu = register_module("relu", nn::ReLU());
    if (options.cifar_stem) maxpool = register_module("maxpool", std::shared_ptr<nn::Module>(std::make_shared<nn::Identity>()));
    else maxpool = register_module("maxpool", std::shared_ptr<nn::Module>(std::make_shared<nn::MaxPool2d>(3, 2, 1)));
    layer1 = register_module("layer1", make_layer<Block>(64, layers[0], 1));
    layer2 = register_module("layer2", make_layer<Block>(128, layers[1], 2));
    layer3 = register_module("layer3", make_layer<Block>(256, layers[2], 2));
    layer4 = register_module("layer4", make_layer<Block>(512, layers[3], 2));
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(1));
    fc = register_module("fc", nn::Linear(512 * Block::expansion, options.num_classes));
    // torchvision's init: convs kaiming_normal_(fan_out, relu), BatchNorm 1 / 0 (already so), fc as nn.Linear
    for (const auto& [name, m] : named_modules())
      if (auto* conv = dynamic_cast<nn::Conv2d*>(m.get()))
        nn::init::kaiming_normal_(conv->weight, 0.0, nn::init::FanMode::FanOut, "relu");
    if (options.zero_init_residual)
      for (const auto& [name, m] : named_modules())
        if (auto* b = dynamic_cast<Block*>(m.get())) nn::init::zeros_(b->last_bn().weight);
  }

  template <class Block>
  std::shared_ptr<nn::Sequential> make_layer(int64_t planes, int64_t blocks, int64_t stride) {
    NABLA_CHECK(blocks > 0, ValueError, "models::ResNet: a stage needs at least one block, got ", blocks);
    std::shared_ptr<nn::Sequential> downsample;
    if (stride != 1 || inplanes_ != planes * Block::expansion)
      downsample = std::make_shared<nn::Sequential>(detail::conv1x1(inplanes_, planes * Block::expansion, stride),
                                                    nn::BatchNorm2d(planes * Block::expansion));
    auto layer = std::make_shared<nn::Sequential>();
    layer->push_back(std::make_shared<Block>(inplanes_, planes, stride, downsample, options.groups, options.width_per_group));
    inplanes_ = planes * Block::expansion;
    for (int64_t i = 1; i < blocks; ++i)
      layer->push_back(std::make_shared<Block>(inplanes_, planes, 1, nullptr, options.groups, options.width_per_group));
    return layer;
  }

  int64_t inplanes_ = 64;
};

// torchvision.models.resnet18 ... resnet152 (weights=None): BasicBlock [2,2,2,2] and [3,4,6,3];
// Bottleneck [3,4,6,3], [3,4,23,3], [3,8,36,3].
inline std::shared_ptr<ResNet> resnet18(const ResNetOptions& o) { return ResNet::make<BasicBlock>({2, 2, 2, 2}, o); }
inline std::shared_ptr<ResNet> resnet34(const ResNetOptions& o) { return ResNet::make<BasicBlock>({3, 4, 6, 3}, o); }
inline std::shared_ptr<ResNet> resnet50(const ResNetOptions& o) { return ResNet::make<Bottleneck>({3, 4, 6, 3}, o); }
inline std::shared_ptr<ResNet> resnet101(const ResNetOptions& o) { return ResNet::make<Bottleneck>({3, 4, 23, 3}, o); }
inline std::shared_ptr<ResNet> resnet152(const ResNetOptions& o) { return ResNet::make<Bottleneck>({3, 8, 36, 3}, o); }
inline std::shared_ptr<ResNet> resnet18(int64_t num_classes = 1000) { return resnet18(ResNetOptions{.num_classes = num_classes}); }
inline std::shared_ptr<ResNet> resnet34(int64_t num_classes = 1000) { return resnet34(ResNetOptions{.num_classes = num_classes}); }
inline std::shared_ptr<ResNet> resnet50(int64_t num_classes = 1000) { return resnet50(ResNetOptions{.num_classes = num_classes}); }
inline std::shared_ptr<ResNet> resnet101(int64_t num_classes = 1000) { return resnet101(ResNetOptions{.num_classes = num_classes}); }
inline std::shared_ptr<ResNet> resnet152(int64_t num_classes = 1000) { return resnet152(ResNetOptions{.num_classes = num_classes}); }

}  // namespace models
}  // namespace nabla
