// What retain-park-compression-bench measures on one parked record (the bytes a state tier holds,
// session_snapshot.h): zstd at a level, optionally after a byte-shuffle of the record's f32 state
// block, with the round trip checked. Bench-only: neither the engine nor the server links zstd.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retain::bench {

// A parked record and where its f32 state block lies in it (the payload of Model::ExportState,
// after the snapshot header and the state header).
struct ParkedRecord {
  std::string label;  // what state it is, for the tables
  std::string bytes;
  size_t floats_offset = 0, floats_bytes = 0;
};

// The record's state block located from its own header (ParseSnapshotHeader) and the model's
// per-session state size; InvalidArgument when the record is not a snapshot of that size.
absl::StatusOr<ParkedRecord> LocateStateFloats(std::string label, std::string bytes, size_t model_state_bytes);

// Byte-shuffle of n floats: byte b of float i goes to b * n + i, so the sign/exponent bytes, which
// repeat across a state, sit together and the near-random low mantissa bytes sit apart. Lossless:
// Unshuffle is its inverse. `out` must hold in.size() bytes; in.size() is a multiple of 4.
void ShuffleFloats(absl::string_view in, char* out);
void UnshuffleFloats(absl::string_view in, char* out);

struct Method {
  int level = 1;         // zstd level
  bool shuffle = false;  // byte-shuffle the state block first
  // With shuffle: end a zstd block at each byte plane's end (ZSTD_e_flush), so each plane gets its
  // own literal statistics. zstd codes the literals of a block (up to 128 KiB) with one Huffman
  // table: a record smaller than that puts the compressible sign/exponent plane and the three
  // near-random mantissa planes under one table, and the shuffle alone then gains almost nothing.
  bool block_per_plane = false;
  std::string Name() const;
};

struct Result {
  size_t raw_bytes = 0, compressed_bytes = 0;
  double compress_mb_s = 0, decompress_mb_s = 0;  // MB (1e6) of the raw record per second, medians
};

// Compresses and decompresses `record` with `method`, `repeats` times each of ops_per_repeat
// operations (so that a repeat of a small record is long enough to time); the speeds are the
// medians over repeats and count the shuffle inside the time. Internal error, naming the record
// and method, when a round trip does not give back the record's exact bytes.
absl::StatusOr<Result> Measure(const ParkedRecord& record, const Method& method, int repeats, int ops_per_repeat);

// The zstd library's version, as the bench ran with it ("1.5.4").
std::string ZstdVersion();

}  // namespace retain::bench
