#pragma once
// nabla's exception hierarchy. Every error a user can cause by bad input is one of these,
// with a message naming the op, the shapes, dtypes and devices, and what was expected.

#include <sstream>
#include <stdexcept>
#include <string>

namespace nabla {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error { public: using Error::Error; };
class DTypeError : public Error { public: using Error::Error; };
class DeviceError : public Error { public: using Error::Error; };
class IndexError : public Error { public: using Error::Error; };
class ValueError : public Error { public: using Error::Error; };       // bad argument value
class AutogradError : public Error { public: using Error::Error; };
class OutOfMemory : public Error { public: using Error::Error; };
class IOError : public Error { public: using Error::Error; };          // files: missing, unwritable, corrupt
class DistributedError : public Error { public: using Error::Error; }; // a collective failed: peer died, timeout, ranks disagree

namespace detail {
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// LibTorch's torch::str / c10::str: the arguments streamed one after another into a string
// (anything with an operator<<: numbers, strings, tensors, shapes, devices).
template <class... Args>
std::string str(const Args&... args) {
  return detail::cat(args...);
}

}  // namespace nabla

// NABLA_CHECK(cond, ErrorType, message parts...): throw ErrorType("nabla::" + parts) unless cond.
#define NABLA_CHECK(cond, ErrorType, ...)                                       \
  do {                                                                          \
    if (!(cond)) [[unlikely]]                                                   \
      throw ErrorType(::nabla::detail::cat("nabla::", __VA_ARGS__));            \
  } while (0)

// NABLA_ASSERT(cond, message parts...): LibTorch's TORCH_CHECK / AT_ASSERT for user code: throws
// nabla::Error("assertion `cond` failed: " + parts, with file and line) unless cond.
#define NABLA_ASSERT(cond, ...)                                                                  \
  do {                                                                                           \
    if (!(cond)) [[unlikely]]                                                                    \
      throw ::nabla::Error(::nabla::detail::cat("nabla: assertion `", #cond, "` failed at ", __FILE__, \
                                                ":", __LINE__ __VA_OPT__(, ": ", ) __VA_ARGS__)); \
  } while (0)
