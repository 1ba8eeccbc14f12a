// POST /v1/completions and /v1/chat/completions: the OpenAI request parsed (openai_api.h), the
// model and session resolved and the input checked by the code gRPC's Generate uses
// (generate_prepare.h), submitted to the engine with an HttpGeneration as its sink, and the
// events written back as one JSON response or as server-sent events.
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "retain/v1/retain.pb.h"
#include "server/generate_prepare.h"
#include "server/http/http_generation.h"
#include "server/http/http_internal.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/model_registry.h"
#include "server/session_owners.h"

namespace retain::server {
namespace {

constexpr absl::Duration kKeepAliveEvery = absl::Seconds(1);

TokenOut ToOut(const engine::Tokenizer* tok, engine::TokenEvent&& e) {
  TokenOut t;
  t.text = std::move(e.text);
  t.logprob = e.logprob;
  for (const auto& [id, logprob] : e.top_logprobs) t.top.emplace_back(AlternativeText(tok, id), logprob);
  return t;
}

// What one request's response is built from, filled as the events come.
struct Outcome {
  std::vector<TokenOut> tokens;
  std::optional<engine::FinishedEvent> finished;
  std::optional<absl::Status> error;
  bool ended() const { return finished.has_value() || error.has_value(); }
  // The request's end as an error (deadline, engine error), or OK.
  absl::Status Failure() const {
    if (error) return *error;
    if (finished && finished->reason == engine::FinishReason::kDeadline)
      return absl::DeadlineExceededError(absl::StrCat("the request passed its deadline (--http-timeout) after ",
                                                      finished->generated_tokens, " generated tokens; the session is at ",
                                                      finished->position));
    return absl::OkStatus();
  }
};

// The end of a request: the log line, in the words of gRPC's ("generate req-7 ... outcome=length").
void LogEnd(const std::string& request_id, const std::string& model, const std::string& session,
            const std::string& tenant, const Outcome& o, absl::Time start, const httplib::Request& req) {
  const absl::Status failure = o.Failure();
  std::string line = absl::StrCat("http ", req.path, " ", request_id, " model=", model,
                                  " session=", session.empty() ? "-" : session,
                                  tenant.empty() ? "" : absl::StrCat(" tenant=", tenant), " outcome=",
                                  !failure.ok()  ? absl::StatusCodeToString(failure.code())
                                  : o.finished ? engine::FinishReasonName(o.finished->reason)
                                               : "client-gone");
  if (o.finished) {
    const engine::FinishedEvent& e = *o.finished;
    absl::StrAppend(&line, " prompt=", e.prompt_tokens, " generated=", e.generated_tokens, " position=", e.position,
                    absl::StrFormat(" queue=%.3fs ttft=%.3fs total=%.3fs", e.queue_seconds,
                                    e.time_to_first_token_seconds, e.total_seconds));
  } else {
    absl::StrAppend(&line, absl::StrFormat(" total=%.3fs", absl::ToDoubleSeconds(absl::Now() - start)));
  }
  if (!failure.ok()) absl::StrAppend(&line, " error=\"", failure.message(), "\"");
  absl::StrAppend(&line, " peer=", HttpPeer(req));
  LogLine(line);
}

// Everything a streaming response needs after the handler has returned (cpp-httplib calls the
// content provider later, on the same worker thread).
struct Stream {
  std::shared_ptr<HttpGeneration> gen;
  engine::Engine* engine = nullptr;
  const engine::Tokenizer* tokenizer = nullptr;
  ResponseMeta meta;
  std::string request_id, tenant;
  bool include_usage = false;
  bool first = true;
  bool done = false;
  Outcome outcome;
  absl::Time start;
  httplib::Request req;  // the copy a log line needs (path, peer)
};

// The SSE text for the events since the last call; sets s.done at the request's end.
std::string NextEvents(Stream& s) {
  std::string out;
  for (HttpGeneration::Event& ev : s.gen->Take(kKeepAliveEvery)) {
    if (ev.token) {
      std::vector<TokenOut> one = {ToOut(s.tokenizer, std::move(*ev.token))};
      s.outcome.tokens.push_back(one.front());
      out += SseEvent(ChunkJson(s.meta, one, nullptr, s.first));
      s.first = false;
    } else if (ev.finished) {
      s.outcome.finished = *ev.finished;
    } else if (ev.error) {
      s.outcome.error = *ev.error;
    }
  }
  if (!s.outcome.ended()) return out.empty() ? ": keep-alive\n\n" : out;
  s.done = true;
  if (absl::Status failure = s.outcome.Failure(); !failure.ok()) {
    out += SseEvent(ErrorJson(failure));  // no [DONE]: the stream did not complete
    return out;
  }
  const engine::FinishedEvent& e = *s.outcome.finished;
  std::vector<TokenOut> tail;
  if (!e.text_tail.empty()) tail.push_back(TokenOut{e.text_tail, 0, {}});
  if (!tail.empty() || s.first) {  // the held-back text, or a chat's role when no token came
    ResponseMeta plain = s.meta;
    plain.logprobs = false;  // the tail is no token of its own
    out += SseEvent(ChunkJson(plain, tail, nullptr, s.first));
    s.first = false;
  }
  out += SseEvent(ChunkJson(s.meta, {}, OpenAiFinishReason(e.reason), false));
  if (s.include_usage) out += SseEvent(UsageChunkJson(s.meta, e.prompt_tokens, e.generated_tokens, e.cached_tokens));
  absl::StrAppend(&out, kSseDone);
  return out;
}

}  // namespace

void HttpFrontEnd::Impl::Completion(const httplib::Request& req, httplib::Response& res, ApiKind kind) {
  const absl::Time start = absl::Now();
  auto fail = [&](const absl::Status& st, const std::string& model) {
    const absl::Status said = ToOpenAiStatus(st, kind);
    Fail(res, said, model);
    LogLine(absl::StrCat("http ", req.path, " - model=", model.empty() ? "-" : model, " outcome=",
                         absl::StatusCodeToString(said.code()), " error=\"", said.message(), "\" peer=", HttpPeer(req)));
  };
  auto caller = Authenticate(req);
  if (!caller.ok()) return fail(caller.status(), "");
  auto parsed = ParseOpenAiRequest(req.body, kind);
  if (!parsed.ok()) return fail(parsed.status(), "");
  v1::GenerateRequest& g = parsed->generate;
  auto resolved = ResolveGenerateModel(deps, *caller, g);
  if (!resolved.ok()) return fail(resolved.status(), "");
  ServedModel& model = **resolved;
  if (kind == ApiKind::kChat) {
    // A session that holds tokens already ends where its last answer stopped: the new turn
    // starts with the template's continuation. An empty (new) one starts like a stateless chat.
    bool continuing = false;
    if (!g.session_id().empty()) {
      auto owner = deps.owners->Find(*caller, g.session_id());
      continuing = owner.ok() && owner->second.position > 0;
    }
    auto prompt = RenderChat(templates[model.name], parsed->messages, continuing);
    if (!prompt.ok()) return fail(prompt.status(), model.name);
    g.set_prompt_text(*std::move(prompt));
  }
  auto prepared = PrepareGenerate(deps, *caller, model, g, absl::Now() + config.timeout);
  if (!prepared.ok()) return fail(prepared.status(), model.name);
  if (!TakeGenerationSlot())
    return fail(absl::ResourceExhaustedError(absl::StrCat("the server has its --http-max-generations (", config.max_generations,
                                                          ") HTTP completions running; retry later")),
                model.name);
  auto gen = std::make_shared<HttpGeneration>(deps.metrics, model.name, caller->tenant, std::move(prepared->place),
                                              [this] { ReleaseGenerationSlot(); });
  engine::Engine& engine = *model.engine;
  auto id = engine.Submit(std::move(prepared->input), gen);
  if (!id.ok()) {
    gen->ReleaseUnsubmitted();
    return fail(id.status(), model.name);
  }
  gen->Register(deps.requests, *id, &engine);
  ResponseMeta meta;
  meta.kind = kind;
  meta.id = absl::StrCat(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-", *id);
  meta.model = model.name;
  meta.session_id = g.session_id();
  meta.created = absl::ToUnixSeconds(absl::Now());
  meta.logprobs = parsed->logprobs;
  meta.top_logprobs = parsed->top_logprobs;
  responses.Enter();

  if (!parsed->stream) {
    Outcome o;
    while (!o.ended()) {
      for (HttpGeneration::Event& ev : gen->Take(kKeepAliveEvery)) {
        if (ev.token) o.tokens.push_back(ToOut(engine.tokenizer(), std::move(*ev.token)));
        if (ev.finished) o.finished = *ev.finished;
        if (ev.error) o.error = *ev.error;
      }
    }
    LogEnd(*id, model.name, g.session_id(), caller->tenant, o, start, req);
    if (absl::Status failure = o.Failure(); !failure.ok()) {
      Fail(res, failure, model.name);
    } else {
      const engine::FinishedEvent& e = *o.finished;
      if (!e.text_tail.empty()) {
        if (o.tokens.empty()) o.tokens.push_back(TokenOut{});
        o.tokens.back().text += e.text_tail;
      }
      nlohmann::json body = ResponseJson(meta, o.tokens, OpenAiFinishReason(e.reason), e.prompt_tokens, e.cached_tokens);
      body["usage"] = UsageJson(e.prompt_tokens, e.generated_tokens, e.cached_tokens);
      ReplyJson(res, 200, body);
    }
    responses.Exit();
    return;
  }

  auto s = std::make_shared<Stream>();
  s->gen = gen;
  s->engine = &engine;
  s->tokenizer = engine.tokenizer();
  s->meta = meta;
  s->request_id = *id;
  s->tenant = caller->tenant;
  s->include_usage = parsed->include_usage;
  s->start = start;
  s->req.path = req.path;
  s->req.remote_addr = req.remote_addr;
  s->req.remote_port = req.remote_port;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // a proxy in front must not hold the events back
  res.set_chunked_content_provider(
      "text/event-stream",
      [s](size_t, httplib::DataSink& sink) {
        if (s->done) {
          sink.done();
          return true;
        }
        const std::string out = NextEvents(*s);
        if (!sink.write(out.data(), out.size())) {
          // The client is gone: no more tokens, so its session holds what was handed over.
          s->gen->Abandon();
          s->engine->Cancel(s->request_id);
          return false;
        }
        if (s->done) sink.done();
        return true;
      },
      [this, s, model_name = model.name, session = g.session_id()](bool success) {
        if (!success || !s->done) {
          s->gen->Abandon();
          s->engine->Cancel(s->request_id);
        }
        LogEnd(s->request_id, model_name, session, s->tenant, s->outcome, s->start, s->req);
        responses.Exit();
      });
}

}  // namespace retain::server
