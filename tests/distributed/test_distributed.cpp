// nabla::distributed under mpirun (tests/CMakeLists.txt runs this program on 2, 3 and 4 ranks):
// every collective for every dtype and op against values computed here in double; async work
// handles; DistributedDataParallel against a single process that trains on the whole batch
// (SGD with momentum, Adam, several bucket layouts, gradients as bucket views), no_sync
// accumulation against a bigger batch, unused parameters, and the errors. Every rank runs every
// test in the same order (they call collectives together); the exit code is the worst rank's.
//
// The collectives and DDP tests run twice: on CPU tensors (Cpu/...) and on CUDA tensors
// (Cuda/..., skipped without a GPU; each rank on cuda:<local rank mod device count>).
// NABLA_TEST_BACKEND=nccl starts the group with the NCCL backend (CUDA tensors over NCCL, CPU
// tensors over MPI); the default, mpi, stages CUDA tensors through host memory.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nabla/distributed.hpp>
#include <vector>

namespace dist = nabla::distributed;
using namespace nabla;

namespace {

int rank() { return dist::get_rank(); }
int world() { return dist::get_world_size(); }
std::string backend() {
  const char* b = std::getenv("NABLA_TEST_BACKEND");
  return b && *b ? b : "mpi";
}

// The device a test's tensors live on: its parameter (CPU or CUDA); CUDA tests skip without a
// GPU. Tests that are not parameterised run on the CPU.
DeviceType current_type = kCPU;
class OnDevice : public ::testing::TestWithParam<DeviceType> {
 protected:
  void SetUp() override {
    if (GetParam() == kCUDA && !cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    current_type = GetParam();
  }
  void TearDown() override { current_type = kCPU; }
};
Device dev() {
  return current_type == kCUDA ? Device::cuda(dist::get_local_rank() % std::max(cuda::device_count(), 1)) : Device::cpu();
}
TensorOptions on_dev(DType dt = kFloat32) { return TensorOptions().dtype(dt).device(dev()); }
std::string param_name(const ::testing::TestParamInfo<DeviceType>& info) { return info.param == kCUDA ? "Cuda" : "Cpu"; }

const std::vector<DType> kAllDTypes = {kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kUInt8, kBool};
const std::vector<dist::ReduceOp> kAllOps = {dist::ReduceOp::SUM, dist::ReduceOp::AVG, dist::ReduceOp::PRODUCT,
                                             dist::ReduceOp::MIN, dist::ReduceOp::MAX};

// Rank r's element i: small integers, so every dtype holds them and their products exactly.
double value(DType dt, int r, int64_t i) {
  if (dt == kBool) return (r + i) % 3 != 0 ? 1.0 : 0.0;
  return static_cast<double>(1 + (r * 7 + i) % 3);
}
Tensor rank_tensor(DType dt, int r, const Shape& shape) {
  std::vector<double> v;
  for (int64_t i = 0; i < numel_of(shape); ++i) v.push_back(value(dt, r, i));
  return from_vector(v, shape, kFloat64).to(dt).to(dev());
}
double expected(DType dt, dist::ReduceOp op, int64_t i) {
  double acc = op == dist::ReduceOp::PRODUCT ? 1.0 : op == dist::ReduceOp::MIN ? 1e300 : op == dist::ReduceOp::MAX ? -1e300 : 0.0;
  for (int r = 0; r < world(); ++r) {
    double x = value(dt, r, i);
    switch (op) {
      case dist::ReduceOp::SUM:
      case dist::ReduceOp::AVG: acc += x; break;
      case dist::ReduceOp::PRODUCT: acc *= x; break;
      case dist::ReduceOp::MIN: acc = std::min(acc, x); break;
      case dist::ReduceOp::MAX: acc = std::max(acc, x); break;
    }
  }
  if (dt == kBool) {  // SUM/MAX: or, PRODUCT/MIN: and
    return acc != 0.0 ? 1.0 : 0.0;
  }
  if (op == dist::ReduceOp::AVG) return is_floating_point(dt) ? acc / world() : std::trunc(acc / world());
  return acc;
}
std::string name(DType dt, dist::ReduceOp op) { return std::string(dtype_name(dt)) + " " + dist::reduce_op_name(op); }

// Within a float16 / bfloat16 rounding of the exact value (the reduction's float32 result is
// rounded to the dtype once per step).
void expect_values(const Tensor& got, const std::vector<double>& want, DType dt, const std::string& what) {
  EXPECT_EQ(got.device(), dev()) << what;
  auto v = got.to(Device::cpu()).to(kFloat64).to_vector<double>();
  ASSERT_EQ(v.size(), want.size()) << what;
  const double rel = dt == kFloat16 ? 2e-3 : dt == kBFloat16 ? 1.6e-2 : 1e-6;
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], want[i], rel * std::abs(want[i]) + 1e-12) << what << " element " << i;
}

using Collectives = OnDevice;
TEST_P(Collectives, AllReduceEveryDTypeAndOp) {
  for (DType dt : kAllDTypes)
    for (dist::ReduceOp op : kAllOps) {
      if (dt == kBool && op == dist::ReduceOp::AVG) {
        Tensor t = rank_tensor(dt, rank(), {4});
        EXPECT_THROW(dist::all_reduce(t, op), DTypeError);
        continue;
      }
      Tensor t = rank_tensor(dt, rank(), {2, 3});
      dist::all_reduce(t, op);
      std::vector<double> want;
      for (int64_t i = 0; i < 6; ++i) want.push_back(expected(dt, op, i));
      expect_values(t, want, dt, name(dt, op));
      EXPECT_EQ(t.dtype(), dt);
    }
}

TEST_P(Collectives, AllReduceNonContiguousIsWrittenInPlace) {
  Tensor base = rank_tensor(kFloat32, rank(), {3, 4});
  Tensor view = base.t();  // [4, 3], strided: staged and copied back
  ASSERT_FALSE(view.is_contiguous());
  dist::all_reduce(view, dist::ReduceOp::SUM);
  std::vector<double> want;
  for (int64_t i = 0; i < 12; ++i) want.push_back(expected(kFloat32, dist::ReduceOp::SUM, i));
  expect_values(base, want, kFloat32, "base of the transposed view");
}

TEST_P(Collectives, BroadcastEveryDTypeFromEveryRoot) {
  for (DType dt : kAllDTypes)
    for (int src = 0; src < world(); ++src) {
      Tensor t = rank_tensor(dt, rank(), {5});
      dist::broadcast(t, src);
      std::vector<double> want;
      for (int64_t i = 0; i < 5; ++i) want.push_back(value(dt, src, i));
      expect_values(t, want, dt, std::string(dtype_name(dt)) + " from " + std::to_string(src));
    }
  Tensor t = zeros({2}, on_dev());
  EXPECT_THROW(dist::broadcast(t, world()), ValueError);
}

TEST_P(Collectives, AllGatherEveryDType) {
  for (DType dt : kAllDTypes) {
    Tensor in = rank_tensor(dt, rank(), {2, 2});
    std::vector<Tensor> out;
    dist::all_gather(out, in);
    ASSERT_EQ(out.size(), static_cast<size_t>(world()));
    Tensor flat = empty({world() * 2, 2}, on_dev(dt));
    dist::all_gather_into_tensor(flat, in);
    for (int r = 0; r < world(); ++r) {
      std::vector<double> want;
      for (int64_t i = 0; i < 4; ++i) want.push_back(value(dt, r, i));
      expect_values(out[static_cast<size_t>(r)], want, dt, std::string(dtype_name(dt)) + " all_gather rank " + std::to_string(r));
      expect_values(flat.slice(0, 2 * r, 2 * r + 2), want, dt, std::string(dtype_name(dt)) + " into_tensor rank " + std::to_string(r));
    }
  }
  std::vector<Tensor> wrong(static_cast<size_t>(world()) + 1, zeros({2, 2}, on_dev()));
  EXPECT_THROW(dist::all_gather(wrong, zeros({2, 2}, on_dev())), ValueError);
}

TEST_P(Collectives, ReduceScatterEveryDTypeAndOp) {
  for (DType dt : kAllDTypes)
    for (dist::ReduceOp op : kAllOps) {
      if (dt == kBool && op == dist::ReduceOp::AVG) continue;
      // input_list[j] of rank r: the values of "element" j*3 + i
      std::vector<Tensor> inputs;
      for (int j = 0; j < world(); ++j) {
        std::vector<double> v;
        for (int64_t i = 0; i < 3; ++i) v.push_back(value(dt, rank(), j * 3 + i));
        inputs.push_back(from_vector(v, {3}, kFloat64).to(dt).to(dev()));
      }
      Tensor out = empty({3}, on_dev(dt));
      dist::reduce_scatter(out, inputs, op);
      Tensor out2 = empty({3}, on_dev(dt));
      dist::reduce_scatter_tensor(out2, cat(inputs, 0), op);
      std::vector<double> want;
      for (int64_t i = 0; i < 3; ++i) want.push_back(expected(dt, op, rank() * 3 + i));
      expect_values(out, want, dt, "reduce_scatter " + name(dt, op));
      expect_values(out2, want, dt, "reduce_scatter_tensor " + name(dt, op));
    }
}

TEST_P(Collectives, ReduceToEveryRootEveryDTypeAndOp) {
  for (DType dt : kAllDTypes)
    for (dist::ReduceOp op : kAllOps) {
      if (dt == kBool && op == dist::ReduceOp::AVG) continue;
      for (int dst = 0; dst < world(); ++dst) {
        Tensor t = rank_tensor(dt, rank(), {2, 3});
        dist::reduce(t, dst, op);
        std::vector<double> want;
        for (int64_t i = 0; i < 6; ++i) want.push_back(rank() == dst ? expected(dt, op, i) : value(dt, rank(), i));
        expect_values(t, want, dt, "reduce to " + std::to_string(dst) + " " + name(dt, op) + (rank() == dst ? "" : " (not the root: unchanged)"));
      }
    }
  Tensor t = zeros({2}, on_dev());
  EXPECT_THROW(dist::reduce(t, world()), ValueError);
}

TEST_P(Collectives, GatherToEveryRoot) {
  for (DType dt : kAllDTypes)
    for (int dst = 0; dst < world(); ++dst) {
      Tensor in = rank_tensor(dt, rank(), {2, 2});
      std::vector<Tensor> out;
      dist::gather(in, out, dst);
      if (rank() != dst) {
        EXPECT_TRUE(out.empty());
        continue;
      }
      ASSERT_EQ(out.size(), static_cast<size_t>(world()));
      for (int r = 0; r < world(); ++r) {
        std::vector<double> want;
        for (int64_t i = 0; i < 4; ++i) want.push_back(value(dt, r, i));
        expect_values(out[static_cast<size_t>(r)], want, dt, std::string(dtype_name(dt)) + " gather from rank " + std::to_string(r));
      }
    }
  std::vector<Tensor> none;
  EXPECT_THROW(dist::gather(zeros({2}, on_dev()), none, -1), ValueError);
}

TEST_P(Collectives, ScatterFromEveryRoot) {
  for (DType dt : kAllDTypes)
    for (int src = 0; src < world(); ++src) {
      std::vector<Tensor> list;  // rank q gets the values of "rank" q + src
      if (rank() == src)
        for (int q = 0; q < world(); ++q) list.push_back(rank_tensor(dt, q + src, {3}));
      Tensor t = zeros({3}, on_dev(dt));
      dist::scatter(t, list, src);
      std::vector<double> want;
      for (int64_t i = 0; i < 3; ++i) want.push_back(value(dt, rank() + src, i));
      expect_values(t, want, dt, std::string(dtype_name(dt)) + " scatter from " + std::to_string(src));
    }
  EXPECT_THROW(dist::scatter(zeros({3}, on_dev()), {}, world()), ValueError);
}

TEST_P(Collectives, AllToAllSingleEqualAndUnevenSplits) {
  const int w = world(), me = rank();
  for (DType dt : kAllDTypes) {
    // equal blocks of 2 rows: rank r's block q goes to rank q, as its block r
    Tensor in = rank_tensor(dt, me, {2 * w, 3});
    Tensor out = empty({2 * w, 3}, on_dev(dt));
    dist::all_to_all_single(out, in);
    std::vector<double> want;
    for (int r = 0; r < w; ++r)
      for (int64_t j = 0; j < 6; ++j) want.push_back(value(dt, r, 6 * me + j));
    expect_values(out, want, dt, std::string(dtype_name(dt)) + " all_to_all_single, equal splits");
  }
  // uneven: rank r sends r + q + 1 rows to rank q
  std::vector<int64_t> in_split, out_split;
  int64_t in_rows = 0, out_rows = 0;
  for (int q = 0; q < w; ++q) {
    in_split.push_back(me + q + 1);
    out_split.push_back(q + me + 1);
    in_rows += me + q + 1;
    out_rows += q + me + 1;
  }
  Tensor in = rank_tensor(kFloat32, me, {in_rows, 2});
  Tensor out = full({out_rows, 2}, -1.0, on_dev());
  dist::all_to_all_single(out, in, out_split, in_split);
  std::vector<double> want;
  for (int r = 0; r < w; ++r) {
    int64_t row = 0;  // where rank r's rows for me start: after what it sent to ranks before me
    for (int q = 0; q < me; ++q) row += r + q + 1;
    for (int64_t k = 0; k < 2 * (r + me + 1); ++k) want.push_back(value(kFloat32, r, 2 * row + k));
  }
  expect_values(out, want, kFloat32, "all_to_all_single, uneven splits");
  if (w > 1) {
    EXPECT_THROW(dist::all_to_all_single(out, in, {1}, {1}), ValueError);  // one split size per rank
  }
}

TEST_P(Collectives, AllToAllListsOfDifferentShapes) {
  const int w = world(), me = rank();
  // rank r sends rank q a vector of r + q + 1 elements with the values of "rank" r * w + q
  std::vector<Tensor> inputs, outputs;
  for (int q = 0; q < w; ++q) {
    inputs.push_back(rank_tensor(kInt64, me * w + q, {me + q + 1}));
    outputs.push_back(zeros({q + me + 1}, on_dev(kInt64)));
  }
  dist::all_to_all(outputs, inputs);
  for (int r = 0; r < w; ++r) {
    std::vector<double> want;
    for (int64_t i = 0; i < r + me + 1; ++i) want.push_back(value(kInt64, r * w + me, i));
    expect_values(outputs[static_cast<size_t>(r)], want, kInt64, "all_to_all from rank " + std::to_string(r));
  }
  std::vector<Tensor> short_list(1, zeros({1}, on_dev()));
  if (w > 1) {
    EXPECT_THROW(dist::all_to_all(short_list, short_list), ValueError);
  }
}

TEST_P(Collectives, PointToPointRingWithoutDeadlock) {
  if (world() < 2) GTEST_SKIP() << "needs two ranks";
  const int w = world(), next = (rank() + 1) % w, prev = (rank() + w - 1) % w;
  // 4 MB: past MPI's eager limit, so a send completes only once its receive is posted. Every rank
  // sends before it receives; isend starts at once, so the ring does not wait on itself.
  Tensor mine = full({1 << 20}, static_cast<double>(rank()), on_dev());
  Tensor got = zeros({1 << 20}, on_dev());
  auto sent = dist::isend(mine, next, /*tag=*/3);
  EXPECT_EQ(dist::recv(got, prev, 3), prev);
  sent->wait();
  EXPECT_TRUE(sent->is_completed());
  EXPECT_EQ(got.min().item<double>(), prev);
  EXPECT_EQ(got.max().item<double>(), prev);
  // async receive, non-contiguous destination (copied back when waited)
  Tensor base = zeros({3, 4}, on_dev());
  Tensor view = base.t();
  auto r = dist::irecv(view, prev, 4);
  dist::send(arange(12).reshape({4, 3}).to(kFloat32).to(dev()) + static_cast<double>(rank()), next, 4);
  r->wait();
  EXPECT_TRUE(allclose(view, arange(12).reshape({4, 3}).to(kFloat32).to(dev()) + static_cast<double>(prev)));
  dist::barrier();
}

TEST_P(Collectives, RecvFromAnyRankAndSizeChecks) {
  if (world() < 2) GTEST_SKIP() << "needs two ranks";
  if (rank() == 0) {
    std::vector<int> from;
    for (int k = 1; k < world(); ++k) {
      Tensor t = zeros({5}, on_dev(kInt32));
      const int src = dist::recv(t, /*src=*/-1, /*tag=*/7);
      from.push_back(src);
      EXPECT_EQ(t.sum().item<int64_t>(), 5 * src) << "from rank " << src;
    }
    std::sort(from.begin(), from.end());
    for (int k = 1; k < world(); ++k) EXPECT_EQ(from[static_cast<size_t>(k - 1)], k);
    // rank 1 sends 3 elements into a 4-element tensor: a clear error, and the group goes on
    Tensor four = zeros({4}, on_dev());
    try {
      dist::recv(four, 1, 8);
      ADD_FAILURE() << "expected DistributedError";
    } catch (const DistributedError& e) {
      EXPECT_NE(std::string(e.what()).find("sent 3 elements"), std::string::npos) << e.what();
    }
  } else {
    dist::send(full({5}, static_cast<double>(rank()), on_dev(kInt32)), 0, 7);
    if (rank() == 1) dist::send(zeros({3}, on_dev()), 0, 8);
  }
  Tensor t = zeros({2}, on_dev());
  EXPECT_THROW(dist::send(t, rank()), ValueError);      // not to itself
  EXPECT_THROW(dist::send(t, world()), ValueError);     // not a rank
  EXPECT_THROW(dist::recv(t, 0, /*tag=*/-2), ValueError);
  dist::barrier();
}

TEST_P(Collectives, AsyncWorkOverlapsAndCompletesInOrder) {
  std::vector<Tensor> ts;
  std::vector<dist::WorkHandle> works;
  for (int k = 0; k < 8; ++k) {
    ts.push_back(full({1000}, static_cast<double>(rank() + k), on_dev()));
    works.push_back(dist::all_reduce(ts.back(), dist::ReduceOp::SUM, /*async_op=*/true));
    ASSERT_NE(works.back(), nullptr);
  }
  Tensor busy = randn({64, 64}, on_dev());
  for (int i = 0; i < 20; ++i) busy = matmul(busy, busy).tanh();  // computation while they run
  for (auto& w : works) w->wait();
  for (int k = 0; k < 8; ++k) {
    EXPECT_TRUE(works[static_cast<size_t>(k)]->is_completed());
    EXPECT_TRUE(works[static_cast<size_t>(k)]->is_success());
    const double want = world() * (world() - 1) / 2.0 + world() * k;
    EXPECT_EQ(ts[static_cast<size_t>(k)].min().item<double>(), want);
    EXPECT_EQ(ts[static_cast<size_t>(k)].max().item<double>(), want);
  }
  EXPECT_EQ(dist::all_reduce(ts[0]), nullptr);  // not async: waited, no handle
  dist::barrier();
}

TEST(Group, RankAndEnvironmentAgree) {
  EXPECT_GE(rank(), 0);
  EXPECT_LT(rank(), world());
  if (dist::env_rank() >= 0) {
    EXPECT_EQ(dist::env_rank(), rank());
  }
  if (dist::env_world_size() >= 0) {
    EXPECT_EQ(dist::env_world_size(), world());
  }
  EXPECT_GE(dist::get_local_rank(), 0);
  EXPECT_EQ(dist::get_backend(), backend());
  EXPECT_THROW(dist::init_process_group("mpi"), DistributedError);  // already initialised
}

// ---- DistributedDataParallel ------------------------------------------------------------

struct Net : nn::Module {
  nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
  Net() {
    fc1 = register_module("fc1", nn::Linear(6, 16));
    fc2 = register_module("fc2", nn::Linear(16, 16));
    fc3 = register_module("fc3", nn::Linear(16, 3));
  }
  Tensor forward(const Tensor& x) override { return fc3->forward(fc2->forward(fc1->forward(x).tanh()).relu()); }
};

std::shared_ptr<Net> make_net(uint64_t seed) {
  manual_seed(seed);
  auto net = std::make_shared<Net>();
  net->to(dev());
  return net;
}

// The same global batch on every rank: step s's inputs and targets.
std::pair<Tensor, Tensor> global_batch(int64_t n, int step) {
  manual_seed(1000 + static_cast<uint64_t>(step));
  Tensor x = randn({n, 6});
  Tensor y = randn({n, 3});
  return {x.to(dev()), y.to(dev())};
}
Tensor my_share(const Tensor& t) {
  const int64_t b = t.size(0) / world();
  return t.slice(0, rank() * b, (rank() + 1) * b);
}

void expect_same_parameters(nn::Module& a, nn::Module& b, const std::string& what) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].second.device(), dev());
    auto x = pa[i].second.to(Device::cpu()).to_vector<float>(), y = pb[i].second.to(Device::cpu()).to_vector<float>();
    for (size_t k = 0; k < x.size(); ++k)
      ASSERT_NEAR(x[k], y[k], 2e-5 * std::abs(y[k]) + 2e-6) << what << ": " << pa[i].first << "[" << k << "] on rank " << rank();
  }
}

using DDP = OnDevice;

template <class Opt, class Options>
void train_and_compare(Options opt_options, dist::DistributedDataParallelOptions ddp_options, const std::string& what) {
  const int64_t global = 4 * world();
  auto local = make_net(100 + static_cast<uint64_t>(rank()));  // different on every rank: the broadcast fixes it
  auto reference = make_net(100);                                // rank 0's initial weights
  dist::DistributedDataParallel ddp(local, ddp_options);
  expect_same_parameters(*local, *reference, what + ", after the broadcast");
  Opt opt(local->parameters(), opt_options);
  Opt ref_opt(reference->parameters(), opt_options);
  for (int step = 0; step < 5; ++step) {
    auto [x, y] = global_batch(global, step);
    opt.zero_grad();
    mse_loss(ddp.forward(my_share(x)), my_share(y)).backward();
    opt.step();
    ref_opt.zero_grad();
    mse_loss(reference->forward(x), y).backward();
    ref_opt.step();
  }
  expect_same_parameters(*local, *reference, what + ", after 5 steps");
}

TEST_P(DDP, SGDMomentumMatchesSingleProcessFullBatch) {
  train_and_compare<optim::SGD>(optim::SGDOptions(0.1).momentum(0.9), {}, "SGD");
}

TEST_P(DDP, AdamMatchesSingleProcessFullBatch) {
  train_and_compare<optim::Adam>(optim::AdamOptions(0.01), {}, "Adam");
}

TEST_P(DDP, ManySmallBucketsAndBucketViewsMatch) {
  // caps of a few hundred bytes: one bucket per parameter or two
  auto o = dist::DistributedDataParallelOptions().bucket_cap_mb(0.0004).first_bucket_cap_mb(0.0001);
  train_and_compare<optim::SGD>(optim::SGDOptions(0.05).momentum(0.9), o, "small buckets");
  train_and_compare<optim::Adam>(optim::AdamOptions(0.01), o.gradient_as_bucket_view(true), "bucket views");
}

TEST(DDPRules, BucketsFollowPyTorchsRules) {
  auto net = make_net(1);
  // default caps: everything (a few KiB) in one bucket
  dist::DistributedDataParallel one(net);
  ASSERT_EQ(one.bucket_indices().size(), 1u);
  EXPECT_EQ(one.bucket_indices()[0].front(), 5u);  // reverse registration order: fc3.bias first
  // 1 KiB first bucket then 2 KiB: fc3 (51 floats) + fc2.bias, then fc2.weight (1 KiB) closes, ...
  dist::DistributedDataParallel small(net, dist::DistributedDataParallelOptions().first_bucket_cap_mb(1.0 / 1024).bucket_cap_mb(2.0 / 1024));
  auto b = small.bucket_indices();
  ASSERT_GE(b.size(), 2u);
  std::vector<size_t> all;
  for (auto& v : b) all.insert(all.end(), v.begin(), v.end());
  EXPECT_EQ(all, (std::vector<size_t>{5, 4, 3, 2, 1, 0}));
  // the state_dict carries PyTorch's "module." prefix
  EXPECT_TRUE(small.named_parameters().contains("module.fc1.weight"));
}

TEST_P(DDP, NoSyncAccumulationEqualsABiggerBatch) {
  const int64_t micro = 2 * world(), k = 3;
  auto local = make_net(200 + static_cast<uint64_t>(rank()));
  auto reference = make_net(200);
  dist::DistributedDataParallel ddp(local);
  optim::SGD opt(local->parameters(), optim::SGDOptions(0.1));
  optim::SGD ref_opt(reference->parameters(), optim::SGDOptions(0.1));
  for (int step = 0; step < 3; ++step) {
    auto [x, y] = global_batch(micro * k, step);
    opt.zero_grad();
    for (int64_t m = 0; m < k; ++m) {
      Tensor xm = x.slice(0, m * micro, (m + 1) * micro), ym = y.slice(0, m * micro, (m + 1) * micro);
      auto loss = [&] { return mse_loss(ddp.forward(my_share(xm)), my_share(ym)) / static_cast<double>(k); };
      if (m + 1 < k) {
        auto guard = ddp.no_sync();
        loss().backward();
      } else {
        loss().backward();
      }
    }
    opt.step();
    ref_opt.zero_grad();
    mse_loss(reference->forward(x), y).backward();
    ref_opt.step();
  }
  expect_same_parameters(*local, *reference, "no_sync");
}

// fc_b is used on rank 0 only; fc_never on none.
struct Branchy : nn::Module {
  nn::Linear fc_a{nullptr}, fc_b{nullptr}, fc_never{nullptr};
  bool use_b = false;
  Branchy() {
    fc_a = register_module("fc_a", nn::Linear(4, 2));
    fc_b = register_module("fc_b", nn::Linear(4, 2));
    fc_never = register_module("fc_never", nn::Linear(4, 2));
  }
  Tensor forward(const Tensor& x) override { return use_b ? fc_a->forward(x) + fc_b->forward(x) : fc_a->forward(x); }
};

TEST(DDPRules, FindUnusedParameters) {
  manual_seed(7);
  auto net = std::make_shared<Branchy>();
  net->use_b = rank() == 0;
  dist::DistributedDataParallel ddp(net, dist::DistributedDataParallelOptions().find_unused_parameters(true));
  Tensor x = ones({2, 4});
  ddp.forward(x).sum().backward();
  // fc_a: the same gradient everywhere, averaged; fc_b: rank 0's gradient / world; fc_never: untouched
  EXPECT_NEAR(net->fc_a->bias.grad()[0].item<double>(), 2.0, 1e-6);
  EXPECT_NEAR(net->fc_b->bias.grad()[0].item<double>(), 2.0 / world(), 1e-6);
  EXPECT_FALSE(net->fc_never->weight.grad().defined());
  // a second iteration (buckets rebuilt from the ready order) gives the same
  net->zero_grad();
  ddp.forward(x).sum().backward();
  EXPECT_NEAR(net->fc_b->weight.grad()[0][0].item<double>(), 2.0 / world(), 1e-6);
  EXPECT_FALSE(net->fc_never->bias.grad().defined());
}

TEST(DDPRules, UnusedParameterWithoutTheOptionIsAClearError) {
  manual_seed(8);
  auto net = std::make_shared<Branchy>();  // fc_b and fc_never unused on every rank
  dist::DistributedDataParallel ddp(net);
  try {
    ddp.forward(ones({2, 4})).sum().backward();
    FAIL() << "expected DistributedError";
  } catch (const DistributedError& e) {
    EXPECT_NE(std::string(e.what()).find("fc_never.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("find_unused_parameters"), std::string::npos) << e.what();
  }
  dist::barrier();  // the group is still usable
}

TEST_P(DDP, BroadcastsBuffersFromRankZero) {
  manual_seed(9);
  auto bn = std::make_shared<nn::BatchNorm2d>(3);
  bn->to(dev());
  dist::DistributedDataParallel ddp(bn);
  Tensor x = full({4, 3, 1, 1}, static_cast<double>(rank() + 1));
  x = (x + arange(12).reshape({4, 3, 1, 1}).to(kFloat32)).to(dev());
  ddp.forward(x).sum().backward();
  // the training forward left each rank its own running statistics; before the next forward
  // (in eval mode, which does not update them) rank 0's are sent to everyone
  std::vector<Tensor> before;
  dist::all_gather(before, bn->named_buffers()["running_mean"].clone());
  if (world() > 1) {
    EXPECT_FALSE(allclose(before[0], before[1])) << "the ranks' statistics should differ before the broadcast";
  }
  ddp.eval();
  NoGradGuard no_grad;
  ddp.forward(x);
  Tensor rm = bn->named_buffers()["running_mean"].clone();
  std::vector<Tensor> all;
  dist::all_gather(all, rm);
  for (auto& t : all) EXPECT_TRUE(allclose(t, all[0])) << "running_mean differs across ranks";
}

INSTANTIATE_TEST_SUITE_P(Cpu, Collectives, ::testing::Values(kCPU), param_name);
INSTANTIATE_TEST_SUITE_P(Cuda, Collectives, ::testing::Values(kCUDA), param_name);
INSTANTIATE_TEST_SUITE_P(Cpu, DDP, ::testing::Values(kCPU), param_name);
INSTANTIATE_TEST_SUITE_P(Cuda, DDP, ::testing::Values(kCUDA), param_name);

}  // namespace

int main(int argc, char** argv) {
  dist::init_process_group(backend(), std::chrono::seconds(120));
  ::testing::InitGoogleTest(&argc, argv);
  if (dist::get_rank() != 0) GTEST_FLAG_SET(brief, true);  // rank 0 reports; the others only their failures
  int rc = RUN_ALL_TESTS();
  Tensor worst = full({1}, static_cast<double>(rc), kInt32);
  dist::all_reduce(worst, dist::ReduceOp::MAX);
  rc = static_cast<int>(worst.item<int64_t>());
  dist::destroy_process_group();
  return rc;
}
