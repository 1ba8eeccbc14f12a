// Copies checkpoint tensors into backend memory, checking each by name and shape. Problems are
// collected rather than returned one by one, so a wrong checkpoint is reported in one error that
// names every missing, misshapen and unexpected tensor.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "retain/engine/safetensors.h"

namespace retain::engine {

using Shape = std::vector<int64_t>;

class WeightLoader {
 public:
  WeightLoader(const SafetensorsFile& file, Backend& backend) : file_(file), backend_(backend) {}

  // A matrix stored in nn.Linear layout [out, in], kept in its stored dtype, laid out for the
  // backend's MatMul.
  MatrixRef Linear(const std::string& name, int out, int in);
  // Rows [row0, row0 + rows) of a fused [out, in] matrix, as a matrix of their own.
  MatrixRef LinearRows(const std::string& name, int out, int in, int row0, int rows);
  // A LoRA factor stored [in, out] (used as x @ W): transposed at load into [out, in].
  MatrixRef LoraFactor(const std::string& name, int in, int out);
  // An embedding table [rows, width], row-major: Embedding gathers rows from it.
  MatrixRef Table(const std::string& name, int rows, int width);
  // An embedding table that may also serve as the output head (tied): then in the head's
  // layout, from which Embedding gathers as well; else a Table.
  MatrixRef Embedding(const std::string& name, int rows, int width, bool tied) {
    return tied ? Linear(name, rows, width) : Table(name, rows, width);
  }
  // `n` values widened to f32, stored under any of `shapes` (e.g. [n] or [1, 1, n]).
  std::vector<float> HostVector(const std::string& name, int n, const std::vector<Shape>& shapes);
  // HostVector uploaded to the backend.
  const float* Vector(const std::string& name, int n, const std::vector<Shape>& shapes);
  const float* Upload(const std::vector<float>& values);
  // Marks a tensor as known but unused (spec: block 0's v0/v1/v2), whether or not present.
  void Ignore(const std::string& name) { used_.insert(name); }

  // OK, or InvalidArgument naming every problem seen, then every tensor nobody asked for.
  absl::Status Finish();
  std::vector<DeviceBuffer> TakeBuffers() { return std::move(buffers_); }
  size_t bytes() const { return bytes_; }

 private:
  const TensorInfo* Lookup(const std::string& name, const std::vector<Shape>& shapes);
  void* Store(size_t bytes);
  size_t ArenaBound() const;

  const SafetensorsFile& file_;
  Backend& backend_;
  std::set<std::string> used_;
  std::vector<std::string> problems_;
  std::vector<DeviceBuffer> buffers_;
  size_t bytes_ = 0;
  char* arena_ = nullptr;  // next free byte of buffers_[0]
  size_t arena_left_ = 0;
  bool arena_failed_ = false;
};

}  // namespace retain::engine
