// libFuzzer target: io::load_checkpoint into a small model with Adam and StepLR (which runs the
// optimizer's and the scheduler's load_state_dict on whatever the file holds). Invariants: a
// refusal is a nabla::IOError; after a successful load, a training step and a scheduler step
// work and the weights stay finite when the loaded state is finite.
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nabla;
  static const std::string path = nabla_fuzz::scratch_file("checkpoint");
  nabla_fuzz::write_file(path, data, size);
  nn::Sequential net(nn::Linear(3, 4), nn::ReLU(), nn::Linear(4, 2));
  optim::Adam opt(net.parameters(), optim::AdamOptions(0.01));
  optim::StepLR sched(opt, 2, 0.5);
  int64_t step = 0;
  try {
    step = io::load_checkpoint(path, net, &opt, &sched);
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
