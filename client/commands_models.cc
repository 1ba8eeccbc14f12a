// retain models | tokenize | detokenize.
#include <cstdio>
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

struct ModelOptions {
  std::string model, text;
  std::vector<std::string> ids;
  bool json = false;
};

int Models(const GlobalOptions& g, const ModelOptions& o) {
  auto stub = v1::Retain::NewStub(MakeChannel(g));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  v1::ListModelsResponse resp;
  grpc::Status st = stub->ListModels(&ctx, v1::ListModelsRequest(), &resp);
  if (!st.ok()) return ReportRpcError(st);
  if (o.json) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& m : resp.models())
      all.push_back({{"name", m.name()},
                     {"architecture", m.architecture()},
                     {"vocab_size", m.vocab_size()},
                     {"n_layer", m.n_layer()},
                     {"n_embd", m.n_embd()},
                     {"state_bytes", m.state_bytes()},
                     {"weight_dtype", m.weight_dtype()},
                     {"backend", m.backend()},
                     {"tokenizer", m.tokenizer()},
                     {"is_default", m.is_default()},
                     {"fingerprint", m.fingerprint()}});
    std::printf("%s\n", all.dump().c_str());
    return kExitOk;
  }
  std::printf("%-24s %-12s %7s %6s %6s %12s %-6s %-8s %-12s %s\n", "NAME", "ARCH", "VOCAB", "LAYERS", "WIDTH",
              "STATE_BYTES", "DTYPE", "BACKEND", "TOKENIZER", "DEFAULT");
  for (const auto& m : resp.models())
    std::printf("%-24s %-12s %7d %6d %6d %12lld %-6s %-8s %-12s %s\n", m.name().c_str(), m.architecture().c_str(),
                m.vocab_size(), m.n_layer(), m.n_embd(), static_cast<long long>(m.state_bytes()),
                m.weight_dtype().c_str(), m.backend().c_str(), m.tokenizer().empty() ? "-" : m.tokenizer().c_str(),
                m.is_default() ? "yes" : "");
  return kExitOk;
}

int Tokenize(const GlobalOptions& g, const ModelOptions& o) {
  auto stub = v1::Retain::NewStub(MakeChannel(g));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  v1::TokenizeRequest req;
  req.set_model(o.model);
  req.set_text(o.text);
  v1::TokenizeResponse resp;
  grpc::Status st = stub->Tokenize(&ctx, req, &resp);
  if (!st.ok()) return ReportRpcError(st);
  std::string line;
  for (int i = 0; i < resp.ids_size(); ++i) line += (i ? " " : "") + std::to_string(resp.ids(i));
  std::printf("%s\n", line.c_str());
  return kExitOk;
}

int Detokenize(const GlobalOptions& g, const ModelOptions& o) {
  std::vector<int> ids;
  std::string error;
  if (!ParseTokenIds(o.ids, &ids, &error)) return Fail(kExitUsage, "IDS: " + error);
  auto stub = v1::Retain::NewStub(MakeChannel(g));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  v1::DetokenizeRequest req;
  req.set_model(o.model);
  for (int id : ids) req.add_ids(id);
  v1::DetokenizeResponse resp;
  grpc::Status st = stub->Detokenize(&ctx, req, &resp);
  if (!st.ok()) return ReportRpcError(st);
  std::fwrite(resp.text().data(), 1, resp.text().size(), stdout);
  std::fputc('\n', stdout);
  return kExitOk;
}

}  // namespace

void AddModelCommands(CLI::App& app, const GlobalOptions& g, Action* action) {
  auto o = std::make_shared<ModelOptions>();
  CLI::App* models = app.add_subcommand("models", "List the models the server serves");
  models->add_flag("--json", o->json, "one JSON array on stdout");
  models->callback([&g, o, action] { *action = [&g, o] { return Models(g, *o); }; });

  o = std::make_shared<ModelOptions>();
  CLI::App* tok = app.add_subcommand("tokenize", "Text to token ids (on one line)");
  tok->add_option("--model", o->model, "model name (default: the server's default model)");
  tok->add_option("TEXT", o->text, "text")->required();
  tok->callback([&g, o, action] { *action = [&g, o] { return Tokenize(g, *o); }; });

  o = std::make_shared<ModelOptions>();
  CLI::App* detok = app.add_subcommand("detokenize", "Token ids to text (then a newline)");
  detok->add_option("--model", o->model, "model name (default: the server's default model)");
  detok->add_option("IDS", o->ids, "token ids: separate arguments or one \"1 2 3\"")->required();
  detok->callback([&g, o, action] { *action = [&g, o] { return Detokenize(g, *o); }; });
}

}  // namespace retain::client
