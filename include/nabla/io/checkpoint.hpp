#pragma once
// Model files and training checkpoints, both plain safetensors (readable from Python):
// nabla::save(module, path) / nabla::load(module, path) hold the state_dict under PyTorch's
// names; save_checkpoint adds "optimizer.*", "scheduler.*" and the step, written atomically.

#include <charconv>
#include <span>
#include <cstdint>
#include <string>

#include "../optim/lr_scheduler.hpp"
#include "safetensors.hpp"

namespace nabla {
namespace io {

// The module's state_dict as a safetensors file (replaced atomically).
inline void save(const nn::Module& module, const std::string& path, const Metadata& metadata = {}) {
  save_safetensors(path, module.state_dict(), metadata);
}

// Loads a file written by save() (or by Python's safetensors.torch.save_file(model.state_dict())).
inline nn::LoadStateDictResult load(nn::Module& module, const std::string& path, bool strict = true) {
  SafetensorsFile f = load_safetensors(path);
  try {
    return module.load_state_dict(f.tensors, strict);
  } catch (const Error& e) {
    throw IOError("nabla::io: " + path + ": " + e.what());
  }
}

inline constexpr const char* kCheckpointFormat = "nabla.checkpoint.v1";

// One file with the model ("model.<name>"), the optimizer ("optimizer.state.<i>.<name>",
// "optimizer.param_groups.<g>.<option>"), the scheduler ("scheduler.*") and the step (in the
// metadata). Written to path.tmp, fsynced, renamed over path: a crash leaves the old file.
inline void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* optimizer = nullptr,
                            const optim::LRScheduler* scheduler = nullptr, int64_t step = 0, Metadata metadata = {}) {
  nn::OrderedDict<Tensor> all;
  for (const auto& [k, t] : model.state_dict()) all.insert("model." + k, t);
  if (optimizer)
    for (const auto& [k, t] : optimizer->state_dict()) all.insert("optimizer." + k, t);
  if (scheduler)
    for (const auto& [k, t] : scheduler->state_dict()) all.insert("scheduler." + k, t);
  metadata["format"] = kCheckpointFormat;
  metadata["step"] = std::to_string(step);
  save_safetensors(path, all, metadata);
}

// Restores what save_checkpoint wrote into the given objects (each optional) and returns the
// step. The model is loaded strictly; a missing optimizer or scheduler section is an error
// when that object is given. metadata, when given, receives the file's metadata (what the
// caller passed to save_checkpoint, plus "format" and "step").
namespace detail {
// load_checkpoint's body, for a file already read (`path` names it in errors).
inline int64_t load_checkpoint_from(SafetensorsFile f, const std::string& path, nn::Module& model, optim::Optimizer* optimizer,
                                    optim::LRScheduler* scheduler, Metadata* metadata) {
  if (metadata) *metadata = f.metadata;
  auto it = f.metadata.find("format");
  if (it == f.metadata.end() || it->second != kCheckpointFormat)
    detail::io_fail(path, std::string("not a nabla checkpoint (metadata \"format\" is not \"") + kCheckpointFormat + "\")");
  // the step, before anything is loaded into the caller's objects: a whole number >= 0
  auto step_it = f.metadata.find("step");
  if (step_it == f.metadata.end()) detail::io_fail(path, "metadata has no \"step\"");
  const std::string& text = step_it->second;
  int64_t step = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), step);
  if (ec != std::errc() || end != text.data() + text.size() || step < 0)
    detail::io_fail(path, "metadata \"step\" is \"" + text.substr(0, 40) + "\", not a whole number >= 0");
  nn::OrderedDict<Tensor> sections[3];
  const char* prefixes[3] = {"model.", "optimizer.", "scheduler."};
  for (const auto& [k, t] : f.tensors) {
    bool placed = false;
    for (int s = 0; s < 3 && !placed; ++s) {
      std::string p = prefixes[s];
      if (k.rfind(p, 0) == 0) sections[s].insert(k.substr(p.size()), t), placed = true;
    }
    if (!placed) detail::io_fail(path, "entry \"" + k + "\" belongs to no checkpoint section");
  }
  const char* section = "model";  // named in an error: the entry is "<section>.<key>" in the file
  try {
    model.load_state_dict(sections[0], true);
    section = "optimizer";
    if (optimizer) {
      if (sections[1].empty()) detail::io_fail(path, "the checkpoint has no optimizer state");
      optimizer->load_state_dict(sections[1]);
    }
    section = "scheduler";
    if (scheduler) {
      if (sections[2].empty()) detail::io_fail(path, "the checkpoint has no scheduler state");
      scheduler->load_state_dict(sections[2]);
    }
  } catch (const IOError&) {
    throw;
  } catch (const Error& e) {
    detail::io_fail(path, std::string("the ") + section + " entries (\"" + section + ".*\"): " + e.what());
  }
  return step;
}
}  // namespace detail

inline int64_t load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* optimizer = nullptr,
                               optim::LRScheduler* scheduler = nullptr, Metadata* metadata = nullptr) {
  return detail::load_checkpoint_from(load_safetensors(path), path, model, optimizer, scheduler, metadata);
}
// The same from the bytes of a checkpoint file already in memory; `name` stands for the file in
// error messages.
inline int64_t load_checkpoint(std::span<const uint8_t> bytes, nn::Module& model, optim::Optimizer* optimizer = nullptr,
                               optim::LRScheduler* scheduler = nullptr, Metadata* metadata = nullptr,
                               const std::string& name = "<memory>") {
  return detail::load_checkpoint_from(load_safetensors(bytes, name), name, model, optimizer, scheduler, metadata);
}

}  // namespace io

using io::load;
using io::save;

}  // namespace nabla
