// The two limits a CPU engine is judged against, measured in the same run as the benchmark:
// sustained read bandwidth and fp32 FMA peak, both over `threads` threads (one per core).
// Method as shared/tools/machine-limits: first-touched per-thread chunks summed with independent
// vector accumulators (here the best of 1, 2 and 8 accumulators: see machine_limits.cc);
// 16 (AVX-512) or 12 (AVX2) independent FMA chains per thread at the widest ISA available; the
// best of a few repetitions.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "engine/util/thread_pool.h"

namespace retain::bench {

struct MachineLimits {
  double read_gbps = 0;
  double fma_gflops = 0;
  const char* isa = "";
};

// Holds the read buffers (first-touched once, by the threads that read them) so the limits can be
// measured again and again between timed windows without paging memory in each time.
class LimitsProbe {
 public:
  LimitsProbe(int threads, double read_gib);
  ~LimitsProbe();
  LimitsProbe(const LimitsProbe&) = delete;
  LimitsProbe& operator=(const LimitsProbe&) = delete;

  // Best of `reps` passes over the read buffers and of `reps` FMA runs of `fma_iters` per thread.
  MachineLimits Measure(long fma_iters, int reps);
  // Resident bytes of the read buffers (to take out of the process's peak RSS).
  size_t resident_bytes() const;

 private:
  int threads_;
  size_t per_thread_;  // floats per thread
  std::vector<float*> chunks_;
  std::unique_ptr<engine::ThreadPool> pool_;
};

}  // namespace retain::bench
