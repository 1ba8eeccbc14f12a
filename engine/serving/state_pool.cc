#include "engine/serving/state_pool.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {

absl::StatusOr<std::unique_ptr<StatePool>> StatePool::Create(Model& model, size_t budget_bytes) {
  const size_t bytes = model.state_bytes();
  const size_t count = bytes == 0 ? 0 : budget_bytes / bytes;
  if (count < 1) {
    return absl::ResourceExhaustedError(absl::StrCat("state budget of ", budget_bytes,
                                                     " bytes holds no session state of ", bytes, " bytes"));
  }
  if (count > static_cast<size_t>(std::numeric_limits<int>::max() / 2)) {
    return absl::InvalidArgumentError(absl::StrCat("state budget of ", budget_bytes, " bytes is too many slots"));
  }
  // One more than the budget's count: the scratch slot imports are checked in. Not initialised:
  // every slot is written (InitState, import, fork) when a session takes it, so resident memory
  // grows with the sessions, not with the budget.
  RETAIN_ASSIGN_OR_RETURN(void* base, model.AllocateStates(static_cast<int>(count) + 1, /*initialize=*/false));
  return std::unique_ptr<StatePool>(new StatePool(&model, static_cast<char*>(base), bytes, static_cast<int>(count)));
}

StatePool::StatePool(Model* model, char* base, size_t slot_bytes, int slots)
    : model_(model), base_(base), slot_bytes_(slot_bytes), slots_(slots), scratch_(slots) {
  free_.reserve(slots);
  for (int i = slots - 1; i >= 0; --i) free_.push_back(i);
}

std::optional<int> StatePool::Acquire() {
  if (free_.empty()) return std::nullopt;
  const int s = free_.back();
  free_.pop_back();
  return s;
}

void StatePool::Release(int index) {
  model_->DiscardState(slot(index));
  free_.push_back(index);
}

void StatePool::SwapScratch(int* taken) { std::swap(scratch_, *taken); }

}  // namespace retain::engine
