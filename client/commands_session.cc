// retain session create|get|list|fork|rewind|delete|export|import.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "client/commands.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {
namespace {

constexpr size_t kChunkBytes = size_t{1} << 20;  // SessionChunk.data is at most 1 MiB

struct SessionOptions {
  std::string model, prefix_text, prefix_tokens, id, file;
  bool json = false;
  int64_t position = 0;
  CLI::Option* o_prefix_tokens = nullptr;
  CLI::Option* o_position = nullptr;
};

std::unique_ptr<v1::Retain::Stub> Stub(const GlobalOptions& g) { return v1::Retain::NewStub(MakeChannel(g)); }

// One unary Retain call under the global deadline (--timeout): *resp is filled when the status is OK.
template <typename Request, typename Response>
grpc::Status Call(const GlobalOptions& g,
                  grpc::Status (v1::Retain::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                  const Request& req, Response* resp) {
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  return (Stub(g).get()->*method)(&ctx, req, resp);
}

std::string Iso(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  const time_t t = static_cast<time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json SessionJson(const v1::Session& s) {
  return {{"id", s.id()},
          {"model", s.model()},
          {"position", s.position()},
          {"state_bytes", s.state_bytes()},
          {"created_unix_seconds", s.created_unix_seconds()},
          {"last_used_unix_seconds", s.last_used_unix_seconds()},
          {"busy", s.busy()},
          {"tier", s.tier()},
          {"checkpoint_positions", std::vector<int64_t>(s.checkpoint_positions().begin(), s.checkpoint_positions().end())},
          {"history_start", s.history_start()}};
}

// A new session (create, fork, import): its id alone on stdout, the rest on stderr.
void PrintNewSession(const char* what, const v1::Session& s) {
  std::printf("%s\n", s.id().c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "[retain] %s session %s: model=%s position=%lld state_bytes=%lld\n", what, s.id().c_str(),
               s.model().c_str(), static_cast<long long>(s.position()), static_cast<long long>(s.state_bytes()));
}

int Create(const GlobalOptions& g, const SessionOptions& o) {
  v1::CreateSessionRequest req;
  req.set_model(o.model);
  req.set_prefix_text(o.prefix_text);
  if (o.o_prefix_tokens->count() > 0) {
    std::vector<int> ids;
    std::string error;
    if (!ParseTokenIds({o.prefix_tokens}, &ids, &error)) return Fail(kExitUsage, "--prefix-tokens: " + error);
    for (int id : ids) req.add_prefix_tokens(id);
  }
  v1::Session s;
  grpc::Status st = Call(g, &v1::Retain::Stub::CreateSession, req, &s);
  if (!st.ok()) return ReportRpcError(st);
  PrintNewSession("created", s);
  return kExitOk;
}

int Get(const GlobalOptions& g, const SessionOptions& o) {
  v1::GetSessionRequest req;
  req.set_session_id(o.id);
  v1::Session s;
  grpc::Status st = Call(g, &v1::Retain::Stub::GetSession, req, &s);
  if (!st.ok()) return ReportRpcError(st);
  if (o.json) {
    std::printf("%s\n", SessionJson(s).dump().c_str());
    return kExitOk;
  }
  std::printf("id: %s\nmodel: %s\nposition: %lld\nstate_bytes: %lld\ncreated: %s\nlast_used: %s\nbusy: %s\ntier: %s\n",
              s.id().c_str(), s.model().c_str(), static_cast<long long>(s.position()),
              static_cast<long long>(s.state_bytes()), Iso(s.created_unix_seconds()).c_str(),
              Iso(s.last_used_unix_seconds()).c_str(), s.busy() ? "true" : "false", s.tier().c_str());
  std::printf("history_start: %lld\ncheckpoints:", static_cast<long long>(s.history_start()));
  for (int64_t p : s.checkpoint_positions()) std::printf(" %lld", static_cast<long long>(p));
  std::printf("\n");
  return kExitOk;
}

int List(const GlobalOptions& g, const SessionOptions& o) {
  v1::ListSessionsRequest req;
  req.set_model(o.model);
  v1::ListSessionsResponse resp;
  grpc::Status st = Call(g, &v1::Retain::Stub::ListSessions, req, &resp);
  if (!st.ok()) return ReportRpcError(st);
  if (o.json) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& s : resp.sessions()) all.push_back(SessionJson(s));
    std::printf("%s\n", all.dump().c_str());
    return kExitOk;
  }
  std::printf("%-36s %-20s %10s %12s %-5s %-6s %s\n", "ID", "MODEL", "POSITION", "STATE_BYTES", "BUSY", "TIER",
              "LAST_USED");
  for (const auto& s : resp.sessions())
    std::printf("%-36s %-20s %10lld %12lld %-5s %-6s %s\n", s.id().c_str(), s.model().c_str(),
                static_cast<long long>(s.position()), static_cast<long long>(s.state_bytes()),
                s.busy() ? "yes" : "no", s.tier().c_str(), Iso(s.last_used_unix_seconds()).c_str());
  return kExitOk;
}

int Fork(const GlobalOptions& g, const SessionOptions& o) {
  v1::ForkSessionRequest req;
  req.set_session_id(o.id);
  if (o.o_position->count() > 0) req.set_position(o.position);
  v1::Session s;
  grpc::Status st = Call(g, &v1::Retain::Stub::ForkSession, req, &s);
  if (!st.ok()) return ReportRpcError(st);
  PrintNewSession("forked", s);
  return kExitOk;
}

int Rewind(const GlobalOptions& g, const SessionOptions& o) {
  v1::RewindSessionRequest req;
  req.set_session_id(o.id);
  req.set_position(o.position);
  v1::Session s;
  grpc::Status st = Call(g, &v1::Retain::Stub::RewindSession, req, &s);
  if (!st.ok()) return ReportRpcError(st);
  std::fprintf(stderr, "[retain] rewound session %s to position %lld\n", s.id().c_str(), static_cast<long long>(s.position()));
  return kExitOk;
}

int Delete(const GlobalOptions& g, const SessionOptions& o) {
  v1::DeleteSessionRequest req;
  req.set_session_id(o.id);
  v1::DeleteSessionResponse resp;
  grpc::Status st = Call(g, &v1::Retain::Stub::DeleteSession, req, &resp);
  if (!st.ok()) return ReportRpcError(st);
  std::fprintf(stderr, "[retain] deleted session %s\n", o.id.c_str());
  return kExitOk;
}

// The chunks go to FILE.partial, renamed to FILE once the stream ended OK: a failed export never
// leaves a truncated FILE behind.
int Export(const GlobalOptions& g, const SessionOptions& o) {
  const std::string partial = o.file + ".partial";
  std::FILE* f = std::fopen(partial.c_str(), "wb");
  if (f == nullptr) return Fail(kExitLocal, "cannot write " + partial + ": " + std::strerror(errno));
  v1::ExportSessionRequest req;
  req.set_session_id(o.id);
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  auto stub = Stub(g);
  auto reader = stub->ExportSession(&ctx, req);
  v1::SessionChunk chunk;
  size_t bytes = 0, chunks = 0;
  bool write_failed = false;
  while (reader->Read(&chunk)) {
    if (!write_failed && std::fwrite(chunk.data().data(), 1, chunk.data().size(), f) != chunk.data().size()) {
      write_failed = true;
      ctx.TryCancel();
    }
    bytes += chunk.data().size();
    ++chunks;
  }
  grpc::Status st = reader->Finish();
  const bool close_failed = std::fclose(f) != 0;
  if (write_failed || close_failed) {
    std::remove(partial.c_str());
    return Fail(kExitLocal, "cannot write " + partial + ": " + std::strerror(errno));
  }
  if (!st.ok()) {
    std::remove(partial.c_str());
    return ReportRpcError(st);
  }
  if (std::rename(partial.c_str(), o.file.c_str()) != 0) {
    std::remove(partial.c_str());
    return Fail(kExitLocal, "cannot rename " + partial + " to " + o.file + ": " + std::strerror(errno));
  }
  std::fprintf(stderr, "[retain] exported session %s: %zu bytes in %zu chunks to %s\n", o.id.c_str(), bytes, chunks,
               o.file.c_str());
  return kExitOk;
}

int Import(const GlobalOptions& g, const SessionOptions& o) {
  std::FILE* f = std::fopen(o.file.c_str(), "rb");
  if (f == nullptr) return Fail(kExitLocal, "cannot read " + o.file + ": " + std::strerror(errno));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  auto stub = Stub(g);
  v1::Session s;
  auto writer = stub->ImportSession(&ctx, &s);
  std::string buf(kChunkBytes, '\0');
  size_t bytes = 0;
  bool read_failed = false;
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f);
    if (n > 0) {
      v1::SessionChunk chunk;
      chunk.set_data(buf.data(), n);
      if (!writer->Write(chunk)) break;  // the server ended the call; Finish says why
      bytes += n;
    }
    if (n < buf.size()) {
      read_failed = std::ferror(f) != 0;
      break;
    }
  }
  std::fclose(f);
  if (read_failed) {
    ctx.TryCancel();
    writer->Finish();
    return Fail(kExitLocal, "cannot read " + o.file + ": " + std::strerror(errno));
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  if (!st.ok()) return ReportRpcError(st);
  PrintNewSession("imported", s);
  std::fprintf(stderr, "[retain] imported %zu bytes from %s\n", bytes, o.file.c_str());
  return kExitOk;
}

}  // namespace

void AddSessionCommands(CLI::App& app, const GlobalOptions& g, Action* action) {
  CLI::App* session = app.add_subcommand("session", "Sessions: conversations whose state lives on the server");
  session->require_subcommand(1);
  auto bind = [&g, action](CLI::App* sub, std::shared_ptr<SessionOptions> o,
                           int (*run)(const GlobalOptions&, const SessionOptions&)) {
    sub->callback([&g, action, o, run] { *action = [&g, o, run] { return run(g, *o); }; });
  };

  auto o = std::make_shared<SessionOptions>();
  CLI::App* create = session->add_subcommand("create", "Create a session; prints its id");
  create->add_option("--model", o->model, "model name (default: the server's default model)");
  create->add_option("--prefix", o->prefix_text, "prefix text, prefilled at once");
  o->o_prefix_tokens = create->add_option("--prefix-tokens", o->prefix_tokens, "prefix as token ids, e.g. \"1 2 3\"");
  bind(create, o, Create);

  o = std::make_shared<SessionOptions>();
  CLI::App* get = session->add_subcommand("get", "Show a session (position = tokens consumed)");
  get->add_option("ID", o->id, "session id")->required();
  get->add_flag("--json", o->json, "one JSON object on stdout");
  bind(get, o, Get);

  o = std::make_shared<SessionOptions>();
  CLI::App* list = session->add_subcommand("list", "List sessions");
  list->add_option("--model", o->model, "only this model's sessions");
  list->add_flag("--json", o->json, "one JSON array on stdout");
  bind(list, o, List);

  o = std::make_shared<SessionOptions>();
  CLI::App* fork = session->add_subcommand("fork", "Copy a session's state into a new session; prints its id");
  fork->add_option("ID", o->id, "session id")->required();
  o->o_position = fork->add_option("--position", o->position, "fork the session as it was after its first N tokens");
  bind(fork, o, Fork);

  o = std::make_shared<SessionOptions>();
  CLI::App* rewind = session->add_subcommand(
      "rewind", "Take a session back to its first POSITION tokens (regenerate, edit an earlier turn)");
  rewind->add_option("ID", o->id, "session id")->required();
  rewind->add_option("POSITION", o->position, "tokens to keep")->required();
  bind(rewind, o, Rewind);

  o = std::make_shared<SessionOptions>();
  CLI::App* del = session->add_subcommand("delete", "Delete a session");
  del->add_option("ID", o->id, "session id")->required();
  bind(del, o, Delete);

  o = std::make_shared<SessionOptions>();
  CLI::App* exp = session->add_subcommand("export", "Write a session's state to FILE");
  exp->add_option("ID", o->id, "session id")->required();
  exp->add_option("FILE", o->file, "output file")->required();
  bind(exp, o, Export);

  o = std::make_shared<SessionOptions>();
  CLI::App* imp = session->add_subcommand("import", "Create a session from an exported FILE; prints its id");
  imp->add_option("FILE", o->file, "a file written by `retain session export`")->required();
  bind(imp, o, Import);
}

}  // namespace retain::client
