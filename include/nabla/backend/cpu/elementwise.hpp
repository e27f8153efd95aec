#pragma once
// CPU elementwise kernels: unary, binary, where, copy (with dtype conversion), fill, arange,
// random. Each is one typed loop over the strided iteration of loops.hpp, with a flat fast
// path for the contiguous and scalar-operand cases.

#include <cstring>

#include "../../core/random.hpp"
#include "../functors.hpp"
#include "loops.hpp"

namespace nabla {
namespace cpu {

template <class T>
inline constexpr int64_t kSize = static_cast<int64_t>(sizeof(T));

template <class T, class F>
void unary_loop(const Tensor& out, const Tensor& in, F f) {
  using C = compute_t<T>;
  auto L = make_loop<2>({&out, &in}, out.sizes());
  run<2>(L, [f](char* const* p, const int64_t* s, int64_t n) {
    if (s[0] == kSize<T> && s[1] == kSize<T>) {
      T* o = reinterpret_cast<T*>(p[0]);
      const T* a = reinterpret_cast<const T*>(p[1]);
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(f(static_cast<C>(a[i])));
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<T*>(p[0] + i * s[0]) =
            static_cast<T>(f(static_cast<C>(*reinterpret_cast<const T*>(p[1] + i * s[1]))));
    }
  });
}

// Out is T, or bool for comparison functors.
template <class T, class Out, class F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  using C = compute_t<T>;
  auto L = make_loop<3>({&out, &a, &b}, out.sizes());
  run<3>(L, [f](char* const* p, const int64_t* s, int64_t n) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    const T* x = reinterpret_cast<const T*>(p[1]);
    const T* y = reinterpret_cast<const T*>(p[2]);
    if (s[0] == kSize<Out> && s[1] == kSize<T> && s[2] == kSize<T>) {
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(f(static_cast<C>(x[i]), static_cast<C>(y[i])));
    } else if (s[0] == kSize<Out> && s[1] == kSize<T> && s[2] == 0) {
      const C yv = static_cast<C>(*y);
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(f(static_cast<C>(x[i]), yv));
    } else if (s[0] == kSize<Out> && s[1] == 0 && s[2] == kSize<T>) {
      const C xv = static_cast<C>(*x);
      for (int64_t i = 0; i < n; ++i) o[i] = static_cast<Out>(f(xv, static_cast<C>(y[i])));
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<Out*>(p[0] + i * s[0]) =
            static_cast<Out>(f(static_cast<C>(*reinterpret_cast<const T*>(p[1] + i * s[1])),
                               static_cast<C>(*reinterpret_cast<const T*>(p[2] + i * s[2]))));
    }
  });
}

template <class T>
void where_loop(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  auto L = make_loop<4>({&out, &cond, &a, &b}, out.sizes());
  run<4>(L, [](char* const* p, const int64_t* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      bool c = *reinterpret_cast<const bool*>(p[1] + i * s[1]);
      *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>(c ? p[2] + i * s[2] : p[3] + i * s[3]);
    }
  });
}

using fn::convert;  // backend/functors.hpp

template <class D, class S>
void copy_loop(const Tensor& dst, const Tensor& src) {
  auto L = make_loop<2>({&dst, &src}, dst.sizes());
  run<2>(L, [](char* const* p, const int64_t* s, int64_t n) {
    if (s[0] == kSize<D> && s[1] == kSize<S>) {
      D* o = reinterpret_cast<D*>(p[0]);
      const S* a = reinterpret_cast<const S*>(p[1]);
      if constexpr (std::is_same_v<D, S>) std::memcpy(o, a, static_cast<size_t>(n) * sizeof(D));
      else for (int64_t i = 0; i < n; ++i) o[i] = convert<D>(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<D*>(p[0] + i * s[0]) = convert<D>(*reinterpret_cast<const S*>(p[1] + i * s[1]));
    }
  });
}

inline void copy_kernel(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  dispatch_all(dst.dtype(), "copy_", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), "copy_", [&](auto stag) { copy_loop<D, typename decltype(stag)::type>(dst, src); });
  });
}

inline void fill_kernel(const Tensor& dst, const Scalar& value) {
  dispatch_all(dst.dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = fn::scalar_as<T>(value);
    auto L = make_loop<1>({&dst}, dst.sizes());
    run<1>(L, [v](char* const* p, const int64_t* s, int64_t n) {
      if (s[0] == kSize<T>) {
        T* o = reinterpret_cast<T*>(p[0]);
        for (int64_t i = 0; i < n; ++i) o[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = v;
      }
    });
  });
}

inline void arange_kernel(const Tensor& out, double start, double step) {
  dispatch_numeric(out.dtype(), "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data_ptr());
    parallel_for(0, out.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = static_cast<T>(start + static_cast<double>(i) * step);
    });
  });
}

inline void random_kernel(const Tensor& out, const RandomParams& params) {
  dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data_ptr());
    // One Philox call per four elements (each block fills its four lanes).
    parallel_for(0, (out.numel() + 3) / 4, 1024, [&](int64_t b, int64_t e) {
      const int64_t n = out.numel();
      double v[4];
      for (int64_t blk = b; blk < e; ++blk) {
        random_block(params, static_cast<uint64_t>(blk), v);
        for (int64_t lane = 0; lane < 4 && 4 * blk + lane < n; ++lane) o[4 * blk + lane] = static_cast<T>(v[lane]);
      }
    });
  });
}

}  // namespace cpu
}  // namespace nabla
