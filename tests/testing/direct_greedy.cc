#include "tests/testing/direct_greedy.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "retain/engine/model.h"

namespace retain::testing {

std::vector<engine::TokenId> ByteTokens(const std::string& text) {
  std::vector<engine::TokenId> out;
  out.reserve(text.size());
  for (unsigned char c : text) out.push_back(c);
  return out;
}

std::vector<engine::TokenId> DirectGreedy(const std::string& model_dir, const std::vector<engine::TokenId>& prompt,
                                          int n) {
  auto model = engine::LoadModel(model_dir, engine::ModelOptions{.num_threads = 1});
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  auto state = (*model)->AllocateStates(1);
  EXPECT_TRUE(state.ok()) << state.status();
  if (!state.ok()) return {};
  std::vector<float> logits((*model)->config().vocab_size);
  std::vector<engine::TokenId> out, feed = prompt;
  for (int i = 0; i < n; ++i) {
    engine::SequenceInput in{feed, *state, false};
    const absl::Status st = (*model)->Forward({&in, 1}, absl::MakeSpan(logits));
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    out.push_back(static_cast<engine::TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    feed = {out.back()};
  }
  return out;
}

}  // namespace retain::testing
