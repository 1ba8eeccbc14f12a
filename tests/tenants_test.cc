// Tenants end to end: the real retain-server with --auth-tokens over 127.0.0.1. A missing or
// wrong token is UNAUTHENTICATED (one message for both) while health stays open; a tenant cannot
// see, list, generate on, fork, export or delete another's session (NOT_FOUND with the very
// message of an id that never existed); an import belongs to the importer; each per-tenant limit
// holds while another tenant goes on working; metrics carry the tenant, never the token; SIGHUP
// rereads the file without dropping a running stream, and keeps the old tenants when the new
// file is broken; the CLI's --token and $RETAIN_TOKEN.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "retain/v1/retain.grpc.pb.h"
#include "tests/testing/command.h"
#include "tests/testing/server_process.h"
#include "tests/testing/service_client.h"
#include "tests/testing/test_certs.h"

namespace retain::server {
namespace {

using retain::testing::RunCommand;
using retain::testing::ServerProcess;

// sha256("bob-token"), as the file may hold a digest instead of the token.
constexpr char kBobDigest[] = "sha256:97dd3707015dcf069cf73022ed7173b1165db6eff24b441cb57fd069a8c4e525";

class TenantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/retain-tenants-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    tokens_ = dir_ + "/tokens";
  }
  void TearDown() override {
    if (server_ != nullptr) {
      ASSERT_TRUE(server_->Signal(SIGTERM));
      EXPECT_EQ(server_->Wait(), 0) << server_->Stderr();
    }
    RunCommand("rm -rf " + dir_);
  }

  void Start(const std::string& file, std::vector<std::string> extra = {}) {
    ASSERT_TRUE(retain::testing::WriteTextFile(tokens_, file));
    std::vector<std::string> args = {"--threads", "1", "--state-budget-bytes", "4MiB", "--auth-tokens", tokens_,
                                     "--max-tokens-limit", "1000000"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto started = ServerProcess::Start(args);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = v1::Retain::NewStub(channel_);
  }

  // A context carrying `token` ("" = no authorization metadata).
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  absl::StatusOr<v1::Session> Create(const std::string& token) {
    v1::CreateSessionRequest req;
    req.set_prefix_text("And God said");
    v1::Session s;
    grpc::Status st = stub_->CreateSession(Ctx(token).get(), req, &s);
    if (!st.ok()) return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
    return s;
  }

  grpc::Status Get(const std::string& token, const std::string& id, v1::Session* out = nullptr) {
    v1::GetSessionRequest req;
    req.set_session_id(id);
    v1::Session s;
    grpc::Status st = stub_->GetSession(Ctx(token).get(), req, &s);
    if (out != nullptr) *out = s;
    return st;
  }

  grpc::Status Fork(const std::string& token, const std::string& id, v1::Session* out = nullptr) {
    v1::ForkSessionRequest req;
    req.set_session_id(id);
    v1::Session s;
    grpc::Status st = stub_->ForkSession(Ctx(token).get(), req, &s);
    if (out != nullptr) *out = s;
    return st;
  }

  grpc::Status Delete(const std::string& token, const std::string& id) {
    v1::DeleteSessionRequest req;
    req.set_session_id(id);
    v1::DeleteSessionResponse resp;
    return stub_->DeleteSession(Ctx(token).get(), req, &resp);
  }

  std::vector<std::string> List(const std::string& token) {
    v1::ListSessionsResponse resp;
    grpc::Status st = stub_->ListSessions(Ctx(token).get(), v1::ListSessionsRequest(), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    std::vector<std::string> ids;
    for (const auto& s : resp.sessions()) ids.push_back(s.id());
    return ids;
  }

  grpc::Status Export(const std::string& token, const std::string& id, std::string* bytes) {
    v1::ExportSessionRequest req;
    req.set_session_id(id);
    auto ctx = Ctx(token);
    auto reader = stub_->ExportSession(ctx.get(), req);
    v1::SessionChunk c;
    while (reader->Read(&c)) *bytes += c.data();
    return reader->Finish();
  }

  grpc::Status Import(const std::string& token, const std::string& bytes, v1::Session* out) {
    auto ctx = Ctx(token);
    auto writer = stub_->ImportSession(ctx.get(), out);
    for (size_t at = 0; at < bytes.size(); at += 1 << 20) {
      v1::SessionChunk c;
      c.set_data(bytes.substr(at, 1 << 20));
      if (!writer->Write(c)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // A greedy generation of `n` tokens (on `session` when given).
  grpc::Status Generate(const std::string& token, const std::string& session, int n = 4) {
    v1::GenerateRequest req;
    req.set_session_id(session);
    if (session.empty()) req.set_prompt_text("In the beginning");
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_tokens(n);
    auto ctx = Ctx(token);
    auto reader = stub_->Generate(ctx.get(), req);
    v1::GenerateResponse r;
    while (reader->Read(&r)) {
    }
    return reader->Finish();
  }

  // A stream that will not end by itself, read up to its first token.
  struct Endless {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
    int tokens = 0;
    // Reads until `more` further tokens came; false when the stream ended instead.
    bool ReadTokens(int more) {
      v1::GenerateResponse r;
      for (int want = tokens + more; tokens < want;) {
        if (!reader->Read(&r)) return false;
        if (r.has_token()) ++tokens;
      }
      return true;
    }
  };
  Endless StartEndless(const std::string& token) {
    v1::GenerateRequest req;
    req.set_prompt_text("And God said");
    req.mutable_stopping()->set_max_tokens(1000000);
    req.mutable_stopping()->set_ignore_eos(true);
    Endless e;
    e.ctx = Ctx(token);
    e.reader = stub_->Generate(e.ctx.get(), req);
    EXPECT_TRUE(e.ReadTokens(1));
    return e;
  }
  static void Cancel(Endless& e) {
    e.ctx->TryCancel();
    v1::GenerateResponse r;
    while (e.reader->Read(&r)) {
    }
    EXPECT_EQ(e.reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }

  int64_t StateBytes() {
    v1::ListModelsResponse resp;
    EXPECT_TRUE(stub_->ListModels(Ctx("alice-token").get(), v1::ListModelsRequest(), &resp).ok());
    return resp.models(0).state_bytes();
  }

  std::string dir_, tokens_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Retain::Stub> stub_;
};

const std::string kAliceAndBob = absl::StrCat("# tenants\nalice alice-token\n\nbob ", kBobDigest, "  # by digest\n");

TEST_F(TenantsTest, MissingAndWrongTokensAreUnauthenticatedAlike) {
  Start(kAliceAndBob + "dave ZGF2ZQ==\n");
  EXPECT_NE(server_->Stderr().find("tenants: 3 from --auth-tokens " + tokens_), std::string::npos) << server_->Stderr();
  v1::ListModelsResponse resp;
  grpc::Status none = stub_->ListModels(Ctx("").get(), v1::ListModelsRequest(), &resp);
  grpc::Status wrong = stub_->ListModels(Ctx("alice-tokeN").get(), v1::ListModelsRequest(), &resp);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(none.error_message(), wrong.error_message());
  // A scheme other than Bearer is no token either.
  grpc::ClientContext basic;
  basic.AddMetadata("authorization", "Basic alice-token");
  EXPECT_EQ(stub_->ListModels(&basic, v1::ListModelsRequest(), &resp).error_message(), none.error_message());
  // Every RPC of retain.v1.Retain, the streaming ones included.
  EXPECT_EQ(Generate("", "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Create("nope").status().code(), absl::StatusCode::kUnauthenticated);
  std::string bytes;
  EXPECT_EQ(Export("", "0123", &bytes).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  v1::Session imported;
  EXPECT_EQ(Import("", "x", &imported).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The token by value and by digest both work (any bytes but spaces, '=' too); health needs none.
  EXPECT_TRUE(stub_->ListModels(Ctx("alice-token").get(), v1::ListModelsRequest(), &resp).ok());
  EXPECT_TRUE(stub_->ListModels(Ctx("ZGF2ZQ==").get(), v1::ListModelsRequest(), &resp).ok());
  EXPECT_TRUE(stub_->ListModels(Ctx("bob-token").get(), v1::ListModelsRequest(), &resp).ok());
  auto health = retain::testing::HealthStatus(channel_, "retain.v1.Retain");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, 1);
}

TEST_F(TenantsTest, AnotherTenantsSessionDoesNotExist) {
  Start(kAliceAndBob);
  auto s = Create("alice-token");
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string id = s->id();
  EXPECT_GE(id.size(), 32u);  // 128 bits in hex
  // What an id that never existed gets, with that id put in place of ours.
  const std::string never = std::string(id.size(), 'f');
  auto as_if_never = [&](const grpc::Status& st) { return absl::StrReplaceAll(st.error_message(), {{never, id}}); };

  grpc::Status missing = Get("bob-token", never);
  ASSERT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status st = Get("bob-token", id);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), as_if_never(missing));
  st = Generate("bob-token", id);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), as_if_never(Generate("bob-token", never)));
  st = Fork("bob-token", id);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), as_if_never(Fork("bob-token", never)));
  std::string bytes, none;
  st = Export("bob-token", id, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), as_if_never(Export("bob-token", never, &none)));
  EXPECT_TRUE(bytes.empty());
  st = Delete("bob-token", id);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), as_if_never(Delete("bob-token", never)));
  EXPECT_TRUE(List("bob-token").empty());

  // Alice's session is untouched by all that, and hers alone.
  v1::Session got;
  ASSERT_TRUE(Get("alice-token", id, &got).ok());
  EXPECT_EQ(got.position(), s->position());
  EXPECT_EQ(List("alice-token"), std::vector<std::string>{id});
  EXPECT_TRUE(Generate("alice-token", id).ok());
  v1::Session fork;
  ASSERT_TRUE(Fork("alice-token", id, &fork).ok());
  EXPECT_EQ(List("alice-token").size(), 2u);
  EXPECT_EQ(Get("bob-token", fork.id()).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Delete("alice-token", fork.id()).ok());
}

TEST_F(TenantsTest, AnImportedSessionBelongsToTheImporter) {
  Start(kAliceAndBob);
  auto s = Create("alice-token");
  ASSERT_TRUE(s.ok()) << s.status();
  std::string bytes;
  ASSERT_TRUE(Export("alice-token", s->id(), &bytes).ok());
  v1::Session imported;
  grpc::Status st = Import("bob-token", bytes, &imported);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(imported.position(), s->position());
  EXPECT_TRUE(Get("bob-token", imported.id()).ok());
  EXPECT_EQ(List("bob-token"), std::vector<std::string>{imported.id()});
  EXPECT_EQ(Get("alice-token", imported.id()).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(List("alice-token"), std::vector<std::string>{s->id()});
  EXPECT_TRUE(Generate("bob-token", imported.id()).ok());
}

TEST_F(TenantsTest, SessionLimitHoldsWhileOthersGoOn) {
  // The flag is every tenant's default; Alice's column lifts it for her.
  Start(absl::StrCat("alice alice-token sessions=0\nbob ", kBobDigest, "\n"), {"--tenant-max-sessions", "1"});
  auto first = Create("bob-token");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Create("bob-token");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(second.status().message().find("limit of live sessions (sessions=, --tenant-max-sessions)"),
            std::string::npos)
      << second.status();
  EXPECT_EQ(Fork("bob-token", first->id()).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  std::string bytes;
  ASSERT_TRUE(Export("bob-token", first->id(), &bytes).ok());
  v1::Session imported;
  EXPECT_EQ(Import("bob-token", bytes, &imported).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Alice is not limited by Bob's count; Bob gets his place back by deleting.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Create("alice-token").ok());
  ASSERT_TRUE(Delete("bob-token", first->id()).ok());
  EXPECT_TRUE(Create("bob-token").ok());
}

TEST_F(TenantsTest, StateBytesLimitHoldsWhileOthersGoOn) {
  Start(kAliceAndBob);
  const int64_t state = StateBytes();
  ASSERT_GT(state, 0);
  // Room for one session and a half, set by a column (and taken on SIGHUP).
  ASSERT_TRUE(retain::testing::WriteTextFile(
      tokens_, absl::StrCat("alice alice-token\nbob ", kBobDigest, " state-bytes=", state + state / 2, "\n")));
  ASSERT_TRUE(server_->Signal(SIGHUP));
  ASSERT_TRUE(server_->WaitForStderr("reloaded --auth-tokens", std::chrono::seconds(30))) << server_->Stderr();
  auto first = Create("bob-token");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Create("bob-token");
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(second.status().message().find("(state-bytes=, --tenant-max-state-bytes)"), std::string::npos)
      << second.status();
  EXPECT_EQ(Fork("bob-token", first->id()).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Create("alice-token").ok());
}

TEST_F(TenantsTest, RequestLimitHoldsWhileOthersGoOn) {
  Start(kAliceAndBob + "erin erin-token requests=1\n");
  Endless running = StartEndless("erin-token");
  grpc::Status st = Generate("erin-token", "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(st.error_message().find("limit of concurrent requests (requests=, --tenant-max-requests)"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(Create("erin-token").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Generate("alice-token", "").ok());  // others are not held up
  EXPECT_TRUE(running.ReadTokens(2));             // and Erin's one stream goes on
  Cancel(running);
  // Once it is over (the place is given back when the call is done), Erin may start another.
  EXPECT_TRUE(server_->WaitForStderr("outcome=cancelled", std::chrono::seconds(30))) << server_->Stderr();
  EXPECT_TRUE(Generate("erin-token", "").ok());
}

TEST_F(TenantsTest, MetricsCarryTheTenantNeverTheToken) {
  Start(kAliceAndBob, {"--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(Generate("alice-token", "", 3).ok());
  ASSERT_TRUE(Create("bob-token").ok());
  const std::string m = retain::testing::HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(m.find("retain_generation_tokens_total{model=\"rwkv7-kjv-byte\",tenant=\"alice\"} 3"), std::string::npos)
      << m;
  EXPECT_NE(m.find("retain_requests_finished_total{model=\"rwkv7-kjv-byte\",protocol=\"grpc\",reason=\"length\",tenant=\"alice\"} 1"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("retain_sessions{model=\"rwkv7-kjv-byte\",tenant=\"bob\"} 1"), std::string::npos) << m;
  EXPECT_EQ(m.find("alice-token"), std::string::npos);
  EXPECT_EQ(m.find("bob-token"), std::string::npos);
}

TEST_F(TenantsTest, SighupReloadsWithoutDroppingAStream) {
  Start(kAliceAndBob);
  Endless running = StartEndless("alice-token");
  // Bob out, Frank in.
  ASSERT_TRUE(retain::testing::WriteTextFile(tokens_, "alice alice-token\nfrank frank-token\n"));
  ASSERT_TRUE(server_->Signal(SIGHUP));
  ASSERT_TRUE(server_->WaitForStderr("reloaded --auth-tokens " + tokens_ + ": 2 tenants", std::chrono::seconds(30)))
      << server_->Stderr();
  EXPECT_TRUE(Generate("frank-token", "").ok());
  EXPECT_EQ(Generate("bob-token", "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(running.ReadTokens(3));

  // A broken file keeps the tenants as they were, and the log says which line.
  ASSERT_TRUE(retain::testing::WriteTextFile(tokens_, "alice alice-token\nthis line is broken\n"));
  ASSERT_TRUE(server_->Signal(SIGHUP));
  ASSERT_TRUE(server_->WaitForStderr("keeping the 2 tenants loaded before", std::chrono::seconds(30)))
      << server_->Stderr();
  EXPECT_NE(server_->Stderr().find("--auth-tokens " + tokens_ + " line 2: "), std::string::npos) << server_->Stderr();
  EXPECT_TRUE(Generate("frank-token", "").ok());
  EXPECT_TRUE(running.ReadTokens(3));
  Cancel(running);
}

TEST_F(TenantsTest, MalformedTokenFileIsAStartUpErrorNamingTheLine) {
  ASSERT_TRUE(retain::testing::WriteTextFile(tokens_, "alice alice-token\n# fine\nbob sha256:12ab\n"));
  auto r = RunCommand(absl::StrCat("timeout 60 ", RETAIN_SERVER_BIN,
                                   " --listen 127.0.0.1:0 --metrics-listen '' --auth-tokens ", tokens_, " 2>&1"));
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--auth-tokens " + tokens_ + " line 3: sha256: must be followed by 64 hex digits"),
            std::string::npos)
      << r.out;
  // Each kind of malformed line, as the second line of the file.
  const std::pair<const char*, const char*> cases[] = {
      {"bob", "line 2: needs NAME and TOKEN"},
      {"bob b sessions=-1", "line 2: sessions= must be a count >= 0"},
      {"bob b limit=3", "line 2: unknown column \"limit=3\""},
      {"bob sessions=3", "line 2: the second field must be the token"},
      {"b@b b", "line 2: the tenant name must be"},
      {"alice b", "line 2: tenant alice is named twice"},
      {"bob a", "line 2: this token is another tenant's too"},
  };
  for (const auto& [line, error] : cases) {
    ASSERT_TRUE(retain::testing::WriteTextFile(tokens_, absl::StrCat("alice a\n", line, "\n")));
    r = RunCommand(absl::StrCat("timeout 60 ", RETAIN_SERVER_BIN,
                                " --listen 127.0.0.1:0 --metrics-listen '' --auth-tokens ", tokens_, " 2>&1"));
    EXPECT_EQ(r.exit_code, 2) << line << ": " << r.out;
    EXPECT_NE(r.out.find(error), std::string::npos) << line << ": " << r.out;
  }
}

TEST_F(TenantsTest, CliSendsItsToken) {
  Start(kAliceAndBob);
  const std::string cli = absl::StrCat(RETAIN_CLI_BIN, " --server ", server_->address(), " --timeout 30");
  auto created = RunCommand(cli + " --token alice-token session create --prefix 'And God said' 2>&1");
  ASSERT_EQ(created.exit_code, 0) << created.out;
  const std::string id = created.out.substr(0, created.out.find('\n'));
  auto r = RunCommand(absl::StrCat("RETAIN_TOKEN=alice-token ", cli, " session get ", id, " 2>&1"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = RunCommand(absl::StrCat(cli, " --token bob-token session get ", id, " 2>&1"));
  EXPECT_EQ(r.exit_code, 15) << r.out;  // NOT_FOUND
  r = RunCommand(absl::StrCat(cli, " session list 2>&1"));
  EXPECT_EQ(r.exit_code, 26) << r.out;  // UNAUTHENTICATED
  EXPECT_NE(r.out.find("retain: UNAUTHENTICATED: missing or unknown bearer token"), std::string::npos) << r.out;
  r = RunCommand(cli + " --token alice-token generate --temperature 0 --max-tokens 5 'In the beginning' 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.size(), 6u) << r.out;  // five byte tokens and the newline
}

}  // namespace
}  // namespace retain::server
