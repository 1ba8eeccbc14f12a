#include "server/http/http_frontend.h"

#include <condition_variable>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "retain/engine/serving.h"
#include "server/http/http_internal.h"
#include "server/http/playground_assets.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_fingerprint.h"
#include "server/model_registry.h"

namespace retain::server {
namespace {

// cpp-httplib's own pool queues accepted connections without bound. This one holds at most
// `max_pending`: past it the accepting thread waits here, so the kernel's listen backlog (and
// then refused connections) bounds the rest, not this process's memory.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(int threads, int max_pending) : max_pending_(max_pending) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock<std::mutex> l(mu_);
    room_.wait(l, [&] { return shutdown_ || jobs_.size() < static_cast<size_t>(max_pending_); });
    jobs_.push_back(std::move(fn));
    work_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      shutdown_ = true;
    }
    work_.notify_all();
    room_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        work_.wait(l, [&] { return shutdown_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // shut down with nothing left to serve
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        room_.notify_one();
      }
      fn();
    }
  }

  const int max_pending_;
  std::mutex mu_;
  std::condition_variable work_, room_;
  std::deque<std::function<void()>> jobs_;
  bool shutdown_ = false;
  std::vector<std::thread> threads_;
};

nlohmann::json ModelJson(const ServedModel& m) {
  const engine::ModelConfig& c = m.engine->model().config();
  return {{"id", m.name},
          {"object", "model"},
          {"created", 0},
          {"owned_by", "retain"},
          {"retain",
           {{"architecture", std::string(engine::ArchitectureName(c.arch))},
            {"vocab_size", c.vocab_size},
            {"state_bytes", m.snapshot.state_bytes},
            {"tokenizer", m.engine->tokenizer() != nullptr ? m.engine->tokenizer()->name() : ""},
            {"is_default", m.is_default},
            {"fingerprint", FingerprintHex(m.fingerprint)}}}};
}

}  // namespace

void ReplyJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(DumpJson(body), "application/json");
}

std::string HttpPeer(const httplib::Request& req) { return absl::StrCat(req.remote_addr, ":", req.remote_port); }

absl::StatusOr<Caller> HttpFrontEnd::Impl::Authenticate(const httplib::Request& req) const {
  if (!req.has_header("Authorization")) return deps.tenants->Authenticate(nullptr);
  const std::string value = req.get_header_value("Authorization");
  return deps.tenants->Authenticate(&value);
}

void HttpFrontEnd::Impl::Fail(httplib::Response& res, const absl::Status& status, const std::string& model) const {
  deps.metrics->RecordError(model, status.code(), Protocol::kHttp);
  ReplyJson(res, HttpStatusOf(status.code()), ErrorJson(status));
  if (status.code() == absl::StatusCode::kUnauthenticated) res.set_header("WWW-Authenticate", "Bearer");
}

bool HttpFrontEnd::Impl::TakeGenerationSlot() {
  int n = generations.load();
  while (n < config.max_generations)
    if (generations.compare_exchange_weak(n, n + 1)) return true;
  return false;
}

void HttpFrontEnd::Impl::Routes() {
  for (const PlaygroundAsset& a : PlaygroundAssets()) {
    server->Get(a.path, [a](const httplib::Request&, httplib::Response& res) {
      res.set_content(a.body.data(), a.body.size(), a.content_type);
      res.set_header("Cache-Control", "no-cache");
    });
  }
  server->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (draining.load()) return ReplyJson(res, 503, {{"status", "draining"}});
    ReplyJson(res, 200, {{"status", "ok"}});
  });
  server->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (auto caller = Authenticate(req); !caller.ok()) return Fail(res, caller.status(), "");
    nlohmann::json data = nlohmann::json::array();
    for (const auto& m : deps.registry->models()) data.push_back(ModelJson(*m));
    ReplyJson(res, 200, {{"object", "list"}, {"data", data}});
  });
  server->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Completion(req, res, ApiKind::kCompletion);
  });
  server->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Completion(req, res, ApiKind::kChat);
  });
  Sessions();
  // Whatever no route answered, as OpenAI error JSON too.
  server->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    const absl::Status st =
        status == 404 ? absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path.substr(0, 128)))
        : status == 413 ? absl::InvalidArgumentError("the request body is too large")
                        : absl::InvalidArgumentError(absl::StrCat("the HTTP request was refused (", status, ")"));
    Fail(res, st, "");
    res.status = status;
  });
  server->set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    Fail(res, absl::InternalError("the request failed inside the server"), "");
  });
}

HttpFrontEnd::HttpFrontEnd(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpFrontEnd::~HttpFrontEnd() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpFrontEnd>> HttpFrontEnd::Start(const HttpConfig& config, const TlsConfig& tls,
                                                                  const ServiceDeps& deps, size_t max_body_bytes) {
  auto impl = std::make_unique<Impl>();
  if (tls.enabled()) {
    auto ssl = std::make_unique<httplib::SSLServer>(tls.cert.c_str(), tls.key.c_str(),
                                                    tls.client_ca.empty() ? nullptr : tls.client_ca.c_str());
    if (!ssl->is_valid())
      return absl::InvalidArgumentError(absl::StrCat("--http-listen with --tls-cert ", tls.cert, " --tls-key ", tls.key,
                                                     tls.client_ca.empty() ? "" : absl::StrCat(" --tls-client-ca ", tls.client_ca),
                                                     ": OpenSSL cannot make an HTTPS server of these files"));
    impl->server = std::move(ssl);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  impl->config = config;
  impl->deps = deps;
  for (const auto& m : deps.registry->models()) {
    auto t = LoadChatTemplate(m->dir);
    if (!t.ok()) return t.status();
    impl->templates[m->name] = *std::move(t);
  }
  Impl* raw = impl.get();
  impl->server->new_task_queue = [raw] { return new BoundedPool(raw->config.threads, raw->config.max_pending); };
  impl->server->set_payload_max_length(max_body_bytes);
  impl->server->set_read_timeout(30, 0);
  impl->server->set_write_timeout(30, 0);
  impl->server->set_keep_alive_timeout(5);
  impl->Routes();
  const size_t colon = config.listen.rfind(':');
  std::string host = config.listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const int want = std::atoi(config.listen.c_str() + colon + 1);
  if (want == 0) {
    impl->port = impl->server->bind_to_any_port(host);
  } else if (impl->server->bind_to_port(host, want)) {
    impl->port = want;
  }
  if (impl->port <= 0)
    return absl::UnavailableError(absl::StrCat("--http-listen ", config.listen,
                                               ": cannot listen there (another server there? port 0 picks a free one)"));
  impl->listener = std::thread([raw] { raw->server->listen_after_bind(); });
  return std::unique_ptr<HttpFrontEnd>(new HttpFrontEnd(std::move(impl)));
}

int HttpFrontEnd::port() const { return impl_->port; }

void HttpFrontEnd::BeginDrain() { impl_->draining.store(true); }

bool HttpFrontEnd::WaitIdle(absl::Duration timeout) { return impl_->responses.WaitIdle(timeout); }

void HttpFrontEnd::Stop() {
  if (!impl_->listener.joinable()) return;
  impl_->server->stop();
  impl_->listener.join();
}

}  // namespace retain::server
