// A two-layer network learning to classify points on two interleaved spirals: the shortest
// complete training loop nabla can show (data, model, loss, backward, SGD update).
#include <nabla/nabla.hpp>

#include <cmath>
#include <cstdio>

namespace nb = nabla;

int main() {
  nb::manual_seed(0);
  // 1000 points, two classes, on spirals that no straight line separates
  const int64_t n = 1000;
  nb::Tensor t = nb::rand({n}) * 2 * 3.14159265;
  nb::Tensor label = nb::randint(0, 2, {n});
  nb::Tensor sign = label.to(nb::kFloat32) * 2 - 1;
  nb::Tensor x = nb::stack({t.cos() * t * sign, t.sin() * t * sign}, 1) / 10 + nb::randn({n, 2}) * 0.02;

  nb::Tensor w1 = (nb::randn({2, 64}) * 0.7).requires_grad_(), b1 = nb::zeros({64}).requires_grad_();
  nb::Tensor w2 = (nb::randn({64, 2}) * 0.1).requires_grad_(), b2 = nb::zeros({2}).requires_grad_();
  for (int step = 0; step <= 2000; ++step) {
    nb::Tensor logits = nb::matmul(nb::matmul(x, w1).add(b1).tanh(), w2) + b2;
    nb::Tensor loss = nb::cross_entropy(logits, label);
    loss.backward();
    nb::NoGradGuard no_grad;
    for (nb::Tensor* p : {&w1, &b1, &w2, &b2}) {
      p->sub_(p->grad() * 1.0);
      p->mutable_grad().zero_();
    }
    if (step % 500 == 0) {
      double acc = logits.argmax(1).eq(label).to(nb::kFloat32).mean().item<double>();
      std::printf("step %4d  loss %.4f  accuracy %.1f%%\n", step, loss.item<double>(), 100 * acc);
    }
  }
  return 0;
}
