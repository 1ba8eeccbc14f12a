// One fixed pool of worker threads for the whole engine. ParallelFor blocks the caller until every
// part is done; the caller works too. A call allocates nothing, creates no thread and takes no
// lock: hand-off is one atomic generation counter, workers spin briefly (a decode step issues
// hundreds of calls a few microseconds apart) and then sleep on a futex, so an idle engine does
// not burn its cores.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"

namespace retain::engine {

class ThreadPool {
 public:
  // num_threads counts the caller: 1 means no workers. 0 = hardware concurrency.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over [0, n) split into at most num_threads() contiguous ranges of at
  // least `grain` items. One caller at a time; fn must not call ParallelFor.
  void ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void WorkerLoop(int index);
  static constexpr int kMaxParts = 255;  // the part count shares the generation word's low byte

  std::vector<std::thread> workers_;
  // (sequence << 8) | parts of the current job; written by the caller only.
  std::atomic<uint32_t> generation_{0};
  uint32_t sequence_ = 0;
  std::atomic<uint32_t> pending_{0};
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stop_{false};
  // The job of the current generation, published by the store to generation_; stable until every
  // participant has decremented pending_.
  const absl::FunctionRef<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
};

}  // namespace retain::engine
