#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "server/grpc_status.h"

namespace retain::server {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Histogram;

const Histogram::BucketBoundaries kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                                  1,     2.5,   5,    7.5,  10,   20,   40,   80,  160, 640};
const Histogram::BucketBoundaries kItlBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15,
                                                 0.2,   0.3,    0.4,   0.5,  0.75,  1,    2.5,   5,   10};
const Histogram::BucketBoundaries kDurationBuckets = {0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1,   1.5, 2,   2.5,  5,    10,
                                                      15,   20,   30,  40,  50,  60,  120, 240, 480, 960, 1920, 7680};
const Histogram::BucketBoundaries kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
const Histogram::BucketBoundaries kRestoreBuckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1};
const Histogram::BucketBoundaries kStepBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                  0.1,    0.25,  0.5,    1,     2.5,  5};

constexpr engine::FinishReason kReasons[] = {engine::FinishReason::kLength, engine::FinishReason::kStop,
                                             engine::FinishReason::kEos, engine::FinishReason::kCancelled,
                                             engine::FinishReason::kDeadline};

struct Families {
  explicit Families(prometheus::Registry& r)
      : finished(prometheus::BuildCounter()
                     .Name("retain_requests_finished_total")
                     .Help("Generate requests finished, by reason (length, stop, eos, cancelled, deadline)")
                     .Register(r)),
        errors(prometheus::BuildCounter()
                   .Name("retain_request_errors_total")
                   .Help("RPCs that returned a gRPC error, by status code")
                   .Register(r)),
        prompt_tokens(prometheus::BuildCounter()
                          .Name("retain_prompt_tokens_total")
                          .Help("Prompt tokens consumed (prefilled)")
                          .Register(r)),
        generation_tokens(prometheus::BuildCounter()
                              .Name("retain_generation_tokens_total")
                              .Help("Generated tokens delivered to clients")
                              .Register(r)),
        evictions(prometheus::BuildCounter()
                      .Name("retain_evictions_total")
                      .Help("Sessions evicted from the state pool, by reason (lru, ttl)")
                      .Register(r)),
        ttft(prometheus::BuildHistogram()
                 .Name("retain_time_to_first_token_seconds")
                 .Help("Time from a request's arrival to its first generated token")
                 .Register(r)),
        itl(prometheus::BuildHistogram()
                .Name("retain_inter_token_latency_seconds")
                .Help("Time between two consecutive tokens of one request")
                .Register(r)),
        duration(prometheus::BuildHistogram()
                     .Name("retain_request_duration_seconds")
                     .Help("Time from a request's arrival to its end")
                     .Register(r)),
        queue(prometheus::BuildHistogram()
                  .Name("retain_request_queue_seconds")
                  .Help("Time a request waited for a place in the batch")
                  .Register(r)),
        batch(prometheus::BuildHistogram()
                  .Name("retain_decode_batch_size")
                  .Help("Requests stepped together in one engine step")
                  .Register(r)),
        step_tokens(prometheus::BuildCounter()
                        .Name("retain_step_tokens_total")
                        .Help("Token rows run through the model by engine steps, by phase (prefill: prompt tokens; "
                              "decode: one per sequence and step)")
                        .Register(r)),
        step(prometheus::BuildHistogram()
                 .Name("retain_step_duration_seconds")
                 .Help("Duration of one engine step (one batched forward pass and sampling)")
                 .Register(r)),
        restore(prometheus::BuildHistogram()
                    .Name("retain_tier_restore_seconds")
                    .Help("Time to bring a spilled session back into the state pool (take it from its tier, check "
                          "format, checksum and model, write the slot), by the tier it came from")
                    .Register(r)) {}

  Family<Counter>& finished;
  Family<Counter>& errors;
  Family<Counter>& prompt_tokens;
  Family<Counter>& generation_tokens;
  Family<Counter>& evictions;
  Family<Histogram>& ttft;
  Family<Histogram>& itl;
  Family<Histogram>& duration;
  Family<Histogram>& queue;
  Family<Histogram>& batch;
  Family<Counter>& step_tokens;
  Family<Histogram>& step;
  Family<Histogram>& restore;
};

// One model's series, resolved once so the step thread only increments and observes.
class ModelObserver final : public engine::EngineObserver {
 public:
  ModelObserver(Families& f, const std::string& model, bool http)
      : f_(f),
        model_(model),
        lru_(f.evictions.Add({{"model", model}, {"reason", "lru"}})),
        ttl_(f.evictions.Add({{"model", model}, {"reason", "ttl"}})),
        ttft_(f.ttft.Add({{"model", model}}, kTtftBuckets)),
        itl_(f.itl.Add({{"model", model}}, kItlBuckets)),
        duration_(f.duration.Add({{"model", model}}, kDurationBuckets)),
        queue_(f.queue.Add({{"model", model}}, kDurationBuckets)),
        batch_(f.batch.Add({{"model", model}}, kBatchBuckets)),
        prefill_rows_(f.step_tokens.Add({{"model", model}, {"phase", "prefill"}})),
        decode_rows_(f.step_tokens.Add({{"model", model}, {"phase", "decode"}})),
        step_(f.step.Add({{"model", model}}, kStepBuckets)) {
    // Anonymous-tenant series exist from the start, as before tenants (a tenant's appear at its
    // first request).
    std::vector<std::string> protocols = {ProtocolName(Protocol::kGrpc)};
    if (http) protocols.push_back(ProtocolName(Protocol::kHttp));
    for (const std::string& p : protocols) {
      for (engine::FinishReason r : kReasons)
        f.finished.Add({{"model", model}, {"protocol", p}, {"reason", engine::FinishReasonName(r)}});
      // Every code's series from the start at 0: rate() and increase() need a sample before the
      // first error of a code, or that error would never show in an alert.
      for (int code = 1; code <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++code)
        f.errors.Add({{"model", model}, {"protocol", p}, {"code", StatusCodeLabel(static_cast<absl::StatusCode>(code))}});
    }
    f.prompt_tokens.Add({{"model", model}});
    f.generation_tokens.Add({{"model", model}});
  }

  // The finished-request and token counters carry the tenant, which the engine does not know:
  // the server counts them (Metrics::RecordFinished).
  void OnRequestFinished(const engine::FinishedEvent& e) override {
    if (e.generated_tokens > 0) ttft_.Observe(e.time_to_first_token_seconds);
    duration_.Observe(e.total_seconds);
    queue_.Observe(e.queue_seconds);
  }
  void OnStep(int batch, int decode_rows, int prefill_tokens, double seconds) override {
    batch_.Observe(batch);
    decode_rows_.Increment(decode_rows);
    prefill_rows_.Increment(prefill_tokens);
    step_.Observe(seconds);
  }
  void OnInterTokenLatency(double seconds) override { itl_.Observe(seconds); }
  void OnRestore(const std::string& tier, double seconds) override {
    f_.restore.Add({{"model", model_}, {"tier", tier}}, kRestoreBuckets).Observe(seconds);
  }
  void OnEviction(const char* reason) override {
    const absl::string_view r = reason;
    if (r == "lru") {
      lru_.Increment();
    } else if (r == "ttl") {
      ttl_.Increment();
    } else {
      f_.evictions.Add({{"model", model_}, {"reason", std::string(r)}}).Increment();
    }
  }

 private:
  Families& f_;
  const std::string model_;
  Counter& lru_;
  Counter& ttl_;
  Histogram& ttft_;
  Histogram& itl_;
  Histogram& duration_;
  Histogram& queue_;
  Histogram& batch_;
  Counter& prefill_rows_;
  Counter& decode_rows_;
  Histogram& step_;
};

// The gauges, computed from Engine::Stats() at scrape time.
class StatsCollectable final : public prometheus::Collectable {
 public:
  void Set(Metrics::StatsSource source) {
    std::lock_guard<std::mutex> lock(mu_);
    source_ = std::move(source);
  }
  void SetSessions(Metrics::SessionsSource source) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_ = std::move(source);
  }
  void SetTiers(Metrics::TierSource source) {
    std::lock_guard<std::mutex> lock(mu_);
    tiers_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mu_);  // held through the scrape: Set(nullptr) waits for it
    if (!source_) return {};
    const auto stats = source_();
    std::vector<prometheus::MetricFamily> out;
    auto series = [&](const char* name, const char* help, prometheus::MetricType type, auto value) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = type;
      for (const auto& [model, s] : stats) {
        prometheus::ClientMetric m;
        m.label.push_back({"model", model});
        (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = value(s);
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    };
    auto family = [&](const char* name, const char* help, auto value) {
      series(name, help, prometheus::MetricType::Gauge, value);
    };
    // The engine's own running totals, exposed as counters (they only grow).
    auto counter = [&](const char* name, const char* help, auto value) {
      series(name, help, prometheus::MetricType::Counter, value);
    };
    using S = engine::EngineStats;
    family("retain_requests_running", "Requests in the running batch", [](const S& s) { return double(s.running); });
    family("retain_requests_waiting", "Requests queued for a place", [](const S& s) { return double(s.waiting); });
    if (sessions_) {  // by tenant: (model, tenant) pairs with live sessions
      prometheus::MetricFamily f;
      f.name = "retain_sessions";
      f.help = "Live named sessions";
      f.type = prometheus::MetricType::Gauge;
      for (const auto& [model, tenant, n] : sessions_()) {
        prometheus::ClientMetric m;
        m.label.push_back({"model", model});
        m.label.push_back({"tenant", tenant});
        m.gauge.value = n;
        f.metric.push_back(std::move(m));
      }
      out.push_back(std::move(f));
    } else {
      family("retain_sessions", "Live named sessions", [](const S& s) { return double(s.sessions); });
    }
    family("retain_state_pool_bytes_used", "State pool bytes held by sessions and running requests",
           [](const S& s) { return double(s.slots_used) * double(s.state_bytes); });
    family("retain_state_pool_bytes_capacity", "State pool bytes allocated (slots x state bytes)",
           [](const S& s) { return double(s.slots_total) * double(s.state_bytes); });
    family("retain_checkpoint_bytes", "Host memory held by session checkpoints (rewind, fork at a position)",
           [](const S& s) { return double(s.checkpoint_bytes); });
    family("retain_checkpoints", "Session checkpoints held", [](const S& s) { return double(s.checkpoints); });
    counter("retain_checkpoints_dropped_total",
            "Checkpoints dropped, oldest first, for --checkpoint-budget-bytes or --max-checkpoints-per-session",
            [](const S& s) { return double(s.checkpoints_dropped); });
    counter("retain_prefix_cache_hits_total", "Fresh-state prompts served a cached prefix state",
            [](const S& s) { return double(s.prefix_hits); });
    counter("retain_prefix_cache_misses_total", "Fresh-state prompts with no cached prefix",
            [](const S& s) { return double(s.prefix_misses); });
    counter("retain_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache instead of prefilled",
            [](const S& s) { return double(s.prefix_hit_tokens); });
    counter("retain_prefix_cache_evictions_total", "Prefix cache entries evicted (least recently used) for room",
            [](const S& s) { return double(s.prefix_evictions); });
    family("retain_prefix_cache_bytes", "Host memory held by the prefix cache",
           [](const S& s) { return double(s.prefix_cache_bytes); });
    family("retain_prefix_cache_entries", "Prefix states cached", [](const S& s) { return double(s.prefix_cache_entries); });
    CollectTiers(stats, &out);
    return out;
  }

 private:
  // retain_tier_*: the device tier summed over the models' pools, then each tier below it.
  template <typename Stats>
  void CollectTiers(const Stats& stats, std::vector<prometheus::MetricFamily>* out) const {
    std::vector<std::pair<std::string, TierStats>> tiers;
    TierStats device;
    for (const auto& [model, s] : stats) {
      device.sessions += s.sessions_resident;
      device.bytes += static_cast<int64_t>(s.slots_used) * static_cast<int64_t>(s.state_bytes);
    }
    tiers.emplace_back("device", device);
    if (tiers_)
      for (auto& t : tiers_()) tiers.push_back(std::move(t));
    // which: 2 every tier, 1 those below the device pool, 0 the shared ones (Redis). A gauge a
    // tier does not report (negative) is left out.
    auto series = [&](const char* name, const char* help, prometheus::MetricType type, int which, auto value) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = type;
      for (const auto& [tier, t] : tiers) {
        if ((tier == "device" && which < 2) || (which == 0 && t.up < 0)) continue;
        if (type == prometheus::MetricType::Gauge && value(t) < 0) continue;
        prometheus::ClientMetric m;
        m.label.push_back({"tier", tier});
        (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = value(t);
        f.metric.push_back(std::move(m));
      }
      out->push_back(std::move(f));
    };
    constexpr auto kGauge = prometheus::MetricType::Gauge;
    constexpr auto kCounter = prometheus::MetricType::Counter;
    series("retain_tier_sessions", "Named sessions whose state lives in the tier", kGauge, 2,
           [](const TierStats& t) { return double(t.sessions); });
    series("retain_tier_bytes", "Bytes of session state the tier holds", kGauge, 2,
           [](const TierStats& t) { return double(t.bytes); });
    series("retain_tier_spills_total",
           "Session states written into the tier (idle sessions spilled for a device slot; for redis, every write)",
           kCounter, 1,
           [](const TierStats& t) { return double(t.spills); });
    series("retain_tier_restores_total", "Spilled sessions taken back into the state pool", kCounter, 1,
           [](const TierStats& t) { return double(t.restores); });
    series("retain_tier_misses_total", "Lookups of a session neither the pool nor the tier held", kCounter, 1,
           [](const TierStats& t) { return double(t.misses); });
    series("retain_tier_dropped_total", "Sessions dropped from the tier for its budget (lost)", kCounter, 1,
           [](const TierStats& t) { return double(t.dropped); });
    series("retain_tier_refused_total", "Spilled records that failed their check on restore (never served)", kCounter,
           1, [](const TierStats& t) { return double(t.refused); });
    series("retain_tier_up", "1 when the shared tier answers, 0 while it is down (the server serves what it holds)",
           kGauge, 0, [](const TierStats& t) { return double(t.up); });
    series("retain_tier_pending_writes", "Writes queued for the shared tier (the --redis-async window)", kGauge, 0,
           [](const TierStats& t) { return double(t.pending_writes); });
    series("retain_tier_write_failures_total", "Writes to the shared tier that failed (redone once it is back)",
           kCounter, 0, [](const TierStats& t) { return double(t.write_failures); });
    series("retain_tier_lease_conflicts_total",
           "Requests refused (FAILED_PRECONDITION) because another replica held the session's lease", kCounter, 0,
           [](const TierStats& t) { return double(t.lease_conflicts); });
    series("retain_tier_unleased_total", "Requests served without a lease while the shared tier was down", kCounter,
           0, [](const TierStats& t) { return double(t.unleased); });
    series("retain_tier_prefetched_restores_total",
           "Restores whose record was read from the shared tier before the engine's lock was taken", kCounter, 0,
           [](const TierStats& t) { return double(t.prefetched); });
  }

  mutable std::mutex mu_;
  Metrics::StatsSource source_;
  Metrics::SessionsSource sessions_;
  Metrics::TierSource tiers_;
};

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  Families families{*registry};
  std::shared_ptr<StatsCollectable> gauges = std::make_shared<StatsCollectable>();
  std::vector<std::unique_ptr<ModelObserver>> observers;
  // Last: destroyed first, so no scrape runs while the rest goes away.
  std::unique_ptr<prometheus::Exposer> exposer;
};

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Metrics::~Metrics() = default;

namespace {
// Why binding `listen` (HOST:PORT, IPv4 or [IPv6]) fails, from the kernel; "" when it would not fail
// or the address cannot be parsed here. civetweb only says "null context ... Possible problem
// binding to port", so after it throws, a bind of our own names the reason.
std::string BindError(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return "";
  std::string host = listen.substr(0, colon);
  const int port = std::atoi(listen.c_str() + colon + 1);
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) return "";
    len = sizeof(*a6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    if (host.empty() || host == "0.0.0.0") {
      a4->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
      return "";
    }
    len = sizeof(*a4);
  }
  const int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as civetweb does
  std::string why;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) why = std::strerror(errno);
  close(fd);
  return why;
}
}  // namespace

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Create(const std::string& listen) {
  auto impl = std::make_unique<Impl>();
  if (!listen.empty()) {
    try {  // civetweb reports a failed bind by throwing
      impl->exposer = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
    } catch (const std::exception& e) {
      const std::string why = BindError(listen);
      return absl::UnavailableError(absl::StrCat(
          "--metrics-listen ", listen, ": cannot listen: ", why.empty() ? e.what() : why,
          " (another server there? give another HOST:PORT, port 0 for any free one, or \"\" for no metrics)"));
    }
    impl->exposer->RegisterCollectable(impl->registry);
    impl->exposer->RegisterCollectable(impl->gauges);
  }
  return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

int Metrics::port() const {
  if (!impl_->exposer) return 0;
  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

engine::EngineObserver* Metrics::AddModel(const std::string& model) {
  impl_->observers.push_back(std::make_unique<ModelObserver>(impl_->families, model, http_));
  return impl_->observers.back().get();
}

void Metrics::SetStatsSource(StatsSource source) { impl_->gauges->Set(std::move(source)); }

void Metrics::SetSessionsSource(SessionsSource source) { impl_->gauges->SetSessions(std::move(source)); }

void Metrics::SetTierSource(TierSource source) { impl_->gauges->SetTiers(std::move(source)); }

const char* ProtocolName(Protocol p) { return p == Protocol::kHttp ? "http" : "grpc"; }

void Metrics::RecordFinished(const std::string& model, const std::string& tenant, Protocol protocol,
                             const engine::FinishedEvent& e) {
  std::map<std::string, std::string> labels = {{"model", model}};
  if (!tenant.empty()) labels["tenant"] = tenant;
  Families& f = impl_->families;
  f.prompt_tokens.Add(labels).Increment(e.prompt_tokens);
  f.generation_tokens.Add(labels).Increment(e.generated_tokens);
  labels["reason"] = engine::FinishReasonName(e.reason);
  labels["protocol"] = ProtocolName(protocol);
  f.finished.Add(labels).Increment();
}

void Metrics::RecordError(const std::string& model, absl::StatusCode code, Protocol protocol) {
  if (code == absl::StatusCode::kOk) return;
  impl_->families.errors.Add({{"model", model}, {"protocol", ProtocolName(protocol)}, {"code", StatusCodeLabel(code)}})
      .Increment();
}

}  // namespace retain::server
