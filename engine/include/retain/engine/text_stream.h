// Streaming detokenizer with stop strings: turns a request's generated token ids into UTF-8 text
// that is safe to send as it comes. One per request; not thread-safe.
//
// Bytes are decoded incrementally: a character split across tokens is held back until it
// completes; an invalid sequence becomes U+FFFD, one per maximal invalid subpart (WHATWG
// decoder, Python's errors="replace"). Stop strings are matched on that sanitised text, so a
// stop string can span tokens and can match across a multi-byte character split over tokens.
// Text that could still become the start of a stop string is held back until it cannot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

class TextStream {
 public:
  // `tokenizer` outlives the stream. `stop`: UTF-8 strings, each non-empty (validated elsewhere;
  // empty ones are ignored here). A stop string that is not valid UTF-8 is matched in its
  // sanitised form (invalid subparts as U+FFFD), since that is the only form the text can take;
  // Piece::matched still reports it as given.
  TextStream(const Tokenizer* tokenizer, std::vector<std::string> stop);

  struct Piece {
    std::string text;      // safe to send now (whole UTF-8 characters; may be empty)
    bool stopped = false;  // a stop string completed: `text` is everything before it not yet sent
    std::string matched;   // that stop string, when stopped
  };

  // Appends one token's bytes. The stream stops at the first token that completes a stop
  // string; when that token completes several matches, the earliest match position wins, then
  // the longest (a longer stop string that started earlier but is not complete yet does not
  // delay it). Nothing after a match is ever returned: once stopped, Push returns an empty
  // Piece with stopped = true and the same `matched` (an id the tokenizer lacks is still an
  // error). InvalidArgument (from the tokenizer) for an id the tokenizer lacks; the stream is
  // unchanged then.
  absl::StatusOr<Piece> Push(TokenId id);

  // At the end of a request that did not stop: everything held back, an incomplete UTF-8 tail as
  // one U+FFFD. Stop strings are not matched against the flushed text. "" once stopped. The
  // stream is empty afterwards (further Push calls start a fresh text, stop state kept).
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  // Incremental UTF-8 sanitiser (WHATWG decoder) appending to a string.
  struct Utf8Decoder {
    void Byte(unsigned char b, std::string* out);
    void Finish(std::string* out);  // an incomplete character becomes U+FFFD
    char partial[4] = {};  // bytes of the current incomplete character
    int len = 0;
    int needed = 0;  // continuation bytes it still needs
    unsigned char lower = 0x80, upper = 0xBF;
  };

  const Tokenizer* tokenizer_;
  std::vector<std::string> stop_;       // as given (non-empty ones)
  std::vector<std::string> stop_text_;  // sanitised, what is matched
  size_t max_stop_ = 0;                 // longest stop_text_
  std::string pending_;                 // sanitised text not yet sent
  Utf8Decoder decoder_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace retain::engine
