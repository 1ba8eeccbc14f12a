// ThreadPool: the caller publishes a job (one range of parts per thread) and then runs parts like
// any worker: its own range, then what is left of the others'; it waits only for parts others
// have claimed and not finished. Sleeping and waking use raw futexes on two
// counters; the Dekker pattern (publish, fence, check the other side's sleeping flag) guarantees a
// sleeper is always woken.
#include "engine/util/thread_pool.h"

#include "engine/util/denormals.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <fstream>
#include <sstream>
#include <string>

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

// Spins until pred() or ~kSpin has passed; true if pred() became true. The first kPauseSpin on
// `pause` (the gaps between a decode step's calls are shorter), the rest with sched_yield between
// checks: when this thread shares its core (with the caller, or with another process), a spin
// must not take the core from the thread it is waiting for. A yield with nothing else runnable
// returns at once.
template <typename Pred>
bool SpinUntil(Pred pred) {
  constexpr auto kPauseSpin = std::chrono::microseconds(20);
  constexpr auto kSpin = std::chrono::microseconds(200);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (pred()) return true;
    CpuRelax();
    if ((i & 63) == 63) {
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited > kSpin) return pred();
      if (waited > kPauseSpin) sched_yield();
    }
  }
}

// A job word and a range word: (sequence << 32) | (high << 16) | low.
constexpr uint64_t kSequenceShift = 32, kHighShift = 16, kField = 0xffff;
uint32_t SequenceOf(uint64_t word) { return static_cast<uint32_t>(word >> kSequenceShift); }
uint32_t HighOf(uint64_t word) { return static_cast<uint32_t>((word >> kHighShift) & kField); }
uint32_t LowOf(uint64_t word) { return static_cast<uint32_t>(word & kField); }
uint64_t Word(uint32_t seq, uint32_t high, uint32_t low) {
  return (static_cast<uint64_t>(seq) << kSequenceShift) | (static_cast<uint64_t>(high) << kHighShift) | low;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void PartRange(int64_t n, int64_t parts, int64_t i, int64_t* begin, int64_t* end) {
  const int64_t base = n / parts, rem = n % parts;
  *begin = i * base + std::min<int64_t>(i, rem);
  *end = *begin + base + (i < rem ? 1 : 0);
}

int CpusInAffinityMask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1u, std::thread::hardware_concurrency());
  return std::max(1, CPU_COUNT(&set));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

long long ParseLong(std::string_view s, bool* ok) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  long long v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  *ok = !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
  return v;
}

// The tightest limit > 0 of limit(dir) over dir and its parents up to mount (inclusive); 0 = none.
template <class F>
int TightestUpTo(std::string dir, const std::string& mount, F limit) {
  int best = 0;
  for (;;) {
    const int l = limit(dir);
    if (l > 0 && (best == 0 || l < best)) best = l;
    if (dir.size() <= mount.size()) return best;
    dir.resize(dir.rfind('/') == std::string::npos || dir.rfind('/') < mount.size() ? mount.size() : dir.rfind('/'));
  }
}

// CPUs the cgroup CPU quota of this process allows, rounded up; 0 = no limit found. Mount points
// come from /proc/self/mountinfo, this process's groups from /proc/self/cgroup.
int CgroupCpuLimit() {
  std::string v2_mount, v2_root, v1_mount, v1_root;
  {
    std::istringstream mounts(ReadFile("/proc/self/mountinfo"));
    for (std::string line; std::getline(mounts, line);) {
      // id parent major:minor root mount-point options [optional fields] - fstype source super-options
      std::istringstream f(line);
      std::string id, parent, dev, root, point, opts, tok;
      f >> id >> parent >> dev >> root >> point >> opts;
      while (f >> tok && tok != "-") {}
      std::string fstype, source, super;
      f >> fstype >> source >> super;
      if (fstype == "cgroup2" && v2_mount.empty()) {
        v2_mount = point, v2_root = root;
      } else if (fstype == "cgroup" && v1_mount.empty()) {
        std::istringstream s(super);
        for (std::string o; std::getline(s, o, ',');)
          if (o == "cpu") v1_mount = point, v1_root = root;
      }
    }
  }
  std::string v2_path, v1_path;
  {
    std::istringstream groups(ReadFile("/proc/self/cgroup"));
    for (std::string line; std::getline(groups, line);) {
      // hierarchy-id:controllers:path
      const size_t a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (line.compare(0, a, "0") == 0 && controllers.empty()) v2_path = path;
      std::istringstream s(controllers);
      for (std::string c; std::getline(s, c, ',');)
        if (c == "cpu") v1_path = path;
    }
  }
  // A group's path is relative to the hierarchy's root; the mount shows the subtree under `root`.
  auto dir = [](const std::string& mount, const std::string& root, std::string path) -> std::string {
    if (root != "/" && path.rfind(root, 0) == 0) path = path.substr(root.size());
    if (path.empty() || path == "/") return mount;
    return mount + (path[0] == '/' ? "" : "/") + path;
  };
  int limit = 0;
  auto tighten = [&](int l) {
    if (l > 0 && (limit == 0 || l < limit)) limit = l;
  };
  if (!v2_mount.empty() && !v2_path.empty()) {
    tighten(TightestUpTo(dir(v2_mount, v2_root, v2_path), v2_mount, [](const std::string& d) {
      return thread_pool_internal::CpuMaxLimit(ReadFile(d + "/cpu.max"));
    }));
  }
  if (!v1_mount.empty() && !v1_path.empty()) {
    tighten(TightestUpTo(dir(v1_mount, v1_root, v1_path), v1_mount, [](const std::string& d) {
      bool ok_q = false, ok_p = false;
      const long long q = ParseLong(ReadFile(d + "/cpu.cfs_quota_us"), &ok_q);
      const long long p = ParseLong(ReadFile(d + "/cpu.cfs_period_us"), &ok_p);
      return ok_q && ok_p ? thread_pool_internal::CfsQuotaLimit(q, p) : 0;
    }));
  }
  return limit;
}

}  // namespace

namespace thread_pool_internal {

int CfsQuotaLimit(long long quota_us, long long period_us) {
  if (quota_us <= 0 || period_us <= 0) return 0;
  return static_cast<int>(std::min<long long>(INT_MAX, (quota_us + period_us - 1) / period_us));
}

void ModeChooser::Done(int64_t now_ns) {
  if (++calls_ < kWindowCalls) return;
  calls_ = 0;
  const int64_t took = now_ns - window_start_ns_;
  if (probing_) {
    probing_ = false;
    if (took < last_window_ns_) {
      serial_ = !serial_;
      interval_ = kFirstInterval;
      last_window_ns_ = took;
    } else {
      interval_ = std::min(2 * interval_, kMaxInterval);
    }
    windows_to_probe_ = interval_;
    return;
  }
  last_window_ns_ = took;
  if (--windows_to_probe_ == 0) probing_ = true;
}

int CpuMaxLimit(std::string_view cpu_max) {
  while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' ')) cpu_max.remove_suffix(1);
  const size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return 0;  // also "max" alone: no limit
  bool ok_q = false, ok_p = false;
  const long long q = ParseLong(cpu_max.substr(0, space), &ok_q);
  const long long p = ParseLong(cpu_max.substr(space + 1), &ok_p);
  return ok_q && ok_p ? CfsQuotaLimit(q, p) : 0;
}

}  // namespace thread_pool_internal

int DefaultThreadCount() {
  int n = CpusInAffinityMask();
  const int quota = CgroupCpuLimit();
  if (quota > 0) n = std::min(n, quota);
  return std::max(1, n);
}

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) num_threads = DefaultThreadCount();
  num_threads = std::min(num_threads, kMaxThreads);
  ranges_ = std::make_unique<Range[]>(num_threads);
  workers_.reserve(num_threads - 1);
  for (int i = 0; i + 1 < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i + 1); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  ++sequence_;
  job_word_.store(Word(sequence_, 0, 0));
  generation_.store(sequence_);
  FutexWake(&generation_);
  for (auto& t : workers_) t.join();
}

uint32_t ThreadPool::RunParts(uint64_t job, int own) {
  const uint32_t seq = SequenceOf(job), ranges = HighOf(job), per_range = LowOf(job);
  uint32_t ran = 0;
  auto run = [&](uint32_t range, uint32_t part) {
    int64_t b, e;
    PartRange(job_n_, static_cast<int64_t>(ranges) * per_range, static_cast<int64_t>(range) * per_range + part, &b, &e);
    (*job_)(b, e);
    ++ran;
  };
  // Own range, front to back.
  if (static_cast<uint32_t>(own) < ranges) {
    std::atomic<uint64_t>& w = ranges_[own].word;
    for (uint64_t v = w.load(std::memory_order_acquire);;) {
      if (SequenceOf(v) != seq || HighOf(v) >= LowOf(v)) break;
      if (w.compare_exchange_weak(v, v + (uint64_t{1} << kHighShift), std::memory_order_acquire)) {
        run(own, HighOf(v));
        v = w.load(std::memory_order_acquire);
      }
    }
  }
  // Then the others' unstarted parts, from the back, starting with the next thread's range.
  for (uint32_t d = 1; d <= ranges; ++d) {
    const uint32_t r = (static_cast<uint32_t>(own) + d) % ranges;
    if (r == static_cast<uint32_t>(own)) continue;
    std::atomic<uint64_t>& w = ranges_[r].word;
    for (uint64_t v = w.load(std::memory_order_acquire);;) {
      if (SequenceOf(v) != seq || HighOf(v) >= LowOf(v)) break;
      if (w.compare_exchange_weak(v, v - 1, std::memory_order_acquire)) {
        run(r, LowOf(v) - 1);
        v = w.load(std::memory_order_acquire);
      }
    }
  }
  return ran;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // One range per thread (fewer when n is small), each cut into parts of at least `grain` items.
  const int64_t units = n / grain;
  const int64_t ranges = std::min<int64_t>(units, num_threads());
  if (ranges <= 1) {
    fn(0, n);
    return;
  }
  const int64_t start_ns = NowNs();
  if (chooser_.Serial(start_ns)) {
    fn(0, n);
    chooser_.Done(NowNs());
    return;
  }
  RunSplit(n, ranges, std::clamp<int64_t>(units / ranges, 1, kPartsPerThread), fn);
  chooser_.Done(NowNs());
}

void ThreadPool::RunSplit(int64_t n, int64_t ranges, int64_t per_range, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  job_ = &fn;
  job_n_ = n;
  pending_.store(static_cast<uint32_t>(ranges * per_range), std::memory_order_relaxed);
  ++sequence_;
  for (int64_t r = 0; r < ranges; ++r)
    ranges_[r].word.store(Word(sequence_, 0, static_cast<uint32_t>(per_range)), std::memory_order_relaxed);
  const uint64_t job = Word(sequence_, static_cast<uint32_t>(ranges), static_cast<uint32_t>(per_range));
  job_word_.store(job, std::memory_order_release);
  generation_.store(sequence_, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) FutexWake(&generation_);
  const uint32_t ran = RunParts(job, 0);
  // Every part is claimed now; wait for those others are still running.
  if (pending_.fetch_sub(ran, std::memory_order_acq_rel) == ran) return;
  auto done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    for (uint32_t p; (p = pending_.load(std::memory_order_seq_cst)) != 0;) FutexWait(&pending_, p);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
}

void ThreadPool::WorkerLoop(int index) {
  ScopedFlushDenormals ftz;  // workers only ever run engine kernels
  // The initial sequence, not a fresh load: a job published before this thread first runs must
  // still count as new (it may have parts left to claim).
  uint32_t seen = 0;
  for (;;) {
    auto changed = [&] { return SequenceOf(job_word_.load(std::memory_order_acquire)) != seen; };
    if (!SpinUntil(changed)) {
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      while (generation_.load(std::memory_order_seq_cst) == seen) FutexWait(&generation_, seen);
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    const uint64_t job = job_word_.load(std::memory_order_acquire);
    seen = SequenceOf(job);
    if (stop_.load(std::memory_order_acquire)) return;
    const uint32_t ran = RunParts(job, index);
    // The caller cannot have finished this job before these parts, so pending_ is still its.
    if (ran > 0 && pending_.fetch_sub(ran, std::memory_order_seq_cst) == ran &&
        caller_sleeping_.load(std::memory_order_seq_cst)) {
      FutexWake(&pending_);
    }
  }
}

}  // namespace retain::engine
