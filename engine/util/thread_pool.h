// One fixed pool of worker threads for the whole engine. ParallelFor blocks the caller until every
// part is done; the caller works too. A call allocates nothing, creates no thread and takes no
// lock. Each thread owns one contiguous range of the job, as a static split would give it (so on
// an idle machine every thread streams the same items call after call: the same heads' states
// stay in its cache), cut into a few parts that it runs front to back; a thread that is done
// steals unstarted parts of the others from the back. So a worker whose core is taken by another
// process holds up nothing it has not started: the caller takes over its range. A part it has
// started still holds the caller up until the worker gets its core back, so when that costs more
// than splitting gains the pool runs calls on the caller alone (ModeChooser), trying the split
// again now and then. Waiting is bounded: workers spin briefly (a
// decode step issues hundreds of calls a few microseconds apart), first on `pause`, then yielding
// the core to whatever else wants it, and then sleep on a futex, so an idle engine does not burn
// its cores.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace retain::engine {

// The threads worth running by default: the CPUs in the calling thread's affinity mask
// (sched_getaffinity: taskset, cpusets), capped by the cgroup CPU quota rounded up (v2 cpu.max,
// v1 cpu.cfs_quota_us / cpu.cfs_period_us, the tightest on the way to the root); at least 1.
int DefaultThreadCount();

namespace thread_pool_internal {
// Chooses, for runs of kWindowCalls parallel calls, whether they are split over the threads or run
// by the caller alone. On an idle machine splitting wins; when another process holds one of the
// cores, a worker that loses its core in the middle of a part makes the caller wait a whole
// scheduler slice for it, and the caller alone is faster. Neither can be seen from one call, so
// the chooser times windows: now and then it runs one window the other way and keeps whichever was
// faster than the window just before it. The calls of a decode step repeat step after step, so
// neighbouring windows hold the same work. A probe that loses doubles the interval to the next
// (up to kMaxInterval windows), so a steady machine pays for few probes. Caller-only, no atomics.
class ModeChooser {
 public:
  static constexpr int kWindowCalls = 512;
  static constexpr int kFirstInterval = 4, kMaxInterval = 64;
  // Whether the call about to run goes to the caller alone; now_ns: a monotonic clock.
  bool Serial(int64_t now_ns) {
    if (calls_ == 0) window_start_ns_ = now_ns;
    return serial_ != probing_;
  }
  // After the call: now_ns at its end.
  void Done(int64_t now_ns);
  bool serial_mode() const { return serial_; }

 private:
  bool serial_ = false;   // the mode kept
  bool probing_ = false;  // this window runs the other mode
  int calls_ = 0;
  int64_t window_start_ns_ = 0, last_window_ns_ = 0;
  int windows_to_probe_ = kFirstInterval, interval_ = kFirstInterval;
};

// CPUs a cgroup v2 cpu.max line allows, rounded up ("150000 100000" -> 2); 0 = no limit ("max ...")
// or unreadable.
int CpuMaxLimit(std::string_view cpu_max);
// The same for cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (quota -1 = no limit).
int CfsQuotaLimit(long long quota_us, long long period_us);
}  // namespace thread_pool_internal

class ThreadPool {
 public:
  // num_threads counts the caller: 1 means no workers. 0 = DefaultThreadCount().
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over [0, n) split into contiguous parts of at least `grain` items (all of
  // n when n < grain), each index in exactly one part, at most kPartsPerThread × num_threads()
  // parts; any thread may run any part. One caller at a time; fn must not call ParallelFor.
  // Work that must be split once per thread (a caller's own self-scheduling loop, as MatMuls has)
  // passes n = num_threads(), grain 1: that is never split further.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

  static constexpr int kPartsPerThread = 4;

 private:
  struct alignas(64) Range {
    // (sequence << 32) | (front << 16) | back: the owner claims parts at the front, others steal at
    // the back, both by a compare-exchange that also checks the sequence, so a thread that wakes
    // late cannot touch a later job.
    std::atomic<uint64_t> word{0};
  };
  void WorkerLoop(int index);
  // Runs parts of the job in `job` (own range first, then stealing); returns how many it ran.
  uint32_t RunParts(uint64_t job, int own);
  void RunSplit(int64_t n, int64_t ranges, int64_t per_range, absl::FunctionRef<void(int64_t, int64_t)> fn);
  static constexpr int kMaxThreads = 255;

  std::vector<std::thread> workers_;
  std::unique_ptr<Range[]> ranges_;  // one per thread; [0] is the caller's
  // (sequence << 32) | (ranges << 16) | parts per range, of the current job. Its release store
  // publishes the ranges' words and job_ / job_n_, which stay unchanged while any part is claimed
  // (the caller waits for pending_ before the next job).
  alignas(64) std::atomic<uint64_t> job_word_{0};
  const absl::FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  // Parts of the current job not finished yet; the caller waits for 0.
  alignas(64) std::atomic<uint32_t> pending_{0};
  std::atomic<bool> caller_sleeping_{false};
  // Low 32 bits of the sequence, for sleeping workers' futex.
  alignas(64) std::atomic<uint32_t> generation_{0};
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> stop_{false};
  uint32_t sequence_ = 0;  // written by the caller only
  thread_pool_internal::ModeChooser chooser_;  // the caller's
};

}  // namespace retain::engine
