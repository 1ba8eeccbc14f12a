#include "bench/park_compression.h"

#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "server/session_snapshot.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct FreeCCtx {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct FreeDCtx {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One context each way, reused across operations, as a tier compressing every park would.
class Codec {
 public:
  Codec(const ParkedRecord& record, const Method& method) : record_(record), method_(method) {
    dst_.resize(ZSTD_compressBound(record.bytes.size()));
    staged_.resize(record.bytes.size());
    back_.resize(record.bytes.size());
  }

  absl::Status Compress() {
    absl::string_view src = record_.bytes;
    if (method_.shuffle) {  // the record with its state block shuffled; header and tail as they are
      std::memcpy(staged_.data(), src.data(), src.size());
      ShuffleFloats(src.substr(record_.floats_offset, record_.floats_bytes), staged_.data() + record_.floats_offset);
      src = absl::string_view(staged_.data(), staged_.size());
    }
    if (method_.block_per_plane) return CompressByPlane(src);
    const size_t n = ZSTD_compressCCtx(cctx_.get(), dst_.data(), dst_.size(), src.data(), src.size(), method_.level);
    if (ZSTD_isError(n)) return absl::InternalError(absl::StrCat("ZSTD_compressCCtx: ", ZSTD_getErrorName(n)));
    compressed_ = n;
    return absl::OkStatus();
  }

  // One frame whose blocks end where the shuffled planes do: [header + plane 0], plane 1,
  // plane 2, [plane 3 + tail]. Any zstd decoder reads it as one frame.
  absl::Status CompressByPlane(absl::string_view src) {
    const size_t plane = record_.floats_bytes / 4;
    const size_t cuts[] = {record_.floats_offset + plane, record_.floats_offset + 2 * plane,
                           record_.floats_offset + 3 * plane, src.size()};
    ZSTD_CCtx* c = cctx_.get();
    ZSTD_CCtx_reset(c, ZSTD_reset_session_only);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, method_.level);
    ZSTD_CCtx_setPledgedSrcSize(c, src.size());
    ZSTD_outBuffer out{dst_.data(), dst_.size(), 0};
    size_t begin = 0;
    for (size_t end : cuts) {
      ZSTD_inBuffer in{src.data() + begin, end - begin, 0};
      const ZSTD_EndDirective how = end == src.size() ? ZSTD_e_end : ZSTD_e_flush;
      size_t left;
      do {  // dst_ holds ZSTD_compressBound bytes, so this ends; the loop is what the API asks
        left = ZSTD_compressStream2(c, &out, &in, how);
        if (ZSTD_isError(left)) return absl::InternalError(absl::StrCat("ZSTD_compressStream2: ", ZSTD_getErrorName(left)));
      } while (left != 0);
      begin = end;
    }
    compressed_ = out.pos;
    return absl::OkStatus();
  }

  absl::Status Decompress() {
    char* out = method_.shuffle ? staged_.data() : back_.data();
    const size_t n = ZSTD_decompressDCtx(dctx_.get(), out, back_.size(), dst_.data(), compressed_);
    if (ZSTD_isError(n)) return absl::InternalError(absl::StrCat("ZSTD_decompressDCtx: ", ZSTD_getErrorName(n)));
    if (n != back_.size()) return absl::InternalError(absl::StrCat("decompressed ", n, " bytes of ", back_.size()));
    if (method_.shuffle) {
      std::memcpy(back_.data(), out, n);
      UnshuffleFloats(absl::string_view(out + record_.floats_offset, record_.floats_bytes),
                      back_.data() + record_.floats_offset);
    }
    return absl::OkStatus();
  }

  bool RoundTripEqual() const { return absl::string_view(back_.data(), back_.size()) == record_.bytes; }
  void ClearBack() { std::fill(back_.begin(), back_.end(), '\0'); }
  size_t compressed() const { return compressed_; }

 private:
  const ParkedRecord& record_;
  const Method method_;
  std::unique_ptr<ZSTD_CCtx, FreeCCtx> cctx_{ZSTD_createCCtx()};
  std::unique_ptr<ZSTD_DCtx, FreeDCtx> dctx_{ZSTD_createDCtx()};
  std::vector<char> dst_, staged_, back_;
  size_t compressed_ = 0;
};

}  // namespace

absl::StatusOr<ParkedRecord> LocateStateFloats(std::string label, std::string bytes, size_t model_state_bytes) {
  absl::StatusOr<server::SnapshotHeader> h = server::ParseSnapshotHeader(bytes);
  if (!h.ok()) return h.status();
  // The header names the model's state size; the caller's must agree (a record of another model).
  if (h->total_bytes != bytes.size() || h->model.state_bytes != model_state_bytes ||
      h->state_length < model_state_bytes || model_state_bytes % 4 != 0)
    return absl::InvalidArgumentError(absl::StrCat(label, ": not a whole record of a ", model_state_bytes, "-byte state"));
  // Layout (session_snapshot.h): header | state (state header, then the floats) | logits | checksum.
  const size_t header = h->total_bytes - h->state_length - 4 * size_t{h->logits_count} - 8;
  ParkedRecord r{std::move(label), std::move(bytes), header + (h->state_length - model_state_bytes), model_state_bytes};
  return r;
}

// Plane by plane, so that one side of the copy is a single sequential stream: four interleaved
// output streams n bytes apart ran 5x slower on a 13 MB state (measured here, 2-core VM).
void ShuffleFloats(absl::string_view in, char* out) {
  const size_t n = in.size() / 4;
  for (size_t b = 0; b < 4; ++b)
    for (size_t i = 0; i < n; ++i) out[b * n + i] = in[4 * i + b];
}

void UnshuffleFloats(absl::string_view in, char* out) {
  const size_t n = in.size() / 4;
  for (size_t b = 0; b < 4; ++b)
    for (size_t i = 0; i < n; ++i) out[4 * i + b] = in[b * n + i];
}

std::string ZstdVersion() { return ZSTD_versionString(); }

std::string Method::Name() const {
  return absl::StrCat(block_per_plane ? "planes+" : shuffle ? "shuffle+" : "", "zstd-", level);
}

absl::StatusOr<Result> Measure(const ParkedRecord& record, const Method& method, int repeats, int ops_per_repeat) {
  Codec codec(record, method);
  std::vector<double> compress_s, decompress_s;
  for (int r = 0; r < repeats; ++r) {
    Clock::time_point t0 = Clock::now();
    for (int i = 0; i < ops_per_repeat; ++i)
      if (absl::Status st = codec.Compress(); !st.ok()) return st;
    Clock::time_point t1 = Clock::now();
    codec.ClearBack();  // so that equality below is this repeat's work, not a previous one's
    for (int i = 0; i < ops_per_repeat; ++i)
      if (absl::Status st = codec.Decompress(); !st.ok()) return st;
    Clock::time_point t2 = Clock::now();
    if (!codec.RoundTripEqual())
      return absl::InternalError(absl::StrCat(record.label, ", ", method.Name(), ": the round trip changed the record"));
    compress_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    decompress_s.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  const double mb = record.bytes.size() * double(ops_per_repeat) / 1e6;
  return Result{record.bytes.size(), codec.compressed(), mb / Median(compress_s), mb / Median(decompress_s)};
}

}  // namespace retain::bench
