// The OpenAI <-> service mapping (server/http/openai_api.h, chat_template.h): request parsing,
// the one table of HTTP statuses, error JSON, finish reasons, chunks and chat templates. The
// service's own validation (request_validation.h) produces the errors that are reworded, so a
// change of its words shows here.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "retain/v1/retain.pb.h"
#include "server/http/chat_template.h"
#include "server/http/openai_api.h"
#include "server/request_validation.h"

namespace retain::server {
namespace {

using nlohmann::json;

absl::StatusOr<OpenAiRequest> Parse(const json& body, ApiKind kind = ApiKind::kCompletion) {
  return ParseOpenAiRequest(body.dump(), kind);
}

TEST(OpenAiStatus, EveryCodeHasOneHttpStatus) {
  const std::pair<absl::StatusCode, int> want[] = {
      {absl::StatusCode::kOk, 200},
      {absl::StatusCode::kCancelled, 499},
      {absl::StatusCode::kUnknown, 500},
      {absl::StatusCode::kInvalidArgument, 400},
      {absl::StatusCode::kDeadlineExceeded, 504},
      {absl::StatusCode::kNotFound, 404},
      {absl::StatusCode::kAlreadyExists, 409},
      {absl::StatusCode::kPermissionDenied, 403},
      {absl::StatusCode::kResourceExhausted, 429},
      {absl::StatusCode::kFailedPrecondition, 409},
      {absl::StatusCode::kAborted, 409},
      {absl::StatusCode::kOutOfRange, 400},
      {absl::StatusCode::kUnimplemented, 501},
      {absl::StatusCode::kInternal, 500},
      {absl::StatusCode::kUnavailable, 503},
      {absl::StatusCode::kDataLoss, 500},
      {absl::StatusCode::kUnauthenticated, 401},
  };
  for (const auto& [code, http] : want) EXPECT_EQ(HttpStatusOf(code), http) << absl::StatusCodeToString(code);
}

TEST(OpenAiStatus, ErrorJsonHasOpenAisShape) {
  const json e = ErrorJson(absl::InvalidArgumentError("temperature must be a number"));
  ASSERT_TRUE(e.contains("error"));
  EXPECT_EQ(e["error"]["message"], "temperature must be a number");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "temperature");
  EXPECT_EQ(e["error"]["code"], "invalid_argument");
  const json auth = ErrorJson(absl::UnauthenticatedError("missing or unknown bearer token"));
  EXPECT_EQ(auth["error"]["type"], "authentication_error");
  EXPECT_TRUE(auth["error"]["param"].is_null());
  EXPECT_EQ(ErrorJson(absl::ResourceExhaustedError("full"))["error"]["type"], "rate_limit_error");
  EXPECT_EQ(ErrorJson(absl::NotFoundError("model \"x\" is not served"))["error"]["type"], "not_found_error");
  EXPECT_EQ(ErrorJson(absl::NotFoundError("model \"x\" is not served"))["error"]["param"], "model");
  EXPECT_EQ(ErrorJson(absl::UnavailableError("draining"))["error"]["type"], "server_error");
  EXPECT_EQ(ParamOf("stop[1] must be a string"), "stop[1]");
  EXPECT_EQ(ParamOf("messages[0].role \"x\" is not"), "messages[0].role");
  EXPECT_EQ(ParamOf("the request body is not valid JSON"), "");
}

TEST(OpenAiStatus, ServiceErrorsNameTheRequestParameter) {
  // A real validation error of the service, for a request parsed from OpenAI JSON.
  auto r = Parse({{"prompt", {1, 2}}, {"top_p", 2.0}});  // token ids: this context has no tokenizer
  ASSERT_TRUE(r.ok()) << r.status();
  engine::ServingOptions options;
  ValidationContext vc{&options, 256, nullptr};
  auto input = ValidateGenerateRequest(r->generate, vc);
  ASSERT_FALSE(input.ok());
  EXPECT_TRUE(absl::StartsWith(input.status().message(), "sampling.top_p")) << input.status();
  const absl::Status said = ToOpenAiStatus(input.status(), ApiKind::kCompletion);
  EXPECT_TRUE(absl::StartsWith(said.message(), "top_p ")) << said;
  EXPECT_EQ(ErrorJson(said)["error"]["param"], "top_p");

  auto big = Parse({{"prompt", {1}}, {"max_tokens", options.max_tokens_limit + 1}});
  ASSERT_TRUE(big.ok());
  const absl::Status too_many = ToOpenAiStatus(ValidateGenerateRequest(big->generate, vc).status(), ApiKind::kChat);
  EXPECT_EQ(ErrorJson(too_many)["error"]["param"], "max_tokens") << too_many;

  auto empty = Parse(json::object());
  ASSERT_TRUE(empty.ok());
  const absl::Status no_prompt = ToOpenAiStatus(ValidateGenerateRequest(empty->generate, vc).status(), ApiKind::kCompletion);
  EXPECT_EQ(ErrorJson(no_prompt)["error"]["param"], "prompt") << no_prompt;
}

TEST(OpenAiRequestParse, MapsParametersToTheService) {
  auto r = Parse({{"model", "m"},
                  {"prompt", "Hello"},
                  {"max_tokens", 7},
                  {"temperature", 0},
                  {"top_p", 0.5},
                  {"seed", -1},
                  {"presence_penalty", 0.25},
                  {"frequency_penalty", 0.5},
                  {"stop", "\n"},
                  {"logprobs", 3},
                  {"n", 1},
                  {"stream", true},
                  {"stream_options", {{"include_usage", true}}},
                  {"session_id", "s-1"},
                  {"user", "ignored"}});
  ASSERT_TRUE(r.ok()) << r.status();
  const v1::GenerateRequest& g = r->generate;
  EXPECT_EQ(g.model(), "m");
  EXPECT_EQ(g.prompt_text(), "Hello");
  EXPECT_EQ(g.session_id(), "s-1");
  EXPECT_EQ(g.stopping().max_tokens(), 7);
  ASSERT_EQ(g.stopping().stop_size(), 1);
  EXPECT_EQ(g.stopping().stop(0), "\n");
  EXPECT_EQ(g.sampling().temperature(), 0.0f);
  EXPECT_TRUE(g.sampling().has_temperature());
  EXPECT_EQ(g.sampling().top_p(), 0.5f);
  EXPECT_EQ(g.sampling().seed(), ~uint64_t{0});  // -1's bits
  EXPECT_EQ(g.sampling().presence_penalty(), 0.25f);
  EXPECT_EQ(g.sampling().frequency_penalty(), 0.5f);
  EXPECT_EQ(g.logprobs(), 3);
  EXPECT_TRUE(r->logprobs);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_FALSE(g.sampling().has_top_k());

  auto tokens = Parse({{"prompt", {1, 2, 3}}, {"stop", {"a", "b"}}});
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->generate.prompt_tokens_size(), 3);
  EXPECT_EQ(tokens->generate.stopping().stop_size(), 2);
}

TEST(OpenAiRequestParse, ChatMessagesAndLogprobs) {
  auto r = Parse({{"messages", {{{"role", "system"}, {"content", "Be brief."}},
                                {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi"}}}}}}},
                  {"max_completion_tokens", 5},
                  {"logprobs", true},
                  {"top_logprobs", 0}},
                 ApiKind::kChat);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[1].content, "Hi");
  EXPECT_EQ(r->generate.stopping().max_tokens(), 5);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->top_logprobs, 0);
  EXPECT_EQ(r->generate.logprobs(), 1);  // the engine needs one alternative to report the chosen token
  EXPECT_TRUE(r->generate.prompt_text().empty());  // rendered once the model (its template) is known
}

TEST(OpenAiRequestParse, RefusalsNameTheParameter) {
  const std::pair<json, std::string> bad[] = {
      {{{"prompt", "x"}, {"n", 2}}, "n"},
      {{{"prompt", "x"}, {"best_of", 3}}, "best_of"},
      {{{"prompt", "x"}, {"echo", true}}, "echo"},
      {{{"prompt", "x"}, {"temperature", "hot"}}, "temperature"},
      {{{"prompt", "x"}, {"max_tokens", -1}}, "max_tokens"},
      {{{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens"},
      {{{"prompt", "x"}, {"stop", {"a", 3}}}, "stop[1]"},
      {{{"prompt", "x"}, {"logprobs", 21}}, "logprobs"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"prompt", {"a", "b"}}}, "prompt"},
      {{{"prompt", {1, -2}}}, "prompt[1]"},
      {{{"prompt", "x"}, {"model", 3}}, "model"},
      {{{"prompt", "x"}, {"logit_bias", {{"5", 1}}}}, "logit_bias"},
  };
  for (const auto& [body, param] : bad) {
    auto r = Parse(body);
    ASSERT_FALSE(r.ok()) << body.dump();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorJson(r.status())["error"]["param"], param) << r.status();
  }
  const std::pair<json, std::string> chat_bad[] = {
      {json::object(), "messages"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", {{{"role", "user"}}}}}, "messages[0].content"},
      {{{"messages", {{{"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}}, "top_logprobs"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"logprobs", 2}}, "logprobs"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"tools", {{{"type", "function"}}}}}, "tools"},
  };
  for (const auto& [body, param] : chat_bad) {
    auto r = Parse(body, ApiKind::kChat);
    ASSERT_FALSE(r.ok()) << body.dump();
    EXPECT_EQ(ErrorJson(r.status())["error"]["param"], param) << r.status();
  }
  EXPECT_EQ(ParseOpenAiRequest("{not json", ApiKind::kChat).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseOpenAiRequest("[1]", ApiKind::kChat).status().message(), "the request body must be a JSON object");
}

TEST(OpenAiFinish, ReasonsMapFromTheService) {
  EXPECT_STREQ(OpenAiFinishReason(engine::FinishReason::kStop), "stop");
  EXPECT_STREQ(OpenAiFinishReason(engine::FinishReason::kEos), "stop");
  EXPECT_STREQ(OpenAiFinishReason(engine::FinishReason::kLength), "length");
  EXPECT_STREQ(OpenAiFinishReason(engine::FinishReason::kCancelled), "cancelled");
}

TEST(OpenAiResponses, ChunksResponsesAndSseFraming) {
  ResponseMeta chat{ApiKind::kChat, "chatcmpl-req-1", "m", "s-1", 1700000000, true, 1};
  const std::vector<TokenOut> toks = {{"He", -0.5f, {{"He", -0.5f}, {"Ha", -1.5f}}}, {"llo", -0.25f, {{"llo", -0.25f}}}};
  const json first = ChunkJson(chat, {}, nullptr, true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["session_id"], "s-1");
  const json mid = ChunkJson(chat, {toks[0]}, nullptr, false);
  EXPECT_EQ(mid["choices"][0]["delta"]["content"], "He");
  EXPECT_FALSE(mid["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(mid["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 1u);  // top_logprobs = 1
  EXPECT_TRUE(mid["choices"][0]["finish_reason"].is_null());
  const json last = ChunkJson(chat, {}, "length", false);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  const json usage = UsageChunkJson(chat, 4, 2, 3);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 3);

  const json whole = ResponseJson(chat, toks, "stop", 4, 0);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(whole["choices"][0]["finish_reason"], "stop");

  ResponseMeta comp{ApiKind::kCompletion, "cmpl-req-2", "m", "", 1, true, 2};
  const json c = ResponseJson(comp, toks, "length", 3, 0);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "Hello");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json({0, 2}));
  EXPECT_EQ(c["choices"][0]["logprobs"]["top_logprobs"][0].size(), 2u);
  EXPECT_TRUE(c["session_id"].is_null());

  const std::string sse = SseEvent({{"a", 1}});
  EXPECT_EQ(sse, "data: {\"a\":1}\n\n");
  EXPECT_EQ(SseEvent({{"t", std::string("\xff")}}), "data: {\"t\":\"\xef\xbf\xbd\"}\n\n");  // U+FFFD, no throw
}

TEST(ChatTemplates, RwkvWorldByDefault) {
  const ChatTemplate t;
  auto p = RenderChat(t, {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, false);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Bye\n\nAssistant:");
  auto more = RenderChat(t, {{"user", "Again"}}, true);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(*more, "\n\nUser: Again\n\nAssistant:");
  auto bad = RenderChat(t, {{"tool", "x"}}, false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParamOf(bad.status().message()), "messages[0].role");
}

TEST(ChatTemplates, ReadFromConfigJson) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("retain-chat-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) { std::ofstream(dir / "config.json") << text; };
  write(R"({"architecture": "rwkv7", "chat_template": {"user": "<u>{content}</u>", "generation": "<a>"}})");
  auto t = LoadChatTemplate(dir.string());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*RenderChat(*t, {{"user", "hi"}}, false), "<u>hi</u><a>");
  EXPECT_EQ(t->system, ChatTemplate().system);  // the keys not given keep the default
  write(R"({"chat_template": {"user": 3}})");
  EXPECT_EQ(LoadChatTemplate(dir.string()).status().code(), absl::StatusCode::kInvalidArgument);
  write(R"({"chat_template": {"usr": "x"}})");
  EXPECT_NE(LoadChatTemplate(dir.string()).status().message().find("chat_template.usr"), std::string::npos);
  write(R"({"architecture": "rwkv7"})");
  EXPECT_EQ(LoadChatTemplate(dir.string())->user, ChatTemplate().user);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace retain::server
