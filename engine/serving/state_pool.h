// The state pool: one preallocated arena of fixed slots in the model's backend memory, sized by a
// byte budget, plus one scratch slot that imports are validated into before they take a real slot.
// Slots are indices; the pool knows nothing of sessions or requests.
//
// Thread safety: none; the engine calls it under its mutex.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/model.h"

namespace retain::engine {

class StatePool {
 public:
  // ResourceExhausted when `budget_bytes` holds no slot, or the backend has no memory for it.
  static absl::StatusOr<std::unique_ptr<StatePool>> Create(Model& model, size_t budget_bytes);

  int slots() const { return slots_; }
  int used() const { return slots_ - static_cast<int>(free_.size()); }
  size_t slot_bytes() const { return slot_bytes_; }
  void* slot(int index) const { return base_ + slot_bytes_ * static_cast<size_t>(index); }

  // A free slot (its contents are whatever its last owner left), or nothing when all are taken.
  std::optional<int> Acquire();
  // The slot's memory goes back to the backend (Model::DiscardState), so resident memory follows
  // the live sessions after a burst, not the most there ever were.
  void Release(int index);

  // The scratch slot: never handed out by Acquire.
  int scratch() const { return scratch_; }
  // Exchanges the scratch slot with `*taken` (an acquired slot), so bytes validated in the
  // scratch become the acquired slot's contents without a copy.
  void SwapScratch(int* taken);

 private:
  StatePool(Model* model, char* base, size_t slot_bytes, int slots);

  Model* model_;
  char* base_;
  size_t slot_bytes_;
  int slots_;
  int scratch_;
  std::vector<int> free_;  // a stack: the most recently released slot is reused first
};

}  // namespace retain::engine
