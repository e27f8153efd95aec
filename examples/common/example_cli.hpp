#pragma once
// What the training examples (examples/mnist, examples/resnet, examples/gpt) share: option parsing with one-line
// usage errors, the progress bar (img/s and ETA; plain lines when stdout is not a terminal), and
// the h:mm:ss clock, and the test-set evaluation. Not part of the library.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <string>

#include <nabla/data.hpp>
#include <nabla/nabla.hpp>

namespace nabla_example {

// "4GiB", "512MiB", "100MB", "1.5G", "65536" -> bytes (KiB/MiB/GiB/TiB and K/M/G/T are powers of
// 1024, KB/MB/GB/TB powers of 1000, as memory is usually written); nullopt when unreadable.
inline std::optional<size_t> parse_bytes(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(v) || v < 0) return std::nullopt;
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 1;
  const char* units[] = {"k", "m", "g", "t"};
  if (!unit.empty() && unit != "b") {
    bool found = false;
    for (int i = 0; i < 4 && !found; ++i) {
      const std::string u = units[i];
      const double bin = std::pow(1024.0, i + 1), dec = std::pow(1000.0, i + 1);
      if (unit == u || unit == u + "ib") mult = bin, found = true;
      else if (unit == u + "b") mult = dec, found = true;
    }
    if (!found) return std::nullopt;
  }
  const double bytes = v * mult;
  if (bytes >= 1.8e19) return std::nullopt;
  return static_cast<size_t>(bytes);
}

// argv walked front to back; each accessor consumes the flag's value or exits with status 2 and
// a one-line message naming the flag, as a command-line tool does.
class Options {
 public:
  Options(const char* program, int argc, char** argv) : program_(program), argc_(argc), argv_(argv) {}

  bool next() { return ++i_ < argc_; }
  std::string flag() const { return argv_[i_]; }

  [[noreturn]] void error(const std::string& msg) const {
    std::cerr << program_ << ": " << msg << "\n(run " << program_ << " --help for the options)\n";
    std::exit(2);
  }
  std::string value() {
    if (i_ + 1 >= argc_) error(std::string(argv_[i_]) + " needs a value");
    return argv_[++i_];
  }
  int64_t integer(int64_t lo) {
    const std::string f = argv_[i_], v = value();
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end || x < lo) error(f + " expects an integer >= " + std::to_string(lo) + ", got \"" + v + "\"");
    return static_cast<int64_t>(x);
  }
  // A finite number > lo (or >= lo when inclusive).
  double real(double lo = 0.0, bool inclusive = false) {
    const std::string f = argv_[i_], v = value();
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !std::isfinite(x) || (inclusive ? !(x >= lo) : !(x > lo))) {
      char bound[32];
      std::snprintf(bound, sizeof bound, "%g", lo);
      error(f + " expects a number " + (inclusive ? ">= " : "> ") + bound + ", got \"" + v + "\"");
    }
    return x;
  }
  // A size such as 4GiB, 512MiB or 100MB (parse_bytes below), > 0.
  size_t bytes() {
    const std::string f = argv_[i_], v = value();
    const std::optional<size_t> b = parse_bytes(v);
    if (!b || *b == 0) error(f + " expects a size such as 4GiB, 512MiB or 100MB, got \"" + v + "\"");
    return *b;
  }
  std::string choice(std::initializer_list<const char*> ok) {
    const std::string f = argv_[i_], v = value();
    for (const char* o : ok)
      if (v == o) return v;
    std::string all;
    for (const char* o : ok) all += std::string(all.empty() ? "" : ", ") + o;
    error(f + " must be one of " + all + ", got \"" + v + "\"");
  }

 private:
  const char* program_;
  int argc_;
  char** argv_;
  int i_ = 0;
};

inline std::string bytes_str(size_t bytes) {
  char buf[64];
  if (bytes >= (size_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  else std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

inline std::string clock_str(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

// One line per epoch, redrawn in place on a terminal; on a pipe or file, a plain line every 10%.
class Progress {
 public:
  // label "epoch": "epoch 3/15 [...]"; an empty label leaves the "label i/n" part out. unit: what
  // update()'s count is counted in ("img/s", "tok/s").
  Progress(int64_t epoch, int64_t epochs, int64_t steps, int64_t first, bool tty, std::string label = "epoch",
           std::string unit = "img/s")
      : epoch_(epoch), epochs_(epochs), steps_(steps), first_(first), tty_(tty), start_(now()), label_(std::move(label)),
        unit_(std::move(unit)) {}

  // Whether update() would draw now (reading the loss back from a GPU is a synchronisation,
  // so the caller only does it when it is shown). step: 1-based, within the epoch.
  bool due(int64_t step) const {
    if (step == steps_ || step == first_ + 1) return true;
    return tty_ ? now() - start_ - drawn_ >= 0.1 : step * 10 / steps_ != shown_ * 10 / steps_;
  }

  // images: what was processed since the bar started (images, tokens), in the constructor's unit.
  void update(int64_t step, double loss, int64_t images) {
    const double t = now() - start_;
    const bool last = step == steps_;
    drawn_ = t, shown_ = step;
    const double rate = images / std::max(t, 1e-9), eta = (steps_ - step) * t / std::max<int64_t>(1, step - first_);
    char line[256];
    const int width = 24, filled = static_cast<int>(width * step / steps_);
    std::string bar = std::string(filled, '=') + (filled < width ? ">" : "") + std::string(width - std::min(width, filled + 1), ' ');
    char head[64] = "";
    if (!label_.empty()) std::snprintf(head, sizeof head, "%s %lld/%lld ", label_.c_str(), (long long)epoch_, (long long)epochs_);
    std::snprintf(line, sizeof line, "%s[%s] %lld/%lld  loss %.4f  %.0f %s  %s %s", head, bar.c_str(), (long long)step,
                  (long long)steps_, loss, rate, unit_.c_str(), last ? "took" : "ETA", clock_str(last ? t : eta).c_str());
    if (tty_) std::printf("\r%s\033[K%s", line, last ? "\n" : "");
    else std::printf("%s\n", line);
    std::fflush(stdout);
  }

  static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

 private:
  int64_t epoch_, epochs_, steps_, first_;
  bool tty_;
  double start_, drawn_ = -1;
  int64_t shown_ = 0;
  std::string label_, unit_;
};

// Mean cross entropy and accuracy of a classifier over a loader, in eval mode (train mode after).
struct Eval {
  double loss, accuracy;
};

inline Eval evaluate(nabla::nn::Module& model, nabla::data::DataLoader& loader) {
  nabla::NoGradGuard no_grad;
  model.eval();
  double loss = 0;
  int64_t correct = 0, seen = 0;
  for (nabla::data::Batch& b : loader) {
    nabla::Tensor logits = model.forward(b.data);
    nabla::CrossEntropyOptions sum;
    sum.reduction = nabla::kSum;
    loss += nabla::cross_entropy(logits, b.target, sum).item<double>();
    correct += nabla::eq(logits.argmax(1), b.target).sum().item<int64_t>();
    seen += b.target.size(0);
  }
  model.train();
  return {loss / static_cast<double>(seen), static_cast<double>(correct) / static_cast<double>(seen)};
}

}  // namespace nabla_example
