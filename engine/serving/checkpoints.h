// Checkpoints: copies of sessions' states at chosen positions, kept in host memory under one
// global byte budget, plus each session's token history, so that any earlier position can be
// rebuilt exactly (restore the nearest checkpoint, re-feed the recorded tokens after it).
//
// A recurrent state cannot be rolled back, so this is what makes rewind and fork-at-a-position
// possible at all. The budget is global (oldest checkpoint of any session dropped first) because
// the sessions that are edited are not known in advance; the per-session count keeps one long
// conversation from holding the whole budget.
//
// Thread safety: none; the engine calls it under its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/model.h"

namespace retain::engine {

class CheckpointStore;

// One session's history: the tokens it consumed from position base() on, and its checkpoints
// (positions >= base(), ascending). Position 0 is always rebuildable when base() == 0: it is the
// model's initial state.
class SessionHistory {
 public:
  SessionHistory() = default;
  SessionHistory(const SessionHistory&) = delete;
  SessionHistory& operator=(const SessionHistory&) = delete;

  int64_t base() const { return base_; }
  int64_t end() const { return base_ + static_cast<int64_t>(tokens_.size()); }
  const std::vector<TokenId>& tokens() const { return tokens_; }
  std::vector<int64_t> checkpoint_positions() const;
  bool HasCheckpointAt(int64_t position) const;

  // The session consumed `t` at position end(). Capacity is reserved by Reserve so a running
  // request appends without allocating.
  void Append(TokenId t) { tokens_.push_back(t); }
  void Reserve(size_t more) { tokens_.reserve(tokens_.size() + more); }
  // History is unknown before `position` (an imported session): nothing is kept before it.
  void ResetAt(int64_t position);

  // Where rebuilding position `target` starts: the state to load (a checkpoint's bytes, or null
  // for the initial state at position 0) and its position. Prefers a start strictly before
  // `target` so the rebuilt session holds token target-1 as its pending token, as a session that
  // was prefilled with those tokens does; falls back to a checkpoint at exactly `target`.
  struct Start {
    int64_t position = 0;
    const std::string* state = nullptr;  // null = Model::InitState
  };
  absl::StatusOr<Start> StartFor(int64_t target) const;

 private:
  friend class CheckpointStore;
  struct Checkpoint {
    int64_t position;
    std::string state;  // Model::ExportState bytes
    uint64_t order;     // creation order across all sessions, for oldest-first dropping
  };
  int64_t base_ = 0;
  std::vector<TokenId> tokens_;
  std::deque<Checkpoint> checkpoints_;
};

class CheckpointStore {
 public:
  // budget_bytes 0 = no checkpoints; max_per_session >= 1; history tokens past max_tokens are
  // dropped from the front, down to the oldest checkpoint.
  CheckpointStore(size_t budget_bytes, int max_per_session, size_t max_tokens)
      : budget_(budget_bytes), max_per_session_(max_per_session), max_tokens_(max_tokens) {}

  // A checkpoint of `h` at `position` (h->base() <= position <= h->end()); replaces one at the
  // same position. Then the oldest checkpoints (of this session past max_per_session, then of any
  // session past the budget) are dropped.
  void Add(SessionHistory* h, int64_t position, std::string state);
  // Drops `h`'s tokens and checkpoints after `position`.
  void TruncateAfter(SessionHistory* h, int64_t position);
  // `dst` becomes a copy of `src` (tokens and checkpoints, within the budget).
  void CopyInto(const SessionHistory& src, SessionHistory* dst);
  // The session is gone: its checkpoints leave the budget.
  void Forget(SessionHistory* h);
  // Keeps the token history within max_tokens (called between requests).
  void TrimTokens(SessionHistory* h);

  bool enabled() const { return budget_ > 0; }
  size_t bytes() const { return bytes_; }
  size_t count() const { return order_.size(); }
  uint64_t dropped() const { return dropped_; }

 private:
  void Insert(SessionHistory* h, SessionHistory::Checkpoint c);
  void DropOldestOf(SessionHistory* h);
  void EraseAt(SessionHistory* h, size_t index);
  // When h's checkpoints before its first kept one are gone, history known from a dropped
  // checkpoint on is useless unless it reaches back to position 0.
  void Rebase(SessionHistory* h);

  const size_t budget_;
  const int max_per_session_;
  const size_t max_tokens_;
  size_t bytes_ = 0;
  uint64_t next_order_ = 0;
  uint64_t dropped_ = 0;
  std::map<uint64_t, SessionHistory*> order_;  // every checkpoint, oldest first
};

}  // namespace retain::engine
