// Token sampling from logits, ChatRWKV-compatible (spec §7.1), plus min-p, a repetition penalty
// and log-probabilities. Order of operations per step (Sampler::Sample):
//   1. repetition penalty (HF/vLLM): every token seen in the prompt (ObservePrompt) or in the
//      generated output has a positive logit divided by `repetition_penalty`, a negative (or
//      zero) one multiplied by it;
//   2. presence/frequency penalties (generated tokens only, counts decayed by penalty_decay)
//      are subtracted from the logits;
//   3. softmax of the penalised logits (untempered);
//   4. top-p (smallest prefix of the sorted probabilities whose mass reaches top_p; ties with
//      its last element survive), then top-k, then min-p (drop every survivor whose probability
//      is < min_p × the top probability), all on the untempered distribution;
//   5. temperature on the survivors (p^(1/T)), renormalise, draw.
// temperature 0 means greedy on the penalised logits (first maximum on ties); steps 1-2 apply.
// Note that temperature here does not change which tokens survive top-p/min-p (spec §7.3).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

struct SamplingParams {
  float temperature = 1.0f;  // [0, 100]
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0 = off
  float min_p = 0.0f;        // [0, 1]; 0 = off
  float presence_penalty = 0.0f;   // [-100, 100]
  float frequency_penalty = 0.0f;  // [-100, 100]
  float penalty_decay = 1.0f;  // (0, 1]: occurrence counts decay by this each step
  float repetition_penalty = 1.0f;  // (0, 10]; 1 = off, > 1 discourages repeats, < 1 favours them
  uint64_t seed = 0;
};

// InvalidArgument naming the field when a parameter is out of range or not finite.
absl::Status ValidateSamplingParams(const SamplingParams& p);

// One per request; not thread-safe. Its memory is allocated by the constructor; a sampled
// (temperature > 0) draw also uses a sorting scratch per thread, sized on a thread's first draw
// from a vocabulary that large and reused after.
class Sampler {
 public:
  // `vocab` = number of logits per call. params must have passed ValidateSamplingParams.
  Sampler(const SamplingParams& params, int vocab);
  // Records prompt tokens for the repetition penalty only (presence/frequency penalties count
  // generated tokens only). May be called more than once (e.g. per prefill chunk); ids outside
  // [0, vocab) are ignored. A no-op when repetition_penalty == 1.
  void ObservePrompt(absl::Span<const TokenId> prompt);
  // Picks the next token from `logits` (copied, not modified) and records it for the penalties.
  TokenId Sample(absl::Span<const float> logits);

 private:
  int SortedPrefix(int v, float min_p_threshold, bool speculate_top_p, bool* speculated, uint64_t* keys,
                   uint64_t* tmp);
  TokenId Record(TokenId chosen);  // the penalties' bookkeeping

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> occurrence_;
  std::vector<uint8_t> seen_;  // prompt or generated; sized only when repetition_penalty != 1
  std::vector<float> work_;
};

// Log-probabilities (OpenAI-style `logprobs`).
inline constexpr int kMaxTopLogprobs = 20;

struct TokenLogprob {
  TokenId id;
  float logprob;
};

// From the RAW logits of a step (before penalties and temperature): log-softmax of `chosen` into
// *chosen_logprob, and the min(top_n, logits.size()) most likely tokens into *top (cleared first;
// its capacity is reused, so a caller that reserves kMaxTopLogprobs does not allocate), sorted by
// logprob descending, ties lower id first. top_n is clamped to [0, kMaxTopLogprobs]. One pass over
// the logits (online log-sum-exp in double, max-subtracted). Logits must be finite or -inf; a
// `chosen` outside [0, logits.size()) gets -inf; all -inf logits give -inf everywhere. Either
// output pointer may be null.
void ComputeLogprobs(absl::Span<const float> logits, TokenId chosen, int top_n, float* chosen_logprob,
                     std::vector<TokenLogprob>* top);

}  // namespace retain::engine
