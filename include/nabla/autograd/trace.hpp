#pragma once
// Tracing: while a Tracer is installed on this thread, the ops report what they execute (op,
// input and output tensors, attributes) as Records. The ONNX exporter (io/onnx.hpp) installs
// one around a module's forward and turns the records into a graph.
//
// An op reports in one of two ways. A primitive (an elementwise kernel, a view) calls
// trace::record after computing its output. A composite op with a meaning of its own (conv2d,
// layer_norm, linear, attention) opens a trace::Scope first: while it lives, the ops it is built
// from do not report, and the scope records the composite as one op. An op that reports nothing
// leaves a tensor the tracer has never seen; the exporter refuses such a tensor when it depends
// on the traced inputs (it carries a grad_fn during tracing) instead of freezing it as a constant.
// With no tracer installed, each op pays one thread-local load.

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../core/tensor.hpp"

namespace nabla {
namespace trace {

using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;

struct Attr {
  std::string name;
  AttrValue value;
};

struct Record {
  std::string op;               // the op's name in the tracer's vocabulary ("Conv", "Add", "Reshape", ...)
  std::vector<Tensor> inputs;   // undefined = an optional input left out (a conv without bias)
  std::vector<Tensor> outputs;
  std::vector<Attr> attrs;

  const Attr* find(const std::string& name) const {
    for (const auto& a : attrs)
      if (a.name == name) return &a;
    return nullptr;
  }
  bool has(const std::string& name) const { return find(name) != nullptr; }
  int64_t i(const std::string& name) const { return get<int64_t>(name); }
  double f(const std::string& name) const { return get<double>(name); }
  const std::string& s(const std::string& name) const { return get<std::string>(name); }
  const std::vector<int64_t>& ints(const std::string& name) const { return get<std::vector<int64_t>>(name); }

 private:
  template <class T>
  const T& get(const std::string& name) const {
    const Attr* a = find(name);
    NABLA_CHECK(a && std::holds_alternative<T>(a->value), ValueError, "trace: the record of ", op,
                " has no attribute '", name, "' of the expected type");
    return std::get<T>(a->value);
  }
};

class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void record(Record r) = 0;
};

namespace detail {
struct State {
  Tracer* tracer = nullptr;
  int depth = 0;  // open scopes (and records in progress): nested ops do not report
};
inline State& state() {
  thread_local State s;
  return s;
}
}  // namespace detail

// True when an op finishing now should report itself.
inline bool active() {
  const detail::State& s = detail::state();
  return s.tracer != nullptr && s.depth == 0;
}

// Reports a primitive (no-op unless active()). The tracer runs with reporting off, so what it
// does with the tensors is not traced itself.
inline void record(std::string op, std::vector<Tensor> inputs, std::vector<Tensor> outputs, std::vector<Attr> attrs = {}) {
  detail::State& s = detail::state();
  if (s.tracer == nullptr || s.depth != 0) return;
  ++s.depth;
  struct Restore {
    detail::State& s;
    ~Restore() { --s.depth; }
  } restore{s};
  s.tracer->record(Record{std::move(op), std::move(inputs), std::move(outputs), std::move(attrs)});
}

// Opened at the top of a composite op: the ops inside it do not report; record() reports the
// composite once its output exists.
class Scope {
 public:
  Scope() : on_(active()) {
    if (on_) ++detail::state().depth;
  }
  ~Scope() {
    if (on_) --detail::state().depth;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  explicit operator bool() const { return on_; }
  void record(std::string op, std::vector<Tensor> inputs, std::vector<Tensor> outputs, std::vector<Attr> attrs = {}) {
    if (!on_) return;
    detail::state().tracer->record(Record{std::move(op), std::move(inputs), std::move(outputs), std::move(attrs)});
  }

 private:
  bool on_;
};

// Installs a tracer on this thread for its lifetime (the previous one, if any, comes back after).
class TracerGuard {
 public:
  explicit TracerGuard(Tracer& t) : prev_(detail::state()) { detail::state() = detail::State{&t, 0}; }
  ~TracerGuard() { detail::state() = prev_; }
  TracerGuard(const TracerGuard&) = delete;
  TracerGuard& operator=(const TracerGuard&) = delete;

 private:
  detail::State prev_;
};

}  // namespace trace
}  // namespace nabla
