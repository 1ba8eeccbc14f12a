// retain-server end to end: the real binary started on 127.0.0.1, called through the real RPCs
// with the C++ stubs. Truth comes from outside the server: the model driven directly through the
// engine's Model interface (exact to its training record, default_model_test), retain-run, and a
// conformance kit's reference logits.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "engine/tools/conformance_case.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/v1/retain.grpc.pb.h"
#include "tests/testing/command.h"
#include "tests/testing/direct_greedy.h"
#include "tests/testing/paths.h"
#include "tests/testing/server_process.h"
#include "tests/testing/service_client.h"

namespace retain {
namespace {

using retain::testing::HealthStatus;
using retain::testing::HttpGet;
using retain::testing::MetricValue;
using retain::testing::ServerProcess;
namespace v1 = retain::v1;

using retain::testing::DefaultModelDir;
using retain::testing::DirectGreedy;

std::vector<int32_t> Bytes(const std::string& s) { return retain::testing::ByteTokens(s); }

struct Stream {
  grpc::Status status;
  std::optional<v1::Started> started;
  std::vector<int32_t> ids;
  std::string text;
  std::optional<v1::Finished> finished;
};

class Client {
 public:
  explicit Client(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        stub_(v1::Retain::NewStub(channel_)) {}

  v1::Retain::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

  // Reads a whole stream; `stop_after` > 0 cancels the call once that many tokens have arrived.
  Stream Generate(const v1::GenerateRequest& req, int stop_after = 0, int deadline_ms = 60000) {
    retain::testing::GenerateStream read =
        retain::testing::ReadGenerate(*stub_, req, stop_after, std::chrono::milliseconds(deadline_ms));
    Stream s;
    s.status = read.status;
    for (const v1::GenerateResponse& r : read.responses) {
      if (r.has_started()) s.started = r.started();
      if (r.has_token()) {
        s.ids.push_back(r.token().id());
        s.text += r.token().text();
      }
      if (r.has_finished()) s.finished = r.finished();
    }
    return s;
  }

  v1::Session CreateSession(const std::string& prefix = "") {
    grpc::ClientContext ctx;
    v1::CreateSessionRequest req;
    if (!prefix.empty()) req.set_prefix_text(prefix);
    v1::Session s;
    grpc::Status st = stub_->CreateSession(&ctx, req, &s);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return s;
  }

  grpc::Status GetSession(const std::string& id, v1::Session* out) {
    grpc::ClientContext ctx;
    v1::GetSessionRequest req;
    req.set_session_id(id);
    return stub_->GetSession(&ctx, req, out);
  }

  std::string Export(const std::string& id) {
    grpc::ClientContext ctx;
    v1::ExportSessionRequest req;
    req.set_session_id(id);
    auto reader = stub_->ExportSession(&ctx, req);
    std::string bytes;
    v1::SessionChunk c;
    while (reader->Read(&c)) {
      EXPECT_LE(c.data().size(), size_t{1} << 20);
      bytes += c.data();
    }
    grpc::Status st = reader->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return bytes;
  }

  grpc::Status Import(const std::string& bytes, v1::Session* out, size_t chunk = 4096) {
    grpc::ClientContext ctx;
    auto writer = stub_->ImportSession(&ctx, out);
    for (size_t at = 0; at < bytes.size(); at += chunk) {
      v1::SessionChunk c;
      c.set_data(bytes.substr(at, chunk));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Retain::Stub> stub_;
};

v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens, const std::string& session = "") {
  v1::GenerateRequest req;
  req.set_prompt_text(prompt);
  req.set_session_id(session);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_tokens(max_tokens);
  return req;
}

class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto p = ServerProcess::Start({"--threads", "2", "--max-batch", "32", "--max-step-tokens", "64"});
    ASSERT_TRUE(p.ok()) << p.status();
    server_ = std::move(*p).release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  Client client() { return Client(server_->address()); }
  static ServerProcess* server_;
};
ServerProcess* ServiceTest::server_ = nullptr;

TEST_F(ServiceTest, GreedyGenerateEqualsRetainRunAndTheModelDrivenDirectly) {
  const std::string prompt = "And God said";
  Client c = client();
  Stream s = c.Generate(Greedy(prompt, 40));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  ASSERT_TRUE(s.started && s.finished);
  EXPECT_EQ(s.started->prompt_tokens(), static_cast<int>(prompt.size()));
  EXPECT_EQ(s.finished->reason(), v1::Finished::LENGTH);
  EXPECT_EQ(s.ids, DirectGreedy(DefaultModelDir(), Bytes(prompt), 40));
  auto run = retain::testing::RunCommand(std::string(RETAIN_RUN_BIN) + " --prompt '" + prompt +
                                         "' --temperature 0 --max-tokens 40 --threads 1 2>/dev/null");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_EQ(s.text + s.finished->text_tail() + "\n", run.out);
}

// The conformance kit's reference (the official implementation's logits): for every prefix of
// a prompt and its teacher-forced decode tokens, the greedy token is the reference's argmax.
TEST(ServiceConformance, PromptTokensReproduceTheKitsReferenceArgmax) {
  const std::string kit = retain::testing::KitDir("rwkv7-tiny");
  ASSERT_TRUE(std::ifstream(kit + "/case.json").good()) << "missing kit " << kit;
  auto p = ServerProcess::Start({"--model", "tiny=" + kit, "--threads", "1"});
  ASSERT_TRUE(p.ok()) << p.status();
  Client c((*p)->address());
  auto kase = engine::ReadConformanceCase(kit + "/case.json");
  ASSERT_TRUE(kase.ok()) << kase.status();
  auto expected = engine::SafetensorsFile::Open(kit + "/expected.safetensors");
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto argmax_row = [&](const std::string& name, size_t row) {
    const engine::TensorInfo* t = (*expected)->Find(name);
    EXPECT_NE(t, nullptr) << name;
    const int vocab = static_cast<int>(t->shape[1]);
    const float* f = reinterpret_cast<const float*>(t->data) + row * vocab;
    return static_cast<int32_t>(std::max_element(f, f + vocab) - f);
  };
  int checked = 0;
  for (size_t i = 0; i < kase->prompts.size(); ++i) {
    std::vector<int32_t> ids = kase->prompts[i];
    const size_t plen = ids.size();
    ids.insert(ids.end(), kase->decode[i].begin(), kase->decode[i].end());
    for (size_t k = 1; k <= ids.size(); ++k) {
      v1::GenerateRequest req;
      for (size_t j = 0; j < k; ++j) req.add_prompt_tokens(ids[j]);
      req.mutable_sampling()->set_temperature(0);
      req.mutable_stopping()->set_max_tokens(1);
      req.mutable_stopping()->set_ignore_eos(true);
      Stream s = c.Generate(req);
      ASSERT_TRUE(s.status.ok()) << s.status.error_message();
      ASSERT_EQ(s.ids.size(), 1u);
      const int32_t want = k <= plen ? argmax_row("prompt" + std::to_string(i) + ".logits", k - 1)
                                     : argmax_row("prompt" + std::to_string(i) + ".decode_logits", k - plen - 1);
      EXPECT_EQ(s.ids[0], want) << "prompt " << i << " prefix " << k;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST_F(ServiceTest, SixteenConcurrentStreamsEachEqualTheirSoloRunWhileALongPromptPrefills) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back("And the " + std::to_string(i) + " sons of");
  std::vector<std::vector<int32_t>> solo;
  {
    Client c = client();
    for (const auto& p : prompts) solo.push_back(c.Generate(Greedy(p, 24)).ids);
  }
  std::string long_prompt;
  while (long_prompt.size() < 3000) long_prompt += "And the LORD spake unto Moses, saying, ";
  std::vector<Stream> got(16);
  Stream long_stream;
  std::vector<std::thread> threads;
  threads.emplace_back([&] { long_stream = client().Generate(Greedy(long_prompt, 8)); });
  for (int i = 0; i < 16; ++i) threads.emplace_back([&, i] { got[i] = client().Generate(Greedy(prompts[i], 24)); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status.error_message();
    EXPECT_EQ(got[i].ids, solo[i]) << "stream " << i;
  }
  ASSERT_TRUE(long_stream.status.ok());
  EXPECT_EQ(long_stream.ids, DirectGreedy(DefaultModelDir(), Bytes(long_prompt), 8));
}

TEST_F(ServiceTest, SessionOverThreeRequestsEqualsOneLongRequest) {
  Client c = client();
  const std::string prompt = "In the beginning";
  const auto whole = c.Generate(Greedy(prompt, 36)).ids;
  v1::Session s = c.CreateSession();
  EXPECT_EQ(s.position(), 0);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) {
    Stream part = c.Generate(Greedy(i == 0 ? prompt : "", 12, s.id()));
    ASSERT_TRUE(part.status.ok()) << part.status.error_message();
    EXPECT_EQ(part.started->position_before(), i == 0 ? 0 : static_cast<int64_t>(prompt.size() + 12 * i));
    got.insert(got.end(), part.ids.begin(), part.ids.end());
  }
  EXPECT_EQ(got, whole);
  v1::Session after;
  ASSERT_TRUE(c.GetSession(s.id(), &after).ok());
  EXPECT_EQ(after.position(), static_cast<int64_t>(prompt.size() + 36));
}

TEST_F(ServiceTest, ForkGivesIndependentContinuationsEachEqualToTheParents) {
  Client c = client();
  const std::string prompt = "Blessed are the";
  const auto whole = c.Generate(Greedy(prompt, 30)).ids;
  v1::Session parent = c.CreateSession(prompt);
  EXPECT_EQ(parent.position(), static_cast<int64_t>(prompt.size()));
  std::vector<std::string> forks;
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    v1::ForkSessionRequest req;
    req.set_session_id(parent.id());
    v1::Session f;
    ASSERT_TRUE(c.stub().ForkSession(&ctx, req, &f).ok());
    EXPECT_EQ(f.position(), parent.position());
    forks.push_back(f.id());
  }
  EXPECT_EQ(c.Generate(Greedy("", 30, forks[0])).ids, whole);
  EXPECT_EQ(c.Generate(Greedy("", 30, parent.id())).ids, whole);
  EXPECT_EQ(c.Generate(Greedy("", 30, forks[1])).ids, whole);
}

TEST_F(ServiceTest, ExportImportIntoASecondServerProcessContinuesAsIfNeverMoved) {
  Client c = client();
  const std::string prompt = "The earth was without form";
  const auto whole = c.Generate(Greedy(prompt, 40)).ids;
  v1::Session s = c.CreateSession();
  Stream first = c.Generate(Greedy(prompt, 20, s.id()));
  const std::string bytes = c.Export(s.id());
  ASSERT_GT(bytes.size(), 1000u);

  auto other = ServerProcess::Start({"--threads", "1"});
  ASSERT_TRUE(other.ok()) << other.status();
  Client c2((*other)->address());
  // Damaged, truncated and foreign bytes are refused and change nothing.
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  v1::Session out;
  grpc::Status st = c2.Import(flipped, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  st = c2.Import(bytes.substr(0, bytes.size() - 9), &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  st = c2.Import("not a snapshot at all", &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  {
    grpc::ClientContext ctx;
    v1::ListSessionsResponse list;
    ASSERT_TRUE(c2.stub().ListSessions(&ctx, v1::ListSessionsRequest(), &list).ok());
    EXPECT_EQ(list.sessions_size(), 0);
  }
  v1::Session moved;
  st = c2.Import(bytes, &moved);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(moved.position(), static_cast<int64_t>(prompt.size() + 20));
  Stream rest = c2.Generate(Greedy("", 20, moved.id()));
  std::vector<int32_t> got = first.ids;
  got.insert(got.end(), rest.ids.begin(), rest.ids.end());
  EXPECT_EQ(got, whole);

  // A snapshot of another model is refused by name.
  const std::string kit = retain::testing::KitDir("rwkv7-tiny");
  auto tiny = ServerProcess::Start({"--model", "tiny=" + kit, "--threads", "1"});
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  st = Client((*tiny)->address()).Import(bytes, &out);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
}

// After a stream ends early the session holds exactly the tokens the server wrote to it: the
// tokens the client read, plus any that were already on the wire when the client cancelled (a
// server cannot know what the network dropped; GetSession says how many). Never half a step:
// continuing from the reported position equals never having stopped.
void ExpectConsistentAfterCut(Client& c, const std::string& session, const std::string& prompt,
                              const std::vector<int32_t>& received, const std::vector<int32_t>& whole) {
  v1::Session after;
  for (int i = 0; i < 250 && c.GetSession(session, &after).ok() && after.busy(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(c.GetSession(session, &after).ok());
  ASSERT_FALSE(after.busy()) << "the cut request never left the batch";
  const int64_t n = after.position() - static_cast<int64_t>(prompt.size());
  ASSERT_GE(n, static_cast<int64_t>(received.size()));
  ASSERT_LE(n, static_cast<int64_t>(whole.size()));
  EXPECT_TRUE(std::equal(received.begin(), received.end(), whole.begin())) << "received tokens are not a prefix";
  std::printf("cut after %zu tokens received; session at %lld generated tokens\n", received.size(),
              static_cast<long long>(n));
  if (n == static_cast<int64_t>(whole.size())) return;
  Stream rest = c.Generate(Greedy("", static_cast<int>(whole.size() - n), session));
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_EQ(rest.ids, std::vector<int32_t>(whole.begin() + n, whole.end()));
}

TEST_F(ServiceTest, ClientCancelAndDeadlineLeaveTheSessionAtTheTokensSent) {
  Client c = client();
  const std::string prompt = "And it came to pass";
  const auto whole = c.Generate(Greedy(prompt, 1500)).ids;
  v1::Session s = c.CreateSession();
  Stream cut = c.Generate(Greedy(prompt, 1500, s.id()), /*stop_after=*/10);
  EXPECT_EQ(cut.status.error_code(), grpc::StatusCode::CANCELLED);
  ExpectConsistentAfterCut(c, s.id(), prompt, cut.ids, whole);

  v1::Session d = c.CreateSession();
  Stream late = c.Generate(Greedy(prompt, 8000, d.id()), 0, /*deadline_ms=*/60);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ExpectConsistentAfterCut(c, d.id(), prompt, std::vector<int32_t>(late.ids.begin(), late.ids.begin() +
                                                                   std::min<size_t>(late.ids.size(), whole.size())),
                           whole);
}

grpc::Status StopGeneration(Client& c, const std::string& request_id) {
  grpc::ClientContext ctx;
  v1::StopGenerationRequest req;
  req.set_request_id(request_id);
  v1::StopGenerationResponse resp;
  return c.stub().StopGeneration(&ctx, req, &resp);
}

TEST_F(ServiceTest, StopGenerationEndsTheStreamWithExactlyTheTokensTheSessionConsumed) {
  Client c = client();
  const std::string prompt = "And it came to pass";
  const auto whole = c.Generate(Greedy(prompt, 1500)).ids;
  v1::Session s = c.CreateSession();
  grpc::ClientContext ctx;
  auto reader = c.stub().Generate(&ctx, Greedy(prompt, 1500, s.id()));
  v1::GenerateResponse r;
  ASSERT_TRUE(reader->Read(&r) && r.has_started());
  const std::string request_id = r.started().request_id();
  std::vector<int32_t> ids;
  std::optional<v1::Finished> finished;
  bool stopped = false;
  while (reader->Read(&r)) {
    if (r.has_token()) ids.push_back(r.token().id());
    if (r.has_finished()) finished = r.finished();
    if (ids.size() == 10 && !stopped) {
      ASSERT_TRUE(StopGeneration(c, request_id).ok());
      stopped = true;
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->reason(), v1::Finished::CANCELLED);
  ASSERT_LT(ids.size(), whole.size()) << "the request ran to its end: stopped too late to test anything";
  // Exactly what was received: nothing in flight is lost to the client.
  EXPECT_EQ(finished->position(), static_cast<int64_t>(prompt.size() + ids.size()));
  v1::Session after;
  ASSERT_TRUE(c.GetSession(s.id(), &after).ok());
  EXPECT_EQ(after.position(), finished->position());
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), whole.begin()));
  Stream rest = c.Generate(Greedy("", static_cast<int>(whole.size() - ids.size()), s.id()));
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message();
  EXPECT_EQ(rest.ids, std::vector<int32_t>(whole.begin() + ids.size(), whole.end()));
  // The request is gone now; an id never handed out and an empty one are refused by name.
  EXPECT_EQ(StopGeneration(c, request_id).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(StopGeneration(c, "req-999999999").error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status empty = StopGeneration(c, "");
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(empty.error_message().find("request_id"), std::string::npos) << empty.error_message();
}

TEST_F(ServiceTest, BadInputsGetTheirCodeAndAMessageNamingTheFieldWhileAStreamBesideIsUnaffected) {
  Client c = client();
  const std::string prompt = "Thus saith the LORD";
  const auto alone = c.Generate(Greedy(prompt, 200)).ids;
  Stream beside;
  std::thread t([&] { beside = client().Generate(Greedy(prompt, 200)); });

  v1::Session busy = c.CreateSession();
  std::atomic<bool> busy_started{false};
  std::thread hold([&] {
    client().Generate(Greedy(prompt, 400, busy.id()), 0, 60000);
    busy_started = true;
  });

  struct Case {
    const char* what;
    v1::GenerateRequest req;
    grpc::StatusCode code;
    const char* field;
  };
  std::vector<Case> cases;
  auto add = [&](const char* what, grpc::StatusCode code, const char* field, auto edit) {
    v1::GenerateRequest r = Greedy("x", 4);
    edit(r);
    cases.push_back({what, r, code, field});
  };
  add("both prompts", grpc::StatusCode::INVALID_ARGUMENT, "prompt", [](auto& r) { r.add_prompt_tokens(1); });
  add("empty prompt", grpc::StatusCode::INVALID_ARGUMENT, "prompt", [](auto& r) { r.clear_prompt_text(); });
  add("token out of range", grpc::StatusCode::INVALID_ARGUMENT, "prompt_tokens",
      [](auto& r) { r.clear_prompt_text(); r.add_prompt_tokens(5); r.add_prompt_tokens(256); });
  add("negative token", grpc::StatusCode::INVALID_ARGUMENT, "prompt_tokens",
      [](auto& r) { r.clear_prompt_text(); r.add_prompt_tokens(-1); });
  add("NaN temperature", grpc::StatusCode::INVALID_ARGUMENT, "temperature",
      [](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); });
  add("negative top_p", grpc::StatusCode::INVALID_ARGUMENT, "top_p", [](auto& r) { r.mutable_sampling()->set_top_p(-0.5f); });
  add("negative top_k", grpc::StatusCode::INVALID_ARGUMENT, "top_k", [](auto& r) { r.mutable_sampling()->set_top_k(-3); });
  add("min_p over 1", grpc::StatusCode::INVALID_ARGUMENT, "min_p", [](auto& r) { r.mutable_sampling()->set_min_p(2.0f); });
  add("zero repetition penalty", grpc::StatusCode::INVALID_ARGUMENT, "repetition_penalty",
      [](auto& r) { r.mutable_sampling()->set_repetition_penalty(0.0f); });
  add("max_tokens over the limit", grpc::StatusCode::INVALID_ARGUMENT, "max_tokens",
      [](auto& r) { r.mutable_stopping()->set_max_tokens(1 << 30); });
  add("logprobs over 20", grpc::StatusCode::INVALID_ARGUMENT, "logprobs", [](auto& r) { r.set_logprobs(21); });
  add("empty stop string", grpc::StatusCode::INVALID_ARGUMENT, "stop", [](auto& r) { r.mutable_stopping()->add_stop(""); });
  add("unknown model", grpc::StatusCode::NOT_FOUND, "model", [](auto& r) { r.set_model("no-such-model"); });
  add("unknown session", grpc::StatusCode::NOT_FOUND, "session", [](auto& r) { r.set_session_id("0123456789abcdef0123456789abcdef"); });
  add("over the prompt limit", grpc::StatusCode::INVALID_ARGUMENT, "prompt",
      [](auto& r) { r.set_prompt_text(std::string(70000, 'a')); });
  for (const Case& k : cases) {
    Stream s = c.Generate(k.req);
    EXPECT_EQ(s.status.error_code(), k.code) << k.what << ": " << s.status.error_message();
    EXPECT_NE(s.status.error_message().find(k.field), std::string::npos) << k.what << ": " << s.status.error_message();
    EXPECT_TRUE(s.ids.empty()) << k.what;
  }
  // A second request on a session that has one in flight.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Stream second = c.Generate(Greedy("y", 4, busy.id()));
  if (!busy_started) {
    EXPECT_EQ(second.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << second.status.error_message();
  }
  t.join();
  hold.join();
  ASSERT_TRUE(beside.status.ok());
  EXPECT_EQ(beside.ids, alone);
}

TEST_F(ServiceTest, HealthIsServingOverallAndForTheService) {
  Client c = client();
  EXPECT_EQ(HealthStatus(c.channel(), "").value_or(-1), 1);
  EXPECT_EQ(HealthStatus(c.channel(), "retain.v1.Retain").value_or(-1), 1);
}

std::string Scrape(const ServerProcess& server) { return HttpGet(server.metrics_port(), "/metrics"); }

TEST(ServiceMetrics, CountersMatchTheWorkDone) {
  auto p = ServerProcess::Start({"--threads", "1"});
  ASSERT_TRUE(p.ok()) << p.status();
  Client c((*p)->address());
  int generated = 0, prompt_tokens = 0;
  for (int i = 0; i < 3; ++i) {
    Stream s = c.Generate(Greedy("Hello", 5 + i));
    ASSERT_TRUE(s.status.ok());
    generated += static_cast<int>(s.ids.size());
    prompt_tokens += 5;
  }
  v1::Session a = c.CreateSession(), b = c.CreateSession();
  EXPECT_EQ(c.Generate(Greedy("x", 4, "ffffffffffffffffffffffffffffffff")).status.error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string m = Scrape(**p);
  ASSERT_FALSE(m.empty()) << "no /metrics at " << (*p)->metrics_address();
  EXPECT_EQ(MetricValue(m, "retain_requests_finished_total"), 3) << m;
  EXPECT_EQ(MetricValue(m, "retain_generation_tokens_total"), generated);
  EXPECT_EQ(MetricValue(m, "retain_prompt_tokens_total"), prompt_tokens);
  EXPECT_EQ(MetricValue(m, "retain_sessions"), 2);
  EXPECT_GE(MetricValue(m, "retain_request_errors_total"), 1);
  EXPECT_EQ(MetricValue(m, "retain_time_to_first_token_seconds_count"), 3);
  EXPECT_GT(MetricValue(m, "retain_state_pool_bytes_capacity"), 0);
}

TEST(ServiceMetrics, LruEvictionsAreCountedAndAnEvictedSessionSaysSo) {
  // Room for two of the default model's states (about 104 KiB each).
  auto probe = engine::LoadModel(DefaultModelDir());
  ASSERT_TRUE(probe.ok());
  const size_t bytes = (*probe)->state_bytes();
  auto p = ServerProcess::Start({"--threads", "1", "--state-budget-bytes", std::to_string(2 * bytes)});
  ASSERT_TRUE(p.ok()) << p.status();
  Client c((*p)->address());
  v1::Session a = c.CreateSession(), b = c.CreateSession(), d = c.CreateSession();
  v1::Session got;
  grpc::Status st = c.GetSession(a.id(), &got);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("evicted"), std::string::npos) << st.error_message();
  EXPECT_TRUE(c.GetSession(d.id(), &got).ok());
  EXPECT_EQ(MetricValue(Scrape(**p), "retain_evictions_total"), 1);
}

TEST(ServiceStartUp, ATakenMetricsAddressIsAStartUpErrorSayingWhy) {
  auto first = ServerProcess::Start({"--threads", "1"});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ServerProcess::Start({"--threads", "1", "--metrics-listen", (*first)->metrics_address()});
  ASSERT_FALSE(second.ok()) << "a second server started on " << (*first)->metrics_address();
  const std::string err(second.status().message());
  EXPECT_NE(err.find("--metrics-listen " + (*first)->metrics_address() + ": cannot listen: Address already in use"),
            std::string::npos)
      << err;
}

TEST(ServiceDrain, SigtermDuringStreamingDrainsReportsNotServingAndExitsZero) {
  // The endless request must outlast the 2 s drain on any machine: an idle one decodes the default
  // model at thousands of tokens per second.
  auto p = ServerProcess::Start({"--threads", "1", "--drain-timeout", "2", "--max-tokens-limit", "1000000"});
  ASSERT_TRUE(p.ok()) << p.status();
  Client c((*p)->address());
  Stream finishing, endless;
  std::thread a([&] { finishing = Client((*p)->address()).Generate(Greedy("And", 200)); });
  std::thread b([&] { endless = Client((*p)->address()).Generate(Greedy("And", 1000000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(kill((*p)->pid(), SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto health = HealthStatus(c.channel(), "retain.v1.Retain");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 2);  // NOT_SERVING while draining
  Stream refused = c.Generate(Greedy("x", 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  a.join();
  b.join();
  ASSERT_TRUE(finishing.status.ok()) << finishing.status.error_message();
  EXPECT_EQ(finishing.ids.size(), 200u);
  ASSERT_TRUE(endless.finished) << endless.status.error_message();
  EXPECT_EQ(endless.finished->reason(), v1::Finished::CANCELLED);
  EXPECT_EQ(endless.finished->position(), static_cast<int64_t>(3 + endless.ids.size()));
  EXPECT_EQ((*p)->Wait(), 0);
}

}  // namespace
}  // namespace retain
