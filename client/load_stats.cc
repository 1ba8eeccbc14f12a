#include "client/load_stats.h"

#include <algorithm>
#include <cmath>

namespace retain::client {
namespace {

constexpr double kMin = 1e-6;       // seconds
constexpr double kGrowth = 1.01;    // bucket width
const double kLogGrowth = std::log(kGrowth);
const int kBuckets = static_cast<int>(std::ceil(std::log(1e4 / kMin) / std::log(kGrowth))) + 1;

int BucketOf(double s) {
  if (!(s > kMin)) return 0;
  const int b = static_cast<int>(std::log(s / kMin) / kLogGrowth);
  return std::min(b, kBuckets - 1);
}

double CentreOf(int b) { return kMin * std::pow(kGrowth, b + 0.5); }

}  // namespace

LatencyHistogram::LatencyHistogram() : buckets_(new std::atomic<uint64_t>[kBuckets]) {
  for (int i = 0; i < kBuckets; ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void LatencyHistogram::Add(double seconds) {
  buckets_[BucketOf(seconds)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max(0.0, seconds) * 1e9), std::memory_order_relaxed);
}

double LatencyHistogram::Percentile(double p) const {
  const uint64_t n = count();
  if (n == 0) return 0;
  const uint64_t rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(n))));
  uint64_t seen = 0;
  for (int b = 0; b < kBuckets; ++b) {
    seen += buckets_[b].load(std::memory_order_relaxed);
    if (seen >= rank) return CentreOf(b);
  }
  return CentreOf(kBuckets - 1);
}

double LatencyHistogram::Mean() const {
  const uint64_t n = count();
  return n == 0 ? 0 : static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9 / static_cast<double>(n);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t rank = std::max<size_t>(1, static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size()))));
  return v[std::min(rank, v.size()) - 1];
}

}  // namespace retain::client
