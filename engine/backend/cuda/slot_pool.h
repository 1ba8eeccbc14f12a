// CudaSlotPool: every session's state in one preallocated device arena of fixed slots, as many as
// a byte budget holds. A step names its sessions by slot index; the indices go to a device buffer
// at a fixed address, from which the device builds the per-sequence state pointers the kernels
// read (so a captured CUDA graph could replay with new indices), and the kernels update the
// slots in place. Moving one slot to host memory and back (export, import, eviction, fork) is the
// explicit CopyToHost / CopyFromHost.
//
// Unverified on GPU. Not yet wired to the serving engine: engine/serving's StatePool takes its
// slots from Model::AllocateStates, which on the cuda backend is one cudaMalloc arena too, but
// steps still pass per-sequence pointers through the seam (issue 15, left to do).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace retain::engine::cuda {

class CudaSlotPool {
 public:
  // floor(budget_bytes / slot stride) slots of slot_bytes each (the stride rounds slot_bytes up
  // to 256 bytes, cudaMalloc's alignment); at most max_step_slots of them in one step.
  // InvalidArgument when the budget holds no slot; ResourceExhausted when the device cannot hold
  // the arena.
  static absl::StatusOr<CudaSlotPool> Create(size_t budget_bytes, size_t slot_bytes, int max_step_slots,
                                             cudaStream_t stream);
  CudaSlotPool(CudaSlotPool&& o) noexcept;
  CudaSlotPool& operator=(CudaSlotPool&&) = delete;
  ~CudaSlotPool();

  int num_slots() const { return num_slots_; }
  size_t slot_bytes() const { return slot_bytes_; }
  size_t slot_stride() const { return stride_; }
  float* slot(int i) const { return reinterpret_cast<float*>(arena_ + stride_ * i); }

  // Synchronous copies of one whole slot (slot_bytes) to and from host memory.
  absl::Status CopyToHost(int slot, void* host) const;
  absl::Status CopyFromHost(int slot, const void* host);

  // The step's slots, in the step's sequence order: distinct, in range, at most max_step_slots
  // (InvalidArgument naming the entry otherwise; ResourceExhausted past max_step_slots). Then
  // StatePointers(offset) fills, on the device, the table of slot(i) + offset_floats for each,
  // and returns it (device memory, fixed address; valid until the next StatePointers call is
  // executed on the stream).
  absl::Status SetStepSlots(absl::Span<const int> slots);
  const int* device_slots() const { return slots_dev_; }
  int step_slots() const { return step_slots_; }
  absl::StatusOr<float* const*> StatePointers(size_t offset_floats);

 private:
  CudaSlotPool() = default;

  cudaStream_t stream_ = nullptr;
  char* arena_ = nullptr;
  size_t slot_bytes_ = 0, stride_ = 0;
  int num_slots_ = 0, max_step_slots_ = 0, step_slots_ = 0;
  int* slots_dev_ = nullptr;     // [max_step_slots]
  float** table_dev_ = nullptr;  // [max_step_slots]
};

}  // namespace retain::engine::cuda
