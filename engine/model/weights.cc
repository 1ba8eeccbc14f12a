// WeightLoader.
#include "engine/model/weights.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace retain::engine {
namespace {

std::string ShapeStr(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

}  // namespace

const TensorInfo* WeightLoader::Lookup(const std::string& name, const std::vector<Shape>& shapes) {
  used_.insert(name);
  const TensorInfo* t = file_.Find(name);
  if (t == nullptr) {
    problems_.push_back(absl::StrCat("missing tensor '", name, "' ", ShapeStr(shapes[0])));
    return nullptr;
  }
  for (const Shape& s : shapes)
    if (t->shape == s) return t;
  problems_.push_back(absl::StrCat("tensor '", name, "' has shape ", ShapeStr(t->shape),
                                   ", expected ", ShapeStr(shapes[0])));
  return nullptr;
}

// Every tensor of the file, stored as loaded (vectors widen to f32), fits in one arena sized up
// front: one allocation instead of hundreds, and no per-tensor rounding to large pages. Tensors a
// family derives beyond the file's fall back to their own allocations.
size_t WeightLoader::ArenaBound() const {
  size_t total = 0;
  for (const auto& [name, t] : file_.tensors()) {
    // Small tensors may be loaded as f32 vectors; matrices keep their stored dtype.
    // A matrix's layout may pad its rows (kPackRows - 1 more, of either dimension, for each of up
    // to four parts a fused matrix is split into).
    const bool may_widen = t.numel() < (1 << 20);
    const int64_t widest = t.shape.empty() ? 0 : *std::max_element(t.shape.begin(), t.shape.end());
    const size_t padding = t.shape.size() == 2 ? 4 * (kernels::kPackRows - 1) * widest * DTypeSize(t.dtype) : 0;
    total += (may_widen ? std::max(t.nbytes, static_cast<size_t>(t.numel()) * sizeof(float)) : t.nbytes) + padding + 64;
  }
  return total;
}

void* WeightLoader::Store(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  if (arena_ == nullptr && !arena_failed_) {
    auto buf = backend_.Allocate(ArenaBound());
    if (buf.ok()) {
      arena_ = static_cast<char*>(buf->data());
      arena_left_ = buf->bytes();
      buffers_.push_back(std::move(*buf));
    } else {
      arena_failed_ = true;
    }
  }
  bytes_ += bytes;
  if (arena_ != nullptr && rounded <= arena_left_) {
    void* p = arena_;
    arena_ += rounded;
    arena_left_ -= rounded;
    return p;
  }
  auto buf = backend_.Allocate(bytes);
  if (!buf.ok()) {
    problems_.push_back(std::string(buf.status().message()));
    return nullptr;
  }
  buffers_.push_back(std::move(*buf));
  return buffers_.back().data();
}

MatrixRef WeightLoader::Linear(const std::string& name, int out, int in) {
  return LinearRows(name, out, in, 0, out);
}

MatrixRef WeightLoader::LinearRows(const std::string& name, int out, int in, int row0, int rows) {
  const TensorInfo* t = Lookup(name, {{out, in}});
  if (t == nullptr) return {};
  void* dst = Store(backend_.MatrixBytes(t->dtype, rows, in));
  if (dst == nullptr) return {};
  const size_t row_bytes = static_cast<size_t>(in) * DTypeSize(t->dtype);
  return backend_.UploadMatrix(static_cast<const char*>(t->data) + row0 * row_bytes, t->dtype, rows, in, dst);
}

MatrixRef WeightLoader::LoraFactor(const std::string& name, int in, int out) {
  const TensorInfo* t = Lookup(name, {{in, out}});
  if (t == nullptr) return {};
  const size_t esize = DTypeSize(t->dtype);
  std::vector<uint8_t> host(t->nbytes);
  const uint8_t* src = static_cast<const uint8_t*>(t->data);
  for (int i = 0; i < in; ++i)
    for (int o = 0; o < out; ++o)
      std::memcpy(&host[(static_cast<size_t>(o) * in + i) * esize], src + (static_cast<size_t>(i) * out + o) * esize, esize);
  void* dst = Store(backend_.MatrixBytes(t->dtype, out, in));
  if (dst == nullptr) return {};
  return backend_.UploadMatrix(host.data(), t->dtype, out, in, dst);
}

MatrixRef WeightLoader::Table(const std::string& name, int rows, int width) {
  const TensorInfo* t = Lookup(name, {{rows, width}});
  if (t == nullptr) return {};
  void* dst = Store(t->nbytes);
  if (dst == nullptr) return {};
  backend_.CopyToDevice(dst, t->data, t->nbytes);
  return MatrixRef{t->dtype, rows, width, dst};
}

std::vector<float> WeightLoader::HostVector(const std::string& name, int n,
                                            const std::vector<Shape>& shapes) {
  std::vector<float> v(n, 0.0f);
  const TensorInfo* t = Lookup(name, shapes);
  if (t == nullptr) return v;
  for (int i = 0; i < n; ++i) v[i] = LoadAsFloat(t->data, t->dtype, i);
  return v;
}

const float* WeightLoader::Upload(const std::vector<float>& values) {
  void* dst = Store(values.size() * sizeof(float));
  if (dst == nullptr) return nullptr;
  backend_.CopyToDevice(dst, values.data(), values.size() * sizeof(float));
  return static_cast<const float*>(dst);
}

const float* WeightLoader::Vector(const std::string& name, int n, const std::vector<Shape>& shapes) {
  return Upload(HostVector(name, n, shapes));
}

absl::Status WeightLoader::Finish() {
  std::vector<std::string> extra;
  for (const auto& [name, info] : file_.tensors())
    if (!used_.count(name)) extra.push_back(name);
  if (!extra.empty()) {
    // A long list helps nobody: name the first few and count the rest.
    std::vector<std::string> shown(extra.begin(), extra.begin() + std::min<size_t>(extra.size(), 8));
    problems_.push_back(absl::StrCat("unexpected tensor(s) '", absl::StrJoin(shown, "', '"), "'",
                                     extra.size() > shown.size() ? absl::StrCat(" and ", extra.size() - shown.size(), " more") : ""));
  }
  if (problems_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(file_.path(), ": ", absl::StrJoin(problems_, "; ")));
}

}  // namespace retain::engine
