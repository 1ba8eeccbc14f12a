// retain-tiers-bench: spill and restore latency of one session state to each tier below the device
// pool, through the same SessionParking calls the engine makes (export-format encode + put; take +
// check + decode), for RWKV-7 0.1b- and 1.5b-shaped states. Redis: a real redis-server at --redis.
//   retain-tiers-bench --redis 127.0.0.1:6379 [--iterations 20]
#include <algorithm>
#include <cstdio>
#include <future>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/cli.h"
#include "server/host_state_tier.h"
#include "server/redis_tier.h"
#include "server/tier_flags.h"

namespace {

using retain::server::SnapshotModel;

struct Shape {
  const char* name;
  int n_layer, n_embd;
};

// RWKV-7 state per layer: two token-shift rows and the WKV matrix (n_embd/64 heads of 64x64).
uint64_t StateBytes(const Shape& s) { return uint64_t(s.n_layer) * (2 * s.n_embd + s.n_embd * 64) * 4; }

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

struct Timing {
  std::vector<double> spill, restore;
};

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * (v.size() - 1) + 0.5))];
}

absl::StatusOr<Timing> Measure(retain::engine::SessionParking& parking, const retain::engine::SessionSnapshot& snap, int iterations,
               bool commit) {
  Timing t;
  for (int i = 0; i < iterations; ++i) {
    const std::string id = absl::StrCat("bench-", i);
    absl::Time t0 = absl::Now();
    if (commit) {  // Redis: the write-through a request's end waits for
      std::promise<void> done;
      parking.Commit(id, snap, false, [&] { done.set_value(); });
      done.get_future().wait();
    } else {
      if (absl::Status st = parking.Park(id, snap, absl::Now(), absl::Now()); !st.ok()) return st;
    }
    absl::Time t1 = absl::Now();
    absl::Time created;
    std::string tier;
    auto back = parking.Unpark(id, &created, &tier);
    absl::Time t2 = absl::Now();
    if (!back.ok()) return back.status();
    if (back->state != snap.state) return absl::InternalError(absl::StrCat("restored bytes differ (", tier, " tier)"));
    parking.Forget(id);
    t.spill.push_back(Ms(t1 - t0));
    t.restore.push_back(Ms(t2 - t1));
  }
  return t;
}

constexpr char kUsage[] =
    "usage: retain-tiers-bench [--redis HOST:PORT] [--iterations 20]\n"
    "Spill and restore latency of one RWKV-7 state (0.1b and 1.5b shapes) to the host and Redis tiers.\n";

struct Options {
  std::string redis = "127.0.0.1:6379";
  int iterations = 20;
  bool help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  absl::Status st = retain::bench::ParseFlags(
      argc, argv,
      {.strings = {{"--redis", &o.redis}}, .ints = {{"--iterations", {&o.iterations, 1, 100000}}}, .doubles = {},
       .switches = {}},
      &o.help);
  if (!st.ok()) return st;
  return o;
}

absl::Status Run(const Options& o) {
  // The address as retain-server reads --redis.
  retain::server::RawTierFlags raw;
  raw.redis = o.redis;
  raw.replica_id = "bench";
  raw.redis_timeout_ms = 5000;
  retain::server::TierConfig config;
  if (absl::Status st = retain::server::BuildTierConfig(raw, &config); !st.ok()) return st;
  retain::server::RedisTier tier(config.redis);
  if (!tier.up()) return absl::UnavailableError(absl::StrCat("redis at ", o.redis, " does not answer"));
  std::printf("| state | bytes | tier | spill p50 ms | spill p90 ms | restore p50 ms | restore p90 ms | spill MB/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Shape& shape : {Shape{"rwkv7 0.1b (12x768)", 12, 768}, Shape{"rwkv7 1.5b (24x2048)", 24, 2048}}) {
    const uint64_t bytes = StateBytes(shape);
    SnapshotModel model{"rwkv7", shape.n_layer, shape.n_embd, 65536, bytes, 0x1234};
    retain::engine::SessionSnapshot snap;
    std::vector<float> values(bytes / 4);
    for (float& v : values) v = u(rng);
    snap.state.assign(reinterpret_cast<const char*>(values.data()), bytes);
    snap.position = 4096;
    snap.pending = 42;
    retain::server::HostStateTier host(size_t{1} << 30);
    retain::server::ModelParking host_parking(&host, model);
    retain::server::RedisParking redis_parking(&tier, nullptr, model, "bench");
    const std::pair<const char*, retain::engine::SessionParking*> tiers[] = {
        {"host", &host_parking}, {"redis (write-through)", &redis_parking}};
    for (const auto& [name, parking] : tiers) {
      absl::StatusOr<Timing> t = Measure(*parking, snap, o.iterations, parking == &redis_parking);
      if (!t.ok()) return t.status();
      std::printf("| %s | %llu | %s | %.2f | %.2f | %.2f | %.2f | %.0f |\n", shape.name,
                  static_cast<unsigned long long>(bytes), name, Pct(t->spill, 0.5), Pct(t->spill, 0.9),
                  Pct(t->restore, 0.5), Pct(t->restore, 0.9), bytes / 1e6 / (Pct(t->spill, 0.5) / 1e3));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) { return retain::bench::ToolMain("retain-tiers-bench", kUsage, Parse(argc, argv), Run); }
