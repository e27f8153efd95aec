#pragma once
// The examples' inference steps after training (mnist and resnet share them):
//   --export PATH   the trained model as ONNX (nabla::onnx::export_model, dynamic batch)
//   --prune X       the model pruned two ways, each measured against the float32 model:
//                   unstructured (global L1 over every Conv2d/Linear weight, X of them zeroed:
//                   same shapes, same speed) and structured (X of the output channels of every
//                   Conv2d/Linear but the last, by L2 norm, then removed: smaller layers)
//   --quantize int8 [--calibration-batches N]
//                   static int8 post-training quantization (nabla::quantization::quantize:
//                   observers over N training batches, histogram by default), measured against
//                   float32 on the CPU; with --export also written as a QDQ ONNX file
//                   (PATH with .int8 before the extension)
// Each variant prints a row: test accuracy, latency of one forward at batch 1 and 64 (median
// of repeated runs, after a warm-up), parameters, their non-zero count and the weights' bytes.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nabla/io/onnx.hpp>
#include <nabla/nabla.hpp>
#include <nabla/nn/prune.hpp>
#include <nabla/quantization/quantize.hpp>

#include "example_cli.hpp"

namespace nabla_example {

struct InferenceOptions {
  std::string export_path;
  double prune = 0;
  std::string quantize;  // "" or "int8"
  int64_t calibration_batches = 10;
  bool any() const { return !export_path.empty() || prune > 0 || !quantize.empty(); }
};

struct InferenceRow {
  std::string variant;
  double accuracy = 0, ms1 = 0, ms64 = 0;
  int64_t params = 0, nonzero = 0, bytes = 0;
};

// Median milliseconds of one forward of `x` (no grad, eval).
inline double latency_ms(nabla::nn::Module& m, const nabla::Tensor& x, int runs) {
  nabla::NoGradGuard ng;
  m.eval();
  for (int i = 0; i < 3; ++i) m.forward(x).sum().item<double>();  // warm-up (and the device queue)
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(x).sum().item<double>();  // item(): waits for the device
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
  return ms[ms.size() / 2];
}

inline void count_parameters(nabla::nn::Module& m, InferenceRow& r) {
  for (const auto& p : m.parameters()) {
    r.params += p.numel();
    r.nonzero += (p != 0).sum().item<int64_t>();
    r.bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
}

inline InferenceRow measure(const std::string& variant, nabla::nn::Module& m, nabla::data::DataLoader& test,
                            const nabla::Tensor& sample64) {
  InferenceRow r;
  r.variant = variant;
  r.accuracy = evaluate(m, test).accuracy;
  r.ms1 = latency_ms(m, sample64.narrow(0, 0, 1), 50);
  r.ms64 = latency_ms(m, sample64, 20);
  count_parameters(m, r);
  return r;
}

// The int8 row: the float model's parameters counted, its quantized weights at one byte each.
inline InferenceRow measure_int8(const std::string& variant, nabla::quantization::QuantizedModel& q,
                                 nabla::data::DataLoader& test, const nabla::Tensor& sample64) {
  InferenceRow r;
  r.variant = variant;
  r.accuracy = evaluate(q, test).accuracy;
  r.ms1 = latency_ms(q, sample64.narrow(0, 0, 1), 50);
  r.ms64 = latency_ms(q, sample64, 20);
  count_parameters(*q.float_model(), r);
  r.bytes -= 3 * static_cast<int64_t>(q.int8_weight_bytes());
  return r;
}

// The Conv2d/Linear layers of a model, with their names.
inline std::vector<std::pair<std::string, std::shared_ptr<nabla::nn::Module>>> prunable(nabla::nn::Module& model) {
  std::vector<std::pair<std::string, std::shared_ptr<nabla::nn::Module>>> out;
  for (const auto& [name, m] : model.named_modules())
    if (m->type_name() == "Conv2d" || m->type_name() == "Linear") out.emplace_back(name, m);
  return out;
}

inline void print_rows(const std::vector<InferenceRow>& rows) {
  std::printf("\n%-18s %9s %12s %12s %12s %12s %10s\n", "variant", "accuracy", "batch 1 ms", "batch 64 ms", "parameters",
              "non-zero", "weight MB");
  for (const auto& r : rows)
    std::printf("%-18s %8.2f%% %12.3f %12.3f %12lld %12lld %10.3f\n", r.variant.c_str(), 100 * r.accuracy, r.ms1, r.ms64,
                (long long)r.params, (long long)r.nonzero, static_cast<double>(r.bytes) / 1e6);
}

// The path with ".int8" before its extension: model.onnx -> model.int8.onnx.
inline std::string int8_path(const std::string& path) {
  const auto dot = path.find_last_of('.'), slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return path + ".int8";
  return path.substr(0, dot) + ".int8" + path.substr(dot);
}

// Runs the steps asked for on the trained `model` (a Sequential for the structured variant;
// other models skip it, saying so). `sample` holds test inputs (up to 64 are timed) on the
// model's device; --prune and --quantize need the test loader, --quantize also the training
// loader (its first batches calibrate). int8 runs on the CPU: with --quantize a model on a GPU
// is moved to the CPU first, and every row is then measured there.
inline void run_inference_steps(const std::shared_ptr<nabla::nn::Module>& model, nabla::data::DataLoader* test_loader,
                                nabla::Tensor sample, const InferenceOptions& o, const char* program,
                                nabla::data::DataLoader* calibration_loader = nullptr) {
  namespace prune = nabla::nn::utils::prune;
  if (!o.export_path.empty()) {
    nabla::onnx::export_model(model, {sample.narrow(0, 0, 1)}, o.export_path);
    std::printf("wrote %s (ONNX opset 17, dynamic batch; input \"input\", output \"output\")\n", o.export_path.c_str());
  }
  if (o.prune <= 0 && o.quantize.empty()) return;
  NABLA_CHECK(test_loader != nullptr, nabla::ValueError, program, ": --prune and --quantize need the test set to measure accuracy");
  nabla::data::DataLoader& test = *test_loader;
  if (!o.quantize.empty() && !sample.device().is_cpu()) {
    std::printf("%s: int8 runs on the CPU; the model moves there, and every row below is measured on the CPU\n", program);
    model->to(nabla::Device::cpu());
    sample = sample.to(nabla::Device::cpu());
  }
  const nabla::Tensor x64 = sample.narrow(0, 0, std::min<int64_t>(64, sample.size(0)));
  std::vector<InferenceRow> rows;
  rows.push_back(measure("float32", *model, test, x64));
  if (!o.quantize.empty()) {
    NABLA_CHECK(calibration_loader != nullptr, nabla::ValueError, program, ": --quantize needs the training set to calibrate");
    std::vector<nabla::Tensor> calibration;
    for (nabla::data::Batch& b : *calibration_loader) {
      if (static_cast<int64_t>(calibration.size()) >= o.calibration_batches) break;
      calibration.push_back(b.data.to(nabla::Device::cpu()));
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto q = nabla::quantization::quantize(model, calibration);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("int8: %zu layers quantized, calibrated on %zu batches in %.2f s (histogram observer)\n",
                q->quantized_layers(), calibration.size(), s);
    rows.push_back(measure_int8("int8 static", *q, test, x64));
    if (!o.export_path.empty()) {
      const std::string path = int8_path(o.export_path);
      nabla::onnx::export_model(q, {sample.narrow(0, 0, 1)}, path);
      std::printf("wrote %s (QDQ: QuantizeLinear/DequantizeLinear around each int8 layer, for trtexec --int8)\n",
                  path.c_str());
    }
  }
  if (o.prune <= 0) return print_rows(rows);
  // unstructured: global L1 over every Conv2d/Linear weight, made permanent (remove) in a copy
  nabla::nn::StateDict state;  // a copy (state_dict() shares the parameters' memory)
  for (const auto& [name, t] : model->state_dict()) state.insert(name, t.clone());
  {
    std::vector<std::pair<std::shared_ptr<nabla::nn::Module>, std::string>> weights;
    for (const auto& [name, m] : prunable(*model)) weights.emplace_back(m, "weight");
    prune::global_unstructured(weights, prune::L1Unstructured, o.prune);
    for (const auto& [m, name] : weights) prune::remove(*m, name);
    rows.push_back(measure(nabla::detail::cat("unstructured ", o.prune * 100, "%"), *model, test, x64));
    model->load_state_dict(state);  // back to the trained weights
  }
  if (auto seq = std::dynamic_pointer_cast<nabla::nn::Sequential>(model)) {
    auto layers = prunable(*seq);
    for (size_t i = 0; i + 1 < layers.size(); ++i) prune::ln_structured(*layers[i].second, "weight", o.prune, 2, 0);
    auto small = prune::remove_channels(*seq);
    for (size_t i = 0; i + 1 < layers.size(); ++i) prune::remove(*layers[i].second, "weight");
    model->load_state_dict(state);
    rows.push_back(measure(nabla::detail::cat("structured ", o.prune * 100, "%"), *small, test, x64));
  } else {
    std::printf("%s: structured pruning (remove_channels) takes a Sequential; this model is a %s, so that row is skipped\n",
                program, model->type_name().c_str());
  }
  print_rows(rows);
}

}  // namespace nabla_example
