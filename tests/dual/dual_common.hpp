// What every dual-compiled program shares: the include swap (DUAL_NABLA: nabla with
// `namespace torch = nabla;`, else LibTorch), the row printer tests/dual/compare.py reads, and
// parameters set from a formula so that both builds start from the same numbers.
#pragma once

// LibTorch's spelling `Tensor forward(Tensor x)` in a module hides nabla's virtual
// Module::forward(const Tensor&) (it is not an override; holders and Sequential call it by
// name), which clang's -Wall reports. Ported code compiles either way; these programs keep the
// spelling and silence the warning.
#pragma GCC diagnostic ignored "-Woverloaded-virtual"

#ifdef DUAL_NABLA
#include <nabla/nabla.hpp>
namespace torch = nabla;
#else
#include <torch/torch.h>
#endif

#include <cstdio>
#include <string>

namespace dual {

// "label n v1 ... vn": every value of t, in float64.
inline void show(const std::string& label, const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kFloat64).contiguous().reshape({-1});
  std::printf("%s %lld", label.c_str(), static_cast<long long>(c.numel()));
  for (int64_t i = 0; i < c.numel(); ++i) std::printf(" %.17g", c[i].item<double>());
  std::printf("\n");
}
inline void show(const std::string& label, double v) { std::printf("%s 1 %.17g\n", label.c_str(), v); }
// A row with no numbers: its label (a name both builds must agree on) is what is compared.
inline void label(const std::string& text) { std::printf("%s 0\n", text.c_str()); }

// Every parameter from a formula: the same numbers in both libraries, no generator involved.
template <class M>
void set_parameters(M& module, double scale) {
  torch::NoGradGuard no_grad;
  int k = 0;
  for (auto& p : module->parameters()) {
    torch::Tensor v = torch::sin(torch::arange(p.numel(), torch::kFloat64) * 0.37 + 0.5 * k++) * scale;
    p.copy_(v.reshape(p.sizes()));
  }
}

}  // namespace dual
