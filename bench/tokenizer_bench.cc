// RWKV World tokenizer throughput (Google Benchmark): encode and decode of mixed prose, CJK,
// accents, emoji and random UTF-8, as bytes per second. Moved here from a timed assertion in
// tests/tokenizer_test.cc: speed is measured, not asserted.
//   retain-tokenizer-bench [--benchmark_* flags]   (vocabulary: RETAIN_TOKENIZER_VOCAB or the tests' copy)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "retain/engine/tokenizer.h"
#include "tests/testing/random_utf8.h"

namespace {

using retain::engine::TokenId;
using retain::engine::Tokenizer;

const Tokenizer* World() {
  static const Tokenizer* tok = [] {
    const char* env = std::getenv("RETAIN_TOKENIZER_VOCAB");
    const std::string path = env != nullptr ? env : RETAIN_TOKENIZER_VOCAB_DEFAULT;
    auto loaded = retain::engine::LoadRwkvWorldTokenizer(path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "retain-tokenizer-bench: %s\n", std::string(loaded.status().message()).c_str());
      std::exit(2);
    }
    return loaded->release();
  }();
  return tok;
}

// The text the old timed test used: two parts prose to one part random code points.
const std::string& Text() {
  static const std::string text = [] {
    std::mt19937 rng(7);
    const std::string prose = "The quick brown fox jumps over the lazy dog. 你好，世界。 café 😀\n";
    std::string t;
    while (t.size() < (8 << 20)) t += t.size() % 3 != 0 ? prose : retain::testing::RandomUtf8(rng, 40);
    return t;
  }();
  return text;
}

void BM_Encode(benchmark::State& state) {
  const std::string& text = Text();
  size_t ids = 0;
  for (auto _ : state) {
    std::vector<TokenId> out = World()->Encode(text);
    ids = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["bytes_per_id"] = static_cast<double>(text.size()) / static_cast<double>(ids);
}
BENCHMARK(BM_Encode)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  const std::string& text = Text();
  const std::vector<TokenId> ids = World()->Encode(text);
  for (auto _ : state) {
    auto out = World()->Decode(ids);
    if (!out.ok() || *out != text) {
      state.SkipWithError("decode does not give the text back");
      break;
    }
    benchmark::DoNotOptimize(out->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
