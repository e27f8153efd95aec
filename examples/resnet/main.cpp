// resnet: trains torchvision's ResNet-18/34/50 (nabla::models) on CIFAR-10 with nabla, on the CPU
// or a GPU; or times the train step on ImageNet-shaped random data (--synthetic).
//   resnet --arch resnet18 --epochs 15            (see --help)
// The recipe: SGD with Nesterov momentum 0.9 and weight decay 5e-4, label smoothing 0.1, a
// one-cycle (or cosine) schedule stepped every batch, RandomCrop(32, padding 4) +
// RandomHorizontalFlip + Normalize. Per epoch: a progress bar, test loss and accuracy, a row of
// the metrics CSV, and a checkpoint that --resume continues from (mid-epoch too).

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <nabla/data.hpp>
#include <nabla/models/resnet.hpp>
#include <nabla/nabla.hpp>

#include "../common/distributed.hpp"
#include "../common/example_cli.hpp"
#include "../common/inference.hpp"

namespace nb = nabla;
namespace nn = nabla::nn;
namespace nd = nabla::data;
using nabla_example::Progress;

namespace {

struct Args {
  std::string arch = "resnet18", device = "auto", schedule = "onecycle", data, checkpoint = "resnet_checkpoint.safetensors",
              csv = "resnet_metrics.csv", amp = "none";
  size_t memory_limit = 0;
  bool checkpointing = false;
  int64_t epochs = 15, batch_size = 128, test_batch_size = 500, limit = 0, test_limit = 0, seed = 1, checkpoint_every = 0,
          threads = 0, max_steps = 0, image_size = 224;
  double lr = 0.1, momentum = 0.9, weight_decay = 5e-4, label_smoothing = 0.1;
  int cifar_stem = -1;  // -1: on for CIFAR, off for --synthetic
  bool resume = false, progress = true, augment = true, synthetic = false, distributed = false;
  nabla_example::InferenceOptions inference;
};

const char* kUsage = R"(usage: resnet [options]
Trains a ResNet (torchvision's architecture) on CIFAR-10 and reports test accuracy after each epoch;
with --synthetic, times the training step on random ImageNet-shaped data instead.

  --arch {resnet18,resnet34,resnet50}   network (default resnet18)
  --cifar-stem, --no-cifar-stem   3x3 stride-1 conv1 and no max-pool, for 32x32 images
                            (default: on for CIFAR-10, off for --synthetic)
  --device {auto,cpu,cuda}  where to train; auto = cuda if a GPU is usable, else cpu (default auto)
  --epochs N                epochs to train (default 15)
  --batch-size N            training batch size (default 128)
  --test-batch-size N       evaluation batch size (default 500)
  --lr X                    peak learning rate of the schedule (default 0.1)
  --schedule {onecycle,cosine}   per-step schedule: one-cycle (warm up over 30%, anneal) or cosine
                            from --lr to 0 (default onecycle)
  --momentum X              SGD Nesterov momentum (default 0.9; one-cycle cycles it 0.85-0.95)
  --weight-decay X          (default 5e-4)
  --label-smoothing X       (default 0.1)
  --no-augment              no random crop and flip (Normalize only)
  --seed N                  seed for initialisation, shuffling and augmentation (default 1)
  --data DIR                folder with the CIFAR-10 binary files (data_batch_1.bin ... test_batch.bin,
                            .gz or not; default: $NABLA_DATA/cifar10, then ./data/cifar10)
  --limit N                 train on the first N training images only (default: all)
  --test-limit N            evaluate on N test images, evenly spaced through the test set (default: all)
  --synthetic               random images [N, 3, S, S] and 1000 classes: prints the train step's img/s
                            and the peak memory; N = --limit (default 4 batches), no evaluation
  --image-size S            side of the --synthetic images (default 224)
  --checkpoint PATH         checkpoint written after each epoch (default resnet_checkpoint.safetensors)
  --checkpoint-every N      also write it every N training steps (default 0: epoch ends only)
  --resume                  continue from --checkpoint (model, optimizer, schedule, position in the epoch)
  --max-steps N             stop after training step N, as if killed (tests --resume; default 0: no limit)
  --csv PATH                per-epoch metrics as CSV (default resnet_metrics.csv)
  --threads N               CPU threads (default: OpenMP's default, all cores)
  --amp {none,bf16,f16}     mixed precision: autocast to bfloat16 or float16 (f16 adds a GradScaler);
                            weights and optimizer stay float32 (default none)
  --checkpointing           gradient checkpointing per residual block (recomputed in backward)
  --memory-limit SIZE       fail with a clear error instead of allocating past SIZE on the training device
                            (e.g. 4GiB, 512MiB; default: no limit)
  --distributed             data-parallel training on every rank of `mpirun -np N resnet --distributed ...`
                            (DistributedDataParallel over MPI, NCCL on GPUs): --batch-size is per rank, so the global
                            batch is N times it; rank 0 writes the checkpoint and the CSV
  --export PATH             after training, write the model as ONNX (opset 17, dynamic batch) for
                            onnxruntime / TensorRT (trtexec --onnx=PATH)
  --prune X                 after training, prune X (e.g. 0.5) of the conv/linear weights (global L1,
                            unstructured) and print accuracy, latency at batch 1 and 64 and the
                            non-zero count against float32
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
  nabla_example::Options o("resnet", argc, argv);
  while (o.next()) {
    const std::string f = o.flag();
    if (f == "--help" || f == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (f == "--arch") a.arch = o.choice({"resnet18", "resnet34", "resnet50"});
    else if (f == "--cifar-stem") a.cifar_stem = 1;
    else if (f == "--no-cifar-stem") a.cifar_stem = 0;
    else if (f == "--device") a.device = o.choice({"auto", "cpu", "cuda"});
    else if (f == "--schedule") a.schedule = o.choice({"onecycle", "cosine"});
    else if (f == "--epochs") a.epochs = o.integer(1);
    else if (f == "--batch-size") a.batch_size = o.integer(1);
    else if (f == "--test-batch-size") a.test_batch_size = o.integer(1);
    else if (f == "--limit") a.limit = o.integer(1);
    else if (f == "--test-limit") a.test_limit = o.integer(1);
    else if (f == "--seed") a.seed = o.integer(0);
    else if (f == "--checkpoint-every") a.checkpoint_every = o.integer(0);
    else if (f == "--threads") a.threads = o.integer(1);
    else if (f == "--max-steps") a.max_steps = o.integer(0);
    else if (f == "--image-size") a.image_size = o.integer(32);
    else if (f == "--lr") a.lr = o.real();
    else if (f == "--momentum") a.momentum = o.real();
    else if (f == "--weight-decay") a.weight_decay = o.real(0.0, true);
    else if (f == "--label-smoothing") a.label_smoothing = o.real(0.0, true);
    else if (f == "--data") a.data = o.value();
    else if (f == "--checkpoint") a.checkpoint = o.value();
    else if (f == "--csv") a.csv = o.value();
    else if (f == "--resume") a.resume = true;
    else if (f == "--no-progress") a.progress = false;
    else if (f == "--distributed") a.distributed = true;
    else if (f == "--no-augment") a.augment = false;
    else if (f == "--synthetic") a.synthetic = true;
    else if (f == "--amp") a.amp = o.choice({"none", "bf16", "f16"});
    else if (f == "--checkpointing") a.checkpointing = true;
    else if (f == "--memory-limit") a.memory_limit = o.bytes();
    else if (f == "--export") a.inference.export_path = o.value();
    else if (f == "--prune") a.inference.prune = o.real();
    else if (f == "--quantize") a.inference.quantize = o.choice({"int8"});
    else if (f == "--calibration-batches") a.inference.calibration_batches = o.integer(1);
    else o.error("unknown option \"" + f + "\"");
  }
  if (a.momentum >= 1) o.error("--momentum must be below 1");
  if (a.label_smoothing > 1) o.error("--label-smoothing must be in [0, 1]");
  if (a.cifar_stem < 0) a.cifar_stem = a.synthetic ? 0 : 1;
  if (a.inference.prune >= 1) o.error("--prune takes a fraction in [0, 1)");
  if (a.synthetic && (a.inference.prune > 0 || !a.inference.quantize.empty()))
    o.error("--prune and --quantize measure test accuracy; they need CIFAR-10, not --synthetic");
  return a;
}

std::string find_data_dir(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("NABLA_DATA"); env && *env && std::filesystem::exists(std::string(env) + "/cifar10"))
    return std::string(env) + "/cifar10";
  return "data/cifar10";  // load_cifar10 names the folder and the files if they are not there
}

std::shared_ptr<nb::models::ResNet> make_model(const Args& a, int64_t classes) {
  nb::models::ResNetOptions o{.num_classes = classes, .cifar_stem = a.cifar_stem == 1};
  if (a.arch == "resnet34") return nb::models::resnet34(o);
  if (a.arch == "resnet50") return nb::models::resnet50(o);
  return nb::models::resnet18(o);
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

using nabla_example::Eval;
using nabla_example::evaluate;

std::shared_ptr<nd::TensorDataset> first(std::shared_ptr<nd::TensorDataset> set, int64_t n) {
  if (n <= 0 || n >= set->size()) return set;
  return std::make_shared<nd::TensorDataset>(set->data().narrow(0, 0, n), set->target().narrow(0, 0, n));
}
// n examples evenly spaced through the set: a test set sorted by class (as the shared copy of
// CIFAR-10's is) keeps every class in a slice.
std::shared_ptr<nd::TensorDataset> spread(std::shared_ptr<nd::TensorDataset> set, int64_t n) {
  if (n <= 0 || n >= set->size()) return set;
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i * set->size() / n;
  nd::Batch b = set->get_batch(idx);
  return std::make_shared<nd::TensorDataset>(b.data, b.target);
}

int run(const Args& a) {
#if defined(_OPENMP)
  if (a.threads > 0) omp_set_num_threads(static_cast<int>(a.threads));
#endif
  nb::set_flush_denormal(true);  // as torch.set_flush_denormal(True); after the thread count
  // --distributed: one process per rank (mpirun); each trains on its share of every batch.
  nabla_example::Ranks ranks(a.distributed, "resnet", a.device);
  const int world = ranks.world();
  const bool lead = ranks.lead();  // writes the checkpoint and the CSV, prints the progress
  nb::Device device = nb::Device::cpu();
  if (a.device == "cuda" || (a.device == "auto" && nb::cuda::is_available())) {
    NABLA_CHECK(nb::cuda::is_available(), nb::DeviceError,
                "resnet: --device cuda, but no CUDA device is usable (no GPU, no driver, or built without nabla::cuda)");
    device = nb::Device::cuda(static_cast<int>(ranks.local_rank() % std::max(1, nb::cuda::device_count())));
  }

  // ---- data ----------------------------------------------------------------------------------
  std::shared_ptr<nd::TensorDataset> train_set, test_set;
  int64_t classes = 10;
  nd::Transform train_tf, test_tf;
  if (a.synthetic) {
    classes = 1000;
    const int64_t n = a.limit > 0 ? a.limit : 4 * a.batch_size;
    nb::manual_seed(static_cast<uint64_t>(a.seed) + 1000);
    train_set = std::make_shared<nd::TensorDataset>(nb::randn({n, 3, a.image_size, a.image_size}),
                                                    nb::randint(0, classes, {n}, nb::kInt64));
  } else {
    const std::string dir = find_data_dir(a.data);
    train_set = first(nd::cifar10_dataset(dir, true), a.limit);
    test_set = spread(nd::cifar10_dataset(dir, false), a.test_limit);
    namespace tf = nd::transforms;
    tf::Normalize normalize(nd::kCifar10Mean, nd::kCifar10Std);
    train_tf = a.augment ? nd::Transform(tf::Compose({tf::RandomCrop(32, 4), tf::RandomHorizontalFlip(), normalize}))
                         : nd::Transform(normalize);
    test_tf = normalize;
  }
  const int64_t test_total = test_set ? test_set->size() : 0;
  if (test_set && world > 1) {  // each rank scores its own slice; the sums are added across ranks
    const auto [from, to] = ranks.slice(test_set->size());
    test_set = std::make_shared<nd::TensorDataset>(test_set->data().narrow(0, from, to - from),
                                                   test_set->target().narrow(0, from, to - from));
  }
  auto train_options = nd::DataLoaderOptions().batch_size(a.batch_size).seed(static_cast<uint64_t>(a.seed)).transform(train_tf).device(device);
  ranks.shard(train_options, train_set->size(), static_cast<uint64_t>(a.seed));
  nd::DataLoader train(train_set, train_options);
  std::unique_ptr<nd::DataLoader> test;
  if (test_set)
    test = std::make_unique<nd::DataLoader>(
        test_set, nd::DataLoaderOptions().batch_size(a.test_batch_size).transform(test_tf).device(device));

  // ---- model, optimizer, schedule --------------------------------------------------------------
  nb::manual_seed(static_cast<uint64_t>(a.seed));
  auto model = make_model(a, classes);
  model->to(device);
  if (a.checkpointing) model->gradient_checkpointing_enable();
  auto forward = ranks.wrap(model);  // DistributedDataParallel with --distributed
  if (a.memory_limit > 0) nb::set_memory_limit(device, a.memory_limit);
  const bool use_amp = a.amp != "none";
  const nb::DType amp_dtype = a.amp == "f16" ? nb::kFloat16 : nb::kBFloat16;
  nb::amp::GradScaler scaler(nb::amp::GradScalerOptions().enabled(a.amp == "f16"));
  nb::optim::SGD opt(model->parameters(),
                     nb::optim::SGDOptions(a.lr).momentum(a.momentum).nesterov(true).weight_decay(a.weight_decay));
  const int64_t steps_per_epoch = train.size(), total_steps = a.epochs * steps_per_epoch;
  std::unique_ptr<nb::optim::LRScheduler> schedule;
  if (a.schedule == "cosine") schedule = std::make_unique<nb::optim::CosineAnnealingLR>(opt, total_steps);
  else schedule = std::make_unique<nb::optim::OneCycleLR>(opt, a.lr, total_steps);

  int64_t step = 0, start_epoch = 0, skip = 0;
  if (a.resume) {
    NABLA_CHECK(std::filesystem::exists(a.checkpoint), nb::IOError, "resnet: --resume: no checkpoint at ", a.checkpoint);
    // the run's shape first (a checkpoint of another architecture would fail on its weights)
    const nb::io::Metadata meta = nb::io::load_safetensors(a.checkpoint).metadata;
    for (const auto& [key, now] : {std::pair<std::string, std::string>{"steps_per_epoch", std::to_string(steps_per_epoch)},
                                   {"world_size", std::to_string(world)},
                                   {"arch", a.arch}, {"cifar_stem", std::to_string(a.cifar_stem)},
                                   {"epochs", std::to_string(a.epochs)}, {"schedule", a.schedule}})
      NABLA_CHECK(!meta.count(key) || meta.at(key) == now, nb::ValueError, "resnet: --resume: ", a.checkpoint,
                  " was written with ", key, " ", meta.at(key), ", this run has ", now,
                  " (resume with the same --arch, stem, --epochs, --schedule, --batch-size, --limit and mpirun -np)");
    step = nb::io::load_checkpoint(a.checkpoint, *model, &opt, schedule.get(), nullptr, &scaler);
    start_epoch = step / steps_per_epoch, skip = step % steps_per_epoch;
    if (lead)
      std::printf("resumed from %s at step %lld (epoch %lld, batch %lld)\n", a.checkpoint.c_str(), (long long)step,
                  (long long)start_epoch + 1, (long long)skip);
  }
  // after training (or from a finished checkpoint): --export, --prune
  auto inference_steps = [&] {
    if (!lead || !a.inference.any()) return;
    nb::Tensor sample;
    if (test) {
      for (nd::Batch& b : *test) {  // normalised as the test loader gives it
        sample = b.data;
        break;
      }
    } else {
      sample = nb::randn({2, 3, a.image_size, a.image_size}, nb::TensorOptions().device(device));
    }
    nabla_example::run_inference_steps(model, test.get(), sample, a.inference, "resnet", &train);
  };
  if (start_epoch >= a.epochs) {
    if (lead) std::printf("the checkpoint is already at the end of epoch %lld; nothing to do\n", (long long)a.epochs);
    inference_steps();
    return 0;
  }
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  if (lead && world > 1)
    std::printf("distributed: %d ranks over %s, batch %lld per rank (global %lld)\n", world, ranks.backend(), (long long)a.batch_size,
                (long long)a.batch_size * world);
  if (lead) std::printf("model %s%s, %lld parameters; device %s%s%s; SGD nesterov lr %g (%s) wd %g, label smoothing %g; "
              "%lld training images%s, batch %lld\n",
              a.arch.c_str(), a.cifar_stem ? " (CIFAR stem)" : "", (long long)params, device.str().c_str(),
              use_amp ? (", amp " + a.amp).c_str() : "", a.checkpointing ? ", checkpointing" : "", a.lr,
              a.schedule.c_str(), a.weight_decay, a.label_smoothing, (long long)train_set->size(),
              a.synthetic ? " (synthetic)" : "", (long long)a.batch_size);

  const bool fresh_csv = !a.resume || !std::filesystem::exists(a.csv);
  std::ofstream csv;
  if (lead) {
    csv.open(a.csv, fresh_csv ? std::ios::trunc : std::ios::app);
    NABLA_CHECK(csv.good(), nb::IOError, "resnet: cannot write the metrics file ", a.csv);
    if (fresh_csv) csv << "epoch,step,lr,train_loss,test_loss,test_accuracy,epoch_seconds,images_per_second\n";
  }

  auto save = [&](int64_t at_step) {
    if (!lead) return;
    auto [seed, offset] = nb::default_generator().state();
    nb::io::save_checkpoint(a.checkpoint, *model, &opt, schedule.get(), at_step,
                            {{"rng_seed", std::to_string(seed)}, {"rng_offset", std::to_string(offset)}, {"arch", a.arch},
                             {"cifar_stem", std::to_string(a.cifar_stem)}, {"epochs", std::to_string(a.epochs)},
                             {"schedule", a.schedule}, {"steps_per_epoch", std::to_string(steps_per_epoch)},
                             {"world_size", std::to_string(world)}},
                            &scaler);
  };
  nb::CrossEntropyOptions ce;
  ce.label_smoothing = a.label_smoothing;
  const bool tty = a.progress && isatty(fileno(stdout)) && lead;
  const double t_start = Progress::now();
  Eval last{0, 0};
  for (int64_t epoch = start_epoch; epoch < a.epochs; ++epoch) {
    const double lr = opt.lr(0);
    train.set_epoch(epoch, epoch == start_epoch ? skip : 0);
    Progress bar(epoch + 1, a.epochs, steps_per_epoch, epoch == start_epoch ? skip : 0, tty);
    const double t0 = Progress::now();
    int64_t images = 0, batches = 0;
    double timed_seconds = 0;  // --synthetic: the train steps after the first (warm-up) one
    int64_t timed_images = 0;
    nb::Tensor loss_sum = nb::zeros({}, nb::TensorOptions(nb::kFloat32).device(device));  // read back when shown
    for (auto it = train.begin(); it != train.end(); ++it) {
      nd::Batch& b = *it;
      const double s0 = Progress::now();
      opt.zero_grad();
      nb::Tensor loss;
      {
        std::optional<nb::amp::autocast> autocast;
        if (use_amp) autocast.emplace(device.type, amp_dtype);
        loss = nb::cross_entropy(forward(b.data), b.target, ce);
      }
      scaler.scale(loss).backward();
      scaler.step(opt);  // opt.step() unless the scaled gradients overflowed (f16)
      scaler.update();
      schedule->step();
      ++step, ++batches, images += b.target.size(0);
      loss_sum.add_(loss.detach());
      if (a.synthetic && batches > 1) {
        (void)loss_sum.item<double>();  // waits for the device
        timed_seconds += Progress::now() - s0, timed_images += b.target.size(0);
      }
      if (lead && bar.due(it.index() + 1)) bar.update(it.index() + 1, loss_sum.item<double>() / static_cast<double>(batches), images);
      if (a.checkpoint_every > 0 && step % a.checkpoint_every == 0 && it.index() + 1 < steps_per_epoch) save(step);
      if (a.max_steps > 0 && step >= a.max_steps) {
        if (lead) std::printf("\nstopping at step %lld (--max-steps), without a checkpoint of this step\n", (long long)step);
        return 3;
      }
    }
    const double seconds = Progress::now() - t0;
    double train_loss = loss_sum.item<double>() / static_cast<double>(std::max<int64_t>(1, batches));
    if (a.synthetic) {
      if (world > 1) {  // each rank's line, then the aggregate
        ranks.report(timed_images / std::max(timed_seconds, 1e-9), timed_seconds);
        auto v = ranks.sum({timed_images / std::max(timed_seconds, 1e-9)});
        if (lead) std::printf("aggregate over %d ranks: %.1f img/s\n", world, v[0]);
      }
      if (lead) std::printf("train step: %.1f img/s over %lld images after one warm-up batch (%s, %lldx%lld, batch %lld%s%s); "
                  "peak RSS %.0f MiB; peak %s memory %.0f MiB\n",
                  timed_images / std::max(timed_seconds, 1e-9), (long long)timed_images, a.arch.c_str(),
                  (long long)a.image_size, (long long)a.image_size, (long long)a.batch_size,
                  use_amp ? (", amp " + a.amp).c_str() : "", a.checkpointing ? ", checkpointing" : "", peak_rss_mib(),
                  device.is_cuda() ? "GPU" : "tensor", static_cast<double>(nb::memory_stats(device).peak) / (1 << 20));
      last = {train_loss, 0};
    } else {
      std::optional<nb::amp::autocast> autocast;
      if (use_amp) autocast.emplace(device.type, amp_dtype);
      last = evaluate(*model, *test);
    }
    double throughput = images / seconds;  // this rank's; with --distributed the sum over ranks
    if (!a.synthetic) ranks.combine_epoch(last, test_set->size(), throughput, train_loss, seconds);
    save(step);
    if (!a.synthetic && lead)
      std::printf("epoch %lld: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%lld/%lld), %.1f s, %.0f img/s\n",
                  (long long)epoch + 1, train_loss, last.loss, 100 * last.accuracy,
                  (long long)std::llround(last.accuracy * static_cast<double>(test_total)), (long long)test_total, seconds,
                  throughput);
    if (lead) {
      csv << epoch + 1 << "," << step << "," << lr << "," << train_loss << "," << last.loss << "," << last.accuracy << ","
          << seconds << "," << throughput << "\n";
      csv.flush();
    }
  }
  if (!a.synthetic && lead)
    std::printf("test accuracy %.2f%% after %lld epochs; total time %s; checkpoint %s, metrics %s\n", 100 * last.accuracy,
                (long long)a.epochs, nabla_example::clock_str(Progress::now() - t_start).c_str(), a.checkpoint.c_str(),
                a.csv.c_str());
  inference_steps();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
  try {
    return run(args);
  } catch (const nb::Error& e) {
    std::cerr << "resnet: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "resnet: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
