// The serving core of one model: sessions whose recurrent state stays resident in a fixed slot pool,
// and a step thread that runs continuous batching over every running request. No gRPC, no
// Prometheus: the server (server/) is an adapter over this header, and the same core runs wherever
// the engine builds.
//
// The invariant everything is built around: a session's state equals the tokens its client was
// sent. A sampled token is offered to the request's sink before it is fed to the model; if the sink
// refuses it (the stream is gone) the token is dropped and the state is exactly the tokens
// delivered. A token that was delivered but not yet fed (the last one of a request) stays with the
// session as its pending token and is fed first by its next request. However a request ends (to
// its length, EOS, a stop, cancelled or past its deadline inside its prompt or after it, a failed
// step), a session that consumed a token holds either a pending token or the logits after its
// last fed token, so a request with an empty prompt continues it exactly.
//
// Thread safety: every public method may be called from any thread. Sinks and the observer are
// called on the step thread and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "retain/engine/model.h"
#include "retain/engine/sampler.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

struct ServingOptions {
  int max_batch = 64;             // requests stepped together (decodes + prefills)
  int max_step_tokens = 512;      // tokens per step; >= max_batch so every decode fits
  // While streams decode, a step carrying prompt tokens aims to take at most this many times a
  // decode-only step (the prompt chunk is sized from measured step times; at least 16 tokens).
  // Lower keeps running streams' inter-token latency flatter, higher prefills new prompts
  // faster. 0 = no cap: prompts fill the rest of max_step_tokens.
  double max_decode_slowdown = 1.5;
  int max_queue = 256;            // requests waiting for a place; past it ResourceExhausted
  size_t state_budget_bytes = size_t{256} << 20;  // the slot pool: budget / state_bytes slots
  absl::Duration session_ttl = absl::ZeroDuration();  // idle sessions evicted after; 0 = never
  int max_prompt_tokens = 65536;
  int max_tokens_limit = 8192;    // the largest max_tokens a request may ask for
  int default_max_tokens = 256;   // when a request gives none
  TokenId eos_token_id = 0;       // RWKV World's <|endoftext|>; -1 = the model has none
  // Fault injection for tests (retain-server --test-fail-step N): the Nth engine step that runs
  // the model fails, once, before touching any state, as a failing Forward does. 0 = never.
  int64_t test_fail_step = 0;
  // Checkpoints (rewind, fork at a position): a named session's state is copied at the end of
  // each request and, when checkpoint_interval > 0, every that many tokens of a prompt; all
  // sessions' copies share checkpoint_budget_bytes of host memory (oldest dropped first), at most
  // max_checkpoints_per_session each. A session also keeps the token ids it consumed (at most
  // max_history_tokens), so positions between checkpoints are rebuilt exactly.
  size_t checkpoint_budget_bytes = size_t{256} << 20;  // 0 = no checkpoints
  int checkpoint_interval = 0;
  int max_checkpoints_per_session = 16;
  int64_t max_history_tokens = 1 << 18;
  // The prefix cache: states after every prefix_block tokens and at the end of prompts that start
  // from a fresh state, LRU within prefix_cache_bytes of host memory; 0 = off.
  int prefix_block = 256;
  size_t prefix_cache_bytes = 0;
};

// InvalidArgument naming the option when options are inconsistent.
absl::Status ValidateServingOptions(const ServingOptions& o);

struct GenerateInput {
  std::string session_id;       // empty = a throw-away state
  std::vector<TokenId> prompt;  // may be empty only on a session that consumed a token
  SamplingParams sampling;
  std::optional<int> max_tokens;  // absent = default_max_tokens; 0 = prefill only
  std::vector<std::string> stop;
  std::vector<TokenId> stop_token_ids;
  bool ignore_eos = false;
  int logprobs = 0;  // top-n alternatives, [0, kMaxTopLogprobs]
  absl::Time deadline = absl::InfiniteFuture();
  // Prefix-cache entries are shared only by requests with the same namespace (the server's
  // tenant, or one namespace for all when the operator allows sharing).
  std::string cache_namespace;
};

enum class FinishReason { kLength, kStop, kEos, kCancelled, kDeadline };
const char* FinishReasonName(FinishReason r);

struct StartedEvent {
  std::string request_id;
  std::string session_id;  // empty for a throw-away state
  int prompt_tokens = 0;
  int64_t position_before = 0;
};

struct TokenEvent {
  TokenId id = 0;
  std::string text;     // whole UTF-8 characters; may be empty while bytes are held back
  float logprob = 0.0f;  // when logprobs > 0
  std::vector<TokenLogprob> top_logprobs;  // descending
};

struct FinishedEvent {
  std::string request_id;
  FinishReason reason = FinishReason::kLength;
  std::string stop;           // matched stop string
  TokenId stop_token_id = -1;  // matched stop token id
  int prompt_tokens = 0;      // prompt tokens consumed by this request
  int generated_tokens = 0;   // tokens delivered
  int cached_tokens = 0;      // of prompt_tokens, served from the prefix cache (not fed)
  double queue_seconds = 0, time_to_first_token_seconds = 0, total_seconds = 0;
  int64_t position = 0;       // the session's position after
  std::string text_tail;      // held-back text released at the end
};

class GenerateSink {
 public:
  virtual ~GenerateSink() = default;
  virtual void OnStarted(const StartedEvent& e) = 0;
  // true = delivered (handed to the stream); false = the stream is gone, the token is dropped.
  virtual bool OnToken(TokenEvent&& e) = 0;
  // Exactly one of these ends every request that Submit accepted (a request cancelled or past its
  // deadline while still queued ends without OnStarted).
  virtual void OnFinished(const FinishedEvent& e) = 0;
  virtual void OnError(const absl::Status& status) = 0;
};

struct SessionInfo {
  std::string id;
  int64_t position = 0;  // tokens consumed, the pending token included
  absl::Time created, last_used;
  size_t state_bytes = 0;
  bool busy = false;
  std::vector<int64_t> checkpoints;  // positions whose state is kept, ascending
  int64_t history_start = 0;         // the session knows the tokens it consumed from here on
  // Where the session's state lives now: "device" (a slot of the pool) or the name of the
  // SessionParking tier holding it ("host", "redis"); a parked session is restored to a slot by
  // the next call that needs its state.
  std::string tier = "device";
};

// A session's state as host bytes (Model::ExportState's snapshot) with what the model state does
// not carry: the position and the pending token. The server wraps it with its own header and
// checksum for export.
struct SessionSnapshot {
  std::string state;  // Model::ExportState bytes
  int64_t position = 0;
  std::optional<TokenId> pending;
  // Without a pending token: the logits after the last fed token (vocab_size floats), so an empty
  // prompt can continue it. A session's last request leaves them when it ended without a token
  // left pending: cut inside its prompt (the row of its last fed chunk), a stream gone after a
  // fed token, EOS or a stop token (the row the unsent token was drawn from). Empty when the
  // session has a pending token or consumed nothing.
  std::vector<float> last_logits;
};

struct EngineStats {
  int running = 0, waiting = 0;
  int sessions = 0;  // named sessions (throw-away states not counted), parked ones included
  int sessions_resident = 0;  // of them, in the slot pool
  int slots_total = 0, slots_used = 0;
  size_t state_bytes = 0;  // per slot
  size_t checkpoint_bytes = 0;
  int64_t checkpoints = 0;
  uint64_t checkpoints_dropped = 0;  // for the budget or the per-session count, since start
  uint64_t prefix_hits = 0, prefix_misses = 0, prefix_hit_tokens = 0, prefix_evictions = 0;
  size_t prefix_cache_bytes = 0;
  int64_t prefix_cache_entries = 0;
};

// Where idle sessions go when the slot pool needs their slot, instead of being lost, and where a
// call for a session the pool does not hold looks before answering NotFound. The engine calls it
// with its own lock held, so an implementation must be quick (host memory, or a store it can
// reach in milliseconds) and must never call back into the engine. Thread-safe: several engines
// (one per model) may share one.
class SessionParking {
 public:
  struct Parked {
    int64_t position = 0;
    absl::Time created, last_used;
    std::string tier;  // the tier's name for SessionInfo::tier
  };
  virtual ~SessionParking() = default;
  // Keeps the session's state. An error: it could not be kept (the session is then evicted).
  virtual absl::Status Park(const std::string& id, const SessionSnapshot& snapshot, absl::Time created,
                            absl::Time last_used) = 0;
  // The parked state, checked (format, checksum, model) and no longer parked once the engine has
  // it back; `*created` its creation time, `*tier` where it was. NotFound when nothing is parked
  // under `id`; any other code refuses a record that failed its check (it is never served).
  virtual absl::StatusOr<SessionSnapshot> Unpark(const std::string& id, absl::Time* created, std::string* tier) = 0;
  // What is parked under `id`, without taking it.
  virtual std::optional<Parked> Find(const std::string& id) = 0;
  // Ids parked by this engine's model, for ListSessions.
  virtual std::vector<std::pair<std::string, Parked>> List() = 0;
  // Drops what is parked under `id` (a delete); no error when nothing is.
  virtual void Forget(const std::string& id) = 0;

  // A tier shared by several replicas (Redis) also hears of every request on a named session,
  // so that one replica at a time continues it and every replica sees its latest state. A
  // private tier (host memory) keeps these defaults.
  //
  // Before a request (or a delete) runs on `id`: takes the session's lease. FailedPrecondition
  // when another replica holds it, Unavailable when the shared tier cannot be asked and the
  // session is not `held_here` (in this replica's pool or private tier). Each Claim that
  // succeeds is matched by exactly one Commit(claimed = true) or Unclaim.
  virtual absl::Status Claim(const std::string& /*id*/, bool /*held_here*/) { return absl::OkStatus(); }
  virtual void Unclaim(const std::string& /*id*/) {}
  // True when another replica has written a newer state of `id` than the one this replica
  // holds: the engine then drops its own copy (and ForgetLocal) and restores the shared one.
  virtual bool Stale(const std::string& /*id*/) { return false; }
  virtual void ForgetLocal(const std::string& /*id*/) {}
  // Called without the engine's lock when a request is about to need `id`, which is not in the
  // pool: a tier whose reads are slow (a network store) may fetch the record now, so that the
  // Unpark made under the lock only checks it is still the latest. Only an optimisation.
  virtual void Prefetch(const std::string& /*id*/) {}
  // True when the engine must hand every named session's state at the end of each request (and
  // after a create, fork or import) to Commit.
  virtual bool WritesThrough() const { return false; }
  // Writes the session's state to the shared tier, then (when `claimed`) releases the lease,
  // then calls `then` (which may be empty) -- on a thread of the tier's, never the caller's, so
  // the step thread does not wait for the store. An asynchronous tier calls `then` at once and
  // writes afterwards. A write that fails is retried when the tier is reachable again.
  virtual void Commit(const std::string& /*id*/, SessionSnapshot /*snapshot*/, bool /*claimed*/,
                      std::function<void()> then) {
    if (then) then();
  }
};

// Metrics hooks, called on the step thread (OnEviction also on the caller's thread).
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnRequestFinished(const FinishedEvent&) {}
  virtual void OnStep(int /*batch*/, int /*decode_rows*/, int /*prefill_tokens*/, double /*seconds*/) {}
  virtual void OnInterTokenLatency(double /*seconds*/) {}
  virtual void OnEviction(const char* /*reason: "lru" or "ttl"*/) {}
  // A session parked (SessionParking::Park) for its slot, and one brought back, with the time the
  // restore took (unparking, checking, writing the slot), on the caller's thread.
  virtual void OnSpill() {}
  virtual void OnRestore(const std::string& /*tier*/, double /*seconds*/) {}
};

class Engine {
 public:
  // Takes the model and tokenizer (tokenizer may be null: token ids only). Allocates the slot
  // pool at once; ResourceExhausted when the budget holds no slot or the backend has no memory.
  // With `parking` (which must outlive the engine), a least recently used idle session is parked
  // there when its slot is needed, rather than evicted, and restored by the next call that needs
  // it (Submit, Fork, Export, Rewind); GetSession and ListSessions report it without restoring.
  // A restored session keeps its position, pending token and logits but not its checkpoints or
  // token history: it rewinds, like an import, only back to the position it was parked at.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(std::unique_ptr<Model> model,
                                                        std::unique_ptr<Tokenizer> tokenizer,
                                                        const ServingOptions& options,
                                                        EngineObserver* observer = nullptr,
                                                        SessionParking* parking = nullptr);
  virtual ~Engine() = default;

  virtual Model& model() = 0;
  virtual const Tokenizer* tokenizer() const = 0;
  virtual const ServingOptions& options() const = 0;

  // Validates `input` against the model and the session before anything is queued. On error the
  // sink is never called. Codes: InvalidArgument (field named), NotFound (session; says when it
  // was evicted), FailedPrecondition (session busy), ResourceExhausted (queue or pool full),
  // Unavailable (draining). Returns the request id.
  virtual absl::StatusOr<std::string> Submit(GenerateInput input, std::shared_ptr<GenerateSink> sink) = 0;
  // Leaves the batch at the next step; the sink then gets OnFinished(kCancelled). Unknown ids
  // (already finished) are ignored.
  virtual void Cancel(const std::string& request_id) = 0;

  virtual absl::StatusOr<SessionInfo> CreateSession() = 0;
  virtual absl::StatusOr<SessionInfo> GetSession(const std::string& id) = 0;
  virtual std::vector<SessionInfo> ListSessions() = 0;
  virtual absl::Status DeleteSession(const std::string& id) = 0;
  virtual absl::StatusOr<SessionInfo> ForkSession(const std::string& id) = 0;
  // The session goes back to having consumed exactly its first `position` tokens: its state is
  // restored from the nearest checkpoint before `position` (or the initial state) and the
  // recorded tokens between are fed again by a prefill-only request, whose end `sink` gets
  // (OnFinished kLength = done; the request id is returned). Afterwards the session holds token
  // position-1 as its pending token, exactly as a session prefilled with those tokens does.
  // Codes: InvalidArgument (position outside [0, position]), FailedPrecondition (busy, or the
  // tokens needed are no longer known), plus Submit's.
  virtual absl::StatusOr<std::string> RewindSession(const std::string& id, int64_t position, absl::Time deadline,
                                                    std::shared_ptr<GenerateSink> sink) = 0;
  virtual absl::StatusOr<SessionSnapshot> ExportSession(const std::string& id) = 0;
  // Checks the snapshot against the model (shape, finite values, pending id < vocab) before a
  // slot is taken.
  virtual absl::StatusOr<SessionInfo> ImportSession(const SessionSnapshot& snapshot) = 0;

  virtual EngineStats Stats() = 0;

  // Draining: Submit answers Unavailable from now on; running and queued requests go on.
  virtual void BeginDrain() = 0;
  // True when no request is running or queued, waiting at most `timeout`.
  virtual bool WaitIdle(absl::Duration timeout) = 0;
  // Every running and queued request finishes with kCancelled at the next step.
  virtual void CancelAll() = 0;
};

}  // namespace retain::engine
