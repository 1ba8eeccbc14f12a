#include "server/http/openai_api.h"

#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace retain::server {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view param, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(param, " ", why));
}

// An optional parameter: absent or null counts as not given.
const json* Get(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

absl::Status Number(const json& body, const char* key, std::optional<float>* out) {
  const json* v = Get(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return Bad(key, "must be a number");
  const double d = v->get<double>();
  if (!std::isfinite(d) || std::fabs(d) > std::numeric_limits<float>::max()) return Bad(key, "must be a finite number");
  *out = static_cast<float>(d);
  return absl::OkStatus();
}

absl::Status Integer(const json& body, const char* key, int64_t lo, int64_t hi, std::optional<int64_t>* out) {
  const json* v = Get(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number_integer()) return Bad(key, "must be an integer");
  // Unsigned values above int64 are compared as such, never wrapped into range.
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    return Bad(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  const int64_t i = v->get<int64_t>();
  if (i < lo || i > hi) return Bad(key, absl::StrCat("must be in [", lo, ", ", hi, "]"));
  *out = i;
  return absl::OkStatus();
}

absl::Status Boolean(const json& body, const char* key, bool* out) {
  const json* v = Get(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return Bad(key, "must be true or false");
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status String(const json& body, const char* key, std::string* out) {
  const json* v = Get(body, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return Bad(key, "must be a string");
  *out = v->get<std::string>();
  return absl::OkStatus();
}

// What retain does not do, refused by name rather than silently ignored.
absl::Status Unsupported(const json& body, ApiKind kind) {
  if (const json* n = Get(body, "n"); n != nullptr && !(n->is_number_integer() && n->get<int64_t>() == 1))
    return Bad("n", "must be 1: retain generates one choice per request");
  if (const json* b = Get(body, "best_of"); b != nullptr && !(b->is_number_integer() && b->get<int64_t>() == 1))
    return Bad("best_of", "must be 1: retain generates one choice per request");
  if (const json* e = Get(body, "echo"); e != nullptr && !(e->is_boolean() && !e->get<bool>()))
    return Bad("echo", "is not supported (the prompt is not echoed)");
  if (Get(body, "suffix") != nullptr) return Bad("suffix", "is not supported (no insertion)");
  if (const json* l = Get(body, "logit_bias"); l != nullptr && !(l->is_object() && l->empty()))
    return Bad("logit_bias", "is not supported");
  for (const char* key : {"tools", "functions"})
    if (const json* t = Get(body, key); t != nullptr && !(t->is_array() && t->empty()))
      return Bad(key, "are not supported (no tool calls)");
  if (const json* f = Get(body, "response_format");
      f != nullptr && !(f->is_object() && f->value("type", std::string("text")) == "text"))
    return Bad("response_format", "must be {\"type\": \"text\"}: structured output is not supported");
  (void)kind;
  return absl::OkStatus();
}

absl::Status Prompt(const json& body, v1::GenerateRequest* g) {
  const json* p = Get(body, "prompt");
  if (p == nullptr) return absl::OkStatus();  // only a session continuation may leave it out (checked later)
  if (p->is_string()) {
    g->set_prompt_text(p->get<std::string>());
    return absl::OkStatus();
  }
  if (!p->is_array()) return Bad("prompt", "must be a string, an array of one string, or an array of token ids");
  if (p->size() == 1 && (*p)[0].is_string()) {
    g->set_prompt_text((*p)[0].get<std::string>());
    return absl::OkStatus();
  }
  for (size_t i = 0; i < p->size(); ++i) {
    const json& t = (*p)[i];
    if (t.is_string()) return Bad("prompt", "holds several strings: retain completes one prompt per request");
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max())
      return Bad(absl::StrCat("prompt[", i, "]"), "must be a token id (a non-negative integer)");
    g->add_prompt_tokens(static_cast<int32_t>(t.get<int64_t>()));
  }
  return absl::OkStatus();
}

absl::Status Messages(const json& body, std::vector<ChatMessage>* out) {
  const json* m = Get(body, "messages");
  if (m == nullptr || !m->is_array() || m->empty()) return Bad("messages", "must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!msg.is_object()) return Bad(at, "must be an object with role and content");
    ChatMessage cm;
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string()) return Bad(at + ".role", "must be a string");
    cm.role = role->get<std::string>();
    auto content = msg.find("content");
    if (content == msg.end() || content->is_null()) return Bad(at + ".content", "is missing");
    if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {  // [{"type": "text", "text": "..."}, ...]
      for (const json& part : *content) {
        if (!part.is_object() || part.value("type", std::string()) != "text" || !part.contains("text") ||
            !part["text"].is_string())
          return Bad(at + ".content", "parts must be {\"type\": \"text\", \"text\": ...}: only text is supported");
        cm.content += part["text"].get<std::string>();
      }
    } else {
      return Bad(at + ".content", "must be a string or an array of text parts");
    }
    out->push_back(std::move(cm));
  }
  return absl::OkStatus();
}

absl::Status Stop(const json& body, v1::StoppingCriteria* s) {
  const json* stop = Get(body, "stop");
  if (stop == nullptr) return absl::OkStatus();
  if (stop->is_string()) {
    s->add_stop(stop->get<std::string>());
    return absl::OkStatus();
  }
  if (!stop->is_array()) return Bad("stop", "must be a string or an array of strings");
  for (size_t i = 0; i < stop->size(); ++i) {
    if (!(*stop)[i].is_string()) return Bad(absl::StrCat("stop[", i, "]"), "must be a string");
    s->add_stop((*stop)[i].get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status Logprobs(const json& body, ApiKind kind, OpenAiRequest* r) {
  std::optional<int64_t> top;
  absl::Status st;
  if (kind == ApiKind::kCompletion) {  // logprobs: N (the chosen token's and N alternatives)
    if (!(st = Integer(body, "logprobs", 0, engine::kMaxTopLogprobs, &top)).ok()) return st;
    r->logprobs = top.has_value();
  } else {  // logprobs: true, top_logprobs: N
    if (!(st = Boolean(body, "logprobs", &r->logprobs)).ok()) return st;
    if (!(st = Integer(body, "top_logprobs", 0, engine::kMaxTopLogprobs, &top)).ok()) return st;
    if (top.has_value() && !r->logprobs) return Bad("top_logprobs", "needs logprobs: true");
  }
  r->top_logprobs = static_cast<int>(top.value_or(0));
  // The engine reports the chosen token's logprob only with at least one alternative.
  if (r->logprobs) r->generate.set_logprobs(std::max(1, r->top_logprobs));
  return absl::OkStatus();
}

absl::Status Sampling(const json& body, v1::SamplingParams* p) {
  struct F {
    const char* key;
    void (v1::SamplingParams::*set)(float);
  };
  const F floats[] = {{"temperature", &v1::SamplingParams::set_temperature},
                      {"top_p", &v1::SamplingParams::set_top_p},
                      {"min_p", &v1::SamplingParams::set_min_p},
                      {"presence_penalty", &v1::SamplingParams::set_presence_penalty},
                      {"frequency_penalty", &v1::SamplingParams::set_frequency_penalty},
                      {"repetition_penalty", &v1::SamplingParams::set_repetition_penalty}};
  for (const F& f : floats) {
    std::optional<float> v;
    if (absl::Status st = Number(body, f.key, &v); !st.ok()) return st;
    if (v) (p->*f.set)(*v);
  }
  std::optional<int64_t> i;
  if (absl::Status st = Integer(body, "top_k", 0, std::numeric_limits<int32_t>::max(), &i); !st.ok()) return st;
  if (i) p->set_top_k(static_cast<int32_t>(*i));
  i.reset();
  // OpenAI's seed is a signed 64-bit integer; the engine's a uint64: the bits are kept.
  if (absl::Status st = Integer(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), &i);
      !st.ok())
    return st;
  if (i) p->set_seed(static_cast<uint64_t>(*i));
  return absl::OkStatus();
}

// proto field (as request_validation.h names it) → OpenAI parameter.
struct Rename {
  const char* proto;
  const char* completion;
  const char* chat;
};
constexpr Rename kRenames[] = {
    {"sampling.", "", ""},
    {"stopping.max_tokens", "max_tokens", "max_tokens"},
    {"stopping.stop", "stop", "stop"},
    {"prompt_text and prompt_tokens are both empty", "prompt is empty", "messages are empty"},
    {"prompt_text", "prompt", "messages"},
    {"prompt_tokens", "prompt", "prompt"},
    {"logprobs", "logprobs", "top_logprobs"},
};

}  // namespace

absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(absl::string_view body, ApiKind kind) {
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("the request body is not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  OpenAiRequest r;
  r.kind = kind;
  v1::GenerateRequest& g = r.generate;
  absl::Status st;
  if (!(st = Unsupported(j, kind)).ok()) return st;
  std::string s;
  if (!(st = String(j, "model", &s)).ok()) return st;
  g.set_model(s);
  s.clear();
  if (!(st = String(j, "session_id", &s)).ok()) return st;
  g.set_session_id(s);
  if (kind == ApiKind::kCompletion) {
    if (!(st = Prompt(j, &g)).ok()) return st;
  } else {
    if (!(st = Messages(j, &r.messages)).ok()) return st;
  }
  std::optional<int64_t> max_tokens;
  if (!(st = Integer(j, "max_tokens", 0, std::numeric_limits<int32_t>::max(), &max_tokens)).ok()) return st;
  if (kind == ApiKind::kChat && !max_tokens) {
    if (!(st = Integer(j, "max_completion_tokens", 0, std::numeric_limits<int32_t>::max(), &max_tokens)).ok()) return st;
  }
  if (max_tokens) g.mutable_stopping()->set_max_tokens(static_cast<int32_t>(*max_tokens));
  if (!(st = Stop(j, g.mutable_stopping())).ok()) return st;
  if (!(st = Sampling(j, g.mutable_sampling())).ok()) return st;
  if (!(st = Logprobs(j, kind, &r)).ok()) return st;
  if (!(st = Boolean(j, "stream", &r.stream)).ok()) return st;
  if (const json* so = Get(j, "stream_options"); so != nullptr) {
    if (!so->is_object()) return Bad("stream_options", "must be an object");
    if (!r.stream) return Bad("stream_options", "is only for stream: true");
    if (!(st = Boolean(*so, "include_usage", &r.include_usage)).ok())
      return Bad("stream_options.include_usage", "must be true or false");
  }
  return r;
}

absl::Status ToOpenAiStatus(const absl::Status& status, ApiKind kind) {
  if (status.ok()) return status;
  const absl::string_view m = status.message();
  for (const Rename& r : kRenames) {
    if (!absl::StartsWith(m, r.proto)) continue;
    const char* to = kind == ApiKind::kChat ? r.chat : r.completion;
    return absl::Status(status.code(), absl::StrCat(to, m.substr(strlen(r.proto))));
  }
  return status;
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kFailedPrecondition: return 409;  // a busy session: try again once it is idle
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string ParamOf(absl::string_view m) {
  static constexpr const char* kParams[] = {
      "model", "session_id", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
      "top_k", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "penalty_decay", "seed",
      "stop", "n", "best_of", "echo", "suffix", "logit_bias", "tools", "functions", "response_format", "logprobs",
      "top_logprobs", "stream_options", "stream"};
  const size_t end = m.find_first_of(" :");
  const absl::string_view first = m.substr(0, end);
  const absl::string_view base = first.substr(0, first.find_first_of("[."));
  for (const char* p : kParams)
    if (base == p) return std::string(first);
  return "";
}

nlohmann::json ErrorJson(const absl::Status& status) {
  const int http = HttpStatusOf(status.code());
  const char* type = http == 401   ? "authentication_error"
                     : http == 403 ? "permission_error"
                     : http == 404 ? "not_found_error"
                     : http == 429 ? "rate_limit_error"
                     : http >= 500 ? "server_error"
                                   : "invalid_request_error";
  const std::string param = ParamOf(status.message());
  return json{{"error",
               {{"message", std::string(status.message())},
                {"type", type},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", absl::AsciiStrToLower(absl::StatusCodeToString(status.code()))}}}};
}

const char* OpenAiFinishReason(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength: return "length";
    case engine::FinishReason::kStop:
    case engine::FinishReason::kEos: return "stop";
    case engine::FinishReason::kCancelled: return "cancelled";
    case engine::FinishReason::kDeadline: return "deadline";  // sent as an error instead
  }
  return "stop";
}

nlohmann::json UsageJson(int prompt_tokens, int completion_tokens, int cached_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
}

namespace {

std::string Concat(const std::vector<TokenOut>& tokens) {
  std::string text;
  for (const TokenOut& t : tokens) text += t.text;
  return text;
}

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// The logprobs object in the shape of the request's API; null when not asked for.
json LogprobsJson(const ResponseMeta& meta, const std::vector<TokenOut>& tokens, size_t text_offset) {
  if (!meta.logprobs) return nullptr;
  if (meta.kind == ApiKind::kChat) {
    json content = json::array();
    for (const TokenOut& t : tokens) {
      json top = json::array();
      for (size_t i = 0; i < t.top.size() && static_cast<int>(i) < meta.top_logprobs; ++i)
        top.push_back({{"token", t.top[i].first}, {"logprob", t.top[i].second}, {"bytes", Bytes(t.top[i].first)}});
      content.push_back({{"token", t.text}, {"logprob", t.logprob}, {"bytes", Bytes(t.text)}, {"top_logprobs", top}});
    }
    return json{{"content", content}};
  }
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const TokenOut& t : tokens) {
    out["tokens"].push_back(t.text);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (size_t i = 0; i < t.top.size() && static_cast<int>(i) < meta.top_logprobs; ++i)
      top[t.top[i].first] = t.top[i].second;
    out["top_logprobs"].push_back(top);
    out["text_offset"].push_back(text_offset);
    text_offset += t.text.size();
  }
  return out;
}

json Envelope(const ResponseMeta& meta, const char* object) {
  json j = {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model}};
  j["session_id"] = meta.session_id.empty() ? json(nullptr) : json(meta.session_id);
  return j;
}

}  // namespace

nlohmann::json ResponseJson(const ResponseMeta& meta, const std::vector<TokenOut>& tokens, const char* finish_reason,
                            int prompt_tokens, int cached_tokens) {
  const bool chat = meta.kind == ApiKind::kChat;
  json j = Envelope(meta, chat ? "chat.completion" : "text_completion");
  json choice = {{"index", 0}, {"logprobs", LogprobsJson(meta, tokens, 0)}, {"finish_reason", finish_reason}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", Concat(tokens)}};
  } else {
    choice["text"] = Concat(tokens);
  }
  j["choices"] = json::array({choice});
  j["usage"] = UsageJson(prompt_tokens, static_cast<int>(tokens.size()), cached_tokens);
  return j;
}

nlohmann::json ChunkJson(const ResponseMeta& meta, const std::vector<TokenOut>& tokens, const char* finish_reason,
                         bool first) {
  const bool chat = meta.kind == ApiKind::kChat;
  json j = Envelope(meta, chat ? "chat.completion.chunk" : "text_completion");
  // Completions' text_offset counts from the start of this chunk: a client adds up chunks itself.
  json choice = {{"index", 0},
                 {"logprobs", tokens.empty() ? json(nullptr) : LogprobsJson(meta, tokens, 0)},
                 {"finish_reason", finish_reason == nullptr ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (first || !tokens.empty()) delta["content"] = Concat(tokens);
    choice["delta"] = delta;
  } else {
    choice["text"] = Concat(tokens);
  }
  j["choices"] = json::array({choice});
  return j;
}

nlohmann::json UsageChunkJson(const ResponseMeta& meta, int prompt_tokens, int completion_tokens, int cached_tokens) {
  json j = Envelope(meta, meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = json::array();
  j["usage"] = UsageJson(prompt_tokens, completion_tokens, cached_tokens);
  return j;
}

std::string DumpJson(const nlohmann::json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string SseEvent(const nlohmann::json& j) { return absl::StrCat("data: ", DumpJson(j), "\n\n"); }

}  // namespace retain::server
