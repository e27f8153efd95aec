// The user program (18 lines) whose compile cost scripts/compile-time.sh measures: a small MLP,
// one training step, as a user file includes nabla.
#include <nabla/nabla.hpp>
#include <iostream>

int main() {
  nabla::manual_seed(0);
  auto net = nabla::nn::Sequential(nabla::nn::Linear(784, 128), nabla::nn::ReLU(),
                                   nabla::nn::Linear(128, 10));
  nabla::optim::Adam opt(net.parameters(), nabla::optim::AdamOptions(1e-3));
  nabla::Tensor x = nabla::randn({32, 784});
  nabla::Tensor y = nabla::randint(0, 10, {32});
  nabla::Tensor loss = nabla::cross_entropy(net.forward(x), y);
  opt.zero_grad();
  loss.backward();
  opt.step();
  std::cout << "loss " << loss.item<float>() << "\n";
}
