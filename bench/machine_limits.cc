// Machine limits. The FMA loops carry target attributes so the binary runs on any x86-64 and uses
// the widest unit this CPU has.
#include "bench/machine_limits.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/kernels/cpu/isa.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Independent FMA chains, fully unrolled so they live in registers: kChains512 × 4-cycle latency
// covers two FMA pipes with room to spare. AVX2 has 16 vector registers, two of which hold the
// constants: 16 chains there spilled three to the stack and measured half the peak (120 instead of
// 226 GFLOP/s on this machine), so it runs 12. Intrinsics, not vector extensions, so the compiler
// cannot split the chains.
constexpr int kChains512 = 16, kChains256 = 12;

// Enough of a result to keep the loops alive (_mm512_reduce_add_ps trips a false GCC 12
// "used uninitialized" warning).
__attribute__((target("avx512f"))) float Lanes0And15(__m512 v) {
  float out[16];
  _mm512_storeu_ps(out, v);
  return out[0] + out[15];
}

__attribute__((target("avx512f,fma"))) float FmaChains512(long iters) {
  __m512 acc[kChains512];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
#pragma GCC unroll 16
  for (int i = 0; i < kChains512; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains512; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < kChains512; ++i) s = _mm512_add_ps(s, acc[i]);
  return Lanes0And15(s);
}

__attribute__((target("avx2,fma"))) float FmaChains256(long iters) {
  __m256 acc[kChains256];
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
#pragma GCC unroll 16
  for (int i = 0; i < kChains256; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains256; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < kChains256; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

// Read-only sum with A independent vector accumulators, each taking whole 64-byte lines (two 32-byte
// halves for AVX2). Which A streams fastest varies on this Zen 5 host: on a quiet host 1 and 2 read
// 5-8 % more than 8 over 1 GiB (1 read 30 % more on one core); under a neighbour's load 2 read less.
// So the limit is the best over several A.
template <int A>
__attribute__((target("avx512f"))) float ReadSum512(const float* p, size_t n) {
  __m512 acc[A];
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) acc[j] = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16 * A) {
#pragma GCC unroll 8
    for (int j = 0; j < A; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(p + i + 16 * j));
  }
  for (int j = 1; j < A; ++j) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  return Lanes0And15(acc[0]);
}

template <int A>
__attribute__((target("avx2"))) float ReadSum256(const float* p, size_t n) {
  __m256 acc[A];
#pragma GCC unroll 8
  for (int j = 0; j < A; ++j) acc[j] = _mm256_setzero_ps();
  for (size_t i = 0; i < n; i += 16 * A) {
#pragma GCC unroll 8
    for (int j = 0; j < A; ++j) {
      acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(p + i + 16 * j));
      acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(p + i + 16 * j + 8));
    }
  }
  for (int j = 1; j < A; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
  float out[8];
  _mm256_storeu_ps(out, acc[0]);
  return out[0] + out[7];
}

using ReadFn = float (*)(const float*, size_t);
constexpr ReadFn kReads512[] = {ReadSum512<1>, ReadSum512<2>, ReadSum512<8>};
constexpr ReadFn kReads256[] = {ReadSum256<1>, ReadSum256<2>, ReadSum256<8>};

// Best time of `reps` runs of body(t) on every thread t at once, on persistent threads (the engine's
// pool): threads created per run measured 10-20 % lower medians, some runs starting with both on one
// core until the scheduler spread them.
template <typename F>
double BestSeconds(engine::ThreadPool& pool, int reps, F body) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    pool.ParallelFor(pool.num_threads(), 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) body(static_cast<int>(t));
    });
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

LimitsProbe::LimitsProbe(int threads, double read_gib)
    : threads_(threads),
      per_thread_(static_cast<size_t>(read_gib * (1 << 30) / threads / 512) * 128),
      chunks_(threads),
      pool_(std::make_unique<engine::ThreadPool>(threads)) {
  BestSeconds(*pool_, 1, [&](int t) {  // first touch by the thread that will read it
    // On 2 MiB pages where the kernel allows, as the engine's weights are: the limit is what the
    // best read of this machine achieves.
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t bytes = (per_thread_ * sizeof(float) + kHuge - 1) / kHuge * kHuge;
    chunks_[t] = static_cast<float*>(std::aligned_alloc(kHuge, bytes));
    madvise(chunks_[t], bytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < per_thread_; ++i) chunks_[t][i] = 1.0f;
  });
}

LimitsProbe::~LimitsProbe() {
  for (float* c : chunks_) std::free(c);
}

size_t LimitsProbe::resident_bytes() const { return per_thread_ * sizeof(float) * threads_; }

MachineLimits LimitsProbe::Measure(long fma_iters, int reps) {
  MachineLimits out;
  const auto isa = kernels::cpu::DetectedIsa();
  const int lanes = isa == kernels::cpu::Isa::kAvx512 ? 16 : 8;
  out.isa = isa == kernels::cpu::Isa::kAvx512 ? "avx512" : "avx2";
  std::vector<float> sink(threads_);
  const double fma_s = BestSeconds(*pool_, reps, [&](int t) {
    sink[t] = lanes == 16 ? FmaChains512(fma_iters) : FmaChains256(fma_iters);
  });
  out.fma_gflops = 2.0 * lanes * (lanes == 16 ? kChains512 : kChains256) * fma_iters * threads_ / fma_s / 1e9;
  double read_s = 1e30;
  for (int r = 0; r < 3; ++r) {
    const ReadFn read = lanes == 16 ? kReads512[r] : kReads256[r];
    read_s = std::min(read_s, BestSeconds(*pool_, reps, [&](int t) { sink[t] = read(chunks_[t], per_thread_); }));
  }
  out.read_gbps = static_cast<double>(resident_bytes()) / read_s / 1e9;
  return out;
}

}  // namespace retain::bench
