// Memory-mapped, validated safetensors reader (and a small writer for tools and tests).
//
// Open() validates everything before handing out a pointer: header length bounded by the file,
// JSON well formed, dtypes known (F32, F16, BF16), shape x element size == byte range, every range
// inside the data area, no two ranges overlapping. Each violation is an InvalidArgument (or
// NotFound for a missing file) whose message names the file and, where there is one, the tensor.
// The mapping lives as long as the SafetensorsFile; TensorInfo::data points into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/dtype.h"

namespace retain::engine {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // into the mapping; 2-byte types may be unaligned for f32 use
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same validation over an image in memory, which the file then owns; `name` stands in for
  // the path in messages. Benchmarks build models this way without touching the disk.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromMemory(const std::string& name,
                                                                     std::vector<uint8_t> bytes);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors by name (sorted). "__metadata__" is not a tensor and is kept in metadata().
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorInfo* Find(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse(const unsigned char* bytes, uint64_t size);

  std::string path_;
  std::vector<uint8_t> owned_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: f32 values stored as `dtype` (converted with round-to-nearest-even).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// Writes a well-formed safetensors file (tensors in the given order, 8-byte aligned header).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors);

}  // namespace retain::engine
