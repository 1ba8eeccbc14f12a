// The export format of a session (ExportSession / ImportSession): the engine's SessionSnapshot
// framed with what a foreign server needs to refuse bytes that are not for it.
//
// Layout, all integers little-endian:
//   magic            8 bytes "RTNSESS\0"
//   format_version   u32 (kSnapshotFormatVersion)
//   architecture     u8 length (1..kMaxArchitectureBytes) + that many bytes ("rwkv7", ...)
//   n_layer, n_embd, vocab_size   u32 each
//   state_bytes      u64  the model's per-session state size
//   fingerprint      u64  XXH3-64 of the model's weights and config (model_fingerprint.h)
//   position         i64  tokens consumed, the pending token included
//   pending          u8 flag (0 or 1) + i32 id (0 when the flag is 0)
//   logits_count     u32  0 or vocab_size: SessionSnapshot.last_logits (a cut stream's logits)
//   state_length     u64
//   state            state_length bytes: Model::ExportState's snapshot (SessionSnapshot.state)
//   last_logits      logits_count f32 (IEEE bits)
//   checksum         u64  XXH64 (seed 0) of every byte before it
//
// Decoding checks the fields in that order and names what is wrong. Codes: damaged or truncated
// bytes, a bad magic and a checksum mismatch are INVALID_ARGUMENT (the client sent bytes that are
// not a snapshot; DATA_LOSS would suggest the server lost data); a snapshot that is intact but
// not for this server (other format version, other model: fingerprint, architecture or shape) is
// FAILED_PRECONDITION. Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "retain/engine/serving.h"

namespace retain::server {

inline constexpr uint32_t kSnapshotFormatVersion = 1;
inline constexpr size_t kMaxArchitectureBytes = 32;
// Every header field before the state bytes fits in this many bytes.
inline constexpr size_t kSnapshotHeaderMaxBytes = 8 + 4 + 1 + kMaxArchitectureBytes + 12 + 8 + 8 + 8 + 5 + 4 + 8;

// What a snapshot must match to be imported into a model.
struct SnapshotModel {
  std::string architecture;
  int n_layer = 0, n_embd = 0, vocab_size = 0;
  uint64_t state_bytes = 0;
  uint64_t fingerprint = 0;
};

struct SnapshotHeader {
  SnapshotModel model;
  int64_t position = 0;
  std::optional<engine::TokenId> pending;
  uint32_t logits_count = 0;
  uint64_t state_length = 0;
  uint64_t total_bytes = 0;  // the whole snapshot, checksum included
};

std::string EncodeSessionSnapshot(const SnapshotModel& model, const engine::SessionSnapshot& snapshot);

// The header alone (its bytes must all be present: a prefix of kSnapshotHeaderMaxBytes or the
// whole snapshot suffices). Checks magic, version and field ranges; not the checksum.
absl::StatusOr<SnapshotHeader> ParseSnapshotHeader(absl::string_view bytes);

// Everything: header, length, checksum, then the model match. The returned snapshot's state is
// still to be checked by the engine (Engine::ImportSession).
absl::StatusOr<engine::SessionSnapshot> DecodeSessionSnapshot(absl::string_view bytes, const SnapshotModel& expected);

// The largest import accepted for a model: twice its state, its logits and the header, so a client
// cannot make the server buffer more than that before the bytes are refused.
uint64_t MaxSnapshotBytes(const SnapshotModel& model);

}  // namespace retain::server
