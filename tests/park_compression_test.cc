// bench/park_compression (retain-park-compression-bench's measurement) on real parked records:
// the state block it finds is the live state's bytes, the shuffle is a lossless grouping by byte
// significance, zstd really shrinks what can shrink, and the bench runs end to end on the default
// model and every conformance kit. Speed is not asserted here (bench/results/tiers.md has it).
#include "bench/park_compression.h"

#include <cstring>
#include <string>
#include <vector>

#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "server/session_snapshot.h"
#include "tests/testing/command.h"
#include "tests/testing/paths.h"

namespace retain::bench {
namespace {

struct Live {
  std::unique_ptr<engine::Model> model;
  void* state = nullptr;
  server::SnapshotModel sm;
};

// rwkv7-tiny after its case's first prompt: a state of a real computation, in the CPU backend's
// host memory (so its bytes can be read directly).
Live RunKit() {
  Live l;
  auto model = engine::LoadModel(retain::testing::KitDir("rwkv7-tiny"));
  EXPECT_TRUE(model.ok()) << model.status();
  l.model = *std::move(model);
  auto state = l.model->AllocateStates(1);
  EXPECT_TRUE(state.ok()) << state.status();
  l.state = *state;
  auto c = engine::ReadConformanceCase(retain::testing::KitDir("rwkv7-tiny") + "/case.json");
  EXPECT_TRUE(c.ok()) << c.status();
  std::vector<float> logits(l.model->config().vocab_size);
  EXPECT_TRUE(l.model->Forward({{c->prompts[0], l.state, false}}, absl::MakeSpan(logits)).ok());
  const engine::ModelConfig& mc = l.model->config();
  l.sm = {"rwkv7", mc.n_layer, mc.n_embd, mc.vocab_size, l.model->state_bytes(), 0xfeed};
  return l;
}

std::string Encode(const Live& l, bool with_logits) {
  engine::SessionSnapshot snap;
  snap.state = *l.model->ExportState(l.state);
  snap.position = 23;
  if (with_logits) {
    snap.last_logits.assign(l.sm.vocab_size, 0.5f);
  } else {
    snap.pending = 7;
  }
  return server::EncodeSessionSnapshot(l.sm, snap);
}

TEST(ParkCompression, FindsTheLiveStateInTheRecord) {
  Live l = RunKit();
  for (bool with_logits : {false, true}) {
    auto r = LocateStateFloats("kit", Encode(l, with_logits), l.model->state_bytes());
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->floats_bytes, l.model->state_bytes());
    ASSERT_LE(r->floats_offset + r->floats_bytes, r->bytes.size());
    EXPECT_EQ(std::memcmp(r->bytes.data() + r->floats_offset, l.state, r->floats_bytes), 0) << with_logits;
  }
  EXPECT_FALSE(LocateStateFloats("kit", Encode(l, false), l.model->state_bytes() + 4).ok());
  EXPECT_FALSE(LocateStateFloats("kit", "not a record", l.model->state_bytes()).ok());
}

TEST(ParkCompression, ShuffleGroupsBytesBySignificanceAndUndoes) {
  const std::vector<float> f = {1.0f, -2.5f, 3.25e-7f, 6.0e4f, 0.0f};
  const absl::string_view in(reinterpret_cast<const char*>(f.data()), f.size() * 4);
  std::string shuffled(in.size(), '\0'), back(in.size(), '\0');
  ShuffleFloats(in, shuffled.data());
  const size_t n = f.size();
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &f[i], 4);
    for (size_t b = 0; b < 4; ++b)  // little-endian: plane 3 holds each float's sign and top exponent bits
      EXPECT_EQ(static_cast<unsigned char>(shuffled[b * n + i]), (bits >> (8 * b)) & 0xff) << i << " " << b;
  }
  UnshuffleFloats(shuffled, back.data());
  EXPECT_EQ(back, std::string(in));
}

TEST(ParkCompression, RoundTripsARealRecordWithEveryMethod) {
  Live l = RunKit();
  auto r = LocateStateFloats("kit", Encode(l, false), l.model->state_bytes());
  ASSERT_TRUE(r.ok()) << r.status();
  for (const Method& m : {Method{1, false}, Method{19, false}, Method{3, true}, Method{1, true, true}}) {
    auto res = Measure(*r, m, 2, 3);
    ASSERT_TRUE(res.ok()) << m.Name() << ": " << res.status();
    EXPECT_EQ(res->raw_bytes, r->bytes.size());
    EXPECT_GT(res->compressed_bytes, 0u);
    EXPECT_GT(res->compress_mb_s, 0);
    EXPECT_GT(res->decompress_mb_s, 0);
  }
}

TEST(ParkCompression, AnEmptyStateShrinksManyTimes) {
  // A fresh RWKV-7 state is all zeros: whatever the measurement reports must show it.
  Live l = RunKit();
  ASSERT_TRUE(l.model->InitState(l.state).ok());
  auto r = LocateStateFloats("fresh", Encode(l, false), l.model->state_bytes());
  ASSERT_TRUE(r.ok()) << r.status();
  auto res = Measure(*r, Method{3, true}, 1, 1);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_GT(double(res->raw_bytes) / res->compressed_bytes, 20.0);
}

TEST(ParkCompressionBench, RunsOnTheDefaultModelAndEveryKit) {
  const std::string bin = RETAIN_PARK_COMPRESSION_BENCH_BIN;
  auto r = retain::testing::RunCommand(bin + " --repeats 1 --repeat-bytes 1 --kits " +
                                       retain::testing::ConformanceDir() + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* row : {"rwkv7-kjv-byte after 16 tokens |", "rwkv7-kjv-byte after 256 tokens |",
                          "rwkv7-kjv-byte after 4096 tokens", "rwkv4-tiny prompt 0", "rwkv7-tiny prompt 2",
                          "rwkv7-tiny-bf16 prompt 1", "retnet-tiny prompt 0", "transnormer-tiny prompt 2"})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  EXPECT_EQ(r.out.find("SYNTHETIC"), std::string::npos) << "synthetic rows only when asked for";

  auto bad = retain::testing::RunCommand(bin + " --repeats 0 2>&1");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.out.find("--repeats"), std::string::npos) << bad.out;
  auto no_kits = retain::testing::RunCommand(bin + " --kits " + ::testing::TempDir() + "/no-such-dir 2>&1");
  EXPECT_EQ(no_kits.exit_code, 2);
  EXPECT_NE(no_kits.out.find("--kits"), std::string::npos) << no_kits.out;
}

}  // namespace
}  // namespace retain::bench
