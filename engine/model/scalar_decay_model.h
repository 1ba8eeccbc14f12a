// The core RetNet and TransNormerLLM share (spec retnet-transnormer.md Part C): a per-session state
// block holding the session's position and one scalar-decay state per layer, the retention op
// called in the compute form ModelOptions asks for, the rotation angle tables, and moving each
// session's position on after a step. Each family supplies its projections, decays, rotation,
// norms and feed-forward.
//
// State block, f32:
//   [position: kPositionWords words (retention_args.h), padded to kHeaderFloats]
//   [layer l: n_head × key_size_l × value_size]   key-major per head, as fla and the TNL code keep it
// Every session decodes from its own position: nothing positional lives in the model object.
#pragma once

#include <vector>

#include "engine/model/recurrent_model.h"
#include "retain/engine/safetensors.h"

namespace retain::engine {

class WeightLoader;

class ScalarDecayModel : public RecurrentModel {
 protected:
  // 16 floats: keeps each layer's state 64-byte aligned relative to the block.
  static constexpr size_t kHeaderFloats = 16;

  ScalarDecayModel(const ModelConfig& c, const ModelOptions& o, std::unique_ptr<Backend> b)
      : RecurrentModel(c, o, std::move(b)) {}

  // Lays out the state block for per-layer key widths per head (the value width per head is
  // config_.value_head_size) and sizes the common workspace. Called once, after the weights.
  absl::Status InitScalarDecay(const std::vector<int>& key_sizes);

  // cos/sin [step.rows, n_theta] of each row's position × theta.
  void Angles(const Step& step, const float* theta, int n_theta, float* cos, float* sin);
  // Retention of `layer` over the step: q, k [rows, n_head·key_size], v and o [rows, n_head·dv].
  void Retain(const Step& step, int layer, const float* q, const float* k, const float* v,
              const float* log_decay, float* o);
  // Each session's position += its rows in this step. Called once per step, after every layer.
  void AdvancePositions(const Step& step);

  // When `tie` and the checkpoint also stores the head under `head_name`, its values must be the
  // embedding's (tying makes them one tensor); a different matrix is an error, never a guess.
  static absl::Status CheckTiedHead(const SafetensorsFile& file, const std::string& emb_name,
                                    const std::string& head_name, WeightLoader& loader);

  absl::Status ValidateStateBlock(std::string_view block) const override;

 private:
  std::vector<size_t> layer_offset_;  // floats from the block start
  std::vector<int> key_sizes_;
  std::vector<float*> ptrs_;
};

}  // namespace retain::engine
