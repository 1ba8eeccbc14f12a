// Machine limits. The FMA loops carry target attributes so the binary runs on any x86-64 and uses
// the widest unit this CPU has.
#include "bench/machine_limits.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "engine/kernels/cpu/isa.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr long kFmaIters = 200'000'000 / 16;

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));

__attribute__((target("avx512f,fma"))) float FmaChains512(long iters) {
  v16 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = v16{} + 1.0f + i * 1e-3f;
  const v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = acc[i] * a + b;
  float s = 0;
  for (int i = 0; i < 16; ++i) s += acc[i][0];
  return s;
}

__attribute__((target("avx2,fma"))) float FmaChains256(long iters) {
  v8 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = v8{} + 1.0f + i * 1e-3f;
  const v8 a = v8{} + 0.999999f, b = v8{} + 1e-7f;
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = acc[i] * a + b;
  float s = 0;
  for (int i = 0; i < 16; ++i) s += acc[i][0];
  return s;
}

template <typename F>
double BestSeconds(int threads, int reps, F body) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    std::vector<std::thread> ts;
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) ts.emplace_back(body, t);
    for (auto& t : ts) t.join();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

MachineLimits MeasureMachineLimits(int threads, double read_gib) {
  MachineLimits out;
  const auto isa = kernels::cpu::DetectedIsa();
  const int lanes = isa == kernels::cpu::Isa::kAvx512 ? 16 : 8;
  out.isa = isa == kernels::cpu::Isa::kAvx512 ? "avx512" : "avx2";
  std::vector<float> sink(threads);
  const double fma_s = BestSeconds(threads, 3, [&](int t) {
    sink[t] = lanes == 16 ? FmaChains512(kFmaIters) : FmaChains256(kFmaIters);
  });
  out.fma_gflops = 2.0 * lanes * 16 * kFmaIters * threads / fma_s / 1e9;

  const size_t per_thread = static_cast<size_t>(read_gib * (1 << 30) / threads / 64) * 16;
  std::vector<float*> chunks(threads);
  BestSeconds(threads, 1, [&](int t) {  // first touch by the thread that will read it
    chunks[t] = static_cast<float*>(std::aligned_alloc(64, per_thread * sizeof(float)));
    for (size_t i = 0; i < per_thread; ++i) chunks[t][i] = 1.0f;
  });
  const double read_s = BestSeconds(threads, 4, [&](int t) {
    v8 acc[8] = {};
    const float* p = chunks[t];
    for (size_t i = 0; i < per_thread; i += 64)
      for (int j = 0; j < 8; ++j) {
        v8 v;
        std::memcpy(&v, p + i + 8 * j, sizeof v);
        acc[j] += v;
      }
    float s = 0;
    for (auto& a : acc) s += a[0];
    sink[t] = s;
  });
  out.read_gbps = static_cast<double>(per_thread) * sizeof(float) * threads / read_s / 1e9;
  for (float* c : chunks) std::free(c);
  return out;
}

}  // namespace retain::bench
