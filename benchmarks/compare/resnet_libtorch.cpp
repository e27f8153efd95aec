// ResNet-18 training step, nabla vs LibTorch, in one process: the same network (torchvision's
// layout, CIFAR stem by default; tests/support/torch_resnet.hpp is the LibTorch twin), the same
// batch of random 32x32 images, the same optimizer (SGD, Nesterov momentum 0.9, weight decay
// 5e-4, label-smoothed cross entropy). Rounds alternate between the two libraries so machine
// noise hits both alike; the median round time of each is reported, with the ratio.
// --amp bf16 adds two more sides to each round: nabla under nabla::amp::autocast(kCPU, kBFloat16)
// and LibTorch under its CPU autocast (at::autocast::set_cpu_enabled, as torch.autocast("cpu")),
// each around forward and loss, float32 weights and optimizer as the examples' --amp bf16.
//   nabla_resnet_libtorch [--batch N] [--rounds R] [--steps S] [--image-size P] [--imagenet-stem] [--threads T]
//                         [--amp bf16]
// benchmarks/compare/resnet.sh runs it; figures in docs/resnet.md.
#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <nabla/models/resnet.hpp>
#include <nabla/nabla.hpp>

#include "support/torch_resnet.hpp"

namespace nb = nabla;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 64, rounds = 5, steps = 3, side = 32, threads = 0;
  bool cifar = true, amp = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", f.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (f == "--batch") batch = next();
    else if (f == "--rounds") rounds = next();
    else if (f == "--steps") steps = next();
    else if (f == "--image-size") side = next();
    else if (f == "--threads") threads = next();
    else if (f == "--imagenet-stem") cifar = false;
    else if (f == "--amp" && i + 1 < argc && std::string(argv[i + 1]) == "bf16") amp = true, ++i;
    else if (f == "--amp" && i + 1 < argc && std::string(argv[i + 1]) == "none") ++i;
    else {
      std::fprintf(stderr, "unknown option %s\n", f.c_str());
      return 2;
    }
  }
  if (threads > 0) {
#if defined(_OPENMP)
    omp_set_num_threads(static_cast<int>(threads));
#endif
    torch::set_num_threads(static_cast<int>(threads));
  }
  nb::set_flush_denormal(true);
  at::globalContext().setFlushDenormal(true);  // torch.set_flush_denormal(True)

  // the same data for both
  nb::manual_seed(1);
  nb::Tensor x = nb::randn({batch, 3, side, side});
  nb::Tensor y = nb::randint(0, 10, {batch});
  torch::Tensor tx = torch::from_blob(x.data_ptr<float>(), {batch, 3, side, side}, torch::kFloat).clone();
  std::vector<int64_t> yv = y.to_vector<int64_t>();
  torch::Tensor ty = torch::tensor(yv, torch::kLong);

  auto net = nb::models::resnet18({.num_classes = 10, .cifar_stem = cifar});
  nb::optim::SGD opt(net->parameters(), nb::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(5e-4));
  nb::CrossEntropyOptions ce;
  ce.label_smoothing = 0.1;
  auto nabla_step = [&](bool bf16) {
    opt.zero_grad();
    nb::Tensor loss;
    {
      nb::amp::autocast guard(nb::kCPU, nb::kBFloat16, bf16);
      loss = nb::cross_entropy(net->forward(x), y, ce);
    }
    loss.backward();
    opt.step();
    return loss.item<double>();
  };

  torch::manual_seed(1);
  nabla_torch::ResNet twin = nabla_torch::resnet18(10, cifar);
  torch::optim::SGD topt(twin->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(5e-4));
  // torch.autocast("cpu", torch.bfloat16) as an RAII guard over LibTorch 1.13's C++ API
  struct TorchAutocast {
    bool on;
    explicit TorchAutocast(bool enable) : on(enable) {
      if (!on) return;
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
      at::autocast::increment_nesting();
    }
    ~TorchAutocast() {
      if (!on) return;
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_cpu_enabled(false);
    }
  };
  auto torch_step = [&](bool bf16) {
    topt.zero_grad();
    torch::Tensor loss;
    {
      TorchAutocast guard(bf16);
      loss = torch::nn::functional::cross_entropy(twin->forward(tx), ty,
                                                  torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1));
    }
    loss.backward();
    topt.step();
    return loss.item<double>();
  };

  std::printf("ResNet-18 (%s stem) train step, batch %lld of %lldx%lld, %lld steps per round, %lld rounds, threads %d%s\n",
              cifar ? "CIFAR" : "ImageNet", (long long)batch, (long long)side, (long long)side, (long long)steps,
              (long long)rounds, torch::get_num_threads(), amp ? ", float32 and CPU autocast bf16" : "");
  struct Side {
    const char* name;
    std::function<double()> step;
    std::vector<double> t;
    double loss = 0;
  };
  std::vector<Side> sides;
  sides.push_back({"nabla", [&] { return nabla_step(false); }, {}});
  sides.push_back({"LibTorch", [&] { return torch_step(false); }, {}});
  if (amp) {
    sides.push_back({"nabla bf16", [&] { return nabla_step(true); }, {}});
    sides.push_back({"LibTorch bf16", [&] { return torch_step(true); }, {}});
  }
  for (Side& sd : sides) sd.step();  // warm-up: first-touch allocations, kernel choices, autocast casts
  for (int64_t r = 0; r < rounds; ++r) {
    std::printf("round %lld:", (long long)r + 1);
    for (Side& sd : sides) {
      const double t0 = now();
      for (int64_t s = 0; s < steps; ++s) sd.loss = sd.step();
      sd.t.push_back((now() - t0) / static_cast<double>(steps));
      std::printf("%s %s %.3f s/step (loss %.4f)", &sd == &sides.front() ? "" : ",", sd.name, sd.t.back(), sd.loss);
    }
    std::printf("\n");
  }
  std::printf("median:");
  for (Side& sd : sides) {
    const double m = median(sd.t);
    std::printf("%s %s %.3f s/step (%.1f img/s)", &sd == &sides.front() ? "" : ";", sd.name, m, static_cast<double>(batch) / m);
  }
  const double mn = median(sides[0].t), mt = median(sides[1].t);
  std::printf("; nabla/LibTorch time %.2f", mn / mt);
  if (amp) {
    const double mnb = median(sides[2].t), mtb = median(sides[3].t);
    std::printf("; nabla bf16/nabla float32 time %.2f; nabla bf16/LibTorch bf16 time %.2f", mnb / mn, mnb / mtb);
  }
  std::printf("\n");
  return 0;
}
