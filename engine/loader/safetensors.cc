#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace retain::engine {
namespace {

// The on-disk format is little-endian and LoadAsFloat reads the mapping in place.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

absl::Status Invalid(const std::string& path, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors '", path, "': ", reason));
}

absl::Status InvalidTensor(const std::string& path, const std::string& name,
                           absl::string_view reason) {
  return Invalid(path, absl::StrCat("tensor '", name, "' ", reason));
}

std::optional<DType> ParseDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  return std::nullopt;
}

// Checked element count; also guarantees TensorInfo::numel() cannot overflow, since its partial
// products are exactly the ones checked here.
std::optional<int64_t> CheckedNumel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  }
  return n;
}

absl::Status ParseTensor(const std::string& path, const std::string& name,
                         const nlohmann::json& entry, uint64_t data_size, TensorInfo& out,
                         uint64_t& begin) {
  if (!entry.is_object()) return InvalidTensor(path, name, "entry is not a JSON object");
  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end()) return InvalidTensor(path, name, "is missing 'dtype'");
  if (!dtype_it->is_string()) return InvalidTensor(path, name, "has a non-string 'dtype'");
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const std::optional<DType> dtype = ParseDType(dtype_name);
  if (!dtype) {
    return InvalidTensor(path, name, absl::StrCat("has unsupported dtype '", dtype_name,
                                                  "' (expected F32, F16 or BF16)"));
  }

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return InvalidTensor(path, name, "is missing 'shape'");
  if (!shape_it->is_array()) return InvalidTensor(path, name, "has a non-array 'shape'");
  std::vector<int64_t> shape;
  for (const nlohmann::json& d : *shape_it) {
    if (d.is_number_integer() && !d.is_number_unsigned()) {
      return InvalidTensor(path, name,
                           absl::StrCat("has negative shape dimension ", d.get<int64_t>()));
    }
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidTensor(path, name, "has a shape dimension that is not a non-negative integer");
    }
    shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }

  const auto off_it = entry.find("data_offsets");
  if (off_it == entry.end()) return InvalidTensor(path, name, "is missing 'data_offsets'");
  if (!off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
      !(*off_it)[1].is_number_unsigned()) {
    return InvalidTensor(path, name, "has 'data_offsets' that are not two unsigned integers");
  }
  begin = (*off_it)[0].get<uint64_t>();
  const uint64_t end = (*off_it)[1].get<uint64_t>();
  if (begin > end) {
    return InvalidTensor(path, name,
                         absl::StrCat("has data_offsets begin ", begin, " > end ", end));
  }

  const std::optional<int64_t> numel = CheckedNumel(shape);
  uint64_t want = 0;
  if (!numel || __builtin_mul_overflow(static_cast<uint64_t>(*numel), DTypeSize(*dtype), &want)) {
    return InvalidTensor(path, name, "has a shape whose byte size overflows");
  }
  if (want != end - begin) {
    return InvalidTensor(path, name,
                         absl::StrCat("shape needs ", want, " bytes of ", dtype_name,
                                      " but data_offsets [", begin, ", ", end, ") span ",
                                      end - begin, " bytes"));
  }
  if (end > data_size) {
    return InvalidTensor(path, name,
                         absl::StrCat("data_offsets [", begin, ", ", end,
                                      ") extend beyond the data area of ", data_size,
                                      " bytes (range outside the file; truncated?)"));
  }
  out.name = name;
  out.dtype = *dtype;
  out.shape = std::move(shape);
  out.nbytes = static_cast<size_t>(end - begin);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  // O_NONBLOCK so that a FIFO passed by mistake fails at the regular-file check, not hangs.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("safetensors '", path, "': cannot open: ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
    return absl::InvalidArgumentError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Invalid(path, absl::StrCat("cannot stat: ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Invalid(path, absl::StrCat("truncated: ", size,
                                      " bytes, shorter than the 8-byte header length"));
  }

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) {
    return Invalid(path, absl::StrCat("mmap failed: ", std::strerror(map_err)));
  }
  file->map_ = map;
  file->map_size_ = size;
  RETAIN_RETURN_IF_ERROR(file->Parse(static_cast<const unsigned char*>(map), size));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromMemory(
    const std::string& name, std::vector<uint8_t> bytes) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  file->owned_ = std::move(bytes);
  if (file->owned_.size() < 8) {
    return Invalid(name, absl::StrCat("truncated: ", file->owned_.size(),
                                      " bytes, shorter than the 8-byte header length"));
  }
  RETAIN_RETURN_IF_ERROR(file->Parse(file->owned_.data(), file->owned_.size()));
  return file;
}

absl::Status SafetensorsFile::Parse(const unsigned char* bytes, uint64_t size) {
  const std::string& path = path_;
  SafetensorsFile* file = this;

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8) {
    return Invalid(path, absl::StrCat("header length ", header_len, " is larger than the file (",
                                      size, " bytes)"));
  }
  if (header_len > kMaxHeaderBytes) {
    return Invalid(path, absl::StrCat("header length ", header_len, " is absurd (> 100 MB)"));
  }
  const char* header = reinterpret_cast<const char*>(bytes + 8);
  const nlohmann::json root =
      nlohmann::json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid(path, "header is not well-formed JSON");
  if (!root.is_object()) return Invalid(path, "header JSON is not an object");

  const unsigned char* data_area = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;  // (begin, end, name)
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return Invalid(path, "__metadata__ is not a JSON object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return Invalid(path, absl::StrCat("__metadata__ value for key '", key,
                                            "' is not a string (metadata must be string->string)"));
        }
        file->metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    TensorInfo info;
    uint64_t begin = 0;
    if (absl::Status s = ParseTensor(path, name, entry, data_size, info, begin); !s.ok()) return s;
    info.data = data_area + begin;
    if (info.nbytes > 0) ranges.emplace_back(begin, begin + info.nbytes, name);
    file->tensors_.emplace(name, std::move(info));
  }

  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [prev_begin, prev_end, prev_name] = ranges[i - 1];
    const auto& [cur_begin, cur_end, cur_name] = ranges[i];
    if (cur_begin < prev_end) {
      return Invalid(path, absl::StrCat("tensors '", prev_name, "' [", prev_begin, ", ", prev_end,
                                        ") and '", cur_name, "' [", cur_begin, ", ", cur_end,
                                        ") have overlapping data ranges"));
    }
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const std::string where =
        absl::StrCat("writing safetensors '", path, "': tensor '", t.name, "' ");
    if (t.name == "__metadata__" || header.contains(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, "has a reserved or duplicate name"));
    }
    // dump() below replaces invalid UTF-8 rather than throwing; a name it would alter cannot be
    // stored faithfully, so refuse it.
    const std::string quoted = nlohmann::json(t.name).dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    const nlohmann::json reparsed = nlohmann::json::parse(quoted, nullptr, false);
    if (!reparsed.is_string() || reparsed.get<std::string>() != t.name) {
      return absl::InvalidArgumentError(absl::StrCat(where, "has a name that is not valid UTF-8"));
    }
    const std::optional<int64_t> numel = CheckedNumel(t.shape);
    if (!numel || static_cast<uint64_t>(*numel) != t.values.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "has ", t.values.size(), " values, which does not match its shape"));
    }
    const uint64_t nbytes = t.values.size() * DTypeSize(t.dtype);
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json = header.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Pad so the data area starts 8-byte aligned, keeping in-place f32 reads aligned.
  json.append((8 - (8 + json.size()) % 8) % 8, ' ');

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("writing safetensors '", path, "'"));
  }
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(json.size() >> (8 * i));
  bool ok = std::fwrite(len_bytes, 1, 8, f) == 8 &&
            std::fwrite(json.data(), 1, json.size(), f) == json.size();
  std::vector<uint16_t> half;
  for (const TensorToWrite& t : tensors) {
    if (!ok) break;
    if (t.values.empty()) continue;  // data() may be null, which fwrite must not get
    if (t.dtype == DType::kF32) {
      ok = std::fwrite(t.values.data(), sizeof(float), t.values.size(), f) == t.values.size();
      continue;
    }
    half.resize(t.values.size());
    for (size_t i = 0; i < t.values.size(); ++i) {
      half[i] = t.dtype == DType::kF16 ? FloatToF16(t.values[i]) : FloatToBF16(t.values[i]);
    }
    ok = std::fwrite(half.data(), sizeof(uint16_t), half.size(), f) == half.size();
  }
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(path.c_str());  // a partial file would only fail later, less clearly
    return absl::ErrnoToStatus(err != 0 ? err : EIO,
                               absl::StrCat("writing safetensors '", path, "': write failed"));
  }
  return absl::OkStatus();
}

}  // namespace retain::engine
