// Fits y = 3x - 1 with nabla from a separate project; exits non-zero if it does not learn.
// Runs on the GPU when the project links nabla::cuda and a GPU is present.
#include <nabla/nabla.hpp>

#include <cmath>
#include <cstdio>

int main() {
  namespace nb = nabla;
  nb::manual_seed(0);
  const nb::Device dev = nb::cuda::is_available() ? nb::Device::cuda() : nb::Device::cpu();
  nb::Tensor x = nb::randn({256, 1}, dev);
  nb::Tensor y = x * 3 - 1;
  nb::Tensor w = nb::zeros({1, 1}, dev).requires_grad_(), b = nb::zeros({1}, dev).requires_grad_();
  float loss = 0;
  for (int step = 0; step < 200; ++step) {
    nb::Tensor l = nb::mse_loss(nb::matmul(x, w) + b, y);
    l.backward();
    nb::NoGradGuard no_grad;
    w.sub_(w.grad() * 0.1);
    b.sub_(b.grad() * 0.1);
    w.mutable_grad().zero_();
    b.mutable_grad().zero_();
    loss = l.item<float>();
  }
  std::printf("consumer (%s): w=%.4f b=%.4f loss=%.2e\n", dev.str().c_str(), w.item<float>(), b.item<float>(), loss);
  return (loss < 1e-6f && std::abs(w.item<float>() - 3) < 1e-3f) ? 0 : 1;
}
