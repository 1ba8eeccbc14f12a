#include "server/server.h"

#include <pthread.h>
#include <signal.h>

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/http/http_frontend.h"
#include "server/host_state_tier.h"
#include "server/redis_tier.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/retain_service.h"
#include "server/session_owners.h"
#include "server/tenants.h"
#include "server/tls_credentials.h"

namespace retain::server {
namespace {

// After the drain timeout: how long cancelled requests get to reach their next step, and how long
// the gRPC server gives calls to send their last messages.
constexpr absl::Duration kCancelGrace = absl::Seconds(5);
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
// For unary calls that arrived during the drain.
constexpr absl::Duration kShutdownNoCalls = absl::Milliseconds(200);

// SIGTERM/SIGINT drain; SIGHUP rereads --auth-tokens. All taken by one thread through sigwait.
sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

void ReloadTenants(Tenants& tenants) {
  if (!tenants.enabled()) return LogLine("received SIGHUP: no --auth-tokens file to reread");
  absl::Status st = tenants.Reload();
  if (!st.ok())
    return LogLine(absl::StrCat("received SIGHUP: ", st.message(), "; keeping the ", tenants.size(), " tenants loaded before"));
  LogLine(absl::StrCat("received SIGHUP: reloaded --auth-tokens ", tenants.path(), ": ", tenants.size(), " tenants"));
}

// The gRPC transport limits (security_config.h), set explicitly so gRPC's defaults can change
// without changing what this server accepts.
void ApplyTransportLimits(const TransportLimits& t, grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(t.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, t.max_concurrent_streams);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(t.keepalive_min_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, t.keepalive_permit_without_calls ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, t.keepalive_max_ping_strikes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(absl::ToInt64Milliseconds(t.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(t.keepalive_timeout)));
}

std::string HostOf(const std::string& host_port) { return host_port.substr(0, host_port.rfind(':')); }

std::string Describe(const ServedModel& m) {
  const engine::EngineStats s = m.engine->Stats();
  const engine::ModelConfig& c = m.engine->model().config();
  return absl::StrCat(m.name, m.is_default ? " (default)" : "", " [", std::string(engine::ArchitectureName(c.arch)), " ",
                      std::string(engine::DTypeName(c.weight_dtype)), ", ", m.engine->tokenizer() ? m.engine->tokenizer()->name() : "no",
                      " tokenizer, ", s.slots_total, " slots of ", s.state_bytes, " state bytes, ", m.dir, "]");
}

// Drain, run by the signal thread once SIGTERM/SIGINT arrives.
void Drain(const ServerConfig& config, ModelRegistry& registry, RetainService& service, grpc::Server& server,
           HttpFrontEnd* http, int signo) {
  LogLine(absl::StrCat("received ", signo == SIGINT ? "SIGINT" : "SIGTERM", ": draining (--drain-timeout ",
                       absl::FormatDuration(config.drain_timeout), ")"));
  // NOT_SERVING for "", "retain.v1.Retain" and every other name at once, and for good.
  if (auto* health = server.GetHealthCheckService(); health != nullptr) health->Shutdown();
  if (http != nullptr) http->BeginDrain();
  for (const auto& m : registry.models()) m->engine->BeginDrain();
  const absl::Time deadline = absl::Now() + config.drain_timeout;
  bool idle = true;
  for (const auto& m : registry.models())
    idle = m->engine->WaitIdle(std::max(deadline - absl::Now(), absl::ZeroDuration())) && idle;
  if (!idle) {
    LogLine("drain timeout: cancelling the requests still running");
    for (const auto& m : registry.models()) m->engine->CancelAll();
    for (const auto& m : registry.models()) m->engine->WaitIdle(kCancelGrace);
  }
  // The engines are idle; the streams send what they still hold. Then shut down at once: with
  // no call left, a longer deadline would only wait for idle client connections to go.
  bool calls_done = service.WaitForCalls(kShutdownGrace);
  if (http != nullptr) calls_done = http->WaitIdle(kShutdownGrace) && calls_done;  // SSE streams written out
  server.Shutdown(absl::ToChronoTime(absl::Now() + (calls_done ? kShutdownNoCalls : kShutdownGrace)));
}

}  // namespace

// The metrics, left to the process's exit (RunServer's end says why).
Metrics* metrics_kept_until_exit = nullptr;

int RunServer(const ServerConfig& config) {
  const sigset_t signals = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stderr or socket is an error to handle, not a reason to die

  // The files first: a bad certificate or token file fails at once, before models load.
  auto transport = MakeServerTransport(config.security.tls);
  if (!transport.ok()) {
    LogLine(transport.status().message());
    return 2;
  }
  auto tenants = Tenants::Load(config.security.auth_tokens, config.security.tenant_limits);
  if (!tenants.ok()) {
    LogLine(tenants.status().message());
    return 2;
  }

  auto metrics = Metrics::Create(config.metrics_listen);
  if (!metrics.ok()) {
    LogLine(metrics.status().message());
    return 1;
  }
  if (config.http.enabled()) (*metrics)->ServeHttp();
  std::unique_ptr<HostStateTier> host;
  if (config.tiers.host_state_budget_bytes > 0) host = std::make_unique<HostStateTier>(config.tiers.host_state_budget_bytes);
  std::unique_ptr<RedisTier> redis;
  if (config.tiers.redis_enabled) redis = std::make_unique<RedisTier>(config.tiers.redis);
  auto registry = ModelRegistry::Load(config, metrics->get(), host.get(), redis.get());
  if (!registry.ok()) {
    LogLine(registry.status().message());
    return 2;
  }
  ModelRegistry* reg = registry->get();
  (*metrics)->SetStatsSource([reg] { return reg->Stats(); });
  if (host != nullptr || redis != nullptr) {
    HostStateTier* h = host.get();
    RedisTier* r = redis.get();
    (*metrics)->SetTierSource([h, r] {
      std::vector<std::pair<std::string, TierStats>> tiers;
      if (h != nullptr) tiers.emplace_back("host", h->Stats());
      if (r != nullptr) tiers.emplace_back("redis", r->Stats());
      return tiers;
    });
  }

  SessionOwners owners(reg);
  owners.SetSharedTier(redis.get());
  if ((*tenants)->enabled()) (*metrics)->SetSessionsSource([&owners] { return owners.Counts(); });

  RetainService service(reg, metrics->get(), tenants->get(), &owners, config.prefix_cache_shared);
  std::unique_ptr<HttpFrontEnd> http;
  if (config.http.enabled()) {
    auto started = HttpFrontEnd::Start(config.http, config.security.tls, service.deps(),
                                       static_cast<size_t>(config.security.transport.max_receive_message_bytes));
    if (!started.ok()) {
      LogLine(started.status().message());
      (*metrics)->SetStatsSource(nullptr);
      (*metrics)->SetSessionsSource(nullptr);
      (*metrics)->SetTierSource(nullptr);
      return started.status().code() == absl::StatusCode::kUnavailable ? 1 : 2;
    }
    http = *std::move(started);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen, transport->credentials, &port);
  ApplyTransportLimits(config.security.transport, builder);
  // gRPC sets SO_REUSEPORT by default, so a second server on a taken port would "bind" and share
  // its connections; a taken --listen address must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    LogLine(absl::StrCat("--listen ", config.listen, ": cannot listen there"));
    http.reset();
    (*metrics)->SetStatsSource(nullptr);
    (*metrics)->SetSessionsSource(nullptr);
    (*metrics)->SetTierSource(nullptr);
    return 1;
  }
  if (auto* health = server->GetHealthCheckService(); health != nullptr) {
    health->SetServingStatus("", true);
    health->SetServingStatus(v1::Retain::service_full_name(), true);
    // The server serves on while Redis is down (the sessions it holds); the tier has its own name.
    if (redis != nullptr) redis->SetHealthListener([health](bool up) { health->SetServingStatus("retain.tier.redis", up); });
  }

  std::vector<std::string> models;
  for (const auto& m : reg->models()) models.push_back(Describe(*m));
  std::string metrics_at = "metrics off";
  if ((*metrics)->port() != 0)
    metrics_at = absl::StrCat("metrics on http://", HostOf(config.metrics_listen), ":", (*metrics)->port(), "/metrics");
  const std::string tenants_are =
      (*tenants)->enabled()
          ? absl::StrCat("tenants: ", (*tenants)->size(), " from --auth-tokens ", (*tenants)->path(), " (bearer tokens required)")
          : "tenants: none (no --auth-tokens: one anonymous tenant, no token asked for)";
  std::string http_at;
  if (http != nullptr)
    http_at = absl::StrCat("http on ", config.security.tls.enabled() ? "https" : "http", "://", HostOf(config.http.listen),
                           ":", http->port(),
                           " (OpenAI API, playground; ", config.http.threads, " threads, ", config.http.max_generations,
                           " generations); ");
  const engine::ServingOptions& so = config.serving;
  LogLine(absl::StrCat("listening on ", HostOf(config.listen), ":", port, " (", transport->description, "); ",
                       http_at, metrics_at, "; ", tenants_are, "; models: ", absl::StrJoin(models, "; "), "; max-batch ",
                       so.max_batch, ", max-step-tokens ", so.max_step_tokens, ", max-queue ", so.max_queue,
                       host != nullptr ? absl::StrCat("; host state tier ", host->budget(), " bytes") : "",
                       redis != nullptr ? absl::StrCat("; redis tier ", redis->address(), " (",
                                                       redis->async() ? "asynchronous" : "write-through", ", replica ",
                                                       config.tiers.redis.replica, ")")
                                        : ""));

  std::thread signal_thread([&] {
    int signo = 0;
    while (sigwait(&signals, &signo) == 0 && signo == SIGHUP) ReloadTenants(**tenants);
    Drain(config, *reg, service, *server, http.get(), signo);
  });
  server->Wait();
  signal_thread.join();
  if (http != nullptr) http->Stop();  // before the engines its handlers use go
  LogLine("drained; exiting");
  (*metrics)->SetStatsSource(nullptr);
  (*metrics)->SetSessionsSource(nullptr);
  (*metrics)->SetTierSource(nullptr);
  server.reset();     // every call done (OnDone ran) before the engines go
  if (redis != nullptr) {
    redis->SetHealthListener(nullptr);  // the health service went with the server
    redis->ClearExporters();
  }
  registry->reset();  // engines stop their step threads
  redis.reset();      // after the engines (their parking); writes what is queued first
  // Not destroyed: stopping civetweb waits out its 2 s poll quantum, and the process is exiting
  // anyway (a scrape until then still reads valid counters; the gauges' source is cleared). Kept
  // reachable from a global with external linkage (a store the compiler cannot drop), so
  // LeakSanitizer sees it is meant (scripts/test.sh --sanitize).
  metrics_kept_until_exit = metrics->release();
  return 0;
}

}  // namespace retain::server
