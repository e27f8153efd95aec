// The CUDA kernels' fast paths against the CPU: dense copies (cudaMemcpyAsync, vectorised dtype
// conversion), fill (memset, vector stores), where, the 32- and 64-bit strided index paths,
// Philox random (four elements per thread), 16-bit float conversions bit for bit, row
// reductions with vector loads and the one-pass softmax. Each case also runs its unaligned or
// odd-length variant, which takes the scalar path. Skipped without a GPU.

#include <cstring>

#include "test_util.hpp"

namespace nabla_test {
namespace {

const std::vector<DType> kAllDtypes = {kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kUInt8, kBool};

// n values every dtype holds after conversion from float64 (halves in [0, 18]: no negatives,
// whose conversion to uint8 C++ leaves undefined), so any dtype pair converts alike on both devices.
Tensor test_values(int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<double>(i % 37) * 0.5;
  return from_vector(v, {n}, kFloat64);
}

// A dense view of `n` elements starting one element into a fresh buffer: not 16-byte aligned.
Tensor unaligned(const Tensor& t) {
  Tensor buf = empty({t.numel() + 1}, t.options());
  Tensor v = buf.narrow(0, 1, t.numel()).view(t.sizes());
  v.copy_(t);
  return v;
}

TEST(CudaKernels, CopyAndConversionMatchTheCpuInEveryLayout) {
  NABLA_REQUIRE_GPU();
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{1003}, (int64_t{1} << 20) + 3}) {
    Tensor src64 = test_values(n);
    for (DType from : kAllDtypes) {
      Tensor host = src64.to(from);
      Tensor dev = host.to(Device::cuda());
      EXPECT_TRUE(all_equal(dev.clone().cpu(), host)) << "clone " << dtype_name(from) << " n=" << n;
      EXPECT_TRUE(all_equal(unaligned(dev).clone().cpu(), host)) << "unaligned clone " << dtype_name(from);
      for (DType to : kAllDtypes) {
        SCOPED_TRACE(::testing::Message() << dtype_name(from) << " -> " << dtype_name(to) << " n=" << n);
        Tensor expected = host.to(to);
        EXPECT_TRUE(all_equal(dev.to(to).cpu(), expected));
        EXPECT_TRUE(all_equal(unaligned(dev).to(to).cpu(), expected));
        Tensor dst = unaligned(zeros({n}, TensorOptions(to).device(Device::cuda())));
        dst.copy_(dev);  // unaligned destination
        EXPECT_TRUE(all_equal(dst.cpu(), expected));
      }
    }
  }
  // strided both ways, and a broadcast source
  Tensor m = test_values(6 * 7 * 5).view({6, 7, 5}).to(kFloat32);
  Tensor md = m.to(Device::cuda());
  EXPECT_TRUE(all_equal(md.transpose(0, 2).contiguous().cpu(), m.transpose(0, 2).contiguous()));
  EXPECT_TRUE(all_equal(md.transpose(0, 2).to(kFloat16).cpu(), m.transpose(0, 2).to(kFloat16)));
  Tensor dst = zeros({5, 7, 6}, Device::cuda());
  dst.transpose(0, 2).copy_(md);
  EXPECT_TRUE(all_equal(dst.cpu(), m.transpose(0, 2).contiguous()));
  Tensor row = zeros({4, 5}, Device::cuda());
  row.copy_(test_values(5).to(Device::cuda()));
  EXPECT_TRUE(all_equal(row.cpu(), test_values(5).to(kFloat32).expand({4, 5}).contiguous()));
}

TEST(CudaKernels, StridedCopiesBeyondInt32OffsetsUseTheWideIndexPath) {
  NABLA_REQUIRE_GPU();
  // two rows of 300M float32 (2.4 GB): a column view reaches past 2^31 bytes
  const int64_t cols = 300'000'000;
  Tensor big = zeros({2, cols}, Device::cuda());
  Tensor col = big.select(1, cols - 1);  // two elements 1.2 GB apart
  col.fill_(3.0);
  col.copy_(col.to(kFloat64) + 1.0);
  EXPECT_EQ(big.select(0, 1).select(0, cols - 1).item<float>(), 4.0f);
  EXPECT_EQ(big.sum().item<double>(), 8.0);
  Tensor picked = zeros({2}, Device::cuda());
  picked.copy_(col);
  EXPECT_TRUE(all_equal(picked.cpu(), full({2}, 4.0, TensorOptions(kFloat32))));
}

TEST(CudaKernels, FillMatchesTheCpuForSplatAndNonSplatValues) {
  NABLA_REQUIRE_GPU();
  for (DType dt : kAllDtypes) {
    for (double v : {0.0, -0.0, 1.0, 7.0, -2.5}) {
      if ((dt == kUInt8 || dt == kBool) && v < 0) continue;
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " value " << v);
      for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{4099}}) {
        Tensor expected = full({n}, v, TensorOptions(dt));
        Tensor d = empty({n}, TensorOptions(dt).device(Device::cuda()));
        d.fill_(v);
        EXPECT_TRUE(all_equal(d.cpu(), expected));
        Tensor u = unaligned(zeros({n}, TensorOptions(dt).device(Device::cuda())));
        u.fill_(v);
        EXPECT_TRUE(all_equal(u.cpu(), expected));
      }
      // a strided view: only its elements change
      Tensor m = zeros({6, 9}, TensorOptions(dt).device(Device::cuda()));
      m.slice(1, 1, std::nullopt, 2).fill_(v);
      Tensor mc = zeros({6, 9}, TensorOptions(dt));
      mc.slice(1, 1, std::nullopt, 2).fill_(v);
      EXPECT_TRUE(all_equal(m.cpu(), mc));
    }
  }
  // -0.0 keeps its sign bit (it is not a byte splat, so it must not become a memset of 0)
  Tensor z = empty({5}, Device::cuda());
  z.fill_(-0.0);
  EXPECT_TRUE(std::signbit(z.cpu().data<float>()[4]));
}

TEST(CudaKernels, WhereMatchesTheCpuDenseScalarAndStrided) {
  NABLA_REQUIRE_GPU();
  for (DType dt : kAllDtypes) {
    for (int64_t n : {int64_t{5}, int64_t{1003}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " n=" << n);
      Tensor c = test_values(n) > 5.0, x = test_values(n).to(dt), y = (test_values(n) * -1.0 + 18.0).to(dt);
      Tensor expected = where(c, x, y);
      Tensor cd = c.to(Device::cuda()), xd = x.to(Device::cuda()), yd = y.to(Device::cuda());
      EXPECT_TRUE(all_equal(where(cd, xd, yd).cpu(), expected));
      EXPECT_TRUE(all_equal(where(unaligned(cd), xd, yd).cpu(), expected));
      EXPECT_TRUE(all_equal(where(cd, unaligned(xd), yd).cpu(), expected));
      Tensor zero = zeros({}, TensorOptions(dt));  // a CPU 0-dim operand: passed by value
      EXPECT_TRUE(all_equal(where(cd, xd, zero).cpu(), where(c, x, zero)));
      EXPECT_TRUE(all_equal(where(cd, zero, yd).cpu(), where(c, zero, y)));
    }
    Tensor m = test_values(8 * 6).view({8, 6});
    Tensor c = (m > 4.0).t(), x = m.to(dt).t(), y = zeros({6, 1}, TensorOptions(dt));
    EXPECT_TRUE(all_equal(where(c.to(Device::cuda()), x.to(Device::cuda()), y.to(Device::cuda())).cpu(), where(c, x, y)))
        << dtype_name(dt) << " strided and broadcast";
  }
}

TEST(CudaKernels, RandomMatchesTheCpuForEverySizeDtypeAndOffset) {
  NABLA_REQUIRE_GPU();
  const std::vector<int64_t> sizes = {1, 2, 3, 4, 5, 7, 8, 1001, 4096, (int64_t{1} << 20) + 3};
  for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
    for (int kind = 0; kind < 3; ++kind) {
      auto draw = [&](int64_t n, Device d) {
        TensorOptions o = TensorOptions(dt).device(d);
        return kind == 0 ? rand({n}, o) : kind == 1 ? randn({n}, o) : randint(-5, 11, {n}, o);
      };
      // the same sequence of draws (so the generator offsets differ between draws) on each device
      manual_seed(123);
      std::vector<Tensor> host;
      for (int64_t n : sizes) host.push_back(draw(n, Device::cpu()));
      const auto state = default_generator().state();
      manual_seed(123);
      for (size_t i = 0; i < sizes.size(); ++i) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " kind " << kind << " n=" << sizes[i]);
        Tensor d = draw(sizes[i], Device::cuda()).cpu();
        // uniform and integer are exact; the normal's log / sin / cos may differ in the last
        // float64 bit between the host and device math libraries (one ulp of dt at most)
        const double ulp = dt == kFloat64 ? 1e-12 : dt == kFloat32 ? 2.5e-7 : dt == kFloat16 ? 1e-3 : 8e-3;
        EXPECT_TRUE(kind == 1 ? all_close(d, host[i], 1e-12, ulp) : all_equal(d, host[i]));
      }
      EXPECT_EQ(default_generator().state(), state) << "both devices advance the offset alike";
    }
  }
}

TEST(CudaKernels, HalfAndBFloat16ConversionsAreBitIdenticalToTheHost) {
  NABLA_REQUIRE_GPU();
  // every 16-bit pattern, widened to float on the device
  std::vector<Half> h(65536);
  std::vector<BFloat16> b(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    h[i] = Half::from_bits(static_cast<uint16_t>(i));
    b[i] = BFloat16::from_bits(static_cast<uint16_t>(i));
  }
  Tensor ht = from_vector(h, {65536}, kFloat16), bt = from_vector(b, {65536}, kBFloat16);
  for (const Tensor& t : {ht, bt}) {
    Tensor dev = t.to(Device::cuda()).to(kFloat32).cpu(), host = t.to(kFloat32);
    EXPECT_EQ(std::memcmp(dev.data_ptr(), host.data_ptr(), 65536 * sizeof(float)), 0) << dtype_name(t.dtype());
  }
  // float patterns: edges (subnormals, halfway cases, overflow to inf, signed NaNs) and a sweep
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x00000001u, 0x33000000u, 0x33000001u, 0x387fc000u,
                                0x38800000u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x47800000u, 0x7f7fffffu,
                                0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xffbfffffu,
                                0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7f8000u};
  uint64_t s = 88172645463325252ull;
  for (int i = 0; i < (1 << 20); ++i) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    bits.push_back(static_cast<uint32_t>(s));
  }
  std::vector<float> f(bits.size());
  std::memcpy(f.data(), bits.data(), bits.size() * sizeof(float));
  Tensor ft = from_vector(f, {static_cast<int64_t>(f.size())}, kFloat32), fd = ft.to(Device::cuda());
  for (DType dt : {kFloat16, kBFloat16}) {
    Tensor dev = fd.to(dt).cpu(), host = ft.to(dt);
    EXPECT_EQ(std::memcmp(dev.data_ptr(), host.data_ptr(), f.size() * 2), 0) << dtype_name(dt);
  }
}

TEST(CudaKernels, RowReductionsMatchTheCpuVectorisedChunkedAndUnaligned) {
  NABLA_REQUIRE_GPU();
  auto g = rng_for("CudaKernels.RowReductions");
  // rows: vector loads in one chunk, several chunks (partials), odd length (scalar loads)
  for (Shape s : {Shape{64, 8192}, Shape{3, 40000}, Shape{5, 1001}, Shape{2, 3}}) {
    Tensor x64 = uniform(s, 0.5, 1.5, g);
    for (DType dt : {kFloat32, kFloat16, kBFloat16, kFloat64, kInt32, kUInt8}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(s));
      Tensor x = is_floating_point(dt) ? x64.to(dt) : (x64 * 3.0).to(dt);
      Tensor xd = x.to(Device::cuda());
      const Tolerance tol = tolerance_for(dt);
      for (const Tensor& in : {xd, unaligned(xd)}) {
        EXPECT_TRUE(all_close(in.sum({1}), x.sum({1}), tol.atol + 1e-6 * s[1], tol.rtol));
        EXPECT_TRUE(all_equal(in.amax({1}), x.amax({1})));
        EXPECT_TRUE(all_equal(in.amin({1}), x.amin({1})));
        if (is_floating_point(dt)) {
          EXPECT_TRUE(all_close(in.mean({1}), x.mean({1}), tol.atol, tol.rtol));
        }
      }
    }
  }
  // NaN propagates through the vectorised max
  Tensor x = ones({4, 4096});
  x.select(0, 2).select(0, 1234).fill_(NAN);
  Tensor mx = x.to(Device::cuda()).amax({1}).cpu();
  EXPECT_TRUE(std::isnan(mx.data<float>()[2]));
  EXPECT_EQ(mx.data<float>()[1], 1.0f);
}

TEST(CudaKernels, OnePassSoftmaxMatchesTheCpu) {
  NABLA_REQUIRE_GPU();
  auto g = rng_for("CudaKernels.Softmax");
  for (Shape s : {Shape{3, 8192}, Shape{5, 1000}, Shape{7, 1001}, Shape{64, 10}, Shape{2, 100000}}) {
    for (DType dt : {kFloat32, kFloat64, kFloat16, kBFloat16}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape_str(s));
      // spread logits: new row maxima keep turning up, so the running sum is rescaled often
      Tensor x = (uniform(s, -20, 20, g) + arange(s[1], kFloat64) * 0.001).to(dt);
      Tensor xd = x.to(Device::cuda());
      const Tolerance tol = tolerance_for(dt);
      for (bool log : {false, true}) {
        Tensor expected = log ? x.log_softmax(1) : x.softmax(1);
        EXPECT_TRUE(all_close(log ? xd.log_softmax(1) : xd.softmax(1), expected, tol.atol, tol.rtol)) << "log " << log;
        EXPECT_TRUE(all_close(log ? unaligned(xd).log_softmax(1) : unaligned(xd).softmax(1), expected, tol.atol, tol.rtol))
            << "unaligned, log " << log;
        Tensor xt = x.t().contiguous(), xtd = xt.to(Device::cuda());  // along dim 0: the transposing path
        EXPECT_TRUE(all_close(log ? xtd.log_softmax(0) : xtd.softmax(0), log ? xt.log_softmax(0) : xt.softmax(0), tol.atol,
                              tol.rtol))
            << "dim 0, log " << log;
      }
    }
  }
  // masked rows: -inf entries add nothing; a row of only -inf is NaN on both devices; a NaN
  // poisons its row; large logits stay finite
  Tensor m = randn({4, 3000});
  m.select(0, 0).slice(0, 0, 2000).fill_(-INFINITY);
  m.select(0, 1).fill_(-INFINITY);
  m.select(0, 2).select(0, 1500).fill_(NAN);
  m.select(0, 3).mul_(1000.0);
  Tensor md = m.to(Device::cuda());
  EXPECT_TRUE(all_close(md.softmax(1), m.softmax(1), 1e-6, 1e-4));
  EXPECT_TRUE(all_close(md.log_softmax(1), m.log_softmax(1), 1e-4, 1e-5));
}

}  // namespace
}  // namespace nabla_test
