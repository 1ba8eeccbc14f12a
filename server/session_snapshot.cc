#include "server/session_snapshot.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace retain::server {
namespace {

constexpr char kMagic[8] = {'R', 'T', 'N', 'S', 'E', 'S', 'S', '\0'};

void PutU(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Bounds-checked little-endian reader; the first short read names the field it was reading.
class Reader {
 public:
  explicit Reader(absl::string_view b) : b_(b) {}
  bool U(int bytes, uint64_t* v, const char* field) {
    if (!Need(bytes, field)) return false;
    *v = 0;
    for (int i = 0; i < bytes; ++i) *v |= static_cast<uint64_t>(static_cast<unsigned char>(b_[pos_ + i])) << (8 * i);
    pos_ += bytes;
    return true;
  }
  bool Bytes(size_t n, absl::string_view* v, const char* field) {
    if (!Need(n, field)) return false;
    *v = b_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }
  const absl::Status& error() const { return error_; }

 private:
  bool Need(size_t n, const char* field) {
    if (b_.size() - pos_ >= n) return true;
    error_ = absl::InvalidArgumentError(absl::StrCat("snapshot is truncated: it ends in the header field ", field,
                                                     " (", b_.size(), " bytes)"));
    return false;
  }
  absl::string_view b_;
  size_t pos_ = 0;
  absl::Status error_;
};

std::string Hex(uint64_t v) { return absl::StrFormat("%016x", v); }

}  // namespace

uint64_t MaxSnapshotBytes(const SnapshotModel& model) {
  return 2 * model.state_bytes + 4 * static_cast<uint64_t>(model.vocab_size) + kSnapshotHeaderMaxBytes + (64 << 10);
}

std::string EncodeSessionSnapshot(const SnapshotModel& m, const engine::SessionSnapshot& s) {
  std::string out;
  out.reserve(kSnapshotHeaderMaxBytes + s.state.size() + 4 * s.last_logits.size() + 8);
  out.append(kMagic, sizeof kMagic);
  PutU(&out, kSnapshotFormatVersion, 4);
  const std::string arch = m.architecture.substr(0, kMaxArchitectureBytes);
  PutU(&out, arch.size(), 1);
  out += arch;
  PutU(&out, static_cast<uint32_t>(m.n_layer), 4);
  PutU(&out, static_cast<uint32_t>(m.n_embd), 4);
  PutU(&out, static_cast<uint32_t>(m.vocab_size), 4);
  PutU(&out, m.state_bytes, 8);
  PutU(&out, m.fingerprint, 8);
  PutU(&out, static_cast<uint64_t>(s.position), 8);
  PutU(&out, s.pending.has_value() ? 1 : 0, 1);
  PutU(&out, static_cast<uint32_t>(s.pending.value_or(0)), 4);
  PutU(&out, s.last_logits.size(), 4);
  PutU(&out, s.state.size(), 8);
  out += s.state;
  for (float f : s.last_logits) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    PutU(&out, bits, 4);
  }
  PutU(&out, XXH64(out.data(), out.size(), 0), 8);
  return out;
}

absl::StatusOr<SnapshotHeader> ParseSnapshotHeader(absl::string_view bytes) {
  if (bytes.size() < sizeof kMagic)
    return absl::InvalidArgumentError(absl::StrCat("snapshot is truncated: ", bytes.size(), " bytes, not even the magic"));
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    return absl::InvalidArgumentError("snapshot has a bad magic: these bytes are not a retain session export");
  Reader r(bytes.substr(sizeof kMagic));
  uint64_t version, arch_len, n_layer, n_embd, vocab, pending_flag, pending_id, logits_count;
  SnapshotHeader h;
  if (!r.U(4, &version, "format_version")) return r.error();
  if (version != kSnapshotFormatVersion)
    return absl::FailedPreconditionError(absl::StrCat("snapshot format version ", version,
                                                      " is not the one this server reads (", kSnapshotFormatVersion, ")"));
  absl::string_view arch;
  if (!r.U(1, &arch_len, "architecture")) return r.error();
  if (arch_len == 0 || arch_len > kMaxArchitectureBytes)
    return absl::InvalidArgumentError(absl::StrCat("snapshot architecture name length ", arch_len, " is not in [1, ",
                                                   kMaxArchitectureBytes, "]"));
  if (!r.Bytes(arch_len, &arch, "architecture")) return r.error();
  if (!r.U(4, &n_layer, "n_layer") || !r.U(4, &n_embd, "n_embd") || !r.U(4, &vocab, "vocab_size") ||
      !r.U(8, &h.model.state_bytes, "state_bytes") || !r.U(8, &h.model.fingerprint, "fingerprint"))
    return r.error();
  uint64_t position;
  if (!r.U(8, &position, "position")) return r.error();
  if (!r.U(1, &pending_flag, "pending") || !r.U(4, &pending_id, "pending") ||
      !r.U(4, &logits_count, "logits_count") || !r.U(8, &h.state_length, "state_length"))
    return r.error();
  h.model.architecture = std::string(arch);
  if (n_layer > (1u << 20) || n_embd > (1u << 24) || vocab > (1u << 30))
    return absl::InvalidArgumentError(absl::StrCat("snapshot shape n_layer ", n_layer, ", n_embd ", n_embd,
                                                   ", vocab_size ", vocab, " is out of range"));
  h.model.n_layer = static_cast<int>(n_layer);
  h.model.n_embd = static_cast<int>(n_embd);
  h.model.vocab_size = static_cast<int>(vocab);
  h.position = static_cast<int64_t>(position);
  if (h.position < 0) return absl::InvalidArgumentError(absl::StrCat("snapshot position ", h.position, " is negative"));
  if (pending_flag > 1)
    return absl::InvalidArgumentError(absl::StrCat("snapshot pending flag is ", pending_flag, ", not 0 or 1"));
  if (pending_flag == 1) {
    const auto id = static_cast<int32_t>(static_cast<uint32_t>(pending_id));
    if (id < 0 || id >= h.model.vocab_size)
      return absl::InvalidArgumentError(
          absl::StrCat("snapshot pending token ", id, " is outside the vocabulary [0, ", h.model.vocab_size, ")"));
    if (h.position < 1)
      return absl::InvalidArgumentError("snapshot has a pending token at position 0");
    h.pending = id;
  } else if (pending_id != 0) {
    return absl::InvalidArgumentError("snapshot has no pending token but a pending id");
  }
  if (logits_count != 0 && logits_count != vocab)
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot logits_count ", logits_count, " is neither 0 nor its vocab_size (", vocab, ")"));
  if (logits_count != 0 && h.pending)
    return absl::InvalidArgumentError("snapshot has both a pending token and last logits");
  h.logits_count = static_cast<uint32_t>(logits_count);
  if (h.state_length > 2 * h.model.state_bytes + (64 << 10))
    return absl::InvalidArgumentError(absl::StrCat("snapshot state_length ", h.state_length,
                                                   " is over twice the model's state_bytes (", h.model.state_bytes, ")"));
  h.total_bytes = sizeof kMagic + r.pos() + h.state_length + 4 * uint64_t{h.logits_count} + 8;
  return h;
}

absl::StatusOr<engine::SessionSnapshot> DecodeSessionSnapshot(absl::string_view bytes, const SnapshotModel& expected) {
  auto header = ParseSnapshotHeader(bytes);
  if (!header.ok()) return header.status();
  const SnapshotHeader& h = *header;
  if (bytes.size() < h.total_bytes)
    return absl::InvalidArgumentError(absl::StrCat("snapshot is truncated: ", bytes.size(), " bytes, its header announces ",
                                                   h.total_bytes));
  if (bytes.size() > h.total_bytes)
    return absl::InvalidArgumentError(absl::StrCat("snapshot has ", bytes.size() - h.total_bytes,
                                                   " bytes after its checksum (", h.total_bytes, " expected)"));
  const size_t body = bytes.size() - 8;
  uint64_t stored = 0;
  for (int i = 0; i < 8; ++i) stored |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[body + i])) << (8 * i);
  const uint64_t actual = XXH64(bytes.data(), body, 0);
  if (stored != actual)
    return absl::InvalidArgumentError(absl::StrCat("snapshot checksum mismatch (stored ", Hex(stored), ", computed ",
                                                   Hex(actual), "): the bytes are damaged"));
  const SnapshotModel& m = h.model;
  if (m.fingerprint != expected.fingerprint)
    return absl::FailedPreconditionError(absl::StrCat("snapshot is of another model: fingerprint ", Hex(m.fingerprint),
                                                      ", this model's is ", Hex(expected.fingerprint)));
  if (m.architecture != expected.architecture)
    return absl::FailedPreconditionError(absl::StrCat("snapshot is of architecture ", m.architecture, ", this model is ",
                                                      expected.architecture));
  if (m.n_layer != expected.n_layer || m.n_embd != expected.n_embd || m.vocab_size != expected.vocab_size ||
      m.state_bytes != expected.state_bytes)
    return absl::FailedPreconditionError(absl::StrCat(
        "snapshot shape (n_layer ", m.n_layer, ", n_embd ", m.n_embd, ", vocab_size ", m.vocab_size, ", state_bytes ",
        m.state_bytes, ") is not this model's (", expected.n_layer, ", ", expected.n_embd, ", ", expected.vocab_size,
        ", ", expected.state_bytes, ")"));
  engine::SessionSnapshot s;
  s.position = h.position;
  s.pending = h.pending;
  const size_t logits_at = body - 4 * size_t{h.logits_count};
  s.state = std::string(bytes.substr(logits_at - h.state_length, h.state_length));
  s.last_logits.resize(h.logits_count);
  for (uint32_t i = 0; i < h.logits_count; ++i) {
    uint32_t bits = 0;
    for (int b = 0; b < 4; ++b)
      bits |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[logits_at + 4 * i + b])) << (8 * b);
    std::memcpy(&s.last_logits[i], &bits, 4);
  }
  return s;
}

}  // namespace retain::server
