// retain load --soak: the pieces the soak's workers share (load_soak.cc drives them).
//   soak_stream.cc   one Generate stream, read as its plan says (to the end, stopped, cancelled,
//                    dropped, under a short deadline, slowly), and the tally of how streams ended
//   soak_verify.cc   a session against a single-stream replay of its history
//   soak_metrics.cc  the server's /metrics, parsed into the sums the soak checks
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "client/channel.h"
#include "client/soak_history.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {

// How a stream is read. The action decides; the stream's end is checked against it (a stream
// never cancelled must not end CANCELLED, one without a deadline never DEADLINE_EXCEEDED).
struct StreamPlan {
  enum Kind { kToEnd, kStop, kCancel, kDrop, kDeadline, kSlow } kind = kToEnd;
  int after = 0;            // kStop, kCancel, kDrop: act after reading this many tokens
  int deadline_ms = 0;      // kDeadline
  int read_delay_ms = 0;    // kSlow: sleep before each read
  int pause_after = -1;     // kSlow: after this many tokens stop reading for pause_ms
  int pause_ms = 0;
};

const char* PlanName(StreamPlan::Kind k);

struct StreamOutcome {
  grpc::Status status;
  bool status_read = true;  // false for kDrop: the call was dropped, no status read
  bool started = false;     // the `started` message arrived
  bool has_finished = false;
  v1::Finished finished;
  std::vector<int32_t> tokens;  // ids read, in order
  bool cancelled_at_end = false;  // the soak's end cancelled it (a slow reader still reading)
};

// Everything counted across workers; the summary and the metrics check read it.
struct SoakTally {
  std::mutex mu;
  std::map<std::string, uint64_t> ends;         // "OK", "CANCELLED", "DEADLINE_EXCEEDED", "DROPPED", ...
  std::map<std::string, uint64_t> actions;      // per action name
  std::map<std::string, uint64_t> rpc_errors;   // unary RPCs, by code (documented RESOURCE_EXHAUSTED only)
  std::vector<std::string> failures;            // every failed check, first kFailuresKept kept
  uint64_t failure_count = 0;
  std::atomic<uint64_t> streams{0}, tokens_read{0}, tokens_unread{0}, tokens_generated{0};
  // The server's requests_finished_total by reason, as the client can derive it: a request that
  // generated max_tokens ended LENGTH whatever the client saw; one that was submitted and
  // generated fewer ended cancelled or deadline. `unsure` = streams that ended before `started`
  // (the server may have refused them before the engine, or not).
  std::atomic<uint64_t> ended_length{0}, ended_short{0}, ended_unsure{0};
  std::atomic<uint64_t> sessions_verified{0}, sessions_mismatched{0}, sessions_with_unread{0};
  std::atomic<uint64_t> histories_corrupted{0};  // --test-corrupt-history

  void End(const std::string& name);
  void Action(const std::string& name);
  void RpcError(const grpc::Status& s);
  void Fail(const std::string& what);
  uint64_t failures_total();
};

inline constexpr size_t kFailuresKept = 50;

struct SoakContext {
  const GlobalOptions* g = nullptr;
  std::string model;
  int vocab_size = 0;
  std::atomic<bool>* stop = nullptr;  // set at the soak's end: slow readers cancel
  SoakTally* tally = nullptr;
};

// Runs one Generate and reads it as `plan` says; tallies how it ended and fails a check for an
// end the plan does not allow (UNKNOWN, INTERNAL, an OK stream without `finished`, ...).
// `context` (what happened to the session before) goes into the failure message.
StreamOutcome RunSoakStream(const SoakContext& c, v1::Retain::Stub& stub, const v1::GenerateRequest& req,
                            const StreamPlan& plan, const std::string& context = "");

// Applies a finished stream to the session's history: from Finished.position when it ended OK,
// else from GetSession once the session is idle again. Counts tokens and the derived finish
// reasons. false (after a failed check) when the history cannot follow the server.
bool AccountStream(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id,
                   const v1::GenerateRequest& req, const StreamOutcome& out, SessionHistory& history);

// GetSession until the session is not busy (a cancelled request ends on the server a moment after
// the client stops); its position. false, with the status, when it cannot be read.
bool WaitIdle(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id, int64_t* position,
              grpc::Status* status);

// A greedy request (temperature 0, EOS ignored) on `session_id`.
v1::GenerateRequest GreedyRequest(const std::string& session_id, const std::vector<int32_t>& prompt, int max_tokens);

// (a) `session_id` against a fresh session fed its history (soak_verify.cc): positions equal,
// then `continuation` greedy tokens of both equal. "" when it holds, else what differs.
std::string VerifySession(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id,
                          const SessionHistory& history, int continuation);

// A CreateSession with a prefix is a prefill-only request on the server, counted in
// requests_finished_total{reason="length"} like a Generate with max_tokens 0: so counted here.
// One that failed may have been refused before the engine or not.
void CountPrefill(SoakTally& tally, const grpc::Status& st);

bool DeleteSession(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id);

// The sums of the server's metrics the soak compares (soak_metrics.cc).
struct MetricsSample {
  std::map<std::string, double> finished_by_reason;  // retain_requests_finished_total, summed over labels but reason
  std::map<std::string, double> errors_by_code;      // retain_request_errors_total
  double generation_tokens = 0;                      // retain_generation_tokens_total
  double requests_running = 0, requests_waiting = 0;
  double held_bytes = 0;  // prefix cache + checkpoints + tiers: bounded caches, not sessions
  int64_t rss_bytes = -1;  // VmRSS of --server-pid; -1 without it
};

// GET http://ADDRESS/metrics (ADDRESS = HOST:PORT) and VmRSS of `server_pid` (0 = none).
bool ScrapeMetrics(const std::string& address, int server_pid, MetricsSample* out, std::string* error);
// "" when /proc/PID/status has VmRSS, else the reason.
std::string ReadRss(int pid, int64_t* bytes);

}  // namespace retain::client
