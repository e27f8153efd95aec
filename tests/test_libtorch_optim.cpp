// Optimizers, StepLR and clip_grad_norm_ against LibTorch's on the same parameters and the
// same gradients, step by step. Built with NABLA_HAVE_LIBTORCH when LibTorch is found;
// otherwise every case skips with the reason.
#include <gtest/gtest.h>

#define NABLA_LIBTORCH_OPTIM_CASES(X) X(Sgd) X(Adam) X(AdamW) X(StepLR) X(ClipGradNorm)

#ifndef NABLA_HAVE_LIBTORCH

#define NABLA_SKIP_OPTIM_CASE(name) \
  TEST(LibTorchOptim, name) { GTEST_SKIP() << "LibTorch not found: optimizer cross-checks not run"; }
NABLA_LIBTORCH_OPTIM_CASES(NABLA_SKIP_OPTIM_CASE)

#else

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include <nabla/nabla.hpp>

namespace nb = nabla;

namespace {

torch::Tensor to_torch(const nb::Tensor& t) {
  nb::Tensor c = t.detach().to(nb::kFloat64).contiguous();
  std::vector<int64_t> sizes(c.sizes().begin(), c.sizes().end());
  auto dt = t.dtype() == nb::kFloat32 ? torch::kFloat : torch::kDouble;
  return torch::from_blob(c.data_ptr(), sizes, torch::kDouble).clone().to(dt);
}

void expect_close(const nb::Tensor& got, const torch::Tensor& want, double rtol, double atol, const std::string& what) {
  torch::Tensor g = to_torch(got).to(torch::kDouble), w = want.detach().to(torch::kDouble);
  ASSERT_EQ(g.sizes(), w.sizes()) << what;
  EXPECT_TRUE(torch::allclose(g, w, rtol, atol)) << what << "\nnabla " << got.str() << "\ntorch " << w;
}

// Runs `steps` updates of a nabla optimizer and a LibTorch optimizer on two parameters with the
// same random gradients and compares the parameters after every step.
void run_pair(nb::DType dt, int steps, const std::function<std::unique_ptr<nb::optim::Optimizer>(std::vector<nb::Tensor>)>& make_nb,
              const std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>& make_torch) {
  nb::manual_seed(42);
  std::vector<nb::Tensor> np = {nb::randn({3, 4}, dt).requires_grad_(), nb::randn({4}, dt).requires_grad_()};
  std::vector<torch::Tensor> tp;
  for (auto& p : np) tp.push_back(to_torch(p).requires_grad_());
  auto opt = make_nb(np);
  auto topt = make_torch(tp);
  const double rtol = dt == nb::kFloat32 ? 2e-5 : 1e-12, atol = dt == nb::kFloat32 ? 2e-6 : 1e-13;
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < np.size(); ++i) {
      nb::Tensor g = nb::randn(np[i].sizes(), dt);
      np[i].set_grad(g);
      tp[i].mutable_grad() = to_torch(g);
    }
    opt->step();
    topt->step();
    for (size_t i = 0; i < np.size(); ++i)
      expect_close(np[i], tp[i], rtol, atol, "param " + std::to_string(i) + " after step " + std::to_string(s + 1) + " (" + nb::dtype_name(dt) + ")");
  }
}

}  // namespace

TEST(LibTorchOptim, Sgd) {
  struct Cfg { double lr, momentum, dampening, wd; bool nesterov; };
  for (Cfg c : {Cfg{0.1, 0, 0, 0, false}, Cfg{0.05, 0.9, 0.1, 0, false}, Cfg{0.05, 0.9, 0, 1e-2, true}, Cfg{0.2, 0.5, 0.5, 0.1, false}})
    for (nb::DType dt : {nb::kFloat32, nb::kFloat64}) {
      SCOPED_TRACE("lr " + std::to_string(c.lr) + " momentum " + std::to_string(c.momentum) + " nesterov " + std::to_string(c.nesterov));
      run_pair(dt, 6,
               [&](std::vector<nb::Tensor> p) {
                 return std::make_unique<nb::optim::SGD>(p, nb::optim::SGDOptions(c.lr).momentum(c.momentum).dampening(c.dampening)
                                                                .weight_decay(c.wd).nesterov(c.nesterov));
               },
               [&](std::vector<torch::Tensor> p) {
                 return std::make_unique<torch::optim::SGD>(p, torch::optim::SGDOptions(c.lr).momentum(c.momentum).dampening(c.dampening)
                                                                   .weight_decay(c.wd).nesterov(c.nesterov));
               });
    }
}

TEST(LibTorchOptim, Adam) {
  struct Cfg { double lr, b1, b2, eps, wd; bool amsgrad; };
  for (Cfg c : {Cfg{1e-2, 0.9, 0.999, 1e-8, 0, false}, Cfg{5e-2, 0.8, 0.99, 1e-6, 0.1, false}, Cfg{1e-2, 0.9, 0.999, 1e-8, 1e-2, true}})
    for (nb::DType dt : {nb::kFloat32, nb::kFloat64}) {
      SCOPED_TRACE("amsgrad " + std::to_string(c.amsgrad) + " wd " + std::to_string(c.wd));
      run_pair(dt, 6,
               [&](std::vector<nb::Tensor> p) {
                 return std::make_unique<nb::optim::Adam>(p, nb::optim::AdamOptions(c.lr).betas({c.b1, c.b2}).eps(c.eps)
                                                                 .weight_decay(c.wd).amsgrad(c.amsgrad));
               },
               [&](std::vector<torch::Tensor> p) {
                 return std::make_unique<torch::optim::Adam>(p, torch::optim::AdamOptions(c.lr).betas({c.b1, c.b2}).eps(c.eps)
                                                                    .weight_decay(c.wd).amsgrad(c.amsgrad));
               });
    }
}

TEST(LibTorchOptim, AdamW) {
  for (bool amsgrad : {false, true})
    for (nb::DType dt : {nb::kFloat32, nb::kFloat64}) {
      SCOPED_TRACE("amsgrad " + std::to_string(amsgrad));
      run_pair(dt, 6,
               [&](std::vector<nb::Tensor> p) {
                 return std::make_unique<nb::optim::AdamW>(p, nb::optim::AdamWOptions(3e-2).weight_decay(0.05).amsgrad(amsgrad));
               },
               [&](std::vector<torch::Tensor> p) {
                 return std::make_unique<torch::optim::AdamW>(p, torch::optim::AdamWOptions(3e-2).weight_decay(0.05).amsgrad(amsgrad));
               });
    }
  // the defaults agree too (AdamW's weight decay defaults to 1e-2)
  EXPECT_EQ(nb::optim::AdamWOptions().weight_decay(), torch::optim::AdamWOptions().weight_decay());
  EXPECT_EQ(nb::optim::AdamOptions().eps(), torch::optim::AdamOptions().eps());
}

TEST(LibTorchOptim, StepLR) {
  nb::Tensor p = nb::zeros({1}).requires_grad_();
  torch::Tensor tp = torch::zeros({1}).requires_grad_();
  nb::optim::SGD opt({p}, 0.3);
  torch::optim::SGD topt({tp}, 0.3);
  nb::optim::StepLR s(opt, 3, 0.7);
  torch::optim::StepLR ts(topt, 3, 0.7);
  // LibTorch's C++ schedulers make no initial step on construction (Python's do), so its lr
  // after k step() calls is Python's -- and nabla's -- lr at epoch k - 1.
  ts.step();
  for (int e = 0; e < 12; ++e) {
    EXPECT_NEAR(opt.lr(), topt.param_groups()[0].options().get_lr(), 1e-15) << "epoch " << e;
    s.step();
    ts.step();
  }
}

TEST(LibTorchOptim, ClipGradNorm) {
  for (double norm_type : {2.0, 1.0, 3.0, std::numeric_limits<double>::infinity()}) {
    nb::manual_seed(7);
    std::vector<nb::Tensor> np = {nb::randn({5, 3}).requires_grad_(), nb::randn({7}).requires_grad_()};
    std::vector<torch::Tensor> tp;
    for (auto& p : np) {
      p.set_grad(nb::randn(p.sizes()) * 3.0);
      tp.push_back(to_torch(p).requires_grad_());
      tp.back().mutable_grad() = to_torch(p.grad());
    }
    double n = nb::optim::clip_grad_norm_(np, 1.5, norm_type);
    double tn = torch::nn::utils::clip_grad_norm_(tp, 1.5, norm_type);
    EXPECT_NEAR(n, tn, 1e-5 * tn) << "norm_type " << norm_type;
    for (size_t i = 0; i < np.size(); ++i) expect_close(np[i].grad(), tp[i].grad(), 1e-5, 1e-6, "clipped grad");
  }
}

#endif  // NABLA_HAVE_LIBTORCH
