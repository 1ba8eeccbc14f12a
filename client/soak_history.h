// retain load --soak: what one session holds, as its client knows it.
//
// The server's invariant (server/README.md): a session's state equals the tokens its client was
// sent, where a token counts as sent once the server handed it to the stream. A client that
// cancels, disconnects or lets a deadline expire may not have read every token sent: those
// tokens are in the session (GetSession's position counts them) but their ids never reached the
// client. They are kept here as an unread span of known length; since every soak request is
// greedy, a replay regenerates them (soak_verify.h), so the replay stays exact.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace retain::client {

struct HistorySpan {
  std::vector<int32_t> ids;  // tokens the client sent or read, in order
  int64_t unread = 0;        // then this many generated tokens the server sent that the client did not read
};

class SessionHistory {
 public:
  int64_t position() const { return position_; }
  const std::vector<HistorySpan>& spans() const { return spans_; }
  int64_t unread_tokens() const;

  void AppendKnown(const std::vector<int32_t>& ids);
  void AppendUnread(int64_t n);

  // A Generate request on the session ended; `position_after` is the server's position (from
  // Finished or GetSession). Appends what the session consumed: the prompt, or the part of it the
  // server reached, then the tokens read, then the sent-but-unread rest. "" when that is
  // consistent, else what is not (the server's position cannot be explained by what was sent
  // and read). `generated` = the tokens the server generated (read + unread).
  std::string Apply(const std::vector<int32_t>& prompt, const std::vector<int32_t>& read, int64_t position_after,
                    int64_t* generated);

  // Test hook (--test-corrupt-history): changes the last known token, so the replay must differ.
  void CorruptLastKnown(int vocab_size);

 private:
  std::vector<HistorySpan> spans_;
  int64_t position_ = 0;
};

}  // namespace retain::client
