#pragma once
// Model files and training checkpoints, both plain safetensors (readable from Python):
// nabla::save(module, path) / nabla::load(module, path) hold the state_dict under PyTorch's
// names; save_checkpoint adds "optimizer.*", "scheduler.*" and the step, written atomically.

#include <charconv>
#include <span>
#include <cstdint>
#include <string>

#include "../amp/grad_scaler.hpp"
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

// LibTorch's torch::save / torch::load for the other things it saves, each one safetensors file
// (written atomically), tagged in its metadata with what it holds so that loading a file into
// the wrong kind of object is an error (a file without the tag, e.g. from Python, is read by
// its entries):
//   save(tensor, path)     one entry, "tensor"
//   save(tensors, path)    a std::vector<Tensor>: entries "0", "1", ... in order
//   save(optimizer, path)  its state_dict ("state.<i>.<name>", "param_groups.<g>.<option>")
// and a NABLA_MODULE holder as its module. Python reads them with safetensors.torch.load_file.
inline constexpr const char* kSavedKindKey = "nabla.saved";
namespace detail {
inline SafetensorsFile load_kind(const std::string& path, const char* kind) {
  SafetensorsFile f = load_safetensors(path);
  auto it = f.metadata.find(kSavedKindKey);
  if (it != f.metadata.end() && it->second != kind)
    io_fail(path, std::string("expected a file of ") + kind + " (as nabla::save writes one), but its metadata \"" +
                      kSavedKindKey + "\" says \"" + it->second.substr(0, 40) + "\"");
  return f;
}
}  // namespace detail

inline void save(const Tensor& tensor, const std::string& path) {
  NABLA_CHECK(tensor.defined(), ValueError, "nabla::save: the tensor to save to ", path, " is undefined");
  nn::OrderedDict<Tensor> d;
  d.insert("tensor", tensor.detach());
  save_safetensors(path, d, Metadata{{kSavedKindKey, "tensor"}});
}
inline void save(const std::vector<Tensor>& tensors, const std::string& path) {
  nn::OrderedDict<Tensor> d;
  for (size_t i = 0; i < tensors.size(); ++i) {
    NABLA_CHECK(tensors[i].defined(), ValueError, "nabla::save: tensor ", i, " of the list to save to ", path,
                " is undefined");
    d.insert(std::to_string(i), tensors[i].detach());
  }
  save_safetensors(path, d, Metadata{{kSavedKindKey, "tensors"}});
}
inline void save(const optim::Optimizer& optimizer, const std::string& path) {
  save_safetensors(path, optimizer.state_dict(), Metadata{{kSavedKindKey, "optimizer"}});
}

// The tensor (on the CPU, as saved) replaces `tensor`.
inline void load(Tensor& tensor, const std::string& path) {
  SafetensorsFile f = detail::load_kind(path, "tensor");
  const Tensor* t = f.tensors.find("tensor");
  if (!t || f.tensors.size() != 1) detail::io_fail(path, "a saved tensor file holds exactly one entry, \"tensor\"");
  tensor = *t;
}
inline void load(std::vector<Tensor>& tensors, const std::string& path) {
  SafetensorsFile f = detail::load_kind(path, "tensors");
  std::vector<Tensor> out;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const Tensor* t = f.tensors.find(std::to_string(i));
    if (!t) detail::io_fail(path, "a saved tensor list has entries \"0\" .. \"" + std::to_string(f.tensors.size() - 1) +
                                      "\"; \"" + std::to_string(i) + "\" is missing");
    out.push_back(*t);
  }
  tensors = std::move(out);
}
// The optimizer must be built over the same parameters (the state is matched by position).
inline void load(optim::Optimizer& optimizer, const std::string& path) {
  SafetensorsFile f = detail::load_kind(path, "optimizer");
  try {
    optimizer.load_state_dict(f.tensors);
  } catch (const IOError&) {
    throw;
  } catch (const Error& e) {
    detail::io_fail(path, e.what());
  }
}
template <nn::ModuleType M>
void save(const nn::ModuleHolder<M>& holder, const std::string& path, const Metadata& metadata = {}) {
  save(static_cast<const nn::Module&>(*holder), path, metadata);
}
template <nn::ModuleType M>
nn::LoadStateDictResult load(nn::ModuleHolder<M>& holder, const std::string& path, bool strict = true) {
  return load(static_cast<nn::Module&>(*holder), path, strict);
}

inline constexpr const char* kCheckpointFormat = "nabla.checkpoint.v1";

// One file with the model ("model.<name>"), the optimizer ("optimizer.state.<i>.<name>",
// "optimizer.param_groups.<g>.<option>"), the scheduler ("scheduler.*"), the GradScaler of mixed-
// precision training ("scaler.*": scale, growth tracker, factors) and the step (in the
// metadata). Written to path.tmp, fsynced, renamed over path: a crash leaves the old file.
inline void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* optimizer = nullptr,
                            const optim::LRScheduler* scheduler = nullptr, int64_t step = 0, Metadata metadata = {},
                            const amp::GradScaler* scaler = nullptr) {
  nn::OrderedDict<Tensor> all;
  for (const auto& [k, t] : model.state_dict()) all.insert("model." + k, t);
  if (optimizer)
    for (const auto& [k, t] : optimizer->state_dict()) all.insert("optimizer." + k, t);
  if (scheduler)
    for (const auto& [k, t] : scheduler->state_dict()) all.insert("scheduler." + k, t);
  if (scaler)
    for (const auto& [k, t] : scaler->state_dict()) all.insert("scaler." + k, t);
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
                                    optim::LRScheduler* scheduler, Metadata* metadata, amp::GradScaler* scaler) {
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
  nn::OrderedDict<Tensor> sections[4];
  const char* prefixes[4] = {"model.", "optimizer.", "scheduler.", "scaler."};
  for (const auto& [k, t] : f.tensors) {
    bool placed = false;
    for (int s = 0; s < 4 && !placed; ++s) {
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
    section = "scaler";
    if (scaler && scaler->is_enabled()) {
      if (sections[3].empty()) detail::io_fail(path, "the checkpoint has no GradScaler state");
      scaler->load_state_dict(sections[3]);
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
                               optim::LRScheduler* scheduler = nullptr, Metadata* metadata = nullptr,
                               amp::GradScaler* scaler = nullptr) {
  return detail::load_checkpoint_from(load_safetensors(path), path, model, optimizer, scheduler, metadata, scaler);
}
// The same from the bytes of a checkpoint file already in memory; `name` stands for the file in
// error messages.
inline int64_t load_checkpoint(std::span<const uint8_t> bytes, nn::Module& model, optim::Optimizer* optimizer = nullptr,
                               optim::LRScheduler* scheduler = nullptr, Metadata* metadata = nullptr,
                               const std::string& name = "<memory>", amp::GradScaler* scaler = nullptr) {
  return detail::load_checkpoint_from(load_safetensors(bytes, name), name, model, optimizer, scheduler, metadata, scaler);
}

}  // namespace io

using io::load;
using io::save;

}  // namespace nabla
