// Tensor core: factories, views sharing storage, strides, copies and conversions, element
// access, user memory (from_blob) and printing.

#include "test_util.hpp"

namespace nabla_test {
namespace {

TEST(Factory, ShapesDtypesAndValues) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.sizes(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), kFloat32);
  EXPECT_EQ(z.sum().item<double>(), 0.0);
  EXPECT_EQ(ones({4}, kInt32).sum().item<int64_t>(), 4);
  EXPECT_EQ(full({2, 2}, 2.5, kFloat64).to_vector<double>(), (std::vector<double>{2.5, 2.5, 2.5, 2.5}));
  EXPECT_EQ(arange(5).dtype(), kInt64);
  EXPECT_EQ(arange(5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0.0, 1.0, 0.25).to_vector<float>(), (std::vector<float>{0, 0.25f, 0.5f, 0.75f}));
  EXPECT_EQ(arange(5, 0, -2).to_vector<int64_t>(), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_EQ(linspace(0, 1, 5).to_vector<float>(), (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1}));
  EXPECT_EQ(eye(2, 3).to_vector<float>(), (std::vector<float>{1, 0, 0, 0, 1, 0}));
  EXPECT_EQ(tensor({1, 2, 3}).dtype(), kInt64);
  EXPECT_EQ(tensor({1.5, 2.5}).dtype(), kFloat32);
  EXPECT_EQ(tensor({true, false}).dtype(), kBool);
  EXPECT_EQ(from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).sizes(), (Shape{2, 3}));
  EXPECT_EQ(empty({0, 5}).numel(), 0);
  EXPECT_EQ(zeros({}).dim(), 0);
  EXPECT_EQ(zeros({}).numel(), 1);
}

TEST(Factory, FromBlobSharesUserMemoryAndCallsTheDeleter) {
  std::vector<float> buf{1, 2, 3, 4, 5, 6};
  bool deleted = false;
  {
    Tensor t = from_blob(buf.data(), {2, 3}, kFloat32, [&](void*) { deleted = true; });
    t.mul_(2);  // writes through to buf
    EXPECT_EQ(buf[5], 12.0f);
    Tensor col = from_blob(buf.data(), {2}, {3}, kFloat32);  // strided view of user memory
    EXPECT_EQ(col.to_vector<float>(), (std::vector<float>{2, 8}));
    EXPECT_FALSE(deleted);
  }
  EXPECT_TRUE(deleted);
}

TEST(View, SharesStorageAndTracksStrides) {
  Tensor a = arange(24).view({2, 3, 4});
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.sizes(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.storage(), a.storage());
  EXPECT_EQ(a.transpose(0, 2).contiguous().view({-1}).narrow(0, 0, 3).to_vector<int64_t>(), (std::vector<int64_t>{0, 12, 4}));
  Tensor s = a.select(1, 2);  // [2, 4]
  EXPECT_EQ(s.to_vector<int64_t>(), (std::vector<int64_t>{8, 9, 10, 11, 20, 21, 22, 23}));
  Tensor sl = a.slice(2, 1, std::nullopt, 2);  // every other column from 1
  EXPECT_EQ(sl.sizes(), (Shape{2, 3, 2}));
  EXPECT_EQ(sl.select(0, 0).select(0, 0).to_vector<int64_t>(), (std::vector<int64_t>{1, 3}));
  s.fill_(-1);  // writes through the view
  EXPECT_EQ(a[0][2][3].item<int64_t>(), -1);
  EXPECT_EQ(a.slice(0, -1).sizes(), (Shape{1, 3, 4}));
  Tensor e = tensor({1.f, 2.f, 3.f}).view({3, 1}).expand({3, 4});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(e.sum().item<float>(), 24.0f);
  EXPECT_EQ(zeros({1, 3, 1}).squeeze().sizes(), (Shape{3}));
  EXPECT_EQ(zeros({1, 3, 1}).squeeze(0).sizes(), (Shape{3, 1}));
  EXPECT_EQ(zeros({3}).unsqueeze(-1).sizes(), (Shape{3, 1}));
  EXPECT_EQ(zeros({2, 3, 4}).flatten(1).sizes(), (Shape{2, 12}));
  EXPECT_EQ(zeros({2, 3, 4}).reshape({4, -1}).sizes(), (Shape{4, 6}));
}

TEST(View, ReshapeCopiesOnlyWhenItMust) {
  Tensor a = arange(12).view({3, 4});
  EXPECT_EQ(a.reshape({2, 6}).storage(), a.storage());
  Tensor t = a.t();
  Tensor r = t.reshape({12});  // not viewable: copies
  EXPECT_NE(r.storage(), a.storage());
  EXPECT_EQ(r.to_vector<int64_t>(), (std::vector<int64_t>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  EXPECT_THROW(t.view({12}), ShapeError);
  // a view that splits a contiguous group of a non-contiguous tensor is fine
  Tensor b = arange(24).view({2, 3, 4}).transpose(0, 1);  // [3, 2, 4]
  EXPECT_EQ(b.view({3, 2, 2, 2}).storage(), b.storage());
}

TEST(View, SplitChunkUnbindCatStack) {
  Tensor a = arange(10);
  auto parts = a.split(4);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[2].to_vector<int64_t>(), (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(a.chunk(3).size(), 3u);
  EXPECT_EQ(cat(parts).to_vector<int64_t>(), a.to_vector<int64_t>());
  Tensor m = arange(6).view({2, 3});
  EXPECT_EQ(m.unbind(1).size(), 3u);
  EXPECT_EQ(stack(m.unbind(1), 1).to_vector<int64_t>(), m.to_vector<int64_t>());
  EXPECT_EQ(cat({m, m}, 1).sizes(), (Shape{2, 6}));
  EXPECT_EQ(cat({zeros({2, 0}), ones({2, 1})}, 1).sizes(), (Shape{2, 1}));
  EXPECT_EQ(cat({ones({1}, kInt32), ones({1}, kFloat64)}).dtype(), kFloat64);
}

TEST(Copy, ConversionsAndCopies) {
  Tensor f = tensor({-1.7f, 0.0f, 2.9f, 300.0f});
  EXPECT_EQ(f.to(kInt32).to_vector<int32_t>(), (std::vector<int32_t>{-1, 0, 2, 300}));  // toward zero
  EXPECT_EQ(f.to(kBool).to_vector<bool>(), (std::vector<bool>{true, false, true, true}));
  EXPECT_EQ(f.to(kFloat16).to(kFloat32).to_vector<float>(), (std::vector<float>{-1.7001953f, 0, 2.9003906f, 300}));
  EXPECT_EQ(f.to(kBFloat16).to(kFloat64).to_vector<double>()[3], 300.0);
  Tensor c = f.clone();
  c.fill_(0);
  EXPECT_EQ(f.sum().item<float>(), 301.2f);
  Tensor dst = zeros({2, 4});
  dst.copy_(f);  // broadcast copy
  EXPECT_EQ(dst[1].to_vector<float>(), f.to_vector<float>());
  Tensor x = arange(6, kFloat64).view({2, 3});
  EXPECT_TRUE(x.t().contiguous().is_contiguous());
  EXPECT_TRUE(x.contiguous().is_same(x));
}

TEST(Access, ItemDataAccessor) {
  Tensor a = arange(6, kFloat32).view({2, 3});
  EXPECT_EQ(a.data<float>()[4], 4.0f);
  EXPECT_THROW(a.data<double>(), DTypeError);
  auto acc = a.accessor<float, 2>();
  EXPECT_EQ(acc[1][2], 5.0f);
  acc[0][1] = 10.0f;
  EXPECT_EQ(a[0][1].item<float>(), 10.0f);
  Tensor at = a.t();  // an accessor must not outlive its tensor (rvalue accessor() is deleted)
  auto tacc = at.accessor<float, 2>();  // strided access
  EXPECT_EQ(tacc[2][1], 5.0f);
  EXPECT_THROW((a.accessor<float, 3>()), ShapeError);
  EXPECT_THROW(a.item(), ValueError);
  EXPECT_EQ(full({}, 3, kInt64).item().to_long(), 3);
}

TEST(Print, LooksLikePyTorch) {
  EXPECT_EQ(tensor({1.f, 2.f, 3.f}).str(), "tensor([1., 2., 3.])");
  EXPECT_EQ(tensor({0.1f, -0.25f, 3.f}).str(), "tensor([ 0.1000, -0.2500,  3.0000])");
  EXPECT_EQ(arange(4).view({2, 2}).str(), "tensor([[0, 1],\n        [2, 3]])");
  EXPECT_EQ(tensor({true, false}).str(), "tensor([ True, False])");
  EXPECT_EQ(full({}, 3.5).str(), "tensor(3.5000)");
  EXPECT_EQ(ones({2}, kFloat64).str(), "tensor([1., 1.], dtype=float64)");
  EXPECT_EQ(zeros({0}).str(), "tensor([])");
  EXPECT_EQ(zeros({0, 3}).str(), "tensor([], size=(0, 3))");
  EXPECT_EQ(ones({2}).requires_grad_().str(), "tensor([1., 1.], requires_grad=True)");
  Tensor w = ones({2}).requires_grad_();
  EXPECT_EQ((w * 2).str(), "tensor([2., 2.], grad_fn=<MulBackward1>)");
  EXPECT_EQ(tensor({1e-5f, 1.0f}).str(), "tensor([1.0000e-05, 1.0000e+00])");
  EXPECT_EQ(arange(2000).str(), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
  std::ostringstream os;
  os << arange(3);
  EXPECT_EQ(os.str(), "tensor([0, 1, 2])");
}

TEST(Settings, MatmulPrecisionIsValidated) {
  EXPECT_EQ(float32_matmul_precision(), MatmulPrecision::Highest);
  set_float32_matmul_precision("high");
  EXPECT_EQ(float32_matmul_precision(), MatmulPrecision::High);
  set_float32_matmul_precision("highest");
  EXPECT_THROW(set_float32_matmul_precision("fast"), ValueError);
}

TEST(Rank, HighRankTensorsWork) {
  Shape s(9, 2);  // rank 9: beyond the inline capacity of Shape
  Tensor a = arange(512, kFloat32).view(s);
  EXPECT_EQ(a.dim(), 9);
  Dims perm;
  for (int64_t d = 8; d >= 0; --d) perm.push_back(d);
  Tensor p = a.permute(perm);
  EXPECT_EQ(p.contiguous().sum().item<double>(), 511.0 * 512 / 2);
  EXPECT_EQ((a + p).sum(Dims{0, 3, 8}).sizes(), (Shape{2, 2, 2, 2, 2, 2}));
}

}  // namespace
}  // namespace nabla_test
