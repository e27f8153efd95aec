#pragma once
// CUDA sort, topk and searchsorted (ops/sort.hpp). The sort dim is moved last and made dense;
// each element becomes an unsigned key whose order is PyTorch's (NaN above every number, -0.0
// equal to 0.0; descending = the complemented key) and its index in the row, and
// cub::DeviceSegmentedSort::StableSortPairs sorts the (key, index) pairs of every row at once.
// The values are then read back through the sorted indices. Stable, so equal values keep their
// input order, as on the CPU. topk is the first k of that sort.

#include <cub/device/device_segmented_sort.cuh>

#include <climits>

#include "elementwise.cuh"
#include "reduce.cuh"  // move_dims_last, last_dim_back

namespace nabla {
namespace cuda {

template <class T> struct SortKey { using type = uint32_t; };  // float, 16-bit floats, int32, uint8, bool
template <> struct SortKey<double> { using type = uint64_t; };
template <> struct SortKey<int64_t> { using type = uint64_t; };

// An unsigned key that orders as the values do (IEEE bits: negatives complemented, positives with
// the sign bit set); every NaN is the largest key, -0.0 the key of 0.0.
template <class T>
__device__ __forceinline__ typename SortKey<T>::type sort_key(T v, bool descending) {
  using K = typename SortKey<T>::type;
  K k;
  if constexpr (std::is_same_v<T, double>) {
    double x = v;
    if (x != x) {
      k = ~K(0);
    } else {
      if (x == 0.0) x = 0.0;
      const K b = static_cast<K>(__double_as_longlong(x));
      k = (b >> 63) ? ~b : (b | (K(1) << 63));
    }
  } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    float x = static_cast<float>(v);
    if (x != x) {
      k = ~K(0);
    } else {
      if (x == 0.0f) x = 0.0f;
      const K b = __float_as_uint(x);
      k = (b >> 31) ? ~b : (b | 0x80000000u);
    }
  } else if constexpr (std::is_same_v<T, int64_t>) {
    k = static_cast<K>(v) ^ (K(1) << 63);
  } else if constexpr (std::is_same_v<T, int32_t>) {
    k = static_cast<K>(v) ^ 0x80000000u;
  } else {  // uint8, bool
    k = static_cast<K>(v);
  }
  return descending ? static_cast<K>(~k) : k;
}

template <class T>
__global__ void sort_keys_kernel(const T* __restrict__ in, int64_t n, int64_t R, typename SortKey<T>::type* keys,
                                 int64_t* idx, bool descending) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = sort_key(in[i], descending);
    idx[i] = i % R;
  }
}

// The first k of each sorted row of R: indices[row, j] = order[row, j], values[row, j] =
// in[row, order[row, j]].
template <class T>
__global__ void take_sorted_kernel(const T* __restrict__ in, const int64_t* __restrict__ order, int64_t R, int64_t k,
                                   int64_t n, T* __restrict__ values, int64_t* __restrict__ indices) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / k, j = i - row * k;
    const int64_t s = order[row * R + j];
    indices[i] = s;
    values[i] = in[row * R + s];
  }
}

template <class T>
__device__ __forceinline__ bool nan_last_less(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) return a < b || (!fn::is_nan(a) && fn::is_nan(b));
  else return a < b;
}

template <class T>
__global__ void searchsorted_kernel(const T* __restrict__ sorted, const T* __restrict__ values, int64_t S, int64_t C,
                                    int64_t n, int64_t* __restrict__ out, bool right) {
  using Cm = compute_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const T* row = sorted + (i / S) * C;
    const Cm v = static_cast<Cm>(values[i]);
    int64_t lo = 0, hi = C;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      const Cm m = static_cast<Cm>(row[mid]);
      if (right ? !nan_last_less(v, m) : nan_last_less(m, v)) lo = mid + 1;
      else hi = mid;
    }
    out[i] = lo;
  }
}

// Sorts every row of the dense [K, R] `dense` (keys from its values, stable) and writes the first
// k of each into values / indices (dense [K, k]).
template <class T>
void sort_rows(const Tensor& dense, int64_t K, int64_t R, int64_t k, bool descending, const Tensor& values,
               const Tensor& indices) {
  using Key = typename SortKey<T>::type;
  const int dev = dense.device().index;
  const cudaStream_t s = detail::stream(dev);
  const int64_t n = K * R;
  NABLA_CHECK(n <= INT_MAX && K < INT_MAX, ValueError, "sort: the CUDA backend sorts at most ", INT_MAX,
              " elements at once, got ", K, " rows of ", R);
  const TensorOptions on_dev = TensorOptions(kInt64).device(dense.device());
  const DType key_dtype = sizeof(Key) == 8 ? kInt64 : kInt32;  // raw storage for the keys
  Tensor keys_in = empty({n}, on_dev.dtype(key_dtype)), keys_out = empty({n}, on_dev.dtype(key_dtype));
  Tensor idx_in = empty({n}, on_dev), idx_out = empty({n}, on_dev);
  Tensor offsets = empty({K + 1}, on_dev);
  launch_arange(offsets, 0.0, static_cast<double>(R));  // row starts: exact in double below 2^53
  sort_keys_kernel<T><<<grid_for(n, dev), kThreads, 0, s>>>(static_cast<const T*>(dense.data_ptr()), n, R,
                                                            static_cast<Key*>(keys_in.data_ptr()),
                                                            static_cast<int64_t*>(idx_in.data_ptr()), descending);
  NABLA_CUDA_LAUNCH_CHECK();
  const auto* off = static_cast<const int64_t*>(offsets.data_ptr());
  auto run = [&](void* scratch, size_t& bytes) {
    return cub::DeviceSegmentedSort::StableSortPairs(
        scratch, bytes, static_cast<const Key*>(keys_in.data_ptr()), static_cast<Key*>(keys_out.data_ptr()),
        static_cast<const int64_t*>(idx_in.data_ptr()), static_cast<int64_t*>(idx_out.data_ptr()), static_cast<int>(n),
        static_cast<int>(K), off, off + 1, s);
  };
  size_t bytes = 0;
  NABLA_CUDA_CHECK(run(nullptr, bytes));
  Tensor scratch = empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, on_dev.dtype(kUInt8));
  NABLA_CUDA_CHECK(run(scratch.data_ptr(), bytes));
  const int64_t m = K * k;
  take_sorted_kernel<T><<<grid_for(m, dev), kThreads, 0, s>>>(
      static_cast<const T*>(dense.data_ptr()), static_cast<const int64_t*>(idx_out.data_ptr()), R, k, m,
      static_cast<T*>(values.data_ptr()), static_cast<int64_t*>(indices.data_ptr()));
  NABLA_CUDA_LAUNCH_CHECK();
}

// Backend::sort (k = in.size(dim)) and Backend::topk on CUDA.
inline void launch_sort(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t dim, int64_t k,
                        bool descending) {
  NoGradGuard no_grad;
  std::vector<bool> last(static_cast<size_t>(in.dim()), false);
  last[dim] = true;
  Tensor dense = move_dims_last(in.detach(), last);
  const int64_t R = in.size(dim), K = in.numel() / R;
  const bool direct = dim == in.dim() - 1 && values.is_contiguous() && indices.is_contiguous();
  Shape moved = dense.sizes();
  moved.back() = k;
  Tensor v = direct ? values : empty(moved, values.options()), i = direct ? indices : empty(moved, indices.options());
  dispatch_all(in.dtype(), "sort", [&](auto tag) { sort_rows<typename decltype(tag)::type>(dense, K, R, k, descending, v, i); });
  if (direct) return;
  const Dims back = last_dim_back(in.dim(), dim);
  launch_copy(values, v.permute(back));
  launch_copy(indices, i.permute(back));
}

inline void launch_searchsorted(const Tensor& out, const Tensor& sorted, const Tensor& values, bool right) {
  const int dev = out.device().index;
  const int64_t S = out.size(1), C = sorted.size(1), n = out.numel();
  dispatch_numeric(sorted.dtype(), "searchsorted", [&](auto tag) {
    using T = typename decltype(tag)::type;
    searchsorted_kernel<T><<<grid_for(n, dev), kThreads, 0, detail::stream(dev)>>>(
        static_cast<const T*>(sorted.data_ptr()), static_cast<const T*>(values.data_ptr()), S, C, n,
        static_cast<int64_t*>(out.data_ptr()), right);
  });
  NABLA_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace nabla
