// Latency statistics for `retain load`: a log-bucketed histogram that many threads add to
// (relaxed atomics, bounded memory at any run length), and exact percentiles of small samples.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace retain::client {

// Buckets 1% wide from 1 µs to 10^4 s (a value outside lands in the first or last bucket); a
// percentile is its bucket's geometric centre, so within 0.5% of the exact value.
class LatencyHistogram {
 public:
  LatencyHistogram();
  void Add(double seconds);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Nearest-rank percentile, p in (0, 100]; 0 when empty.
  double Percentile(double p) const;
  double Mean() const;

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

// Nearest-rank percentile of exact samples (sorted copy); 0 when empty.
double Percentile(std::vector<double> v, double p);

}  // namespace retain::client
