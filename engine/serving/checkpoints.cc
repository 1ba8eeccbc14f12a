#include "engine/serving/checkpoints.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace retain::engine {

std::vector<int64_t> SessionHistory::checkpoint_positions() const {
  std::vector<int64_t> out;
  out.reserve(checkpoints_.size());
  for (const Checkpoint& c : checkpoints_) out.push_back(c.position);
  return out;
}

bool SessionHistory::HasCheckpointAt(int64_t position) const {
  for (const Checkpoint& c : checkpoints_)
    if (c.position == position) return true;
  return false;
}

void SessionHistory::ResetAt(int64_t position) {
  base_ = position;
  tokens_.clear();
}

absl::StatusOr<SessionHistory::Start> SessionHistory::StartFor(int64_t target) const {
  if (target < 0 || target > end())
    return absl::OutOfRangeError(absl::StrCat("position ", target, " is outside [0, ", end(), "]"));
  if (target == 0) return Start{0, nullptr};
  // Latest checkpoint strictly before target, else position 0 when the tokens reach back there.
  const Checkpoint* before = nullptr;
  const Checkpoint* at = nullptr;
  for (const Checkpoint& c : checkpoints_) {
    if (c.position < target && c.position >= base_) before = &c;  // the tokens after it are known
    if (c.position == target) at = &c;
  }
  if (before != nullptr) return Start{before->position, &before->state};
  if (base_ == 0) return Start{0, nullptr};
  if (at != nullptr) return Start{at->position, &at->state};
  const int64_t oldest = checkpoints_.empty() ? end() : checkpoints_.front().position;
  return absl::FailedPreconditionError(absl::StrCat(
      "position ", target, " is before the session's oldest checkpoint (", oldest,
      ") and its tokens before position ", base_,
      " are no longer known (dropped for the checkpoint budget or history limit, or the session was imported)"));
}

void CheckpointStore::Add(SessionHistory* h, int64_t position, std::string state) {
  if (!enabled()) return;
  auto& cps = h->checkpoints_;
  for (size_t i = 0; i < cps.size(); ++i)
    if (cps[i].position == position) {
      EraseAt(h, i);
      break;
    }
  Insert(h, SessionHistory::Checkpoint{position, std::move(state), next_order_++});
  while (static_cast<int>(cps.size()) > max_per_session_) DropOldestOf(h);
  while (bytes_ > budget_ && !order_.empty()) {
    SessionHistory* victim = order_.begin()->second;
    DropOldestOf(victim);
  }
}

void CheckpointStore::Insert(SessionHistory* h, SessionHistory::Checkpoint c) {
  auto& cps = h->checkpoints_;
  auto it = std::upper_bound(cps.begin(), cps.end(), c.position,
                             [](int64_t p, const SessionHistory::Checkpoint& x) { return p < x.position; });
  bytes_ += c.state.size();
  order_.emplace(c.order, h);
  cps.insert(it, std::move(c));
}

void CheckpointStore::EraseAt(SessionHistory* h, size_t index) {
  auto& cps = h->checkpoints_;
  bytes_ -= cps[index].state.size();
  order_.erase(cps[index].order);
  cps.erase(cps.begin() + static_cast<ptrdiff_t>(index));
}

void CheckpointStore::DropOldestOf(SessionHistory* h) {
  auto& cps = h->checkpoints_;
  if (cps.empty()) return;
  size_t oldest = 0;
  for (size_t i = 1; i < cps.size(); ++i)
    if (cps[i].order < cps[oldest].order) oldest = i;
  EraseAt(h, oldest);
  ++dropped_;
  Rebase(h);
}

void CheckpointStore::Rebase(SessionHistory* h) {
  if (h->base_ == 0) return;
  const int64_t keep_from = h->checkpoints_.empty() ? h->end() : h->checkpoints_.front().position;
  if (keep_from <= h->base_) return;
  h->tokens_.erase(h->tokens_.begin(), h->tokens_.begin() + (keep_from - h->base_));
  h->base_ = keep_from;
}

void CheckpointStore::TruncateAfter(SessionHistory* h, int64_t position) {
  auto& cps = h->checkpoints_;
  while (!cps.empty() && cps.back().position > position) EraseAt(h, cps.size() - 1);
  if (position < h->base_) {
    h->ResetAt(position);
  } else if (position < h->end()) {
    h->tokens_.resize(static_cast<size_t>(position - h->base_));
  }
}

void CheckpointStore::CopyInto(const SessionHistory& src, SessionHistory* dst) {
  Forget(dst);
  dst->base_ = src.base_;
  dst->tokens_ = src.tokens_;
  if (!enabled()) return;
  for (const SessionHistory::Checkpoint& c : src.checkpoints_)
    Insert(dst, SessionHistory::Checkpoint{c.position, c.state, next_order_++});
  while (bytes_ > budget_ && !order_.empty()) DropOldestOf(order_.begin()->second);
}

void CheckpointStore::Forget(SessionHistory* h) {
  while (!h->checkpoints_.empty()) EraseAt(h, h->checkpoints_.size() - 1);
}

void CheckpointStore::TrimTokens(SessionHistory* h) {
  if (h->tokens_.size() <= max_tokens_) return;
  // Tokens are worth keeping only from a checkpoint on (or from position 0, given up here).
  int64_t keep_from = h->end();
  for (const SessionHistory::Checkpoint& c : h->checkpoints_)
    if (c.position >= h->end() - static_cast<int64_t>(max_tokens_)) {
      keep_from = c.position;
      break;
    }
  h->tokens_.erase(h->tokens_.begin(), h->tokens_.begin() + (keep_from - h->base_));
  h->base_ = keep_from;
}

}  // namespace retain::engine
