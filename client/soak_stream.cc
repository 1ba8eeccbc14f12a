// retain load --soak: one Generate stream read as its plan says, and how it is accounted.
#include <chrono>
#include <thread>

#include "client/soak.h"

namespace retain::client {
namespace {

// FAILED_PRECONDITION is never allowed: every session here has consumed a token, and however its
// last request ended (a cut inside its prompt included, which this soak found refusing an empty
// prompt before the engine kept a cut chunk's logits) an empty prompt continues it.
bool EndAllowed(const StreamPlan& plan, const StreamOutcome& out) {
  const grpc::StatusCode code = out.status.error_code();
  if (!out.status_read) return true;  // dropped: no status was read
  if (code == grpc::StatusCode::OK) return out.has_finished;
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) return true;  // documented: queue or pool full
  if (code == grpc::StatusCode::CANCELLED) return plan.kind == StreamPlan::kCancel || out.cancelled_at_end;
  if (code == grpc::StatusCode::DEADLINE_EXCEEDED) return plan.kind == StreamPlan::kDeadline;
  return false;
}

}  // namespace

const char* PlanName(StreamPlan::Kind k) {
  switch (k) {
    case StreamPlan::kToEnd: return "to_end";
    case StreamPlan::kStop: return "stop";
    case StreamPlan::kCancel: return "cancel";
    case StreamPlan::kDrop: return "drop";
    case StreamPlan::kDeadline: return "deadline";
    case StreamPlan::kSlow: return "slow";
  }
  return "?";
}

void SoakTally::End(const std::string& name) {
  std::lock_guard<std::mutex> l(mu);
  ++ends[name];
}

void SoakTally::Action(const std::string& name) {
  std::lock_guard<std::mutex> l(mu);
  ++actions[name];
}

void SoakTally::RpcError(const grpc::Status& s) {
  std::lock_guard<std::mutex> l(mu);
  ++rpc_errors[StatusCodeName(s.error_code())];
}

void SoakTally::Fail(const std::string& what) {
  std::lock_guard<std::mutex> l(mu);
  ++failure_count;
  if (failures.size() < kFailuresKept) failures.push_back(what);
}

uint64_t SoakTally::failures_total() {
  std::lock_guard<std::mutex> l(mu);
  return failure_count;
}

v1::GenerateRequest GreedyRequest(const std::string& session_id, const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest req;
  req.set_session_id(session_id);
  for (int32_t id : prompt) req.add_prompt_tokens(id);
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_tokens(max_tokens);
  req.mutable_stopping()->set_ignore_eos(true);
  return req;
}

StreamOutcome RunSoakStream(const SoakContext& c, v1::Retain::Stub& stub, const v1::GenerateRequest& req,
                            const StreamPlan& plan, const std::string& context) {
  StreamOutcome out;
  // The reader and its context die together at the end of this block; kDrop leaves it without
  // Finish, which makes gRPC cancel the call (an abrupt client, nothing read to the end).
  {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ApplyCallOptions(*ctx, *c.g);
    if (plan.kind == StreamPlan::kDeadline)
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(plan.deadline_ms));
    auto reader = stub.Generate(ctx.get(), req);
    v1::GenerateResponse resp;
    std::string request_id;
    bool acted = false;
    int read = 0;
    for (;;) {
      if (plan.kind == StreamPlan::kSlow) {
        // Check the soak's end between naps, so a slow reader does not outlive it by much.
        int nap = plan.read_delay_ms + (read == plan.pause_after ? plan.pause_ms : 0);
        while (nap > 0 && !c.stop->load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(std::min(nap, 50)));
          nap -= 50;
        }
        if (c.stop->load() && !out.cancelled_at_end) {
          out.cancelled_at_end = true;
          ctx->TryCancel();
        }
      }
      if (!reader->Read(&resp)) break;
      if (resp.has_started()) {
        out.started = true;
        request_id = resp.started().request_id();
      } else if (resp.has_token()) {
        out.tokens.push_back(resp.token().id());
        ++read;
      } else if (resp.has_finished()) {
        out.has_finished = true;
        out.finished = resp.finished();
      }
      if (acted || read < plan.after || !resp.has_token()) continue;
      if (plan.kind == StreamPlan::kStop && !request_id.empty()) {
        acted = true;
        grpc::ClientContext sctx;
        ApplyCallOptions(sctx, *c.g);
        v1::StopGenerationRequest sreq;
        sreq.set_request_id(request_id);
        v1::StopGenerationResponse sresp;
        grpc::Status st = stub.StopGeneration(&sctx, sreq, &sresp);
        // NOT_FOUND: the request had finished before the stop arrived (documented).
        if (!st.ok()) c.tally->RpcError(st);
        if (!st.ok() && st.error_code() != grpc::StatusCode::NOT_FOUND)
          c.tally->Fail("StopGeneration " + request_id + ": " + StatusCodeName(st.error_code()) + " " + st.error_message());
      } else if (plan.kind == StreamPlan::kCancel) {
        acted = true;
        ctx->TryCancel();
      } else if (plan.kind == StreamPlan::kDrop) {
        out.status_read = false;
        break;
      }
    }
    if (out.status_read) out.status = reader->Finish();
  }
  c.tally->streams.fetch_add(1, std::memory_order_relaxed);
  c.tally->tokens_read.fetch_add(out.tokens.size(), std::memory_order_relaxed);
  c.tally->End(out.status_read ? StatusCodeName(out.status.error_code()) : "DROPPED");
  if (!EndAllowed(plan, out))
    c.tally->Fail(std::string("a ") + PlanName(plan.kind) + " stream ended " + StatusCodeName(out.status.error_code()) +
                  (out.status.ok() ? " without finished" : ": " + out.status.error_message()) +
                  (context.empty() ? "" : " (" + context + ")"));
  return out;
}

bool WaitIdle(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id, int64_t* position,
              grpc::Status* status) {
  // A cancelled request leaves the engine within a step or two; 30 s covers a loaded machine.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    grpc::ClientContext ctx;
    ApplyCallOptions(ctx, *c.g);
    v1::GetSessionRequest req;
    req.set_session_id(session_id);
    v1::Session s;
    *status = stub.GetSession(&ctx, req, &s);
    if (!status->ok()) return false;
    if (!s.busy()) {
      *position = s.position();
      return true;
    }
    if (std::chrono::steady_clock::now() > until) {
      *status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "session " + session_id + " still busy after 30 s");
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool AccountStream(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id,
                   const v1::GenerateRequest& req, const StreamOutcome& out, SessionHistory& history) {
  const std::vector<int32_t> prompt(req.prompt_tokens().begin(), req.prompt_tokens().end());
  const int64_t before = history.position();
  int64_t after = 0;
  const bool ok_end = out.status_read && out.status.ok() && out.has_finished;
  if (ok_end) {
    after = out.finished.position();
  } else {
    grpc::Status st;
    if (!WaitIdle(c, stub, session_id, &after, &st)) {
      c.tally->Fail("session " + session_id + " after a stream: GetSession " + StatusCodeName(st.error_code()) + " " +
                    st.error_message());
      return false;
    }
  }
  int64_t generated = 0;
  std::string why = history.Apply(prompt, out.tokens, after, &generated);
  if (!why.empty()) {
    c.tally->Fail("session " + session_id + ": " + why);
    return false;
  }
  const int64_t unread = generated - static_cast<int64_t>(out.tokens.size());
  if (ok_end && unread != 0) {
    c.tally->Fail("session " + session_id + ": Finished.position " + std::to_string(after) + " but the client read " +
                  std::to_string(out.tokens.size()) + " tokens from position " + std::to_string(before));
    return false;
  }
  c.tally->tokens_unread.fetch_add(static_cast<uint64_t>(unread), std::memory_order_relaxed);
  c.tally->tokens_generated.fetch_add(static_cast<uint64_t>(generated), std::memory_order_relaxed);
  if (!out.started && generated == 0) {
    c.tally->ended_unsure.fetch_add(1);  // refused before the engine, or cancelled in its queue
  } else if (generated == req.stopping().max_tokens()) {
    c.tally->ended_length.fetch_add(1);  // includes max_tokens 0: a prefill ends LENGTH
  } else if (out.started) {
    c.tally->ended_short.fetch_add(1);
  } else {
    c.tally->ended_unsure.fetch_add(1);
  }
  return true;
}

void CountPrefill(SoakTally& tally, const grpc::Status& st) {
  (st.ok() ? tally.ended_length : tally.ended_unsure).fetch_add(1);
}

bool DeleteSession(const SoakContext& c, v1::Retain::Stub& stub, const std::string& session_id) {
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, *c.g);
  v1::DeleteSessionRequest req;
  req.set_session_id(session_id);
  v1::DeleteSessionResponse resp;
  grpc::Status st = stub.DeleteSession(&ctx, req, &resp);
  if (st.ok()) return true;
  c.tally->RpcError(st);
  c.tally->Fail("DeleteSession " + session_id + ": " + StatusCodeName(st.error_code()) + " " + st.error_message());
  return false;
}

}  // namespace retain::client
