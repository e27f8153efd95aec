// mnist: trains an MLP or PyTorch's examples/mnist CNN on MNIST with nabla, on the CPU or a GPU.
//   mnist --model cnn --epochs 3            (see --help)
// Per epoch: a progress bar (plain lines when stdout is not a terminal), test loss and accuracy,
// a row of the metrics CSV, and a checkpoint that --resume continues from (mid-epoch too).

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <nabla/data.hpp>
#include <nabla/nabla.hpp>

#include "../common/distributed.hpp"
#include "../common/example_cli.hpp"
#include "../common/inference.hpp"

namespace nb = nabla;
namespace nn = nabla::nn;

namespace {

struct Args {
  std::string model = "cnn", device = "auto", optimizer = "adam", data, checkpoint = "mnist_checkpoint.safetensors",
              csv = "mnist_metrics.csv", amp = "none";
  size_t memory_limit = 0;
  bool checkpointing = false;
  int64_t epochs = 3, batch_size = 64, test_batch_size = 1000, limit = 0, test_limit = 0, seed = 1, checkpoint_every = 0, threads = 0, max_steps = 0;
  double lr = -1, gamma = 0.4;
  bool resume = false, progress = true, distributed = false;
  nabla_example::InferenceOptions inference;
};

const char* kUsage = R"(usage: mnist [options]
Trains a classifier on MNIST and reports test accuracy after each epoch.

  --model {mlp,cnn}         network: a 784-256-128-10 MLP, or PyTorch's examples/mnist CNN (default cnn)
  --device {auto,cpu,cuda}  where to train; auto = cuda if a GPU is usable, else cpu (default auto)
  --epochs N                epochs to train (default 3)
  --batch-size N            training batch size (default 64)
  --test-batch-size N       evaluation batch size (default 1000)
  --lr X                    learning rate (default: 2e-3 for adam/adamw, 0.05 for sgd)
  --gamma X                 multiply the learning rate by X after each epoch (default 0.4; 1 = constant)
  --optimizer {sgd,adam,adamw}   optimizer (default adam; sgd uses momentum 0.9)
  --seed N                  seed for initialisation, shuffling and dropout (default 1)
  --data DIR                folder with the four MNIST files, .gz or not
                            (default: $NABLA_DATA/mnist, then ./data/mnist)
  --limit N                 train on the first N training images only (default: all 60000)
  --test-limit N            evaluate on the first N test images only (default: all 10000)
  --checkpoint PATH         checkpoint written after each epoch (default mnist_checkpoint.safetensors)
  --checkpoint-every N      also write it every N training steps (default 0: epoch ends only)
  --resume                  continue from --checkpoint (model, optimizer, schedule, position in the epoch)
  --max-steps N             stop after training step N, as if killed (tests --resume; default 0: no limit)
  --csv PATH                per-epoch metrics as CSV (default mnist_metrics.csv)
  --threads N               CPU threads (default: OpenMP's default, all cores)
  --amp {none,bf16,f16}     mixed precision: autocast to bfloat16 or float16 (f16 adds a GradScaler);
                            weights and optimizer stay float32 (default none)
  --checkpointing           gradient checkpointing: keep only the inputs of each segment of layers and
                            recompute the rest in backward (less memory, more compute)
  --memory-limit SIZE       fail with a clear error instead of allocating past SIZE on the training device
                            (e.g. 4GiB, 512MiB, 100MB; default: no limit)
  --distributed             data-parallel training on every rank of `mpirun -np N mnist --distributed ...`
                            (DistributedDataParallel over MPI, NCCL on GPUs): --batch-size is per rank, so the global
                            batch is N times it; rank 0 writes the checkpoint and the CSV
  --export PATH             after training, write the model as ONNX (opset 17, dynamic batch) for
                            onnxruntime / TensorRT (trtexec --onnx=PATH)
  --prune X                 after training, prune X (e.g. 0.5) of the weights two ways, unstructured
                            (global L1) and structured (L2 channels, removed), and print accuracy,
                            latency at batch 1 and 64 and the non-zero count against float32
  --quantize int8           after training, static int8 post-training quantization (observers over
                            --calibration-batches training batches): accuracy, latency at batch 1 and 64
                            and weight size against float32, on the CPU; with --export also writes the
                            QDQ model (PATH with .int8 before the extension) for trtexec --int8
  --calibration-batches N   training batches that calibrate --quantize (default 10)
  --no-progress             plain progress lines even on a terminal
  --help                    this text
)";

Args parse(int argc, char** argv) {
  Args a;
  nabla_example::Options o("mnist", argc, argv);
  while (o.next()) {
    const std::string f = o.flag();
    if (f == "--help" || f == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (f == "--model") a.model = o.choice({"mlp", "cnn"});
    else if (f == "--device") a.device = o.choice({"auto", "cpu", "cuda"});
    else if (f == "--optimizer") a.optimizer = o.choice({"sgd", "adam", "adamw"});
    else if (f == "--epochs") a.epochs = o.integer(1);
    else if (f == "--batch-size") a.batch_size = o.integer(1);
    else if (f == "--test-batch-size") a.test_batch_size = o.integer(1);
    else if (f == "--limit") a.limit = o.integer(1);
    else if (f == "--test-limit") a.test_limit = o.integer(1);
    else if (f == "--seed") a.seed = o.integer(0);
    else if (f == "--checkpoint-every") a.checkpoint_every = o.integer(0);
    else if (f == "--threads") a.threads = o.integer(1);
    else if (f == "--max-steps") a.max_steps = o.integer(0);
    else if (f == "--lr") a.lr = o.real();
    else if (f == "--gamma") a.gamma = o.real();
    else if (f == "--data") a.data = o.value();
    else if (f == "--checkpoint") a.checkpoint = o.value();
    else if (f == "--csv") a.csv = o.value();
    else if (f == "--amp") a.amp = o.choice({"none", "bf16", "f16"});
    else if (f == "--checkpointing") a.checkpointing = true;
    else if (f == "--memory-limit") a.memory_limit = o.bytes();
    else if (f == "--resume") a.resume = true;
    else if (f == "--no-progress") a.progress = false;
    else if (f == "--distributed") a.distributed = true;
    else if (f == "--export") a.inference.export_path = o.value();
    else if (f == "--prune") a.inference.prune = o.real();
    else if (f == "--quantize") a.inference.quantize = o.choice({"int8"});
    else if (f == "--calibration-batches") a.inference.calibration_batches = o.integer(1);
    else o.error("unknown option \"" + f + "\"");
  }
  if (a.lr < 0) a.lr = a.optimizer == "sgd" ? 0.05 : 2e-3;
  if (a.inference.prune < 0 || a.inference.prune >= 1) o.error("--prune takes a fraction in [0, 1)");
  return a;
}

std::string find_data_dir(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("NABLA_DATA"); env && *env && std::filesystem::exists(std::string(env) + "/mnist"))
    return std::string(env) + "/mnist";
  return "data/mnist";  // load_mnist names the folder and the four files if they are not there
}

std::shared_ptr<nn::Sequential> make_model(const std::string& kind) {
  if (kind == "mlp")
    return std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 256), nn::ReLU(), nn::Linear(256, 128),
                                            nn::ReLU(), nn::Linear(128, 10));
  // PyTorch's examples/mnist Net, layer for layer (its state_dict names are 0.weight ... 10.bias here).
  return std::make_shared<nn::Sequential>(nn::Conv2d(1, 32, 3, 1), nn::ReLU(), nn::Conv2d(32, 64, 3, 1), nn::ReLU(),
                                          nn::MaxPool2d(2), nn::Dropout(0.25), nn::Flatten(), nn::Linear(9216, 128),
                                          nn::ReLU(), nn::Dropout(0.5), nn::Linear(128, 10));
}

std::unique_ptr<nb::optim::Optimizer> make_optimizer(const Args& a, const std::vector<nb::Tensor>& params) {
  if (a.optimizer == "sgd") return std::make_unique<nb::optim::SGD>(params, nb::optim::SGDOptions(a.lr).momentum(0.9));
  if (a.optimizer == "adamw") return std::make_unique<nb::optim::AdamW>(params, nb::optim::AdamWOptions(a.lr));
  return std::make_unique<nb::optim::Adam>(params, nb::optim::AdamOptions(a.lr));
}

using nabla_example::Progress;

using nabla_example::Eval;
using nabla_example::evaluate;

int run(const Args& a) {
#if defined(_OPENMP)
  if (a.threads > 0) omp_set_num_threads(static_cast<int>(a.threads));
#endif
  // Tiny gradients make denormal floats (Adam's second moments first), each ~100x slower to
  // compute with; as torch.set_flush_denormal(True). After the thread count, so every worker
  // gets the flags.
  nb::set_flush_denormal(true);
  // --distributed: one process per rank (mpirun); each trains on its share of every batch.
  nabla_example::Ranks ranks(a.distributed, "mnist", a.device);
  const int world = ranks.world();
  const bool lead = ranks.lead();  // writes the checkpoint and the CSV, prints the progress
  nb::Device device = nb::Device::cpu();
  if (a.device == "cuda" || (a.device == "auto" && nb::cuda::is_available())) {
    NABLA_CHECK(nb::cuda::is_available(), nb::DeviceError,
                "mnist: --device cuda, but no CUDA device is usable (no GPU, no driver, or built without nabla::cuda)");
    device = nb::Device::cuda(static_cast<int>(ranks.local_rank() % std::max(1, nb::cuda::device_count())));
  }
  if (a.memory_limit > 0) nb::set_memory_limit(device, a.memory_limit);
  // Mixed precision as PyTorch's recipe: autocast around forward and loss; float16 also scales
  // the loss (GradScaler) so small gradients survive; bfloat16 has float32's range and needs none.
  const bool use_amp = a.amp != "none";
  const nb::DType amp_dtype = a.amp == "f16" ? nb::kFloat16 : nb::kBFloat16;
  nb::amp::GradScaler scaler(nb::amp::GradScalerOptions().enabled(a.amp == "f16"));
  const std::string dir = find_data_dir(a.data);
  auto train_set = nb::data::mnist_dataset(dir, true);
  auto test_set = nb::data::mnist_dataset(dir, false);
  using nb::data::TensorDataset;
  if (a.limit > 0 && a.limit < train_set->size())
    train_set = std::make_shared<TensorDataset>(train_set->data().narrow(0, 0, a.limit),
                                                train_set->target().narrow(0, 0, a.limit));
  if (a.test_limit > 0 && a.test_limit < test_set->size())
    test_set = std::make_shared<TensorDataset>(test_set->data().narrow(0, 0, a.test_limit),
                                               test_set->target().narrow(0, 0, a.test_limit));
  const int64_t test_total = test_set->size();
  // Distributed evaluation: each rank scores its own contiguous slice of the test set; the sums
  // are added across ranks.
  if (world > 1) {
    const auto [from, to] = ranks.slice(test_set->size());
    test_set = std::make_shared<TensorDataset>(test_set->data().narrow(0, from, to - from),
                                               test_set->target().narrow(0, from, to - from));
  }
  // The whole set is 188 MB of float32: on a GPU keep it there, so batches are gathered in place.
  if (device.is_cuda()) {
    train_set = std::make_shared<TensorDataset>(train_set->data().to(device), train_set->target().to(device));
    test_set = std::make_shared<TensorDataset>(test_set->data().to(device), test_set->target().to(device));
  }

  auto train_options = nb::data::DataLoaderOptions().batch_size(a.batch_size).seed(static_cast<uint64_t>(a.seed)).device(device);
  ranks.shard(train_options, train_set->size(), static_cast<uint64_t>(a.seed));
  nb::data::DataLoader train(train_set, train_options);
  nb::data::DataLoader test(test_set, nb::data::DataLoaderOptions().batch_size(a.test_batch_size).device(device));

  nb::manual_seed(static_cast<uint64_t>(a.seed));
  auto model = make_model(a.model);
  model->to(device);
  // The training forward. --checkpointing: segments of two layers keep only their input; the
  // last segment (the classifier) runs normally, as checkpoint_sequential does
  const int64_t segments = a.model == "cnn" ? 4 : 3;
  std::function<nb::Tensor(const nb::Tensor&)> body;  // null: the model's own forward
  if (a.checkpointing) body = [model, segments](const nb::Tensor& x) { return nb::checkpoint_sequential(model, segments, x); };
  // What training calls: that, or DistributedDataParallel around it (rank 0's weights on every
  // rank, gradients averaged across ranks during backward).
  auto forward = ranks.wrap(model, body);
  auto opt = make_optimizer(a, model->parameters());
  nb::optim::StepLR schedule(*opt, 1, a.gamma);

  int64_t step = 0, start_epoch = 0, skip = 0;
  const int64_t steps_per_epoch = train.size();
  if (a.resume) {
    NABLA_CHECK(std::filesystem::exists(a.checkpoint), nb::IOError, "mnist: --resume: no checkpoint at ", a.checkpoint);
    nb::io::Metadata meta;
    step = nb::io::load_checkpoint(a.checkpoint, *model, opt.get(), &schedule, &meta, &scaler);
    const int64_t saved_world = meta.count("world_size") ? std::stoll(meta.at("world_size")) : 1;
    NABLA_CHECK(saved_world == world, nb::ValueError, "mnist: --resume: ", a.checkpoint, " was written by a run of ",
                saved_world, " rank(s), this one has ", world, " (resume with the same mpirun -np)");
    if (meta.count("steps_per_epoch"))
      NABLA_CHECK(std::stoll(meta.at("steps_per_epoch")) == steps_per_epoch, nb::ValueError, "mnist: --resume: ",
                  a.checkpoint, " was written with ", meta.at("steps_per_epoch"), " steps per epoch, this run has ",
                  steps_per_epoch, " (use the same --batch-size and --limit)");
    start_epoch = step / steps_per_epoch, skip = step % steps_per_epoch;
    // Dropout continues with the numbers the interrupted run would have drawn next.
    if (meta.count("rng_seed") && meta.count("rng_offset"))
      nb::default_generator().set_state({std::stoull(meta.at("rng_seed")), std::stoull(meta.at("rng_offset"))});
    if (lead)
      std::printf("resumed from %s at step %lld (epoch %lld, batch %lld)\n", a.checkpoint.c_str(), (long long)step,
                  (long long)start_epoch + 1, (long long)skip);
  }
  // after training (or from a finished checkpoint): --export, --prune
  auto inference_steps = [&] {
    if (!lead || !a.inference.any()) return;
    const nb::Tensor sample = test_set->data().narrow(0, 0, std::min<int64_t>(64, test_set->size()));
    nabla_example::run_inference_steps(model, &test, sample, a.inference, "mnist", &train);
  };
  if (start_epoch >= a.epochs) {
    if (lead) std::printf("the checkpoint is already at the end of epoch %lld; nothing to do\n", (long long)a.epochs);
    inference_steps();
    return 0;
  }
  if (lead && world > 1)
    std::printf("distributed: %d ranks over %s, batch %lld per rank (global %lld), %lld training images per rank\n",
                world, ranks.backend(), (long long)a.batch_size, (long long)a.batch_size * world, (long long)train.size() * a.batch_size);
  if (lead) std::printf("model %s, %lld parameters; device %s%s%s; optimizer %s lr %g; %lld training images, batch %lld\n",
              a.model.c_str(), (long long)[&] {
                int64_t n = 0;
                for (const auto& p : model->parameters()) n += p.numel();
                return n;
              }(),
              device.str().c_str(), use_amp ? (", amp " + a.amp).c_str() : "",
              a.checkpointing ? ", checkpointing" : "", a.optimizer.c_str(), a.lr, (long long)train_set->size(),
              (long long)a.batch_size);

  const bool fresh_csv = !a.resume || !std::filesystem::exists(a.csv);
  std::ofstream csv;
  if (lead) {
    csv.open(a.csv, fresh_csv ? std::ios::trunc : std::ios::app);
    NABLA_CHECK(csv.good(), nb::IOError, "mnist: cannot write the metrics file ", a.csv);
    if (fresh_csv) csv << "epoch,step,lr,train_loss,test_loss,test_accuracy,epoch_seconds,images_per_second\n";
  }

  // The checkpoint: model, optimizer, schedule, step, and the RNG state (for dropout).
  auto save = [&](int64_t at_step) {
    if (!lead) return;
    auto [seed, offset] = nb::default_generator().state();
    nb::io::save_checkpoint(a.checkpoint, *model, opt.get(), &schedule, at_step,
                            {{"rng_seed", std::to_string(seed)}, {"rng_offset", std::to_string(offset)},
                             {"model", a.model}, {"steps_per_epoch", std::to_string(steps_per_epoch)},
                             {"world_size", std::to_string(world)}},
                            &scaler);
  };
  const bool tty = a.progress && isatty(fileno(stdout)) && lead;
  const double t_start = Progress::now();
  Eval last{0, 0};
  for (int64_t epoch = start_epoch; epoch < a.epochs; ++epoch) {
    const double lr = opt->lr(0);
    train.set_epoch(epoch, epoch == start_epoch ? skip : 0);
    Progress bar(epoch + 1, a.epochs, steps_per_epoch, epoch == start_epoch ? skip : 0, tty);
    const double t0 = Progress::now();
    int64_t images = 0, batches = 0;
    nb::Tensor loss_sum = nb::zeros({}, nb::TensorOptions(nb::kFloat32).device(device));  // read back when shown
    for (auto it = train.begin(); it != train.end(); ++it) {
      nb::data::Batch& b = *it;
      opt->zero_grad();
      nb::Tensor loss;
      {
        std::optional<nb::amp::autocast> autocast;
        if (use_amp) autocast.emplace(device.type, amp_dtype);
        nb::Tensor logits = forward(b.data);
        loss = nb::cross_entropy(logits, b.target);
      }
      scaler.scale(loss).backward();
      scaler.step(*opt);  // opt->step() unless the scaled gradients overflowed (f16)
      scaler.update();
      ++step, ++batches, images += b.target.size(0);
      loss_sum.add_(loss.detach());
      if (lead && bar.due(it.index() + 1)) bar.update(it.index() + 1, loss_sum.item<double>() / static_cast<double>(batches), images);
      if (a.checkpoint_every > 0 && step % a.checkpoint_every == 0 && it.index() + 1 < steps_per_epoch)
        save(step);
      if (a.max_steps > 0 && step >= a.max_steps) {
        if (lead) std::printf("\nstopping at step %lld (--max-steps), without a checkpoint of this step\n", (long long)step);
        return 3;
      }
    }
    const double seconds = Progress::now() - t0;
    double train_loss = loss_sum.item<double>() / static_cast<double>(std::max<int64_t>(1, batches));
    schedule.step();
    {
      std::optional<nb::amp::autocast> autocast;
      if (use_amp) autocast.emplace(device.type, amp_dtype);
      last = evaluate(*model, test);
    }
    double throughput = images / seconds;  // this rank's; with --distributed the sum over ranks
    ranks.combine_epoch(last, test_set->size(), throughput, train_loss, seconds);
    save(step);
    if (lead) std::printf("epoch %lld: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%lld/%lld), %.1f s, %.0f img/s\n",
                (long long)epoch + 1, train_loss, last.loss, 100 * last.accuracy,
                (long long)std::llround(last.accuracy * test_total), (long long)test_total, seconds, throughput);
    if (lead) {
      csv << epoch + 1 << "," << step << "," << lr << "," << train_loss << "," << last.loss << "," << last.accuracy << ","
          << seconds << "," << throughput << "\n";
      csv.flush();
    }
  }
  if (!lead) return 0;
  std::printf("test accuracy %.2f%% after %lld epochs; total time %.1f s; checkpoint %s, metrics %s\n",
              100 * last.accuracy, (long long)a.epochs, Progress::now() - t_start, a.checkpoint.c_str(), a.csv.c_str());
  const nb::MemoryStats mem = nb::memory_stats(device);
  std::printf("peak memory on %s: %s (%zu bytes) held by tensors%s\n", device.str().c_str(),
              nabla_example::bytes_str(mem.peak).c_str(), mem.peak,
              a.memory_limit ? (", limit " + nabla_example::bytes_str(a.memory_limit)).c_str() : "");
  inference_steps();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  try {
    return run(args);
  } catch (const nb::Error& e) {
    std::cerr << "mnist: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mnist: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
