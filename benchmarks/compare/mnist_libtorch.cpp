// The LibTorch twin of examples/mnist for the side-by-side epoch timing (benchmarks/compare/
// mnist.sh): the same CNN (PyTorch's examples/mnist Net), batch size, optimizer (Adam, lr 2e-3,
// StepLR gamma 0.4), normalisation and shuffling per epoch, data held in memory as tensors. MNIST
// is read with nabla's IDX reader (LibTorch's own reader cannot open the .gz files) and copied
// into torch tensors once, before any timing.
//   mnist_libtorch --data DIR [--epochs N] [--batch-size N] [--limit N] [--threads N] [--amp bf16]
// --amp bf16: CPU autocast to bfloat16 around forward and loss (at::autocast::set_cpu_enabled, as
// torch.autocast("cpu") does), the examples' --amp bf16.
// Prints one line per epoch: "epoch E: train loss L, test accuracy A%, S s, R img/s".

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nabla/data.hpp>

namespace {

struct NetImpl : torch::nn::Module {
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Dropout dropout1{nullptr}, dropout2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  NetImpl() {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).stride(1)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).stride(1)));
    dropout1 = register_module("dropout1", torch::nn::Dropout(0.25));
    dropout2 = register_module("dropout2", torch::nn::Dropout(0.5));
    fc1 = register_module("fc1", torch::nn::Linear(9216, 128));
    fc2 = register_module("fc2", torch::nn::Linear(128, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(conv1->forward(x));
    x = torch::relu(conv2->forward(x));
    x = torch::max_pool2d(x, 2);
    x = dropout1->forward(x);
    x = torch::flatten(x, 1);
    x = torch::relu(fc1->forward(x));
    x = dropout2->forward(x);
    return fc2->forward(x);
  }
};
TORCH_MODULE(Net);

// nabla tensor (contiguous, CPU) -> torch tensor of the same dtype (copied).
torch::Tensor to_torch(const nabla::Tensor& t) {
  nabla::Tensor c = t.contiguous();
  std::vector<int64_t> sizes(c.sizes().begin(), c.sizes().end());
  auto dtype = c.dtype() == nabla::kFloat32 ? torch::kFloat32 : torch::kInt64;
  return torch::from_blob(c.data_ptr(), sizes, torch::TensorOptions().dtype(dtype)).clone();
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  int64_t epochs = 1, batch = 64, limit = 0, threads = 0;
  bool amp = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string f = argv[i], v = argv[i + 1];
    if (f == "--data") dir = v;
    else if (f == "--epochs") epochs = std::stoll(v);
    else if (f == "--batch-size") batch = std::stoll(v);
    else if (f == "--limit") limit = std::stoll(v);
    else if (f == "--threads") threads = std::stoll(v);
    else if (f == "--amp" && (v == "bf16" || v == "none")) amp = v == "bf16";
    else {
      std::fprintf(stderr, "mnist_libtorch: unknown option %s\n", f.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: mnist_libtorch --data DIR [--epochs N] [--batch-size N] [--limit N] [--threads N]\n");
    return 2;
  }
  if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
  at::globalContext().setFlushDenormal(true);  // as the nabla example does
  torch::manual_seed(1);
  torch::Tensor train_x, train_y, test_x, test_y;
  try {
    auto tr = nabla::data::mnist_dataset(dir, true), te = nabla::data::mnist_dataset(dir, false);
    train_x = to_torch(tr->data()), train_y = to_torch(tr->target());
    test_x = to_torch(te->data()), test_y = to_torch(te->target());
  } catch (const nabla::Error& e) {
    std::fprintf(stderr, "mnist_libtorch: %s\n", e.what());
    return 1;
  }
  if (limit > 0 && limit < train_x.size(0)) train_x = train_x.narrow(0, 0, limit), train_y = train_y.narrow(0, 0, limit);

  Net net;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(2e-3));
  const int64_t n = train_x.size(0), steps = (n + batch - 1) / batch;
  std::printf("libtorch %s, %d threads; %lld training images, batch %lld%s\n", TORCH_VERSION, torch::get_num_threads(),
              (long long)n, (long long)batch, amp ? ", CPU autocast bf16" : "");
  // torch.autocast("cpu", torch.bfloat16) as an RAII guard over the C++ API of LibTorch 1.13
  struct Autocast {
    bool on;
    explicit Autocast(bool enable) : on(enable) {
      if (!on) return;
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
      at::autocast::set_cpu_enabled(true);
      at::autocast::increment_nesting();
    }
    ~Autocast() {
      if (!on) return;
      if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
      at::autocast::set_cpu_enabled(false);
    }
  };
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    net->train();
    const double t0 = now();
    torch::Tensor perm = torch::randperm(n, torch::kInt64);
    double loss_sum = 0;
    for (int64_t s = 0; s < steps; ++s) {
      torch::Tensor idx = perm.narrow(0, s * batch, std::min(batch, n - s * batch));
      torch::Tensor x = train_x.index_select(0, idx), y = train_y.index_select(0, idx);
      opt.zero_grad();
      torch::Tensor loss;
      {
        Autocast ac(amp);
        loss = torch::nn::functional::cross_entropy(net->forward(x), y);
      }
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>();
    }
    const double seconds = now() - t0;
    // StepLR(step_size=1, gamma=0.4), as the nabla example
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(
        static_cast<torch::optim::AdamOptions&>(g.options()).lr() * 0.4);
    torch::NoGradGuard no_grad;
    Autocast ac(amp);
    net->eval();
    int64_t correct = 0;
    for (int64_t s = 0; s < test_x.size(0); s += 1000) {
      const int64_t m = std::min<int64_t>(1000, test_x.size(0) - s);
      correct += net->forward(test_x.narrow(0, s, m)).argmax(1).eq(test_y.narrow(0, s, m)).sum().item<int64_t>();
    }
    std::printf("epoch %lld: train loss %.4f, test accuracy %.2f%%, %.1f s, %.0f img/s\n", (long long)epoch + 1,
                loss_sum / steps, 100.0 * correct / test_x.size(0), seconds, n / seconds);
    std::fflush(stdout);
  }
  return 0;
}
