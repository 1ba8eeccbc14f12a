// ScalarDecayModel.
#include "engine/model/scalar_decay_model.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/model/weights.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {

absl::Status ScalarDecayModel::InitScalarDecay(const std::vector<int>& key_sizes) {
  if (options_.chunk_size < 1 || options_.chunk_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("chunk_size must be in [1, 1024], got ", options_.chunk_size));
  }
  key_sizes_ = key_sizes;
  size_t offset = kHeaderFloats;
  for (int key : key_sizes_) {
    layer_offset_.push_back(offset);
    offset += static_cast<size_t>(config_.n_head) * key * config_.value_head_size;
  }
  ptrs_.reserve(options_.max_step_tokens);
  // All zeros: position 0 (both words 0) and empty states.
  return InitCommon(std::vector<float>(offset, 0.0f));
}

void ScalarDecayModel::Angles(const Step& step, const float* theta, int n_theta, float* cos, float* sin) {
  StatePointers(step, 0, ptrs_);
  kernels::RotaryAnglesArgs a;
  a.seqs = step.seqs;
  a.positions = ptrs_.data();
  a.n_theta = n_theta;
  a.theta = theta;
  a.cos = cos;
  a.sin = sin;
  backend_->RotaryAngles(a);
}

void ScalarDecayModel::Retain(const Step& step, int layer, const float* q, const float* k, const float* v,
                              const float* log_decay, float* o) {
  StatePointers(step, layer_offset_[layer], ptrs_);
  kernels::RetentionArgs a;
  a.seqs = step.seqs;
  a.n_head = config_.n_head;
  a.key_size = key_sizes_[layer];
  a.value_size = config_.value_head_size;
  switch (options_.form) {
    case ComputeForm::kChunkwise: a.form = kernels::RetentionForm::kChunkwise; break;
    case ComputeForm::kParallel: a.form = kernels::RetentionForm::kParallel; break;
    case ComputeForm::kRecurrent: a.form = kernels::RetentionForm::kRecurrent; break;
  }
  a.chunk_size = options_.chunk_size;
  a.q = q;
  a.k = k;
  a.v = v;
  a.log_decay = log_decay;
  a.states = ptrs_.data();
  a.o = o;
  backend_->Retention(a);
}

void ScalarDecayModel::AdvancePositions(const Step& step) {
  StatePointers(step, 0, ptrs_);
  backend_->AdvancePositions({step.seqs, ptrs_.data()});
}

absl::Status ScalarDecayModel::CheckTiedHead(const SafetensorsFile& file, const std::string& emb_name,
                                             const std::string& head_name, WeightLoader& loader) {
  loader.Ignore(head_name);
  const TensorInfo* head = file.Find(head_name);
  const TensorInfo* emb = file.Find(emb_name);
  if (head == nullptr || emb == nullptr) return absl::OkStatus();  // a missing embedding is reported by the loader
  bool same = head->shape == emb->shape;
  for (int64_t i = 0; same && i < emb->numel(); ++i) {
    same = LoadAsFloat(head->data, head->dtype, i) == LoadAsFloat(emb->data, emb->dtype, i);
  }
  if (same) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      file.path(), ": '", head_name, "' differs from '", emb_name,
      "' but the config ties the output head to the embedding (tie_word_embeddings / "
      "share_decoder_input_output_embed); refusing to pick one"));
}

absl::Status ScalarDecayModel::ValidateStateBlock(std::string_view block) const {
  float words[kernels::kPositionWords];
  if (block.size() < sizeof(words)) return absl::InvalidArgumentError("state snapshot is truncated");
  std::memcpy(words, block.data(), sizeof(words));
  if (!kernels::IsPositionEncoding(words)) {
    return absl::InvalidArgumentError("state snapshot has a malformed session position");
  }
  return absl::OkStatus();
}

}  // namespace retain::engine
