#include "client/soak_history.h"

namespace retain::client {

int64_t SessionHistory::unread_tokens() const {
  int64_t n = 0;
  for (const HistorySpan& s : spans_) n += s.unread;
  return n;
}

void SessionHistory::AppendKnown(const std::vector<int32_t>& ids) {
  if (ids.empty()) return;
  if (spans_.empty() || spans_.back().unread > 0) spans_.emplace_back();
  spans_.back().ids.insert(spans_.back().ids.end(), ids.begin(), ids.end());
  position_ += static_cast<int64_t>(ids.size());
}

void SessionHistory::AppendUnread(int64_t n) {
  if (n <= 0) return;
  if (spans_.empty()) spans_.emplace_back();
  spans_.back().unread += n;
  position_ += n;
}

std::string SessionHistory::Apply(const std::vector<int32_t>& prompt, const std::vector<int32_t>& read,
                                  int64_t position_after, int64_t* generated) {
  *generated = 0;
  const int64_t delta = position_after - position_;
  const int64_t prompt_n = static_cast<int64_t>(prompt.size());
  const int64_t read_n = static_cast<int64_t>(read.size());
  if (delta < 0)
    return "the session went back from position " + std::to_string(position_) + " to " + std::to_string(position_after);
  if (delta <= prompt_n) {
    // The request ended before (or as) its prompt was consumed: nothing generated.
    if (read_n > 0)
      return "the client read " + std::to_string(read_n) + " tokens but the session advanced only " +
             std::to_string(delta) + " of a " + std::to_string(prompt_n) + "-token prompt";
    AppendKnown(std::vector<int32_t>(prompt.begin(), prompt.begin() + delta));
    return "";
  }
  const int64_t gen = delta - prompt_n;
  if (gen < read_n)
    return "the client read " + std::to_string(read_n) + " tokens but the session counts only " + std::to_string(gen) +
           " generated";
  AppendKnown(prompt);
  AppendKnown(read);
  AppendUnread(gen - read_n);
  *generated = gen;
  return "";
}

void SessionHistory::CorruptLastKnown(int vocab_size) {
  for (auto it = spans_.rbegin(); it != spans_.rend(); ++it)
    if (!it->ids.empty()) {
      it->ids.back() = (it->ids.back() + 1) % vocab_size;
      return;
    }
}

}  // namespace retain::client
