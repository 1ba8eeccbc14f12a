#include "retain/engine/safetensors.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "retain/engine/dtype.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "safetensors_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  static void WriteBytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good());
  }

  // Writes a file with an arbitrary (possibly malformed) header and `data_size` zero bytes.
  std::string WriteRaw(const std::string& name, const std::string& header, size_t data_size,
                       uint64_t declared_len) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(declared_len >> (8 * i));
    bytes += header;
    bytes.append(data_size, '\0');
    const std::string path = Path(name);
    WriteBytes(path, bytes);
    return path;
  }
  std::string WriteRaw(const std::string& name, const std::string& header, size_t data_size) {
    return WriteRaw(name, header, data_size, header.size());
  }

  std::string dir_;
};

// Checks the code and that the message names every one of `parts` (reason, path, tensor).
::testing::AssertionResult FailsWith(const absl::Status& status, absl::StatusCode code,
                                     std::initializer_list<std::string> parts) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "expected code " << absl::StatusCodeToString(code)
                                         << ", got: " << status;
  }
  for (const std::string& part : parts) {
    if (status.message().find(part) == absl::string_view::npos) {
      return ::testing::AssertionFailure() << "message lacks '" << part << "': " << status;
    }
  }
  return ::testing::AssertionSuccess();
}

uint16_t Bits16(const TensorInfo& t, size_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const char*>(t.data) + 2 * i, 2);
  return v;
}

TEST_F(SafetensorsTest, RoundTripF32F16BF16) {
  const std::vector<float> f32 = {0.1f, -1e30f, 3.25f, 0.0f, -0.0f, 1e-40f};
  // All exactly representable in the target type (incl. the f16 max and smallest subnormal).
  const std::vector<float> f16 = {0.0f, 1.0f, -2.0f, 0.5f, 65504.0f, 0x1p-24f, 0.333251953125f,
                                  -1023.5f};
  const std::vector<float> bf16 = {1.0f, -3.5f, 0.15625f, 0x1p100f, -0.0078125f, 0x1.fep127f};
  const std::string path = Path("rt.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w.f32", DType::kF32, {2, 3}, f32},
                                      {"w.f16", DType::kF16, {8}, f16},
                                      {"w.bf16", DType::kBF16, {3, 1, 2}, bf16},
                                      {"empty", DType::kF32, {0, 4}, {}}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const auto& tensors = (*file)->tensors();
  ASSERT_EQ(tensors.size(), 4u);
  EXPECT_EQ((*file)->path(), path);
  EXPECT_TRUE((*file)->metadata().empty());
  EXPECT_EQ((*file)->Find("missing"), nullptr);

  struct Want {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
    const std::vector<float>* values;
  };
  for (const Want& w : {Want{"w.f32", DType::kF32, {2, 3}, &f32},
                        Want{"w.f16", DType::kF16, {8}, &f16},
                        Want{"w.bf16", DType::kBF16, {3, 1, 2}, &bf16}}) {
    SCOPED_TRACE(w.name);
    const TensorInfo* t = (*file)->Find(w.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->name, w.name);
    EXPECT_EQ(t->dtype, w.dtype);
    EXPECT_EQ(t->shape, w.shape);
    ASSERT_EQ(t->numel(), static_cast<int64_t>(w.values->size()));
    EXPECT_EQ(t->nbytes, w.values->size() * DTypeSize(w.dtype));
    for (size_t i = 0; i < w.values->size(); ++i) {
      const float got = LoadAsFloat(t->data, t->dtype, i);
      EXPECT_EQ(got, (*w.values)[i]) << "element " << i;
      EXPECT_EQ(std::signbit(got), std::signbit((*w.values)[i])) << "element " << i;
    }
  }
  const TensorInfo* empty = (*file)->Find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->nbytes, 0u);
  EXPECT_EQ(empty->numel(), 0);
}

TEST_F(SafetensorsTest, WriterRoundsToNearestEven) {
  // 1+2^-11 and 1+3*2^-11 are exact f16 ties (round to the even mantissa 0x000 / 0x002);
  // likewise 1+2^-8 and 1+3*2^-8 for bf16. 0.1f = 0x3DCCCCCD rounds up in both types.
  const std::string path = Path("round.safetensors");
  const std::vector<float> v = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 0.1f};
  const std::vector<float> vb = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 0.1f};
  ASSERT_TRUE(WriteSafetensors(path, {{"h", DType::kF16, {3}, v}, {"b", DType::kBF16, {3}, vb}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* h = (*file)->Find("h");
  const TensorInfo* b = (*file)->Find("b");
  ASSERT_NE(h, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Bits16(*h, 0), 0x3C00);
  EXPECT_EQ(Bits16(*h, 1), 0x3C02);
  EXPECT_EQ(Bits16(*h, 2), 0x2E66);
  EXPECT_EQ(LoadAsFloat(h->data, h->dtype, 2), 0.0999755859375f);
  EXPECT_EQ(Bits16(*b, 0), 0x3F80);
  EXPECT_EQ(Bits16(*b, 1), 0x3F82);
  EXPECT_EQ(Bits16(*b, 2), 0x3DCD);
}

TEST_F(SafetensorsTest, WriterAlignsDataAreaToEightBytes) {
  for (const std::string name : {"a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "x"}) {
    const std::string path = Path(name + ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path, {{name, DType::kF32, {1}, {1.0f}}}).ok());
    std::ifstream in(path, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    EXPECT_EQ((8 + n) % 8, 0u) << name;
    EXPECT_EQ(fs::file_size(path), 8 + n + 4) << name;
  }
}

TEST_F(SafetensorsTest, WriterRejectsValueCountMismatch) {
  const absl::Status s =
      WriteSafetensors(Path("bad.safetensors"), {{"w", DType::kF32, {2, 3}, {1, 2, 3, 4, 5}}});
  EXPECT_TRUE(FailsWith(s, absl::StatusCode::kInvalidArgument, {"'w'", "does not match"}));
}

TEST_F(SafetensorsTest, WriterReportsUnwritablePath) {
  const std::string path = Path("no/such/dir/x.safetensors");
  const absl::Status s = WriteSafetensors(path, {{"w", DType::kF32, {1}, {1.0f}}});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
}

TEST_F(SafetensorsTest, OpensEveryConformanceFile) {
  const fs::path root = retain::testing::ConformanceDir();
  ASSERT_TRUE(fs::is_directory(root)) << "no conformance kits: " << root << " is not a folder";
  int kits = 0;
  for (const fs::directory_entry& kit : fs::directory_iterator(root)) {
    if (!fs::exists(kit.path() / "model.safetensors") ||
        !fs::exists(kit.path() / "expected.safetensors")) {
      continue;
    }
    ++kits;
    for (const char* f : {"model.safetensors", "expected.safetensors"}) {
      const std::string path = (kit.path() / f).string();
      auto file = SafetensorsFile::Open(path);
      ASSERT_TRUE(file.ok()) << file.status();
      EXPECT_FALSE((*file)->tensors().empty()) << path;
    }
  }
  EXPECT_GT(kits, 0);

  auto f32 = SafetensorsFile::Open((root / "rwkv7-tiny" / "model.safetensors").string());
  ASSERT_TRUE(f32.ok()) << f32.status();
  const TensorInfo* emb = (*f32)->Find("emb.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::kF32);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(emb->nbytes, 256u * 64u * 4u);
  EXPECT_TRUE(std::isfinite(LoadAsFloat(emb->data, emb->dtype, 256 * 64 - 1)));

  auto bf16 = SafetensorsFile::Open((root / "rwkv7-tiny-bf16" / "model.safetensors").string());
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  const TensorInfo* emb16 = (*bf16)->Find("emb.weight");
  ASSERT_NE(emb16, nullptr);
  EXPECT_EQ(emb16->dtype, DType::kBF16);
  EXPECT_EQ(emb16->shape, (std::vector<int64_t>{256, 64}));
}

TEST_F(SafetensorsTest, KeepsMetadataAndAllowsZeroSizeTensorsAnywhere) {
  const std::string path = WriteRaw(
      "meta.safetensors",
      R"({"__metadata__":{"format":"pt","k":"v"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("z":{"dtype":"F16","shape":[0],"data_offsets":[4,4]},)"
      R"("s":{"dtype":"BF16","shape":[],"data_offsets":[8,10]}})",
      10);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 3u);
  EXPECT_EQ((*file)->Find("__metadata__"), nullptr);
  EXPECT_EQ((*file)->metadata().size(), 2u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_EQ((*file)->Find("s")->numel(), 1);
}

TEST_F(SafetensorsTest, MissingFile) {
  const std::string path = Path("does_not_exist.safetensors");
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kNotFound,
                        {path, "cannot open"}));
}

TEST_F(SafetensorsTest, DirectoryIsNotAFile) {
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(dir_).status(), absl::StatusCode::kInvalidArgument,
                        {dir_, "not a regular file"}));
}

TEST_F(SafetensorsTest, EmptyFile) {
  const std::string path = Path("empty.safetensors");
  WriteBytes(path, "");
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "truncated"}));
}

TEST_F(SafetensorsTest, ShorterThanLengthPrefix) {
  const std::string path = Path("short.safetensors");
  WriteBytes(path, std::string("\x02\0\0\0\0", 5));
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "truncated"}));
}

TEST_F(SafetensorsTest, TruncatedDataArea) {
  const std::string path = Path("cut.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"first", DType::kF32, {4}, {1, 2, 3, 4}},
                                      {"second", DType::kF32, {4}, {5, 6, 7, 8}}})
                  .ok());
  fs::resize_file(path, fs::file_size(path) - 10);  // cuts into "second"
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'second'", "beyond the data area"}));
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  const std::string path = WriteRaw("long.safetensors", "{}", 0, 1000);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "header length 1000 is larger than the file"}));
}

TEST_F(SafetensorsTest, AbsurdHeaderLength) {
  // Sparse, so the >100 MB file costs no disk.
  const uint64_t len = 100ull * 1024 * 1024 + 1;
  const std::string path = WriteRaw("huge.safetensors", "", 0, len);
  fs::resize_file(path, 8 + len + 16);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "absurd"}));
}

TEST_F(SafetensorsTest, BadJson) {
  const std::string path = WriteRaw("badjson.safetensors", R"({"a": )", 0);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "not well-formed JSON"}));
}

TEST_F(SafetensorsTest, TopLevelArray) {
  const std::string path = WriteRaw("array.safetensors", "[1, 2]", 0);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "not an object"}));
}

TEST_F(SafetensorsTest, MissingField) {
  const std::string path =
      WriteRaw("nofield.safetensors", R"({"w":{"dtype":"F32","shape":[1]}})", 4);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "missing 'data_offsets'"}));
}

TEST_F(SafetensorsTest, UnknownDType) {
  const std::string path = WriteRaw(
      "i64.safetensors", R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "tensor 'x' has unsupported dtype 'I64'"}));
}

TEST_F(SafetensorsTest, ShapeByteRangeMismatch) {
  const std::string path = WriteRaw(
      "mismatch.safetensors", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
      24);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "shape needs 24 bytes", "span 20 bytes"}));
}

TEST_F(SafetensorsTest, ShapeOverflowIsRejectedNotWrapped) {
  // 2^62 * 2^62 wraps to 0 in 64 bits; it must not be accepted as a zero-size tensor.
  const std::string path = WriteRaw(
      "overflow.safetensors",
      R"({"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],)"
      R"("data_offsets":[0,0]}})",
      0);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "overflows"}));
}

TEST_F(SafetensorsTest, EndBeyondDataArea) {
  const std::string path = WriteRaw(
      "beyond.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "beyond the data area of 16 bytes"}));
}

TEST_F(SafetensorsTest, OverlappingRanges) {
  const std::string path = WriteRaw("overlap.safetensors",
                                    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F16","shape":[4],"data_offsets":[4,12]}})",
                                    12);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'a'", "'b'", "overlapping"}));
}

TEST_F(SafetensorsTest, NegativeShape) {
  const std::string path = WriteRaw(
      "neg.safetensors", R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,0]}})", 0);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "negative shape dimension -1"}));
}

TEST_F(SafetensorsTest, NonIntegerShape) {
  const std::string path = WriteRaw(
      "frac.safetensors", R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "not a non-negative integer"}));
}

TEST_F(SafetensorsTest, BeginAfterEnd) {
  const std::string path = WriteRaw(
      "backwards.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "begin 8 > end 4"}));
}

TEST_F(SafetensorsTest, OffsetsNotTwoUnsignedInts) {
  const std::string path = WriteRaw(
      "offs.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", 4);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "'w'", "not two unsigned integers"}));
}

TEST_F(SafetensorsTest, MetadataNotStringToString) {
  const std::string path = WriteRaw("meta_bad.safetensors", R"({"__metadata__":{"n":3}})", 0);
  EXPECT_TRUE(FailsWith(SafetensorsFile::Open(path).status(), absl::StatusCode::kInvalidArgument,
                        {path, "__metadata__", "'n'", "not a string"}));
}

}  // namespace
}  // namespace retain::engine
