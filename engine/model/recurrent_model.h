// What every recurrent model shares: input validation, splitting a Forward call into steps of at
// most max_step_tokens rows, embedding + optional ln0, the output head for the rows that need
// logits, and the state block's lifecycle (init, export, import). A family supplies its layers.
//
// Thread safety: one Forward at a time per model (the engine's step loop is single-threaded);
// the backend parallelises inside each op.
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "retain/engine/model.h"

namespace retain::engine {

class RecurrentModel : public Model {
 public:
  const ModelConfig& config() const override { return config_; }
  size_t state_bytes() const override { return initial_state_.size() * sizeof(float); }
  absl::Status InitState(void* state) override;
  absl::Status Forward(absl::Span<const SequenceInput> seqs, absl::Span<float> logits) override;
  absl::StatusOr<std::string> ExportState(const void* state) override;
  absl::Status ImportState(std::string_view bytes, void* state) override;
  absl::StatusOr<void*> AllocateStates(int count, bool initialize = true) override;
  void DiscardState(void* state) override;
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) override {
    backend_->HostParallelFor(n, fn);
  }

 protected:
  // One step: `rows` token rows of several sequences back to back.
  struct Step {
    int rows = 0;
    kernels::SeqRows seqs;
    const std::vector<float*>* states = nullptr;  // per sequence, start of its state block
  };

  RecurrentModel(ModelConfig config, const ModelOptions& options, std::unique_ptr<Backend> backend)
      : config_(std::move(config)), options_(options), backend_(std::move(backend)) {}

  // Called once by the family's loader after its layers are set: sizes the step workspace.
  absl::Status InitCommon(std::vector<float> initial_state);
  // Points each of `buffers` at a new activation buffer of `width` floats per step row;
  // ResourceExhausted when the backend is out of memory.
  absl::Status Scratch(size_t width, std::initializer_list<float**> buffers);
  // Pointers to (state block + offset floats) for each sequence of the step, in `out`.
  void StatePointers(const Step& step, size_t offset, std::vector<float*>& out) const;

  // x: [step.rows, n_embd] embedded input, updated in place to the last layer's output.
  virtual void RunLayers(const Step& step, float* x) = 0;
  // The norm before the output head, over `rows` rows of x in place. Default: LayerNorm with
  // ln_out_w_ / ln_out_b_ (RWKV); families with another final norm override it.
  virtual void FinalNorm(float* x, int rows);
  // Vets an imported state block (the snapshot's payload: state_bytes() host bytes, not
  // necessarily aligned) beyond the finite-float check every block gets, e.g. words that encode
  // integers. Default: nothing more to check.
  virtual absl::Status ValidateStateBlock(std::string_view block) const;

  ModelConfig config_;
  ModelOptions options_;
  std::unique_ptr<Backend> backend_;
  std::vector<DeviceBuffer> weights_;
  // Shared by every family: embedding (+ layer-0 LayerNorm), output LayerNorm and head.
  MatrixRef emb_, head_;
  const float *ln0_w_ = nullptr, *ln0_b_ = nullptr, *ln_out_w_ = nullptr, *ln_out_b_ = nullptr;

 private:
  absl::Status Validate(absl::Span<const SequenceInput> seqs, absl::Span<float> logits) const;
  void RunStep(int rows, float* logits_host);

  std::vector<float> initial_state_;
  std::vector<DeviceBuffer> scratch_;
  std::vector<DeviceBuffer> state_blocks_;
  float* x_ = nullptr;
  float* logit_x_ = nullptr;    // [kLogitBlock, n_embd]
  float* logit_buf_ = nullptr;  // [kLogitBlock, vocab]
  // Host-side step description, capacity reserved once.
  std::vector<TokenId> step_tokens_;
  std::vector<int> step_row_begin_;
  std::vector<float*> step_states_;
  std::vector<int> step_logit_rows_;    // step row whose logits are wanted
  std::vector<size_t> step_logit_dst_;  // its row in the caller's output
  // Per-call bookkeeping kept between calls so that steady-state calls do not allocate.
  mutable std::vector<const void*> validate_scratch_;
  std::vector<size_t> done_scratch_, out_base_scratch_;
};

}  // namespace retain::engine
