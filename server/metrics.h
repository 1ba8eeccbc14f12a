// Prometheus metrics of retain-server (prometheus-cpp), served on --metrics-listen at /metrics.
// Names follow Prometheus conventions with a retain_ prefix and a `model` label, mirroring vLLM's
// set where one exists; with --auth-tokens, requests_finished, the token counters and sessions
// also carry a `tenant` label (the tenant's name from the token file, never its token):
// Requests and errors also carry `protocol` (grpc, or http for the OpenAI-compatible front-end):
// sum by (model, reason) over it gives what the series said before the label existed.
//   counters   retain_requests_finished_total{reason,protocol}, retain_request_errors_total{code,protocol},
//              retain_prompt_tokens_total, retain_generation_tokens_total,
//              retain_evictions_total{reason}
//   histograms retain_time_to_first_token_seconds, retain_inter_token_latency_seconds,
//              retain_request_duration_seconds, retain_request_queue_seconds,
//              retain_decode_batch_size, retain_step_duration_seconds
//   tiers      retain_tier_sessions{tier}, retain_tier_bytes{tier} (gauges; tier device, host),
//              retain_tier_{spills,restores,misses,dropped,refused}_total{tier} (host),
//              retain_tier_restore_seconds{model,tier} (histogram)
//   gauges     retain_requests_running, retain_requests_waiting, retain_sessions,
//              retain_state_pool_bytes_used, retain_state_pool_bytes_capacity,
//              retain_checkpoint_bytes, retain_checkpoints, retain_prefix_cache_bytes,
//              retain_prefix_cache_entries
//   engine totals read at scrape time (counters): retain_checkpoints_dropped_total,
//              retain_prefix_cache_{hits,misses,hit_tokens,evictions}_total
// The gauges are read from Engine::Stats() when /metrics is scraped, so an idle server does no
// periodic work. Thread-safe; prometheus-cpp types stay inside metrics.cc.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "retain/engine/serving.h"
#include "server/tier_stats.h"

namespace retain::server {

enum class Protocol { kGrpc, kHttp };
const char* ProtocolName(Protocol p);  // "grpc", "http": the label value

class Metrics {
 public:
  // `listen` HOST:PORT (port 0: any); empty = metrics are recorded but not served. Unavailable
  // when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Metrics>> Create(const std::string& listen);
  ~Metrics();

  // The port /metrics is served on (the bound one when `listen` asked for 0); 0 when off.
  int port() const;

  // The observer to hand to Engine::Create for `model`; owned by this object, which must outlive
  // the engine. Call once per model, before serving starts.
  engine::EngineObserver* AddModel(const std::string& model);

  // Makes every model added from now on also start its `protocol="http"` series at 0 (call before
  // the models load when the HTTP front-end is on; gRPC's always exist).
  void ServeHttp() { http_ = true; }

  // Read at scrape time: (model, stats) for every model. Set once the engines exist; set to
  // nullptr before they are destroyed.
  using StatsSource = std::function<std::vector<std::pair<std::string, engine::EngineStats>>()>;
  void SetStatsSource(StatsSource source);

  // With tenants (--auth-tokens): (model, tenant, live sessions), read at scrape time for
  // retain_sessions{model,tenant} instead of the engines' per-model count. nullptr = per model.
  using SessionsSource = std::function<std::vector<std::tuple<std::string, std::string, int>>()>;
  void SetSessionsSource(SessionsSource source);

  // The tiers below the device pool: (tier name, stats), read at scrape time for
  // retain_tier_*{tier}; the device tier's series come from the engines' stats. nullptr = none.
  using TierSource = std::function<std::vector<std::pair<std::string, TierStats>>()>;
  void SetTierSource(TierSource source);

  // A request the engine finished (Generate, or a CreateSession prefill): the finished-request and
  // token counters, labelled with the tenant unless it is the anonymous one ("").
  void RecordFinished(const std::string& model, const std::string& tenant, Protocol protocol,
                      const engine::FinishedEvent& e);

  // One gRPC error returned by an RPC. `model` is "" when the request named no model it could be
  // resolved to (so a client cannot grow the label set).
  void RecordError(const std::string& model, absl::StatusCode code, Protocol protocol = Protocol::kGrpc);

  struct Impl;

 private:
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  bool http_ = false;
};

}  // namespace retain::server
