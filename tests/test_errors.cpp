// The error path of every op family: bad input throws the right nabla::Error subclass with a
// message that names the op and the shapes / dtypes / devices involved, and the process keeps
// working afterwards (each test ends by running a small computation with autograd).

#include <cstdint>

#include "test_util.hpp"

namespace nabla_test {
namespace {

#define EXPECT_THROWS(E, expr, ...) EXPECT_TRUE(throws_with<E>([&] { (void)(expr); }, {__VA_ARGS__}))

// Proof that an error left nothing broken: grad mode is on and a small graph still runs.
void still_works() {
  EXPECT_TRUE(GradMode::is_enabled());
  Tensor x = ones({2, 3}, kFloat64).requires_grad_();
  Tensor y = (x * 2).sum();
  y.backward();
  EXPECT_DOUBLE_EQ(y.item<double>(), 12.0);
  EXPECT_DOUBLE_EQ(x.grad().sum().item<double>(), 12.0);
}

Tensor f32(const Shape& s) { return ones(s, kFloat32); }
Tensor i64(const Shape& s) { return zeros(s, kInt64); }
Tensor bools(const Shape& s) { return ones(s, kBool); }

TEST(Errors, Factories) {
  EXPECT_THROWS(ValueError, empty({2, -1}), "empty", "-1", "[2, -1]");
  EXPECT_THROWS(ValueError, zeros({-3}), "-3", "[-3]");
  EXPECT_THROWS(ValueError, arange(0, 5, 0), "arange", "step");
  EXPECT_THROWS(ValueError, arange(5, 0, 1), "arange", "inconsistent");
  EXPECT_THROWS(ValueError, linspace(0, 1, -1), "linspace", "-1");
  EXPECT_THROWS(ValueError, eye(-1), "eye", "-1");
  EXPECT_THROWS(DTypeError, rand({2}, kInt64), "rand", "int64");
  EXPECT_THROWS(DTypeError, randn({2}, kInt32), "randn", "int32");
  EXPECT_THROWS(ValueError, randint(5, 5, {2}), "randint", "low=5", "high=5");
  EXPECT_THROWS(ShapeError, from_vector(std::vector<float>{1, 2, 3}, {2, 2}, kFloat32), "from_vector", "3", "[2, 2]");
  EXPECT_THROWS(ValueError, Device("gpu:0"), "Device", "gpu:0");
  still_works();
}

TEST(Errors, CudaWithoutBackend) {
  if (cuda::is_available()) GTEST_SKIP() << "this build has the CUDA backend";
  EXPECT_THROWS(DeviceError, zeros({2, 3}, Device::cuda()), "cuda:0", "CUDA backend");
  EXPECT_THROWS(DeviceError, f32({2}).to(Device::cuda()), "cuda:0", "CUDA backend");
  // a tensor that claims to live on cuda (memory is host memory; no kernel may run on it)
  std::vector<float> mem(6, 1.0f);
  Tensor fake = from_blob(mem.data(), {2, 3}, TensorOptions(kFloat32).device(Device::cuda()));
  EXPECT_THROWS(DeviceError, fake + f32({2, 3}), "add", "one device", "[2, 3] float32 cuda:0", "[2, 3] float32 cpu");
  EXPECT_THROWS(DeviceError, matmul(f32({3, 2}), fake), "matmul", "cuda:0", "cpu");
  EXPECT_THROWS(DeviceError, cat({f32({2, 3}), fake}), "cat", "cuda:0", "cpu");
  EXPECT_THROWS(DeviceError, where(bools({2, 3}), fake, f32({2, 3})), "where", "cuda:0");
  std::vector<int64_t> imem(2, 0);
  Tensor fake_index = from_blob(imem.data(), {2}, TensorOptions(kInt64).device(Device::cuda()));
  EXPECT_THROWS(DeviceError, f32({5, 3}).index_select(0, fake_index), "index_select", "cuda:0", "cpu");
  EXPECT_THROWS(DeviceError, f32({5, 3}).gather(0, fake_index.view({2, 1})), "gather", "cuda:0", "cpu");
  EXPECT_THROWS(DeviceError, fake.sum(), "cuda:0", "CUDA backend");
  EXPECT_THROWS(DeviceError, fake.cpu(), "cuda:0", "CUDA backend");
  EXPECT_THROWS(DeviceError, (fake.accessor<float, 2>()), "accessor", "cuda:0");
  still_works();
}

TEST(Errors, Views) {
  Tensor x = f32({2, 3});
  EXPECT_THROWS(ShapeError, x.view({5}), "view", "[5]", "6");
  EXPECT_THROWS(ShapeError, x.t().view({6}), "view", "[3, 2]", "reshape");
  EXPECT_THROWS(ShapeError, x.reshape({-1, -1}), "reshape", "-1", "[-1, -1]");
  EXPECT_THROWS(ShapeError, x.reshape({4, -1}), "reshape", "[4, -1]", "6");
  EXPECT_THROWS(ShapeError, x.permute({0}), "permute", "[2, 3]");
  EXPECT_THROWS(ValueError, x.permute({0, 0}), "permute", "repeats");
  EXPECT_THROWS(IndexError, x.transpose(0, 3), "transpose", "3", "rank 2");
  EXPECT_THROWS(ShapeError, f32({2, 3, 4}).t(), "t:", "[2, 3, 4]");
  EXPECT_THROWS(IndexError, x.narrow(1, 2, 5), "narrow", "exceeds", "[2, 3]");
  EXPECT_THROWS(IndexError, x.narrow(1, 7, 1), "narrow", "7");
  EXPECT_THROWS(ValueError, x.slice(1, 0, 2, 0), "slice", "step");
  EXPECT_THROWS(ShapeError, f32({}).slice(0, 0, 1), "slice", "0-dim");
  EXPECT_THROWS(IndexError, x.select(0, 5), "select", "5", "size 2");
  EXPECT_THROWS(IndexError, x.select(0, -3), "select", "-3");
  EXPECT_THROWS(IndexError, f32({})[0], "select", "0-dim");
  EXPECT_THROWS(ShapeError, x.expand({4, 3}), "expand", "[4, 3]", "[2, 3]");
  EXPECT_THROWS(ShapeError, x.expand({3}), "expand", "[3]", "fewer");
  EXPECT_THROWS(IndexError, x.unsqueeze(3), "unsqueeze", "3");
  EXPECT_THROWS(IndexError, x.squeeze(2), "squeeze", "2");
  EXPECT_THROWS(ValueError, f32({2, 3, 4}).flatten(2, 0), "flatten", "start_dim");
  EXPECT_THROWS(ValueError, x.split(0, 1), "split", "0");
  EXPECT_THROWS(ValueError, x.chunk(0), "chunk", "0");
  EXPECT_THROWS(IndexError, x.unbind(2), "unbind", "2");
  EXPECT_THROWS(IndexError, x.size(2), "size", "2");
  EXPECT_THROWS(IndexError, f32({}).size(0), "size", "rank 0");
  EXPECT_THROWS(IndexError, f32({}).stride(-1), "stride", "rank 0");
  EXPECT_THROWS(ShapeError, (x.accessor<float, 3>()), "accessor", "rank 2");
  EXPECT_THROWS(ValueError, Tensor().view({1}), "view", "undefined");
  still_works();
}

TEST(Errors, ElementwiseAndBroadcasting) {
  Tensor a = f32({2, 3}), b = f32({4});
  EXPECT_THROWS(ShapeError, a + b, "add", "[2, 3]", "[4]");
  EXPECT_THROWS(ShapeError, a - b, "sub", "[2, 3]", "[4]");
  EXPECT_THROWS(ShapeError, a * f32({3, 1, 2}), "mul", "[2, 3]", "[3, 1, 2]");
  EXPECT_THROWS(ShapeError, a / b, "div", "[4]");
  EXPECT_THROWS(ShapeError, a.pow(b), "pow", "[4]");
  EXPECT_THROWS(ShapeError, maximum(a, b), "maximum", "[2, 3]", "[4]");
  EXPECT_THROWS(ShapeError, a.lt(b), "lt", "[2, 3]", "[4]");
  EXPECT_THROWS(ShapeError, a.logical_and(b), "logical_and", "[4]");
  EXPECT_THROWS(ShapeError, where(bools({2, 3}), a, b), "where", "[4]");
  EXPECT_THROWS(DTypeError, where(f32({2, 3}), a, a), "where", "bool", "[2, 3] float32");
  EXPECT_THROWS(DTypeError, a.masked_fill(f32({2, 3}), 1.0), "masked_fill", "bool", "float32");
  EXPECT_THROWS(ShapeError, a.masked_fill(bools({4}), 1.0), "masked_fill", "[4]", "[2, 3]");
  EXPECT_THROWS(DTypeError, i64({2}).masked_fill(bools({2}), 0.5), "masked_fill", "int64", "0.5");
  EXPECT_THROWS(DTypeError, bools({2}) - bools({2}), "sub", "bool");
  EXPECT_THROWS(DTypeError, -bools({2}), "neg", "bool");
  EXPECT_THROWS(ValueError, a.gelu("fast"), "gelu", "fast");
  EXPECT_THROWS(ValueError, a.clamp(std::nullopt, std::nullopt), "clamp", "min");
  EXPECT_THROWS(ValueError, Tensor() + a, "add", "undefined");
  EXPECT_THROWS(ValueError, Tensor().exp(), "exp", "undefined");
  still_works();
}

TEST(Errors, InPlace) {
  Tensor a = f32({2, 3});
  EXPECT_THROWS(DTypeError, i64({2, 3}).add_(a), "add_", "float32", "int64");
  EXPECT_THROWS(DTypeError, i64({2, 3}).div_(i64({2, 3})), "div_", "float32", "int64");
  EXPECT_THROWS(DTypeError, i64({2, 3}).exp_(), "exp_", "int64");
  EXPECT_THROWS(ShapeError, f32({3}).add_(a), "add_", "[2, 3]", "[3]");
  EXPECT_THROWS(ShapeError, a.mul_(f32({4})), "mul_", "[4]", "[2, 3]");
  EXPECT_THROWS(ShapeError, a.copy_(f32({4})), "copy_", "[4]", "[2, 3]");
  Tensor leaf = f32({2, 3}).requires_grad_();
  EXPECT_THROWS(AutogradError, leaf.add_(a), "add_", "leaf", "[2, 3] float32");
  EXPECT_THROWS(AutogradError, leaf.exp_(), "exp_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.mul_(2), "mul_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.clamp_(0, 1), "clamp_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.fill_(1), "fill_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.copy_(a), "copy_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.masked_fill_(bools({2, 3}), 0.0), "masked_fill_", "leaf");
  EXPECT_THROWS(AutogradError, leaf.scatter_add_(0, i64({1, 3}), a), "scatter_add_", "leaf");
  {
    NoGradGuard no_grad;  // allowed without autograd
    leaf.add_(a);
  }
  EXPECT_DOUBLE_EQ(leaf.sum().item<double>(), 12.0);
  Tensor y = leaf * 1;
  EXPECT_THROWS(AutogradError, y.slice(0, 0, 1).mul_(2), "mul_", "view");
  EXPECT_THROWS(ValueError, a.clamp_(std::nullopt, std::nullopt), "clamp_", "min");
  still_works();
}

TEST(Errors, Reductions) {
  Tensor x = f32({2, 3});
  EXPECT_THROWS(IndexError, x.sum(3), "sum", "dimension 3", "rank 2");
  EXPECT_THROWS(IndexError, x.mean({-3}), "mean", "-3");
  EXPECT_THROWS(ValueError, x.sum({0, -2}), "sum", "more than once");
  EXPECT_THROWS(DTypeError, i64({2, 3}).mean(), "mean", "int64", "[2, 3]");
  EXPECT_THROWS(DTypeError, i64({2, 3}).var(), "var", "int64");
  EXPECT_THROWS(IndexError, f32({0, 3}).amax({0}), "amax", "zero-size", "[0, 3]");
  EXPECT_THROWS(IndexError, f32({0, 3}).max(), "amax", "zero-size");
  EXPECT_THROWS(IndexError, f32({0, 3}).argmax(), "argmax", "empty", "[0, 3]");
  EXPECT_THROWS(IndexError, f32({0, 3}).argmin(0), "argmin", "zero-size");
  EXPECT_THROWS(IndexError, f32({0, 3}).max(0), "argmax", "zero-size");
  EXPECT_THROWS(DTypeError, bools({3}).argmax(), "argmax", "bool");
  EXPECT_THROWS(IndexError, x.logsumexp({2}), "2");
  EXPECT_THROWS(IndexError, x.std(Dims{5}), "5");
  still_works();
}

TEST(Errors, Softmax) {
  Tensor x = f32({2, 3});
  EXPECT_THROWS(IndexError, x.softmax(2), "softmax", "dimension 2", "rank 2");
  EXPECT_THROWS(IndexError, x.log_softmax(-3), "log_softmax", "-3");
  EXPECT_THROWS(IndexError, f32({}).softmax(1), "softmax", "1");
  EXPECT_THROWS(ValueError, Tensor().softmax(0), "softmax", "undefined");
  still_works();
}

TEST(Errors, Matmul) {
  EXPECT_THROWS(ShapeError, matmul(f32({2, 3}), f32({4, 5})), "matmul", "[2, 3]", "[4, 5]");
  EXPECT_THROWS(ShapeError, matmul(f32({}), f32({3})), "matmul", "at least one dimension", "[] float32");
  EXPECT_THROWS(ShapeError, matmul(f32({3}), f32({4})), "matmul", "[3]", "[4]");
  EXPECT_THROWS(ShapeError, matmul(f32({3}), f32({4, 2})), "matmul", "[1, 3]", "[4, 2]");
  EXPECT_THROWS(ShapeError, matmul(f32({2, 3, 4}), f32({3, 4, 5})), "matmul", "[2]", "[3]");
  EXPECT_THROWS(DTypeError, matmul(bools({2, 2}), bools({2, 2})), "matmul", "bool");
  EXPECT_THROWS(ShapeError, mm(f32({2, 3, 4}), f32({4, 5})), "mm", "[2, 3, 4]", "matrices");
  EXPECT_THROWS(ShapeError, mm(f32({2, 3}), f32({2, 3})), "matmul", "[2, 3]");
  still_works();
}

TEST(Errors, CatStackSplit) {
  EXPECT_THROWS(ValueError, cat({}), "cat", "non-empty");
  EXPECT_THROWS(ShapeError, cat({f32({2, 3}), f32({3})}), "cat", "rank", "[3]", "[2, 3]");
  EXPECT_THROWS(ShapeError, cat({f32({2, 3}), f32({2, 4})}), "cat", "[2, 4]", "[2, 3]", "dimension 0");
  EXPECT_THROWS(ShapeError, cat({f32({}), f32({})}), "cat", "zero-dimensional");
  EXPECT_THROWS(IndexError, cat({f32({2, 3}), f32({2, 3})}, 2), "cat", "2");
  EXPECT_THROWS(ValueError, cat({f32({2}), Tensor()}), "cat", "undefined");
  EXPECT_THROWS(ValueError, stack({}), "stack", "non-empty");
  EXPECT_THROWS(ShapeError, stack({f32({2, 3}), f32({3, 2})}), "stack", "[3, 2]", "[2, 3]");
  EXPECT_THROWS(IndexError, stack({f32({2}), f32({2})}, 3), "stack", "3");
  EXPECT_THROWS(ValueError, split(f32({4}), -1), "split", "-1");
  EXPECT_THROWS(IndexError, chunk(f32({4}), 2, 1), "chunk", "1");
  still_works();
}

TEST(Errors, IndexOps) {
  Tensor x = f32({5, 3});
  Tensor idx = from_vector(std::vector<int64_t>{0, 7}, {2}, kInt64);
  EXPECT_THROWS(DTypeError, x.index_select(0, f32({2})), "index_select", "int64", "[2] float32");
  EXPECT_THROWS(ShapeError, x.index_select(0, i64({2, 2})), "index_select", "0-D or 1-D", "[2, 2]");
  EXPECT_THROWS(IndexError, x.index_select(0, idx), "index_select", "7", "out of bounds");
  EXPECT_THROWS(IndexError, x.index_select(2, i64({2})), "index_select", "2");
  EXPECT_THROWS(ShapeError, f32({}).index_select(0, i64({1})), "index_select", "at least one dimension");
  EXPECT_THROWS(ShapeError, x.gather(1, i64({5})), "gather", "rank", "[5]", "[5, 3]");
  EXPECT_THROWS(ShapeError, x.gather(1, i64({6, 1})), "gather", "[6, 1]", "dimension 0");
  EXPECT_THROWS(IndexError, x.gather(1, from_vector(std::vector<int64_t>{3}, {1, 1}, kInt64)), "gather", "3",
                "out of bounds");
  EXPECT_THROWS(IndexError, x.gather(0, from_vector(std::vector<int64_t>{-1}, {1, 1}, kInt64)), "gather", "-1");
  EXPECT_THROWS(DTypeError, x.gather(1, bools({5, 1})), "gather", "bool");
  EXPECT_THROWS(ShapeError, x.scatter_add(1, i64({5, 2}), f32({5})), "scatter_add", "rank", "[5]");
  EXPECT_THROWS(ShapeError, x.scatter_add(1, i64({5, 2}), f32({5, 1})), "scatter_add", "[5, 1]", "larger");
  EXPECT_THROWS(IndexError, x.scatter_add(1, from_vector(std::vector<int64_t>{4}, {1, 1}, kInt64), f32({1, 1})),
                "scatter_add", "4", "out of bounds");
  EXPECT_THROWS(ShapeError, x.index_add(0, i64({2}), f32({3, 3})), "index_add", "[3, 3]", "[2, 3]");
  EXPECT_THROWS(IndexError, x.index_add(0, idx, f32({2, 3})), "index_add", "7", "out of bounds");
  EXPECT_THROWS(IndexError, one_hot(from_vector(std::vector<int64_t>{0, 3}, {2}, kInt64), 3), "one_hot", "[0, 3)", "3");
  EXPECT_THROWS(IndexError, one_hot(from_vector(std::vector<int64_t>{-1}, {1}, kInt64), 3), "one_hot", "-1");
  EXPECT_THROWS(ValueError, one_hot(i64({0})), "one_hot", "empty");
  EXPECT_THROWS(DTypeError, one_hot(f32({2})), "one_hot", "float32");
  still_works();
}

TEST(Errors, Losses) {
  Tensor logits = f32({4, 5});
  Tensor target = from_vector(std::vector<int64_t>{0, 1, 2, 9}, {4}, kInt64);
  EXPECT_THROWS(ShapeError, mse_loss(f32({2, 3}), f32({3, 2})), "mse_loss", "[2, 3]", "[3, 2]");
  EXPECT_THROWS(DTypeError, nll_loss(logits, f32({4})), "nll_loss", "int64", "[4] float32");
  EXPECT_THROWS(ShapeError, nll_loss(logits, i64({5})), "nll_loss", "[5]", "[4]", "[4, 5]");
  EXPECT_THROWS(IndexError, nll_loss(logits, target), "nll_loss", "[0, 5)", "9");
  EXPECT_THROWS(ShapeError, nll_loss(logits, i64({4}), NllLossOptions{f32({4})}), "nll_loss", "weight", "[4]", "[5]");
  EXPECT_THROWS(ShapeError, nll_loss(f32({}), i64({})), "nll_loss", "at least one dimension");
  EXPECT_THROWS(DTypeError, cross_entropy(i64({4, 5}), i64({4})), "cross_entropy", "floating", "int64");
  EXPECT_THROWS(IndexError, cross_entropy(logits, target), "nll_loss", "9");
  EXPECT_THROWS(ValueError, cross_entropy(logits, i64({4}), CrossEntropyOptions{Tensor(), kMean, -100, 1.5}),
                "cross_entropy", "label_smoothing", "1.5");
  EXPECT_THROWS(ShapeError, cross_entropy(logits, f32({4, 4})), "cross_entropy", "[4, 4]", "[4, 5]");
  EXPECT_THROWS(ShapeError, cross_entropy(logits, i64({3})), "nll_loss", "[3]");
  EXPECT_THROWS(ShapeError, cross_entropy(f32({}), i64({})), "cross_entropy", "[]");
  still_works();
}

TEST(Errors, AutogradMisuse) {
  Tensor x = f32({2, 3}).to(kFloat64).requires_grad_();
  {
    Tensor y = (x.exp() * x).sum();
    y.backward();
    EXPECT_THROWS(AutogradError, y.backward(), "a second time", "retain_graph");
  }
  {
    Tensor y = x * 2;
    EXPECT_THROWS(AutogradError, y.backward(), "backward", "scalar", "[2, 3] float64");
    EXPECT_THROWS(ShapeError, y.backward(ones({3}, kFloat64)), "backward", "[3]", "[2, 3]");
  }
  EXPECT_THROWS(AutogradError, f32({2}).sum().backward(), "backward", "does not require grad");
  {
    NoGradGuard no_grad;
    Tensor y = (x * 2).sum();
    EXPECT_THROWS(AutogradError, y.backward(), "does not require grad");
  }
  EXPECT_THROWS(AutogradError, x.add_(1), "add_", "leaf");
  {
    Tensor h = x * 1;
    Tensor y = h.exp();  // saves its output
    Tensor z = (h * h).sum();  // saves h
    h.add_(1);
    EXPECT_THROWS(AutogradError, z.backward(), "modified by an in-place operation", "version", "MulBackward");
    Tensor w = y.sum();
    y.mul_(2);
    EXPECT_THROWS(AutogradError, w.backward(), "modified by an in-place operation", "ExpBackward");
  }
  EXPECT_THROWS(DTypeError, i64({2}).requires_grad_(), "requires_grad_", "int64", "[2]");
  EXPECT_THROWS(DTypeError, bools({2}).requires_grad_(), "requires_grad_", "bool");
  EXPECT_THROWS(AutogradError, (x * 2).requires_grad_(false), "requires_grad_", "leaf");
  EXPECT_THROWS(DTypeError, x.data_ptr<float>(), "data_ptr<float32>", "float64", "[2, 3]");
  EXPECT_THROWS(DTypeError, i64({2}).data_ptr<int32_t>(), "data_ptr<int32>", "int64");
  EXPECT_THROWS(ValueError, x.item(), "item", "6 elements", "[2, 3]");
  EXPECT_THROWS(ValueError, f32({0}).item<float>(), "item", "0 elements");
  EXPECT_THROWS(AutogradError, f32({2}).retain_grad(), "retain_grad");
  EXPECT_THROWS(ShapeError, x.set_grad(zeros({3}, kFloat64)), "set_grad", "[3]", "[2, 3]");
  {
    Tensor u = f32({2}).to(kFloat64).requires_grad_();
    Tensor y = (x * 2).sum();
    EXPECT_THROWS(AutogradError, autograd::grad({y}, {u}), "grad", "not used");
    EXPECT_THROWS(AutogradError, autograd::grad({y}, {f32({2})}), "grad", "does not require grad");
  }
  EXPECT_THROWS(DTypeError, gradcheck([](const TensorList& t) { return t[0] * 2; }, {f32({2}).to(kFloat16).requires_grad_()}),
                "gradcheck", "float16");
  still_works();
}

}  // namespace
}  // namespace nabla_test
