#pragma once
// parallel_for over an index range with OpenMP when it is enabled and the range is big enough
// to pay for waking threads; plain loop otherwise. Nested calls run serially.

#include <algorithm>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace nabla {
namespace cpu {

// Below this many elements of simple work a parallel region costs more than it saves.
inline constexpr int64_t kParallelGrain = 32768;

inline int num_threads() {
#if defined(_OPENMP)
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

// Calls f(begin, end) on disjoint chunks covering [begin, end); threads are used only when the
// range holds more than `grain` indices.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& f) {
  int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
#if defined(_OPENMP)
  int nt = num_threads();
  if (nt > 1 && n > grain) {
    int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / grain);
#pragma omp parallel num_threads(static_cast<int>(chunks))
    {
      int64_t tid = omp_get_thread_num(), count = omp_get_num_threads();
      int64_t per = (n + count - 1) / count;
      int64_t b = begin + tid * per, e = std::min(end, b + per);
      if (b < e) f(b, e);
    }
    return;
  }
#endif
  (void)grain;
  f(begin, end);
}

}  // namespace cpu
}  // namespace nabla
