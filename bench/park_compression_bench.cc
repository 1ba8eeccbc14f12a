// retain-park-compression-bench: would zstd pay for itself on parked session states? Measured on
// real states: the recurrent state of a real model after real tokens, parked through the host
// tier's own ModelParking (so the bytes are exactly the record a tier holds: export-format header,
// Model::ExportState block, checksum), then zstd at levels 1, 3, 9, 19, byte-shuffle + zstd at
// 1 and 3, and byte-shuffle + zstd with a block per byte plane at 1 and 3 ("planes+"): ratio,
// compress and decompress MB/s (medians of repeats), every round trip checked byte for byte (the
// bench stops with an error if one differs).
//
//   retain-park-compression-bench [--model DIR] [--text FILE] [--kits DIR] [--repeats 7]
//                                 [--repeat-bytes 1048576] [--synthetic-1.5b]
//
// States: (a) the default model (models/rwkv7-kjv-byte) after the first 16, 256 and 4096 bytes
// of --text (its held-out text; 3,997 bytes, so the 4096-token prompt wraps to its start for the
// last 99); (b) each conformance kit after each of its case's prompts and decode tokens (the kits'
// weights are seeded random and their tokens random ids: real computations, untrained models).
// --synthetic-1.5b adds, in a table of its own, uniform random floats at the RWKV-7 1.5b state
// shape: there are no 1.5b weights here, so that row is synthetic, for speed at that size only.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/cli.h"
#include "bench/park_compression.h"
#include "engine/tools/conformance_case.h"
#include "retain/engine/model.h"
#include "retain/engine/status_macros.h"
#include "server/host_state_tier.h"
#include "server/model_fingerprint.h"

namespace retain::bench {
namespace {

using engine::TokenId;

constexpr char kUsage[] =
    "usage: retain-park-compression-bench [--model DIR] [--text FILE] [--kits DIR] [--repeats 7]\n"
    "                                     [--repeat-bytes 1048576] [--synthetic-1.5b]\n"
    "zstd (levels 1, 3, 9, 19; byte-shuffle + 1, 3; shuffle + a block per plane, 1, 3) on parked records of real session states: the\n"
    "default model after 16/256/4096 tokens of --text, and every conformance kit after its case.\n"
    "Markdown tables on stdout. Defaults: the source tree's models/rwkv7-kjv-byte, its heldout.txt,\n"
    "tests/data/conformance.\n";

struct Options {
  std::string model = RETAIN_DEFAULT_MODEL_DIR, text, kits = RETAIN_KITS_DIR;
  int repeats = 7, repeat_bytes = 1 << 20;
  bool synthetic = false, help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  RETAIN_RETURN_IF_ERROR(ParseFlags(
      argc, argv,
      {.strings = {{"--model", &o.model}, {"--text", &o.text}, {"--kits", &o.kits}},
       .ints = {{"--repeats", {&o.repeats, 1, 1000}}, {"--repeat-bytes", {&o.repeat_bytes, 1, 1 << 30}}},
       .doubles = {},
       .switches = {{"--synthetic-1.5b", &o.synthetic}}},
      &o.help));
  if (o.text.empty()) o.text = o.model + "/heldout.txt";
  return o;
}

const std::vector<Method>& Methods() {
  static const std::vector<Method> m = {{1, false}, {3, false}, {9, false},      {19, false},
                                        {1, true},  {3, true},  {1, true, true}, {3, true, true}};
  return m;
}

// One loaded model and the records of its states, parked through the host tier as a server would.
class Parker {
 public:
  static absl::StatusOr<Parker> Load(const std::string& dir) {
    RETAIN_ASSIGN_OR_RETURN(std::unique_ptr<engine::Model> model, engine::LoadModel(dir));
    RETAIN_ASSIGN_OR_RETURN(uint64_t fingerprint, server::ModelFingerprint(dir));
    const engine::ModelConfig& c = model->config();
    server::SnapshotModel sm{std::string(engine::ArchitectureName(c.arch)), c.n_layer, c.n_embd, c.vocab_size,
                             model->state_bytes(), fingerprint};
    RETAIN_ASSIGN_OR_RETURN(void* state, model->AllocateStates(1));
    return Parker(std::move(model), std::move(sm), state);
  }

  // The record of a session that was fed `prompt` at once, then each of `decode` one at a time,
  // and holds its greedy next token as pending (as a request's end leaves it).
  absl::StatusOr<ParkedRecord> Record(std::string label, const std::vector<TokenId>& prompt,
                                      const std::vector<TokenId>& decode) {
    RETAIN_RETURN_IF_ERROR(model_->InitState(state_));
    std::vector<float> logits(model_->config().vocab_size);
    RETAIN_RETURN_IF_ERROR(model_->Forward({{prompt, state_, false}}, absl::MakeSpan(logits)));
    for (TokenId t : decode) RETAIN_RETURN_IF_ERROR(model_->Forward({{{&t, 1}, state_, false}}, absl::MakeSpan(logits)));
    engine::SessionSnapshot snap;
    RETAIN_ASSIGN_OR_RETURN(snap.state, model_->ExportState(state_));
    snap.pending = static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    snap.position = static_cast<int64_t>(prompt.size() + decode.size()) + 1;  // the pending token counts
    server::HostStateTier tier(size_t{1} << 30);
    server::ModelParking parking(&tier, sm_);
    RETAIN_RETURN_IF_ERROR(parking.Park(label, snap, absl::Now(), absl::Now()));
    std::optional<server::HostStateTier::Record> parked = tier.Peek(label, sm_.fingerprint, /*with_bytes=*/true);
    if (!parked) return absl::InternalError(absl::StrCat(label, ": the host tier did not keep the record"));
    return LocateStateFloats(std::move(label), std::move(parked->bytes), model_->state_bytes());
  }

 private:
  Parker(std::unique_ptr<engine::Model> m, server::SnapshotModel sm, void* state)
      : model_(std::move(m)), sm_(std::move(sm)), state_(state) {}
  std::unique_ptr<engine::Model> model_;
  server::SnapshotModel sm_;
  void* state_;
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The first `n` bytes of `text` as byte tokens, from its start again when it is shorter.
std::vector<TokenId> ByteTokens(const std::string& text, size_t n) {
  std::vector<TokenId> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<unsigned char>(text[i % text.size()]);
  return t;
}

absl::Status DefaultModelRecords(const Options& o, std::vector<ParkedRecord>* out) {
  RETAIN_ASSIGN_OR_RETURN(std::string text, ReadFile(o.text));
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat("--text ", o.text, " is empty"));
  RETAIN_ASSIGN_OR_RETURN(Parker parker, Parker::Load(o.model));
  const std::string name = std::filesystem::path(o.model).filename().string();
  for (size_t n : {16, 256, 4096}) {
    std::string label = absl::StrCat(name, " after ", n, " tokens");
    if (n > text.size()) absl::StrAppend(&label, " (text of ", text.size(), " bytes, wrapped)");
    RETAIN_ASSIGN_OR_RETURN(ParkedRecord r, parker.Record(label, ByteTokens(text, n), {}));
    out->push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status KitRecords(const Options& o, std::vector<ParkedRecord>* out) {
  std::vector<std::string> kits;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(o.kits, ec), end; !ec && it != end; it.increment(ec))
    for (const char* prefix : {"rwkv4-", "rwkv7-", "retnet-", "transnormer-"})
      if (it->path().filename().string().rfind(prefix, 0) == 0) kits.push_back(it->path().string());
  if (ec || kits.empty()) return absl::NotFoundError(absl::StrCat("--kits ", o.kits, ": no conformance kit there"));
  std::sort(kits.begin(), kits.end());
  for (const std::string& dir : kits) {
    RETAIN_ASSIGN_OR_RETURN(engine::ConformanceCase c, engine::ReadConformanceCase(dir + "/case.json"));
    RETAIN_ASSIGN_OR_RETURN(Parker parker, Parker::Load(dir));
    const std::string kit = std::filesystem::path(dir).filename().string();
    for (size_t i = 0; i < c.prompts.size(); ++i) {
      const std::vector<TokenId> decode = i < c.decode.size() ? c.decode[i] : std::vector<TokenId>{};
      RETAIN_ASSIGN_OR_RETURN(
          ParkedRecord r, parker.Record(absl::StrCat(kit, " prompt ", i, " (", c.prompts[i].size(), "+", decode.size(), " tokens)"),
                                        c.prompts[i], decode));
      out->push_back(std::move(r));
    }
  }
  return absl::OkStatus();
}

// Not a real state: uniform random floats in a record of the RWKV-7 1.5b shape (24 layers x 2048:
// two token-shift rows and 32 heads of 64x64 per layer), framed as the host tier frames any state.
absl::StatusOr<ParkedRecord> SyntheticRecord() {
  constexpr int kLayers = 24, kEmbd = 2048;
  const uint64_t floats = uint64_t{kLayers} * (2 * kEmbd + kEmbd * 64);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(floats);
  for (float& x : v) x = u(rng);
  engine::SessionSnapshot snap;
  snap.state.assign(reinterpret_cast<const char*>(v.data()), floats * 4);
  snap.position = 4096;
  snap.pending = 42;
  server::SnapshotModel sm{"rwkv7", kLayers, kEmbd, 65536, floats * 4, 0x1234};
  return LocateStateFloats("SYNTHETIC rwkv7 1.5b shape, uniform random floats", server::EncodeSessionSnapshot(sm, snap),
                           floats * 4);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

absl::Status PrintTables(const std::vector<ParkedRecord>& records, const Options& o) {
  std::vector<std::vector<Result>> results;
  for (const ParkedRecord& r : records) {
    const int ops = std::max<int>(1, o.repeat_bytes / static_cast<int>(r.bytes.size()));
    results.emplace_back();
    for (const Method& m : Methods()) {
      RETAIN_ASSIGN_OR_RETURN(Result res, Measure(r, m, o.repeats, ops));
      results.back().push_back(res);
    }
  }
  std::string head = "| state | record bytes |", rule = "|---|---|";
  for (const Method& m : Methods()) {
    absl::StrAppend(&head, " ", m.Name(), " |");
    rule += "---|";
  }
  std::printf("Ratio (record bytes / compressed bytes):\n\n%s\n%s\n", head.c_str(), rule.c_str());
  for (size_t i = 0; i < records.size(); ++i) {
    std::printf("| %s | %zu |", records[i].label.c_str(), records[i].bytes.size());
    for (const Result& r : results[i]) std::printf(" %.3f |", double(r.raw_bytes) / r.compressed_bytes);
    std::printf("\n");
  }
  std::printf("\nCompress / decompress MB/s (of the record's bytes; median of %d repeats):\n\n%s\n%s\n", o.repeats,
              head.c_str(), rule.c_str());
  for (size_t i = 0; i < records.size(); ++i) {
    std::printf("| %s | %zu |", records[i].label.c_str(), records[i].bytes.size());
    for (const Result& r : results[i]) std::printf(" %.0f / %.0f |", r.compress_mb_s, r.decompress_mb_s);
    std::printf("\n");
  }
  std::printf("\n");
  return absl::OkStatus();
}

absl::Status Run(const Options& o) {
  std::vector<ParkedRecord> real;
  RETAIN_RETURN_IF_ERROR(DefaultModelRecords(o, &real));
  RETAIN_RETURN_IF_ERROR(KitRecords(o, &real));
  std::printf("retain-park-compression-bench: %u CPUs, zstd %s, load average %s (1, 5, 15 min) at the start\n\n",
              std::thread::hardware_concurrency(), ZstdVersion().c_str(), LoadAverage().c_str());
  std::printf("## Real states (round trips checked byte for byte)\n\n");
  RETAIN_RETURN_IF_ERROR(PrintTables(real, o));
  if (o.synthetic) {
    RETAIN_ASSIGN_OR_RETURN(ParkedRecord s, SyntheticRecord());
    std::printf("## SYNTHETIC, not a real state (no 1.5b weights here): speed at that size only\n\n");
    RETAIN_RETURN_IF_ERROR(PrintTables({s}, o));
  }
  std::printf("load average %s at the end\n", LoadAverage().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace retain::bench

int main(int argc, char** argv) {
  return retain::bench::ToolMain("retain-park-compression-bench", retain::bench::kUsage,
                                 retain::bench::Parse(argc, argv), retain::bench::Run);
}
