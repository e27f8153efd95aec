#pragma once
// Fused kernels bound to their op (MLX binds eval_cpu / eval_gpu to its primitive the same way).
//
// An op with fused kernels declares, in its own header, a struct of kernel slots and one
// KernelTable of them:
//
//   struct Conv2dKernels { Conv2dForwardFn forward = nullptr; ... };
//   inline KernelTable<Conv2dKernels>& conv2d_kernels() { static KernelTable<Conv2dKernels> t("conv2d"); return t; }
//
// The table has one entry per device type. The device's kernel file fills it when the program
// starts (backend/cpu/<op>.hpp for the CPU, kernels/<op>.cuh for CUDA), naming the dtypes its
// kernels take:
//
//   NABLA_FILL_KERNELS(conv2d_cpu, conv2d_kernels(), DeviceType::CPU, (DTypeSet{kFloat32, kFloat64}),
//                      (Conv2dKernels{&conv2d_forward_cpu, ...}));
//
// The op asks `table.find(device, dtype)` once, in the one place where it decides eligibility,
// and runs the composite when it gets nullptr: no kernel for that device or dtype, or fused
// kernels switched off on this thread (FusedKernelsGuard). A kernel may still decline a case its
// library cannot take (cuDNN's int limits, say) by returning false; the op then runs the
// composite too. So the composite stays the reference, the fallback and what double backward
// differentiates, and the parity table checks fused against composite on every device.

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

#include "../core/device.hpp"
#include "../core/dtype.hpp"

namespace nabla {

// A set of dtypes, as a bit mask.
class DTypeSet {
 public:
  constexpr DTypeSet() = default;
  constexpr DTypeSet(std::initializer_list<DType> ts) {
    for (DType t : ts) bits_ |= bit(t);
  }
  constexpr bool contains(DType t) const { return (bits_ & bit(t)) != 0; }
  constexpr bool empty() const { return bits_ == 0; }

 private:
  static constexpr uint32_t bit(DType t) { return uint32_t{1} << static_cast<unsigned>(t); }
  uint32_t bits_ = 0;
};

namespace detail {
inline bool& fused_kernels_enabled_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

// Whether ops on this thread may run fused kernels (default true).
inline bool fused_kernels_enabled() { return detail::fused_kernels_enabled_flag(); }

// Switches fused kernels on or off for this thread while it lives: with `false` every op runs its
// composite, which is how the tests and benchmarks compare the two.
class FusedKernelsGuard {
 public:
  explicit FusedKernelsGuard(bool enabled) : previous_(fused_kernels_enabled()) {
    detail::fused_kernels_enabled_flag() = enabled;
  }
  ~FusedKernelsGuard() { detail::fused_kernels_enabled_flag() = previous_; }
  FusedKernelsGuard(const FusedKernelsGuard&) = delete;
  FusedKernelsGuard& operator=(const FusedKernelsGuard&) = delete;

 private:
  bool previous_;
};

// What every table shares: its op's name, the dtypes each device's kernels take, and how often
// each device's kernels ran (for tests and profiling: a fused kernel that silently stops being
// taken shows up as a count that stays at zero).
class KernelTableBase {
 public:
  static constexpr int kDeviceTypes = 2;  // DeviceType::CPU, DeviceType::CUDA

  explicit KernelTableBase(const char* op) : op_(op) { registry_add(this); }
  KernelTableBase(const KernelTableBase&) = delete;
  KernelTableBase& operator=(const KernelTableBase&) = delete;

  const char* op() const { return op_; }
  bool has(DeviceType type) const { return !dtypes_[index(type)].empty(); }
  bool has(DeviceType type, DType dt) const { return dtypes_[index(type)].contains(dt); }
  // Calls of `type`'s kernels that ran (returned true) since the program started.
  uint64_t hits(DeviceType type) const { return hits_[index(type)].load(std::memory_order_relaxed); }
  // The op calls this after one of its kernels ran.
  void count(Device device) { hits_[index(device.type)].fetch_add(1, std::memory_order_relaxed); }

  // Every table in the program, in the order they were first used.
  static std::vector<KernelTableBase*> all() {
    std::lock_guard<std::mutex> lock(registry_mutex());
    return registry();
  }
  // The table of `op`, or nullptr.
  static KernelTableBase* find_table(const std::string& op) {
    for (KernelTableBase* t : all())
      if (op == t->op()) return t;
    return nullptr;
  }

 protected:
  static int index(DeviceType type) { return type == DeviceType::CPU ? 0 : 1; }
  DTypeSet dtypes_[kDeviceTypes];

 private:
  static std::vector<KernelTableBase*>& registry() {
    static std::vector<KernelTableBase*> tables;
    return tables;
  }
  static std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
  }
  static void registry_add(KernelTableBase* t) {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().push_back(t);
  }

  const char* op_;
  std::atomic<uint64_t> hits_[kDeviceTypes] = {};
};

template <class Slots>
class KernelTable : public KernelTableBase {
 public:
  using KernelTableBase::KernelTableBase;

  // The kernels for `device` and `dtype`, or nullptr: run the composite.
  const Slots* find(Device device, DType dtype) const {
    if (!fused_kernels_enabled() || !has(device.type, dtype)) return nullptr;
    return &slots_[index(device.type)];
  }
  // Fills `type`'s entry (the device's kernel file does, once, at start-up).
  bool fill(DeviceType type, DTypeSet dtypes, const Slots& slots) {
    slots_[index(type)] = slots;
    dtypes_[index(type)] = dtypes;
    return true;
  }

 private:
  Slots slots_[kDeviceTypes] = {};
};

}  // namespace nabla

// Fills a table's entry for one device type when the program starts. `name` only has to be
// unique among the fillers (e.g. conv2d_cpu).
#define NABLA_FILL_KERNELS(name, table, device_type, dtypes, slots) \
  inline const bool nabla_kernels_filled_##name = (table).fill(device_type, dtypes, slots)
