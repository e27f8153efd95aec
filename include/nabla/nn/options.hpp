#pragma once
// LibTorch-style options: NABLA_ARG(T, name) gives an options struct a chainable setter
// `name(value)` and a getter `name()`, as TORCH_ARG does, so `nn::Conv2dOptions(3, 8, 3).stride(2)`
// reads the same in both libraries.

#include <utility>

#define NABLA_ARG(T, name)                            \
 public:                                              \
  auto& name(const T& new_##name) {                   \
    this->name##_ = new_##name;                       \
    return *this;                                     \
  }                                                   \
  auto& name(T&& new_##name) {                        \
    this->name##_ = std::move(new_##name);            \
    return *this;                                     \
  }                                                   \
  const T& name() const noexcept { return this->name##_; } \
  T& name() noexcept { return this->name##_; }        \
                                                      \
 private:                                             \
  T name##_
