// Peak memory of one training step with and without gradient checkpointing (issue 14), on the
// CPU allocator's counters (nabla::memory_stats): a deep MLP (checkpoint_sequential with about
// sqrt(layers) segments) and the MNIST example's CNN (its --checkpointing: segments of two
// layers). Also checks that the gradients are bit-identical and times the steps.
//   nabla_checkpoint_memory [--layers N] [--width N] [--batch N]
// Prints a Markdown table: peak bytes held by tensors during the step, above what the model and
// its inputs hold before it (the activations and gradients), for both runs.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

namespace nb = nabla;
namespace nn = nabla::nn;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Run {
  size_t peak = 0;  // bytes above the baseline
  double seconds = 0;
  std::vector<nb::Tensor> grads;
};

Run step(const std::shared_ptr<nn::Sequential>& net, const nb::Tensor& x, const std::function<nb::Tensor()>& forward,
         int repeats) {
  Run r;
  r.seconds = 1e30;
  for (int i = 0; i < repeats; ++i) {
    for (auto& p : net->parameters()) p.set_grad(nb::Tensor());
    const nb::Device cpu = nb::Device::cpu();
    nb::reset_peak_memory_stats(cpu);
    const size_t base = nb::memory_stats(cpu).in_use;
    nb::manual_seed(7);  // dropout draws the same mask in both runs
    const double t0 = now();
    nb::Tensor y = forward();
    (y * y).mean().backward();
    r.seconds = std::min(r.seconds, now() - t0);
    r.peak = nb::memory_stats(cpu).peak - base;
  }
  for (auto& p : net->parameters()) r.grads.push_back(p.grad());
  (void)x;
  return r;
}

bool identical(const std::vector<nb::Tensor>& a, const std::vector<nb::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!nb::equal(a[i], b[i])) return false;
  return true;
}

void report(const char* name, const Run& plain, const Run& ck, const char* how) {
  std::printf("| %s | %s | %.1f MiB | %.1f MiB | %.2f | %.1f ms | %.1f ms | %s |\n", name, how, plain.peak / 1048576.0,
              ck.peak / 1048576.0, static_cast<double>(ck.peak) / static_cast<double>(plain.peak), plain.seconds * 1e3,
              ck.seconds * 1e3, identical(plain.grads, ck.grads) ? "yes" : "NO");
}

}  // namespace

int main(int argc, char** argv) {
  int64_t layers = 64, width = 256, batch = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (f == "--layers") layers = v;
    else if (f == "--width") width = v;
    else if (f == "--batch") batch = v;
    else {
      std::fprintf(stderr, "usage: nabla_checkpoint_memory [--layers N] [--width N] [--batch N]\n");
      return 2;
    }
  }
  nb::set_flush_denormal(true);
  std::printf("| model | checkpointing | peak, plain | peak, checkpointed | ratio | step, plain | step, checkpointed | "
              "gradients bit-identical |\n|---|---|---|---|---|---|---|---|\n");

  nb::manual_seed(1);
  auto mlp = std::make_shared<nn::Sequential>();
  for (int64_t l = 0; l < layers; ++l) {
    mlp->push_back(nn::Linear(width, width));
    mlp->push_back(nn::ReLU());
  }
  const nb::Tensor x = nb::randn({batch, width});
  const int64_t segments = std::max<int64_t>(1, static_cast<int64_t>(std::lround(std::sqrt(2.0 * layers))));
  Run plain = step(mlp, x, [&] { return mlp->forward(x); }, 3);
  Run ck = step(mlp, x, [&] { return nb::checkpoint_sequential(mlp, segments, x); }, 3);
  const std::string mlp_name = "MLP " + std::to_string(layers) + " x " + std::to_string(width) + ", batch " + std::to_string(batch);
  const std::string how = "checkpoint_sequential, " + std::to_string(segments) + " segments";
  report(mlp_name.c_str(), plain, ck, how.c_str());

  // the MNIST example's CNN (PyTorch's examples/mnist Net) and its --checkpointing
  nb::manual_seed(1);
  auto cnn = std::make_shared<nn::Sequential>(nn::Conv2d(1, 32, 3, 1), nn::ReLU(), nn::Conv2d(32, 64, 3, 1), nn::ReLU(),
                                              nn::MaxPool2d(2), nn::Dropout(0.25), nn::Flatten(), nn::Linear(9216, 128),
                                              nn::ReLU(), nn::Dropout(0.5), nn::Linear(128, 10));
  const nb::Tensor images = nb::randn({64, 1, 28, 28});
  Run cplain = step(cnn, images, [&] { return cnn->forward(images); }, 3);
  for (int64_t seg : {2, 3, 4, 5}) {
    Run cck = step(cnn, images, [&] { return nb::checkpoint_sequential(cnn, seg, images); }, 3);
    const std::string how = "checkpoint_sequential, " + std::to_string(seg) + " segments";
    report("MNIST CNN, batch 64", cplain, cck, how.c_str());
  }
  return 0;
}
