// libFuzzer target: io::load_checkpoint into a small model with Adam and StepLR (which runs the
// optimizer's and the scheduler's load_state_dict on whatever the file holds). Inputs whose size
// is a multiple of 16 go through a scratch file, the others are read from memory (the same
// reader behind both). Invariants: a refusal is a nabla::IOError; after a successful load, a
// training step and a scheduler step work.
#include "fuzz_util.hpp"

#include <span>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  static const std::string path = nabla_fuzz::scratch_file("checkpoint");
  nn::Sequential net(nn::Linear(3, 4), nn::ReLU(), nn::Linear(4, 2));
  optim::Adam opt(net.parameters(), optim::AdamOptions(0.01));
  optim::StepLR sched(opt, 2, 0.5);
  int64_t step = 0;
  try {
    if (size % 16 == 0) {
      nabla_fuzz::write_file(path, data, size);
      step = io::load_checkpoint(path, net, &opt, &sched);
    } else {
      step = io::load_checkpoint(std::span<const uint8_t>(data, size), net, &opt, &sched);
    }
  } catch (const IOError&) {
    return 0;
  }
  NABLA_FUZZ_CHECK(step >= 0);
  opt.zero_grad();
  net.forward(ones({2, 3})).sum().backward();
  opt.step();
  sched.step();
  return 0;
}
