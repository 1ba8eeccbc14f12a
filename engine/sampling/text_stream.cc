// Streaming detokenizer with stop strings (text_stream.h).
#include "retain/engine/text_stream.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace retain::engine {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

// The WHATWG "UTF-8 decoder" algorithm: a byte that cannot continue the current sequence ends it
// with one U+FFFD and is then processed afresh, which gives one U+FFFD per maximal subpart.
void TextStream::Utf8Decoder::Byte(unsigned char b, std::string* out) {
  if (needed == 0) {
    if (b < 0x80) {
      out->push_back(static_cast<char>(b));
    } else if (b >= 0xC2 && b <= 0xDF) {
      needed = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      if (b == 0xE0) lower = 0xA0;  // overlong
      if (b == 0xED) upper = 0x9F;  // surrogates
      needed = 2;
    } else if (b >= 0xF0 && b <= 0xF4) {
      if (b == 0xF0) lower = 0x90;  // overlong
      if (b == 0xF4) upper = 0x8F;  // above U+10FFFF
      needed = 3;
    } else {
      out->append(kReplacement);  // continuation byte, C0, C1, F5..FF
      return;
    }
    if (needed > 0) partial[len++] = static_cast<char>(b);
    return;
  }
  if (b < lower || b > upper) {
    len = needed = 0;
    lower = 0x80;
    upper = 0xBF;
    out->append(kReplacement);
    Byte(b, out);  // needed == 0 now: recurses at most once
    return;
  }
  lower = 0x80;
  upper = 0xBF;
  partial[len++] = static_cast<char>(b);
  if (--needed == 0) {
    out->append(partial, len);
    len = 0;
  }
}

void TextStream::Utf8Decoder::Finish(std::string* out) {
  if (needed > 0) out->append(kReplacement);
  len = needed = 0;
  lower = 0x80;
  upper = 0xBF;
}

TextStream::TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop) : tokenizer_(tokenizer) {
  for (std::string& s : stop) {
    if (s.empty()) continue;
    std::string text;
    Utf8Decoder d;
    for (char c : s) d.Byte(static_cast<unsigned char>(c), &text);
    d.Finish(&text);
    max_stop_ = std::max(max_stop_, text.size());
    stop_.push_back(std::move(s));
    stop_text_.push_back(std::move(text));
  }
  pending_.reserve(max_stop_ + 64);
}

absl::StatusOr<TextStream::Piece> TextStream::Push(TokenId id) {
  absl::StatusOr<std::string> bytes = tokenizer_->TokenBytes(id);
  if (!bytes.ok()) return bytes.status();
  Piece piece;
  if (stopped_) {
    piece.stopped = true;
    piece.matched = matched_;
    return piece;
  }
  // Everything in pending_ before this token was checked: it holds no complete match, and a
  // match can only start in it at a position from which it is a proper prefix of a stop string
  // (the rest was sent). So any new match ends in the text this token adds.
  const size_t old_size = pending_.size();
  for (char c : *bytes) decoder_.Byte(static_cast<unsigned char>(c), &pending_);
  if (pending_.size() == old_size) return piece;
  if (stop_text_.empty()) {
    piece.text.assign(pending_);
    pending_.clear();  // keeps its capacity
    return piece;
  }
  const std::string_view text = pending_;
  size_t best_pos = std::string_view::npos;
  int best = -1;
  for (size_t i = 0; i < stop_text_.size(); ++i) {
    const std::string& s = stop_text_[i];
    // Only matches ending after old_size are new; starting the search there - len + 1 finds them.
    const size_t from = old_size + 1 > s.size() ? old_size + 1 - s.size() : 0;
    const size_t pos = text.find(s, from);
    if (pos == std::string_view::npos) continue;
    if (pos < best_pos || (pos == best_pos && s.size() > stop_text_[best].size())) {
      best_pos = pos;
      best = static_cast<int>(i);
    }
  }
  if (best >= 0) {
    stopped_ = true;
    matched_ = stop_[best];
    piece.stopped = true;
    piece.matched = matched_;
    piece.text.assign(pending_, 0, best_pos);
    pending_.clear();
    decoder_ = Utf8Decoder();
    return piece;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string (it is shorter
  // than max_stop_); send the rest.
  size_t hold_from = text.size();
  const size_t earliest = text.size() >= max_stop_ ? text.size() - max_stop_ + 1 : 0;
  for (size_t j = earliest; j < text.size() && hold_from == text.size(); ++j) {
    const std::string_view tail = text.substr(j);
    for (const std::string& s : stop_text_) {
      if (s.size() > tail.size() && std::string_view(s).substr(0, tail.size()) == tail) {
        hold_from = j;
        break;
      }
    }
  }
  piece.text.assign(pending_, 0, hold_from);
  pending_.erase(0, hold_from);
  return piece;
}

std::string TextStream::Flush() {
  if (stopped_) return "";
  decoder_.Finish(&pending_);
  std::string out;
  out.swap(pending_);
  pending_.reserve(max_stop_ + 64);
  return out;
}

}  // namespace retain::engine
