// CudaSlotPool (engine/backend/cuda/slot_pool.h): sized by a byte budget, slots copied to the host
// and back byte for byte, the step's slot indices turned into state pointers on the device, and
// the fused WKV-7 kernel updating pool slots in place against the reference on host copies,
// including a slot reused by another session after its first one was evicted. The argument
// checks run everywhere a device is; without a GPU every test is skipped. Unverified on GPU.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/slot_pool.h"
#include "engine/kernels/reference/ops.h"
#include "gtest/gtest.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/random_floats.h"

namespace retain::engine::cuda {
namespace {

using retain::testing::NonZeroUniform;

class CudaSlotPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RETAIN_SKIP_WITHOUT_CUDA();
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

TEST_F(CudaSlotPoolTest, BudgetSetsTheSlotCount) {
  // 1000-byte slots take 1024 bytes each: a budget of 10 strides and 1023 bytes holds 10.
  auto pool = CudaSlotPool::Create(10 * 1024 + 1023, 1000, 4, stream_);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->num_slots(), 10);
  EXPECT_EQ(pool->slot_stride(), 1024u);
  EXPECT_EQ(CudaSlotPool::Create(1023, 1000, 4, stream_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaSlotPoolTest, SlotsRoundTripThroughTheHostByteForByte) {
  const size_t floats = 777;
  auto pool = CudaSlotPool::Create(8 * 4096, floats * 4, 8, stream_);
  ASSERT_TRUE(pool.ok()) << pool.status();
  std::vector<std::vector<float>> written;
  for (int s = 0; s < pool->num_slots(); ++s) {
    written.push_back(NonZeroUniform(floats, 100 + s));
    ASSERT_TRUE(pool->CopyFromHost(s, written.back().data()).ok());
  }
  for (int s = pool->num_slots() - 1; s >= 0; --s) {  // neighbours must not have overwritten it
    std::vector<float> back(floats, -7.0f);
    ASSERT_TRUE(pool->CopyToHost(s, back.data()).ok());
    EXPECT_EQ(std::memcmp(back.data(), written[s].data(), floats * 4), 0) << "slot " << s;
  }
  std::vector<float> x(floats);
  EXPECT_EQ(pool->CopyToHost(pool->num_slots(), x.data()).code(), absl::StatusCode::kOutOfRange);
}

TEST_F(CudaSlotPoolTest, StepSlotsAreCheckedAndBecomeDevicePointers) {
  auto pool = CudaSlotPool::Create(16 * 256, 256, 3, stream_);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->SetStepSlots(std::vector<int>{1, 2, 3, 4}).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->SetStepSlots(std::vector<int>{1, 16}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool->SetStepSlots(std::vector<int>{5, 5}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(pool->SetStepSlots(std::vector<int>{9, 0, 4}).ok());
  auto table = pool->StatePointers(10);
  ASSERT_TRUE(table.ok()) << table.status();
  std::vector<float*> got(3);
  ASSERT_EQ(cudaMemcpyAsync(got.data(), *table, 3 * sizeof(float*), cudaMemcpyDeviceToHost, stream_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  EXPECT_EQ(got[0], pool->slot(9) + 10);
  EXPECT_EQ(got[1], pool->slot(0) + 10);
  EXPECT_EQ(got[2], pool->slot(4) + 10);
}

// Runs the device WKV-7 on the step's pool slots and the reference on host copies of the same
// slots, then compares every slot of the pool (the untouched ones must not move) and the output.
TEST_F(CudaSlotPoolTest, Wkv7UpdatesPoolSlotsInPlaceAndASlotIsReusedAfterEviction) {
  const int h = 2, n = 16, width = h * n;
  const size_t floats = static_cast<size_t>(h) * n * n;
  auto made = CudaSlotPool::Create(6 * floats * 4, floats * 4, 4, stream_);
  ASSERT_TRUE(made.ok()) << made.status();
  CudaSlotPool& pool = *made;
  ASSERT_EQ(pool.num_slots(), 6);
  std::vector<std::vector<float>> host(6);
  for (int s = 0; s < 6; ++s) {
    host[s] = NonZeroUniform(floats, 200 + s, -0.5f, 0.5f);
    ASSERT_TRUE(pool.CopyFromHost(s, host[s].data()).ok());
  }
  auto step = [&](const std::vector<int>& slots, const std::vector<int>& row_begin, uint32_t seed) {
    const int rows = row_begin.back();
    const size_t m = static_cast<size_t>(rows) * width;
    std::vector<float> r = NonZeroUniform(m, seed), w = NonZeroUniform(m, seed + 1, 0.55f, 0.999f), k = NonZeroUniform(m, seed + 2),
                       v = NonZeroUniform(m, seed + 3), a = NonZeroUniform(m, seed + 4, -0.2f, 0.2f), b = NonZeroUniform(m, seed + 5, -0.2f, 0.2f);
    std::vector<float> want(m);
    std::vector<float*> ptrs;
    for (int s : slots) ptrs.push_back(host[s].data());
    kernels::Wkv7Args ra;
    ra.seqs = {static_cast<int>(slots.size()), row_begin.data()};
    ra.n_head = h, ra.head_size = n;
    ra.r = r.data(), ra.w = w.data(), ra.k = k.data(), ra.v = v.data(), ra.a = a.data(), ra.b = b.data();
    ra.states = ptrs.data(), ra.y = want.data();
    kernels::reference::Wkv7(ra);

    std::vector<float> all;  // device inputs r w k v a b, then y poisoned, then row_begin
    for (const auto* part : {&r, &w, &k, &v, &a, &b}) all.insert(all.end(), part->begin(), part->end());
    all.insert(all.end(), m, std::numeric_limits<float>::quiet_NaN());
    float* dev = nullptr;
    int* rows_dev = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dev), all.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&rows_dev), row_begin.size() * 4), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dev, all.data(), all.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(rows_dev, row_begin.data(), row_begin.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_TRUE(pool.SetStepSlots(slots).ok());
    auto table = pool.StatePointers(0);
    ASSERT_TRUE(table.ok()) << table.status();
    kernels::Wkv7Args da = ra;
    da.seqs.row_begin = rows_dev;
    da.r = dev, da.w = dev + m, da.k = dev + 2 * m, da.v = dev + 3 * m, da.a = dev + 4 * m, da.b = dev + 5 * m;
    da.states = *table, da.y = dev + 6 * m;
    ASSERT_EQ(kernels::cuda::Wkv7(da, stream_), cudaSuccess);
    std::vector<float> y(m);
    ASSERT_EQ(cudaMemcpyAsync(y.data(), da.y, m * 4, cudaMemcpyDeviceToHost, stream_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    cudaFree(dev);
    cudaFree(rows_dev);
    for (size_t i = 0; i < m; ++i) ASSERT_NEAR(y[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << "y " << i;
    for (int s = 0; s < 6; ++s) {
      std::vector<float> got(floats);
      ASSERT_TRUE(pool.CopyToHost(s, got.data()).ok());
      for (size_t i = 0; i < floats; ++i)
        ASSERT_NEAR(got[i], host[s][i], 1e-5f * (1 + std::fabs(host[s][i]))) << "slot " << s << " float " << i;
    }
  };
  step({3, 0, 5}, {0, 1, 4, 6}, 300);  // three sessions at different positions (1, 3 and 2 tokens)
  // Evict slot 0's session (to the host), give the slot to a new one, decode both slots again.
  std::vector<float> evicted(floats);
  ASSERT_TRUE(pool.CopyToHost(0, evicted.data()).ok());
  host[0] = NonZeroUniform(floats, 400, -0.5f, 0.5f);
  ASSERT_TRUE(pool.CopyFromHost(0, host[0].data()).ok());
  step({0, 3}, {0, 1, 2}, 500);
  // The evicted session comes back into another free slot and continues there.
  host[1] = evicted;
  ASSERT_TRUE(pool.CopyFromHost(1, evicted.data()).ok());
  step({1}, {0, 1}, 600);
}

}  // namespace
}  // namespace retain::engine::cuda
