#include "server/request_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "retain/v1/retain.pb.h"
#include "retain/engine/sampler.h"

namespace retain::server {
namespace {

using engine::TokenId;

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", why));
}

// prompt_text / prompt_tokens (or prefix_text / prefix_tokens) → ids, checked against the model.
absl::StatusOr<std::vector<TokenId>> PromptIds(const std::string& text, const google::protobuf::RepeatedField<int32_t>& tokens,
                                               absl::string_view text_field, absl::string_view tokens_field,
                                               const ValidationContext& ctx) {
  if (!text.empty() && !tokens.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(text_field, " and ", tokens_field, " are both set; give at most one"));
  std::vector<TokenId> ids;
  const int limit = ctx.options->max_prompt_tokens;
  if (!text.empty()) {
    if (ctx.tokenizer == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat(text_field, " needs a tokenizer and this model has none; send ", tokens_field));
    // The limit is on tokens, not bytes: encode, then compare (the text is bounded by the
    // server's receive limit).
    ids = ctx.tokenizer->Encode(text);
    if (static_cast<int64_t>(ids.size()) > limit)
      return Invalid(text_field, absl::StrCat("encodes to ", ids.size(), " tokens, over the server's limit of ", limit,
                                              " (--max-prompt-tokens)"));
    return ids;
  }
  if (tokens.size() > limit)
    return Invalid(tokens_field, absl::StrCat("has ", tokens.size(), " tokens, over the server's limit of ", limit,
                                              " (--max-prompt-tokens)"));
  absl::Status st = CheckTokenIds(absl::MakeConstSpan(tokens.data(), tokens.size()), tokens_field, ctx.vocab_size);
  if (!st.ok()) return st;
  ids.assign(tokens.begin(), tokens.end());
  return ids;
}

absl::StatusOr<engine::SamplingParams> Sampling(const v1::SamplingParams& p) {
  engine::SamplingParams s;
  if (p.has_temperature()) s.temperature = p.temperature();
  if (p.has_top_p()) s.top_p = p.top_p();
  if (p.has_top_k()) s.top_k = p.top_k();
  if (p.has_min_p()) s.min_p = p.min_p();
  if (p.has_presence_penalty()) s.presence_penalty = p.presence_penalty();
  if (p.has_frequency_penalty()) s.frequency_penalty = p.frequency_penalty();
  if (p.has_repetition_penalty()) s.repetition_penalty = p.repetition_penalty();
  if (p.has_penalty_decay()) s.penalty_decay = p.penalty_decay();
  if (p.has_seed()) s.seed = p.seed();
  absl::Status st = engine::ValidateSamplingParams(s);  // "top_p must be in (0, 1]"
  if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat("sampling.", st.message()));
  return s;
}

}  // namespace

absl::Status CheckTokenIds(absl::Span<const int32_t> ids, absl::string_view field, int vocab_size) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size)
      return Invalid(absl::StrCat(field, "[", i, "]"),
                     absl::StrCat("= ", ids[i], " is outside the vocabulary [0, ", vocab_size, ")"));
  return absl::OkStatus();
}

absl::Status CheckSessionId(absl::string_view id, absl::string_view field) {
  if (id.empty()) return Invalid(field, "is empty");
  if (id.size() > kMaxSessionIdBytes) return Invalid(field, absl::StrCat("is longer than ", kMaxSessionIdBytes, " bytes"));
  for (char c : id)
    if (c <= 0x20 || c >= 0x7f) return Invalid(field, "has characters other than printable ASCII");
  return absl::OkStatus();
}

absl::StatusOr<engine::GenerateInput> ValidateGenerateRequest(const v1::GenerateRequest& r,
                                                              const ValidationContext& ctx) {
  engine::GenerateInput in;
  if (!r.session_id().empty()) {
    absl::Status st = CheckSessionId(r.session_id(), "session_id");
    if (!st.ok()) return st;
    in.session_id = r.session_id();
  }
  auto prompt = PromptIds(r.prompt_text(), r.prompt_tokens(), "prompt_text", "prompt_tokens", ctx);
  if (!prompt.ok()) return prompt.status();
  in.prompt = *std::move(prompt);
  if (in.prompt.empty() && in.session_id.empty())
    return absl::InvalidArgumentError(
        "prompt_text and prompt_tokens are both empty; an empty prompt only continues a session (set session_id)");

  auto sampling = Sampling(r.sampling());
  if (!sampling.ok()) return sampling.status();
  in.sampling = *sampling;

  const v1::StoppingCriteria& s = r.stopping();
  if (s.has_max_tokens()) {
    if (s.max_tokens() < 0 || s.max_tokens() > ctx.options->max_tokens_limit)
      return Invalid("stopping.max_tokens", absl::StrCat("= ", s.max_tokens(), " must be in [0, ",
                                                         ctx.options->max_tokens_limit, "] (--max-tokens-limit)"));
    in.max_tokens = s.max_tokens();
  }
  // The engine refuses stop strings it cannot match; named here as the proto spells it.
  if (s.stop_size() > 0 && ctx.tokenizer == nullptr)
    return absl::FailedPreconditionError(
        "stopping.stop needs a tokenizer and this model has none; send stopping.stop_token_ids");
  if (s.stop_size() > kMaxStopStrings)
    return Invalid("stopping.stop", absl::StrCat("has ", s.stop_size(), " strings, at most ", kMaxStopStrings));
  for (int i = 0; i < s.stop_size(); ++i) {
    const std::string& stop = s.stop(i);
    const std::string field = absl::StrCat("stopping.stop[", i, "]");
    if (stop.empty()) return Invalid(field, "is empty");
    if (stop.size() > kMaxStopStringBytes)
      return Invalid(field, absl::StrCat("is ", stop.size(), " bytes, at most ", kMaxStopStringBytes));
    in.stop.push_back(stop);
  }
  if (s.stop_token_ids_size() > kMaxStopTokenIds)
    return Invalid("stopping.stop_token_ids",
                   absl::StrCat("has ", s.stop_token_ids_size(), " ids, at most ", kMaxStopTokenIds));
  absl::Status st = CheckTokenIds(absl::MakeConstSpan(s.stop_token_ids().data(), s.stop_token_ids_size()),
                                  "stopping.stop_token_ids", ctx.vocab_size);
  if (!st.ok()) return st;
  in.stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  in.ignore_eos = s.ignore_eos();

  if (r.logprobs() < 0 || r.logprobs() > engine::kMaxTopLogprobs)
    return Invalid("logprobs", absl::StrCat("= ", r.logprobs(), " must be in [0, ", engine::kMaxTopLogprobs, "]"));
  in.logprobs = r.logprobs();
  return in;
}

absl::StatusOr<std::vector<engine::TokenId>> ValidateSessionPrefix(const v1::CreateSessionRequest& r,
                                                                   const ValidationContext& ctx) {
  return PromptIds(r.prefix_text(), r.prefix_tokens(), "prefix_text", "prefix_tokens", ctx);
}

}  // namespace retain::server
