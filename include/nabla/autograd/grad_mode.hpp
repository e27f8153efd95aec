#pragma once
// Grad mode: a thread-local switch that decides whether ops record autograd history.
// NoGradGuard turns it off for a scope (inference, optimizer updates), as in LibTorch.

namespace nabla {
namespace autograd {

struct GradMode {
  static bool is_enabled() { return enabled_ref(); }
  static void set_enabled(bool on) { enabled_ref() = on; }

 private:
  static bool& enabled_ref() {
    thread_local bool enabled = true;
    return enabled;
  }
};

// Sets grad mode for a scope and restores the previous value on exit.
class AutoGradMode {
 public:
  explicit AutoGradMode(bool enabled) : prev_(GradMode::is_enabled()) { GradMode::set_enabled(enabled); }
  ~AutoGradMode() { GradMode::set_enabled(prev_); }
  AutoGradMode(const AutoGradMode&) = delete;
  AutoGradMode& operator=(const AutoGradMode&) = delete;

 private:
  bool prev_;
};

class NoGradGuard : public AutoGradMode {
 public:
  NoGradGuard() : AutoGradMode(false) {}
};

class EnableGradGuard : public AutoGradMode {
 public:
  EnableGradGuard() : AutoGradMode(true) {}
};

}  // namespace autograd

using autograd::AutoGradMode;
using autograd::EnableGradGuard;
using autograd::GradMode;
using autograd::NoGradGuard;

}  // namespace nabla
