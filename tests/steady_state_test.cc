// A warmed-up decode step allocates no memory, creates no thread and takes no mutex: counted by
// replacing operator new and interposing pthread_mutex_lock / pthread_create in this binary.
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <new>
#include <random>

#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/engine/serving.h"
#include "retain/engine/tokenizer.h"
#include "tests/testing/model_files.h"
#include "tests/testing/paths.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0}, g_locks{0}, g_threads{0};
}  // namespace

void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

extern "C" int pthread_mutex_lock(pthread_mutex_t* m) {
  using Fn = int (*)(pthread_mutex_t*);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  if (g_counting.load(std::memory_order_relaxed)) g_locks.fetch_add(1);
  return real(m);
}

extern "C" int pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  using Fn = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pthread_create"));
  if (g_counting.load(std::memory_order_relaxed)) g_threads.fetch_add(1);
  return real(t, a, f, arg);
}

namespace retain::engine {
namespace {

class SteadyState : public ::testing::TestWithParam<std::string> {};

TEST_P(SteadyState, DecodeStepAllocatesNothingLocksNothingStartsNoThread) {
  std::string dir = GetParam();
  if (dir == "random-rwkv7-h64") {
    dir = retain::testing::WriteModelDir("steady-h64", retain::testing::RandomRwkv7(2, 128, 64, 300, 448, 5));
  } else {
    dir = retain::testing::KitDir(dir);
  }
  ModelOptions o;
  o.num_threads = 2;
  auto model = LoadModel(dir, o);
  ASSERT_TRUE(model.ok()) << model.status();
  const int batch = 4, v = (*model)->config().vocab_size;
  void* base = *(*model)->AllocateStates(batch);
  std::vector<void*> states;
  for (int i = 0; i < batch; ++i) states.push_back(static_cast<char*>(base) + (*model)->state_bytes() * i);
  std::vector<float> logits(batch * v);
  std::vector<TokenId> tokens(batch);
  std::mt19937 rng(1);
  auto step = [&] {
    for (auto& t : tokens) t = static_cast<TokenId>(rng() % v);
    return (*model)->Decode(tokens, states, absl::MakeSpan(logits));
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(step().ok());  // warm-up: buffers reach their size
  g_allocs = g_locks = g_threads = 0;
  g_counting = true;
  absl::Status status;
  for (int i = 0; i < 20 && status.ok(); ++i) status = step();
  g_counting = false;
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(g_allocs.load(), 0) << "allocations in 20 decode steps";
  EXPECT_EQ(g_locks.load(), 0) << "mutex locks in 20 decode steps";
  EXPECT_EQ(g_threads.load(), 0) << "threads created in 20 decode steps";
}

INSTANTIATE_TEST_SUITE_P(Models, SteadyState,
                         ::testing::Values("rwkv7-tiny", "rwkv7-tiny-bf16", "rwkv4-tiny", "random-rwkv7-h64",
                                           "retnet-tiny", "transnormer-tiny"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// The serving engine's step thread, decoding four streams with text: sampling, the text stream and
// delivery to the sinks allocate nothing either once the requests run (it does take its mutex).
// The sinks below allocate nothing themselves; counting covers the steps from the 20th token of
// the first stream, once all four run, to 100 tokens later.
class CountingSink final : public GenerateSink {
 public:
  explicit CountingSink(bool drives) : drives_(drives) {}
  void OnStarted(const StartedEvent&) override {}
  bool OnToken(TokenEvent&& e) override {
    const int n = ++tokens_;
    if (n == 1) ++g_streaming;
    // Count only once every stream runs: admitting one allocates (its events, its state's id), and
    // on a busy machine the later Submits can come after the first stream's 20th token.
    if (drives_ && start_ == 0 && n >= 20 && g_streaming.load() == kStreams) {
      start_ = n;
      g_counting = true;
    }
    if (drives_ && start_ > 0 && n == start_ + 100) g_counting = false;
    return !e.text.empty() || e.id >= 0;
  }
  static constexpr int kStreams = 4;
  static inline std::atomic<int> g_streaming{0};
  int counted_from() const { return start_; }
  void OnFinished(const FinishedEvent&) override { Done(); }
  void OnError(const absl::Status&) override { Done(); }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return done_; });
  }
  int tokens() const { return tokens_; }

 private:
  void Done() {
    g_counting = false;
    std::lock_guard<std::mutex> l(mu_);
    done_ = true;
    cv_.notify_all();
  }
  const bool drives_;
  std::atomic<int> tokens_{0};
  int start_ = 0;  // the driving stream's token count when counting began
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

// Four streams decoding together on `options`, on named sessions or throw-away states.
void FourStreamsAllocateNothing(const ServingOptions& options, bool named) {
  auto model = LoadModel(retain::testing::DefaultModelDir(), ModelOptions{.num_threads = 2});
  ASSERT_TRUE(model.ok()) << model.status();
  auto tok = LoadModelTokenizer((*model)->config());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto engine = Engine::Create(std::move(*model), std::move(*tok), options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  g_allocs = 0;
  CountingSink::g_streaming = 0;
  std::vector<std::shared_ptr<CountingSink>> sinks;
  for (int i = 0; i < CountingSink::kStreams; ++i) {
    GenerateInput in;
    if (named) {
      auto s = (*engine)->CreateSession();
      ASSERT_TRUE(s.ok());
      in.session_id = s->id;
    }
    in.prompt = {65, 110, 100, static_cast<TokenId>(32 + i)};  // "And" and a different last byte each
    in.sampling.temperature = 0;
    in.max_tokens = 2000;
    in.ignore_eos = true;
    sinks.push_back(std::make_shared<CountingSink>(i == 0));
    ASSERT_TRUE((*engine)->Submit(std::move(in), sinks.back()).ok());
  }
  for (auto& s : sinks) s->Wait();
  ASSERT_GT(sinks[0]->counted_from(), 0) << "the four streams never ran together";
  EXPECT_GE(sinks[0]->tokens(), sinks[0]->counted_from() + 100);
  EXPECT_EQ(g_allocs.load(), 0) << "allocations in 100 serving steps of 4 streams";
}

TEST(SteadyState, ServingDecodeStepsAllocateNothing) { FourStreamsAllocateNothing(ServingOptions{}, false); }

// Named sessions record every token they consume (their history, for rewind) and take checkpoints
// at the ends of requests; the prefix cache copies states at prompt ends: none of it allocates
// while the streams decode.
TEST(SteadyState, NamedSessionsWithCheckpointsAndThePrefixCacheDecodeWithoutAllocating) {
  ServingOptions o;
  o.checkpoint_interval = 2;
  o.prefix_cache_bytes = size_t{16} << 20;
  FourStreamsAllocateNothing(o, true);
}

TEST(SteadyState, CountersSeeWhatTheyCount) {
  // The interposition works in this binary: otherwise the test above could not fail.
  g_allocs = g_locks = 0;
  g_counting = true;
  auto* p = new int(1);
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&m);
  pthread_mutex_unlock(&m);
  g_counting = false;
  delete p;
  EXPECT_GE(g_allocs.load(), 1);
  EXPECT_GE(g_locks.load(), 1);
}

}  // namespace
}  // namespace retain::engine
