// ThreadPool: every index in exactly one part whatever the thread count (more threads than cores
// included), parts a worker has not claimed are taken by the caller, the split-or-serial choice
// follows which is faster (on synthetic times), the default thread count
// honours the affinity mask and the cgroup quota, and a model's results do not depend on the
// thread count. Nothing here measures time: a wait that could hang is bounded only as a guard.
#include "engine/util/thread_pool.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "tests/testing/model_files.h"

namespace retain::engine {
namespace {

int Cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

std::vector<int> ThreadCounts() { return {1, 2, 3, 4, 8, 2 * Cores() + 1, 64}; }

TEST(ThreadPool, EveryIndexExactlyOnceInContiguousPartsOfAtLeastTheGrain) {
  for (int threads : ThreadCounts()) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 2, 3, 7, 64, 255, 1000, 4099}) {
      for (int64_t grain : {1, 2, 5, 64, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> parts{0}, short_parts{0};
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          parts.fetch_add(1);
          if (e - b < std::min(grain, n)) short_parts.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[i].load(), 1) << "index " << i << " n " << n << " grain " << grain << " threads " << threads;
        EXPECT_EQ(short_parts.load(), 0) << "n " << n << " grain " << grain << " threads " << threads;
        EXPECT_LE(parts.load(), ThreadPool::kPartsPerThread * threads);
        EXPECT_LE(parts.load(), std::max<int64_t>(1, n / grain));
      }
    }
  }
}

TEST(ThreadPool, OnePartPerThreadWhenAskedForNumThreadsItems) {
  // MatMuls and the benchmark's probes split work once per thread themselves.
  for (int threads : ThreadCounts()) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(threads);
    pool.ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
      EXPECT_EQ(e - b, 1);
      hits[b].fetch_add(1);
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

TEST(ThreadPool, ManyCallsInARowWithMoreThreadsThanCores) {
  // Thousands of hand-offs back to back: workers that wake late, sleep, or are descheduled between
  // jobs must never run a part twice, run a stale job's part, or leave one out.
  for (int threads : {2, 3, 2 * Cores() + 1}) {
    ThreadPool pool(threads);
    std::vector<int64_t> sums(64, 0);
    int64_t expected = 0;
    for (int call = 0; call < 5000; ++call) {
      const int64_t n = 1 + call % 64;
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, 1 + call % 3, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "call " << call << " index " << i;
      // The pool's memory ordering: plain writes of the parts are visible to the caller after it.
      pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sums[i] += call;
      });
      for (int64_t i = 0; i < n; ++i) expected += call;
      if (call % 7 == 0) std::this_thread::yield();
    }
    int64_t total = 0;
    for (int64_t s : sums) total += s;
    EXPECT_EQ(total, expected) << threads << " threads";
  }
}

TEST(ThreadPool, CallerTakesThePartsNoWorkerHasClaimed) {
  // Each part a worker runs waits until the caller has run every part no worker holds. With parts
  // handed to fixed threads this cannot finish; with parts claimed by whoever is running, the
  // caller runs all of them but at most one per worker (workers stuck on their first part).
  // Models a worker whose core is taken by another process. The 60 s bound only guards a hang.
  for (int threads : {2, 3, 5}) {
    ThreadPool pool(threads);
    const int64_t n = ThreadPool::kPartsPerThread * threads;
    const std::thread::id caller = std::this_thread::get_id();
    std::mutex mu;
    std::condition_variable cv;
    int64_t by_caller = 0, by_workers = 0;
    bool timed_out = false;
    pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      std::unique_lock<std::mutex> lock(mu);
      if (std::this_thread::get_id() == caller) {
        by_caller += e - b;
        cv.notify_all();
        return;
      }
      // n - (threads - 1) parts of one item each: all but one per worker.
      if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return by_caller + by_workers >= n - (threads - 1); }))
        timed_out = true;
      by_workers += e - b;
      cv.notify_all();
    });
    EXPECT_FALSE(timed_out) << threads << " threads";
    EXPECT_EQ(by_caller + by_workers, n);
    EXPECT_GE(by_caller, n - (threads - 1));
  }
}

using thread_pool_internal::ModeChooser;

// A ModeChooser driven by calls that take split_ns when split and serial_ns on the caller alone.
struct ChooserRun {
  ModeChooser chooser;
  int64_t now = 0;
  // Runs `windows` windows of calls; returns the fraction of them that ran serially.
  double Windows(int64_t split_ns, int64_t serial_ns, int windows) {
    const int calls = windows * ModeChooser::kWindowCalls;
    int serial = 0;
    for (int i = 0; i < calls; ++i) {
      const bool s = chooser.Serial(now);
      serial += s;
      now += s ? serial_ns : split_ns;
      chooser.Done(now);
    }
    return static_cast<double>(serial) / calls;
  }
};

TEST(ModeChooser, KeepsTheSplitWhileItIsFasterAndProbesRarely) {
  ChooserRun r;
  r.Windows(10, 17, 200);
  EXPECT_FALSE(r.chooser.serial_mode());
  // Once settled, one probe window every kMaxInterval windows.
  const double share = r.Windows(10, 17, 10 * ModeChooser::kMaxInterval);
  EXPECT_GT(share, 0.0);
  EXPECT_LE(share, 1.0 / ModeChooser::kMaxInterval + 1e-9);
}

TEST(ModeChooser, GoesSerialWhenTheSplitIsSlowerAndBackWhenItIsFasterAgain) {
  ChooserRun r;
  r.Windows(10, 17, 20);
  EXPECT_FALSE(r.chooser.serial_mode());
  // A busy neighbour: split calls now wait for a descheduled worker.
  r.Windows(40, 17, ModeChooser::kMaxInterval + 2);
  EXPECT_TRUE(r.chooser.serial_mode());
  EXPECT_GT(r.Windows(40, 17, 20), 0.8);
  // The neighbour is gone: within one probe interval the split is back.
  r.Windows(10, 17, ModeChooser::kMaxInterval + 2);
  EXPECT_FALSE(r.chooser.serial_mode());
  EXPECT_LT(r.Windows(10, 17, 20), 0.2);
}

// Runs f on a thread whose affinity mask holds only the first CPU of this one's.
template <class F>
void OnOneCpu(F f) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  int first = 0;
  while (!CPU_ISSET(first, &all)) ++first;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    f();
  });
  t.join();
}

TEST(DefaultThreadCount, HonoursTheAffinityMask) {
  cpu_set_t all;
  CPU_ZERO(&all);
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  const int here = DefaultThreadCount();
  EXPECT_GE(here, 1);
  EXPECT_LE(here, CPU_COUNT(&all));
  OnOneCpu([] {
    EXPECT_EQ(DefaultThreadCount(), 1);
    ThreadPool pool(0);
    EXPECT_EQ(pool.num_threads(), 1);
  });
}

TEST(DefaultThreadCount, ExplicitCountIsKeptEvenOnOneCpu) {
  OnOneCpu([] {
    ThreadPool pool(3);
    EXPECT_EQ(pool.num_threads(), 3);
    std::vector<std::atomic<int>> hits(100);
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  });
}

TEST(DefaultThreadCount, CgroupQuotaRoundsUp) {
  using thread_pool_internal::CfsQuotaLimit;
  using thread_pool_internal::CpuMaxLimit;
  EXPECT_EQ(CpuMaxLimit("max 100000\n"), 0);
  EXPECT_EQ(CpuMaxLimit("max"), 0);
  EXPECT_EQ(CpuMaxLimit(""), 0);
  EXPECT_EQ(CpuMaxLimit("100000 100000\n"), 1);
  EXPECT_EQ(CpuMaxLimit("150000 100000"), 2);
  EXPECT_EQ(CpuMaxLimit("50000 100000"), 1);
  EXPECT_EQ(CpuMaxLimit("400000 100000\n"), 4);
  EXPECT_EQ(CpuMaxLimit("garbage 100000"), 0);
  EXPECT_EQ(CfsQuotaLimit(-1, 100000), 0);
  EXPECT_EQ(CfsQuotaLimit(250000, 100000), 3);
  EXPECT_EQ(CfsQuotaLimit(1000, 100000), 1);
  EXPECT_EQ(CfsQuotaLimit(100000, 0), 0);
}

// A model's logits and states, bit for bit, for 1 thread and for more, including more threads
// than cores: every output is computed by one chain whoever computes it. Prefill rows and widths
// large enough that the element-wise ops are split too.
void ExpectSameForEveryThreadCount(const std::string& dir) {
  std::vector<float> ref_logits, ref_decode;
  std::string ref_state;
  for (int threads : {1, 2, 3, 2 * Cores() + 1}) {
    ModelOptions o;
    o.num_threads = threads;
    o.max_step_tokens = 96;
    auto model = LoadModel(dir, o);
    ASSERT_TRUE(model.ok()) << model.status();
    const int v = (*model)->config().vocab_size;
    const auto prompt = retain::testing::RandomTokens(200, v, 5);
    void* states = *(*model)->AllocateStates(3);
    std::vector<void*> ptrs;
    for (int i = 0; i < 3; ++i) ptrs.push_back(static_cast<char*>(states) + (*model)->state_bytes() * i);
    std::vector<float> logits(prompt.size() * v);
    SequenceInput s{prompt, ptrs[0], true};
    ASSERT_TRUE((*model)->Forward({&s, 1}, absl::MakeSpan(logits)).ok());
    const std::string snap = *(*model)->ExportState(ptrs[0]);
    for (int i = 1; i < 3; ++i) ASSERT_TRUE((*model)->ImportState(snap, ptrs[i]).ok());
    std::vector<float> decode(3 * v);
    for (int step = 0; step < 4; ++step) {
      const auto toks = retain::testing::RandomTokens(3, v, 50 + step);
      ASSERT_TRUE((*model)->Decode(toks, ptrs, absl::MakeSpan(decode)).ok());
    }
    std::string state;
    for (void* p : ptrs) state += *(*model)->ExportState(p);
    if (threads == 1) {
      ref_logits = logits, ref_decode = decode, ref_state = state;
      continue;
    }
    EXPECT_EQ(0, std::memcmp(logits.data(), ref_logits.data(), logits.size() * sizeof(float))) << threads << " threads";
    EXPECT_EQ(0, std::memcmp(decode.data(), ref_decode.data(), decode.size() * sizeof(float))) << threads << " threads";
    EXPECT_TRUE(state == ref_state) << threads << " threads";
  }
}

TEST(ThreadCountInvariance, Rwkv7) {
  ExpectSameForEveryThreadCount(
      retain::testing::WriteModelDir("pool-rwkv7", retain::testing::RandomRwkv7(2, 256, 64, 300, 896, 21)));
}

TEST(ThreadCountInvariance, RetNet) {
  auto m = retain::testing::RandomRetNet(retain::testing::RetNetLayout::kFlaSplitMlp, {2, 256, 4, 512, 512, 300}, 22);
  ExpectSameForEveryThreadCount(retain::testing::WriteModelDir("pool-retnet", m.tensors, m.config_json));
}

TEST(ThreadCountInvariance, TransNormer) {
  auto m = retain::testing::RandomTransNormer({2, 256, 4, 640, 300, {1, 0}}, 23);
  ExpectSameForEveryThreadCount(retain::testing::WriteModelDir("pool-transnormer", m.tensors, m.config_json));
}

}  // namespace
}  // namespace retain::engine
