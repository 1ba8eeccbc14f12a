// The one model interface every architecture implements.
//
// A session's recurrent state is one contiguous block of state_bytes() in backend memory (host
// memory on the CPU backend), owned by the caller. Forward runs any mix of prefills and decodes in
// one call: each sequence brings its own tokens and its own state, which is updated in place.
// Internally tokens are processed in steps of at most ModelOptions::max_step_tokens rows, every
// step doing matrix-matrix products over all its rows, so a batch reads each weight once per step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "retain/engine/model_config.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

// How RetNet and TransNormerLLM compute the several tokens of one sequence in one step. A single
// token always runs the recurrent form; all three give the same results up to rounding.
enum class ComputeForm {
  kChunkwise,  // intra-chunk masked products, inter-chunk through the carried state (linear time)
  kParallel,   // every token against every earlier one of the step (quadratic; the reference)
  kRecurrent,  // token by token, as decode does
};

struct ModelOptions {
  std::string backend = "cpu";
  int num_threads = 0;           // 0 = the CPUs this process may use (affinity, cgroup quota)
  int max_step_tokens = 256;     // rows per internal step (prefill chunk size); >= 1
  ComputeForm form = ComputeForm::kChunkwise;  // RetNet / TransNormerLLM only
  int chunk_size = 64;           // rows per chunk of the chunkwise form, in [1, 1024]
};

struct SequenceInput {
  absl::Span<const TokenId> tokens;  // at least one
  void* state = nullptr;             // state_bytes() of backend memory, updated in place
  bool all_logits = false;           // logits for every token, else only for the last
};

class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  virtual size_t state_bytes() const = 0;
  // Writes the state of a session that has seen nothing.
  virtual absl::Status InitState(void* state) = 0;

  // Logits go to `logits` as f32 rows of vocab_size, sequence by sequence: one row per token when
  // all_logits, else one row. Every input is validated (token ids < vocab, non-empty, distinct
  // state pointers, output size) before any state is touched: on error nothing has changed.
  virtual absl::Status Forward(absl::Span<const SequenceInput> seqs, absl::Span<float> logits) = 0;

  // Decode: one token for each of several sessions (at any positions). logits [B, vocab].
  absl::Status Decode(absl::Span<const TokenId> tokens, absl::Span<void* const> states,
                      absl::Span<float> logits);

  // Snapshot of a state as portable bytes (header naming architecture and shape, then the block),
  // and back. Import rejects a snapshot of another model shape with InvalidArgument.
  virtual absl::StatusOr<std::string> ExportState(const void* state) = 0;
  virtual absl::Status ImportState(std::string_view bytes, void* state) = 0;

  // Allocates `count` state blocks in backend memory (contiguous, state_bytes() apart), freed with
  // the model, each initialised as by InitState unless `initialize` is false: the serving core's
  // slot pool initialises a slot when a session takes it, so untouched slots cost no resident
  // memory.
  virtual absl::StatusOr<void*> AllocateStates(int count, bool initialize = true) = 0;
  // A state block of AllocateStates no longer holds a session: its memory may go back to the
  // system until it is written again (after which InitState or ImportState must run before use).
  virtual void DiscardState(void* /*state*/) {}

  // Runs fn(begin, end) over [0, n) on the threads Forward computes with (each index in exactly
  // one part), for host work beside the steps such as sampling each row's logits. Only from the
  // thread that calls Forward, never inside fn. Default: the caller alone.
  virtual void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) { fn(0, n); }
};

// Number of logit rows Forward writes for `seqs`.
size_t LogitRows(absl::Span<const SequenceInput> seqs);

// Loads `dir`/model.safetensors (+ config.json when present). Every tensor is checked by name
// and shape; missing, extra and misshapen tensors are named in the error.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir,
                                                 const ModelOptions& options = {});

class SafetensorsFile;
// The same from weights already opened (a file or an image in memory); config.json is read from
// `config_dir` when it is not empty. The weights may be released once this returns.
absl::StatusOr<std::unique_ptr<Model>> LoadModelFromWeights(const SafetensorsFile& weights,
                                                            const std::string& config_dir,
                                                            const ModelOptions& options = {});

// The tokenizer `config` names, or NotFound when it names none.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const ModelConfig& config);

}  // namespace retain::engine
