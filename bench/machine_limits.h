// The two limits a CPU engine is judged against, measured in the same run as the benchmark:
// sustained read bandwidth and fp32 FMA peak, both over `threads` threads (one per core).
// Method as shared/tools/machine-limits: first-touched per-thread chunks summed with independent
// vector accumulators; 16 independent FMA chains per thread at the widest ISA available.
#pragma once

namespace retain::bench {

struct MachineLimits {
  double read_gbps = 0;
  double fma_gflops = 0;
  const char* isa = "";
};

MachineLimits MeasureMachineLimits(int threads, double read_gib = 1.0);

}  // namespace retain::bench
