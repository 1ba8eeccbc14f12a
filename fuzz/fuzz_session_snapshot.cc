// ImportSession's bytes, as retain-server checks them: the snapshot header, then the length,
// checksum and model identity (DecodeSessionSnapshot against the shipped model's identity), then
// the engine's own checks of the state block (Engine::ImportSession).
//
// A random mutation almost never keeps the checksum right, and then nothing past it is reached;
// but anyone can compute a checksum. So when the first byte is odd the fuzzer writes the right
// XXH64 into the last 8 bytes first, as a careful attacker would, and the rest is fuzzed.
//
// Beyond "never crash": a snapshot the engine imports exports again to the same position,
// pending token, logits and state bytes.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz/fuzz_support.h"
#include "server/session_snapshot.h"
#include "xxhash.h"

using namespace retain;

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

server::SnapshotModel Identity(fuzz::ServedModel& served) {
  const engine::Model& m = served.engine->model();
  server::SnapshotModel id;
  id.architecture = served.architecture;
  id.n_layer = m.config().n_layer;
  id.n_embd = m.config().n_embd;
  id.vocab_size = m.config().vocab_size;
  id.state_bytes = m.state_bytes();
  id.fingerprint = served.fingerprint;
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool fix_checksum = (data[0] & 1) != 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if (fix_checksum && bytes.size() >= 8) {
    const uint64_t sum = XXH64(bytes.data(), bytes.size() - 8, 0);
    for (int i = 0; i < 8; ++i) bytes[bytes.size() - 8 + i] = static_cast<char>(sum >> (8 * i));
  }

  fuzz::ServedModel& served = fuzz::ShippedModel(true);
  static const server::SnapshotModel identity = Identity(served);

  auto header = server::ParseSnapshotHeader(bytes);
  auto snapshot = server::DecodeSessionSnapshot(bytes, identity);
  if (!snapshot.ok()) {
    const auto code = snapshot.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kFailedPrecondition)
      Fail("an unexpected code for a refused snapshot: " + snapshot.status().ToString());
    return 0;
  }
  if (!header.ok()) Fail("a snapshot decoded whose header does not parse: " + header.status().ToString());
  if (header->total_bytes != bytes.size()) Fail("a snapshot decoded with trailing or missing bytes");

  auto info = served.engine->ImportSession(*snapshot);
  if (!info.ok()) return 0;
  auto exported = served.engine->ExportSession(info->id);
  if (!exported.ok()) Fail("an imported session does not export: " + exported.status().ToString());
  if (exported->position != snapshot->position || exported->pending != snapshot->pending ||
      exported->state != snapshot->state ||
      exported->last_logits.size() != snapshot->last_logits.size() ||
      (!snapshot->last_logits.empty() && std::memcmp(exported->last_logits.data(), snapshot->last_logits.data(),
                  snapshot->last_logits.size() * sizeof(float)) != 0))
    Fail("an imported session exports differently");
  if (!served.engine->DeleteSession(info->id).ok()) Fail("an imported session cannot be deleted");
  return 0;
}
