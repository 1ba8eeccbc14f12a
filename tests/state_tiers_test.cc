// Session state tiers (issue 17) end to end: the real retain-server on 127.0.0.1 with a device
// pool too small for its sessions. Truth is a server with room for all of them, which never
// spills: every session must continue greedy-exactly as there.
#include <map>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/v1/retain.grpc.pb.h"
#include "server/host_state_tier.h"
#include "tests/testing/paths.h"
#include "tests/testing/server_process.h"
#include "tests/testing/service_client.h"

namespace retain {
namespace {

using retain::testing::HttpGet;
using retain::testing::MetricValue;
using retain::testing::ServerProcess;
namespace v1 = retain::v1;

size_t StateBytes() {
  auto probe = engine::LoadModel(retain::testing::DefaultModelDir());
  EXPECT_TRUE(probe.ok()) << probe.status();
  return probe.ok() ? (*probe)->state_bytes() : 0;
}

struct Server {
  std::unique_ptr<ServerProcess> process;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Retain::Stub> stub;

  static Server Start(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--threads", "1"};
    all.insert(all.end(), args.begin(), args.end());
    auto p = ServerProcess::Start(all);
    EXPECT_TRUE(p.ok()) << p.status();
    Server s;
    if (!p.ok()) return s;
    s.process = *std::move(p);
    s.channel = grpc::CreateChannel(s.process->address(), grpc::InsecureChannelCredentials());
    s.stub = v1::Retain::NewStub(s.channel);
    return s;
  }

  std::string Create(const std::string& prefix) {
    grpc::ClientContext ctx;
    v1::CreateSessionRequest req;
    req.set_prefix_text(prefix);
    v1::Session s;
    grpc::Status st = stub->CreateSession(&ctx, req, &s);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return s.id();
  }

  // Greedy continuation of a session: its token ids, or the call's error code.
  std::vector<int32_t> Continue(const std::string& id, const std::string& prompt, int tokens,
                                grpc::StatusCode* code = nullptr) {
    v1::GenerateRequest req;
    req.set_session_id(id);
    req.set_prompt_text(prompt);
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_tokens(tokens);
    retain::testing::GenerateStream read = retain::testing::ReadGenerate(*stub, req);
    if (code != nullptr) *code = read.status.error_code();
    EXPECT_TRUE(code != nullptr || read.status.ok()) << read.status.error_message();
    std::vector<int32_t> ids;
    for (const v1::GenerateResponse& r : read.responses)
      if (r.has_token()) ids.push_back(r.token().id());
    return ids;
  }

  grpc::Status Get(const std::string& id, v1::Session* out) {
    grpc::ClientContext ctx;
    v1::GetSessionRequest req;
    req.set_session_id(id);
    return stub->GetSession(&ctx, req, out);
  }

  std::string Metrics() { return HttpGet(process->metrics_port(), "/metrics"); }
};

// The same conversation on every session: a prefix each, then turns round-robin.
std::vector<std::vector<int32_t>> Converse(Server& s, int sessions, std::vector<std::string>* ids) {
  for (int i = 0; i < sessions; ++i) ids->push_back(s.Create("And " + std::string(1, char('A' + i)) + " said"));
  std::vector<std::vector<int32_t>> out(sessions);
  const char* turns[] = {"", " unto them", "", " Amen."};
  for (const char* turn : turns)
    for (int i = 0; i < sessions; ++i) {
      std::vector<int32_t> got = s.Continue((*ids)[i], turn, 6);
      out[i].insert(out[i].end(), got.begin(), got.end());
    }
  return out;
}

TEST(HostStateTier, SessionsThatDoNotFitTheDevicePoolContinueExactlyAsOnAServerWithRoom) {
  const size_t bytes = StateBytes();
  ASSERT_GT(bytes, 0u);
  constexpr int kSessions = 6;
  Server roomy = Server::Start({"--state-budget-bytes", std::to_string(4 * kSessions * bytes)});
  Server tight = Server::Start({"--state-budget-bytes", std::to_string(2 * bytes), "--host-state-budget-bytes",
                                std::to_string(4 * kSessions * bytes)});
  ASSERT_TRUE(roomy.stub && tight.stub);
  std::vector<std::string> roomy_ids, tight_ids;
  const auto want = Converse(roomy, kSessions, &roomy_ids);
  const auto got = Converse(tight, kSessions, &tight_ids);
  for (int i = 0; i < kSessions; ++i) {
    EXPECT_EQ(got[i].size(), 24u);
    EXPECT_EQ(got[i], want[i]) << "session " << i;
  }
  // The last turn ran round-robin: the first sessions are spilled, the last two resident.
  v1::Session first, last;
  ASSERT_TRUE(tight.Get(tight_ids.front(), &first).ok());
  ASSERT_TRUE(tight.Get(tight_ids.back(), &last).ok());
  EXPECT_EQ(first.tier(), "host");
  EXPECT_EQ(last.tier(), "device");
  v1::Session roomy_first;
  ASSERT_TRUE(roomy.Get(roomy_ids.front(), &roomy_first).ok());
  EXPECT_EQ(first.position(), roomy_first.position());
  EXPECT_EQ(roomy_first.tier(), "device");

  const std::string m = tight.Metrics();
  EXPECT_EQ(MetricValue(m, "retain_evictions_total"), 0) << "no session may be lost";
  EXPECT_GT(MetricValue(m, "retain_tier_spills_total"), kSessions);
  EXPECT_GT(MetricValue(m, "retain_tier_restores_total"), kSessions);
  EXPECT_EQ(MetricValue(m, "retain_tier_restore_seconds_count"), MetricValue(m, "retain_tier_restores_total"));
  EXPECT_EQ(MetricValue(m, "retain_tier_dropped_total"), 0);
  EXPECT_EQ(MetricValue(m, "retain_sessions"), kSessions) << "parked sessions are live";
  EXPECT_NE(m.find("retain_tier_sessions{tier=\"host\"} " + std::to_string(kSessions - 2)), std::string::npos) << m;
  EXPECT_NE(m.find("retain_tier_sessions{tier=\"device\"} 2"), std::string::npos) << m;
}

TEST(HostStateTier, ASessionDroppedForTheHostBudgetIsNotFoundAndCounted) {
  const size_t bytes = StateBytes();
  ASSERT_GT(bytes, 0u);
  // One device slot, and host room for one parked record (a state plus its header).
  Server s = Server::Start({"--state-budget-bytes", std::to_string(bytes), "--host-state-budget-bytes",
                            std::to_string(bytes + bytes / 2)});
  ASSERT_TRUE(s.stub);
  const std::string a = s.Create("In the beginning"), b = s.Create("And God said"), c = s.Create("Amen");
  v1::Session got;
  EXPECT_EQ(s.Get(a, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(s.Get(b, &got).ok());
  EXPECT_EQ(got.tier(), "host");
  grpc::StatusCode code;
  s.Continue(a, "", 2, &code);
  EXPECT_EQ(code, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.Continue(b, "", 3).size(), 3u);  // restored; c spills in its place
  ASSERT_TRUE(s.Get(c, &got).ok());
  EXPECT_EQ(got.tier(), "host");
  const std::string m = s.Metrics();
  EXPECT_EQ(MetricValue(m, "retain_tier_dropped_total"), 1);
  EXPECT_GE(MetricValue(m, "retain_tier_misses_total"), 1);
}

// The check on restore: a record whose bytes are damaged or of another model is refused and
// dropped, never served (the engine then answers the caller with the code).
TEST(HostStateTier, ADamagedOrForeignRecordIsRefused) {
  server::SnapshotModel model{"rwkv7", 2, 8, 16, 64, 0x1234};
  server::SnapshotModel other = model;
  other.fingerprint = 0x5678;
  engine::SessionSnapshot snap;
  snap.state.assign(64, '\x01');
  snap.position = 3;
  server::HostStateTier tier(1 << 20);
  server::ModelParking parking(&tier, model);
  ASSERT_TRUE(parking.Park("a", snap, absl::Now(), absl::Now()).ok());
  absl::Time created;
  std::string where;
  auto back = parking.Unpark("a", &created, &where);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->state, snap.state);
  EXPECT_EQ(back->position, 3);
  EXPECT_EQ(where, "host");

  server::HostStateTier::Record damaged{model.fingerprint, server::EncodeSessionSnapshot(model, snap), 3, absl::Now(),
                                        absl::Now()};
  damaged.bytes[damaged.bytes.size() / 2] ^= 0x40;
  ASSERT_TRUE(tier.Put("b", damaged).ok());
  EXPECT_EQ(parking.Unpark("b", &created, &where).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(parking.Find("b").has_value()) << "a refused record is dropped";

  server::HostStateTier::Record foreign{model.fingerprint, server::EncodeSessionSnapshot(other, snap), 3, absl::Now(),
                                        absl::Now()};
  ASSERT_TRUE(tier.Put("c", foreign).ok());
  EXPECT_EQ(parking.Unpark("c", &created, &where).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(tier.Stats().refused, 2u);
  EXPECT_EQ(parking.Unpark("nothing", &created, &where).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace retain
