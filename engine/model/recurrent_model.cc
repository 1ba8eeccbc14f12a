// RecurrentModel.
#include "engine/model/recurrent_model.h"

#include "engine/util/denormals.h"

#include <cmath>
#include <cstring>
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

constexpr int kLogitBlock = 32;
constexpr char kStateMagic[8] = {'R', 'E', 'T', 'S', 'T', 'A', 'T', '1'};

struct StateHeader {
  char magic[8];
  uint32_t arch, n_layer, n_embd, head_size;
  uint64_t payload_bytes;
};

}  // namespace

size_t LogitRows(absl::Span<const SequenceInput> seqs) {
  size_t rows = 0;
  for (const auto& s : seqs) rows += s.all_logits ? s.tokens.size() : 1;
  return rows;
}

absl::Status Model::Decode(absl::Span<const TokenId> tokens, absl::Span<void* const> states,
                           absl::Span<float> logits) {
  if (tokens.size() != states.size()) {
    return absl::InvalidArgumentError(absl::StrCat("decode: ", tokens.size(), " tokens for ",
                                                   states.size(), " states"));
  }
  // Reused across calls (per thread): a decode step must not allocate once warmed up.
  thread_local std::vector<SequenceInput> seqs;
  seqs.resize(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) seqs[i] = {tokens.subspan(i, 1), states[i], false};
  return Forward(seqs, logits);
}

absl::Status RecurrentModel::InitCommon(std::vector<float> initial_state) {
  initial_state_ = std::move(initial_state);
  const int r = options_.max_step_tokens;
  RETAIN_RETURN_IF_ERROR(Scratch(config_.n_embd, {&x_}));
  RETAIN_ASSIGN_OR_RETURN(DeviceBuffer lx, backend_->Allocate(sizeof(float) * kLogitBlock * config_.n_embd));
  RETAIN_ASSIGN_OR_RETURN(DeviceBuffer lb, backend_->Allocate(sizeof(float) * kLogitBlock * config_.vocab_size));
  logit_x_ = lx.f32();
  logit_buf_ = lb.f32();
  scratch_.push_back(std::move(lx));
  scratch_.push_back(std::move(lb));
  step_tokens_.reserve(r);
  step_row_begin_.reserve(r + 1);
  step_states_.reserve(r);
  step_logit_rows_.reserve(r);
  step_logit_dst_.reserve(r);
  return absl::OkStatus();
}

absl::Status RecurrentModel::Scratch(size_t width, std::initializer_list<float**> buffers) {
  for (float** p : buffers) {
    RETAIN_ASSIGN_OR_RETURN(DeviceBuffer buf, backend_->Allocate(sizeof(float) * width * options_.max_step_tokens));
    *p = buf.f32();
    scratch_.push_back(std::move(buf));
  }
  return absl::OkStatus();
}

void RecurrentModel::StatePointers(const Step& step, size_t offset, std::vector<float*>& out) const {
  out.resize(step.seqs.num_seqs);
  for (int s = 0; s < step.seqs.num_seqs; ++s) out[s] = (*step.states)[s] + offset;
}

absl::Status RecurrentModel::InitState(void* state) {
  if (state == nullptr) return absl::InvalidArgumentError("null state");
  backend_->CopyToDevice(state, initial_state_.data(), state_bytes());
  return absl::OkStatus();
}

absl::Status RecurrentModel::Validate(absl::Span<const SequenceInput> seqs,
                                      absl::Span<float> logits) const {
  if (seqs.empty()) return absl::InvalidArgumentError("no sequences");
  // Distinct states: sorted copy in a reused buffer (no allocation once warmed up).
  std::vector<const void*>& seen = validate_scratch_;
  seen.clear();
  for (const auto& s : seqs) seen.push_back(s.state);
  std::sort(seen.begin(), seen.end());
  const bool shared = std::adjacent_find(seen.begin(), seen.end()) != seen.end();
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SequenceInput& s = seqs[i];
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no tokens"));
    if (s.state == nullptr) return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has no state"));
    if (shared && std::count(seen.begin(), seen.end(), s.state) > 1) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " shares its state with another sequence"));
    }
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      if (s.tokens[t] < 0 || s.tokens[t] >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " token ", t, ": id ", s.tokens[t],
                                                       " is outside the vocabulary [0, ", config_.vocab_size, ")"));
      }
    }
  }
  const size_t need = LogitRows(seqs) * config_.vocab_size;
  if (logits.size() < need) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer holds ", logits.size(), " floats, ", need, " needed"));
  }
  return absl::OkStatus();
}

absl::Status RecurrentModel::Forward(absl::Span<const SequenceInput> seqs, absl::Span<float> logits) {
  RETAIN_RETURN_IF_ERROR(Validate(seqs, logits));
  ScopedFlushDenormals ftz;  // the caller's thread computes parts of every op
  const int budget = options_.max_step_tokens;
  std::vector<size_t>& done = done_scratch_;
  std::vector<size_t>& out_base = out_base_scratch_;
  done.assign(seqs.size(), 0);
  out_base.assign(seqs.size(), 0);
  for (size_t s = 1; s < seqs.size(); ++s)
    out_base[s] = out_base[s - 1] + (seqs[s - 1].all_logits ? seqs[s - 1].tokens.size() : 1);

  size_t next = 0;  // first sequence with tokens left
  while (next < seqs.size()) {
    step_tokens_.clear();
    step_row_begin_.assign(1, 0);
    step_states_.clear();
    step_logit_rows_.clear();
    step_logit_dst_.clear();
    for (size_t s = next; s < seqs.size() && static_cast<int>(step_tokens_.size()) < budget; ++s) {
      const SequenceInput& in = seqs[s];
      if (done[s] == in.tokens.size()) continue;
      const size_t take = std::min(in.tokens.size() - done[s], budget - step_tokens_.size());
      const int row0 = static_cast<int>(step_tokens_.size());
      for (size_t t = 0; t < take; ++t) {
        const size_t pos = done[s] + t;
        step_tokens_.push_back(in.tokens[pos]);
        if (in.all_logits || pos + 1 == in.tokens.size()) {
          step_logit_rows_.push_back(row0 + static_cast<int>(t));
          step_logit_dst_.push_back(out_base[s] + (in.all_logits ? pos : 0));
        }
      }
      done[s] += take;
      step_row_begin_.push_back(static_cast<int>(step_tokens_.size()));
      step_states_.push_back(static_cast<float*>(in.state));
    }
    while (next < seqs.size() && done[next] == seqs[next].tokens.size()) ++next;
    RunStep(static_cast<int>(step_tokens_.size()), logits.data());
  }
  return absl::OkStatus();
}

void RecurrentModel::RunStep(int rows, float* logits_host) {
  const int c = config_.n_embd, v = config_.vocab_size;
  Step step;
  step.rows = rows;
  step.seqs = {static_cast<int>(step_states_.size()), step_row_begin_.data()};
  step.states = &step_states_;
  backend_->Embedding(emb_, step_tokens_.data(), rows, x_);
  if (ln0_w_ != nullptr) backend_->LayerNorm(x_, rows, c, ln0_w_, ln0_b_, config_.layer_norm_eps, x_);
  RunLayers(step, x_);
  for (size_t i0 = 0; i0 < step_logit_rows_.size(); i0 += kLogitBlock) {
    const int n = static_cast<int>(std::min<size_t>(kLogitBlock, step_logit_rows_.size() - i0));
    for (int i = 0; i < n; ++i) {
      backend_->Copy(logit_x_ + static_cast<size_t>(i) * c,
                             x_ + static_cast<size_t>(step_logit_rows_[i0 + i]) * c, sizeof(float) * c);
    }
    FinalNorm(logit_x_, n);
    backend_->MatMul({logit_x_, n, head_, logit_buf_});
    for (int i = 0; i < n; ++i) {
      backend_->CopyToHost(logits_host + step_logit_dst_[i0 + i] * v,
                           logit_buf_ + static_cast<size_t>(i) * v, sizeof(float) * v);
    }
  }
}

void RecurrentModel::FinalNorm(float* x, int rows) {
  backend_->LayerNorm(x, rows, config_.n_embd, ln_out_w_, ln_out_b_, config_.layer_norm_eps, x);
}

absl::Status RecurrentModel::ValidateStateBlock(std::string_view) const { return absl::OkStatus(); }

absl::StatusOr<std::string> RecurrentModel::ExportState(const void* state) {
  if (state == nullptr) return absl::InvalidArgumentError("null state");
  StateHeader h;
  std::memcpy(h.magic, kStateMagic, 8);
  h.arch = static_cast<uint32_t>(config_.arch);
  h.n_layer = config_.n_layer;
  h.n_embd = config_.n_embd;
  h.head_size = config_.head_size;
  h.payload_bytes = state_bytes();
  std::string out(sizeof(h) + state_bytes(), '\0');
  std::memcpy(out.data(), &h, sizeof(h));
  backend_->CopyToHost(out.data() + sizeof(h), state, state_bytes());
  return out;
}

absl::Status RecurrentModel::ImportState(std::string_view bytes, void* state) {
  if (state == nullptr) return absl::InvalidArgumentError("null state");
  StateHeader h;
  if (bytes.size() < sizeof(h)) return absl::InvalidArgumentError("state snapshot is truncated");
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (std::memcmp(h.magic, kStateMagic, 8) != 0) return absl::InvalidArgumentError("not a retain state snapshot");
  if (h.arch != static_cast<uint32_t>(config_.arch) || h.n_layer != static_cast<uint32_t>(config_.n_layer) ||
      h.n_embd != static_cast<uint32_t>(config_.n_embd) || h.head_size != static_cast<uint32_t>(config_.head_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state snapshot is for another model shape (layers ", h.n_layer, ", width ", h.n_embd,
        "); this model has ", config_.n_layer, " layers, width ", config_.n_embd));
  }
  if (h.payload_bytes != state_bytes() || bytes.size() != sizeof(h) + state_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("state snapshot holds ", bytes.size() - sizeof(h),
                                                   " bytes, this model's state is ", state_bytes()));
  }
  const float* f = reinterpret_cast<const float*>(bytes.data() + sizeof(h));
  for (size_t i = 0; i < state_bytes() / sizeof(float); ++i) {
    float x;
    std::memcpy(&x, f + i, sizeof(float));
    if (!std::isfinite(x)) return absl::InvalidArgumentError(absl::StrCat("state snapshot has a non-finite value at float ", i));
  }
  RETAIN_RETURN_IF_ERROR(ValidateStateBlock(bytes.substr(sizeof(h))));
  backend_->CopyToDevice(state, bytes.data() + sizeof(h), state_bytes());
  return absl::OkStatus();
}

void RecurrentModel::DiscardState(void* state) { backend_->Discard(state, state_bytes()); }

absl::StatusOr<void*> RecurrentModel::AllocateStates(int count, bool initialize) {
  if (count <= 0) return absl::InvalidArgumentError("count must be positive");
  RETAIN_ASSIGN_OR_RETURN(DeviceBuffer buf, backend_->Allocate(state_bytes() * count));
  void* p = buf.data();
  for (int i = 0; initialize && i < count; ++i) {
    RETAIN_RETURN_IF_ERROR(InitState(static_cast<char*>(p) + state_bytes() * i));
  }
  state_blocks_.push_back(std::move(buf));
  return p;
}

}  // namespace retain::engine
