// ThreadPool: part i of a job goes to worker i-1, part 0 to the caller. Sleeping and waking use
// raw futexes on the two counters; the Dekker pattern (publish, fence, check the other side's
// sleeping flag) guarantees a sleeper is always woken.
#include "engine/util/thread_pool.h"

#include "engine/util/denormals.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>

namespace retain::engine {
namespace {

void FutexWait(std::atomic<uint32_t>* addr, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void FutexWake(std::atomic<uint32_t>* addr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until pred() or ~kSpin has passed; true if pred() became true.
template <typename Pred>
bool SpinUntil(Pred pred) {
  constexpr auto kSpin = std::chrono::microseconds(200);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (pred()) return true;
    CpuRelax();
    if ((i & 255) == 255 && std::chrono::steady_clock::now() - start > kSpin) return pred();
  }
}

void PartRange(int64_t n, int parts, int i, int64_t* begin, int64_t* end) {
  const int64_t base = n / parts, rem = n % parts;
  *begin = i * base + std::min<int64_t>(i, rem);
  *end = *begin + base + (i < rem ? 1 : 0);
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = std::max(1u, std::thread::hardware_concurrency());
  num_threads = std::min(num_threads, kMaxParts);
  workers_.reserve(num_threads - 1);
  for (int i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.store((++sequence_) << 8);
  FutexWake(&generation_);
  for (auto& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int parts = static_cast<int>(std::min<int64_t>(num_threads(), (n + grain - 1) / grain));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  pending_.store(static_cast<uint32_t>(parts - 1), std::memory_order_relaxed);
  generation_.store(((++sequence_) << 8) | static_cast<uint32_t>(parts), std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) FutexWake(&generation_);
  int64_t b, e;
  PartRange(n, parts, 0, &b, &e);
  fn(b, e);
  auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    for (uint32_t p; (p = pending_.load(std::memory_order_seq_cst)) != 0;) FutexWait(&pending_, p);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
}

void ThreadPool::WorkerLoop(int index) {
  ScopedFlushDenormals ftz;  // workers only ever run engine kernels
  // generation_'s initial value, not a fresh load: a job published before this thread first runs
  // must still count as new, or its caller waits forever for this worker's part.
  uint32_t seen = 0;
  for (;;) {
    auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!SpinUntil(changed)) {
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      while (generation_.load(std::memory_order_seq_cst) == seen) FutexWait(&generation_, seen);
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    // The part count travels in the generation word: a worker that is not part of this job
    // never reads job_, which the caller may already be rewriting for the next one.
    const int parts = static_cast<int>(seen & 0xff);
    if (index + 1 < parts) {
      int64_t b, e;
      PartRange(job_n_, parts, index + 1, &b, &e);
      (*job_)(b, e);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
          caller_sleeping_.load(std::memory_order_seq_cst)) {
        FutexWake(&pending_);
      }
    }
  }
}

}  // namespace retain::engine
