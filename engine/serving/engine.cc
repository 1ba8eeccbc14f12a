// The serving engine of one model: sessions in a slot pool, a bounded queue, and one step thread
// that runs continuous batching (serving.h states the contract).
//
// Locking: mu_ guards sessions, requests, the queue and the pool. The step thread holds it to
// compose a step and to apply a step's results, never while the model runs and never while a
// sink is called (a sink may call Cancel from another thread at any time). Slots of sessions
// with a request in flight are touched only by the step thread; idle sessions' slots only under
// mu_ (fork, export, import), so the two never meet.
#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <deque>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/serving/checkpoints.h"
#include "engine/serving/prefix_cache.h"
#include "engine/serving/state_pool.h"
#include "engine/serving/step_planner.h"
#include "retain/engine/serving.h"
#include "retain/engine/status_macros.h"
#include "retain/engine/text_stream.h"

namespace retain::engine {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEos: return "eos";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
  }
  return "?";
}

absl::Status ValidateServingOptions(const ServingOptions& o) {
  auto bad = [](const char* f, const std::string& why) { return absl::InvalidArgumentError(absl::StrCat(f, " ", why)); };
  if (o.max_batch < 1 || o.max_batch > 4096) return bad("max_batch", "must be in [1, 4096]");
  if (o.max_step_tokens < o.max_batch || o.max_step_tokens > 1 << 20)
    return bad("max_step_tokens", absl::StrCat("must be in [max_batch (", o.max_batch, "), 1048576]"));
  if (!(o.max_decode_slowdown == 0 || (o.max_decode_slowdown >= 1 && o.max_decode_slowdown <= 1000)))
    return bad("max_decode_slowdown", "must be 0 (no cap) or in [1, 1000]");
  if (o.max_queue < 0 || o.max_queue > 1 << 20) return bad("max_queue", "must be in [0, 1048576]");
  if (o.session_ttl < absl::ZeroDuration()) return bad("session_ttl", "must be >= 0");
  if (o.max_prompt_tokens < 1) return bad("max_prompt_tokens", "must be >= 1");
  if (o.max_tokens_limit < 0) return bad("max_tokens_limit", "must be >= 0");
  if (o.default_max_tokens < 0 || o.default_max_tokens > o.max_tokens_limit)
    return bad("default_max_tokens", "must be in [0, max_tokens_limit]");
  if (o.checkpoint_interval < 0) return bad("checkpoint_interval", "must be >= 0 (0 = only at the end of each request)");
  if (o.max_checkpoints_per_session < 1) return bad("max_checkpoints_per_session", "must be >= 1");
  if (o.max_history_tokens < 1) return bad("max_history_tokens", "must be >= 1");
  if (o.prefix_block < 1) return bad("prefix_block", "must be >= 1");
  return absl::OkStatus();
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Request;

struct Session {
  std::string id;
  int slot = -1;
  int64_t position = 0;             // tokens consumed, the pending one included
  std::optional<TokenId> pending;   // delivered, not yet fed
  // Without a pending token: the logits after the last fed token, so an empty prompt continues
  // exactly as a session that never stopped. Every step that feeds a request's tokens and does
  // not sample (a prompt chunk before the last, a prefill-only request) keeps its row here, and a
  // sampled row that is not delivered (the stream went away, EOS, a stop token) is kept too, so
  // however a request ends its session can continue. Freed when a pending token takes over.
  std::vector<float> last_logits;
  absl::Time created, last_used;
  Request* request = nullptr;       // the one in flight
  bool anonymous = false;           // a throw-away state: never listed, gone with its request
  std::list<Session*>::iterator lru;  // valid while idle and named
  bool in_lru = false;
  SessionHistory history;  // named sessions only: tokens from history.base() on, checkpoints
};

struct Request {
  std::string id;
  Session* session = nullptr;
  std::shared_ptr<GenerateSink> sink;
  // Tokens to feed, in order; the first `counted` of them are already in the session's position
  // (a pending token). After each sampled token: {token}, counted 1.
  std::vector<TokenId> input;
  size_t fed = 0;
  size_t counted = 0;
  std::optional<TokenId> hold_back;  // prefill only: the prompt's last token becomes pending
  bool hold_back_counted = false;    // ... and it was the session's pending token already
  bool prefill_only = false;
  bool from_stored = false;  // samples first from the session's last_logits, with nothing to feed
  int prompt_tokens = 0;
  int prompt_fed = 0;
  int cached_tokens = 0;
  // The state position at which the prompt is all fed (the held-back token excluded); prefill
  // chunks are cut at prefix-cache blocks and checkpoint intervals before it.
  int64_t prompt_end = 0;
  // Set when the request started from a fresh state with the prefix cache on: its whole prompt,
  // whose prefixes are cached as the state passes block boundaries and the prompt's end.
  std::vector<TokenId> fresh_prompt;
  std::string cache_namespace;
  int max_tokens = 0;
  int generated = 0;
  int64_t position_before = 0;
  Sampler sampler;
  std::optional<TextStream> text;
  std::vector<TokenId> stop_ids;
  bool ignore_eos = false;
  int logprobs = 0;
  absl::Time deadline;
  bool cancel = false;
  bool admitted = false;
  bool claimed = false;  // holds its session's SessionParking::Claim, released by Commit or Unclaim
  Clock::time_point submitted, started, first_token, last_token;

  Request(const SamplingParams& p, int vocab) : sampler(p, vocab) {}
  int64_t remaining() const { return static_cast<int64_t>(input.size() - fed); }
};

// What a step's post-processing decided for one request, applied under the lock.
struct Outcome {
  Request* request = nullptr;
  int fed = 0;
  const float* logits = nullptr;  // the row to sample from; null: nothing to sample this step
  bool sampled = false;
  bool delivered = false;
  TokenId token = 0;
  float logprob = 0;  // of `token`, with top_logprobs, when the request asked for logprobs
  std::vector<TokenLogprob> top_logprobs;
  bool finish = false;
  FinishedEvent event;
};

// A session id is all that names a session to the server's clients, so it must be unguessable:
// 128 bits from the kernel's CSPRNG (a seeded PRNG's outputs would give the next ids away).
std::string RandomHex128() {
  uint64_t v[2] = {0, 0};
  size_t got = 0;
  while (got < sizeof v) {
    const ssize_t n = getrandom(reinterpret_cast<char*>(v) + got, sizeof v - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    else if (errno != EINTR) std::abort();  // no kernel randomness: no safe id to hand out
  }
  return absl::StrFormat("%016x%016x", v[0], v[1]);
}

class EngineImpl final : public Engine {
 public:
  EngineImpl(std::unique_ptr<Model> model, std::unique_ptr<Tokenizer> tokenizer, const ServingOptions& options,
             EngineObserver* observer, SessionParking* parking, std::unique_ptr<StatePool> pool)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(options), observer_(observer),
        parking_(parking), pool_(std::move(pool)), vocab_(model_->config().vocab_size),
        checkpoints_(options_.checkpoint_budget_bytes, options_.max_checkpoints_per_session,
                     static_cast<size_t>(options_.max_history_tokens)),
        cache_(options_.prefix_cache_bytes) {
    logits_.resize(static_cast<size_t>(options_.max_batch) * vocab_);
    seqs_.reserve(options_.max_batch);
    plan_.reserve(options_.max_batch);
    remaining_.reserve(options_.max_batch);
    outcomes_.reserve(options_.max_batch);
    leaving_.reserve(options_.max_batch);
    running_.reserve(options_.max_batch);
    thread_ = std::thread([this] { Loop(); });
  }

  ~EngineImpl() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [id, r] : requests_) r->cancel = true;
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  Model& model() override { return *model_; }
  const Tokenizer* tokenizer() const override { return tokenizer_.get(); }
  const ServingOptions& options() const override { return options_; }

  absl::StatusOr<std::string> Submit(GenerateInput in, std::shared_ptr<GenerateSink> sink) override;
  void Cancel(const std::string& request_id) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = requests_.find(request_id);
      if (it == requests_.end()) return;
      it->second->cancel = true;
    }
    cv_.notify_all();
  }

  absl::StatusOr<SessionInfo> CreateSession() override {
    std::unique_lock<std::mutex> l(mu_);
    RETAIN_ASSIGN_OR_RETURN(Session * s, NewSessionLocked(false));
    RETAIN_RETURN_IF_ERROR(model_->InitState(pool_->slot(s->slot)));
    cv_.notify_all();  // the TTL sweep's next due time may have changed
    return CommitNewLocked(s, l);
  }
  absl::StatusOr<SessionInfo> GetSession(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    FreshLocked(id);
    absl::StatusOr<Session*> s = FindLocked(id);
    if (s.ok()) return InfoLocked(**s);
    if (parking_ != nullptr && s.status().code() == absl::StatusCode::kNotFound) {
      if (std::optional<SessionParking::Parked> p = parking_->Find(id)) return ParkedInfo(id, *p);
    }
    return s.status();
  }
  std::vector<SessionInfo> ListSessions() override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<SessionInfo> out;
    for (auto& [id, s] : sessions_)
      if (!s->anonymous) out.push_back(InfoLocked(*s));
    if (parking_ != nullptr)
      for (const auto& [id, p] : parking_->List())
        if (sessions_.count(id) == 0) out.push_back(ParkedInfo(id, p));
    std::sort(out.begin(), out.end(), [](const SessionInfo& a, const SessionInfo& b) { return a.created < b.created; });
    return out;
  }
  absl::Status DeleteSession(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    absl::StatusOr<Session*> found = FindLocked(id);
    if (parking_ == nullptr) {
      RETAIN_ASSIGN_OR_RETURN(Session * s, std::move(found));
      if (s->request != nullptr) return Busy(id);
      DropSessionLocked(s);
      return absl::OkStatus();
    }
    // Under the lease, so no replica is continuing it while it goes from every tier.
    RETAIN_RETURN_IF_ERROR(parking_->Claim(id, found.ok()));
    absl::Status st = absl::OkStatus();
    if (found.ok()) {
      if ((*found)->request != nullptr) {
        st = Busy(id);
      } else {
        DropSessionLocked(*found);
        parking_->Forget(id);
      }
    } else if (found.status().code() == absl::StatusCode::kNotFound && parking_->Find(id)) {
      parking_->Forget(id);
    } else {
      st = found.status();
    }
    parking_->Unclaim(id);
    return st;
  }
  // A restore from a network tier reads a whole state: it is read here, before the lock that
  // every running request's step also needs (the restore under it then only checks it).
  void PrefetchIfAbsent(const std::string& id) {
    if (parking_ == nullptr) return;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (sessions_.count(id) > 0) return;
    }
    parking_->Prefetch(id);
  }

  absl::StatusOr<SessionInfo> ForkSession(const std::string& id) override {
    PrefetchIfAbsent(id);
    std::unique_lock<std::mutex> l(mu_);
    FreshLocked(id);
    RETAIN_ASSIGN_OR_RETURN(Session * src, ResidentLocked(id));
    if (src->request != nullptr) return Busy(id);
    // Out of the LRU while a slot is found, so the source is never the session evicted for it.
    TouchLocked(src, /*remove=*/true);
    absl::StatusOr<Session*> dst = NewSessionLocked(false);
    TouchLocked(src, false);
    if (!dst.ok()) return dst.status();
    RETAIN_ASSIGN_OR_RETURN(std::string bytes, model_->ExportState(pool_->slot(src->slot)));
    absl::Status s = model_->ImportState(bytes, pool_->slot((*dst)->slot));
    if (!s.ok()) {
      DropSessionLocked(*dst);
      return s;
    }
    (*dst)->position = src->position;
    (*dst)->pending = src->pending;
    (*dst)->last_logits = src->last_logits;
    checkpoints_.CopyInto(src->history, &(*dst)->history);
    cv_.notify_all();
    return CommitNewLocked(*dst, l);
  }
  absl::StatusOr<std::string> RewindSession(const std::string& id, int64_t position, absl::Time deadline,
                                            std::shared_ptr<GenerateSink> sink) override;
  absl::StatusOr<SessionSnapshot> ExportSession(const std::string& id) override {
    PrefetchIfAbsent(id);
    std::lock_guard<std::mutex> l(mu_);
    FreshLocked(id);
    RETAIN_ASSIGN_OR_RETURN(Session * s, ResidentLocked(id));
    if (s->request != nullptr) return Busy(id);
    SessionSnapshot snap;
    RETAIN_ASSIGN_OR_RETURN(snap.state, model_->ExportState(pool_->slot(s->slot)));
    snap.position = s->position;
    snap.pending = s->pending;
    snap.last_logits = s->last_logits;
    TouchLocked(s, false);
    return snap;
  }
  absl::StatusOr<SessionInfo> ImportSession(const SessionSnapshot& snap) override {
    RETAIN_RETURN_IF_ERROR(CheckSnapshot(snap));
    std::unique_lock<std::mutex> l(mu_);
    // Checked in the scratch slot first: a bad snapshot never costs another session its slot.
    RETAIN_RETURN_IF_ERROR(model_->ImportState(snap.state, pool_->slot(pool_->scratch())));
    RETAIN_ASSIGN_OR_RETURN(Session * s, NewSessionLocked(false));
    pool_->SwapScratch(&s->slot);
    AdoptSnapshotLocked(s, snap);
    cv_.notify_all();
    return CommitNewLocked(s, l);
  }

  EngineStats Stats() override {
    std::lock_guard<std::mutex> l(mu_);
    EngineStats st;
    st.running = static_cast<int>(running_.size());
    st.waiting = static_cast<int>(waiting_.size());
    st.sessions_resident = named_sessions_;
    st.sessions = named_sessions_ + (parking_ != nullptr ? static_cast<int>(parking_->List().size()) : 0);
    st.slots_total = pool_->slots();
    st.slots_used = pool_->used();
    st.state_bytes = pool_->slot_bytes();
    st.checkpoint_bytes = checkpoints_.bytes();
    st.checkpoints = static_cast<int64_t>(checkpoints_.count());
    st.checkpoints_dropped = checkpoints_.dropped();
    st.prefix_hits = prefix_hits_;
    st.prefix_misses = prefix_misses_;
    st.prefix_hit_tokens = prefix_hit_tokens_;
    st.prefix_evictions = cache_.evictions();
    st.prefix_cache_bytes = cache_.bytes();
    st.prefix_cache_entries = static_cast<int64_t>(cache_.entries());
    return st;
  }

  void BeginDrain() override {
    std::lock_guard<std::mutex> l(mu_);
    draining_ = true;
  }
  bool WaitIdle(absl::Duration timeout) override {
    std::unique_lock<std::mutex> l(mu_);
    return idle_cv_.wait_for(l, absl::ToChronoNanoseconds(timeout), [&] { return requests_.empty(); });
  }
  void CancelAll() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& [id, r] : requests_) r->cancel = true;
    }
    cv_.notify_all();
  }

 private:
  absl::Status Busy(const std::string& id) const {
    return absl::FailedPreconditionError(absl::StrCat("session ", id, " has a request in flight; one request at a time per session"));
  }

  // What Model::ImportState does not check of a snapshot: the fields the engine keeps beside it.
  absl::Status CheckSnapshot(const SessionSnapshot& snap) const {
    if (snap.position < 0) return absl::InvalidArgumentError("position must be >= 0");
    if (snap.pending && (*snap.pending < 0 || *snap.pending >= vocab_))
      return absl::InvalidArgumentError(absl::StrCat("pending token ", *snap.pending, " is out of range [0, ", vocab_, ")"));
    if (snap.pending && snap.position < 1)
      return absl::InvalidArgumentError("a snapshot with a pending token must have position >= 1");
    if (!snap.last_logits.empty() && (snap.pending || snap.last_logits.size() != static_cast<size_t>(vocab_)))
      return absl::InvalidArgumentError(absl::StrCat("last_logits must be empty or ", vocab_, " floats, and only without a pending token"));
    for (float x : snap.last_logits)
      if (std::isnan(x) || x == INFINITY) return absl::InvalidArgumentError("last_logits has a NaN or +inf value");
    return absl::OkStatus();
  }

  // A session whose slot now holds `snap.state` takes the rest of the snapshot.
  void AdoptSnapshotLocked(Session* s, const SessionSnapshot& snap) {
    s->position = snap.position;
    s->pending = snap.pending;
    s->last_logits = snap.last_logits;
    // The tokens before the snapshot are unknown, but its state is an exact start: rewinding to
    // the snapshot's position needs no others.
    s->history.ResetAt(snap.pending ? snap.position - 1 : snap.position);
    if (snap.pending) s->history.Append(*snap.pending);
    checkpoints_.Add(&s->history, s->history.base(), snap.state);
  }

  // With a shared tier: drops this replica's copy of `id` when another replica has written a
  // newer state, so the next ResidentLocked restores that one. A busy session is never stale (its
  // request holds the lease).
  void FreshLocked(const std::string& id) {
    if (parking_ == nullptr || !parking_->WritesThrough() || !parking_->Stale(id)) return;
    auto it = sessions_.find(id);
    if (it != sessions_.end() && !it->second->anonymous && it->second->request == nullptr) DropSessionLocked(it->second.get());
    parking_->ForgetLocal(id);
  }

  SessionSnapshot SnapshotOfLocked(const Session& s) {
    SessionSnapshot snap;
    absl::StatusOr<std::string> bytes = model_->ExportState(pool_->slot(s.slot));
    if (bytes.ok()) snap.state = *std::move(bytes);
    snap.position = s.position;
    snap.pending = s.pending;
    snap.last_logits = s.last_logits;
    return snap;
  }

  // A session just created, forked or imported: written through to a shared tier before the
  // call returns (unless the tier writes asynchronously), so any replica can continue it at once.
  SessionInfo CommitNewLocked(Session* s, std::unique_lock<std::mutex>& l) {
    SessionInfo info = InfoLocked(*s);
    if (parking_ == nullptr || !parking_->WritesThrough()) return info;
    SessionSnapshot snap = SnapshotOfLocked(*s);
    l.unlock();
    auto written = std::make_shared<std::promise<void>>();
    std::future<void> done = written->get_future();
    parking_->Commit(info.id, std::move(snap), false, [written] { written->set_value(); });
    done.wait();
    return info;
  }

  // A request on a named session is about to be queued: the lease, then this replica's copy made
  // current. On error nothing is held.
  absl::Status ClaimLocked(const std::string& id) {
    if (parking_ == nullptr) return absl::OkStatus();
    auto it = sessions_.find(id);
    RETAIN_RETURN_IF_ERROR(parking_->Claim(id, it != sessions_.end() && !it->second->anonymous));
    FreshLocked(id);
    return absl::OkStatus();
  }

  SessionInfo ParkedInfo(const std::string& id, const SessionParking::Parked& p) const {
    SessionInfo i;
    i.id = id;
    i.position = p.position;
    i.created = p.created;
    i.last_used = p.last_used;
    i.state_bytes = pool_->slot_bytes();
    i.history_start = p.position;
    i.tier = p.tier;
    return i;
  }

  // The session in a slot: resident already, or restored from the parking tier (which may park
  // another idle session for the slot). A parked record that fails its check is refused.
  absl::StatusOr<Session*> ResidentLocked(const std::string& id) {
    absl::StatusOr<Session*> found = FindLocked(id);
    if (found.ok() || parking_ == nullptr || found.status().code() != absl::StatusCode::kNotFound) return found;
    const Clock::time_point t0 = Clock::now();
    // Taken out of the tier before a slot is found: parking another session for the slot may
    // make the tier drop its oldest record, which could be this one.
    absl::Time created;
    std::string tier;
    absl::StatusOr<SessionSnapshot> snap = parking_->Unpark(id, &created, &tier);
    if (snap.status().code() == absl::StatusCode::kNotFound) return found;
    absl::Status st = snap.ok() ? CheckSnapshot(*snap) : snap.status();
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("session ", id, " could not be restored from the ", tier,
                                                  " tier, so it is not served: ", st.message()));
    }
    absl::StatusOr<Session*> s = NewSessionLocked(false, &id);
    if (s.ok()) {
      st = model_->ImportState(snap->state, pool_->slot((*s)->slot));
      if (st.ok()) {
        AdoptSnapshotLocked(*s, *snap);
        (*s)->created = created;
        if (observer_) observer_->OnRestore(tier, Seconds(t0, Clock::now()));
        return *s;
      }
      DropSessionLocked(*s);
      return absl::Status(st.code(), absl::StrCat("session ", id, " could not be restored from the ", tier,
                                                  " tier, so it is not served: ", st.message()));
    }
    // No slot (every one runs a request): back to the tier, so the session is not lost.
    (void)parking_->Park(id, *snap, created, absl::Now());
    return s.status();
  }

  absl::StatusOr<Session*> FindLocked(const std::string& id) {
    auto it = sessions_.find(id);
    if (it != sessions_.end() && !it->second->anonymous) return it->second.get();
    auto ev = evicted_.find(id);
    if (ev != evicted_.end())
      return absl::NotFoundError(absl::StrCat("session ", id, " was evicted (", ev->second, ")"));
    return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  }

  SessionInfo InfoLocked(const Session& s) const {
    SessionInfo i;
    i.id = s.id;
    i.position = s.position;
    i.created = s.created;
    i.last_used = s.last_used;
    i.state_bytes = pool_->slot_bytes();
    i.busy = s.request != nullptr;
    i.checkpoints = s.history.checkpoint_positions();
    i.history_start = s.history.base();
    return i;
  }

  // Moves an idle named session to the most recently used end (or takes it out of the list).
  void TouchLocked(Session* s, bool remove) {
    if (s->in_lru) {
      lru_.erase(s->lru);
      s->in_lru = false;
    }
    if (remove || s->anonymous || s->request != nullptr) return;
    s->last_used = absl::Now();
    s->lru = lru_.insert(lru_.end(), s);
    s->in_lru = true;
  }

  void DropSessionLocked(Session* s) {
    TouchLocked(s, true);
    checkpoints_.Forget(&s->history);
    pool_->Release(s->slot);
    if (!s->anonymous) --named_sessions_;
    sessions_.erase(s->id);
  }

  void EvictLocked(Session* s, const char* reason) {
    // Least recently used, to make room: parked, when there is a tier to park it in.
    if (parking_ != nullptr && absl::string_view(reason) == "lru") {
      SessionSnapshot snap;
      absl::StatusOr<std::string> bytes = model_->ExportState(pool_->slot(s->slot));
      if (bytes.ok()) {
        snap.state = *std::move(bytes);
        snap.position = s->position;
        snap.pending = s->pending;
        snap.last_logits = s->last_logits;
        if (parking_->Park(s->id, snap, s->created, s->last_used).ok()) {
          DropSessionLocked(s);
          if (observer_) observer_->OnSpill();
          return;
        }
      }
    }
    if (evicted_order_.size() >= kEvictedMemory) {
      evicted_.erase(evicted_order_.front());
      evicted_order_.pop_front();
    }
    evicted_[s->id] = reason;
    evicted_order_.push_back(s->id);
    DropSessionLocked(s);
    if (observer_) observer_->OnEviction(reason);
  }

  // A new session holding a slot (contents not initialised), evicting the least recently used
  // idle session when the pool is full.
  absl::StatusOr<Session*> NewSessionLocked(bool anonymous, const std::string* id = nullptr) {
    std::optional<int> slot = pool_->Acquire();
    if (!slot && !lru_.empty()) {
      EvictLocked(lru_.front(), "lru");
      slot = pool_->Acquire();
    }
    if (!slot) {
      return absl::ResourceExhaustedError(absl::StrCat("state pool full: all ", pool_->slots(),
                                                       " slots hold sessions with requests in flight"));
    }
    auto s = std::make_unique<Session>();
    if (id != nullptr) {
      s->id = *id;  // a parked session coming back
    } else {
      do {
        s->id = RandomHex128();
      } while (sessions_.count(s->id) > 0);
    }
    s->slot = *slot;
    s->anonymous = anonymous;
    s->created = s->last_used = absl::Now();
    Session* p = s.get();
    sessions_.emplace(p->id, std::move(s));
    if (!anonymous) {
      ++named_sessions_;
      TouchLocked(p, false);
    }
    return p;
  }

  absl::Status ValidateInput(const GenerateInput& in) const;
  std::unique_ptr<Request> MakeRequest(GenerateInput& in, std::shared_ptr<GenerateSink> sink);
  absl::Status AdmissibleLocked() const;
  // Queues `r` on `s` (idle, checked) to feed `prompt` after the session's pending token.
  std::string EnqueueLocked(std::unique_ptr<Request> r, Session* s, absl::Span<const TokenId> prompt);
  // A fresh session's prompt: serves its longest cached prefix into the session's slot and
  // returns how many tokens that covers; the request will cache what it computes.
  int64_t UsePrefixCacheLocked(Request* r, Session* s, absl::Span<const TokenId> prompt);
  // The state position at which `r`'s next prompt chunk must stop, so that a state to keep exists.
  int64_t NextCutLocked(const Request& r) const;
  // After a step fed `r` up to a cut: the prefix-cache entry or checkpoint due there.
  void SnapshotLocked(Request* r);
  // At the end of a request on a named session: the turn's checkpoint.
  void CheckpointTurnLocked(Session* s);
  void Loop();
  void SweepTtlLocked();
  // Ends `r` under the lock: session bookkeeping, and the event the sink gets after unlocking.
  FinishedEvent FinishLocked(Request* r, FinishReason reason, Clock::time_point now);
  absl::StatusOr<SessionHistory::Start> RewindStartLocked(const std::string& id, int64_t position);
  // Calls `deliver` (the sink's end) now, or, for a request whose session a shared tier writes
  // through, once its state is written (commits_). Step thread, no lock held.
  void EndRequest(const std::string& request_id, std::function<void()> deliver);
  // Sampling a step's rows is split in two: Draw touches only its own request (its sampler and
  // the row), so the rows are drawn in parallel on the model's threads; Deliver then hands the
  // tokens to the text streams and sinks one by one on the step thread.
  void Draw(Request* r, Outcome* o) const;
  void Deliver(Request* r, Outcome* o);

  static constexpr size_t kEvictedMemory = 65536;  // evicted ids remembered for NOT_FOUND messages

  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  const ServingOptions options_;
  EngineObserver* observer_;
  SessionParking* const parking_;  // null: no tier below the pool
  std::unique_ptr<StatePool> pool_;
  const int vocab_;
  CheckpointStore checkpoints_;  // under mu_
  // Requests ended whose session's state waits to be handed to SessionParking::Commit, by
  // request id: filled by FinishLocked and emptied by EndRequest, both on the step thread only.
  std::unordered_map<std::string, std::pair<std::string, SessionSnapshot>> commits_;
  PrefixCache cache_;            // under mu_
  uint64_t prefix_hits_ = 0, prefix_misses_ = 0, prefix_hit_tokens_ = 0;

  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  int named_sessions_ = 0;
  std::list<Session*> lru_;  // idle named sessions, least recently used first
  std::unordered_map<std::string, const char*> evicted_;
  std::deque<std::string> evicted_order_;
  std::unordered_map<std::string, std::unique_ptr<Request>> requests_;
  std::deque<Request*> waiting_;
  std::vector<Request*> running_;  // arrival order
  uint64_t next_request_ = 1;
  bool draining_ = false;
  bool stop_ = false;
  int64_t model_steps_ = 0;  // steps that ran (or were to run) the model, for test_fail_step
  std::thread thread_;

  // Step-thread scratch, capacity reserved once.
  std::vector<float> logits_;
  std::vector<SequenceInput> seqs_;
  std::vector<PlanItem> plan_;
  PrefillBudget prefill_budget_{options_.max_decode_slowdown};
  std::vector<int64_t> remaining_;
  std::vector<Outcome> outcomes_;
  std::vector<Request*> leaving_;
  std::vector<Request*> stored_;  // admitted this step with from_stored
};

absl::Status EngineImpl::ValidateInput(const GenerateInput& in) const {
  if (static_cast<int64_t>(in.prompt.size()) > options_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", in.prompt.size(), " tokens, over the server's limit of ",
                                                   options_.max_prompt_tokens, " (--max-prompt-tokens)"));
  }
  for (size_t i = 0; i < in.prompt.size(); ++i) {
    if (in.prompt[i] < 0 || in.prompt[i] >= vocab_)
      return absl::InvalidArgumentError(absl::StrCat("prompt_tokens[", i, "] = ", in.prompt[i], " is out of range [0, ", vocab_, ")"));
  }
  if (in.max_tokens && (*in.max_tokens < 0 || *in.max_tokens > options_.max_tokens_limit)) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens = ", *in.max_tokens, " must be in [0, ",
                                                   options_.max_tokens_limit, "] (--max-tokens-limit)"));
  }
  RETAIN_RETURN_IF_ERROR(ValidateSamplingParams(in.sampling));
  if (in.logprobs < 0 || in.logprobs > kMaxTopLogprobs)
    return absl::InvalidArgumentError(absl::StrCat("logprobs = ", in.logprobs, " must be in [0, ", kMaxTopLogprobs, "]"));
  if (!in.stop.empty() && tokenizer_ == nullptr)
    return absl::InvalidArgumentError("stop: this model has no tokenizer, so stop strings cannot match; use stop_token_ids");
  for (size_t i = 0; i < in.stop.size(); ++i)
    if (in.stop[i].empty()) return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] is empty"));
  for (size_t i = 0; i < in.stop_token_ids.size(); ++i) {
    if (in.stop_token_ids[i] < 0 || in.stop_token_ids[i] >= vocab_)
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids[", i, "] = ", in.stop_token_ids[i],
                                                     " is out of range [0, ", vocab_, ")"));
  }
  return absl::OkStatus();
}

std::unique_ptr<Request> EngineImpl::MakeRequest(GenerateInput& in, std::shared_ptr<GenerateSink> sink) {
  const int max_tokens = in.max_tokens.value_or(options_.default_max_tokens);
  auto r = std::make_unique<Request>(in.sampling, vocab_);
  r->sampler.ObservePrompt(in.prompt);
  if (tokenizer_ != nullptr) r->text.emplace(tokenizer_.get(), std::move(in.stop));
  r->stop_ids = std::move(in.stop_token_ids);
  r->ignore_eos = in.ignore_eos;
  r->logprobs = in.logprobs;
  r->deadline = in.deadline;
  r->max_tokens = max_tokens;
  r->prefill_only = max_tokens == 0;
  r->prompt_tokens = static_cast<int>(in.prompt.size());
  r->cache_namespace = std::move(in.cache_namespace);
  r->sink = std::move(sink);
  r->submitted = Clock::now();
  return r;
}

absl::Status EngineImpl::AdmissibleLocked() const {
  if (draining_ || stop_) return absl::UnavailableError("server is draining; not accepting new requests");
  if (static_cast<int>(waiting_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(absl::StrCat("request queue full (", options_.max_queue, " waiting, --max-queue)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> EngineImpl::Submit(GenerateInput in, std::shared_ptr<GenerateSink> sink) {
  RETAIN_RETURN_IF_ERROR(ValidateInput(in));
  if (in.prompt.empty() && in.session_id.empty())
    return absl::InvalidArgumentError("prompt is empty: a prompt is required unless continuing a session");
  std::unique_ptr<Request> r = MakeRequest(in, std::move(sink));
  if (!in.session_id.empty()) PrefetchIfAbsent(in.session_id);

  std::unique_lock<std::mutex> l(mu_);
  RETAIN_RETURN_IF_ERROR(AdmissibleLocked());
  Session* s = nullptr;
  if (in.session_id.empty()) {
    RETAIN_ASSIGN_OR_RETURN(s, NewSessionLocked(true));
    RETAIN_RETURN_IF_ERROR(model_->InitState(pool_->slot(s->slot)));
  } else {
    RETAIN_RETURN_IF_ERROR(ClaimLocked(in.session_id));
    absl::Status ready = absl::OkStatus();
    absl::StatusOr<Session*> found = ResidentLocked(in.session_id);
    if (!found.ok()) {
      ready = found.status();
    } else if ((*found)->request != nullptr) {
      ready = Busy(in.session_id);
    } else if (in.prompt.empty() && !(*found)->pending && (*found)->last_logits.empty()) {
      // Every request end leaves a session that consumed a token continuable; what is left is a
      // session that consumed none, or one imported or rewound without them (a snapshot that
      // carried neither).
      ready = absl::FailedPreconditionError(absl::StrCat(
          "prompt is empty and session ", in.session_id, " (position ", (*found)->position,
          ") has no pending token or last logits to continue from: send a prompt"));
    }
    if (!ready.ok()) {
      if (parking_ != nullptr) parking_->Unclaim(in.session_id);
      return ready;
    }
    s = *found;
    r->claimed = parking_ != nullptr;
  }
  absl::Span<const TokenId> prompt(in.prompt);
  if (s->position == 0 && cache_.enabled()) prompt.remove_prefix(static_cast<size_t>(UsePrefixCacheLocked(r.get(), s, prompt)));
  std::string id = EnqueueLocked(std::move(r), s, prompt);
  l.unlock();
  cv_.notify_all();
  return id;
}

int64_t EngineImpl::UsePrefixCacheLocked(Request* r, Session* s, absl::Span<const TokenId> prompt) {
  r->fresh_prompt.assign(prompt.begin(), prompt.end());
  // The prompt's last token is always fed (or held back as pending): its logits are needed.
  const PrefixCache::Hit hit = cache_.Lookup(r->cache_namespace, prompt, static_cast<int64_t>(prompt.size()) - 1);
  if (hit.tokens == 0 || !model_->ImportState(*hit.state, pool_->slot(s->slot)).ok()) {
    if (hit.tokens != 0) (void)model_->InitState(pool_->slot(s->slot));  // never half a cached state
    ++prefix_misses_;
    return 0;
  }
  ++prefix_hits_;
  prefix_hit_tokens_ += static_cast<uint64_t>(hit.tokens);
  s->position = hit.tokens;
  if (!s->anonymous) {
    s->history.Reserve(static_cast<size_t>(hit.tokens));
    for (int64_t i = 0; i < hit.tokens; ++i) s->history.Append(prompt[static_cast<size_t>(i)]);
  }
  r->cached_tokens = static_cast<int>(hit.tokens);
  r->prompt_fed = r->cached_tokens;
  return hit.tokens;
}

std::string EngineImpl::EnqueueLocked(std::unique_ptr<Request> r, Session* s, absl::Span<const TokenId> prompt) {
  r->id = absl::StrCat("req-", next_request_++);
  r->session = s;
  r->position_before = s->position - r->cached_tokens;
  if (s->pending) {
    r->input.push_back(*s->pending);
    r->counted = 1;
    s->pending.reset();
  }
  r->input.insert(r->input.end(), prompt.begin(), prompt.end());
  // Stored logits stay until a step feeds this request (which replaces them) or a pending token
  // supersedes them: a request cut before it feeds anything leaves them as they were.
  if (r->input.empty()) r->from_stored = !r->prefill_only;
  if (r->prefill_only && !r->input.empty()) {
    r->hold_back = r->input.back();
    r->input.pop_back();
    if (r->counted > r->input.size()) {  // the held token is the pending one
      r->counted = r->input.size();
      r->hold_back_counted = true;
    }
  }
  r->prompt_end = s->position - static_cast<int64_t>(r->counted) + static_cast<int64_t>(r->input.size());
  // Capacity for everything this request can append, so its steps never grow the history.
  if (!s->anonymous) s->history.Reserve(r->input.size() + static_cast<size_t>(r->max_tokens) + 1);
  s->request = r.get();
  TouchLocked(s, true);
  Request* raw = r.get();
  std::string id = raw->id;
  requests_.emplace(id, std::move(r));
  waiting_.push_back(raw);
  return id;
}

absl::StatusOr<std::string> EngineImpl::RewindSession(const std::string& id, int64_t position, absl::Time deadline,
                                                      std::shared_ptr<GenerateSink> sink) {
  GenerateInput in;
  in.max_tokens = 0;
  in.sampling.temperature = 0;
  in.deadline = deadline;
  std::unique_ptr<Request> r = MakeRequest(in, std::move(sink));
  PrefetchIfAbsent(id);
  std::unique_lock<std::mutex> l(mu_);
  RETAIN_RETURN_IF_ERROR(AdmissibleLocked());
  RETAIN_RETURN_IF_ERROR(ClaimLocked(id));
  absl::StatusOr<SessionHistory::Start> started = RewindStartLocked(id, position);
  if (!started.ok()) {
    if (parking_ != nullptr) parking_->Unclaim(id);
    return started.status();
  }
  SessionHistory::Start start = *std::move(started);
  Session* s = sessions_.at(id).get();
  r->claimed = parking_ != nullptr;
  const std::vector<TokenId>& known = s->history.tokens();
  std::vector<TokenId> refeed(known.begin() + (start.position - s->history.base()),
                              known.begin() + (position - s->history.base()));
  // Restored in the scratch slot first, so a failure leaves the session as it was.
  void* scratch = pool_->slot(pool_->scratch());
  RETAIN_RETURN_IF_ERROR(start.state != nullptr ? model_->ImportState(*start.state, scratch) : model_->InitState(scratch));
  pool_->SwapScratch(&s->slot);
  checkpoints_.TruncateAfter(&s->history, start.position);
  // Back to where it already is, from a checkpoint of exactly this state (nothing before it is
  // known, so nothing is re-fed to make a pending token): its logits still continue it. Not done:
  // the same exact-checkpoint start below the current position leaves neither a pending token nor
  // logits (checkpoints keep no logits), so only a non-empty prompt continues such a session.
  const bool same_state = refeed.empty() && position == s->position && !s->pending;
  s->position = start.position;
  s->pending.reset();
  if (!same_state) s->last_logits.clear();
  r->prompt_tokens = static_cast<int>(refeed.size());
  std::string rid = EnqueueLocked(std::move(r), s, refeed);
  l.unlock();
  cv_.notify_all();
  return rid;
}

absl::StatusOr<SessionHistory::Start> EngineImpl::RewindStartLocked(const std::string& id, int64_t position) {
  RETAIN_ASSIGN_OR_RETURN(Session * s, ResidentLocked(id));
  if (s->request != nullptr) return Busy(id);
  if (position < 0 || position > s->position)
    return absl::InvalidArgumentError(absl::StrCat("position ", position, " is outside [0, ", s->position,
                                                   "] (the session's current position)"));
  return s->history.StartFor(position);
}

int64_t EngineImpl::NextCutLocked(const Request& r) const {
  const Session& s = *r.session;
  const int64_t pos = s.position - static_cast<int64_t>(r.counted > r.fed ? r.counted - r.fed : 0);
  int64_t cut = r.prompt_end;
  if (!r.fresh_prompt.empty()) cut = std::min(cut, (pos / options_.prefix_block + 1) * options_.prefix_block);
  if (!s.anonymous && options_.checkpoint_interval > 0 && checkpoints_.enabled())
    cut = std::min(cut, (pos / options_.checkpoint_interval + 1) * options_.checkpoint_interval);
  return std::max<int64_t>(1, cut - pos);
}

void EngineImpl::SnapshotLocked(Request* r) {
  Session* s = r->session;
  const int64_t pos = s->position;  // every counted token is fed once a step has fed any
  if (pos > r->prompt_end || r->generated > 0) return;
  void* state = pool_->slot(s->slot);
  if (!r->fresh_prompt.empty() && (pos % options_.prefix_block == 0 || pos == r->prompt_end) &&
      pos <= static_cast<int64_t>(r->fresh_prompt.size())) {
    absl::Span<const TokenId> prefix = absl::MakeConstSpan(r->fresh_prompt).first(static_cast<size_t>(pos));
    if (!cache_.Contains(r->cache_namespace, prefix)) {
      absl::StatusOr<std::string> bytes = model_->ExportState(state);
      if (bytes.ok()) cache_.Insert(r->cache_namespace, prefix, *std::move(bytes));
    }
  }
  if (!s->anonymous && options_.checkpoint_interval > 0 && pos % options_.checkpoint_interval == 0 &&
      checkpoints_.enabled() && !s->history.HasCheckpointAt(pos)) {
    absl::StatusOr<std::string> bytes = model_->ExportState(state);
    if (bytes.ok()) checkpoints_.Add(&s->history, pos, *std::move(bytes));
  }
}

FinishedEvent EngineImpl::FinishLocked(Request* r, FinishReason reason, Clock::time_point now) {
  Session* s = r->session;
  // A pending token not fed yet stays with the session; the held-back prompt token of a
  // completed prefill becomes pending. Anything else unfed was never counted.
  if (r->fed < r->counted) {
    s->pending = r->input[r->fed];
  } else if (r->hold_back && r->fed == r->input.size()) {
    s->pending = *r->hold_back;
    if (!r->hold_back_counted) {
      s->position += 1;
      r->prompt_fed += 1;
      if (!s->anonymous) s->history.Append(*r->hold_back);
    }
  }
  // Otherwise last_logits are those after the last token fed (kept by the step loop or Deliver).
  if (s->pending) std::vector<float>().swap(s->last_logits);  // superseded: its memory goes too
  s->request = nullptr;
  if (!s->anonymous) CheckpointTurnLocked(s);
  if (r->claimed) {
    if (parking_->WritesThrough()) {
      commits_[r->id] = {s->id, SnapshotOfLocked(*s)};
    } else {
      parking_->Unclaim(s->id);
    }
  }
  FinishedEvent e;
  e.request_id = r->id;
  e.reason = reason;
  e.prompt_tokens = r->prompt_fed;
  e.generated_tokens = r->generated;
  e.cached_tokens = r->cached_tokens;
  e.queue_seconds = r->admitted ? Seconds(r->submitted, r->started) : Seconds(r->submitted, now);
  e.time_to_first_token_seconds = r->generated > 0 ? Seconds(r->submitted, r->first_token) : 0.0;
  e.total_seconds = Seconds(r->submitted, now);
  e.position = s->position;
  if (s->anonymous) {
    DropSessionLocked(s);
  } else {
    TouchLocked(s, false);
  }
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), r), waiting_.end());
  running_.erase(std::remove(running_.begin(), running_.end(), r), running_.end());
  return e;
}

void EngineImpl::CheckpointTurnLocked(Session* s) {
  // The state has consumed every token but the pending one.
  const int64_t fed = s->position - (s->pending ? 1 : 0);
  if (checkpoints_.enabled() && fed > 0 && !s->history.HasCheckpointAt(fed)) {
    absl::StatusOr<std::string> bytes = model_->ExportState(pool_->slot(s->slot));
    if (bytes.ok()) checkpoints_.Add(&s->history, fed, *std::move(bytes));
  }
  checkpoints_.TrimTokens(&s->history);
}

void EngineImpl::SweepTtlLocked() {
  if (options_.session_ttl <= absl::ZeroDuration()) return;
  const absl::Time cutoff = absl::Now() - options_.session_ttl;
  while (!lru_.empty() && lru_.front()->last_used < cutoff) EvictLocked(lru_.front(), "ttl");
}

void EngineImpl::Draw(Request* r, Outcome* o) const {
  absl::Span<const float> row(o->logits, vocab_);
  o->token = r->sampler.Sample(row);
  o->sampled = true;
  if (r->logprobs > 0) {
    o->top_logprobs.reserve(r->logprobs);
    ComputeLogprobs(row, o->token, r->logprobs, &o->logprob, &o->top_logprobs);
  }
}

void EngineImpl::Deliver(Request* r, Outcome* o) {
  absl::Span<const float> row(o->logits, vocab_);
  const TokenId tok = o->token;
  FinishedEvent& e = o->event;
  // A token not delivered is not consumed: the session keeps the row it came from, so an empty
  // prompt samples again from exactly where the state is. A request sampling from stored logits
  // has moved them out; the step loop puts them back.
  auto keep_row = [&] {
    if (!r->from_stored) r->session->last_logits.assign(row.begin(), row.end());
  };
  if (!r->ignore_eos && options_.eos_token_id >= 0 && tok == options_.eos_token_id) {
    o->finish = true;
    e.reason = FinishReason::kEos;
    if (r->text) e.text_tail = r->text->Flush();
    keep_row();
    return;
  }
  if (std::find(r->stop_ids.begin(), r->stop_ids.end(), tok) != r->stop_ids.end()) {
    o->finish = true;
    e.reason = FinishReason::kStop;
    e.stop_token_id = tok;
    if (r->text) e.text_tail = r->text->Flush();
    keep_row();
    return;
  }
  TokenEvent t;
  t.id = tok;
  bool stopped = false;
  if (r->text) {
    absl::StatusOr<TextStream::Piece> piece = r->text->Push(tok);
    if (piece.ok()) {
      t.text = std::move(piece->text);
      if (piece->stopped) {
        stopped = true;
        e.stop = piece->matched;
      }
    }
  }
  t.logprob = o->logprob;
  t.top_logprobs = std::move(o->top_logprobs);
  o->delivered = r->sink->OnToken(std::move(t));
  if (!o->delivered) {
    o->finish = true;
    e.reason = FinishReason::kCancelled;
    keep_row();
    return;
  }
  if (stopped) {
    o->finish = true;
    e.reason = FinishReason::kStop;
  } else if (r->generated + 1 >= r->max_tokens) {
    o->finish = true;
    e.reason = FinishReason::kLength;
    if (r->text) e.text_tail = r->text->Flush();
  }
}

void EngineImpl::EndRequest(const std::string& request_id, std::function<void()> deliver) {
  auto it = commits_.find(request_id);
  if (it == commits_.end()) {
    deliver();
    return;
  }
  std::pair<std::string, SessionSnapshot> c = std::move(it->second);
  commits_.erase(it);
  parking_->Commit(c.first, std::move(c.second), true, std::move(deliver));
}

void EngineImpl::Loop() {
  std::vector<std::pair<std::shared_ptr<GenerateSink>, FinishedEvent>> finished;
  std::vector<std::pair<std::shared_ptr<GenerateSink>, StartedEvent>> started;
  finished.reserve(options_.max_batch);
  started.reserve(options_.max_batch);
  auto emit = [&] {
    for (auto& [sink, e] : started) sink->OnStarted(e);
    for (auto& [sink, e] : finished) {
      // The observer by value: a tier that writes asynchronously may deliver after the engine is
      // gone (the observer, the server's metrics, outlives it).
      const std::string id = e.request_id;  // copied: the lambda below takes `e`
      EndRequest(id, [observer = observer_, sink = sink, e = std::move(e)] {
        if (observer) observer->OnRequestFinished(e);
        sink->OnFinished(e);
      });
    }
    started.clear();
    finished.clear();
  };

  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    // Sleep until there is work (an idle engine wakes only for the TTL sweep).
    while (!stop_ && waiting_.empty() && running_.empty()) {
      if (options_.session_ttl > absl::ZeroDuration() && !lru_.empty()) {
        const absl::Time due = lru_.front()->last_used + options_.session_ttl;
        cv_.wait_for(l, absl::ToChronoNanoseconds(std::max(due - absl::Now(), absl::Milliseconds(1))));
        SweepTtlLocked();
      } else {
        cv_.wait(l);
      }
    }
    if (stop_ && requests_.empty()) break;
    SweepTtlLocked();

    // Leavers: cancelled, past their deadline, or stopping.
    const Clock::time_point now = Clock::now();
    const absl::Time wall = absl::Now();
    std::vector<Request*>& leaving = leaving_;
    leaving.clear();
    for (Request* r : running_)
      if (r->cancel || stop_ || wall >= r->deadline) leaving.push_back(r);
    for (Request* r : waiting_)
      if (r->cancel || stop_ || wall >= r->deadline) leaving.push_back(r);
    for (Request* r : leaving) {
      const FinishReason why = (!r->cancel && !stop_) ? FinishReason::kDeadline : FinishReason::kCancelled;
      finished.emplace_back(r->sink, FinishLocked(r, why, now));
      requests_.erase(r->id);
    }

    // Admission: arrival order, up to max_batch running.
    while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_batch) {
      Request* r = waiting_.front();
      waiting_.pop_front();
      r->admitted = true;
      r->started = now;
      StartedEvent se{r->id, r->session->anonymous ? "" : r->session->id, r->prompt_tokens, r->position_before};
      started.emplace_back(r->sink, std::move(se));
      if (r->from_stored) {
        stored_.push_back(r);
      } else if (r->remaining() == 0) {  // a prefill of nothing (or of only the held-back token)
        finished.emplace_back(r->sink, FinishLocked(r, FinishReason::kLength, now));
        requests_.erase(r->id);
        continue;
      }
      running_.push_back(r);
    }
    if (requests_.empty()) idle_cv_.notify_all();

    remaining_.clear();
    for (Request* r : running_) remaining_.push_back(r->remaining());
    const int decodes = CountDecodes(remaining_);
    PlanStep(remaining_, options_.max_step_tokens, prefill_budget_.Next(decodes, options_.max_step_tokens), &plan_);
    seqs_.clear();
    int decode_rows = 0, prefill_tokens = 0;
    for (PlanItem& p : plan_) {
      Request* r = running_[p.index];
      if (p.tokens > 1) p.tokens = static_cast<int>(std::min<int64_t>(p.tokens, NextCutLocked(*r)));
      seqs_.push_back(SequenceInput{absl::MakeConstSpan(r->input.data() + r->fed, p.tokens), pool_->slot(r->session->slot), false});
      (p.tokens == 1 && r->generated > 0 ? decode_rows : prefill_tokens) += p.tokens;
    }
    if (seqs_.empty() && stored_.empty()) {
      l.unlock();
      emit();
      l.lock();
      continue;
    }
    l.unlock();
    emit();

    // The step itself, with no lock held.
    absl::Status status;
    if (!seqs_.empty()) {
      const Clock::time_point t0 = Clock::now();
      if (++model_steps_ == options_.test_fail_step) {
        status = absl::InternalError(absl::StrCat("injected failure of step ", model_steps_, " (--test-fail-step)"));
      } else {
        status = model_->Forward(seqs_, absl::MakeSpan(logits_.data(), seqs_.size() * vocab_));
      }
      const Clock::time_point t1 = Clock::now();
      int64_t fed = 0;
      for (const PlanItem& p : plan_) fed += p.tokens;
      if (status.ok()) prefill_budget_.Observe(decodes, fed - decodes, Seconds(t0, t1));
      if (observer_) observer_->OnStep(static_cast<int>(seqs_.size()), decode_rows, prefill_tokens, Seconds(t0, t1));
    }

    // Sampling and delivery, still unlocked: only this thread touches running requests' fields
    // below, and the sinks may take their own locks.
    outcomes_.clear();
    for (size_t i = 0; i < plan_.size(); ++i) {
      Request* r = running_[plan_[i].index];
      Outcome o;
      o.request = r;
      o.fed = plan_[i].tokens;
      if (status.ok()) {
        const float* row = logits_.data() + i * vocab_;
        if (r->fed + o.fed == r->input.size() && !r->prefill_only) {
          o.logits = row;
        } else {
          // A chunk that samples nothing: its last token's row (Forward computes it anyway) is
          // what the session continues from if the request is cut before its next chunk.
          r->session->last_logits.assign(row, row + vocab_);
        }
      }
      outcomes_.push_back(std::move(o));
    }
    model_->ParallelFor(static_cast<int64_t>(outcomes_.size()), [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        if (outcomes_[k].logits != nullptr) Draw(outcomes_[k].request, &outcomes_[k]);
    });
    for (Outcome& o : outcomes_)
      if (o.logits != nullptr) Deliver(o.request, &o);
    // Requests that continue a cut stream sample first from the logits their session kept.
    for (Request* r : stored_) {
      Outcome o;
      o.request = r;
      std::vector<float> row = std::move(r->session->last_logits);
      r->session->last_logits.clear();
      o.logits = row.data();
      Draw(r, &o);
      Deliver(r, &o);
      if (!o.delivered && o.sampled && r->session->last_logits.empty()) r->session->last_logits = std::move(row);
      outcomes_.push_back(std::move(o));
    }
    stored_.clear();

    l.lock();
    const Clock::time_point done = Clock::now();
    for (Outcome& o : outcomes_) {
      Request* r = o.request;
      Session* s = r->session;
      if (!status.ok() && !r->from_stored) {
        // Forward validates before touching any state: nothing was consumed.
        std::shared_ptr<GenerateSink> sink = r->sink;
        const std::string rid = r->id;
        FinishLocked(r, FinishReason::kCancelled, done);
        requests_.erase(r->id);
        l.unlock();
        EndRequest(rid, [sink, status] {
          sink->OnError(absl::InternalError(absl::StrCat("model step failed: ", status.message())));
        });
        l.lock();
        continue;
      }
      // Tokens fed this step that the position did not count yet (everything but a pending one).
      const size_t already = r->fed < r->counted ? std::min<size_t>(r->counted - r->fed, o.fed) : 0;
      s->position += static_cast<int64_t>(o.fed - already);
      r->prompt_fed += static_cast<int>(o.fed - already);  // sampled tokens are always counted
      if (!s->anonymous)
        for (size_t k = r->fed + already; k < r->fed + o.fed; ++k) s->history.Append(r->input[k]);
      r->fed += o.fed;
      if (o.fed > 0) SnapshotLocked(r);
      if (r->prefill_only && r->fed == r->input.size()) {
        finished.emplace_back(r->sink, FinishLocked(r, FinishReason::kLength, done));
        requests_.erase(r->id);
        continue;
      }
      r->from_stored = false;
      if (o.sampled && o.delivered) {
        s->position += 1;
        if (!s->anonymous) s->history.Append(o.token);
        r->generated += 1;
        if (r->generated == 1) {
          r->first_token = done;
        } else if (observer_) {
          observer_->OnInterTokenLatency(Seconds(r->last_token, done));
        }
        r->last_token = done;
        r->input.assign(1, o.token);
        r->fed = 0;
        r->counted = 1;
      }
      if (o.finish) {
        FinishedEvent e = FinishLocked(r, o.event.reason, done);
        e.stop = std::move(o.event.stop);
        e.stop_token_id = o.event.stop_token_id;
        e.text_tail = std::move(o.event.text_tail);
        finished.emplace_back(r->sink, std::move(e));
        requests_.erase(r->id);
      }
    }
    if (requests_.empty()) idle_cv_.notify_all();
    l.unlock();
    emit();
    l.lock();
  }
  l.unlock();
  emit();
  idle_cv_.notify_all();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(std::unique_ptr<Model> model, std::unique_ptr<Tokenizer> tokenizer,
                                                       const ServingOptions& options, EngineObserver* observer,
                                                       SessionParking* parking) {
  if (model == nullptr) return absl::InvalidArgumentError("no model");
  RETAIN_RETURN_IF_ERROR(ValidateServingOptions(options));
  if (options.eos_token_id >= model->config().vocab_size)
    return absl::InvalidArgumentError(absl::StrCat("eos_token_id ", options.eos_token_id, " is not below the vocabulary size"));
  RETAIN_ASSIGN_OR_RETURN(std::unique_ptr<StatePool> pool, StatePool::Create(*model, options.state_budget_bytes));
  return std::unique_ptr<Engine>(new EngineImpl(std::move(model), std::move(tokenizer), options, observer, parking, std::move(pool)));
}

}  // namespace retain::engine
