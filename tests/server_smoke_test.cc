// retain-server end to end: the real binary on the shipped default model (models/rwkv7-kjv-byte),
// started on 127.0.0.1 with port 0 for gRPC and /metrics, checked through real RPCs with the C++
// stubs: ListModels, Tokenize, a greedy Generate (started / tokens / finished LENGTH, the right
// position, the same text as retain-run), bad requests (their code and the field named), health,
// /metrics, and SIGTERM → exit 0, also in the middle of a stream.
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "retain/v1/retain.grpc.pb.h"
#include "tests/testing/command.h"
#include "tests/testing/server_process.h"
#include "tests/testing/service_client.h"
#include "xxhash.h"

namespace retain::server {
namespace {

using retain::testing::HealthStatus;
using retain::testing::HttpGet;
using retain::testing::ServerProcess;

constexpr char kModel[] = "rwkv7-kjv-byte";
constexpr char kPrompt[] = "And God said";

using Stream = retain::testing::GenerateStream;

Stream Generate(v1::Retain::Stub& stub, const v1::GenerateRequest& request) {
  return retain::testing::ReadGenerate(stub, request);
}

// A stream's text: its tokens' and the finished message's tail.
std::string StreamText(const Stream& s) {
  std::string text;
  for (const auto& r : s.responses) {
    if (r.has_token()) text += r.token().text();
    if (r.has_finished()) text += r.finished().text_tail();
  }
  return text;
}

class ServerSmokeTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--threads", "2",
                                     "--state-budget-bytes", "16MiB"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto started = ServerProcess::Start(args);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::Retain::NewStub(channel_);
  }
  void SetUp() override { StartServer(); }

  // Every test ends with the drain: SIGTERM → exit status 0.
  void TearDown() override {
    if (server_ == nullptr) return;
    ASSERT_TRUE(server_->Signal(SIGTERM));
    EXPECT_EQ(server_->Wait(std::chrono::seconds(60)), 0) << server_->Stderr();
    EXPECT_NE(server_->Stderr().find("drained; exiting"), std::string::npos) << server_->Stderr();
  }

  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Retain::Stub> stub_;
};

TEST_F(ServerSmokeTest, StartUpLineNamesTheBoundPorts) {
  EXPECT_GT(server_->port(), 0);
  EXPECT_GT(server_->metrics_port(), 0);
  EXPECT_NE(server_->Stderr().find("(plaintext)"), std::string::npos);
  EXPECT_NE(server_->Stderr().find(kModel), std::string::npos);
}

TEST_F(ServerSmokeTest, ListModelsDescribesTheDefaultModel) {
  grpc::ClientContext ctx;
  v1::ListModelsResponse r;
  ASSERT_TRUE(stub_->ListModels(&ctx, v1::ListModelsRequest(), &r).ok());
  ASSERT_EQ(r.models_size(), 1);
  const v1::Model& m = r.models(0);
  EXPECT_EQ(m.name(), kModel);
  EXPECT_TRUE(m.is_default());
  EXPECT_EQ(m.architecture(), "rwkv7");
  EXPECT_EQ(m.vocab_size(), 256);
  EXPECT_EQ(m.n_layer(), 4);
  EXPECT_EQ(m.n_embd(), 192);
  EXPECT_EQ(m.tokenizer(), "byte");
  EXPECT_EQ(m.backend(), "cpu");
  EXPECT_EQ(m.weight_dtype(), "BF16");
  EXPECT_GT(m.state_bytes(), 0);
  EXPECT_EQ(m.fingerprint().size(), 16u);
}

TEST_F(ServerSmokeTest, TokenizeAndDetokenize) {
  grpc::ClientContext ctx;
  v1::TokenizeRequest req;
  req.set_text(kPrompt);
  v1::TokenizeResponse r;
  ASSERT_TRUE(stub_->Tokenize(&ctx, req, &r).ok());
  const std::string prompt = kPrompt;
  ASSERT_EQ(r.ids_size(), static_cast<int>(prompt.size()));  // byte-level: one id per byte
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(r.ids(i), static_cast<unsigned char>(prompt[i]));

  grpc::ClientContext ctx2;
  v1::DetokenizeRequest dreq;
  for (int id : {0x41, 0xC3, 0xA9, 0xFF, 0x7A}) dreq.add_ids(id);  // "Aé", an invalid byte, "z"
  v1::DetokenizeResponse dr;
  ASSERT_TRUE(stub_->Detokenize(&ctx2, dreq, &dr).ok());
  EXPECT_EQ(dr.text(), "A\xC3\xA9\xEF\xBF\xBDz");
}

TEST_F(ServerSmokeTest, GreedyGenerateStreamsStartedTokensFinished) {
  constexpr int kMaxTokens = 16;
  v1::GenerateRequest req;
  req.set_prompt_text(kPrompt);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_tokens(kMaxTokens);
  const Stream s = Generate(*stub_, req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  ASSERT_EQ(s.responses.size(), static_cast<size_t>(kMaxTokens + 2));
  ASSERT_TRUE(s.responses.front().has_started());
  const v1::Started& started = s.responses.front().started();
  EXPECT_FALSE(started.request_id().empty());
  EXPECT_EQ(started.session_id(), "");
  EXPECT_EQ(started.model(), kModel);
  EXPECT_EQ(started.prompt_tokens(), static_cast<int>(std::string(kPrompt).size()));
  EXPECT_EQ(started.position_before(), 0);
  std::string text;
  for (int i = 1; i <= kMaxTokens; ++i) {
    ASSERT_TRUE(s.responses[i].has_token()) << i;
    text += s.responses[i].token().text();
  }
  ASSERT_TRUE(s.responses.back().has_finished());
  const v1::Finished& f = s.responses.back().finished();
  EXPECT_EQ(f.reason(), v1::Finished::LENGTH);
  EXPECT_EQ(f.usage().prompt_tokens(), static_cast<int>(std::string(kPrompt).size()));
  EXPECT_EQ(f.usage().generated_tokens(), kMaxTokens);
  EXPECT_GT(f.usage().total_seconds(), 0);
  // Prompt plus every token sent (the last one pending, not yet fed, is counted).
  EXPECT_EQ(f.position(), static_cast<int64_t>(std::string(kPrompt).size()) + kMaxTokens);
  text += f.text_tail();

  // The engine's CLI gives the same greedy continuation.
  const auto run = retain::testing::RunCommand(std::string(RETAIN_RUN_BIN) + " --prompt '" + kPrompt +
                                               "' --max-tokens " + std::to_string(kMaxTokens) +
                                               " --temperature 0 2>/dev/null");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_EQ(text + "\n", run.out);

  // One log line for the request.
  EXPECT_TRUE(server_->WaitForStderr("generate " + started.request_id() + " model=" + kModel, std::chrono::seconds(5)))
      << server_->Stderr();
}

TEST_F(ServerSmokeTest, BadRequestsGetTheirCodeAndNameTheField) {
  struct Case {
    const char* what;
    v1::GenerateRequest request;
    grpc::StatusCode code;
    const char* field;
  };
  std::vector<Case> cases;
  {
    Case c{"NaN temperature", {}, grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature"};
    c.request.set_prompt_text(kPrompt);
    c.request.mutable_sampling()->set_temperature(std::numeric_limits<float>::quiet_NaN());
    cases.push_back(c);
  }
  {
    Case c{"both prompt forms", {}, grpc::StatusCode::INVALID_ARGUMENT, "prompt_tokens"};
    c.request.set_prompt_text(kPrompt);
    c.request.add_prompt_tokens(65);
    cases.push_back(c);
  }
  {
    Case c{"empty prompt without a session", {}, grpc::StatusCode::INVALID_ARGUMENT, "prompt_text"};
    cases.push_back(c);
  }
  {
    Case c{"token id out of range", {}, grpc::StatusCode::INVALID_ARGUMENT, "prompt_tokens[1]"};
    c.request.add_prompt_tokens(65);
    c.request.add_prompt_tokens(256);
    cases.push_back(c);
  }
  {
    Case c{"max_tokens over the limit", {}, grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_tokens"};
    c.request.set_prompt_text(kPrompt);
    c.request.mutable_stopping()->set_max_tokens(1 << 30);
    cases.push_back(c);
  }
  {
    Case c{"logprobs over 20", {}, grpc::StatusCode::INVALID_ARGUMENT, "logprobs"};
    c.request.set_prompt_text(kPrompt);
    c.request.set_logprobs(21);
    cases.push_back(c);
  }
  {
    Case c{"empty stop string", {}, grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop[0]"};
    c.request.set_prompt_text(kPrompt);
    c.request.mutable_stopping()->add_stop("");
    cases.push_back(c);
  }
  {
    Case c{"unknown model", {}, grpc::StatusCode::NOT_FOUND, "model"};
    c.request.set_model("no-such-model");
    c.request.set_prompt_text(kPrompt);
    cases.push_back(c);
  }
  {
    Case c{"unknown session", {}, grpc::StatusCode::NOT_FOUND, "session_id"};
    c.request.set_session_id("0123456789abcdef0123456789abcdef");
    c.request.set_prompt_text(kPrompt);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    const Stream s = Generate(*stub_, c.request);
    EXPECT_EQ(s.status.error_code(), c.code) << c.what << ": " << s.status.error_message();
    EXPECT_NE(s.status.error_message().find(c.field), std::string::npos) << c.what << ": " << s.status.error_message();
    EXPECT_TRUE(s.responses.empty()) << c.what;
  }
  // The server goes on serving.
  v1::GenerateRequest ok;
  ok.set_prompt_text(kPrompt);
  ok.mutable_stopping()->set_max_tokens(2);
  EXPECT_TRUE(Generate(*stub_, ok).status.ok());
  // And counted every error.
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("retain_request_errors_total{code=\"INVALID_ARGUMENT\",model=\"rwkv7-kjv-byte\",protocol=\"grpc\"} 7"),
            std::string::npos)
      << metrics;
}

TEST_F(ServerSmokeTest, HealthIsServing) {
  EXPECT_EQ(HealthStatus(channel_, "").value_or(-1), 1);
  EXPECT_EQ(HealthStatus(channel_, "retain.v1.Retain").value_or(-1), 1);
}

TEST_F(ServerSmokeTest, MetricsListFinishedRequests) {
  v1::GenerateRequest req;
  req.set_prompt_text(kPrompt);
  req.mutable_stopping()->set_max_tokens(3);
  ASSERT_TRUE(Generate(*stub_, req).status.ok());
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("retain_requests_finished_total{model=\"rwkv7-kjv-byte\",protocol=\"grpc\",reason=\"length\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("retain_generation_tokens_total{model=\"rwkv7-kjv-byte\"} 3"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("retain_prompt_tokens_total{model=\"rwkv7-kjv-byte\"} 12"), std::string::npos) << metrics;
  // The 12 prompt rows, then the first two generated tokens fed back (the third is never fed).
  EXPECT_NE(metrics.find("retain_step_tokens_total{model=\"rwkv7-kjv-byte\",phase=\"prefill\"} 12"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("retain_step_tokens_total{model=\"rwkv7-kjv-byte\",phase=\"decode\"} 2"), std::string::npos)
      << metrics;
  for (const char* name : {"retain_time_to_first_token_seconds_bucket", "retain_inter_token_latency_seconds_count",
                           "retain_request_duration_seconds_sum", "retain_request_queue_seconds_count",
                           "retain_decode_batch_size_count", "retain_step_duration_seconds_count",
                           "retain_requests_running{model=\"rwkv7-kjv-byte\"} 0",
                           "retain_requests_waiting{model=\"rwkv7-kjv-byte\"} 0", "retain_sessions{model=\"rwkv7-kjv-byte\"} 0",
                           "retain_state_pool_bytes_capacity{model=\"rwkv7-kjv-byte\"}", "retain_state_pool_bytes_used",
                           "retain_evictions_total{model=\"rwkv7-kjv-byte\",reason=\"lru\"} 0"})
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
}

TEST_F(ServerSmokeTest, SessionContinuesWhereItStopped) {
  // Two requests on a session equal one request of their total length (greedy).
  grpc::ClientContext ctx;
  v1::CreateSessionRequest creq;
  creq.set_prefix_text(kPrompt);
  v1::Session session;
  ASSERT_TRUE(stub_->CreateSession(&ctx, creq, &session).ok());
  EXPECT_EQ(session.position(), static_cast<int64_t>(std::string(kPrompt).size()));
  EXPECT_EQ(session.model(), kModel);
  std::string two;
  for (int turn = 0; turn < 2; ++turn) {
    v1::GenerateRequest req;
    req.set_session_id(session.id());
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_tokens(8);
    const Stream s = Generate(*stub_, req);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    two += StreamText(s);
  }
  v1::GenerateRequest one;
  one.set_prompt_text(kPrompt);
  one.mutable_sampling()->set_temperature(0);
  one.mutable_stopping()->set_max_tokens(16);
  EXPECT_EQ(two, StreamText(Generate(*stub_, one)));
  grpc::ClientContext gctx;
  v1::GetSessionRequest greq;
  greq.set_session_id(session.id());
  v1::Session after;
  ASSERT_TRUE(stub_->GetSession(&gctx, greq, &after).ok());
  EXPECT_EQ(after.position(), static_cast<int64_t>(std::string(kPrompt).size()) + 16);
}

TEST_F(ServerSmokeTest, ExportImportRoundTripAndDamagedBytesRefused) {
  grpc::ClientContext ctx;
  v1::CreateSessionRequest creq;
  creq.set_prefix_text(kPrompt);
  v1::Session session;
  ASSERT_TRUE(stub_->CreateSession(&ctx, creq, &session).ok());
  std::string bytes;
  {
    grpc::ClientContext ectx;
    v1::ExportSessionRequest ereq;
    ereq.set_session_id(session.id());
    auto reader = stub_->ExportSession(&ectx, ereq);
    v1::SessionChunk chunk;
    while (reader->Read(&chunk)) bytes += chunk.data();
    ASSERT_TRUE(reader->Finish().ok());
  }
  auto import = [&](const std::string& data, v1::Session* out) {
    grpc::ClientContext ictx;
    auto writer = stub_->ImportSession(&ictx, out);
    for (size_t at = 0; at < data.size(); at += 1000) {
      v1::SessionChunk c;
      c.set_data(data.substr(at, 1000));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  };
  v1::Session imported;
  ASSERT_TRUE(import(bytes, &imported).ok());
  EXPECT_NE(imported.id(), session.id());
  EXPECT_EQ(imported.position(), session.position());

  std::string damaged = bytes;
  damaged[damaged.size() / 2] ^= 0x01;
  v1::Session unused;
  grpc::Status st = import(damaged, &unused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("checksum"), std::string::npos) << st.error_message();
  st = import(bytes.substr(0, bytes.size() - 9), &unused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("truncated"), std::string::npos) << st.error_message();
  // Intact bytes of another model (fingerprint changed, checksum recomputed) and of another
  // format version are refused as not for this server.
  auto reseal = [](std::string b) {
    const uint64_t sum = XXH64(b.data(), b.size() - 8, 0);
    for (int i = 0; i < 8; ++i) b[b.size() - 8 + i] = static_cast<char>((sum >> (8 * i)) & 0xff);
    return b;
  };
  constexpr size_t kFingerprintAt = 8 + 4 + 1 + 5 + 12 + 8;  // magic, version, "rwkv7", shape, state_bytes
  std::string foreign = bytes;
  foreign[kFingerprintAt] ^= 0x01;
  st = import(reseal(foreign), &unused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("fingerprint"), std::string::npos) << st.error_message();
  std::string other_version = bytes;
  other_version[8] = 2;
  st = import(reseal(other_version), &unused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("version"), std::string::npos) << st.error_message();
  std::string bad_magic = bytes;
  bad_magic[0] = 'X';
  st = import(bad_magic, &unused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("magic"), std::string::npos) << st.error_message();

  // The imported session continues exactly as the original does.
  auto continue_greedy = [&](const std::string& id) {
    v1::GenerateRequest req;
    req.set_session_id(id);
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_tokens(8);
    std::vector<int> ids;
    for (const auto& r : Generate(*stub_, req).responses)
      if (r.has_token()) ids.push_back(r.token().id());
    return ids;
  };
  const std::vector<int> a = continue_greedy(session.id());
  EXPECT_EQ(a.size(), 8u);
  EXPECT_EQ(continue_greedy(imported.id()), a);
}

TEST_F(ServerSmokeTest, SigtermDuringAStreamDrainsAndExitsZero) {
  // Restart with a short drain timeout, so the long stream is cancelled by the drain.
  TearDown();
  StartServer({"--drain-timeout", "2", "--max-tokens-limit", "1000000"});
  v1::GenerateRequest req;
  req.set_prompt_text(kPrompt);
  req.mutable_stopping()->set_max_tokens(1000000);
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, req);
  v1::GenerateResponse r;
  int tokens = 0;
  while (tokens < 3 && reader->Read(&r))
    if (r.has_token()) ++tokens;
  ASSERT_EQ(tokens, 3);
  ASSERT_TRUE(server_->Signal(SIGTERM));
  ASSERT_TRUE(server_->WaitForStderr("draining", std::chrono::seconds(10)));
  EXPECT_EQ(HealthStatus(channel_, "").value_or(-1), 2);  // NOT_SERVING while draining
  EXPECT_EQ(HealthStatus(channel_, "retain.v1.Retain").value_or(-1), 2);
  bool finished = false;
  while (reader->Read(&r)) {
    if (r.has_finished()) {
      finished = true;
      EXPECT_EQ(r.finished().reason(), v1::Finished::CANCELLED);
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(finished);
  EXPECT_EQ(server_->Wait(std::chrono::seconds(60)), 0) << server_->Stderr();
  server_.reset();
}

}  // namespace
}  // namespace retain::server
