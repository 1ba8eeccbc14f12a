// CudaSlotPool. Unverified on GPU.
#include "engine/backend/cuda/slot_pool.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/device_check.h"

namespace retain::engine::cuda {

absl::StatusOr<CudaSlotPool> CudaSlotPool::Create(size_t budget_bytes, size_t slot_bytes, int max_step_slots,
                                                  cudaStream_t stream) {
  if (slot_bytes == 0 || slot_bytes % sizeof(float) != 0)
    return absl::InvalidArgumentError(absl::StrCat("slot_bytes must be a positive multiple of 4, got ", slot_bytes));
  if (max_step_slots < 1) return absl::InvalidArgumentError(absl::StrCat("max_step_slots must be positive, got ", max_step_slots));
  CudaSlotPool p;
  p.stream_ = stream;
  p.slot_bytes_ = slot_bytes;
  p.stride_ = (slot_bytes + 255) / 256 * 256;
  const size_t slots = budget_bytes / p.stride_;
  if (slots == 0) {
    return absl::InvalidArgumentError(absl::StrCat("state budget of ", budget_bytes, " bytes holds no slot of ",
                                                   p.stride_, " bytes"));
  }
  if (slots > static_cast<size_t>(INT32_MAX)) return absl::InvalidArgumentError("state budget holds over 2^31 slots");
  p.num_slots_ = static_cast<int>(slots);
  p.max_step_slots_ = max_step_slots;
  RETAIN_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&p.arena_), p.stride_ * slots),
                     absl::StrCat("state arena of ", slots, " slots × ", p.stride_, " bytes"));
  RETAIN_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&p.slots_dev_), sizeof(int) * max_step_slots), "slot index buffer");
  RETAIN_CUDA_RETURN(cudaMalloc(reinterpret_cast<void**>(&p.table_dev_), sizeof(float*) * max_step_slots), "state pointer table");
  return p;
}

CudaSlotPool::CudaSlotPool(CudaSlotPool&& o) noexcept
    : stream_(o.stream_), arena_(std::exchange(o.arena_, nullptr)), slot_bytes_(o.slot_bytes_), stride_(o.stride_),
      num_slots_(o.num_slots_), max_step_slots_(o.max_step_slots_), step_slots_(o.step_slots_),
      slots_dev_(std::exchange(o.slots_dev_, nullptr)), table_dev_(std::exchange(o.table_dev_, nullptr)) {}

CudaSlotPool::~CudaSlotPool() {
  // cudaFree(nullptr) is a no-op, so a moved-from pool frees nothing.
  cudaFree(arena_);
  cudaFree(slots_dev_);
  cudaFree(table_dev_);
}

absl::Status CudaSlotPool::CopyToHost(int slot, void* host) const {
  if (slot < 0 || slot >= num_slots_) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " of ", num_slots_));
  RETAIN_CUDA_RETURN(cudaMemcpyAsync(host, this->slot(slot), slot_bytes_, cudaMemcpyDeviceToHost, stream_), "slot to host");
  RETAIN_CUDA_RETURN(cudaStreamSynchronize(stream_), "slot to host");
  return absl::OkStatus();
}

absl::Status CudaSlotPool::CopyFromHost(int slot, const void* host) {
  if (slot < 0 || slot >= num_slots_) return absl::OutOfRangeError(absl::StrCat("slot ", slot, " of ", num_slots_));
  RETAIN_CUDA_RETURN(cudaMemcpyAsync(this->slot(slot), host, slot_bytes_, cudaMemcpyHostToDevice, stream_), "slot from host");
  RETAIN_CUDA_RETURN(cudaStreamSynchronize(stream_), "slot from host");
  return absl::OkStatus();
}

absl::Status CudaSlotPool::SetStepSlots(absl::Span<const int> slots) {
  if (slots.size() > static_cast<size_t>(max_step_slots_)) {
    return absl::ResourceExhaustedError(absl::StrCat("a step of ", slots.size(), " slots; this pool takes at most ",
                                                     max_step_slots_, " a step"));
  }
  std::vector<bool> seen(num_slots_, false);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i] < 0 || slots[i] >= num_slots_)
      return absl::InvalidArgumentError(absl::StrCat("slots[", i, "] = ", slots[i], " is outside [0, ", num_slots_, ")"));
    if (seen[slots[i]]) return absl::InvalidArgumentError(absl::StrCat("slots[", i, "] = ", slots[i], " appears twice"));
    seen[slots[i]] = true;
  }
  // Synchronous: the host span may go away on return, and the next step's upload must not
  // overwrite indices a queued StatePointers has yet to read.
  RETAIN_CUDA_RETURN(cudaStreamSynchronize(stream_), "slot indices");
  RETAIN_CUDA_RETURN(cudaMemcpy(slots_dev_, slots.data(), sizeof(int) * slots.size(), cudaMemcpyHostToDevice),
                     "slot indices");
  step_slots_ = static_cast<int>(slots.size());
  return absl::OkStatus();
}

absl::StatusOr<float* const*> CudaSlotPool::StatePointers(size_t offset_floats) {
  if (offset_floats >= slot_bytes_ / sizeof(float))
    return absl::OutOfRangeError(absl::StrCat("offset ", offset_floats, " floats is past a slot of ", slot_bytes_, " bytes"));
  RETAIN_CUDA_RETURN(kernels::cuda::SlotPointers(reinterpret_cast<float*>(arena_), stride_ / sizeof(float), offset_floats,
                                                 slots_dev_, step_slots_, table_dev_, stream_),
                     "state pointer table");
  return table_dev_;
}

}  // namespace retain::engine::cuda
